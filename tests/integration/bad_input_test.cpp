// A table of malformed and hostile requests: each gets a 4xx problem body naming the problem, and the database
// is left exactly as it was.
#include <catch2/catch.hpp>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

struct BadCase {
  std::string name;
  std::string method;
  std::string path;
  std::string body;
  std::string content_type;
  int status;
  std::string field;  // expected "field" of the problem ("" = not checked)
  httplib::Headers headers = {};
};

std::string Counts(TestDatabase& db) {
  return db.Scalar(
      "SELECT (SELECT count(*) FROM requests) || '/' || (SELECT count(*) FROM request_identities) || '/' || "
      "(SELECT count(*) FROM audit_events) || '/' || (SELECT count(*) FROM idempotency_keys) || '/' || "
      "(SELECT coalesce(max(updated_at)::text, '') FROM requests)");
}

}  // namespace

TEST_CASE("api: bad input table gets 4xx problem bodies and changes nothing", "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string existing =
      d.Call("POST", "/v1/requests", env.token("admin"),
             R"({"type":"delete","subject":{"identities":[{"kind":"email","value":"x@example.com"}]}})")
          .json()["id"];
  const std::string ids = R"("subject":{"identities":[{"kind":"email","value":"a@example.com"}]})";
  const std::string json_type = "application/json";
  const std::string future = date::format("%FT%TZ", date::floor<std::chrono::seconds>(
                                                        std::chrono::system_clock::now() + std::chrono::hours(2)));
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "[";
  for (int i = 0; i < 40; ++i) deep += "]";
  const std::string on = "/v1/requests/" + existing;

  const std::vector<BadCase> cases = {
      {"empty body", "POST", "/v1/requests", "", json_type, 400, ""},
      {"truncated json", "POST", "/v1/requests", R"({"type":"delete",)", json_type, 400, ""},
      {"not json", "POST", "/v1/requests", "type=delete", json_type, 400, ""},
      {"invalid utf-8", "POST", "/v1/requests", "{\"type\":\"delete\"," + ids.substr(0, 40) + "\xff\xfe\"}]}}",
       json_type, 400, ""},
      {"duplicate key", "POST", "/v1/requests", R"({"type":"delete","type":"access",)" + ids + "}", json_type, 400,
       ""},
      {"deep nesting", "POST", "/v1/requests", R"({"type":"delete",)" + ids + R"(,"x":)" + deep + "}", json_type, 400,
       ""},
      {"array body", "POST", "/v1/requests", "[]", json_type, 422, "/"},
      {"null body", "POST", "/v1/requests", "null", json_type, 422, "/"},
      {"unknown type", "POST", "/v1/requests", R"({"type":"erase",)" + ids + "}", json_type, 422, "/type"},
      {"type wrong json type", "POST", "/v1/requests", R"({"type":7,)" + ids + "}", json_type, 422, "/type"},
      {"missing type", "POST", "/v1/requests", "{" + ids + "}", json_type, 422, "/type"},
      {"missing subject", "POST", "/v1/requests", R"({"type":"delete"})", json_type, 422, "/subject"},
      {"unknown field", "POST", "/v1/requests", R"({"type":"delete","priority":1,)" + ids + "}", json_type, 422,
       "/priority"},
      {"empty identities", "POST", "/v1/requests", R"({"type":"delete","subject":{"identities":[]}})", json_type, 422,
       "/subject/identities"},
      {"unknown identity kind", "POST", "/v1/requests",
       R"({"type":"delete","subject":{"identities":[{"kind":"ssn","value":"123"}]}})", json_type, 422,
       "/subject/identities/0/kind"},
      {"bad email", "POST", "/v1/requests",
       R"({"type":"delete","subject":{"identities":[{"kind":"email","value":"nobody"}]}})", json_type, 422,
       "/subject/identities/0/value"},
      {"identity value not a string", "POST", "/v1/requests",
       R"({"type":"delete","subject":{"identities":[{"kind":"mrn","value":12345}]}})", json_type, 422,
       "/subject/identities/0/value"},
      {"future received_at", "POST", "/v1/requests", R"({"type":"delete","received_at":")" + future + R"(",)" + ids + "}",
       json_type, 422, "/received_at"},
      {"received_at without offset", "POST", "/v1/requests",
       R"({"type":"delete","received_at":"2026-01-05T10:00:00",)" + ids + "}", json_type, 422, "/received_at"},
      {"corrections on delete", "POST", "/v1/requests",
       R"({"type":"delete",)" + ids + R"(,"corrections":[{"field":"email","value":"b@example.com"}]})", json_type, 422,
       "/corrections"},
      {"correct without corrections", "POST", "/v1/requests", R"({"type":"correct",)" + ids + "}", json_type, 422,
       "/corrections"},
      {"sql metacharacters in kind", "POST", "/v1/requests",
       R"({"type":"delete","subject":{"identities":[{"kind":"email'); DROP TABLE requests;--","value":"a@b.c"}]}})",
       json_type, 422, "/subject/identities/0/kind"},
      {"wrong content type", "POST", "/v1/requests", R"({"type":"delete",)" + ids + "}", "text/plain", 415,
       "Content-Type"},
      {"form content type", "POST", "/v1/requests", R"({"type":"delete",)" + ids + "}",
       "application/x-www-form-urlencoded", 415, "Content-Type"},
      {"oversized body", "POST", "/v1/requests",
       R"({"type":"delete",)" + ids + R"(,"pad":")" + std::string(2 * 1024 * 1024, 'a') + "\"}", json_type, 413, ""},
      {"bad idempotency key", "POST", "/v1/requests", R"({"type":"delete",)" + ids + "}", json_type, 422,
       "Idempotency-Key", {{"Idempotency-Key", std::string(300, 'k')}}},
      {"unknown query parameter", "POST", "/v1/requests?debug=1", R"({"type":"delete",)" + ids + "}", json_type, 422,
       "debug"},
      {"extend without reason", "POST", on + "/extend", "", json_type, 422, "/reason"},
      {"extend empty reason", "POST", on + "/extend", R"({"reason":"  "})", json_type, 422, "/reason"},
      {"deny unknown reason", "POST", on + "/deny", R"({"reason":"because"})", json_type, 422, "/reason"},
      {"deny other without detail", "POST", on + "/deny", R"({"reason":"other"})", json_type, 422, "/detail"},
      {"verify bad level", "POST", on + "/verify", R"({"method":"account_login","level":"total"})", json_type, 422,
       "/level"},
      {"acknowledge with fields", "POST", on + "/acknowledge", R"({"note":"hi"})", json_type, 422, "/note"},
      {"unknown action", "POST", on + "/approve", "", json_type, 404, ""},
      {"list bad status", "GET", "/v1/requests?status=open", "", json_type, 422, "status"},
      {"list bad limit", "GET", "/v1/requests?limit=0", "", json_type, 422, "limit"},
      {"list huge limit", "GET", "/v1/requests?limit=100000", "", json_type, 422, "limit"},
      {"list bad cursor", "GET", "/v1/requests?cursor=%27%20OR%201=1", "", json_type, 422, "cursor"},
      {"list bad date", "GET", "/v1/requests?due_before=2026-13-01", "", json_type, 422, "due_before"},
      {"list repeated param", "GET", "/v1/requests?type=access&type=delete", "", json_type, 422, "type"},
      {"audit bad request id", "GET", "/v1/audit?request_id=1%20OR%201=1", "", json_type, 422, "request_id"},
      {"put on collection", "PUT", "/v1/requests", "{}", json_type, 405, ""},
      {"path traversal", "GET", "/v1/requests/../../etc/passwd", "", json_type, 404, ""},
  };

  const std::string before = Counts(env.db());
  for (const auto& c : cases) {
    const auto r = d.Call(c.method, c.path, env.token("admin"), c.body, c.headers, c.content_type);
    INFO(c.name << ": " << r.status << " " << r.body.substr(0, 300));
    CHECK(r.status == c.status);
    CHECK(r.content_type == "application/problem+json");
    const json problem = r.json();
    REQUIRE(problem.is_object());
    CHECK(problem["status"] == r.status);
    CHECK(problem["title"].is_string());
    CHECK(problem["detail"].is_string());
    if (!c.field.empty()) CHECK(problem.value("field", "") == c.field);
  }
  CHECK(Counts(env.db()) == before);
  CHECK(d.Running());
  CHECK(d.Log().find("internal error") == std::string::npos);
}
