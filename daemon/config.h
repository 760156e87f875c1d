// The daemon's configuration: one TOML file. Every key is declared once in config.cpp with its type, default and
// range; unknown tables or keys, wrong types and out-of-range values are errors that name the key. Relative paths
// are resolved against the directory of the config file. Loading reads only the config file itself: the files it
// names (holidays, tokens, key) are read by LoadRuntime in app.cpp.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

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
    long max_body_bytes = 1 << 20;
    int keep_alive_timeout_s = 5;
    int keep_alive_max_requests = 100000;
    int read_timeout_s = 10;
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
  } auth;

  struct Crypto {
    std::filesystem::path key_file;
  } crypto;

  struct Sweeper {
    int interval_ms = 30000;
    int audit_seal_interval_ms = 250;
  } sweeper;
};

// Throws ConfigError("<file>: <key>: <problem>") or ConfigError("<file>:<line>:<col>: <toml parse error>").
Config LoadConfig(const std::filesystem::path& file);
Config ParseConfig(std::string_view toml_text, const std::filesystem::path& file);

}  // namespace rightsd
