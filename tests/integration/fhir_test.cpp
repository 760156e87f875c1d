// The FHIR connector against a real FHIR R4 server: @medplum/fhir-router over its in-memory repository
// (tests/peers/fhir/server.js), behind a SMART Backend Services token endpoint and a paging shim. The router has no
// $everything, so every access here goes through the connector's per-type search fallback (the test names say so).
// First the connector driven directly over the production cpprestsdk client, then the daemon end to end.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "connectors/connector.h"
#include "connectors/fhir/fhir.h"
#include "connectors/http_client.h"
#include "harness.h"
#include "peers/fhir/fhir_peer.h"

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
using rightsd::connectors::fhir::MakeFhirConnector;
using rightsd::test::Daemon;
using rightsd::test::DaemonEnv;
using rightsd::test::Eventually;
using rightsd::test::FhirPeer;
using rightsd::test::FhirPeerOptions;

const std::string kMrnSystem = "urn:oid:2.16.840.1.113883.3.1234.1";
const std::string kMrn = "MRN-7731";
const std::string kEmail = "ana.reyes@example.com";
const std::string kPhone = "(415) 555-0148";
const std::string kFamily = "Reyes";

std::string NewId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  std::uniform_int_distribution<int> hex(0, 15);
  std::string out;
  for (int i = 0; i < 32; ++i) out.push_back("0123456789abcdef"[hex(rng)]);
  return out.substr(0, 8) + "-" + out.substr(8, 4) + "-4" + out.substr(13, 3) + "-8" + out.substr(17, 3) + "-" +
         out.substr(20);
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

TaskInput Task(TaskAction action, std::vector<Identity> identities, std::vector<Correction> corrections = {}) {
  TaskInput input;
  input.request_id = NewId();
  input.task_id = NewId();
  input.system = "ehr";
  input.action = action;
  input.request_type = std::string(rightsd::connectors::ToString(action));
  input.identities = std::move(identities);
  input.corrections = std::move(corrections);
  return input;
}

// Runs the task and waits (bounded) for its one outcome; no identity or correction value may be in what the
// outcome says (messages and receipts reach logs and staff; records are sealed).
Outcome RunAndWait(Connector& connector, const TaskInput& input, std::chrono::seconds limit = 30s) {
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
  REQUIRE(state->cv.wait_for(lock, limit, [&] { return state->outcome.has_value(); }));
  lock.unlock();
  std::this_thread::sleep_for(20ms);  // room for a (wrong) second call to show up
  lock.lock();
  REQUIRE(state->calls == 1);
  const std::string said = Lower(state->outcome->message + " " + state->outcome->receipt.dump());
  INFO("outcome: " << said);
  for (const auto& i : input.identities) CHECK(said.find(Lower(i.value)) == std::string::npos);
  for (const auto& c : input.corrections) CHECK(said.find(Lower(c.value)) == std::string::npos);
  UNSCOPED_INFO("outcome " << rightsd::connectors::ToString(state->outcome->kind) << ": " << state->outcome->message
                           << " " << state->outcome->receipt.dump());
  return *state->outcome;
}

// The patient of these tests with `observations` Observations, two Encounters, a Condition and `communications`
// marketing Communications; a second patient with an Observation of her own.
struct Seeded {
  std::string patient;
  std::string other;
};

json Entry(const std::string& full_url, json resource) {
  const std::string type = resource["resourceType"];
  return {{"fullUrl", full_url}, {"resource", std::move(resource)}, {"request", {{"method", "POST"}, {"url", type}}}};
}

std::string IdFromLocation(const json& entry) {
  const std::string location = entry.at("response").at("location");  // Type/id/_history/v
  const auto first = location.find('/');
  return location.substr(first + 1, location.find('/', first + 1) - first - 1);
}

