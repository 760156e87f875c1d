// The Mailchimp connector against the Mailchimp simulator (MailchimpPeer) over the real cpprestsdk client: every
// action in every configured audience, the subscriber hash of an email with upper-case letters, problem+json errors
// in the task's text without identity values, the 10-connection cap under a burst of tasks, settings; and the
// daemon running a Mailchimp access request end to end and one opt-out fanned out to HubSpot and Mailchimp.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "connectors/connector.h"
#include "connectors/http_client.h"
#include "connectors/mailchimp/mailchimp.h"
#include "harness.h"
#include "peers/hubspot/hubspot_peer.h"
#include "peers/mailchimp/mailchimp_peer.h"
#include "peers/sfmc/sfmc_peer.h"
#include "peers/recording_server.h"

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using rightsd::connectors::Connector;
using rightsd::connectors::ConnectorConfigError;
using rightsd::connectors::ConnectorEnv;
using rightsd::connectors::Correction;
using rightsd::connectors::HttpClient;
using rightsd::connectors::HttpRequest;
using rightsd::connectors::HttpResponse;
using rightsd::connectors::Identity;
using rightsd::connectors::MakeCpprestHttpClient;
using rightsd::connectors::Outcome;
using rightsd::connectors::OutcomeKind;
using rightsd::connectors::TaskAction;
using rightsd::connectors::TaskInput;
using rightsd::connectors::mailchimp::ApiRootForKey;
using rightsd::connectors::mailchimp::MakeMailchimpConnector;
using rightsd::connectors::mailchimp::SubscriberHash;
using rightsd::test::MailchimpPeer;
using rightsd::test::MailchimpPeerOptions;

const std::string kEmail = "jane.doe@example.com";
const std::string kUpperEmail = "Jane.Doe@Example.COM";
// `printf %s jane.doe@example.com | md5sum`, worked out outside this code.
const std::string kEmailHash = "0cba00ca3da1b283a57287bcceb17e35";
const std::string kOtherEmail = "someone.else@example.com";
const std::string kListA = "a1b2c3d4e5";
const std::string kListB = "f6a7b8c9d0";

std::string NewUuid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 36; ++i) out += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : kHex[rng() % 16];
  return out;
}

