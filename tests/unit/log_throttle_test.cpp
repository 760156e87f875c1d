// The throttle that keeps an outage from writing one warning per call.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "log.h"

using rightsd::LogThrottle;
using namespace std::chrono_literals;

TEST_CASE("crash: a throttled warning logs once a period and says how many lines it held back", "[log]") {
  LogThrottle throttle(1000ms);
  const LogThrottle::Clock::time_point t0{std::chrono::hours(1)};
  const auto first = throttle.Allow(t0);
  CHECK(first.log);
  CHECK(first.held_back == 0);
  for (int i = 1; i <= 79; ++i) CHECK_FALSE(throttle.Allow(t0 + std::chrono::milliseconds(i * 12)).log);
  const auto next = throttle.Allow(t0 + 1000ms);
  CHECK(next.log);
  CHECK(next.held_back == 79);
  CHECK(rightsd::HeldBack(next) == " (79 like it held back)");
  CHECK_FALSE(throttle.Allow(t0 + 1999ms).log);
  const auto quiet_then = throttle.Allow(t0 + 10s);
  CHECK(quiet_then.log);
  CHECK(quiet_then.held_back == 1);
  CHECK(rightsd::HeldBack(LogThrottle::Verdict{true, 0}).empty());
}

TEST_CASE("crash: a throttle shared by threads lets exactly one line through a period and loses no count", "[log]") {
  LogThrottle throttle(std::chrono::hours(1));
  std::atomic<int> logged{0};
  std::atomic<long long> held{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (throttle.Allow().log) ++logged;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(logged == 1);
  // The next period's line carries every call that was refused.
  const auto later = throttle.Allow(LogThrottle::Clock::now() + std::chrono::hours(2));
  CHECK(later.log);
  CHECK(later.held_back == 39999);
}
