// Issue 9, "Nobody let in": TLS on the listener, the outbound allow-list, per-token rate limits, the body limit at
// the edge, and a canary test that no identity value, token or credential reaches a log line or an error body.
#include <catch2/catch.hpp>

#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "connectors/http_client.h"
#include "harness.h"
#include "peers/opendsr/opendsr_peer.h"
#include "peers/recording_server.h"
#include "url_policy.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

std::string Slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Adds `lines` to `table` of the harness's config (TOML forbids a table twice, so extra_toml cannot).
void PatchConfig(const DaemonEnv& env, const std::string& table, const std::string& lines) {
  std::string text = Slurp(env.config());
  const std::string header = "[" + table + "]\n";
  const auto at = text.find(header);
  REQUIRE(at != std::string::npos);
  text.insert(at + header.size(), lines);
  std::ofstream(env.config(), std::ios::binary | std::ios::trunc) << text;
}

// A self-signed P-256 certificate for 127.0.0.1 (subjectAltName IP), made with the openssl command line.
void MakeCertificate(const std::filesystem::path& dir, const std::string& name) {
  const std::string cmd = fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 "
      "-addext subjectAltName=IP:127.0.0.1 -keyout '{0}/{1}.key' -out '{0}/{1}.crt' >/dev/null 2>&1",
      dir.string(), name);
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::filesystem::permissions(dir / (name + ".key"), std::filesystem::perms::owner_read |
                                                          std::filesystem::perms::owner_write);
}

