#include "dispatcher.h"

#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <system_error>

#include <fmt/format.h>

#include "crypto.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"

namespace rightsd {

namespace {

using Clock = std::chrono::steady_clock;

// Outcomes per transaction at most: enough that the commit (one fsync, a few statements) is shared by hundreds of
// tasks, small enough that a transaction holds its request locks for milliseconds.
constexpr int kMaxCommitBatch = 500;

class TokenBucket {
 public:
  TokenBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst), at_(Clock::now()) {}
  int Available() {
    Refill();
    return static_cast<int>(tokens_);
  }
  void Take(int n) { tokens_ -= n; }
  Clock::duration UntilNext() {
    Refill();
    if (tokens_ >= 1) return Clock::duration::zero();
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((1 - tokens_) / rate_));
  }

 private:
  void Refill() {
    const auto now = Clock::now();
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - at_).count() * rate_);
    at_ = now;
  }
  double rate_, burst_, tokens_;
  Clock::time_point at_;
};

class TasksListener final : public pqxx::notification_receiver {
 public:
  explicit TasksListener(pqxx::connection& c) : pqxx::notification_receiver(c, "rightsd_tasks") {}
  void operator()(const std::string&, int) override {}
};

}  // namespace

struct Dispatcher::Shared {
  std::string owner;
  int event_fd = -1;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;     // the loop stops claiming
  bool closed = false;       // committers stop; late outcomes are dropped (their leases were given back)
  // What is queued for the committers: a task outcome or a callback delivery result.
  struct Item {
    std::optional<ClaimedTask> task;
    connectors::Outcome outcome;
    std::optional<CallbackDelivery> callback;
    bool delivered = false;
    std::string error;
  };
  std::deque<Item> queue;
  std::map<std::string, ClaimedTask> in_flight;  // task id -> task
  std::map<std::string, int> in_flight_by_system;
  int callbacks_in_flight = 0;
  std::map<std::string, TokenBucket> buckets;  // the loop thread's alone: no lock
  long long commits = 0, committed = 0, largest_commit = 0;  // outcome transactions, outcomes in them

  void Wake() const {
    const uint64_t one = 1;
    if (event_fd >= 0) (void)!::write(event_fd, &one, sizeof one);
  }
  void Push(Item item) {
    {
      std::lock_guard lock(mu);
      if (closed) return;
      queue.push_back(std::move(item));
    }
    // notify_all, not notify_one: Stop() waits on this same condition variable for the drain, and a single wake-up
    // that reached it (whose predicate is still false while the queue holds this item) left every committer asleep,
    // so a drain stalled until its deadline and gave back tasks whose outcomes were already known.
    cv.notify_all();
  }
};

Dispatcher::Dispatcher(DbPool& pool, Store& store, const DataMap& data_map, connectors::HttpClient* http,
                       Options options, std::function<Timestamp()> now)
    : pool_(pool),
      store_(store),
      data_map_(data_map),
      http_(http),
      options_(std::move(options)),
      now_(std::move(now)),
      shared_(std::make_shared<Shared>()) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  shared_->owner = fmt::format("{}:{}:{}", host, ::getpid(), NewUuid().substr(0, 8));
  shared_->event_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Dispatcher::~Dispatcher() {
  Stop();
  if (shared_->event_fd >= 0) {
    std::lock_guard lock(shared_->mu);
    ::close(shared_->event_fd);
    shared_->event_fd = -1;
  }
}

const std::string& Dispatcher::owner() const { return shared_->owner; }

int Dispatcher::InFlight() const {
  std::lock_guard lock(shared_->mu);
  return static_cast<int>(shared_->in_flight.size());
}

void Dispatcher::Start() {
  constexpr int kCommitters = 2;
  for (int i = 0; i < kCommitters; ++i) committers_.emplace_back([this] { Committer(); });
  loop_ = std::thread([this] { Loop(); });
  LogInfo("dispatcher {}: started for {} systems", shared_->owner, data_map_.systems().size());
}

