#include "peers/hubspot/hubspot_peer.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

namespace rightsd::test {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string NewUuid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 36; ++i) {
    out += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : kHex[rng() % 16];
  }
  return out;
}

std::string NowIso() {
  const auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  return std::string(buf) + "." + std::to_string(1000 + ms).substr(1) + "Z";
}

struct StoredContact {
  json properties;
  bool archived = false;
  std::string created;
  std::string updated;
};

constexpr std::array<const char*, 6> kDefaultProperties = {"createdate", "email", "firstname", "hs_object_id",
                                                          "lastmodifieddate", "lastname"};

enum class Kind { kSearch, kOther };

}  // namespace

struct HubspotPeer::Impl {
  explicit Impl(HubspotPeerOptions o) : options(std::move(o)) {}

  HubspotPeerOptions options;
  RecordingServer server;
  int port = 0;

  mutable std::mutex mu;
  std::map<std::string, StoredContact> contacts;  // id -> contact
  long long next_id = 51234001;
  std::set<std::string> blocklist;                // lower-cased emails
  std::deque<Clock::time_point> window;           // arrivals counted in the burst window
  std::deque<Clock::time_point> search_window;
  HubspotRateStats stats;
  int fail_calls = 0;
  int fail_status = 500;
  json fail_body;
  std::chrono::milliseconds delay{0};

  // --- answers ---

  static void SendError(httplib::Response& res, int status, const std::string& message, const std::string& category,
                        json errors = nullptr) {
    json body = {{"status", "error"}, {"message", message}, {"correlationId", NewUuid()}, {"category", category}};
    if (!errors.is_null()) body["errors"] = std::move(errors);
    res.status = status;
    res.set_content(body.dump(), "application/json;charset=utf-8");
  }

  static void SendRateLimit(httplib::Response& res, const std::string& policy, const std::string& message) {
    res.status = 429;
    res.set_content(json{{"status", "error"},
                         {"message", message},
                         {"errorType", "RATE_LIMIT"},
                         {"correlationId", NewUuid()},
                         {"policyName", policy},
                         {"requestId", NewUuid()}}
                        .dump(),
                    "application/json;charset=utf-8");
  }

  // mu held.
  void SetRateHeaders(httplib::Response& res) const {
    res.set_header("X-HubSpot-RateLimit-Max", std::to_string(options.burst_max));
    res.set_header("X-HubSpot-RateLimit-Remaining",
                   std::to_string(std::max<long long>(0, options.burst_max - static_cast<long long>(window.size()))));
    res.set_header("X-HubSpot-RateLimit-Interval-Milliseconds", std::to_string(options.interval.count()));
    res.set_header("X-HubSpot-RateLimit-Daily", std::to_string(options.daily_max));
    res.set_header("X-HubSpot-RateLimit-Daily-Remaining",
                   std::to_string(std::max<long long>(0, options.daily_max - stats.daily_used)));
  }