Seeded Seed(FhirPeer& peer, int observations = 3, int communications = 2, const std::string& email = kEmail) {
  const std::string ana = "urn:uuid:" + NewId();
  const std::string sam = "urn:uuid:" + NewId();
  json entries = json::array();
  entries.push_back(Entry(ana, {{"resourceType", "Patient"},
                                {"identifier", json::array({{{"system", kMrnSystem}, {"value", kMrn}}})},
                                {"name", json::array({{{"use", "official"}, {"family", kFamily}, {"given", {"Ana"}}}})},
                                {"telecom", json::array({{{"system", "email"}, {"value", email}},
                                                         {{"system", "phone"}, {"value", kPhone}}})},
                                {"birthDate", "1979-06-02"},
                                {"address", json::array({{{"line", {"12 Mission St"}}, {"city", "San Francisco"}}})}}));
  entries.push_back(Entry(sam, {{"resourceType", "Patient"},
                                {"name", json::array({{{"family", "Roe"}, {"given", {"Sam"}}}})},
                                {"telecom", json::array({{{"system", "email"}, {"value", "sam.roe@example.com"}}})}}));
  for (int i = 0; i < 2; ++i) {
    entries.push_back(Entry("urn:uuid:" + NewId(), {{"resourceType", "Encounter"},
                                                    {"status", "finished"},
                                                    {"class", {{"code", "AMB"}}},
                                                    {"subject", {{"reference", ana}}}}));
  }
  for (int i = 0; i < observations; ++i) {
    entries.push_back(Entry("urn:uuid:" + NewId(), {{"resourceType", "Observation"},
                                                    {"status", "final"},
                                                    {"code", {{"text", fmt::format("heart rate {}", i)}}},
                                                    {"subject", {{"reference", ana}}},
                                                    {"valueQuantity", {{"value", 60 + i % 40}, {"unit", "/min"}}}}));
  }
  entries.push_back(Entry("urn:uuid:" + NewId(), {{"resourceType", "Condition"},
                                                  {"code", {{"text", "seasonal allergic rhinitis"}}},
                                                  {"subject", {{"reference", ana}}}}));
  for (int i = 0; i < communications; ++i) {
    entries.push_back(Entry("urn:uuid:" + NewId(), {{"resourceType", "Communication"},
                                                    {"status", "completed"},
                                                    {"category", json::array({{{"text", "marketing"}}})},
                                                    {"subject", {{"reference", ana}}},
                                                    {"payload", json::array({{{"contentString", "Spring newsletter"}}})}}));
  }
  entries.push_back(Entry("urn:uuid:" + NewId(), {{"resourceType", "Observation"},
                                                  {"status", "final"},
                                                  {"code", {{"text", "Sam's weight"}}},
                                                  {"subject", {{"reference", sam}}}}));
  const json answer = peer.Seed({{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", entries}});
  return {IdFromLocation(answer.at("entry").at(0)), IdFromLocation(answer.at("entry").at(1))};
}

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-fhir-" + NewId())) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A FHIR server, the production HTTP client and a connector configured against them: Communications (marketing,
// outside the medical record) are deletable, everything clinical is retained.
struct Rig {
  explicit Rig(FhirPeerOptions options = {}) : peer(std::move(options)) {
    peer.Start();
    peer.WritePrivateKeyPem(dir.path() / "ehr.pem");
    connector = Make(Settings());
  }
  json Settings(const json& extra = json::object()) const {
    json settings = {{"base_url", peer.base_url()},
                     {"client_id", peer.options().client_id},
                     {"key_id", peer.options().kid},
                     {"private_key_file", "ehr.pem"},
                     {"identifier_systems", {{"mrn", kMrnSystem}}},
                     {"match_on", {"mrn", "fhir_patient_id", "email"}},
                     {"resources", json::array({{{"type", "Encounter"}},
                                                {{"type", "Observation"}},
                                                {{"type", "Condition"}},
                                                {{"type", "Communication"}, {"search_param", "subject"},
                                                 {"on_delete", "delete"}},
                                                {{"type", "Consent"}}})},
                     {"timeout_ms", 10000}};
    settings.update(extra);
    return settings;
  }
  std::unique_ptr<Connector> Make(const json& settings) {
    ConnectorEnv env;
    env.system = "ehr";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = {"medical information", "identifiers"};
    return MakeFhirConnector(settings, env);
  }
  std::vector<json> Searches(const std::string& type) { return peer.CallsTo("GET", "/fhir/R4/" + type); }

  TempDir dir;
  FhirPeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

json DecodeSegment(const std::string& jwt, int index) {
  std::size_t start = 0;
  for (int i = 0; i < index; ++i) start = jwt.find('.', start) + 1;
  std::string segment = jwt.substr(start, jwt.find('.', start) - start);
  std::replace(segment.begin(), segment.end(), '-', '+');
  std::replace(segment.begin(), segment.end(), '_', '/');
  while (segment.size() % 4) segment.push_back('=');
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : segment) {
    if (c == '=') break;
    buffer = (buffer << 6) | static_cast<unsigned>(kAlphabet.find(c));
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return json::parse(out);
}

std::string FormValue(const std::string& body, const std::string& name) {
  const std::string key = name + "=";
  std::size_t pos = body.find(key);
  while (pos != std::string::npos && pos != 0 && body[pos - 1] != '&') pos = body.find(key, pos + 1);
  if (pos == std::string::npos) return "";
  const std::size_t end = body.find('&', pos);
  return body.substr(pos + key.size(), end == std::string::npos ? std::string::npos : end - pos - key.size());
}

long long Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

// --- SMART Backend Services -------------------------------------------------------------------------------------

TEST_CASE("fhir: SMART backend auth discovers the token endpoint, signs an RS384 assertion and reuses the token",
          "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}})).kind == OutcomeKind::kDone);
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kDone);
  CHECK(rig.peer.CallsTo("GET", "/fhir/R4/.well-known/smart-configuration").size() == 1);
  const auto tokens = rig.peer.CallsTo("POST", "/auth/token");
  REQUIRE(tokens.size() == 1);  // cached for the second task
  CHECK(tokens[0]["status"] == 200);
  const std::string body = tokens[0]["body"];
  CHECK(FormValue(body, "grant_type") == "client_credentials");
  CHECK(FormValue(body, "client_assertion_type") == "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer");
  CHECK(FormValue(body, "scope").find("system%2FPatient.rs") != std::string::npos);
  CHECK(FormValue(body, "scope").find("system%2FCommunication.d") != std::string::npos);
  CHECK(FormValue(body, "scope").find("system%2FObservation.d") == std::string::npos);  // retained: never deleted
  const std::string assertion = FormValue(body, "client_assertion");
  const json header = DecodeSegment(assertion, 0);
  const json claims = DecodeSegment(assertion, 1);
  CHECK(header["alg"] == "RS384");
  CHECK(header["typ"] == "JWT");
  CHECK(header["kid"] == rig.peer.options().kid);
  CHECK(claims["iss"] == rig.peer.options().client_id);
  CHECK(claims["sub"] == rig.peer.options().client_id);
  CHECK(claims["aud"] == rig.peer.token_url());
  CHECK(claims["exp"].get<long long>() > Now());
  CHECK(claims["exp"].get<long long>() <= Now() + 300);
  CHECK(claims["jti"].get<std::string>().size() >= 32);
  // Every FHIR call carried the token the peer issued.
  for (const auto& call : rig.peer.CallsTo("GET", "/fhir/R4/Patient")) {
    CHECK(call["headers"]["authorization"] == "Bearer <redacted>");
  }
  (void)seeded;
}

TEST_CASE("fhir: an EC P-384 key signs ES384 assertions the server verifies", "[fhir]") {
  FhirPeerOptions options;
  options.algorithm = "ES384";
  Rig rig(options);
  Seed(rig.peer);
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"mrn", kMrn}})).kind == OutcomeKind::kRetainedExempt);
  const auto tokens = rig.peer.CallsTo("POST", "/auth/token");
  REQUIRE(tokens.size() == 1);
  CHECK(tokens[0]["status"] == 200);
  CHECK(DecodeSegment(FormValue(tokens[0]["body"], "client_assertion"), 0)["alg"] == "ES384");
}

