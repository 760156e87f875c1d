// cpp-httplib's own ThreadPool queues accepted connections without bound: under overload every connection waits
// behind all earlier ones, latency grows without limit and so do open sockets. This task queue bounds it.
//
// `threads` workers serve connections; at most `max_queued` more wait for a free worker. A connection beyond that
// goes to a small overflow lane whose threads run the same cpp-httplib code but with OnOverflowLane() true, so the
// API's handlers answer 503 (urn:rightsd:problem:overloaded, Retry-After, Connection: close) at once instead of
// working. Only if the overflow lane is full as well does enqueue block the accept loop, leaving further
// connections in the kernel's listen backlog: memory stays bounded in every case.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace rightsd {

class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(int threads, int max_queued);
  ~BoundedTaskQueue() override;
  BoundedTaskQueue(const BoundedTaskQueue&) = delete;
  BoundedTaskQueue& operator=(const BoundedTaskQueue&) = delete;

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  // True on the threads of the overflow lane: the connection being served is over the bound.
  static bool OnOverflowLane();

 private:
  void Work(bool overflow);

  const int workers_;
  const std::size_t max_queued_;
  const std::size_t max_overflow_;
  std::mutex mu_;
  std::condition_variable work_cv_;      // workers: a job or shutdown
  std::condition_variable overflow_cv_;  // overflow threads: a job or shutdown
  std::condition_variable space_cv_;     // the accept loop: room in either queue
  std::deque<std::function<void()>> jobs_;
  std::deque<std::function<void()>> overflow_;
  std::size_t idle_workers_ = 0;
  bool shutdown_ = false;
  long rejected_since_log_ = 0;
  std::chrono::steady_clock::time_point last_log_{};
  std::vector<std::thread> threads_;
};

}  // namespace rightsd
