// The HubSpot connector.
//
// Contract followed: reference/connector-apis.md 2.7 (certainty in brackets as it marks them):
//   base https://api.hubapi.com, bearer token; POST /crm/v3/objects/contacts/search with filterGroups/filters
//   (propertyName "email", operator "EQ"), properties, limit, after; answers {total, results:[{id, properties, ...}],
//   paging.next.after} [U]; at most 200 per page, 5 requests a second, no rate headers on search [S];
//   POST /crm/v3/objects/contacts/gdpr-delete {"objectId": id} [V], empty body on success (204 [U]); the plain DELETE
//   only archives [S] and is never used; X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds/-Daily/
//   -Daily-Remaining [V]; 429 bodies name a policyName TEN_SECONDLY_ROLLING | DAILY | SECONDLY [S]; other errors
//   {status, message, correlationId, category, errors[]} [S], 423 locked and 477 migration in progress [S].
//
// Choices where the contract is silent:
// - Identities: email (searched) and hubspot_id (read directly with GET /crm/v3/objects/contacts/{id}, which the
//   contract does not list: the standard CRM object read). Other kinds are not sent. Every contact found by any of
//   them is acted on, once.
// - Search results lag behind writes [S]: a contact created seconds ago may not be found yet (kNotFound), and one
//   deleted seconds ago may still be found; its gdpr-delete then answers 404, which counts as deleted.
// - Nothing found is kNotFound for every action. With gdpr_delete_unmatched_emails a delete that finds nothing
//   still sends gdpr-delete by email (idProperty "email"), which HubSpot answers by blocklisting the address [V]:
//   off by default, because it keeps a trace of an address the business never held.
// - The daily allowance resets at midnight in account_time_zone (HubSpot's account setting; not in the contract).
//   A DAILY 429, or our own count reaching zero, makes every task of the instance return kRetry until one minute
//   after that midnight. A TEN_SECONDLY_ROLLING 429 waits one burst window, SECONDLY one second, anything else
//   Retry-After or the 10 s the official SDK waits [V].
// - Messages and receipts hold counts, property names, HTTP statuses, HubSpot's category and correlationId, and
//   HubSpot's message with every identity value, correction value and contact id of the task cut out.
#include "connectors/hubspot/hubspot.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <map>
#include <set>
#include <utility>

#include <date/date.h>
#include <date/tz.h>
#include <fmt/format.h>

#include "connectors/hubspot/rate_gate.h"

