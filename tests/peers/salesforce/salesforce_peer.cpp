#include "peers/salesforce/salesforce_peer.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <variant>

#include "peers/salesforce/soql_engine.h"

namespace rightsd::test {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxCollectionIds = 200;
constexpr std::size_t kMaxCompositeRequests = 25;
constexpr auto kMaxAssertionLifetime = 180s;  // "exp ... within 3 minutes"
constexpr auto kClockSkew = 30s;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

[[noreturn]] void OpenSslFailure(const char* what) {
  ERR_clear_error();
  throw std::runtime_error(std::string("salesforce peer: ") + what);
}

std::optional<std::string> DecodeBase64Url(std::string_view text) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    auto pos = kAlphabet.find(c);
    if (pos == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

std::string RandomHex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    OpenSslFailure("no random bytes");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

// The 3-character suffix that makes a 15-character id case-insensitive.
std::string IdSuffix(std::string_view id15) {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
  std::string out;
  for (int chunk = 0; chunk < 3; ++chunk) {
    int flags = 0;
    for (int i = 0; i < 5; ++i) {
      const char c = id15[chunk * 5 + i];
      if (c >= 'A' && c <= 'Z') flags |= 1 << i;
    }
    out.push_back(kChars[flags]);
  }
  return out;
}

bool IsId(std::string_view id) {
  return (id.size() == 15 || id.size() == 18) &&
         std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

std::string Key(std::string_view id) { return std::string(id.substr(0, 15)); }

json ErrorBody(const std::string& code, const std::string& message, json fields = json::array()) {
  return json::array({{{"message", message}, {"errorCode", code}, {"fields", std::move(fields)}}});
}

struct TypeInfo {
  std::string name;
  std::string prefix;
  std::map<std::string, std::string> fields;  // lower -> canonical
  std::set<std::string> hidden;               // lower
  json defaults = json::object();
  std::vector<std::string> required;
  std::vector<std::string> order;  // record keys, insertion order
};

struct Stored {
  std::string type;  // lower
  json fields;       // canonical names, with Id
  bool deleted = false;
};

struct Token {
  std::optional<Clock::time_point> expires;
  bool revoked = false;
};

struct Fault {
  int calls = 0;
  int status = 503;
  int retry_after = -1;
  std::string prefix;
};

struct Cursor {
  std::vector<json> records;
  std::size_t batch = 200;
};

// What an operation answers: a status and a JSON body (null: none).
struct Answer {
  int status = 200;
  json body;
};

}  // namespace

struct SalesforcePeer::Impl {
  explicit Impl(SalesforcePeerOptions o) : options(std::move(o)) {}

  SalesforcePeerOptions options;
  RecordingServer server;
  int port = 0;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{nullptr, EVP_PKEY_free};
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> public_key{nullptr, EVP_PKEY_free};
  std::string private_key_pem;
  std::string public_key_pem;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool started = false;
  std::map<std::string, TypeInfo> types;  // lower name -> info
  std::map<std::string, Stored> records;  // 15-char id -> record
  long long next_id = 1;
  int next_custom_prefix = 0;
  std::map<std::string, Token> tokens;
  std::optional<int> expire_after_calls;
  Fault fault;
  std::map<std::string, std::pair<std::string, std::string>> delete_failures;  // id15 -> (statusCode, message)
  std::map<std::string, std::pair<std::string, std::string>> write_failures;   // id15 -> (errorCode, message)
  std::chrono::milliseconds delay{0};
  long long api_used = 0;
  long long daily_limit = 100000;
  int token_requests = 0;
  int tokens_issued = 0;
  std::vector<std::string> queries;
  std::vector<json> claims;
  std::map<std::string, Cursor> cursors;
  long long next_cursor = 1;

  // --- keys ---

  void MakeKeys() {
    key.reset(EVP_RSA_gen(2048));
    if (!key) OpenSslFailure("cannot generate an RSA key");
    auto write = [](auto writer) {
      std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
      if (!bio || writer(bio.get()) != 1) OpenSslFailure("cannot write a key");
      char* data = nullptr;
      const long len = BIO_get_mem_data(bio.get(), &data);
      return std::string(data, static_cast<std::size_t>(len));
    };
    private_key_pem = write([this](BIO* b) {
      return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    });
    public_key_pem = write([this](BIO* b) { return PEM_write_bio_PUBKEY(b, key.get()); });
    // Assertions are checked against the public half alone, as Salesforce checks them against the certificate.
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(public_key_pem.data(), static_cast<int>(public_key_pem.size())), BIO_free);
    public_key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!public_key) OpenSslFailure("cannot read the public key back");
  }

