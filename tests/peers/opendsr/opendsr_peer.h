// A simulated OpenDSR processor (the protocol formerly called OpenGDPR; see connectors/webhook/webhook.cpp for the
// specification files followed): the processor side of what the webhook connector speaks, on a loopback
// RecordingServer so that a test sees every call it was sent.
//
// Endpoints, under the versioned root base_url() = http://127.0.0.1:PORT/v2:
//   GET    /discovery              the discovery document (api_version, supported identities and request types,
//                                  processor_certificate -> /cert.pem)
//   POST   /requests               creates a request: 201 with the spec's response fields; a repeated
//                                  subject_request_id is answered like a live processor answers it (400 "Subject
//                                  request already exists", or 409 if configured) and creates nothing
//   GET    /requests/{id}          its status; each poll moves it pending -> in_progress -> completed
//   DELETE /requests/{id}          cancels it while pending (202), else 400
//   GET    /results/{id}           an access request's results once completed: {"<category>": [record, ...]}
//   GET    /cert.pem               the processor's (self-signed) certificate
// Errors carry the spec's error object {"error": {"code", "message", "errors": [...]}} and never an identity value.
// Creation and status answers carry X-OpenDSR-Processor-Domain and an X-OpenDSR-Signature over the body; every
// status change is POSTed, signed the same way, to the request's status_callback_urls (or a target set here) --
// loopback URLs only.
//
// Thread-safety: every public member may be called from any thread while the server runs.
#pragma once
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "peers/recording_server.h"

namespace rightsd::test {

struct OpenDsrPeerOptions {
  // The status poll that answers "completed" (1: the first). Earlier polls answer "pending", then "in_progress".
  // 0: polls never complete a request; complete_after or Complete() must.
  int complete_after_polls = 2;
  // Completes a request this long after its creation whatever the polls (checked every 50 ms, callbacks follow).
  std::optional<std::chrono::milliseconds> complete_after;
  std::string processor_domain = "opendsr.peer.test";
  // When set, API calls without "Authorization: Bearer <token>" are answered 401.
  std::string bearer_token;
  std::vector<std::string> request_types = {"access", "portability", "erasure"};
  std::vector<std::string> identity_types = {
      "controller_customer_id", "android_advertising_id", "android_id",          "email",
      "fire_advertising_id",    "ios_advertising_id",     "ios_vendor_id",       "microsoft_advertising_id",
      "microsoft_publisher_id", "roku_publisher_id",      "roku_advertising_id",
  };
  // How a repeated subject_request_id is refused: 400 as the spec's error rule and mParticle do, or 409.
  int duplicate_status = 400;
  bool send_callbacks = true;
  // 0: a port of the kernel's choice. Otherwise that port on 127.0.0.1 (the standalone program's --port).
  int port = 0;
};

struct SentCallback {
  std::string url;
  std::string body;
  std::string signature;
  std::string request_status;
  int status = 0;  // the controller's answer; 0 when it could not be reached, -1 when not a loopback URL
};

class OpenDsrPeer {
 public:
  explicit OpenDsrPeer(OpenDsrPeerOptions options = {});
  ~OpenDsrPeer();
  OpenDsrPeer(const OpenDsrPeer&) = delete;
  OpenDsrPeer& operator=(const OpenDsrPeer&) = delete;

  void Start();
  void Stop();  // also ends any handler sleeping in SetDelay
  RecordingServer& recorder();
  int port() const;
  std::string base_url() const;  // the versioned root: http://127.0.0.1:PORT/v2

  // The RSA-2048 key made at construction.
  std::string PublicKeyPem() const;
  std::string CertificatePem() const;  // self-signed for processor_domain (subjectAltName DNS)
  void WritePublicKeyPem(const std::filesystem::path& path) const;
  void WriteCertificatePem(const std::filesystem::path& path) const;
  std::string Sign(std::string_view body) const;  // base64 RSA-SHA256 of body, as X-OpenDSR-Signature carries it
  const std::string& processor_domain() const;

  // Personal data the processor holds. Access results return the records whose identity matches one of the
  // request's identities (raw, or hashed as the request's identity_format says); erasure removes them.
  void SeedRecord(const std::string& identity_type, const std::string& identity_value, const std::string& category,
                  nlohmann::json record);
  std::size_t HeldRecords(const std::string& identity_type, const std::string& identity_value) const;

  // Faults. FailNext: the next `calls` API calls answer `status` (503 or 429, say) with "Retry-After: <seconds>"
  // (none when negative). RejectNextSubmit: the next POST /requests answers `status` with `message`. SetDelay:
  // every handler sleeps this long first (0 to stop).
  void FailNext(int calls, int status = 503, int retry_after_seconds = 1);
  void RejectNextSubmit(int status, std::string message);
  void SetDelay(std::chrono::milliseconds delay);

  // Requests held. CreatedCount counts distinct subject_request_ids ever created: the proof that a repeated
  // submission had no second effect.
  int CreatedCount() const;
  int SubmitCount() const;  // POST /requests calls, refused ones included
  // How many times each subject_request_id was created (answered 201): the side effect a crashed and re-run task
  // must not repeat. More than 1 only if the processor lost the request in between (Forget).
  std::map<std::string, int> Creations() const;
  std::optional<std::string> StatusOf(const std::string& id) const;
  std::optional<nlohmann::json> RequestOf(const std::string& id) const;  // the body as submitted
  int PollsOf(const std::string& id) const;
  void Complete(const std::string& id);
  void Cancel(const std::string& id);
  void Forget(const std::string& id);  // as a processor that lost it; it still counts in CreatedCount

  // Status callbacks. SetCallbackTarget overrides every request's status_callback_urls ("" to stop overriding).
  void SetCallbackTarget(std::string url);
  std::vector<SentCallback> Callbacks() const;
  bool WaitForCallbacks(std::size_t count, std::chrono::milliseconds limit) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rightsd::test
