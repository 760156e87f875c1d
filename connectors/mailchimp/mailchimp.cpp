// The Mailchimp connector.
//
// Contract followed: reference/connector-apis.md 2.8 (certainty as it marks it):
//   https://{dc}.api.mailchimp.com/3.0 where dc is the key's suffix, Basic auth with any user name and the key as
//   password [S]; subscriber_hash = MD5 of the lower-cased email [V]; GET /lists/{list_id}/members/{hash}, 404
//   "Resource Not Found" when absent; PATCH on the same path (email_address, merge_fields, status) [S];
//   POST .../members/{hash}/actions/delete-permanent, no body [V], 204 [U]; errors are application/problem+json
//   {type, title, status, detail, instance} [V]; at most 10 simultaneous connections, then 429, no rate headers [S].
//
// Choices where the contract is silent:
// - Identities: email (hashed) and mailchimp_id (a member's id, which is the subscriber hash itself: 32 hex
//   digits). Each distinct hash is addressed in every configured audience, one call after the other.
// - A 404 says "no such member" and "no such audience" alike. So that a mistyped audience id does not report every
//   consumer as not found, each audience is read once per connector instance (GET /lists/{list_id}, the standard
//   audience read, not in the contract) before its members are; a 404 there fails the task naming the audience.
// - Outcomes: a member absent from every audience is kNotFound for every action; delete-permanent answering 404
//   counts the member as absent (a re-run after a crash that lost the first outcome therefore reports not_found:
//   the member is gone either way). The archiving DELETE is never used.
// - correct: each correction field goes to the merge tag the merge_fields setting names; the field "email" changes
//   email_address (which gives the member a new hash). Fields with no mapping make the task kNeedsManual after the
//   mapped ones were applied.
// - opt_out: PATCH {"status": "unsubscribed"}. limit, deidentify: not offered (the contract has nothing for them).
// - Connections: a per-instance cap (max_connections, at most 10) on calls in flight, shared by all tasks; calls
//   beyond it wait in a queue and start when one finishes -- no thread waits. The cap is per instance: two systems
//   on one account must split the 10 between them. A 429 is kRetry after Retry-After or 2 s.
// - Errors: the problem's title, detail, first field error and instance reach the task's message, with every
//   identity value, correction value and subscriber hash of the task cut out.
#include "connectors/mailchimp/mailchimp.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>

#include <fmt/format.h>

namespace rightsd::connectors::mailchimp {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// How often a call that failed before any answer arrived is sent again (see Send / Call).
constexpr int kTransportResends = 3;
constexpr std::size_t kMaxMessage = 400;
constexpr auto kTooManyConnectionsWait = 2s;
constexpr std::string_view kDefaultCategory = "marketing";
constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kDefaultMergeFields = {{
    {"first_name", "FNAME"},
    {"last_name", "LNAME"},
    {"phone", "PHONE"},
    {"postal_address", "ADDRESS"},
    {"birthday", "BIRTHDAY"},
}};

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

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

bool IsSubscriberHash(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(std::max(n, 0)));
  return out;
}

// Calls in flight for one account, at most `limit` at a time; the rest wait in order. `then(true)` runs on the
// caller's thread when there is room, else on the thread of the Release that makes room; `then(false)` after
// Shutdown.
class ConnectionCap {
 public:
  explicit ConnectionCap(int limit) : limit_(limit) {}

  void Acquire(std::function<void(bool)> then) {
    {
      std::lock_guard lock(mu_);
      if (!shutdown_ && in_use_ >= limit_) {
        waiters_.push_back(std::move(then));
        return;
      }
      if (!shutdown_) ++in_use_;
    }
    then(!shutdown_);
  }

  void Release() {
    std::function<void(bool)> next;
    {
      std::lock_guard lock(mu_);
      if (!shutdown_ && !waiters_.empty()) {
        next = std::move(waiters_.front());  // the freed connection passes straight to it
        waiters_.pop_front();
      } else if (in_use_ > 0) {
        --in_use_;
      }
    }
    if (next) next(true);
  }

  void Shutdown() {
    std::deque<std::function<void(bool)>> refused;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      refused.swap(waiters_);
    }
    for (auto& w : refused) w(false);
  }

 private:
  const int limit_;
  std::mutex mu_;
  int in_use_ = 0;
  bool shutdown_ = false;
  std::deque<std::function<void(bool)>> waiters_;
};

struct Config {
  std::string system;
  std::string base_url;
  std::string authorization;  // "Basic ..."
  std::vector<std::string> audiences;
  std::map<std::string, std::string> merge_fields;  // correction field -> merge tag
  std::string category;
  std::chrono::milliseconds timeout{30000};
  HttpClient* http = nullptr;
};

