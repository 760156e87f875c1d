// The HubSpot connector against the HubSpot simulator (HubspotPeer) over the real cpprestsdk client: every action,
// the GDPR delete (never the archiving DELETE), HubSpot's rate limits kept on our side (the burst window filled
// mid-batch without a call over it, limits learned from the rate headers, the daily allowance, 429 policies),
// errors as outcomes without identity values, settings; and the daemon running a HubSpot delete end to end.
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
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "connectors/connector.h"
#include "connectors/http_client.h"
#include "connectors/hubspot/hubspot.h"
#include "harness.h"
#include "peers/hubspot/hubspot_peer.h"
#include "peers/recording_server.h"

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
using rightsd::connectors::hubspot::MakeHubspotConnector;
using rightsd::connectors::hubspot::UntilNextMidnight;
using rightsd::test::HubspotPeer;
using rightsd::test::HubspotPeerOptions;

const std::string kEmail = "Jane.Doe@Example.com";
const std::string kOtherEmail = "someone.else@example.com";
const std::string kNewName = "Janet";

std::string NewUuid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 36; ++i) out += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : kHex[rng() % 16];
  return out;
}

class TempDir {
 public:
  TempDir() : path_(std::filesystem::temp_directory_path() / ("rightsd-hubspot-" + NewUuid())) {
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
  input.system = "hubspot-test";
  input.action = action;
  input.request_type = std::string(rightsd::connectors::ToString(action));
  input.identities = std::move(identities);
  input.corrections = std::move(corrections);
  return input;
}

std::string LowerCopy(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// What no outcome may hold: identity values, correction values, contact ids.
void ExpectClean(const Outcome& outcome, const std::vector<std::string>& secrets) {
  const std::string text = outcome.message + " " + outcome.receipt.dump() + " " + outcome.continuation.dump();
  INFO("outcome text: " << text);
  for (const auto& s : secrets) {
    CHECK(LowerCopy(text).find(LowerCopy(s)) == std::string::npos);
  }
}

// Runs the task, waits (bounded) for its one outcome and checks that `done` is not called twice.
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
  std::vector<std::string> secrets;
  for (const auto& i : input.identities) secrets.push_back(i.value);
  for (const auto& c : input.corrections) secrets.push_back(c.value);
  ExpectClean(*state->outcome, secrets);
  return *state->outcome;
}

// Runs many tasks at once; returns their outcomes in order.
std::vector<Outcome> RunAll(Connector& connector, const std::vector<TaskInput>& inputs, std::chrono::seconds limit) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::optional<Outcome>> outcomes;
    std::vector<int> calls;
    std::size_t finished = 0;
  };
  auto state = std::make_shared<State>();
  state->outcomes.resize(inputs.size());
  state->calls.resize(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    connector.Run(inputs[i], [state, i](Outcome o) {
      std::lock_guard lock(state->mu);
      if (++state->calls[i] == 1) ++state->finished;
      state->outcomes[i] = std::move(o);
      state->cv.notify_all();
    });
  }
  std::unique_lock lock(state->mu);
  REQUIRE(state->cv.wait_for(lock, limit, [&] { return state->finished == inputs.size(); }));
  std::vector<Outcome> out;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    REQUIRE(state->calls[i] == 1);
    out.push_back(*state->outcomes[i]);
  }
  return out;
}

struct Rig {
  explicit Rig(HubspotPeerOptions options = {}, json extra = json::object(),
               std::vector<std::string> categories = {"identifiers", "marketing"})
      : peer(std::move(options)) {
    peer.Start();
    dir.Write("hubspot.token", peer.options().token + "\n");
    connector = Make(extra, std::move(categories));
  }
  std::unique_ptr<Connector> Make(const json& extra, std::vector<std::string> categories = {"identifiers", "marketing"}) {
    json settings = {{"access_token_file", "hubspot.token"},
                     {"base_url", peer.base_url()},
                     {"timeout_ms", 5000},
                     {"properties",
                      {{"email", "identifiers"},
                       {"firstname", "identifiers"},
                       {"lastname", "identifiers"},
                       {"lifecyclestage", "marketing"},
                       {"hs_analytics_source", "marketing"}}},
                     {"opt_out_properties", {{"ccpa_do_not_sell", "true"}}},
                     {"limit_properties", {{"ccpa_limit_spi", "true"}}}};
    settings.update(extra);
    ConnectorEnv env;
    env.system = "hubspot-test";
    env.config_dir = dir.path();
    env.http = http.get();
    env.categories = std::move(categories);
    return MakeHubspotConnector(settings, env);
  }
  std::string Seed(const std::string& email, const std::string& first = "Jane") {
    return peer.AddContact({{"email", LowerCopy(email)},
                            {"firstname", first},
                            {"lastname", "Doe"},
                            {"phone", "+1 415 555 0100"},
                            {"lifecyclestage", "customer"},
                            {"hs_analytics_source", "ORGANIC_SEARCH"}});
  }

