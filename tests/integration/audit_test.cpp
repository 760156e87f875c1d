// The audit trail: append-only in the database, sealed into a hash chain, and `rightsd audit verify` names the
// first event that was altered, removed or reordered.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace rightsd::test;

namespace {

// Six events: three requests created, one acknowledged, one cancelled, one verified.
void MakeHistory(DaemonEnv& env) {
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
  REQUIRE(Eventually([&] { return env.db().Scalar("SELECT count(*) FROM audit_events WHERE chain_seq IS NULL") == "0"; }, 10));
  REQUIRE(d.Stop() == 0);
  REQUIRE(env.db().Scalar("SELECT count(*) FROM audit_events") == "6");
}

void AsSuperuserWithoutTriggers(DaemonEnv& env, const std::string& sql) {
  auto conn = env.db().Connect();
  pqxx::work txn(*conn);
  txn.exec("SET LOCAL session_replication_role = replica");  // what a rogue superuser would do
  txn.exec(sql);
  txn.commit();
}

}  // namespace

TEST_CASE("audit: an untouched chain verifies", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  const auto r = env.Cli({"audit", "verify", "--config", env.config().string()});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("audit chain ok: 6 events verified, 0 not yet sealed") != std::string::npos);
  // Chain positions follow commit order and every link holds.
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_events a JOIN audit_events b ON b.chain_seq = a.chain_seq + 1 "
                        "WHERE b.prev_hash <> a.hash") == "0");
}

TEST_CASE("audit: the table refuses updates, deletes and truncation", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  auto conn = env.db().Connect();
  for (const char* sql : {"UPDATE audit_events SET actor = 'mallory' WHERE id = 1",
                          "UPDATE audit_events SET chain_seq = 99 WHERE id = 1", "DELETE FROM audit_events WHERE id = 2",
                          "TRUNCATE audit_events"}) {
    pqxx::work txn(*conn);
    INFO(sql);
    CHECK_THROWS_WITH(txn.exec(sql), Catch::Contains("append-only"));
  }
}

TEST_CASE("audit: verify names an altered event", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  const std::string id = env.db().Scalar("SELECT id FROM audit_events WHERE chain_seq = 4");
  AsSuperuserWithoutTriggers(env, "UPDATE audit_events SET detail = detail || '{\"to\":\"completed\"}' WHERE id = " + id);
  const auto r = env.Cli({"audit", "verify", "--config", env.config().string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("event " + id + " was altered") != std::string::npos);
  CHECK(r.err.find("3 events verified before it") != std::string::npos);
}

TEST_CASE("audit: verify names an event whose actor or time was changed", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  const std::string id = env.db().Scalar("SELECT id FROM audit_events WHERE chain_seq = 2");
  AsSuperuserWithoutTriggers(env, "UPDATE audit_events SET at = at - interval '1 day' WHERE id = " + id);
  const auto r = env.Cli({"audit", "verify", "--config", env.config().string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("event " + id + " was altered") != std::string::npos);
}

TEST_CASE("audit: verify finds a deleted event and a cut-off tail", "[audit][integration]") {
  DaemonEnv env;
  MakeHistory(env);
  SECTION("a row from the middle") {
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_events WHERE chain_seq = 3");
    const auto r = env.Cli({"audit", "verify", "--config", env.config().string()});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("chain position 3 is missing") != std::string::npos);
  }
  SECTION("the last rows") {
    AsSuperuserWithoutTriggers(env, "DELETE FROM audit_events WHERE chain_seq >= 5");
    const auto r = env.Cli({"audit", "verify", "--config", env.config().string()});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("removed from the end") != std::string::npos);
  }
}
