// The full HTTP flow against the real binary and a real PostgreSQL.
#include <catch2/catch.hpp>

#include <fstream>
#include <thread>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

const std::string kDelete = R"({"type":"delete","subject":{"identities":[{"kind":"email","value":"jane@example.com"}]}})";

json Create(Daemon& d, const std::string& token, const std::string& body, int expect = 201) {
  auto r = d.Call("POST", "/v1/requests", token, body);
  INFO(r.body);
  REQUIRE(r.status == expect);
  return r.json();
}

std::string Post(Daemon& d, const std::string& token, const std::string& id, const std::string& action,
                 const std::string& body, int expect) {
  auto r = d.Call("POST", "/v1/requests/" + id + "/" + action, token, body);
  INFO(action << " -> " << r.body);
  REQUIRE(r.status == expect);
  return r.body;
}

}  // namespace

TEST_CASE("api: a delete request goes from intake to denial with its clock and history", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");

  // Received on Friday 2026-11-20 in Los Angeles (local 09:00): day 0 is Nov 20.
  const json created = Create(d, sub, R"({"type":"delete","received_at":"2026-11-20T09:00:00-08:00",
      "channel":"web_form","subject":{"identities":[{"kind":"email","value":"jane@example.com"},
      {"kind":"phone","value":"+1 (415) 555-0100"}]}})");
  const std::string id = created["id"];
  CHECK(created["status"] == "received");
  CHECK(created["received_at"] == "2026-11-20T17:00:00Z");
  // Business days after Fri Nov 20 (Thanksgiving Nov 26 is a holiday in the test file): 23,24,25,27,30, Dec 1,2,3,4,7.
  CHECK(created["sla"]["acknowledge_by"] == "2026-12-07");
  CHECK(created["sla"]["respond_by"] == "2027-01-04");  // Nov 20 + 45 days
  CHECK(created["sla"]["extended"] == false);
  // Identities: kinds only, never values, for a submitter.
  REQUIRE(created["identities"].size() == 2);
  CHECK(created["identities"][0] == json{{"kind", "email"}});
  CHECK(created.dump().find("jane@example.com") == std::string::npos);
  CHECK(created["history"][0]["action"] == "created");

  auto got = d.Call("GET", "/v1/requests/" + id, env.token("viewer"));
  REQUIRE(got.status == 200);
  CHECK(got.json()["id"] == id);

  Post(d, sub, id, "acknowledge", "", 200);
  Post(d, sub, id, "acknowledge", "", 409);  // once only
  Post(d, sub, id, "verify", R"({"method":"account_login","level":"reasonable"})", 200);
  Post(d, sub, id, "verify", R"({"method":"account_login","level":"reasonable"})", 409);  // not from in_progress
  const json extended = json::parse(Post(d, sub, id, "extend", R"({"reason":"records in three archives"})", 200));
  CHECK(extended["sla"]["extended"] == true);
  CHECK(extended["sla"]["respond_by"] == "2027-02-18");  // Nov 20 + 90 days
  CHECK(extended["extension_reason"] == "records in three archives");
  Post(d, sub, id, "extend", R"({"reason":"again"})", 409);  // one extension only
  const json denied = json::parse(Post(d, sub, id, "deny", R"({"reason":"exempt","detail":"HIPAA"})", 200));
  CHECK(denied["status"] == "denied");
  CHECK(denied["sla"]["state"] == "met");
  CHECK(denied["denial"]["reason"] == "exempt");
  Post(d, sub, id, "cancel", "", 409);  // closed requests take no action

  std::vector<std::string> actions;
  for (const auto& h : denied["history"]) actions.push_back(h["action"]);
  CHECK(actions == std::vector<std::string>{"created", "acknowledge", "verify", "extend", "deny"});
  CHECK(d.Stop() == 0);
}

TEST_CASE("api: opt-out has no acknowledgement or extension and starts at once", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  // Monday 2026-11-23 local: 15 business days, skipping Thanksgiving (26): 24,25,27,30,1,2,3,4,7,8,9,10,11,14,15.
  const json created = Create(d, sub, R"({"type":"opt_out","channel":"gpc","received_at":"2026-11-23T01:00:00-08:00",
      "subject":{"identities":[{"kind":"device_id","value":"abc-123"}]}})");
  const std::string id = created["id"];
  CHECK(created["status"] == "in_progress");
  CHECK(created["sla"]["acknowledge_by"].is_null());
  CHECK(created["sla"]["respond_by"] == "2026-12-15");
  const auto ext = d.Call("POST", "/v1/requests/" + id + "/extend", sub, R"({"reason":"busy"})");
  CHECK(ext.status == 409);
  CHECK(ext.content_type == "application/problem+json");
  CHECK(ext.json()["detail"].get<std::string>().find("cannot be extended") != std::string::npos);
  CHECK(d.Call("POST", "/v1/requests/" + id + "/acknowledge", sub).status == 409);
  CHECK(d.Call("POST", "/v1/requests/" + id + "/cancel", sub, R"({"reason":"withdrawn"})").status == 200);
}

