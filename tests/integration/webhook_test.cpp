// The OpenDSR webhook connector driven directly against the simulated processor (OpenDsrPeer) over the real
// cpprestsdk client: submission, polling, results, peer failures as outcomes, idempotent resubmission after a
// crash, deadlines, callback signatures, and what never leaves the connector (identity values in messages and
// receipts, identity kinds OpenDSR has no type for).
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
#include <regex>
#include <set>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "connectors/connector.h"
#include "connectors/http_client.h"
#include "connectors/webhook/webhook.h"
#include "peers/opendsr/opendsr_peer.h"
#include "peers/recording_server.h"

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
using rightsd::connectors::webhook::MakeWebhookConnector;
using rightsd::connectors::webhook::OpenDsrCallbackRequestId;
using rightsd::test::OpenDsrPeer;
using rightsd::test::OpenDsrPeerOptions;
using rightsd::test::RecordingServer;

const std::string kEmail = "Jane.Doe@example.com";
const std::string kAccount = "cust-4711";
const std::string kPhone = "+1 415 555 0100";
const std::string kAddress = "1 Market Street, San Francisco";
const std::string kDevice = "device-8f3a";
const std::string kName = "Jane Q. Doe";

std::string NewUuid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  std::uniform_int_distribution<int> hex(0, 15);
  const char* digits = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      out += '-';
    } else if (i == 14) {
      out += '4';
    } else if (i == 19) {
      out += digits[8 + hex(rng) % 4];
    } else {
      out += digits[hex(rng)];
    }
  }
  return out;
}

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-webhook-" + NewUuid())) {
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

TaskInput Task(TaskAction action, std::vector<Identity> identities, std::string task_id = NewUuid()) {
  TaskInput input;
  input.request_id = NewUuid();
  input.task_id = std::move(task_id);
  input.system = "opendsr-test";
  input.action = action;
  input.request_type = action == TaskAction::kAccess ? "access" : "delete";
  input.identities = std::move(identities);
  return input;
}

// Every outcome is checked for what it must never hold.
void ExpectNoIdentityValues(const Outcome& outcome) {
  const std::string text = outcome.message + " " + outcome.receipt.dump() + " " + outcome.continuation.dump();
  for (const auto& value : {kEmail, kAccount, kPhone, kAddress, kDevice, kName}) {
    INFO("outcome text: " << text);
    CHECK(text.find(value) == std::string::npos);
    std::string lowered = value;
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) { return std::tolower(c); });
    CHECK(text.find(lowered) == std::string::npos);
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

// A peer, the production HTTP client and a connector configured against them.
struct Rig {
  explicit Rig(OpenDsrPeerOptions options = NoCallbacks(), json extra = json::object()) : peer(std::move(options)) {
    peer.Start();
    json settings = {{"base_url", peer.base_url()}, {"poll_interval_seconds", 5}, {"timeout_ms", 5000}};
    settings.update(extra);
    connector = Make(settings);
  }
  static OpenDsrPeerOptions NoCallbacks() {
    OpenDsrPeerOptions options;
    options.send_callbacks = false;
    return options;
  }
  std::unique_ptr<Connector> Make(const json& settings, std::vector<std::string> categories = {}) {
    ConnectorEnv env;
    env.system = "opendsr-test";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = std::move(categories);
    return MakeWebhookConnector(settings, env);
  }
  std::vector<json> SubmittedBodies() {
    std::vector<json> out;
    for (const auto& call : peer.recorder().CallsTo("POST", "/v2/requests")) out.push_back(json::parse(call.body));
    return out;
  }

  TempDir dir;
  OpenDsrPeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

std::function<std::string(std::string_view)> HeadersOf(const httplib::Headers& headers) {
  return [headers](std::string_view name) {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? std::string() : it->second;
  };
}

}  // namespace

