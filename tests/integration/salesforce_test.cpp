// The Salesforce connector driven directly against the simulated org (SalesforcePeer) over the real cpprestsdk
// client -- authentication, SOQL and its escaping, paging, collections deletes, corrections, opt-out and limit,
// API limits and peer failures as outcomes, what never leaves the connector -- and then through the real daemon,
// one request of each type end to end.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "connectors/connector.h"
#include "connectors/http_client.h"
#include "connectors/salesforce/salesforce.h"
#include "connectors/salesforce/soql.h"
#include "harness.h"
#include "peers/recording_server.h"
#include "peers/salesforce/salesforce_peer.h"

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using rightsd::connectors::Connector;
using rightsd::connectors::ConnectorConfigError;
using rightsd::connectors::ConnectorEnv;
using rightsd::connectors::Correction;
using rightsd::connectors::HttpClient;
using rightsd::connectors::Identity;
using rightsd::connectors::MakeCpprestHttpClient;
using rightsd::connectors::Outcome;
using rightsd::connectors::OutcomeKind;
using rightsd::connectors::TaskAction;
using rightsd::connectors::TaskInput;
using rightsd::connectors::salesforce::MakeSalesforceConnector;
using rightsd::test::SalesforcePeer;
using rightsd::test::SalesforcePeerOptions;

const std::string kEmail = "jane.doe@example.com";
const std::string kOtherEmail = "someone.else@example.com";

std::string RandomSuffix() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  return std::to_string(rng());
}

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-salesforce-" + RandomSuffix())) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }

 private:
  std::filesystem::path path_;
};

TaskInput Task(TaskAction action, std::vector<Identity> identities) {
  TaskInput input;
  input.request_id = "req-" + RandomSuffix();
  input.task_id = "task-" + RandomSuffix();
  input.system = "crm";
  input.action = action;
  input.request_type = std::string(rightsd::connectors::ToString(action));
  if (action == TaskAction::kLocate) input.request_type = "delete";
  input.identities = std::move(identities);
  return input;
}

// Every outcome is checked for what it must never hold: the task's identity values, in any case.
void ExpectNoIdentityValues(const Outcome& outcome, const TaskInput& input) {
  const std::string text = outcome.message + " " + outcome.receipt.dump() + " " + outcome.continuation.dump();
  std::string lowered_text = text;
  std::transform(lowered_text.begin(), lowered_text.end(), lowered_text.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  for (const auto& identity : input.identities) {
    std::string lowered = identity.value;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) { return std::tolower(c); });
    INFO("outcome text: " << text);
    CHECK(lowered_text.find(lowered) == std::string::npos);
  }
}

// Runs the task and waits (bounded) for its one outcome.
Outcome RunAndWait(Connector& connector, const TaskInput& input, std::chrono::seconds limit = 60s) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Outcome> outcome;
    int calls = 0;
  };
  auto state = std::make_shared<State>();
  connector.Run(input, [state](Outcome o) {
    std::lock_guard lock(state->mu);
    ++state->calls;
    state->outcome = std::move(o);
    state->cv.notify_all();
  });
  std::unique_lock lock(state->mu);
  const bool answered = state->cv.wait_for(lock, limit, [&] { return state->outcome.has_value(); });
  REQUIRE(answered);
  lock.unlock();
  std::this_thread::sleep_for(20ms);  // room for a (wrong) second call to show up
  lock.lock();
  REQUIRE(state->calls == 1);
  ExpectNoIdentityValues(*state->outcome, input);
  return *state->outcome;
}

// A simulated org, the production HTTP client and a connector configured against them.
struct Rig {
  explicit Rig(SalesforcePeerOptions options = {}, json extra = json::object()) : peer(std::move(options)) {
    peer.Start();
    dir.Write("salesforce.pem", peer.PrivateKeyPem());
    connector = Make(Settings(extra));
  }
  json Settings(const json& extra = json::object()) const {
    json settings = {{"login_url", peer.base_url()},
                     {"client_id", peer.options().consumer_key},
                     {"username", peer.options().username},
                     {"private_key_file", "salesforce.pem"},
                     {"timeout_ms", 5000}};
    settings.update(extra);
    return settings;
  }
  std::unique_ptr<Connector> Make(const json& settings, std::vector<std::string> categories = {}) {
    ConnectorEnv env;
    env.system = "crm";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = std::move(categories);
    const auto* type = rightsd::connectors::FindConnectorType("salesforce");
    REQUIRE(type != nullptr);
    rightsd::connectors::ValidateSettings(*type, "crm", settings);
    return MakeSalesforceConnector(settings, env);
  }
  std::vector<rightsd::test::RecordedCall> Api(std::string_view method, std::string_view rest = "") {
    return peer.recorder().CallsTo(method, "/services/data/v65.0" + std::string(rest));
  }

  TempDir dir;
  SalesforcePeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

// Jane: a contact with an Individual, a lead linked to the same Individual, a case on the contact and one she sent
// by email; and somebody else, who must never be touched.
struct Jane {
  std::string individual, contact, lead, case_linked, case_supplied, other_contact, other_case;
};

Jane SeedJane(SalesforcePeer& peer) {
  Jane j;
  j.individual = peer.Insert("Individual", {{"FirstName", "Jane"}, {"LastName", "Doe"}, {"BirthDate", "1985-04-12"}});
  j.contact = peer.Insert("Contact", {{"FirstName", "Jane"},
                                      {"LastName", "Doe"},
                                      {"Email", kEmail},
                                      {"Phone", "(415) 555-0100"},
                                      {"MailingCity", "San Francisco"},
                                      {"IndividualId", j.individual}});
  j.lead = peer.Insert("Lead", {{"FirstName", "Jane"},
                                {"LastName", "Doe"},
                                {"Email", "JANE.DOE@example.com"},
                                {"Company", "Doe LLC"},
                                {"IndividualId", j.individual}});
  j.case_linked = peer.Insert("Case", {{"Subject", "Billing question"}, {"Status", "Closed"}, {"ContactId", j.contact}});
  j.case_supplied = peer.Insert("Case", {{"Subject", "Password reset"}, {"Status", "New"}, {"SuppliedEmail", kEmail}});
  j.other_contact = peer.Insert("Contact", {{"FirstName", "Other"}, {"LastName", "Person"}, {"Email", kOtherEmail}});
  j.other_case = peer.Insert("Case", {{"Subject", "Someone else's case"}, {"ContactId", j.other_contact}});
  return j;
}

std::set<std::string> Subjects(const json& records, const std::string& category) {
  std::set<std::string> out;
  if (!records.contains(category)) return out;
  for (const auto& r : records[category]) {
    if (r.contains("Subject")) out.insert(r["Subject"].get<std::string>());
  }
  return out;
}

int CountCategory(const json& records, const std::string& category, const std::string& object) {
  int n = 0;
  if (!records.contains(category)) return 0;
  for (const auto& r : records[category]) n += r["object"] == object;
  return n;
}

}  // namespace

