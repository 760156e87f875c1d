// `rightsd purge`: the personal data of requests closed more than purge.retention_months ago is removed, their
// §7101 record is kept, and nothing else is touched. Closing dates are seeded by SQL relative to today in the
// business time zone (America/Los_Angeles in the harness config), the same day the purge computes its cutoff from.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

const std::string kSystems = R"toml(
[[systems]]
name = "crm"
connector = "noop"
categories = ["identifiers"]
rate_per_second = 10000
burst = 1000
)toml";

// Distinctive values, so that any copy of them outside their seals can be searched for.
constexpr const char* kEmail = "purge.subject@example.com";
constexpr const char* kMrn = "MRN-PURGE-7741";
constexpr const char* kAgentName = "Agent Purgeworthy";
constexpr const char* kCorrection = "1 Purge Lane, Fresno";

std::string Create(Daemon& d, const std::string& token, const std::string& body, const httplib::Headers& headers = {}) {
  auto r = d.Call("POST", "/v1/requests", token, body, headers);
  INFO(r.body);
  REQUIRE(r.status == 201);
  return r.json()["id"];
}

void Act(Daemon& d, const std::string& token, const std::string& id, const std::string& action,
         const std::string& body = "") {
  auto r = d.Call("POST", "/v1/requests/" + id + "/" + action, token, body);
  INFO(action << ": " << r.body);
  REQUIRE(r.status == 200);
}

void WaitForStatus(Daemon& d, const std::string& token, const std::string& id, const std::string& status) {
  std::string last;
  Eventually([&] {
    last = d.Call("GET", "/v1/requests/" + id, token).json()["status"];
    return last == status;
  }, 20);
  INFO(id << " is " << last);
  REQUIRE(last == status);
}

// Moves a closed request's closing day to `ago` before today (local), and its receipt 20 days before that.
void ClosedAgo(DaemonEnv& env, const std::string& id, const std::string& ago) {
  auto conn = env.db().Connect();
  pqxx::work txn(*conn);
  const auto r = txn.exec(fmt::format(
      "UPDATE requests r SET closed_on = d.day, closed_at = (d.day + time '12:00') AT TIME ZONE 'America/Los_Angeles', "
      "received_on = d.day - 20, received_at = (d.day - 20 + time '09:00') AT TIME ZONE 'America/Los_Angeles', "
      "respond_by = d.day + 25 "
      "FROM (SELECT ((now() AT TIME ZONE 'America/Los_Angeles')::date - interval '{}')::date AS day) d "
      "WHERE r.id = '{}' AND r.closed_at IS NOT NULL",
      ago, id));
  REQUIRE(r.affected_rows() == 1);
  txn.commit();
}

std::string Count(DaemonEnv& env, const std::string& table, const std::string& id) {
  return env.db().Scalar(fmt::format("SELECT count(*) FROM {} WHERE request_id = '{}'", table, id));
}

CliResult Purge(DaemonEnv& env, bool dry_run = false) {
  std::vector<std::string> args{"purge", "--config", env.config().string()};
  if (dry_run) args.insert(args.begin() + 1, "--dry-run");
  return env.Cli(args);
}

}  // namespace

