// The SLA summary's tallies (migration 0004) against a real PostgreSQL: after every kind of change the store makes
// (intake, transitions, sweeps, task outcomes, closes, purge, deletes) they equal a fresh GROUP BY over the tables;
// the migration backfills them from rows that existed before it; the sweep, which finds due requests from their
// deadlines (migration 0008), keeps every open request in the state the legal clock gives it; and the inline rounds
// the dispatcher runs at once, split by request, keep them too.
#include <array>
#include <atomic>
#include <set>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/ranges.h>

#include "audit.h"
#include "config.h"
#include "data_map.h"
#include "harness.h"
#include "migrate.h"
#include "retention.h"
#include "store.h"
#include "store_fixture.h"

using namespace rightsd;
using namespace rightsd::test;

namespace {

using nlohmann::json;

Timestamp At(const std::string& rfc3339) { return *ParseRfc3339(rfc3339); }

Config NoopConfig() {
  return ParseConfig(R"(
[database]
url = "postgresql://unused@/unused"
[calendar]
holidays_file = "holidays.txt"
[auth]
tokens_file = "tokens"
[crypto]
key_file = "pii.key"
[[systems]]
name = "crm"
connector = "noop"
categories = ["identifiers"]
[[systems]]
name = "ehr"
connector = "noop"
categories = ["medical information"]
on_delete = "retain"
retain_basis = "HIPAA"
)",
                     "/etc/rightsd/rightsd.toml");
}

// Before the store in Fixture's bases: the store keeps a pointer to the data map.
struct NoopSystems {
  Config config = NoopConfig();
  DataMap data_map = DataMap::Build(config, nullptr);
};

struct Fixture : NoopSystems, StoreFixture {
  Principal who{Role::kAdmin, "tester"};

  explicit Fixture(bool migrate = true) : StoreFixture({.migrate = migrate, .data_map = &data_map}) {}

  std::string Create(RequestType type, const std::string& email, const std::string& at) {
    NewRequest r;
    r.type = type;
    r.identities = {{"email", email}};
    r.received_at = At(at);
    r.canonical = email + at;
    return store->Create(r, who, std::nullopt, At(at)).id;
  }
  void Act(const std::string& id, RequestEvent event, const std::string& at) {
    ActionInput a;
    a.event = event;
    if (event == RequestEvent::kVerify) a.verify = VerifyInput{"account_login", "reasonable"};
    if (event == RequestEvent::kExtend) a.extend = ExtendInput{"complex request"};
    if (event == RequestEvent::kDeny) a.deny = DenyInput{DenialReason::kExempt, "exempt"};
    if (event == RequestEvent::kDenyUnverifiable) a.deny = DenyInput{DenialReason::kUnverifiable, "no match"};
    store->Apply(id, a, who, At(at));
  }