httplib::Result TlsGet(int port, const std::string& ca_file, const std::string& path, const std::string& token) {
  httplib::SSLClient client("127.0.0.1", port);
  client.set_ca_cert_path(ca_file.c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(5, 0);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  return client.Get(path.c_str(), headers);
}

// Runs `serve` on a config it is expected to refuse; returns what it wrote to stderr.
std::string StartupFailure(const DaemonEnv& env) {
  const auto r = env.Cli({"serve", "--config", env.config().string()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("listening on") == std::string::npos);
  return r.err;
}

}  // namespace

TEST_CASE("authz: the listener serves TLS with the configured certificate, and no plain HTTP on that port",
          "[authz][tls][integration]") {
  DaemonEnv env;
  MakeCertificate(env.dir(), "server");
  MakeCertificate(env.dir(), "stranger");
  PatchConfig(env, "http", "tls_cert_file = \"server.crt\"\ntls_key_file = \"server.key\"\n");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  CHECK(d.Log().find("listening on https://127.0.0.1:") != std::string::npos);
  const std::string ca = (env.dir() / "server.crt").string();

  auto listed = TlsGet(d.port(), ca, "/v1/requests", env.token("viewer"));
  REQUIRE(listed);
  CHECK(listed->status == 200);
  auto anonymous = TlsGet(d.port(), ca, "/v1/requests", "");
  REQUIRE(anonymous);
  CHECK(anonymous->status == 401);
  {
    httplib::SSLClient client("127.0.0.1", d.port());
    client.set_ca_cert_path(ca.c_str());
    client.enable_server_certificate_verification(true);
    client.set_connection_timeout(5, 0);
    auto created = client.Post("/v1/requests", {{"Authorization", "Bearer " + env.token("submitter")}},
                               R"({"type":"access","subject":{"identities":[{"kind":"email","value":"tls@example.com"}]}})",
                               "application/json");
    REQUIRE(created);
    CHECK(created->status == 201);
  }
  // A client that trusts another certificate refuses this server: the certificate is what the client checks.
  auto distrusted = TlsGet(d.port(), (env.dir() / "stranger.crt").string(), "/healthz", "");
  CHECK_FALSE(distrusted);
  CHECK(distrusted.error() == httplib::Error::SSLServerVerification);
  // Plain HTTP to the TLS port gets no HTTP answer at all.
  httplib::Client plain("127.0.0.1", d.port());
  plain.set_connection_timeout(5, 0);
  plain.set_read_timeout(5, 0);
  auto clear = plain.Get("/healthz");
  CHECK_FALSE(clear);
  // The openssl command line agrees on the certificate and negotiates TLS 1.2 or later.
  const std::string out = (env.dir() / "s_client.out").string();
  const int rc = std::system(fmt::format("openssl s_client -connect 127.0.0.1:{} -CAfile '{}' -verify_return_error "
                                         "</dev/null >'{}' 2>&1",
                                         d.port(), ca, out)
                                 .c_str());
  const std::string s_client = Slurp(out);
  INFO(s_client);
  CHECK(rc == 0);
  CHECK(s_client.find("Verify return code: 0 (ok)") != std::string::npos);
  CHECK((s_client.find("TLSv1.3") != std::string::npos || s_client.find("TLSv1.2") != std::string::npos));
  REQUIRE(d.Stop() == 0);
}

TEST_CASE("authz: a TLS key that is missing or does not match, or plain HTTP on a public address, stops start-up",
          "[authz][tls][integration]") {
  DaemonEnv env;
  MakeCertificate(env.dir(), "server");
  MakeCertificate(env.dir(), "stranger");
  const std::string config = Slurp(env.config());
  PatchConfig(env, "http", "tls_cert_file = \"server.crt\"\ntls_key_file = \"missing.key\"\n");
  std::string log = StartupFailure(env);
  CHECK(log.find("http: http.tls_key_file") != std::string::npos);
  CHECK(log.find("missing.key: cannot use the private key") != std::string::npos);

  std::ofstream(env.config(), std::ios::trunc) << config;
  PatchConfig(env, "http", "tls_cert_file = \"server.crt\"\ntls_key_file = \"stranger.key\"\n");
  log = StartupFailure(env);
  // OpenSSL 3 compares the key with the certificate as it loads it ("key values mismatch").
  INFO(log);
  CHECK(log.find("http: http.tls_key_file") != std::string::npos);
  CHECK(log.find("stranger.key: cannot use the private key: ") != std::string::npos);
  CHECK(log.find("mismatch") != std::string::npos);
  // The key's PEM never reaches the log.
  CHECK(log.find("PRIVATE KEY") == std::string::npos);

  std::ofstream(env.config(), std::ios::trunc) << config;
  PatchConfig(env, "http", "tls_cert_file = \"server.crt\"\n");
  log = StartupFailure(env);
  CHECK(log.find("http.tls_key_file: set both http.tls_cert_file and http.tls_key_file, or neither") !=
        std::string::npos);

  // Not bound: the config is refused before anything listens.
  std::string open = config;
  open.replace(open.find("127.0.0.1:0"), 11, "0.0.0.0:0");
  std::ofstream(env.config(), std::ios::trunc) << open;
  log = StartupFailure(env);
  CHECK(log.find("http.allow_plaintext_non_loopback: http.listen is 0.0.0.0, not a loopback address") !=
        std::string::npos);
}

TEST_CASE("authz: callback_url must match the outbound allow-list, forbidden and ambiguous URLs get 422",
          "[authz][outbound][integration]") {
  DaemonEnv env(true, "[callbacks]\nsecret_file = \"callbacks.secret\"\n");
  std::ofstream(env.dir() / "callbacks.secret") << "0123456789abcdef0123456789abcdef-secret\n";
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto submit = [&](const std::string& url) {
    return d.Call("POST", "/v1/requests", env.token("submitter"),
                  json{{"type", "access"},
                       {"callback_url", url},
                       {"subject", {{"identities", {{{"kind", "email"}, {"value", "cb@example.com"}}}}}}}
                      .dump());
  };
  CHECK(submit("http://127.0.0.1:9/hooks").status == 201);
  for (const char* url :
       {"https://portal.example.com/hooks/secret-path-7f3a", "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1.evil.example/", "http://127.0.0.1@evil.example/", "http://evil.example@127.0.0.1:9/",
        "http://2130706433:9/", "http://0x7f.1:9/", "http://127.1:9/", "http://[::ffff:127.0.0.1]:9/",
        "http://127.0.0.1.:9/", "http://%31%32%37.0.0.1:9/", "http://127.0.0.2:9/", "http://localhost:9/",
        "http://127.0.0.1:9\\@evil.example/"}) {
    const auto r = submit(url);
    INFO(url << " -> " << r.body);
    CHECK(r.status == 422);
    CHECK(r.content_type == "application/problem+json");
    CHECK(r.json()["field"] == "/callback_url");
    CHECK(r.json()["detail"].get<std::string>().starts_with("'callback_url' is not allowed: "));
    CHECK(r.body.find("secret-path-7f3a") == std::string::npos);  // paths are never quoted back
  }
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == "1");
}

