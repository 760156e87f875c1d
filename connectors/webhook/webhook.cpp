// The OpenDSR webhook connector.
//
// Specification followed: github.com/opengdpr/OpenDSR --
//   README.md ("OpenDSR Summary"): the resource paths (POST requests/, GET requests/{id}, DELETE requests/{id},
//     GET /discovery), the callback to the controller, and api_version "2.0" with the `regulation` field;
//   specification.md (the full text, headed "OpenCompliance Version 1.0", the framework's later name): the
//     request fields (sec. 7.1), identity types and formats (sec. 5), discovery document (sec. 6), 201 response
//     (7.3), error object (7.5-7.6), statuses and the status response (8, 8.3), callbacks and their
//     authentication (8.5-8.8), cancellation (9), and "honor the prior versions' routes and headers" (10.1);
//   security_guidelines.md: callbacks are verified by the processor's certificate over the raw body.
// Header names: X-OpenDSR-Processor-Domain / X-OpenDSR-Signature, the names OpenDSR 2.0 processors send
// (specification.md spells them X-OpenCompliance-*, 1.0 spelled them X-OpenGDPR-*; all three are accepted).
//
// Choices where the specification is silent or loose:
// - base_url is the processor's versioned root ("URLs MUST include the major version number at the start"), e.g.
//   https://opendsr.processor.example/v2; the connector appends /requests, /requests/{id} and /discovery.
// - kAccess becomes "access", not "portability": a right-to-know task asks what the processor holds, and the
//   specification attaches nothing to "portability" beyond its name. kDelete becomes "erasure". OpenDSR has no
//   request type for correction, opt-out, limit, de-identification or locate, so Supports() says no to them.
// - `regulation` (required since 2.0) comes from the `regulation` setting, "ccpa" unless set: tasks do not carry it.
// - submitted_time should be "the time of the original request by the data subject"; TaskInput does not carry it,
//   so the time of submission to the processor is sent.
// - Identity kinds: email -> email, account_id -> controller_customer_id (the business's own customer id), and a
//   kind spelled like an OpenDSR type passes through. phone, name, postal_address, date_of_birth, device_id
//   (which platform's?) and the other systems' ids have no OpenDSR type and are never sent. Values go out "raw".
//   When discovery answers, identities the processor does not list as (type, raw) are dropped too.
// - Duplicate submissions: the specification answers every error with 400 and processors in the field say
//   "Subject request already exists" with a 400 (some use 409). Rather than read error prose, any 400/409 to a
//   POST is followed by a GET of the request: if the processor has it, the task id was submitted before (a crash
//   between POST and saving the outcome) and the status is handled as a poll; if not, the POST's error stands.
// - Results: the specification leaves the transfer of access results out of scope; the status response's
//   results_url is fetched (with the bearer token only if it is on base_url's origin) and read as JSON: an object
//   of arrays is taken as categories; an array, or any other object, as the records of one category -- the data
//   map's category when the system has exactly one, else "webhook". Anything else (not JSON: a zip, say) needs a
//   person. No records at all is kNotFound; a completed access request without results_url needs a person too,
//   unless its results_count is 0.
// - Status answers and callbacks are checked against processor_certificate_file when it is set: a signature that
//   does not verify fails the task (someone must look at the key or the path to the processor). A certificate (not
//   a bare public key) must also match the X-OpenDSR-Processor-Domain header of a callback.
// - The processor's error text reaches task messages only after every identity value of the task is cut out of it
//   and it is shortened; receipts hold ids, types, statuses and counts, never values.
#include "connectors/webhook/webhook.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <mutex>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace rightsd::connectors::webhook {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::string_view kApiVersion = "2.0";
constexpr std::size_t kMaxMessage = 300;
constexpr auto kDiscoveryTtl = 1h;

