#include "peers/sfmc/sfmc_peer.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>

namespace rightsd::test {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr long long kEid = 10650003;
constexpr long long kMid = 10650003;
constexpr const char* kDocumentation =
    "https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/error-handling.htm";

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string RandomHex(std::size_t n) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  std::uniform_int_distribution<int> hex(0, 15);
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out.push_back("0123456789abcdef"[hex(rng)]);
  return out;
}

std::string Guid() {
  std::string h = RandomHex(32);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-4" + h.substr(13, 3) + "-a" + h.substr(17, 3) + "-" + h.substr(20);
}

std::string Timestamp() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return buf;
}

// Envelope fields every contacts-API answer carries.
json Envelope(json body) {
  body["requestServiceMessageID"] = Guid();
  body["responseDateTime"] = Timestamp() + ".0000000-00:00";
  if (!body.contains("resultMessages")) body["resultMessages"] = json::array();
  body["serviceMessageID"] = Guid();
  return body;
}

json ResultMessage(const std::string& code, const std::string& message) {
  return {{"resultType", "Error"}, {"resultCode", code}, {"resultClass", "ValidationError"}, {"message", message}};
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json; charset=utf-8");
}

void SendRestError(httplib::Response& res, int status, const std::string& message, int errorcode) {
  SendJson(res, status, {{"message", message}, {"errorcode", errorcode}, {"documentation", kDocumentation}});
}

struct Operation {
  long long id = 0;
  std::vector<std::string> keys;
  std::chrono::steady_clock::time_point created;
  std::string created_text;
  std::string request_id;
  int polls = 0;
  int completed_polls = 0;
  int retry_count = 0;
  std::optional<std::string> forced;
  std::string last_status = "Queued";
  bool applied = false;
};

struct Contact {
  std::string key;
  std::string email;
  std::string created;
};

struct DataExtension {
  std::vector<std::string> primary_key;
  std::map<std::string, json> rows;  // by serialised primary key
};

struct Fault {
  int calls = 0;
  int status = 0;
  int retry_after = -1;
  int errorcode = 0;
  std::string prefix;
};

}  // namespace

struct SfmcPeer::Impl {
  explicit Impl(SfmcPeerOptions o) : options(std::move(o)) {}

  SfmcPeerOptions options;
  RecordingServer server;
  int port = 0;