TEST_CASE("api: past deadlines show as breached: respond_by 50 days on, acknowledge_by 40 days on",
          "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto ago = [](int days) {
    const auto t = std::chrono::system_clock::now() - std::chrono::hours(24 * days);
    return date::format("%FT%TZ", date::floor<std::chrono::seconds>(t));
  };
  const json breached = Create(d, env.token("submitter"),
                               fmt::format(R"({{"type":"access","received_at":"{}","subject":{{"identities":[{{"kind":"mrn","value":"A1"}}]}}}})", ago(50)));
  CHECK(breached["sla"]["state"] == "breached");
  CHECK(breached["sla"]["days_left"].get<int>() < 0);
  const json at_risk = Create(d, env.token("submitter"),
                              fmt::format(R"({{"type":"correct","received_at":"{}","subject":{{"identities":[{{"kind":"mrn","value":"A2"}}]}},"corrections":[{{"field":"postal_address","value":"1 Main St"}}]}})", ago(40)));
  // 40 days ago, acknowledge_by (10 business days) has passed without acknowledgement: that is a breach too.
  CHECK(at_risk["sla"]["state"] == "breached");
  auto list = d.Call("GET", "/v1/requests?sla_state=breached", env.token("viewer"));
  REQUIRE(list.status == 200);
  CHECK(list.json()["items"].size() == 2);
}

TEST_CASE("api: idempotency keys replay the first answer and refuse another body", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  const httplib::Headers key{{"Idempotency-Key", "req-42"}};
  auto first = d.Call("POST", "/v1/requests", sub, kDelete, key);
  REQUIRE(first.status == 201);
  auto again = d.Call("POST", "/v1/requests", sub, kDelete, key);
  CHECK(again.status == 200);
  CHECK(again.json()["id"] == first.json()["id"]);
  // The same JSON with keys in another order is the same body.
  auto reordered = d.Call("POST", "/v1/requests", sub,
                          R"({"subject":{"identities":[{"value":"jane@example.com","kind":"email"}]},"type":"delete"})",
                          key);
  CHECK(reordered.status == 200);
  auto other = d.Call("POST", "/v1/requests", sub, R"({"type":"access","subject":{"identities":[{"kind":"email","value":"jane@example.com"}]}})", key);
  CHECK(other.status == 409);
  CHECK(other.json()["type"] == "urn:rightsd:problem:idempotency-key-reused");
  // Keys are scoped per client: the admin's "req-42" is a different key.
  CHECK(d.Call("POST", "/v1/requests", env.token("admin"), kDelete, key).status == 201);
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == "2");

  // Eight concurrent posts with one new key make exactly one request.
  std::vector<std::thread> threads;
  std::atomic<int> created{0}, replayed{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = d.Call("POST", "/v1/requests", sub, kDelete, {{"Idempotency-Key", "race"}});
      if (r.status == 201) ++created;
      if (r.status == 200) ++replayed;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(replayed == 7);
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == "3");
}

TEST_CASE("api: lists page by deadline with a cursor and filter by status, type and due date",
          "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  for (int day = 1; day <= 7; ++day) {
    Create(d, sub, fmt::format(R"({{"type":"{}","received_at":"2026-10-{:02}T18:00:00Z","subject":{{"identities":[{{"kind":"account_id","value":"acct-{}"}}]}}}})",
                               day % 2 ? "access" : "delete", day, day));
  }
  std::vector<std::string> dues;
  std::string cursor;
  int pages = 0;
  do {
    auto r = d.Call("GET", "/v1/requests?limit=3" + (cursor.empty() ? "" : "&cursor=" + cursor), env.token("viewer"));
    REQUIRE(r.status == 200);
    const json page = r.json();
    for (const auto& item : page["items"]) dues.push_back(item["sla"]["respond_by"]);
    cursor = page["next_cursor"].is_null() ? "" : page["next_cursor"].get<std::string>();
    ++pages;
  } while (!cursor.empty() && pages < 10);
  CHECK(pages == 3);
  REQUIRE(dues.size() == 7);
  CHECK(std::is_sorted(dues.begin(), dues.end()));
  CHECK(dues.front() == "2026-11-15");  // Oct 1 + 45
  auto access = d.Call("GET", "/v1/requests?type=access&limit=100", env.token("viewer"));
  CHECK(access.json()["items"].size() == 4);
  auto due = d.Call("GET", "/v1/requests?due_before=2026-11-18", env.token("viewer"));
  CHECK(due.json()["items"].size() == 3);  // Nov 15, 16, 17
  auto none = d.Call("GET", "/v1/requests?status=completed", env.token("viewer"));
  CHECK(none.json()["items"].empty());
}

