// A fixed-size pool of PostgreSQL connections. A lease gives one thread sole use of one connection (libpqxx
// connections must never be shared mid-operation). Acquire waits at most acquire_timeout and then fails with
// ApiError(kUnavailable); a connection found broken is dropped and replaced on a later acquire, so the pool heals
// by itself after a database restart.
//
// Database restarts: an idle connection whose server went away is noticed when it is leased (its socket is
// readable: the server's termination notice or EOF) and replaced at once. After a failed connect, Acquire answers
// kUnavailable without trying again until a backoff (50 ms doubling to 1 s) has passed, so that a database that is
// down costs callers no connect attempts each, and one that is back is used again within a second. Thread-safe.
#pragma once
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <pqxx/pqxx>

namespace rightsd {

class DbPool {
 public:
  struct Options {
    std::string url;
    int size = 8;
    std::chrono::milliseconds acquire_timeout{2000};
    int statement_timeout_ms = 5000;
    std::string application_name = "rightsd";
  };
  // Called on every new connection (prepare statements there).
  using Initializer = std::function<void(pqxx::connection&)>;

  DbPool(Options options, Initializer init);
  DbPool(const DbPool&) = delete;
  DbPool& operator=(const DbPool&) = delete;

  class Lease {
   public:
    Lease(DbPool* pool, std::unique_ptr<pqxx::connection> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), conn_(std::move(other.conn_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    pqxx::connection& conn() { return *conn_; }
    // The connection is broken or in an unknown state: close it instead of returning it.
    void Discard() { conn_.reset(); }

   private:
    DbPool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
  };

  Lease Acquire();
  // Opens one connection outside the pool (for LISTEN or a session advisory lock); throws on failure.
  std::unique_ptr<pqxx::connection> Connect() const;
  const Options& options() const { return options_; }

 private:
  void Release(std::unique_ptr<pqxx::connection> conn);

  Options options_;
  Initializer init_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  int leased_or_opening_ = 0;
  // Reconnect backoff after failed connects (guarded by mu_).
  int connect_failures_ = 0;
  std::chrono::steady_clock::time_point next_connect_at_{};
};

// Runs `fn(txn)` in a transaction on a leased connection and commits. Maps failures: a broken connection or
// server shutdown -> ApiError(kUnavailable) (and the connection is discarded) -- except that a connection lost
// before COMMIT is retried once on a fresh connection, since nothing was committed; a serialization failure or
// deadlock is retried up to 3 times; other SQL errors propagate as pqxx exceptions. `fn` may run more than once.
template <typename Fn>
auto WithTransaction(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::work&>()));

// The same for one statement that is atomic on its own (a read, or an INSERT whose rows all come from one statement
// with data-modifying CTEs), without the BEGIN and COMMIT round trips. `fn` must send exactly one statement. A
// read whose connection was lost is retried once like a transaction; a write is not (it may have run, as a
// transaction lost during COMMIT may have committed): the caller gets kUnavailable.
template <typename Fn>
auto WithSingleRead(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::nontransaction&>()));
template <typename Fn>
auto WithSingleWrite(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::nontransaction&>()));

// SQLSTATE classes that mean "the database is not there right now" (08xxx, 57P0x, 53xxx).
bool IsUnavailable(const std::string& sqlstate);

}  // namespace rightsd

#include "db_pool_inl.h"