  mutable std::mutex mu;
  std::map<std::string, std::chrono::steady_clock::time_point> tokens;  // access token -> expiry
  int token_requests = 0;
  int delete_submits = 0;
  long long next_operation = 1001;
  std::map<long long, Operation> operations;
  std::vector<Contact> contacts;
  std::map<std::string, DataExtension> data_extensions;
  std::map<std::string, std::string> config_settings;
  std::vector<Fault> faults;

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port); }

  // Injected faults first, then (for REST calls) the bearer token. mu held.
  bool Preamble(const httplib::Request& req, httplib::Response& res, bool rest) {
    for (auto& f : faults) {
      if (f.calls <= 0) continue;
      const bool matches = f.prefix.empty() ? rest : req.path.starts_with(f.prefix);
      if (!matches) continue;
      --f.calls;
      if (f.retry_after >= 0) res.set_header("Retry-After", std::to_string(f.retry_after));
      if (f.status == 429) {
        json body = {{"message", "Rate limit exceeded"}, {"errorcode", f.errorcode}};
        if (f.retry_after >= 0) body["retryAfter"] = f.retry_after;
        SendJson(res, 429, body);
      } else {
        SendRestError(res, f.status, f.status == 503 ? "Service Unavailable" : "An error occurred", 0);
      }
      return false;
    }
    if (!rest) return true;
    const std::string auth = req.get_header_value("Authorization");
    const std::string token = auth.starts_with("Bearer ") ? auth.substr(7) : "";
    auto it = tokens.find(token);
    if (token.empty() || it == tokens.end() || std::chrono::steady_clock::now() >= it->second) {
      SendJson(res, 401, {{"documentation", kDocumentation}, {"errorcode", 0}, {"message", "Not Authorized"}});
      return false;
    }
    return true;
  }

  template <typename Handler>
  httplib::Server::Handler Route(bool rest, Handler handler) {
    return [this, rest, handler](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      if (!Preamble(req, res, rest)) return;
      handler(req, res);
    };
  }

  // --- routes (mu held) ---

  void Token(const httplib::Request& req, httplib::Response& res) {
    ++token_requests;
    json body = json::parse(req.body, nullptr, false);
    auto oauth_error = [&](int status, const std::string& error, const std::string& description) {
      SendJson(res, status, {{"error", error}, {"error_description", description}, {"error_uri", kDocumentation}});
    };
    if (!body.is_object()) return oauth_error(400, "invalid_request", "The request body must be a JSON object.");
    if (body.value("grant_type", "") != "client_credentials") {
      return oauth_error(400, "unsupported_grant_type", "Use \"grant_type\" : \"client_credentials\".");
    }
    if (body.value("client_id", "") != options.client_id || body.value("client_secret", "") != options.client_secret) {
      return oauth_error(401, "invalid_client",
                         "Client authentication failed. Make sure that the client ID and client secret are valid.");
    }
    if (body.contains("account_id")) {
      const std::string account = body["account_id"].is_string() ? body["account_id"].get<std::string>()
                                                                 : body["account_id"].dump();
      if (!options.account_id.empty() && account != options.account_id) {
        return oauth_error(401, "invalid_client", "The client does not have access to the requested account.");
      }
    }
    const std::string token = RandomHex(48);
    tokens[token] = std::chrono::steady_clock::now() + options.token_lifetime;
    SendJson(res, 200,
             {{"access_token", token},
              {"token_type", "Bearer"},
              {"expires_in", options.token_lifetime.count()},
              {"scope", body.value("scope", "list_and_subscribers_read list_and_subscribers_write data_extensions_read "
                                            "data_extensions_write")},
              {"soap_instance_url", base_url() + "/soap/"},
              {"rest_instance_url", base_url() + "/"}});
  }

  void EmailSearch(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("channelAddressList") || !body["channelAddressList"].is_array() ||
        body["channelAddressList"].empty()) {
      return SendJson(res, 400,
                      Envelope({{"hasErrors", true},
                                {"resultMessages",
                                 json::array({ResultMessage("InvalidRequest", "channelAddressList is required")})}}));
    }
    int maximum = 1;
    if (body.contains("maximumCount") && body["maximumCount"].is_number_integer()) {
      maximum = std::max(1, body["maximumCount"].get<int>());
    }
    json entities = json::array();
    for (const auto& address : body["channelAddressList"]) {
      if (!address.is_string()) continue;
      json details = json::array();
      for (const auto& c : contacts) {
        if (static_cast<int>(details.size()) >= maximum) break;
        if (Lower(c.email) == Lower(address.get<std::string>())) {
          details.push_back({{"contactKey", c.key}, {"createDate", c.created}});
        }
      }
      // "If there aren't any contact key matches ... the array contains an empty object."
      if (details.empty()) details.push_back(json::object());
      entities.push_back({{"channelAddress", address}, {"contactKeyDetails", std::move(details)}});
    }
    SendJson(res, 200, Envelope({{"channelAddressResponseEntities", std::move(entities)}}));
  }

  void SubmitDelete(const httplib::Request& req, httplib::Response& res) {
    ++delete_submits;
    auto refuse = [&](const std::string& code, const std::string& message) {
      SendJson(res, 400, Envelope({{"operationInitiated", false},
                                   {"hasErrors", true},
                                   {"resultMessages", json::array({ResultMessage(code, message)})}}));
    };
    const std::string type = req.get_param_value("type");
    if (type != "keys") return refuse("InvalidType", "This simulator deletes by type=keys only.");
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return refuse("InvalidRequest", "The request body must be a JSON object.");
    const json* values = nullptr;
    for (const char* name : {"values", "Values"}) {
      if (body.contains(name)) values = &body[name];
    }
    if (!values || !values->is_array() || values->empty() || values->size() > 1000000) {
      return refuse("InvalidValues", "values must hold between 1 and 1,000,000 contact keys.");
    }
    if (body.value("DeleteOperationType", "") != "ContactAndAttributes") {
      return refuse("InvalidDeleteOperationType", "DeleteOperationType must be ContactAndAttributes.");
    }
    Operation op;
    for (const auto& v : *values) {
      if (!v.is_string() || v.get<std::string>().empty())
        return refuse("InvalidValues", "Contact keys must be strings.");
      op.keys.push_back(v.get<std::string>());
    }
    op.id = next_operation++;
    op.created = std::chrono::steady_clock::now();
    op.created_text = Timestamp();
    op.request_id = Guid();
    const long long id = op.id;
    operations[id] = std::move(op);
    SendJson(res, 200, Envelope({{"operationInitiated", true}, {"operationID", id}, {"hasErrors", false}}));
  }

  std::string NextStatus(Operation& op) {
    if (op.forced) return *op.forced;
    if (options.queued_for && options.in_process_for) {
      const auto elapsed = std::chrono::steady_clock::now() - op.created;
      if (elapsed < *options.queued_for) return "Queued";
      if (elapsed < *options.queued_for + *options.in_process_for) return "InProcess";
      return "Completed";
    }
    if (op.polls <= options.queued_polls) return "Queued";
    if (op.polls <= options.queued_polls + options.in_process_polls) return "InProcess";
    return "Completed";
  }

  void Status(const httplib::Request& req, httplib::Response& res) {
    long long id = 0;
    try {
      id = std::stoll(req.get_param_value("operationID"));
    } catch (const std::exception&) {
      return SendRestError(res, 400, "operationID must be an integer", 10001);
    }
    auto it = operations.find(id);
    if (it == operations.end()) return SendRestError(res, 404, "Operation not found", 10002);
    Operation& op = it->second;
    ++op.polls;
    const std::string status = NextStatus(op);
    op.last_status = status;
    json operation = {{"contextType", 0},
                      {"isRestrictedForProcessing", false},
                      {"listTypeID", 5},
                      {"listIdentifier", op.request_id},
                      {"listKey", op.request_id},
                      {"expectedListCount", op.keys.size()},
                      {"deleteType", "ContactAndAttributes"},
                      {"deleteListOnCompleted", false},
                      {"errorsOccurredInBatchProcess", status == "CompletedWithErrors"},
                      {"operationID", op.id},
                      {"eID", kEid},
                      {"mID", kMid},
                      {"employeeID", -1000},
                      {"requestID", op.request_id},
                      {"status", status},
                      {"scheduledDate", op.created_text},
                      {"retryCount", op.retry_count},
                      {"createdDate", op.created_text},
                      {"modifiedDate", Timestamp()}};
    json body = {{"operationMappings", json::array()}, {"operation", std::move(operation)}};
    int restore_days = 14;
    if (auto s = config_settings.find("SuppressionRestoreUntilDays"); s != config_settings.end()) {
      try {
        restore_days = std::max(0, std::stoi(s->second));
      } catch (const std::exception&) {
      }
    }
    body["numberofRestorableDays"] = restore_days;
    if (status == "Completed" && options.delete_phase_summary) {
      ++op.completed_polls;
      const bool deleted = op.completed_polls > options.delete_phase_polls;
      body["backgroundOperationsSummary"] = json::array(
          {{{"backgroundOperationID", op.id}, {"createdDate", op.created_text},
            {"backgroundOperationStatusID", deleted ? "Completed" : "Processing"}}});
      if (deleted && !op.applied) Apply(op);
    } else if (status == "Completed" && !op.applied) {
      Apply(op);
    }
    SendJson(res, 200, Envelope(std::move(body)));
  }

  void Apply(Operation& op) {
    op.applied = true;
    std::erase_if(contacts, [&](const Contact& c) {
      return std::find(op.keys.begin(), op.keys.end(), c.key) != op.keys.end();
    });
  }

  void Retry(const httplib::Request& req, httplib::Response& res) {
    long long id = 0;
    try {
      id = std::stoll(req.matches[1].str());
    } catch (const std::exception&) {
      return SendRestError(res, 400, "operationID must be an integer", 10001);
    }
    auto it = operations.find(id);
    if (it == operations.end()) return SendRestError(res, 404, "Operation not found", 10002);
    Operation& op = it->second;
    if (op.last_status != "Failed" && op.last_status != "CompletedWithErrors") {
      return SendJson(
          res, 400,
          Envelope({{"operationID", id},
                    {"operationRestarted", false},
                    {"hasErrors", true},
                    {"resultMessages", json::array({ResultMessage("InvalidOperationState",
                                                                  "Only failed operations can be retried.")})}}));
    }
    op.forced.reset();
    op.polls = 0;
    op.completed_polls = 0;
    ++op.retry_count;
    op.created = std::chrono::steady_clock::now();
    op.last_status = "Queued";
    SendJson(res, 200, Envelope({{"operationID", id}, {"operationRestarted", true}}));
  }

  void ConfigSettings(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      return SendRestError(res, 400, "items is required", 10001);
    }
    for (const auto& item : body["items"]) {
      if (!item.is_object() || !item.contains("settingKey") || !item["settingKey"].is_string() ||
          !item.contains("value") || !item["value"].is_string()) {
        return SendRestError(res, 400, "each item needs settingKey and value", 10001);
      }
      config_settings[item["settingKey"].get<std::string>()] = item["value"].get<std::string>();
    }
    SendJson(res, 200, Envelope({{"items", body["items"]}}));
  }

  void Rowset(const httplib::Request& req, httplib::Response& res) {
    const std::string key = req.matches[1].str();
    auto it = data_extensions.find(key);
    if (it == data_extensions.end()) {
      return SendRestError(res, 404, "Unable to find a data extension with the given external key", 10000);
    }
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_array() || body.empty()) return SendRestError(res, 400, "The body must be an array of rows", 10000);
    DataExtension& de = it->second;
    std::vector<std::pair<std::string, json>> upserts;
    for (const auto& row : body) {
      if (!row.is_object() || !row.contains("keys") || !row["keys"].is_object()) {
        return SendRestError(res, 400, "Each row needs a keys object", 10000);
      }
      json primary = json::object();
      for (const auto& field : de.primary_key) {
        if (!row["keys"].contains(field)) {
          return SendRestError(res, 400, "Primary key column '" + field + "' is missing from keys", 10006);
        }
        primary[field] = row["keys"][field];
      }
      json merged = row["keys"];
      if (row.contains("values")) {
        if (!row["values"].is_object()) return SendRestError(res, 400, "values must be an object", 10000);
        merged.update(row["values"]);
      }
      upserts.emplace_back(primary.dump(), std::move(merged));
    }
    for (auto& [k, merged] : upserts) {
      auto& stored = de.rows[k];
      if (stored.is_null()) stored = json::object();
      stored.update(merged);
    }
    SendJson(res, 200, body);
  }
};