TEST_CASE("authz: a connector base URL outside the outbound allow-list stops start-up naming system and setting",
          "[authz][outbound][integration]") {
  DaemonEnv env;
  auto check = [&](const std::string& systems) {
    env.WriteConfig(env.db().url(), systems);
    return env.Cli({"check-config", "--config", env.config().string()});
  };
  auto refused = check(R"([[systems]]
name = "telehealth"
connector = "webhook"
categories = ["identifiers"]
request_types = ["access", "delete"]
[systems.settings]
base_url = "http://10.0.0.7/opendsr/v2"
)");
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("system telehealth: settings.base_url: http://10.0.0.7:80 is not in [outbound] allowed_hosts") !=
        std::string::npos);
  refused = check(R"([[systems]]
name = "crm"
connector = "salesforce"
categories = ["identifiers"]
[systems.settings]
login_url = "https://login.salesforce.com@127.0.0.1"
)");
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("system crm: settings.login_url: the URL is refused: the URL holds user information (@)") !=
        std::string::npos);
  // And the serve command refuses the same way.
  env.WriteConfig(env.db().url(), R"([[systems]]
name = "ehr"
connector = "fhir"
categories = ["medical information"]
[systems.settings]
base_url = "https://ehr.internal.example/fhir/R4"
)");
  CHECK(StartupFailure(env).find("system ehr: settings.base_url: https://ehr.internal.example:443 is not in") !=
        std::string::npos);
}