int Dispatcher::Stop() {
  if (!loop_.joinable()) return 0;
  {
    std::lock_guard lock(shared_->mu);
    shared_->stopping = true;
  }
  shared_->Wake();
  loop_.join();
  // Drain: in-flight tasks may still finish and be committed until the deadline.
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.engine.drain_timeout_ms);
  std::vector<std::string> leftover;
  {
    std::unique_lock lock(shared_->mu);
    shared_->cv.wait_until(lock, deadline, [&] {
      return shared_->in_flight.empty() && shared_->queue.empty() && shared_->callbacks_in_flight == 0;
    });
    for (const auto& [id, task] : shared_->in_flight) leftover.push_back(id);
    shared_->closed = true;
    shared_->queue.clear();
  }
  shared_->cv.notify_all();
  for (auto& t : committers_) t.join();
  committers_.clear();
  if (!leftover.empty()) {
    try {
      store_.ReleaseLeases(leftover, shared_->owner);
    } catch (const std::exception& e) {
      LogWarning("dispatcher {}: could not give back {} tasks ({}); their leases will expire", shared_->owner,
                 leftover.size(), e.what());
    }
  }
  {
    std::lock_guard lock(shared_->mu);
    LogInfo("dispatcher {}: {} outcomes in {} commits; outcomes per commit: mean {:.1f}, max {}", shared_->owner,
            shared_->committed, shared_->commits,
            shared_->commits ? static_cast<double>(shared_->committed) / static_cast<double>(shared_->commits) : 0.0,
            shared_->largest_commit);
  }
  LogInfo("dispatcher {}: stopped; {} unfinished tasks given back", shared_->owner, leftover.size());
  return static_cast<int>(leftover.size());
}

void Dispatcher::Committer() {
  const RetryPolicy policy{std::chrono::milliseconds(options_.engine.backoff_base_ms),
                           std::chrono::milliseconds(options_.engine.backoff_max_ms)};
  for (;;) {
    // Whatever is queued, up to kMaxCommitBatch outcomes, goes into one transaction: under load the batches grow by
    // themselves (outcomes queue while the previous commit runs), with a lone outcome nothing waits for company.
    std::vector<Shared::Item> tasks;
    std::vector<Shared::Item> callbacks;
    {
      std::unique_lock lock(shared_->mu);
      shared_->cv.wait(lock, [&] { return shared_->closed || !shared_->queue.empty(); });
      if (shared_->closed) return;
      while (!shared_->queue.empty() && static_cast<int>(tasks.size()) < kMaxCommitBatch) {
        auto& item = shared_->queue.front();
        (item.callback ? callbacks : tasks).push_back(std::move(item));
        shared_->queue.pop_front();
      }
    }
    for (const auto& item : callbacks) {
      try {
        store_.RecordCallbackResult(*item.callback, item.delivered, item.error, options_.callbacks.max_attempts,
                                    policy);
      } catch (const std::exception& e) {
        LogWarning("callbacks: cannot record delivery {}: {}", item.callback->id, e.what());
      }
      std::lock_guard lock(shared_->mu);
      --shared_->callbacks_in_flight;
      shared_->cv.notify_all();
    }
    if (tasks.empty()) continue;
    std::vector<Store::OutcomeRef> refs;
    refs.reserve(tasks.size());
    for (const auto& item : tasks) refs.push_back({&*item.task, &item.outcome});
    if (!CommitOutcomes(refs, policy)) return;
    {
      std::lock_guard lock(shared_->mu);
      for (const auto& item : tasks) {
        shared_->in_flight.erase(item.task->id);
        if (--shared_->in_flight_by_system[item.task->system] < 0) shared_->in_flight_by_system[item.task->system] = 0;
      }
      ++shared_->commits;
      shared_->committed += static_cast<long long>(tasks.size());
      shared_->largest_commit = std::max(shared_->largest_commit, static_cast<long long>(tasks.size()));
    }
    shared_->cv.notify_all();
    shared_->Wake();
  }
}