std::string LowerCopy(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-mailchimp-" + NewUuid())) {
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

TaskInput Task(TaskAction action, std::vector<Identity> identities, std::vector<Correction> corrections = {}) {
  TaskInput input;
  input.request_id = NewUuid();
  input.task_id = NewUuid();
  input.system = "mailchimp-test";
  input.action = action;
  input.request_type = std::string(rightsd::connectors::ToString(action));
  input.identities = std::move(identities);
  input.corrections = std::move(corrections);
  return input;
}

// What no outcome may hold: identity values, correction values, subscriber hashes.
void ExpectClean(const Outcome& outcome, const TaskInput& input) {
  const std::string text =
      LowerCopy(outcome.message + " " + outcome.receipt.dump() + " " + outcome.continuation.dump());
  INFO("outcome text: " << text);
  for (const auto& i : input.identities) {
    CHECK(text.find(LowerCopy(i.value)) == std::string::npos);
    if (i.kind == "email") CHECK(text.find(SubscriberHash(i.value)) == std::string::npos);
  }
  for (const auto& c : input.corrections) CHECK(text.find(LowerCopy(c.value)) == std::string::npos);
}

Outcome RunAndWait(Connector& connector, const TaskInput& input, std::chrono::seconds limit = 20s) {
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
  std::this_thread::sleep_for(20ms);
  lock.lock();
  REQUIRE(state->calls == 1);
  ExpectClean(*state->outcome, input);
  return *state->outcome;
}

struct Rig {
  explicit Rig(MailchimpPeerOptions options = TwoAudiences(), json extra = json::object()) : peer(std::move(options)) {
    peer.Start();
    dir.Write("mailchimp.key", peer.options().api_key + "\n");
    connector = Make(extra);
  }
  static MailchimpPeerOptions TwoAudiences() {
    MailchimpPeerOptions o;
    o.audiences = {kListA, kListB};
    return o;
  }
  std::unique_ptr<Connector> Make(const json& extra, std::vector<std::string> categories = {"marketing"}) {
    json settings = {{"api_key_file", "mailchimp.key"},
                     {"base_url", peer.base_url()},
                     {"audiences", peer.options().audiences},
                     {"timeout_ms", 5000}};
    settings.update(extra);
    ConnectorEnv env;
    env.system = "mailchimp-test";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = std::move(categories);
    return MakeMailchimpConnector(settings, env);
  }

  TempDir dir;
  MailchimpPeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

HttpResponse Send(HttpClient& client, HttpRequest request) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<HttpResponse> response;
  client.Send(std::move(request), [&](HttpResponse r) {
    std::lock_guard lock(mu);
    response = std::move(r);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait_for(lock, 10s, [&] { return response.has_value(); });
  return response.value_or(HttpResponse{});
}

}  // namespace

TEST_CASE("mailchimp: an email with upper-case letters hashes to the member's id", "[mailchimp]") {
  CHECK(SubscriberHash(kEmail) == kEmailHash);
  CHECK(SubscriberHash(kUpperEmail) == kEmailHash);
  CHECK(MailchimpPeer::Hash(kUpperEmail) == kEmailHash);
  Rig rig;
  const std::string id = rig.peer.AddMember(kListA, kEmail, {{"FNAME", "Jane"}});
  REQUIRE(id == kEmailHash);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kUpperEmail}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  REQUIRE(out.records["marketing"].size() == 1);
  CHECK(out.records["marketing"][0]["id"] == kEmailHash);
  CHECK(rig.peer.recorder().CallsTo("GET", "/3.0/lists/" + kListA + "/members/" + kEmailHash).size() == 1);
  for (const auto& call : rig.peer.recorder().Calls()) {
    CHECK(call.target.find("Jane") == std::string::npos);  // nothing of the address but its hash goes in a URL
  }
}

TEST_CASE("mailchimp: access returns the member from each configured audience", "[mailchimp]") {
  Rig rig;
  rig.peer.AddMember(kListA, kEmail, {{"FNAME", "Jane"}, {"LNAME", "Doe"}});
  rig.peer.AddMember(kListB, kEmail, {{"FNAME", "Jane"}}, "unsubscribed");
  rig.peer.AddMember(kListA, kOtherEmail, {{"FNAME", "Someone"}});
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}, {"phone", "+14155550100"}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  const json& records = out.records["marketing"];
  REQUIRE(records.size() == 2);
  CHECK(records[0]["list_id"] == kListA);
  CHECK(records[0]["merge_fields"]["LNAME"] == "Doe");
  CHECK(records[1]["list_id"] == kListB);
  CHECK(records[1]["status"] == "unsubscribed");
  CHECK_FALSE(records[0].contains("_links"));
  CHECK(out.receipt["members_found"] == 2);
  CHECK(out.receipt["audiences"][kListA]["found"] == 1);
  // Basic auth with the API key as the password.
  const auto calls = rig.peer.recorder().Calls();
  REQUIRE_FALSE(calls.empty());
  CHECK(calls[0].headers.find("Authorization")->second.rfind("Basic ", 0) == 0);
  // Each audience is checked once per connector, not once per task.
  RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kOtherEmail}}));
  CHECK(rig.peer.recorder().CallsTo("GET", "/3.0/lists/" + kListA).size() == 2 + 1);  // 2 member reads + 1 list read
  std::size_t list_reads = 0;
  for (const auto& c : rig.peer.recorder().Calls()) list_reads += c.path == "/3.0/lists/" + kListA;
  CHECK(list_reads == 1);
}

