#include "peers/opendsr/opendsr_peer.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <stdexcept>
#include <thread>

namespace rightsd::test {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::string_view kApiVersion = "2.0";
constexpr std::string_view kControllerId = "rightsd-test-controller";

[[noreturn]] void OpenSslFailure(const char* what) {
  ERR_clear_error();
  throw std::runtime_error(std::string("opendsr peer: ") + what);
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string HexDigest(const char* algorithm, std::string_view data) {
  const EVP_MD* md = EVP_get_digestbyname(algorithm);
  if (!md) return "";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, md, nullptr) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < size; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string Rfc3339(std::chrono::system_clock::time_point at) {
  std::time_t t = std::chrono::system_clock::to_time_t(at);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The spec's error object (sec. 7.6). Messages name fields, never values: "MUST NOT contain sensitive information
// related to user identity".
std::string ErrorBody(int code, const std::string& message, const std::string& reason = "Validation") {
  return json{{"error",
               {{"code", code},
                {"message", message},
                {"errors", json::array({{{"domain", "Validation"}, {"reason", reason}, {"message", message}}})}}}}
      .dump();
}

struct Record {
  std::string identity_type;
  std::string identity_value;
  std::string category;
  json data;
  bool erased = false;
};

struct StoredRequest {
  json body;
  std::string type;
  std::string status = "pending";
  int polls = 0;
  std::chrono::steady_clock::time_point created;
  std::string received_time;
  std::string expected_completion_time;
  std::vector<std::string> callback_urls;
  json results = json::object();  // access/portability: what completion found
};

struct PendingCallback {
  std::string url;
  std::string body;
  std::string request_status;
};

}  // namespace

struct OpenDsrPeer::Impl {
  explicit Impl(OpenDsrPeerOptions o) : options(std::move(o)) {}

  OpenDsrPeerOptions options;
  RecordingServer server;
  int port = 0;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{nullptr, EVP_PKEY_free};
  std::string public_key_pem;
  std::string certificate_pem;

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // callbacks sent, work queued, stop
  bool stopping = false;
  bool started = false;
  std::map<std::string, StoredRequest> requests;
  std::set<std::string> ever_created;
  std::map<std::string, int> creations;
  int submits = 0;
  std::vector<Record> records;
  int fail_calls = 0;
  int fail_status = 503;
  int fail_retry_after = 1;
  std::optional<std::pair<int, std::string>> reject_submit;
  std::chrono::milliseconds delay{0};
  std::string callback_target;
  std::deque<PendingCallback> outbox;
  std::vector<SentCallback> sent;
  std::thread worker;

  // --- keys ---

  void MakeKeys() {
    key.reset(EVP_RSA_gen(2048));
    if (!key) OpenSslFailure("cannot generate an RSA key");

    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) OpenSslFailure("cannot write the public key");
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    public_key_pem.assign(data, static_cast<std::size_t>(len));

    std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
    if (!cert) OpenSslFailure("cannot make a certificate");
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 365L * 24 * 3600);
    X509_set_pubkey(cert.get(), key.get());
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(options.processor_domain.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    const std::string san = "DNS:" + options.processor_domain;
    std::unique_ptr<X509_EXTENSION, decltype(&X509_EXTENSION_free)> ext(
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, san.c_str()), X509_EXTENSION_free);
    if (!ext || X509_add_ext(cert.get(), ext.get(), -1) != 1) OpenSslFailure("cannot add subjectAltName");
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) OpenSslFailure("cannot sign the certificate");
    std::unique_ptr<BIO, decltype(&BIO_free)> cbio(BIO_new(BIO_s_mem()), BIO_free);
    if (!cbio || PEM_write_bio_X509(cbio.get(), cert.get()) != 1) OpenSslFailure("cannot write the certificate");
    len = BIO_get_mem_data(cbio.get(), &data);
    certificate_pem.assign(data, static_cast<std::size_t>(len));
  }

  std::string Sign(std::string_view body) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::size_t size = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &size, reinterpret_cast<const unsigned char*>(body.data()), body.size()) !=
            1) {
      OpenSslFailure("cannot sign");
    }
    std::string signature(size, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                       reinterpret_cast<const unsigned char*>(body.data()), body.size()) != 1) {
      OpenSslFailure("cannot sign");
    }
    signature.resize(size);
    return Base64(signature);
  }

  // --- HTTP plumbing ---

  void SendSigned(httplib::Response& res, int status, const json& body) const {
    const std::string text = body.dump();
    res.status = status;
    res.set_header("X-OpenDSR-Processor-Domain", options.processor_domain);
    res.set_header("X-OpenDSR-Signature", Sign(text));
    res.set_content(text, "application/json");
  }

  static void SendError(httplib::Response& res, int status, const std::string& message,
                        const std::string& reason = "Validation") {
    res.status = status;
    res.set_header("Cache-Control", "no-store");
    res.set_content(ErrorBody(status, message, reason), "application/json;charset=UTF-8");
  }

  // What every API route does first: the configured delay, injected faults, then authentication.
  bool Preamble(const httplib::Request& req, httplib::Response& res, bool authenticate) {
    std::unique_lock lock(mu);
    if (delay > 0ms) {
      const auto until = std::chrono::steady_clock::now() + delay;
      cv.wait_until(lock, until, [&] { return stopping; });
    }
    if (fail_calls > 0) {
      --fail_calls;
      if (fail_retry_after >= 0) res.set_header("Retry-After", std::to_string(fail_retry_after));
      SendError(res, fail_status,
                fail_status == 429 ? "Too many requests have been submitted." : "The service is unavailable.",
                fail_status == 429 ? "RateLimited" : "Unavailable");
      return false;
    }
    if (authenticate && !options.bearer_token.empty() &&
        req.get_header_value("Authorization") != "Bearer " + options.bearer_token) {
      SendError(res, 401, "The credentials provided in the request are not valid.", "Unauthorized");
      return false;
    }
    return true;
  }

  template <typename Handler>
  httplib::Server::Handler Route(bool authenticate, Handler handler) {
    return [this, authenticate, handler](const httplib::Request& req, httplib::Response& res) {
      if (!Preamble(req, res, authenticate)) return;
      handler(req, res);
    };
  }

  // --- state (mu held) ---

  json StatusBody(const std::string& id, const StoredRequest& r) const {
    json body = {{"controller_id", kControllerId},
                 {"expected_completion_time", r.expected_completion_time},
                 {"subject_request_id", id},
                 {"request_status", r.status},
                 {"api_version", kApiVersion},
                 {"results_url", nullptr}};
    if (r.status == "completed" && r.type != "erasure") {
      body["results_url"] = base_url() + "/results/" + id;
      std::size_t count = 0;
      for (const auto& [category, items] : r.results.items()) count += items.size();
      body["results_count"] = count;
    }
    return body;
  }

  bool Matches(const Record& record, const json& identity) const {
    if (record.erased || identity.value("identity_type", "") != record.identity_type) return false;
    const std::string value = identity.value("identity_value", "");
    const std::string format = identity.value("identity_format", "raw");
    if (format == "raw") return value == record.identity_value;
    return value == HexDigest(format.c_str(), record.identity_value);
  }

  // Moves a request to `status`; completion does what the request asked. Callbacks are queued for the worker.
  void Transition(const std::string& id, StoredRequest& r, const std::string& status) {
    if (r.status == status) return;
    r.status = status;
    if (status == "completed") {
      json results = json::object();
      for (auto& record : records) {
        bool match = false;
        for (const auto& identity : r.body["subject_identities"]) match = match || Matches(record, identity);
        if (!match) continue;
        if (r.type == "erasure") {
          record.erased = true;
        } else {
          results[record.category].push_back(record.data);
        }
      }
      r.results = std::move(results);
    }
    if (!options.send_callbacks) return;
    std::vector<std::string> urls = callback_target.empty() ? r.callback_urls : std::vector{callback_target};
    for (const auto& url : urls) {
      json body = StatusBody(id, r);
      body["status_callback_url"] = url;
      outbox.push_back(PendingCallback{url, body.dump(), status});
    }
    cv.notify_all();
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port) + "/v2"; }

  // --- routes ---

  void Discovery(const httplib::Request&, httplib::Response& res) {
    json identities = json::array();
    for (const auto& type : options.identity_types) {
      identities.push_back({{"identity_type", type}, {"identity_format", "raw"}});
      identities.push_back({{"identity_type", type}, {"identity_format", "sha256"}});
    }
    json body = {{"api_version", kApiVersion},
                 {"supported_identities", std::move(identities)},
                 {"supported_subject_request_types", options.request_types},
                 {"processor_certificate", base_url() + "/cert.pem"}};
    res.set_content(body.dump(), "application/json");
  }

  void Create(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    ++submits;
    if (reject_submit) {
      auto [status, message] = *std::exchange(reject_submit, std::nullopt);
      SendError(res, status, message);
      return;
    }
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return SendError(res, 400, "The request body is not a JSON object.");
    static const std::regex kUuidV4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    if (!body.contains("subject_request_id") || !body["subject_request_id"].is_string()) {
      return SendError(res, 400, "subject_request_id field is required");
    }
    const std::string id = body["subject_request_id"].get<std::string>();
    if (!std::regex_match(id, kUuidV4)) {
      return SendError(res, 400, "subject_request_id must be a lowercase UUID v4");
    }
    if (ever_created.contains(id) && requests.contains(id)) {
      return SendError(res, options.duplicate_status, "Subject request already exists.", "InvalidOperationException");
    }
    const std::string regulation = body.value("regulation", "");
    if (regulation != "gdpr" && regulation != "ccpa") {
      return SendError(res, 400, "regulation must be 'gdpr' or 'ccpa'");
    }
    const std::string type = body.value("subject_request_type", "");
    if (std::find(options.request_types.begin(), options.request_types.end(), type) == options.request_types.end()) {
      return SendError(res, 400, "subject_request_type is not supported");
    }
    static const std::regex kRfc3339(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$)");
    if (!body.contains("submitted_time") || !body["submitted_time"].is_string() ||
        !std::regex_match(body["submitted_time"].get<std::string>(), kRfc3339)) {
      return SendError(res, 400, "submitted_time must be an RFC 3339 date");
    }
    if (!body.contains("subject_identities") || !body["subject_identities"].is_array() ||
        body["subject_identities"].empty()) {
      return SendError(res, 400, "subject_identities field is required");
    }
    static const std::set<std::string> kFormats = {"raw", "sha1", "md5", "sha256"};
    for (const auto& identity : body["subject_identities"]) {
      if (!identity.is_object() || !identity.contains("identity_value") || !identity["identity_value"].is_string() ||
          identity["identity_value"].get<std::string>().empty()) {
        return SendError(res, 400, "identity_value field is required");
      }
      const std::string identity_type = identity.value("identity_type", "");
      if (std::find(options.identity_types.begin(), options.identity_types.end(), identity_type) ==
          options.identity_types.end()) {
        return SendError(res, 400, "identity_type '" + identity_type.substr(0, 40) + "' is not supported");
      }
      if (!kFormats.contains(identity.value("identity_format", ""))) {
        return SendError(res, 400, "identity_format must be raw, sha1, md5 or sha256");
      }
    }
    std::vector<std::string> callback_urls;
    if (body.contains("status_callback_urls")) {
      if (!body["status_callback_urls"].is_array()) return SendError(res, 400, "status_callback_urls must be an array");
      for (const auto& url : body["status_callback_urls"]) {
        if (!url.is_string()) return SendError(res, 400, "status_callback_urls must hold strings");
        callback_urls.push_back(url.get<std::string>());
      }
    }

    const auto now = std::chrono::system_clock::now();
    StoredRequest r;
    r.body = body;
    r.type = type;
    r.created = std::chrono::steady_clock::now();
    r.received_time = Rfc3339(now);
    r.expected_completion_time = Rfc3339(now + std::chrono::hours(24 * 30));
    r.callback_urls = std::move(callback_urls);
    auto& stored = requests[id] = std::move(r);
    ever_created.insert(id);
    ++creations[id];
    // Live processors report creation too (the request enters "pending").
    if (options.send_callbacks) {
      stored.status = "";
      Transition(id, stored, "pending");
    }
    json answer = {{"controller_id", kControllerId},
                   {"expected_completion_time", stored.expected_completion_time},
                   {"received_time", stored.received_time},
                   {"encoded_request", Base64(req.body)},
                   {"subject_request_id", id}};
    SendSigned(res, 201, answer);
  }

  void Status(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    const std::string id = req.matches[1];
    auto it = requests.find(id);
    if (it == requests.end()) {
      return SendError(res, 404, "The specified subject request id could not be found.", "NotFound");
    }
    StoredRequest& r = it->second;
    ++r.polls;
    if (r.status == "pending" || r.status == "in_progress") {
      if (options.complete_after_polls > 0 && r.polls >= options.complete_after_polls) {
        Transition(id, r, "completed");
      } else if (r.polls >= 2) {
        Transition(id, r, "in_progress");
      }
    }
    SendSigned(res, 200, StatusBody(id, r));
  }

  void CancelRoute(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    const std::string id = req.matches[1];
    auto it = requests.find(id);
    if (it == requests.end()) {
      return SendError(res, 404, "The specified subject request id could not be found.", "NotFound");
    }
    if (it->second.status != "pending") {
      return SendError(res, 400, "Cancellation is valid in status pending only.", "InvalidOperationException");
    }
    Transition(id, it->second, "cancelled");
    SendSigned(res, 202,
               {{"controller_id", kControllerId},
                {"received_time", Rfc3339(std::chrono::system_clock::now())},
                {"subject_request_id", id},
                {"api_version", kApiVersion}});
  }

  void Results(const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    const std::string id = req.matches[1];
    auto it = requests.find(id);
    if (it == requests.end() || it->second.type == "erasure") {
      return SendError(res, 404, "No results for this subject request id.", "NotFound");
    }
    if (it->second.status != "completed") {
      return SendError(res, 400, "The request is not completed.", "InvalidOperationException");
    }
    res.set_content(it->second.results.dump(), "application/json");
  }

  // --- the worker: time-based completion and callback delivery ---

  void Work() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (options.complete_after) {
        const auto now = std::chrono::steady_clock::now();
        for (auto& [id, r] : requests) {
          if ((r.status == "pending" || r.status == "in_progress") && now - r.created >= *options.complete_after) {
            Transition(id, r, "completed");
          }
        }
      }
      if (outbox.empty()) {
        cv.wait_for(lock, 50ms);
        continue;
      }
      PendingCallback next = std::move(outbox.front());
      outbox.pop_front();
      lock.unlock();
      SentCallback result = Deliver(next);
      lock.lock();
      sent.push_back(std::move(result));
      cv.notify_all();
    }
  }

  SentCallback Deliver(const PendingCallback& callback) {
    SentCallback out{callback.url, callback.body, Sign(callback.body), callback.request_status, 0};
    static const std::regex kLoopback(R"(^http://(127\.0\.0\.1|localhost)(:\d+)?(/.*)?$)");
    std::smatch m;
    if (!std::regex_match(callback.url, m, kLoopback)) {
      out.status = -1;  // never leave the machine
      return out;
    }
    const std::string origin = "http://" + m[1].str() + m[2].str();
    const std::string path = m[3].matched ? m[3].str() : "/";
    httplib::Client client(origin);
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(5, 0);
    const httplib::Headers headers = {{"X-OpenDSR-Processor-Domain", options.processor_domain},
                                      {"X-OpenDSR-Signature", out.signature}};
    // Spec sec. 8.5: at least once, and SHOULD retry a failure; three tries, a little apart.
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(200ms);
      auto result = client.Post(path.c_str(), headers, callback.body, "application/json");
      if (result) {
        out.status = result->status;
        if (result->status < 500) break;
      }
    }
    return out;
  }
};