SfmcPeer::SfmcPeer(SfmcPeerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->port = impl_->server.port();
  if (impl_->options.port != 0) {
    // As the OpenDSR peer does: the first socket stays open, unused, until the process ends.
    if (!impl_->server.server().bind_to_port("127.0.0.1", impl_->options.port)) {
      throw std::runtime_error("sfmc peer: cannot bind 127.0.0.1:" + std::to_string(impl_->options.port));
    }
    impl_->port = impl_->options.port;
  }
  auto& svr = impl_->server.server();
  svr.set_keep_alive_timeout(impl_->options.keep_alive_seconds);
  Impl* impl = impl_.get();
  svr.Post("/v2/token", impl->Route(false, [impl](const auto& req, auto& res) { impl->Token(req, res); }));
  svr.Post("/contacts/v1/addresses/email/search",
           impl->Route(true, [impl](const auto& req, auto& res) { impl->EmailSearch(req, res); }));
  svr.Post("/contacts/v1/contacts/actions/delete",
           impl->Route(true, [impl](const auto& req, auto& res) { impl->SubmitDelete(req, res); }));
  svr.Get("/contacts/v1/contacts/actions/delete/status",
          impl->Route(true, [impl](const auto& req, auto& res) { impl->Status(req, res); }));
  svr.Post("/contacts/v1/contacts/actions/delete/configSettings",
           impl->Route(true, [impl](const auto& req, auto& res) { impl->ConfigSettings(req, res); }));
  svr.Post(R"(/contacts/v1/operations/delete/([^/]+)/retry)",
           impl->Route(true, [impl](const auto& req, auto& res) { impl->Retry(req, res); }));
  svr.Post(R"(/hub/v1/dataevents/key:([^/]+)/rowset)",
           impl->Route(true, [impl](const auto& req, auto& res) { impl->Rowset(req, res); }));
}

