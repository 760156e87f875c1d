#include "connectors/salesforce/settings.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "connectors/salesforce/soql.h"

namespace rightsd::connectors::salesforce {

namespace {

using nlohmann::json;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string String(const json& j, const char* key, std::string fallback = "") {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::move(fallback);
}

std::vector<std::string> Strings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (!j.contains(key) || !j[key].is_array()) return out;
  for (const auto& item : j[key]) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

template <typename T>
T Integer(const json& j, const char* key, T fallback) {
  return j.contains(key) && j[key].is_number_integer() ? static_cast<T>(j[key].get<long long>()) : fallback;
}

bool Bool(const json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

[[noreturn]] void Fail(const ConnectorEnv& env, const std::string& setting, const std::string& what) {
  throw ConnectorConfigError(fmt::format("system {}: settings/{}: {}", env.system, setting, what));
}

std::shared_ptr<EVP_PKEY> ReadPrivateKey(const ConnectorEnv& env, const std::string& path) {
  std::string pem = ReadCredential(env, "private_key_file", path);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  std::fill(pem.begin(), pem.end(), '\0');
  ERR_clear_error();
  if (!key) Fail(env, "private_key_file", "holds no PEM private key (an encrypted key is not supported)");
  std::shared_ptr<EVP_PKEY> out(key, EvpPkeyFree{});
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    Fail(env, "private_key_file", "is not an RSA key (Salesforce's JWT bearer flow signs with RS256)");
  }
  if (EVP_PKEY_get_bits(key) < 2048) Fail(env, "private_key_file", "the RSA key is shorter than 2048 bits");
  return out;
}

PrivacyAction ReadPrivacyAction(const json& settings, const char* key, std::vector<std::string> default_flags,
                                std::string default_name) {
  PrivacyAction out;
  out.individual_flags = std::move(default_flags);
  if (!settings.contains(key) || !settings[key].is_object()) {
    return out;
  }
  const json& j = settings[key];
  if (j.contains("individual_flags")) out.individual_flags = Strings(j, "individual_flags");
  if (j.contains("consent") && j["consent"].is_array()) {
    for (const auto& item : j["consent"]) {
      ConsentPurpose purpose;
      purpose.data_use_purpose_id = String(item, "data_use_purpose_id");
      purpose.contact_point_type = String(item, "contact_point_type", "Email");
      purpose.name = String(item, "name", default_name);
      out.consent.push_back(std::move(purpose));
    }
  }
  return out;
}

std::vector<Source> ParseSources(const json& value) {
  std::vector<Source> out;
  auto one = [&out](const std::string& text) {
    const auto dot = text.find('.');
    if (dot != std::string::npos) out.push_back({text.substr(0, dot), text.substr(dot + 1)});
  };
  if (value.is_string()) one(value.get<std::string>());
  if (value.is_array()) {
    for (const auto& item : value) {
      if (item.is_string()) one(item.get<std::string>());
    }
  }
  return out;
}

ObjectConfig ReadObject(const json& j) {
  ObjectConfig o;
  o.name = String(j, "name");
  o.email_fields = Strings(j, "email_fields");
  o.phone_fields = Strings(j, "phone_fields");
  o.match_id = Bool(j, "match_id", true);
  o.where = String(j, "where");
  o.individual_field = String(j, "individual_field");
  o.retain = Bool(j, "retain", false);
  if (j.contains("related") && j["related"].is_object()) {
    for (const auto& [field, sources] : j["related"].items()) o.related.emplace_back(field, ParseSources(sources));
  }
  if (j.contains("fields") && j["fields"].is_object()) {
    for (const auto& [category, fields] : j["fields"].items()) {
      std::vector<std::string> list;
      for (const auto& f : fields) {
        if (f.is_string()) list.push_back(f.get<std::string>());
      }
      o.categories.emplace_back(category, std::move(list));
    }
  }
  if (j.contains("correct") && j["correct"].is_object()) {
    for (const auto& [from, to] : j["correct"].items()) {
      if (to.is_string()) o.correct[from] = to.get<std::string>();
    }
  }
  return o;
}

// Every source must name an earlier object: objects are searched in order, and a source's values come from the
// records already found.
void CheckObjects(const ConnectorEnv& env, const std::vector<ObjectConfig>& objects) {
  std::set<std::string> seen;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    const ObjectConfig& o = objects[i];
    const std::string where = fmt::format("objects/{}", i);
    if (!IsApiName(o.name)) Fail(env, where + "/name", "is not an sObject API name");
    for (const auto& [field, sources] : o.related) {
      for (const auto& source : sources) {
        if (!seen.contains(Lower(source.object))) {
          Fail(env, where + "/related/" + field,
               fmt::format("'{}.{}' names no object listed before {}", source.object, source.field, o.name));
        }
      }
    }
    if (!seen.insert(Lower(o.name)).second) Fail(env, where + "/name", fmt::format("{} is listed twice", o.name));
  }
}

}  // namespace

