// The FHIR test peer (tests/peers/fhir: @medplum/fhir-router behind SMART Backend Services, paging and a
// test-control API) keeps the contract the FHIR connector's tests rely on: the token endpoint takes exactly the
// SMART client assertions it should (RS384 and ES384) and refuses the others with RFC 6749 errors, FHIR calls need a
// live token, searches page with link next, If-Match is enforced on PATCH (also when the peer itself moves the
// version on), and injected failures carry Retry-After. Signing is done here with OpenSSL, independently of the
// connector's own JOSE code.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "peers/fhir/fhir_peer.h"

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using rightsd::test::FhirPeer;
using rightsd::test::FhirPeerOptions;

constexpr const char* kJwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// --- JWT signing (independent of connectors/) ---

std::string B64Url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (bytes.size() - i == 1) {
    const unsigned v = byte(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (bytes.size() - i == 2) {
    const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

// RS384: RSASSA-PKCS1-v1_5 with SHA-384. ES384: ECDSA P-384 with SHA-384, the DER signature turned into the raw
// r || s (48 + 48 bytes) that JWS wants.
std::string Sign(const std::string& private_pem, const std::string& alg, const std::string& input) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  REQUIRE(key);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key.get()) == 1);
  std::size_t len = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(input.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, data, input.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data, input.size()) == 1);
  sig.resize(len);
  if (alg == "RS384") return sig;

  const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> ecdsa(
      d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(sig.size())), ECDSA_SIG_free);
  REQUIRE(ecdsa);
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(ecdsa.get(), &r, &s);
  std::string raw(96, '\0');
  REQUIRE(BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 48) == 48);
  REQUIRE(BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 48, 48) == 48);
  return raw;
}

std::string SignJwt(const std::string& private_pem, const json& header, const json& claims) {
  const std::string input = B64Url(header.dump()) + "." + B64Url(claims.dump());
  return input + "." + B64Url(Sign(private_pem, header.value("alg", "RS384"), input));
}

long long Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string UniqueJti() {
  static std::atomic<int> n{0};
  std::random_device rd;
  return fmt::format("jti-{:08x}-{}", rd(), ++n);
}

// A correct assertion for `peer`, after `tweak` has had its say on header and claims.
struct Assertion {
  json header;
  json claims;
};

Assertion GoodAssertion(const FhirPeer& peer) {
  const auto& o = peer.options();
  return {json{{"alg", o.algorithm}, {"typ", "JWT"}, {"kid", o.kid}},
          json{{"iss", o.client_id},
               {"sub", o.client_id},
               {"aud", peer.token_url()},
               {"exp", Now() + 240},
               {"iat", Now()},
               {"jti", UniqueJti()}}};
}

// --- HTTP ---

struct Answer {
  int status = 0;
  std::string body;
  httplib::Headers headers;
  json Json() const { return json::parse(body, nullptr, false); }
  std::string Header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

Answer Http(const FhirPeer& peer, const std::string& method, const std::string& target, const std::string& token = "",
            const std::string& body = "", const std::string& content_type = "application/fhir+json",
            httplib::Headers headers = {}) {
  httplib::Client client("127.0.0.1", peer.port());
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(30, 0);
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  headers.emplace("Accept", "application/fhir+json");
  httplib::Result r{nullptr, httplib::Error::Unknown};
  if (method == "GET") {
    r = client.Get(target.c_str(), headers);
  } else if (method == "POST") {
    r = client.Post(target.c_str(), headers, body, content_type.c_str());
  } else if (method == "PUT") {
    r = client.Put(target.c_str(), headers, body, content_type.c_str());
  } else if (method == "PATCH") {
    r = client.Patch(target.c_str(), headers, body, content_type.c_str());
  } else if (method == "DELETE") {
    r = client.Delete(target.c_str(), headers);
  }
  REQUIRE(r);
  return {r->status, r->body, r->headers};
}

std::string Form(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += httplib::detail::encode_query_param(k) + "=" + httplib::detail::encode_query_param(v);
  }
  return out;
}

