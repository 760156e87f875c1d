// Every endpoint x every role, and who may see identity values.
#include <catch2/catch.hpp>

#include <signal.h>

#include <fstream>
#include <sstream>

#include "crypto.h"
#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

struct Endpoint {
  std::string method;
  std::string path;  // {id} is replaced by a fresh request's id
  std::string body;
  // Expected status for: none, bad token, submitter, viewer, admin, auditor.
  std::array<int, 6> expect;
};

}  // namespace

TEST_CASE("authz: role matrix over every endpoint, with no token, a bad token and a revoked token",
          "[authz][integration]") {
  DaemonEnv env;
  // A revoked token: an admin's, in the tokens file at start, removed from it afterwards. SIGHUP reloads the tokens
  // file, so the revocation takes effect without a restart; a restart keeps it revoked. Both are checked here.
  const std::string revoked = rightsd::GenerateToken();
  const auto tokens_file = env.dir() / "tokens";
  std::string tokens;
  {
    std::ifstream in(tokens_file);
    std::stringstream text;
    text << in.rdbuf();
    tokens = text.str();
  }
  std::ofstream(tokens_file, std::ios::app) << "admin leaver " << rightsd::Sha256Hex(revoked) << "\n";
  {
    Daemon before(env, "before");
    REQUIRE(before.WaitReady());
    CHECK(before.Call("GET", "/v1/requests", revoked).status == 200);
    std::ofstream(tokens_file, std::ios::trunc) << tokens;
    ::kill(before.pid(), SIGHUP);
    REQUIRE(Eventually([&] { return before.Log().find("sighup: configuration checked; the tokens file is reloaded") !=
                                    std::string::npos; }, 10));
    CHECK(before.Call("GET", "/v1/requests", revoked).status == 401);
    REQUIRE(before.Stop() == 0);
  }
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string body =
      R"({"type":"access","subject":{"identities":[{"kind":"email","value":"matrix@example.com"}]}})";
  const std::vector<Endpoint> endpoints = {
      {"GET", "/healthz", "", {200, 200, 200, 200, 200, 200}},
      {"POST", "/v1/requests", body, {401, 401, 201, 403, 201, 403}},
      {"GET", "/v1/requests", "", {401, 401, 200, 200, 200, 200}},
      {"GET", "/v1/requests/{id}", "", {401, 401, 200, 200, 200, 200}},
      {"GET", "/v1/sla/summary", "", {401, 401, 200, 200, 200, 200}},
      {"GET", "/v1/audit", "", {401, 401, 403, 403, 200, 200}},
      {"POST", "/v1/requests/{id}/acknowledge", "", {401, 401, 200, 403, 200, 403}},
      {"POST", "/v1/requests/{id}/verify", R"({"method":"account_login","level":"reasonable"})",
       {401, 401, 200, 403, 200, 403}},
      {"POST", "/v1/requests/{id}/extend", R"({"reason":"volume"})", {401, 401, 200, 403, 200, 403}},
      {"POST", "/v1/requests/{id}/deny", R"({"reason":"not_a_consumer"})", {401, 401, 200, 403, 200, 403}},
      {"POST", "/v1/requests/{id}/cancel", "", {401, 401, 200, 403, 200, 403}},
      // Engine endpoints. An admin gets past authorisation and then 409/404: no task has failed, none exists.
      {"POST", "/v1/requests/{id}/complete", "", {401, 401, 403, 403, 409, 403}},
      {"GET", "/v1/requests/{id}/package", "", {401, 401, 404, 403, 404, 403}},
      {"POST", "/v1/requests/{id}/tasks/00000000-0000-4000-8000-000000000000/retry", "",
       {401, 401, 403, 403, 404, 403}},
      {"POST", "/v1/requests/{id}/tasks/00000000-0000-4000-8000-000000000000/complete", R"({"outcome":"done"})",
       {401, 401, 404, 403, 404, 403}},
      // Authenticated by the processor's signature, not a token: a body naming no request is refused for everyone.
      {"POST", "/v1/callbacks/opendsr", "{}", {422, 422, 422, 422, 422, 422}},
  };
  const std::array<std::string, 7> who = {"", "rtd_not-a-real-token", env.token("submitter"), env.token("viewer"),
                                          env.token("admin"), env.token("auditor"), revoked};
  const std::array<std::string, 7> names = {"none", "bad token", "submitter", "viewer", "admin", "auditor",
                                            "revoked"};
  // A revoked token is expected to be treated exactly as a token that never existed.
  const std::array<std::size_t, 7> column = {0, 1, 2, 3, 4, 5, 1};
  for (const auto& e : endpoints) {
    for (std::size_t r = 0; r < who.size(); ++r) {
      // A fresh request for each call, so that one role's action does not close it for the next.
      const std::string id = d.Call("POST", "/v1/requests", env.token("admin"), body).json()["id"];
      std::string path = e.path;
      if (auto at = path.find("{id}"); at != std::string::npos) path.replace(at, 4, id);
      const auto res = d.Call(e.method, path, who[r], e.body);
      INFO(e.method << " " << e.path << " as " << names[r] << ": " << res.body);
      CHECK(res.status == e.expect[column[r]]);
      if (res.status >= 400) {
        CHECK(res.content_type == "application/problem+json");
        CHECK(res.json()["status"] == res.status);
      }
      if (res.status == 401) CHECK(res.headers.count("WWW-Authenticate") == 1);
    }
  }
}

