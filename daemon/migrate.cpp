#include "migrate.h"

#include <fmt/format.h>

#include "crypto.h"
#include "log.h"

namespace rightsd {

namespace {

constexpr long kMigrationLockKey = 0x7269676874736d01;  // "rightsm\x01"

constexpr const char* kCreateLedger = R"sql(
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
))sql";

struct Applied {
  int version;
  std::string name;
  std::string checksum;
};

std::vector<Applied> ReadLedger(pqxx::connection& conn) {
  pqxx::work txn(conn);
  std::vector<Applied> out;
  const auto exists = txn.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>();
  if (exists) {
    for (const auto& row : txn.exec("SELECT version, name, checksum FROM schema_migrations ORDER BY version")) {
      out.push_back(Applied{row[0].as<int>(), row[1].as<std::string>(), row[2].as<std::string>()});
    }
  }
  txn.commit();
  return out;
}

int Verify(const std::vector<Applied>& ledger) {
  const auto& known = EmbeddedMigrations();
  int applied = 0;
  for (const auto& a : ledger) {
    const Migration* m = nullptr;
    for (const auto& k : known) {
      if (k.version == a.version) m = &k;
    }
    if (!m) {
      throw MigrationError(fmt::format(
          "database has migration {} ({}) that this binary does not know: the binary is older than the schema",
          a.version, a.name));
    }
    if (Sha256Hex(m->sql) != a.checksum) {
      throw MigrationError(fmt::format("migration {} ({}) was edited after it was applied", a.version, a.name));
    }
    applied = std::max(applied, a.version);
  }
  return applied;
}

}  // namespace

SchemaStatus CheckSchema(pqxx::connection& conn) {
  SchemaStatus status;
  status.applied_version = Verify(ReadLedger(conn));
  status.latest_version = EmbeddedMigrations().empty() ? 0 : EmbeddedMigrations().back().version;
  return status;
}

int ApplyMigrations(pqxx::connection& conn) {
  {
    pqxx::nontransaction lock(conn);
    lock.exec_params("SELECT pg_advisory_lock($1)", kMigrationLockKey);
  }
  int count = 0;
  try {
    {
      pqxx::work txn(conn);
      txn.exec(kCreateLedger);
      txn.commit();
    }
    const int applied = Verify(ReadLedger(conn));
    for (const auto& m : EmbeddedMigrations()) {
      if (m.version <= applied) continue;
      pqxx::work txn(conn);
      try {
        txn.exec(m.sql);
      } catch (const pqxx::sql_error& e) {
        throw MigrationError(fmt::format("migration {} ({}) failed: {}", m.version, m.name, e.what()));
      }
      txn.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.version,
                      std::string(m.name), Sha256Hex(m.sql));
      txn.commit();
      LogInfo("migration {} ({}) applied", m.version, m.name);
      ++count;
    }
  } catch (...) {
    try {
      pqxx::nontransaction unlock(conn);
      unlock.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
    } catch (const std::exception&) {
      // A broken connection drops the session lock by itself; the first error is the one to report.
    }
    throw;
  }
  pqxx::nontransaction unlock(conn);
  unlock.exec_params("SELECT pg_advisory_unlock($1)", kMigrationLockKey);
  return count;
}

}  // namespace rightsd
