// The HL7 FHIR R4 connector.
//
// Contract followed: reference/connector-apis.md sections 2.4 (FHIR R4) and 2.5 (SMART Backend Services):
//   discovery GET [base]/.well-known/smart-configuration -> token_endpoint;
//   token     POST token_endpoint, form: grant_type=client_credentials, scope, client_assertion_type=
//             urn:ietf:params:oauth:client-assertion-type:jwt-bearer, client_assertion = a JWT (RS384 or ES384, header
//             kid + typ "JWT"; iss = sub = client_id, aud = the token URL, exp at most 5 minutes ahead, jti unique)
//             -> {access_token, token_type:"bearer", expires_in}; no refresh tokens; errors per RFC 6749 5.2;
//   search    GET [base]/Patient?identifier=system|value (and ?email= / ?phone=), a searchset Bundle paged through
//             link[relation=next], whose URL is opaque and followed as given;
//   access    GET [base]/Patient/{id}/$everything (trial use), else GET [base]/{type}?patient=Patient/{id} per type;
//   delete    DELETE [base]/{type}/{id}: 200/202/204 done, 404/410 already gone, 405 (type refused) and 409
//             (referential integrity) are reasons given back;
//   patch     PATCH [base]/Patient/{id}, application/json-patch+json, If-Match: the version read; 412 on a mismatch;
//   errors    OperationOutcome {issue:[{severity, code, details.text, diagnostics}]}.
//
// Choices where the contract is silent or loose:
// - Matching: identities of the kinds in match_on are searched one by one (mrn needs identifier_systems.mrn: an MRN
//   searched across every identifier system could match another organisation's number); an email is searched as
//   given and lower-cased. The patients found by any identity are the person -- unless there are more than
//   max_patients (default 1: a shared family email is common in healthcare), when the task needs a person to decide.
//   No usable identity also needs a person: "not found" would wrongly tell the consumer there is nothing.
// - Access: the Patient and every resource $everything (or the per-type searches) return, grouped by resource type.
//   A server that answers $everything with 400/404/405/422/501 has none: the connector remembers that and searches
//   per type from then on (everything = "auto"; "never" always searches).
// - Delete: every resource type is retained unless the data map's `resources` marks it on_delete = "delete"; the
//   Patient is kept unless delete_patient is set. Retained resources are counted per type and reported with the
//   basis (retain_basis) -- the task ends retained_exempt whenever anything was kept, done when everything found
//   was deleted. 405/409 answers are collected with the server's reason and make the task need a person.
//   A delete task on a system whose data map says on_delete = "retain" (action locate) deletes nothing.
// - Correct: first_name/last_name (the official name, else the first), email/phone (the first telecom of that
//   system), postal_address/city/state/zip (the first address), date_of_birth and gender become JSON Patch
//   operations against the version just read; a 412 reads again and patches once more; another 412 is a retry.
//   Other fields are left for a person (needs_manual, after the mapped ones were applied).
// - Opt-out and limit: one Consent per patient (status active, scope patient-privacy, category LOINC 59284-0,
//   policyRule OPTOUT, provision deny for the configured purposes), identified by the task id so that a second run
//   finds it (search first, then a create with If-None-Exist) instead of writing another.
// - Retries: 429/503 (and 408, 5xx, no answer) are retries after Retry-After when given; a 401 drops the cached
//   token and repeats the call once with a new one; other 4xx fail with the OperationOutcome's text.
// - Next links are followed only on the configured server's origin: a bearer token must not leave for another host.
// - Peer text reaches messages only with every identity and correction value cut out; receipts hold counts and
//   resource types, never ids or values. Records (access) hold the resources as the server returned them.
#include "connectors/fhir/fhir.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "connectors/jose.h"

namespace rightsd::connectors::fhir {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::size_t kMaxMessage = 400;
constexpr auto kAssertionLifetime = 240s;  // "exp at most 5 minutes ahead": room for a clock a minute fast
constexpr auto kDefaultTokenLifetime = 300s;
constexpr std::string_view kFhirJson = "application/fhir+json";
constexpr std::string_view kTaskIdentifierSystem = "urn:ietf:rfc:3986";

// --- text -------------------------------------------------------------------------------------------------------

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Peer text that may reach a message: the given secrets cut out case-insensitively, control characters
// flattened, the whole shortened.
std::string Scrub(std::string_view text, const std::vector<std::string>& secrets, std::size_t limit = kMaxMessage) {
  std::string out(text.substr(0, 4096));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  for (const auto& secret : secrets) {
    if (secret.size() < 2) continue;
    const std::string needle = Lower(secret);
    std::string lowered = Lower(out);
    for (std::size_t pos = 0; (pos = lowered.find(needle, pos)) != std::string::npos; pos += 10) {
      out.replace(pos, needle.size(), "[redacted]");
      lowered.replace(pos, needle.size(), "[redacted]");
    }
  }
  if (out.size() > limit) {
    out.resize(limit);  // may cut a character in two: ToValidUtf8 turns its remains into '?'
    return ToValidUtf8(out) + "...";
  }
  return ToValidUtf8(out);
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

// A FHIR search value: ',' '|' '$' and '\' are escaped with '\' (FHIR R4 search, "Escaping Search Parameters"),
// then the whole is percent-encoded.
std::string SearchValue(std::string_view value) {
  std::string escaped;
  for (char c : value) {
    if (c == ',' || c == '|' || c == '$' || c == '\\') escaped.push_back('\\');
    escaped.push_back(c);
  }
  return PercentEncode(escaped);
}

// A resource id as FHIR allows it ([A-Za-z0-9\-\.]{1,64}); anything else is not put into a path.
bool IsFhirId(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.';
  });
}

std::string Origin(std::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return "";
  const std::size_t path = url.find('/', scheme + 3);
  return std::string(url.substr(0, path));
}