TEST_CASE("fhir: an expired token is replaced once, with a fresh jti", "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}})).kind == OutcomeKind::kDone);
  rig.peer.ExpireTokens();
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}})).kind == OutcomeKind::kDone);
  const auto tokens = rig.peer.CallsTo("POST", "/auth/token");
  REQUIRE(tokens.size() == 2);
  CHECK(tokens[1]["status"] == 200);  // a replayed jti would have been refused
  CHECK(rig.peer.CallsTo("", "/fhir/R4/Patient").front()["status"] == 200);
}

TEST_CASE("fhir: a client the EHR refuses fails the task asking to check the registration", "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  auto wrong_kid = rig.Make(rig.Settings({{"key_id", "not-the-registered-key"}}));
  const Outcome out = RunAndWait(*wrong_kid, Task(TaskAction::kAccess, {{"mrn", kMrn}}));
  CHECK(out.kind == OutcomeKind::kFailed);
  CHECK(out.message.find("invalid_client") != std::string::npos);
  CHECK(out.message.find("client registration") != std::string::npos);
  CHECK(rig.peer.CallsTo("GET", "/fhir/R4/Patient").empty());
}

// --- finding the patient ----------------------------------------------------------------------------------------

TEST_CASE("fhir: the patient is found by MRN with its identifier system, by email and by FHIR id", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  SECTION("mrn") {
    const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"mrn", kMrn}}));
    CHECK(out.kind == OutcomeKind::kRetainedExempt);
    const auto searches = rig.Searches("Patient");
    REQUIRE(searches.size() == 1);
    CHECK(searches[0]["query"].get<std::string>().find("identifier=urn%3Aoid%3A2.16.840.1.113883.3.1234.1%7CMRN-7731") !=
          std::string::npos);
  }
  SECTION("email, given in capitals") {
    const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"email", "Ana.Reyes@Example.com"}}));
    CHECK(out.kind == OutcomeKind::kRetainedExempt);
    CHECK(out.receipt["patients"] == 1);
  }
  SECTION("fhir_patient_id") {
    const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"fhir_patient_id", seeded.patient}}));
    CHECK(out.kind == OutcomeKind::kRetainedExempt);
    CHECK(rig.peer.CallsTo("GET", "/fhir/R4/Patient/" + seeded.patient).size() == 1);
  }
  SECTION("nobody") {
    CHECK(RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"mrn", "MRN-0000"}})).kind == OutcomeKind::kNotFound);
  }
  SECTION("an MRN with a search-syntax character is escaped, not a second value") {
    CHECK(RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"mrn", "MRN-7731,MRN-1"}})).kind ==
          OutcomeKind::kNotFound);
  }
}

