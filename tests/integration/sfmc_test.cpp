// The Marketing Cloud connector against the simulated tenant (SfmcPeer), first driven directly over the real
// cpprestsdk client -- tokens, look-up, the asynchronous delete and its polls, suppression, 429s and other peer
// failures as outcomes, idempotent resubmission -- then through the real daemon: every request type end to end, a
// delete that completes after several polls, a daemon stopped (SIGKILL and SIGTERM) between those polls whose
// successor resumes them without a second submission, and a 429 retryAfter waited out.
#include <algorithm>
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
#include "connectors/sfmc/sfmc.h"
#include "harness.h"
#include "peers/recording_server.h"
#include "peers/sfmc/sfmc_peer.h"

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using rightsd::connectors::Connector;
using rightsd::connectors::ConnectorConfigError;
using rightsd::connectors::ConnectorEnv;
using rightsd::connectors::HttpClient;
using rightsd::connectors::Identity;
using rightsd::connectors::MakeCpprestHttpClient;
using rightsd::connectors::Outcome;
using rightsd::connectors::OutcomeKind;
using rightsd::connectors::TaskAction;
using rightsd::connectors::TaskInput;
using rightsd::connectors::sfmc::MakeSfmcConnector;
using rightsd::test::Daemon;
using rightsd::test::DaemonEnv;
using rightsd::test::Eventually;
using rightsd::test::RecordingServer;
using rightsd::test::SfmcPeer;
using rightsd::test::SfmcPeerOptions;

const std::string kEmail = "Jane.Doe@example.com";
const std::string kKey = "0031x00000JaneDoe";         // the CRM-synchronised contact key of kEmail
const std::string kSecondKey = "sub-jane-legacy-4711";  // an older contact with the same address
const std::string kGivenKey = "given-key-8f3a";         // a contact key the request names itself
const std::string kPhone = "+1 415 555 0100";
const std::string kMrn = "MRN-778899";

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

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-sfmc-" + NewId())) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

TaskInput Task(TaskAction action, std::vector<Identity> identities, std::string task_id = NewId()) {
  TaskInput input;
  input.request_id = NewId();
  input.task_id = std::move(task_id);
  input.system = "marketing";
  input.action = action;
  input.request_type = std::string(rightsd::connectors::ToString(action));
  input.identities = std::move(identities);
  return input;
}

void ExpectNoIdentityValues(const Outcome& outcome, const std::vector<std::string>& extra = {}) {
  const std::string text = outcome.message + " " + outcome.receipt.dump() + " " + outcome.continuation.dump();
  std::vector<std::string> values = {kEmail, kKey, kSecondKey, kGivenKey, kPhone, kMrn};
  values.insert(values.end(), extra.begin(), extra.end());
  for (const auto& value : values) {
    INFO("outcome text: " << text);
    std::string lowered = value;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string text_lowered = text;
    std::transform(text_lowered.begin(), text_lowered.end(), text_lowered.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    CHECK(text_lowered.find(lowered) == std::string::npos);
  }
}

// Runs the task and waits (bounded) for its one outcome.
Outcome RunAndWait(Connector& connector, const TaskInput& input, std::chrono::seconds limit = 15s) {
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
  ExpectNoIdentityValues(*state->outcome);
  return *state->outcome;
}

TaskInput Continue(TaskInput input, const Outcome& previous) {
  input.continuation = previous.continuation;
  return input;
}

// A simulated tenant, the production HTTP client and a connector configured against them.
struct Rig {
  explicit Rig(SfmcPeerOptions options = {}, json extra = json::object()) : peer(std::move(options)) {
    peer.Start();
    peer.WriteClientSecret(dir.path() / "sfmc.secret");
    connector = Make(Settings(extra));
  }
  json Settings(const json& extra = json::object()) const {
    json settings = {{"subdomain", "mc-test-tenant"},
                     {"client_id", peer.options().client_id},
                     {"client_secret_file", "sfmc.secret"},
                     {"auth_base_url", peer.base_url()},
                     {"poll_initial_seconds", 5},
                     {"poll_max_seconds", 15},
                     {"timeout_ms", 5000}};
    settings.update(extra);
    return settings;
  }
  std::unique_ptr<Connector> Make(const json& settings, std::vector<std::string> categories = {"identifiers"}) {
    ConnectorEnv env;
    env.system = "marketing";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = std::move(categories);
    return MakeSfmcConnector(settings, env);
  }
  std::vector<rightsd::test::RecordedCall> Calls(std::string_view method, std::string_view path) {
    return peer.recorder().CallsTo(method, path);
  }

  TempDir dir;
  SfmcPeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

const json kSuppression = {{"suppression",
                            {{"data_extension_key", "CCPA Do Not Sell"},
                             {"key_field", "SubscriberKey"},
                             {"values", {{"Reason", "CCPA request"}, {"Active", true}}}}}};

long long OperationIdOf(const Outcome& outcome) { return outcome.continuation.at("operation_id").get<long long>(); }

}  // namespace

// --- the connector against the simulator ------------------------------------------------------------------------

TEST_CASE("sfmc: a delete is submitted, then polled through Queued and InProcess to Completed", "[sfmc]") {
  SfmcPeerOptions options;
  options.queued_polls = 2;
  options.in_process_polls = 1;
  Rig rig(options);
  rig.peer.SeedContact(kKey, kEmail);
  rig.peer.SeedContact(kSecondKey, "jane.doe@EXAMPLE.com");
  rig.peer.SeedContact("someone-else", "someone@example.com");
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}, {"sfmc_contact_key", kGivenKey}});

  Outcome submitted = RunAndWait(*rig.connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  CHECK(submitted.retry_after == std::chrono::milliseconds(5000));
  CHECK(submitted.receipt["operation_status"] == "Submitted");
  CHECK(submitted.receipt["contact_keys"] == 3);
  CHECK(submitted.receipt["contacts_found"] == 2);
  const long long operation = OperationIdOf(submitted);
  CHECK(rig.peer.DeleteSubmits() == 1);

  // What went out: one look-up by address, one delete naming every key.
  auto searches = rig.Calls("POST", "/contacts/v1/addresses/email/search");
  REQUIRE(searches.size() == 1);
  CHECK(json::parse(searches[0].body) == json{{"channelAddressList", {kEmail}}, {"maximumCount", 10}});
  auto deletes = rig.Calls("POST", "/contacts/v1/contacts/actions/delete");
  REQUIRE(deletes.size() == 1);
  CHECK(deletes[0].target == "/contacts/v1/contacts/actions/delete?type=keys");
  CHECK(json::parse(deletes[0].body) ==
        json{{"values", {kGivenKey, kKey, kSecondKey}}, {"DeleteOperationType", "ContactAndAttributes"}});
  CHECK(rig.peer.KeysOf(operation) == std::vector<std::string>{kGivenKey, kKey, kSecondKey});
  auto token_calls = rig.Calls("POST", "/v2/token");
  REQUIRE(token_calls.size() == 1);
  const json token_request = json::parse(token_calls[0].body);
  CHECK(token_request["grant_type"] == "client_credentials");
  CHECK(token_request["client_id"] == rig.peer.options().client_id);
  CHECK(token_request["client_secret"] == rig.peer.options().client_secret);

  // Queued, Queued, InProcess: each poll waits twice as long as the last, up to poll_max_seconds.
  Outcome poll1 = RunAndWait(*rig.connector, Continue(task, submitted));
  REQUIRE(poll1.kind == OutcomeKind::kInProgress);
  CHECK(poll1.receipt["operation_status"] == "Queued");
  CHECK(poll1.retry_after == std::chrono::milliseconds(10000));
  Outcome poll2 = RunAndWait(*rig.connector, Continue(task, poll1));
  REQUIRE(poll2.kind == OutcomeKind::kInProgress);
  CHECK(poll2.receipt["operation_status"] == "Queued");
  CHECK(poll2.retry_after == std::chrono::milliseconds(15000));
  Outcome poll3 = RunAndWait(*rig.connector, Continue(task, poll2));
  REQUIRE(poll3.kind == OutcomeKind::kInProgress);
  CHECK(poll3.receipt["operation_status"] == "InProcess");
  CHECK(poll3.retry_after == std::chrono::milliseconds(15000));
  CHECK(rig.peer.HasContact(kKey));

  Outcome done = RunAndWait(*rig.connector, Continue(task, poll3));
  REQUIRE(done.kind == OutcomeKind::kDone);
  CHECK(done.receipt["operation_id"] == operation);
  CHECK(done.receipt["operation_status"] == "Completed");
  CHECK(done.receipt["delete_phase_status"] == "Completed");
  CHECK(done.receipt["deleted"] == true);
  CHECK(done.receipt["polls"] == 4);
  CHECK(done.receipt["expectedListCount"] == 3);
  CHECK(done.records.is_null());

  CHECK_FALSE(rig.peer.HasContact(kKey));
  CHECK_FALSE(rig.peer.HasContact(kSecondKey));
  CHECK(rig.peer.HasContact("someone-else"));
  CHECK(rig.peer.PollsOf(operation) == 4);
  auto polls = rig.Calls("GET", "/contacts/v1/contacts/actions/delete/status");
  REQUIRE(polls.size() == 4);
  CHECK(polls[0].target == "/contacts/v1/contacts/actions/delete/status?operationID=" + std::to_string(operation));
  CHECK(rig.peer.DeleteSubmits() == 1);
  // One token served the whole conversation, and went with every REST call.
  CHECK(rig.peer.TokenRequests() == 1);
  for (const auto& call : rig.peer.recorder().Calls()) {
    if (call.path == "/v2/token") continue;
    INFO(call.method << " " << call.path);
    auto auth = call.headers.find("Authorization");
    REQUIRE(auth != call.headers.end());
    CHECK(auth->second.starts_with("Bearer "));
  }
}