  TempDir dir;
  HubspotPeer peer;
  std::unique_ptr<HttpClient> http = MakeCpprestHttpClient();
  std::unique_ptr<Connector> connector;
};

json RateLimitBody(const std::string& policy) {
  return {{"status", "error"},
          {"message", "You have reached your " + LowerCopy(policy) + " limit."},
          {"errorType", "RATE_LIMIT"},
          {"correlationId", "5b2c8a1e-0000-4000-8000-000000000001"},
          {"policyName", policy},
          {"requestId", "req-1"}};
}

}  // namespace

TEST_CASE("hubspot: access searches by email and returns the configured properties by category", "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  rig.Seed(kOtherEmail, "Someone");
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}, {"phone", "+1 415"}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.records == json{{"identifiers", json::array({{{"contact_id", id},
                                                          {"email", LowerCopy(kEmail)},
                                                          {"firstname", "Jane"},
                                                          {"lastname", "Doe"}}})},
                            {"marketing", json::array({{{"contact_id", id},
                                                        {"lifecyclestage", "customer"},
                                                        {"hs_analytics_source", "ORGANIC_SEARCH"}}})}});
  CHECK(out.receipt["contacts_found"] == 1);
  CHECK(out.receipt["records"] == 2);
  CHECK(out.receipt["looked_up_by"] == json::array({"email"}));

  const auto searches = rig.peer.recorder().CallsTo("POST", "/crm/v3/objects/contacts/search");
  REQUIRE(searches.size() == 1);
  const json body = json::parse(searches[0].body);
  CHECK(body["filterGroups"] ==
        json::array({{{"filters", json::array({{{"propertyName", "email"}, {"operator", "EQ"}, {"value", kEmail}}})}}}));
  CHECK(body["properties"] ==
        json::array({"email", "firstname", "hs_analytics_source", "lastname", "lifecyclestage"}));
  CHECK(body["limit"].get<int>() <= 200);
  CHECK(searches[0].headers.find("Authorization")->second == "Bearer " + rig.peer.options().token);
  CHECK(rig.peer.recorder().Calls().size() == 1);  // the phone identity is not something HubSpot is searched by
}

TEST_CASE("hubspot: access by hubspot_id reads the contact directly", "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", id}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.records["identifiers"][0]["firstname"] == "Jane");
  const auto reads = rig.peer.recorder().CallsTo("GET", "/crm/v3/objects/contacts/" + id);
  REQUIRE(reads.size() == 1);
  CHECK(reads[0].target.find("archived=false") != std::string::npos);
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", "99999999"}})).kind ==
        OutcomeKind::kNotFound);
  // A non-numeric "id" never reaches a URL.
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", "../../x"}})).kind ==
        OutcomeKind::kFailed);
}

TEST_CASE("hubspot: delete is the GDPR permanent delete, never the archiving DELETE, and a re-run has no effect",
          "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  const std::string other = rig.Seed(kOtherEmail, "Someone");
  const TaskInput task = Task(TaskAction::kDelete, {{"email", kEmail}});
  const Outcome out = RunAndWait(*rig.connector, task);
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["deleted"] == 1);
  CHECK(out.receipt["endpoint"] == "gdpr-delete");
  CHECK_FALSE(rig.peer.Contact(id).has_value());
  CHECK(rig.peer.Contact(other).has_value());
  const auto deletes = rig.peer.recorder().CallsTo("POST", "/crm/v3/objects/contacts/gdpr-delete");
  REQUIRE(deletes.size() == 1);
  CHECK(json::parse(deletes[0].body) == json{{"objectId", id}});
  CHECK(rig.peer.recorder().CallsTo("DELETE", "/").empty());

  const Outcome again = RunAndWait(*rig.connector, task);
  CHECK(again.kind == OutcomeKind::kNotFound);
  CHECK(rig.peer.recorder().CallsTo("POST", "/crm/v3/objects/contacts/gdpr-delete").size() == 1);
  CHECK(rig.peer.ContactCount() == 1);
}