TEST_CASE("webhook: erasure is submitted, then polled to completion", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.complete_after_polls = 3;
  Rig rig(options, {{"callback_url", "https://rightsd.example.org/v1/callbacks/opendsr"}});
  rig.peer.SeedRecord("email", kEmail, "profile", {{"email", kEmail}, {"plan", "pro"}});
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});

  Outcome submitted = RunAndWait(*rig.connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  CHECK(submitted.retry_after == std::chrono::milliseconds(5000));
  CHECK(submitted.continuation["submitted"] == true);
  CHECK(submitted.continuation["subject_request_id"] == task.task_id);
  CHECK(submitted.receipt["subject_request_type"] == "erasure");
  CHECK(submitted.receipt["controller_id"] == "rightsd-test-controller");

  auto bodies = rig.SubmittedBodies();
  REQUIRE(bodies.size() == 1);
  const json& body = bodies[0];
  CHECK(body["subject_request_id"] == task.task_id);
  CHECK(body["subject_request_type"] == "erasure");
  CHECK(body["regulation"] == "ccpa");
  CHECK(body["api_version"] == "2.0");
  CHECK(std::regex_match(body["submitted_time"].get<std::string>(),
                         std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)")));
  CHECK(body["subject_identities"] ==
        json::array({{{"identity_type", "email"}, {"identity_value", kEmail}, {"identity_format", "raw"}}}));
  CHECK(body["status_callback_urls"] == json::array({"https://rightsd.example.org/v1/callbacks/opendsr"}));
  CHECK(rig.peer.StatusOf(task.task_id) == "pending");

  Outcome first_poll = RunAndWait(*rig.connector, Continue(task, submitted));
  CHECK(first_poll.kind == OutcomeKind::kInProgress);
  CHECK(first_poll.receipt["request_status"] == "pending");
  Outcome second_poll = RunAndWait(*rig.connector, Continue(task, first_poll));
  CHECK(second_poll.kind == OutcomeKind::kInProgress);
  CHECK(second_poll.receipt["request_status"] == "in_progress");
  CHECK(rig.peer.HeldRecords("email", kEmail) == 1);

  Outcome done = RunAndWait(*rig.connector, Continue(task, second_poll));
  CHECK(done.kind == OutcomeKind::kDone);
  CHECK(done.receipt["request_status"] == "completed");
  CHECK(done.receipt["subject_request_id"] == task.task_id);
  CHECK(done.receipt["identity_types"] == json::array({"email"}));
  CHECK(done.records.is_null());

  CHECK(rig.peer.StatusOf(task.task_id) == "completed");
  CHECK(rig.peer.HeldRecords("email", kEmail) == 0);
  CHECK(rig.peer.CreatedCount() == 1);
  CHECK(rig.peer.PollsOf(task.task_id) == 3);
  CHECK(rig.peer.recorder().CallsTo("GET", "/v2/discovery").size() == 1);  // cached after the first task
}

TEST_CASE("webhook: access returns the processor's records by category", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.complete_after_polls = 1;
  Rig rig(options);
  rig.peer.SeedRecord("email", kEmail, "profile", {{"name", kName}, {"ssn", "123-45-6789"}});
  rig.peer.SeedRecord("controller_customer_id", kAccount, "orders", {{"order", "A-1"}, {"total", 42}});
  rig.peer.SeedRecord("email", "someone.else@example.com", "profile", {{"name", "Someone Else"}});
  const TaskInput task = Task(TaskAction::kAccess, {{"email", kEmail}, {"account_id", kAccount}});

  Outcome submitted = RunAndWait(*rig.connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  CHECK(rig.SubmittedBodies().at(0)["subject_request_type"] == "access");

  Outcome done = RunAndWait(*rig.connector, Continue(task, submitted));
  REQUIRE(done.kind == OutcomeKind::kDone);
  CHECK(done.records == json{{"profile", json::array({{{"name", kName}, {"ssn", "123-45-6789"}}})},
                             {"orders", json::array({{{"order", "A-1"}, {"total", 42}}})}});
  CHECK(done.receipt["records"] == 2);
  CHECK(done.receipt["categories"] == json{{"profile", 1}, {"orders", 1}});
  CHECK(done.receipt["results_count"] == 2);
  CHECK(rig.peer.recorder().CallsTo("GET", "/v2/results/" + task.task_id).size() == 1);
}

TEST_CASE("webhook: access results as a bare array take the system's one category", "[webhook]") {
  // Results a processor hands back as a list (the specification leaves their shape open) go under the data map's
  // category when the system has exactly one.
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.complete_after_polls = 1;
  Rig rig(options);
  // A processor answered by hand: the request is completed and its results are a bare list.
  RecordingServer results_host;
  // The connector's pooled connection would otherwise hold a server thread (and Stop) for the keep-alive timeout.
  results_host.server().set_keep_alive_max_count(1);
  results_host.server().Get("/r", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"([{"id": 1}, {"id": 2}])", "application/json");
  });
  results_host.server().Get(R"(/v2/requests/(.+))", [&](const httplib::Request& req, httplib::Response& res) {
    res.set_content(json{{"subject_request_id", req.matches[1].str()},
                         {"request_status", "completed"},
                         {"results_url", results_host.base_url() + "/r"}}
                        .dump(),
                    "application/json");
  });
  results_host.Start();
  auto connector = rig.Make({{"base_url", results_host.base_url() + "/v2"}}, {"marketing"});
  TaskInput task = Task(TaskAction::kAccess, {{"email", kEmail}});
  task.continuation = {{"submitted", true}};
  Outcome done = RunAndWait(*connector, task);
  REQUIRE(done.kind == OutcomeKind::kDone);
  CHECK(done.records == json{{"marketing", json::array({{{"id", 1}}, {{"id", 2}}})}});
}