std::string Rfc3339Now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The readable part of an OperationOutcome (or an OAuth error body): the first error issue's details.text,
// diagnostics and code.
std::string OutcomeText(const std::string& body) {
  const json doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return "";
  if (doc.value("resourceType", "") == "OperationOutcome" && doc.contains("issue") && doc["issue"].is_array()) {
    std::string text;
    for (const auto& issue : doc["issue"]) {
      if (!issue.is_object()) continue;
      std::string one;
      if (issue.contains("details") && issue["details"].is_object() && issue["details"].contains("text") &&
          issue["details"]["text"].is_string()) {
        one = issue["details"]["text"].get<std::string>();
      }
      if (issue.contains("diagnostics") && issue["diagnostics"].is_string()) {
        const std::string diagnostics = issue["diagnostics"].get<std::string>();
        if (diagnostics != one) one += (one.empty() ? "" : " -- ") + diagnostics;
      }
      if (issue.contains("code") && issue["code"].is_string()) one += " (" + issue["code"].get<std::string>() + ")";
      if (!one.empty()) text += (text.empty() ? "" : "; ") + one;
      if (text.size() > 600) break;
    }
    return text;
  }
  std::string text;
  if (doc.contains("error") && doc["error"].is_string()) text = doc["error"].get<std::string>();
  if (doc.contains("error_description") && doc["error_description"].is_string()) {
    text += (text.empty() ? "" : ": ") + doc["error_description"].get<std::string>();
  }
  return text;
}

bool IsTransient(int status) { return status == 0 || status == 408 || status == 425 || status == 429 || status >= 500; }

// --- configuration ----------------------------------------------------------------------------------------------

struct ResourceRule {
  std::string type;
  std::string search_param = "patient";
  bool deletable = false;
};

enum class Everything { kAuto, kAlways, kNever };

struct Config {
  std::string system;
  std::string base;    // no trailing slash
  std::string origin;  // scheme://host[:port] of base: where next links and the token may go
  std::string client_id;
  std::string key_id;
  jose::Algorithm algorithm = jose::Algorithm::kRS384;
  std::shared_ptr<EVP_PKEY> key;
  std::string token_url;  // configured; "" = discovered
  std::string scope;
  std::map<std::string, std::string> identifier_systems;  // identity kind -> identifier system
  std::set<std::string> match_on;
  int max_patients = 1;
  std::vector<ResourceRule> resources;
  bool delete_patient = false;
  std::string retain_basis;
  Everything everything = Everything::kAuto;
  int page_size = 100;
  int max_pages = 50;
  json opt_out_purposes = json::array();
  json limit_purposes = json::array();
  std::chrono::milliseconds timeout{30000};
  HttpClient* http = nullptr;
};

// --- SMART Backend Services tokens ------------------------------------------------------------------------------

struct TokenResult {
  std::string access_token;  // "": `failure` says why
  Outcome failure;
};

// One token for all tasks of a system: discovered and fetched by whichever task needs it first while the others
// wait for the same answer, used until a little before expires_in runs out.
class TokenSource : public std::enable_shared_from_this<TokenSource> {
 public:
  explicit TokenSource(std::shared_ptr<const Config> config)
      : config_(std::move(config)), token_url_(config_->token_url) {}

  void Get(std::function<void(TokenResult)> then) {
    std::string ready;
    bool fetch = false;
    {
      std::lock_guard lock(mu_);
      if (!token_.empty() && std::chrono::steady_clock::now() < refresh_at_) {
        ready = token_;
      } else {
        waiters_.push_back(std::move(then));
        fetch = !fetching_;
        fetching_ = true;
      }
    }
    if (!ready.empty()) {
      then(TokenResult{ready, {}});
    } else if (fetch) {
      Start();
    }
  }

  void Invalidate(const std::string& token) {
    std::lock_guard lock(mu_);
    if (token_ == token) token_.clear();
  }

 private:
  void Start() {
    std::string url;
    {
      std::lock_guard lock(mu_);
      url = token_url_;
    }
    if (!url.empty()) return Fetch(url);
    HttpRequest request;
    request.url = config_->base + "/.well-known/smart-configuration";
    request.timeout = config_->timeout;
    request.headers = {{"Accept", "application/json"}};
    config_->http->Send(std::move(request), [self = shared_from_this()](HttpResponse response) {
      const std::string doing = "reading the EHR's SMART configuration";
      if (response.status != 200) {
        const std::string why = response.status == 0 ? response.error
                                                     : fmt::format("HTTP {} {}", response.status,
                                                                   Scrub(OutcomeText(response.body), {}));
        Outcome o = IsTransient(response.status) ? Outcome::Retry(fmt::format("{}: {}", doing, why))
                                                 : Outcome::Failed(fmt::format("{}: {}", doing, why));
        if (response.status != 0) o.retry_after = ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
        return self->Deliver(TokenResult{"", std::move(o)});
      }
      const json doc = json::parse(response.body, nullptr, false);
      if (!doc.is_object() || !doc.contains("token_endpoint") || !doc["token_endpoint"].is_string()) {
        return self->Deliver(TokenResult{"", Outcome::Failed(doing + ": it names no token_endpoint")});
      }
      const std::string endpoint = doc["token_endpoint"].get<std::string>();
      if (!endpoint.starts_with("https://") && !endpoint.starts_with("http://")) {
        return self->Deliver(TokenResult{"", Outcome::Failed(doing + ": its token_endpoint is not an http(s) URL")});
      }
      if (doc.contains("token_endpoint_auth_signing_alg_values_supported") &&
          doc["token_endpoint_auth_signing_alg_values_supported"].is_array()) {
        const auto& algs = doc["token_endpoint_auth_signing_alg_values_supported"];
        const std::string ours(jose::ToString(self->config_->algorithm));
        if (std::find(algs.begin(), algs.end(), json(ours)) == algs.end()) {
          return self->Deliver(TokenResult{
              "", Outcome::Failed(fmt::format("{}: the server does not take {} client assertions (it lists {})", doing,
                                              ours, Scrub(algs.dump(), {}, 120)))});
        }
      }
      {
        std::lock_guard lock(self->mu_);
        self->token_url_ = endpoint;
      }
      self->Fetch(endpoint);
    });
  }