TEST_CASE("sfmc: a delete of an address Marketing Cloud does not hold is not found without a submission", "[sfmc]") {
  Rig rig;
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kNotFound);
  CHECK(outcome.receipt["contacts_found"] == 0);
  CHECK(outcome.receipt["contact_keys"] == 0);
  CHECK(rig.peer.DeleteSubmits() == 0);
}

TEST_CASE("sfmc: email_is_contact_key uses the address itself as a key", "[sfmc]") {
  Rig rig(SfmcPeerOptions{}, {{"email_is_contact_key", true}, {"email_lookup", false}});
  rig.peer.SeedContact(kEmail, kEmail);
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  REQUIRE(outcome.kind == OutcomeKind::kInProgress);
  CHECK(rig.Calls("POST", "/contacts/v1/addresses/email/search").empty());
  CHECK(rig.peer.KeysOf(OperationIdOf(outcome)) == std::vector<std::string>{kEmail});
  // Without the look-up there is no way to read a contact: access and locate are not offered.
  CHECK_FALSE(rig.connector->Supports(TaskAction::kAccess));
  CHECK_FALSE(rig.connector->Supports(TaskAction::kLocate));
}

TEST_CASE("sfmc: access returns what the email search finds, under the configured category", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  rig.peer.SeedContact(kSecondKey, kEmail);
  SECTION("the system's first category by default") {
    Outcome done = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    REQUIRE(done.kind == OutcomeKind::kDone);
    REQUIRE(done.records.contains("identifiers"));
    const json& items = done.records["identifiers"];
    REQUIRE(items.size() == 2);
    CHECK(items[0]["contactKey"] == kKey);
    CHECK(items[0]["channelAddress"] == kEmail);
    CHECK(items[0].contains("createDate"));
    CHECK(items[1]["contactKey"] == kSecondKey);
    CHECK(done.receipt["records"] == 2);
    CHECK(done.receipt["categories"] == json{{"identifiers", 2}});
  }
  SECTION("access_category names another") {
    auto connector = rig.Make(rig.Settings({{"access_category", "commercial information"}}));
    Outcome done = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    REQUIRE(done.kind == OutcomeKind::kDone);
    CHECK(done.records.contains("commercial information"));
  }
  SECTION("maximumCount is max_contact_keys_per_email") {
    auto connector = rig.Make(rig.Settings({{"max_contact_keys_per_email", 1}}));
    Outcome done = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    REQUIRE(done.kind == OutcomeKind::kDone);
    CHECK(done.records["identifiers"].size() == 1);
    CHECK(json::parse(rig.Calls("POST", "/contacts/v1/addresses/email/search").back().body)["maximumCount"] == 1);
  }
}

TEST_CASE("sfmc: access for an address with no contact is not found", "[sfmc]") {
  Rig rig;
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kNotFound);
  CHECK(outcome.records.is_null());
}

TEST_CASE("sfmc: access needs an email identity", "[sfmc]") {
  Rig rig;
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"sfmc_contact_key", kGivenKey}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("email") != std::string::npos);
  CHECK(rig.peer.recorder().Calls().empty());
}