// Spec sec. 5.1, plus the one rightsd kind whose meaning is an OpenDSR type under another name.
constexpr std::array<std::string_view, 11> kOpenDsrTypes = {
    "controller_customer_id", "android_advertising_id", "android_id",          "email",
    "fire_advertising_id",    "ios_advertising_id",     "ios_vendor_id",       "microsoft_advertising_id",
    "microsoft_publisher_id", "roku_publisher_id",      "roku_advertising_id",
};
constexpr std::array<std::pair<std::string_view, std::string_view>, 1> kRenamedKinds = {{
    {"account_id", "controller_customer_id"},
}};
// Header names across the framework's three names (spec sec. 10.1: prior names MUST be honoured).
constexpr std::array<std::string_view, 3> kSignatureHeaders = {"X-OpenDSR-Signature", "X-OpenGDPR-Signature",
                                                               "X-OpenCompliance-Signature"};
constexpr std::array<std::string_view, 3> kDomainHeaders = {
    "X-OpenDSR-Processor-Domain", "X-OpenGDPR-Processor-Domain", "X-OpenCompliance-Processor-Domain"};

std::optional<std::string_view> OpenDsrType(std::string_view kind) {
  for (auto type : kOpenDsrTypes) {
    if (type == kind) return type;
  }
  for (auto [from, to] : kRenamedKinds) {
    if (from == kind) return to;
  }
  return std::nullopt;
}

std::optional<std::string_view> RequestType(TaskAction action) {
  switch (action) {
    case TaskAction::kAccess: return "access";
    case TaskAction::kDelete: return "erasure";
    default: return std::nullopt;
  }
}

// --- OpenSSL ----------------------------------------------------------------------------------------------------

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

struct ProcessorKey {
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  std::unique_ptr<X509, X509Free> certificate;  // null when the file held a bare public key
};

std::optional<ProcessorKey> ParseProcessorPem(const std::string& pem) {
  ProcessorKey out;
  {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    out.certificate.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  }
  if (out.certificate) {
    out.key.reset(X509_get_pubkey(out.certificate.get()));
  } else {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    out.key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  // A failed PEM read leaves errors on this thread's queue for the next unrelated OpenSSL caller to trip over.
  ERR_clear_error();
  if (!out.key) return std::nullopt;
  return out;
}

// Standard base64 with padding; whitespace is skipped because signatures are sometimes folded across lines.
std::optional<std::string> DecodeBase64(std::string_view text) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t buffer = 0;
  int bits = 0;
  int padding = 0;
  std::size_t symbols = 0;
  for (char c : text) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++padding;
      ++symbols;
      continue;
    }
    if (padding > 0) return std::nullopt;  // data after padding
    auto pos = kAlphabet.find(c);
    if (pos == std::string_view::npos) return std::nullopt;
    buffer = (buffer << 6) | static_cast<std::uint32_t>(pos);
    bits += 6;
    ++symbols;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  if (symbols == 0 || symbols % 4 != 0 || padding > 2) return std::nullopt;
  return out;
}

bool VerifySignature(EVP_PKEY* key, std::string_view body, std::string_view signature_b64) {
  auto signature = DecodeBase64(signature_b64);
  if (!signature || signature->empty()) return false;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
                             reinterpret_cast<const unsigned char*>(body.data()), body.size()) == 1;
  ERR_clear_error();
  return ok;
}

