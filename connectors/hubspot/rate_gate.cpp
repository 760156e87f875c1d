#include "connectors/hubspot/rate_gate.h"

#include <algorithm>
#include <charconv>

namespace rightsd::connectors::hubspot {

namespace {

using namespace std::chrono_literals;

// Search has no rate headers and its own limit per second [S]: one window of one second.
constexpr auto kSearchWindow = 1s;
// HubSpot's official SDK waits 10 s after a 429 without a policy it knows [V].
constexpr auto kUnknownPolicyWait = 10s;

std::optional<long long> HeaderNumber(const HttpResponse& response, std::string_view name) {
  const std::string text = response.Header(name);
  long long value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < 0) return std::nullopt;
  return value;
}

std::chrono::milliseconds CeilMs(std::chrono::steady_clock::duration d) {
  if (d <= std::chrono::steady_clock::duration::zero()) return 0ms;
  return std::chrono::ceil<std::chrono::milliseconds>(d);
}

}  // namespace

// --- Timer ------------------------------------------------------------------------------------------------------

Timer::Timer() : thread_([this] { Loop(); }) {}

Timer::~Timer() { Stop(); }

void Timer::At(Clock::time_point when, std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    due_.emplace(when, std::move(fn));
  }
  cv_.notify_all();
}

void Timer::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    due_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    // Stopping from a timer function (the last owner let go there) must not join itself.
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
}

void Timer::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto next = due_.begin()->first;
    if (Clock::now() < next) {
      cv_.wait_until(lock, next);
      continue;
    }
    auto fn = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    lock.unlock();
    try {
      fn();
    } catch (...) {
      // A function that throws must not end the timer for everyone else.
    }
    lock.lock();
  }
}

// --- RateGate ---------------------------------------------------------------------------------------------------

RateGate::RateGate(RateLimits limits, std::function<std::chrono::milliseconds()> until_daily_reset,
                   std::shared_ptr<Timer> timer)
    : limits_(limits),
      until_daily_reset_(std::move(until_daily_reset)),
      timer_(std::move(timer)),
      burst_limit_(std::max(1, limits.burst_limit)),
      interval_(limits.burst_interval),
      daily_limit_(limits.daily_limit),
      daily_remaining_(limits.daily_limit),
      day_ends_(Clock::now() + until_daily_reset_()) {}

void RateGate::Admit(CallKind kind, std::function<void(Admission)> then) {
  Admission admission;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    Refresh(now);
    if (shutdown_) {
      admission.reason = "shutdown";
    } else if (auto refusal = DailyRefusal(now)) {
      admission = *refusal;
    } else if (waiters_.empty() && Fits(kind, now)) {
      Take(kind);
      admission.granted = true;
    } else {
      const auto wait = EstimateWait(kind, now);
      if (wait > limits_.max_local_wait) {
        admission.retry_after = CeilMs(wait);
        admission.reason = kind == CallKind::kSearch && now < search_closed_until_ ? "search" : "burst";
      } else {
        waiters_.push_back(Waiter{kind, std::move(then)});
        ArmTimer(now);
        return;
      }
    }
  }
  then(std::move(admission));
}

void RateGate::Finished(CallKind kind, const HttpResponse& response) {
  Ready ready;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    if (in_flight_ > 0) --in_flight_;
    if (kind == CallKind::kSearch && in_flight_search_ > 0) --in_flight_search_;

    if (auto interval = HeaderNumber(response, "X-HubSpot-RateLimit-Interval-Milliseconds"); interval && *interval > 0) {
      // The longer of HubSpot's window and ours: a slot held too long only slows us down.
      interval_ = std::max<Clock::duration>(limits_.burst_interval,
                                            std::chrono::milliseconds(std::min<long long>(*interval, 3600000)));
    }
    burst_slots_.insert(now + interval_);
    if (kind == CallKind::kSearch) search_slots_.insert(now + kSearchWindow);

    const auto max = HeaderNumber(response, "X-HubSpot-RateLimit-Max");
    if (max && *max > 0) burst_limit_ = static_cast<int>(std::clamp<long long>(*max, 1, limits_.burst_limit));
    if (auto remaining = HeaderNumber(response, "X-HubSpot-RateLimit-Remaining")) {
      const long long server_used = (max && *max > 0 ? *max : burst_limit_) - *remaining;
      const long long ours = in_flight_ + static_cast<long long>(burst_slots_.size());
      // Calls HubSpot counted that we did not make: another integration shares the account's allowance.
      for (long long extra = std::min<long long>(server_used - ours, burst_limit_); extra > 0; --extra) {
        burst_slots_.insert(now + interval_);
      }
    }
    if (auto daily = HeaderNumber(response, "X-HubSpot-RateLimit-Daily"); daily && *daily > 0) {
      daily_limit_ = std::min(limits_.daily_limit, *daily);
    }
    if (auto daily_remaining = HeaderNumber(response, "X-HubSpot-RateLimit-Daily-Remaining")) {
      // Calls still in flight may or may not be in HubSpot's figure: count them as spent.
      daily_remaining_ = std::min(daily_remaining_, *daily_remaining - in_flight_);
    }
    Refresh(now);
    Pump(now, ready);
  }
  Run(ready);
}

std::chrono::milliseconds RateGate::RateLimited(std::string_view policy, const HttpResponse& response) {
  Ready ready;
  Clock::duration wait;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    Refresh(now);
    if (policy == "TEN_SECONDLY_ROLLING") {
      wait = interval_;
      burst_closed_until_ = std::max(burst_closed_until_, now + wait);
    } else if (policy == "DAILY") {
      daily_remaining_ = 0;
      daily_closed_until_ = day_ends_;
      wait = day_ends_ - now;
    } else if (policy == "SECONDLY") {
      wait = kSearchWindow;
      search_closed_until_ = std::max(search_closed_until_, now + wait);
    } else {
      auto after = ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
      wait = after ? Clock::duration(*after) : Clock::duration(kUnknownPolicyWait);
      burst_closed_until_ = std::max(burst_closed_until_, now + wait);
    }
    Pump(now, ready);
  }
  Run(ready);
  return CeilMs(wait);
}