TEST_CASE("sfmc: locate finds the contact and keeps it", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  TaskInput task = Task(TaskAction::kLocate, {{"email", kEmail}});
  task.retain_basis = "legal hold";
  Outcome found = RunAndWait(*rig.connector, task);
  CHECK(found.kind == OutcomeKind::kRetainedExempt);
  CHECK(found.receipt["retain_basis"] == "legal hold");
  CHECK(found.receipt["contacts_found"] == 1);
  CHECK(rig.peer.HasContact(kKey));
  Outcome missing = RunAndWait(*rig.connector, Task(TaskAction::kLocate, {{"email", "nobody@example.com"}}));
  CHECK(missing.kind == OutcomeKind::kNotFound);
}

TEST_CASE("sfmc: opt-out and limit upsert the contact into the suppression data extension", "[sfmc]") {
  for (auto action : {TaskAction::kOptOut, TaskAction::kLimit}) {
    DYNAMIC_SECTION("action " << rightsd::connectors::ToString(action)) {
      Rig rig(SfmcPeerOptions{}, kSuppression);
      rig.peer.AddDataExtension("CCPA Do Not Sell", {"SubscriberKey"});
      rig.peer.SeedContact(kKey, kEmail);
      CHECK(rig.connector->Supports(action));
      Outcome done = RunAndWait(*rig.connector, Task(action, {{"email", kEmail}}));
      REQUIRE(done.kind == OutcomeKind::kDone);
      CHECK(done.receipt["rows_upserted"] == 1);
      CHECK(done.receipt["data_extension"] == "CCPA Do Not Sell");
      CHECK(done.receipt["keyed_by"] == "contact_key");
      auto calls = rig.Calls("POST", "/hub/v1/dataevents/");
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].path == "/hub/v1/dataevents/key:CCPA Do Not Sell/rowset");
      CHECK(calls[0].target.find("%20") == std::string::npos);  // recorded decoded; sent encoded (it matched)
      CHECK(json::parse(calls[0].body) == json::array({{{"keys", {{"SubscriberKey", kKey}}},
                                                        {"values", {{"Reason", "CCPA request"}, {"Active", true}}}}}));
      CHECK(rig.peer.Rows("CCPA Do Not Sell") ==
            std::vector<json>{{{"SubscriberKey", kKey}, {"Reason", "CCPA request"}, {"Active", true}}});
      // Running it again changes nothing: the upsert is keyed.
      REQUIRE(RunAndWait(*rig.connector, Task(action, {{"email", kEmail}})).kind == OutcomeKind::kDone);
      CHECK(rig.peer.Rows("CCPA Do Not Sell").size() == 1);
    }
  }
}

TEST_CASE("sfmc: opt-out keyed by email suppresses an address before it is a contact", "[sfmc]") {
  json settings = kSuppression;
  settings["suppression"]["key_field"] = "EmailAddress";
  settings["suppression"]["key_source"] = "email";
  Rig rig(SfmcPeerOptions{}, settings);
  rig.peer.AddDataExtension("CCPA Do Not Sell", {"EmailAddress"});
  Outcome done = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(done.kind == OutcomeKind::kDone);
  CHECK(done.receipt["keyed_by"] == "email");
  CHECK(rig.Calls("POST", "/contacts/v1/addresses/email/search").empty());
  REQUIRE(rig.peer.Rows("CCPA Do Not Sell").size() == 1);
  CHECK(rig.peer.Rows("CCPA Do Not Sell")[0]["EmailAddress"] == kEmail);
}

TEST_CASE("sfmc: opt-out for an address with no contact is not found", "[sfmc]") {
  Rig rig(SfmcPeerOptions{}, kSuppression);
  rig.peer.AddDataExtension("CCPA Do Not Sell", {"SubscriberKey"});
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kNotFound);
  CHECK(rig.Calls("POST", "/hub/v1/dataevents/").empty());
}

TEST_CASE("sfmc: a suppression data extension Marketing Cloud does not know fails the task", "[sfmc]") {
  Rig rig(SfmcPeerOptions{}, kSuppression);
  rig.peer.SeedContact(kKey, kEmail);
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("404") != std::string::npos);
  CHECK(outcome.message.find("Unable to find a data extension") != std::string::npos);
}

TEST_CASE("sfmc: what the connector does not support", "[sfmc]") {
  Rig rig;  // no suppression configured
  CHECK(rig.connector->Supports(TaskAction::kDelete));
  CHECK(rig.connector->Supports(TaskAction::kAccess));
  CHECK(rig.connector->Supports(TaskAction::kLocate));
  for (auto action : {TaskAction::kOptOut, TaskAction::kLimit, TaskAction::kCorrect, TaskAction::kDeidentify}) {
    CHECK_FALSE(rig.connector->Supports(action));
    Outcome outcome = RunAndWait(*rig.connector, Task(action, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kFailed);
  }
  CHECK(rig.peer.recorder().Calls().empty());
}

TEST_CASE("sfmc: identity kinds Marketing Cloud does not take are never sent", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  Outcome outcome = RunAndWait(*rig.connector,
                               Task(TaskAction::kDelete, {{"email", kEmail}, {"phone", kPhone}, {"mrn", kMrn}}));
  CHECK(outcome.kind == OutcomeKind::kInProgress);
  CHECK(outcome.receipt["identity_kinds"] == json::array({"email"}));
  for (const auto& call : rig.peer.recorder().Calls()) {
    CHECK(call.body.find(kPhone) == std::string::npos);
    CHECK(call.body.find(kMrn) == std::string::npos);
    CHECK(call.target.find(kMrn) == std::string::npos);
  }
  Outcome none = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"phone", kPhone}, {"mrn", kMrn}}));
  CHECK(none.kind == OutcomeKind::kFailed);
  CHECK(none.message.find("no identity this system understands") != std::string::npos);
}