TEST_CASE("fhir: two patients sharing an email need a person, and no searchable identity needs one too", "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  Seed(rig.peer, 1, 0, kEmail);  // a family member with the same address
  Outcome shared = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(shared.kind == OutcomeKind::kNeedsManual);
  CHECK(shared.message.find("2 patients match") != std::string::npos);
  CHECK(rig.peer.CallsTo("DELETE", "/fhir/R4/").empty());
  Outcome unusable = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"device_id", "d-1"}, {"phone", kPhone}}));
  CHECK(unusable.kind == OutcomeKind::kNeedsManual);  // phone is not in match_on
  CHECK(rig.peer.Calls().empty() == false);
}

// --- access -----------------------------------------------------------------------------------------------------

TEST_CASE("fhir: access without $everything (the router has none) searches per resource type, paging over 300 "
          "Observations",
          "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer, 300, 2);
  auto small_pages = rig.Make(rig.Settings({{"page_size", 20}}));
  const Outcome out = RunAndWait(*small_pages, Task(TaskAction::kAccess, {{"mrn", kMrn}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["via"] == "search per resource type");
  CHECK(out.records["Patient"].size() == 1);
  CHECK(out.records["Patient"][0]["id"] == seeded.patient);
  CHECK(out.records["Observation"].size() == 300);
  CHECK(out.records["Encounter"].size() == 2);
  CHECK(out.records["Condition"].size() == 1);
  CHECK(out.records["Communication"].size() == 2);
  for (const auto& o : out.records["Observation"]) {
    CHECK(o["subject"]["reference"] == "Patient/" + seeded.patient);  // nothing of Sam's
  }
  // 300 at 20 a page: 15 pages, the first asked for and 14 followed through next links.
  CHECK(rig.Searches("Observation").size() == 15);
  // The first try of $everything answered 404; the connector remembers and does not ask again.
  const auto everything = rig.peer.CallsTo("GET", "/fhir/R4/Patient/" + seeded.patient + "/$everything");
  CHECK(everything.size() == 1);
  REQUIRE(RunAndWait(*small_pages, Task(TaskAction::kAccess, {{"mrn", kMrn}})).kind == OutcomeKind::kDone);
  CHECK(rig.peer.CallsTo("GET", "/fhir/R4/Patient/" + seeded.patient + "/$everything").size() == 1);
}

TEST_CASE("fhir: a page limit stops an endless search for a person instead of looping", "[fhir]") {
  Rig rig;
  Seed(rig.peer, 60, 0);
  auto bounded = rig.Make(rig.Settings({{"page_size", 10}, {"max_pages", 3}, {"everything", "never"}}));
  const Outcome out = RunAndWait(*bounded, Task(TaskAction::kAccess, {{"mrn", kMrn}}));
  CHECK(out.kind == OutcomeKind::kFailed);
  CHECK(out.message.find("more than 3 pages") != std::string::npos);
  CHECK(rig.Searches("Observation").size() == 3);
}

// --- delete -----------------------------------------------------------------------------------------------------

TEST_CASE("fhir: delete keeps clinical data with the basis in the receipt and deletes non-clinical Communications",
          "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer, 3, 2);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"mrn", kMrn}}));
  REQUIRE(out.kind == OutcomeKind::kRetainedExempt);
  INFO(out.receipt.dump(2));
  CHECK(out.receipt["deleted"] == json{{"Communication", 2}});
  CHECK(out.receipt["retained_exempt"] ==
        json{{"Patient", 1}, {"Encounter", 2}, {"Observation", 3}, {"Condition", 1}});
  CHECK(out.receipt["retain_basis"].get<std::string>().find("1798.146") != std::string::npos);
  CHECK(out.message.find("deleted 2 resources; kept 7") != std::string::npos);
  CHECK(rig.peer.CallsTo("DELETE", "/fhir/R4/Communication/").size() == 2);
  CHECK(rig.peer.CallsTo("DELETE", "/fhir/R4/").size() == 2);  // nothing clinical was even tried
  CHECK(rig.peer.Read("Patient/" + seeded.patient)["status"] == 200);
  // Running it again (a retry after a crash) finds the Communications gone and deletes nothing more.
  const Outcome again = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"mrn", kMrn}}));
  CHECK(again.kind == OutcomeKind::kRetainedExempt);
  CHECK(again.receipt["deleted"] == json::object());
  CHECK(rig.peer.CallsTo("DELETE", "/fhir/R4/").size() == 2);
}