// --- text helpers -----------------------------------------------------------------------------------------------

TEST_CASE("salesforce: SOQL literals escape what Salesforce lists and refuse what it cannot take", "[salesforce]") {
  using rightsd::connectors::salesforce::SoqlLiteral;
  CHECK(SoqlLiteral("plain@example.com") == "'plain@example.com'");
  CHECK(SoqlLiteral("o'brien") == R"('o\'brien')");
  CHECK(SoqlLiteral(R"(back\slash)") == R"('back\\slash')");
  CHECK(SoqlLiteral("say \"hi\"") == R"('say \"hi\"')");
  CHECK(SoqlLiteral("a\nb\rc\td\be\ff") == R"('a\nb\rc\td\be\ff')");
  CHECK(SoqlLiteral("100% _x_") == "'100% _x_'");  // only LIKE gives % and _ a meaning; = compares them as they are
  CHECK(SoqlLiteral("Zoë Ångström") == "'Zoë Ångström'");
  CHECK_FALSE(SoqlLiteral(std::string("nul\0byte", 8)).has_value());
  CHECK_FALSE(SoqlLiteral("bell\x07").has_value());
  CHECK_FALSE(SoqlLiteral("del\x7f").has_value());
}

TEST_CASE("salesforce: helpers read Sforce-Limit-Info, ids and phone forms", "[salesforce]") {
  using namespace rightsd::connectors::salesforce;
  auto usage = ParseApiUsage("api-usage=10018/100000; api-bursts=1/750");
  REQUIRE(usage);
  CHECK(usage->used == 10018);
  CHECK(usage->max == 100000);
  CHECK(ParseApiUsage("per-app-api-usage=2/250000(appName=x); api-usage=25/5000")->used == 25);
  CHECK_FALSE(ParseApiUsage(""));
  CHECK_FALSE(ParseApiUsage("api-usage=12"));
  CHECK_FALSE(ParseApiUsage("api-usage=1/0"));
  CHECK_FALSE(ParseApiUsage("api-usage=x/100"));
  CHECK(IsSalesforceId("003Sm0000000001"));
  CHECK(IsSalesforceId("003Sm0000000001AAA"));
  CHECK_FALSE(IsSalesforceId("003Sm00000000011"));
  CHECK_FALSE(IsSalesforceId("003Sm000000'001"));
  const auto phones = PhoneVariants("+1 (415) 555-0100");
  for (const std::string form : {"+1 (415) 555-0100", "+14155550100", "4155550100", "(415) 555-0100", "415-555-0100",
                                 "14155550100"}) {
    CHECK(std::find(phones.begin(), phones.end(), form) != phones.end());
  }
  CHECK(PhoneVariants("+44 20 7946 0958") == std::vector<std::string>{"+44 20 7946 0958", "+442079460958"});
  CHECK(PhoneVariants("12345").empty());
  CHECK(UrlEncode("a b+c'd&é") == "a%20b%2Bc%27d%26%C3%A9");
}

// --- authentication ---------------------------------------------------------------------------------------------

TEST_CASE("salesforce: the JWT assertion carries iss, sub, aud and a short exp, and one token serves many tasks",
          "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  for (int i = 0; i < 3; ++i) {
    const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    CHECK(o.kind == OutcomeKind::kDone);
  }
  CHECK(rig.peer.TokenRequests() == 1);
  const auto claims = rig.peer.TokenClaims();
  REQUIRE(claims.size() == 1);
  CHECK(claims[0]["iss"] == rig.peer.options().consumer_key);
  CHECK(claims[0]["sub"] == rig.peer.options().username);
  CHECK(claims[0]["aud"] == rig.peer.base_url());
  const long long now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  CHECK(claims[0]["exp"].get<long long>() > now);
  CHECK(claims[0]["exp"].get<long long>() <= now + 180);
  const auto token_calls = rig.peer.recorder().CallsTo("POST", "/services/oauth2/token");
  REQUIRE(token_calls.size() == 1);
  CHECK(token_calls[0].body.find("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") == 0);
  for (const auto& call : rig.Api("GET")) {
    const auto auth = call.headers.find("Authorization");
    REQUIRE(auth != call.headers.end());
    CHECK(auth->second.starts_with("Bearer 00DSm"));
  }
}

