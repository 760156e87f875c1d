#include "request_reader.h"

#include <pthread.h>

#include <algorithm>
#include <stdexcept>

#include "errors.h"

namespace rightsd {

// One Get in flight, on its caller's stack. The reader that answers it writes result and done under the waiter's
// own mutex and notifies while still holding it, so the caller -- which needs that mutex to see done -- cannot
// return and destroy the waiter before the reader is finished with it. A mutex per waiter rather than the queue's:
// a reader answering a batch wakes each caller without the callers then queueing on one lock.
struct RequestReader::Waiter {
  ReadKey key;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ReadResult result;
};

RequestReader::RequestReader(Fetch fetch, Options options)
    : fetch_(std::move(fetch)), max_batch_(std::max<std::size_t>(1, options.max_batch)) {
  const int readers = std::max(1, options.readers);
  readers_.reserve(static_cast<std::size_t>(readers));
  for (int i = 0; i < readers; ++i) {
    readers_.emplace_back([this] { Run(); });
    pthread_setname_np(readers_.back().native_handle(), "rightsd-read");
  }
}

RequestReader::~RequestReader() { Stop(); }

std::optional<RequestRecord> RequestReader::Get(std::string_view id, bool with_values) {
  Waiter waiter;
  waiter.key = ReadKey{id, with_values};
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw ApiError(ErrorCode::kUnavailable, "the server is shutting down");
    queue_.push_back(&waiter);
    wake = idle_readers_ > 0;
  }
  // Under load no reader is idle: the next batch takes this request without a wake-up call.
  if (wake) work_cv_.notify_one();
  {
    std::unique_lock lock(waiter.mu);
    waiter.cv.wait(lock, [&waiter] { return waiter.done; });
  }
  if (waiter.result.error) std::rethrow_exception(waiter.result.error);
  return std::move(waiter.result.record);
}

void RequestReader::Deliver(Waiter& waiter, ReadResult result) {
  std::lock_guard lock(waiter.mu);
  waiter.result = std::move(result);
  waiter.done = true;
  waiter.cv.notify_one();
}

void RequestReader::Run() {
  std::vector<Waiter*> batch;
  std::vector<ReadKey> keys;
  batch.reserve(max_batch_);
  keys.reserve(max_batch_);
  for (;;) {
    batch.clear();
    {
      std::unique_lock lock(mu_);
      ++idle_readers_;
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_readers_;
      if (stopping_) return;  // Stop answers what is still queued
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(queue_.front());
        queue_.pop_front();
      }
      ++counts_.batches;
      counts_.requests += static_cast<long long>(batch.size());
    }
    keys.clear();
    for (const Waiter* w : batch) keys.push_back(w->key);
    std::vector<ReadResult> results;
    std::exception_ptr error;
    try {
      results = fetch_(keys);
      if (results.size() != batch.size()) throw std::logic_error("a batched read returned a result count of its own");
    } catch (...) {
      error = std::current_exception();
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Deliver(*batch[i], error ? ReadResult{std::nullopt, error} : std::move(results[i]));
    }
  }
}

void RequestReader::Stop() {
  std::deque<Waiter*> queued;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queued.swap(queue_);
  }
  work_cv_.notify_all();
  if (!queued.empty()) {
    const auto error = std::make_exception_ptr(ApiError(ErrorCode::kUnavailable, "the server is shutting down"));
    for (Waiter* w : queued) Deliver(*w, ReadResult{std::nullopt, error});
  }
  // The readers end once their batch in flight is answered.
  std::lock_guard lock(join_mu_);
  for (auto& reader : readers_) {
    if (reader.joinable()) reader.join();
  }
}

RequestReader::Counts RequestReader::counts() const {
  std::lock_guard lock(mu_);
  Counts counts = counts_;
  counts.queued = queue_.size();
  return counts;
}

}  // namespace rightsd