TEST_CASE("mailchimp: a member in no audience is not found, an unknown audience fails naming it", "[mailchimp]") {
  Rig rig;
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kNotFound);
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}})).kind == OutcomeKind::kNotFound);
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}})).kind == OutcomeKind::kNotFound);
  auto mistyped = rig.Make({{"audiences", {"zzzzzzzzzz"}}});
  const Outcome out = RunAndWait(*mistyped, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(out.kind == OutcomeKind::kFailed);
  CHECK(out.message.find("zzzzzzzzzz") != std::string::npos);
}

TEST_CASE("mailchimp: delete is the permanent delete in every audience and a re-run has no effect", "[mailchimp]") {
  Rig rig;
  rig.peer.AddMember(kListA, kEmail);
  rig.peer.AddMember(kListB, kEmail);
  const std::string other = rig.peer.AddMember(kListA, kOtherEmail);
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  const Outcome out = RunAndWait(*rig.connector, task);
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["endpoint"] == "delete-permanent");
  CHECK(out.receipt["audiences"][kListA]["deleted"] == 1);
  CHECK(out.receipt["audiences"][kListB]["deleted"] == 1);
  for (const auto& list : {kListA, kListB}) {
    CHECK_FALSE(rig.peer.Member(list, kEmailHash).has_value());
    CHECK(rig.peer.Forgotten(list, kEmailHash));
    const auto calls = rig.peer.recorder().CallsTo("POST", "/3.0/lists/" + list + "/members/" + kEmailHash +
                                                               "/actions/delete-permanent");
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].body.empty());
  }
  CHECK(rig.peer.recorder().CallsTo("DELETE", "/").empty());
  CHECK(rig.peer.Member(kListA, other).has_value());
  // Mailchimp refuses to take the address back.
  rightsd::connectors::HttpRequest add;
  add.method = "POST";
  add.url = rig.peer.base_url() + "/lists/" + kListA + "/members";
  add.headers = {{"Authorization", rig.peer.recorder().Calls()[0].headers.find("Authorization")->second},
                 {"Content-Type", "application/json"}};
  add.body = json{{"email_address", kEmail}, {"status", "subscribed"}}.dump();
  const HttpResponse readd = Send(*rig.http, add);
  CHECK(readd.status == 400);
  CHECK(readd.body.find("Forgotten Email Not Subscribed") != std::string::npos);

  const Outcome again = RunAndWait(*rig.connector, task);
  CHECK(again.kind == OutcomeKind::kNotFound);
  CHECK(rig.peer.Forgotten(kListA, kEmailHash));
}

TEST_CASE("mailchimp: correct PATCHes the mapped merge fields and leaves unmapped fields to a person", "[mailchimp]") {
  Rig rig;
  rig.peer.AddMember(kListA, kEmail, {{"FNAME", "Jane"}, {"LNAME", "Doe"}});
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                      {{"first_name", "Janet"}, {"phone", "+1 415 555 0199"}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["fields_set"] == json::array({"merge_fields.FNAME", "merge_fields.PHONE"}));
  CHECK(out.receipt["audiences"][kListA]["corrected"] == 1);
  CHECK(out.receipt["audiences"][kListB]["absent"] == 1);
  const json member = *rig.peer.Member(kListA, kEmailHash);
  CHECK(member["merge_fields"]["FNAME"] == "Janet");
  CHECK(member["merge_fields"]["LNAME"] == "Doe");
  CHECK(member["merge_fields"]["PHONE"] == "+1 415 555 0199");
  const auto patches = rig.peer.recorder().CallsTo("PATCH", "/3.0/lists/" + kListA + "/members/" + kEmailHash);
  REQUIRE(patches.size() == 1);
  CHECK(json::parse(patches[0].body) == json{{"merge_fields", {{"FNAME", "Janet"}, {"PHONE", "+1 415 555 0199"}}}});

  const Outcome partial = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                          {{"last_name", "Roe"}, {"shoe_size", "41"}}));
  CHECK(partial.kind == OutcomeKind::kNeedsManual);
  CHECK(partial.message.find("shoe_size") != std::string::npos);
  CHECK(rig.peer.Member(kListA, kEmailHash)->at("merge_fields")["LNAME"] == "Roe");
  const Outcome nothing = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}}, {{"shoe_size", "42"}}));
  CHECK(nothing.kind == OutcomeKind::kNeedsManual);
}