Answer TokenCall(const FhirPeer& peer, const std::string& assertion, const std::string& grant_type = "client_credentials",
                 const std::string& scope = "system/*.rs") {
  std::vector<std::pair<std::string, std::string>> fields{{"grant_type", grant_type},
                                                          {"client_assertion_type", kJwtBearer},
                                                          {"client_assertion", assertion}};
  if (!scope.empty()) fields.emplace_back("scope", scope);
  return Http(peer, "POST", "/auth/token", "", Form(fields), "application/x-www-form-urlencoded");
}

std::string Token(const FhirPeer& peer) {
  const Assertion a = GoodAssertion(peer);
  const Answer r = TokenCall(peer, SignJwt(peer.private_key_pem(), a.header, a.claims));
  REQUIRE(r.status == 200);
  return r.Json().at("access_token").get<std::string>();
}

// The target (path and query) of one of the peer's absolute URLs.
std::string Target(const FhirPeer& peer, const std::string& url) {
  const std::string origin = fmt::format("http://127.0.0.1:{}", peer.port());
  REQUIRE(url.rfind(peer.base_url() + "/", 0) == 0);
  return url.substr(origin.size());
}

std::string NextLink(const json& bundle) {
  for (const auto& l : bundle.value("link", json::array())) {
    if (l.value("relation", "") == "next") return l.value("url", "");
  }
  return "";
}

const std::string kMrnSystem = "urn:oid:2.16.840.1.113883.3.1234.1";