OpenDsrPeer::OpenDsrPeer(OpenDsrPeerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->MakeKeys();
  impl_->port = impl_->server.port();
  if (impl_->options.port != 0) {
    // RecordingServer binds a port of the kernel's choice when it is built. Binding again replaces the socket it
    // serves; the first one stays open, unused, until the process ends -- acceptable for the standalone program,
    // the only user of a fixed port.
    if (!impl_->server.server().bind_to_port("127.0.0.1", impl_->options.port)) {
      throw std::runtime_error("opendsr peer: cannot bind 127.0.0.1:" + std::to_string(impl_->options.port));
    }
    impl_->port = impl_->options.port;
  }
  auto& svr = impl_->server.server();
  // A client's idle keep-alive connection holds a server thread, and Stop waits for it: keep that wait short.
  svr.set_keep_alive_timeout(1);
  Impl* impl = impl_.get();
  svr.Get("/v2/discovery", impl->Route(false, [impl](const auto& req, auto& res) { impl->Discovery(req, res); }));
  svr.Get("/v2/cert.pem", impl->Route(false, [impl](const auto&, auto& res) {
    res.set_content(impl->certificate_pem, "application/x-pem-file");
  }));
  auto create = impl->Route(true, [impl](const auto& req, auto& res) { impl->Create(req, res); });
  svr.Post("/v2/requests", create);
  svr.Post("/v2/requests/", create);
  svr.Get(R"(/v2/requests/([^/]+))", impl->Route(true, [impl](const auto& req, auto& res) { impl->Status(req, res); }));
  svr.Delete(R"(/v2/requests/([^/]+))",
             impl->Route(true, [impl](const auto& req, auto& res) { impl->CancelRoute(req, res); }));
  svr.Get(R"(/v2/results/([^/]+))", impl->Route(true, [impl](const auto& req, auto& res) { impl->Results(req, res); }));
}