TEST_CASE("purge: removes personal data of requests closed over 24 months ago, keeps the record, the rest and the "
          "audit chain",
          "[purge][integration]") {
  DaemonEnv env(true, kSystems);
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  const std::string admin = env.token("admin");
  const std::string verify = R"({"method":"account_login","level":"reasonable"})";
  const std::string access_body = fmt::format(
      R"({{"type":"access","channel":"authorized_agent","subject":{{"identities":[{{"kind":"email","value":"{}"}},)"
      R"({{"kind":"mrn","value":"{}"}}]}},"authorized_agent":{{"name":"{}","kind":"person","proof":"signed_permission"}}}})",
      kEmail, kMrn, kAgentName);

  // Three completed access requests with identities, an agent, task records and a package, closed on both sides of
  // the boundary and on it.
  const std::string old_access = Create(d, sub, access_body, {{"Idempotency-Key", "purge-old-access"}});
  const std::string young_access = Create(d, sub, access_body);
  const std::string boundary_access = Create(d, sub, access_body);
  for (const auto& id : {old_access, young_access, boundary_access}) {
    Act(d, sub, id, "verify", verify);
    WaitForStatus(d, sub, id, "completed");
  }
  // A correct request with sealed corrections, denied.
  const std::string old_correct = Create(
      d, sub,
      fmt::format(R"({{"type":"correct","subject":{{"identities":[{{"kind":"email","value":"{}"}}]}},)"
                  R"("corrections":[{{"field":"postal_address","value":"{}"}}]}})",
                  kEmail, kCorrection));
  Act(d, sub, old_correct, "deny", R"({"reason":"exempt","detail":"covered by HIPAA"})");
  // An opt-out whose task is, against the rule, still running after the request closed.
  const std::string busy_opt_out =
      Create(d, sub, fmt::format(R"({{"type":"opt_out","subject":{{"identities":[{{"kind":"email","value":"{}"}}]}}}})", kEmail));
  WaitForStatus(d, sub, busy_opt_out, "completed");
  // A cancelled delete that another transaction will hold locked during the first run.
  const std::string locked_delete =
      Create(d, sub, fmt::format(R"({{"type":"delete","subject":{{"identities":[{{"kind":"email","value":"{}"}}]}}}})", kEmail));
  Act(d, sub, locked_delete, "cancel", R"({"reason":"withdrawn"})");
  // An open delete received 30 months ago: open requests are never purged, however old.
  const std::string old_open =
      Create(d, sub, fmt::format(R"({{"type":"delete","subject":{{"identities":[{{"kind":"email","value":"{}"}}]}}}})", kEmail));
  {
    auto conn = env.db().Connect();
    pqxx::work txn(*conn);
    txn.exec(fmt::format("UPDATE requests SET received_at = now() - interval '30 months', received_on = (now() - "
                         "interval '30 months')::date, respond_by = (now() - interval '30 months')::date + 45, "
                         "acknowledge_by = NULL WHERE id = '{}'",
                         old_open));
    txn.exec(fmt::format("UPDATE tasks SET state = 'running', lease_owner = 'elsewhere', lease_expires_at = now() + "
                         "interval '1 day', finished_at = NULL WHERE request_id = '{}'",
                         busy_opt_out));
    txn.commit();
  }
  ClosedAgo(env, old_access, "24 months 1 day");
  ClosedAgo(env, young_access, "24 months -1 day");
  ClosedAgo(env, boundary_access, "24 months");
  ClosedAgo(env, old_correct, "25 months");
  ClosedAgo(env, busy_opt_out, "26 months");
  ClosedAgo(env, locked_delete, "27 months");
  // The schema itself ties closing to a final status: a closed request cannot be put back in an open one.
  {
    auto conn = env.db().Connect();
    pqxx::work txn(*conn);
    CHECK_THROWS_AS(txn.exec(fmt::format("UPDATE requests SET status = 'in_progress' WHERE id = '{}'", old_access)),
                    pqxx::check_violation);
  }
  REQUIRE(Count(env, "request_packages", old_access) == "1");
  REQUIRE(env.db().Scalar(fmt::format("SELECT count(*) FROM tasks WHERE request_id = '{}' AND records_sealed IS NOT NULL",
                                      old_access)) == "1");

  const std::string identities_before = env.db().Scalar("SELECT count(*) FROM request_identities");
  const std::string events_before = env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'purged'");
  REQUIRE(events_before == "0");

  {
    const auto dry = Purge(env, true);
    INFO(dry.err);
    REQUIRE(dry.exit_code == 0);
    // Due and free: old_access, old_correct and locked_delete (nothing holds it yet); busy_opt_out waits.
    CHECK(dry.out ==
          fmt::format("purge (dry run): 3 requests would be purged (identities 4, access packages 1, task records 1, "
                      "agent details 1, corrections 1, idempotency keys 1); closed before {} (retention 24 months); 1 "
                      "due but left for a later run (a task still pending or running, or the request busy)\n",
                      env.db().Scalar("SELECT ((now() AT TIME ZONE 'America/Los_Angeles')::date - interval "
                                      "'24 months')::date")));
    CHECK(env.db().Scalar("SELECT count(*) FROM request_identities") == identities_before);
    CHECK(env.db().Scalar("SELECT count(*) FROM requests WHERE purged_at IS NOT NULL") == "0");
    CHECK(env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'purged'") == "0");

    // A serving daemon's transaction holds locked_delete: the purge skips it rather than wait.
    auto holder_conn = env.db().Connect();
    auto holder = std::make_unique<pqxx::work>(*holder_conn);
    holder->exec(fmt::format("SELECT 1 FROM requests WHERE id = '{}' FOR UPDATE", locked_delete));
    const auto first = Purge(env);
    INFO(first.err);
    REQUIRE(first.exit_code == 0);
    CHECK(first.out.find("purge: 2 requests purged (identities 3, access packages 1, task records 1, agent details 1, "
                         "corrections 1, idempotency keys 1) in 1 batch;") == 0);
    CHECK(first.out.find("; 2 due but left for a later run") != std::string::npos);
    holder->commit();
    holder.reset();

    for (const auto& id : {old_access, old_correct}) {
      CHECK(Count(env, "request_identities", id) == "0");
      CHECK(Count(env, "request_packages", id) == "0");
      CHECK(Count(env, "idempotency_keys", id) == "0");
      CHECK(env.db().Scalar(fmt::format("SELECT count(*) FROM tasks WHERE request_id = '{}' AND (records_sealed IS "
                                        "NOT NULL OR continuation IS NOT NULL)",
                                        id)) == "0");
      CHECK(env.db().Scalar(fmt::format("SELECT agent_sealed IS NULL AND corrections_sealed IS NULL AND purged_at IS "
                                        "NOT NULL FROM requests WHERE id = '{}'",
                                        id)) == "t");
      // The §7101(b) record stays: date, type, manner, date and nature of the response, basis for a denial.
      CHECK(env.db().Scalar(fmt::format("SELECT received_at IS NOT NULL AND type <> '' AND channel <> '' AND closed_at "
                                        "IS NOT NULL AND status <> '' FROM requests WHERE id = '{}'",
                                        id)) == "t");
      CHECK(env.db().Scalar(fmt::format("SELECT count(*) FROM audit_events WHERE request_id = '{}' AND action = "
                                        "'purged' AND actor = 'system:purge'",
                                        id)) == "1");
    }
    CHECK(env.db().Scalar(fmt::format("SELECT denial_reason || ':' || denial_detail FROM requests WHERE id = '{}'",
                                      old_correct)) == "exempt:covered by HIPAA");
    CHECK(env.db().Scalar(fmt::format("SELECT count(*) FROM tasks WHERE request_id = '{}' AND receipt IS NOT NULL",
                                      old_access)) == "1");
    const json detail = json::parse(env.db().Scalar(fmt::format(
        "SELECT detail FROM audit_events WHERE request_id = '{}' AND action = 'purged'", old_access)));
    CHECK(detail["retention_months"] == 24);
    CHECK(detail["removed"] == json{{"identities", 2}, {"access_package", true}, {"task_records", 1},
                                    {"authorized_agent", true}, {"corrections", false}, {"idempotency_keys", 1}});
    // Not due, open, busy or locked: untouched.
    for (const auto& id : {young_access, boundary_access, old_open, busy_opt_out, locked_delete}) {
      CHECK(env.db().Scalar(fmt::format("SELECT purged_at IS NULL FROM requests WHERE id = '{}'", id)) == "t");
      CHECK(Count(env, "request_identities", id) != "0");
    }
    for (const auto& id : {young_access, boundary_access}) {
      CHECK(Count(env, "request_packages", id) == "1");
      CHECK(env.db().Scalar(fmt::format("SELECT agent_sealed IS NOT NULL FROM requests WHERE id = '{}'", id)) == "t");
    }

    // Idempotent: the locked one is purged now, nothing is purged twice.
    const auto second = Purge(env);
    INFO(second.err);
    CHECK(second.out.find("purge: 1 request purged (identities 1, access packages 0, task records 0, agent details "
                          "0, corrections 0, idempotency keys 0) in 1 batch;") == 0);
    CHECK(second.out.find("; 1 due but left for a later run") != std::string::npos);
    CHECK(Count(env, "request_identities", locked_delete) == "0");
    // Once its task lets go, the busy request goes too; then there is nothing left to do.
    pqxx::nontransaction(*env.db().Connect())
        .exec(fmt::format("UPDATE tasks SET state = 'done', lease_owner = NULL, finished_at = now() WHERE request_id "
                          "= '{}'",
                          busy_opt_out));
    CHECK(Purge(env).out.find("purge: 1 request purged") == 0);
    const std::string events_after = env.db().Scalar("SELECT count(*) FROM audit_events");
    const auto idle = Purge(env);
    CHECK(idle.out.find("purge: 0 requests purged (identities 0, access packages 0, task records 0, agent details 0, "
                        "corrections 0, idempotency keys 0) in 0 batches;") == 0);
    CHECK(idle.out.find("; 0 due but left") != std::string::npos);
    CHECK(env.db().Scalar("SELECT count(*) FROM audit_events") == events_after);
    CHECK(env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'purged'") == "4");
    CHECK(Count(env, "request_identities", old_open) == "1");

    // No identity value, agent detail or correction is in the audit trail, whose events stay.
    for (const char* value : {kEmail, kMrn, kAgentName, kCorrection}) {
      CHECK(env.db().Scalar(fmt::format("SELECT count(*) FROM audit_events WHERE detail::text LIKE '%{}%' OR actor "
                                        "LIKE '%{}%'",
                                        value, value)) == "0");
    }
    // Nor in the output of any run.
    for (const auto& out : {dry.out, first.out, second.out, idle.out}) {
      for (const char* value : {kEmail, kMrn, kAgentName, kCorrection}) CHECK(out.find(value) == std::string::npos);
    }

    // The API: the record with identities removed and purged_at; the package is gone (410).
    const json got = d.Call("GET", "/v1/requests/" + old_access, admin).json();
    INFO(got.dump(2));
    CHECK(got["status"] == "completed");
    CHECK(got["type"] == "access");
    CHECK(got["channel"] == "authorized_agent");
    CHECK(got["closed_at"].is_string());
    CHECK(got["identities"] == json::array());
    CHECK(got["authorized_agent"].is_null());
    REQUIRE(got["purged_at"].is_string());
    CHECK(got["purged_at"].get<std::string>().starts_with("20"));
    CHECK(got["purged_at"].get<std::string>().ends_with("Z"));
    CHECK(got["history"].back()["action"] == "purged");
    CHECK(got["tasks"].size() == 1);
    CHECK(d.Call("GET", "/v1/requests/" + old_correct, admin).json()["corrections"] == json::array());
    const auto gone = d.Call("GET", "/v1/requests/" + old_access + "/package", sub);
    CHECK(gone.status == 410);
    CHECK(gone.content_type == "application/problem+json");
    CHECK(gone.json()["type"] == "urn:rightsd:problem:gone");
    CHECK(gone.body.find(kEmail) == std::string::npos);
    const json young = d.Call("GET", "/v1/requests/" + young_access, admin).json();
    CHECK(young["purged_at"].is_null());
    CHECK(young["identities"].size() == 2);
    CHECK(d.Call("GET", "/v1/requests/" + young_access + "/package", sub).status == 200);
    const json listed = d.Call("GET", "/v1/requests?type=access&limit=10", env.token("viewer")).json();
    int purged_in_list = 0;
    for (const auto& item : listed["items"]) purged_in_list += item["purged_at"].is_string() ? 1 : 0;
    CHECK(purged_in_list == 1);
    // A replay of the purged request's Idempotency-Key is a new request: its body hash went with the purge.
    const auto replay = d.Call("POST", "/v1/requests", sub, access_body, {{"Idempotency-Key", "purge-old-access"}});
    CHECK(replay.status == 201);
    CHECK(replay.json()["id"] != old_access);

    // The purge's events are chained like any others, and the chain verifies.
    const auto verified = env.Cli({"audit", "verify", "--config", env.config().string()});
    INFO(verified.err);
    CHECK(verified.exit_code == 0);
    CHECK(verified.out == fmt::format("audit chain ok: {0} events verified (0 in the first chain, {0} in {1} links)\n",
                                      env.db().Scalar("SELECT count(*) FROM audit_events"),
                                      env.db().Scalar("SELECT count(*) FROM audit_links")));
  }
  CHECK(d.Stop() == 0);
}

TEST_CASE("purge: batch_size requests per transaction, one audit event each", "[purge][integration]") {
  DaemonEnv env(true, "[purge]\nbatch_size = 2\n");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(Create(d, sub, fmt::format(R"({{"type":"delete","subject":{{"identities":[{{"kind":"email",)"
                                             R"("value":"batch{}@example.com"}}]}}}})",
                                             i)));
    Act(d, sub, ids.back(), "cancel", R"({"reason":"withdrawn"})");
    ClosedAgo(env, ids.back(), fmt::format("{} months", 25 + i));
  }
  const auto run = Purge(env);
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.find("purge: 5 requests purged (identities 5, access packages 0, task records 0, agent details 0, "
                     "corrections 0, idempotency keys 0) in 3 batches;") == 0);
  CHECK(env.db().Scalar("SELECT count(*) FROM request_identities") == "0");
  CHECK(env.db().Scalar("SELECT count(DISTINCT request_id) FROM audit_events WHERE action = 'purged'") == "5");
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'purged'") == "5");
  // Oldest first: the first batch took the two that closed longest ago.
  CHECK(env.db().Scalar("SELECT string_agg(detail->>'closed_on', ',' ORDER BY id) = string_agg(detail->>'closed_on', "
                        "',' ORDER BY detail->>'closed_on') FROM audit_events WHERE action = 'purged'") == "t");
  CHECK(d.Stop() == 0);
}

TEST_CASE("purge: a retention below 24 months is refused, and purge asks for a current schema",
          "[purge][integration]") {
  DaemonEnv env(false, "[purge]\nretention_months = 23\n");
  for (const auto& args : {std::vector<std::string>{"check-config"}, std::vector<std::string>{"purge"},
                           std::vector<std::string>{"purge", "--dry-run"}}) {
    auto with_config = args;
    with_config.insert(with_config.end(), {"--config", env.config().string()});
    const auto r = env.Cli(with_config);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("purge.retention_months: must be between 24 and 1200") != std::string::npos);
  }
  env.WriteConfig(env.db().url());
  const auto unmigrated = env.Cli({"purge", "--config", env.config().string()});
  CHECK(unmigrated.exit_code == 1);
  CHECK(unmigrated.err.find("run 'rightsd migrate'") != std::string::npos);
}
