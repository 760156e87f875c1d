// Per-token rate limits for the API: one token bucket per token name, refilled at `rate` per second up to `burst`.
// The set of names is the tokens file's, so the map is bounded. Per process: with several daemons behind a load
// balancer a token gets the limit of each. Thread-safe.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <string>
#include <unordered_map>

namespace rightsd {

class TokenBuckets {
 public:
  using Clock = std::chrono::steady_clock;
  TokenBuckets(double rate_per_second, int burst) : rate_(rate_per_second), burst_(burst) {}

  // Takes one call from `name`'s bucket. Returns 0 when the call may go, else how long until it would.
  std::chrono::milliseconds Take(const std::string& name, Clock::time_point now) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = buckets_.try_emplace(name, Bucket{static_cast<double>(burst_), now});
    Bucket& b = it->second;
    if (!fresh) {
      const double elapsed = std::chrono::duration<double>(now - b.at).count();
      b.tokens = std::min(static_cast<double>(burst_), b.tokens + std::max(0.0, elapsed) * rate_);
      b.at = std::max(b.at, now);
    }
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return std::chrono::milliseconds(0);
    }
    return std::chrono::milliseconds(static_cast<long>(std::ceil((1.0 - b.tokens) / rate_ * 1000.0)));
  }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point at;
  };
  const double rate_;
  const int burst_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace rightsd
