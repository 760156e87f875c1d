// The daemon's configuration: one TOML file. Every key is declared once in config.cpp with its type, default and
// range; unknown tables or keys, wrong types and out-of-range values are errors that name the key. Relative paths
// are resolved against the directory of the config file. Loading reads only the config file itself: the files it
// names (holidays, tokens, key) are read by LoadRuntime in app.cpp.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rightsd {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Config {
  std::filesystem::path file;

  struct Http {
    std::string host = "127.0.0.1";
    int port = 8080;
    int threads = 64;
    int max_queued = 64;  // connections waiting for a thread beyond this are answered 503 at once
    long max_body_bytes = 1 << 20;
    int keep_alive_timeout_s = 5;
    int keep_alive_max_requests = 100000;
    int read_timeout_s = 10;
    // TLS on the listener: both files or neither (PEM; the cert file may hold the chain). Without them the
    // listener speaks plain HTTP, which is refused on a non-loopback address unless allow_plaintext_non_loopback
    // says a TLS-terminating proxy in front makes that safe.
    std::filesystem::path tls_cert_file;
    std::filesystem::path tls_key_file;
    bool allow_plaintext_non_loopback = false;
    bool tls() const { return !tls_cert_file.empty(); }
  } http;

  struct Database {
    std::string url;
    int pool_size = 8;
    int acquire_timeout_ms = 2000;
    int statement_timeout_ms = 5000;
  } database;

  struct Calendar {
    std::string timezone = "America/Los_Angeles";
    std::filesystem::path holidays_file;
    std::vector<std::string> business_days = {"mon", "tue", "wed", "thu", "fri"};
    int at_risk_days = 10;
  } calendar;

  struct Auth {
    std::filesystem::path tokens_file;
    // Per-token rate limit (a token bucket per token name, per process): sustained calls per second and the burst.
    double rate_per_second = 100;
    int burst = 200;
  } auth;

  // Where the daemon may send requests (connectors, peers' URLs, status callbacks); see url_policy.h.
  struct Outbound {
    std::vector<std::string> allowed_hosts;
  } outbound;

  struct Crypto {
    std::filesystem::path key_file;
  } crypto;

  struct Sweeper {
    int interval_ms = 30000;
    // Read and range-checked so that configs written for earlier versions still load, but unused: since
    // migration 0007 audit events are chained by the transaction that writes them, not sealed afterwards.
    int audit_seal_interval_ms = 250;
  } sweeper;

  struct Engine {
    bool enabled = true;          // false: this process serves the API only; other processes run the tasks
    int lease_ms = 60000;         // a claimed task is another process's to take once its lease expires
    int claim_batch = 32;
    int max_in_flight = 256;      // tasks running at once in this process, over all systems
    // Under a backlog, the tasks of connectors that answer inline (noop) are run by this many transactions at once,
    // each over its own share of the requests: one round is one PostgreSQL backend busy, so one transaction at a
    // time leaves the database's other cores idle. About the database's cores; 1 runs them one round at a time.
    int inline_workers = 2;
    int backoff_base_ms = 1000;
    int backoff_max_ms = 900000;
    int drain_timeout_ms = 10000; // on SIGTERM: how long in-flight tasks may finish before their leases are let go
  } engine;

  struct Callbacks {
    std::filesystem::path secret_file;  // HMAC-SHA256 key for status callbacks; empty: callbacks refused at intake
    int max_attempts = 10;
    int timeout_ms = 10000;
  } callbacks;

  // Retention (11 CCR §7101): `rightsd purge` removes the personal data of requests closed longer ago than this.
  struct Purge {
    int retention_months = 24;  // §7101 keeps request records at least 24 months: nothing lower is accepted
    int batch_size = 500;       // requests per transaction
  } purge;

  // The data map: one entry per system that holds personal data.
  struct System {
    std::string name;
    std::string connector;
    std::vector<std::string> categories;
    std::string on_delete = "delete";  // delete | retain | deidentify
    std::string retain_basis;
    std::vector<std::string> request_types = {"access", "delete", "correct", "opt_out", "limit"};
    int max_concurrency = 4;
    double rate_per_second = 10;
    int burst = 10;
    int max_attempts = 8;
    nlohmann::json settings = nlohmann::json::object();
  };
  std::vector<System> systems;
};

// Throws ConfigError("<file>: <key>: <problem>") or ConfigError("<file>:<line>:<col>: <toml parse error>").
Config LoadConfig(const std::filesystem::path& file);
Config ParseConfig(std::string_view toml_text, const std::filesystem::path& file);

}  // namespace rightsd