  void Fetch(const std::string& token_url) {
    const long long now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::string assertion;
    try {
      const json claims = {{"iss", config_->client_id},
                           {"sub", config_->client_id},
                           {"aud", token_url},
                           {"exp", now + kAssertionLifetime.count()},
                           {"iat", now},
                           {"jti", jose::RandomId()}};
      assertion = jose::Sign(config_->algorithm, config_->key.get(), {{"kid", config_->key_id}, {"typ", "JWT"}}, claims);
    } catch (const std::exception& e) {
      return Deliver(TokenResult{"", Outcome::Retry(fmt::format("signing the client assertion: {}", e.what()))});
    }
    if (assertion.empty()) {
      return Deliver(TokenResult{"", Outcome::Failed("signing the client assertion failed (OpenSSL)")});
    }
    HttpRequest request;
    request.method = "POST";
    request.url = token_url;
    request.timeout = config_->timeout;
    request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
    request.body = "grant_type=client_credentials&scope=" + PercentEncode(config_->scope) +
                   "&client_assertion_type=" +
                   PercentEncode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") +
                   "&client_assertion=" + assertion;
    config_->http->Send(std::move(request), [self = shared_from_this()](HttpResponse response) {
      self->Deliver(self->Parse(response));
    });
  }

  TokenResult Parse(const HttpResponse& response) {
    const std::string doing = "getting a token from the EHR";
    if (response.status == 0) {
      return {"", Outcome::Retry(fmt::format("{}: {}", doing, Scrub(response.error, {})))};
    }
    if (response.status != 200) {
      std::string message = fmt::format("{}: HTTP {}", doing, response.status);
      const std::string text = Scrub(OutcomeText(response.body), {});
      if (!text.empty()) message += ": " + text;
      if (IsTransient(response.status)) {
        Outcome o = Outcome::Retry(std::move(message));
        o.retry_after = ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
        return {"", std::move(o)};
      }
      // A refused client (invalid_client, a key not registered, a clock far off) needs a person, not retries.
      return {"", Outcome::Failed(message + " (check the client registration: client_id, key_id and the public key)")};
    }
    const json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string() ||
        doc["access_token"].get<std::string>().empty()) {
      return {"", Outcome::Retry(doing + ": the answer holds no access_token")};
    }
    if (doc.contains("token_type") && (!doc["token_type"].is_string() || Lower(doc["token_type"].get<std::string>()) != "bearer")) {
      return {"", Outcome::Failed(doing + ": the token is not a bearer token")};
    }
    auto lifetime = kDefaultTokenLifetime;
    if (doc.contains("expires_in") && doc["expires_in"].is_number() && doc["expires_in"].get<double>() > 0) {
      lifetime = std::chrono::seconds(static_cast<long long>(doc["expires_in"].get<double>()));
    }
    // Used until 30 s (or a fifth of a short lifetime) before it runs out: a call in flight must not carry a token
    // that expires on the way.
    const auto margin = std::min<std::chrono::seconds>(30s, lifetime / 5);
    {
      std::lock_guard lock(mu_);
      refresh_at_ = std::chrono::steady_clock::now() + lifetime - margin;
    }
    return {doc["access_token"].get<std::string>(), {}};
  }

  void Deliver(TokenResult result) {
    std::vector<std::function<void(TokenResult)>> waiters;
    {
      std::lock_guard lock(mu_);
      if (!result.access_token.empty()) token_ = result.access_token;
      fetching_ = false;
      waiters.swap(waiters_);
    }
    for (auto& waiter : waiters) waiter(result);
  }

  std::shared_ptr<const Config> config_;
  std::mutex mu_;
  std::string token_url_;
  std::string token_;
  std::chrono::steady_clock::time_point refresh_at_;
  bool fetching_ = false;
  std::vector<std::function<void(TokenResult)>> waiters_;
};

// --- one task ---------------------------------------------------------------------------------------------------

struct Shared {
  std::shared_ptr<const Config> config;
  std::shared_ptr<TokenSource> tokens;
  std::atomic<bool> no_everything{false};
};

