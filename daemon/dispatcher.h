// The dispatcher: claims due tasks (earliest respond_by first, FOR UPDATE SKIP LOCKED, under a lease), hands each
// to its system's connector, and commits the outcomes -- retries with backoff and jitter or the peer's
// Retry-After, dead letters after max_attempts, the request completed when its last task finishes. It also
// delivers signed status callbacks from the outbox.
//
// Threads: one loop thread claims and waits (LISTEN rightsd_tasks + an eventfd, never a busy poll); connector
// outcomes arrive on any thread and are queued; committer threads write them. A remote call holds no thread.
// Connectors that answer inline (noop) are run inside the claiming transaction; through a backlog a round of them is
// split into engine.inline_workers transactions, the loop thread running one and a helper thread each of the others
// for the length of the round.
// Per system: at most max_concurrency tasks in flight and a token bucket of rate_per_second/burst, so one system's
// API allowance is never exhausted and a slow system never blocks the others.
// A process killed mid-task loses nothing: its leases expire and any dispatcher takes the tasks over.
// Start/Stop from one thread.
#pragma once
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "data_map.h"
#include "db_pool.h"
#include "store.h"

namespace rightsd {

class Dispatcher {
 public:
  struct Options {
    Config::Engine engine;
    Config::Callbacks callbacks;
    std::string callback_secret;  // empty: callbacks are not delivered
  };
  Dispatcher(DbPool& pool, Store& store, const DataMap& data_map, connectors::HttpClient* http, Options options,
             std::function<Timestamp()> now);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void Start();
  // Stops claiming, lets in-flight tasks finish until the drain deadline, then gives the rest back (their leases
  // released, so another process takes them at once). Returns how many were given back.
  int Stop();
  const std::string& owner() const;
  int InFlight() const;

  struct Shared;  // state that outlives the dispatcher for late connector callbacks

 private:
  struct ClaimResult {
    bool more = false;                                    // some system filled its batch: claim again at once
    std::vector<std::string> open_systems;                // systems with a free slot and a token
    std::optional<std::chrono::milliseconds> token_wait;  // a system with free slots waits for its next token
  };
  void Loop();
  ClaimResult ClaimRound();
  // One round of the systems whose connector answers inline, in one or more transactions at once. Out: `full`,
  // some system filled its limit; `commits`, transactions that wrote outcomes, and `largest_commit`, the most
  // outcomes one of them wrote; `error`, the first failure (the other transactions committed, and what they did is
  // in the result).
  struct InlineTotals {
    bool full = false;
    int commits = 0;
    long long largest_commit = 0;
    std::exception_ptr error;
  };
  Store::InlineRound RunInlineRound(const std::vector<std::pair<std::string, int>>& limits, const RetryPolicy& policy,
                                    const std::function<connectors::Outcome(const ClaimedTask&)>& run,
                                    InlineTotals& totals);
  void DeliverCallbacks();
  void Committer();
  // Writes a batch of outcomes (one transaction, or one by one after a failure); false if stopped meanwhile.
  bool CommitOutcomes(const std::vector<Store::OutcomeRef>& refs, const RetryPolicy& policy);

  DbPool& pool_;
  Store& store_;
  const DataMap& data_map_;
  connectors::HttpClient* http_;
  Options options_;
  std::function<Timestamp()> now_;
  std::shared_ptr<Shared> shared_;
  std::thread loop_;
  bool inline_backlog_ = false;  // the last inline round filled a batch (the loop thread's alone)
  std::vector<std::thread> committers_;
};

// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>": what a callback receiver checks.
std::string CallbackSignature(const std::string& secret, long long unix_seconds, const std::string& body);

}  // namespace rightsd