TEST_CASE("webhook: an access request with nothing held is not found", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.complete_after_polls = 1;
  Rig rig(options);
  const TaskInput task = Task(TaskAction::kAccess, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  Outcome done = RunAndWait(*rig.connector, Continue(task, submitted));
  CHECK(done.kind == OutcomeKind::kNotFound);
  CHECK(done.records.is_null());
}

TEST_CASE("webhook: 503 with Retry-After is a retry after exactly that long", "[webhook]") {
  Rig rig;
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});

  SECTION("on discovery") {
    rig.peer.FailNext(1, 503, 7);
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(7000));
    CHECK(outcome.message.find("503") != std::string::npos);
    CHECK(rig.peer.CreatedCount() == 0);
    CHECK(RunAndWait(*rig.connector, task).kind == OutcomeKind::kInProgress);
  }
  SECTION("on submission") {
    RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));  // discovery is cached now
    rig.peer.FailNext(1, 503, 7);
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(7000));
    CHECK_FALSE(rig.peer.StatusOf(task.task_id).has_value());
    CHECK(RunAndWait(*rig.connector, task).kind == OutcomeKind::kInProgress);
    CHECK(rig.peer.StatusOf(task.task_id) == "pending");
  }
  SECTION("on a status poll") {
    Outcome submitted = RunAndWait(*rig.connector, task);
    rig.peer.FailNext(1, 503, 7);
    Outcome outcome = RunAndWait(*rig.connector, Continue(task, submitted));
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK(outcome.retry_after == std::chrono::milliseconds(7000));
  }
  SECTION("without Retry-After the engine's backoff decides") {
    rig.peer.FailNext(1, 503, -1);
    Outcome outcome = RunAndWait(*rig.connector, task);
    CHECK(outcome.kind == OutcomeKind::kRetry);
    CHECK_FALSE(outcome.retry_after.has_value());
  }
}

TEST_CASE("webhook: 429 is a retry after the processor's Retry-After", "[webhook]") {
  Rig rig;
  const TaskInput task = Task(TaskAction::kAccess, {{"email", kEmail}});
  rig.peer.FailNext(2, 429, 30);
  Outcome outcome = RunAndWait(*rig.connector, task);
  CHECK(outcome.kind == OutcomeKind::kRetry);
  CHECK(outcome.retry_after == std::chrono::milliseconds(30000));
  CHECK(outcome.message.find("429") != std::string::npos);
  CHECK(rig.peer.CreatedCount() == 0);
}

TEST_CASE("webhook: a 400 from the processor fails the task with the processor's message", "[webhook]") {
  Rig rig;
  SECTION("a request the processor finds invalid") {
    Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}, "task-7"));
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.message.find("400") != std::string::npos);
    CHECK(outcome.message.find("subject_request_id must be a lowercase UUID v4") != std::string::npos);
    CHECK(rig.peer.CreatedCount() == 0);
  }
  SECTION("an error that echoes an identity value is redacted") {
    rig.peer.RejectNextSubmit(400, "identity " + kEmail + " is on the suppression list");
    Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.message.find("identity [redacted] is on the suppression list") != std::string::npos);
  }
  SECTION("a very long error is shortened") {
    rig.peer.RejectNextSubmit(422, std::string(5000, 'x'));
    Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kFailed);
    CHECK(outcome.message.find("422") != std::string::npos);
    CHECK(outcome.message.size() < 500);
  }
}

