// HubSpot's rate limits, kept on our side of the wire: one RateGate per connector instance, shared by all of its
// tasks, decides when each call may be sent so that HubSpot never has to refuse one.
//
// What it keeps (reference/connector-apis.md 2.7):
// - the rolling burst window ("TEN_SECONDLY_ROLLING": N calls per 10 s, from the configured limit and lowered by
//   X-HubSpot-RateLimit-Max / -Interval-Milliseconds when HubSpot sends them);
// - the search endpoint's own per-second limit (5 req/s [S]; search answers carry no rate headers);
// - the daily allowance (configured, lowered by X-HubSpot-RateLimit-Daily / -Daily-Remaining), which resets at
//   midnight in the account's time zone.
// A call occupies its slot of a window from the moment it is admitted until one window length after its answer
// arrived. HubSpot counts a call when it arrives, which is between those two moments, so no window at HubSpot can
// ever hold more calls than the limit, however long the network takes (the connector-level test checks exactly
// this against the simulator). -Remaining lower than our own count means someone else (another integration of the
// same account) is spending the allowance: the difference is held as extra slots for one window.
//
// Calls that do not fit wait in a FIFO queue and are admitted by a completion or by the gate's timer thread -- no
// task holds a thread while it waits. A call that would wait longer than max_local_wait, or that needs the daily
// allowance once it is spent, is refused with the time to wait instead: the task then returns kRetry with it.
//
// Thread-safety: every member may be called from any thread. `then` callbacks run outside the gate's lock, on the
// calling thread, on the thread of a completion, or on the timer thread.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "connectors/http_client.h"

namespace rightsd::connectors::hubspot {

// A single thread that runs functions at given times. Stop() (and the destructor) drops what has not run yet.
class Timer {
 public:
  using Clock = std::chrono::steady_clock;
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  void At(Clock::time_point when, std::function<void()> fn);
  void Stop();

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::function<void()>> due_;
  bool stopping_ = false;
  std::thread thread_;
};

struct RateLimits {
  int burst_limit = 100;                       // calls per burst window that this connector allows itself
  std::chrono::milliseconds burst_interval{10000};
  long long daily_limit = 250000;
  int search_per_second = 5;
  std::chrono::milliseconds max_local_wait{30000};
};

enum class CallKind { kSearch, kOther };

struct Admission {
  bool granted = false;
  std::chrono::milliseconds retry_after{0};  // when refused: how long until the call could be made
  std::string reason;                        // when refused: "daily", "burst", "search" or "shutdown"
};

class RateGate : public std::enable_shared_from_this<RateGate> {
 public:
  using Clock = std::chrono::steady_clock;
  // `until_daily_reset` answers how long from now until HubSpot's daily counter starts again.
  RateGate(RateLimits limits, std::function<std::chrono::milliseconds()> until_daily_reset,
           std::shared_ptr<Timer> timer);

  // Calls `then` exactly once: granted (send the call now, and report its answer with Finished) or refused.
  void Admit(CallKind kind, std::function<void(Admission)> then);
  // The answer (or transport failure) of an admitted call: frees its slot and learns from the rate headers.
  void Finished(CallKind kind, const HttpResponse& response);
  // A 429 from HubSpot: its policyName says which limit was hit. Closes that limit for as long as it stays shut
  // and returns how long the task should wait. Call after Finished.
  std::chrono::milliseconds RateLimited(std::string_view policy, const HttpResponse& response);
  // Refuses every waiting call; later calls are refused at once.
  void Shutdown();

  // For tests and messages.
  int burst_limit() const;
  std::chrono::milliseconds burst_interval() const;
  long long daily_remaining() const;

 private:
  struct Waiter {
    CallKind kind;
    std::function<void(Admission)> then;
  };
  using Ready = std::vector<std::pair<std::function<void(Admission)>, Admission>>;

  void Refresh(Clock::time_point now);  // expires slots, starts a new day
  bool Fits(CallKind kind, Clock::time_point now) const;
  void Take(CallKind kind);
  std::optional<Admission> DailyRefusal(Clock::time_point now);
  Clock::duration EstimateWait(CallKind kind, Clock::time_point now) const;
  void Pump(Clock::time_point now, Ready& ready);
  void ArmTimer(Clock::time_point now);
  void OnTimer();
  static void Run(Ready& ready);

  const RateLimits limits_;
  const std::function<std::chrono::milliseconds()> until_daily_reset_;
  const std::shared_ptr<Timer> timer_;

  mutable std::mutex mu_;
  bool shutdown_ = false;
  int burst_limit_;
  Clock::duration interval_;
  int in_flight_ = 0;
  int in_flight_search_ = 0;
  std::multiset<Clock::time_point> burst_slots_;   // held until the time stored
  std::multiset<Clock::time_point> search_slots_;
  Clock::time_point burst_closed_until_{};
  Clock::time_point search_closed_until_{};
  long long daily_limit_;
  long long daily_remaining_;
  Clock::time_point day_ends_;
  Clock::time_point daily_closed_until_{};
  std::deque<Waiter> waiters_;
  std::optional<Clock::time_point> timer_armed_for_;
};

}  // namespace rightsd::connectors::hubspot