TEST_CASE("salesforce: the client credentials flow sends the consumer secret from its file", "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  rig.dir.Write("secret", rig.peer.options().client_secret + "\n");
  auto connector = rig.Make({{"login_url", rig.peer.base_url()},
                             {"auth", "client_credentials"},
                             {"client_id", rig.peer.options().consumer_key},
                             {"client_secret_file", "secret"}});
  const Outcome o = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(o.kind == OutcomeKind::kDone);
  const auto token_calls = rig.peer.recorder().CallsTo("POST", "/services/oauth2/token");
  REQUIRE(token_calls.size() == 1);
  CHECK(token_calls[0].body.find("grant_type=client_credentials") != std::string::npos);

  rig.dir.Write("wrong", "not-the-secret");
  auto wrong = rig.Make({{"login_url", rig.peer.base_url()},
                         {"auth", "client_credentials"},
                         {"client_id", rig.peer.options().consumer_key},
                         {"client_secret_file", "wrong"}});
  const Outcome refused = RunAndWait(*wrong, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(refused.kind == OutcomeKind::kFailed);
  CHECK_THAT(refused.message, Catch::Contains("invalid_client"));
  CHECK(refused.message.find("not-the-secret") == std::string::npos);
}

TEST_CASE("salesforce: a refused JWT grant fails the task with Salesforce's own words", "[salesforce]") {
  SalesforcePeerOptions options;
  options.user_approved = false;
  Rig rig(options);
  SeedJane(rig.peer);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(o.kind == OutcomeKind::kFailed);
  CHECK_THAT(o.message, Catch::Contains("400 invalid_grant: user hasn't approved this consumer"));
  CHECK(rig.Api("DELETE").empty());

  // A key the app does not hold: the signature check refuses the assertion.
  SalesforcePeer stranger;
  rig.dir.Write("stranger.pem", stranger.PrivateKeyPem());
  SalesforcePeerOptions approved;
  Rig other(approved);
  other.dir.Write("stranger.pem", stranger.PrivateKeyPem());
  auto forged = other.Make(other.Settings({{"private_key_file", "stranger.pem"}}));
  const Outcome bad = RunAndWait(*forged, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(bad.kind == OutcomeKind::kFailed);
  CHECK_THAT(bad.message, Catch::Contains("invalid assertion"));
}

TEST_CASE("salesforce: a token that expires mid-request is replaced once and the task carries on", "[salesforce]") {
  Rig rig;
  for (int i = 0; i < 450; ++i) rig.peer.Insert("Contact", {{"LastName", "Many"}, {"Email", kEmail}});
  rig.peer.ExpireTokensAfterCalls(2);  // the token dies after the second batch of the contact query
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["located"]["Contact"] == 450);
  CHECK(o.receipt["token_refreshes"] == 1);
  CHECK(rig.peer.TokensIssued() == 2);
  // The refused call is made again with the new token: two further batches, one of them asked for twice.
  const auto pages = rig.Api("GET", "/query/");
  REQUIRE(pages.size() == 3);
  CHECK(pages[1].path == pages[2].path);
  CHECK(pages[1].headers.find("Authorization")->second != pages[2].headers.find("Authorization")->second);
}

TEST_CASE("salesforce: a session refused right after a new token fails the task", "[salesforce]") {
  SalesforcePeerOptions options;
  options.token_lifetime = 0s;  // every token is dead on arrival
  Rig rig(options);
  SeedJane(rig.peer);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(o.kind == OutcomeKind::kFailed);
  CHECK_THAT(o.message, Catch::Contains("401 INVALID_SESSION_ID"));
  CHECK(rig.peer.TokensIssued() == 2);
}

// --- locate and access ------------------------------------------------------------------------------------------

TEST_CASE("salesforce: access returns the mapped fields of every record found, by category", "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["located"] == json{{"Contact", 1}, {"Lead", 1}, {"Case", 2}, {"Individual", 1}});
  const json& records = o.records;
  CHECK(CountCategory(records, "identifiers", "Contact") == 1);
  CHECK(CountCategory(records, "identifiers", "Lead") == 1);
  CHECK(CountCategory(records, "identifiers", "Individual") == 1);
  CHECK(CountCategory(records, "privacy preferences", "Individual") == 1);
  CHECK(Subjects(records, "commercial information") == std::set<std::string>{"Billing question", "Password reset"});
  const std::string dump = records.dump();
  CHECK(dump.find("San Francisco") != std::string::npos);
  CHECK(dump.find(kOtherEmail) == std::string::npos);
  CHECK(dump.find("Someone else") == std::string::npos);
  CHECK(dump.find("attributes") == std::string::npos);
  // Nothing was written.
  CHECK(rig.Api("PATCH").empty());
  CHECK(rig.Api("DELETE").empty());
  CHECK(rig.Api("POST").empty());
  // The Individual was found through the people's IndividualId, the case through ContactId.
  bool individual_by_reference = false, case_by_contact = false;
  for (const auto& q : rig.peer.Queries()) {
    individual_by_reference = individual_by_reference || (q.find("FROM Individual WHERE (Id IN ('" + j.individual) != std::string::npos);
    case_by_contact = case_by_contact || q.find("ContactId IN ('" + j.contact + "')") != std::string::npos;
  }
  CHECK(individual_by_reference);
  CHECK(case_by_contact);
}

TEST_CASE("salesforce: a system with one category reports every field under it", "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  auto connector = rig.Make(rig.Settings(), {"customer records"});
  const Outcome o = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.records.size() == 1);
  CHECK(o.records["customer records"].size() == 6);  // contact, lead, 2 cases, the Individual twice
}

TEST_CASE("salesforce: phone and salesforce_id identities are matched", "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  const Outcome by_phone = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"phone", "+1 415-555-0100"}}));
  REQUIRE(by_phone.kind == OutcomeKind::kDone);
  CHECK(by_phone.receipt["located"]["Contact"] == 1);
  const Outcome by_id = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"salesforce_id", j.lead}}));
  REQUIRE(by_id.kind == OutcomeKind::kDone);
  CHECK(by_id.receipt["located"]["Lead"] == 1);
  CHECK_FALSE(by_id.receipt["located"].contains("Contact"));
  const Outcome nobody = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", "nobody@example.com"}}));
  CHECK(nobody.kind == OutcomeKind::kNotFound);
}

TEST_CASE("salesforce: a task with no identity Salesforce can match fails without a call", "[salesforce]") {
  Rig rig;
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"name", "Jane Doe"}, {"mrn", "MRN-1"},
                                                                          {"salesforce_id", "not-an-id"}}));
  CHECK(o.kind == OutcomeKind::kFailed);
  CHECK_THAT(o.message, Catch::Contains("no identity this system understands"));
  CHECK(rig.peer.recorder().Calls().empty());
}

TEST_CASE("salesforce: paging follows nextRecordsUrl over 5,000 matching records", "[salesforce]") {
  Rig rig;
  for (int i = 0; i < 5000; ++i) {
    rig.peer.Insert("Contact", {{"FirstName", "Twin"}, {"LastName", std::to_string(i)}, {"Email", kEmail}});
  }
  rig.peer.Insert("Contact", {{"LastName", "Other"}, {"Email", kOtherEmail}});
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}), 120s);
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["located"]["Contact"] == 5000);
  REQUIRE(o.records["identifiers"].size() == 5000);
  std::set<std::string> names;
  for (const auto& r : o.records["identifiers"]) names.insert(r["LastName"].get<std::string>());
  CHECK(names.size() == 5000);
  // 25 batches of 200 for the contacts, each fetched by its nextRecordsUrl after the first.
  const auto pages = rig.Api("GET", "/query/01g");
  CHECK(pages.size() == 24);
  for (const auto& p : pages) {
    CHECK(p.path.starts_with("/services/data/v65.0/query/01g"));
    CHECK(p.path.find('-') != std::string::npos);
  }
  // The 5,000 contact ids go to the case search 100 to a clause, in queries that stay short.
  std::size_t case_queries = 0;
  for (const auto& q : rig.peer.Queries()) {
    CHECK(q.size() < 4000);
    case_queries += q.find("FROM Case") != std::string::npos;
  }
  CHECK(case_queries >= 50);
}

TEST_CASE("salesforce: the query batch size is asked for with Sforce-Query-Options", "[salesforce]") {
  SalesforcePeerOptions options;
  options.batch_size = 2000;
  Rig rig(options, {{"query_batch_size", 200}});
  for (int i = 0; i < 450; ++i) rig.peer.Insert("Contact", {{"LastName", "Many"}, {"Email", kEmail}});
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["located"]["Contact"] == 450);
  CHECK(rig.Api("GET", "/query/01g").size() == 2);
  for (const auto& call : rig.Api("GET", "/query")) {
    CHECK(call.headers.find("Sforce-Query-Options")->second == "batchSize=200");
  }
}