  bool VerifyRs256(std::string_view signing_input, std::string_view signature) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, public_key.get()) == 1 &&
                    EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                                     signature.size(), reinterpret_cast<const unsigned char*>(signing_input.data()),
                                     signing_input.size()) == 1;
    ERR_clear_error();
    return ok;
  }

  // --- schema (mu held) ---

  void Declare(const std::string& name, const std::string& prefix, const std::vector<std::string>& fields,
               json defaults = json::object(), std::vector<std::string> required = {}) {
    TypeInfo& t = types[Lower(name)];
    if (t.name.empty()) {
      t.name = name;
      t.prefix = prefix.empty() ? NextCustomPrefix() : prefix;
      t.fields["id"] = "Id";
      t.fields["createddate"] = "CreatedDate";
    }
    for (const auto& f : fields) t.fields.emplace(Lower(f), f);
    for (const auto& [k, v] : defaults.items()) t.defaults[k] = v;
    for (auto& r : required) t.required.push_back(std::move(r));
  }

  std::string NextCustomPrefix() {
    static constexpr char kDigits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const int n = next_custom_prefix++;
    return std::string("a") + kDigits[(n / 36) % 36] + kDigits[n % 36];
  }

  void DeclareStandardTypes() {
    Declare("Contact", "003",
            {"Salutation", "FirstName", "LastName", "Name", "Email", "Phone", "MobilePhone", "HomePhone", "OtherPhone",
             "MailingStreet", "MailingCity", "MailingState", "MailingPostalCode", "MailingCountry", "Birthdate",
             "Title", "IndividualId", "AccountId", "HasOptedOutOfEmail", "DoNotCall"},
            {{"HasOptedOutOfEmail", false}, {"DoNotCall", false}}, {"LastName"});
    Declare("Lead", "00Q",
            {"Salutation", "FirstName", "LastName", "Name", "Email", "Phone", "MobilePhone", "Company", "Title",
             "Street", "City", "State", "PostalCode", "Country", "IndividualId", "IsConverted", "HasOptedOutOfEmail"},
            {{"IsConverted", false}, {"HasOptedOutOfEmail", false}}, {"LastName", "Company"});
    Declare("Account", "001",
            {"Name", "Salutation", "FirstName", "LastName", "IsPersonAccount", "PersonEmail", "Phone",
             "PersonMobilePhone", "PersonHomePhone", "PersonOtherPhone", "PersonMailingStreet", "PersonMailingCity",
             "PersonMailingState", "PersonMailingPostalCode", "PersonMailingCountry", "PersonBirthdate",
             "PersonIndividualId", "PersonContactId"},
            {{"IsPersonAccount", false}});
    Declare("Case", "500",
            {"CaseNumber", "Subject", "Description", "Status", "Origin", "SuppliedName", "SuppliedEmail",
             "SuppliedPhone", "ContactId", "AccountId"});
    Declare("Individual", "0PK",
            {"Salutation", "FirstName", "LastName", "Name", "BirthDate", "ShouldForget", "SendIndividualData",
             "CanStorePiiElsewhere", "HasOptedOutProcessing", "HasOptedOutProfiling", "HasOptedOutSolicit",
             "HasOptedOutTracking", "HasOptedOutGeoTracking"},
            {{"ShouldForget", false},
             {"SendIndividualData", false},
             {"CanStorePiiElsewhere", false},
             {"HasOptedOutProcessing", false},
             {"HasOptedOutProfiling", false},
             {"HasOptedOutSolicit", false},
             {"HasOptedOutTracking", false},
             {"HasOptedOutGeoTracking", false}},
            {"LastName"});
    Declare("ContactPointTypeConsent", "0ZY",
            {"Name", "PartyId", "ContactPointType", "DataUsePurposeId", "PrivacyConsentStatus", "CaptureDate",
             "CaptureSource", "CaptureContactPointType", "EffectiveFrom", "EffectiveTo", "DoubleConsentCaptureDate",
             "BusinessBrandId"},
            {}, {"Name", "PartyId"});
    Declare("DataUsePurpose", "0ZW", {"Name", "Description", "CanDataSubjectOptOut", "LegalBasisId"}, {}, {"Name"});
  }

  TypeInfo* FindType(const std::string& name) {
    auto it = types.find(Lower(name));
    return it == types.end() ? nullptr : &it->second;
  }

  // The canonical name of `field` on `type`, or "" when the org has no such field.
  static std::string FieldName(const TypeInfo& type, const std::string& field) {
    const std::string lower = Lower(field);
    if (type.hidden.contains(lower)) return "";
    auto it = type.fields.find(lower);
    return it == type.fields.end() ? "" : it->second;
  }

  std::string NewId(const TypeInfo& type) {
    std::string digits = std::to_string(next_id++);
    std::string id15 = type.prefix + "Sm" + std::string(10 - std::min<std::size_t>(10, digits.size()), '0') + digits;
    return id15 + IdSuffix(id15);
  }

  std::string InsertLocked(TypeInfo& type, const json& fields) {
    const std::string id = NewId(type);
    json stored = type.defaults;
    for (const auto& [k, v] : fields.items()) {
      const std::string lower = Lower(k);
      if (!type.fields.contains(lower)) type.fields[lower] = k;
      stored[type.fields[lower]] = v;
    }
    stored["Id"] = id;
    if (!stored.contains("CreatedDate")) stored["CreatedDate"] = "2026-01-15T10:00:00.000+0000";
    if (Lower(type.name) == "case" && !stored.contains("CaseNumber")) {
      stored["CaseNumber"] = std::to_string(10000000 + next_id);
    }
    records[Key(id)] = Stored{Lower(type.name), std::move(stored), false};
    type.order.push_back(Key(id));
    return id;
  }

  json Render(const TypeInfo& type, const Stored& s, const std::string& version,
              const std::vector<std::string>& fields) const {
    json out = {{"attributes",
                 {{"type", type.name},
                  {"url", "/services/data/" + version + "/sobjects/" + type.name + "/" + s.fields["Id"].get<std::string>()}}}};
    for (const auto& f : fields) {
      const std::string canonical = FieldName(type, f);
      auto it = s.fields.find(canonical);
      out[canonical] = it == s.fields.end() ? json(nullptr) : *it;
    }
    return out;
  }

  std::vector<std::string> AllFields(const TypeInfo& type) const {
    std::vector<std::string> out;
    for (const auto& [lower, canonical] : type.fields) {
      if (!type.hidden.contains(lower)) out.push_back(canonical);
    }
    return out;
  }

  // --- operations (mu held) ---

  // Checks what a create or update writes: known fields, no Id, references to live records.
  std::optional<Answer> CheckWrite(const TypeInfo& type, const json& body) {
    if (!body.is_object()) {
      return Answer{400, ErrorBody("JSON_PARSER_ERROR", "The request body must be a JSON object.")};
    }
    for (const auto& [k, v] : body.items()) {
      const std::string canonical = FieldName(type, k);
      if (canonical.empty()) {
        return Answer{400, ErrorBody("INVALID_FIELD", "No such column '" + k + "' on sobject of type " + type.name)};
      }
      if (canonical == "Id") {
        return Answer{400, ErrorBody("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id.",
                                     json::array({"Id"}))};
      }
      static const std::set<std::string> kReferences = {"partyid", "datausepurposeid", "individualid",
                                                        "personindividualid", "contactid", "accountid"};
      if (kReferences.contains(Lower(canonical)) && v.is_string() && !v.get<std::string>().empty()) {
        const std::string target = v.get<std::string>();
        auto it = IsId(target) ? records.find(Key(target)) : records.end();
        if (it == records.end() || it->second.deleted) {
          return Answer{400, ErrorBody("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id",
                                       json::array({canonical}))};
        }
      }
    }
    return std::nullopt;
  }

  Answer Create(const std::string& type_name, const json& body) {
    TypeInfo* type = FindType(type_name);
    if (!type) return Answer{404, ErrorBody("NOT_FOUND", "The requested resource does not exist")};
    if (auto bad = CheckWrite(*type, body)) return *bad;
    std::vector<std::string> missing;
    for (const auto& r : type->required) {
      bool present = false;
      for (const auto& [k, v] : body.items()) present = present || (Lower(k) == Lower(r) && !v.is_null() && v != "");
      if (!present) missing.push_back(r);
    }
    if (!missing.empty()) {
      std::string list;
      for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
      return Answer{400, ErrorBody("REQUIRED_FIELD_MISSING", "Required fields are missing: [" + list + "]", missing)};
    }
    const std::string id = InsertLocked(*type, body);
    return Answer{201, {{"id", id}, {"success", true}, {"errors", json::array()}}};
  }

  // The live record `id` of `type_name`, or the answer that says why not.
  std::variant<Stored*, Answer> Live(const std::string& type_name, const std::string& id) {
    TypeInfo* type = FindType(type_name);
    auto it = IsId(id) ? records.find(Key(id)) : records.end();
    if (!type || it == records.end() || it->second.type != Lower(type->name)) {
      return Answer{404, ErrorBody("NOT_FOUND", "The requested resource does not exist")};
    }
    if (it->second.deleted) return Answer{404, ErrorBody("ENTITY_IS_DELETED", "entity is deleted")};
    return &it->second;
  }

  Answer Update(const std::string& type_name, const std::string& id, const json& body) {
    auto live = Live(type_name, id);
    if (auto* answer = std::get_if<Answer>(&live)) return *answer;
    Stored* s = std::get<Stored*>(live);
    TypeInfo& type = *FindType(type_name);
    if (auto bad = CheckWrite(type, body)) return *bad;
    if (auto f = write_failures.find(Key(id)); f != write_failures.end()) {
      return Answer{400, ErrorBody(f->second.first, f->second.second)};
    }
    if (s->type == "lead" && s->fields.value("IsConverted", false)) {
      return Answer{400, ErrorBody("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")};
    }
    for (const auto& [k, v] : body.items()) s->fields[FieldName(type, k)] = v;
    return Answer{204, nullptr};
  }

  Answer Read(const std::string& version, const std::string& type_name, const std::string& id,
              const std::string& fields_param) {
    auto live = Live(type_name, id);
    if (auto* answer = std::get_if<Answer>(&live)) return *answer;
    const TypeInfo& type = *FindType(type_name);
    std::vector<std::string> fields;
    if (fields_param.empty()) {
      fields = AllFields(type);
    } else {
      std::size_t start = 0;
      while (start <= fields_param.size()) {
        const auto comma = fields_param.find(',', start);
        const std::string f = fields_param.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (FieldName(type, f).empty()) {
          return Answer{400, ErrorBody("INVALID_FIELD", "No such column '" + f + "' on sobject of type " + type.name)};
        }
        fields.push_back(f);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
    return Answer{200, Render(type, *std::get<Stored*>(live), version, fields)};
  }

  Answer RunQuery(const std::string& version, const std::string& soql, std::optional<int> batch_asked) {
    queries.push_back(soql);
    sfsim::SoqlError error;
    auto query = sfsim::ParseSoql(soql, error);
    if (!query) return Answer{400, ErrorBody(error.error_code, error.message)};
    const TypeInfo* type = FindType(query->type.name);
    if (!type) {
      return Answer{400, ErrorBody("INVALID_TYPE",
                                   sfsim::QueryErrorMessage(
                                       soql, query->type.column,
                                       "sObject type '" + query->type.name +
                                           "' is not supported. If you are attempting to use a custom object, be sure "
                                           "to append the '__c' after the entity name. Please reference your WSDL or "
                                           "the describe call for the appropriate names."))};
    }
    std::vector<std::string> fields;
    std::set<std::string> selected;
    auto check = [&](const sfsim::FieldRef& f) -> std::optional<Answer> {
      if (FieldName(*type, f.name).empty()) {
        return Answer{400, ErrorBody("INVALID_FIELD",
                                     sfsim::QueryErrorMessage(
                                         soql, f.column,
                                         "No such column '" + f.name + "' on entity '" + type->name +
                                             "'. If you are attempting to use a custom field, be sure to append the "
                                             "'__c' after the custom field name. Please reference your WSDL or the "
                                             "describe call for the appropriate names."))};
      }
      return std::nullopt;
    };
    for (const auto& f : query->fields) {
      if (auto bad = check(f)) return *bad;
      if (!selected.insert(Lower(f.name)).second) {
        return Answer{400, ErrorBody("MALFORMED_QUERY", sfsim::QueryErrorMessage(soql, f.column,
                                                                                 "duplicate field selected: " + f.name))};
      }
      fields.push_back(f.name);
    }
    for (const auto& f : query->where_fields) {
      if (auto bad = check(f)) return *bad;
    }
    Cursor cursor;
    for (const auto& id : type->order) {
      const Stored& s = records.at(id);
      if (s.deleted || !sfsim::Matches(*query, s.fields)) continue;
      cursor.records.push_back(Render(*type, s, version, fields));
      if (query->limit && static_cast<long long>(cursor.records.size()) >= *query->limit) break;
    }
    cursor.batch = static_cast<std::size_t>(std::max(1, options.batch_size));
    if (batch_asked) cursor.batch = std::min(cursor.batch, static_cast<std::size_t>(std::clamp(*batch_asked, 200, 2000)));
    const std::string locator = "01gSm" + std::string(10 - std::to_string(next_cursor).size(), '0') + std::to_string(next_cursor);
    ++next_cursor;
    Answer page = Page(version, locator, cursor, 0);
    if (!page.body["done"].get<bool>()) cursors[locator] = std::move(cursor);
    return page;
  }

  static Answer Page(const std::string& version, const std::string& locator, const Cursor& cursor, std::size_t offset) {
    const std::size_t end = std::min(cursor.records.size(), offset + cursor.batch);
    json records = json::array();
    for (std::size_t i = offset; i < end; ++i) records.push_back(cursor.records[i]);
    json body = {{"totalSize", cursor.records.size()}, {"done", end >= cursor.records.size()}, {"records", std::move(records)}};
    if (end < cursor.records.size()) {
      body["nextRecordsUrl"] = "/services/data/" + version + "/query/" + locator + "-" + std::to_string(end);
    }
    return Answer{200, std::move(body)};
  }

  Answer CollectionDelete(const std::string& ids_param, bool all_or_none) {
    std::vector<std::string> ids;
    std::size_t start = 0;
    while (!ids_param.empty() && start <= ids_param.size()) {
      const auto comma = ids_param.find(',', start);
      ids.push_back(ids_param.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (ids.empty()) return Answer{400, ErrorBody("MISSING_ARGUMENT", "ids parameter is required")};
    if (ids.size() > kMaxCollectionIds) {
      return Answer{400, ErrorBody("EXCEEDED_ID_LIMIT",
                                   "record limit reached. cannot submit more than 200 records into this call")};
    }
    json results = json::array();
    std::vector<std::string> deleted;
    bool any_failed = false;
    for (const auto& id : ids) {
      auto error = [&](const std::string& code, const std::string& message) {
        any_failed = true;
        results.push_back({{"id", IsId(id) ? json(id) : json(nullptr)},
                           {"success", false},
                           {"errors", json::array({{{"statusCode", code}, {"message", message}, {"fields", json::array()}}})}});
      };
      if (!IsId(id)) {
        error("MALFORMED_ID", "malformed id " + id);
        continue;
      }
      auto it = records.find(Key(id));
      if (it == records.end()) {
        error("NOT_FOUND", "The requested resource does not exist");
        continue;
      }
      if (it->second.deleted) {
        error("ENTITY_IS_DELETED", "entity is deleted");
        continue;
      }
      if (auto f = delete_failures.find(Key(id)); f != delete_failures.end()) {
        error(f->second.first, f->second.second);
        continue;
      }
      it->second.deleted = true;
      deleted.push_back(Key(id));
      results.push_back({{"id", it->second.fields["Id"]}, {"success", true}, {"errors", json::array()}});
    }
    if (all_or_none && any_failed) {
      for (const auto& id : deleted) records[id].deleted = false;
      for (auto& r : results) {
        if (r["success"].get<bool>()) {
          r["success"] = false;
          r["errors"] = json::array({{{"statusCode", "ALL_OR_NONE_OPERATION_ROLLED_BACK"},
                                      {"message", "Record rolled back because not all records were valid and the "
                                                  "request was using AllOrNone header"},
                                      {"fields", json::array()}}});
        }
      }
    }
    return Answer{200, std::move(results)};
  }

  // "@{ref.id}" in a string -> the id that subrequest created.
  static std::string Substitute(std::string text, const std::map<std::string, std::string>& created, bool& unknown) {
    std::size_t at = 0;
    while ((at = text.find("@{", at)) != std::string::npos) {
      const auto end = text.find('}', at);
      if (end == std::string::npos) break;
      const std::string ref = text.substr(at + 2, end - at - 2);
      const auto dot = ref.find('.');
      auto it = created.find(ref.substr(0, dot));
      if (dot == std::string::npos || ref.substr(dot + 1) != "id" || it == created.end()) {
        unknown = true;
        return text;
      }
      text.replace(at, end - at + 1, it->second);
      at += it->second.size();
    }
    return text;
  }

  Answer Composite(const std::string& version, const json& body) {
    if (!body.is_object() || !body.contains("compositeRequest") || !body["compositeRequest"].is_array()) {
      return Answer{400, ErrorBody("JSON_PARSER_ERROR", "compositeRequest is required")};
    }
    const json& subrequests = body["compositeRequest"];
    if (subrequests.size() > kMaxCompositeRequests) {
      return Answer{400, ErrorBody("LIMIT_EXCEEDED", "Max 25 subrequests are allowed in a composite request")};
    }
    const bool all_or_none = body.value("allOrNone", false);
    const auto snapshot = records;
    const auto orders = [&] {
      std::map<std::string, std::size_t> sizes;
      for (const auto& [name, t] : types) sizes[name] = t.order.size();
      return sizes;
    }();
    std::map<std::string, std::string> created;
    json responses = json::array();
    bool failed = false;
    const std::string prefix = "/services/data/" + version + "/sobjects/";
    for (const auto& sub : subrequests) {
      const std::string reference = sub.value("referenceId", "");
      if (failed && all_or_none) {
        responses.push_back({{"body", ErrorBody("PROCESSING_HALTED",
                                                "The transaction was rolled back since another operation in the same "
                                                "transaction failed.")},
                             {"httpHeaders", json::object()},
                             {"httpStatusCode", 400},
                             {"referenceId", reference}});
        continue;
      }
      bool unknown = false;
      const std::string url = Substitute(sub.value("url", ""), created, unknown);
      json sub_body = json::parse(Substitute(sub.contains("body") ? sub["body"].dump() : "null", created, unknown));
      const std::string method = sub.value("method", "");
      Answer answer{400, ErrorBody("INVALID_API_INPUT", "unsupported subrequest")};
      if (unknown) {
        answer = Answer{400, ErrorBody("INVALID_API_INPUT", "Invalid reference specified. No value for " + reference)};
      } else if (url.starts_with(prefix)) {
        const std::string rest = url.substr(prefix.size());
        const auto slash = rest.find('/');
        if (method == "POST" && slash == std::string::npos) {
          answer = Create(rest, sub_body);
          if (answer.status == 201) created[reference] = answer.body["id"];
        } else if (method == "PATCH" && slash != std::string::npos) {
          answer = Update(rest.substr(0, slash), rest.substr(slash + 1), sub_body);
        } else if (method == "GET" && slash != std::string::npos) {
          answer = Read(version, rest.substr(0, slash), rest.substr(slash + 1), "");
        }
      }
      if (answer.status >= 300) failed = true;
      responses.push_back({{"body", answer.body},
                           {"httpHeaders", json::object()},
                           {"httpStatusCode", answer.status},
                           {"referenceId", reference}});
    }
    if (failed && all_or_none) {
      records = snapshot;
      for (auto& [name, t] : types) t.order.resize(orders.count(name) ? orders.at(name) : 0);
      for (auto& r : responses) {
        if (r["httpStatusCode"].get<int>() < 300) {
          r["httpStatusCode"] = 400;
          r["body"] = ErrorBody("PROCESSING_HALTED",
                                "The transaction was rolled back since another operation in the same transaction "
                                "failed.");
        }
      }
    }
    return Answer{200, {{"compositeResponse", std::move(responses)}}};
  }

  // --- HTTP plumbing ---

  static void Send(httplib::Response& res, const Answer& answer) {
    res.status = answer.status;
    if (!answer.body.is_null()) res.set_content(answer.body.dump(), "application/json;charset=UTF-8");
  }

  void SleepIfAsked(std::unique_lock<std::mutex>& lock) {
    if (delay > 0ms) {
      const auto until = Clock::now() + delay;
      cv.wait_until(lock, until, [&] { return stopping; });
    }
  }

  bool TokenValid(const std::string& token) const {
    auto it = tokens.find(token);
    if (it == tokens.end() || it->second.revoked) return false;
    return !it->second.expires || Clock::now() < *it->second.expires;
  }

  // What every API route does first: the delay, injected faults, the session, the allowance, the count.
  bool Preamble(const httplib::Request& req, httplib::Response& res, std::unique_lock<std::mutex>& lock) {
    SleepIfAsked(lock);
    auto limit_header = [&] {
      res.set_header("Sforce-Limit-Info", "api-usage=" + std::to_string(api_used) + "/" + std::to_string(daily_limit));
    };
    if (fault.calls > 0 && req.path.starts_with(fault.prefix)) {
      --fault.calls;
      limit_header();
      if (fault.retry_after >= 0) res.set_header("Retry-After", std::to_string(fault.retry_after));
      switch (fault.status) {
        case 403: Send(res, {403, ErrorBody("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")}); break;
        case 429: Send(res, {429, ErrorBody("REQUEST_LIMIT_EXCEEDED", "Too many requests")}); break;
        case 500: Send(res, {500, ErrorBody("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-123456789)")}); break;
        default: Send(res, {fault.status, ErrorBody("SERVER_UNAVAILABLE", "Server temporarily unavailable; please retry.")});
      }
      return false;
    }
    std::string auth = req.get_header_value("Authorization");
    std::string token;
    if (auth.starts_with("Bearer ")) token = auth.substr(7);
    if (auth.starts_with("OAuth ")) token = auth.substr(6);
    if (!TokenValid(token)) {
      limit_header();
      Send(res, {401, ErrorBody("INVALID_SESSION_ID", "Session expired or invalid")});
      return false;
    }
    if (api_used >= daily_limit) {
      limit_header();
      Send(res, {403, ErrorBody("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")});
      return false;
    }
    ++api_used;
    limit_header();
    if (expire_after_calls && --*expire_after_calls <= 0) {
      expire_after_calls.reset();
      for (auto& [t, state] : tokens) state.revoked = true;
    }
    return true;
  }

  template <typename Handler>
  httplib::Server::Handler Api(Handler handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock lock(mu);
      if (!Preamble(req, res, lock)) return;
      Send(res, handler(req));
    };
  }

  std::string IdentityUrl() const {
    return base_url() + "/id/00DSm0000000001AAA/005Sm0000000001AAA";
  }

  void TokenRoute(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    SleepIfAsked(lock);
    ++token_requests;
    auto refuse = [&](const std::string& error, const std::string& description) {
      res.status = 400;
      res.set_content(json{{"error", error}, {"error_description", description}}.dump(), "application/json;charset=UTF-8");
    };
    const std::string grant = req.get_param_value("grant_type");
    json answer;
    if (grant == "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      const std::string assertion = req.get_param_value("assertion");
      const auto d1 = assertion.find('.');
      const auto d2 = d1 == std::string::npos ? std::string::npos : assertion.find('.', d1 + 1);
      if (d2 == std::string::npos) return refuse("invalid_grant", "invalid assertion");
      auto header = DecodeBase64Url(assertion.substr(0, d1));
      auto payload = DecodeBase64Url(assertion.substr(d1 + 1, d2 - d1 - 1));
      auto signature = DecodeBase64Url(assertion.substr(d2 + 1));
      if (!header || !payload || !signature) return refuse("invalid_grant", "invalid assertion");
      const json h = json::parse(*header, nullptr, false);
      const json c = json::parse(*payload, nullptr, false);
      if (!h.is_object() || !c.is_object()) return refuse("invalid_grant", "invalid assertion");
      claims.push_back(c);
      if (h.value("alg", "") != "RS256") return refuse("invalid_grant", "invalid assertion");
      if (!VerifyRs256(assertion.substr(0, d2), *signature)) return refuse("invalid_grant", "invalid assertion");
      if (c.value("iss", "") != options.consumer_key) return refuse("invalid_client_id", "client identifier invalid");
      const std::string audience = options.audience.empty() ? base_url() : options.audience;
      if (c.value("aud", "") != audience) return refuse("invalid_grant", "audience is invalid");
      if (!c.contains("exp") || !c["exp"].is_number_integer()) return refuse("invalid_grant", "invalid assertion");
      const auto now = std::chrono::system_clock::now();
      const auto exp = std::chrono::system_clock::time_point(std::chrono::seconds(c["exp"].get<long long>()));
      if (exp <= now - kClockSkew) return refuse("invalid_grant", "expired authorization code");
      if (exp > now + kMaxAssertionLifetime + kClockSkew) return refuse("invalid_grant", "invalid assertion");
      if (c.value("sub", "") != options.username || !options.user_approved) {
        return refuse("invalid_grant", "user hasn't approved this consumer");
      }
      answer = {{"access_token", Issue()},
                {"scope", "api"},
                {"instance_url", base_url()},
                {"id", IdentityUrl()},
                {"token_type", "Bearer"}};
    } else if (grant == "client_credentials") {
      if (req.get_param_value("client_id") != options.consumer_key) {
        return refuse("invalid_client_id", "client identifier invalid");
      }
      if (req.get_param_value("client_secret") != options.client_secret) {
        return refuse("invalid_client", "invalid client credentials");
      }
      answer = {{"access_token", Issue()},
                {"signature", RandomHex(16)},
                {"token_format", "opaque"},
                {"instance_url", base_url()},
                {"id", IdentityUrl()},
                {"token_type", "Bearer"},
                {"issued_at", std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count())}};
    } else {
      return refuse("unsupported_grant_type", "grant type not supported");
    }
    res.set_content(answer.dump(), "application/json;charset=UTF-8");
  }

  std::string Issue() {
    std::string token = "00DSm0000000001!AR" + RandomHex(24);
    Token t;
    if (options.token_lifetime) t.expires = Clock::now() + *options.token_lifetime;
    tokens[token] = t;
    ++tokens_issued;
    return token;
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port); }

  void Routes() {
    auto& svr = server.server();
    // A client's idle keep-alive connection holds a server thread, and Stop waits for it: keep that wait short.
    svr.set_keep_alive_timeout(1);
    svr.Post("/services/oauth2/token", [this](const auto& req, auto& res) { TokenRoute(req, res); });
    const std::string data = R"(/services/data/(v\d+\.\d))";
    svr.Get(data + "/query/?", Api([this](const httplib::Request& req) {
      std::optional<int> batch;
      const std::string options_header = req.get_header_value("Sforce-Query-Options");
      if (auto at = options_header.find("batchSize="); at != std::string::npos) {
        try {
          batch = std::stoi(options_header.substr(at + 10));
        } catch (const std::exception&) {
        }
      }
      if (!req.has_param("q")) return Answer{400, ErrorBody("MALFORMED_QUERY", "A query string has to be specified")};
      return RunQuery(req.matches[1], req.get_param_value("q"), batch);
    }));
    svr.Get(data + R"(/query/([0-9A-Za-z]+)-(\d+))", Api([this](const httplib::Request& req) {
      auto it = cursors.find(req.matches[2]);
      if (it == cursors.end()) {
        return Answer{400, ErrorBody("INVALID_QUERY_LOCATOR", "invalid query locator")};
      }
      return Page(req.matches[1], it->first, it->second, std::stoul(req.matches[3]));
    }));
    svr.Get(data + R"(/sobjects/(\w+)/(\w+))", Api([this](const httplib::Request& req) {
      return Read(req.matches[1], req.matches[2], req.matches[3], req.get_param_value("fields"));
    }));
    svr.Patch(data + R"(/sobjects/(\w+)/(\w+))", Api([this](const httplib::Request& req) {
      const json body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return Answer{400, ErrorBody("JSON_PARSER_ERROR", "The request body is not JSON.")};
      return Update(req.matches[2], req.matches[3], body);
    }));
    svr.Delete(data + R"(/sobjects/(\w+)/(\w+))", Api([this](const httplib::Request& req) {
      auto live = Live(req.matches[2], req.matches[3]);
      if (auto* answer = std::get_if<Answer>(&live)) return *answer;
      std::get<Stored*>(live)->deleted = true;
      return Answer{204, nullptr};
    }));
    svr.Post(data + R"(/sobjects/(\w+)/?)", Api([this](const httplib::Request& req) {
      const json body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return Answer{400, ErrorBody("JSON_PARSER_ERROR", "The request body is not JSON.")};
      return Create(req.matches[2], body);
    }));
    svr.Delete(data + "/composite/sobjects/?", Api([this](const httplib::Request& req) {
      return CollectionDelete(req.get_param_value("ids"), req.get_param_value("allOrNone") == "true");
    }));
    svr.Post(data + "/composite/?", Api([this](const httplib::Request& req) {
      const json body = json::parse(req.body, nullptr, false);
      if (body.is_discarded()) return Answer{400, ErrorBody("JSON_PARSER_ERROR", "The request body is not JSON.")};
      return Composite(req.matches[1], body);
    }));
  }
};

