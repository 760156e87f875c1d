#include "peers/mailchimp/mailchimp_peer.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

namespace rightsd::test {

namespace {

using nlohmann::json;

constexpr const char* kErrorType = "https://mailchimp.com/developer/marketing/docs/errors/";

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
  for (int i = 0; i < 36; ++i) out += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : kHex[rng() % 16];
  return out;
}

std::string NowIso() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

std::string DecodeBase64(const std::string& text) {
  std::string out((text.size() / 4) * 3 + 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return "";
  out.resize(static_cast<std::size_t>(n));
  std::size_t padding = 0;
  for (auto it = text.rbegin(); it != text.rend() && *it == '='; ++it) ++padding;
  out.resize(out.size() - std::min(padding, out.size()));
  return out;
}

}  // namespace

struct MailchimpPeer::Impl {
  explicit Impl(MailchimpPeerOptions o) : options(std::move(o)) {}

  MailchimpPeerOptions options;
  RecordingServer server;
  int port = 0;

  mutable std::mutex mu;
  std::map<std::string, std::map<std::string, json>> members;  // list -> hash -> member
  std::map<std::string, std::set<std::string>> forgotten;      // list -> hashes deleted for good
  int web_id = 100001;
  std::chrono::milliseconds delay{0};
  int fail_calls = 0;
  int fail_status = 500;
  std::string fail_title, fail_detail;
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> too_many{0};

  static void SendProblem(httplib::Response& res, int status, const std::string& title, const std::string& detail,
                          json errors = nullptr) {
    const std::string instance = NewUuid();
    json body = {{"type", kErrorType}, {"title", title}, {"status", status}, {"detail", detail}, {"instance", instance}};
    if (!errors.is_null()) body["errors"] = std::move(errors);
    res.status = status;
    res.set_header("X-Request-Id", instance);
    res.set_content(body.dump(), "application/problem+json; charset=utf-8");
  }

  static void NotFound(httplib::Response& res) {
    SendProblem(res, 404, "Resource Not Found", "The requested resource could not be found.");
  }

  bool Authorized(const httplib::Request& req) const {
    const std::string header = req.get_header_value("Authorization");
    if (!header.starts_with("Basic ")) return false;
    const std::string decoded = DecodeBase64(header.substr(6));
    const auto colon = decoded.find(':');
    return colon != std::string::npos && decoded.substr(colon + 1) == options.api_key;
  }

