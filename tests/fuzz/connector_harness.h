// Drives one connector's public Run with a fake HttpClient whose answers (status, a few headers, body) come from
// the fuzz input, so that every response parser a connector has is reached without a network. Sends are queued and
// answered one at a time on the fuzzing thread (never from inside Send), like the real client's I/O thread would.
// When the input runs out every further call gets a transport error (status 0), so each task ends.
//
// Oracles besides the sanitizers: `done` is called exactly once and within 10 s; the outcome's receipt, records and
// continuation dump as strict UTF-8 (the store writes them with json::dump) and its message is valid UTF-8 text (it
// becomes last_error); neither the message nor the receipt holds an identity value of the task.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "connectors/connector.h"
#include "fuzz_common.h"

namespace rightsd::fuzz {

using namespace rightsd::connectors;

// A directory for credential files, made once per process and removed at exit.
inline const std::filesystem::path& CredentialDir() {
  static const std::filesystem::path dir = [] {
    char tmpl[] = "/tmp/rightsd-fuzz-XXXXXX";
    if (!mkdtemp(tmpl)) Fail("mkdtemp failed");
    std::filesystem::path p(tmpl);
    static const std::filesystem::path removed_at_exit = p;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(removed_at_exit, ec);
    });
    return p;
  }();
  return dir;
}

inline void WriteCredential(const std::string& name, const std::string& content) {
  std::ofstream(CredentialDir() / name) << content;
}

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

// A new key (EC P-384, or RSA 2048) as PEM, private and public, and the key itself for signing.
struct KeyPem {
  std::string private_pem;
  std::string public_pem;
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
};
inline KeyPem MakeKey(bool ec) {
  KeyPem out;
  out.key.reset(ec ? EVP_EC_gen("P-384") : EVP_RSA_gen(2048));
  if (!out.key) Fail("key generation failed");
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, out.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_PUBKEY(pub, out.key.get());
  char* p = nullptr;
  long n = BIO_get_mem_data(priv, &p);
  out.private_pem.assign(p, static_cast<std::size_t>(n));
  n = BIO_get_mem_data(pub, &p);
  out.public_pem.assign(p, static_cast<std::size_t>(n));
  BIO_free(priv);
  BIO_free(pub);
  return out;
}

// The identities a fuzzed task may carry; the first three are checked for in messages and receipts.
inline const std::vector<Identity>& AllIdentities() {
  static const std::vector<Identity> ids = {
      {"email", "jane.fuzz@example.com"},
      {"mrn", "MRN-778-FUZZ"},
      {"name", "Jane Fuzzington"},
      {"phone", "+1 (415) 555-0100"},
      {"salesforce_id", "003000000000001AAA"},
      {"hubspot_id", "5151"},
      {"mailchimp_id", "abc123def4"},
      {"sfmc_contact_key", "ck-fuzz-1"},
      {"fhir_patient_id", "pat-fuzz-1"},
      {"account_id", "acct-fuzz-77"},
      {"device_id", "dev-fuzz-9"},
      {"postal_address", "1 Main St, Oakland CA 94607"},
      {"date_of_birth", "1980-02-29"},
  };
  return ids;
}

class FuzzHttp : public HttpClient {
 public:
  FuzzHttp(FuzzedDataProvider& fdp, std::vector<std::string> header_names)
      : fdp_(fdp), header_names_(std::move(header_names)) {}

  void Send(HttpRequest request, std::function<void(HttpResponse)> done) override {
    {
      std::lock_guard lock(mu_);
      Check(request.url.starts_with("http://") || request.url.starts_with("https://"),
            "a connector sent a request to a URL that is not http(s)");
      queue_.push_back(std::move(done));
    }
    cv_.notify_all();
  }

  // Answers one queued call, waiting up to `wait` for one; false when there was none.
  bool AnswerOne(std::chrono::milliseconds wait) {
    std::function<void(HttpResponse)> done;
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, wait, [this] { return !queue_.empty(); })) return false;
      done = std::move(queue_.front());
      queue_.pop_front();
    }
    done(NextResponse());
    return true;
  }

  void Wake() { cv_.notify_all(); }
  std::mutex& mu() { return mu_; }
  std::condition_variable& cv() { return cv_; }

 private:
  HttpResponse NextResponse() {
    HttpResponse r;
    if (++calls_ > 64 || fdp_.remaining_bytes() == 0) {
      r.error = "fuzz: no more answers";
      return r;
    }
    static constexpr int kStatuses[] = {200, 200, 200, 200, 201, 202, 204, 207, 301, 400, 401, 403,
                                        404, 409, 410, 412, 415, 429, 500, 502, 503, 0,   200, 200};
    r.status = kStatuses[fdp_.ConsumeIntegralInRange<std::size_t>(0, std::size(kStatuses) - 1)];
    if (r.status == 0) {
      r.error = "fuzz: connection refused";
      return r;
    }
    if (fdp_.ConsumeBool()) r.headers.emplace_back("Content-Type", "application/json");
    const auto mask = fdp_.ConsumeIntegral<std::uint16_t>();
    for (std::size_t i = 0; i < header_names_.size() && i < 16; ++i) {
      if (mask & (1u << i)) r.headers.emplace_back(header_names_[i], fdp_.ConsumeRandomLengthString(96));
    }
    r.body = fdp_.ConsumeRandomLengthString(1 << 16);
    return r;
  }

  FuzzedDataProvider& fdp_;
  std::vector<std::string> header_names_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(HttpResponse)>> queue_;
  int calls_ = 0;
};