TEST_CASE("fhir: a system configured to delete the patient deletes every listed type and the Patient last", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer, 2, 1);
  json settings = rig.Settings({{"delete_patient", true}});
  for (auto& r : settings["resources"]) r["on_delete"] = "delete";
  auto erase_all = rig.Make(settings);
  const Outcome out = RunAndWait(*erase_all, Task(TaskAction::kDelete, {{"fhir_patient_id", seeded.patient}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["retained_exempt"] == json::object());
  const auto deletes = rig.peer.CallsTo("DELETE", "/fhir/R4/");
  REQUIRE(deletes.size() == 7);  // 2 encounters, 2 observations, 1 condition, 1 communication, the patient
  CHECK(deletes.back()["path"] == "/fhir/R4/Patient/" + seeded.patient);
  CHECK(rig.peer.Read("Patient/" + seeded.patient)["status"] != 200);
  CHECK(rig.peer.Read("Patient/" + seeded.other)["status"] == 200);  // Sam is untouched
}

TEST_CASE("fhir: a locate task (system on_delete = retain) deletes nothing and reports the data map's basis",
          "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  TaskInput task = Task(TaskAction::kLocate, {{"mrn", kMrn}});
  task.retain_basis = "CMIA medical information (Civ. Code 56.10)";
  const Outcome out = RunAndWait(*rig.connector, task);
  REQUIRE(out.kind == OutcomeKind::kRetainedExempt);
  CHECK(out.receipt["retain_basis"] == "CMIA medical information (Civ. Code 56.10)");
  CHECK(out.receipt["retained_exempt"]["Communication"] == 2);  // deletable on delete, kept on locate
  CHECK(rig.peer.CallsTo("DELETE", "/fhir/R4/").empty());
}

// --- correct ----------------------------------------------------------------------------------------------------

TEST_CASE("fhir: correct sends a JSON Patch under If-Match, and a 412 reads again and patches once more", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  const std::vector<Correction> corrections = {{"last_name", "Reyes-Ortiz"},
                                               {"email", "ana.ortiz@example.com"},
                                               {"city", "Oakland"}};
  SECTION("no conflict") {
    const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"mrn", kMrn}}, corrections));
    REQUIRE(out.kind == OutcomeKind::kDone);
    CHECK(out.receipt["patched"] == 1);
    const auto patches = rig.peer.CallsTo("PATCH", "/fhir/R4/Patient/");
    REQUIRE(patches.size() == 1);
    CHECK(patches[0]["headers"]["content-type"] == "application/json-patch+json");
    CHECK(patches[0]["headers"]["if-match"].get<std::string>().starts_with("W/\""));
  }
  SECTION("the record changes between read and patch") {
    rig.peer.BumpBeforeNextPatch("Patient/" + seeded.patient);
    const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"mrn", kMrn}}, corrections));
    REQUIRE(out.kind == OutcomeKind::kDone);
    const auto patches = rig.peer.CallsTo("PATCH", "/fhir/R4/Patient/");
    REQUIRE(patches.size() == 2);
    CHECK(patches[0]["status"] == 412);
    CHECK(patches[1]["status"] == 200);
    CHECK(patches[0]["headers"]["if-match"] != patches[1]["headers"]["if-match"]);
  }
  const json patient = rig.peer.Read("Patient/" + seeded.patient)["resource"];
  INFO(patient.dump(2));
  CHECK(patient["name"][0]["family"] == "Reyes-Ortiz");
  CHECK(patient["name"][0]["given"][0] == "Ana");
  CHECK(patient["telecom"][0] == json{{"system", "email"}, {"value", "ana.ortiz@example.com"}});
  CHECK(patient["telecom"][1]["value"] == kPhone);
  CHECK(patient["address"][0]["city"] == "Oakland");
  CHECK(patient["address"][0]["line"][0] == "12 Mission St");
}