SalesforcePeer::SalesforcePeer(SalesforcePeerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->MakeKeys();
  impl_->DeclareStandardTypes();
  impl_->api_used = impl_->options.api_used;
  impl_->daily_limit = impl_->options.daily_limit;
  impl_->port = impl_->server.port();
  if (impl_->options.port != 0) {
    // As the OpenDSR peer does: the kernel-chosen socket stays open, unused, until the process ends.
    if (!impl_->server.server().bind_to_port("127.0.0.1", impl_->options.port)) {
      throw std::runtime_error("salesforce peer: cannot bind 127.0.0.1:" + std::to_string(impl_->options.port));
    }
    impl_->port = impl_->options.port;
  }
  impl_->Routes();
}

SalesforcePeer::~SalesforcePeer() { Stop(); }

void SalesforcePeer::Start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started) return;
    impl_->started = true;
    impl_->stopping = false;
  }
  impl_->server.Start();
}

void SalesforcePeer::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  impl_->server.Stop();
}

RecordingServer& SalesforcePeer::recorder() { return impl_->server; }
int SalesforcePeer::port() const { return impl_->port; }
std::string SalesforcePeer::base_url() const { return impl_->base_url(); }
const SalesforcePeerOptions& SalesforcePeer::options() const { return impl_->options; }
std::string SalesforcePeer::PrivateKeyPem() const { return impl_->private_key_pem; }
std::string SalesforcePeer::PublicKeyPem() const { return impl_->public_key_pem; }