// --- text -------------------------------------------------------------------------------------------------------

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Peer text that may reach a message or a receipt: every identity value of the task cut out (case-insensitively:
// processors echo emails in their own case), control characters flattened, and the whole shortened.
std::string Scrub(std::string_view text, const std::vector<Identity>& identities, std::size_t limit = kMaxMessage) {
  std::string out(text.substr(0, 4096));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  for (const auto& identity : identities) {
    if (identity.value.empty()) continue;
    const std::string needle = Lower(identity.value);
    std::string lowered = Lower(out);
    std::size_t pos = 0;
    while ((pos = lowered.find(needle, pos)) != std::string::npos) {
      out.replace(pos, needle.size(), "[redacted]");
      lowered.replace(pos, needle.size(), "[redacted]");
      pos += 10;
    }
  }
  if (out.size() > limit) {
    out.resize(limit);  // may cut a character in two: ToValidUtf8 below turns its remains into '?'
    return ToValidUtf8(out) + "...";
  }
  return ToValidUtf8(out);
}

std::string NowRfc3339() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string OriginOf(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return Lower(url);
  auto host_end = url.find_first_of("/?#", scheme_end + 3);
  return Lower(url.substr(0, host_end));
}

// The processor's explanation from an error body: spec sec. 7.6 nests it under "error", some processors put the
// same object at the top level; otherwise a short plain-text body is taken as it is.
std::string PeerErrorText(const HttpResponse& response) {
  json doc = json::parse(response.body, nullptr, false);
  if (doc.is_object()) {
    const json& error = doc.contains("error") && doc["error"].is_object() ? doc["error"] : doc;
    if (error.contains("message") && error["message"].is_string() && !error["message"].get<std::string>().empty()) {
      return error["message"].get<std::string>();
    }
    if (error.contains("errors") && error["errors"].is_array() && !error["errors"].empty() &&
        error["errors"][0].is_object() && error["errors"][0].contains("message") &&
        error["errors"][0]["message"].is_string()) {
      return error["errors"][0]["message"].get<std::string>();
    }
    if (doc.contains("error") && doc["error"].is_string()) return doc["error"].get<std::string>();
    return "";
  }
  if (!doc.is_discarded()) return "";
  auto content_type = Lower(response.Header("Content-Type"));
  if (content_type.starts_with("text/plain")) return response.body;
  return "";
}

// --- configuration and shared state -----------------------------------------------------------------------------

struct Config {
  std::string system;
  std::string base_url;  // no trailing slash
  std::string bearer_token;
  std::optional<ProcessorKey> processor;
  std::string callback_url;
  std::string regulation;
  std::chrono::seconds poll_interval{3600};
  std::chrono::milliseconds timeout{30000};
  std::string default_category;
  HttpClient* http = nullptr;
};

// What the processor's /discovery said, if it said anything usable.
struct Discovery {
  std::set<std::string> raw_identity_types;
  std::set<std::string> request_types;
};

class DiscoveryCache {
 public:
  // nullopt: ask again (never asked, expired, or last asked without a usable answer).
  std::optional<std::optional<Discovery>> Get() {
    std::lock_guard lock(mu_);
    if (!fetched_ || std::chrono::steady_clock::now() - *fetched_ > kDiscoveryTtl) return std::nullopt;
    return value_;
  }
  void Put(std::optional<Discovery> value) {
    std::lock_guard lock(mu_);
    value_ = std::move(value);
    fetched_ = std::chrono::steady_clock::now();
  }

 private:
  std::mutex mu_;
  std::optional<std::chrono::steady_clock::time_point> fetched_;
  std::optional<Discovery> value_;
};

std::optional<Discovery> ParseDiscovery(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return std::nullopt;
  Discovery out;
  if (doc.contains("supported_identities") && doc["supported_identities"].is_array()) {
    for (const auto& pair : doc["supported_identities"]) {
      if (!pair.is_object() || !pair.contains("identity_type") || !pair["identity_type"].is_string()) continue;
      auto format = pair.value("identity_format", std::string("raw"));
      if (format == "raw") out.raw_identity_types.insert(pair["identity_type"].get<std::string>());
    }
  } else {
    return std::nullopt;
  }
  if (doc.contains("supported_subject_request_types") && doc["supported_subject_request_types"].is_array()) {
    for (const auto& type : doc["supported_subject_request_types"]) {
      if (type.is_string()) out.request_types.insert(type.get<std::string>());
    }
  } else {
    return std::nullopt;
  }
  return out;
}

// --- one Run ----------------------------------------------------------------------------------------------------

struct MappedIdentity {
  std::string type;
  std::string value;
};

// A Run's state, kept alive by the HTTP callbacks that continue it; `Finish` is the single exit.
class Job : public std::enable_shared_from_this<Job> {
 public:
  Job(std::shared_ptr<const Config> config, std::shared_ptr<DiscoveryCache> discovery, TaskInput input,
      std::string request_type, std::vector<MappedIdentity> identities, OutcomeCallback done)
      : config_(std::move(config)),
        discovery_(std::move(discovery)),
        input_(std::move(input)),
        request_type_(std::move(request_type)),
        identities_(std::move(identities)),
        done_(std::move(done)) {
    for (const auto& m : identities_) {
      if (std::find(sent_types_.begin(), sent_types_.end(), m.type) == sent_types_.end()) sent_types_.push_back(m.type);
    }
  }

  void Start() {
    const json& c = input_.continuation;
    if (c.is_object() && c.value("submitted", false)) {
      Poll();
    } else {
      Submit();
    }
  }

 private:
  // --- the exchanges ---

  void Submit() {
    auto cached = discovery_->Get();
    if (cached) {
      PostRequest(*cached);
      return;
    }
    Send("GET", config_->base_url + "/discovery", "", [self = shared_from_this()](HttpResponse response) {
      if (IsTransient(response)) {
        // The processor is unwell now; submitting anyway would most likely meet the same answer.
        self->Finish(self->PeerFailure(response, "reading the processor's /discovery document"));
        return;
      }
      std::optional<Discovery> discovery;
      if (response.status == 200) discovery = ParseDiscovery(response.body);
      // A processor without a usable discovery document is remembered too, so that every task does not ask again;
      // the submission then relies on the specification's identity types alone.
      self->discovery_->Put(discovery);
      self->PostRequest(discovery);
    });
  }

  void PostRequest(const std::optional<Discovery>& discovery) {
    std::vector<MappedIdentity> send = identities_;
    if (discovery) {
      if (!discovery->request_types.contains(request_type_)) {
        Finish(Outcome::Failed(
            fmt::format("the processor does not accept {} requests (its /discovery document)", request_type_)));
        return;
      }
      std::erase_if(send, [&](const MappedIdentity& m) { return !discovery->raw_identity_types.contains(m.type); });
      if (send.empty()) {
        Finish(Outcome::Failed("no identity this system understands (none of the task's identity types is in the "
                               "processor's /discovery document)"));
        return;
      }
    }
    sent_types_.clear();
    json identities = json::array();
    for (const auto& m : send) {
      identities.push_back({{"identity_type", m.type}, {"identity_value", m.value}, {"identity_format", "raw"}});
      if (std::find(sent_types_.begin(), sent_types_.end(), m.type) == sent_types_.end()) {
        sent_types_.push_back(m.type);
      }
    }
    json body = {
        {"regulation", config_->regulation},
        {"subject_request_id", input_.task_id},
        {"subject_request_type", request_type_},
        {"submitted_time", NowRfc3339()},
        {"subject_identities", std::move(identities)},
        {"api_version", kApiVersion},
    };
    if (!config_->callback_url.empty()) body["status_callback_urls"] = json::array({config_->callback_url});

    Send("POST", RequestUrl(config_->base_url), body.dump(), [self = shared_from_this()](HttpResponse response) {
      if (response.status >= 200 && response.status < 300) {
        json receipt = self->BaseReceipt();
        json doc = json::parse(response.body, nullptr, false);
        self->CopyPeerFields(doc, receipt, {"controller_id", "expected_completion_time", "received_time"});
        self->CopyProcessorDomain(response, receipt);
        receipt["request_status"] = "pending";
        self->Finish(self->InProgress(std::move(receipt)));
      } else if (response.status == 400 || response.status == 409) {
        self->CheckExisting(std::move(response));
      } else {
        self->Finish(self->PeerFailure(response, "submitting the request"));
      }
    });
  }

  // After a POST was refused: does the processor already hold this subject_request_id?
  void CheckExisting(HttpResponse refused) {
    Send("GET", StatusUrl(), "",
         [self = shared_from_this(), refused = std::move(refused)](HttpResponse response) {
           if (response.status == 404) {
             self->Finish(self->PeerFailure(refused, "submitting the request"));
           } else {
             self->already_submitted_ = response.status >= 200 && response.status < 300;
             self->HandleStatus(response);
           }
         });
  }

  void Poll() {
    Send("GET", StatusUrl(), "",
         [self = shared_from_this()](HttpResponse response) {
           if (response.status == 404) {
             // The processor has no such request (lost, purged, or the POST never landed): submit it again.
             self->Submit();
           } else {
             self->HandleStatus(response);
           }
         });
  }

  void HandleStatus(const HttpResponse& response) {
    if (response.status < 200 || response.status >= 300) {
      Finish(PeerFailure(response, "reading the request's status"));
      return;
    }
    if (config_->processor) {
      std::string signature = FirstHeader(response, kSignatureHeaders);
      if (!signature.empty() && !VerifySignature(config_->processor->key.get(), response.body, signature)) {
        Finish(Outcome::Failed("the processor's status answer carries a signature that does not verify with "
                               "processor_certificate_file"));
        return;
      }
    }
    json doc = json::parse(response.body, nullptr, false);
    if (!doc.is_object() || !doc.contains("request_status") || !doc["request_status"].is_string()) {
      Finish(Outcome::Retry("the processor's status answer is not an OpenDSR status object"));
      return;
    }
    const std::string status = doc["request_status"].get<std::string>();
    json receipt = BaseReceipt();
    CopyPeerFields(doc, receipt, {"controller_id", "expected_completion_time", "results_count"});
    CopyProcessorDomain(response, receipt);
    receipt["request_status"] = Scrub(status, input_.identities, 40);

    if (status == "pending" || status == "in_progress") {
      Finish(InProgress(std::move(receipt)));
    } else if (status == "cancelled") {
      Outcome failed = Outcome::Failed("the processor cancelled the request");
      failed.receipt = std::move(receipt);
      Finish(std::move(failed));
    } else if (status == "completed") {
      if (request_type_ == "erasure") {
        Finish(Outcome::Done(std::move(receipt)));
      } else {
        FetchResults(doc, std::move(receipt));
      }
    } else {
      Finish(Outcome::Retry(
          fmt::format("the processor answered an unknown request_status '{}'", Scrub(status, input_.identities, 40))));
    }
  }

  void FetchResults(const json& status, json receipt) {
    std::string url = status.contains("results_url") && status["results_url"].is_string()
                          ? status["results_url"].get<std::string>()
                          : "";
    if (url.empty()) {
      const bool none = status.contains("results_count") && status["results_count"].is_number_integer() &&
                        status["results_count"].get<long long>() == 0;
      if (none) {
        Finish(Outcome::NotFound(std::move(receipt)));
      } else {
        Outcome manual;
        manual.kind = OutcomeKind::kNeedsManual;
        manual.message = "the processor completed the access request but gave no results_url";
        manual.receipt = std::move(receipt);
        Finish(std::move(manual));
      }
      return;
    }
    // Only http(s): a processor's link is not a reason to open file:// or any other scheme (found by fuzz: webhook).
    if (!url.starts_with("https://") && !url.starts_with("http://")) {
      Outcome manual;
      manual.kind = OutcomeKind::kNeedsManual;
      manual.message = "the processor's results_url is not an http(s) URL";
      manual.receipt = std::move(receipt);
      Finish(std::move(manual));
      return;
    }
    // The bearer token is for the processor's API; a results link elsewhere (a storage bucket) must not see it.
    const bool same_origin = OriginOf(url) == OriginOf(config_->base_url);
    Send(
        "GET", url, "",
        [self = shared_from_this(), receipt = std::move(receipt)](HttpResponse response) mutable {
          self->HandleResults(response, std::move(receipt));
        },
        same_origin);
  }

  void HandleResults(const HttpResponse& response, json receipt) {
    if (response.status == 404 || response.status == 410) {
      Finish(Outcome::Failed(fmt::format("the processor's results are gone ({}); ask it to run the request again",
                                         response.status)));
      return;
    }
    if (response.status != 200) {
      Finish(PeerFailure(response, "fetching the results"));
      return;
    }
    json doc = json::parse(response.body, nullptr, false);
    json records = json::object();
    auto as_records = [](const json& items) {
      json out = json::array();
      for (const auto& item : items) out.push_back(item.is_object() ? item : json{{"value", item}});
      return out;
    };
    if (doc.is_array()) {
      records[config_->default_category] = as_records(doc);
    } else if (doc.is_object() && std::all_of(doc.begin(), doc.end(), [](const json& v) { return v.is_array(); })) {
      // {} is "no category holds anything": not found below.
      for (const auto& [category, items] : doc.items()) records[category] = as_records(items);
    } else if (doc.is_object() && !doc.empty()) {
      records[config_->default_category] = json::array({doc});
    } else {
      Outcome manual;
      manual.kind = OutcomeKind::kNeedsManual;
      manual.message = doc.is_discarded()
                           ? "the processor's results are not JSON; download them from its results_url by hand"
                           : "the processor's results are not records; check them by hand";
      manual.receipt = std::move(receipt);
      Finish(std::move(manual));
      return;
    }
    std::size_t count = 0;
    json categories = json::object();
    for (const auto& [category, items] : records.items()) {
      count += items.size();
      categories[Scrub(category, input_.identities, 80)] = items.size();
    }
    receipt["records"] = count;
    receipt["categories"] = std::move(categories);
    if (count == 0) {
      Finish(Outcome::NotFound(std::move(receipt)));
      return;
    }
    Outcome done = Outcome::Done(std::move(receipt));
    done.records = std::move(records);
    Finish(std::move(done));
  }

  // --- outcomes ---

  Outcome InProgress(json receipt) const {
    Outcome o;
    o.kind = OutcomeKind::kInProgress;
    o.retry_after = config_->poll_interval;
    o.receipt = std::move(receipt);
    o.continuation = {{"submitted", true},
                      {"subject_request_id", input_.task_id},
                      {"subject_request_type", request_type_}};
    return o;
  }

  // A peer answer that is not what the exchange wanted: transient ones retry (after the peer's Retry-After when it
  // sent one), permanent ones fail with the peer's own explanation.
  Outcome PeerFailure(const HttpResponse& response, std::string_view doing) const {
    if (response.status == 0) {
      if (response.error == "timeout") {
        return Outcome::Retry(fmt::format("{}: the processor did not answer within {} ms", doing,
                                          config_->timeout.count()));
      }
      return Outcome::Retry(fmt::format("{}: {}", doing, Scrub(response.error, input_.identities)));
    }
    const std::string peer_text = Scrub(PeerErrorText(response), input_.identities);
    const std::string said = peer_text.empty() ? "" : ": " + peer_text;
    const int s = response.status;
    if (IsTransient(response)) {
      return Outcome::Retry(fmt::format("{}: the processor answered {}{}", doing, s, said),
                            ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
    }
    if (s == 401 || s == 403) {
      return Outcome::Failed(fmt::format("{}: the processor refused our credentials ({}){}", doing, s, said));
    }
    return Outcome::Failed(fmt::format("{}: the processor answered {}{}", doing, s, said));
  }

  json BaseReceipt() const {
    json receipt = {{"protocol", "opendsr"},
                    {"api_version", kApiVersion},
                    {"subject_request_id", input_.task_id},
                    {"subject_request_type", request_type_}};
    if (!sent_types_.empty()) receipt["identity_types"] = sent_types_;
    if (already_submitted_) receipt["already_submitted"] = true;
    return receipt;
  }

  void CopyPeerFields(const json& doc, json& receipt, std::initializer_list<const char*> fields) const {
    if (!doc.is_object()) return;
    for (const char* field : fields) {
      if (!doc.contains(field)) continue;
      const json& v = doc[field];
      if (v.is_string()) {
        receipt[field] = Scrub(v.get<std::string>(), input_.identities, 80);
      } else if (v.is_number_integer()) {
        receipt[field] = v;
      }
    }
  }

  void CopyProcessorDomain(const HttpResponse& response, json& receipt) const {
    std::string domain = FirstHeader(response, kDomainHeaders);
    if (!domain.empty()) receipt["processor_domain"] = Scrub(domain, input_.identities, 120);
  }

  // --- plumbing ---

  static std::string RequestUrl(const std::string& base) { return base + "/requests"; }

  // Task ids are UUIDs, but a path segment is built from them all the same.
  std::string StatusUrl() const {
    std::string out = RequestUrl(config_->base_url) + "/";
    for (unsigned char c : input_.task_id) {
      if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        out.push_back(static_cast<char>(c));
      } else {
        out += fmt::format("%{:02X}", c);
      }
    }
    return out;
  }

  static bool IsTransient(const HttpResponse& r) {
    return r.status == 0 || r.status == 408 || r.status == 425 || r.status == 429 || r.status >= 500;
  }

  static std::string FirstHeader(const HttpResponse& response, const std::array<std::string_view, 3>& names) {
    for (auto name : names) {
      std::string value = response.Header(name);
      if (!value.empty()) return value;
    }
    return "";
  }

  void Send(std::string method, std::string url, std::string body, std::function<void(HttpResponse)> then,
            bool with_token = true) {
    HttpRequest request;
    request.method = std::move(method);
    request.url = std::move(url);
    request.timeout = config_->timeout;
    request.headers.emplace_back("Accept", "application/json");
    if (with_token && !config_->bearer_token.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + config_->bearer_token);
    }
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    request.body = std::move(body);
    // A bug below must still end the task with an outcome: `done` is owed exactly once.
    config_->http->Send(std::move(request), [self = shared_from_this(), then = std::move(then)](HttpResponse r) {
      try {
        then(std::move(r));
      } catch (const std::exception& e) {
        self->Finish(Outcome::Retry(fmt::format("internal error handling the processor's answer: {}", e.what())));
      }
    });
  }

  void Finish(Outcome outcome) {
    if (finished_.exchange(true)) return;
    try {
      done_(std::move(outcome));
    } catch (...) {
      // The engine's callback threw; nothing here can repair that, and the I/O thread must survive it.
    }
  }

  std::shared_ptr<const Config> config_;
  std::shared_ptr<DiscoveryCache> discovery_;
  TaskInput input_;
  std::string request_type_;
  std::vector<MappedIdentity> identities_;
  OutcomeCallback done_;
  std::atomic<bool> finished_{false};
  // Written by one exchange before the next is started; the HTTP client's hand-off orders them.
  std::vector<std::string> sent_types_;
  bool already_submitted_ = false;
};

