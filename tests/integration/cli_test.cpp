// The binary's commands and start-up: clear one-line failures, migrations, keys, tokens, and the sweeper lock
// that only one daemon holds at a time.
#include <catch2/catch.hpp>

#include <fstream>
#include <thread>

#include "crypto.h"
#include "harness.h"

using namespace rightsd::test;

namespace {
int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST_CASE("cli: check-config accepts a good config and names the key of a bad one", "[cli][integration]") {
  DaemonEnv env(false);
  auto ok = env.Cli({"check-config", "--config", env.config().string()});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.find("config ok") != std::string::npos);

  env.WriteConfig(env.db().url(), "[http2]\nx = 1\n");
  auto bad_table = env.Cli({"check-config", "--config", env.config().string()});
  CHECK(bad_table.exit_code == 1);
  CHECK(bad_table.err.find("http2: unknown table") != std::string::npos);
  CHECK(Lines(bad_table.err) == 1);

  std::ofstream(env.dir() / "holidays.txt") << "2026-02-30\n";
  env.WriteConfig(env.db().url());
  auto bad_holiday = env.Cli({"check-config", "--config", env.config().string()});
  CHECK(bad_holiday.exit_code == 1);
  CHECK(bad_holiday.err.find("holidays.txt") != std::string::npos);
  CHECK(bad_holiday.err.find("line 1") != std::string::npos);

  auto missing = env.Cli({"check-config", "--config", (env.dir() / "nope.toml").string()});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err.find("cannot read the config file") != std::string::npos);

  auto usage = env.Cli({"frobnicate"});
  CHECK(usage.exit_code == 2);
}

TEST_CASE("cli: serve stops at once with one clear line when the database is unreachable", "[cli][integration]") {
  DaemonEnv env(false);
  env.WriteConfig("host=" + env.dir().string() + " port=1 user=postgres dbname=nothing connect_timeout=2");
  Daemon d(env);
  const int code = d.WaitExit(20);
  CHECK(code == 1);
  const std::string log = d.Log();
  CHECK(log.find("database unreachable") != std::string::npos);
  CHECK(Lines(log) == 1);
}

TEST_CASE("cli: serve refuses a database whose schema is not current, migrate fixes it", "[cli][integration]") {
  DaemonEnv env(false);
  {
    Daemon d(env);
    CHECK(d.WaitExit(20) == 1);
    CHECK(d.Log().find("run 'rightsd migrate'") != std::string::npos);
  }
  auto m = env.Cli({"migrate", "--config", env.config().string()});
  INFO(m.err);
  CHECK(m.exit_code == 0);
  CHECK(m.out.find("schema at version ") != std::string::npos);
  CHECK(m.out.find(" migrations applied now") != std::string::npos);
  auto again = env.Cli({"migrate", "--config", env.config().string()});
  CHECK(again.out.find("0 migrations applied now") != std::string::npos);
  Daemon d(env);
  CHECK(d.WaitReady());
  // An applied migration that was edited is refused.
  auto conn = env.db().Connect();
  pqxx::nontransaction(*conn).exec("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1");
  auto edited = env.Cli({"migrate", "--config", env.config().string()});
  CHECK(edited.exit_code == 1);
  CHECK(edited.err.find("edited after it was applied") != std::string::npos);
}

TEST_CASE("cli: keygen writes a private key once and token new prints a token and its line", "[cli][integration]") {
  DaemonEnv env(false);
  const auto key = env.dir() / "new.key";
  auto k = env.Cli({"keygen", "--out", key.string()});
  CHECK(k.exit_code == 0);
  std::string hex;
  std::ifstream(key) >> hex;
  CHECK(hex.size() == 64);
  CHECK((std::filesystem::status(key).permissions() & std::filesystem::perms::group_all) == std::filesystem::perms::none);
  auto again = env.Cli({"keygen", "--out", key.string()});
  CHECK(again.exit_code == 1);
  CHECK(again.err.find("refusing to overwrite") != std::string::npos);
  std::string hex_after;
  std::ifstream(key) >> hex_after;
  CHECK(hex_after == hex);

  auto t = env.Cli({"token", "new", "--role", "viewer", "--name", "grafana"});
  REQUIRE(t.exit_code == 0);
  const auto nl = t.out.find('\n');
  const std::string token = t.out.substr(7, nl - 7);
  CHECK(t.out.substr(0, 7) == "token: ");
  CHECK(t.out.substr(nl + 1) == "tokens-file line: viewer grafana " + rightsd::Sha256Hex(token) + "\n");
  CHECK(env.Cli({"token", "new", "--role", "root", "--name", "x"}).exit_code == 2);
  CHECK(env.Cli({"token", "new", "--role", "viewer", "--name", "has space"}).exit_code == 2);
}