TEST_CASE("mailchimp: opt_out sets the status unsubscribed in every audience", "[mailchimp]") {
  Rig rig;
  rig.peer.AddMember(kListA, kEmail);
  rig.peer.AddMember(kListB, kEmail);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kUpperEmail}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(rig.peer.Member(kListA, kEmailHash)->at("status") == "unsubscribed");
  CHECK(rig.peer.Member(kListB, kEmailHash)->at("status") == "unsubscribed");
  for (const auto& call : rig.peer.recorder().CallsTo("PATCH", "/3.0/lists/")) {
    CHECK(json::parse(call.body) == json{{"status", "unsubscribed"}});
  }
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"mailchimp_id", kEmailHash}})).kind == OutcomeKind::kDone);
  CHECK_FALSE(rig.connector->Supports(TaskAction::kLimit));
  CHECK_FALSE(rig.connector->Supports(TaskAction::kDeidentify));
}

TEST_CASE("mailchimp: problem+json details reach the task's error text without identity values", "[mailchimp]") {
  Rig rig;
  rig.peer.AddMember(kListA, kEmail);
  rig.peer.AddMember(kListA, kOtherEmail);
  // Moving the address onto another member's: 400 "Member Exists", whose detail quotes that address.
  const Outcome exists = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                         {{"email", kOtherEmail}}));
  CHECK(exists.kind == OutcomeKind::kFailed);
  CHECK(exists.message.find("400") != std::string::npos);
  CHECK(exists.message.find("Member Exists") != std::string::npos);
  CHECK(exists.message.find("[redacted] is already a list member") != std::string::npos);
  CHECK(exists.message.find("instance ") != std::string::npos);
  CHECK(exists.message.find(kListA) != std::string::npos);

  const Outcome invalid = RunAndWait(*rig.Make({{"merge_fields", {{"first_name", "NOSUCH"}}}}),
                                     Task(TaskAction::kCorrect, {{"email", kEmail}}, {{"first_name", "Janet"}}));
  CHECK(invalid.kind == OutcomeKind::kFailed);
  CHECK(invalid.message.find("Invalid Resource") != std::string::npos);
  CHECK(invalid.message.find("merge_fields.NOSUCH") != std::string::npos);

  rig.peer.FailNext(1, 503, "Service Unavailable", "The service is temporarily down for maintenance.");
  const Outcome down = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(down.kind == OutcomeKind::kRetry);
  CHECK(down.message.find("temporarily down for maintenance") != std::string::npos);

  rig.peer.FailNext(1, 429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.");
  const Outcome busy = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(busy.kind == OutcomeKind::kRetry);
  CHECK(busy.retry_after == std::chrono::milliseconds(2000));
  CHECK(busy.message.find("simultaneous connections") != std::string::npos);

  rig.dir.Write("wrong.key", "ffffffffffffffffffffffffffffffff-us21");
  const Outcome refused = RunAndWait(*rig.Make({{"api_key_file", "wrong.key"}}), Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(refused.kind == OutcomeKind::kFailed);
  CHECK(refused.message.find("API Key Invalid") != std::string::npos);
  CHECK(refused.message.find("wrong datacenter") != std::string::npos);

  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"phone", "+14155550100"}})).kind == OutcomeKind::kFailed);
}