TEST_CASE("fhir: correct with a field the connector cannot map applies the rest and asks a person", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"mrn", kMrn}},
                                                      {{"first_name", "Anabel"}, {"preferred_pharmacy", "Walgreens"}}));
  CHECK(out.kind == OutcomeKind::kNeedsManual);
  CHECK(out.message.find("preferred_pharmacy") != std::string::npos);
  CHECK(out.message.find("the mapped ones were applied") != std::string::npos);
  CHECK(rig.peer.Read("Patient/" + seeded.patient)["resource"]["name"][0]["given"][0] == "Anabel");
}

TEST_CASE("fhir: a patient changed on every try is a retry, not a lost correction", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  rig.peer.BumpBeforeNextPatch("Patient/" + seeded.patient);
  // The bump is one-shot; a second conflict comes from the server itself when the version read is stale: read,
  // then another writer, twice. Simulate the second writer with a second bump armed after the first PATCH.
  std::thread second_writer([&] {
    for (int i = 0; i < 200 && rig.peer.CallsTo("PATCH", "/fhir/R4/Patient/").empty(); ++i) {
      std::this_thread::sleep_for(10ms);
    }
    rig.peer.BumpBeforeNextPatch("Patient/" + seeded.patient);
  });
  rig.peer.Delay(100ms);  // room for the second writer to arm before the second PATCH arrives
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"mrn", kMrn}}, {{"last_name", "Ortiz"}}));
  second_writer.join();
  rig.peer.Delay(0ms);
  CHECK(out.kind == OutcomeKind::kRetry);
  CHECK(out.message.find("changed twice") != std::string::npos);
  CHECK(rig.peer.CallsTo("PATCH", "/fhir/R4/Patient/").size() == 2);
}

// --- opt-out and limit ------------------------------------------------------------------------------------------

