// The store driven directly, without the daemon: a fresh database (migrated unless told otherwise), the business
// calendar the tests' dates are chosen for (California's, with 2026's Thanksgiving and Christmas), a PII key, a
// small pool and the Store over them. Each test file adds what it needs (a data map, helpers) around it.
#pragma once
#include <memory>

#include "calendar.h"
#include "crypto.h"
#include "data_map.h"
#include "db_pool.h"
#include "harness.h"
#include "store.h"

namespace rightsd::test {

struct StoreFixture {
  struct Options {
    bool migrate = true;
    int pool_size = 4;
    char key_digit = 'a';                // the PII key: 64 of this hex digit
    const DataMap* data_map = nullptr;   // systems that tasks fan out to; none without it
    bool callbacks_enabled = false;
  };

  TestDatabase db;
  BusinessCalendar calendar{date::locate_zone("America/Los_Angeles"), ParseHolidays("2026-11-26\n2026-12-25\n"),
                            ParseBusinessDays({"mon", "tue", "wed", "thu", "fri"})};
  PiiCipher cipher;
  std::unique_ptr<DbPool> pool;
  std::unique_ptr<Store> store;

  explicit StoreFixture(const Options& options)
      : cipher(PiiCipher::FromHexKey(std::string(64, options.key_digit))) {
    if (options.migrate) db.Migrate();
    pool = std::make_unique<DbPool>(
        DbPool::Options{db.url(), options.pool_size, std::chrono::milliseconds(2000), 5000, "test"}, nullptr);
    store = std::make_unique<Store>(*pool, calendar, cipher, 10, options.data_map, options.callbacks_enabled);
  }
};

}  // namespace rightsd::test