TEST_CASE("salesforce: an email with a quote in it is matched exactly, an injection attempt matches nothing",
          "[salesforce]") {
  Rig rig;
  const std::string quoted = "o'brien@example.com";
  const std::string backslashed = "back\\slash'@example.com";
  rig.peer.Insert("Contact", {{"LastName", "O'Brien"}, {"Email", quoted}});
  rig.peer.Insert("Contact", {{"LastName", "Backslash"}, {"Email", backslashed}});
  for (int i = 0; i < 5; ++i) rig.peer.Insert("Contact", {{"LastName", "Bystander"}, {"Email", fmt::format("b{}@example.com", i)}});

  const Outcome exact = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", quoted}}));
  REQUIRE(exact.kind == OutcomeKind::kDone);
  CHECK(exact.receipt["located"] == json{{"Contact", 1}});
  CHECK(exact.records["identifiers"][0]["LastName"] == "O'Brien");
  bool escaped = false;
  for (const auto& q : rig.peer.Queries()) escaped = escaped || q.find(R"(Email IN ('o\'brien@example.com'))") != std::string::npos;
  CHECK(escaped);

  const Outcome back = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", backslashed}}));
  REQUIRE(back.kind == OutcomeKind::kDone);
  CHECK(back.receipt["located"] == json{{"Contact", 1}});
  CHECK(back.records["identifiers"][0]["LastName"] == "Backslash");

  // Unescaped, these would read "Email IN ('x') OR Email != ('')" and the like: every contact.
  for (const std::string attack : {"x') OR (Email != '", "x' OR Email != '", "\\' OR Email != '", "x\\"}) {
    const Outcome access = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", attack}}));
    CHECK(access.kind == OutcomeKind::kNotFound);
    const Outcome erase = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", attack}}));
    CHECK(erase.kind == OutcomeKind::kNotFound);
  }
  CHECK(rig.Api("DELETE").empty());
  CHECK(rig.peer.Count("Contact") == 7);
}

// --- delete -----------------------------------------------------------------------------------------------------

TEST_CASE("salesforce: delete erases the person's records, sets ShouldForget and keeps the Individual",
          "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  for (const auto& id : {j.contact, j.lead, j.case_linked, j.case_supplied}) CHECK(rig.peer.InRecycleBin(id));
  const auto individual = rig.peer.Record(j.individual);
  REQUIRE(individual);
  CHECK((*individual)["ShouldForget"] == true);
  CHECK(rig.peer.Record(j.other_contact));
  CHECK(rig.peer.Record(j.other_case));
  CHECK(o.receipt["deleted"] == json{{"Contact", 1}, {"Lead", 1}, {"Case", 2}});
  CHECK(o.receipt["individuals_should_forget"] == 1);
  // ShouldForget before any deletion, children (cases) before the people, all in one call, never all-or-none.
  const auto calls = rig.peer.recorder().Calls();
  std::vector<std::string> writes;
  for (const auto& c : calls) {
    if (c.method != "GET" && c.method != "POST") writes.push_back(c.method);
  }
  CHECK(writes == std::vector<std::string>{"PATCH", "DELETE"});
  const auto deletes = rig.Api("DELETE", "/composite/sobjects");
  REQUIRE(deletes.size() == 1);
  CHECK(deletes[0].target.find("allOrNone=false") != std::string::npos);
  CHECK(deletes[0].target.find("ids=" + j.case_supplied.substr(0, 3)) != std::string::npos);

  // Run again (the engine may, after a crash): nothing left to find, nothing deleted twice.
  const Outcome again = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(again.kind == OutcomeKind::kNotFound);
  CHECK(rig.Api("DELETE", "/composite/sobjects").size() == 1);
}

TEST_CASE("salesforce: a 250-record delete is split into two collection calls", "[salesforce]") {
  Rig rig;
  std::vector<std::string> ids;
  for (int i = 0; i < 250; ++i) ids.push_back(rig.peer.Insert("Contact", {{"LastName", "Many"}, {"Email", kEmail}}));
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["deleted"] == json{{"Contact", 250}});
  CHECK(o.receipt["delete_calls"] == 2);
  const auto deletes = rig.Api("DELETE", "/composite/sobjects");
  REQUIRE(deletes.size() == 2);
  auto count_ids = [](const rightsd::test::RecordedCall& c) {
    const auto at = c.target.find("ids=");
    const auto end = c.target.find('&', at);
    const std::string list = c.target.substr(at + 4, end - at - 4);
    return std::count(list.begin(), list.end(), ',') + 1;
  };
  CHECK(count_ids(deletes[0]) == 200);
  CHECK(count_ids(deletes[1]) == 50);
  for (const auto& id : ids) CHECK(rig.peer.InRecycleBin(id));
}

TEST_CASE("salesforce: a partially failing collection delete reports each record's result", "[salesforce]") {
  Rig rig;
  const std::string a = rig.peer.Insert("Contact", {{"LastName", "A"}, {"Email", kEmail}});
  const std::string b = rig.peer.Insert("Contact", {{"FirstName", "Jane"}, {"LastName", "Doe"}, {"Email", kEmail}});
  const std::string c = rig.peer.Insert("Contact", {{"LastName", "C"}, {"Email", kEmail}});
  const std::string d = rig.peer.Insert("Contact", {{"LastName", "D"}, {"Email", kEmail}});
  rig.peer.FailRecordDelete(b, "DELETE_FAILED",
                            "Your attempt to delete Jane Doe could not be completed because it is associated with "
                            "the following cases.: 00001234 (for " + kEmail + ")");
  rig.peer.FailRecordDelete(c, "ENTITY_IS_DELETED", "entity is deleted");  // deleted by someone else meanwhile
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kFailed);
  CHECK_THAT(o.message, Catch::Contains("deleted 2 of 4 records, 1 could not be deleted"));
  // Salesforce's words, without the person's name or email it put in them.
  CHECK_THAT(o.message, Catch::Contains("DELETE_FAILED x1: Your attempt to delete [redacted] [redacted] could not be "
                                        "completed because it is associated with the following cases.: 00001234 (for "
                                        "[redacted])"));
  CHECK(o.receipt["deleted"] == json{{"Contact", 2}});
  CHECK(o.receipt["already_gone"] == json{{"Contact", 1}});
  CHECK(o.receipt["failed"] == json{{"DELETE_FAILED", 1}});
  CHECK(rig.peer.InRecycleBin(a));
  CHECK(rig.peer.InRecycleBin(d));
  CHECK(rig.peer.Record(b));

  // A lock held by another transaction is worth another try.
  rig.peer.FailRecordDelete(b, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record");
  const Outcome locked = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(locked.kind == OutcomeKind::kRetry);

  // Once the blocker is gone, the task run again deletes only what is left.
  rig.peer.FailRecordDelete(b, "", "");
  const Outcome retried = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(retried.kind == OutcomeKind::kDone);
  CHECK(retried.receipt["deleted"] == json{{"Contact", 1}});
  CHECK(rig.peer.InRecycleBin(b));
  CHECK(rig.peer.Record(c));  // the simulated race left it alone; the real org would have it in the bin
}