TEST_CASE("hubspot: a delete that finds nothing is not found, or blocklists the address when configured",
          "[hubspot]") {
  Rig rig;
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kDelete, {{"email", kEmail}})).kind == OutcomeKind::kNotFound);
  CHECK_FALSE(rig.peer.Blocklisted(kEmail));
  auto blocklisting = rig.Make({{"gdpr_delete_unmatched_emails", true}});
  const Outcome out = RunAndWait(*blocklisting, Task(TaskAction::kDelete, {{"email", kEmail}}));
  CHECK(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["unmatched_emails_sent"] == 1);
  CHECK(rig.peer.Blocklisted(kEmail));
  const auto deletes = rig.peer.recorder().CallsTo("POST", "/crm/v3/objects/contacts/gdpr-delete");
  REQUIRE(deletes.size() == 1);
  CHECK(json::parse(deletes[0].body) == json{{"objectId", kEmail}, {"idProperty", "email"}});
}

TEST_CASE("hubspot: correct PATCHes the mapped properties and leaves unmapped fields to a person", "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  const Outcome out = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                      {{"first_name", kNewName}, {"lifecyclestage", "lead"}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.receipt["updated"] == 1);
  CHECK(out.receipt["properties_set"] == json::array({"firstname", "lifecyclestage"}));
  CHECK(rig.peer.Contact(id)->at("firstname") == kNewName);
  CHECK(rig.peer.Contact(id)->at("lifecyclestage") == "lead");
  const auto patches = rig.peer.recorder().CallsTo("PATCH", "/crm/v3/objects/contacts/" + id);
  REQUIRE(patches.size() == 1);
  CHECK(json::parse(patches[0].body) == json{{"properties", {{"firstname", kNewName}, {"lifecyclestage", "lead"}}}});

  const Outcome partial = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                          {{"last_name", "Roe"}, {"shoe_size", "41"}}));
  CHECK(partial.kind == OutcomeKind::kNeedsManual);
  CHECK(partial.message.find("shoe_size") != std::string::npos);
  CHECK(partial.receipt["unmapped_fields"] == json::array({"shoe_size"}));
  CHECK(rig.peer.Contact(id)->at("lastname") == "Roe");

  const Outcome none = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kOtherEmail}},
                                                       {{"first_name", kNewName}}));
  CHECK(none.kind == OutcomeKind::kNotFound);
}

TEST_CASE("hubspot: opt_out and limit set the configured properties", "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  const Outcome opt_out = RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}}));
  REQUIRE(opt_out.kind == OutcomeKind::kDone);
  CHECK(rig.peer.Contact(id)->at("ccpa_do_not_sell") == "true");
  CHECK(opt_out.receipt["properties_set"] == json::array({"ccpa_do_not_sell"}));
  const Outcome limit = RunAndWait(*rig.connector, Task(TaskAction::kLimit, {{"email", kEmail}}));
  REQUIRE(limit.kind == OutcomeKind::kDone);
  CHECK(rig.peer.Contact(id)->at("ccpa_limit_spi") == "true");
  // The same opt-out again changes nothing and still succeeds.
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kOptOut, {{"email", kEmail}})).kind == OutcomeKind::kDone);

  auto bare = rig.Make({{"opt_out_properties", nullptr}, {"limit_properties", nullptr}});
  CHECK_FALSE(bare->Supports(TaskAction::kOptOut));
  CHECK_FALSE(bare->Supports(TaskAction::kLimit));
  CHECK(bare->Supports(TaskAction::kDelete));
  CHECK_FALSE(bare->Supports(TaskAction::kDeidentify));
}

