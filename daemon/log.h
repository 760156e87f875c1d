// One line per event on stderr, prefixed with a syslog priority ("<3>", "<4>", "<6>", "<7>") that journald
// understands. Lines are lowercase and name the entity; identity values never reach a log line -- callers pass
// ids, kinds and counts only. Thread-safe: each line is written with a single write(2).
#pragma once
#include <atomic>
#include <chrono>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

#include <fmt/format.h>

namespace rightsd {

enum class LogLevel { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

void SetLogLevel(LogLevel max_level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogError(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogWarning(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogInfo(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogDebug(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

// At most one line a period from one place that can repeat for every call during an outage (each 503 while the
// database is away, each retry of an outcome commit): a flood of identical warnings hides the first, useful one and
// fills the journal. Allow() says whether to log now and how many lines it held back since the last one, so that
// line can say so. Lock-free; safe to share between threads. `now` is injectable for tests.
class LogThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogThrottle(std::chrono::milliseconds period) : period_ns_(period.count() * 1000000) {}
  struct Verdict {
    bool log = false;
    long long held_back = 0;  // lines not logged since the last one that was
  };
  Verdict Allow(Clock::time_point now = Clock::now()) {
    const long long t = now.time_since_epoch().count();
    long long next = next_ns_.load(std::memory_order_relaxed);
    if (t >= next && next_ns_.compare_exchange_strong(next, t + period_ns_, std::memory_order_relaxed)) {
      return {true, held_back_.exchange(0, std::memory_order_relaxed)};
    }
    held_back_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }

 private:
  static_assert(std::is_same_v<Clock::duration, std::chrono::nanoseconds>);
  const long long period_ns_;
  std::atomic<long long> next_ns_{std::numeric_limits<long long>::min()};
  std::atomic<long long> held_back_{0};
};

// " (N like it held back)" or "", for the line a LogThrottle let through.
inline std::string HeldBack(const LogThrottle::Verdict& v) {
  return v.held_back > 0 ? fmt::format(" ({} like it held back)", v.held_back) : std::string();
}

}  // namespace rightsd