void RateGate::Shutdown() {
  Ready ready;
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    for (auto& w : waiters_) ready.emplace_back(std::move(w.then), Admission{false, 0ms, "shutdown"});
    waiters_.clear();
  }
  Run(ready);
}

int RateGate::burst_limit() const {
  std::lock_guard lock(mu_);
  return burst_limit_;
}

std::chrono::milliseconds RateGate::burst_interval() const {
  std::lock_guard lock(mu_);
  return std::chrono::duration_cast<std::chrono::milliseconds>(interval_);
}

long long RateGate::daily_remaining() const {
  std::lock_guard lock(mu_);
  return daily_remaining_;
}

void RateGate::Refresh(Clock::time_point now) {
  burst_slots_.erase(burst_slots_.begin(), burst_slots_.upper_bound(now));
  search_slots_.erase(search_slots_.begin(), search_slots_.upper_bound(now));
  if (now >= day_ends_) {
    daily_remaining_ = daily_limit_;
    day_ends_ = now + until_daily_reset_();
  }
}

bool RateGate::Fits(CallKind kind, Clock::time_point now) const {
  if (now < burst_closed_until_) return false;
  if (in_flight_ + static_cast<long long>(burst_slots_.size()) >= burst_limit_) return false;
  if (kind == CallKind::kSearch) {
    if (now < search_closed_until_) return false;
    if (in_flight_search_ + static_cast<long long>(search_slots_.size()) >= limits_.search_per_second) return false;
  }
  return daily_remaining_ > 0;
}

void RateGate::Take(CallKind kind) {
  ++in_flight_;
  if (kind == CallKind::kSearch) ++in_flight_search_;
  --daily_remaining_;
}

std::optional<Admission> RateGate::DailyRefusal(Clock::time_point now) {
  if (daily_remaining_ <= 0) daily_closed_until_ = std::max(daily_closed_until_, day_ends_);
  if (now < daily_closed_until_) return Admission{false, CeilMs(daily_closed_until_ - now), "daily"};
  return std::nullopt;
}

RateGate::Clock::duration RateGate::EstimateWait(CallKind kind, Clock::time_point now) const {
  // Rough on purpose: it only chooses between waiting here and handing the task back to the engine.
  auto estimate = [&](long long held, long long ahead, long long limit, const std::multiset<Clock::time_point>& slots,
                      Clock::duration window, Clock::time_point closed_until) {
    Clock::duration wait = closed_until > now ? closed_until - now : Clock::duration::zero();
    const long long excess = held + ahead + 1 - limit;
    if (excess > 0) {
      const Clock::duration first = slots.empty() ? window : *slots.begin() - now;
      wait = std::max<Clock::duration>(wait, first + ((excess - 1) / limit) * window);
    }
    return wait;
  };
  long long ahead = static_cast<long long>(waiters_.size());
  auto wait = estimate(in_flight_ + static_cast<long long>(burst_slots_.size()), ahead, burst_limit_, burst_slots_,
                       interval_, burst_closed_until_);
  if (kind == CallKind::kSearch) {
    const long long searches_ahead =
        std::count_if(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return w.kind == CallKind::kSearch; });
    wait = std::max(wait, estimate(in_flight_search_ + static_cast<long long>(search_slots_.size()), searches_ahead,
                                   limits_.search_per_second, search_slots_, kSearchWindow, search_closed_until_));
  }
  return wait;
}

void RateGate::Pump(Clock::time_point now, Ready& ready) {
  while (!waiters_.empty()) {
    if (auto refusal = shutdown_ ? std::optional<Admission>(Admission{false, 0ms, "shutdown"}) : DailyRefusal(now)) {
      for (auto& w : waiters_) ready.emplace_back(std::move(w.then), *refusal);
      waiters_.clear();
      break;
    }
    Waiter& front = waiters_.front();
    if (!Fits(front.kind, now)) break;
    Take(front.kind);
    ready.emplace_back(std::move(front.then), Admission{true, 0ms, ""});
    waiters_.pop_front();
  }
  if (!waiters_.empty()) ArmTimer(now);
}

void RateGate::ArmTimer(Clock::time_point now) {
  // The next moment a waiter might fit without any call finishing; calls in flight wake the queue themselves.
  std::optional<Clock::time_point> at;
  auto consider = [&](Clock::time_point t) {
    if (t > now && (!at || t < *at)) at = t;
  };
  consider(burst_closed_until_);
  consider(search_closed_until_);
  if (!burst_slots_.empty()) consider(*burst_slots_.begin());
  if (!search_slots_.empty()) consider(*search_slots_.begin());
  if (!at) return;
  if (timer_armed_for_ && *timer_armed_for_ > now && *timer_armed_for_ <= *at) return;
  timer_armed_for_ = *at;
  timer_->At(*at, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->OnTimer();
  });
}

void RateGate::OnTimer() {
  Ready ready;
  {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    if (timer_armed_for_ && *timer_armed_for_ <= now) timer_armed_for_.reset();
    Refresh(now);
    Pump(now, ready);
  }
  Run(ready);
}

void RateGate::Run(Ready& ready) {
  for (auto& [then, admission] : ready) then(std::move(admission));
}

}  // namespace rightsd::connectors::hubspot