TEST_CASE("hubspot: the burst limit is reached mid-batch and no call goes over it", "[hubspot]") {
  HubspotPeerOptions options;
  options.burst_max = 10;
  options.interval = 1000ms;
  options.search_per_second = 50;  // the burst window is the limit that binds here
  Rig rig(options, {{"burst_limit", 10}, {"burst_interval_ms", 1000}, {"search_per_second", 50}});
  std::vector<std::string> ids;
  std::vector<TaskInput> tasks;
  for (int i = 0; i < 25; ++i) {
    const std::string email = fmt::format("batch{}@example.com", i);
    ids.push_back(rig.Seed(email));
    tasks.push_back(Task(TaskAction::kOptOut, {{"email", email}}));
  }
  const auto started = std::chrono::steady_clock::now();
  const auto outcomes = RunAll(*rig.connector, tasks, 60s);
  const auto took = std::chrono::steady_clock::now() - started;
  for (const auto& o : outcomes) {
    INFO(o.message);
    CHECK(o.kind == OutcomeKind::kDone);
  }
  for (const auto& id : ids) CHECK(rig.peer.Contact(id)->at("ccpa_do_not_sell") == "true");

  const auto stats = rig.peer.Stats();
  CHECK(stats.accepted == 50);  // a search and a PATCH per task, none refused and sent again
  CHECK(stats.refused_burst == 0);
  CHECK(stats.refused_secondly == 0);
  CHECK(stats.refused_daily == 0);
  CHECK(stats.max_in_window <= 10);
  // 50 calls at 10 per second cannot take less than 4 s: the limit was reached and waited out, mid-batch.
  CHECK(took >= 4s);
  // And on the peer's own clock: no 11 calls ever arrived within one window.
  const auto calls = rig.peer.recorder().Calls();
  REQUIRE(calls.size() == 50);
  for (std::size_t i = 0; i + 10 < calls.size(); ++i) {
    INFO("calls " << i << " to " << i + 10);
    CHECK(calls[i + 10].at - calls[i].at >= 995ms);
  }
}

TEST_CASE("hubspot: a lower limit in the rate headers is learned and kept", "[hubspot]") {
  HubspotPeerOptions options;
  options.burst_max = 6;
  options.interval = 1000ms;
  Rig rig(options, {{"burst_interval_ms", 1000}});  // burst_limit stays at its default of 100
  std::vector<std::string> ids;
  for (int i = 0; i < 14; ++i) ids.push_back(rig.Seed(fmt::format("learn{}@example.com", i)));
  // One call teaches X-HubSpot-RateLimit-Max: 6.
  REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", ids[0]}})).kind == OutcomeKind::kDone);
  std::vector<TaskInput> tasks;
  for (std::size_t i = 1; i < ids.size(); ++i) tasks.push_back(Task(TaskAction::kAccess, {{"hubspot_id", ids[i]}}));
  for (const auto& o : RunAll(*rig.connector, tasks, 30s)) CHECK(o.kind == OutcomeKind::kDone);
  const auto stats = rig.peer.Stats();
  CHECK(stats.refused_burst == 0);
  CHECK(stats.max_in_window <= 6);
}

