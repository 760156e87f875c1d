#include "sweeper.h"

#include "log.h"

namespace rightsd {

void Sweeper::Start() {
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void Sweeper::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (lock_conn_) {
    lock_conn_.reset();  // closing the session releases the advisory lock
    if (holds_lock_) LogInfo("sweeper: lock released");
    holds_lock_ = false;
  }
}

bool Sweeper::EnsureLock() {
  try {
    if (lock_conn_ && holds_lock_) {
      // The lock lives as long as this session: check that the session is still there.
      pqxx::nontransaction ping(*lock_conn_);
      ping.exec("SELECT 1");
      return true;
    }
    // One session kept open while waiting, rather than a new connection for every try.
    if (!lock_conn_) lock_conn_ = pool_.Connect();
    pqxx::nontransaction txn(*lock_conn_);
    const bool got = txn.exec_params1("SELECT pg_try_advisory_lock($1)", kSweeperLockKey)[0].as<bool>();
    if (!got) return false;
    holds_lock_ = true;
    LogInfo("sweeper: lock acquired; this process sweeps SLA states");
    return true;
  } catch (const std::exception& e) {
    if (holds_lock_) LogWarning("sweeper: lock session lost: {}", e.what());
    lock_conn_.reset();
    holds_lock_ = false;
    return false;
  }
}

void Sweeper::RunOnce() {
  const int changed = store_.SweepSla(now_());
  if (changed > 0) LogInfo("sweeper: {} requests changed sla state", changed);
}

void Sweeper::Loop() {
  const auto sweep_every = std::chrono::milliseconds(config_.interval_ms);
  // A failed round is tried again sooner than the next regular one, and so is the lock while another process
  // holds it (the holder may die at any time).
  const auto retry_every = std::min(sweep_every, std::chrono::milliseconds(1000));
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
    }
    auto wait = retry_every;
    if (EnsureLock()) {
      try {
        RunOnce();
        wait = sweep_every;
      } catch (const std::exception& e) {
        LogWarning("sweeper: round failed: {}", e.what());
      }
    }
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, wait, [this] { return stopping_; });
    if (stopping_) return;
  }
}

}  // namespace rightsd