inline std::string LowerAscii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline void CheckOutcome(const Outcome& o, const TaskInput& input) {
  if (!DumpsStrictly(o.receipt)) {
    std::fprintf(stderr, "receipt: %s\n",
                 o.receipt.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  Check(DumpsStrictly(o.receipt), "the outcome's receipt does not dump as strict UTF-8 (the store would throw)");
  Check(DumpsStrictly(o.records), "the outcome's records do not dump as strict UTF-8 (the store would throw)");
  Check(DumpsStrictly(o.continuation), "the outcome's continuation does not dump as strict UTF-8");
  Check(IsValidUtf8(o.message), "the outcome's message is not valid UTF-8 (PostgreSQL would refuse last_error)");
  Check(o.message.find('\0') == std::string::npos, "the outcome's message holds a NUL byte (PostgreSQL refuses it)");
  const std::string message = LowerAscii(o.message);
  const std::string receipt = LowerAscii(o.receipt.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  for (const auto& id : input.identities) {
    if (id.kind != "email" && id.kind != "mrn" && id.kind != "name") continue;
    const std::string needle = LowerAscii(id.value);
    Check(message.find(needle) == std::string::npos, "an identity value is in the outcome's message");
    Check(receipt.find(needle) == std::string::npos, "an identity value is in the outcome's receipt");
  }
}

// One fuzz input: builds the connector (fresh, so that no cached token or discovery document makes a crash
// depend on earlier inputs), runs one task, and runs it again with its continuation while it is in progress.
inline void RunConnectorOnce(const std::string& type_name, const nlohmann::json& settings,
                             const std::vector<std::string>& header_names, const std::vector<std::string>& categories,
                             const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  FuzzHttp http(fdp, header_names);
  const ConnectorType* type = FindConnectorType(type_name);
  Check(type != nullptr, "unknown connector type");
  static const bool validated = (ValidateSettings(*type, "fuzz", settings), true);  // once: the schema is fixed
  (void)validated;
  ConnectorEnv env{"fuzz", CredentialDir(), &http, categories};
  std::unique_ptr<Connector> connector = type->make(settings, env);

  static constexpr TaskAction kActions[] = {TaskAction::kAccess,  TaskAction::kDelete, TaskAction::kDeidentify,
                                            TaskAction::kLocate,  TaskAction::kCorrect, TaskAction::kOptOut,
                                            TaskAction::kLimit};
  TaskInput input;
  input.request_id = "5b0d4c1e-8f1e-4a57-9a52-1f0e6c3d2a10";
  input.task_id = "0e7c1d2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a";
  input.system = "fuzz";
  input.action = kActions[fdp.ConsumeIntegralInRange<std::size_t>(0, std::size(kActions) - 1)];
  switch (input.action) {
    case TaskAction::kAccess: input.request_type = "access"; break;
    case TaskAction::kCorrect: input.request_type = "correct"; break;
    case TaskAction::kOptOut: input.request_type = "opt_out"; break;
    case TaskAction::kLimit: input.request_type = "limit"; break;
    default: input.request_type = "delete"; break;
  }
  if (!connector->Supports(input.action)) return;
  const auto mask = fdp.ConsumeIntegral<std::uint16_t>();
  const auto& all = AllIdentities();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (mask & (1u << i)) input.identities.push_back(all[i]);
  }
  if (input.identities.empty()) input.identities.push_back(all[0]);
  if (input.action == TaskAction::kCorrect) {
    input.corrections = {{"email", "jane.new@example.com"}, {"postal_address", "2 Elm St, Fresno CA"},
                         {"name", "Jane Q Fuzz"}};
  }
  input.retain_basis = "HIPAA (fuzz)";

  for (int round = 0; round < 3; ++round) {
    std::atomic<int> calls{0};
    Outcome outcome;
    connector->Run(input, [&](Outcome o) {
      {
        std::lock_guard lock(http.mu());
        if (calls.fetch_add(1) == 0) outcome = std::move(o);
      }
      http.Wake();
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (calls.load() == 0) {
      if (std::chrono::steady_clock::now() > deadline) Fail("the connector never called done (10 s)");
      http.AnswerOne(std::chrono::milliseconds(20));
    }
    // Calls still in flight once the task has ended: answer them so that nothing is left holding the job.
    for (int i = 0; i < 256 && http.AnswerOne(std::chrono::milliseconds(0)); ++i) {
    }
    Check(calls.load() == 1, "the connector called done more than once");
    CheckOutcome(outcome, input);
    if (outcome.kind != OutcomeKind::kInProgress) break;
    input.continuation = outcome.continuation;
    input.attempt += 1;
  }
}

}  // namespace rightsd::fuzz