TEST_CASE("authz: the daemon's HTTP client refuses URLs outside the allow-list, such as ones a peer hands back",
          "[authz][outbound][integration]") {
  // The daemon builds its client exactly so (app.cpp): every connector call, including a SMART token_endpoint, a
  // Salesforce instance_url or an SFMC rest_instance_url taken from a peer's answer, and every status callback,
  // goes through this guard.
  RecordingServer peer;
  peer.server().Get("/ok", [](const httplib::Request&, httplib::Response& res) { res.set_content("{}", "application/json"); });
  peer.Start();
  auto policy = std::make_shared<const rightsd::OutboundPolicy>(
      rightsd::OutboundPolicy::Parse({"http://127.0.0.1:" + std::to_string(peer.port())}));
  auto client = rightsd::connectors::MakeCpprestHttpClient(
      [policy](const std::string& url) { return policy->Check(url); });
  auto send = [&](const std::string& url) {
    auto promise = std::make_shared<std::promise<rightsd::connectors::HttpResponse>>();
    auto future = promise->get_future();
    rightsd::connectors::HttpRequest request;
    request.url = url;
    request.timeout = std::chrono::milliseconds(5000);
    client->Send(request, [promise](rightsd::connectors::HttpResponse r) { promise->set_value(std::move(r)); });
    REQUIRE(future.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return future.get();
  };
  CHECK(send(peer.base_url() + "/ok").status == 200);
  // Another port on the same machine (what an attacker-controlled discovery document would name) is refused.
  const auto other = send("http://127.0.0.1:1/token?client=jane@example.com");
  CHECK(other.status == 0);
  CHECK(other.error == "http://127.0.0.1:1 is not in [outbound] allowed_hosts");
  const auto sneaky = send("http://127.0.0.1:" + std::to_string(peer.port()) + "@169.254.169.254/");
  CHECK(sneaky.status == 0);
  CHECK(sneaky.error == "the URL is refused: the URL holds user information (@)");
  CHECK(peer.Calls().size() == 1);
}

TEST_CASE("authz: each token has its own rate limit, beyond it 429 problem+json with Retry-After",
          "[authz][ratelimit][integration]") {
  DaemonEnv env;
  PatchConfig(env, "auth", "rate_per_second = 1\nburst = 3\n");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string viewer = env.token("viewer");
  for (int i = 0; i < 3; ++i) CHECK(d.Call("GET", "/v1/requests", viewer).status == 200);
  const auto limited = d.Call("GET", "/v1/requests", viewer);
  CHECK(limited.status == 429);
  CHECK(limited.content_type == "application/problem+json");
  CHECK(limited.json()["type"] == "urn:rightsd:problem:too-many-requests");
  CHECK(limited.json()["status"] == 429);
  REQUIRE(limited.headers.count("Retry-After") == 1);
  CHECK(limited.headers.find("Retry-After")->second == "1");
  // Counted per token, whatever the endpoint or the answer: a refused call spends the bucket too.
  CHECK(d.Call("GET", "/v1/audit", viewer).status == 429);
  CHECK(d.Call("GET", "/v1/audit", env.token("auditor")).status == 200);
  CHECK(d.Call("GET", "/v1/requests", "").status == 401);
  CHECK(d.Call("GET", "/healthz", "").status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CHECK(d.Call("GET", "/v1/requests", viewer).status == 200);
  CHECK(d.Call("GET", "/v1/requests", viewer).status == 429);
}

TEST_CASE("api: a body over http.max_body_bytes gets 413 at the edge, one byte less does not",
          "[api][authz][integration]") {
  DaemonEnv env;
  PatchConfig(env, "http", "max_body_bytes = 2048\n");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto padded = [](std::size_t size) {
    std::string body = R"({"type":"access","subject":{"identities":[{"kind":"email","value":"big@example.com"}]}})";
    body.insert(body.size() - 1, std::string(size - body.size(), ' '));
    return body;
  };
  REQUIRE(padded(2048).size() == 2048);
  CHECK(d.Call("POST", "/v1/requests", env.token("submitter"), padded(2048)).status == 201);
  for (const std::string& token : {env.token("submitter"), std::string()}) {
    const auto r = d.Call("POST", "/v1/requests", token, padded(2049));
    INFO(r.body);
    CHECK(r.status == 413);
    CHECK(r.content_type == "application/problem+json");
    CHECK(r.json()["type"] == "urn:rightsd:problem:payload-too-large");
  }
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == "1");
}

TEST_CASE("authz: no identity value, token or credential reaches a log line or an error body",
          "[authz][canary][integration]") {
  // Unique strings, so that a hit can only come from what this test planted.
  const std::string tag = "cnry7q2x";
  const std::string email = tag + ".jane@example.com";
  const std::string phone = "+1 415 555 0177";
  const std::string phone_digits = "4155550177";
  const std::string name = "Canaryname Zyxwqt";
  const std::string mrn = "MRN-" + tag + "-42";
  const std::string correction = "77 Canary Lane " + tag;
  const std::string agent = "Agent Canarysmith";
  const std::string processor_token = "opendsr-bearer-" + tag + "-b7c1";
  const std::string callback_secret = "callback-secret-" + tag + "-0123456789abcdef";

  OpenDsrPeerOptions options;
  options.complete_after_polls = 1;
  options.bearer_token = processor_token;
  options.send_callbacks = false;
  OpenDsrPeer peer(options);
  peer.SeedRecord("email", email, "identifiers", {{"email", email}, {"name", name}, {"mrn", mrn}});
  peer.Start();
  DaemonEnv env(true, fmt::format(R"toml(
[callbacks]
secret_file = "callbacks.secret"
[engine]
backoff_base_ms = 100
[[systems]]
name = "telehealth"
connector = "webhook"
categories = ["identifiers"]
request_types = ["access", "delete"]
max_attempts = 2
[systems.settings]
base_url = "{}"
bearer_token_file = "telehealth.token"
processor_certificate_file = "processor.pem"
poll_interval_seconds = 1
timeout_ms = 5000
[[systems]]
name = "crm"
connector = "noop"
)toml",
                                  peer.base_url()));
  peer.WriteCertificatePem(env.dir() / "processor.pem");
  std::ofstream(env.dir() / "telehealth.token") << processor_token << "\n";
  std::ofstream(env.dir() / "callbacks.secret") << callback_secret << "\n";
  RecordingServer receiver;
  receiver.server().Post("/hooks", [](const httplib::Request&, httplib::Response& res) { res.status = 500; });
  receiver.Start();
  Daemon d(env);
  REQUIRE(d.WaitReady());

  std::vector<std::pair<std::string, std::string>> error_bodies;  // what was called, the answer's body
  auto call = [&](const std::string& method, const std::string& path, const std::string& token,
                  const std::string& body = "", const httplib::Headers& headers = {},
                  const std::string& content_type = "application/json") {
    auto r = d.Call(method, path, token, body, headers, content_type);
    if (r.status >= 400) error_bodies.emplace_back(fmt::format("{} {} -> {}", method, path, r.status), r.body);
    return r;
  };
  const json identities = json::array({{{"kind", "email"}, {"value", email}},
                                       {{"kind", "phone"}, {"value", phone}},
                                       {{"kind", "name"}, {"value", name}},
                                       {{"kind", "mrn"}, {"value", mrn}}});
  // Through every endpoint that takes them, as every role.
  const json correct = {{"type", "correct"},
                        {"subject", {{"identities", identities}}},
                        {"corrections", {{{"field", "postal_address"}, {"value", correction}}}},
                        {"authorized_agent", {{"name", agent}, {"kind", "person"}, {"contact", email}}},
                        {"callback_url", receiver.base_url() + "/hooks"}};
  const json access = {{"type", "access"}, {"subject", {{"identities", identities}}},
                       {"callback_url", receiver.base_url() + "/hooks"}};
  std::vector<std::string> ids;
  for (const char* role : {"submitter", "admin"}) {
    for (const json& body : {correct, access}) {
      const std::string key = fmt::format("canary-key-{}-{}", role, body["type"].get<std::string>());
      const auto r = call("POST", "/v1/requests", env.token(role), body.dump(), {{"Idempotency-Key", key}});
      REQUIRE(r.status == 201);
      ids.push_back(r.json()["id"]);
      // Same key, another body: refused without quoting either body.
      json other = body;
      other["subject"]["identities"][0]["value"] = "other." + email;
      CHECK(call("POST", "/v1/requests", env.token(role), other.dump(), {{"Idempotency-Key", key}}).status == 409);
    }
  }
  for (const auto& id : ids) {
    for (const char* role : {"submitter", "viewer", "admin", "auditor"}) {
      call("GET", "/v1/requests/" + id, env.token(role));
      call("GET", "/v1/requests/" + id + "/package", env.token(role));
    }
    CHECK(call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
               R"({"method":"account_login","level":"reasonable"})")
              .status == 200);
  }
  call("GET", "/v1/requests?limit=50", env.token("viewer"));
  call("GET", "/v1/audit?limit=1000", env.token("auditor"));
  call("GET", "/v1/sla/summary", env.token("viewer"));
  // Bad input carrying identity values: every refusal must name the problem without quoting the value.
  auto with_identity = [&](const json& identity) {
    return json{{"type", "delete"}, {"subject", {{"identities", json::array({identity})}}}}.dump();
  };
  const std::string sub = env.token("submitter");
  for (const std::string& body :
       {with_identity({{"kind", "email"}, {"value", "no-at-sign-" + tag}}),
        with_identity({{"kind", "phone"}, {"value", "call " + tag}}),
        with_identity({{"kind", "mrn"}, {"value", mrn + std::string(600, 'x')}}),
        with_identity({{"kind", "shoe_size"}, {"value", mrn}}),
        with_identity({{"kind", "name"}, {"value", name + "\x01"}}),
        json{{"type", "delete"}, {"subject", {{"identities", {{{"kind", "email"}, {"value", email}},
                                                              {{"kind", "email"}, {"value", email}}}}}}}.dump(),
        json{{"type", "delete"}, {"subject", {{"identities", identities}}}, {"corrections",
                                  {{{"field", "postal_address"}, {"value", correction}}}}}.dump(),
        json{{"type", "correct"}, {"subject", {{"identities", identities}}},
             {"corrections", {{{"field", "Postal Address"}, {"value", correction}}}}}.dump(),
        json{{"type", "access"}, {"subject", {{"identities", identities}}},
             {"callback_url", "https://evil.example/" + email}}.dump(),
        R"({"type":"delete","subject":{"identities":[{"kind":"email","value":")" + email + R"("}]})",  // broken
        R"({"type":"delete","subject":{"identities":[{"kind":"email","value":")" + email + R"(","value":"x"}]}})"}) {
    const auto r = call("POST", "/v1/requests", sub, body);
    INFO(body << " -> " << r.body);
    CHECK(r.status >= 400);
  }
  call("POST", "/v1/requests", sub, "email=" + email, {}, "application/x-www-form-urlencoded");
  call("POST", "/v1/requests/" + ids[0] + "/extend", sub, json{{"reason", 5}, {"note", email}}.dump());
  call("POST", "/v1/requests/" + ids[0] + "/tasks/00000000-0000-4000-8000-000000000000/complete", sub,
       json{{"outcome", email}}.dump());
  call("GET", "/v1/requests?status=" + email, sub);
  call("POST", "/v1/callbacks/opendsr", "", json{{"subject_request_id", ids[0]}, {"email", email}}.dump());
  // Tokens in places they do not belong: unknown, wrong role, malformed header.
  call("GET", "/v1/audit", env.token("viewer"));
  call("POST", "/v1/requests", env.token("viewer"), access.dump());
  call("GET", "/v1/requests", "rtd_" + tag + "-not-a-token");
  call("GET", "/v1/requests", "", "", {{"Authorization", "Basic " + env.token("admin")}});

  // Let the engine finish: access reaches the processor (bearer token), callbacks fail at the receiver (500) and
  // are retried, which logs nothing about their content.
  REQUIRE(Eventually([&] {
    return env.db().Scalar("SELECT count(*) FROM requests WHERE status = 'completed'") == "4";
  }, 30));
  REQUIRE(Eventually([&] { return receiver.CallsTo("POST", "/hooks").size() >= 2; }, 15));
  for (const auto& id : ids) call("GET", "/v1/requests/" + id + "/package", env.token("submitter"));
  REQUIRE(d.Stop() == 0);

  std::vector<std::pair<std::string, std::string>> secrets = {
      {"email", email}, {"email (lower-cased)", tag + ".jane@example.com"}, {"phone", phone},
      {"phone digits", phone_digits}, {"name", name}, {"mrn", mrn}, {"correction", correction},
      {"agent", agent}, {"tag", tag}, {"processor token", processor_token}, {"callbacks secret", callback_secret},
      {"pii key", Slurp(env.dir() / "pii.key").substr(0, 64)}};
  for (const char* role : {"submitter", "viewer", "admin", "auditor"}) {
    secrets.emplace_back(std::string(role) + " token", env.token(role));
    secrets.emplace_back(std::string(role) + " token (sans prefix)", env.token(role).substr(4));
  }
  const std::string log = d.Log();
  REQUIRE(log.find("listening on http://") != std::string::npos);
  REQUIRE(error_bodies.size() >= 25);
  for (const auto& [what, value] : secrets) {
    INFO(what);
    CHECK(log.find(value) == std::string::npos);
    for (const auto& [request, body] : error_bodies) {
      INFO(request << ": " << body);
      CHECK(body.find(value) == std::string::npos);
    }
  }
}
