// The Salesforce connector.
//
// Contract followed: ../shared/reference/connector-apis.md sections 2.1-2.3 (markers as there):
//   query GET /services/data/vXX.X/query?q=<SOQL>, {totalSize, done, nextRecordsUrl, records}, next batches by GET
//   of nextRecordsUrl until done [V]; batch size asked with "Sforce-Query-Options: batchSize=N" [U]; rows
//   PATCH /sobjects/{Type}/{Id} -> 204 [V]; DELETE /composite/sobjects?ids=a,b&allOrNone=false, at most 200 ids,
//   200 with [{id, success, errors:[{statusCode, message, fields}]}] in request order [V]; error bodies
//   [{message, errorCode, fields}] [V]; 401 INVALID_SESSION_ID = re-authenticate [V]; 403 REQUEST_LIMIT_EXCEEDED
//   = the org's API allowance is spent, Salesforce throttles with 403, not 429 [V]; 503 [S]; ENTITY_IS_DELETED
//   for records already in the Recycle Bin [U status]; Sforce-Limit-Info: api-usage=<used>/<max> [V]; Individual
//   (ShouldForget, HasOptedOut*) [V], linked through IndividualId / PersonIndividualId [U]; ContactPointTypeConsent
//   (PartyId, ContactPointType, DataUsePurposeId, PrivacyConsentStatus, CaptureDate, CaptureSource, EffectiveFrom)
//   [V], PrivacyConsentStatus OptOut [U].
// Beyond that list, from Salesforce's REST API Developer Guide: POST /sobjects/{Type} creates a record (201
// {id, success, errors}); POST /composite runs up to 25 subrequests, all or none with allOrNone = true, a later
// one naming an earlier result as @{referenceId.id}; SOQL string escapes (\\ \' \" \n \r \t \b \f).
//
// Choices where the contract is silent or loose:
// - Matching: email identities against each object's email_fields, phone identities against phone_fields in the
//   forms a phone is stored in (see PhoneVariants), salesforce_id identities against Id. Other identity kinds
//   (name, postal address, ...) are not used: a name does not identify one person. Values reach SOQL only as
//   escaped literals; a value Salesforce could not take (a control character) is not sent at all.
// - Related records: an object may be searched by reference fields holding ids found for earlier objects
//   (Case by ContactId, Individual by Contact.IndividualId). Id lists go 100 to a clause and a query's WHERE is
//   kept under ~3,000 characters, so no URL comes near Salesforce's 16 KB limit (414).
// - Delete keeps the Individual: it is the privacy record that carries ShouldForget = true to Salesforce's own
//   processes and other integrations (CCPA regulations let a business keep a record of the request). Deletion
//   goes children first (objects in reverse order). Records of retain objects are reported and never deleted,
//   and neither is a record they point to through a related ...Id field, since deleting the parent could cascade
//   to or orphan the retained records. Per-record failures other than ENTITY_IS_DELETED / NOT_FOUND fail the task
//   (UNABLE_TO_LOCK_ROW retries); running it again re-finds only what is left.
// - Opt-out / limit: the Individuals are those found and those the person's records point to. With none, one is
//   created and linked to the person's records in one allOrNone composite call, so a crash cannot leave an
//   Individual linked to nothing; records without one are linked to the first. Consent records are looked up by
//   (PartyId, DataUsePurposeId, ContactPointType): updated to OptOut, created when missing, left alone when
//   already OptOut -- a task run twice writes nothing twice.
// - Correct: a correction whose field no found record maps (objects[].correct) is left to a person (needs_manual)
//   after the mapped ones are applied. Retain objects are not corrected.
// - Limits: every answer's Sforce-Limit-Info is remembered for the system. When what is left of the daily
//   allowance is no more than api_reserve_percent of it, calls stop and the task retries after
//   reserve_wait_seconds; a call made after that wait reads the usage again. 403 REQUEST_LIMIT_EXCEEDED holds
//   every task of the system for limit_exceeded_wait_seconds. 408, 429, 5xx and transport failures retry (after
//   Retry-After when sent); other 4xx fail the task with Salesforce's errorCode and message.
// - A 401 makes the token source fetch a new token, and the call is made once more; a second 401 fails the task.
// - Messages and receipts carry object names, counts and Salesforce's error text with every identity value (and
//   its escaped and phone forms) cut out; never record ids, which are identity values of kind salesforce_id. A
//   query error's echo of the SOQL is dropped, only Salesforce's explanation after "ERROR at Row" is kept.
#include "connectors/salesforce/salesforce.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "connectors/salesforce/auth.h"
#include "connectors/salesforce/settings.h"
#include "connectors/salesforce/soql.h"

namespace rightsd::connectors::salesforce {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kIdsPerClause = 100;
constexpr std::size_t kWhereBudget = 3000;
constexpr std::size_t kMaxMessage = 300;
constexpr std::size_t kCompositeLinks = 24;  // a composite call takes 25 subrequests: one create + 24 links

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Salesforce ids compare by their case-sensitive 15-character form; the 18-character form only adds a checksum.
std::string IdKey(std::string_view id) { return std::string(id.substr(0, 15)); }

std::string NowDateTime() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  return buf;
}

// A field of a record as Salesforce returned it; API names are case-insensitive.
const json* FieldOf(const json& record, std::string_view name, std::string* key = nullptr) {
  if (!record.is_object()) return nullptr;
  if (auto it = record.find(std::string(name)); it != record.end()) {
    if (key) *key = it.key();
    return &*it;
  }
  const std::string wanted = Lower(name);
  for (auto it = record.begin(); it != record.end(); ++it) {
    if (Lower(it.key()) == wanted) {
      if (key) *key = it.key();
      return &*it;
    }
  }
  return nullptr;
}

std::string StringField(const json& record, std::string_view name) {
  const json* v = FieldOf(record, name);
  return v && v->is_string() ? v->get<std::string>() : "";
}

// errorCode and message of a REST error body: [{message, errorCode, fields}] (an object on some endpoints).
std::pair<std::string, std::string> RestError(const std::string& body) {
  const json doc = json::parse(body, nullptr, false);
  const json* e = nullptr;
  if (doc.is_array() && !doc.empty() && doc[0].is_object()) e = &doc[0];
  if (doc.is_object()) e = &doc;
  if (!e) return {};
  std::string code = e->contains("errorCode") && (*e)["errorCode"].is_string() ? (*e)["errorCode"].get<std::string>()
                     : e->contains("statusCode") && (*e)["statusCode"].is_string()
                         ? (*e)["statusCode"].get<std::string>()
                         : "";
  std::string message = e->contains("message") && (*e)["message"].is_string() ? (*e)["message"].get<std::string>() : "";
  return {code, message};
}

