// The bounded task queue behind the HTTP server: connections beyond threads + max_queued run on the overflow lane.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "http_queue.h"

using rightsd::BoundedTaskQueue;

namespace {

// A gate the jobs wait at until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void Wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

bool WaitUntil(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

TEST_CASE("http queue: connections beyond threads + max_queued go to the overflow lane, the others wait their turn",
          "[http]") {
  constexpr int kThreads = 2;
  constexpr int kQueued = 3;
  BoundedTaskQueue queue(kThreads, kQueued);
  Gate gate;
  std::atomic<int> started{0}, overflowed{0}, served{0};
  auto job = [&] {
    if (BoundedTaskQueue::OnOverflowLane()) {
      ++overflowed;  // answered at once, without waiting at the gate
      return;
    }
    ++started;
    gate.Wait();
    ++served;
  };
  // Both workers busy first, so that what follows is queued, not picked up.
  for (int i = 0; i < kThreads; ++i) queue.enqueue(job);
  REQUIRE(WaitUntil([&] { return started == kThreads; }));
  for (int i = 0; i < kQueued; ++i) queue.enqueue(job);
  CHECK(overflowed == 0);
  for (int i = 0; i < 5; ++i) queue.enqueue(job);
  REQUIRE(WaitUntil([&] { return overflowed == 5; }));
  CHECK(started == kThreads);
  gate.Open();
  REQUIRE(WaitUntil([&] { return served == kThreads + kQueued; }));
  CHECK(overflowed == 5);
  // With the workers idle again, a new connection is served normally.
  queue.enqueue(job);
  REQUIRE(WaitUntil([&] { return served == kThreads + kQueued + 1; }));
  CHECK(overflowed == 5);
  CHECK_FALSE(BoundedTaskQueue::OnOverflowLane());  // the caller's thread is not a lane thread
  queue.shutdown();
}

TEST_CASE("http queue: max_queued 0 admits a connection only when a worker is idle", "[http]") {
  BoundedTaskQueue queue(1, 0);
  Gate gate;
  std::atomic<int> started{0}, overflowed{0};
  queue.enqueue([&] {
    ++started;
    gate.Wait();
  });
  REQUIRE(WaitUntil([&] { return started == 1; }));
  queue.enqueue([&] { overflowed += BoundedTaskQueue::OnOverflowLane() ? 1 : 0; });
  REQUIRE(WaitUntil([&] { return overflowed == 1; }));
  gate.Open();
  queue.shutdown();
}