void SalesforcePeer::WritePrivateKeyPem(const std::filesystem::path& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << impl_->private_key_pem;
  if (!out) throw std::runtime_error("salesforce peer: cannot write " + path.string());
}

void SalesforcePeer::DeclareType(const std::string& type, const std::vector<std::string>& fields) {
  std::lock_guard lock(impl_->mu);
  impl_->Declare(type, "", fields);
}

void SalesforcePeer::HideField(const std::string& type, const std::string& field) {
  std::lock_guard lock(impl_->mu);
  if (auto* t = impl_->FindType(type)) t->hidden.insert(Lower(field));
}

std::string SalesforcePeer::Insert(const std::string& type, nlohmann::json fields) {
  std::lock_guard lock(impl_->mu);
  if (!impl_->FindType(type)) impl_->Declare(type, "", {});
  return impl_->InsertLocked(*impl_->FindType(type), fields);
}

std::optional<nlohmann::json> SalesforcePeer::Record(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = IsId(id) ? impl_->records.find(Key(id)) : impl_->records.end();
  if (it == impl_->records.end() || it->second.deleted) return std::nullopt;
  return it->second.fields;
}

bool SalesforcePeer::InRecycleBin(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = IsId(id) ? impl_->records.find(Key(id)) : impl_->records.end();
  return it != impl_->records.end() && it->second.deleted;
}