TEST_CASE("salesforce: retain objects are reported, not deleted, and neither are the records they hang from",
          "[salesforce]") {
  Rig rig;
  rig.peer.DeclareType("HealthCondition", {"PatientId", "Code", "ClinicalStatus"});
  const std::string patient = rig.peer.Insert(
      "Account", {{"FirstName", "Pat"}, {"LastName", "Lee"}, {"IsPersonAccount", true}, {"PersonEmail", kEmail}});
  const std::string contact = rig.peer.Insert("Contact", {{"LastName", "Lee"}, {"Email", kEmail}});
  const std::string c1 = rig.peer.Insert("HealthCondition", {{"PatientId", patient}, {"Code", "E11.9"}});
  const std::string c2 = rig.peer.Insert("HealthCondition", {{"PatientId", patient}, {"Code", "I10"}});
  json objects = json::array({
      {{"name", "Contact"}, {"email_fields", {"Email"}}, {"fields", {{"identifiers", {"LastName", "Email"}}}}},
      {{"name", "Account"},
       {"email_fields", {"PersonEmail"}},
       {"where", "IsPersonAccount = true"},
       {"fields", {{"identifiers", {"LastName", "PersonEmail"}}}}},
      {{"name", "HealthCondition"},
       {"related", {{"PatientId", "Account.Id"}}},
       {"retain", true},
       {"fields", {{"medical information", {"Code"}}}}},
  });
  auto connector = rig.Make(rig.Settings({{"objects", objects}}));
  TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  const Outcome o = RunAndWait(*connector, task);
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["deleted"] == json{{"Contact", 1}});
  CHECK(o.receipt["retained"] == json{{"HealthCondition", 2}});
  CHECK(o.receipt["kept_for_retained"] == json{{"Account", 1}});
  CHECK(rig.peer.InRecycleBin(contact));
  CHECK(rig.peer.Record(patient));
  CHECK(rig.peer.Record(c1));
  CHECK(rig.peer.Record(c2));
  for (const auto& call : rig.Api("DELETE")) {
    CHECK(call.target.find(patient) == std::string::npos);
    CHECK(call.target.find(c1) == std::string::npos);
  }

  // With only retained records (and their parent) left, the system answers retained_exempt.
  task.retain_basis = "HIPAA/CMIA medical information";
  const Outcome again = RunAndWait(*connector, task);
  CHECK(again.kind == OutcomeKind::kRetainedExempt);
  CHECK(again.receipt["retain_basis"] == "HIPAA/CMIA medical information");
  // Access still reports them.
  const Outcome access = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(access.kind == OutcomeKind::kDone);
  CHECK(access.records["medical information"].size() == 2);
}

TEST_CASE("salesforce: a locate task reports what it found as retained_exempt", "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  TaskInput task = Task(TaskAction::kLocate, {{"email", kEmail}});
  task.retain_basis = "records of a covered entity";
  const Outcome o = RunAndWait(*rig.connector, task);
  CHECK(o.kind == OutcomeKind::kRetainedExempt);
  CHECK(o.receipt["retain_basis"] == "records of a covered entity");
  CHECK(o.receipt["located"]["Contact"] == 1);
  CHECK(rig.Api("DELETE").empty());
  CHECK(rig.Api("PATCH").empty());
}

// --- correct ----------------------------------------------------------------------------------------------------

TEST_CASE("salesforce: correct patches the mapped fields and leaves unmapped ones to a person", "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  TaskInput task = Task(TaskAction::kCorrect, {{"email", kEmail}});
  task.corrections = {{"last_name", "Doe-Smith"}, {"phone", "+1 415 555 0111"}};
  const Outcome o = RunAndWait(*rig.connector, task);
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK((*rig.peer.Record(j.contact))["LastName"] == "Doe-Smith");
  CHECK((*rig.peer.Record(j.contact))["Phone"] == "+1 415 555 0111");
  CHECK((*rig.peer.Record(j.lead))["LastName"] == "Doe-Smith");
  CHECK((*rig.peer.Record(j.individual))["LastName"] == "Doe-Smith");
  CHECK((*rig.peer.Record(j.case_supplied))["SuppliedPhone"] == "+1 415 555 0111");
  CHECK((*rig.peer.Record(j.other_contact))["LastName"] == "Person");
  CHECK(o.receipt["corrected"] == json{{"Contact", 1}, {"Lead", 1}, {"Case", 2}, {"Individual", 1}});
  CHECK(o.message.find("Doe-Smith") == std::string::npos);

  // A converted lead cannot be written: it is skipped. Salesforce's refusal of a value never repeats the value.
  const std::string converted = rig.peer.Insert(
      "Lead", {{"LastName", "Doe"}, {"Company", "Old"}, {"Email", kEmail}, {"IsConverted", true}});
  rig.peer.FailRecordWrite(j.contact, "INVALID_EMAIL_ADDRESS", "Email: invalid email address: jane@@example");
  TaskInput bad = Task(TaskAction::kCorrect, {{"email", kEmail}});
  bad.corrections = {{"email", "jane@@example"}};
  const Outcome refused = RunAndWait(*rig.connector, bad);
  CHECK(refused.kind == OutcomeKind::kFailed);
  CHECK_THAT(refused.message, Catch::Contains("400 INVALID_EMAIL_ADDRESS: Email: invalid email address: [redacted]"));
  CHECK(refused.message.find("jane@@example") == std::string::npos);
  rig.peer.FailRecordWrite(j.contact, "", "");

  TaskInput odd = Task(TaskAction::kCorrect, {{"email", kEmail}});
  odd.corrections = {{"email", "jane.new@example.com"}, {"postal_address", "1 Market St"}};
  const Outcome manual = RunAndWait(*rig.connector, odd);
  CHECK(manual.kind == OutcomeKind::kNeedsManual);
  CHECK_THAT(manual.message, Catch::Contains("postal_address"));
  CHECK(manual.message.find("1 Market St") == std::string::npos);
  CHECK((*rig.peer.Record(j.contact))["Email"] == "jane.new@example.com");
  CHECK(manual.receipt["read_only"] == json{{"Lead", 1}});
  CHECK((*rig.peer.Record(converted))["Email"] == kEmail);
}

// --- opt-out and limit ------------------------------------------------------------------------------------------