TEST_CASE("sfmc: a 429 with retryAfter is a retry after exactly that long", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  SECTION("on the delete submission") {
    rig.peer.RateLimitNext(1, 7, "/contacts/v1/contacts/actions/delete");
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(7000));
    CHECK(outcome.message.find("429") != std::string::npos);
    CHECK(outcome.message.find("Rate limit exceeded") != std::string::npos);
    CHECK(outcome.message.find("50100") != std::string::npos);
    CHECK(rig.peer.OperationIds().empty());
    CHECK(RunAndWait(*rig.connector, task).kind == OutcomeKind::kInProgress);
    CHECK(rig.peer.OperationIds().size() == 1);
  }
  SECTION("on the email search, errorcode 50200") {
    rig.peer.RateLimitNext(1, 3, "/contacts/v1/addresses", 50200);
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(3000));
    CHECK(outcome.message.find("50200") != std::string::npos);
  }
  SECTION("on the token endpoint") {
    rig.peer.RateLimitNext(1, 4, "/v2/token");
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(4000));
  }
  SECTION("on a status poll: still in progress, the operation kept, the wait Marketing Cloud's") {
    Outcome submitted = RunAndWait(*rig.connector, task);
    REQUIRE(submitted.kind == OutcomeKind::kInProgress);
    rig.peer.RateLimitNext(1, 9, "/contacts/v1/contacts/actions/delete/status");
    Outcome limited = RunAndWait(*rig.connector, Continue(task, submitted));
    CHECK(limited.kind == OutcomeKind::kInProgress);
    CHECK(limited.retry_after == std::chrono::milliseconds(9000));
    CHECK(limited.continuation["operation_id"] == submitted.continuation["operation_id"]);
    CHECK(limited.continuation["poll_errors"] == 1);
    CHECK(limited.receipt["last_poll_error"].get<std::string>().find("429") != std::string::npos);
    Outcome next = RunAndWait(*rig.connector, Continue(task, limited));
    CHECK(next.kind == OutcomeKind::kInProgress);
    CHECK(next.receipt["operation_status"] == "Queued");
    CHECK(next.continuation["poll_errors"] == 0);
    CHECK(rig.peer.DeleteSubmits() == 1);
  }
  SECTION("the Retry-After header when the body has no retryAfter") {
    rig.peer.FailNext(1, 503, "/contacts/v1/addresses");
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK_FALSE(outcome.retry_after.has_value());  // the engine's backoff decides
    CHECK(outcome.message.find("503") != std::string::npos);
  }
}

TEST_CASE("sfmc: 5xx and silence while polling keep the operation", "[sfmc]") {
  Rig rig(SfmcPeerOptions{}, {{"timeout_ms", 2000}});
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  rig.peer.FailNext(1, 500, "/contacts/v1/contacts/actions/delete/status");
  Outcome failed_poll = RunAndWait(*rig.connector, Continue(task, submitted));
  CHECK(failed_poll.kind == OutcomeKind::kInProgress);
  CHECK(failed_poll.retry_after == std::chrono::milliseconds(5000));  // the current interval
  CHECK(failed_poll.continuation["operation_id"] == submitted.continuation["operation_id"]);
  // The whole tenant gone: the next poll cannot even get a token, and still keeps the operation.
  auto gone = rig.Make(rig.Settings({{"auth_base_url", "http://127.0.0.1:1"}}));
  Outcome unreachable = RunAndWait(*gone, Continue(task, failed_poll));
  CHECK(unreachable.kind == OutcomeKind::kInProgress);
  CHECK(unreachable.continuation["operation_id"] == submitted.continuation["operation_id"]);
  CHECK(unreachable.continuation["poll_errors"] == 2);
  // Too many in a row: a person must look.
  TaskInput exhausted = Continue(task, unreachable);
  exhausted.continuation["poll_errors"] = 24;
  Outcome given_up = RunAndWait(*gone, exhausted);
  CHECK(given_up.kind == OutcomeKind::kFailed);
  CHECK(given_up.message.find("25 status polls in a row failed") != std::string::npos);
}

TEST_CASE("sfmc: tokens are cached, refreshed early, and fetched again once on 401", "[sfmc]") {
  SECTION("one token serves many tasks") {
    Rig rig;
    rig.peer.SeedContact(kKey, kEmail);
    for (int i = 0; i < 5; ++i) RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    CHECK(rig.peer.TokenRequests() == 1);
  }
  SECTION("tasks running at once wait for the same token") {
    Rig rig;
    rig.peer.SeedContact(kKey, kEmail);
    // The threads only start the tasks; the checks are made on this thread, because Catch2's assertions are not
    // thread-safe (ThreadSanitizer reports races in its internals, and the run stalls).
    struct Results {
      std::mutex mu;
      std::condition_variable cv;
      std::vector<Outcome> outcomes;
    };
    auto results = std::make_shared<Results>();
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&rig, results] {
        rig.connector->Run(Task(TaskAction::kAccess, {{"email", kEmail}}), [results](Outcome o) {
          std::lock_guard lock(results->mu);
          results->outcomes.push_back(std::move(o));
          results->cv.notify_all();
        });
      });
    }
    for (auto& t : threads) t.join();
    std::unique_lock lock(results->mu);
    REQUIRE(results->cv.wait_for(lock, 15s, [&] { return results->outcomes.size() >= 8; }));
    lock.unlock();
    std::this_thread::sleep_for(20ms);  // room for a (wrong) second call to show up
    lock.lock();
    REQUIRE(results->outcomes.size() == 8);
    for (const Outcome& outcome : results->outcomes) ExpectNoIdentityValues(outcome);
    CHECK(rig.peer.TokenRequests() == 1);
  }
  SECTION("a token about to expire is replaced before use") {
    SfmcPeerOptions options;
    options.token_lifetime = 2s;
    // The pooled connection must outlive the wait below: this is about the token, not about idle connections.
    options.keep_alive_seconds = 5;
    Rig rig(options);
    rig.peer.SeedContact(kKey, kEmail);
    RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    std::this_thread::sleep_for(1900ms);  // past the refresh point (a tenth before expiry), not past expiry
    Outcome again = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    INFO(again.message);
    CHECK(again.kind == OutcomeKind::kDone);
    CHECK(rig.peer.TokenRequests() == 2);
    CHECK(rig.Calls("POST", "/contacts/v1/addresses/email/search").size() == 2);  // no call met a 401
    CHECK_FALSE(again.receipt.contains("token_refreshed_after_401"));
  }
  SECTION("a 401 drops the token, a new one is fetched and the call repeated once") {
    Rig rig;
    rig.peer.SeedContact(kKey, kEmail);
    RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    rig.peer.ExpireTokens();
    Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kDone);
    CHECK(outcome.receipt["token_refreshed_after_401"] == true);
    CHECK(rig.peer.TokenRequests() == 2);
    CHECK(rig.Calls("POST", "/contacts/v1/addresses/email/search").size() == 3);
  }
  SECTION("a second 401 fails the task") {
    Rig rig;
    rig.peer.SeedContact(kKey, kEmail);
    rig.peer.FailNext(2, 401, "/contacts/v1/addresses");
    Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.message.find("401") != std::string::npos);
    CHECK(rig.peer.TokenRequests() == 2);
  }
}