  template <typename F>
  httplib::Server::Handler Route(F handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      const int now = ++in_flight;
      int seen = max_in_flight.load();
      while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
      }
      struct Leave {
        std::atomic<int>& n;
        ~Leave() { --n; }
      } leave{in_flight};
      std::chrono::milliseconds wait;
      {
        std::lock_guard lock(mu);
        wait = delay;
      }
      if (wait.count() > 0) std::this_thread::sleep_for(wait);
      if (now > options.max_connections) {
        ++too_many;
        return SendProblem(res, 429, "Too Many Requests",
                           "You have exceeded the limit of " + std::to_string(options.max_connections) +
                               " simultaneous connections.");
      }
      if (!Authorized(req)) {
        return SendProblem(res, 401, "API Key Invalid",
                           "Your API key may be invalid, or you've attempted to access the wrong datacenter.");
      }
      {
        std::lock_guard lock(mu);
        if (fail_calls > 0) {
          --fail_calls;
          return SendProblem(res, fail_status, fail_title, fail_detail);
        }
      }
      handler(req, res);
    };
  }

  bool KnownList(const std::string& list) const {
    return std::find(options.audiences.begin(), options.audiences.end(), list) != options.audiences.end();
  }

  // mu held.
  json NewMember(const std::string& list, const std::string& email, const json& merge_fields,
                 const std::string& status) {
    json fields = json::object();
    for (const auto& tag : options.merge_tags) fields[tag] = "";
    if (merge_fields.is_object()) fields.update(merge_fields);
    const std::string hash = Hash(email);
    const std::string now = NowIso();
    return {{"id", hash},
            {"email_address", email},
            {"unique_email_id", NewUuid().substr(0, 10)},
            {"contact_id", NewUuid()},
            {"web_id", web_id++},
            {"email_type", "html"},
            {"status", status},
            {"merge_fields", std::move(fields)},
            {"stats", {{"avg_open_rate", 0.5}, {"avg_click_rate", 0.1}}},
            {"ip_signup", ""},
            {"timestamp_signup", now},
            {"ip_opt", "198.51.100.7"},
            {"timestamp_opt", now},
            {"member_rating", 2},
            {"last_changed", now},
            {"language", "en"},
            {"vip", false},
            {"location", {{"latitude", 37.77}, {"longitude", -122.41}, {"country_code", "US"}, {"timezone", "America/Los_Angeles"}}},
            {"source", "API - Generic"},
            {"tags_count", 0},
            {"tags", json::array()},
            {"list_id", list},
            {"_links", json::array({{{"rel", "self"}, {"href", "/lists/" + list + "/members/" + hash}, {"method", "GET"}}})}};
  }

  // --- routes ---

  void List(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1];
    if (!KnownList(list)) return NotFound(res);
    std::lock_guard lock(mu);
    res.set_content(json{{"id", list}, {"name", "Audience " + list}, {"stats", {{"member_count", members[list].size()}}}}.dump(),
                    "application/json; charset=utf-8");
  }

  void Add(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1];
    if (!KnownList(list)) return NotFound(res);
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("email_address") || !body["email_address"].is_string()) {
      return SendProblem(res, 400, "Invalid Resource", "The resource submitted could not be validated.",
                         json::array({{{"field", "email_address"}, {"message", "This value should not be blank."}}}));
    }
    const std::string email = body["email_address"].get<std::string>();
    const std::string hash = Hash(email);
    std::lock_guard lock(mu);
    if (forgotten[list].contains(hash)) {
      return SendProblem(res, 400, "Forgotten Email Not Subscribed",
                         email + " was permanently deleted and cannot be re-imported. The contact must re-subscribe to "
                                 "get back on the list.");
    }
    if (members[list].contains(hash)) {
      return SendProblem(res, 400, "Member Exists",
                         email + " is already a list member. Use PUT to insert or update list members.");
    }
    json member = NewMember(list, email, body.value("merge_fields", json::object()), body.value("status", "subscribed"));
    members[list][hash] = member;
    res.set_content(member.dump(), "application/json; charset=utf-8");
  }

  void Read(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1], hash = req.matches[2];
    std::lock_guard lock(mu);
    auto it = members[list].find(hash);
    if (!KnownList(list) || it == members[list].end()) return NotFound(res);
    res.set_content(it->second.dump(), "application/json; charset=utf-8");
  }

  void Update(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1], hash = req.matches[2];
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) {
      return SendProblem(res, 400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error.");
    }
    std::lock_guard lock(mu);
    auto& list_members = members[list];
    auto it = list_members.find(hash);
    if (!KnownList(list) || it == list_members.end()) return NotFound(res);
    json errors = json::array();
    if (body.contains("merge_fields")) {
      if (!body["merge_fields"].is_object()) {
        errors.push_back({{"field", "merge_fields"}, {"message", "Schema describes object, NULL found instead"}});
      } else {
        for (const auto& [tag, value] : body["merge_fields"].items()) {
          if (std::find(options.merge_tags.begin(), options.merge_tags.end(), tag) == options.merge_tags.end()) {
            errors.push_back({{"field", "merge_fields." + tag}, {"message", "This merge field does not exist."}});
          }
        }
      }
    }
    static const std::set<std::string> kStatuses = {"subscribed", "unsubscribed", "cleaned", "pending", "transactional"};
    if (body.contains("status") && (!body["status"].is_string() || !kStatuses.contains(body["status"].get<std::string>()))) {
      errors.push_back({{"field", "status"}, {"message", "Value is not one of enum values"}});
    }
    if (!errors.empty()) {
      return SendProblem(res, 400, "Invalid Resource",
                         "The resource submitted could not be validated. For field-specific details, see the 'errors' "
                         "array.",
                         errors);
    }
    json member = it->second;
    std::string new_hash = hash;
    if (body.contains("email_address") && body["email_address"].is_string()) {
      const std::string email = body["email_address"].get<std::string>();
      new_hash = Hash(email);
      if (new_hash != hash && list_members.contains(new_hash)) {
        return SendProblem(res, 400, "Member Exists",
                           email + " is already a list member. Use PUT to insert or update list members.");
      }
      member["email_address"] = email;
      member["id"] = new_hash;
    }
    if (body.contains("merge_fields")) member["merge_fields"].update(body["merge_fields"]);
    if (body.contains("status")) member["status"] = body["status"];
    member["last_changed"] = NowIso();
    list_members.erase(hash);
    list_members[new_hash] = member;
    res.set_content(member.dump(), "application/json; charset=utf-8");
  }

  void Archive(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1], hash = req.matches[2];
    std::lock_guard lock(mu);
    auto it = members[list].find(hash);
    if (!KnownList(list) || it == members[list].end()) return NotFound(res);
    it->second["status"] = "archived";
    res.status = 204;
  }

  void DeletePermanent(const httplib::Request& req, httplib::Response& res) {
    const std::string list = req.matches[1], hash = req.matches[2];
    std::lock_guard lock(mu);
    auto it = members[list].find(hash);
    if (!KnownList(list) || it == members[list].end()) return NotFound(res);
    members[list].erase(it);
    forgotten[list].insert(hash);
    res.status = 204;
  }
};

