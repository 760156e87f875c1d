#pragma once
#include "errors.h"

namespace rightsd {

template <typename Fn>
auto WithTransaction(DbPool& pool, Fn&& fn) -> decltype(fn(std::declval<pqxx::work&>())) {
  for (int attempt = 1;; ++attempt) {
    auto lease = pool.Acquire();
    try {
      pqxx::work txn(lease.conn());
      if constexpr (std::is_void_v<decltype(fn(txn))>) {
        fn(txn);
        txn.commit();
        return;
      } else {
        auto result = fn(txn);
        txn.commit();
        return result;
      }
    } catch (const pqxx::broken_connection&) {
      lease.Discard();
      throw ApiError(ErrorCode::kUnavailable, "the database is unreachable");
    } catch (const pqxx::in_doubt_error&) {
      lease.Discard();
      throw ApiError(ErrorCode::kUnavailable, "the database connection was lost during commit");
    } catch (const pqxx::sql_error& e) {
      const std::string state = e.sqlstate();
      if (IsUnavailable(state)) {
        lease.Discard();
        throw ApiError(ErrorCode::kUnavailable, "the database is unavailable");
      }
      if ((state == "40001" || state == "40P01") && attempt < 3) continue;
      if (state == "57014") throw ApiError(ErrorCode::kUnavailable, "the database did not answer in time");
      throw;
    }
  }
}

}  // namespace rightsd
