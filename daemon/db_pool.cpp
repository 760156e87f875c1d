#include "db_pool.h"

#include <fmt/format.h>

#include "log.h"

namespace rightsd {

DbPool::DbPool(Options options, Initializer init) : options_(std::move(options)), init_(std::move(init)) {}

DbPool::Lease::~Lease() {
  if (pool_) pool_->Release(std::move(conn_));
}

std::unique_ptr<pqxx::connection> DbPool::Connect() const {
  auto conn = std::make_unique<pqxx::connection>(options_.url);
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
  if (!idle_.empty()) {
    auto conn = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(conn));
  }
  lock.unlock();
  try {
    auto conn = Connect();
    if (init_) init_(*conn);
    return Lease(this, std::move(conn));
  } catch (const std::exception& e) {
    {
      std::lock_guard relock(mu_);
      --leased_or_opening_;
    }
    cv_.notify_one();
    LogWarning("database: cannot connect: {}", e.what());
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
