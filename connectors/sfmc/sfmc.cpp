// The Salesforce Marketing Cloud Engagement connector.
//
// Contract followed: reference/connector-apis.md section 2.9 ([V] official docs, [S] secondary, [U] unverified):
//   token     POST https://{subdomain}.auth.marketingcloudapis.com/v2/token, JSON {grant_type:"client_credentials",
//             client_id, client_secret, scope?, account_id?}; tokens last 20 minutes [V]; the answer carries
//             access_token, expires_in and rest_instance_url [S];
//   delete    POST {rest_instance_url}contacts/v1/contacts/actions/delete?type=keys with {"values":[contact keys],
//             "DeleteOperationType":"ContactAndAttributes"}: asynchronous, one operation at a time, hours [V]; the
//             answer names operationID [S];
//   status    GET contacts/v1/contacts/actions/delete/status?operationID={id}: operation.status and
//             backgroundOperationsSummary[].backgroundOperationStatusID [V];
//   retry     POST contacts/v1/operations/delete/{id}/retry [V];
//   429       {"message":"Rate limit exceeded","errorcode":50100,"retryAfter":5} with Retry-After, or 50200 [V].
// Beyond 2.9 (Salesforce's own reference pages, not in the contract, so treated as [U] here):
//   look-up   POST contacts/v1/addresses/email/search {"channelAddressList":[emails],"maximumCount":n} ->
//             channelAddressResponseEntities[{channelAddress, contactKeyDetails:[{contactKey, createDate}]}];
//   suppress  POST hub/v1/dataevents/key:{external key}/rowset [{"keys":{...},"values":{...}}] (a synchronous
//             upsert into a data extension).
//
// Choices where the contract is silent or loose:
// - Contact keys: identities of kind sfmc_contact_key are contact keys as given; email identities are looked up
//   with the email search (email_lookup, on by default) and, when email_is_contact_key is set (accounts that key
//   subscribers by address), also used as keys themselves. Other kinds are never sent.
// - Delete: the first Run resolves the keys and submits one operation for all of them; the operation id (never a
//   key) is the continuation. Later Runs poll its status with an interval that starts at poll_initial_seconds and
//   doubles up to poll_max_seconds. Statuses: Queued/InProcess/Pending/Processing/Scheduled/Cancelling and any
//   status we do not know keep polling; Completed is done once backgroundOperationsSummary says Completed (the
//   delete phase, which follows the SuppressionRestoreUntilDays suppression window) -- or at once when
//   require_delete_phase is false; Failed/Error/CompletedWithErrors are retried through the retry endpoint
//   retry_failed_operations times, then fail; Cancelled/Aborted/Invalid (also as a delete-phase status) fail. After
//   give_up_after_hours without an end the task fails, naming the operation, so a person looks.
// - Transient failures while polling (timeouts, 429, 5xx, the auth host being away) answer kInProgress with the
//   continuation kept and the peer's delay, not kRetry: the store drops the continuation of a kRetry, and a lost
//   operation id would mean a second delete operation. 24 such failures in a row fail the task.
// - Idempotency of the submission: the contact-delete API takes no idempotency key. A submission whose outcome was
//   not committed (the daemon died between Marketing Cloud's 200 and the database commit) is submitted again, once
//   per such crash; this is harmless -- a delete of contacts that are already suppressed or deleted leaves the same
//   state -- and costs a second place in Marketing Cloud's one-at-a-time queue. Within one process the window is
//   closed: every submitted operation is remembered by task id until the task ends (bounded memo), and a Run without
//   continuation for a remembered task polls the remembered operation instead of submitting (the lease lost or the
//   database away when the outcome was to be saved). An operation the status endpoint no longer knows (404) is
//   submitted again, once.
// - Access and locate: the email search's answer (contact key, address, creation date) is the record, under
//   access_category (default: the system's first data-map category). The contract documents no read of a contact's
//   attributes, so nothing else is returned; sfmc_contact_key identities cannot be looked up and are not reported.
// - Opt-out and limit: the contract documents no suppression call (2.9 only says a delete suppresses first).
//   When `suppression` is configured the contact is upserted into that data extension (a suppression or exclusion
//   list the account's sends use), keyed by contact key or by email; without it Supports() is false. Correct and
//   deidentify are not supported: 2.9 documents no update.
// - 401 from the REST host: the cached token is dropped, a new one fetched and the call repeated once.
// - Peer text reaches task messages only after every identity value and resolved contact key is cut out of it;
//   receipts and continuations hold operation ids, statuses and counts, never keys or addresses.
#include "connectors/sfmc/sfmc.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace rightsd::connectors::sfmc {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::size_t kMaxMessage = 300;
constexpr int kMaxConsecutivePollErrors = 24;
constexpr std::size_t kMemoCapacity = 10000;
constexpr auto kDefaultTokenLifetime = 1200s;  // "Tokens last 20 minutes" [V]