  // Authentication, injected faults and the limits, in the order HubSpot applies them. False: answered already.
  bool Admit(Kind kind, const httplib::Request& req, httplib::Response& res) {
    std::chrono::milliseconds wait{0};
    {
      std::lock_guard lock(mu);
      if (req.get_header_value("Authorization") != "Bearer " + options.token) {
        SendError(res, 401,
                  "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
                  "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                  "INVALID_AUTHENTICATION");
        return false;
      }
      if (fail_calls > 0) {
        --fail_calls;
        res.status = fail_status;
        res.set_content(fail_body.dump(), "application/json;charset=utf-8");
        if (kind != Kind::kSearch) SetRateHeaders(res);
        return false;
      }
      const auto now = Clock::now();
      while (!window.empty() && window.front() <= now - options.interval) window.pop_front();
      while (!search_window.empty() && search_window.front() <= now - 1s) search_window.pop_front();
      if (stats.daily_used >= options.daily_max) {
        ++stats.refused_daily;
        SendRateLimit(res, "DAILY", "You have reached your daily limit.");
        SetRateHeaders(res);
        return false;
      }
      if (static_cast<int>(window.size()) >= options.burst_max) {
        ++stats.refused_burst;
        SendRateLimit(res, "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.");
        if (kind != Kind::kSearch) SetRateHeaders(res);
        return false;
      }
      if (kind == Kind::kSearch && static_cast<int>(search_window.size()) >= options.search_per_second) {
        ++stats.refused_secondly;
        SendRateLimit(res, "SECONDLY", "You have reached your secondly limit.");
        return false;
      }
      window.push_back(now);
      if (kind == Kind::kSearch) search_window.push_back(now);
      ++stats.accepted;
      ++stats.daily_used;
      stats.max_in_window = std::max(stats.max_in_window, static_cast<int>(window.size()));
      if (kind == Kind::kSearch) {
        stats.max_searches_in_second = std::max(stats.max_searches_in_second, static_cast<int>(search_window.size()));
      } else {
        SetRateHeaders(res);
      }
      wait = delay;
    }
    if (wait.count() > 0) std::this_thread::sleep_for(wait);
    return true;
  }

  template <typename F>
  httplib::Server::Handler Route(Kind kind, F handler) {
    return [this, kind, handler](const httplib::Request& req, httplib::Response& res) {
      if (!Admit(kind, req, res)) return;
      handler(req, res);
    };
  }

  // --- contacts (mu held) ---

  json View(const std::string& id, const StoredContact& c, const std::vector<std::string>& wanted) const {
    json properties = json::object();
    auto put = [&](const std::string& name) {
      properties[name] = c.properties.contains(name) ? c.properties[name] : json(nullptr);
    };
    if (wanted.empty()) {
      for (const char* name : kDefaultProperties) put(name);
    } else {
      for (const auto& name : wanted) put(name);
      for (const char* name : {"createdate", "hs_object_id", "lastmodifieddate"}) put(name);
    }
    return {{"id", id},
            {"properties", std::move(properties)},
            {"createdAt", c.created},
            {"updatedAt", c.updated},
            {"archived", c.archived}};
  }

  std::optional<std::string> FindByEmail(const std::string& email) const {
    for (const auto& [id, c] : contacts) {
      if (!c.archived && c.properties.contains("email") && c.properties["email"].is_string() &&
          Lower(c.properties["email"].get<std::string>()) == Lower(email)) {
        return id;
      }
    }
    return std::nullopt;
  }

  bool Matches(const StoredContact& c, const json& filter) const {
    const std::string name = filter.value("propertyName", "");
    if (!filter.contains("value") || !c.properties.contains(name) || !c.properties[name].is_string()) return false;
    const json& v = filter["value"];
    const std::string value = v.is_string() ? v.get<std::string>() : v.dump();
    const std::string held = c.properties[name].get<std::string>();
    return name == "email" ? Lower(held) == Lower(value) : held == value;
  }

  // --- routes ---

  void Search(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return SendError(res, 400, "Invalid input JSON on line 1", "VALIDATION_ERROR");
    const json groups = body.value("filterGroups", json::array());
    if (!groups.is_array() || groups.size() > 5) {
      return SendError(res, 400, "There was a problem with the request.", "VALIDATION_ERROR",
                       json::array({{{"message", "at most 5 filterGroups are allowed"}}}));
    }
    for (const auto& g : groups) {
      const json filters = g.value("filters", json::array());
      if (!filters.is_array() || filters.size() > 6) {
        return SendError(res, 400, "There was a problem with the request.", "VALIDATION_ERROR",
                         json::array({{{"message", "at most 6 filters per filterGroup are allowed"}}}));
      }
      for (const auto& f : filters) {
        if (f.value("operator", "") != "EQ") {
          return SendError(res, 400, "There was a problem with the request.", "VALIDATION_ERROR",
                           json::array({{{"message", "this simulator knows the EQ operator only"}}}));
        }
      }
    }
    const int limit = body.value("limit", 10);
    if (limit < 1 || limit > 200) {
      return SendError(res, 400, "There was a problem with the request.", "VALIDATION_ERROR",
                       json::array({{{"message", "limit must be between 1 and 200"}}}));
    }
    std::vector<std::string> wanted;
    for (const auto& p : body.value("properties", json::array())) {
      if (p.is_string()) wanted.push_back(p.get<std::string>());
    }
    std::size_t offset = 0;
    if (body.contains("after") && body["after"].is_string()) offset = std::stoul(body["after"].get<std::string>());

    std::lock_guard lock(mu);
    std::vector<std::string> hits;
    for (const auto& [id, c] : contacts) {
      if (c.archived) continue;
      bool any = groups.empty();
      for (const auto& g : groups) {
        bool all = true;
        for (const auto& f : g.value("filters", json::array())) all = all && Matches(c, f);
        any = any || all;
      }
      if (any) hits.push_back(id);
    }
    json results = json::array();
    for (std::size_t i = offset; i < hits.size() && i < offset + static_cast<std::size_t>(limit); ++i) {
      results.push_back(View(hits[i], contacts.at(hits[i]), wanted));
    }
    json answer = {{"total", hits.size()}, {"results", std::move(results)}};
    if (offset + limit < hits.size()) answer["paging"] = {{"next", {{"after", std::to_string(offset + limit)}}}};
    res.set_content(answer.dump(), "application/json;charset=utf-8");
  }

  void Read(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    std::vector<std::string> wanted;
    if (req.has_param("properties")) {
      std::string list = req.get_param_value("properties");
      std::size_t start = 0;
      while (start <= list.size()) {
        auto comma = list.find(',', start);
        if (comma == std::string::npos) comma = list.size();
        if (comma > start) wanted.push_back(list.substr(start, comma - start));
        start = comma + 1;
      }
    }
    const bool archived = req.get_param_value("archived") == "true";
    std::lock_guard lock(mu);
    auto it = contacts.find(id);
    if (it == contacts.end() || it->second.archived != archived) {
      return SendError(res, 404, "resource not found", "OBJECT_NOT_FOUND");
    }
    res.set_content(View(id, it->second, wanted).dump(), "application/json;charset=utf-8");
  }

  void Update(const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("properties") || !body["properties"].is_object()) {
      return SendError(res, 400, "Invalid input JSON on line 1", "VALIDATION_ERROR");
    }
    std::lock_guard lock(mu);
    auto it = contacts.find(id);
    if (it == contacts.end() || it->second.archived) {
      return SendError(res, 404, "resource not found", "OBJECT_NOT_FOUND");
    }
    json errors = json::array();
    for (const auto& [name, value] : body["properties"].items()) {
      if (std::find(options.defined_properties.begin(), options.defined_properties.end(), name) ==
          options.defined_properties.end()) {
        errors.push_back({{"isValid", false},
                          {"message", "Property \"" + name + "\" does not exist"},
                          {"error", "PROPERTY_DOESNT_EXIST"},
                          {"name", name}});
      }
    }
    if (!errors.empty()) {
      return SendError(res, 400, "Property values were not valid: " + errors.dump(), "VALIDATION_ERROR", errors);
    }
    if (body["properties"].contains("email") && body["properties"]["email"].is_string()) {
      const std::string email = body["properties"]["email"].get<std::string>();
      if (auto other = FindByEmail(email); other && *other != id) {
        // HubSpot names the existing contact, and with it the address, in the message.
        return SendError(res, 409, "Contact already exists. Existing ID: " + *other + " (" + email + ")", "CONFLICT");
      }
    }
    for (const auto& [name, value] : body["properties"].items()) {
      it->second.properties[name] = value.is_string() ? value : json(value.dump());
    }
    it->second.updated = NowIso();
    it->second.properties["lastmodifieddate"] = it->second.updated;
    std::vector<std::string> wanted;
    for (const auto& [name, value] : body["properties"].items()) wanted.push_back(name);
    res.set_content(View(id, it->second, wanted).dump(), "application/json;charset=utf-8");
  }