// --- the connector ----------------------------------------------------------------------------------------------

class WebhookConnector final : public Connector {
 public:
  explicit WebhookConnector(std::shared_ptr<const Config> config)
      : config_(std::move(config)), discovery_(std::make_shared<DiscoveryCache>()) {}

  bool Supports(TaskAction action) const override { return RequestType(action).has_value(); }

  void Run(const TaskInput& input, OutcomeCallback done) override {
    auto request_type = RequestType(input.action);
    if (!request_type) {
      done(Outcome::Failed(fmt::format("OpenDSR has no request type for the {} action", ToString(input.action))));
      return;
    }
    std::vector<MappedIdentity> identities;
    for (const auto& identity : input.identities) {
      auto type = OpenDsrType(identity.kind);
      if (!type || identity.value.empty()) continue;
      const bool duplicate = std::any_of(identities.begin(), identities.end(), [&](const MappedIdentity& m) {
        return m.type == *type && m.value == identity.value;
      });
      if (!duplicate) identities.push_back({std::string(*type), identity.value});
    }
    if (identities.empty()) {
      done(Outcome::Failed("no identity this system understands (OpenDSR takes email and account_id)"));
      return;
    }
    std::make_shared<Job>(config_, discovery_, input, std::string(*request_type), std::move(identities),
                          std::move(done))
        ->Start();
  }