TEST_CASE("salesforce: opt-out sets the Individual's flags and writes one OptOut consent", "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  const std::string purpose = rig.peer.Insert("DataUsePurpose", {{"Name", "Sale or sharing of personal information"}});
  auto connector = rig.Make(rig.Settings({{"opt_out", {{"consent", {{{"data_use_purpose_id", purpose}}}}}}}));
  const Outcome o = RunAndWait(*connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  const json individual = *rig.peer.Record(j.individual);
  CHECK(individual["HasOptedOutProfiling"] == true);
  CHECK(individual["HasOptedOutSolicit"] == true);
  CHECK(individual["HasOptedOutProcessing"] == false);
  CHECK(individual["ShouldForget"] == false);
  auto consents = rig.peer.Records("ContactPointTypeConsent");
  REQUIRE(consents.size() == 1);
  CHECK(consents[0]["PartyId"] == j.individual);
  CHECK(consents[0]["DataUsePurposeId"] == purpose);
  CHECK(consents[0]["PrivacyConsentStatus"] == "OptOut");
  CHECK(consents[0]["ContactPointType"] == "Email");
  CHECK(consents[0]["CaptureSource"] == "rightsd");
  const std::string captured = consents[0]["CaptureDate"];
  CHECK(captured.size() == 24);
  CHECK(captured.substr(10, 1) == "T");
  CHECK(captured.ends_with(".000Z"));
  CHECK(o.receipt["consents_created"] == 1);

  // Run again: nothing is written twice.
  const Outcome again = RunAndWait(*connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(again.kind == OutcomeKind::kDone);
  CHECK(again.receipt["consents_unchanged"] == 1);
  CHECK(rig.peer.Count("ContactPointTypeConsent") == 1);
}

TEST_CASE("salesforce: an OptIn consent is turned into OptOut in place", "[salesforce]") {
  Rig rig;
  const Jane j = SeedJane(rig.peer);
  const std::string purpose = rig.peer.Insert("DataUsePurpose", {{"Name", "Marketing"}});
  const std::string consent = rig.peer.Insert("ContactPointTypeConsent", {{"Name", "Marketing email"},
                                                                          {"PartyId", j.individual},
                                                                          {"DataUsePurposeId", purpose},
                                                                          {"ContactPointType", "Email"},
                                                                          {"PrivacyConsentStatus", "OptIn"}});
  auto connector = rig.Make(rig.Settings({{"limit", {{"consent", {{{"data_use_purpose_id", purpose}}}}}}}));
  const Outcome o = RunAndWait(*connector, Task(TaskAction::kLimit, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["consents_updated"] == 1);
  CHECK(rig.peer.Count("ContactPointTypeConsent") == 1);
  CHECK((*rig.peer.Record(consent))["PrivacyConsentStatus"] == "OptOut");
  const json individual = *rig.peer.Record(j.individual);
  CHECK(individual["HasOptedOutProcessing"] == true);
  CHECK(individual["HasOptedOutProfiling"] == false);
}

TEST_CASE("salesforce: opt-out creates and links an Individual, all or nothing, when the person has none",
          "[salesforce]") {
  Rig rig;
  const std::string contact =
      rig.peer.Insert("Contact", {{"FirstName", "Sean"}, {"LastName", "O'Brien"}, {"Email", kEmail}});
  const std::string lead = rig.peer.Insert("Lead", {{"LastName", "O'Brien"}, {"Company", "X"}, {"Email", kEmail}});
  // The first try fails inside the composite call, on the lead's link: nothing may be left behind.
  rig.peer.FailRecordWrite(lead, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "Leads of this source are read-only");
  const Outcome failed = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  CHECK(failed.kind == OutcomeKind::kFailed);
  CHECK_THAT(failed.message, Catch::Contains("creating an Individual: Salesforce answered 400 "
                                             "FIELD_CUSTOM_VALIDATION_EXCEPTION: Leads of this source are read-only"));
  CHECK(rig.peer.Count("Individual") == 0);
  CHECK(rig.peer.Record(contact)->value("IndividualId", json()).is_null());

  rig.peer.FailRecordWrite(lead, "", "");
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kDone);
  CHECK(o.receipt["individuals_created"] == 1);
  CHECK(o.receipt["records_linked"] == 2);
  const auto individuals = rig.peer.Records("Individual");
  REQUIRE(individuals.size() == 1);
  CHECK(individuals[0]["LastName"] == "O'Brien");
  CHECK(individuals[0]["FirstName"] == "Sean");
  CHECK(individuals[0]["HasOptedOutSolicit"] == true);
  CHECK((*rig.peer.Record(contact))["IndividualId"] == individuals[0]["Id"]);
  CHECK((*rig.peer.Record(lead))["IndividualId"] == individuals[0]["Id"]);
  const auto composite = rig.Api("POST", "/composite");
  REQUIRE(composite.size() == 2);
  CHECK(json::parse(composite[1].body)["allOrNone"] == true);

  // Again: the Individual is found through the links, none is created.
  const Outcome again = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(again.kind == OutcomeKind::kDone);
  CHECK(again.receipt["individuals_created"] == 0);
  CHECK(rig.peer.Count("Individual") == 1);

  // A converted lead cannot carry the link: the composite is made again without it.
  Rig converted;
  const std::string person = converted.peer.Insert("Contact", {{"LastName", "Solo"}, {"Email", kEmail}});
  converted.peer.Insert("Lead", {{"LastName", "Solo"}, {"Company", "X"}, {"Email", kEmail}, {"IsConverted", true}});
  const Outcome skipped = RunAndWait(*converted.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(skipped.kind == OutcomeKind::kDone);
  CHECK(skipped.receipt["read_only"] == json{{"Lead", 1}});
  CHECK(skipped.receipt["records_linked"] == 1);
  CHECK(converted.peer.Count("Individual") == 1);
  CHECK((*converted.peer.Record(person))["IndividualId"] == converted.peer.Records("Individual")[0]["Id"]);
  CHECK(converted.Api("POST", "/composite").size() == 2);

  // Without create_individual a person must do it.
  Rig manual;
  manual.peer.Insert("Contact", {{"LastName", "Solo"}, {"Email", kEmail}});
  auto connector = manual.Make(manual.Settings({{"create_individual", false}}));
  CHECK(RunAndWait(*connector, Task(TaskAction::kOptOut, {{"email", kEmail}})).kind == OutcomeKind::kNeedsManual);
  CHECK(manual.peer.Count("Individual") == 0);
}

// --- limits and failures ----------------------------------------------------------------------------------------

TEST_CASE("salesforce: the allowance reserve holds the connector back", "[salesforce]") {
  SalesforcePeerOptions options;
  options.api_used = 94990;
  options.daily_limit = 100000;
  Rig rig(options, {{"api_reserve_percent", 10}, {"reserve_wait_seconds", 2}});
  SeedJane(rig.peer);
  // The first call learns that only 5,009 calls are left of 100,000: within the 10% reserve, so it stops there.
  const Outcome held = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(held.kind == OutcomeKind::kRetry);
  CHECK_THAT(held.message, Catch::Contains("down to its reserve (94991 of 100000 calls used, 10000 kept"));
  REQUIRE(held.retry_after);
  CHECK(*held.retry_after > 1000ms);
  CHECK(*held.retry_after <= 2000ms);
  CHECK(rig.peer.ApiUsed() == 94991);
  CHECK(held.receipt["api_usage"] == json{{"used", 94991}, {"max", 100000}});

  // Other tasks of the system wait too, without a call.
  const Outcome also_held = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(also_held.kind == OutcomeKind::kRetry);
  CHECK(rig.peer.ApiUsed() == 94991);

  // The 24-hour window moves on; after the wait one call reads the usage again and the work goes ahead.
  rig.peer.SetApiUsage(1200, 100000);
  std::this_thread::sleep_for(2100ms);
  const Outcome done = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(done.kind == OutcomeKind::kDone);
  CHECK(rig.peer.Count("Contact") == 1);
}

TEST_CASE("salesforce: 403 REQUEST_LIMIT_EXCEEDED is a retry that holds the system's other tasks", "[salesforce]") {
  Rig rig({}, {{"limit_exceeded_wait_seconds", 1}});
  SeedJane(rig.peer);
  rig.peer.FailNext(1, 403);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(o.kind == OutcomeKind::kRetry);
  CHECK_THAT(o.message, Catch::Contains("403 REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded."));
  CHECK(o.retry_after == std::chrono::milliseconds(1000));
  const std::size_t calls = rig.peer.recorder().Calls().size();
  const Outcome held = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(held.kind == OutcomeKind::kRetry);
  CHECK(rig.peer.recorder().Calls().size() == calls);
  std::this_thread::sleep_for(1100ms);
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kDone);
}

TEST_CASE("salesforce: 503, 429 and 500 are retries after Retry-After when one is sent", "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  rig.peer.FailNext(1, 503, 7);
  const Outcome unavailable = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(unavailable.kind == OutcomeKind::kRetry);
  CHECK(unavailable.retry_after == std::chrono::milliseconds(7000));
  CHECK_THAT(unavailable.message, Catch::Contains("503 SERVER_UNAVAILABLE"));
  rig.peer.FailNext(1, 429, 2);
  const Outcome throttled = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(throttled.kind == OutcomeKind::kRetry);
  CHECK(throttled.retry_after == std::chrono::milliseconds(2000));
  // Mid-task: the delete call itself fails; the records stay and the retry finds them again.
  rig.peer.FailNext(1, 500, -1, "/services/data/v65.0/composite");
  const Outcome broken = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(broken.kind == OutcomeKind::kRetry);
  CHECK_FALSE(broken.retry_after);
  CHECK(rig.peer.Count("Case") == 3);
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}})).kind == OutcomeKind::kDone);
  CHECK(rig.peer.Count("Case") == 1);
}