TEST_CASE("fhir: opt-out and limit write one deny Consent each, and a second run finds it", "[fhir]") {
  Rig rig;
  const Seeded seeded = Seed(rig.peer);
  for (auto action : {TaskAction::kOptOut, TaskAction::kLimit}) {
    DYNAMIC_SECTION("action " << rightsd::connectors::ToString(action)) {
      const TaskInput task = Task(action, {{"email", kEmail}});
      const Outcome out = RunAndWait(*rig.connector, task);
      REQUIRE(out.kind == OutcomeKind::kDone);
      CHECK(out.receipt["consents_created"] == 1);
      const auto creates = rig.peer.CallsTo("POST", "/fhir/R4/Consent");
      REQUIRE(creates.size() == 1);
      CHECK(creates[0]["status"] == 201);
      CHECK(creates[0]["headers"]["if-none-exist"].get<std::string>().find(task.task_id) != std::string::npos);
      const json consent = json::parse(creates[0]["body"].get<std::string>());
      CHECK(consent["patient"]["reference"] == "Patient/" + seeded.patient);
      CHECK(consent["provision"]["type"] == "deny");
      CHECK(consent["provision"]["purpose"][0]["code"] == "HMARKT");
      CHECK(consent["status"] == "active");
      // The server holds it: searched by the patient through a batch, as any FHIR client would.
      const json found = rig.peer.Seed(
          {{"resourceType", "Bundle"},
           {"type", "batch"},
           {"entry", json::array({{{"request", {{"method", "GET"}, {"url", "Consent?patient=Patient/" + seeded.patient}}}}})}});
      const json& searchset = found["entry"][0]["resource"];
      REQUIRE(searchset.contains("entry"));
      CHECK(searchset["entry"].size() == 1);
      // The engine runs the same task again after a crash: no second Consent.
      const Outcome again = RunAndWait(*rig.connector, task);
      REQUIRE(again.kind == OutcomeKind::kDone);
      CHECK(again.receipt["consents_already_recorded"] == 1);
      CHECK(rig.peer.CallsTo("POST", "/fhir/R4/Consent").size() == 1);
    }
  }
}

// --- errors -----------------------------------------------------------------------------------------------------

TEST_CASE("fhir: 429 and 503 with Retry-After are retries after exactly that long", "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  for (int status : {429, 503}) {
    DYNAMIC_SECTION("status " << status) {
      rig.peer.FailNext(1, status, 7, "/Patient");
      const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}}));
      CHECK(out.kind == OutcomeKind::kRetry);
      REQUIRE(out.retry_after.has_value());
      CHECK(*out.retry_after == 7000ms);
      CHECK(out.message.find(std::to_string(status)) != std::string::npos);
      // The next run goes through.
      CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}})).kind == OutcomeKind::kDone);
    }
  }
}

TEST_CASE("fhir: an OperationOutcome becomes a readable task error without identity values", "[fhir]") {
  Rig rig;
  Seed(rig.peer);
  // A 403 whose text quotes the search (servers do): the task fails with the server's words, the MRN cut out.
  rig.peer.FailNext(1, 403, -1, "/Patient", "forbidden",
                    "scope system/Patient.rs does not allow identifier=" + kMrn + " for this client");
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"mrn", kMrn}, {"email", kEmail}}));
  INFO(out.message);
  CHECK(out.kind == OutcomeKind::kFailed);
  CHECK(out.message.find("searching for the patient: HTTP 403: scope system/Patient.rs does not allow identifier="
                         "[redacted] for this client (forbidden)") != std::string::npos);
  CHECK(out.message.find("does the client registration grant the scope") != std::string::npos);
}

TEST_CASE("fhir: an EHR that does not answer is a retry", "[fhir]") {
  Rig rig;
  auto gone = rig.Make(rig.Settings({{"base_url", "http://127.0.0.1:1/fhir/R4"}, {"timeout_ms", 2000}}));
  const Outcome out = RunAndWait(*gone, Task(TaskAction::kAccess, {{"mrn", kMrn}}));
  CHECK(out.kind == OutcomeKind::kRetry);
  CHECK(out.message.find("SMART configuration") != std::string::npos);
}

TEST_CASE("fhir: settings the connector refuses at start-up", "[fhir]") {
  Rig rig;
  const auto* type = rightsd::connectors::FindConnectorType("fhir");
  REQUIRE(type != nullptr);
  CHECK_NOTHROW(rightsd::connectors::ValidateSettings(*type, "ehr", rig.Settings()));
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "ehr", rig.Settings({{"algorithm", "HS256"}})),
                  ConnectorConfigError);
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "ehr", rig.Settings({{"match_on", {"ssn"}}})),
                  ConnectorConfigError);
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "ehr", rig.Settings({{"unknown", 1}})),
                  ConnectorConfigError);
  CHECK_THROWS_WITH(rig.Make(rig.Settings({{"private_key_file", "missing.pem"}})), Catch::Contains("private_key_file"));
  CHECK_THROWS_WITH(rig.Make(rig.Settings({{"algorithm", "ES384"}})), Catch::Contains("EC key on P-384"));
  json no_system = rig.Settings();
  no_system.erase("identifier_systems");
  CHECK_THROWS_WITH(rig.Make(no_system), Catch::Contains("identifier_systems"));
  json twice = rig.Settings();
  twice["resources"].push_back({{"type", "Observation"}});
  CHECK_THROWS_WITH(rig.Make(twice), Catch::Contains("listed twice"));
}