  bool VerifyCallback(const std::string& body,
                      const std::function<std::string(std::string_view)>& header) const override {
    if (!config_->processor) return false;
    std::string signature;
    for (auto name : kSignatureHeaders) {
      signature = header(name);
      if (!signature.empty()) break;
    }
    if (signature.empty() || !VerifySignature(config_->processor->key.get(), body, signature)) return false;
    if (config_->processor->certificate) {
      // With a certificate the domain that signs is known: the header must name it (security_guidelines.md).
      std::string domain;
      for (auto name : kDomainHeaders) {
        domain = header(name);
        if (!domain.empty()) break;
      }
      if (domain.empty() ||
          X509_check_host(config_->processor->certificate.get(), domain.data(), domain.size(), 0, nullptr) != 1) {
        ERR_clear_error();
        return false;
      }
    }
    // Spec sec. 8.8 step 6: the callback must be meant for this controller's endpoint.
    json doc = json::parse(body, nullptr, false);
    if (!doc.is_object()) return false;
    if (!config_->callback_url.empty() && doc.contains("status_callback_url") &&
        doc["status_callback_url"].is_string() &&
        doc["status_callback_url"].get<std::string>() != config_->callback_url) {
      return false;
    }
    return true;
  }

 private:
  std::shared_ptr<const Config> config_;
  std::shared_ptr<DiscoveryCache> discovery_;
};

