#pragma once
#include "errors.h"

namespace rightsd {

namespace detail {
template <typename Txn, typename Fn>
auto RunOnLease(DbPool& pool, Fn&& fn, bool retry_lost) -> decltype(fn(std::declval<Txn&>())) {
  bool reconnected = !retry_lost;
  for (int attempt = 1;; ++attempt) {
    auto lease = pool.Acquire();
    // A connection lost before COMMIT committed nothing: one more try on a fresh connection hides a restart that
    // happened between two calls. Lost during COMMIT (in_doubt) it may have committed: never retried here.
    auto lost = [&](const char* detail) {
      lease.Discard();
      if (reconnected) throw ApiError(ErrorCode::kUnavailable, detail);
      reconnected = true;
    };
    try {
      Txn txn(lease.conn());
      if constexpr (std::is_void_v<decltype(fn(txn))>) {
        fn(txn);
        txn.commit();
        return;
      } else {
        auto result = fn(txn);
        txn.commit();
        return result;
      }
    } catch (const pqxx::transaction_rollback&) {
      // Deadlock or serialization failure: the server rolled the whole transaction back, so running it again is
      // safe. (libpqxx 6.4 derives these from pqxx::failure, not sql_error: the SQLSTATE check below never saw them,
      // and a deadlock between two tally updates reached a caller as a 500.)
      if (attempt < 3) continue;
      throw ApiError(ErrorCode::kUnavailable, "the database aborted this change three times (deadlock or serialization "
                                              "failure); retry");
    } catch (const pqxx::in_doubt_error&) {
      lease.Discard();
      throw ApiError(ErrorCode::kUnavailable, "the database connection was lost during commit");
    } catch (const pqxx::broken_connection&) {
      lost("the database is unreachable");
      continue;
    } catch (const pqxx::sql_error& e) {
      const std::string state = e.sqlstate();
      // libpq reports a connection that died mid-statement with no SQLSTATE at all.
      if (IsUnavailable(state) || !lease.conn().is_open()) {
        lost("the database is unavailable");
        continue;
      }
      if ((state == "40001" || state == "40P01") && attempt < 3) continue;
      if (state == "57014") throw ApiError(ErrorCode::kUnavailable, "the database did not answer in time");
      throw;
    }
  }
}
}  // namespace detail

template <typename Fn>
auto WithTransaction(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::work&>())) {
  return detail::RunOnLease<pqxx::work>(pool, std::forward<Fn>(fn), true);
}

template <typename Fn>
auto WithSingleRead(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::nontransaction&>())) {
  return detail::RunOnLease<pqxx::nontransaction>(pool, std::forward<Fn>(fn), true);
}

template <typename Fn>
auto WithSingleWrite(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::nontransaction&>())) {
  return detail::RunOnLease<pqxx::nontransaction>(pool, std::forward<Fn>(fn), false);
}

}  // namespace rightsd