TEST_CASE("webhook: wrong credentials fail the task", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.bearer_token = "the-right-token";
  Rig rig(options);
  rig.dir.Write("token", "a-wrong-token\n");
  auto connector = rig.Make({{"base_url", rig.peer.base_url()}, {"bearer_token_file", "token"}});
  Outcome outcome = RunAndWait(*connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("401") != std::string::npos);
  CHECK(outcome.message.find("a-wrong-token") == std::string::npos);
}

TEST_CASE("webhook: the bearer token goes with every call to the processor", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.bearer_token = "the-right-token";
  options.complete_after_polls = 1;
  Rig rig(options);
  rig.dir.Write("token", "the-right-token\n");
  auto connector = rig.Make({{"base_url", rig.peer.base_url()}, {"bearer_token_file", "token"}});
  rig.peer.SeedRecord("email", kEmail, "profile", {{"plan", "pro"}});
  const TaskInput task = Task(TaskAction::kAccess, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  Outcome done = RunAndWait(*connector, Continue(task, submitted));
  REQUIRE(done.kind == OutcomeKind::kDone);
  for (const auto& call : rig.peer.recorder().Calls()) {
    if (call.path == "/v2/discovery") continue;
    INFO(call.method << " " << call.path);
    auto auth = call.headers.find("Authorization");
    REQUIRE(auth != call.headers.end());
    CHECK(auth->second == "Bearer the-right-token");
  }
}

TEST_CASE("webhook: running a task again after a crash creates no second request", "[webhook]") {
  for (int duplicate_status : {400, 409}) {
    DYNAMIC_SECTION("the processor refuses duplicates with " << duplicate_status) {
      OpenDsrPeerOptions options = Rig::NoCallbacks();
      options.duplicate_status = duplicate_status;
      options.complete_after_polls = 0;
      Rig rig(options);
      rig.peer.SeedRecord("email", kEmail, "profile", {{"plan", "pro"}});
      const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});

      Outcome first = RunAndWait(*rig.connector, task);
      REQUIRE(first.kind == OutcomeKind::kInProgress);
      // The daemon died before it saved `first`: the engine runs the task again from scratch.
      Outcome again = RunAndWait(*rig.connector, task);
      CHECK(again.kind == OutcomeKind::kInProgress);
      CHECK(again.continuation["submitted"] == true);
      CHECK(again.receipt["already_submitted"] == true);
      CHECK(rig.peer.SubmitCount() == 2);
      CHECK(rig.peer.CreatedCount() == 1);

      // And once the processor has finished, a rerun from scratch reports it done without a new request.
      rig.peer.Complete(task.task_id);
      Outcome after_completion = RunAndWait(*rig.connector, task);
      CHECK(after_completion.kind == OutcomeKind::kDone);
      CHECK(rig.peer.SubmitCount() == 3);
      CHECK(rig.peer.CreatedCount() == 1);
      CHECK(rig.peer.HeldRecords("email", kEmail) == 0);
    }
  }
}

TEST_CASE("webhook: a status the processor lost is submitted again", "[webhook]") {
  Rig rig;
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  rig.peer.Forget(task.task_id);
  Outcome outcome = RunAndWait(*rig.connector, Continue(task, submitted));
  CHECK(outcome.kind == OutcomeKind::kInProgress);
  CHECK(rig.peer.SubmitCount() == 2);
  CHECK(rig.peer.StatusOf(task.task_id) == "pending");
}

TEST_CASE("webhook: a request the processor cancelled fails the task", "[webhook]") {
  Rig rig;
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*rig.connector, task);
  rig.peer.Cancel(task.task_id);
  Outcome outcome = RunAndWait(*rig.connector, Continue(task, submitted));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("cancelled") != std::string::npos);
  CHECK(outcome.receipt["request_status"] == "cancelled");
}

