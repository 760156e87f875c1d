// A simulated Salesforce Marketing Cloud Engagement tenant: the auth host and the REST host of one account, on one
// loopback RecordingServer, so that a test sees every call the sfmc connector sent (connectors/sfmc/sfmc.cpp names
// the contract, reference/connector-apis.md section 2.9).
//
// Endpoints (base_url() = http://127.0.0.1:PORT serves as both hosts; the token answer's rest_instance_url is
// base_url() + "/", with the trailing slash Marketing Cloud sends):
//   POST /v2/token                                     client credentials in a JSON body -> {access_token,
//                                                      token_type:"Bearer", expires_in, scope, soap_instance_url,
//                                                      rest_instance_url}; 400/401 {error, error_description}
//   POST /contacts/v1/addresses/email/search           {channelAddressList, maximumCount} ->
//                                                      channelAddressResponseEntities[{channelAddress,
//                                                      contactKeyDetails:[{contactKey, createDate}] or [{}]}]
//   POST /contacts/v1/contacts/actions/delete?type=keys {values, DeleteOperationType:"ContactAndAttributes"} ->
//                                                      {operationInitiated, operationID, requestServiceMessageID,
//                                                      responseDateTime, hasErrors, resultMessages, serviceMessageID}
//   GET  /contacts/v1/contacts/actions/delete/status?operationID=N
//                                                      {operation:{operationID, status, ...},
//                                                      backgroundOperationsSummary:[{backgroundOperationStatusID}]
//                                                      once Completed, numberofRestorableDays, ...}; an unknown id
//                                                      answers 404 (a choice: the contract does not say)
//   POST /contacts/v1/operations/delete/{id}/retry     restarts a Failed or CompletedWithErrors operation
//   POST /contacts/v1/contacts/actions/delete/configSettings  {items:[{settingKey:"SuppressionRestoreUntilDays",
//                                                      value}]}
//   POST /hub/v1/dataevents/key:{key}/rowset           upserts [{keys, values}] into a data extension added here
// An operation answers Queued, then InProcess, then Completed -- by number of polls, or by time when both
// durations are set; its contacts are gone when the delete phase (backgroundOperationsSummary) reports Completed.
// REST calls need "Authorization: Bearer <token>" with a token this peer issued and that has not expired: else 401
// {"documentation", "errorcode":0, "message":"Not Authorized"}. Injected 429s carry {"message":"Rate limit
// exceeded","errorcode":50100,"retryAfter":N} and Retry-After: N. No answer holds an identity value except the email
// search's, whose job that is.
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

struct SfmcPeerOptions {
  std::string client_id = "sfmc-test-client-id";
  std::string client_secret = "sfmc-test-client-secret";
  // When set, a token request naming another account_id is refused (401 invalid_client); one naming none is served.
  std::string account_id;
  std::chrono::seconds token_lifetime{1200};  // Marketing Cloud's 20 minutes
  // Status polls that answer Queued, then InProcess; the next one answers Completed.
  int queued_polls = 1;
  int in_process_polls = 1;
  // When both are set, time since submission decides instead of the number of polls.
  std::optional<std::chrono::milliseconds> queued_for;
  std::optional<std::chrono::milliseconds> in_process_for;
  // Polls of a Completed operation whose backgroundOperationsSummary still says Processing (the restore window).
  int delete_phase_polls = 0;
  // false: Completed answers carry no backgroundOperationsSummary at all.
  bool delete_phase_summary = true;
  // 0: a port of the kernel's choice; otherwise that port on 127.0.0.1 (the standalone program's --port).
  int port = 0;
  // How long an idle kept-alive connection stays open. Stop waits up to this long for one, so tests keep it short.
  int keep_alive_seconds = 1;
};

class SfmcPeer {
 public:
  explicit SfmcPeer(SfmcPeerOptions options = {});
  ~SfmcPeer();
  SfmcPeer(const SfmcPeer&) = delete;
  SfmcPeer& operator=(const SfmcPeer&) = delete;

  void Start();
  void Stop();
  RecordingServer& recorder();
  int port() const;
  std::string base_url() const;  // http://127.0.0.1:PORT, both the auth host and the REST host
  const SfmcPeerOptions& options() const;
  void WriteClientSecret(const std::filesystem::path& path) const;

  // The account's contacts and data extensions.
  void SeedContact(const std::string& contact_key, const std::string& email);
  bool HasContact(const std::string& contact_key) const;
  std::size_t ContactCount() const;
  void AddDataExtension(const std::string& external_key, std::vector<std::string> primary_key_fields);
  // Rows held, each as one object of keys and values together.
  std::vector<nlohmann::json> Rows(const std::string& external_key) const;

  // Faults, counted over calls whose path starts with path_prefix ("" = every REST call, the token endpoint not
  // included; "/v2/token" to hit it). RateLimitNext: 429 with retryAfter and Retry-After (none when negative).
  // FailNext: `status` with a Marketing Cloud error body.
  void RateLimitNext(int calls, int retry_after_seconds, std::string path_prefix = "", int errorcode = 50100);
  void FailNext(int calls, int status = 500, std::string path_prefix = "");
  void ExpireTokens();  // every token issued so far is refused from now on

  // Operations. ForceStatus: the operation answers `status` (e.g. "Failed", "Cancelled") until restarted.
  int TokenRequests() const;
  int DeleteSubmits()
      const;  // POST .../actions/delete calls the handler saw, refused ones included (not injected faults)
  std::vector<long long> OperationIds() const;
  std::optional<std::string> StatusOf(long long operation_id) const;  // as the last poll answered it
  int PollsOf(long long operation_id) const;
  std::vector<std::string> KeysOf(long long operation_id) const;
  void ForceStatus(long long operation_id, const std::string& status);
  void ForgetOperation(long long operation_id);
  std::optional<std::string> ConfigSetting(const std::string& key) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rightsd::test