// A converted lead cannot be written (its data lives on in the contact it became): skipped, not a failure.
bool IsReadOnly(const HttpResponse& r) {
  return r.status == 400 && RestError(r.body).first == "CANNOT_UPDATE_CONVERTED_LEAD";
}

bool IsTransientRecordError(std::string_view code) {
  return code == "UNABLE_TO_LOCK_ROW" || code == "REQUEST_LIMIT_EXCEEDED" || code == "SERVER_UNAVAILABLE";
}

// --- what the org's API allowance allows -----------------------------------------------------------------------

// The last Sforce-Limit-Info seen by any task of the system, and whether calls must wait.
class Allowance {
 public:
  Allowance(int reserve_percent, std::chrono::seconds reserve_wait)
      : reserve_percent_(reserve_percent), reserve_wait_(reserve_wait) {}

  struct Hold {
    std::chrono::milliseconds wait;
    std::string why;
  };

  void Observe(ApiUsage usage) {
    std::lock_guard lock(mu_);
    usage_ = usage;
    observed_ = Clock::now();
  }

  void Exhausted(std::chrono::seconds wait) {
    std::lock_guard lock(mu_);
    exhausted_until_ = Clock::now() + wait;
  }

  std::optional<ApiUsage> Last() const {
    std::lock_guard lock(mu_);
    return usage_;
  }

  std::optional<Hold> Check() const {
    std::lock_guard lock(mu_);
    const auto now = Clock::now();
    if (exhausted_until_ && now < *exhausted_until_) {
      return Hold{std::chrono::ceil<std::chrono::milliseconds>(*exhausted_until_ - now),
                  "Salesforce refused calls with REQUEST_LIMIT_EXCEEDED (the org's daily API allowance is spent)"};
    }
    if (!usage_) return std::nullopt;
    const long long reserve = (usage_->max * reserve_percent_ + 99) / 100;
    const long long left = usage_->max - usage_->used;
    if (left > reserve) return std::nullopt;
    // After the wait one call goes through, and its answer tells whether the rolling 24-hour window has moved.
    if (now - observed_ >= reserve_wait_) return std::nullopt;
    return Hold{std::chrono::ceil<std::chrono::milliseconds>(reserve_wait_ - (now - observed_)),
                fmt::format("the org's daily API allowance is down to its reserve ({} of {} calls used, {} kept for "
                            "other integrations)",
                            usage_->used, usage_->max, reserve)};
  }

 private:
  const int reserve_percent_;
  const std::chrono::seconds reserve_wait_;
  mutable std::mutex mu_;
  std::optional<ApiUsage> usage_;
  Clock::time_point observed_{};
  std::optional<Clock::time_point> exhausted_until_;
};

// --- one task ----------------------------------------------------------------------------------------------------

struct Located {
  std::size_t object = 0;
  std::string id;
  json record;
};

