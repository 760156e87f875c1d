#include "retention.h"

#include <map>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace rightsd {

namespace {

using nlohmann::json;

// Due: closed (hence in a final status: the schema ties closed_at to the final statuses), not purged yet, and
// closed on a local day before the cutoff ($1).
constexpr const char* kDue = "r.closed_at IS NOT NULL AND r.purged_at IS NULL AND r.closed_on < $1::date";
// A task still pending or running may yet write records for the request; such a request waits for a later run.
constexpr const char* kBusy =
    "EXISTS (SELECT 1 FROM tasks t WHERE t.request_id = r.id AND t.state IN ('pending', 'running'))";

std::string Cutoff(pqxx::connection& conn, const PurgePolicy& policy) {
  pqxx::work txn(conn, "purge-cutoff");
  const auto row = txn.exec_params1(
      "SELECT ((now() AT TIME ZONE $1)::date - make_interval(months => $2))::date::text", policy.timezone,
      policy.retention_months);
  txn.commit();
  return row[0].as<std::string>();
}

std::string UuidArray(const std::vector<std::string>& ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += ids[i];  // uuids straight from the database: no quoting needed
  }
  return out + "}";
}

long long CountLeft(pqxx::connection& conn, const std::string& cutoff) {
  pqxx::work txn(conn, "purge-left");
  const auto row = txn.exec_params1(fmt::format("SELECT count(*) FROM requests r WHERE {}", kDue), cutoff);
  txn.commit();
  return row[0].as<long long>();
}

struct Removed {
  std::string closed_on;
  long long identities = 0;
  bool package = false;
  long long task_records = 0;
  bool agent = false;
  bool corrections = false;
  long long idempotency_keys = 0;
};

// One transaction: locks up to batch_size due requests, removes their personal data, marks them and appends one
// audit event each. Returns how many requests it purged.
int PurgeBatch(pqxx::connection& conn, const PurgePolicy& policy, const std::string& cutoff, PurgeCounts& counts) {
  pqxx::work txn(conn, "purge-batch");
  const auto locked = txn.exec_params(
      fmt::format("SELECT r.id::text, r.closed_on::text, r.agent_sealed IS NOT NULL, r.corrections_sealed IS NOT NULL "
                  "FROM requests r WHERE {} AND NOT {} ORDER BY r.closed_on, r.id LIMIT $2 FOR UPDATE OF r SKIP LOCKED",
                  kDue, kBusy),
      cutoff, policy.batch_size);
  if (locked.empty()) return 0;
  std::vector<std::string> ids;
  std::map<std::string, Removed> removed;
  for (const auto& row : locked) {
    const std::string id = row[0].as<std::string>();
    ids.push_back(id);
    Removed& r = removed[id];
    r.closed_on = row[1].as<std::string>();
    r.agent = row[2].as<bool>();
    r.corrections = row[3].as<bool>();
  }
  const std::string id_array = UuidArray(ids);
  for (const auto& row :
       txn.exec_params("DELETE FROM request_identities WHERE request_id = ANY($1::uuid[]) RETURNING request_id::text",
                       id_array)) {
    ++removed[row[0].as<std::string>()].identities;
  }
  for (const auto& row :
       txn.exec_params("DELETE FROM request_packages WHERE request_id = ANY($1::uuid[]) RETURNING request_id::text",
                       id_array)) {
    removed[row[0].as<std::string>()].package = true;
  }
  // A continuation is a connector's bookmark at a peer (its job or record ids): meaningless once the task is over.
  for (const auto& row : txn.exec_params(
           "WITH old AS (SELECT id, records_sealed IS NOT NULL AS had_records FROM tasks WHERE request_id = "
           "ANY($1::uuid[]) AND (records_sealed IS NOT NULL OR continuation IS NOT NULL) FOR UPDATE) "
           "UPDATE tasks t SET records_sealed = NULL, continuation = NULL, updated_at = now() FROM old "
           "WHERE t.id = old.id RETURNING t.request_id::text, old.had_records",
           id_array)) {
    if (row[1].as<bool>()) ++removed[row[0].as<std::string>()].task_records;
  }
  for (const auto& row :
       txn.exec_params("DELETE FROM idempotency_keys WHERE request_id = ANY($1::uuid[]) RETURNING request_id::text",
                       id_array)) {
    ++removed[row[0].as<std::string>()].idempotency_keys;
  }
  txn.exec_params(
      "UPDATE requests SET agent_sealed = NULL, corrections_sealed = NULL, purged_at = now(), updated_at = now() "
      "WHERE id = ANY($1::uuid[])",
      id_array);

  json events = json::array();
  for (const auto& id : ids) {
    const Removed& r = removed[id];
    events.push_back({{"request_id", id},
                      {"detail",
                       {{"retention_months", policy.retention_months},
                        {"closed_on", r.closed_on},
                        {"closed_before", cutoff},
                        {"removed",
                         {{"identities", r.identities},
                          {"access_package", r.package},
                          {"task_records", r.task_records},
                          {"authorized_agent", r.agent},
                          {"corrections", r.corrections},
                          {"idempotency_keys", r.idempotency_keys}}}}}});
    counts.identities += r.identities;
    counts.packages += r.package ? 1 : 0;
    counts.task_records += r.task_records;
    counts.agents += r.agent ? 1 : 0;
    counts.corrections += r.corrections ? 1 : 0;
    counts.idempotency_keys += r.idempotency_keys;
  }
  txn.exec_params(
      "INSERT INTO audit_events (request_id, actor, action, detail) SELECT (e->>'request_id')::uuid, 'system:purge', "
      "'purged', e->'detail' FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n) ORDER BY n",
      events.dump());
  txn.commit();
  counts.requests += static_cast<long long>(ids.size());
  return static_cast<int>(ids.size());
}

}  // namespace