std::vector<nlohmann::json> SalesforcePeer::Records(const std::string& type) const {
  std::lock_guard lock(impl_->mu);
  std::vector<nlohmann::json> out;
  auto it = impl_->types.find(Lower(type));
  if (it == impl_->types.end()) return out;
  for (const auto& id : it->second.order) {
    const Stored& s = impl_->records.at(id);
    if (!s.deleted) out.push_back(s.fields);
  }
  return out;
}

std::size_t SalesforcePeer::Count(const std::string& type) const { return Records(type).size(); }

void SalesforcePeer::FailNext(int calls, int status, int retry_after_seconds, std::string path_prefix) {
  std::lock_guard lock(impl_->mu);
  impl_->fault = Fault{calls, status, retry_after_seconds, std::move(path_prefix)};
}

void SalesforcePeer::FailRecordDelete(const std::string& id, std::string status_code, std::string message) {
  std::lock_guard lock(impl_->mu);
  if (status_code.empty()) {
    impl_->delete_failures.erase(Key(id));
  } else {
    impl_->delete_failures[Key(id)] = {std::move(status_code), std::move(message)};
  }
}

void SalesforcePeer::FailRecordWrite(const std::string& id, std::string error_code, std::string message) {
  std::lock_guard lock(impl_->mu);
  if (error_code.empty()) {
    impl_->write_failures.erase(Key(id));
  } else {
    impl_->write_failures[Key(id)] = {std::move(error_code), std::move(message)};
  }
}

void SalesforcePeer::SetDelay(std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->delay = delay;
}

void SalesforcePeer::ExpireTokens() {
  std::lock_guard lock(impl_->mu);
  for (auto& [token, state] : impl_->tokens) state.revoked = true;
}

void SalesforcePeer::ExpireTokensAfterCalls(int calls) {
  std::lock_guard lock(impl_->mu);
  impl_->expire_after_calls = calls;
}

void SalesforcePeer::SetApiUsage(long long used, long long max) {
  std::lock_guard lock(impl_->mu);
  impl_->api_used = used;
  impl_->daily_limit = max;
}

long long SalesforcePeer::ApiUsed() const {
  std::lock_guard lock(impl_->mu);
  return impl_->api_used;
}

int SalesforcePeer::TokenRequests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->token_requests;
}

int SalesforcePeer::TokensIssued() const {
  std::lock_guard lock(impl_->mu);
  return impl_->tokens_issued;
}

std::vector<std::string> SalesforcePeer::Queries() const {
  std::lock_guard lock(impl_->mu);
  return impl_->queries;
}

std::vector<nlohmann::json> SalesforcePeer::TokenClaims() const {
  std::lock_guard lock(impl_->mu);
  return impl_->claims;
}

}  // namespace rightsd::test