TEST_CASE("webhook: a processor slower than timeout_ms is a retry", "[webhook]") {
  Rig rig(Rig::NoCallbacks(), {{"timeout_ms", 300}});
  rig.peer.SetDelay(2000ms);
  auto started = std::chrono::steady_clock::now();
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(outcome.kind == OutcomeKind::kRetry);
  CHECK(outcome.message.find("did not answer within 300 ms") != std::string::npos);
  CHECK(elapsed < 1500ms);
  rig.peer.SetDelay(0ms);
}

TEST_CASE("webhook: a processor nobody answers for is a retry", "[webhook]") {
  Rig rig;
  auto connector = rig.Make({{"base_url", "http://127.0.0.1:1/v2"}, {"timeout_ms", 2000}});
  Outcome outcome = RunAndWait(*connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(outcome.kind == OutcomeKind::kRetry);
}

TEST_CASE("webhook: signed callbacks verify, tampered or foreign ones do not", "[webhook]") {
  RecordingServer controller;
  controller.server().Post("/v1/callbacks/opendsr",
                           [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  controller.Start();
  const std::string callback_url = controller.base_url() + "/v1/callbacks/opendsr";

  OpenDsrPeerOptions options;  // callbacks on
  Rig rig(options);
  const auto key_file = rig.dir.Write("processor.pem", rig.peer.PublicKeyPem());
  const auto cert_file = rig.dir.Write("processor-cert.pem", rig.peer.CertificatePem());
  auto connector = rig.Make({{"base_url", rig.peer.base_url()},
                             {"callback_url", callback_url},
                             {"processor_certificate_file", key_file.string()}});
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  REQUIRE(RunAndWait(*connector, task).kind == OutcomeKind::kInProgress);

  // The processor reports creation ("pending") to the URL the connector gave it.
  REQUIRE(rig.peer.WaitForCallbacks(1, 10s));
  auto sent = rig.peer.Callbacks();
  CHECK(sent[0].url == callback_url);
  CHECK(sent[0].status == 204);
  auto received = controller.CallsTo("POST", "/v1/callbacks/opendsr");
  REQUIRE(received.size() == 1);
  const std::string body = received[0].body;
  const auto header = HeadersOf(received[0].headers);
  CHECK(json::parse(body)["request_status"] == "pending");
  CHECK(json::parse(body)["status_callback_url"] == callback_url);
  CHECK(OpenDsrCallbackRequestId(body) == task.task_id);

  SECTION("the genuine callback verifies") { CHECK(connector->VerifyCallback(body, header)); }
  SECTION("a tampered body does not") {
    std::string tampered = body;
    tampered.replace(tampered.find("pending"), 7, "completed");
    CHECK_FALSE(connector->VerifyCallback(tampered, header));
  }
  SECTION("a signature by another key does not") {
    OpenDsrPeer impostor(Rig::NoCallbacks());
    httplib::Headers forged = received[0].headers;
    forged.erase("X-OpenDSR-Signature");
    forged.emplace("X-OpenDSR-Signature", impostor.Sign(body));
    CHECK_FALSE(connector->VerifyCallback(body, HeadersOf(forged)));
  }
  SECTION("a missing or malformed signature does not") {
    httplib::Headers none = received[0].headers;
    none.erase("X-OpenDSR-Signature");
    CHECK_FALSE(connector->VerifyCallback(body, HeadersOf(none)));
    httplib::Headers garbage = none;
    garbage.emplace("X-OpenDSR-Signature", "not base64 at all!");
    CHECK_FALSE(connector->VerifyCallback(body, HeadersOf(garbage)));
  }
  SECTION("the OpenGDPR header name of version 1 is honoured") {
    httplib::Headers legacy;
    legacy.emplace("X-OpenGDPR-Signature", header("X-OpenDSR-Signature"));
    CHECK(connector->VerifyCallback(body, HeadersOf(legacy)));
  }
  SECTION("without processor_certificate_file nothing verifies") {
    auto blind = rig.Make({{"base_url", rig.peer.base_url()}, {"callback_url", callback_url}});
    CHECK_FALSE(blind->VerifyCallback(body, header));
  }
  SECTION("a certificate verifies and pins the processor domain") {
    auto pinned = rig.Make({{"base_url", rig.peer.base_url()},
                            {"callback_url", callback_url},
                            {"processor_certificate_file", cert_file.string()}});
    CHECK(pinned->VerifyCallback(body, header));
    httplib::Headers other_domain = received[0].headers;
    other_domain.erase("X-OpenDSR-Processor-Domain");
    other_domain.emplace("X-OpenDSR-Processor-Domain", "evil.example");
    CHECK_FALSE(pinned->VerifyCallback(body, HeadersOf(other_domain)));
  }
  SECTION("a callback meant for another controller endpoint does not") {
    auto elsewhere = rig.Make({{"base_url", rig.peer.base_url()},
                               {"callback_url", "https://other.example/v1/callbacks/opendsr"},
                               {"processor_certificate_file", key_file.string()}});
    CHECK_FALSE(elsewhere->VerifyCallback(body, header));
  }
  SECTION("completion is reported by a callback too") {
    rig.peer.Complete(task.task_id);
    REQUIRE(rig.peer.WaitForCallbacks(2, 10s));
    auto calls = controller.CallsTo("POST", "/v1/callbacks/opendsr");
    REQUIRE(calls.size() == 2);
    CHECK(json::parse(calls[1].body)["request_status"] == "completed");
    CHECK(connector->VerifyCallback(calls[1].body, HeadersOf(calls[1].headers)));
  }
}

TEST_CASE("webhook: a status answer whose signature does not verify fails the task", "[webhook]") {
  Rig rig;
  OpenDsrPeer impostor(Rig::NoCallbacks());
  rig.dir.Write("other.pem", impostor.PublicKeyPem());
  auto connector = rig.Make({{"base_url", rig.peer.base_url()}, {"processor_certificate_file", "other.pem"}});
  TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  Outcome submitted = RunAndWait(*connector, task);
  REQUIRE(submitted.kind == OutcomeKind::kInProgress);
  Outcome polled = RunAndWait(*connector, Continue(task, submitted));
  CHECK(polled.kind == OutcomeKind::kFailed);
  CHECK(polled.message.find("signature") != std::string::npos);
}

TEST_CASE("webhook: identity kinds without an OpenDSR type are never sent", "[webhook]") {
  Rig rig;
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail},
                                                    {"phone", kPhone},
                                                    {"postal_address", kAddress},
                                                    {"account_id", kAccount},
                                                    {"device_id", kDevice},
                                                    {"name", kName}});
  Outcome outcome = RunAndWait(*rig.connector, task);
  CHECK(outcome.kind == OutcomeKind::kInProgress);
  CHECK(outcome.receipt["identity_types"] == json::array({"email", "controller_customer_id"}));
  auto calls = rig.peer.recorder().CallsTo("POST", "/v2/requests");
  REQUIRE(calls.size() == 1);
  CHECK(json::parse(calls[0].body)["subject_identities"] ==
        json::array({{{"identity_type", "email"}, {"identity_value", kEmail}, {"identity_format", "raw"}},
                     {{"identity_type", "controller_customer_id"},
                      {"identity_value", kAccount},
                      {"identity_format", "raw"}}}));
  for (const auto& value : {kPhone, kAddress, kDevice, kName}) {
    for (const auto& call : rig.peer.recorder().Calls()) {
      CHECK(call.body.find(value) == std::string::npos);
      CHECK(call.target.find(value) == std::string::npos);
    }
  }
}

