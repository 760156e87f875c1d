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

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "auth.h"
#include "config.h"
#include "data_map.h"
#include "store.h"

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
  };
  explicit HttpApi(Deps deps);
  ~HttpApi();

  // Binds the listener; returns the bound port, or throws std::runtime_error naming the address.
  int Bind();
  // Serves until Stop(); returns false if the listener failed.
  bool Run();
  void Stop();

 private:
  void Routes();
  nlohmann::json SummaryJson();

  Deps deps_;
  httplib::Server server_;
  std::atomic<int> listen_fd_{-1};

  std::mutex summary_mu_;
  std::optional<nlohmann::json> summary_cache_;
  std::chrono::steady_clock::time_point summary_at_{};
  bool summary_refreshing_ = false;
};

}  // namespace rightsd