TEST_CASE("sfmc: refused client credentials fail the task without the secret in the message", "[sfmc]") {
  Rig rig;
  rig.dir.Write("wrong.secret", "a-wrong-secret-value\n");
  auto connector = rig.Make(rig.Settings({{"client_secret_file", "wrong.secret"}}));
  Outcome outcome = RunAndWait(*connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("401") != std::string::npos);
  CHECK(outcome.message.find("invalid_client") != std::string::npos);
  CHECK(outcome.message.find("a-wrong-secret-value") == std::string::npos);
  SECTION("account_id and scope go with the token request") {
    SfmcPeerOptions options;
    options.account_id = "7281698";
    Rig scoped(options, {{"account_id", "7281698"}, {"scope", "list_and_subscribers_write"}});
    scoped.peer.SeedContact(kKey, kEmail);
    CHECK(RunAndWait(*scoped.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kDone);
    const json request = json::parse(scoped.Calls("POST", "/v2/token").at(0).body);
    CHECK(request["account_id"] == "7281698");
    CHECK(request["scope"] == "list_and_subscribers_write");
    auto other = scoped.Make(scoped.Settings({{"account_id", 1234}}));
    CHECK(RunAndWait(*other, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kFailed);
  }
}

TEST_CASE("sfmc: a Marketing Cloud nobody answers for is a retry", "[sfmc]") {
  Rig rig;
  auto connector = rig.Make(rig.Settings({{"auth_base_url", "http://127.0.0.1:1"}, {"timeout_ms", 2000}}));
  Outcome outcome = RunAndWait(*connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kRetry);
  CHECK(outcome.message.find("auth host") != std::string::npos);
}

TEST_CASE("sfmc: running a delete again without its continuation polls the remembered operation", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome first = RunAndWait(*rig.connector, task);
  REQUIRE(first.kind == OutcomeKind::kInProgress);
  // The engine never saved `first` (the database was away, the lease lost): the task runs again from scratch.
  Outcome again = RunAndWait(*rig.connector, task);
  CHECK(again.kind == OutcomeKind::kInProgress);
  CHECK(again.continuation["operation_id"] == first.continuation["operation_id"]);
  CHECK(again.receipt["recovered_without_resubmit"] == true);
  CHECK(again.receipt["operation_status"] == "Queued");
  CHECK(rig.peer.DeleteSubmits() == 1);
  // Another process (a restarted daemon) has no memo: it submits once more -- the bound on a crash's cost -- and the
  // duplicate operation deletes nothing that was not being deleted anyway.
  auto restarted = rig.Make(rig.Settings());
  Outcome resubmitted = RunAndWait(*restarted, task);
  CHECK(resubmitted.kind == OutcomeKind::kInProgress);
  CHECK(rig.peer.DeleteSubmits() == 2);
  CHECK(rig.peer.KeysOf(OperationIdOf(resubmitted)) == rig.peer.KeysOf(OperationIdOf(first)));
}

TEST_CASE("sfmc: a failed operation is restarted through the retry endpoint, then fails the task", "[sfmc]") {
  Rig rig(SfmcPeerOptions{}, {{"retry_failed_operations", 1}});
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  const long long operation = OperationIdOf(submitted);
  rig.peer.ForceStatus(operation, "Failed");
  Outcome restarted = RunAndWait(*rig.connector, Continue(task, submitted));
  REQUIRE(restarted.kind == OutcomeKind::kInProgress);
  CHECK(restarted.receipt["operation_status"] == "Restarted");
  CHECK(restarted.continuation["retries"] == 1);
  CHECK(restarted.retry_after == std::chrono::milliseconds(5000));
  CHECK(rig.Calls("POST", "/contacts/v1/operations/delete/" + std::to_string(operation) + "/retry").size() == 1);
  Outcome queued = RunAndWait(*rig.connector, Continue(task, restarted));
  CHECK(queued.receipt["operation_status"] == "Queued");
  rig.peer.ForceStatus(operation, "Failed");
  Outcome failed = RunAndWait(*rig.connector, Continue(task, queued));
  CHECK(failed.kind == OutcomeKind::kFailed);
  CHECK(failed.message.find(std::to_string(operation)) != std::string::npos);
  CHECK(failed.message.find("Failed") != std::string::npos);
  CHECK(rig.peer.DeleteSubmits() == 1);
  // An admin retries the dead-lettered task (its continuation cleared): a new operation, not the failed one again.
  Outcome fresh = RunAndWait(*rig.connector, task);
  REQUIRE(fresh.kind == OutcomeKind::kInProgress);
  CHECK(OperationIdOf(fresh) != operation);
  CHECK(rig.peer.DeleteSubmits() == 2);
}

TEST_CASE("sfmc: cancelled operations and an aborted delete phase fail the task", "[sfmc]") {
  SECTION("Cancelled") {
    Rig rig;
    rig.peer.SeedContact(kKey, kEmail);
    const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
    Outcome submitted = RunAndWait(*rig.connector, task);
    rig.peer.ForceStatus(OperationIdOf(submitted), "Cancelled");
    Outcome outcome = RunAndWait(*rig.connector, Continue(task, submitted));
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.receipt["operation_status"] == "Cancelled");
    CHECK(rig.Calls("POST", "/contacts/v1/operations/").empty());
  }
  SECTION("an Aborted delete phase (the contacts were restored)") {
    // A status answer written by hand: Completed, but the delete phase was aborted.
    RecordingServer tenant;
    tenant.server().set_keep_alive_max_count(1);
    tenant.server().Post("/v2/token", [&](const httplib::Request&, httplib::Response& res) {
      res.set_content(
          json{{"access_token", "t"}, {"expires_in", 1200}, {"rest_instance_url", tenant.base_url() + "/"}}.dump(),
          "application/json");
    });
    const std::string aborted = json{{"operation", {{"operationID", 77}, {"status", "Completed"}}},
                                     {"backgroundOperationsSummary",
                                      json::array({{{"backgroundOperationID", 77},
                                                    {"backgroundOperationStatusID", "Aborted"}}})}}
                                    .dump();
    // By value: `aborted` is destroyed before `tenant`, whose threads may still be answering a late request.
    tenant.server().Get("/contacts/v1/contacts/actions/delete/status",
                        [aborted](const httplib::Request&, httplib::Response& res) {
                          res.set_content(aborted, "application/json");
                        });
    tenant.Start();
    Rig rig;
    auto connector = rig.Make(rig.Settings({{"auth_base_url", tenant.base_url()}}));
    TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
    const long long now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    task.continuation = {{"operation_id", 77}, {"submitted_at", now}, {"interval_seconds", 5}};
    Outcome outcome = RunAndWait(*connector, task);
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.message.find("Aborted") != std::string::npos);
    CHECK(outcome.receipt["delete_phase_status"] == "Aborted");
  }
}