OpenDsrPeer::~OpenDsrPeer() { Stop(); }

void OpenDsrPeer::Start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started) return;
    impl_->started = true;
    impl_->stopping = false;
  }
  impl_->worker = std::thread([impl = impl_.get()] { impl->Work(); });
  impl_->server.Start();
}

void OpenDsrPeer::Stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  impl_->server.Stop();
  if (impl_->worker.joinable()) impl_->worker.join();
}

RecordingServer& OpenDsrPeer::recorder() { return impl_->server; }
int OpenDsrPeer::port() const { return impl_->port; }
std::string OpenDsrPeer::base_url() const { return impl_->base_url(); }
std::string OpenDsrPeer::PublicKeyPem() const { return impl_->public_key_pem; }
std::string OpenDsrPeer::CertificatePem() const { return impl_->certificate_pem; }
std::string OpenDsrPeer::Sign(std::string_view body) const { return impl_->Sign(body); }
const std::string& OpenDsrPeer::processor_domain() const { return impl_->options.processor_domain; }

namespace {
void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("opendsr peer: cannot write " + path.string());
}
}  // namespace

void OpenDsrPeer::WritePublicKeyPem(const std::filesystem::path& path) const { WriteFile(path, PublicKeyPem()); }
void OpenDsrPeer::WriteCertificatePem(const std::filesystem::path& path) const { WriteFile(path, CertificatePem()); }