TEST_CASE("api: the SLA summary counts by status, type and SLA state", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  Create(d, sub, kDelete);
  Create(d, sub, R"({"type":"limit","subject":{"identities":[{"kind":"email","value":"a@b.co"}]}})");
  const json c = Create(d, sub, R"({"type":"access","subject":{"identities":[{"kind":"email","value":"c@b.co"}]}})");
  Post(d, sub, c["id"], "cancel", "", 200);
  // The summary is cached for at most a second.
  json s;
  REQUIRE(Eventually([&] {
    s = d.Call("GET", "/v1/sla/summary", env.token("viewer")).json();
    return s["by_status"]["cancelled"] == 1;
  }, 5));
  CHECK(s["open"] == 2);
  CHECK(s["by_status"]["received"] == 1);
  CHECK(s["by_status"]["in_progress"] == 1);
  CHECK(s["open_by_type"]["delete"] == 1);
  CHECK(s["open_by_type"]["limit"] == 1);
  CHECK(s["open_by_type"]["access"] == 0);
  CHECK(s["by_sla_state"]["on_track"] == 2);
  CHECK(s["by_sla_state"]["met"] == 1);
  CHECK(s["next_due"].size() == 2);
  CHECK_FALSE(s["next_acknowledge_by"].is_null());
}

TEST_CASE("api: healthz needs no token and unknown paths and methods get problem bodies", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto h = d.Call("GET", "/healthz", "");
  CHECK(h.status == 200);
  CHECK(h.json()["status"] == "ok");
  auto missing = d.Call("GET", "/v1/nothing", env.token("admin"));
  CHECK(missing.status == 404);
  CHECK(missing.content_type == "application/problem+json");
  auto method = d.Call("DELETE", "/v1/requests", env.token("admin"));
  CHECK(method.status == 405);
  CHECK(method.content_type == "application/problem+json");
  auto unknown_id = d.Call("GET", "/v1/requests/00000000-0000-4000-8000-000000000000", env.token("admin"));
  CHECK(unknown_id.status == 404);
  CHECK(d.Call("GET", "/v1/requests/not-a-uuid", env.token("admin")).status == 404);
  CHECK(d.Call("POST", "/v1/requests/00000000-0000-4000-8000-000000000000/cancel", env.token("admin")).status == 404);
}

TEST_CASE("api: the 201 answer of a new request is what a read of it shows, for every role and body shape",
          "[api][integration]") {
  // The POST answer is built from what was written (not read back): it must equal GET's answer byte for byte
  // once parsed, whoever asks and whatever the body holds.
  DaemonEnv env(true, "\n[callbacks]\nsecret_file = \"callbacks.secret\"\n");
  std::ofstream(env.dir() / "callbacks.secret") << "0123456789abcdef0123456789abcdef-test-secret\n";
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::vector<std::string> bodies = {
      kDelete,
      R"({"type":"access","channel":"phone","received_at":"2026-01-02T23:59:59.000001Z",
          "subject":{"identities":[{"kind":"email","value":"Zoë.O'Brien+x@Example.com"},
                                   {"kind":"phone","value":"+1 (415) 555-0100"},{"kind":"mrn","value":"MRN-\"7\"\\z"}]},
          "authorized_agent":{"name":"Agent Ümlaut","kind":"person","proof":"signed_permission"},
          "callback_url":"http://127.0.0.1:9/hooks?x=1"})",
      R"({"type":"correct","subject":{"identities":[{"kind":"email","value":"c@example.com"}]},
          "corrections":[{"field":"postal_address","value":"1 Main St, Apt 2 😀 «ü»"},{"field":"phone","value":"+14155550101"}]})",
  };
  for (const std::string role : {"submitter", "admin"}) {
    for (const auto& body : bodies) {
      INFO(role << ": " << body);
      const auto created = d.Call("POST", "/v1/requests", env.token(role), body);
      INFO(created.body);
      REQUIRE(created.status == 201);
      const json answer = created.json();
      const auto read = d.Call("GET", "/v1/requests/" + answer["id"].get<std::string>(), env.token(role));
      REQUIRE(read.status == 200);
      CHECK(answer == read.json());
      CHECK(answer["history"].size() == 1);
      if (role == "admin") CHECK(answer["identities"][0].contains("value"));
      if (role == "submitter") CHECK_FALSE(answer["identities"][0].contains("value"));
    }
  }
  // With an Idempotency-Key the answer is built the same way; its replay is read back, and equal too.
  const httplib::Headers key{{"Idempotency-Key", "same-answer"}};
  const auto first = d.Call("POST", "/v1/requests", env.token("admin"), bodies[1], key);
  REQUIRE(first.status == 201);
  const auto replay = d.Call("POST", "/v1/requests", env.token("admin"), bodies[1], key);
  REQUIRE(replay.status == 200);
  CHECK(first.json() == replay.json());
  CHECK(d.Stop() == 0);
}