TEST_CASE("salesforce: a slow answer beyond timeout_ms is a retry", "[salesforce]") {
  Rig rig({}, {{"timeout_ms", 300}});
  SeedJane(rig.peer);
  rig.peer.SetDelay(1000ms);
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(o.kind == OutcomeKind::kRetry);
  CHECK_THAT(o.message, Catch::Contains("did not answer within 300 ms"));
  rig.peer.SetDelay(0ms);
}

TEST_CASE("salesforce: other 4xx fail with Salesforce's message and without the identity it echoed",
          "[salesforce]") {
  Rig rig;
  SeedJane(rig.peer);
  rig.peer.HideField("Account", "IsPersonAccount");  // an org without person accounts
  const Outcome o = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}, {"phone", "4155550100"}}));
  REQUIRE(o.kind == OutcomeKind::kFailed);
  CHECK_THAT(o.message, Catch::Contains("searching Account: Salesforce answered 400 INVALID_FIELD: No such column "
                                        "'IsPersonAccount' on entity 'Account'"));
  CHECK(o.message.find("SELECT") == std::string::npos);
  CHECK(o.message.find("555") == std::string::npos);
}

// --- settings ---------------------------------------------------------------------------------------------------

TEST_CASE("salesforce: settings problems stop start-up naming the setting", "[salesforce]") {
  Rig rig;
  auto message_of = [&](const json& settings) -> std::string {
    try {
      rig.Make(settings);
    } catch (const ConnectorConfigError& e) {
      return e.what();
    }
    return "";
  };
  json no_user = rig.Settings();
  no_user.erase("username");
  CHECK_THAT(message_of(no_user), Catch::Contains("settings/username"));
  CHECK_THAT(message_of(rig.Settings({{"private_key_file", "missing.pem"}})), Catch::Contains("private_key_file"));
  rig.dir.Write("garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
  CHECK_THAT(message_of(rig.Settings({{"private_key_file", "garbage.pem"}})), Catch::Contains("private_key_file"));
  rig.dir.Write("public.pem", rig.peer.PublicKeyPem());
  CHECK_THAT(message_of(rig.Settings({{"private_key_file", "public.pem"}})), Catch::Contains("private_key_file"));
  rig.dir.Write("secret", "s3cret");
  CHECK_THAT(message_of({{"login_url", "https://login.salesforce.com"},
                         {"auth", "client_credentials"},
                         {"client_id", "x"},
                         {"client_secret_file", "secret"}}),
             Catch::Contains("My Domain"));
  CHECK_THAT(message_of(rig.Settings({{"objects", json::array({{{"name", "Case"}, {"related", {{"ContactId", "Contact.Id"}}}},
                                                               {{"name", "Contact"}}})}})),
             Catch::Contains("settings/objects/0/related/ContactId"));
  CHECK_THAT(message_of(rig.Settings({{"objects", json::array({{{"name", "Contact; DROP"}}})}})),
             Catch::Contains("objects/0/name"));
  CHECK_THAT(message_of(rig.Settings({{"unknown_setting", 1}})), Catch::Contains("unknown_setting"));
  CHECK(message_of(rig.Settings()).empty());
}

TEST_CASE("salesforce: the settings schema is closed and names every setting the connector reads", "[salesforce]") {
  std::ifstream in(std::string(RIGHTSD_SOURCE_DIR) + "/schemas/connectors/salesforce.json");
  REQUIRE(in);
  json schema = json::parse(in);
  CHECK(schema["$schema"] == "http://json-schema.org/draft-07/schema#");
  CHECK(schema["additionalProperties"] == false);
  CHECK(schema["required"] == json::array({"login_url", "client_id"}));
  std::set<std::string> properties;
  for (const auto& [name, _] : schema["properties"].items()) properties.insert(name);
  CHECK(properties == std::set<std::string>{"login_url", "auth", "client_id", "username", "private_key_file",
                                            "client_secret_file", "audience", "api_version", "timeout_ms",
                                            "query_batch_size", "delete_batch_size", "api_reserve_percent",
                                            "reserve_wait_seconds", "limit_exceeded_wait_seconds",
                                            "create_individual", "capture_source", "opt_out", "limit", "objects"});
  CHECK(schema["properties"]["delete_batch_size"]["maximum"] == 200);
  CHECK(schema["properties"]["api_version"]["default"] == "65.0");
}

// --- end to end through the daemon ------------------------------------------------------------------------------

namespace {

using rightsd::test::Daemon;
using rightsd::test::DaemonEnv;
using rightsd::test::Eventually;

struct Org {
  Org() {
    peer.Start();
    jane = SeedJane(peer);
    purpose = peer.Insert("DataUsePurpose", {{"Name", "Sale or sharing of personal information"}});
  }
  std::string Systems() const {
    return fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "crm"
connector = "salesforce"
categories = ["identifiers", "commercial information", "privacy preferences"]
max_attempts = 5
[systems.settings]
login_url = "{}"
client_id = "{}"
username = "{}"
private_key_file = "salesforce.pem"
timeout_ms = 5000
[systems.settings.opt_out]
individual_flags = ["HasOptedOutProfiling", "HasOptedOutSolicit"]
[[systems.settings.opt_out.consent]]
data_use_purpose_id = "{}"
)toml",
                       peer.base_url(), peer.options().consumer_key, peer.options().username, purpose);
  }
  SalesforcePeer peer;
  Jane jane;
  std::string purpose;
};