TEST_CASE("sfmc: the delete phase decides completion unless require_delete_phase is off", "[sfmc]") {
  SfmcPeerOptions options;
  options.queued_polls = 0;
  options.in_process_polls = 0;
  options.delete_phase_polls = 2;
  SECTION("waiting for backgroundOperationStatusID Completed") {
    Rig rig(options);
    rig.peer.SeedContact(kKey, kEmail);
    const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
    Outcome step = RunAndWait(*rig.connector, task);
    for (int i = 0; i < 2; ++i) {
      step = RunAndWait(*rig.connector, Continue(task, step));
      REQUIRE(step.kind == OutcomeKind::kInProgress);
      CHECK(step.receipt["operation_status"] == "Completed");
      CHECK(step.receipt["delete_phase_status"] == "Processing");
      CHECK(rig.peer.HasContact(kKey));
    }
    Outcome done = RunAndWait(*rig.connector, Continue(task, step));
    CHECK(done.kind == OutcomeKind::kDone);
    CHECK(done.receipt["deleted"] == true);
    CHECK_FALSE(rig.peer.HasContact(kKey));
  }
  SECTION("require_delete_phase = false: the suppression phase's Completed is enough") {
    Rig rig(options, {{"require_delete_phase", false}});
    rig.peer.SeedContact(kKey, kEmail);
    const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
    Outcome submitted = RunAndWait(*rig.connector, task);
    Outcome done = RunAndWait(*rig.connector, Continue(task, submitted));
    CHECK(done.kind == OutcomeKind::kDone);
    CHECK(done.receipt["deleted"] == false);
    CHECK(done.receipt["delete_phase_status"] == "Processing");
  }
}

TEST_CASE("sfmc: an operation the status endpoint does not know is submitted again, once", "[sfmc]") {
  Rig rig;
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  rig.peer.ForgetOperation(OperationIdOf(submitted));
  Outcome again = RunAndWait(*rig.connector, Continue(task, submitted));
  REQUIRE(again.kind == OutcomeKind::kInProgress);
  CHECK(again.continuation["resubmits"] == 1);
  CHECK(OperationIdOf(again) != OperationIdOf(submitted));
  CHECK(rig.peer.DeleteSubmits() == 2);
  rig.peer.ForgetOperation(OperationIdOf(again));
  Outcome failed = RunAndWait(*rig.connector, Continue(task, again));
  CHECK(failed.kind == OutcomeKind::kFailed);
  CHECK(failed.message.find("does not know") != std::string::npos);
  CHECK(rig.peer.DeleteSubmits() == 2);
}

TEST_CASE("sfmc: an operation that never ends fails after give_up_after_hours", "[sfmc]") {
  SfmcPeerOptions options;
  options.queued_polls = 1000;
  Rig rig(options, {{"give_up_after_hours", 24}});
  rig.peer.SeedContact(kKey, kEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  TaskInput old = Continue(task, submitted);
  old.continuation["submitted_at"] = old.continuation["submitted_at"].get<long long>() - 25 * 3600;
  Outcome outcome = RunAndWait(*rig.connector, old);
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("still Queued after 25 hours") != std::string::npos);
}

TEST_CASE("sfmc: a refused delete submission fails with Marketing Cloud's reason", "[sfmc]") {
  // The simulator refuses type=ids etc.; here a tenant that refuses every submission.
  RecordingServer tenant;
  tenant.server().set_keep_alive_max_count(1);
  tenant.server().Post("/v2/token", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        json{{"access_token", "t"}, {"expires_in", 1200}, {"rest_instance_url", tenant.base_url() + "/"}}.dump(),
        "application/json");
  });
  tenant.server().Post("/contacts/v1/contacts/actions/delete", [](const httplib::Request&, httplib::Response& res) {
    res.status = 400;
    res.set_content(json{{"operationInitiated", false},
                         {"hasErrors", true},
                         {"resultMessages",
                          json::array({{{"resultType", "Error"},
                                        {"resultCode", "ContactDeleteNotEnabled"},
                                        {"message", "Contact Delete is not enabled for " + kGivenKey}}})}}
                        .dump(),
                    "application/json");
  });
  tenant.Start();
  Rig rig;
  auto connector = rig.Make(rig.Settings({{"auth_base_url", tenant.base_url()}}));
  Outcome outcome = RunAndWait(*connector, Task(TaskAction::kDelete, {{"sfmc_contact_key", kGivenKey}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("400") != std::string::npos);
  CHECK(outcome.message.find("Contact Delete is not enabled for [redacted]") != std::string::npos);
}

TEST_CASE("sfmc: unusable settings stop start-up naming the setting", "[sfmc]") {
  Rig rig;
  auto message_of = [&](const json& settings) -> std::string {
    try {
      rig.Make(settings);
    } catch (const ConnectorConfigError& e) {
      return e.what();
    }
    return "";
  };
  CHECK_THAT(message_of(rig.Settings({{"client_secret_file", "missing.secret"}})),
             Catch::Contains("client_secret_file"));
  rig.dir.Write("empty.secret", "\n");
  CHECK_THAT(message_of(rig.Settings({{"client_secret_file", "empty.secret"}})), Catch::Contains("client_secret_file"));
  CHECK_THAT(message_of(rig.Settings({{"poll_initial_seconds", 600}, {"poll_max_seconds", 60}})),
             Catch::Contains("poll_max_seconds"));
  CHECK(message_of(rig.Settings()).empty());
}

TEST_CASE("sfmc: the settings schema is closed and names every setting the connector reads", "[sfmc]") {
  std::ifstream in(std::string(RIGHTSD_SOURCE_DIR) + "/schemas/connectors/sfmc.json");
  REQUIRE(in);
  json schema = json::parse(in);
  CHECK(schema["$schema"] == "http://json-schema.org/draft-07/schema#");
  CHECK(schema["additionalProperties"] == false);
  CHECK(schema["required"] == json::array({"subdomain", "client_id", "client_secret_file"}));
  std::set<std::string> properties;
  for (const auto& [name, _] : schema["properties"].items()) properties.insert(name);
  CHECK(properties == std::set<std::string>{"subdomain", "client_id", "client_secret_file", "account_id", "scope",
                                            "auth_base_url", "rest_base_url", "email_lookup", "email_is_contact_key",
                                            "max_contact_keys_per_email", "access_category", "require_delete_phase",
                                            "poll_initial_seconds", "poll_max_seconds", "give_up_after_hours",
                                            "retry_failed_operations", "suppression", "timeout_ms"});
  CHECK(schema["properties"]["suppression"]["additionalProperties"] == false);
  const auto* type = rightsd::connectors::FindConnectorType("sfmc");
  REQUIRE(type != nullptr);
  const json good = {{"subdomain", "mc563885gzs27c5t9-63k636ttgm"},
                     {"client_id", "7rqhs7mfvkhpxt6yiuq0r45s"},
                     {"client_secret_file", "sfmc.secret"},
                     {"account_id", "7281698"},
                     {"suppression", {{"data_extension_key", "CCPA-DNS"}, {"key_source", "email"}}}};
  CHECK_NOTHROW(rightsd::connectors::ValidateSettings(*type, "marketing", good));
  json numeric_mid = good;
  numeric_mid["account_id"] = 7281698;
  CHECK_NOTHROW(rightsd::connectors::ValidateSettings(*type, "marketing", numeric_mid));
  auto refused = [&](json settings) -> std::string {
    try {
      rightsd::connectors::ValidateSettings(*type, "marketing", settings);
    } catch (const ConnectorConfigError& e) {
      return e.what();
    }
    return "";
  };
  json inline_secret = good;
  inline_secret["client_secret"] = "never inline";
  CHECK_FALSE(refused(inline_secret).empty());
  json no_subdomain = good;
  no_subdomain.erase("subdomain");
  CHECK_FALSE(refused(no_subdomain).empty());
  json bad_source = good;
  bad_source["suppression"]["key_source"] = "phone";
  CHECK_THAT(refused(bad_source), Catch::Contains("suppression"));
  json bad_mid = good;
  bad_mid["account_id"] = "MID-7281698";
  CHECK_THAT(refused(bad_mid), Catch::Contains("account_id"));
  json bad_poll = good;
  bad_poll["poll_initial_seconds"] = 0;
  CHECK_THAT(refused(bad_poll), Catch::Contains("poll_initial_seconds"));
}

// --- the daemon with the connector against the simulator --------------------------------------------------------

namespace {

// A marketing system on the simulator; polls start after a second and never wait more than two.
std::string MarketingSystem(const SfmcPeer& peer, const std::string& extra_settings = "") {
  return fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "marketing"
connector = "sfmc"
categories = ["identifiers"]
request_types = ["access", "delete", "opt_out", "limit"]
max_attempts = 6
[systems.settings]
subdomain = "mc-test-tenant"
client_id = "{}"
client_secret_file = "sfmc.secret"
auth_base_url = "{}"
poll_initial_seconds = 1
poll_max_seconds = 2
timeout_ms = 5000
{}
[systems.settings.suppression]
data_extension_key = "CCPA-DoNotSell"
key_field = "SubscriberKey"
[systems.settings.suppression.values]
Reason = "CCPA request"
)toml",
                     peer.options().client_id, peer.base_url(), extra_settings);
}

