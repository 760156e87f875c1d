// The sweeper: in exactly one process at a time (a PostgreSQL session advisory lock held on a connection of its
// own), it moves open requests' SLA state as days pass (on_track -> at_risk -> breached). (It also sealed the
// audit trail until migration 0007; events are chained by the transactions that write them now.) Any process may die: the lock dies with its session and another process's
// sweeper takes over on its next attempt. Start/Stop from one thread; HoldsLock is thread-safe.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <pqxx/pqxx>

#include "config.h"
#include "db_pool.h"
#include "store.h"

namespace rightsd {

inline constexpr long kSweeperLockKey = 0x7269676874737701;  // "rightsw\x01"

class Sweeper {
 public:
  Sweeper(DbPool& pool, Store& store, Config::Sweeper config, std::function<Timestamp()> now)
      : pool_(pool), store_(store), config_(config), now_(std::move(now)) {}
  ~Sweeper() { Stop(); }

  void Start();
  void Stop();
  bool HoldsLock() const { return holds_lock_.load(); }

  // One round of work, for the loop and for tests: sweep SLA states.
  void RunOnce();

 private:
  void Loop();
  bool EnsureLock();

  DbPool& pool_;
  Store& store_;
  Config::Sweeper config_;
  std::function<Timestamp()> now_;
  std::unique_ptr<pqxx::connection> lock_conn_;
  std::atomic<bool> holds_lock_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace rightsd
