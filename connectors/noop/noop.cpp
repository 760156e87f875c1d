#include "connectors/noop/noop.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace rightsd::connectors::noop {

namespace {

using Clock = std::chrono::steady_clock;

// Answers due later, all from one thread: a simulated slow system (delay_ms) holds no thread per call in flight,
// as a real HTTP connector holds none.
class DelayLine {
 public:
  DelayLine() : thread_([this] { Run(); }) {}
  ~DelayLine() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();  // answers not yet due are dropped: their tasks' leases are given back or expire
  }
  void At(Clock::time_point due, std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push(Entry{due, seq_++, std::move(fn)});
    }
    cv_.notify_one();
  }

 private:
  struct Entry {
    Clock::time_point due;
    unsigned long long seq;
    std::function<void()> fn;
    bool operator>(const Entry& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void Run() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      // A copy: wait_until reads its deadline while the lock is released, when a push may reallocate the heap
      // under a reference to the top entry (ASan caught exactly that).
      if (const Clock::time_point due = queue_.top().due; Clock::now() < due) {
        cv_.wait_until(lock, due);
        continue;
      }
      auto fn = std::move(const_cast<Entry&>(queue_.top()).fn);
      queue_.pop();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue_;
  unsigned long long seq_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

class NoopConnector final : public Connector {
 public:
  NoopConnector(std::string outcome, std::chrono::milliseconds delay)
      : outcome_(std::move(outcome)), delay_(delay), line_(delay.count() > 0 ? std::make_unique<DelayLine>() : nullptr) {}
  bool Supports(TaskAction) const override { return true; }
  bool AnswersInline() const override { return !line_; }
  void Run(const TaskInput& input, OutcomeCallback done) override {
    Outcome o = Answer(input);
    if (!line_) {
      // Inline: the dispatcher only queues the outcome, so answering on its thread costs it a queue push.
      done(std::move(o));
      return;
    }
    line_->At(Clock::now() + delay_, [done = std::move(done), o = std::move(o)]() mutable { done(std::move(o)); });
  }

 private:
  Outcome Answer(const TaskInput& input) const {
    nlohmann::json receipt = {{"connector", "noop"}, {"action", ToString(input.action)}};
    if (input.action == TaskAction::kLocate) {
      Outcome o;
      o.kind = OutcomeKind::kRetainedExempt;
      receipt["retain_basis"] = input.retain_basis;
      o.receipt = receipt;
      return o;
    }
    if (outcome_ == "not_found") return Outcome::NotFound(receipt);
    Outcome o = Outcome::Done(receipt);
    if (input.action == TaskAction::kAccess) o.records = nlohmann::json::object();
    return o;
  }

  std::string outcome_;
  std::chrono::milliseconds delay_;
  std::unique_ptr<DelayLine> line_;
};

}  // namespace

std::unique_ptr<Connector> MakeNoopConnector(const nlohmann::json& settings, const ConnectorEnv&) {
  return std::make_unique<NoopConnector>(settings.value("outcome", "done"),
                                         std::chrono::milliseconds(settings.value("delay_ms", 0)));
}

}  // namespace rightsd::connectors::noop