MailchimpPeer::MailchimpPeer(MailchimpPeerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->port = impl_->server.port();
  if (impl_->options.port != 0) {
    // As OpenDsrPeer: only the standalone program asks for a fixed port; the first socket stays open unused.
    if (!impl_->server.server().bind_to_port("127.0.0.1", impl_->options.port)) {
      throw std::runtime_error("mailchimp peer: cannot bind 127.0.0.1:" + std::to_string(impl_->options.port));
    }
    impl_->port = impl_->options.port;
  }
  auto& svr = impl_->server.server();
  // Enough threads that more calls than the cap can be open at once: a client that ignores the cap is seen to.
  svr.new_task_queue = [] { return new httplib::ThreadPool(64); };
  // Idle connections stay open 5 s (1 s, as OpenDsrPeer keeps them, is shorter than the waits the rate limits
  // cause, so every wait would end on a stale connection). Stop is not slowed: clients close theirs first.
  svr.set_keep_alive_timeout(5);
  Impl* impl = impl_.get();
  const std::string member = R"(/3.0/lists/([A-Za-z0-9]+)/members/([0-9a-f]{32}))";
  svr.Get(R"(/3.0/lists/([A-Za-z0-9]+))", impl->Route([impl](const auto& req, auto& res) { impl->List(req, res); }));
  svr.Post(R"(/3.0/lists/([A-Za-z0-9]+)/members)", impl->Route([impl](const auto& req, auto& res) { impl->Add(req, res); }));
  svr.Get(member, impl->Route([impl](const auto& req, auto& res) { impl->Read(req, res); }));
  svr.Patch(member, impl->Route([impl](const auto& req, auto& res) { impl->Update(req, res); }));
  svr.Delete(member, impl->Route([impl](const auto& req, auto& res) { impl->Archive(req, res); }));
  svr.Post(member + "/actions/delete-permanent",
           impl->Route([impl](const auto& req, auto& res) { impl->DeletePermanent(req, res); }));
}

MailchimpPeer::~MailchimpPeer() { Stop(); }

void MailchimpPeer::Start() { impl_->server.Start(); }
void MailchimpPeer::Stop() { impl_->server.Stop(); }
RecordingServer& MailchimpPeer::recorder() { return impl_->server; }
int MailchimpPeer::port() const { return impl_->port; }
std::string MailchimpPeer::base_url() const { return "http://127.0.0.1:" + std::to_string(impl_->port) + "/3.0"; }
const MailchimpPeerOptions& MailchimpPeer::options() const { return impl_->options; }

std::string MailchimpPeer::Hash(const std::string& email) {
  const std::string lowered = Lower(email);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(lowered.data(), lowered.size(), digest, &size, EVP_md5(), nullptr) != 1) {
    throw std::runtime_error("mailchimp peer: MD5 is not available");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string MailchimpPeer::AddMember(const std::string& list_id, const std::string& email, nlohmann::json merge_fields,
                                     const std::string& status) {
  std::lock_guard lock(impl_->mu);
  json member = impl_->NewMember(list_id, email, merge_fields, status);
  const std::string hash = member["id"];
  impl_->members[list_id][hash] = std::move(member);
  return hash;
}

std::optional<nlohmann::json> MailchimpPeer::Member(const std::string& list_id, const std::string& hash) const {
  std::lock_guard lock(impl_->mu);
  auto list = impl_->members.find(list_id);
  if (list == impl_->members.end()) return std::nullopt;
  auto it = list->second.find(hash);
  if (it == list->second.end()) return std::nullopt;
  return it->second;
}

bool MailchimpPeer::Forgotten(const std::string& list_id, const std::string& hash) const {
  std::lock_guard lock(impl_->mu);
  auto list = impl_->forgotten.find(list_id);
  return list != impl_->forgotten.end() && list->second.contains(hash);
}

int MailchimpPeer::MaxInFlight() const { return impl_->max_in_flight.load(); }
int MailchimpPeer::TooManyConnections() const { return impl_->too_many.load(); }

void MailchimpPeer::SetDelay(std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->delay = delay;
}

void MailchimpPeer::FailNext(int calls, int status, std::string title, std::string detail) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_calls = calls;
  impl_->fail_status = status;
  impl_->fail_title = std::move(title);
  impl_->fail_detail = std::move(detail);
}

}  // namespace rightsd::test