TEST_CASE("mailchimp: the simulator refuses an eleventh simultaneous connection", "[mailchimp]") {
  // The control for the cap test below: a client that does not hold back is refused.
  MailchimpPeer peer;
  // Long enough to outlast a SYN retransmitted after 1 s: httplib listens with a backlog of 5, so some of a burst
  // of connections only get through on the retry.
  peer.SetDelay(1500ms);
  peer.Start();
  auto http = MakeCpprestHttpClient();
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0, too_many = 0;
  for (int i = 0; i < 16; ++i) {
    HttpRequest request;
    request.url = peer.base_url() + "/lists/" + peer.options().audiences[0];
    request.headers = {{"Authorization", "Basic " + std::string("dXNlcjowMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZi11czIx")}};
    http->Send(request, [&](HttpResponse r) {
      std::lock_guard lock(mu);
      ++answered;
      if (r.status == 429) ++too_many;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 20s, [&] { return answered == 16; }));
  CHECK(too_many > 0);
  CHECK(peer.TooManyConnections() == too_many);
  CHECK(peer.MaxInFlight() > 10);
}

TEST_CASE("mailchimp: the 10-connection cap is never exceeded under a burst of tasks", "[mailchimp]") {
  Rig rig;
  rig.peer.SetDelay(100ms);
  constexpr int kTasks = 40;
  std::vector<TaskInput> tasks;
  for (int i = 0; i < kTasks; ++i) {
    const std::string email = fmt::format("burst{}@example.com", i);
    rig.peer.AddMember(kListA, email);
    tasks.push_back(Task(i % 2 ? TaskAction::kOptOut : TaskAction::kAccess, {{"email", email}}));
  }
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<OutcomeKind> kinds;
  };
  auto state = std::make_shared<State>();
  for (const auto& t : tasks) {
    rig.connector->Run(t, [state](Outcome o) {
      std::lock_guard lock(state->mu);
      state->kinds.push_back(o.kind);
      state->cv.notify_all();
    });
  }
  std::unique_lock lock(state->mu);
  REQUIRE(state->cv.wait_for(lock, 60s, [&] { return state->kinds.size() == kTasks; }));
  for (auto kind : state->kinds) CHECK(kind == OutcomeKind::kDone);
  CHECK(rig.peer.TooManyConnections() == 0);
  CHECK(rig.peer.MaxInFlight() <= 10);
  CHECK(rig.peer.MaxInFlight() >= 5);  // the tasks did run side by side, up to the cap
  std::size_t member_calls = 0;
  for (const auto& c : rig.peer.recorder().Calls()) member_calls += c.path.find("/members/") != std::string::npos;
  CHECK(member_calls == 2 * kTasks);  // each task in both audiences, none refused and sent again
}

TEST_CASE("mailchimp: settings are checked at start-up", "[mailchimp]") {
  CHECK(ApiRootForKey("0123456789abcdef0123456789abcdef-us21") == "https://us21.api.mailchimp.com/3.0");
  CHECK(ApiRootForKey("0123456789abcdef0123456789abcdef") == "");
  CHECK(ApiRootForKey("key-US21") == "");
  Rig rig;
  const auto* type = rightsd::connectors::FindConnectorType("mailchimp");
  REQUIRE(type != nullptr);
  CHECK_NOTHROW(rightsd::connectors::ValidateSettings(*type, "mc", {{"api_key_file", "k"}, {"audiences", {"abc123"}}}));
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "mc", {{"api_key_file", "k"}}), ConnectorConfigError);
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "mc", {{"api_key_file", "k"}, {"audiences", json::array()}}),
                  ConnectorConfigError);
  CHECK_THROWS_AS(
      rightsd::connectors::ValidateSettings(*type, "mc", {{"api_key_file", "k"}, {"audiences", {"a"}}, {"max_connections", 11}}),
      ConnectorConfigError);
  CHECK_THROWS_AS(rig.Make({{"api_key_file", "missing.key"}}), ConnectorConfigError);
  rig.dir.Write("nodc.key", "0123456789abcdef0123456789abcdef");
  CHECK_NOTHROW(rig.Make({{"api_key_file", "nodc.key"}}));  // base_url given: no data centre needed
  CHECK_THROWS_AS(rig.Make({{"api_key_file", "nodc.key"}, {"base_url", nullptr}}), ConnectorConfigError);
  CHECK_THROWS_AS(rig.Make({{"category", "elsewhere"}}), ConnectorConfigError);
}

