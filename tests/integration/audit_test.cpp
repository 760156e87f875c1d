// The audit trail: append-only in the database, chained by the transactions that write it (migration 0007), and
// `rightsd audit verify` names the first event or link that was altered, removed, reordered or never linked.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "audit.h"
#include "crypto.h"
#include "harness.h"
#include "migrate.h"

using namespace rightsd::test;
using rightsd::VerifyAuditChain;

namespace {

// Six events through the daemon (three requests created, one acknowledged, one cancelled, one verified), then
// `extra` events written by one session of the test, one statement each, so that one chain certainly has several
// links in a known order.
void MakeHistory(DaemonEnv& env, int extra = 4) {
  Daemon d(env);
  REQUIRE(d.WaitReady());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(d.Call("POST", "/v1/requests", env.token("submitter"),
                         fmt::format(R"({{"type":"access","subject":{{"identities":[{{"kind":"mrn","value":"M{}"}}]}}}})", i))
                      .json()["id"]);
  }
  REQUIRE(d.Call("POST", "/v1/requests/" + ids[0] + "/acknowledge", env.token("submitter")).status == 200);
  REQUIRE(d.Call("POST", "/v1/requests/" + ids[1] + "/cancel", env.token("submitter")).status == 200);
  REQUIRE(d.Call("POST", "/v1/requests/" + ids[2] + "/verify", env.token("submitter"),
                 R"({"method":"data_points_match","level":"reasonable"})")
              .status == 200);
  REQUIRE(d.Stop() == 0);
  auto conn = env.db().Connect();
  for (int i = 0; i < extra; ++i) {
    // Text the canonical form must take byte for byte: quotes, a backslash, non-ASCII, an emoji, a control
    // character escaped by jsonb, numbers jsonb normalises.
    pqxx::nontransaction(*conn).exec_params(
        "INSERT INTO audit_events (request_id, actor, action, detail) VALUES ($1::uuid, 'admin:zoë', 'note', "
        "$2::jsonb)",
        ids[static_cast<std::size_t>(i) % ids.size()],
        fmt::format(R"({{"n": {}, "text": "a \"quoted\" \\ note — ü 😀 \u0001", "big": 1.50e3}})", i));
  }
  REQUIRE(env.db().Scalar("SELECT count(*) FROM audit_events") == std::to_string(6 + extra));
}

void AsSuperuserWithoutTriggers(DaemonEnv& env, const std::string& sql) {
  auto conn = env.db().Connect();
  pqxx::work txn(*conn);
  txn.exec("SET LOCAL session_replication_role = replica");  // what a rogue superuser would do
  txn.exec(sql);
  txn.commit();
}

CliResult Verify(DaemonEnv& env) { return env.Cli({"audit", "verify", "--config", env.config().string()}); }

// The chain of the test session's own events, and its links in order.
std::string TestChain(DaemonEnv& env) {
  return env.db().Scalar("SELECT chain_id FROM audit_links WHERE 'admin:zoë' = ALL (SELECT actor FROM audit_events "
                         "WHERE id = ANY(event_ids)) GROUP BY chain_id ORDER BY count(*) DESC LIMIT 1");
}

}  // namespace

TEST_CASE("audit: an untouched trail verifies, every event in one link of its transaction", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  const auto r = Verify(env);
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == fmt::format("audit chain ok: 10 events verified (0 in the first chain, 10 in {} links)\n",
                             env.db().Scalar("SELECT count(*) FROM audit_links")));
  // Links follow each other within a chain, and each head row is its chain's last link.
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_links a JOIN audit_links b ON b.chain_id = a.chain_id AND "
                        "b.seq = a.seq + 1 WHERE b.hash <> sha256(a.hash || b.leaves)") == "0");
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_chains c WHERE c.seq > 0 AND c.hash <> (SELECT l.hash FROM "
                        "audit_links l WHERE l.chain_id = c.chain_id AND l.seq = c.seq)") == "0");
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_chains") == "64");
  // The test session's four statements are four links of one chain.
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_links WHERE chain_id = " + TestChain(env)) == "4");
}

TEST_CASE("audit: events and links refuse updates, deletes and truncation", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env, 1);
  auto conn = env.db().Connect();
  for (const char* sql : {"UPDATE audit_events SET actor = 'mallory' WHERE id = 1",
                          "UPDATE audit_events SET chain_seq = 99 WHERE id = 1", "DELETE FROM audit_events WHERE id = 2",
                          "TRUNCATE audit_events", "UPDATE audit_links SET hash = leaves",
                          "DELETE FROM audit_links", "TRUNCATE audit_links"}) {
    pqxx::work txn(*conn);
    INFO(sql);
    CHECK_THROWS_WITH(txn.exec(sql), Catch::Contains("append-only"));
  }
}