// --- text -------------------------------------------------------------------------------------------------------

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Peer text that may reach a message or a receipt: the given secrets cut out case-insensitively, control characters
// flattened, the whole shortened.
std::string Scrub(std::string_view text, const std::vector<std::string>& secrets, std::size_t limit = kMaxMessage) {
  std::string out(text.substr(0, 4096));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    const std::string needle = Lower(secret);
    std::string lowered = Lower(out);
    std::size_t pos = 0;
    while ((pos = lowered.find(needle, pos)) != std::string::npos) {
      out.replace(pos, needle.size(), "[redacted]");
      lowered.replace(pos, needle.size(), "[redacted]");
      pos += 10;
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

std::string Rfc3339(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

long long UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string WithoutTrailingSlash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::string JsonText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return std::to_string(v.get<long long>());
  return "";
}

// Marketing Cloud's explanation from an error body: REST errors carry `message` (and `errorcode`), the contacts API
// puts its reasons in `resultMessages`, the auth host answers OAuth-style `error` / `error_description`.
std::string PeerErrorText(const HttpResponse& response) {
  json doc = json::parse(response.body, nullptr, false);
  if (!doc.is_object()) return "";
  std::string text;
  if (doc.contains("message") && doc["message"].is_string()) text = doc["message"].get<std::string>();
  if (text.empty() && doc.contains("resultMessages") && doc["resultMessages"].is_array()) {
    for (const auto& m : doc["resultMessages"]) {
      if (!m.is_object()) continue;
      for (const char* field : {"message", "resultMessage", "resultCode"}) {
        if (m.contains(field) && m[field].is_string() && !m[field].get<std::string>().empty()) {
          text = m[field].get<std::string>();
          break;
        }
      }
      if (!text.empty()) break;
    }
  }
  if (text.empty() && doc.contains("error_description") && doc["error_description"].is_string()) {
    text = doc["error_description"].get<std::string>();
  }
  if (doc.contains("error") && doc["error"].is_string()) {
    text = text.empty() ? doc["error"].get<std::string>() : doc["error"].get<std::string>() + ": " + text;
  }
  if (doc.contains("errorcode") && (doc["errorcode"].is_number_integer() || doc["errorcode"].is_string())) {
    const std::string code = JsonText(doc["errorcode"]);
    if (!code.empty() && code != "0") text += (text.empty() ? "" : " ") + std::string("(errorcode ") + code + ")";
  }
  return text;
}

// A 429's wait: the body's retryAfter (seconds) first, then the Retry-After header.
std::optional<std::chrono::milliseconds> RetryAfterOf(const HttpResponse& response) {
  json doc = json::parse(response.body, nullptr, false);
  if (doc.is_object() && doc.contains("retryAfter")) {
    const json& v = doc["retryAfter"];
    std::optional<double> seconds;
    if (v.is_number()) seconds = v.get<double>();
    if (v.is_string()) {
      try {
        seconds = std::stod(v.get<std::string>());
      } catch (const std::exception&) {
      }
    }
    if (seconds && *seconds >= 0 && *seconds <= 86400) {
      return std::chrono::milliseconds(static_cast<long long>(*seconds * 1000));
    }
  }
  return ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
}

bool IsTransient(const HttpResponse& r) {
  return r.status == 0 || r.status == 408 || r.status == 425 || r.status == 429 || r.status >= 500;
}

// --- configuration ----------------------------------------------------------------------------------------------

struct Suppression {
  std::string data_extension_key;
  std::string key_field = "SubscriberKey";
  bool keyed_by_email = false;
  json values = json::object();
};

struct Config {
  std::string system;
  std::string auth_base;       // no trailing slash
  std::string rest_base;       // configured override, no trailing slash; "" = the token's rest_instance_url
  std::string default_rest;    // https://{subdomain}.rest.marketingcloudapis.com
  std::string client_id;
  std::string client_secret;
  std::string account_id;
  std::string scope;
  bool email_lookup = true;
  bool email_is_contact_key = false;
  int max_keys_per_email = 10;
  std::string access_category;
  bool require_delete_phase = true;
  std::chrono::seconds poll_initial{900};
  std::chrono::seconds poll_max{21600};
  std::chrono::hours give_up_after{720};
  int retry_failed_operations = 1;
  std::optional<Suppression> suppression;
  std::chrono::milliseconds timeout{30000};
  HttpClient* http = nullptr;
};

// --- the token cache --------------------------------------------------------------------------------------------

struct Token {
  std::string access_token;
  std::string rest_base;  // no trailing slash
  std::chrono::steady_clock::time_point refresh_at;
};

struct TokenResult {
  std::shared_ptr<const Token> token;  // null: `failure` says why
  Outcome failure;
};

// One token for all tasks of a system, fetched by whichever task needs it first while others wait for the same
// answer, and refreshed a little before it expires.
class TokenCache : public std::enable_shared_from_this<TokenCache> {
 public:
  explicit TokenCache(std::shared_ptr<const Config> config) : config_(std::move(config)) {}

  void Get(std::function<void(TokenResult)> then) {
    std::shared_ptr<const Token> ready;
    bool fetch = false;
    {
      std::lock_guard lock(mu_);
      if (current_ && std::chrono::steady_clock::now() < current_->refresh_at) {
        ready = current_;
      } else {
        waiters_.push_back(std::move(then));
        fetch = !fetching_;
        fetching_ = true;
      }
    }
    if (ready) {
      then(TokenResult{ready, {}});
    } else if (fetch) {
      Fetch();
    }
  }

  // The REST host refused `access_token`: forget it unless a newer one has replaced it already.
  void Invalidate(const std::string& access_token) {
    std::lock_guard lock(mu_);
    if (current_ && current_->access_token == access_token) current_.reset();
  }

  int fetches() const { return fetches_.load(); }

 private:
  void Fetch() {
    ++fetches_;
    json body = {{"grant_type", "client_credentials"},
                 {"client_id", config_->client_id},
                 {"client_secret", config_->client_secret}};
    if (!config_->scope.empty()) body["scope"] = config_->scope;
    if (!config_->account_id.empty()) body["account_id"] = config_->account_id;
    HttpRequest request;
    request.method = "POST";
    request.url = config_->auth_base + "/v2/token";
    request.timeout = config_->timeout;
    request.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
    request.body = body.dump();
    config_->http->Send(std::move(request), [self = shared_from_this()](HttpResponse response) {
      TokenResult result;
      try {
        result = self->Parse(response);
      } catch (const std::exception& e) {
        result.failure = Outcome::Retry(fmt::format("internal error reading the auth host's answer: {}", e.what()));
      }
      std::vector<std::function<void(TokenResult)>> waiters;
      {
        std::lock_guard lock(self->mu_);
        if (result.token) self->current_ = result.token;
        self->fetching_ = false;
        waiters.swap(self->waiters_);
      }
      for (auto& waiter : waiters) waiter(result);
    });
  }

  TokenResult Parse(const HttpResponse& response) const {
    TokenResult result;
    const std::vector<std::string> secrets = {config_->client_secret};
    const std::string doing = "getting a token from the Marketing Cloud auth host";
    if (response.status == 0) {
      result.failure = Outcome::Retry(response.error == "timeout"
                                          ? fmt::format("{}: no answer within {} ms", doing, config_->timeout.count())
                                          : fmt::format("{}: {}", doing, Scrub(response.error, secrets)));
      return result;
    }
    const std::string said = Scrub(PeerErrorText(response), secrets);
    const std::string suffix = said.empty() ? "" : ": " + said;
    if (response.status == 429) {
      result.failure = Outcome::Retry(fmt::format("{}: rate limited (429){}", doing, suffix), RetryAfterOf(response));
      return result;
    }
    if (IsTransient(response)) {
      result.failure =
          Outcome::Retry(fmt::format("{}: answered {}{}", doing, response.status, suffix),
                         ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
      return result;
    }
    if (response.status != 200) {
      result.failure = Outcome::Failed(fmt::format(
          "{}: the client credentials were refused ({}){}; check client_id, client_secret_file and account_id",
          doing, response.status, suffix));
      return result;
    }
    json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("access_token") || !doc["access_token"].is_string() ||
        doc["access_token"].get<std::string>().empty()) {
      result.failure = Outcome::Retry(fmt::format("{}: the answer holds no access_token", doing));
      return result;
    }
    auto token = std::make_shared<Token>();
    token->access_token = doc["access_token"].get<std::string>();
    std::chrono::seconds lifetime = kDefaultTokenLifetime;
    if (doc.contains("expires_in") && doc["expires_in"].is_number() && doc["expires_in"].get<double>() > 0) {
      lifetime = std::chrono::seconds(static_cast<long long>(doc["expires_in"].get<double>()));
    }
    // A little early: a minute for a 20-minute token, a tenth of the lifetime for short ones.
    const auto early =
        std::min<std::chrono::milliseconds>(60s, std::chrono::duration_cast<std::chrono::milliseconds>(lifetime) / 10);
    token->refresh_at = std::chrono::steady_clock::now() + lifetime - early;
    token->rest_base = config_->rest_base;
    if (token->rest_base.empty() && doc.contains("rest_instance_url") && doc["rest_instance_url"].is_string()) {
      const std::string url = doc["rest_instance_url"].get<std::string>();
      // The token goes wherever this points: only https, or plain http when the auth host itself is (tests).
      const bool plain_ok = config_->auth_base.starts_with("http://");
      if (url.starts_with("https://") || (plain_ok && url.starts_with("http://"))) {
        token->rest_base = WithoutTrailingSlash(url);
      }
    }
    if (token->rest_base.empty()) token->rest_base = config_->default_rest;
    result.token = std::move(token);
    return result;
  }

  std::shared_ptr<const Config> config_;
  std::mutex mu_;
  std::shared_ptr<const Token> current_;
  bool fetching_ = false;
  std::vector<std::function<void(TokenResult)>> waiters_;
  std::atomic<int> fetches_{0};
};

// --- submitted operations, by task id ---------------------------------------------------------------------------

class SubmitMemo {
 public:
  std::optional<json> Find(const std::string& task_id) {
    std::lock_guard lock(mu_);
    auto it = by_task_.find(task_id);
    if (it == by_task_.end()) return std::nullopt;
    return it->second;
  }
  void Put(const std::string& task_id, json continuation) {
    std::lock_guard lock(mu_);
    if (by_task_.insert_or_assign(task_id, std::move(continuation)).second) order_.push_back(task_id);
    while (order_.size() > kMemoCapacity) {
      by_task_.erase(order_.front());
      order_.pop_front();
    }
  }
  void Erase(const std::string& task_id) {
    std::lock_guard lock(mu_);
    if (by_task_.erase(task_id) > 0) std::erase(order_, task_id);
  }

 private:
  std::mutex mu_;
  std::map<std::string, json> by_task_;
  std::deque<std::string> order_;
};

// --- one task ---------------------------------------------------------------------------------------------------

struct FoundContact {
  std::string contact_key;
  std::string channel_address;
  std::string create_date;
};

class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<const Config> config, std::shared_ptr<TokenCache> tokens, std::shared_ptr<SubmitMemo> memo,
      TaskInput input, OutcomeCallback done)
      : config_(std::move(config)),
        tokens_(std::move(tokens)),
        memo_(std::move(memo)),
        input_(std::move(input)),
        done_(std::move(done)) {
    for (const auto& identity : input_.identities) {
      if (identity.value.empty()) continue;
      secrets_.push_back(identity.value);
      auto add = [](std::vector<std::string>& list, const std::string& v) {
        if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
      };
      if (identity.kind == "email") add(emails_, identity.value);
      if (identity.kind == "sfmc_contact_key") add(explicit_keys_, identity.value);
    }
    secrets_.push_back(config_->client_secret);
  }

  void Start() {
    if (emails_.empty() && explicit_keys_.empty()) {
      Finish(Outcome::Failed("no identity this system understands (Marketing Cloud takes email and sfmc_contact_key)"));
      return;
    }
    switch (input_.action) {
      case TaskAction::kDelete: StartDelete(); return;
      case TaskAction::kAccess:
      case TaskAction::kLocate: StartLookup(); return;
      case TaskAction::kOptOut:
      case TaskAction::kLimit: StartSuppression(); return;
      default:
        Finish(Outcome::Failed(fmt::format("the sfmc connector does not support {}", ToString(input_.action))));
    }
  }

 private:
  // --- delete ---

  void StartDelete() {
    const json& c = input_.continuation;
    if (c.is_object() && c.contains("operation_id") && !JsonText(c["operation_id"]).empty()) {
      cont_ = c;
      Poll();
      return;
    }
    if (auto remembered = memo_->Find(input_.task_id)) {
      // Submitted by this process, but the engine has no record of it: poll that operation, do not submit again.
      cont_ = std::move(*remembered);
      cont_["recovered"] = true;
      Poll();
      return;
    }
    ResolveKeys([self = shared_from_this()] { self->SubmitDelete(); });
  }

  void SubmitDelete() {
    if (keys_.empty()) {
      Finish(Outcome::NotFound(KeyReceipt(BaseReceipt())));
      return;
    }
    const json body = {{"values", keys_}, {"DeleteOperationType", "ContactAndAttributes"}};
    Rest("POST", "contacts/v1/contacts/actions/delete?type=keys", body.dump(),
         [self = shared_from_this()](HttpResponse response) { self->OnSubmitted(response); });
  }

  void OnSubmitted(const HttpResponse& response) {
    if (response.status < 200 || response.status >= 300) {
      Finish(PeerFailure(response, "submitting the contact delete"));
      return;
    }
    json doc = json::parse(response.body, nullptr, false);
    const bool initiated = doc.is_object() && doc.value("operationInitiated", true) == true &&
                           doc.value("hasErrors", false) == false && doc.contains("operationID") &&
                           !JsonText(doc["operationID"]).empty();
    if (!initiated) {
      const std::string said = Scrub(PeerErrorText(response), secrets_);
      Finish(Outcome::Failed(fmt::format("Marketing Cloud did not start the contact delete{}",
                                         said.empty() ? "" : ": " + said)));
      return;
    }
    const int resubmits = cont_.is_object() ? cont_.value("resubmits", 0) : 0;
    cont_ = {{"operation_id", doc["operationID"]},
             {"submitted_at", UnixNow()},
             {"polls", 0},
             {"interval_seconds", config_->poll_initial.count()},
             {"retries", 0},
             {"resubmits", resubmits},
             {"poll_errors", 0},
             {"contact_keys", keys_.size()}};
    if (doc.contains("requestServiceMessageID") && doc["requestServiceMessageID"].is_string()) {
      cont_["request_service_message_id"] = Scrub(doc["requestServiceMessageID"].get<std::string>(), secrets_, 80);
    }
    memo_->Put(input_.task_id, cont_);
    json receipt = OperationReceipt();
    receipt["operation_status"] = "Submitted";
    Finish(InProgress(std::move(receipt), config_->poll_initial));
  }

  void Poll() {
    polling_ = true;
    Rest("GET", "contacts/v1/contacts/actions/delete/status?operationID=" + PercentEncode(OperationId()), "",
         [self = shared_from_this()](HttpResponse response) { self->OnStatus(response); });
  }

  void OnStatus(const HttpResponse& response) {
    if (response.status == 404) {
      UnknownOperation();
      return;
    }
    if (response.status != 200) {
      Finish(PeerFailure(response, "reading the contact delete's status"));
      return;
    }
    json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("operation") || !doc["operation"].is_object() ||
        !doc["operation"].contains("status") || !doc["operation"]["status"].is_string()) {
      if (doc.is_object() && doc.value("hasErrors", false) == true) {
        UnknownOperation();
      } else {
        Finish(Outcome::Retry("the contact delete's status answer holds no operation.status"));
      }
      return;
    }
    const json& operation = doc["operation"];
    const std::string status = operation["status"].get<std::string>();
    std::vector<std::string> phase;
    if (doc.contains("backgroundOperationsSummary") && doc["backgroundOperationsSummary"].is_array()) {
      for (const auto& b : doc["backgroundOperationsSummary"]) {
        if (b.is_object() && b.contains("backgroundOperationStatusID")) {
          phase.push_back(JsonText(b["backgroundOperationStatusID"]));
        }
      }
    }
    cont_["polls"] = cont_.value("polls", 0) + 1;
    cont_["poll_errors"] = 0;
    json receipt = OperationReceipt();
    receipt["operation_status"] = Scrub(status, secrets_, 40);
    if (!phase.empty()) receipt["delete_phase_status"] = Scrub(phase.back(), secrets_, 40);
    for (const char* field : {"expectedListCount", "actualListCount", "successCount", "errorCount"}) {
      if (operation.contains(field) && operation[field].is_number_integer()) receipt[field] = operation[field];
    }
    if (doc.contains("numberofRestorableDays") && doc["numberofRestorableDays"].is_number_integer()) {
      receipt["restorable_days"] = doc["numberofRestorableDays"];
    }

    static const std::set<std::string> kRunning = {"queued",     "inprocess", "pending",  "processing",
                                                   "scheduled",  "cancelling", "retrying", "inprogress"};
    static const std::set<std::string> kRetryable = {"failed", "error", "completedwitherrors"};
    static const std::set<std::string> kEnded = {"cancelled", "canceled", "aborted", "invalid"};
    const std::string s = Lower(status);
    if (s == "completed") {
      const bool phase_failed = std::any_of(phase.begin(), phase.end(), [](const std::string& p) {
        return kEnded.contains(Lower(p)) || Lower(p) == "failed";
      });
      const bool phase_done = !phase.empty() && std::all_of(phase.begin(), phase.end(), [](const std::string& p) {
        return Lower(p) == "completed";
      });
      if (phase_failed) {
        Outcome failed = Outcome::Failed(fmt::format(
            "Marketing Cloud operation {}: the delete phase ended {} (Aborted means the contacts were restored); "
            "submit the request again or delete them in Contact Builder",
            OperationId(), Scrub(phase.back(), secrets_, 40)));
        failed.receipt = std::move(receipt);
        Finish(std::move(failed));
      } else if (phase_done || !config_->require_delete_phase) {
        receipt["completed_at"] = Rfc3339(static_cast<std::time_t>(UnixNow()));
        receipt["deleted"] = phase_done;
        if (!phase_done) receipt["note"] = "suppressed; the delete phase follows after the restore window";
        Finish(Outcome::Done(std::move(receipt)));
      } else {
        // Suppressed; deletion from lists and sendable data extensions follows the restore window.
        KeepPolling(std::move(receipt), status);
      }
    } else if (kRetryable.contains(s)) {
      if (cont_.value("retries", 0) < config_->retry_failed_operations) {
        RetryOperation(std::move(receipt));
      } else {
        Outcome failed = Outcome::Failed(
            fmt::format("Marketing Cloud operation {} ended {} after {} retries; check it under Contact Builder's "
                        "contact delete operations",
                        OperationId(), Scrub(status, secrets_, 40), cont_.value("retries", 0)));
        failed.receipt = std::move(receipt);
        Finish(std::move(failed));
      }
    } else if (kEnded.contains(s)) {
      Outcome failed = Outcome::Failed(
          fmt::format("Marketing Cloud operation {} ended {}; the contacts were not deleted", OperationId(),
                      Scrub(status, secrets_, 40)));
      failed.receipt = std::move(receipt);
      Finish(std::move(failed));
    } else {
      if (!kRunning.contains(s)) receipt["unrecognised_status"] = true;
      KeepPolling(std::move(receipt), status);
    }
  }

  void KeepPolling(json receipt, const std::string& status) {
    const long long submitted = cont_.value("submitted_at", UnixNow());
    if (UnixNow() - submitted >= std::chrono::duration_cast<std::chrono::seconds>(config_->give_up_after).count()) {
      Outcome failed = Outcome::Failed(fmt::format(
          "Marketing Cloud operation {} is still {} after {} hours (give_up_after_hours); check it in Contact Builder",
          OperationId(), Scrub(status, secrets_, 40), (UnixNow() - submitted) / 3600));
      failed.receipt = std::move(receipt);
      Finish(std::move(failed));
      return;
    }
    const long long interval = cont_.value("interval_seconds", static_cast<long long>(config_->poll_initial.count()));
    const long long next = std::min<long long>(std::max<long long>(interval, 1) * 2, config_->poll_max.count());
    cont_["interval_seconds"] = next;
    Finish(InProgress(std::move(receipt), std::chrono::seconds(next)));
  }

  void RetryOperation(json receipt) {
    Rest("POST", "contacts/v1/operations/delete/" + PercentEncode(OperationId()) + "/retry", "",
         [self = shared_from_this(), receipt = std::move(receipt)](HttpResponse response) mutable {
           if (response.status < 200 || response.status >= 300) {
             self->Finish(self->PeerFailure(response, "retrying the failed contact delete"));
             return;
           }
           json doc = json::parse(response.body, nullptr, false);
           if (!doc.is_object() || doc.value("operationRestarted", false) != true) {
             const std::string said = Scrub(PeerErrorText(response), self->secrets_);
             Outcome failed = Outcome::Failed(fmt::format("Marketing Cloud operation {} failed and did not restart{}",
                                                          self->OperationId(), said.empty() ? "" : ": " + said));
             failed.receipt = std::move(receipt);
             self->Finish(std::move(failed));
             return;
           }
           if (doc.contains("operationID") && !JsonText(doc["operationID"]).empty()) {
             self->cont_["operation_id"] = doc["operationID"];
           }
           self->cont_["retries"] = self->cont_.value("retries", 0) + 1;
           self->cont_["interval_seconds"] = self->config_->poll_initial.count();
           self->memo_->Put(self->input_.task_id, self->cont_);
           receipt = self->OperationReceipt();
           receipt["operation_status"] = "Restarted";
           self->Finish(self->InProgress(std::move(receipt), self->config_->poll_initial));
         });
  }

  // The status endpoint does not know the operation (purged, or never created): delete again, once.
  void UnknownOperation() {
    const std::string id = OperationId();
    if (cont_.value("resubmits", 0) >= 1) {
      polling_ = false;
      Finish(Outcome::Failed(fmt::format(
          "Marketing Cloud does not know contact delete operation {} (submitted again once already)", id)));
      return;
    }
    polling_ = false;
    memo_->Erase(input_.task_id);
    cont_ = {{"resubmits", 1}};
    ResolveKeys([self = shared_from_this()] { self->SubmitDelete(); });
  }

  // --- look-up (access, locate, and contact keys for delete and suppression) ---

  void ResolveKeys(std::function<void()> then) {
    keys_ = explicit_keys_;
    auto add = [this](const std::string& key) {
      if (key.empty() || std::find(keys_.begin(), keys_.end(), key) != keys_.end()) return;
      keys_.push_back(key);
      secrets_.push_back(key);
    };
    if (config_->email_is_contact_key) {
      for (const auto& email : emails_) add(email);
    }
    if (!config_->email_lookup || emails_.empty()) {
      then();
      return;
    }
    LookupEmails([self = shared_from_this(), add, then = std::move(then)]() {
      for (const auto& found : self->found_) add(found.contact_key);
      then();
    });
  }

  void LookupEmails(std::function<void()> then) {
    const json body = {{"channelAddressList", emails_}, {"maximumCount", config_->max_keys_per_email}};
    looked_up_ = true;
    Rest("POST", "contacts/v1/addresses/email/search", body.dump(),
         [self = shared_from_this(), then = std::move(then)](HttpResponse response) {
           if (response.status != 200) {
             self->Finish(self->PeerFailure(response, "looking up contact keys by email address"));
             return;
           }
           json doc = json::parse(response.body, nullptr, false);
           if (!doc.is_object() || !doc.contains("channelAddressResponseEntities") ||
               !doc["channelAddressResponseEntities"].is_array()) {
             self->Finish(Outcome::Retry("the email search answer holds no channelAddressResponseEntities"));
             return;
           }
           for (const auto& entity : doc["channelAddressResponseEntities"]) {
             if (!entity.is_object()) continue;
             const std::string address = entity.value("channelAddress", "");
             auto take = [&](const json& detail) {
               if (!detail.is_object() || !detail.contains("contactKey") || !detail["contactKey"].is_string()) return;
               FoundContact found{detail["contactKey"].get<std::string>(), address, ""};
               for (const char* field : {"createDate", "createdDate"}) {
                 if (detail.contains(field) && detail[field].is_string())
                   found.create_date = detail[field].get<std::string>();
               }
               if (found.contact_key.empty()) return;
               const bool seen = std::any_of(self->found_.begin(), self->found_.end(), [&](const FoundContact& f) {
                 return f.contact_key == found.contact_key;
               });
               if (!seen) {
                 self->secrets_.push_back(found.contact_key);
                 self->found_.push_back(std::move(found));
               }
             };
             // The reference pages show both shapes: details in contactKeyDetails, or the key on the entity itself.
             // "No match" is an empty object in contactKeyDetails.
             if (entity.contains("contactKeyDetails") && entity["contactKeyDetails"].is_array()) {
               for (const auto& detail : entity["contactKeyDetails"]) take(detail);
             } else {
               take(entity);
             }
           }
           then();
         });
  }

  void StartLookup() {
    if (!config_->email_lookup) {
      Finish(Outcome::Failed("email_lookup is off: this system cannot find contacts"));
      return;
    }
    if (emails_.empty()) {
      Finish(Outcome::Failed(
          "no email identity: Marketing Cloud's contact look-up is by email address (sfmc_contact_key alone cannot "
          "be read)"));
      return;
    }
    LookupEmails([self = shared_from_this()] { self->OnLookedUp(); });
  }

  void OnLookedUp() {
    json receipt = BaseReceipt();
    receipt["contacts_found"] = found_.size();
    if (found_.empty()) {
      Finish(Outcome::NotFound(std::move(receipt)));
      return;
    }
    if (input_.action == TaskAction::kLocate) {
      Outcome o;
      o.kind = OutcomeKind::kRetainedExempt;
      receipt["retain_basis"] = input_.retain_basis;
      o.receipt = std::move(receipt);
      Finish(std::move(o));
      return;
    }
    json items = json::array();
    for (const auto& f : found_) {
      json record = {{"contactKey", f.contact_key}, {"channelAddress", f.channel_address}};
      if (!f.create_date.empty()) record["createDate"] = f.create_date;
      items.push_back(std::move(record));
    }
    receipt["records"] = found_.size();
    receipt["categories"] = json{{config_->access_category, found_.size()}};
    Outcome done = Outcome::Done(std::move(receipt));
    done.records = json{{config_->access_category, std::move(items)}};
    Finish(std::move(done));
  }

  // --- opt-out and limit ---

  void StartSuppression() {
    if (!config_->suppression) {
      Finish(Outcome::Failed("no suppression is configured for this system (settings.suppression)"));
      return;
    }
    if (config_->suppression->keyed_by_email) {
      if (emails_.empty()) {
        Finish(Outcome::Failed("no email identity: the suppression data extension is keyed by email address"));
        return;
      }
      keys_ = emails_;
      UpsertSuppression();
      return;
    }
    ResolveKeys([self = shared_from_this()] {
      if (self->keys_.empty()) {
        self->Finish(Outcome::NotFound(self->KeyReceipt(self->BaseReceipt())));
        return;
      }
      self->UpsertSuppression();
    });
  }

  void UpsertSuppression() {
    const Suppression& s = *config_->suppression;
    json rows = json::array();
    for (const auto& key : keys_) {
      json row = {{"keys", {{s.key_field, key}}}};
      if (!s.values.empty()) row["values"] = s.values;
      rows.push_back(std::move(row));
    }
    Rest("POST", "hub/v1/dataevents/key:" + PercentEncode(s.data_extension_key) + "/rowset", rows.dump(),
         [self = shared_from_this()](HttpResponse response) {
           if (response.status < 200 || response.status >= 300) {
             self->Finish(self->PeerFailure(response, "adding the contact to the suppression data extension"));
             return;
           }
           json receipt = self->KeyReceipt(self->BaseReceipt());
           receipt["data_extension"] = self->config_->suppression->data_extension_key;
           receipt["rows_upserted"] = self->keys_.size();
           receipt["keyed_by"] = self->config_->suppression->keyed_by_email ? "email" : "contact_key";
           self->Finish(Outcome::Done(std::move(receipt)));
         });
  }

  // --- outcomes ---

  json BaseReceipt() const {
    json receipt = {{"api", "sfmc rest"}, {"action", ToString(input_.action)}};
    json kinds = json::array();
    if (!emails_.empty()) kinds.push_back("email");
    if (!explicit_keys_.empty()) kinds.push_back("sfmc_contact_key");
    receipt["identity_kinds"] = std::move(kinds);
    if (looked_up_) receipt["emails_looked_up"] = emails_.size();
    if (reauths_ > 0) receipt["token_refreshed_after_401"] = true;
    return receipt;
  }

  json KeyReceipt(json receipt) const {
    receipt["contact_keys"] = keys_.size();
    if (looked_up_) receipt["contacts_found"] = found_.size();
    return receipt;
  }

  json OperationReceipt() const {
    json receipt = BaseReceipt();
    receipt["operation_id"] = cont_.contains("operation_id") ? cont_["operation_id"] : json();
    if (looked_up_) receipt["contacts_found"] = found_.size();
    for (const char* field : {"contact_keys", "polls", "retries", "resubmits", "request_service_message_id"}) {
      if (cont_.contains(field)) receipt[field] = cont_[field];
    }
    if (cont_.contains("submitted_at") && cont_["submitted_at"].is_number_integer()) {
      receipt["submitted_at"] = Rfc3339(static_cast<std::time_t>(cont_["submitted_at"].get<long long>()));
    }
    if (cont_.value("recovered", false)) receipt["recovered_without_resubmit"] = true;
    return receipt;
  }

  Outcome InProgress(json receipt, std::chrono::seconds after) const {
    Outcome o;
    o.kind = OutcomeKind::kInProgress;
    o.retry_after = std::chrono::duration_cast<std::chrono::milliseconds>(after);
    o.receipt = std::move(receipt);
    o.continuation = cont_;
    o.continuation.erase("recovered");
    return o;
  }

  // A peer answer that is not what the exchange wanted: transient ones retry (after Marketing Cloud's retryAfter or
  // Retry-After when it sent one), permanent ones fail with Marketing Cloud's own explanation.
  Outcome PeerFailure(const HttpResponse& response, std::string_view doing) const {
    if (response.status == 0) {
      if (response.error == "timeout") {
        return Outcome::Retry(fmt::format("{}: Marketing Cloud did not answer within {} ms", doing,
                                          config_->timeout.count()));
      }
      return Outcome::Retry(fmt::format("{}: {}", doing, Scrub(response.error, secrets_)));
    }
    const std::string said = Scrub(PeerErrorText(response), secrets_);
    const std::string suffix = said.empty() ? "" : ": " + said;
    const int s = response.status;
    if (s == 429) {
      return Outcome::Retry(fmt::format("{}: Marketing Cloud is rate limiting (429){}", doing, suffix),
                            RetryAfterOf(response));
    }
    if (IsTransient(response)) {
      return Outcome::Retry(fmt::format("{}: Marketing Cloud answered {}{}", doing, s, suffix),
                            ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
    }
    if (s == 401) {
      return Outcome::Failed(fmt::format("{}: Marketing Cloud refused a fresh access token (401){}", doing, suffix));
    }
    if (s == 403) {
      return Outcome::Failed(fmt::format(
          "{}: Marketing Cloud refused the call (403){}; the API integration may lack the scope for it", doing,
          suffix));
    }
    return Outcome::Failed(fmt::format("{}: Marketing Cloud answered {}{}", doing, s, suffix));
  }

  // --- plumbing ---

  std::string OperationId() const { return cont_.contains("operation_id") ? JsonText(cont_["operation_id"]) : ""; }

  // A REST call with the cached token; a 401 drops the token and repeats the call once with a new one.
  void Rest(std::string method, std::string path, std::string body, std::function<void(HttpResponse)> then,
            bool reauthorised = false) {
    tokens_->Get([self = shared_from_this(), method, path, body, then, reauthorised](TokenResult result) {
      try {
        if (!result.token) {
          self->Finish(std::move(result.failure));
          return;
        }
        HttpRequest request;
        request.method = method;
        request.url = result.token->rest_base + "/" + path;
        request.timeout = self->config_->timeout;
        request.headers = {{"Authorization", "Bearer " + result.token->access_token}, {"Accept", "application/json"}};
        if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
        request.body = body;
        self->config_->http->Send(
            std::move(request),
            [self, method, path, body, then, reauthorised, used = result.token->access_token](HttpResponse response) {
              try {
                if (response.status == 401 && !reauthorised) {
                  ++self->reauths_;
                  self->tokens_->Invalidate(used);
                  self->Rest(method, path, body, then, true);
                  return;
                }
                then(std::move(response));
              } catch (const std::exception& e) {
                self->Finish(
                    Outcome::Retry(fmt::format("internal error handling Marketing Cloud's answer: {}", e.what())));
              }
            });
      } catch (const std::exception& e) {
        self->Finish(Outcome::Retry(fmt::format("internal error calling Marketing Cloud: {}", e.what())));
      }
    });
  }

  // While polling a submitted operation a transient failure must not lose the operation id (the store drops the
  // continuation of a kRetry): it becomes kInProgress with the continuation kept and the peer's delay.
  void Finish(Outcome outcome) {
    if (polling_ && outcome.kind == OutcomeKind::kRetry) {
      const int errors = cont_.value("poll_errors", 0) + 1;
      if (errors > kMaxConsecutivePollErrors) {
        outcome = Outcome::Failed(fmt::format("Marketing Cloud operation {}: {} status polls in a row failed; last: {}",
                                              OperationId(), errors, outcome.message));
      } else {
        cont_["poll_errors"] = errors;
        json receipt = OperationReceipt();
        receipt["last_poll_error"] = outcome.message;
        const auto interval = std::chrono::seconds(
            cont_.value("interval_seconds", static_cast<long long>(config_->poll_initial.count())));
        const auto after =
            outcome.retry_after.value_or(std::chrono::duration_cast<std::chrono::milliseconds>(interval));
        Outcome waiting = InProgress(std::move(receipt), std::chrono::seconds(0));
        waiting.retry_after = after;
        waiting.message = outcome.message;
        outcome = std::move(waiting);
      }
    }
    if (finished_.exchange(true)) return;
    // A finished delete (done, failed, not found) must not be recovered by a later run: an admin's retry of a
    // failed task means "submit again", not "poll the operation that failed".
    if (input_.action == TaskAction::kDelete && outcome.kind != OutcomeKind::kInProgress &&
        outcome.kind != OutcomeKind::kRetry) {
      memo_->Erase(input_.task_id);
    }
    try {
      done_(std::move(outcome));
    } catch (...) {
      // The engine's callback threw; nothing here can repair that, and the I/O thread must survive it.
    }
  }

  std::shared_ptr<const Config> config_;
  std::shared_ptr<TokenCache> tokens_;
  std::shared_ptr<SubmitMemo> memo_;
  TaskInput input_;
  OutcomeCallback done_;
  std::atomic<bool> finished_{false};
  // Written by one exchange before the next is started; the HTTP client's hand-off orders them.
  std::vector<std::string> emails_;
  std::vector<std::string> explicit_keys_;
  std::vector<std::string> keys_;
  std::vector<FoundContact> found_;
  std::vector<std::string> secrets_;  // cut out of every peer text
  json cont_ = json::object();
  bool polling_ = false;
  bool looked_up_ = false;
  int reauths_ = 0;
};

