// The REST API (v1) over cpp-httplib. Handlers parse and authorise, call the store, and render JSON; they hold no
// SQL. Every error leaves through one catch site that renders application/problem+json (RFC 9457).
// The server is configured for many polling dashboards (see docs: TCP_NODELAY, a pool sized from the config,
// a real listen backlog). Bind/Run/Stop may be called from different threads; Stop is thread-safe.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <condition_variable>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "auth.h"
#include "config.h"
#include "data_map.h"
#include "intake_writer.h"
#include "request_reader.h"
#include "store.h"
#include "token_buckets.h"
#include "url_policy.h"

namespace rightsd {

class HttpApi {
 public:
  struct Deps {
    Store& store;
    const TokenStore& tokens;
    Config::Http http;
    std::function<Timestamp()> now;
    std::function<bool()> holds_sweeper;
    const DataMap* data_map = nullptr;  // for connector callbacks
    const OutboundPolicy* outbound = nullptr;  // callback_urls must match it; null: no check (unit use)
    double rate_per_second = 100;  // per token name (auth.rate_per_second, auth.burst)
    int burst = 200;
  };
  explicit HttpApi(Deps deps);
  ~HttpApi();

  // Binds the listener; returns the bound port, or throws std::runtime_error naming the address, or the TLS files
  // and OpenSSL's reason when they cannot be used.
  int Bind();
  // Serves until Stop(); returns false if the listener failed.
  bool Run();
  void Stop();

 private:
  void Routes();
  nlohmann::json SummaryJson();
  nlohmann::json BuildSummaryJson();  // reads the store; SummaryJson decides when
  void RefreshSummary();              // BuildSummaryJson into the cache; clears summary_refreshing_

  Deps deps_;
  // Every read of a whole request goes through it: concurrent reads share database round trips.
  RequestReader reader_;
  // New requests that need no Idempotency-Key check and no tasks: concurrent POSTs share one statement.
  IntakeWriter writer_;
  std::string tls_error_;  // set while building an SSLServer whose certificate or key could not be loaded
  std::unique_ptr<httplib::Server> server_;  // an httplib::SSLServer when http.tls_cert_file is set
  TokenBuckets buckets_;
  std::atomic<int> listen_fd_{-1};

  std::mutex summary_mu_;
  std::optional<nlohmann::json> summary_cache_;
  std::chrono::steady_clock::time_point summary_at_{};
  bool summary_refreshing_ = false;  // at most one refresh in flight
  std::condition_variable summary_cv_;  // signalled when a refresh ends
  std::thread summary_thread_;  // the last background refresh (joined before the next one starts, and at exit)
};

}  // namespace rightsd