json WaitForRequest(Daemon& d, const std::string& token, const std::string& id,
                    const std::function<bool(const json&)>& condition, double seconds) {
  json last;
  const bool ok = Eventually([&] {
    last = d.Call("GET", "/v1/requests/" + id, token).json();
    return condition(last);
  }, seconds);
  INFO(last.dump(2));
  REQUIRE(ok);
  return last;
}

json MarketingTask(const json& request) {
  for (const auto& t : request["tasks"]) {
    if (t["system"] == "marketing") return t;
  }
  return json();
}

std::string Submit(Daemon& d, const DaemonEnv& env, const std::string& type, bool verify) {
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              json{{"type", type},
                                   {"subject", {{"identities", json::array({{{"kind", "email"}, {"value", kEmail}},
                                                                            {{"kind", "mrn"}, {"value", kMrn}}})}}}}
                                  .dump());
  INFO(created.body);
  REQUIRE(created.status == 201);
  const std::string id = created.json()["id"];
  if (verify) {
    REQUIRE(d.Call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
                   R"({"method":"account_login","level":"reasonably_high"})")
                .status == 200);
  }
  return id;
}

// The daemon's pooled connections must outlive the waits between polls here: a connection the peer closed while
// idle costs the shared HTTP client one failed request, which would blur the attempt counts these tests check.
// The daemon is stopped before the peer, so the long keep-alive never delays the peer's Stop.
SfmcPeerOptions WithLongKeepAlive(SfmcPeerOptions options) {
  options.keep_alive_seconds = 30;
  return options;
}

struct EngineRig {
  explicit EngineRig(SfmcPeerOptions options = {}, const std::string& extra_settings = "")
      : peer(WithLongKeepAlive(std::move(options))), env(true) {
    peer.Start();
    peer.SeedContact(kKey, kEmail);
    peer.SeedContact("someone-else", "someone@example.com");
    peer.AddDataExtension("CCPA-DoNotSell", {"SubscriberKey"});
    peer.WriteClientSecret(env.dir() / "sfmc.secret");
    env.WriteConfig(env.db().url(), MarketingSystem(peer, extra_settings));
  }
  SfmcPeer peer;
  DaemonEnv env;
};

bool Completed(const json& r) { return r["status"] == "completed"; }

}  // namespace