void OpenDsrPeer::SeedRecord(const std::string& identity_type, const std::string& identity_value,
                             const std::string& category, nlohmann::json record) {
  std::lock_guard lock(impl_->mu);
  impl_->records.push_back(Record{identity_type, identity_value, category, std::move(record)});
}

std::size_t OpenDsrPeer::HeldRecords(const std::string& identity_type, const std::string& identity_value) const {
  std::lock_guard lock(impl_->mu);
  return static_cast<std::size_t>(std::count_if(impl_->records.begin(), impl_->records.end(), [&](const Record& r) {
    return !r.erased && r.identity_type == identity_type && r.identity_value == identity_value;
  }));
}

void OpenDsrPeer::FailNext(int calls, int status, int retry_after_seconds) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_calls = calls;
  impl_->fail_status = status;
  impl_->fail_retry_after = retry_after_seconds;
}

void OpenDsrPeer::RejectNextSubmit(int status, std::string message) {
  std::lock_guard lock(impl_->mu);
  impl_->reject_submit = std::make_pair(status, std::move(message));
}

void OpenDsrPeer::SetDelay(std::chrono::milliseconds delay) {
  std::lock_guard lock(impl_->mu);
  impl_->delay = delay;
}

int OpenDsrPeer::CreatedCount() const {
  std::lock_guard lock(impl_->mu);
  return static_cast<int>(impl_->ever_created.size());
}