// Jane Doe and `observations` Observations about her, in one transaction; returns her id.
std::string SeedJane(FhirPeer& peer, int observations = 0) {
  const std::string jane = "urn:uuid:7d0c9a10-0000-4000-8000-000000000001";
  json entries = json::array();
  entries.push_back({{"fullUrl", jane},
                     {"resource",
                      {{"resourceType", "Patient"},
                       {"identifier", {{{"system", kMrnSystem}, {"value", "MRN-0042"}}}},
                       {"name", {{{"family", "Doe"}, {"given", {"Jane"}}}}},
                       {"telecom", {{{"system", "email"}, {"value", "jane@example.com"}}}},
                       {"birthDate", "1984-03-12"}}},
                     {"request", {{"method", "POST"}, {"url", "Patient"}}}});
  for (int i = 0; i < observations; ++i) {
    entries.push_back({{"fullUrl", fmt::format("urn:uuid:7d0c9a10-0000-4000-8000-{:012}", i + 100)},
                       {"resource",
                        {{"resourceType", "Observation"},
                         {"status", "final"},
                         {"code", {{"text", fmt::format("reading {}", i)}}},
                         {"subject", {{"reference", jane}}},
                         {"valueQuantity", {{"value", i}, {"unit", "1"}}}}},
                       {"request", {{"method", "POST"}, {"url", "Observation"}}}});
  }
  const json response = peer.Seed({{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", entries}});
  REQUIRE(response.at("type") == "transaction-response");
  REQUIRE(response.at("entry").size() == entries.size());
  for (const auto& e : response.at("entry")) REQUIRE(e.at("response").at("status") == "201");
  const std::string id = response.at("entry").at(0).at("resource").at("id").get<std::string>();
  REQUIRE(response.at("entry").at(0).at("resource").at("resourceType") == "Patient");
  return id;
}

}  // namespace

TEST_CASE("fhir: peer: discovery names the token endpoint and what it accepts", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  const Answer r = Http(peer, "GET", "/fhir/R4/.well-known/smart-configuration");
  REQUIRE(r.status == 200);
  const json c = r.Json();
  CHECK(c.at("token_endpoint") == peer.token_url());
  CHECK(c.at("token_endpoint_auth_methods_supported") == json{"private_key_jwt"});
  CHECK(c.at("token_endpoint_auth_signing_alg_values_supported") == json{"RS384", "ES384"});
  CHECK(c.at("grant_types_supported") == json{"client_credentials"});
  CHECK(peer.base_url() == fmt::format("http://127.0.0.1:{}/fhir/R4", peer.port()));
}

TEST_CASE("fhir: peer: the token endpoint accepts an RS384 client assertion", "[fhir]") {
  FhirPeer peer;  // RS384 by default
  peer.Start();
  // The private key as the connector gets it: a PEM file.
  const auto pem_path = std::filesystem::temp_directory_path() / fmt::format("fhir-peer-key-{}.pem", UniqueJti());
  peer.WritePrivateKeyPem(pem_path);
  std::stringstream pem;
  pem << std::ifstream(pem_path).rdbuf();
  std::filesystem::remove(pem_path);
  REQUIRE(pem.str() == peer.private_key_pem());
  REQUIRE(pem.str().find("-----BEGIN PRIVATE KEY-----") == 0);

  const Assertion a = GoodAssertion(peer);
  const Answer r = TokenCall(peer, SignJwt(pem.str(), a.header, a.claims));
  REQUIRE(r.status == 200);
  const json t = r.Json();
  CHECK(t.at("token_type") == "bearer");
  CHECK(t.at("expires_in") == 300);
  CHECK(t.at("scope") == "system/*.rs");
  CHECK(r.Header("Cache-Control") == "no-store");
  const std::string token = t.at("access_token").get<std::string>();
  CHECK(token.size() >= 32);

  SeedJane(peer);
  const Answer search = Http(peer, "GET", "/fhir/R4/Patient?identifier=" + kMrnSystem + "%7CMRN-0042", token);
  REQUIRE(search.status == 200);
  CHECK(search.Header("Content-Type").rfind("application/fhir+json", 0) == 0);
  CHECK(search.Json().at("total") == 1);

  // Without a scope the peer grants system/*.cruds.
  const Assertion b = GoodAssertion(peer);
  const Answer unscoped = TokenCall(peer, SignJwt(peer.private_key_pem(), b.header, b.claims), "client_credentials", "");
  REQUIRE(unscoped.status == 200);
  CHECK(unscoped.Json().at("scope") == "system/*.cruds");

  // The token call is recorded; the assertion is in its body and no access token shows anywhere.
  const auto calls = peer.CallsTo("POST", "/auth/token");
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].at("status") == 200);
  CHECK(calls[0].at("headers").at("content-type") == "application/x-www-form-urlencoded");
  CHECK(calls[0].at("body").get<std::string>().find("client_assertion=") != std::string::npos);
  const auto fhir_calls = peer.CallsTo("GET", "/fhir/R4/Patient");
  REQUIRE(fhir_calls.size() == 1);
  CHECK(fhir_calls[0].at("headers").at("authorization") == "Bearer <redacted>");
  CHECK(fhir_calls[0].at("query").get<std::string>().find("MRN-0042") != std::string::npos);
}

TEST_CASE("fhir: peer: the token endpoint accepts an ES384 client assertion", "[fhir]") {
  FhirPeerOptions o;
  o.algorithm = "ES384";
  o.client_id = "rightsd-ec-client";
  o.kid = "ec-key-7";
  o.token_lifetime_seconds = 120;
  FhirPeer peer(o);
  peer.Start();
  REQUIRE(peer.private_key_pem().find("-----BEGIN PRIVATE KEY-----") == 0);
  const Assertion a = GoodAssertion(peer);
  const Answer r = TokenCall(peer, SignJwt(peer.private_key_pem(), a.header, a.claims));
  REQUIRE(r.status == 200);
  CHECK(r.Json().at("expires_in") == 120);
  const std::string token = r.Json().at("access_token").get<std::string>();
  CHECK(Http(peer, "GET", "/fhir/R4/Patient", token).status == 200);

  // An RS384 assertion is refused by a peer whose key is EC.
  Assertion rs = GoodAssertion(peer);
  rs.header["alg"] = "RS384";
  const Answer refused = TokenCall(peer, SignJwt(peer.private_key_pem(), rs.header, rs.claims));
  CHECK(refused.status == 401);
  CHECK(refused.Json().at("error") == "invalid_client");
}