TEST_CASE("hubspot: the daily allowance is never overspent and a DAILY 429 waits for midnight", "[hubspot]") {
  HubspotPeerOptions options;
  options.daily_max = 1000;
  Rig rig(options);
  rig.peer.SetDailyUsed(997);
  const std::string id = rig.Seed(kEmail);
  // Each read is one call; X-HubSpot-RateLimit-Daily-Remaining tells the connector what is left.
  for (int i = 0; i < 3; ++i) {
    REQUIRE(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", id}})).kind == OutcomeKind::kDone);
  }
  const auto calls_before = rig.peer.recorder().Calls().size();
  const Outcome refused = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", id}}));
  CHECK(refused.kind == OutcomeKind::kRetry);
  CHECK(refused.message.find("daily") != std::string::npos);
  REQUIRE(refused.retry_after.has_value());
  const auto midnight = UntilNextMidnight("America/Los_Angeles", std::chrono::system_clock::now());
  CHECK(*refused.retry_after <= midnight + 1s);
  CHECK(*refused.retry_after >= midnight - 5s);
  CHECK(rig.peer.recorder().Calls().size() == calls_before);  // refused here, not by HubSpot
  CHECK(rig.peer.Stats().refused_daily == 0);

  // A DAILY 429 from HubSpot (another integration spent the allowance) closes the day for every task.
  Rig fresh;
  const std::string fresh_id = fresh.Seed(kEmail);
  fresh.peer.FailNext(1, 429, RateLimitBody("DAILY"));
  const Outcome daily = RunAndWait(*fresh.connector, Task(TaskAction::kAccess, {{"hubspot_id", fresh_id}}));
  CHECK(daily.kind == OutcomeKind::kRetry);
  CHECK(daily.message.find("DAILY") != std::string::npos);
  REQUIRE(daily.retry_after.has_value());
  CHECK(*daily.retry_after >= UntilNextMidnight("America/Los_Angeles", std::chrono::system_clock::now()) - 5s);
  const auto fresh_calls = fresh.peer.recorder().Calls().size();
  CHECK(RunAndWait(*fresh.connector, Task(TaskAction::kAccess, {{"hubspot_id", fresh_id}})).kind == OutcomeKind::kRetry);
  CHECK(fresh.peer.recorder().Calls().size() == fresh_calls);
}

TEST_CASE("hubspot: a TEN_SECONDLY_ROLLING 429 waits one window and a SECONDLY 429 one second", "[hubspot]") {
  Rig rig;
  const std::string id = rig.Seed(kEmail);
  rig.peer.FailNext(1, 429, RateLimitBody("TEN_SECONDLY_ROLLING"));
  const Outcome burst = RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"hubspot_id", id}}));
  CHECK(burst.kind == OutcomeKind::kRetry);
  CHECK(burst.retry_after == std::chrono::milliseconds(10000));
  CHECK(burst.message.find("TEN_SECONDLY_ROLLING") != std::string::npos);

  Rig search;
  search.Seed(kEmail);
  search.peer.FailNext(1, 429, RateLimitBody("SECONDLY"));
  const Outcome secondly = RunAndWait(*search.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(secondly.kind == OutcomeKind::kRetry);
  CHECK(secondly.retry_after == std::chrono::milliseconds(1000));
  // A second later the search is let through again.
  std::this_thread::sleep_for(1100ms);
  const Outcome later = RunAndWait(*search.connector, Task(TaskAction::kAccess, {{"email", kEmail}}));
  INFO(later.message);
  CHECK(later.kind == OutcomeKind::kDone);
}

TEST_CASE("hubspot: peer errors are outcomes whose text holds no identity value", "[hubspot]") {
  Rig rig;
  rig.Seed(kEmail);
  rig.Seed(kOtherEmail, "Someone");
  // Moving the address onto another contact's: HubSpot answers 409 and names that address.
  const Outcome conflict = RunAndWait(*rig.connector, Task(TaskAction::kCorrect, {{"email", kEmail}},
                                                           {{"email", kOtherEmail}}));
  CHECK(conflict.kind == OutcomeKind::kFailed);
  CHECK(conflict.message.find("409") != std::string::npos);
  CHECK(conflict.message.find("CONFLICT") != std::string::npos);
  CHECK(conflict.message.find("[redacted]") != std::string::npos);
  CHECK(conflict.message.find("correlationId") != std::string::npos);

  const Outcome undefined = RunAndWait(
      *rig.Make({{"opt_out_properties", {{"no_such_property", "true"}}}}), Task(TaskAction::kOptOut, {{"email", kEmail}}));
  CHECK(undefined.kind == OutcomeKind::kFailed);
  CHECK(undefined.message.find("VALIDATION_ERROR") != std::string::npos);
  CHECK(undefined.message.find("no_such_property") != std::string::npos);

  rig.peer.FailNext(2, 503, {{"status", "error"}, {"message", "internal error"}, {"category", "INTERNAL_ERROR"}});
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kRetry);
  rig.peer.FailNext(1, 477, {{"status", "error"}, {"message", "migration in progress"}, {"category", "MIGRATION"}});
  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"email", kEmail}})).kind == OutcomeKind::kRetry);

  rig.dir.Write("wrong.token", "not-the-token");
  auto wrong = rig.Make({{"access_token_file", "wrong.token"}});
  const Outcome refused = RunAndWait(*wrong, Task(TaskAction::kAccess, {{"email", kEmail}}));
  CHECK(refused.kind == OutcomeKind::kFailed);
  CHECK(refused.message.find("private app token (401)") != std::string::npos);

  CHECK(RunAndWait(*rig.connector, Task(TaskAction::kAccess, {{"phone", "+1 415 555 0100"}})).kind ==
        OutcomeKind::kFailed);
}