// Audiences read once and found, per connector instance.
class VerifiedAudiences {
 public:
  bool Has(const std::string& list) {
    std::lock_guard lock(mu_);
    return lists_.contains(list);
  }
  void Add(const std::string& list) {
    std::lock_guard lock(mu_);
    lists_.insert(list);
  }

 private:
  std::mutex mu_;
  std::set<std::string> lists_;
};

struct Shared {
  std::shared_ptr<const Config> config;
  std::shared_ptr<ConnectionCap> cap;
  std::shared_ptr<VerifiedAudiences> verified;
};

class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(Shared shared, TaskInput input, OutcomeCallback done)
      : shared_(std::move(shared)), config_(shared_.config), input_(std::move(input)), done_(std::move(done)) {}

  void Start() {
    std::set<std::string> seen;
    for (const auto& identity : input_.identities) {
      if (identity.value.empty()) continue;
      secrets_.push_back(identity.value);
      std::string hash;
      if (identity.kind == "email") {
        hash = SubscriberHash(identity.value);
        by_.insert("email");
      } else if (identity.kind == "mailchimp_id" && IsSubscriberHash(identity.value)) {
        hash = Lower(identity.value);
        by_.insert("mailchimp_id");
      }
      if (!hash.empty() && seen.insert(hash).second) hashes_.push_back(hash);
    }
    for (const auto& c : input_.corrections) secrets_.push_back(c.value);
    secrets_.insert(secrets_.end(), hashes_.begin(), hashes_.end());
    if (hashes_.empty()) {
      Finish(Outcome::Failed("no identity Mailchimp can address (it takes email and mailchimp_id)"));
      return;
    }
    if (input_.action == TaskAction::kCorrect) {
      patch_ = json::object();
      for (const auto& c : input_.corrections) {
        if (auto it = config_->merge_fields.find(c.field); it != config_->merge_fields.end()) {
          patch_["merge_fields"][it->second] = c.value;
        } else if (c.field == "email") {
          patch_["email_address"] = c.value;
        } else if (std::find(unmapped_.begin(), unmapped_.end(), c.field) == unmapped_.end()) {
          unmapped_.push_back(c.field);
        }
      }
      if (patch_.empty()) {
        Finish(NeedsManual(BaseReceipt()));
        return;
      }
    } else if (input_.action == TaskAction::kOptOut) {
      patch_ = {{"status", "unsubscribed"}};
    }
    Step(0);
  }

 private:
  // Step i is member i % hashes of audience i / hashes.
  void Step(std::size_t i) {
    const std::size_t a = i / hashes_.size();
    if (a == config_->audiences.size()) {
      Conclude();
      return;
    }
    const std::string& list = config_->audiences[a];
    if (i % hashes_.size() == 0 && !shared_.verified->Has(list)) {
      VerifyAudience(i, list);
      return;
    }
    Member(i, list, hashes_[i % hashes_.size()]);
  }

  void VerifyAudience(std::size_t i, const std::string& list) {
    Call("GET", fmt::format("{}/lists/{}?fields=id", config_->base_url, list), "",
         [self = shared_from_this(), i, list](const HttpResponse& response) {
           if (response.status == 404) {
             self->Finish(Outcome::Failed(fmt::format(
                 "audience {}: Mailchimp has no audience with this id in the account (check the audiences setting)",
                 list)));
             return;
           }
           if (response.status != 200) {
             self->Finish(self->PeerFailure(response, fmt::format("audience {}: reading the audience", list)));
             return;
           }
           self->shared_.verified->Add(list);
           self->Step(i);
         });
  }

  void Member(std::size_t i, const std::string& list, const std::string& hash) {
    const std::string member = fmt::format("{}/lists/{}/members/{}", config_->base_url, list, hash);
    std::string method = "GET", url = member, body, doing = "reading the member";
    switch (input_.action) {
      case TaskAction::kDelete:
        method = "POST";
        url = member + "/actions/delete-permanent";
        doing = "deleting the member permanently";
        break;
      case TaskAction::kCorrect:
        method = "PATCH";
        body = patch_.dump();
        doing = "correcting the member";
        break;
      case TaskAction::kOptOut:
        method = "PATCH";
        body = patch_.dump();
        doing = "unsubscribing the member";
        break;
      default:
        break;
    }
    Call(method, url, body, [self = shared_from_this(), i, list, doing](const HttpResponse& response) {
      auto& counts = self->counts_[list];
      if (response.status == 404) {
        ++counts.absent;
      } else if (response.status >= 200 && response.status < 300) {
        ++counts.present;
        if (self->input_.action == TaskAction::kAccess) {
          json member = json::parse(response.body, nullptr, false);
          if (!member.is_object()) {
            self->Finish(Outcome::Retry(fmt::format("audience {}: {}: Mailchimp's answer is not a member", list, doing)));
            return;
          }
          member.erase("_links");
          self->records_.push_back(std::move(member));
        }
      } else {
        self->Finish(self->PeerFailure(response, fmt::format("audience {}: {}", list, doing)));
        return;
      }
      self->Step(i + 1);
    });
  }

  void Conclude() {
    json receipt = BaseReceipt();
    int present = 0;
    for (const auto& [list, c] : counts_) present += c.present;
    if (present == 0) {
      Finish(Outcome::NotFound(std::move(receipt)));
      return;
    }
    switch (input_.action) {
      case TaskAction::kAccess: {
        receipt["records"] = records_.size();
        receipt["categories"] = {{config_->category, records_.size()}};
        Outcome done = Outcome::Done(std::move(receipt));
        done.records = {{config_->category, std::move(records_)}};
        Finish(std::move(done));
        return;
      }
      case TaskAction::kLocate: {
        Outcome o;
        o.kind = OutcomeKind::kRetainedExempt;
        o.receipt = std::move(receipt);
        if (!input_.retain_basis.empty()) o.receipt["retain_basis"] = input_.retain_basis;
        Finish(std::move(o));
        return;
      }
      case TaskAction::kCorrect:
        if (!unmapped_.empty()) {
          Finish(NeedsManual(std::move(receipt)));
          return;
        }
        break;
      default:
        break;
    }
    Finish(Outcome::Done(std::move(receipt)));
  }

  Outcome NeedsManual(json receipt) const {
    Outcome o;
    o.kind = OutcomeKind::kNeedsManual;
    std::string fields;
    for (const auto& f : unmapped_) fields += (fields.empty() ? "" : ", ") + f;
    o.message = fmt::format(
        "{} correction field(s) have no merge field in the merge_fields setting ({}); a person must apply them in "
        "Mailchimp{}",
        unmapped_.size(), Scrub(fields, secrets_), patch_.empty() ? "" : "; the mapped ones were applied");
    o.receipt = std::move(receipt);
    o.receipt["unmapped_fields"] = unmapped_;
    return o;
  }

  json BaseReceipt() const {
    const char* verb = "found";
    switch (input_.action) {
      case TaskAction::kDelete: verb = "deleted"; break;
      case TaskAction::kCorrect: verb = "corrected"; break;
      case TaskAction::kOptOut: verb = "unsubscribed"; break;
      default: break;
    }
    json audiences = json::object();
    int present = 0;
    for (const auto& [list, c] : counts_) {
      audiences[list] = {{verb, c.present}, {"absent", c.absent}};
      present += c.present;
    }
    json receipt = {{"platform", "mailchimp"},
                    {"looked_up_by", json(std::vector<std::string>(by_.begin(), by_.end()))},
                    {"audiences", std::move(audiences)},
                    {"members_found", present}};
    if (input_.action == TaskAction::kDelete) receipt["endpoint"] = "delete-permanent";
    if (input_.action == TaskAction::kCorrect || input_.action == TaskAction::kOptOut) {
      json fields = json::array();
      for (const auto& [key, value] : patch_.items()) {
        if (key == "merge_fields") {
          for (const auto& [tag, v] : value.items()) fields.push_back("merge_fields." + tag);
        } else {
          fields.push_back(key);
        }
      }
      receipt["fields_set"] = std::move(fields);
    }
    return receipt;
  }

  // "<title>: <detail> (<field>: <message>) (instance <id>)" from a problem+json body, scrubbed.
  std::string ProblemText(const HttpResponse& response) const {
    json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object()) return "";
    auto field = [&](const json& o, const char* name) {
      return o.contains(name) && o[name].is_string() ? o[name].get<std::string>() : std::string();
    };
    std::string text = field(doc, "title");
    const std::string detail = field(doc, "detail");
    if (!detail.empty()) text += (text.empty() ? "" : ": ") + detail;
    if (doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty() && doc["errors"][0].is_object()) {
      const json& e = doc["errors"][0];
      const std::string f = field(e, "field"), m = field(e, "message");
      if (!f.empty() || !m.empty()) text += fmt::format(" ({}{}{})", f, f.empty() || m.empty() ? "" : ": ", m);
    }
    text = Scrub(text, secrets_);
    std::string instance = field(doc, "instance");
    if (instance.empty()) instance = response.Header("X-Request-Id");
    if (!instance.empty()) text += fmt::format(" (instance {})", Scrub(instance, secrets_, 64));
    return text;
  }

  Outcome PeerFailure(const HttpResponse& response, const std::string& doing) const {
    const int s = response.status;
    if (s == 0) {
      if (response.error == "timeout") {
        return Outcome::Retry(fmt::format("{}: Mailchimp did not answer within {} ms", doing, config_->timeout.count()));
      }
      return Outcome::Retry(fmt::format("{}: {}", doing, Scrub(response.error, secrets_)));
    }
    const std::string text = ProblemText(response);
    const std::string said = text.empty() ? "" : " " + text;
    if (s == 429) {
      auto after = ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now());
      return Outcome::Retry(fmt::format("{}: Mailchimp answered 429{}", doing, said),
                            after ? *after : std::chrono::milliseconds(kTooManyConnectionsWait));
    }
    if (s == 401) return Outcome::Failed(fmt::format("{}: Mailchimp refused the API key (401){}", doing, said));
    if (s == 408 || s >= 500) {
      return Outcome::Retry(fmt::format("{}: Mailchimp answered {}{}", doing, s, said),
                            ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
    }
    return Outcome::Failed(fmt::format("{}: Mailchimp answered {}{}", doing, s, said));
  }

  // Every call holds one of the account's connections while it is in flight. `resends_left`: see below.
  void Call(std::string method, std::string url, std::string body, std::function<void(const HttpResponse&)> then,
            int resends_left = kTransportResends) {
    shared_.cap->Acquire([self = shared_from_this(), method = std::move(method), url = std::move(url),
                          body = std::move(body), then = std::move(then), resends_left](bool granted) mutable {
      if (!granted) {
        self->Finish(Outcome::Retry("the mailchimp connector is shutting down"));
        return;
      }
      HttpRequest request;
      request.method = method;
      request.url = url;
      request.timeout = self->config_->timeout;
      request.headers.emplace_back("Authorization", self->config_->authorization);
      request.headers.emplace_back("Accept", "application/json");
      if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
      request.body = body;
      self->config_->http->Send(std::move(request), [self, method = std::move(method), url = std::move(url),
                                                     body = std::move(body), then = std::move(then),
                                                     resends_left](HttpResponse r) mutable {
        // The connection is free as soon as the answer is in: the next waiting call may start.
        self->shared_.cap->Release();
        if (r.status == 0 && r.error != "timeout" && resends_left > 0) {
          // Most often a pooled keep-alive connection that Mailchimp had already closed: the request never got
          // there. Reads, PATCHes of fixed values and delete-permanent (whose repeat answers 404) may all be
          // repeated, so it goes again (each stale connection fails once and is dropped), waiting its turn like any other call.
          self->Call(std::move(method), std::move(url), std::move(body), std::move(then), resends_left - 1);
          return;
        }
        try {
          then(r);
        } catch (const std::exception& e) {
          self->Finish(Outcome::Retry(fmt::format("internal error handling Mailchimp's answer: {}", e.what())));
        }
      });
    });
  }

  void Finish(Outcome outcome) {
    if (finished_.exchange(true)) return;
    try {
      done_(std::move(outcome));
    } catch (...) {
      // The engine's callback threw; the I/O thread must survive it.
    }
  }

  struct Counts {
    int present = 0;
    int absent = 0;
  };

  Shared shared_;
  std::shared_ptr<const Config> config_;
  TaskInput input_;
  OutcomeCallback done_;
  std::atomic<bool> finished_{false};
  // Each call is started by the answer to the one before: these are touched by one thread at a time.
  std::vector<std::string> hashes_;
  std::set<std::string> by_;
  std::vector<std::string> secrets_;
  json patch_ = json::object();
  std::vector<std::string> unmapped_;
  std::map<std::string, Counts> counts_;
  json records_ = json::array();
};