class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<const Settings> settings, std::shared_ptr<TokenSource> tokens,
      std::shared_ptr<Allowance> allowance, TaskInput input, OutcomeCallback done)
      : s_(std::move(settings)),
        tokens_(std::move(tokens)),
        allowance_(std::move(allowance)),
        input_(std::move(input)),
        done_(std::move(done)),
        found_(s_->objects.size()),
        seen_(s_->objects.size()) {}

  void Start() {
    for (const auto& identity : input_.identities) {
      if (!identity.value.empty()) scrub_.push_back(identity.value);
      if (identity.kind == "email") {
        std::string v = identity.value;
        while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
        while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.erase(0, 1);
        AddLiteral(emails_, v);
      } else if (identity.kind == "phone") {
        for (const auto& variant : PhoneVariants(identity.value)) AddLiteral(phones_, variant);
      } else if (identity.kind == "salesforce_id") {
        if (IsSalesforceId(identity.value)) AddLiteral(ids_, identity.value);
      }
    }
    for (const auto& c : input_.corrections) {
      if (!c.value.empty()) scrub_.push_back(c.value);
    }
    if (emails_.empty() && phones_.empty() && ids_.empty()) {
      Finish(Outcome::Failed(
          "no identity this system understands (salesforce matches email, phone and salesforce_id identities)"));
      return;
    }
    LocateObject(0);
  }

 private:
  // --- locate ----------------------------------------------------------------------------------------------------

  // An empty value is never sent: SOQL may read '' as null and match every record without the field.
  void AddLiteral(std::vector<std::string>& list, const std::string& value) {
    if (value.empty()) return;
    auto literal = SoqlLiteral(value);
    if (!literal) return;
    scrub_.push_back(value);
    scrub_.push_back(literal->substr(1, literal->size() - 2));
    if (std::find(list.begin(), list.end(), *literal) == list.end()) list.push_back(*literal);
  }

  static std::string InList(std::string_view field, const std::vector<std::string>& literals, std::size_t from,
                            std::size_t to) {
    std::string clause = std::string(field) + " IN (";
    for (std::size_t i = from; i < to; ++i) {
      if (i > from) clause += ", ";
      clause += literals[i];
    }
    return clause + ")";
  }

  std::optional<std::size_t> ObjectIndex(std::string_view name) const {
    for (std::size_t i = 0; i < s_->objects.size(); ++i) {
      if (Lower(s_->objects[i].name) == Lower(name)) return i;
    }
    return std::nullopt;
  }

  // Id, the mapped fields, the link to the Individual, related reference fields and fields later objects take
  // values from -- each once (Salesforce refuses a field selected twice).
  std::string SelectList(std::size_t index) const {
    const ObjectConfig& o = s_->objects[index];
    std::vector<std::string> fields = {"Id"};
    std::set<std::string> have = {"id"};
    auto add = [&](const std::string& f) {
      if (!f.empty() && have.insert(Lower(f)).second) fields.push_back(f);
    };
    for (const auto& [category, list] : o.categories) {
      for (const auto& f : list) add(f);
    }
    add(o.individual_field);
    for (const auto& [field, sources] : o.related) add(field);
    for (std::size_t later = index + 1; later < s_->objects.size(); ++later) {
      for (const auto& [field, sources] : s_->objects[later].related) {
        for (const auto& source : sources) {
          if (Lower(source.object) == Lower(o.name)) add(source.field);
        }
      }
    }
    std::string out;
    for (const auto& f : fields) out += (out.empty() ? "" : ", ") + f;
    return out;
  }

  std::vector<std::string> Queries(std::size_t index) const {
    const ObjectConfig& o = s_->objects[index];
    std::vector<std::string> clauses;
    auto direct = [&](const std::vector<std::string>& fields, const std::vector<std::string>& literals) {
      if (literals.empty()) return;
      for (const auto& f : fields) clauses.push_back(InList(f, literals, 0, literals.size()));
    };
    direct(o.email_fields, emails_);
    direct(o.phone_fields, phones_);
    if (o.match_id) direct({"Id"}, ids_);
    for (const auto& [field, sources] : o.related) {
      std::vector<std::string> literals;
      std::set<std::string> keys;
      for (const auto& source : sources) {
        auto from = ObjectIndex(source.object);
        if (!from) continue;
        for (const auto& rec : found_[*from]) {
          const std::string value = StringField(rec.record, source.field);
          if (!IsSalesforceId(value) || !keys.insert(IdKey(value)).second) continue;
          literals.push_back(*SoqlLiteral(value));
        }
      }
      for (std::size_t i = 0; i < literals.size(); i += kIdsPerClause) {
        clauses.push_back(InList(field, literals, i, std::min(literals.size(), i + kIdsPerClause)));
      }
    }
    std::vector<std::string> queries;
    const std::string head = "SELECT " + SelectList(index) + " FROM " + o.name + " WHERE (";
    const std::string tail = o.where.empty() ? ")" : ") AND (" + o.where + ")";
    std::string where;
    for (const auto& clause : clauses) {
      if (!where.empty() && where.size() + clause.size() + 4 > kWhereBudget) {
        queries.push_back(head + where + tail);
        where.clear();
      }
      where += (where.empty() ? "" : " OR ") + clause;
    }
    if (!where.empty()) queries.push_back(head + where + tail);
    return queries;
  }

  void LocateObject(std::size_t index) {
    if (index >= s_->objects.size()) {
      AfterLocate();
      return;
    }
    auto queries = std::make_shared<std::vector<std::string>>(Queries(index));
    LocateQuery(index, std::move(queries), 0);
  }

  void LocateQuery(std::size_t index, std::shared_ptr<std::vector<std::string>> queries, std::size_t k) {
    if (k >= queries->size()) {
      LocateObject(index + 1);
      return;
    }
    const std::string soql = (*queries)[k];
    Query(
        soql, "searching " + s_->objects[index].name,
        [self = shared_from_this(), index](const json& records) { self->Keep(index, records); },
        [self = shared_from_this(), index, queries, k] { self->LocateQuery(index, queries, k + 1); });
  }

  void Keep(std::size_t index, const json& records) {
    for (const auto& r : records) {
      const std::string id = StringField(r, "Id");
      if (id.empty() || !seen_[index].insert(IdKey(id)).second) continue;
      json record = r;
      record.erase("attributes");
      found_[index].push_back(Located{index, id, std::move(record)});
    }
  }

  std::size_t LocatedCount() const {
    std::size_t n = 0;
    for (const auto& list : found_) n += list.size();
    return n;
  }

  void AfterLocate() {
    if (LocatedCount() == 0) {
      Finish(Outcome::NotFound(Receipt()));
      return;
    }
    switch (input_.action) {
      case TaskAction::kAccess: return FinishAccess();
      case TaskAction::kLocate: return FinishLocate();
      case TaskAction::kDelete: return StartDelete();
      case TaskAction::kCorrect: return StartCorrect();
      case TaskAction::kOptOut:
      case TaskAction::kLimit: return StartPrivacy();
      case TaskAction::kDeidentify: break;
    }
    Finish(Outcome::Failed(fmt::format("the salesforce connector cannot {}", ToString(input_.action))));
  }

  // --- access and locate -----------------------------------------------------------------------------------------

  void FinishAccess() {
    json records = json::object();
    std::size_t count = 0;
    for (std::size_t i = 0; i < found_.size(); ++i) {
      const ObjectConfig& o = s_->objects[i];
      for (const auto& rec : found_[i]) {
        for (const auto& [category, fields] : o.categories) {
          json entry = {{"object", o.name}, {"Id", rec.id}};
          for (const auto& f : fields) {
            std::string key;
            const json* v = FieldOf(rec.record, f, &key);
            if (v && !v->is_null()) entry[key] = *v;
          }
          if (entry.size() <= 2) continue;
          records[category].push_back(std::move(entry));
          ++count;
        }
      }
    }
    json receipt = Receipt();
    receipt["records"] = count;
    Outcome done = Outcome::Done(std::move(receipt));
    done.records = std::move(records);
    Finish(std::move(done));
  }

  void FinishLocate() {
    json receipt = Receipt();
    if (!input_.retain_basis.empty()) receipt["retain_basis"] = input_.retain_basis;
    Outcome o;
    o.kind = OutcomeKind::kRetainedExempt;
    o.message = fmt::format("{} records found and kept", LocatedCount());
    o.receipt = std::move(receipt);
    Finish(std::move(o));
  }

  // --- delete ----------------------------------------------------------------------------------------------------

  std::vector<std::string> IndividualIds() const {
    std::vector<std::string> ids;
    std::set<std::string> keys;
    auto add = [&](const std::string& id) {
      if (IsSalesforceId(id) && keys.insert(IdKey(id)).second) ids.push_back(id);
    };
    for (std::size_t i = 0; i < found_.size(); ++i) {
      if (s_->objects[i].IsIndividual()) {
        for (const auto& rec : found_[i]) add(rec.id);
      }
    }
    for (std::size_t i = 0; i < found_.size(); ++i) {
      if (s_->objects[i].individual_field.empty()) continue;
      for (const auto& rec : found_[i]) add(StringField(rec.record, s_->objects[i].individual_field));
    }
    return ids;
  }

  void StartDelete() {
    individuals_ = IndividualIds();
    std::set<std::string> keep;  // parents of retained records
    for (std::size_t i = 0; i < found_.size(); ++i) {
      const ObjectConfig& o = s_->objects[i];
      if (!o.retain) continue;
      retained_[o.name] += found_[i].size();
      for (const auto& [field, sources] : o.related) {
        const bool to_parent = std::all_of(sources.begin(), sources.end(),
                                           [](const Source& src) { return Lower(src.field) == "id"; });
        if (!to_parent || Lower(field) == "id") continue;
        for (const auto& rec : found_[i]) {
          const std::string parent = StringField(rec.record, field);
          if (!parent.empty()) keep.insert(IdKey(parent));
        }
      }
    }
    for (std::size_t i = found_.size(); i-- > 0;) {
      const ObjectConfig& o = s_->objects[i];
      if (o.retain || o.IsIndividual()) continue;
      for (const auto& rec : found_[i]) {
        if (keep.contains(IdKey(rec.id))) {
          ++kept_for_retained_[o.name];
        } else {
          to_delete_.push_back(&rec);
        }
      }
    }
    FlagShouldForget(0);
  }

  void FlagShouldForget(std::size_t k) {
    if (k >= individuals_.size()) {
      DeleteChunk(0);
      return;
    }
    Api("PATCH", s_->DataPath() + "/sobjects/Individual/" + individuals_[k], json{{"ShouldForget", true}}.dump(),
        [self = shared_from_this(), k](const HttpResponse& r) {
          if (r.status == 204 || r.status == 200) {
            ++self->individuals_flagged_;
          } else if (r.status != 404) {
            return self->Finish(self->Failure(r, "setting ShouldForget on an Individual"));
          }
          self->FlagShouldForget(k + 1);
        });
  }

  void DeleteChunk(std::size_t start) {
    if (start >= to_delete_.size()) {
      FinishDelete();
      return;
    }
    const std::size_t end = std::min(to_delete_.size(), start + static_cast<std::size_t>(s_->delete_batch_size));
    std::string ids;
    for (std::size_t i = start; i < end; ++i) ids += (i > start ? "," : "") + to_delete_[i]->id;
    ++delete_calls_;
    Api("DELETE", s_->DataPath() + "/composite/sobjects?ids=" + ids + "&allOrNone=false", "",
        [self = shared_from_this(), start, end](const HttpResponse& r) { self->OnDeleted(r, start, end); });
  }

  void OnDeleted(const HttpResponse& r, std::size_t start, std::size_t end) {
    if (r.status != 200) return Finish(Failure(r, "deleting records"));
    const json results = json::parse(r.body, nullptr, false);
    if (!results.is_array()) return Finish(Outcome::Retry("deleting records: Salesforce's answer is not per-record results"));
    for (std::size_t i = start; i < end; ++i) {
      const std::string& object = s_->objects[to_delete_[i]->object].name;
      const std::size_t at = i - start;
      const json* result = at < results.size() && results[at].is_object() ? &results[at] : nullptr;
      if (!result) {
        ++unanswered_;
        continue;
      }
      if (result->value("success", false)) {
        ++deleted_[object];
        continue;
      }
      std::string code, message;
      if (result->contains("errors") && (*result)["errors"].is_array() && !(*result)["errors"].empty()) {
        const json& e = (*result)["errors"][0];
        code = e.value("statusCode", "");
        message = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      }
      if (code == "ENTITY_IS_DELETED" || code == "NOT_FOUND") {
        ++already_gone_[object];
        continue;
      }
      code = Code(code);
      if (code.empty()) code = "UNKNOWN";
      auto& failure = record_failures_[code];
      if (failure.first == 0) failure.second = Scrub(message);
      ++failure.first;
    }
    DeleteChunk(end);
  }

  void FinishDelete() {
    json receipt = Receipt();
    receipt["deleted"] = deleted_;
    receipt["already_gone"] = already_gone_;
    receipt["retained"] = retained_;
    if (!kept_for_retained_.empty()) receipt["kept_for_retained"] = kept_for_retained_;
    receipt["individuals_should_forget"] = individuals_flagged_;
    receipt["delete_calls"] = delete_calls_;
    std::size_t deleted = 0, gone = 0, retained = 0, kept = 0;
    for (const auto& [o, n] : deleted_) deleted += n;
    for (const auto& [o, n] : already_gone_) gone += n;
    for (const auto& [o, n] : retained_) retained += n;
    for (const auto& [o, n] : kept_for_retained_) kept += n;

    if (!record_failures_.empty() || unanswered_ > 0) {
      bool transient = unanswered_ > 0;
      std::string what;
      std::size_t failed = unanswered_;
      for (const auto& [code, failure] : record_failures_) {
        failed += failure.first;
        transient = transient || IsTransientRecordError(code);
        what += fmt::format("; {} x{}{}", code, failure.first, failure.second.empty() ? "" : ": " + failure.second);
      }
      if (unanswered_ > 0) what += fmt::format("; {} without a result", unanswered_);
      json failures = json::object();
      for (const auto& [code, failure] : record_failures_) failures[code] = failure.first;
      receipt["failed"] = std::move(failures);
      std::string message = Shorten(fmt::format("deleted {} of {} records, {} could not be deleted{}", deleted,
                                                to_delete_.size(), failed, what));
      Outcome o = transient ? Outcome::Retry(std::move(message)) : Outcome::Failed(std::move(message));
      o.receipt = std::move(receipt);
      return Finish(std::move(o));
    }
    std::string message = fmt::format("deleted {} records ({} already gone); ShouldForget set on {} Individuals",
                                      deleted, gone, individuals_flagged_);
    if (retained + kept > 0) message += fmt::format("; {} records kept (retain objects and their parents)", retained + kept);
    if (to_delete_.empty() && retained + kept > 0) {
      if (!input_.retain_basis.empty()) receipt["retain_basis"] = input_.retain_basis;
      Outcome o;
      o.kind = OutcomeKind::kRetainedExempt;
      o.message = std::move(message);
      o.receipt = std::move(receipt);
      return Finish(std::move(o));
    }
    Outcome o = Outcome::Done(std::move(receipt));
    o.message = std::move(message);
    Finish(std::move(o));
  }

  // --- correct ---------------------------------------------------------------------------------------------------

  struct Patch {
    std::size_t object;
    std::string id;
    json body;
  };

  void StartCorrect() {
    if (input_.corrections.empty()) return Finish(Outcome::Failed("the correct task carries no corrections"));
    std::set<std::string> mapped;
    for (std::size_t i = 0; i < found_.size(); ++i) {
      const ObjectConfig& o = s_->objects[i];
      for (const auto& rec : found_[i]) {
        json body = json::object();
        for (const auto& c : input_.corrections) {
          auto it = o.correct.find(c.field);
          if (it == o.correct.end()) continue;
          mapped.insert(c.field);
          body[it->second] = c.value;
        }
        if (body.empty()) continue;
        if (o.retain) {
          ++retained_[o.name];
        } else {
          patches_.push_back(Patch{i, rec.id, std::move(body)});
        }
      }
    }
    for (const auto& c : input_.corrections) {
      if (!mapped.contains(c.field) && std::find(unmapped_.begin(), unmapped_.end(), c.field) == unmapped_.end()) {
        unmapped_.push_back(c.field);
      }
    }
    applied_fields_.assign(mapped.begin(), mapped.end());
    PatchNext(0);
  }

  void PatchNext(std::size_t k) {
    if (k >= patches_.size()) return FinishCorrect();
    const Patch& p = patches_[k];
    const std::string& object = s_->objects[p.object].name;
    Api("PATCH", s_->DataPath() + "/sobjects/" + object + "/" + p.id, p.body.dump(),
        [self = shared_from_this(), k, object](const HttpResponse& r) {
          if (r.status == 204 || r.status == 200) {
            ++self->corrected_[object];
          } else if (r.status == 404) {
            ++self->already_gone_[object];
          } else if (IsReadOnly(r)) {
            ++self->read_only_[object];
          } else {
            return self->Finish(self->Failure(r, "correcting a " + object + " record"));
          }
          self->PatchNext(k + 1);
        });
  }

  void FinishCorrect() {
    json receipt = Receipt();
    receipt["corrected"] = corrected_;
    receipt["already_gone"] = already_gone_;
    receipt["retained"] = retained_;
    receipt["fields_applied"] = applied_fields_;
    if (!read_only_.empty()) receipt["read_only"] = read_only_;
    if (!unmapped_.empty()) {
      receipt["fields_unmapped"] = unmapped_;
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      std::string fields;
      for (const auto& f : unmapped_) fields += (fields.empty() ? "" : ", ") + f;
      o.message = Shorten(fmt::format(
          "no field of the records found is mapped for the correction of {} (settings objects[].correct); "
          "apply it in Salesforce by hand",
          fields));
      o.receipt = std::move(receipt);
      return Finish(std::move(o));
    }
    std::size_t n = 0;
    for (const auto& [o, c] : corrected_) n += c;
    Outcome o = Outcome::Done(std::move(receipt));
    o.message = fmt::format("corrected {} records", n);
    Finish(std::move(o));
  }

  // --- opt-out and limit -----------------------------------------------------------------------------------------

  const PrivacyAction& Privacy() const { return input_.action == TaskAction::kOptOut ? s_->opt_out : s_->limit; }

  void StartPrivacy() {
    individuals_ = IndividualIds();
    for (std::size_t i = 0; i < found_.size(); ++i) {
      const ObjectConfig& o = s_->objects[i];
      if (o.retain || o.individual_field.empty()) continue;
      for (const auto& rec : found_[i]) {
        if (!IsSalesforceId(StringField(rec.record, o.individual_field))) unlinked_.push_back(&rec);
      }
    }
    if (!individuals_.empty()) return LinkNext(0);
    if (unlinked_.empty()) {
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      o.message = "the records found have no Individual and none of them can be linked to one (no individual_field); "
                  "record the preference in Salesforce by hand";
      o.receipt = Receipt();
      return Finish(std::move(o));
    }
    if (!s_->create_individual) {
      Outcome o;
      o.kind = OutcomeKind::kNeedsManual;
      o.message = "the records found have no Individual and create_individual is false; create and link one, then "
                  "retry the task";
      o.receipt = Receipt();
      return Finish(std::move(o));
    }
    CreateIndividual();
  }

  // Every record that could carry a link turned out to be read-only.
  void StartPrivacyWithout() {
    Outcome o;
    o.kind = OutcomeKind::kNeedsManual;
    o.message = "the records found have no Individual and none of them can be linked to one (read-only); record "
                "the preference in Salesforce by hand";
    o.receipt = Receipt();
    o.receipt["read_only"] = read_only_;
    Finish(std::move(o));
  }

  // One allOrNone composite call: the Individual and the links to it exist together or not at all.
  void CreateIndividual() {
    const json& first = unlinked_.front()->record;
    json individual = {{"LastName", StringField(first, "LastName").empty() ? "Unknown" : StringField(first, "LastName")}};
    if (const std::string given = StringField(first, "FirstName"); !given.empty()) individual["FirstName"] = given;
    json requests = json::array();
    requests.push_back({{"method", "POST"},
                        {"url", s_->DataPath() + "/sobjects/Individual"},
                        {"referenceId", "individual"},
                        {"body", std::move(individual)}});
    const std::size_t links = std::min(unlinked_.size(), kCompositeLinks);
    for (std::size_t i = 0; i < links; ++i) {
      const ObjectConfig& o = s_->objects[unlinked_[i]->object];
      requests.push_back({{"method", "PATCH"},
                          {"url", s_->DataPath() + "/sobjects/" + o.name + "/" + unlinked_[i]->id},
                          {"referenceId", fmt::format("link{}", i)},
                          {"body", {{o.individual_field, "@{individual.id}"}}}});
    }
    const json body = {{"allOrNone", true}, {"compositeRequest", std::move(requests)}};
    Api("POST", s_->DataPath() + "/composite", body.dump(), [self = shared_from_this(), links](const HttpResponse& r) {
      self->OnIndividualCreated(r, links);
    });
  }

  void OnIndividualCreated(const HttpResponse& r, std::size_t links) {
    if (r.status != 200) return Finish(Failure(r, "creating an Individual"));
    const json doc = json::parse(r.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("compositeResponse") || !doc["compositeResponse"].is_array()) {
      return Finish(Outcome::Retry("creating an Individual: Salesforce's answer is not a composite response"));
    }
    std::string created;
    for (const auto& sub : doc["compositeResponse"]) {
      const int status = sub.value("httpStatusCode", 0);
      if (status >= 300) {
        // The subrequest that failed, not the ones halted because of it.
        const std::string body = sub.contains("body") ? sub["body"].dump() : "";
        auto [code, message] = RestError(body);
        if (code == "PROCESSING_HALTED") continue;
        const std::string reference = sub.value("referenceId", "");
        if (code == "CANNOT_UPDATE_CONVERTED_LEAD" && reference.starts_with("link")) {
          // Nothing was written (all or none): leave the converted lead out and try again without it.
          const std::size_t at = std::stoul(reference.substr(4));
          if (at < unlinked_.size()) {
            ++read_only_[s_->objects[unlinked_[at]->object].name];
            unlinked_.erase(unlinked_.begin() + static_cast<std::ptrdiff_t>(at));
            return unlinked_.empty() ? StartPrivacyWithout() : CreateIndividual();
          }
        }
        HttpResponse failed;
        failed.status = status;
        failed.body = body;
        return Finish(Failure(failed, "creating an Individual"));
      }
      if (sub.value("referenceId", "") == "individual" && sub.contains("body") && sub["body"].is_object()) {
        created = sub["body"].value("id", "");
      }
    }
    if (!IsSalesforceId(created)) {
      return Finish(Outcome::Retry("creating an Individual: Salesforce's answer names no new record"));
    }
    individuals_.push_back(created);
    individuals_created_ = 1;
    records_linked_ += links;
    LinkNext(links);
  }

  void LinkNext(std::size_t k) {
    if (k >= unlinked_.size()) return FlagIndividual(0);
    const ObjectConfig& o = s_->objects[unlinked_[k]->object];
    Api("PATCH", s_->DataPath() + "/sobjects/" + o.name + "/" + unlinked_[k]->id,
        json{{o.individual_field, individuals_.front()}}.dump(),
        [self = shared_from_this(), k, name = o.name](const HttpResponse& r) {
          if (r.status == 204 || r.status == 200) {
            ++self->records_linked_;
          } else if (IsReadOnly(r)) {
            ++self->read_only_[name];
          } else if (r.status != 404) {
            return self->Finish(self->Failure(r, "linking a " + name + " record to its Individual"));
          }
          self->LinkNext(k + 1);
        });
  }

  void FlagIndividual(std::size_t k) {
    const PrivacyAction& p = Privacy();
    if (p.individual_flags.empty() || k >= individuals_.size()) return LookUpConsents();
    json body = json::object();
    for (const auto& flag : p.individual_flags) body[flag] = true;
    Api("PATCH", s_->DataPath() + "/sobjects/Individual/" + individuals_[k], body.dump(),
        [self = shared_from_this(), k](const HttpResponse& r) {
          if (r.status == 204 || r.status == 200) {
            ++self->individuals_flagged_;
          } else if (r.status != 404) {
            return self->Finish(self->Failure(r, "setting an Individual's opt-out flags"));
          }
          self->FlagIndividual(k + 1);
        });
  }

  void LookUpConsents() {
    const PrivacyAction& p = Privacy();
    if (p.consent.empty()) return FinishPrivacy();
    std::vector<std::string> parties, purposes;
    for (const auto& id : individuals_) parties.push_back(*SoqlLiteral(id));
    for (const auto& c : p.consent) {
      if (auto literal = SoqlLiteral(c.data_use_purpose_id)) purposes.push_back(*literal);
    }
    auto queries = std::make_shared<std::vector<std::string>>();
    for (std::size_t i = 0; i < parties.size(); i += kIdsPerClause) {
      queries->push_back("SELECT Id, PartyId, DataUsePurposeId, ContactPointType, PrivacyConsentStatus FROM "
                         "ContactPointTypeConsent WHERE " +
                         InList("PartyId", parties, i, std::min(parties.size(), i + kIdsPerClause)) + " AND " +
                         InList("DataUsePurposeId", purposes, 0, purposes.size()));
    }
    ConsentQuery(std::move(queries), 0);
  }

  void ConsentQuery(std::shared_ptr<std::vector<std::string>> queries, std::size_t k) {
    if (k >= queries->size()) return PlanConsents();
    Query(
        (*queries)[k], "reading ContactPointTypeConsent records",
        [self = shared_from_this()](const json& records) {
          for (const auto& r : records) self->consents_.push_back(r);
        },
        [self = shared_from_this(), queries, k] { self->ConsentQuery(queries, k + 1); });
  }

  struct ConsentWrite {
    std::string method;
    std::string path;
    json body;
  };

  void PlanConsents() {
    const PrivacyAction& p = Privacy();
    const std::string now = NowDateTime();
    for (const auto& party : individuals_) {
      for (const auto& purpose : p.consent) {
        const json* existing = nullptr;
        for (const auto& c : consents_) {
          if (IdKey(StringField(c, "PartyId")) == IdKey(party) &&
              IdKey(StringField(c, "DataUsePurposeId")) == IdKey(purpose.data_use_purpose_id) &&
              (StringField(c, "ContactPointType").empty() ||
               Lower(StringField(c, "ContactPointType")) == Lower(purpose.contact_point_type))) {
            existing = &c;
            break;
          }
        }
        if (existing && StringField(*existing, "PrivacyConsentStatus") == "OptOut") {
          ++consents_unchanged_;
        } else if (existing) {
          consent_writes_.push_back(ConsentWrite{
              "PATCH", s_->DataPath() + "/sobjects/ContactPointTypeConsent/" + StringField(*existing, "Id"),
              {{"PrivacyConsentStatus", "OptOut"},
               {"CaptureDate", now},
               {"CaptureSource", s_->capture_source},
               {"EffectiveFrom", now}}});
        } else {
          consent_writes_.push_back(ConsentWrite{"POST", s_->DataPath() + "/sobjects/ContactPointTypeConsent",
                                                 {{"Name", purpose.name},
                                                  {"PartyId", party},
                                                  {"DataUsePurposeId", purpose.data_use_purpose_id},
                                                  {"ContactPointType", purpose.contact_point_type},
                                                  {"PrivacyConsentStatus", "OptOut"},
                                                  {"CaptureDate", now},
                                                  {"CaptureSource", s_->capture_source},
                                                  {"EffectiveFrom", now}}});
        }
      }
    }
    WriteConsent(0);
  }

  void WriteConsent(std::size_t k) {
    if (k >= consent_writes_.size()) return FinishPrivacy();
    const ConsentWrite& w = consent_writes_[k];
    Api(w.method, w.path, w.body.dump(), [self = shared_from_this(), k](const HttpResponse& r) {
      const bool create = self->consent_writes_[k].method == "POST";
      if (r.status >= 200 && r.status < 300) {
        ++(create ? self->consents_created_ : self->consents_updated_);
      } else {
        return self->Finish(self->Failure(r, create ? "creating a ContactPointTypeConsent"
                                                    : "updating a ContactPointTypeConsent"));
      }
      self->WriteConsent(k + 1);
    });
  }

  void FinishPrivacy() {
    json receipt = Receipt();
    receipt["individuals_flagged"] = individuals_flagged_;
    receipt["individual_flags"] = Privacy().individual_flags;
    receipt["individuals_created"] = individuals_created_;
    receipt["records_linked"] = records_linked_;
    if (!read_only_.empty()) receipt["read_only"] = read_only_;
    receipt["consents_created"] = consents_created_;
    receipt["consents_updated"] = consents_updated_;
    receipt["consents_unchanged"] = consents_unchanged_;
    Outcome o = Outcome::Done(std::move(receipt));
    o.message = fmt::format("opt-out recorded on {} Individuals ({} consent records written)", individuals_flagged_,
                            consents_created_ + consents_updated_);
    Finish(std::move(o));
  }

  // --- calls -----------------------------------------------------------------------------------------------------

  // GET of a query and of each nextRecordsUrl until done; `batch` sees each batch's records, `then` runs after the
  // last.
  void Query(const std::string& soql, std::string doing, std::function<void(const json&)> batch,
             std::function<void()> then) {
    QueryPage(s_->DataPath() + "/query?q=" + UrlEncode(soql), std::move(doing), std::move(batch), std::move(then));
  }

  void QueryPage(const std::string& path, std::string doing, std::function<void(const json&)> batch,
                 std::function<void()> then) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (s_->query_batch_size) headers.emplace_back("Sforce-Query-Options", fmt::format("batchSize={}", *s_->query_batch_size));
    ++queries_;
    Api(
        "GET", path, "",
        [self = shared_from_this(), doing, batch, then](const HttpResponse& r) {
          if (r.status != 200) return self->Finish(self->Failure(r, doing));
          const json doc = json::parse(r.body, nullptr, false);
          if (!doc.is_object() || !doc.contains("records") || !doc["records"].is_array()) {
            return self->Finish(Outcome::Retry(doing + ": Salesforce's answer is not a query result"));
          }
          batch(doc["records"]);
          const bool done = doc.value("done", true);
          const std::string next = doc.contains("nextRecordsUrl") && doc["nextRecordsUrl"].is_string()
                                       ? doc["nextRecordsUrl"].get<std::string>()
                                       : "";
          if (!done) {
            // A relative path on the instance, never an absolute URL: the token goes nowhere else.
            if (!next.starts_with("/services/data/")) {
              return self->Finish(Outcome::Retry(doing + ": Salesforce's answer is not done and has no usable "
                                                         "nextRecordsUrl"));
            }
            return self->QueryPage(next, doing, batch, then);
          }
          then();
        },
        std::move(headers));
  }

  // One REST call on the instance: waits for nothing, stops when the allowance is at its reserve, authenticates,
  // remembers Sforce-Limit-Info, and repeats the call once with a new token after a 401.
  void Api(std::string method, std::string path, std::string body, std::function<void(const HttpResponse&)> then,
           std::vector<std::pair<std::string, std::string>> headers = {}, bool refreshed = false) {
    if (auto hold = allowance_->Check()) {
      return Finish(Outcome::Retry(fmt::format("{}; waiting {} s before calling again", hold->why,
                                               std::chrono::ceil<std::chrono::seconds>(hold->wait).count()),
                                   hold->wait));
    }
    tokens_->Get([self = shared_from_this(), method = std::move(method), path = std::move(path),
                  body = std::move(body), then = std::move(then), headers = std::move(headers),
                  refreshed](const AccessToken* token, const Outcome* failure) mutable {
      if (failure) return self->Finish(*failure);
      HttpRequest request;
      request.method = method;
      request.url = token->instance_url + path;
      request.timeout = self->s_->timeout;
      request.headers = headers;
      request.headers.emplace_back("Authorization", "Bearer " + token->access_token);
      request.headers.emplace_back("Accept", "application/json");
      if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
      request.body = body;
      ++self->api_calls_;
      self->s_->http->Send(
          std::move(request),
          [self, method = std::move(method), path = std::move(path), body = std::move(body), then = std::move(then),
           headers = std::move(headers), refreshed, used = token->access_token](HttpResponse r) mutable {
            try {
              if (auto usage = ParseApiUsage(r.Header("Sforce-Limit-Info"))) self->allowance_->Observe(*usage);
              if (r.status == 401 && !refreshed) {
                self->tokens_->Invalidate(used);
                ++self->token_refreshes_;
                return self->Api(std::move(method), std::move(path), std::move(body), std::move(then),
                                 std::move(headers), true);
              }
              then(r);
            } catch (const std::exception& e) {
              self->Finish(Outcome::Retry(fmt::format("internal error handling Salesforce's answer: {}", e.what())));
            }
          });
    });
  }

  // An answer the exchange did not want, as an outcome.
  Outcome Failure(const HttpResponse& r, const std::string& doing) {
    if (r.status == 0) {
      if (r.error == "timeout") {
        return Outcome::Retry(fmt::format("{}: Salesforce did not answer within {} ms", doing, s_->timeout.count()));
      }
      return Outcome::Retry(fmt::format("{}: {}", doing, Scrub(r.error)));
    }
    auto [code, message] = RestError(r.body);
    std::string said = Code(code).empty() ? "" : " " + Code(code);
    if (!message.empty()) said += ": " + Scrub(message);
    if (r.status == 403 && code == "REQUEST_LIMIT_EXCEEDED") {
      allowance_->Exhausted(s_->limit_exceeded_wait);
      return Outcome::Retry(Shorten(fmt::format("{}: Salesforce answered 403{}; waiting {} s", doing, said,
                                                s_->limit_exceeded_wait.count())),
                            std::chrono::milliseconds(s_->limit_exceeded_wait));
    }
    if (r.status == 401) {
      return Outcome::Failed(Shorten(fmt::format("{}: Salesforce refused a newly issued access token (401{})", doing, said)));
    }
    if (r.status == 408 || r.status == 429 || r.status >= 500) {
      return Outcome::Retry(Shorten(fmt::format("{}: Salesforce answered {}{}", doing, r.status, said)),
                            ParseRetryAfter(r.Header("Retry-After"), std::chrono::system_clock::now()));
    }
    return Outcome::Failed(Shorten(fmt::format("{}: Salesforce answered {}{}", doing, r.status, said)));
  }

  // Salesforce text that may reach a message: a query error's echo of the SOQL dropped, control characters
  // flattened, every identity and correction value (and the forms it was sent in) cut out wherever it appears, the
  // values of the records found cut out where they stand as words (Salesforce names records in its messages:
  // "Your attempt to delete Jane Doe could not be completed"), shortened.
  std::string Scrub(std::string_view text) const {
    std::string out(text.substr(0, 4096));
    if (auto at = out.find("ERROR at Row"); at != std::string::npos) {
      auto line_end = out.find('\n', at);
      out = line_end == std::string::npos ? "" : out.substr(line_end + 1);
    }
    for (char& c : out) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    std::set<std::string> anywhere, words;
    for (const auto& v : scrub_) {
      if (v.size() >= 3) anywhere.insert(Lower(v));
    }
    for (const auto& list : found_) {
      for (const auto& rec : list) {
        for (const auto& [key, value] : rec.record.items()) {
          if (value.is_string() && value.get<std::string>().size() >= 3) words.insert(Lower(value.get<std::string>()));
        }
      }
    }
    // Longest first, and cut to a control character (none is left in `out`) so that no shorter value can match
    // inside a replacement; the marker is written at the end.
    constexpr char kCut = '\x01';
    auto cut = [&out](const std::set<std::string>& values, bool whole_words) {
      std::vector<std::string> needles(values.begin(), values.end());
      std::sort(needles.begin(), needles.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
      auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
      std::string lowered = Lower(out);
      for (const auto& needle : needles) {
        std::size_t pos = 0;
        while ((pos = lowered.find(needle, pos)) != std::string::npos) {
          const bool bounded = (pos == 0 || !is_word(lowered[pos - 1])) &&
                               (pos + needle.size() >= lowered.size() || !is_word(lowered[pos + needle.size()]));
          if (whole_words && !bounded) {
            ++pos;
            continue;
          }
          out.replace(pos, needle.size(), 1, kCut);
          lowered.replace(pos, needle.size(), 1, kCut);
          ++pos;
        }
      }
    };
    cut(anywhere, false);
    cut(words, true);
    std::string marked;
    for (char c : out) {
      if (c == kCut) {
        marked += "[redacted]";
      } else {
        marked += c;
      }
    }
    while (!marked.empty() && marked.front() == ' ') marked.erase(0, 1);
    return Shorten(std::move(marked), kMaxMessage);
  }

  // Salesforce's error codes are upper-case words; anything else in their place is not passed on.
  static std::string Code(std::string_view code) {
    std::string out;
    for (char c : code.substr(0, 80)) {
      if (std::isupper(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        out += c;
      }
    }
    return out;
  }

  static std::string Shorten(std::string text, std::size_t limit = 2 * kMaxMessage) {
    if (text.size() > limit) {
      text.resize(limit);  // may cut a character in two: ToValidUtf8 turns its remains into '?'
      return ToValidUtf8(text) + "...";
    }
    return ToValidUtf8(text);
  }

  json Receipt() const {
    json located = json::object();
    for (std::size_t i = 0; i < found_.size(); ++i) {
      if (!found_[i].empty()) located[s_->objects[i].name] = found_[i].size();
    }
    json receipt = {{"api_version", s_->api_version}, {"located", std::move(located)}, {"api_calls", api_calls_.load()},
                    {"queries", queries_}};
    if (token_refreshes_ > 0) receipt["token_refreshes"] = token_refreshes_;
    if (auto usage = allowance_->Last()) receipt["api_usage"] = {{"used", usage->used}, {"max", usage->max}};
    return receipt;
  }

  void Finish(Outcome outcome) {
    if (finished_.exchange(true)) return;
    // Every outcome says what was found and how many calls it took, failures included.
    if (outcome.receipt.is_object() && outcome.receipt.empty()) outcome.receipt = Receipt();
    try {
      done_(std::move(outcome));
    } catch (...) {
      // The engine's callback threw; nothing here can repair that, and the I/O thread must survive it.
    }
  }

  std::shared_ptr<const Settings> s_;
  std::shared_ptr<TokenSource> tokens_;
  std::shared_ptr<Allowance> allowance_;
  TaskInput input_;
  OutcomeCallback done_;
  std::atomic<bool> finished_{false};

  // One exchange runs at a time and starts the next from its callback; the HTTP client's hand-off orders the
  // writes below between threads.
  std::vector<std::string> emails_, phones_, ids_;  // SOQL literals
  std::vector<std::string> scrub_;
  std::vector<std::vector<Located>> found_;
  std::vector<std::set<std::string>> seen_;
  std::atomic<int> api_calls_{0};
  int queries_ = 0;
  int token_refreshes_ = 0;

  std::vector<std::string> individuals_;
  std::vector<const Located*> to_delete_;
  std::map<std::string, std::size_t> deleted_, already_gone_, retained_, kept_for_retained_, corrected_, read_only_;
  std::map<std::string, std::pair<std::size_t, std::string>> record_failures_;  // statusCode -> (count, message)
  std::size_t unanswered_ = 0;
  int delete_calls_ = 0;
  int individuals_flagged_ = 0;

  std::vector<Patch> patches_;
  std::vector<std::string> unmapped_;
  std::vector<std::string> applied_fields_;

  std::vector<const Located*> unlinked_;
  int individuals_created_ = 0;
  std::size_t records_linked_ = 0;
  std::vector<json> consents_;
  std::vector<ConsentWrite> consent_writes_;
  int consents_created_ = 0, consents_updated_ = 0, consents_unchanged_ = 0;
};

// --- the connector -----------------------------------------------------------------------------------------------

class SalesforceConnector final : public Connector {
 public:
  explicit SalesforceConnector(std::shared_ptr<const Settings> settings)
      : settings_(std::move(settings)),
        tokens_(std::make_shared<TokenSource>(settings_)),
        allowance_(std::make_shared<Allowance>(settings_->api_reserve_percent, settings_->reserve_wait)) {}

  bool Supports(TaskAction action) const override { return action != TaskAction::kDeidentify; }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    if (!Supports(input.action)) {
      done(Outcome::Failed(fmt::format("the salesforce connector cannot {}", ToString(input.action))));
      return;
    }
    std::make_shared<Job>(settings_, tokens_, allowance_, input, std::move(done))->Start();
  }

 private:
  std::shared_ptr<const Settings> settings_;
  std::shared_ptr<TokenSource> tokens_;
  std::shared_ptr<Allowance> allowance_;
};

}  // namespace

std::unique_ptr<Connector> MakeSalesforceConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  return std::make_unique<SalesforceConnector>(ReadSettings(settings, env));
}

}  // namespace rightsd::connectors::salesforce