// --- the daemon end to end --------------------------------------------------------------------------------------

TEST_CASE("fhir: engine: access, delete, correct, opt-out and limit requests end to end (search fallback)",
          "[fhir][engine][integration]") {
  FhirPeer peer;
  peer.Start();
  const Seeded seeded = Seed(peer, 4, 2);
  DaemonEnv env(true);
  peer.WritePrivateKeyPem(env.dir() / "ehr.pem");
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "ehr"
connector = "fhir"
categories = ["medical information", "identifiers"]
request_types = ["access", "delete", "correct", "opt_out", "limit"]
[systems.settings]
base_url = "{}"
client_id = "{}"
key_id = "{}"
private_key_file = "ehr.pem"
identifier_systems = {{ mrn = "{}" }}
timeout_ms = 10000
[[systems.settings.resources]]
type = "Encounter"
[[systems.settings.resources]]
type = "Observation"
[[systems.settings.resources]]
type = "Condition"
[[systems.settings.resources]]
type = "Communication"
search_param = "subject"
on_delete = "delete"
)toml",
                                              peer.base_url(), peer.options().client_id, peer.options().kid,
                                              kMrnSystem));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto run = [&](const std::string& type, const std::string& extra) {
    const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                                R"({"type":")" + type + R"(","subject":{"identities":[{"kind":"mrn","value":")" + kMrn +
                                    R"("},{"kind":"email","value":")" + kEmail + R"("}]})" + extra + "}");
    INFO(created.body);
    REQUIRE(created.status == 201);
    const std::string id = created.json()["id"];
    if (type == "access" || type == "delete" || type == "correct") {
      REQUIRE(d.Call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
                     R"({"method":"account_login","level":"reasonably_high"})")
                  .status == 200);
    }
    json last;
    const bool completed = Eventually([&] {
      last = d.Call("GET", "/v1/requests/" + id, env.token("viewer")).json();
      return last["status"] == "completed";
    }, 60);
    INFO(last.dump(2));
    REQUIRE(completed);
    REQUIRE(last["tasks"].size() == 1);
    return std::make_pair(id, last["tasks"][0]);
  };

  const auto [access, access_task] = run("access", "");
  CHECK(access_task["state"] == "done");
  const auto package = d.Call("GET", "/v1/requests/" + access + "/package", env.token("submitter"));
  INFO(package.body);
  REQUIRE(package.status == 200);
  const json ehr = package.json()["systems"]["ehr"];
  CHECK(ehr["Patient"][0]["name"][0]["family"] == kFamily);
  CHECK(ehr["Observation"].size() == 4);
  CHECK(ehr["Communication"].size() == 2);

  const auto [correct, correct_task] = run("correct", R"(,"corrections":[{"field":"last_name","value":"Reyes-Ortiz"}])");
  CHECK(correct_task["state"] == "done");
  CHECK(peer.Read("Patient/" + seeded.patient)["resource"]["name"][0]["family"] == "Reyes-Ortiz");

  const auto [opt_out, opt_out_task] = run("opt_out", R"(,"channel":"gpc")");
  CHECK(opt_out_task["state"] == "done");
  const auto [limit, limit_task] = run("limit", "");
  CHECK(limit_task["state"] == "done");
  CHECK(peer.CallsTo("POST", "/fhir/R4/Consent").size() == 2);

  const auto [erase, erase_task] = run("delete", "");
  CHECK(erase_task["state"] == "retained_exempt");
  const json receipt = erase_task["outcome"];
  CHECK(receipt["deleted"] == json{{"Communication", 2}});
  CHECK(receipt["retained_exempt"]["Observation"] == 4);
  CHECK(receipt["retained_exempt"]["Patient"] == 1);
  CHECK(receipt["retain_basis"].get<std::string>().find("1798.146") != std::string::npos);
  CHECK(peer.Read("Patient/" + seeded.patient)["status"] == 200);

  const std::string log = Lower(d.Log());
  CHECK(log.find(Lower(kEmail)) == std::string::npos);
  CHECK(log.find(Lower(kMrn)) == std::string::npos);
  CHECK(log.find("private key") == std::string::npos);
  CHECK(d.Stop() == 0);
}