std::string SettingString(const json& settings, const char* key) {
  return settings.contains(key) && settings[key].is_string() ? settings[key].get<std::string>() : "";
}

}  // namespace

std::unique_ptr<Connector> MakeWebhookConnector(const nlohmann::json& settings, const ConnectorEnv& env) {
  auto config = std::make_shared<Config>();
  config->system = env.system;
  config->http = env.http;
  if (!config->http) {
    throw ConnectorConfigError(fmt::format("system {}: the webhook connector needs the shared http client",
                                           env.system));
  }
  config->base_url = SettingString(settings, "base_url");
  while (!config->base_url.empty() && config->base_url.back() == '/') config->base_url.pop_back();
  if (config->base_url.empty()) {
    throw ConnectorConfigError(fmt::format("system {}: settings/base_url: required", env.system));
  }
  config->callback_url = SettingString(settings, "callback_url");
  config->regulation = SettingString(settings, "regulation");
  if (config->regulation.empty()) config->regulation = "ccpa";
  if (settings.contains("poll_interval_seconds") && settings["poll_interval_seconds"].is_number_integer()) {
    config->poll_interval =
        std::chrono::seconds(std::max<long long>(1, settings["poll_interval_seconds"].get<long long>()));
  }
  if (settings.contains("timeout_ms") && settings["timeout_ms"].is_number_integer()) {
    config->timeout = std::chrono::milliseconds(std::max<long long>(1, settings["timeout_ms"].get<long long>()));
  }
  config->default_category = env.categories.size() == 1 ? env.categories.front() : "webhook";

  if (auto path = SettingString(settings, "bearer_token_file"); !path.empty()) {
    config->bearer_token = ReadCredential(env, "bearer_token_file", path);
    if (config->bearer_token.empty()) {
      throw ConnectorConfigError(fmt::format("system {}: settings/bearer_token_file: the file is empty", env.system));
    }
  }
  if (auto path = SettingString(settings, "processor_certificate_file"); !path.empty()) {
    const std::string pem = ReadCredential(env, "processor_certificate_file", path);
    config->processor = ParseProcessorPem(pem);
    if (!config->processor) {
      throw ConnectorConfigError(fmt::format(
          "system {}: settings/processor_certificate_file: holds neither a PEM certificate nor a PEM public key",
          env.system));
    }
  }
  return std::make_unique<WebhookConnector>(std::move(config));
}

std::optional<std::string> OpenDsrCallbackRequestId(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_object() || !doc.contains("subject_request_id") || !doc["subject_request_id"].is_string()) {
    return std::nullopt;
  }
  std::string id = doc["subject_request_id"].get<std::string>();
  if (id.empty()) return std::nullopt;
  return id;
}

}  // namespace rightsd::connectors::webhook