  // Every row of a query, each as "col|col|...", sorted: compares two result sets whatever their order.
  std::vector<std::string> Rows(const std::string& sql) {
    auto conn = db.Connect();
    pqxx::work txn(*conn);
    std::vector<std::string> out;
    for (const auto& row : txn.exec(sql)) {
      std::string line;
      for (const auto& f : row) line += std::string(f.is_null() ? "NULL" : f.c_str()) + "|";
      out.push_back(line);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // The tallies, summed over shards, against the GROUP BY they stand for.
  void CheckTallies() {
    CHECK(Rows("SELECT status, type, sla_state, sum(n) FROM sla_request_tallies GROUP BY 1, 2, 3 HAVING sum(n) <> 0") ==
          Rows("SELECT status, type, sla_state, count(*) FROM requests GROUP BY 1, 2, 3"));
    CHECK(Rows("SELECT respond_by, sum(n) FROM sla_due_tallies GROUP BY 1 HAVING sum(n) <> 0") ==
          Rows("SELECT respond_by, count(*) FROM requests WHERE closed_at IS NULL GROUP BY 1"));
    CHECK(Rows("SELECT system, sla_state, sum(tasks), sum(unfinished) FROM sla_system_tallies GROUP BY 1, 2 "
               "HAVING sum(tasks) <> 0 OR sum(unfinished) <> 0") ==
          Rows("SELECT t.system, r.sla_state, count(DISTINCT r.id), count(*) FILTER (WHERE t.state IN ('pending', "
               "'running', 'failed', 'needs_manual')) FROM tasks t JOIN requests r ON r.id = t.request_id "
               "WHERE r.closed_at IS NULL GROUP BY 1, 2"));
    CHECK(Rows("SELECT min(acknowledge_by) FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL") ==
          Rows("SELECT min(acknowledge_by) FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL AND "
               "acknowledge_by IS NOT NULL"));
    // No tally goes negative in any shard's sum.
    CHECK(db.Scalar("SELECT count(*) FROM (SELECT 1 FROM sla_request_tallies GROUP BY status, type, sla_state "
                    "HAVING sum(n) < 0) x") == "0");
  }

  // Runs the engine once: claims every due task and answers each with `kind`.
  int Outcomes(connectors::OutcomeKind kind, const std::string& at, int limit = 1000) {
    const auto claimed = store->ClaimTasks({{"crm", limit}, {"ehr", limit}}, "worker-1", std::chrono::milliseconds(60000));
    for (const auto& t : claimed) {
      connectors::Outcome o;
      o.kind = kind;
      o.message = "test";
      store->RecordOutcome(t, o, "worker-1", RetryPolicy{}, At(at));
    }
    return static_cast<int>(claimed.size());
  }
};

}  // namespace

TEST_CASE("sla: the summary tallies equal a fresh GROUP BY after creates, transitions, sweeps, task outcomes, "
          "closes, purge and deletes",
          "[sla][integration]") {
  Fixture f;
  f.CheckTallies();
  std::vector<std::string> ids;
  const std::vector<RequestType> types = {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect,
                                          RequestType::kOptOut, RequestType::kLimit};
  // 2023: requests that are closed long enough ago to be purged below.
  for (int i = 0; i < 10; ++i) {
    ids.push_back(f.Create(types[i % 5], fmt::format("old{}@example.com", i), "2023-03-01T17:00:00Z"));
  }
  for (const auto& id : ids) {
    const std::string status = f.db.Scalar("SELECT status FROM requests WHERE id = '" + id + "'");
    if (status == "received") f.Act(id, RequestEvent::kCancel, "2023-03-02T17:00:00Z");
  }
  f.Outcomes(connectors::OutcomeKind::kDone, "2023-03-03T17:00:00Z");  // opt-outs and limits complete
  f.CheckTallies();

  // 2026: 40 requests over a few days, then every kind of change.
  std::vector<std::string> fresh;
  for (int i = 0; i < 40; ++i) {
    fresh.push_back(f.Create(types[i % 5], fmt::format("p{}@example.com", i),
                             fmt::format("2026-11-{:02}T17:00:00Z", 2 + i % 6)));
  }
  f.CheckTallies();
  for (std::size_t i = 0; i < fresh.size(); ++i) {
    const std::string status = f.db.Scalar("SELECT status FROM requests WHERE id = '" + fresh[i] + "'");
    if (status != "received") continue;
    if (i % 4 != 3) f.Act(fresh[i], RequestEvent::kAcknowledge, "2026-11-09T18:00:00Z");
    if (i % 4 == 0) f.Act(fresh[i], RequestEvent::kVerify, "2026-11-10T18:00:00Z");  // fans out
    if (i % 8 == 1) f.Act(fresh[i], RequestEvent::kExtend, "2026-11-10T18:00:00Z");
    if (i % 8 == 2) f.Act(fresh[i], RequestEvent::kDenyUnverifiable, "2026-11-10T18:00:00Z");
  }
  f.CheckTallies();
  // The sweep moves states (missed acknowledgements breach, deadlines come close); tasks of open requests follow.
  CHECK(f.store->SweepSla(At("2026-11-20T18:00:00Z")) > 0);
  f.CheckTallies();
  f.Outcomes(connectors::OutcomeKind::kNeedsManual, "2026-11-20T19:00:00Z", 5);
  f.Outcomes(connectors::OutcomeKind::kFailed, "2026-11-20T19:00:00Z", 3);
  f.Outcomes(connectors::OutcomeKind::kDone, "2026-11-20T19:00:00Z", 6);
  f.CheckTallies();
  CHECK(f.store->SweepSla(At("2026-12-10T18:00:00Z")) > 0);
  f.CheckTallies();
  f.Outcomes(connectors::OutcomeKind::kDone, "2026-12-10T19:00:00Z");  // completes requests
  f.CheckTallies();
  // Closes of open requests that still have unfinished tasks (they are cancelled).
  int closed = 0;
  for (const auto& id : fresh) {
    const std::string status = f.db.Scalar("SELECT status FROM requests WHERE id = '" + id + "'");
    if (status == "in_progress" && closed++ < 3) f.Act(id, RequestEvent::kCancel, "2026-12-11T18:00:00Z");
  }
  CHECK(closed > 0);
  f.CheckTallies();
  CHECK(f.store->SweepSla(At("2027-01-30T18:00:00Z")) > 0);  // everything still open is breached
  f.CheckTallies();

  // The retention purge rewrites closed rows; the tallies must not move.
  {
    auto conn = f.db.Connect();
    RunPurge(*conn, PurgePolicy{24, 3, "America/Los_Angeles"});
  }
  CHECK(f.db.Scalar("SELECT count(*) FROM requests WHERE purged_at IS NOT NULL") != "0");
  f.CheckTallies();

  // Hand repairs: a task deleted, an open request with tasks deleted (its tasks go with it), a closed one deleted,
  // and a direct UPDATE as the dashboard test does.
  {
    auto conn = f.db.Connect();
    pqxx::work txn(*conn);
    txn.exec("DELETE FROM tasks WHERE id = (SELECT t.id FROM tasks t JOIN requests r ON r.id = t.request_id "
             "WHERE r.closed_at IS NULL ORDER BY t.id LIMIT 1)");
    txn.exec("DELETE FROM requests WHERE id = (SELECT r.id FROM requests r WHERE r.closed_at IS NULL AND EXISTS "
             "(SELECT 1 FROM tasks t WHERE t.request_id = r.id) ORDER BY r.id LIMIT 1)");
    txn.exec("DELETE FROM idempotency_keys");
    txn.exec("DELETE FROM requests WHERE id = (SELECT id FROM requests WHERE closed_at IS NOT NULL ORDER BY id LIMIT 1)");
    txn.exec("UPDATE requests SET respond_by = respond_by + 1, sla_state = 'at_risk' WHERE closed_at IS NULL");
    txn.commit();
  }
  f.CheckTallies();

  // The summary reads the tallies: the same figures as the old full scan.
  SlaSummary s = f.store->Summary();
  CHECK(s.open == std::stoll(f.db.Scalar("SELECT count(*) FROM requests WHERE closed_at IS NULL")));
  CHECK(s.by_status["cancelled"] == std::stoll(f.db.Scalar("SELECT count(*) FROM requests WHERE status = 'cancelled'")));
  CHECK(s.by_type["delete"] ==
        std::stoll(f.db.Scalar("SELECT count(*) FROM requests WHERE closed_at IS NULL AND type = 'delete'")));
  REQUIRE_FALSE(s.next_due.empty());
  CHECK(FormatDate(s.next_due.front().first) ==
        f.db.Scalar("SELECT min(respond_by) FROM requests WHERE closed_at IS NULL"));
  CHECK(s.next_due.front().second ==
        std::stoll(f.db.Scalar("SELECT count(*) FROM requests WHERE closed_at IS NULL AND respond_by = "
                               "(SELECT min(respond_by) FROM requests WHERE closed_at IS NULL)")));
}

TEST_CASE("sla: migration 0004 backfills the tallies from requests and tasks that existed before it",
          "[sla][integration]") {
  Fixture f(false);
  auto conn = f.db.Connect();
  {
    pqxx::work txn(*conn);
    txn.exec("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT "
             "NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    txn.commit();
  }
  // Migrations 1-3 only, then rows, then the rest.
  for (const auto& m : EmbeddedMigrations()) {
    if (m.version >= 4) break;
    pqxx::work txn(*conn);
    txn.exec(m.sql);
    txn.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.version, m.name,
                    Sha256Hex(m.sql));
    txn.commit();
  }
  {
    pqxx::work txn(*conn);
    txn.exec(
        "INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, "
        "sla_state, sla_next_change, created_by, closed_at, closed_on) "
        "SELECT gen_random_uuid(), (ARRAY['access','delete','correct'])[1 + i % 3], "
        "(ARRAY['received','in_progress','completed'])[1 + i % 3], now(), current_date - i % 30, 'web', "
        "current_date - i % 30 + 14, current_date - i % 30 + 45, (ARRAY['on_track','at_risk','met'])[1 + i % 3], "
        "NULL, 'seed', CASE WHEN i % 3 = 2 THEN now() END, CASE WHEN i % 3 = 2 THEN current_date END "
        "FROM generate_series(1, 300) i");
    txn.exec("INSERT INTO tasks (id, request_id, system, connector, action, state, respond_by, max_attempts) "
             "SELECT gen_random_uuid(), r.id, s, 'noop', 'delete', (ARRAY['pending','done'])[1 + (random() * 1)::int], "
             "r.respond_by, 3 FROM requests r, unnest(ARRAY['crm','ehr']) s WHERE r.status <> 'received'");
    txn.commit();
  }
  ApplyMigrations(*conn);
  CHECK(f.db.Scalar("SELECT count(*) FROM sla_system_tallies") != "0");
  f.CheckTallies();
}

TEST_CASE("sla: the sweep finds every request whose state changes from its deadlines and writes the legal clock's "
          "state and audit event for it",
          "[sla][integration]") {
  Fixture f;
  // Every path of EvaluateSla: on time, at risk, missed acknowledgement, past respond_by, acknowledged late, extended.
  std::vector<std::string> ids;
  const std::vector<RequestType> types = {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect,
                                          RequestType::kOptOut, RequestType::kLimit};
  for (int i = 0; i < 60; ++i) {
    ids.push_back(f.Create(types[i % 5], fmt::format("s{}@example.com", i),
                           fmt::format("2026-10-{:02}T17:00:00Z", 1 + i % 19)));
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string status = f.db.Scalar("SELECT status FROM requests WHERE id = '" + ids[i] + "'");
    if (status != "received") continue;
    if (i % 3 == 0) f.Act(ids[i], RequestEvent::kAcknowledge, "2026-10-20T18:00:00Z");
    if (i % 6 == 0) f.Act(ids[i], RequestEvent::kExtend, "2026-10-21T18:00:00Z");
  }
  // The expectation for each request, from the rows before the sweep, through the same legal clock: a request whose
  // state differs from the stored one changes, with one audit event; the others are not touched.
  const Timestamp now = At("2026-11-20T18:00:00Z");
  const LocalDate today = f.store->Today(now);
  std::map<std::string, std::pair<std::string, json>> expected;  // id -> state, audit
  for (const auto& id : ids) {
    const auto r = f.store->Get(id, false);
    REQUIRE(r);
    const SlaView sla = IsOpen(r->status) ? EvaluateSla(r->Facts(), today, 10)
                                          : SlaView{r->stored_sla_state, std::nullopt, std::nullopt};
    json audit;
    if (sla.state != r->stored_sla_state) {
      audit = {{"from", ToString(r->stored_sla_state)}, {"to", ToString(sla.state)},
               {"respond_by", FormatDate(r->deadlines.respond_by)}, {"days_left", sla.days_left.value_or(0)}};
    }
    expected[id] = {std::string(ToString(sla.state)), audit};
  }
  const long long audits_before = std::stoll(f.db.Scalar("SELECT count(*) FROM audit_events"));
  int changes = 0;
  for (const auto& [id, e] : expected) changes += !e.second.is_null();
  REQUIRE(changes > 10);
  REQUIRE(changes < static_cast<int>(ids.size()));
  CHECK(f.store->SweepSla(now) == changes);
  for (const auto& [id, e] : expected) {
    INFO(id);
    CHECK(f.db.Scalar("SELECT sla_state FROM requests WHERE id = '" + id + "'") == e.first);
    const std::string where =
        " FROM audit_events WHERE request_id = '" + id + "' AND action = 'sla_changed' AND actor = 'system:sweeper'";
    if (e.second.is_null()) {
      CHECK(f.db.Scalar("SELECT count(*)" + where) == "0");
    } else {
      CHECK(json::parse(f.db.Scalar("SELECT detail::text" + where)) == e.second);
    }
  }
  CHECK(std::stoll(f.db.Scalar("SELECT count(*) FROM audit_events")) == audits_before + changes);
  // Nothing changes a second time the same day.
  CHECK(f.store->SweepSla(now) == 0);
  // The sweep's events are chained like any other, a batch's events in one link.
  {
    auto conn = f.db.Connect();
    CHECK(VerifyAuditChain(*conn).ok);
  }
  f.CheckTallies();
}

TEST_CASE("sla: swept daily or after weeks away, every open request has the legal clock's state of that day",
          "[sla][integration]") {
  // The sweep's due set is three index walks over the deadlines; the legal clock is EvaluateSla. Day by day over
  // four months, and again with sweeps three weeks apart (a daemon down for weeks, a restored backup), the stored
  // state of every open request must be what the clock says, and the sweep must count exactly the requests that
  // changed: a request the walks missed, or a state changed twice, fails.
  for (const int step_days : {1, 21}) {
    DYNAMIC_SECTION("a sweep every " << step_days << " days") {
      Fixture f;
      const std::vector<RequestType> types = {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect,
                                              RequestType::kOptOut, RequestType::kLimit};
      // A timeline from 2026-09-01: request i arrives on day received(i) at 17:00 UTC; of those that need one,
      // a quarter are acknowledged on their third day, a quarter on their twentieth (late), the rest never; an
      // eighth are acknowledged on time and extended on day 25. Sweeps run at 20:00 UTC.
      constexpr int kRequests = 60;
      auto received = [](int i) { return (i * 7) % 60; };
      auto at = [](int day, int hour) {
        return At("2026-09-01T00:00:00Z") + std::chrono::hours(24 * day + hour);
      };
      std::vector<std::string> ids(kRequests);
      auto states = [&] {
        std::map<std::string, std::string> out;
        auto conn = f.db.Connect();
        pqxx::nontransaction txn(*conn);
        for (const auto& row : txn.exec("SELECT id::text, sla_state FROM requests")) {
          out[row[0].as<std::string>()] = row[1].as<std::string>();
        }
        return out;
      };
      int sweeps = 0;
      for (int day = 0; day <= 150; ++day) {
        for (int i = 0; i < kRequests; ++i) {
          const int since = day - received(i);
          if (since == 0) {
            ids[i] = f.Create(types[i % 5], fmt::format("d{}@example.com", i), FormatRfc3339(at(day, 17)));
          }
          if (since < 0 || i % 5 >= 3) continue;  // opt-out and limit need no acknowledgement
          if ((i % 4 == 0 && since == 3) || (i % 4 == 1 && since == 20)) {
            f.Act(ids[i], RequestEvent::kAcknowledge, FormatRfc3339(at(day, 18)));
          }
          if (i % 8 == 0 && since == 25) f.Act(ids[i], RequestEvent::kExtend, FormatRfc3339(at(day, 18)));
        }
        if (day % step_days != 0) continue;
        const Timestamp now = at(day, 20);
        const LocalDate today = f.store->Today(now);
        const auto before = states();
        std::map<std::string, std::string> want;
        int want_changes = 0;
        for (const auto& [id, stored] : before) {
          const auto r = f.store->Get(id, false);
          REQUIRE(r);
          if (!IsOpen(r->status)) continue;
          want[id] = ToString(EvaluateSla(r->Facts(), today, 10).state);
          want_changes += want[id] != stored;
          if (step_days == 1) {
            // The clock's own forecast of yesterday names today exactly for the requests that change today.
            const auto forecast = EvaluateSla(r->Facts(), today - date::days{1}, 10).next_change;
            CHECK((forecast == today) == (want[id] != stored));
          }
        }
        INFO("day " << FormatDate(today));
        CHECK(f.store->SweepSla(now) == want_changes);
        const auto after = states();
        for (const auto& [id, state] : want) {
          INFO(id);
          CHECK(after.at(id) == state);
        }
        ++sweeps;
      }
      CHECK(sweeps > 5);
      // Every open request ended breached (120 days on, none of them closed), each change with its event.
      CHECK(f.db.Scalar("SELECT count(*) FROM requests WHERE closed_at IS NULL AND sla_state <> 'breached'") == "0");
      CHECK(f.db.Scalar("SELECT count(*) FROM audit_events WHERE action = 'sla_changed'") ==
            f.db.Scalar("SELECT count(*) FROM audit_events WHERE action = 'sla_changed' AND detail->>'to' IN "
                        "('at_risk', 'breached')"));
      f.CheckTallies();
    }
  }
}

TEST_CASE("sla: after migration 0008 a daemon from before it can still write a request with its sla_next_change",
          "[sla][integration]") {
  // A rolling upgrade: the schema is migrated while older daemons still run; their create and update statements name
  // the column 0008 stopped using. It stays until a later migration, and the sweep ignores it.
  Fixture f;
  const std::string id = "00000000-0000-4000-8000-000000000808";
  f.db.Scalar("INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, "
              "sla_state, sla_next_change, created_by) VALUES ('" + id + "', 'delete', 'received', "
              "'2026-11-02 17:00Z', '2026-11-02', 'web_form', '2026-11-16', '2026-12-17', 'on_track', '2026-11-17', "
              "'old-daemon') RETURNING 1");
  f.db.Scalar("UPDATE requests SET sla_next_change = '2026-12-07', updated_at = now() WHERE id = '" + id +
              "' RETURNING 1");
  CHECK(f.store->SweepSla(At("2026-11-17T20:00:00Z")) == 1);  // acknowledge_by passed: found from the deadline
  CHECK(f.db.Scalar("SELECT sla_state FROM requests WHERE id = '" + id + "'") == "breached");
  f.CheckTallies();
}

TEST_CASE("engine: inline rounds split by request run at once, take disjoint requests, finish every task once and "
          "keep the tallies",
          "[engine][integration]") {
  // The dispatcher runs a backlog of inline tasks (noop) as several RunInline transactions at once, one per share
  // of the requests: here two shares run concurrently over 120 opt-outs (crm + ehr tasks each).
  Fixture f;
  for (int i = 0; i < 120; ++i) f.Create(RequestType::kOptOut, fmt::format("in{}@example.com", i), "2026-11-02T17:00:00Z");
  REQUIRE(f.db.Scalar("SELECT count(*) FROM tasks WHERE state = 'pending'") == "240");
  const auto done = [](const ClaimedTask&) {
    connectors::Outcome o;
    o.kind = connectors::OutcomeKind::kDone;
    return o;
  };
  std::array<std::set<std::string>, 2> requests_of;  // per share: the requests whose tasks it ran
  std::array<int, 2> written{};
  std::atomic<int> ready{0};
  const auto share = [&](int k) {
    std::vector<std::string> seen;
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();  // both transactions start together
    // Small limits, several rounds each: the shares overlap in time on the same systems' ready index.
    for (int round = 0; round < 50; ++round) {
      const auto r = f.store->RunInline({{"crm", 7}, {"ehr", 7}}, "worker-" + std::to_string(k), RetryPolicy{},
                                        At("2026-11-03T17:00:00Z"),
                                        [&](const ClaimedTask& t) {
                                          seen.push_back(t.request_id);
                                          return done(t);
                                        },
                                        k, 2);
      written[k] += static_cast<int>(r.outcomes.size());
      if (r.claimed.empty()) break;
    }
    requests_of[k].insert(seen.begin(), seen.end());
  };
  std::thread other(share, 1);
  share(0);
  other.join();

  CHECK(written[0] + written[1] == 240);
  CHECK(!requests_of[0].empty());
  CHECK(!requests_of[1].empty());
  for (const auto& id : requests_of[0]) CHECK(requests_of[1].count(id) == 0);
  // Each share is the requests whose id's last byte is its number modulo the count.
  for (int k = 0; k < 2; ++k) {
    CHECK(f.db.Scalar(fmt::format("SELECT count(*) FROM requests WHERE id = ANY('{{{}}}'::uuid[]) AND "
                                  "get_byte(uuid_send(id), 15) % 2 <> {}",
                                  fmt::join(requests_of[k], ","), k)) == "0");
  }
  // Every task ran once, every request completed once, after its tasks' events.
  CHECK(f.db.Scalar("SELECT count(*) FROM tasks WHERE state = 'done' AND lease_owner IS NULL AND attempts = 1") ==
        "240");
  CHECK(f.db.Scalar("SELECT count(DISTINCT detail->>'task') FROM audit_events WHERE action = 'task_done'") == "240");
  CHECK(f.db.Scalar("SELECT count(*) FROM audit_events WHERE action = 'task_done'") == "240");
  CHECK(f.db.Scalar("SELECT count(*) FROM requests WHERE status = 'completed'") == "120");
  CHECK(f.db.Scalar("SELECT count(*) FROM (SELECT request_id FROM audit_events WHERE action = 'complete' GROUP BY 1 "
                    "HAVING count(*) <> 1) x") == "0");
  // A round of the whole (one share) finds nothing left.
  CHECK(f.store->RunInline({{"crm", 100}, {"ehr", 100}}, "worker-0", RetryPolicy{}, At("2026-11-03T17:00:00Z"), done)
            .claimed.empty());
  f.CheckTallies();
}
