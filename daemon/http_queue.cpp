#include "http_queue.h"

#include <algorithm>

#include "log.h"

namespace rightsd {

namespace {
thread_local bool t_overflow_lane = false;
// Answering 503 is quick, so two threads keep up with far more connections than the workers can serve; a client
// that sends its request slowly holds one only until http.read_timeout.
constexpr int kOverflowThreads = 2;
constexpr auto kLogEvery = std::chrono::seconds(10);
}  // namespace

BoundedTaskQueue::BoundedTaskQueue(int threads, int max_queued)
    : workers_(threads),
      max_queued_(static_cast<std::size_t>(std::max(0, max_queued))),
      max_overflow_(std::max<std::size_t>(64, static_cast<std::size_t>(std::max(0, max_queued)))) {
  // Every worker is idle from the start, not from when its thread first waits: counted late, the first connections
  // after start-up (or under a slow scheduler) would go to the overflow lane while workers sit idle.
  idle_workers_ = static_cast<std::size_t>(std::max(0, threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(false); });
  for (int i = 0; i < kOverflowThreads; ++i) threads_.emplace_back([this] { Work(true); });
}

BoundedTaskQueue::~BoundedTaskQueue() { shutdown(); }

bool BoundedTaskQueue::OnOverflowLane() { return t_overflow_lane; }

void BoundedTaskQueue::enqueue(std::function<void()> fn) {
  long report = 0;
  {
    std::unique_lock lock(mu_);
    for (;;) {
      // A connection is admitted while it would wait behind at most max_queued others for a worker.
      if (shutdown_ || jobs_.size() < idle_workers_ + max_queued_) {
        jobs_.push_back(std::move(fn));
        lock.unlock();
        work_cv_.notify_one();
        return;
      }
      if (overflow_.size() < max_overflow_) break;
      space_cv_.wait(lock);
    }
    overflow_.push_back(std::move(fn));
    ++rejected_since_log_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log_ >= kLogEvery) {
      report = rejected_since_log_;
      rejected_since_log_ = 0;
      last_log_ = now;
    }
  }
  overflow_cv_.notify_one();
  if (report > 0) {
    LogWarning("http: at capacity ({} threads busy, {} connections queued): {} connections answered 503 since the "
               "last report",
               workers_, max_queued_, report);
  }
}

void BoundedTaskQueue::shutdown() {
  {
    std::lock_guard lock(mu_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
  }
  work_cv_.notify_all();
  overflow_cv_.notify_all();
  space_cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::lock_guard lock(mu_);
  threads_.clear();
}

void BoundedTaskQueue::Work(bool overflow) {
  t_overflow_lane = overflow;
  auto& queue = overflow ? overflow_ : jobs_;
  auto& cv = overflow ? overflow_cv_ : work_cv_;
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock lock(mu_);
      cv.wait(lock, [&] { return shutdown_ || !queue.empty(); });
      // Like httplib::ThreadPool: on shutdown the queued connections are still served (and closed).
      if (queue.empty()) return;
      fn = std::move(queue.front());
      queue.pop_front();
      if (!overflow) --idle_workers_;
    }
    space_cv_.notify_one();
    fn();
    if (!overflow) {
      std::lock_guard lock(mu_);
      ++idle_workers_;
    }
  }
}

}  // namespace rightsd