TEST_CASE("mailchimp: the daemon answers an access request end to end", "[mailchimp][integration]") {
  using namespace rightsd::test;
  MailchimpPeer peer;
  peer.Start();
  peer.AddMember(peer.options().audiences[0], "Lee.Mailchimp@example.com", {{"FNAME", "Lee"}, {"LNAME", "Marsh"}});
  DaemonEnv env(true);
  std::ofstream(env.dir() / "mailchimp.key") << peer.options().api_key << "\n";
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "newsletter"
connector = "mailchimp"
categories = ["marketing"]
request_types = ["access", "delete", "correct", "opt_out"]
[systems.settings]
api_key_file = "mailchimp.key"
base_url = "{}"
audiences = ["{}"]
timeout_ms = 5000
)toml",
                                              peer.base_url(), peer.options().audiences[0]));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              R"({"type":"access","subject":{"identities":[{"kind":"email","value":"LEE.mailchimp@example.com"}]}})");
  REQUIRE(created.status == 201);
  const std::string id = created.json()["id"];
  REQUIRE(d.Call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
                 R"({"method":"account_login","level":"reasonably_high"})")
              .status == 200);
  json last;
  REQUIRE(Eventually([&] {
    last = d.Call("GET", "/v1/requests/" + id, env.token("viewer")).json();
    return last["status"] == "completed";
  }, 30));
  INFO(last.dump(2));
  CHECK(last["tasks"][0]["state"] == "done");
  const auto package = d.Call("GET", "/v1/requests/" + id + "/package", env.token("submitter"));
  INFO(package.body);
  REQUIRE(package.status == 200);
  CHECK(package.body.find("Marsh") != std::string::npos);
  CHECK(package.json()["systems"].contains("newsletter"));
  CHECK(LowerCopy(d.Log()).find("lee.mailchimp@example.com") == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("mailchimp: one opt_out request fans out to HubSpot, Mailchimp and Marketing Cloud",
          "[mailchimp][hubspot][sfmc][integration]") {
  using namespace rightsd::test;
  MailchimpPeer mailchimp;
  mailchimp.Start();
  const std::string list = mailchimp.options().audiences[0];
  const std::string hash = mailchimp.AddMember(list, "casey@example.com");
  HubspotPeer hubspot;
  hubspot.Start();
  const std::string contact = hubspot.AddContact({{"email", "casey@example.com"}, {"firstname", "Casey"}});
  rightsd::test::SfmcPeer sfmc;
  sfmc.Start();
  sfmc.AddDataExtension("CCPA-DoNotSell", {"SubscriberKey"});
  sfmc.SeedContact("0031x00000CaseyQ", "casey@example.com");
  DaemonEnv env(true);
  sfmc.WriteClientSecret(env.dir() / "sfmc.secret");
  std::ofstream(env.dir() / "mailchimp.key") << mailchimp.options().api_key << "\n";
  std::ofstream(env.dir() / "hubspot.token") << hubspot.options().token << "\n";
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "crm-marketing"
connector = "hubspot"
categories = ["identifiers"]
request_types = ["access", "delete", "opt_out"]
[systems.settings]
base_url = "{}"
access_token_file = "hubspot.token"
opt_out_properties = {{ ccpa_do_not_sell = "true", hs_email_optout = "true" }}
timeout_ms = 5000
[[systems]]
name = "newsletter"
connector = "mailchimp"
categories = ["marketing"]
request_types = ["access", "delete", "opt_out"]
[systems.settings]
api_key_file = "mailchimp.key"
base_url = "{}"
audiences = ["{}"]
timeout_ms = 5000
[[systems]]
name = "marketing-cloud"
connector = "sfmc"
categories = ["identifiers"]
request_types = ["access", "delete", "opt_out"]
[systems.settings]
subdomain = "mc-test-tenant"
client_id = "{}"
client_secret_file = "sfmc.secret"
auth_base_url = "{}"
timeout_ms = 5000
[systems.settings.suppression]
data_extension_key = "CCPA-DoNotSell"
key_field = "SubscriberKey"
values = {{ Reason = "CCPA request" }}
)toml",
                                              hubspot.base_url(), mailchimp.base_url(), list,
                                              sfmc.options().client_id, sfmc.base_url()));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  // Opt-outs need no verification: the tasks start at once.
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              R"({"type":"opt_out","channel":"gpc","subject":{"identities":[{"kind":"email","value":"Casey@Example.com"}]}})");
  INFO(created.body);
  REQUIRE(created.status == 201);
  const std::string id = created.json()["id"];
  json last;
  REQUIRE(Eventually([&] {
    last = d.Call("GET", "/v1/requests/" + id, env.token("viewer")).json();
    return last["status"] == "completed";
  }, 30));
  INFO(last.dump(2));
  REQUIRE(last["tasks"].size() == 3);
  for (const auto& t : last["tasks"]) CHECK(t["state"] == "done");
  CHECK(hubspot.Contact(contact)->at("ccpa_do_not_sell") == "true");
  CHECK(hubspot.Contact(contact)->at("hs_email_optout") == "true");
  CHECK(mailchimp.Member(list, hash)->at("status") == "unsubscribed");
  CHECK(sfmc.Rows("CCPA-DoNotSell") ==
        std::vector<json>{{{"SubscriberKey", "0031x00000CaseyQ"}, {"Reason", "CCPA request"}}});
  CHECK(LowerCopy(d.Log()).find("casey@example.com") == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("mailchimp: the daemon runs correct and delete requests end to end", "[mailchimp][integration]") {
  using namespace rightsd::test;
  MailchimpPeer peer;
  peer.Start();
  const std::string list = peer.options().audiences[0];
  const std::string hash = peer.AddMember(list, "robin.mail@example.com", {{"FNAME", "Robin"}, {"LNAME", "Oldname"}});
  const std::string kept = peer.AddMember(list, "other.mail@example.com", {{"FNAME", "Other"}});
  DaemonEnv env(true);
  std::ofstream(env.dir() / "mailchimp.key") << peer.options().api_key << "\n";
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "newsletter"
connector = "mailchimp"
categories = ["marketing"]
request_types = ["access", "delete", "correct", "opt_out"]
[systems.settings]
api_key_file = "mailchimp.key"
base_url = "{}"
audiences = ["{}"]
timeout_ms = 5000
)toml",
                                              peer.base_url(), list));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  auto run = [&](const std::string& type, const std::string& extra) {
    const auto created =
        d.Call("POST", "/v1/requests", env.token("submitter"),
               R"({"type":")" + type +
                   R"(","subject":{"identities":[{"kind":"email","value":"Robin.Mail@Example.com"}]})" + extra + "}");
    INFO(created.body);
    REQUIRE(created.status == 201);
    const std::string request = created.json()["id"];
    REQUIRE(d.Call("POST", "/v1/requests/" + request + "/verify", env.token("submitter"),
                   R"({"method":"account_login","level":"reasonably_high"})")
                .status == 200);
    json last;
    const bool completed = Eventually([&] {
      last = d.Call("GET", "/v1/requests/" + request, env.token("viewer")).json();
      return last["status"] == "completed";
    }, 30);
    INFO(last.dump(2));
    REQUIRE(completed);
    REQUIRE(last["tasks"].size() == 1);
    CHECK(last["tasks"][0]["state"] == "done");
  };

  run("correct", R"(,"corrections":[{"field":"last_name","value":"Newname"}])");
  CHECK(peer.Member(list, hash)->at("merge_fields").at("LNAME") == "Newname");
  CHECK(peer.Member(list, hash)->at("merge_fields").at("FNAME") == "Robin");

  run("delete", "");
  CHECK_FALSE(peer.Member(list, hash).has_value());
  CHECK(peer.Forgotten(list, hash));
  CHECK(peer.Member(list, kept).has_value());

  const std::string log = LowerCopy(d.Log());
  CHECK(log.find("robin.mail@example.com") == std::string::npos);
  CHECK(log.find(hash) == std::string::npos);
  CHECK(log.find("newname") == std::string::npos);
  CHECK(d.Stop() == 0);
}