  void Archive(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    auto it = contacts.find(req.matches[1].str());
    if (it != contacts.end()) it->second.archived = true;
    res.status = 204;
  }

  void GdprDelete(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("objectId") || !body["objectId"].is_string()) {
      return SendError(res, 400, "Invalid input JSON on line 1", "VALIDATION_ERROR");
    }
    const std::string object_id = body["objectId"].get<std::string>();
    const std::string id_property = body.value("idProperty", "");
    std::lock_guard lock(mu);
    if (id_property == "email") {
      if (auto id = FindByEmail(object_id)) {
        contacts.erase(*id);
      } else {
        blocklist.insert(Lower(object_id));
      }
      res.status = 204;
      return;
    }
    if (!id_property.empty() && id_property != "hs_object_id") {
      return SendError(res, 400, "idProperty must be email or hs_object_id", "VALIDATION_ERROR");
    }
    if (contacts.erase(object_id) == 0) return SendError(res, 404, "resource not found", "OBJECT_NOT_FOUND");
    res.status = 204;
  }
};

HubspotPeer::HubspotPeer(HubspotPeerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->port = impl_->server.port();
  if (impl_->options.port != 0) {
    // As OpenDsrPeer: only the standalone program asks for a fixed port; the first socket stays open unused.
    if (!impl_->server.server().bind_to_port("127.0.0.1", impl_->options.port)) {
      throw std::runtime_error("hubspot peer: cannot bind 127.0.0.1:" + std::to_string(impl_->options.port));
    }
    impl_->port = impl_->options.port;
  }
  auto& svr = impl_->server.server();
  svr.new_task_queue = [] { return new httplib::ThreadPool(32); };
  // Idle connections stay open 5 s (1 s, as OpenDsrPeer keeps them, is shorter than the waits the rate limits
  // cause, so every wait would end on a stale connection). Stop is not slowed: clients close theirs first.
  svr.set_keep_alive_timeout(5);
  Impl* impl = impl_.get();
  svr.Post("/crm/v3/objects/contacts/search",
           impl->Route(Kind::kSearch, [impl](const auto& req, auto& res) { impl->Search(req, res); }));
  svr.Post("/crm/v3/objects/contacts/gdpr-delete",
           impl->Route(Kind::kOther, [impl](const auto& req, auto& res) { impl->GdprDelete(req, res); }));
  svr.Get(R"(/crm/v3/objects/contacts/(\d+))",
          impl->Route(Kind::kOther, [impl](const auto& req, auto& res) { impl->Read(req, res); }));
  svr.Patch(R"(/crm/v3/objects/contacts/(\d+))",
            impl->Route(Kind::kOther, [impl](const auto& req, auto& res) { impl->Update(req, res); }));
  svr.Delete(R"(/crm/v3/objects/contacts/(\d+))",
             impl->Route(Kind::kOther, [impl](const auto& req, auto& res) { impl->Archive(req, res); }));
}