TEST_CASE("sfmc: engine: a delete completes only after several polls, without holding a worker",
          "[sfmc][engine][integration]") {
  SfmcPeerOptions options;
  options.queued_polls = 2;
  options.in_process_polls = 2;
  EngineRig rig(options);
  Daemon d(rig.env);
  REQUIRE(d.WaitReady());
  const std::string id = Submit(d, rig.env, "delete", true);
  // While the operation is queued the task is running with its operation id stored, and no worker holds it.
  REQUIRE(Eventually([&] { return rig.peer.OperationIds().size() == 1; }, 20));
  REQUIRE(Eventually([&] {
    return rig.env.db().Scalar("SELECT count(*) FROM tasks WHERE system = 'marketing' AND state = 'running' AND "
                               "continuation ? 'operation_id' AND lease_owner IS NULL") == "1";
  }, 10));
  const json done = WaitForRequest(d, rig.env.token("viewer"), id, Completed, 60);
  const json task = MarketingTask(done);
  CHECK(task["state"] == "done");
  CHECK(task["attempts"] == 1);
  CHECK(task["outcome"]["operation_status"] == "Completed");
  CHECK(task["outcome"]["delete_phase_status"] == "Completed");
  CHECK(task["outcome"]["polls"] == 5);
  const long long operation = rig.peer.OperationIds().at(0);
  CHECK(task["outcome"]["operation_id"] == operation);
  CHECK(rig.peer.PollsOf(operation) == 5);
  CHECK(rig.peer.DeleteSubmits() == 1);
  CHECK_FALSE(rig.peer.HasContact(kKey));
  CHECK(rig.peer.HasContact("someone-else"));
  // Polls waited 1 s, then 2 s (the cap): the growing interval, not a busy loop.
  const auto polls = rig.peer.recorder().CallsTo("GET", "/contacts/v1/contacts/actions/delete/status");
  REQUIRE(polls.size() == 5);
  const auto submit = rig.peer.recorder().CallsTo("POST", "/contacts/v1/contacts/actions/delete").at(0);
  CHECK(polls[0].at - submit.at >= 900ms);
  for (std::size_t i = 1; i < polls.size(); ++i) CHECK(polls[i].at - polls[i - 1].at >= 1900ms);
  // Nothing identifying reached the log, the task row or the simulator beyond what Marketing Cloud takes.
  CHECK(d.Log().find(kEmail) == std::string::npos);
  CHECK(d.Log().find(kKey) == std::string::npos);
  CHECK(task.dump().find(kKey) == std::string::npos);
  for (const auto& call : rig.peer.recorder().Calls()) CHECK(call.body.find(kMrn) == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("sfmc: engine: a daemon stopped between polls is succeeded by one that resumes them without a second submit",
          "[sfmc][engine][integration]") {
  for (const bool kill : {true, false}) {
    DYNAMIC_SECTION((kill ? "SIGKILL" : "SIGTERM") << " after the submission") {
      SfmcPeerOptions options;
      options.queued_polls = 2;
      options.in_process_polls = 2;
      EngineRig rig(options);
      std::string id;
      long long operation = 0;
      {
        Daemon first(rig.env, "first");
        REQUIRE(first.WaitReady());
        id = Submit(first, rig.env, "delete", true);
        // The submission is committed (the operation id is in the database) and at least one poll has been made.
        REQUIRE(Eventually([&] {
          return rig.env.db().Scalar("SELECT count(*) FROM tasks WHERE system = 'marketing' AND "
                                     "continuation ? 'operation_id'") == "1";
        }, 20));
        operation = rig.peer.OperationIds().at(0);
        REQUIRE(Eventually([&] { return rig.peer.PollsOf(operation) >= 1; }, 10));
        if (kill) {
          first.Kill();
        } else {
          CHECK(first.Stop() == 0);
        }
      }
      const int polls_before = rig.peer.PollsOf(operation);
      CHECK(polls_before < 5);
      CHECK(rig.env.db().Scalar("SELECT state FROM tasks WHERE system = 'marketing'") == "running");
      Daemon second(rig.env, "second");
      REQUIRE(second.WaitReady());
      const json done = WaitForRequest(second, rig.env.token("viewer"), id, Completed, 60);
      const json task = MarketingTask(done);
      CHECK(task["state"] == "done");
      CHECK(task["outcome"]["operation_id"] == operation);
      CHECK(rig.peer.PollsOf(operation) == 5);
      CHECK(rig.peer.PollsOf(operation) > polls_before);
      CHECK(rig.peer.DeleteSubmits() == 1);
      CHECK(rig.peer.OperationIds().size() == 1);
      CHECK_FALSE(rig.peer.HasContact(kKey));
      // The second daemon fetched its own token: tokens are per process, never stored.
      CHECK(rig.peer.TokenRequests() == 2);
      CHECK(second.Stop() == 0);
    }
  }
}

TEST_CASE("sfmc: engine: access, opt-out and limit end to end", "[sfmc][engine][integration]") {
  EngineRig rig;
  Daemon d(rig.env);
  REQUIRE(d.WaitReady());

  const std::string access = Submit(d, rig.env, "access", true);
  const json accessed = WaitForRequest(d, rig.env.token("viewer"), access, Completed, 30);
  CHECK(MarketingTask(accessed)["state"] == "done");
  CHECK(MarketingTask(accessed)["outcome"]["records"] == 1);
  const auto package = d.Call("GET", "/v1/requests/" + access + "/package", rig.env.token("submitter"));
  INFO(package.body);
  REQUIRE(package.status == 200);
  CHECK(package.body.find(kKey) != std::string::npos);
  CHECK(package.json()["systems"].contains("marketing"));

  const std::string opt_out = Submit(d, rig.env, "opt_out", false);
  const json opted = WaitForRequest(d, rig.env.token("viewer"), opt_out, Completed, 30);
  CHECK(MarketingTask(opted)["state"] == "done");
  CHECK(MarketingTask(opted)["action"] == "opt_out");
  CHECK(MarketingTask(opted)["outcome"]["rows_upserted"] == 1);
  const auto rows = rig.peer.Rows("CCPA-DoNotSell");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0] == json{{"SubscriberKey", kKey}, {"Reason", "CCPA request"}});

  const std::string limit = Submit(d, rig.env, "limit", false);
  const json limited = WaitForRequest(d, rig.env.token("viewer"), limit, Completed, 30);
  CHECK(MarketingTask(limited)["state"] == "done");
  CHECK(MarketingTask(limited)["action"] == "limit");
  CHECK(rig.peer.Rows("CCPA-DoNotSell").size() == 1);  // the same key, upserted again

  CHECK(rig.peer.TokenRequests() == 1);
  CHECK(d.Log().find(kEmail) == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("sfmc: engine: a 429 retryAfter is waited out, on the submission and on a poll",
          "[sfmc][engine][integration]") {
  SfmcPeerOptions options;
  options.queued_polls = 1;
  options.in_process_polls = 0;
  EngineRig rig(options);
  // The status fault first: a fault's prefix is matched in order, and the submission's prefix covers the status path.
  rig.peer.RateLimitNext(1, 3, "/contacts/v1/contacts/actions/delete/status");
  rig.peer.RateLimitNext(1, 3, "/contacts/v1/contacts/actions/delete");
  Daemon d(rig.env);
  REQUIRE(d.WaitReady());
  const std::string id = Submit(d, rig.env, "delete", true);
  const json done = WaitForRequest(d, rig.env.token("viewer"), id, Completed, 60);
  const json task = MarketingTask(done);
  std::string trace;
  for (const auto& c : rig.peer.recorder().Calls()) trace += c.method + " " + c.target + "\n";
  INFO(trace);
  INFO(rig.env.db().Scalar("SELECT string_agg(action || ':' || coalesce(detail::text, ''), ' | ') FROM audit_events"));
  CHECK(task["state"] == "done");
  CHECK(task["attempts"] == 2);  // the submission's 429 is one attempt; the poll's is not (the operation was kept)
  const auto submits = rig.peer.recorder().CallsTo("POST", "/contacts/v1/contacts/actions/delete");
  REQUIRE(submits.size() == 2);
  CHECK(submits[1].at - submits[0].at >= 2900ms);
  const auto polls = rig.peer.recorder().CallsTo("GET", "/contacts/v1/contacts/actions/delete/status");
  REQUIRE(polls.size() == 3);  // 429, Queued, Completed
  CHECK(polls[1].at - polls[0].at >= 2900ms);
  CHECK(rig.peer.OperationIds().size() == 1);
  CHECK(rig.peer.DeleteSubmits() == 1);  // the injected 429 answered before the simulator's delete handler
  CHECK(d.Stop() == 0);
}