bool Dispatcher::CommitOutcomes(const std::vector<Store::OutcomeRef>& refs, const RetryPolicy& policy) {
  const auto record = [&](const std::vector<Store::OutcomeRef>& batch) {
    const auto written = store_.RecordOutcomes(batch, shared_->owner, policy, now_());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!written[i]) {
        LogWarning("request {}: task {} outcome dropped: the lease was lost to another process",
                   batch[i].task->request_id, batch[i].task->id);
      }
    }
  };
  // The database is away, or one outcome makes the batch fail. While the database is away (the pool cannot lend a
  // connection, or the connection broke) the same batch is tried again every 200 ms for as long as it takes: the
  // outcome is known and its side effect done, so dropping it would run the task again and replace its receipt
  // with the second run's ("nothing found"). When one outcome makes the batch fail, the outcomes are written one by
  // one so that it holds up only itself, and an outcome that fails kMaxOutcomeAttempts times for a reason other than
  // the database being away is dropped with an error line: its lease expires and the task runs again. If the process
  // stops first, the leases expire likewise (connectors are idempotent).
  constexpr int kMaxOutcomeAttempts = 50;
  bool whole = refs.size() > 1;
  std::vector<std::vector<Store::OutcomeRef>> pending;
  bool split = false;
  int front_failures = 0;
  const auto pause = [&] {
    std::unique_lock lock(shared_->mu);
    return !shared_->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return shared_->closed; });
  };
  for (;;) {
    try {
      if (whole) {
        record(refs);
        return true;
      }
      if (!split) {
        for (const auto& ref : refs) pending.push_back({ref});
        split = true;
      }
      while (!pending.empty()) {
        record(pending.front());
        pending.erase(pending.begin());
        front_failures = 0;
      }
      return true;
    } catch (const std::exception& e) {
      const auto* api = dynamic_cast<const ApiError*>(&e);
      const bool database_away = dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
                                 (api != nullptr && api->code() == ErrorCode::kUnavailable);
      const std::string why = api ? api->detail() : e.what();
      const auto& task = whole ? *refs.front().task : *pending.front().front().task;
      if (database_away) {
        static LogThrottle away_log(std::chrono::seconds(5));
        if (const auto v = away_log.Allow(); v.log) {
          LogWarning("dispatcher {}: cannot record {} outcomes yet, the database is away: {}{}", shared_->owner,
                     refs.size(), why, HeldBack(v));
        }
      } else {
        static LogThrottle failing_log(std::chrono::seconds(5));
        if (const auto v = failing_log.Allow(); v.log) {
          LogWarning("request {}: task {}{}: cannot record outcome yet: {}{}", task.request_id, task.id,
                     whole ? fmt::format(" and {} more", refs.size() - 1) : "", why, HeldBack(v));
        }
      }
      if (whole) {
        whole = false;
        continue;
      }
      if (!database_away && ++front_failures >= kMaxOutcomeAttempts) {
        LogError("request {}: task {}: outcome not recorded after {} attempts ({}); dropped, the task runs again "
                 "when its lease expires",
                 task.request_id, task.id, kMaxOutcomeAttempts, why);
        pending.erase(pending.begin());
        front_failures = 0;
        continue;
      }
      if (!pause()) return false;
    }
  }
}