TEST_CASE("authz: identity values are shown to admin only", "[authz][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string id =
      d.Call("POST", "/v1/requests", env.token("submitter"),
             R"({"type":"correct","subject":{"identities":[{"kind":"email","value":"Secret.Person@example.com"}]},
                 "corrections":[{"field":"postal_address","value":"22 Hidden Lane"}],
                 "authorized_agent":{"name":"Agent Smith","kind":"person","proof":"signed_permission"}})")
          .json()["id"];
  for (const char* role : {"submitter", "viewer", "auditor"}) {
    const auto r = d.Call("GET", "/v1/requests/" + id, env.token(role));
    INFO(role);
    REQUIRE(r.status == 200);
    CHECK(r.body.find("Secret.Person") == std::string::npos);
    CHECK(r.body.find("Hidden Lane") == std::string::npos);
    CHECK(r.body.find("Agent Smith") == std::string::npos);
    CHECK(r.json()["identities"][0] == json{{"kind", "email"}});
  }
  const json admin = d.Call("GET", "/v1/requests/" + id, env.token("admin")).json();
  CHECK(admin["identities"][0]["value"] == "Secret.Person@example.com");
  CHECK(admin["corrections"][0]["value"] == "22 Hidden Lane");
  CHECK(admin["authorized_agent"]["name"] == "Agent Smith");
  // The audit trail holds kinds, never values.
  const auto audit = d.Call("GET", "/v1/audit?request_id=" + id, env.token("auditor"));
  REQUIRE(audit.status == 200);
  CHECK(audit.body.find("Secret.Person") == std::string::npos);
  CHECK(audit.json()["items"][0]["detail"]["identity_kinds"][0] == "email");
}

TEST_CASE("authz: identities are sealed at rest and found by keyed hash only", "[authz][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  REQUIRE(d.Call("POST", "/v1/requests", env.token("submitter"),
                 R"({"type":"delete","subject":{"identities":[{"kind":"email","value":"plain.text@example.com"}]},
                     "authorized_agent":{"name":"Agent Plain"}})")
              .status == 201);
  REQUIRE(d.Stop() == 0);
  // Nothing in any table of the database holds the value or the agent's name in clear (sealed bytea included).
  auto conn = env.db().Connect();
  pqxx::nontransaction txn(*conn);
  const auto tables = txn.exec("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
  for (const auto& t : tables) {
    const std::string name = t[0].as<std::string>();
    const auto hits = txn.exec1("SELECT count(*) FROM " + txn.quote_name(name) + " x WHERE x::text ILIKE '%plain.text%' "
                                "OR x::text ILIKE '%Agent Plain%' OR x::text ILIKE '%" +
                                std::string("706c61696e2e74657874") + "%'");
    INFO(name);
    CHECK(hits[0].as<int>() == 0);
  }
  // The look-up hash is keyed: it is not a plain SHA-256 of the normalised value.
  CHECK(txn.exec1("SELECT count(*) FROM request_identities WHERE lookup_hash = sha256('plain.text@example.com')")[0]
            .as<int>() == 0);
  // And nothing reached the daemon's log.
  CHECK(d.Log().find("plain.text") == std::string::npos);
}
