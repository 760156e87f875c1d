// Retention (11 CCR §7101): records of requests are kept at least 24 months; the personal data a closed request
// holds need not be kept longer. `rightsd purge` removes that personal data from requests closed before a cutoff
// and keeps the §7101(b) record (dates, type, channel, status, denial basis, task outcomes, the audit trail), so
// the §7102 metrics can still be computed. Runs on its own connection, in bounded transactions, beside serving
// daemons: request rows are locked with SKIP LOCKED, so a request being changed is left for the next run.
#pragma once
#include <string>

#include <pqxx/pqxx>

namespace rightsd {

struct PurgePolicy {
  int retention_months = 24;
  int batch_size = 500;      // requests per transaction
  std::string timezone;      // the business time zone: closed_on is a local date in it
};

// What was (or, for a dry run, would be) removed.
struct PurgeCounts {
  long long requests = 0;
  long long identities = 0;        // request_identities rows (sealed value and keyed lookup hash)
  long long packages = 0;          // sealed access packages
  long long task_records = 0;      // sealed access records a connector returned
  long long agents = 0;            // sealed authorized-agent details
  long long corrections = 0;       // sealed requested corrections
  long long idempotency_keys = 0;  // their body hash is a keyed hash of a body that held identity values
};

struct PurgeReport {
  std::string cutoff;   // local date: requests closed before it are due
  int retention_months = 0;
  PurgeCounts counts;
  int batches = 0;
  // Due but not purged by this run: a task still pending or running, or the row locked by another transaction.
  long long left = 0;
};

// Counts what RunPurge would remove now; changes nothing.
PurgeReport PlanPurge(pqxx::connection& conn, const PurgePolicy& policy);
// Purges every due request, batch_size per transaction, with one `purged` audit event per request.
PurgeReport RunPurge(pqxx::connection& conn, const PurgePolicy& policy);
// One line, counts only.
std::string PurgeSummary(const PurgeReport& report, bool dry_run);

}  // namespace rightsd