// --- the connector ----------------------------------------------------------------------------------------------

class SfmcConnector final : public Connector {
 public:
  explicit SfmcConnector(std::shared_ptr<const Config> config)
      : config_(config), tokens_(std::make_shared<TokenCache>(config)), memo_(std::make_shared<SubmitMemo>()) {}

  bool Supports(TaskAction action) const override {
    switch (action) {
      case TaskAction::kDelete: return true;
      case TaskAction::kAccess:
      case TaskAction::kLocate: return config_->email_lookup;
      case TaskAction::kOptOut:
      case TaskAction::kLimit: return config_->suppression.has_value();
      default: return false;
    }
  }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    if (!Supports(input.action)) {
      done(
          Outcome::Failed(fmt::format("the sfmc connector as configured does not support {}", ToString(input.action))));
      return;
    }
    std::make_shared<Job>(config_, tokens_, memo_, input, std::move(done))->Start();
  }

 private:
  std::shared_ptr<const Config> config_;
  std::shared_ptr<TokenCache> tokens_;
  std::shared_ptr<SubmitMemo> memo_;
};

std::string SettingString(const json& settings, const char* key) {
  return settings.contains(key) && settings[key].is_string() ? settings[key].get<std::string>() : "";
}

long long SettingInt(const json& settings, const char* key, long long fallback, long long min) {
  if (!settings.contains(key) || !settings[key].is_number_integer()) return fallback;
  return std::max(min, settings[key].get<long long>());
}