HubspotPeer::~HubspotPeer() { Stop(); }

void HubspotPeer::Start() { impl_->server.Start(); }
void HubspotPeer::Stop() { impl_->server.Stop(); }
RecordingServer& HubspotPeer::recorder() { return impl_->server; }
int HubspotPeer::port() const { return impl_->port; }
std::string HubspotPeer::base_url() const { return "http://127.0.0.1:" + std::to_string(impl_->port); }
const HubspotPeerOptions& HubspotPeer::options() const { return impl_->options; }

std::string HubspotPeer::AddContact(nlohmann::json properties) {
  std::lock_guard lock(impl_->mu);
  const std::string id = std::to_string(impl_->next_id++);
  StoredContact c;
  c.created = c.updated = NowIso();
  c.properties = properties.is_object() ? std::move(properties) : json::object();
  c.properties["hs_object_id"] = id;
  c.properties["createdate"] = c.created;
  c.properties["lastmodifieddate"] = c.updated;
  impl_->contacts[id] = std::move(c);
  return id;
}

std::optional<nlohmann::json> HubspotPeer::Contact(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->contacts.find(id);
  if (it == impl_->contacts.end()) return std::nullopt;
  return it->second.properties;
}

bool HubspotPeer::Archived(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->contacts.find(id);
  return it != impl_->contacts.end() && it->second.archived;
}

std::size_t HubspotPeer::ContactCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->contacts.size();
}

bool HubspotPeer::Blocklisted(const std::string& email) const {
  std::lock_guard lock(impl_->mu);
  return impl_->blocklist.contains(Lower(email));
}

HubspotRateStats HubspotPeer::Stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

void HubspotPeer::SetDailyUsed(long long used) {
  std::lock_guard lock(impl_->mu);
  impl_->stats.daily_used = used;
}

void HubspotPeer::FailNext(int calls, int status, nlohmann::json body) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_calls = calls;
  impl_->fail_status = status;
  impl_->fail_body = std::move(body);
}

void HubspotPeer::SetDelay(std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->delay = delay;
}

}  // namespace rightsd::test