SfmcPeer::~SfmcPeer() { Stop(); }

void SfmcPeer::Start() { impl_->server.Start(); }
void SfmcPeer::Stop() { impl_->server.Stop(); }
RecordingServer& SfmcPeer::recorder() { return impl_->server; }
int SfmcPeer::port() const { return impl_->port; }
std::string SfmcPeer::base_url() const { return impl_->base_url(); }
const SfmcPeerOptions& SfmcPeer::options() const { return impl_->options; }

void SfmcPeer::WriteClientSecret(const std::filesystem::path& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << impl_->options.client_secret << "\n";
  if (!out) throw std::runtime_error("sfmc peer: cannot write " + path.string());
}

void SfmcPeer::SeedContact(const std::string& contact_key, const std::string& email) {
  std::lock_guard lock(impl_->mu);
  impl_->contacts.push_back(Contact{contact_key, email, Timestamp()});
}

bool SfmcPeer::HasContact(const std::string& contact_key) const {
  std::lock_guard lock(impl_->mu);
  return std::any_of(impl_->contacts.begin(), impl_->contacts.end(),
                     [&](const Contact& c) { return c.key == contact_key; });
}

std::size_t SfmcPeer::ContactCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->contacts.size();
}

void SfmcPeer::AddDataExtension(const std::string& external_key, std::vector<std::string> primary_key_fields) {
  std::lock_guard lock(impl_->mu);
  impl_->data_extensions[external_key].primary_key = std::move(primary_key_fields);
}

