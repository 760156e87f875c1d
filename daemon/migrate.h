// Forward-only schema migrations, compiled into the binary from migrations/NNNN_name.sql. Each is applied in its
// own transaction and recorded in schema_migrations with a checksum; an edited, already-applied migration is an
// error. A session advisory lock keeps two processes from migrating at once.
#pragma once
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace rightsd {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

const std::vector<Migration>& EmbeddedMigrations();  // generated at build time, sorted by version

struct MigrationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Applies what is pending; returns how many were applied. Throws MigrationError.
int ApplyMigrations(pqxx::connection& conn);

struct SchemaStatus {
  int applied_version = 0;
  int latest_version = 0;
  bool current() const { return applied_version == latest_version; }
};
// Throws MigrationError when the database holds a migration the binary does not know, or an edited one.
SchemaStatus CheckSchema(pqxx::connection& conn);

}  // namespace rightsd
