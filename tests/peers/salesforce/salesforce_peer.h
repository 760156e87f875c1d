// A simulated Salesforce org (CRM + the Health Cloud objects a test declares) on a loopback RecordingServer, so that
// a test sees every call it was sent. It answers in the shapes, status codes and limits of
// ../shared/reference/connector-apis.md sections 2.1-2.3, including the unpleasant ones.
//
// One server is both the login host and the instance: base_url() is what the connector's login_url names, and the
// token answers give it as instance_url.
//   POST   /services/oauth2/token                        JWT bearer (RS256 assertion checked against the public
//                                                         half of the key made here: iss, sub, aud, exp at most
//                                                         3 minutes ahead) and client credentials; 400
//                                                         {error, error_description} otherwise
//   GET    /services/data/vXX.X/query?q=SOQL              SOQL (see soql_engine.h) -> {totalSize, done,
//                                                         nextRecordsUrl, records}; batch_size records a batch
//                                                         (or fewer, if Sforce-Query-Options: batchSize asks)
//   GET    /services/data/vXX.X/query/<locator>-<offset>  the next batch
//   GET|PATCH|DELETE /services/data/vXX.X/sobjects/{Type}/{Id}   204 for PATCH/DELETE; 404 NOT_FOUND or
//                                                         ENTITY_IS_DELETED
//   POST   /services/data/vXX.X/sobjects/{Type}           201 {id, success, errors}
//   DELETE /services/data/vXX.X/composite/sobjects?ids=&allOrNone=   per-record results in request order; more
//                                                         than 200 ids: 400 EXCEEDED_ID_LIMIT
//   POST   /services/data/vXX.X/composite                 subrequests (POST/PATCH sobjects) with @{ref.id};
//                                                         allOrNone rolls everything back on a failure
// Errors are [{"message", "errorCode", "fields"}]. Every API answer carries Sforce-Limit-Info:
// api-usage=<used>/<max>; each authenticated call counts one, and once the count reaches the limit calls get 403
// REQUEST_LIMIT_EXCEEDED. An unknown, expired or revoked token gets 401 INVALID_SESSION_ID.
//
// Thread-safety: every public member may be called from any thread while the server runs.
#pragma once
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peers/recording_server.h"

namespace rightsd::test {

struct SalesforcePeerOptions {
  std::string consumer_key = "3MVG9rightsd.test.consumer.key";
  std::string username = "rightsd-integration@example.org.test";
  std::string client_secret = "rightsd-test-consumer-secret";
  // The JWT aud the token endpoint wants. "": base_url(), the login URL the connector is configured with.
  std::string audience;
  // false: the integration user has not been pre-approved for the app ("user hasn't approved this consumer").
  bool user_approved = true;
  // Records per query batch (Salesforce: 2,000). Small, so that paging is exercised.
  int batch_size = 200;
  long long daily_limit = 100000;
  long long api_used = 0;
  // Sessions end this long after their token was issued (the org's session timeout). Unset: never.
  std::optional<std::chrono::seconds> token_lifetime;
  // 0: a port of the kernel's choice. Otherwise that port on 127.0.0.1 (the standalone program's --port).
  int port = 0;
};

class SalesforcePeer {
 public:
  explicit SalesforcePeer(SalesforcePeerOptions options = {});
  ~SalesforcePeer();
  SalesforcePeer(const SalesforcePeer&) = delete;
  SalesforcePeer& operator=(const SalesforcePeer&) = delete;

  void Start();
  void Stop();  // also ends any handler sleeping in SetDelay
  RecordingServer& recorder();
  int port() const;
  std::string base_url() const;  // http://127.0.0.1:PORT: login URL and instance URL
  const SalesforcePeerOptions& options() const;

  // The RSA-2048 key pair made at construction: the app's certificate holds the public half; the connector signs
  // its assertions with the private half.
  std::string PrivateKeyPem() const;
  std::string PublicKeyPem() const;
  void WritePrivateKeyPem(const std::filesystem::path& path) const;

  // --- the org's data ---
  // Declares an sObject type and fields beyond the built-in standard ones (e.g. HealthCondition); a field written
  // by Insert or PATCH is declared by that.
  void DeclareType(const std::string& type, const std::vector<std::string>& fields);
  // Makes `field` unknown to `type` (INVALID_FIELD), e.g. Account.IsPersonAccount in an org without person accounts.
  void HideField(const std::string& type, const std::string& field);
  // Adds a record and returns its 18-character id.
  std::string Insert(const std::string& type, nlohmann::json fields);
  // A live record's fields (with Id), nullopt when it does not exist or is in the Recycle Bin.
  std::optional<nlohmann::json> Record(const std::string& id) const;
  bool InRecycleBin(const std::string& id) const;
  std::vector<nlohmann::json> Records(const std::string& type) const;  // live ones, in insertion order
  std::size_t Count(const std::string& type) const;                    // live ones

  // --- faults ---
  // The next `calls` API calls (under /services/data, whose path starts with `path_prefix` when one is given)
  // answer `status`: 403 -> REQUEST_LIMIT_EXCEEDED, 503 -> SERVER_UNAVAILABLE, 429, 500 -> UNKNOWN_EXCEPTION; with
  // "Retry-After: <seconds>" when retry_after_seconds >= 0.
  void FailNext(int calls, int status, int retry_after_seconds = -1, std::string path_prefix = "");
  // A collections delete of `id` reports this per-record error instead of deleting it ("" to stop).
  void FailRecordDelete(const std::string& id, std::string status_code, std::string message);
  // A PATCH of `id` (alone or inside a composite call) answers 400 with this error ("" to stop).
  void FailRecordWrite(const std::string& id, std::string error_code, std::string message);
  void SetDelay(std::chrono::milliseconds delay);  // every handler sleeps this long first (0 to stop)
  void ExpireTokens();                             // every token issued so far stops working
  void ExpireTokensAfterCalls(int calls);          // ... after this many more authenticated API calls
  void SetApiUsage(long long used, long long max);

  // --- what happened ---
  long long ApiUsed() const;
  int TokenRequests() const;  // POSTs to the token endpoint, refused ones included
  int TokensIssued() const;
  std::vector<std::string> Queries() const;  // the SOQL of every query call, as received
  std::vector<nlohmann::json> TokenClaims() const;  // the claims of every JWT assertion received

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rightsd::test