bool ObjectConfig::IsIndividual() const { return Lower(name) == "individual"; }

std::vector<ObjectConfig> DefaultObjects(const std::vector<std::string>& categories) {
  const bool one = categories.size() == 1;
  const std::string identifiers = one ? categories.front() : "identifiers";
  const std::string service = one ? categories.front() : "commercial information";
  const std::string preferences = one ? categories.front() : "privacy preferences";

  ObjectConfig contact;
  contact.name = "Contact";
  contact.email_fields = {"Email"};
  contact.phone_fields = {"Phone", "MobilePhone", "HomePhone", "OtherPhone"};
  contact.individual_field = "IndividualId";
  contact.categories = {{identifiers,
                         {"Salutation", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "HomePhone",
                          "OtherPhone", "MailingStreet", "MailingCity", "MailingState", "MailingPostalCode",
                          "MailingCountry", "Birthdate", "Title"}}};
  contact.correct = {{"first_name", "FirstName"}, {"last_name", "LastName"}, {"email", "Email"},
                     {"phone", "Phone"},          {"mobile_phone", "MobilePhone"}, {"date_of_birth", "Birthdate"}};

  ObjectConfig lead;
  lead.name = "Lead";
  lead.email_fields = {"Email"};
  lead.phone_fields = {"Phone", "MobilePhone"};
  lead.individual_field = "IndividualId";
  lead.categories = {{identifiers,
                      {"Salutation", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "Company", "Title",
                       "Street", "City", "State", "PostalCode", "Country"}}};
  lead.correct = {{"first_name", "FirstName"}, {"last_name", "LastName"}, {"email", "Email"},
                  {"phone", "Phone"},          {"mobile_phone", "MobilePhone"}};

  ObjectConfig account;
  account.name = "Account";
  account.email_fields = {"PersonEmail"};
  account.phone_fields = {"Phone", "PersonMobilePhone", "PersonHomePhone", "PersonOtherPhone"};
  account.individual_field = "PersonIndividualId";
  account.where = "IsPersonAccount = true";
  account.categories = {{identifiers,
                         {"Salutation", "FirstName", "LastName", "PersonEmail", "Phone", "PersonMobilePhone",
                          "PersonHomePhone", "PersonMailingStreet", "PersonMailingCity", "PersonMailingState",
                          "PersonMailingPostalCode", "PersonMailingCountry", "PersonBirthdate"}}};
  account.correct = {{"first_name", "FirstName"},       {"last_name", "LastName"},
                     {"email", "PersonEmail"},          {"phone", "Phone"},
                     {"mobile_phone", "PersonMobilePhone"}, {"date_of_birth", "PersonBirthdate"}};

  ObjectConfig kase;
  kase.name = "Case";
  kase.email_fields = {"SuppliedEmail"};
  kase.phone_fields = {"SuppliedPhone"};
  kase.related = {{"ContactId", {{"Contact", "Id"}}}, {"AccountId", {{"Account", "Id"}}}};
  kase.categories = {{service,
                      {"CaseNumber", "Subject", "Description", "Status", "Origin", "SuppliedName", "SuppliedEmail",
                       "SuppliedPhone", "CreatedDate"}}};
  kase.correct = {{"email", "SuppliedEmail"}, {"phone", "SuppliedPhone"}};

  ObjectConfig individual;
  individual.name = "Individual";
  individual.related = {{"Id", {{"Contact", "IndividualId"}, {"Lead", "IndividualId"}, {"Account", "PersonIndividualId"}}}};
  individual.categories = {{identifiers, {"Salutation", "FirstName", "LastName", "BirthDate"}},
                           {preferences,
                            {"ShouldForget", "SendIndividualData", "CanStorePiiElsewhere", "HasOptedOutProcessing",
                             "HasOptedOutProfiling", "HasOptedOutSolicit", "HasOptedOutTracking",
                             "HasOptedOutGeoTracking"}}};
  individual.correct = {{"first_name", "FirstName"}, {"last_name", "LastName"}, {"date_of_birth", "BirthDate"}};

  return {contact, lead, account, kase, individual};
}