class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<Shared> shared, TaskInput input, OutcomeCallback done)
      : shared_(std::move(shared)), config_(shared_->config), input_(std::move(input)), done_(std::move(done)) {
    for (const auto& identity : input_.identities) secrets_.push_back(identity.value);
    for (const auto& correction : input_.corrections) secrets_.push_back(correction.value);
  }

  void Start() {
    for (const auto& identity : input_.identities) {
      if (!config_->match_on.count(identity.kind)) continue;
      if (identity.kind == "fhir_patient_id") {
        if (IsFhirId(identity.value)) reads_.push_back(identity.value);
      } else if (identity.kind == "mrn") {
        auto it = config_->identifier_systems.find("mrn");
        if (it != config_->identifier_systems.end()) {
          searches_.push_back("Patient?identifier=" + SearchValue(it->second) + "%7C" + SearchValue(identity.value));
        }
      } else if (identity.kind == "email") {
        searches_.push_back("Patient?email=" + SearchValue(identity.value));
        if (Lower(identity.value) != identity.value) searches_.push_back("Patient?email=" + SearchValue(Lower(identity.value)));
      } else if (identity.kind == "phone") {
        searches_.push_back("Patient?phone=" + SearchValue(identity.value));
      }
    }
    if (reads_.empty() && searches_.empty()) {
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      o.message = fmt::format("none of the request's identities is one this EHR is searched by ({}); a person must "
                              "look the patient up",
                              MatchOnText());
      return Finish(std::move(o));
    }
    NextLookup();
  }

 private:
  using Then = std::function<void(const HttpResponse&)>;

  std::string MatchOnText() const {
    std::string out;
    for (const auto& kind : config_->match_on) {
      if (kind == "mrn" && !config_->identifier_systems.count("mrn")) continue;
      out += (out.empty() ? "" : ", ") + kind;
    }
    return out.empty() ? "none configured" : out;
  }

  // --- calls -----------------------------------------------------------------------------------------------------

  // Sends one call with the system's token: a 401 drops the token and sends the call once more with a new one.
  void Call(HttpRequest request, Then then, bool second_try = false) {
    request.timeout = config_->timeout;
    shared_->tokens->Get([self = shared_from_this(), request = std::move(request), then = std::move(then),
                          second_try](TokenResult token) mutable {
      if (token.access_token.empty()) return self->Finish(std::move(token.failure));
      HttpRequest sent = request;
      sent.headers.emplace_back("Authorization", "Bearer " + token.access_token);
      self->config_->http->Send(std::move(sent), [self, request = std::move(request), then = std::move(then),
                                                   second_try, used = token.access_token](HttpResponse response) mutable {
        try {
          if (response.status == 401 && !second_try) {
            self->shared_->tokens->Invalidate(used);
            return self->Call(std::move(request), std::move(then), true);
          }
          then(response);
        } catch (const std::exception& e) {
          self->Finish(Outcome::Retry(fmt::format("internal error reading the EHR's answer: {}", e.what())));
        }
      });
    });
  }

  HttpRequest Get(const std::string& url) const {
    HttpRequest request;
    request.url = url.starts_with("http") ? url : config_->base + "/" + url;
    request.headers = {{"Accept", std::string(kFhirJson)}};
    return request;
  }

  // The outcome of a call that did not go as hoped.
  Outcome Failure(const HttpResponse& response, std::string_view doing) const {
    if (response.status == 0) {
      return Outcome::Retry(response.error == "timeout"
                                ? fmt::format("{}: no answer within {} ms", doing, config_->timeout.count())
                                : fmt::format("{}: {}", doing, Scrub(response.error, secrets_)));
    }
    std::string message = fmt::format("{}: HTTP {}", doing, response.status);
    const std::string text = Scrub(OutcomeText(response.body), secrets_);
    if (!text.empty()) message += ": " + text;
    if (IsTransient(response.status)) {
      Outcome o = Outcome::Retry(std::move(message));
      o.retry_after = ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
      return o;
    }
    if (response.status == 401) message += " (the EHR refused a fresh token too)";
    if (response.status == 403) message += " (does the client registration grant the scope this needs?)";
    return Outcome::Failed(std::move(message));
  }

  // Pages through a searchset: `each` sees every entry's resource; `then` runs after the last page.
  void Search(std::string url, std::string doing, std::function<void(const json&)> each, std::function<void()> then,
              int page = 1) {
    Call(Get(url), [self = shared_from_this(), doing, each, then, page](const HttpResponse& response) mutable {
      if (response.status != 200) return self->Finish(self->Failure(response, doing));
      const json bundle = json::parse(response.body, nullptr, false);
      if (!bundle.is_object() || bundle.value("resourceType", "") != "Bundle") {
        return self->Finish(Outcome::Retry(doing + ": the answer is not a Bundle"));
      }
      if (bundle.contains("entry") && bundle["entry"].is_array()) {
        for (const auto& entry : bundle["entry"]) {
          if (!entry.is_object() || !entry.contains("resource") || !entry["resource"].is_object()) continue;
          // Included resources and OperationOutcome warnings are not matches.
          if (entry.contains("search") && entry["search"].is_object() &&
              entry["search"].value("mode", "match") == "outcome") {
            continue;
          }
          if (entry["resource"].value("resourceType", "") == "OperationOutcome") continue;
          each(entry["resource"]);
        }
      }
      std::string next;
      if (bundle.contains("link") && bundle["link"].is_array()) {
        for (const auto& link : bundle["link"]) {
          if (link.is_object() && link.value("relation", "") == "next" && link.contains("url") && link["url"].is_string()) {
            next = link["url"].get<std::string>();
          }
        }
      }
      if (next.empty()) return then();
      if (Origin(next) != self->config_->origin) {
        return self->Finish(Outcome::Failed(doing + ": the server's next link leads to another host; not followed"));
      }
      if (page >= self->config_->max_pages) {
        return self->Finish(Outcome::Failed(fmt::format(
            "{}: more than {} pages of {} (max_pages); a person must look", doing, self->config_->max_pages,
            self->config_->page_size)));
      }
      self->Search(next, doing, each, then, page + 1);
    });
  }

  // --- finding the patient ---------------------------------------------------------------------------------------

  void NextLookup() {
    if (!reads_.empty()) {
      const std::string id = reads_.back();
      reads_.pop_back();
      return Call(Get("Patient/" + id), [self = shared_from_this()](const HttpResponse& response) {
        if (response.status == 404 || response.status == 410) return self->NextLookup();
        if (response.status != 200) return self->Finish(self->Failure(response, "reading the patient by FHIR id"));
        const json patient = json::parse(response.body, nullptr, false);
        if (patient.is_object() && patient.value("resourceType", "") == "Patient") self->AddPatient(patient);
        self->NextLookup();
      });
    }
    if (!searches_.empty()) {
      std::string query = searches_.back();
      searches_.pop_back();
      query += "&_count=" + std::to_string(config_->page_size);
      return Search(query, "searching for the patient",
                    [self = shared_from_this()](const json& r) {
                      if (r.value("resourceType", "") == "Patient") self->AddPatient(r);
                    },
                    [self = shared_from_this()] { self->NextLookup(); });
    }
    Located();
  }

  void AddPatient(const json& patient) {
    if (!patient.contains("id") || !patient["id"].is_string() || !IsFhirId(patient["id"].get<std::string>())) return;
    patients_.emplace(patient["id"].get<std::string>(), patient);
  }

  json BaseReceipt() const {
    return {{"patients", patients_.size()}, {"matched_on", MatchOnText()}};
  }

  void Located() {
    if (patients_.empty()) return Finish(Outcome::NotFound(BaseReceipt()));
    if (static_cast<int>(patients_.size()) > config_->max_patients) {
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      o.receipt = BaseReceipt();
      o.message = fmt::format("{} patients match the request's identities (max_patients = {}); a person must decide "
                              "which record is the consumer's",
                              patients_.size(), config_->max_patients);
      return Finish(std::move(o));
    }
    for (const auto& [id, patient] : patients_) pending_patients_.push_back(id);
    switch (input_.action) {
      case TaskAction::kAccess: return NextAccess();
      case TaskAction::kDelete:
      case TaskAction::kLocate: return NextErase();
      case TaskAction::kCorrect: return NextCorrect();
      case TaskAction::kOptOut:
      case TaskAction::kLimit: return NextConsent();
      case TaskAction::kDeidentify: break;
    }
    Finish(Outcome::Failed("the fhir connector does not deidentify"));
  }

  // --- access ----------------------------------------------------------------------------------------------------

  void Keep(const json& resource) {
    const std::string type = resource.value("resourceType", "");
    if (type.empty()) return;
    const std::string key = type + "/" + resource.value("id", "");
    if (!seen_.insert(key).second) return;  // $everything and per-type searches may both list it
    records_[type].push_back(resource);
    ++record_count_;
  }

  void NextAccess() {
    if (pending_patients_.empty()) {
      json receipt = BaseReceipt();
      receipt["resources"] = record_count_;
      receipt["via"] = via_everything_ ? "$everything" : "search per resource type";
      json by_type = json::object();
      for (const auto& [type, list] : records_.items()) by_type[type] = list.size();
      receipt["by_type"] = std::move(by_type);
      Outcome o = Outcome::Done(std::move(receipt));
      o.records = records_;
      return Finish(std::move(o));
    }
    const std::string id = pending_patients_.back();
    pending_patients_.pop_back();
    Keep(patients_.at(id));
    const bool try_everything = config_->everything == Everything::kAlways ||
                                (config_->everything == Everything::kAuto && !shared_->no_everything.load());
    if (!try_everything) return SearchTypes(id, 0, [self = shared_from_this()] { self->NextAccess(); });
    Call(Get(fmt::format("Patient/{}/$everything?_count={}", id, config_->page_size)),
         [self = shared_from_this(), id](const HttpResponse& response) {
           const int s = response.status;
           if (s == 400 || s == 404 || s == 405 || s == 422 || s == 501) {
             if (self->config_->everything == Everything::kAuto) {
               self->shared_->no_everything.store(true);
               return self->SearchTypes(id, 0, [self] { self->NextAccess(); });
             }
           }
           if (s != 200) return self->Finish(self->Failure(response, "reading the patient's record ($everything)"));
           self->via_everything_ = true;
           // The first page is in hand; the rest is paged like any search.
           self->SearchFrom(response, "reading the patient's record ($everything)", [self] { self->NextAccess(); });
         });
  }

  // Handles an answer already received as the first page of a search.
  void SearchFrom(const HttpResponse& first, std::string doing, std::function<void()> then) {
    const json bundle = json::parse(first.body, nullptr, false);
    if (!bundle.is_object() || bundle.value("resourceType", "") != "Bundle") {
      return Finish(Outcome::Retry(doing + ": the answer is not a Bundle"));
    }
    for (const auto& entry : bundle.value("entry", json::array())) {
      if (entry.is_object() && entry.contains("resource") && entry["resource"].is_object() &&
          entry["resource"].value("resourceType", "") != "OperationOutcome") {
        Keep(entry["resource"]);
      }
    }
    for (const auto& link : bundle.value("link", json::array())) {
      if (link.is_object() && link.value("relation", "") == "next" && link.contains("url") && link["url"].is_string()) {
        const std::string next = link["url"].get<std::string>();
        if (Origin(next) != config_->origin) {
          return Finish(Outcome::Failed(doing + ": the server's next link leads to another host; not followed"));
        }
        return Search(next, doing, [self = shared_from_this()](const json& r) { self->Keep(r); }, std::move(then), 2);
      }
    }
    then();
  }

  // Access without $everything: one search per configured resource type.
  void SearchTypes(const std::string& patient, std::size_t index, std::function<void()> then) {
    if (index >= config_->resources.size()) return then();
    const ResourceRule& rule = config_->resources[index];
    Search(fmt::format("{}?{}=Patient/{}&_count={}", rule.type, rule.search_param, patient, config_->page_size),
           "searching the patient's " + rule.type + " resources",
           [self = shared_from_this()](const json& r) { self->Keep(r); },
           [self = shared_from_this(), patient, index, then] { self->SearchTypes(patient, index + 1, then); });
  }

  // --- delete and locate -----------------------------------------------------------------------------------------

  void NextErase() {
    if (pending_patients_.empty()) return EraseNextResource();
    const std::string id = pending_patients_.back();
    pending_patients_.pop_back();
    if (input_.action == TaskAction::kDelete && config_->delete_patient) {
      patients_to_delete_.push_back(id);
    } else {
      ++retained_["Patient"];
    }
    EraseTypes(id, 0);
  }

  void EraseTypes(const std::string& patient, std::size_t index) {
    if (index >= config_->resources.size()) return NextErase();
    const ResourceRule& rule = config_->resources[index];
    const bool deletable = rule.deletable && input_.action == TaskAction::kDelete;
    Search(fmt::format("{}?{}=Patient/{}&_count={}{}", rule.type, rule.search_param, patient, config_->page_size,
                       deletable ? "" : "&_elements=id"),
           "searching the patient's " + rule.type + " resources",
           [self = shared_from_this(), deletable, type = rule.type](const json& r) {
             if (r.value("resourceType", "") != type || !r.contains("id") || !r["id"].is_string()) return;
             const std::string id = r["id"].get<std::string>();
             if (!self->seen_.insert(type + "/" + id).second) return;
             if (deletable && IsFhirId(id)) {
               self->to_delete_.push_back(type + "/" + id);
             } else {
               ++self->retained_[type];
             }
           },
           [self = shared_from_this(), patient, index] { self->EraseTypes(patient, index + 1); });
  }

  void EraseNextResource() {
    if (to_delete_.empty() && !patients_to_delete_.empty()) {
      // The Patient last: its resources refer to it, and a server with referential integrity refuses it before.
      for (const auto& id : patients_to_delete_) to_delete_.push_back("Patient/" + id);
      patients_to_delete_.clear();
    }
    if (to_delete_.empty()) return EraseFinished();
    const std::string reference = to_delete_.front();
    to_delete_.erase(to_delete_.begin());
    const std::string type = reference.substr(0, reference.find('/'));
    HttpRequest request = Get(reference);
    request.method = "DELETE";
    Call(std::move(request), [self = shared_from_this(), type](const HttpResponse& response) {
      const int s = response.status;
      if (s == 200 || s == 202 || s == 204) {
        ++self->deleted_[type];
      } else if (s == 404 || s == 410) {
        ++self->already_gone_[type];
      } else if (s == 405 || s == 409) {
        std::string reason = Scrub(OutcomeText(response.body), self->secrets_, 200);
        self->refused_[type].push_back(fmt::format("HTTP {}{}{}", s, reason.empty() ? "" : ": ", reason));
      } else {
        // Deleted so far stays deleted; the retry searches again and finds only what is left.
        return self->Finish(self->Failure(response, "deleting a " + type + " resource"));
      }
      self->EraseNextResource();
    });
  }

  void EraseFinished() {
    auto counts = [](const std::map<std::string, int>& m) {
      json out = json::object();
      for (const auto& [type, n] : m) out[type] = n;
      return out;
    };
    int deleted = 0, retained = 0, refused = 0;
    for (const auto& [type, n] : deleted_) deleted += n;
    for (const auto& [type, n] : already_gone_) deleted += n;
    for (const auto& [type, n] : retained_) retained += n;
    for (const auto& [type, list] : refused_) refused += static_cast<int>(list.size());
    const std::string basis = input_.action == TaskAction::kLocate && !input_.retain_basis.empty()
                                  ? input_.retain_basis
                                  : config_->retain_basis;
    json receipt = BaseReceipt();
    receipt["deleted"] = counts(deleted_);
    if (!already_gone_.empty()) receipt["already_gone"] = counts(already_gone_);
    receipt["retained_exempt"] = counts(retained_);
    if (retained > 0) receipt["retain_basis"] = basis;
    std::string message = fmt::format("deleted {} resources; kept {} under the exemption", deleted, retained);
    if (refused > 0) {
      json reasons = json::object();
      std::string first;
      for (const auto& [type, list] : refused_) {
        reasons[type] = list;
        if (first.empty()) first = type + " " + list.front();
      }
      receipt["refused"] = std::move(reasons);
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      o.receipt = std::move(receipt);
      o.message = Scrub(fmt::format("{}; the EHR refused to delete {} resources (first: {}); a person must resolve "
                                    "them",
                                    message, refused, first),
                        secrets_);
      return Finish(std::move(o));
    }
    if (retained > 0) {
      Outcome o;
      o.kind = OutcomeKind::kRetainedExempt;
      o.message = message + " (" + basis + ")";
      o.receipt = std::move(receipt);
      return Finish(std::move(o));
    }
    Outcome o = Outcome::Done(std::move(receipt));
    o.message = std::move(message);
    Finish(std::move(o));
  }

  // --- correct ---------------------------------------------------------------------------------------------------

  static std::string PatientVersion(const HttpResponse& response, const json& patient) {
    std::string etag = response.Header("ETag");
    if (!etag.empty()) return etag;
    if (patient.contains("meta") && patient["meta"].is_object() && patient["meta"].contains("versionId") &&
        patient["meta"]["versionId"].is_string()) {
      return "W/\"" + patient["meta"]["versionId"].get<std::string>() + "\"";
    }
    return "";
  }

  // JSON Patch operations for the corrections this connector maps; unmapped field names go to `unmapped_`.
  json PatchFor(const json& patient) {
    json ops = json::array();
    unmapped_.clear();
    auto array_of = [&](const char* member) { return patient.contains(member) && patient[member].is_array() ? patient[member] : json::array(); };
    const json names = array_of("name");
    std::size_t name_index = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i].is_object() && names[i].value("use", "") == "official") {
        name_index = i;
        break;
      }
    }
    json name_additions = json::object();  // when the patient has no name yet
    const json addresses = array_of("address");
    json address_additions = json::object();
    json telecom = array_of("telecom");
    bool telecom_changed = false;
    for (const auto& c : input_.corrections) {
      if (c.field == "first_name" || c.field == "last_name") {
        const bool given = c.field == "first_name";
        const json value = given ? json::array({c.value}) : json(c.value);
        if (names.empty()) {
          name_additions[given ? "given" : "family"] = value;
        } else {
          ops.push_back({{"op", "add"}, {"path", fmt::format("/name/{}/{}", name_index, given ? "given" : "family")}, {"value", value}});
        }
      } else if (c.field == "email" || c.field == "phone") {
        bool replaced = false;
        for (auto& point : telecom) {
          if (point.is_object() && point.value("system", "") == c.field) {
            point["value"] = c.value;
            replaced = true;
            break;
          }
        }
        if (!replaced) telecom.push_back({{"system", c.field}, {"value", c.value}});
        telecom_changed = true;
      } else if (c.field == "postal_address" || c.field == "city" || c.field == "state" || c.field == "zip" ||
                 c.field == "postal_code") {
        const std::string member = c.field == "postal_address" ? "line"
                                   : c.field == "zip" || c.field == "postal_code" ? "postalCode"
                                                                                   : c.field;
        const json value = member == "line" ? json::array({c.value}) : json(c.value);
        if (addresses.empty()) {
          address_additions[member] = value;
        } else {
          ops.push_back({{"op", "add"}, {"path", "/address/0/" + member}, {"value", value}});
        }
      } else if (c.field == "date_of_birth") {
        ops.push_back({{"op", "add"}, {"path", "/birthDate"}, {"value", c.value}});
      } else if (c.field == "gender") {
        ops.push_back({{"op", "add"}, {"path", "/gender"}, {"value", Lower(c.value)}});
      } else if (std::find(unmapped_.begin(), unmapped_.end(), c.field) == unmapped_.end()) {
        unmapped_.push_back(c.field);
      }
    }
    if (!name_additions.empty()) ops.push_back({{"op", "add"}, {"path", "/name"}, {"value", json::array({name_additions})}});
    if (!address_additions.empty()) {
      ops.push_back({{"op", "add"}, {"path", "/address"}, {"value", json::array({address_additions})}});
    }
    if (telecom_changed) ops.push_back({{"op", "add"}, {"path", "/telecom"}, {"value", telecom}});
    return ops;
  }

  void NextCorrect() {
    if (pending_patients_.empty()) {
      json receipt = BaseReceipt();
      receipt["patched"] = patched_;
      json fields = json::array();
      for (const auto& c : input_.corrections) {
        if (std::find(unmapped_.begin(), unmapped_.end(), c.field) == unmapped_.end()) fields.push_back(c.field);
      }
      receipt["fields"] = std::move(fields);
      if (!unmapped_.empty()) {
        std::string list;
        for (const auto& f : unmapped_) list += (list.empty() ? "" : ", ") + f;
        receipt["left_for_a_person"] = unmapped_;
        Outcome o;
        o.kind = OutcomeKind::kNeedsManual;
        o.receipt = std::move(receipt);
        o.message = Scrub(fmt::format("{} correction field(s) this connector does not map to Patient ({}); a person "
                                      "must apply them in the EHR{}",
                                      unmapped_.size(), list, patched_ > 0 ? "; the mapped ones were applied" : ""),
                          secrets_);
        return Finish(std::move(o));
      }
      return Finish(Outcome::Done(std::move(receipt)));
    }
    ReadAndPatch(pending_patients_.back(), false);
  }

  void ReadAndPatch(const std::string& id, bool after_conflict) {
    Call(Get("Patient/" + id), [self = shared_from_this(), id, after_conflict](const HttpResponse& read) {
      if (read.status == 404 || read.status == 410) {
        self->pending_patients_.pop_back();
        return self->NextCorrect();
      }
      if (read.status != 200) return self->Finish(self->Failure(read, "reading the patient to correct"));
      const json patient = json::parse(read.body, nullptr, false);
      if (!patient.is_object()) return self->Finish(Outcome::Retry("reading the patient to correct: not JSON"));
      const json ops = self->PatchFor(patient);
      if (ops.empty()) {
        self->pending_patients_.pop_back();
        return self->NextCorrect();
      }
      HttpRequest patch = self->Get("Patient/" + id);
      patch.method = "PATCH";
      patch.headers.emplace_back("Content-Type", "application/json-patch+json");
      const std::string version = PatientVersion(read, patient);
      if (!version.empty()) patch.headers.emplace_back("If-Match", version);
      patch.body = ops.dump();
      self->Call(std::move(patch), [self, id, after_conflict](const HttpResponse& response) {
        if (response.status == 412) {
          if (!after_conflict) return self->ReadAndPatch(id, true);
          Outcome o = Outcome::Retry("correcting the patient: the record changed twice while it was being corrected");
          return self->Finish(std::move(o));
        }
        if (response.status != 200 && response.status != 204) {
          return self->Finish(self->Failure(response, "correcting the patient (JSON Patch)"));
        }
        ++self->patched_;
        self->pending_patients_.pop_back();
        self->NextCorrect();
      });
    });
  }

  // --- opt-out and limit -----------------------------------------------------------------------------------------

  std::string TaskIdentifierValue() const { return "urn:uuid:" + input_.task_id; }

  json ConsentFor(const std::string& patient) const {
    const json& purposes = input_.action == TaskAction::kLimit ? config_->limit_purposes : config_->opt_out_purposes;
    return {{"resourceType", "Consent"},
            {"status", "active"},
            {"identifier", json::array({{{"system", kTaskIdentifierSystem}, {"value", TaskIdentifierValue()}}})},
            {"scope",
             {{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/consentscope"},
                                       {"code", "patient-privacy"}}})}}},
            {"category",
             json::array({{{"coding", json::array({{{"system", "http://loinc.org"}, {"code", "59284-0"},
                                                    {"display", "Patient Consent"}}})}}})},
            {"patient", {{"reference", "Patient/" + patient}}},
            {"dateTime", Rfc3339Now()},
            {"policyRule",
             {{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActCode"},
                                       {"code", "OPTOUT"}}})},
              {"text", input_.action == TaskAction::kLimit
                           ? "CPRA request to limit the use of sensitive personal information"
                           : "CPRA request to opt out of the sale or sharing of personal information"}}},
            {"provision", {{"type", "deny"}, {"purpose", purposes}}}};
  }

  void NextConsent() {
    if (pending_patients_.empty()) {
      json receipt = BaseReceipt();
      receipt["consents_created"] = consents_created_;
      receipt["consents_already_recorded"] = consents_found_;
      return Finish(Outcome::Done(std::move(receipt)));
    }
    const std::string id = pending_patients_.back();
    const std::string query = fmt::format("Consent?identifier={}%7C{}", SearchValue(kTaskIdentifierSystem),
                                          SearchValue(TaskIdentifierValue()));
    auto found = std::make_shared<bool>(false);
    Search(query, "looking for this task's Consent",
           [found](const json& r) { *found = *found || r.value("resourceType", "") == "Consent"; },
           [self = shared_from_this(), id, found, query] {
             if (*found) {
               ++self->consents_found_;
               self->pending_patients_.pop_back();
               return self->NextConsent();
             }
             HttpRequest create = self->Get("Consent");
             create.method = "POST";
             create.headers.emplace_back("Content-Type", std::string(kFhirJson));
             create.headers.emplace_back("If-None-Exist", query.substr(query.find('?') + 1));
             create.body = self->ConsentFor(id).dump();
             self->Call(std::move(create), [self](const HttpResponse& response) {
               if (response.status != 200 && response.status != 201) {
                 return self->Finish(self->Failure(response, "creating the Consent"));
               }
               // 200 is a conditional create that found this task's Consent already there.
               ++(response.status == 201 ? self->consents_created_ : self->consents_found_);
               self->pending_patients_.pop_back();
               self->NextConsent();
             });
           });
  }

  void Finish(Outcome outcome) {
    if (finished_.exchange(true)) return;
    outcome.message = Scrub(outcome.message, secrets_);
    OutcomeCallback done = std::move(done_);
    done(std::move(outcome));
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<const Config> config_;
  TaskInput input_;
  OutcomeCallback done_;
  std::vector<std::string> secrets_;
  std::atomic<bool> finished_{false};

  std::vector<std::string> reads_;     // FHIR ids to read
  std::vector<std::string> searches_;  // Patient searches to run
  std::map<std::string, json> patients_;
  std::vector<std::string> pending_patients_;

  json records_ = json::object();
  std::set<std::string> seen_;
  int record_count_ = 0;
  bool via_everything_ = false;

  std::vector<std::string> to_delete_;
  std::vector<std::string> patients_to_delete_;
  std::map<std::string, int> deleted_, already_gone_, retained_;
  std::map<std::string, std::vector<std::string>> refused_;

  std::vector<std::string> unmapped_;
  int patched_ = 0;
  int consents_created_ = 0;
  int consents_found_ = 0;
};