namespace rightsd::connectors::hubspot {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// How often a call that failed before any answer arrived is sent again (see Send / Call).
constexpr int kTransportResends = 3;
constexpr std::size_t kMaxMessage = 300;
constexpr int kSearchPageSize = 100;  // of the 200 allowed [S]: one email rarely matches more than one contact
constexpr int kMaxSearchPages = 10;
// HubSpot's default properties are who-the-contact-is: with several categories they go under this one.
constexpr std::string_view kDefaultCategory = "identifiers";
// Returned by search when no properties are asked for [V]; the default property list.
constexpr std::array<std::string_view, 6> kDefaultProperties = {"createdate", "email",          "firstname",
                                                               "hs_object_id", "lastmodifieddate", "lastname"};
// rightsd correction fields -> HubSpot's standard contact properties.
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kDefaultCorrections = {{
    {"email", "email"},
    {"first_name", "firstname"},
    {"last_name", "lastname"},
    {"phone", "phone"},
    {"postal_address", "address"},
    {"city", "city"},
    {"state", "state"},
    {"zip", "zip"},
    {"company", "company"},
}};

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Peer text that may reach a message: every secret cut out case-insensitively, control characters flattened, and
// the whole shortened.
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

std::string Duration(std::chrono::milliseconds d) {
  const long long s = (d.count() + 999) / 1000;
  if (s < 120) return fmt::format("{} s", s);
  if (s < 7200) return fmt::format("{} min", (s + 59) / 60);
  return fmt::format("{} h {} min", s / 3600, (s % 3600 + 59) / 60);
}

struct Config {
  std::string system;
  std::string base_url;
  std::string token;
  std::vector<std::pair<std::string, std::string>> properties;  // property -> category, in settings order
  std::map<std::string, std::string> corrections;               // correction field -> property
  std::optional<json> opt_out_properties;                       // {property: value}
  std::optional<json> limit_properties;
  bool gdpr_delete_unmatched_emails = false;
  std::chrono::milliseconds timeout{30000};
  HttpClient* http = nullptr;
};

struct Contact {
  std::string id;
  json properties;
};

class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<const Config> config, std::shared_ptr<RateGate> gate, TaskInput input, OutcomeCallback done)
      : config_(std::move(config)), gate_(std::move(gate)), input_(std::move(input)), done_(std::move(done)) {}

  void Start() {
    std::set<std::string> seen_emails, seen_ids;
    for (const auto& identity : input_.identities) {
      if (identity.value.empty()) continue;
      secrets_.push_back(identity.value);
      if (identity.kind == "email" && seen_emails.insert(Lower(identity.value)).second) {
        emails_.push_back(identity.value);
      } else if (identity.kind == "hubspot_id" &&
                 std::all_of(identity.value.begin(), identity.value.end(),
                             [](unsigned char c) { return std::isdigit(c); }) &&
                 seen_ids.insert(identity.value).second) {
        ids_.push_back(identity.value);
      }
    }
    for (const auto& c : input_.corrections) secrets_.push_back(c.value);
    if (emails_.empty() && ids_.empty()) {
      Finish(Outcome::Failed("no identity HubSpot can look up (it takes email and hubspot_id)"));
      return;
    }
    NextLookup();
  }

 private:
  // --- locating contacts ---

  void NextLookup() {
    if (email_index_ < emails_.size()) {
      Search(emails_[email_index_], "");
    } else if (id_index_ < ids_.size()) {
      Fetch(ids_[id_index_]);
    } else {
      Act();
    }
  }

  void Search(const std::string& email, const std::string& after) {
    json body = {
        {"filterGroups",
         json::array({{{"filters", json::array({{{"propertyName", "email"}, {"operator", "EQ"}, {"value", email}}})}}})},
        {"properties", PropertyNames()},
        {"limit", kSearchPageSize},
    };
    if (!after.empty()) body["after"] = after;
    Call(CallKind::kSearch, "POST", config_->base_url + "/crm/v3/objects/contacts/search", body.dump(),
         [self = shared_from_this()](const HttpResponse& response) {
           if (response.status != 200) {
             self->Finish(self->PeerFailure(response, "searching contacts by email"));
             return;
           }
           json doc = json::parse(response.body, nullptr, false);
           if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array()) {
             self->Finish(Outcome::Retry("searching contacts by email: HubSpot's answer is not a search result"));
             return;
           }
           for (const auto& result : doc["results"]) self->AddContact(result);
           std::string next;
           if (doc.contains("paging") && doc["paging"].is_object()) {
             const json& paging = doc["paging"];
             if (paging.contains("next") && paging["next"].is_object() && paging["next"].contains("after")) {
               const json& a = paging["next"]["after"];
               next = a.is_string() ? a.get<std::string>() : a.is_number_integer() ? std::to_string(a.get<long long>()) : "";
             }
           }
           if (!next.empty() && ++self->pages_ < kMaxSearchPages) {
             self->Search(self->emails_[self->email_index_], next);
             return;
           }
           self->pages_ = 0;
           ++self->email_index_;
           self->NextLookup();
         });
  }

  void Fetch(const std::string& id) {
    std::string names;
    for (const auto& name : PropertyNames()) names += (names.empty() ? "" : ",") + name.get<std::string>();
    Call(CallKind::kOther, "GET",
         fmt::format("{}/crm/v3/objects/contacts/{}?properties={}&archived=false", config_->base_url, id, names), "",
         [self = shared_from_this()](const HttpResponse& response) {
           if (response.status == 200) {
             json doc = json::parse(response.body, nullptr, false);
             if (!doc.is_object()) {
               self->Finish(Outcome::Retry("reading a contact by hubspot_id: HubSpot's answer is not a contact"));
               return;
             }
             self->AddContact(doc);
           } else if (response.status != 404) {
             self->Finish(self->PeerFailure(response, "reading a contact by hubspot_id"));
             return;
           }
           ++self->id_index_;
           self->NextLookup();
         });
  }

  void AddContact(const json& result) {
    if (!result.is_object() || !result.contains("id")) return;
    const json& raw = result["id"];
    std::string id = raw.is_string() ? raw.get<std::string>() : raw.is_number_integer() ? std::to_string(raw.get<long long>()) : "";
    if (id.empty() || !std::all_of(id.begin(), id.end(), [](unsigned char c) { return std::isdigit(c); })) return;
    if (result.contains("archived") && result["archived"] == true) return;
    for (const auto& c : contacts_) {
      if (c.id == id) return;
    }
    // Contact ids are identity values too (the hubspot_id kind); short ones would cut ordinary numbers out of text.
    if (id.size() >= 4) secrets_.push_back(id);
    contacts_.push_back(Contact{id, result.contains("properties") && result["properties"].is_object()
                                        ? result["properties"]
                                        : json::object()});
  }

  // --- acting on them ---

  void Act() {
    if (contacts_.empty()) {
      if (input_.action == TaskAction::kDelete && config_->gdpr_delete_unmatched_emails && !emails_.empty()) {
        DeleteUnmatchedEmail(0);
      } else {
        Finish(Outcome::NotFound(BaseReceipt()));
      }
      return;
    }
    switch (input_.action) {
      case TaskAction::kAccess: Finish(AccessOutcome()); return;
      case TaskAction::kLocate: {
        Outcome o;
        o.kind = OutcomeKind::kRetainedExempt;
        o.receipt = BaseReceipt();
        if (!input_.retain_basis.empty()) o.receipt["retain_basis"] = input_.retain_basis;
        Finish(std::move(o));
        return;
      }
      case TaskAction::kDelete: DeleteNext(0); return;
      case TaskAction::kCorrect: {
        json patch = json::object();
        for (const auto& c : input_.corrections) {
          auto it = config_->corrections.find(c.field);
          if (it == config_->corrections.end()) {
            if (std::find(unmapped_.begin(), unmapped_.end(), c.field) == unmapped_.end()) unmapped_.push_back(c.field);
          } else {
            patch[it->second] = c.value;
          }
        }
        if (patch.empty()) {
          Finish(NeedsManual());
          return;
        }
        PatchNext(0, std::move(patch));
        return;
      }
      case TaskAction::kOptOut: PatchNext(0, *config_->opt_out_properties); return;
      case TaskAction::kLimit: PatchNext(0, *config_->limit_properties); return;
      case TaskAction::kDeidentify: break;
    }
    Finish(Outcome::Failed(fmt::format("the hubspot connector cannot {}", ToString(input_.action))));
  }

  Outcome AccessOutcome() const {
    json records = json::object();
    for (const auto& contact : contacts_) {
      std::map<std::string, json> by_category;
      for (const auto& [property, category] : config_->properties) {
        if (!contact.properties.contains(property) || contact.properties[property].is_null()) continue;
        auto& record = by_category[category];
        if (record.is_null()) record = json{{"contact_id", contact.id}};
        record[property] = contact.properties[property];
      }
      if (by_category.empty()) {
        // Held, with none of the configured properties filled in: the contact itself is the record.
        by_category[config_->properties.front().second] = json{{"contact_id", contact.id}};
      }
      for (auto& [category, record] : by_category) {
        if (!records.contains(category)) records[category] = json::array();
        records[category].push_back(std::move(record));
      }
    }
    json receipt = BaseReceipt();
    std::size_t count = 0;
    json categories = json::object();
    for (const auto& [category, items] : records.items()) {
      count += items.size();
      categories[category] = items.size();
    }
    receipt["records"] = count;
    receipt["categories"] = std::move(categories);
    Outcome done = Outcome::Done(std::move(receipt));
    done.records = std::move(records);
    return done;
  }

  void DeleteNext(std::size_t i) {
    if (i == contacts_.size()) {
      json receipt = BaseReceipt();
      receipt["endpoint"] = "gdpr-delete";
      receipt["deleted"] = changed_;
      if (already_gone_ > 0) receipt["already_gone"] = already_gone_;
      Finish(Outcome::Done(std::move(receipt)));
      return;
    }
    const json body = {{"objectId", contacts_[i].id}};
    Call(CallKind::kOther, "POST", config_->base_url + "/crm/v3/objects/contacts/gdpr-delete", body.dump(),
         [self = shared_from_this(), i](const HttpResponse& response) {
           if (response.status >= 200 && response.status < 300) {
             ++self->changed_;
           } else if (response.status == 404) {
             ++self->already_gone_;  // deleted between search and now (search lags behind writes)
           } else {
             self->Finish(self->PeerFailure(response, "deleting a contact (gdpr-delete)"));
             return;
           }
           self->DeleteNext(i + 1);
         });
  }

  void DeleteUnmatchedEmail(std::size_t i) {
    if (i == emails_.size()) {
      json receipt = BaseReceipt();
      receipt["endpoint"] = "gdpr-delete";
      receipt["unmatched_emails_sent"] = changed_;
      receipt["note"] = "no contact matched; gdpr-delete by email was sent so that HubSpot blocklists the address";
      Finish(Outcome::Done(std::move(receipt)));
      return;
    }
    const json body = {{"objectId", emails_[i]}, {"idProperty", "email"}};
    Call(CallKind::kOther, "POST", config_->base_url + "/crm/v3/objects/contacts/gdpr-delete", body.dump(),
         [self = shared_from_this(), i](const HttpResponse& response) {
           if ((response.status >= 200 && response.status < 300) || response.status == 404) {
             ++self->changed_;
           } else {
             self->Finish(self->PeerFailure(response, "deleting by email (gdpr-delete)"));
             return;
           }
           self->DeleteUnmatchedEmail(i + 1);
         });
  }

  void PatchNext(std::size_t i, json properties) {
    if (i == contacts_.size()) {
      json receipt = BaseReceipt();
      receipt["updated"] = changed_;
      json names = json::array();
      for (const auto& [name, value] : properties.items()) names.push_back(name);
      receipt["properties_set"] = std::move(names);
      if (already_gone_ > 0) receipt["already_gone"] = already_gone_;
      if (changed_ == 0) {
        Finish(Outcome::NotFound(std::move(receipt)));
      } else if (!unmapped_.empty()) {
        Outcome manual = NeedsManual();
        manual.receipt.update(receipt);
        Finish(std::move(manual));
      } else {
        Finish(Outcome::Done(std::move(receipt)));
      }
      return;
    }
    const json body = {{"properties", properties}};
    Call(CallKind::kOther, "PATCH", fmt::format("{}/crm/v3/objects/contacts/{}", config_->base_url, contacts_[i].id),
         body.dump(), [self = shared_from_this(), i, properties = std::move(properties)](const HttpResponse& response) mutable {
           if (response.status >= 200 && response.status < 300) {
             ++self->changed_;
           } else if (response.status == 404) {
             ++self->already_gone_;
           } else {
             self->Finish(self->PeerFailure(response, "updating a contact's properties"));
             return;
           }
           self->PatchNext(i + 1, std::move(properties));
         });
  }

  Outcome NeedsManual() const {
    Outcome o;
    o.kind = OutcomeKind::kNeedsManual;
    std::string fields;
    for (const auto& f : unmapped_) fields += (fields.empty() ? "" : ", ") + f;
    o.message = fmt::format(
        "{} correction field(s) have no HubSpot property in the corrections setting ({}); a person must apply them "
        "in HubSpot{}",
        unmapped_.size(), Scrub(fields, secrets_), changed_ > 0 ? "; the mapped ones were applied" : "");
    o.receipt = BaseReceipt();
    o.receipt["unmapped_fields"] = unmapped_;
    return o;
  }

  // --- outcomes ---

  json BaseReceipt() const {
    json by = json::array();
    if (!emails_.empty()) by.push_back("email");
    if (!ids_.empty()) by.push_back("hubspot_id");
    return {{"platform", "hubspot"}, {"looked_up_by", std::move(by)}, {"contacts_found", contacts_.size()}};
  }

  // HubSpot's own explanation: "<category>: <message> (correlationId <id>)", scrubbed.
  std::string PeerText(const HttpResponse& response) const {
    json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object()) return "";
    auto field = [&](const char* name) {
      return doc.contains(name) && doc[name].is_string() ? doc[name].get<std::string>() : std::string();
    };
    std::string text = field("category");
    const std::string message = field("message");
    if (!message.empty()) text += (text.empty() ? "" : ": ") + message;
    if (doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty() && doc["errors"][0].is_object() &&
        doc["errors"][0].contains("message") && doc["errors"][0]["message"].is_string()) {
      text += " (" + doc["errors"][0]["message"].get<std::string>() + ")";
    }
    text = Scrub(text, secrets_);
    const std::string correlation = Scrub(field("correlationId"), secrets_, 64);
    if (!correlation.empty()) text += fmt::format(" (correlationId {})", correlation);
    return text;
  }

  Outcome PeerFailure(const HttpResponse& response, std::string_view doing) const {
    const int s = response.status;
    if (s == 0) {
      if (response.error == "timeout") {
        return Outcome::Retry(fmt::format("{}: HubSpot did not answer within {} ms", doing, config_->timeout.count()));
      }
      return Outcome::Retry(fmt::format("{}: {}", doing, Scrub(response.error, secrets_)));
    }
    const std::string text = PeerText(response);
    const std::string said = text.empty() ? "" : ": " + text;
    if (s == 401) return Outcome::Failed(fmt::format("{}: HubSpot refused the private app token (401){}", doing, said));
    if (s == 403) {
      return Outcome::Failed(
          fmt::format("{}: HubSpot refused the call (403); does the private app have the scope?{}", doing, said));
    }
    if (s == 408 || s == 423 || s == 477 || s >= 500) {
      return Outcome::Retry(fmt::format("{}: HubSpot answered {}{}", doing, s, said),
                            ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
    }
    return Outcome::Failed(fmt::format("{}: HubSpot answered {}{}", doing, s, said));
  }

  Outcome Refused(const Admission& a) const {
    if (a.reason == "daily") {
      return Outcome::Retry(
          fmt::format("HubSpot's daily API allowance is spent; it resets at midnight in the account's time zone, "
                      "retry in {}",
                      Duration(a.retry_after)),
          a.retry_after);
    }
    if (a.reason == "shutdown") return Outcome::Retry("the hubspot connector is shutting down");
    return Outcome::Retry(
        fmt::format("HubSpot's {} limit would keep this task waiting longer than max_local_wait_ms; retry in {}",
                    a.reason == "search" ? "search" : "burst", Duration(a.retry_after)),
        a.retry_after);
  }

  // --- plumbing ---

  json PropertyNames() const {
    json names = json::array();
    for (const auto& [property, category] : config_->properties) names.push_back(property);
    return names;
  }

  // Every call passes the rate gate first. `resends_left`: see the transport-error case in Send.
  void Call(CallKind kind, std::string method, std::string url, std::string body,
            std::function<void(const HttpResponse&)> then, int resends_left = kTransportResends) {
    gate_->Admit(kind, [self = shared_from_this(), kind, method = std::move(method), url = std::move(url),
                        body = std::move(body), then = std::move(then), resends_left](Admission admission) mutable {
      if (!admission.granted) {
        self->Finish(self->Refused(admission));
        return;
      }
      self->Send(kind, std::move(method), std::move(url), std::move(body), std::move(then), resends_left);
    });
  }

  void Send(CallKind kind, std::string method, std::string url, std::string body,
            std::function<void(const HttpResponse&)> then, int resends_left) {
    HttpRequest request;
    request.method = method;
    request.url = url;
    request.timeout = config_->timeout;
    request.headers.emplace_back("Authorization", "Bearer " + config_->token);
    request.headers.emplace_back("Accept", "application/json");
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    request.body = body;
    config_->http->Send(std::move(request), [self = shared_from_this(), kind, method = std::move(method),
                                             url = std::move(url), body = std::move(body), then = std::move(then),
                                             resends_left](HttpResponse r) mutable {
      // The slot is given back whatever happens next.
      self->gate_->Finished(kind, r);
      if (r.status == 0 && r.error != "timeout" && resends_left > 0) {
        // Most often a pooled keep-alive connection that the far end had already closed: the request never got
        // there. Every call this connector makes may be repeated (reads, PATCHes of fixed values, gdpr-delete
        // whose repeat answers 404), so it goes again (each stale connection fails once and is dropped), through the gate again.
        self->Call(kind, std::move(method), std::move(url), std::move(body), std::move(then), resends_left - 1);
        return;
      }
      try {
        if (r.status == 429) {
          json doc = json::parse(r.body, nullptr, false);
          const std::string policy = doc.is_object() && doc.contains("policyName") && doc["policyName"].is_string()
                                         ? doc["policyName"].get<std::string>()
                                         : "";
          const auto wait = self->gate_->RateLimited(policy, r);
          self->Finish(Outcome::Retry(
              fmt::format("HubSpot answered 429 ({} limit); retry in {}",
                          policy.empty() ? "unnamed" : Scrub(policy, self->secrets_, 40), Duration(wait)),
              wait));
          return;
        }
        then(r);
      } catch (const std::exception& e) {
        self->Finish(Outcome::Retry(fmt::format("internal error handling HubSpot's answer: {}", e.what())));
      }
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

  std::shared_ptr<const Config> config_;
  std::shared_ptr<RateGate> gate_;
  TaskInput input_;
  OutcomeCallback done_;
  std::atomic<bool> finished_{false};
  // Each call is started by the answer to the one before: these are touched by one thread at a time.
  std::vector<std::string> emails_;
  std::vector<std::string> ids_;
  std::vector<std::string> secrets_;
  std::size_t email_index_ = 0;
  std::size_t id_index_ = 0;
  int pages_ = 0;
  std::vector<Contact> contacts_;
  std::vector<std::string> unmapped_;
  int changed_ = 0;
  int already_gone_ = 0;
};

class HubspotConnector final : public Connector {
 public:
  HubspotConnector(std::shared_ptr<const Config> config, RateLimits limits, std::string zone)
      : config_(std::move(config)),
        timer_(std::make_shared<Timer>()),
        gate_(std::make_shared<RateGate>(
            limits, [zone = std::move(zone)] { return UntilNextMidnight(zone, std::chrono::system_clock::now()); },
            timer_)) {}

  ~HubspotConnector() override {
    gate_->Shutdown();
    timer_->Stop();
  }

  bool Supports(TaskAction action) const override {
    switch (action) {
      case TaskAction::kAccess:
      case TaskAction::kDelete:
      case TaskAction::kCorrect:
      case TaskAction::kLocate: return true;
      case TaskAction::kOptOut: return config_->opt_out_properties.has_value();
      case TaskAction::kLimit: return config_->limit_properties.has_value();
      case TaskAction::kDeidentify: return false;
    }
    return false;
  }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    if (!Supports(input.action)) {
      done(Outcome::Failed(fmt::format("the hubspot connector cannot {}{}", ToString(input.action),
                                       input.action == TaskAction::kOptOut || input.action == TaskAction::kLimit
                                           ? " without its *_properties setting"
                                           : "")));
      return;
    }
    std::make_shared<Job>(config_, gate_, input, std::move(done))->Start();
  }

 private:
  std::shared_ptr<const Config> config_;
  std::shared_ptr<Timer> timer_;
  std::shared_ptr<RateGate> gate_;
};

std::string SettingString(const json& settings, const char* key, std::string fallback = "") {
  return settings.contains(key) && settings[key].is_string() ? settings[key].get<std::string>() : fallback;
}

long long SettingInt(const json& settings, const char* key, long long fallback) {
  return settings.contains(key) && settings[key].is_number_integer() ? settings[key].get<long long>() : fallback;
}

std::optional<json> StringMap(const json& settings, const char* key) {
  if (!settings.contains(key) || !settings[key].is_object()) return std::nullopt;
  json out = json::object();
  for (const auto& [k, v] : settings[key].items()) {
    if (v.is_string()) out[k] = v;
  }
  return out;
}

}  // namespace

std::chrono::milliseconds UntilNextMidnight(const std::string& zone, std::chrono::system_clock::time_point now) {
  const date::time_zone* tz = date::locate_zone(zone);
  const auto local = tz->to_local(now);
  const auto tomorrow = date::floor<date::days>(local) + date::days{1};
  const auto reset = tz->to_sys(tomorrow, date::choose::earliest);
  return std::chrono::ceil<std::chrono::milliseconds>(reset - now) + std::chrono::minutes(1);
}

std::unique_ptr<Connector> MakeHubspotConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto fail = [&](const std::string& setting, const std::string& what) {
    return ConnectorConfigError(fmt::format("system {}: settings/{}: {}", env.system, setting, what));
  };
  auto config = std::make_shared<Config>();
  config->system = env.system;
  config->http = env.http;
  if (!config->http) {
    throw ConnectorConfigError(fmt::format("system {}: the hubspot connector needs the shared http client", env.system));
  }
  config->base_url = SettingString(settings, "base_url", "https://api.hubapi.com");
  while (!config->base_url.empty() && config->base_url.back() == '/') config->base_url.pop_back();

  const std::string token_file = SettingString(settings, "access_token_file");
  if (token_file.empty()) throw fail("access_token_file", "required");
  config->token = ReadCredential(env, "access_token_file", token_file);
  if (config->token.empty()) throw fail("access_token_file", "the file is empty");

  if (auto properties = StringMap(settings, "properties"); properties && !properties->empty()) {
    for (const auto& [property, category] : properties->items()) {
      config->properties.emplace_back(property, category.get<std::string>());
    }
  } else {
    std::string fallback_category(kDefaultCategory);
    if (env.categories.size() == 1) {
      fallback_category = env.categories.front();
    } else if (!env.categories.empty() &&
               std::find(env.categories.begin(), env.categories.end(), kDefaultCategory) == env.categories.end()) {
      throw fail("properties", fmt::format("the system has several categories and none is '{}': map each property "
                                           "an access request returns to one of them",
                                           kDefaultCategory));
    }
    for (auto property : kDefaultProperties) config->properties.emplace_back(property, fallback_category);
  }
  if (!env.categories.empty()) {
    for (const auto& [property, category] : config->properties) {
      if (std::find(env.categories.begin(), env.categories.end(), category) == env.categories.end()) {
        throw fail("properties/" + property,
                   fmt::format("category '{}' is not one of the system's categories", category));
      }
    }
  }

  if (auto corrections = StringMap(settings, "corrections")) {
    for (const auto& [field, property] : corrections->items()) config->corrections[field] = property.get<std::string>();
  } else {
    for (auto [field, property] : kDefaultCorrections) config->corrections[std::string(field)] = std::string(property);
  }
  // A correction field spelled like a configured property needs no mapping.
  for (const auto& [property, category] : config->properties) config->corrections.try_emplace(property, property);

  config->opt_out_properties = StringMap(settings, "opt_out_properties");
  if (config->opt_out_properties && config->opt_out_properties->empty()) config->opt_out_properties.reset();
  config->limit_properties = StringMap(settings, "limit_properties");
  if (config->limit_properties && config->limit_properties->empty()) config->limit_properties.reset();
  config->gdpr_delete_unmatched_emails =
      settings.contains("gdpr_delete_unmatched_emails") && settings["gdpr_delete_unmatched_emails"] == true;
  config->timeout = std::chrono::milliseconds(std::max<long long>(1, SettingInt(settings, "timeout_ms", 30000)));

  RateLimits limits;
  limits.burst_limit = static_cast<int>(std::max<long long>(1, SettingInt(settings, "burst_limit", 100)));
  limits.burst_interval = std::chrono::milliseconds(std::max<long long>(1, SettingInt(settings, "burst_interval_ms", 10000)));
  limits.daily_limit = std::max<long long>(1, SettingInt(settings, "daily_limit", 250000));
  limits.search_per_second = static_cast<int>(std::max<long long>(1, SettingInt(settings, "search_per_second", 5)));
  limits.max_local_wait = std::chrono::milliseconds(std::max<long long>(0, SettingInt(settings, "max_local_wait_ms", 30000)));

  const std::string zone = SettingString(settings, "account_time_zone", "America/Los_Angeles");
  try {
    (void)UntilNextMidnight(zone, std::chrono::system_clock::now());
  } catch (const std::exception&) {
    throw fail("account_time_zone", fmt::format("unknown time zone '{}'", zone));
  }
  return std::make_unique<HubspotConnector>(std::move(config), limits, zone);
}

}  // namespace rightsd::connectors::hubspot