TEST_CASE("hubspot: settings are checked at start-up", "[hubspot]") {
  Rig rig;
  const auto* type = rightsd::connectors::FindConnectorType("hubspot");
  REQUIRE(type != nullptr);
  CHECK_NOTHROW(rightsd::connectors::ValidateSettings(*type, "hs", {{"access_token_file", "t"}}));
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "hs", json::object()), ConnectorConfigError);
  CHECK_THROWS_AS(rightsd::connectors::ValidateSettings(*type, "hs", {{"access_token_file", "t"}, {"burst_limit", 0}}),
                  ConnectorConfigError);
  CHECK_THROWS_AS(
      rightsd::connectors::ValidateSettings(*type, "hs", {{"access_token_file", "t"}, {"properties", {{"Bad Name", "x"}}}}),
      ConnectorConfigError);
  CHECK_THROWS_AS(rig.Make({{"access_token_file", "missing.token"}}), ConnectorConfigError);
  rig.dir.Write("empty.token", "\n");
  CHECK_THROWS_AS(rig.Make({{"access_token_file", "empty.token"}}), ConnectorConfigError);
  CHECK_THROWS_AS(rig.Make({{"account_time_zone", "Mars/Olympus_Mons"}}), ConnectorConfigError);
  CHECK_THROWS_AS(rig.Make({{"properties", {{"email", "not-a-category"}}}}), ConnectorConfigError);
  // Defaults: the standard properties in the system's one category.
  auto defaults = rig.Make({{"properties", nullptr}}, {"marketing"});
  const std::string id = rig.Seed(kEmail);
  const Outcome out = RunAndWait(*defaults, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(out.kind == OutcomeKind::kDone);
  CHECK(out.records["marketing"][0]["hs_object_id"] == id);
  CHECK(out.records["marketing"][0]["firstname"] == "Jane");
  // With several categories the defaults go under identifiers, and without it the settings must say where.
  auto several = rig.Make({{"properties", nullptr}}, {"identifiers", "commercial information"});
  const Outcome listed = RunAndWait(*several, Task(TaskAction::kAccess, {{"email", kEmail}}));
  REQUIRE(listed.kind == OutcomeKind::kDone);
  CHECK(listed.records["identifiers"][0]["hs_object_id"] == id);
  CHECK_THROWS_WITH(rig.Make({{"properties", nullptr}}, {"marketing", "commercial information"}),
                    Catch::Contains("settings/properties") && Catch::Contains("several categories"));
}