PurgeReport PlanPurge(pqxx::connection& conn, const PurgePolicy& policy) {
  PurgeReport report;
  report.retention_months = policy.retention_months;
  report.cutoff = Cutoff(conn, policy);
  pqxx::work txn(conn, "purge-plan");
  txn.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");
  const auto row = txn.exec_params1(
      fmt::format(
          "WITH due AS (SELECT r.id, r.agent_sealed IS NOT NULL AS agent, r.corrections_sealed IS NOT NULL AS "
          "corrections, {} AS busy FROM requests r WHERE {}) "
          "SELECT count(*) FILTER (WHERE NOT busy), "
          "(SELECT count(*) FROM request_identities i JOIN due ON i.request_id = due.id WHERE NOT due.busy), "
          "(SELECT count(*) FROM request_packages p JOIN due ON p.request_id = due.id WHERE NOT due.busy), "
          "(SELECT count(*) FROM tasks t JOIN due ON t.request_id = due.id WHERE NOT due.busy AND t.records_sealed "
          "IS NOT NULL), "
          "count(*) FILTER (WHERE NOT busy AND agent), count(*) FILTER (WHERE NOT busy AND corrections), "
          "(SELECT count(*) FROM idempotency_keys k JOIN due ON k.request_id = due.id WHERE NOT due.busy), "
          "count(*) FILTER (WHERE busy) FROM due",
          kBusy, kDue),
      report.cutoff);
  txn.commit();
  report.counts = PurgeCounts{row[0].as<long long>(), row[1].as<long long>(), row[2].as<long long>(),
                              row[3].as<long long>(), row[4].as<long long>(), row[5].as<long long>(),
                              row[6].as<long long>()};
  report.left = row[7].as<long long>();
  return report;
}

PurgeReport RunPurge(pqxx::connection& conn, const PurgePolicy& policy) {
  PurgeReport report;
  report.retention_months = policy.retention_months;
  report.cutoff = Cutoff(conn, policy);
  // Every round purges at least one request or ends the run, so the due count at the start bounds the rounds; the
  // +2 lets the last partial batch and the empty round that proves nothing is left through.
  const long long due = CountLeft(conn, report.cutoff);
  const long long max_rounds = due / policy.batch_size + 2;
  for (long long round = 0; round < max_rounds; ++round) {
    int purged = 0;
    // A deadlock or serialization failure rolls the batch back whole; it is tried again, at most three times.
    for (int attempt = 1;; ++attempt) {
      try {
        purged = PurgeBatch(conn, policy, report.cutoff, report.counts);
        break;
      } catch (const pqxx::sql_error& e) {
        const std::string state = e.sqlstate();
        if ((state == "40001" || state == "40P01") && attempt < 3) continue;
        throw;
      }
    }
    if (purged > 0) ++report.batches;
    // A short batch means the rest of the due requests are busy or locked: they are the next run's.
    if (purged < policy.batch_size) break;
  }
  report.left = CountLeft(conn, report.cutoff);
  return report;
}

std::string PurgeSummary(const PurgeReport& r, bool dry_run) {
  const PurgeCounts& c = r.counts;
  return fmt::format(
      "purge{}: {} request{} {} (identities {}, access packages {}, task records {}, agent details {}, corrections {}, "
      "idempotency keys {}){}; closed before {} (retention {} months); {} due but left for a later run (a task "
      "still pending or running, or the request busy)",
      dry_run ? " (dry run)" : "", c.requests, c.requests == 1 ? "" : "s", dry_run ? "would be purged" : "purged",
      c.identities, c.packages, c.task_records, c.agents, c.corrections, c.idempotency_keys,
      dry_run ? "" : fmt::format(" in {} batch{}", r.batches, r.batches == 1 ? "" : "es"), r.cutoff,
      r.retention_months, r.left);
}

}  // namespace rightsd
