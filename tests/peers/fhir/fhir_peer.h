// A real FHIR R4 server for tests: tests/peers/fhir/server.js (@medplum/fhir-router over its in-memory repository,
// behind SMART Backend Services auth, paging and a test-control API; see the top of server.js) started as a child
// process on a loopback port of the kernel's choice, and driven through its /_peer control endpoints.
//
// The launcher makes the client's key pair (RSA 2048 for RS384, EC P-384 for ES384), hands the public half to the
// server and keeps the private half for the test to give to the connector (WritePrivateKeyPem) or to sign its own
// assertions with (private_key_pem()).
//
// What the server answers, in short (details and surprises in server.js):
//   GET  /fhir/R4/.well-known/smart-configuration   no auth
//   POST /auth/token                                 private_key_jwt client credentials: RS384/ES384, typ JWT, kid,
//                                                    iss = sub = client_id, aud = token_url(), exp <= 5 min ahead,
//                                                    jti never seen; 401 invalid_client / 400 invalid_request,
//                                                    unsupported_grant_type, invalid_scope otherwise
//   /fhir/R4/...                                     Bearer token required (401 OperationOutcome, code login);
//                                                    searches paged by _count (default page_size) + _offset with
//                                                    Bundle.link self/next; ETag W/"versionId", Last-Modified,
//                                                    Location on create; If-Match enforced on PUT and PATCH (412);
//                                                    PATCH takes application/json-patch+json; DELETE then read: 404;
//                                                    no $everything and no compartment search (404)
//
// Thread-safety: after Start(), every member may be called from any thread.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rightsd::test {

struct FhirPeerOptions {
  std::string client_id = "rightsd-ehr-client";
  std::string kid = "rightsd-test-key-1";
  // "RS384" (RSA 2048 key) or "ES384" (EC P-384 key): the only alg the server then accepts.
  std::string algorithm = "RS384";
  // Entries per search page when the request has no _count.
  int page_size = 20;
  // expires_in of the access tokens.
  int token_lifetime_seconds = 300;
};

class FhirPeer {
 public:
  // Makes the key pair; the server starts in Start().
  explicit FhirPeer(FhirPeerOptions options = {});
  ~FhirPeer();  // Stop()s
  FhirPeer(const FhirPeer&) = delete;
  FhirPeer& operator=(const FhirPeer&) = delete;

  // Starts `node server.js --port 0 ...` and waits (10 s at most) for its listening line. Throws with what the
  // process printed if it does not come, and with how to install it if tests/peers/fhir/node_modules is missing.
  void Start();
  // SIGTERM, wait, SIGKILL after 5 s. Idempotent.
  void Stop();

  int port() const;
  std::string base_url() const;   // http://127.0.0.1:PORT/fhir/R4
  std::string token_url() const;  // http://127.0.0.1:PORT/auth/token
  const FhirPeerOptions& options() const;

  // The client's private key (PKCS#8 PEM), and the same written to `path` with mode 0600.
  const std::string& private_key_pem() const;
  void WritePrivateKeyPem(const std::filesystem::path& path) const;

  // POSTs a transaction or batch Bundle to the server (not recorded); returns its transaction-response /
  // batch-response. Throws if the server answers other than 200.
  nlohmann::json Seed(const nlohmann::json& bundle);
  // Every call the server was sent (token and FHIR calls; never the control calls), in order:
  // {method, path (full, e.g. /fhir/R4/Patient), query (raw, without '?'), headers (lower-case names; authorization
  // is "Bearer <redacted>" for a token the peer issued, "<invalid>" otherwise), body, status}.
  std::vector<nlohmann::json> Calls();
  // Calls whose method is `method` ("" = any) and whose path starts with `path_prefix` (full path, e.g.
  // "/fhir/R4/Patient" or "/auth/token").
  std::vector<nlohmann::json> CallsTo(std::string method, std::string path_prefix);
  void ClearCalls();
  // The next `count` authenticated FHIR calls whose path after /fhir/R4 starts with `path_prefix` (e.g. "/Patient";
  // "" = all) are answered `status` (400-599) with an OperationOutcome -- issue code `code` (default throttled for
  // 429, transient for 5xx, forbidden otherwise) and details.text `text` -- and a Retry-After of `retry_after`
  // seconds unless it is negative. They never reach the FHIR store.
  void FailNext(int count, int status, int retry_after = -1, std::string path_prefix = "", std::string code = "",
                std::string text = "");
  // Just before the next PATCH of `reference` ("Patient/ID") reaches the store, the server changes the resource
  // (a meta.tag urn:rightsd:test:fhir-peer|bumped-N), so that it has a new versionId and the PATCH's If-Match fails.
  void BumpBeforeNextPatch(std::string reference);
  // Every access token issued so far stops working (401).
  void ExpireTokens();
  // Every FHIR answer is delayed by `delay` (0 to stop).
  void Delay(std::chrono::milliseconds delay);
  // A direct read ("Type/id") that bypasses auth and recording: {status, resource} where resource is the resource
  // or, for a status other than 200, the OperationOutcome.
  nlohmann::json Read(std::string reference);

 private:
  struct Response {
    int status = 0;
    std::string body;
  };
  Response Control(const std::string& method, const std::string& path, const std::string& body = "");
  Response ControlOk(const std::string& method, const std::string& path, const std::string& body = "");

  FhirPeerOptions options_;
  std::filesystem::path dir_;  // temporary: public key, server log
  std::string private_key_pem_;
  std::string public_key_pem_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // the write end of the server's stdin
  int port_ = 0;
};

}  // namespace rightsd::test