TEST_CASE("hubspot: the daemon runs a delete request end to end", "[hubspot][integration]") {
  using namespace rightsd::test;
  HubspotPeer peer;
  peer.Start();
  const std::string id = peer.AddContact({{"email", "pat.hubspot@example.com"}, {"firstname", "Pat"}});
  const std::string kept = peer.AddContact({{"email", "kim@example.com"}, {"firstname", "Kim"}});
  DaemonEnv env(true);
  std::ofstream(env.dir() / "hubspot.token") << peer.options().token << "\n";
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "hubspot"
connector = "hubspot"
categories = ["identifiers"]
request_types = ["access", "delete", "opt_out"]
[systems.settings]
base_url = "{}"
access_token_file = "hubspot.token"
opt_out_properties = {{ ccpa_do_not_sell = "true" }}
timeout_ms = 5000
)toml",
                                              peer.base_url()));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              R"({"type":"delete","subject":{"identities":[{"kind":"email","value":"Pat.HubSpot@example.com"}]}})");
  REQUIRE(created.status == 201);
  const std::string request = created.json()["id"];
  REQUIRE(d.Call("POST", "/v1/requests/" + request + "/verify", env.token("submitter"),
                 R"({"method":"account_login","level":"reasonably_high"})")
              .status == 200);
  json last;
  REQUIRE(Eventually([&] {
    last = d.Call("GET", "/v1/requests/" + request, env.token("viewer")).json();
    return last["status"] == "completed";
  }, 30));
  INFO(last.dump(2));
  REQUIRE(last["tasks"].size() == 1);
  CHECK(last["tasks"][0]["state"] == "done");
  CHECK_FALSE(peer.Contact(id).has_value());
  CHECK(peer.Contact(kept).has_value());
  CHECK(peer.recorder().CallsTo("POST", "/crm/v3/objects/contacts/gdpr-delete").size() == 1);
  CHECK(peer.recorder().CallsTo("DELETE", "/").empty());
  CHECK(LowerCopy(d.Log()).find("pat.hubspot@example.com") == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("hubspot: the daemon runs access, correct, opt-out and limit requests end to end", "[hubspot][integration]") {
  using namespace rightsd::test;
  HubspotPeer peer;
  peer.Start();
  const std::string id =
      peer.AddContact({{"email", "drew.hubspot@example.com"}, {"firstname", "Drew"}, {"lastname", "Oldname"}});
  DaemonEnv env(true);
  std::ofstream(env.dir() / "hubspot.token") << peer.options().token << "\n";
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
[[systems]]
name = "hubspot"
connector = "hubspot"
categories = ["identifiers"]
request_types = ["access", "delete", "correct", "opt_out", "limit"]
[systems.settings]
base_url = "{}"
access_token_file = "hubspot.token"
opt_out_properties = {{ ccpa_do_not_sell = "true" }}
limit_properties = {{ ccpa_limit_spi = "true" }}
timeout_ms = 5000
)toml",
                                              peer.base_url()));
  Daemon d(env);
  REQUIRE(d.WaitReady());
  // Opt-outs and limits need no verification; access and correct do.
  auto run = [&](const std::string& type, const std::string& extra) {
    const auto created =
        d.Call("POST", "/v1/requests", env.token("submitter"),
               R"({"type":")" + type +
                   R"(","subject":{"identities":[{"kind":"email","value":"Drew.HubSpot@example.com"}]})" + extra + "}");
    INFO(created.body);
    REQUIRE(created.status == 201);
    const std::string request = created.json()["id"];
    if (type == "access" || type == "correct") {
      REQUIRE(d.Call("POST", "/v1/requests/" + request + "/verify", env.token("submitter"),
                     R"({"method":"account_login","level":"reasonably_high"})")
                  .status == 200);
    }
    json last;
    const bool completed = Eventually([&] {
      last = d.Call("GET", "/v1/requests/" + request, env.token("viewer")).json();
      return last["status"] == "completed";
    }, 30);
    INFO(last.dump(2));
    REQUIRE(completed);
    REQUIRE(last["tasks"].size() == 1);
    CHECK(last["tasks"][0]["state"] == "done");
    return request;
  };

  const std::string access = run("access", "");
  const auto package = d.Call("GET", "/v1/requests/" + access + "/package", env.token("submitter"));
  INFO(package.body);
  REQUIRE(package.status == 200);
  CHECK(package.json()["systems"]["hubspot"]["identifiers"][0]["firstname"] == "Drew");

  run("correct", R"(,"corrections":[{"field":"last_name","value":"Newname"}])");
  CHECK(peer.Contact(id)->at("lastname") == "Newname");

  run("opt_out", R"(,"channel":"gpc")");
  CHECK(peer.Contact(id)->at("ccpa_do_not_sell") == "true");
  CHECK_FALSE(peer.Contact(id)->contains("ccpa_limit_spi"));

  run("limit", "");
  CHECK(peer.Contact(id)->at("ccpa_limit_spi") == "true");
  CHECK(peer.Contact(id)->at("email") == "drew.hubspot@example.com");  // nothing but the flags changed

  const std::string log = LowerCopy(d.Log());
  CHECK(log.find("drew.hubspot@example.com") == std::string::npos);
  CHECK(log.find("newname") == std::string::npos);
  CHECK(log.find(peer.options().token) == std::string::npos);
  CHECK(d.Stop() == 0);
}
