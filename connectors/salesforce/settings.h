// The Salesforce connector's settings, read once at start-up from JSON already checked against
// schemas/connectors/salesforce.json, with the defaults filled in (the default objects are listed in settings.cpp
// and docs/connectors/salesforce.md). Immutable after ReadSettings; shared by every task.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::salesforce {

enum class AuthFlow { kJwtBearer, kClientCredentials };

// "Object.Field": the values `field` had in the records found for `object`.
struct Source {
  std::string object;
  std::string field;
};

struct ObjectConfig {
  std::string name;
  std::vector<std::string> email_fields;
  std::vector<std::string> phone_fields;
  bool match_id = true;
  std::vector<std::pair<std::string, std::vector<Source>>> related;  // reference field on this object -> sources
  std::string where;
  std::string individual_field;
  std::vector<std::pair<std::string, std::vector<std::string>>> categories;  // category -> fields, in config order
  std::map<std::string, std::string> correct;                              // correction field -> sObject field
  bool retain = false;

  bool IsIndividual() const;
};

struct ConsentPurpose {
  std::string data_use_purpose_id;
  std::string contact_point_type = "Email";
  std::string name;
};

struct PrivacyAction {
  std::vector<std::string> individual_flags;
  std::vector<ConsentPurpose> consent;
};

struct EvpPkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

struct Settings {
  std::string system;
  std::string login_url;  // no trailing slash
  std::string token_url;
  AuthFlow auth = AuthFlow::kJwtBearer;
  std::string client_id;
  std::string username;
  std::string audience;
  std::shared_ptr<EVP_PKEY> private_key;  // jwt_bearer
  std::string client_secret;              // client_credentials
  std::string api_version = "65.0";
  std::chrono::milliseconds timeout{30000};
  std::optional<int> query_batch_size;
  int delete_batch_size = 200;
  int api_reserve_percent = 10;
  std::chrono::seconds reserve_wait{3600};
  std::chrono::seconds limit_exceeded_wait{3600};
  bool create_individual = true;
  std::string capture_source = "rightsd";
  PrivacyAction opt_out;
  PrivacyAction limit;
  std::vector<ObjectConfig> objects;
  HttpClient* http = nullptr;

  std::string DataPath() const { return "/services/data/v" + api_version; }
};

// Throws ConnectorConfigError naming the setting for what the schema cannot express: a missing credential for the
// chosen flow, an unreadable or unusable key file, a related source that names no earlier object, client
// credentials against login.salesforce.com.
std::shared_ptr<const Settings> ReadSettings(const nlohmann::json& settings, const ConnectorEnv& env);

// The objects searched when the settings name none. `categories` is the system's data-map categories: with
// exactly one, every field is reported under it.
std::vector<ObjectConfig> DefaultObjects(const std::vector<std::string>& categories);

}  // namespace rightsd::connectors::salesforce