TEST_CASE("audit: verify names an altered event", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  SECTION("its detail") {
    const std::string id = env.db().Scalar("SELECT id FROM audit_events WHERE action = 'cancel'");
    REQUIRE_FALSE(id.empty());
    AsSuperuserWithoutTriggers(env, "UPDATE audit_events SET detail = detail || '{\"to\":\"completed\"}' WHERE id = " + id);
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("event " + id + " was altered") != std::string::npos);
  }
  SECTION("its time") {
    const std::string id = env.db().Scalar("SELECT min(id) FROM audit_events");
    AsSuperuserWithoutTriggers(env, "UPDATE audit_events SET at = at - interval '1 day' WHERE id = " + id);
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("event " + id + " was altered") != std::string::npos);
  }
  SECTION("its actor, and the leaf stored in its link to match") {
    const std::string id = env.db().Scalar("SELECT max(id) FROM audit_events");
    AsSuperuserWithoutTriggers(env, "UPDATE audit_events SET actor = 'admin:mallory' WHERE id = " + id);
    // The forger recomputes the event's leaf the way the trigger does; the link's hash still covers the old one.
    AsSuperuserWithoutTriggers(
        env, "UPDATE audit_links l SET leaves = sha256(audit_canonical(e.id::text, coalesce(e.request_id::text, ''), "
             "e.actor, e.action, ((extract(epoch from e.at) * 1000000)::bigint)::text, e.detail::text)) FROM "
             "audit_events e WHERE e.id = " + id + " AND l.event_ids = ARRAY[e.id]");
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("was altered: its hash does not match its events") != std::string::npos);
  }
}

TEST_CASE("audit: verify finds a deleted event, a deleted link and a cut-off tail", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  const std::string chain = TestChain(env);
  REQUIRE_FALSE(chain.empty());
  const auto event_of = [&](int seq) {
    return env.db().Scalar(fmt::format("SELECT event_ids[1] FROM audit_links WHERE chain_id = {} AND seq = "
                                       "(SELECT min(seq) FROM audit_links WHERE chain_id = {}) + {}",
                                       chain, chain, seq));
  };
  SECTION("an event") {
    const std::string id = event_of(1);
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_events WHERE id = " + id);
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("event " + id + " of chain " + chain) != std::string::npos);
    CHECK(r.err.find("is missing (a row was deleted)") != std::string::npos);
  }
  SECTION("an event and its link from the middle of a chain") {
    const std::string id = event_of(1);
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_links WHERE " + id + " = ANY(event_ids)");
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_events WHERE id = " + id);
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("chain " + chain + " link") != std::string::npos);
    CHECK(r.err.find("is missing before link") != std::string::npos);
  }
  SECTION("the last links of a chain") {
    const std::string last = env.db().Scalar("SELECT max(seq) FROM audit_links WHERE chain_id = " + chain);
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_events WHERE id IN (SELECT unnest(event_ids) FROM audit_links "
                                    "WHERE chain_id = " + chain + " AND seq >= " + last + " - 1)");
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_links WHERE chain_id = " + chain + " AND seq >= " + last + " - 1");
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("links were removed from the end") != std::string::npos);
  }
  SECTION("a chain's head row") {
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_chains WHERE chain_id = " + chain);
    const auto r = Verify(env);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("the head row of chain " + chain + " is missing") != std::string::npos);
  }
}

TEST_CASE("audit: verify names an event written around the trigger that links it", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env, 1);
  // With triggers off, the row goes in unlinked: what a superuser covering a forged event would do.
  AsSuperuserWithoutTriggers(env, "INSERT INTO audit_events (request_id, actor, action) VALUES (NULL, 'admin:mallory', "
                                  "'note')");
  const std::string id = env.db().Scalar("SELECT max(id) FROM audit_events");
  const auto r = Verify(env);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("event " + id + " is in no chain") != std::string::npos);
}