TEST_CASE("webhook: a task with no identity OpenDSR knows fails without calling the processor", "[webhook]") {
  Rig rig;
  Outcome outcome = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"phone", kPhone}, {"name", kName}}));
  CHECK(outcome.kind == OutcomeKind::kFailed);
  CHECK(outcome.message.find("no identity this system understands") != std::string::npos);
  CHECK(rig.peer.recorder().Calls().empty());
}

TEST_CASE("webhook: the processor's discovery document limits what is sent", "[webhook]") {
  OpenDsrPeerOptions options = Rig::NoCallbacks();
  options.request_types = {"erasure"};
  options.identity_types = {"controller_customer_id"};
  Rig rig(options);

  Outcome access = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}, {"account_id", kAccount}}));
  CHECK(access.kind == OutcomeKind::kFailed);
  CHECK(access.message.find("does not accept access requests") != std::string::npos);

  Outcome erasure =
      RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}, {"account_id", kAccount}}));
  CHECK(erasure.kind == OutcomeKind::kInProgress);
  CHECK(rig.SubmittedBodies().at(0)["subject_identities"] ==
        json::array({{{"identity_type", "controller_customer_id"},
                      {"identity_value", kAccount},
                      {"identity_format", "raw"}}}));

  Outcome email_only = RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(email_only.kind == OutcomeKind::kFailed);
  CHECK(email_only.message.find("no identity this system understands") != std::string::npos);
  CHECK(rig.peer.recorder().CallsTo("GET", "/v2/discovery").size() == 1);
}