std::vector<nlohmann::json> SfmcPeer::Rows(const std::string& external_key) const {
  std::lock_guard lock(impl_->mu);
  std::vector<json> out;
  auto it = impl_->data_extensions.find(external_key);
  if (it == impl_->data_extensions.end()) return out;
  for (const auto& [k, row] : it->second.rows) out.push_back(row);
  return out;
}

void SfmcPeer::RateLimitNext(int calls, int retry_after_seconds, std::string path_prefix, int errorcode) {
  std::lock_guard lock(impl_->mu);
  impl_->faults.push_back(Fault{calls, 429, retry_after_seconds, errorcode, std::move(path_prefix)});
}

void SfmcPeer::FailNext(int calls, int status, std::string path_prefix) {
  std::lock_guard lock(impl_->mu);
  impl_->faults.push_back(Fault{calls, status, -1, 0, std::move(path_prefix)});
}

void SfmcPeer::ExpireTokens() {
  std::lock_guard lock(impl_->mu);
  impl_->tokens.clear();
}

int SfmcPeer::TokenRequests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->token_requests;
}

int SfmcPeer::DeleteSubmits() const {
  std::lock_guard lock(impl_->mu);
  return impl_->delete_submits;
}

std::vector<long long> SfmcPeer::OperationIds() const {
  std::lock_guard lock(impl_->mu);
  std::vector<long long> out;
  for (const auto& [id, op] : impl_->operations) out.push_back(id);
  return out;
}

std::optional<std::string> SfmcPeer::StatusOf(long long operation_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->operations.find(operation_id);
  if (it == impl_->operations.end()) return std::nullopt;
  return it->second.last_status;
}

int SfmcPeer::PollsOf(long long operation_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->operations.find(operation_id);
  return it == impl_->operations.end() ? 0 : it->second.polls;
}

std::vector<std::string> SfmcPeer::KeysOf(long long operation_id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->operations.find(operation_id);
  return it == impl_->operations.end() ? std::vector<std::string>{} : it->second.keys;
}

void SfmcPeer::ForceStatus(long long operation_id, const std::string& status) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->operations.find(operation_id);
  if (it != impl_->operations.end()) it->second.forced = status;
}

void SfmcPeer::ForgetOperation(long long operation_id) {
  std::lock_guard lock(impl_->mu);
  impl_->operations.erase(operation_id);
}

std::optional<std::string> SfmcPeer::ConfigSetting(const std::string& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->config_settings.find(key);
  if (it == impl_->config_settings.end()) return std::nullopt;
  return it->second;
}

}  // namespace rightsd::test
