#include "db_pool.h"

#include <poll.h>

#include <algorithm>

#include <fmt/format.h>

#include "log.h"

namespace rightsd {

namespace {

// libpq waits for a TCP connect without limit unless connect_timeout is set: an unreachable database host would
// hold every caller past the pool's acquire timeout. Whole seconds, at least 2 (libpq's minimum).
std::string WithConnectTimeout(const std::string& url, std::chrono::milliseconds acquire_timeout) {
  if (url.find("connect_timeout") != std::string::npos) return url;  // the operator chose one
  const long seconds = std::max<long>(2, static_cast<long>((acquire_timeout.count() + 999) / 1000));
  if (url.starts_with("postgres://") || url.starts_with("postgresql://")) {
    return fmt::format("{}{}connect_timeout={}", url, url.find('?') == std::string::npos ? '?' : '&', seconds);
  }
  return fmt::format("{} connect_timeout={}", url, seconds);
}

// An idle pooled connection has nothing to read. If its socket is readable, the server has sent something
// unasked -- after a restart, the FATAL "terminating connection due to administrator command" -- or closed it.
bool LooksDead(pqxx::connection& conn) {
  if (!conn.is_open()) return true;
  const int fd = conn.sock();
  if (fd < 0) return true;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) != 0;
}

constexpr auto kBackoffFirst = std::chrono::milliseconds(50);
constexpr auto kBackoffMax = std::chrono::milliseconds(1000);

}  // namespace

DbPool::DbPool(Options options, Initializer init) : options_(std::move(options)), init_(std::move(init)) {}

DbPool::Lease::~Lease() {
  if (pool_) pool_->Release(std::move(conn_));
}

std::unique_ptr<pqxx::connection> DbPool::Connect() const {
  auto conn = std::make_unique<pqxx::connection>(WithConnectTimeout(options_.url, options_.acquire_timeout));
  pqxx::nontransaction setup(*conn);
  setup.exec(fmt::format("SET statement_timeout = {}; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; "
                         "SET application_name = {}",
                         options_.statement_timeout_ms, setup.quote(options_.application_name)));
  return conn;
}

DbPool::Lease DbPool::Acquire() {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
  while (idle_.empty() && leased_or_opening_ >= options_.size) {
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        leased_or_opening_ >= options_.size) {
      throw ApiError(ErrorCode::kUnavailable, "all database connections are busy");
    }
  }
  ++leased_or_opening_;
  while (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    if (!LooksDead(*conn)) return Lease(this, std::move(conn));
    // Closing it may send a terminate message; keep the lock out of that.
    lock.unlock();
    conn.reset();
    lock.lock();
  }
  if (connect_failures_ > 0 && std::chrono::steady_clock::now() < next_connect_at_) {
    --leased_or_opening_;
    lock.unlock();
    cv_.notify_one();
    throw ApiError(ErrorCode::kUnavailable, "the database is unreachable; reconnecting");
  }
  // Callers arriving during this attempt wait for it (they see next_connect_at_ in the future) rather than
  // each opening a connection to a database that may be down.
  next_connect_at_ = std::chrono::steady_clock::now() + options_.acquire_timeout;
  lock.unlock();
  try {
    auto conn = Connect();
    if (init_) init_(*conn);
    lock.lock();
    if (connect_failures_ > 0) {
      LogInfo("database: connected again after {} failed attempts", connect_failures_);
    }
    connect_failures_ = 0;
    next_connect_at_ = {};
    lock.unlock();
    return Lease(this, std::move(conn));
  } catch (const std::exception& e) {
    lock.lock();
    --leased_or_opening_;
    ++connect_failures_;
    const auto backoff = std::min<std::chrono::milliseconds>(
        kBackoffMax, kBackoffFirst * (1 << std::min(connect_failures_ - 1, 10)));
    next_connect_at_ = std::chrono::steady_clock::now() + backoff;
    const int failures = connect_failures_;
    lock.unlock();
    cv_.notify_one();
    // Once per outage and then every 10th attempt: a database that is down for a minute must not flood the log.
    if (failures == 1 || failures % 10 == 0) {
      LogWarning("database: cannot connect (attempt {}): {}", failures, e.what());
    }
    throw ApiError(ErrorCode::kUnavailable, "the database is unreachable");
  }
}

void DbPool::Release(std::unique_ptr<pqxx::connection> conn) {
  {
    std::lock_guard lock(mu_);
    --leased_or_opening_;
    if (conn && conn->is_open()) idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

bool IsUnavailable(const std::string& s) {
  return s.starts_with("08") || s == "57P01" || s == "57P02" || s == "57P03" || s.starts_with("53");
}

}  // namespace rightsd