TEST_CASE("audit: 80 sessions writing at once, more than there are chains, leave a trail that verifies",
          "[audit][integration]") {
  DaemonEnv env;
  // 80 connections, each writing 25 one-event transactions and 5 transactions of 10 events: sessions past the
  // 64th share a chain and take turns on its row lock.
  constexpr int kSessions = 80;
  std::vector<std::unique_ptr<pqxx::connection>> conns;
  for (int i = 0; i < kSessions; ++i) conns.push_back(env.db().Connect());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < kSessions; ++s) {
    threads.emplace_back([&, s] {
      try {
        for (int i = 0; i < 30; ++i) {
          pqxx::work txn(*conns[static_cast<std::size_t>(s)]);
          txn.exec_params("INSERT INTO audit_events (actor, action, detail) SELECT $1, 'load', jsonb_build_object('i', "
                          "g) FROM generate_series(1, $2) g",
                          fmt::format("test:{}", s), i < 25 ? 1 : 10);
          txn.commit();
        }
      } catch (const std::exception&) {
        ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_events") == std::to_string(kSessions * (25 + 5 * 10)));
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_links") == std::to_string(kSessions * 30));
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_chains WHERE seq > 0") == "64");
  conns.clear();
  auto conn = env.db().Connect();
  const auto result = VerifyAuditChain(*conn);
  INFO(result.problem);
  CHECK(result.ok);
  CHECK(result.verified == kSessions * (25 + 5 * 10));
  CHECK(result.links == kSessions * 30);
}

TEST_CASE("audit: an upgraded database keeps its sealed events in the first chain and links the ones not sealed yet",
          "[audit][integration]") {
  TestDatabase db;
  auto conn = db.Connect();
  {
    pqxx::work txn(*conn);
    txn.exec("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, checksum text NOT "
             "NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    txn.commit();
  }
  for (const auto& m : rightsd::EmbeddedMigrations()) {
    if (m.version >= 7) break;
    pqxx::work txn(*conn);
    txn.exec(m.sql);
    txn.exec_params("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", m.version, m.name,
                    rightsd::Sha256Hex(m.sql));
    txn.commit();
  }
  // Eight events as version 6 wrote them; the old sealer had sealed the first five when the upgrade came.
  pqxx::nontransaction(*conn).exec(
      "INSERT INTO audit_events (request_id, actor, action, detail) SELECT NULL, 'admin:alice', 'note', "
      "jsonb_build_object('n', g, 'text', 'ü') FROM generate_series(1, 8) g");
  {
    pqxx::work txn(*conn);
    std::string prev = rightsd::AuditGenesisHash();
    long long seq = 0;
    for (const auto& row : txn.exec("SELECT id, '', actor, action, (extract(epoch from at) * 1000000)::bigint, "
                                    "detail::text FROM audit_events ORDER BY id LIMIT 5")) {
      const rightsd::AuditRecord record{row[0].as<long long>(), "", row[2].as<std::string>(), row[3].as<std::string>(),
                                        row[4].as<long long>(), row[5].as<std::string>()};
      const std::string hash = rightsd::AuditHash(prev, record);
      txn.exec_params("UPDATE audit_events SET chain_seq = $1, prev_hash = decode($2, 'hex'), hash = decode($3, 'hex') "
                      "WHERE id = $4",
                      ++seq, rightsd::ToHex(prev), rightsd::ToHex(hash), record.id);
      prev = hash;
    }
    txn.exec_params("INSERT INTO audit_chain_head (singleton, chain_seq, hash) VALUES (true, $1, decode($2, 'hex'))",
                    seq, rightsd::ToHex(prev));
    txn.commit();
  }
  // 0007 and every one after it.
  CHECK(rightsd::ApplyMigrations(*conn) == static_cast<int>(rightsd::EmbeddedMigrations().size()) - 6);
  auto result = VerifyAuditChain(*conn);
  INFO(result.problem);
  CHECK(result.ok);
  CHECK(result.first_chain == 5);
  CHECK(result.verified == 8);
  CHECK(result.links == 1);
  // New events are linked; a sealed event of the first chain is still checked.
  pqxx::nontransaction(*conn).exec("INSERT INTO audit_events (actor, action) VALUES ('admin:alice', 'note')");
  result = VerifyAuditChain(*conn);
  CHECK(result.ok);
  CHECK(result.verified == 9);
  {
    pqxx::work txn(*conn);
    txn.exec("SET LOCAL session_replication_role = replica");
    txn.exec("UPDATE audit_events SET actor = 'admin:mallory' WHERE chain_seq = 3");
    txn.commit();
  }
  result = VerifyAuditChain(*conn);
  CHECK_FALSE(result.ok);
  CHECK(result.problem.find("was altered") != std::string::npos);
  CHECK(result.first_bad_id == std::stoll(db.Scalar("SELECT id FROM audit_events WHERE chain_seq = 3")));
}