bool SettingBool(const json& settings, const char* key, bool fallback) {
  return settings.contains(key) && settings[key].is_boolean() ? settings[key].get<bool>() : fallback;
}

}  // namespace

std::unique_ptr<Connector> MakeSfmcConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto config = std::make_shared<Config>();
  config->system = env.system;
  config->http = env.http;
  auto fail = [&](const std::string& what) {
    throw ConnectorConfigError(fmt::format("system {}: {}", env.system, what));
  };
  if (!config->http) fail("the sfmc connector needs the shared http client");

  const std::string subdomain = SettingString(settings, "subdomain");
  config->auth_base = WithoutTrailingSlash(SettingString(settings, "auth_base_url"));
  config->rest_base = WithoutTrailingSlash(SettingString(settings, "rest_base_url"));
  if (config->auth_base.empty()) {
    if (subdomain.empty()) fail("settings/subdomain: required unless auth_base_url is set");
    config->auth_base = fmt::format("https://{}.auth.marketingcloudapis.com", subdomain);
  }
  config->default_rest = config->rest_base;
  if (config->default_rest.empty() && !subdomain.empty()) {
    config->default_rest = fmt::format("https://{}.rest.marketingcloudapis.com", subdomain);
  }
  if (config->default_rest.empty()) {
    // Only the token's rest_instance_url can say where the REST host is; a token without one fails every call.
    config->default_rest = config->auth_base;
  }

  config->client_id = SettingString(settings, "client_id");
  if (config->client_id.empty()) fail("settings/client_id: required");
  const std::string secret_file = SettingString(settings, "client_secret_file");
  if (secret_file.empty()) fail("settings/client_secret_file: required");
  config->client_secret = ReadCredential(env, "client_secret_file", secret_file);
  if (config->client_secret.empty()) fail("settings/client_secret_file: the file is empty");
  if (settings.contains("account_id")) {
    const json& id = settings["account_id"];
    config->account_id = id.is_string() ? id.get<std::string>() : JsonText(id);
  }
  config->scope = SettingString(settings, "scope");

  config->email_lookup = SettingBool(settings, "email_lookup", true);
  config->email_is_contact_key = SettingBool(settings, "email_is_contact_key", false);
  config->max_keys_per_email = static_cast<int>(SettingInt(settings, "max_contact_keys_per_email", 10, 1));
  config->access_category = SettingString(settings, "access_category");
  if (config->access_category.empty())
    config->access_category = env.categories.empty() ? "contacts" : env.categories.front();
  config->require_delete_phase = SettingBool(settings, "require_delete_phase", true);
  config->poll_initial = std::chrono::seconds(SettingInt(settings, "poll_initial_seconds", 900, 1));
  config->poll_max = std::chrono::seconds(SettingInt(settings, "poll_max_seconds", 21600, 1));
  if (config->poll_max < config->poll_initial)
    fail("settings/poll_max_seconds: must not be below poll_initial_seconds");
  config->give_up_after = std::chrono::hours(SettingInt(settings, "give_up_after_hours", 720, 1));
  config->retry_failed_operations = static_cast<int>(SettingInt(settings, "retry_failed_operations", 1, 0));
  config->timeout = std::chrono::milliseconds(SettingInt(settings, "timeout_ms", 30000, 1));

  if (settings.contains("suppression") && settings["suppression"].is_object()) {
    const json& s = settings["suppression"];
    Suppression suppression;
    suppression.data_extension_key = SettingString(s, "data_extension_key");
    if (suppression.data_extension_key.empty()) fail("settings/suppression/data_extension_key: required");
    if (auto field = SettingString(s, "key_field"); !field.empty()) suppression.key_field = field;
    suppression.keyed_by_email = SettingString(s, "key_source") == "email";
    if (s.contains("values") && s["values"].is_object()) suppression.values = s["values"];
    config->suppression = std::move(suppression);
  }
  return std::make_unique<SfmcConnector>(std::move(config));
}

}  // namespace rightsd::connectors::sfmc