TEST_CASE("fhir: peer: the token endpoint refuses bad client assertions", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  FhirPeer other;  // a key the peer does not know
  struct Case {
    std::string name;
    std::function<void(Assertion&)> tweak;
    std::string says;  // in error_description
    bool other_key = false;
  };
  const std::vector<Case> cases{
      {"wrong aud", [&](Assertion& a) { a.claims["aud"] = peer.base_url(); }, "aud"},
      {"exp more than 5 minutes ahead", [](Assertion& a) { a.claims["exp"] = Now() + 400; }, "more than 300 s"},
      {"expired", [](Assertion& a) { a.claims["exp"] = Now() - 10; }, "expired"},
      {"wrong kid", [](Assertion& a) { a.header["kid"] = "some-other-key"; }, "kid"},
      {"bad signature", [](Assertion&) {}, "signature", true},
      {"wrong client_id", [](Assertion& a) { a.claims["iss"] = a.claims["sub"] = "someone-else"; }, "iss"},
      {"sub differs from iss", [](Assertion& a) { a.claims["sub"] = "someone-else"; }, "sub"},
      {"no jti", [](Assertion& a) { a.claims.erase("jti"); }, "jti"},
      {"typ is not JWT", [](Assertion& a) { a.header["typ"] = "at+jwt"; }, "typ"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    Assertion a = GoodAssertion(peer);
    c.tweak(a);
    const Answer r =
        TokenCall(peer, SignJwt(c.other_key ? other.private_key_pem() : peer.private_key_pem(), a.header, a.claims));
    CHECK(r.status == 401);
    CHECK(r.Json().at("error") == "invalid_client");
    CHECK_THAT(r.Json().at("error_description").get<std::string>(), Catch::Contains(c.says));
    CHECK(r.Header("WWW-Authenticate").find("invalid_client") != std::string::npos);
  }

  // alg "none" with an empty signature.
  Assertion none = GoodAssertion(peer);
  none.header["alg"] = "none";
  const Answer unsigned_answer =
      TokenCall(peer, B64Url(none.header.dump()) + "." + B64Url(none.claims.dump()) + ".");
  CHECK(unsigned_answer.status == 401);
  CHECK(unsigned_answer.Json().at("error") == "invalid_client");
  CHECK_THAT(unsigned_answer.Json().at("error_description").get<std::string>(), Catch::Contains("alg"));

  // A jti is good once.
  const Assertion once = GoodAssertion(peer);
  const std::string jwt = SignJwt(peer.private_key_pem(), once.header, once.claims);
  REQUIRE(TokenCall(peer, jwt).status == 200);
  const Answer replay = TokenCall(peer, jwt);
  CHECK(replay.status == 401);
  CHECK(replay.Json().at("error") == "invalid_client");
  CHECK_THAT(replay.Json().at("error_description").get<std::string>(), Catch::Contains("replay"));

  // Not client credentials: 400 unsupported_grant_type, whatever the assertion.
  const Assertion g = GoodAssertion(peer);
  const Answer grant = TokenCall(peer, SignJwt(peer.private_key_pem(), g.header, g.claims), "authorization_code");
  CHECK(grant.status == 400);
  CHECK(grant.Json().at("error") == "unsupported_grant_type");
  // A scope this server does not grant: 400 invalid_scope.
  const Assertion s = GoodAssertion(peer);
  const Answer scope =
      TokenCall(peer, SignJwt(peer.private_key_pem(), s.header, s.claims), "client_credentials", "patient/*.read");
  CHECK(scope.status == 400);
  CHECK(scope.Json().at("error") == "invalid_scope");
  // No assertion at all: 400 invalid_request.
  const Answer missing = Http(peer, "POST", "/auth/token", "", "grant_type=client_credentials",
                              "application/x-www-form-urlencoded");
  CHECK(missing.status == 400);
  CHECK(missing.Json().at("error") == "invalid_request");
}

TEST_CASE("fhir: peer: FHIR calls need a live token the peer issued", "[fhir]") {
  FhirPeerOptions o;
  o.token_lifetime_seconds = 1;
  FhirPeer peer(o);
  peer.Start();

  const auto check_401 = [&](const std::string& token) {
    const Answer r = Http(peer, "GET", "/fhir/R4/Patient", token);
    CHECK(r.status == 401);
    const json oo = r.Json();
    CHECK(oo.at("resourceType") == "OperationOutcome");
    CHECK(oo.at("issue").at(0).at("severity") == "error");
    CHECK(oo.at("issue").at(0).at("code") == "login");
  };
  check_401("");
  check_401("not-a-token-of-ours");

  // Expired by its lifetime.
  const std::string short_lived = Token(peer);
  CHECK(Http(peer, "GET", "/fhir/R4/Patient", short_lived).status == 200);
  std::this_thread::sleep_for(1100ms);
  check_401(short_lived);

  // Expired by the test.
  const std::string token = Token(peer);
  CHECK(Http(peer, "GET", "/fhir/R4/Patient", token).status == 200);
  peer.ExpireTokens();
  check_401(token);
  CHECK(Http(peer, "GET", "/fhir/R4/Patient", Token(peer)).status == 200);

  // Recorded with the authorization value hidden: ours redacted, anything else "<invalid>".
  const auto calls = peer.CallsTo("GET", "/fhir/R4/Patient");
  REQUIRE(calls.size() == 7);
  CHECK_FALSE(calls[0].at("headers").contains("authorization"));
  CHECK(calls[0].at("status") == 401);
  CHECK(calls[1].at("headers").at("authorization") == "<invalid>");
  CHECK(calls[2].at("headers").at("authorization") == "Bearer <redacted>");
  CHECK(calls[2].at("status") == 200);
  CHECK(calls[3].at("headers").at("authorization") == "Bearer <redacted>");
  CHECK(calls[3].at("status") == 401);
  peer.ClearCalls();
  CHECK(peer.Calls().empty());
}

TEST_CASE("fhir: peer: a search pages by link next", "[fhir]") {
  FhirPeer peer;  // page size 20
  peer.Start();
  const std::string jane = SeedJane(peer, 45);
  const std::string token = Token(peer);

  std::string target = "/fhir/R4/Observation?subject=Patient/" + jane;
  std::set<std::string> ids;
  std::vector<std::size_t> sizes;
  while (!target.empty()) {
    REQUIRE(sizes.size() < 5);
    const Answer r = Http(peer, "GET", target, token);
    REQUIRE(r.status == 200);
    const json b = r.Json();
    CHECK(b.at("type") == "searchset");
    CHECK(b.at("total") == 45);
    sizes.push_back(b.at("entry").size());
    for (const auto& e : b.at("entry")) {
      ids.insert(e.at("resource").at("id").get<std::string>());
      CHECK(e.at("fullUrl") == peer.base_url() + "/Observation/" + e.at("resource").at("id").get<std::string>());
    }
    const std::string next = NextLink(b);
    target = next.empty() ? "" : Target(peer, next);
  }
  CHECK(sizes == std::vector<std::size_t>{20, 20, 5});
  CHECK(ids.size() == 45);

  // _count from the request wins over the page size; an offset past the end is an empty last page.
  const Answer small = Http(peer, "GET", "/fhir/R4/Observation?patient=Patient/" + jane + "&_count=40", token);
  REQUIRE(small.status == 200);
  CHECK(small.Json().at("entry").size() == 40);
  const Answer rest = Http(peer, "GET", Target(peer, NextLink(small.Json())), token);
  CHECK(rest.Json().at("entry").size() == 5);
  CHECK(NextLink(rest.Json()).empty());
}

TEST_CASE("fhir: peer: PATCH with a stale If-Match gets 412", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  const std::string jane = SeedJane(peer);
  const std::string token = Token(peer);
  const Answer read = Http(peer, "GET", "/fhir/R4/Patient/" + jane, token);
  REQUIRE(read.status == 200);
  const std::string etag = read.Header("ETag");
  REQUIRE(etag == "W/\"" + read.Json().at("meta").at("versionId").get<std::string>() + "\"");
  CHECK_FALSE(read.Header("Last-Modified").empty());

  const std::string patch = json::array({{{"op", "replace"}, {"path", "/telecom/0/value"}, {"value", "x@example.org"}}}).dump();
  const Answer stale = Http(peer, "PATCH", "/fhir/R4/Patient/" + jane, token, patch, "application/json-patch+json",
                            {{"If-Match", "W/\"not-the-version\""}});
  CHECK(stale.status == 412);
  CHECK(stale.Json().at("resourceType") == "OperationOutcome");
  CHECK(peer.Read("Patient/" + jane).at("resource").at("telecom").at(0).at("value") == "jane@example.com");

  const Answer ok = Http(peer, "PATCH", "/fhir/R4/Patient/" + jane, token, patch, "application/json-patch+json",
                         {{"If-Match", etag}});
  REQUIRE(ok.status == 200);
  CHECK(ok.Json().at("telecom").at(0).at("value") == "x@example.org");
  CHECK(ok.Header("ETag") != etag);
  const json after = peer.Read("Patient/" + jane);
  CHECK(after.at("status") == 200);
  CHECK(after.at("resource").at("telecom").at(0).at("value") == "x@example.org");

  // PUT with the old version: 412 as well (the router's own check).
  json resource = ok.Json();
  resource["gender"] = "female";
  const Answer put = Http(peer, "PUT", "/fhir/R4/Patient/" + jane, token, resource.dump(), "application/fhir+json",
                          {{"If-Match", etag}});
  CHECK(put.status == 412);
}

TEST_CASE("fhir: peer: BumpBeforeNextPatch makes the next PATCH fail with 412", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  const std::string jane = SeedJane(peer);
  const std::string token = Token(peer);
  const Answer read = Http(peer, "GET", "/fhir/R4/Patient/" + jane, token);
  REQUIRE(read.status == 200);
  const std::string etag = read.Header("ETag");

  peer.BumpBeforeNextPatch("Patient/" + jane);
  const std::string patch = json::array({{{"op", "remove"}, {"path", "/telecom"}}}).dump();
  const Answer bumped = Http(peer, "PATCH", "/fhir/R4/Patient/" + jane, token, patch, "application/json-patch+json",
                             {{"If-Match", etag}});
  CHECK(bumped.status == 412);
  const json now = peer.Read("Patient/" + jane).at("resource");
  CHECK(now.contains("telecom"));  // the PATCH did not happen
  CHECK(now.at("meta").at("versionId") != read.Json().at("meta").at("versionId"));
  CHECK(now.at("meta").at("tag").at(0).at("system") == "urn:rightsd:test:fhir-peer");

  // Once: read again, patch again, and it goes through.
  const Answer again = Http(peer, "GET", "/fhir/R4/Patient/" + jane, token);
  const Answer ok = Http(peer, "PATCH", "/fhir/R4/Patient/" + jane, token, patch, "application/json-patch+json",
                         {{"If-Match", again.Header("ETag")}});
  CHECK(ok.status == 200);
  CHECK_FALSE(peer.Read("Patient/" + jane).at("resource").contains("telecom"));
}

TEST_CASE("fhir: peer: FailNext answers 429 with Retry-After", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  const std::string token = Token(peer);
  peer.FailNext(2, 429, 7, "/Patient");
  // Another path is not affected.
  CHECK(Http(peer, "GET", "/fhir/R4/Observation", token).status == 200);
  for (int i = 0; i < 2; ++i) {
    const Answer r = Http(peer, "GET", "/fhir/R4/Patient?email=jane@example.com", token);
    CHECK(r.status == 429);
    CHECK(r.Header("Retry-After") == "7");
    CHECK(r.Json().at("issue").at(0).at("code") == "throttled");
  }
  CHECK(Http(peer, "GET", "/fhir/R4/Patient?email=jane@example.com", token).status == 200);

  peer.FailNext(1, 503);
  const Answer unavailable = Http(peer, "GET", "/fhir/R4/Observation", token);
  CHECK(unavailable.status == 503);
  CHECK(unavailable.Header("Retry-After").empty());
  CHECK(unavailable.Json().at("issue").at(0).at("code") == "transient");
  CHECK(Http(peer, "GET", "/fhir/R4/Observation", token).status == 200);
}

TEST_CASE("fhir: peer: the demo bundle searches and create then delete answer as the router does", "[fhir]") {
  FhirPeer peer;
  peer.Start();
  const std::string token = Token(peer);

  std::stringstream demo;
  demo << std::ifstream(std::filesystem::path(RIGHTSD_FHIR_PEER_DIR) / "demo-bundle.json").rdbuf();
  const json seeded = peer.Seed(json::parse(demo.str()));
  CHECK(seeded.at("entry").size() == 12);

  const Answer found = Http(peer, "GET", "/fhir/R4/Patient?identifier=" + kMrnSystem + "%7CMRN-0042", token);
  REQUIRE(found.status == 200);
  REQUIRE(found.Json().at("total") == 1);
  const std::string jane = found.Json().at("entry").at(0).at("resource").at("id").get<std::string>();
  const auto count = [&](const std::string& query) {
    const Answer r = Http(peer, "GET", "/fhir/R4/" + query, token);
    REQUIRE(r.status == 200);
    return r.Json().at("total").get<int>();
  };
  CHECK(count("Patient?email=jane@example.com") == 1);
  CHECK(count("Observation?patient=Patient/" + jane) == 3);
  CHECK(count("Observation?subject=Patient/" + jane) == 3);
  CHECK(count("Observation?patient=" + jane) == 0);  // a bare id does not match in the router's memory store
  CHECK(count("Encounter?patient=Patient/" + jane) == 2);
  CHECK(count("Condition?patient=Patient/" + jane) == 1);
  CHECK(count("Communication?subject=Patient/" + jane) == 2);
  CHECK(count("Communication?subject=Patient/" + jane + "&category=marketing") == 2);
  CHECK(count("Consent?patient=Patient/" + jane) == 1);

  // No $everything, no compartment search.
  CHECK(Http(peer, "GET", "/fhir/R4/Patient/" + jane + "/$everything", token).status == 404);
  CHECK(Http(peer, "GET", "/fhir/R4/Patient/" + jane + "/Observation", token).status == 404);

  const json patient{{"resourceType", "Patient"}, {"name", {{{"family", "Temp"}}}}};
  const Answer created = Http(peer, "POST", "/fhir/R4/Patient", token, patient.dump());
  REQUIRE(created.status == 201);
  const std::string id = created.Json().at("id").get<std::string>();
  CHECK(created.Header("Location") == fmt::format("{}/Patient/{}/_history/{}", peer.base_url(), id,
                                                   created.Json().at("meta").at("versionId").get<std::string>()));
  CHECK_FALSE(created.Header("ETag").empty());
  CHECK(Http(peer, "DELETE", "/fhir/R4/Patient/" + id, token).status == 200);
  CHECK(Http(peer, "GET", "/fhir/R4/Patient/" + id, token).status == 404);
  CHECK(Http(peer, "DELETE", "/fhir/R4/Patient/" + id, token).status == 404);
  CHECK(peer.Read("Patient/" + id).at("status") == 404);
}

TEST_CASE("fhir: peer: Start reports what the server printed when it does not come up", "[fhir]") {
  FhirPeerOptions o;
  o.page_size = 0;  // refused by server.js
  FhirPeer peer(o);
  REQUIRE_THROWS_WITH(peer.Start(), Catch::Contains("--page-size wants an integer >= 1"));
  peer.Stop();  // harmless after a failed start
}