class FhirConnector final : public Connector {
 public:
  explicit FhirConnector(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  bool Supports(TaskAction action) const override { return action != TaskAction::kDeidentify; }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    if (!Supports(input.action)) {
      done(Outcome::Failed(fmt::format("the fhir connector does not support {}", ToString(input.action))));
      return;
    }
    std::make_shared<Job>(shared_, input, std::move(done))->Start();
  }

 private:
  std::shared_ptr<Shared> shared_;
};

// Clinical record types searched for access (without $everything) and counted for delete requests by default.
// All are kept on delete unless the settings say otherwise.
const std::vector<std::string_view> kDefaultResourceTypes = {
    "AllergyIntolerance", "CarePlan",   "Communication",     "Condition",       "Consent",
    "DiagnosticReport",   "DocumentReference", "Encounter",  "Immunization",    "MedicationRequest",
    "Observation",        "Procedure",
};

std::string DefaultScope(const Config& c) {
  std::set<std::string> scopes = {"system/Patient.rs", "system/Patient.u", "system/Consent.cr"};
  for (const auto& rule : c.resources) {
    scopes.insert("system/" + rule.type + ".rs");
    if (rule.deletable) scopes.insert("system/" + rule.type + ".d");
  }
  if (c.delete_patient) scopes.insert("system/Patient.d");
  std::string out;
  for (const auto& s : scopes) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

std::unique_ptr<Connector> MakeFhirConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto fail = [&](const std::string& setting, const std::string& what) {
    return ConnectorConfigError(fmt::format("system {}: settings/{}: {}", env.system, setting, what));
  };
  if (!env.http) throw ConnectorConfigError(fmt::format("system {}: the fhir connector needs the shared http client", env.system));
  auto config = std::make_shared<Config>();
  config->system = env.system;
  config->http = env.http;
  config->base = settings.value("base_url", "");
  while (!config->base.empty() && config->base.back() == '/') config->base.pop_back();
  config->origin = Origin(config->base);
  if (config->origin.empty()) throw fail("base_url", "must be an http(s) URL");
  config->client_id = settings.value("client_id", "");
  config->key_id = settings.value("key_id", "");
  config->token_url = settings.value("token_url", "");

  const std::string key_file = settings.value("private_key_file", "");
  const std::string pem = ReadCredential(env, "private_key_file", key_file);
  jose::PrivateKey key = jose::ReadPrivateKeyPem(pem);
  if (!key) throw fail("private_key_file", "holds no PEM private key (an encrypted key is not supported)");
  if (settings.contains("algorithm")) {
    config->algorithm = *jose::ParseAlgorithm(settings["algorithm"].get<std::string>());
  } else {
    config->algorithm = EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_EC ? jose::Algorithm::kES384 : jose::Algorithm::kRS384;
  }
  if (const std::string why = jose::KeyMismatch(config->algorithm, key.get()); !why.empty()) {
    throw fail("private_key_file", why);
  }
  config->key = std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);

  if (settings.contains("identifier_systems")) {
    for (const auto& [kind, system] : settings["identifier_systems"].items()) {
      config->identifier_systems[kind] = system.get<std::string>();
    }
  }
  const json match_on = settings.value("match_on", json::array({"mrn", "fhir_patient_id", "email"}));
  for (const auto& kind : match_on) config->match_on.insert(kind.get<std::string>());
  if (config->match_on.count("mrn") && !config->identifier_systems.count("mrn") &&
      settings.contains("match_on")) {
    throw fail("identifier_systems", "match_on names mrn, so identifier_systems.mrn must name the MRN's system");
  }
  config->max_patients = settings.value("max_patients", 1);

  std::set<std::string> types;
  if (settings.contains("resources")) {
    for (const auto& r : settings["resources"]) {
      ResourceRule rule;
      rule.type = r["type"].get<std::string>();
      rule.search_param = r.value("search_param", "patient");
      rule.deletable = r.value("on_delete", "retain") == "delete";
      if (rule.type == "Patient") throw fail("resources", "Patient is not a resource list entry; see delete_patient");
      if (!types.insert(rule.type).second) throw fail("resources", "resource type " + rule.type + " is listed twice");
      config->resources.push_back(std::move(rule));
    }
  } else {
    for (auto type : kDefaultResourceTypes) config->resources.push_back(ResourceRule{std::string(type), "patient", false});
  }
  config->delete_patient = settings.value("delete_patient", false);
  config->retain_basis = settings.value(
      "retain_basis",
      "protected health information held by a HIPAA covered entity, exempt from CCPA deletion (Cal. Civ. Code "
      "1798.146(a)(1))");
  const std::string everything = settings.value("everything", "auto");
  config->everything = everything == "always" ? Everything::kAlways : everything == "never" ? Everything::kNever : Everything::kAuto;
  config->page_size = settings.value("page_size", 100);
  config->max_pages = settings.value("max_pages", 50);
  const json marketing = json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v3-ActReason"},
                                       {"code", "HMARKT"},
                                       {"display", "healthcare marketing"}}});
  config->opt_out_purposes = settings.value("opt_out_purposes", marketing);
  config->limit_purposes = settings.value("limit_purposes", marketing);
  config->timeout = std::chrono::milliseconds(settings.value("timeout_ms", 30000));
  config->scope = settings.value("scope", DefaultScope(*config));

  auto shared = std::make_shared<Shared>();
  shared->config = config;
  shared->tokens = std::make_shared<TokenSource>(config);
  return std::make_unique<FhirConnector>(std::move(shared));
}

}  // namespace rightsd::connectors::fhir