Dispatcher::ClaimResult Dispatcher::ClaimRound() {
  auto& buckets = shared_->buckets;
  ClaimResult result;
  // Each system's share (free slots, tokens, claim_batch, an even part of what is left of max_in_flight, so that
  // the first systems of the data map cannot take it all), then one claim for all.
  std::vector<std::pair<std::string, int>> limits;
  std::map<std::string, const SystemPlan*> plans;
  {
    std::lock_guard lock(shared_->mu);
    int total_free = options_.engine.max_in_flight - static_cast<int>(shared_->in_flight.size());
    const int systems = static_cast<int>(data_map_.systems().size());
    const int share = systems > 0 ? std::max(1, (total_free + systems - 1) / systems) : 0;
    for (const auto& sys : data_map_.systems()) {
      if (total_free <= 0) break;
      auto bucket = buckets.try_emplace(sys.name, sys.rate_per_second, sys.burst).first;
      const int free = sys.max_concurrency - shared_->in_flight_by_system[sys.name];
      const int tokens = bucket->second.Available();
      if (tokens < 1 && free > 0) {
        const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(bucket->second.UntilNext()) +
                           std::chrono::milliseconds(1);
        result.token_wait = result.token_wait ? std::min(*result.token_wait, until) : until;
      }
      const int limit = std::min({free, tokens, options_.engine.claim_batch, share, total_free});
      if (limit <= 0) continue;
      result.open_systems.push_back(sys.name);
      limits.emplace_back(sys.name, limit);
      plans[sys.name] = &sys;
      total_free -= limit;
    }
  }
  if (limits.empty()) return result;
  const auto input_of = [](const ClaimedTask& task) {
    connectors::TaskInput input;
    input.request_id = task.request_id;
    input.task_id = task.id;
    input.system = task.system;
    input.request_type = task.request_type;
    input.action = connectors::ParseTaskAction(task.action).value_or(connectors::TaskAction::kAccess);
    input.identities = task.identities;
    input.corrections = task.corrections;
    input.attempt = task.attempts;
    input.continuation = task.continuation;
    input.retain_basis = task.retain_basis;
    return input;
  };
  // Systems whose connector answers inline are run inside the claiming transaction (Store::RunInline): no lease
  // to write, no committer hand-off, one row write per task.
  std::vector<std::pair<std::string, int>> inline_limits;
  for (auto it = limits.begin(); it != limits.end();) {
    if (plans.at(it->first)->connector->AnswersInline()) {
      inline_limits.push_back(*it);
      it = limits.erase(it);
    } else {
      ++it;
    }
  }
  if (!inline_limits.empty()) {
    const RetryPolicy policy{std::chrono::milliseconds(options_.engine.backoff_base_ms),
                             std::chrono::milliseconds(options_.engine.backoff_max_ms)};
    const auto started = std::chrono::steady_clock::now();
    // Called from more than one thread at once when the round is split (AnswersInline connectors allow it).
    const auto run = [&](const ClaimedTask& task) {
      connectors::Outcome answer = connectors::Outcome::Retry("connector did not answer inline");
      try {
        plans.at(task.system)->connector->Run(input_of(task), [&](connectors::Outcome o) { answer = std::move(o); });
      } catch (const std::exception& e) {
        LogError("system {}: connector threw: {}", task.system, e.what());
        answer = connectors::Outcome::Retry(fmt::format("connector error: {}", e.what()));
      }
      return answer;
    };
    InlineTotals totals;
    const auto round = RunInlineRound(inline_limits, policy, run, totals);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    for (const auto& [system, kind] : round.outcomes) {
      ProcessMetrics().ObserveTask(system, plans.at(system)->connector_type, connectors::ToString(kind), seconds);
    }
    for (const auto& [system, n] : round.claimed) buckets.at(system).Take(n);
    result.more = result.more || totals.full;
    inline_backlog_ = totals.full;
    {
      std::lock_guard lock(shared_->mu);
      shared_->commits += totals.commits;
      shared_->committed += static_cast<long long>(round.outcomes.size());
      shared_->largest_commit = std::max(shared_->largest_commit, totals.largest_commit);
    }
    if (totals.error) std::rethrow_exception(totals.error);
  }
  if (limits.empty()) return result;
  const auto claimed = store_.ClaimTasks(limits, shared_->owner, std::chrono::milliseconds(options_.engine.lease_ms));
  std::map<std::string, int> by_system;
  for (const auto& task : claimed) ++by_system[task.system];
  for (const auto& [system, limit] : limits) {
    const int n = by_system[system];
    if (n == limit) result.more = true;
    buckets.at(system).Take(n);
  }
  {
    // In flight before any connector runs: a connector that answers inline (noop) queues its outcome at once, and
    // a committer must find the task here.
    std::lock_guard lock(shared_->mu);
    for (const auto& task : claimed) {
      shared_->in_flight[task.id] = task;
      ++shared_->in_flight_by_system[task.system];
    }
  }
  for (const auto& task : claimed) {
    const SystemPlan& sys = *plans.at(task.system);
    const connectors::TaskInput input = input_of(task);
    std::weak_ptr<Shared> weak = shared_;
    auto done = [weak, task, connector = sys.connector_type, started = std::chrono::steady_clock::now()](
                    connectors::Outcome outcome) {
      ProcessMetrics().ObserveTask(
          task.system, connector, connectors::ToString(outcome.kind),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      if (auto shared = weak.lock()) shared->Push(Shared::Item{task, std::move(outcome), std::nullopt, false, {}});
    };
    try {
      sys.connector->Run(input, done);
    } catch (const std::exception& e) {
      // A connector must not throw; if one does, the task is retried like any transient failure.
      LogError("system {}: connector threw: {}", sys.name, e.what());
      done(connectors::Outcome::Retry(fmt::format("connector error: {}", e.what())));
    }
  }
  return result;
}

Store::InlineRound Dispatcher::RunInlineRound(const std::vector<std::pair<std::string, int>>& limits,
                                              const RetryPolicy& policy,
                                              const std::function<connectors::Outcome(const ClaimedTask&)>& run,
                                              InlineTotals& totals) {
  // A round is one transaction, and a transaction is one PostgreSQL backend on one core: through a backlog of
  // inline tasks, one round at a time kept the database at one core and the fan-out at half the machine. So when
  // the last round filled a batch, this one is split into inline_workers transactions run at once, each over the
  // tasks of its own share of the requests (Store::RunInline) -- disjoint rows, and no request locked by two of
  // them, which would make one skip the other's tasks. Each system's limit is divided among them, so the round
  // claims no more than one transaction would. Without a backlog a round stays one transaction (no empty claims).
  const int shares = inline_backlog_ ? options_.engine.inline_workers : 1;
  std::vector<std::vector<std::pair<std::string, int>>> share_limits(shares);
  for (const auto& [system, limit] : limits) {
    for (int k = 0; k < shares; ++k) {
      const int n = limit / shares + (k < limit % shares ? 1 : 0);
      if (n > 0) share_limits[k].emplace_back(system, n);
    }
  }
  std::vector<Store::InlineRound> rounds(shares);
  std::vector<std::exception_ptr> errors(shares);
  const Timestamp now = now_();
  const auto run_share = [&](int k) {
    if (share_limits[k].empty()) return;
    try {
      rounds[k] = store_.RunInline(share_limits[k], shared_->owner, policy, now, run, k, shares);
    } catch (...) {
      errors[k] = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  int unstarted = 1;  // the first share without a helper thread
  try {
    for (; unstarted < shares; ++unstarted) helpers.emplace_back(run_share, unstarted);
  } catch (const std::system_error& e) {
    // No thread to be had (a thread limit): the shares left run on this thread, one after another.
    LogWarning("dispatcher {}: cannot start an inline worker ({}); running its share here", shared_->owner, e.what());
  }
  run_share(0);
  for (; unstarted < shares; ++unstarted) run_share(unstarted);
  for (auto& t : helpers) t.join();

  Store::InlineRound merged;
  for (int k = 0; k < shares; ++k) {
    if (errors[k] && !totals.error) totals.error = errors[k];
    if (!rounds[k].outcomes.empty()) ++totals.commits;
    totals.largest_commit = std::max(totals.largest_commit, static_cast<long long>(rounds[k].outcomes.size()));
    for (const auto& [system, n] : share_limits[k]) {
      const auto it = rounds[k].claimed.find(system);
      const int claimed = it == rounds[k].claimed.end() ? 0 : it->second;
      if (claimed == n) totals.full = true;
      merged.claimed[system] += claimed;
    }
    merged.outcomes.insert(merged.outcomes.end(), rounds[k].outcomes.begin(), rounds[k].outcomes.end());
  }
  return merged;
}

void Dispatcher::DeliverCallbacks() {
  if (options_.callback_secret.empty() || !http_) return;
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->callbacks_in_flight >= 16) return;
  }
  const auto due = store_.ClaimCallbacks(16, std::chrono::milliseconds(options_.callbacks.timeout_ms * 3));
  for (const auto& d : due) {
    {
      std::lock_guard lock(shared_->mu);
      ++shared_->callbacks_in_flight;
    }
    connectors::HttpRequest req;
    req.method = "POST";
    req.url = d.url;
    req.body = d.body;
    req.timeout = std::chrono::milliseconds(options_.callbacks.timeout_ms);
    const long long t = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    req.headers = {{"Content-Type", "application/json"},
                   {"Rightsd-Signature", CallbackSignature(options_.callback_secret, t, d.body)},
                   {"Rightsd-Delivery", std::to_string(d.id)}};
    std::weak_ptr<Shared> weak = shared_;
    http_->Send(std::move(req), [weak, d](connectors::HttpResponse res) {
      auto shared = weak.lock();
      if (!shared) return;
      const bool ok = res.status >= 200 && res.status < 300;
      std::string error = ok ? "" : (res.status == 0 ? res.error : fmt::format("HTTP {}", res.status));
      {
        std::lock_guard lock(shared->mu);
        if (shared->closed) {
          --shared->callbacks_in_flight;
          return;
        }
      }
      shared->Push(Shared::Item{std::nullopt, {}, d, ok, error});
    });
  }
}

void Dispatcher::Loop() {
  std::unique_ptr<pqxx::connection> listen;
  std::unique_ptr<TasksListener> listener;
  auto next_renewal = Clock::now() + std::chrono::milliseconds(options_.engine.lease_ms / 3);
  for (;;) {
    {
      std::lock_guard lock(shared_->mu);
      if (shared_->stopping) return;
    }
    auto wait = std::chrono::milliseconds(5000);
    try {
      // libpq closes the socket of a connection it found broken and libpqxx's get_notifs() then returns 0 quietly:
      // without this check the loop would never LISTEN again after a database restart.
      if (listen && !listen->is_open()) {
        listener.reset();
        listen.reset();
      }
      if (!listen) {
        listen = pool_.Connect();
        listener = std::make_unique<TasksListener>(*listen);
      }
      if (Clock::now() >= next_renewal) {
        std::vector<std::string> ids;
        {
          std::lock_guard lock(shared_->mu);
          for (const auto& [id, task] : shared_->in_flight) ids.push_back(id);
        }
        store_.RenewLeases(ids, shared_->owner, std::chrono::milliseconds(options_.engine.lease_ms));
        next_renewal = Clock::now() + std::chrono::milliseconds(options_.engine.lease_ms / 3);
      }
      DeliverCallbacks();
      const ClaimResult claimed = ClaimRound();
      if (claimed.more) continue;  // a full batch: there may be more right now
      // Systems at their concurrency limit are woken by a completion (eventfd), rate-limited ones by their next
      // token; the others by NOTIFY or by the earliest task that falls due.
      if (const auto due = store_.NextDue(claimed.open_systems)) {
        const auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*due - now_());
        wait = std::clamp(until, std::chrono::milliseconds(1), wait);
      }
      if (claimed.token_wait) wait = std::min(wait, *claimed.token_wait);
    } catch (const std::exception& e) {
      LogWarning("dispatcher {}: {}; retrying in 1 s", shared_->owner, e.what());
      listener.reset();
      listen.reset();
      wait = std::chrono::milliseconds(1000);
    }
    // A system at its concurrency or rate limit is looked at again when a slot or a token frees up.
    wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::milliseconds(options_.engine.lease_ms / 3)));
    pollfd fds[2] = {{shared_->event_fd, POLLIN, 0}, {listen ? listen->sock() : -1, POLLIN, 0}};
    ::poll(fds, listen ? 2 : 1, static_cast<int>(wait.count()));
    uint64_t drained;
    while (::read(shared_->event_fd, &drained, sizeof drained) > 0) {
    }
    if (listen) {
      try {
        listen->get_notifs();
      } catch (const std::exception&) {
        listener.reset();
        listen.reset();
      }
    }
  }
}

std::string CallbackSignature(const std::string& secret, long long unix_seconds, const std::string& body) {
  const std::string signed_text = std::to_string(unix_seconds) + "." + body;
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()), secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return fmt::format("t={},v1={}", unix_seconds, ToHex(std::string_view(reinterpret_cast<const char*>(mac), sizeof mac)));
}

}  // namespace rightsd