int OpenDsrPeer::SubmitCount() const {
  std::lock_guard lock(impl_->mu);
  return impl_->submits;
}

std::map<std::string, int> OpenDsrPeer::Creations() const {
  std::lock_guard lock(impl_->mu);
  return impl_->creations;
}

std::optional<std::string> OpenDsrPeer::StatusOf(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->requests.find(id);
  if (it == impl_->requests.end()) return std::nullopt;
  return it->second.status;
}

std::optional<nlohmann::json> OpenDsrPeer::RequestOf(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->requests.find(id);
  if (it == impl_->requests.end()) return std::nullopt;
  return it->second.body;
}

int OpenDsrPeer::PollsOf(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->requests.find(id);
  return it == impl_->requests.end() ? 0 : it->second.polls;
}

void OpenDsrPeer::Complete(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->requests.find(id);
  if (it != impl_->requests.end()) impl_->Transition(id, it->second, "completed");
}

void OpenDsrPeer::Cancel(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->requests.find(id);
  if (it != impl_->requests.end()) impl_->Transition(id, it->second, "cancelled");
}

void OpenDsrPeer::Forget(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  impl_->requests.erase(id);
}

void OpenDsrPeer::SetCallbackTarget(std::string url) {
  std::lock_guard lock(impl_->mu);
  impl_->callback_target = std::move(url);
}

std::vector<SentCallback> OpenDsrPeer::Callbacks() const {
  std::lock_guard lock(impl_->mu);
  return impl_->sent;
}

bool OpenDsrPeer::WaitForCallbacks(std::size_t count, std::chrono::milliseconds limit) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, limit, [&] { return impl_->sent.size() >= count; });
}

}  // namespace rightsd::test
