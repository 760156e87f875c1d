// Gathers work that many threads hand in at once into batches for a few worker threads: one database round trip
// then serves many callers. Status reads (RequestReader) and new requests (IntakeWriter) go through it (issue 8).
//
// Why: per statement costs dominated both paths -- PostgreSQL's per-statement work (and, for intake, the audit
// link, the SLA tallies and the commit of each statement), and in the daemon the send/poll syscalls and a blocked
// thread per round trip.
//
// How: a caller hands its item to Submit and waits; `workers` threads each take everything queued (up to
// `max_batch`), run Process on it once and hand every waiter its own outcome. There is no timer: an idle worker
// takes a lone item at once, so a single call never waits for a batch to fill. Under load, items arriving while
// the workers are busy queue up and leave together in the next batch: the batch grows with the load, by itself.
//
// Errors: a Process that throws gives every waiter of that batch the same exception; an error that concerns one
// item only stays with that item (Outcome::error). Stop() answers queued waiters ApiError(kUnavailable) at once,
// refuses new ones, waits for the batches in flight to be answered and joins the workers: no thread or waiter is
// left behind. Thread-safe.
#pragma once
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <vector>

#include "errors.h"

namespace rightsd {

template <typename Item, typename Value>
class BatchQueue {
 public:
  struct Outcome {
    Value value{};
    std::exception_ptr error;  // set: this item failed alone
  };
  // One outcome per item, in the items' order. May throw: every item of the batch then gets the exception. The
  // items are the batch's to use (and move from) while it runs.
  using Process = std::function<std::vector<Outcome>(std::span<Item> items)>;
  struct Options {
    int workers = 2;
    std::size_t max_batch = 64;
    const char* thread_name = "rightsd-batch";  // at most 15 characters (pthread_setname_np)
  };

  BatchQueue(Process process, Options options)
      : process_(std::move(process)), max_batch_(std::max<std::size_t>(1, options.max_batch)) {
    const int workers = std::max(1, options.workers);
    workers_.reserve(static_cast<std::size_t>(workers));
    for (int i = 0; i < workers; ++i) {
      workers_.emplace_back([this] { Run(); });
      pthread_setname_np(workers_.back().native_handle(), options.thread_name);
    }
  }
  ~BatchQueue() { Stop(); }
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // The item's value once its batch has run. Throws what the batch's Process threw, the item's own error, or
  // ApiError(kUnavailable) once Stop has begun.
  Value Submit(Item item) {
    Waiter waiter;
    waiter.item = std::move(item);
    bool wake = false;
    {
      std::lock_guard lock(mu_);
      if (stopping_) throw ApiError(ErrorCode::kUnavailable, "the server is shutting down");
      queue_.push_back(&waiter);
      wake = idle_workers_ > 0;
    }
    // Under load no worker is idle: the next batch takes this item without a wake-up call.
    if (wake) work_cv_.notify_one();
    {
      std::unique_lock lock(waiter.mu);
      waiter.cv.wait(lock, [&waiter] { return waiter.done; });
    }
    if (waiter.outcome.error) std::rethrow_exception(waiter.outcome.error);
    return std::move(waiter.outcome.value);
  }

  // Idempotent; may be called from any thread, but not from a Process.
  void Stop() {
    std::deque<Waiter*> queued;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      queued.swap(queue_);
    }
    work_cv_.notify_all();
    if (!queued.empty()) {
      const auto error = std::make_exception_ptr(ApiError(ErrorCode::kUnavailable, "the server is shutting down"));
      for (Waiter* w : queued) Deliver(*w, Outcome{Value{}, error});
    }
    // The workers end once their batch in flight is answered.
    std::lock_guard lock(join_mu_);
    for (auto& worker : workers_) {
      if (worker.joinable()) worker.join();
    }
  }

  // Batches run and items taken into them so far (the mean batch size), and items queued now.
  struct Counts {
    long long batches = 0;
    long long items = 0;
    std::size_t queued = 0;
  };
  Counts counts() const {
    std::lock_guard lock(mu_);
    Counts counts = counts_;
    counts.queued = queue_.size();
    return counts;
  }

 private:
  // One Submit in flight, on its caller's stack. The worker that answers it writes the outcome and done under the
  // waiter's own mutex and notifies while still holding it, so the caller -- which needs that mutex to see done --
  // cannot return and destroy the waiter before the worker is finished with it. A mutex per waiter rather than the
  // queue's: a worker answering a batch wakes each caller without the callers then queueing on one lock.
  struct Waiter {
    Item item{};
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Outcome outcome;
  };

  static void Deliver(Waiter& waiter, Outcome outcome) {
    std::lock_guard lock(waiter.mu);
    waiter.outcome = std::move(outcome);
    waiter.done = true;
    waiter.cv.notify_one();
  }

  void Run() {
    std::vector<Waiter*> batch;
    std::vector<Item> items;
    batch.reserve(max_batch_);
    items.reserve(max_batch_);
    for (;;) {
      batch.clear();
      {
        std::unique_lock lock(mu_);
        ++idle_workers_;
        work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        --idle_workers_;
        if (stopping_) return;  // Stop answers what is still queued
        while (!queue_.empty() && batch.size() < max_batch_) {
          batch.push_back(queue_.front());
          queue_.pop_front();
        }
        ++counts_.batches;
        counts_.items += static_cast<long long>(batch.size());
      }
      items.clear();
      for (Waiter* w : batch) items.push_back(std::move(w->item));
      std::vector<Outcome> outcomes;
      std::exception_ptr error;
      try {
        outcomes = process_(std::span<Item>(items));
        if (outcomes.size() != batch.size()) throw std::logic_error("a batch returned an outcome count of its own");
      } catch (...) {
        error = std::current_exception();
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Deliver(*batch[i], error ? Outcome{Value{}, error} : std::move(outcomes[i]));
      }
    }
  }

  const Process process_;
  const std::size_t max_batch_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // workers: something queued, or Stop
  std::deque<Waiter*> queue_;        // guarded by mu_
  int idle_workers_ = 0;             // guarded by mu_: workers waiting on work_cv_
  bool stopping_ = false;            // guarded by mu_
  Counts counts_;                    // guarded by mu_
  std::mutex join_mu_;               // one Stop joins the workers
  std::vector<std::thread> workers_;
};

}  // namespace rightsd