TEST_CASE("webhook: only access and delete are supported", "[webhook]") {
  Rig rig;
  CHECK(rig.connector->Supports(TaskAction::kAccess));
  CHECK(rig.connector->Supports(TaskAction::kDelete));
  for (auto action : {TaskAction::kDeidentify, TaskAction::kLocate, TaskAction::kCorrect, TaskAction::kOptOut,
                      TaskAction::kLimit}) {
    CHECK_FALSE(rig.connector->Supports(action));
    Outcome outcome = RunAndWait(*rig.connector, Task(action, {{"email", kEmail}}));
    CHECK(outcome.kind == OutcomeKind::kFailed);
  }
  CHECK(rig.peer.recorder().Calls().empty());
}

TEST_CASE("webhook: unusable setting files stop start-up naming the setting", "[webhook]") {
  Rig rig;
  const std::string base = rig.peer.base_url();
  auto message_of = [&](const json& settings) -> std::string {
    try {
      rig.Make(settings);
    } catch (const ConnectorConfigError& e) {
      return e.what();
    }
    return "";
  };
  CHECK_THAT(message_of({{"base_url", base}, {"bearer_token_file", "missing-token"}}),
             Catch::Contains("bearer_token_file"));
  rig.dir.Write("empty-token", "\n");
  CHECK_THAT(message_of({{"base_url", base}, {"bearer_token_file", "empty-token"}}),
             Catch::Contains("bearer_token_file"));
  CHECK_THAT(message_of({{"base_url", base}, {"processor_certificate_file", "missing.pem"}}),
             Catch::Contains("processor_certificate_file"));
  rig.dir.Write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n");
  CHECK_THAT(message_of({{"base_url", base}, {"processor_certificate_file", "garbage.pem"}}),
             Catch::Contains("processor_certificate_file"));
  rig.dir.Write("cert.pem", rig.peer.CertificatePem());
  rig.dir.Write("key.pem", rig.peer.PublicKeyPem());
  CHECK(message_of({{"base_url", base}, {"processor_certificate_file", "cert.pem"}}).empty());
  CHECK(message_of({{"base_url", base}, {"processor_certificate_file", "key.pem"}}).empty());
}

TEST_CASE("webhook: the settings schema is closed and names every setting the connector reads", "[webhook]") {
  std::ifstream in(std::string(RIGHTSD_SOURCE_DIR) + "/schemas/connectors/webhook.json");
  REQUIRE(in);
  json schema = json::parse(in);
  CHECK(schema["$schema"] == "http://json-schema.org/draft-07/schema#");
  CHECK(schema["additionalProperties"] == false);
  CHECK(schema["required"] == json::array({"base_url"}));
  std::set<std::string> properties;
  for (const auto& [name, _] : schema["properties"].items()) properties.insert(name);
  CHECK(properties == std::set<std::string>{"base_url", "bearer_token_file", "processor_certificate_file",
                                            "callback_url", "poll_interval_seconds", "timeout_ms", "regulation"});
  CHECK(schema["properties"]["poll_interval_seconds"]["minimum"] == 1);
  CHECK(schema["properties"]["poll_interval_seconds"]["default"] == 3600);
}

TEST_CASE("webhook: the callback request id comes from subject_request_id", "[webhook]") {
  CHECK(OpenDsrCallbackRequestId(R"({"subject_request_id":"a7551968-d5d6-44b2-9831-815ac9017798"})") ==
        "a7551968-d5d6-44b2-9831-815ac9017798");
  CHECK_FALSE(OpenDsrCallbackRequestId("not json").has_value());
  CHECK_FALSE(OpenDsrCallbackRequestId(R"({"subject_request_id": 5})").has_value());
  CHECK_FALSE(OpenDsrCallbackRequestId(R"({"subject_request_id": ""})").has_value());
  CHECK_FALSE(OpenDsrCallbackRequestId(R"([1,2])").has_value());
}