std::shared_ptr<const Settings> ReadSettings(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto s = std::make_shared<Settings>();
  s->system = env.system;
  s->http = env.http;
  if (!s->http) {
    throw ConnectorConfigError(fmt::format("system {}: the salesforce connector needs the shared http client",
                                           env.system));
  }
  s->login_url = String(settings, "login_url");
  while (!s->login_url.empty() && s->login_url.back() == '/') s->login_url.pop_back();
  if (s->login_url.empty()) Fail(env, "login_url", "required");
  s->token_url = s->login_url + "/services/oauth2/token";
  s->client_id = String(settings, "client_id");
  if (s->client_id.empty()) Fail(env, "client_id", "required");
  s->auth = String(settings, "auth", "jwt_bearer") == "client_credentials" ? AuthFlow::kClientCredentials
                                                                           : AuthFlow::kJwtBearer;
  if (s->auth == AuthFlow::kJwtBearer) {
    s->username = String(settings, "username");
    if (s->username.empty()) Fail(env, "username", "required with auth = jwt_bearer");
    const std::string key_file = String(settings, "private_key_file");
    if (key_file.empty()) Fail(env, "private_key_file", "required with auth = jwt_bearer");
    s->private_key = ReadPrivateKey(env, key_file);
    s->audience = String(settings, "audience", s->login_url);
    while (!s->audience.empty() && s->audience.back() == '/') s->audience.pop_back();
  } else {
    const std::string host = Lower(s->login_url.substr(s->login_url.find("://") + 3));
    if (host == "login.salesforce.com" || host == "test.salesforce.com") {
      Fail(env, "login_url", "the client credentials flow needs the org's My Domain URL, not " + host);
    }
    const std::string secret_file = String(settings, "client_secret_file");
    if (secret_file.empty()) Fail(env, "client_secret_file", "required with auth = client_credentials");
    s->client_secret = ReadCredential(env, "client_secret_file", secret_file);
    if (s->client_secret.empty()) Fail(env, "client_secret_file", "the file is empty");
  }
  s->api_version = String(settings, "api_version", "65.0");
  s->timeout = std::chrono::milliseconds(Integer<long long>(settings, "timeout_ms", 30000));
  if (settings.contains("query_batch_size")) s->query_batch_size = Integer<int>(settings, "query_batch_size", 2000);
  s->delete_batch_size = std::clamp(Integer<int>(settings, "delete_batch_size", 200), 1, 200);
  s->api_reserve_percent = std::clamp(Integer<int>(settings, "api_reserve_percent", 10), 0, 90);
  s->reserve_wait = std::chrono::seconds(Integer<long long>(settings, "reserve_wait_seconds", 3600));
  s->limit_exceeded_wait = std::chrono::seconds(Integer<long long>(settings, "limit_exceeded_wait_seconds", 3600));
  s->create_individual = Bool(settings, "create_individual", true);
  s->capture_source = String(settings, "capture_source", "rightsd");
  s->opt_out = ReadPrivacyAction(settings, "opt_out", {"HasOptedOutProfiling", "HasOptedOutSolicit"},
                                 "CCPA opt-out (rightsd)");
  s->limit = ReadPrivacyAction(settings, "limit", {"HasOptedOutProcessing"}, "CCPA limit (rightsd)");
  if (settings.contains("objects") && settings["objects"].is_array()) {
    for (const auto& item : settings["objects"]) s->objects.push_back(ReadObject(item));
  } else {
    s->objects = DefaultObjects(env.categories);
  }
  CheckObjects(env, s->objects);
  return s;
}

}  // namespace rightsd::connectors::salesforce