class MailchimpConnector final : public Connector {
 public:
  explicit MailchimpConnector(Shared shared) : shared_(std::move(shared)) {}
  ~MailchimpConnector() override { shared_.cap->Shutdown(); }

  bool Supports(TaskAction action) const override {
    switch (action) {
      case TaskAction::kAccess:
      case TaskAction::kDelete:
      case TaskAction::kCorrect:
      case TaskAction::kOptOut:
      case TaskAction::kLocate: return true;
      default: return false;
    }
  }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    if (!Supports(input.action)) {
      done(Outcome::Failed(fmt::format("the mailchimp connector cannot {}", ToString(input.action))));
      return;
    }
    std::make_shared<Job>(shared_, input, std::move(done))->Start();
  }

 private:
  Shared shared_;
};

std::string SettingString(const json& settings, const char* key) {
  return settings.contains(key) && settings[key].is_string() ? settings[key].get<std::string>() : "";
}

}  // namespace

std::string SubscriberHash(std::string_view email) {
  std::string lowered(email);
  // ASCII only: std::tolower under a UTF-8 locale would not touch multi-byte letters anyway.
  for (char& c : lowered) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(lowered.data(), lowered.size(), digest, &size, EVP_md5(), nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string ApiRootForKey(std::string_view api_key) {
  const auto dash = api_key.rfind('-');
  if (dash == std::string_view::npos) return "";
  const std::string dc(api_key.substr(dash + 1));
  // Letters then digits: "us21". Anything else would put text of the key's choosing into the host name.
  const auto digits = dc.find_first_of("0123456789");
  if (digits == 0 || digits == std::string::npos || digits > 10 || dc.size() - digits > 5) return "";
  for (std::size_t i = 0; i < dc.size(); ++i) {
    const char c = dc[i];
    if (i < digits ? !(c >= 'a' && c <= 'z') : !(c >= '0' && c <= '9')) return "";
  }
  return fmt::format("https://{}.api.mailchimp.com/3.0", dc);
}

std::unique_ptr<Connector> MakeMailchimpConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto fail = [&](const std::string& setting, const std::string& what) {
    return ConnectorConfigError(fmt::format("system {}: settings/{}: {}", env.system, setting, what));
  };
  auto config = std::make_shared<Config>();
  config->system = env.system;
  config->http = env.http;
  if (!config->http) {
    throw ConnectorConfigError(fmt::format("system {}: the mailchimp connector needs the shared http client", env.system));
  }
  const std::string key_file = SettingString(settings, "api_key_file");
  if (key_file.empty()) throw fail("api_key_file", "required");
  const std::string key = ReadCredential(env, "api_key_file", key_file);
  if (key.empty()) throw fail("api_key_file", "the file is empty");
  config->authorization = "Basic " + Base64("rightsd:" + key);

  config->base_url = SettingString(settings, "base_url");
  if (config->base_url.empty()) {
    config->base_url = ApiRootForKey(key);
    if (config->base_url.empty()) {
      throw fail("api_key_file", "the API key has no data-centre suffix (it should end like '-us21')");
    }
  }
  while (!config->base_url.empty() && config->base_url.back() == '/') config->base_url.pop_back();

  if (settings.contains("audiences") && settings["audiences"].is_array()) {
    for (const auto& a : settings["audiences"]) {
      if (a.is_string() &&
          std::find(config->audiences.begin(), config->audiences.end(), a.get<std::string>()) == config->audiences.end()) {
        config->audiences.push_back(a.get<std::string>());
      }
    }
  }
  if (config->audiences.empty()) throw fail("audiences", "at least one audience id is required");

  if (settings.contains("merge_fields") && settings["merge_fields"].is_object()) {
    for (const auto& [field, tag] : settings["merge_fields"].items()) {
      if (tag.is_string()) config->merge_fields[field] = tag.get<std::string>();
    }
  } else {
    for (auto [field, tag] : kDefaultMergeFields) config->merge_fields[std::string(field)] = std::string(tag);
  }

  config->category = SettingString(settings, "category");
  if (config->category.empty()) {
    config->category = env.categories.size() == 1 ? env.categories.front() : std::string(kDefaultCategory);
  } else if (!env.categories.empty() &&
             std::find(env.categories.begin(), env.categories.end(), config->category) == env.categories.end()) {
    throw fail("category", fmt::format("'{}' is not one of the system's categories", config->category));
  }
  if (settings.contains("timeout_ms") && settings["timeout_ms"].is_number_integer()) {
    config->timeout = std::chrono::milliseconds(std::max<long long>(1, settings["timeout_ms"].get<long long>()));
  }
  int max_connections = 10;
  if (settings.contains("max_connections") && settings["max_connections"].is_number_integer()) {
    max_connections = static_cast<int>(std::clamp<long long>(settings["max_connections"].get<long long>(), 1, 10));
  }
  Shared shared{std::move(config), std::make_shared<ConnectionCap>(max_connections),
                std::make_shared<VerifiedAudiences>()};
  return std::make_unique<MailchimpConnector>(std::move(shared));
}

}  // namespace rightsd::connectors::mailchimp