struct Running {
  explicit Running(Org& org) {
    org.peer.WritePrivateKeyPem(env.dir() / "salesforce.pem");
    env.WriteConfig(env.db().url(), org.Systems());
    daemon = std::make_unique<Daemon>(env);
    REQUIRE(daemon->WaitReady());
  }
  std::string Submit(const std::string& type, const std::string& extra = "", bool verify = true) {
    const auto created =
        daemon->Call("POST", "/v1/requests", env.token("submitter"),
                     R"({"type":")" + type + R"(","subject":{"identities":[{"kind":"email","value":")" + kEmail +
                         R"("}]})" + extra + "}");
    INFO(created.body);
    REQUIRE(created.status == 201);
    const std::string id = created.json()["id"];
    if (verify) {
      REQUIRE(daemon->Call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
                           R"({"method":"account_login","level":"reasonably_high"})")
                  .status == 200);
    }
    return id;
  }
  json WaitCompleted(const std::string& id) {
    json last;
    const bool ok = Eventually([&] {
      last = daemon->Call("GET", "/v1/requests/" + id, env.token("viewer")).json();
      return last["status"] == "completed";
    }, 60);
    INFO(last.dump(2));
    REQUIRE(ok);
    REQUIRE(last["tasks"].size() == 1);
    return last["tasks"][0];
  }
  void ExpectCleanLog() const {
    const std::string log = daemon->Log();
    CHECK(log.find(kEmail) == std::string::npos);
    CHECK(log.find("00DSm0000000001!") == std::string::npos);  // no access token
    CHECK(log.find("PRIVATE KEY") == std::string::npos);
  }
  DaemonEnv env{true};
  std::unique_ptr<Daemon> daemon;
};

}  // namespace

TEST_CASE("salesforce: an access request end to end returns the person's records in the package",
          "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  const std::string id = run.Submit("access");
  const json task = run.WaitCompleted(id);
  CHECK(task["state"] == "done");
  CHECK(task["action"] == "access");
  const auto package = run.daemon->Call("GET", "/v1/requests/" + id + "/package", run.env.token("submitter"));
  INFO(package.body);
  REQUIRE(package.status == 200);
  CHECK(package.body.find("San Francisco") != std::string::npos);
  CHECK(package.body.find("Billing question") != std::string::npos);
  CHECK(package.body.find("Someone else") == std::string::npos);
  CHECK(package.json()["systems"].contains("crm"));
  run.ExpectCleanLog();
}

TEST_CASE("salesforce: a delete request end to end erases the person and flags the Individual",
          "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  const json task = run.WaitCompleted(run.Submit("delete"));
  CHECK(task["state"] == "done");
  CHECK(org.peer.InRecycleBin(org.jane.contact));
  CHECK(org.peer.InRecycleBin(org.jane.lead));
  CHECK(org.peer.InRecycleBin(org.jane.case_linked));
  CHECK((*org.peer.Record(org.jane.individual))["ShouldForget"] == true);
  CHECK(org.peer.Record(org.jane.other_contact));
  run.ExpectCleanLog();
}

TEST_CASE("salesforce: a correct request end to end patches the records", "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  const json task =
      run.WaitCompleted(run.Submit("correct", R"(,"corrections":[{"field":"last_name","value":"Doe-Smith"}])"));
  CHECK(task["state"] == "done");
  CHECK((*org.peer.Record(org.jane.contact))["LastName"] == "Doe-Smith");
  CHECK((*org.peer.Record(org.jane.lead))["LastName"] == "Doe-Smith");
  CHECK((*org.peer.Record(org.jane.other_contact))["LastName"] == "Person");
  run.ExpectCleanLog();
}

TEST_CASE("salesforce: an opt-out request end to end sets the flags and the consent",
          "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  const json task = run.WaitCompleted(run.Submit("opt_out", "", false));
  CHECK(task["state"] == "done");
  const json individual = *org.peer.Record(org.jane.individual);
  CHECK(individual["HasOptedOutProfiling"] == true);
  CHECK(individual["HasOptedOutSolicit"] == true);
  const auto consents = org.peer.Records("ContactPointTypeConsent");
  REQUIRE(consents.size() == 1);
  CHECK(consents[0]["PrivacyConsentStatus"] == "OptOut");
  CHECK(consents[0]["DataUsePurposeId"] == org.purpose);
  run.ExpectCleanLog();
}

TEST_CASE("salesforce: a limit request end to end sets HasOptedOutProcessing", "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  const json task = run.WaitCompleted(run.Submit("limit", "", false));
  CHECK(task["state"] == "done");
  const json individual = *org.peer.Record(org.jane.individual);
  CHECK(individual["HasOptedOutProcessing"] == true);
  CHECK(individual["HasOptedOutSolicit"] == false);
  CHECK(org.peer.Count("ContactPointTypeConsent") == 0);
  run.ExpectCleanLog();
}

TEST_CASE("salesforce: a 503 mid-request is retried by the engine and the delete completes",
          "[salesforce][engine][integration]") {
  Org org;
  Running run(org);
  org.peer.FailNext(2, 503, 1);
  const json task = run.WaitCompleted(run.Submit("delete"));
  CHECK(task["state"] == "done");
  CHECK(task["attempts"] == 3);
  CHECK(org.peer.InRecycleBin(org.jane.contact));
}

TEST_CASE("salesforce: the configuration examples of docs/connectors/salesforce.md pass check-config",
          "[salesforce][engine][integration]") {
  std::ifstream in(std::string(RIGHTSD_SOURCE_DIR) + "/docs/connectors/salesforce.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The first example is a whole system; the second adds its objects to it.
  std::string toml;
  for (std::size_t at = doc.find("```toml\n"); at != std::string::npos; at = doc.find("```toml\n", at)) {
    const std::size_t start = at + 8;
    const std::size_t end = doc.find("```", start);
    REQUIRE(end != std::string::npos);
    toml += doc.substr(start, end - start);
    at = end + 3;
  }
  REQUIRE(toml.find("[[systems.settings.objects]]") != std::string::npos);
  DaemonEnv env(false);
  SalesforcePeer peer;
  peer.WritePrivateKeyPem(env.dir() / "salesforce.key");
  env.WriteConfig(env.db().url(), toml);
  {
    // The org's hosts, as the doc tells operators to list them in [outbound] (the harness lists loopback only).
    std::ifstream config_in(env.config());
    std::string config((std::istreambuf_iterator<char>(config_in)), std::istreambuf_iterator<char>());
    const std::string loopback = R"(allowed_hosts = ["http://127.0.0.1:*"])";
    REQUIRE(config.find(loopback) != std::string::npos);
    config.replace(config.find(loopback), loopback.size(),
                   R"(allowed_hosts = ["login.salesforce.com", "test.salesforce.com", "*.my.salesforce.com"])");
    std::ofstream(env.config(), std::ios::trunc) << config;
  }
  const auto r = env.Cli({"check-config", "--config", env.config().string()});
  INFO(r.err);
  CHECK(r.exit_code == 0);
}