TEST_CASE("sla: two daemons on one database never both run the sweeper", "[sla][integration]") {
  DaemonEnv env;
  Daemon a(env, "a");
  REQUIRE(a.WaitReady());
  REQUIRE(Eventually([&] { return a.Call("GET", "/healthz", "").json()["sweeper"] == true; }, 10));
  Daemon b(env, "b");
  REQUIRE(b.WaitReady());
  // For two seconds, sampled: exactly one holds the lock.
  for (int i = 0; i < 20; ++i) {
    const bool ha = a.Call("GET", "/healthz", "").json()["sweeper"];
    const bool hb = b.Call("GET", "/healthz", "").json()["sweeper"];
    CHECK(ha);
    CHECK_FALSE(hb);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(env.db().Scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())") == "1");
  // The holder dies without a goodbye; the other takes over once the session is gone.
  a.Kill();
  CHECK(Eventually([&] { return b.Call("GET", "/healthz", "").json()["sweeper"] == true; }, 15));
  CHECK(b.Log().find("sweeper: lock acquired") != std::string::npos);
  // b goes on serving and writing events; the chain holds what both wrote.
  REQUIRE(b.Call("POST", "/v1/requests", env.token("submitter"),
                 R"({"type":"limit","subject":{"identities":[{"kind":"email","value":"z@example.com"}]}})")
              .status == 201);
  const auto verified = env.Cli({"audit", "verify", "--config", env.config().string()});
  INFO(verified.err);
  CHECK(verified.exit_code == 0);
  CHECK(b.Stop() == 0);
}

TEST_CASE("sla: rightsd sweep breaches overdue requests once, with a warning for the first 100 and a count of the rest",
          "[sla][integration]") {
  DaemonEnv env;
  // 130 delete requests acknowledged on time, past respond_by (Oct 16) and still stored on_track: a database restored
  // from before they were due, or a sweeper that did not run for weeks.
  {
    auto conn = env.db().Connect();
    pqxx::work txn(*conn);
    txn.exec("INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, "
             "acknowledged_on, acknowledged_at, verified_at, sla_state, created_by) "
             "SELECT gen_random_uuid(), 'delete', 'in_progress', '2026-09-01 17:00Z', '2026-09-01', 'web_form', "
             "'2026-09-15', '2026-10-16', '2026-09-03', '2026-09-03 18:00Z', '2026-09-03 19:00Z', 'on_track', 'seed' "
             "FROM generate_series(1, 130)");
    txn.commit();
  }
  const std::vector<std::string> sweep = {"sweep", "--config", env.config().string(), "--date", "2026-11-02"};
  const auto first = env.Cli(sweep);
  INFO(first.err);
  CHECK(first.exit_code == 0);
  CHECK(first.out.find("sla sweep for 2026-11-02: 130 requests changed state") != std::string::npos);
  std::size_t lines = 0;
  for (auto at = first.err.find("sla breached ("); at != std::string::npos; at = first.err.find("sla breached (", at + 1)) {
    ++lines;
  }
  CHECK(lines == 100);
  CHECK(first.err.find("sweeper: 30 more requests breached in this sweep") != std::string::npos);
  CHECK(env.db().Scalar("SELECT count(*) FROM requests WHERE sla_state = 'breached'") == "130");
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'sla_changed' AND detail->>'to' = "
                        "'breached'") == "130");
  // Breached is for good: the next sweep finds nothing and says nothing.
  const auto again = env.Cli(sweep);
  CHECK(again.out.find(": 0 requests changed state") != std::string::npos);
  CHECK(again.err.find("breached") == std::string::npos);
}
