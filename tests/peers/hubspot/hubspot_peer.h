// A simulated HubSpot account (reference/connector-apis.md 2.7) on a loopback RecordingServer, so that a test sees
// every call it was sent. The private app's bearer token is required on every call (401 otherwise).
//
// Endpoints, under base_url() = http://127.0.0.1:PORT:
//   POST   /crm/v3/objects/contacts/search       filterGroups (at most 5) x filters (at most 6), operator EQ (email
//                                                compared case-insensitively), properties, limit (at most 200),
//                                                after; {total, results:[{id, properties, createdAt, updatedAt,
//                                                archived}], paging.next.after}. No rate headers.
//   GET    /crm/v3/objects/contacts/{id}          ?properties=a,b&archived=false; 404 when absent or archived
//   PATCH  /crm/v3/objects/contacts/{id}          {properties}: 200; unknown property 400 VALIDATION_ERROR; an email
//                                                another contact has 409 CONFLICT; 404 when absent
//   DELETE /crm/v3/objects/contacts/{id}          archives only (204): the contact is kept
//   POST   /crm/v3/objects/contacts/gdpr-delete   {objectId} or {objectId: email, idProperty: "email"}: permanent
//                                                delete, 204; an unknown id 404; an unknown email is blocklisted
// Errors: {status: "error", message, correlationId, category[, errors]}.
//
// Limits, as HubSpot counts them: every authenticated call counts in the rolling burst window (`burst_max` calls per
// `interval`) and the daily counter; search calls also in a one-second window of `search_per_second`. A call
// beyond a limit is answered 429 {status, message, errorType: "RATE_LIMIT", correlationId, policyName:
// TEN_SECONDLY_ROLLING | DAILY | SECONDLY, requestId} and not counted. Answers other than search's carry
// X-HubSpot-RateLimit-Max, -Remaining, -Interval-Milliseconds, -Daily and -Daily-Remaining. Stats() tells how full
// the window ever was when a call arrived and how many calls were refused.
//
// Thread-safety: every public member may be called from any thread while the server runs.
#pragma once
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "peers/recording_server.h"

namespace rightsd::test {

struct HubspotPeerOptions {
  std::string token = "pat-na1-test-token";
  int burst_max = 100;
  std::chrono::milliseconds interval{10000};
  long long daily_max = 250000;
  int search_per_second = 5;
  // Properties a PATCH may set; others are refused like an undefined property.
  std::vector<std::string> defined_properties = {
      "email",   "firstname", "lastname", "phone",       "address",          "city",
      "state",   "zip",       "company",  "jobtitle",    "hs_analytics_source", "lifecyclestage",
      "ccpa_do_not_sell", "ccpa_limit_spi", "hs_email_optout"};
  int port = 0;  // 0: a port of the kernel's choice
};

struct HubspotRateStats {
  int accepted = 0;             // calls counted
  int max_in_window = 0;        // the most counted calls any burst window held when a call arrived (that call included)
  int max_searches_in_second = 0;
  int refused_burst = 0;        // 429 TEN_SECONDLY_ROLLING
  int refused_secondly = 0;     // 429 SECONDLY
  int refused_daily = 0;        // 429 DAILY
  long long daily_used = 0;
};

class HubspotPeer {
 public:
  explicit HubspotPeer(HubspotPeerOptions options = {});
  ~HubspotPeer();
  HubspotPeer(const HubspotPeer&) = delete;
  HubspotPeer& operator=(const HubspotPeer&) = delete;

  void Start();
  void Stop();
  RecordingServer& recorder();
  int port() const;
  std::string base_url() const;
  const HubspotPeerOptions& options() const;

  // Contacts. AddContact returns the new contact's id (large numbers, as HubSpot's are).
  std::string AddContact(nlohmann::json properties);
  std::optional<nlohmann::json> Contact(const std::string& id) const;  // its properties; nullopt once deleted
  bool Archived(const std::string& id) const;
  std::size_t ContactCount() const;  // archived ones included, permanently deleted ones not
  bool Blocklisted(const std::string& email) const;

  HubspotRateStats Stats() const;
  void SetDailyUsed(long long used);
  // The next `calls` authenticated calls answer `status` with `body` (not counted against any limit).
  void FailNext(int calls, int status, nlohmann::json body);
  void SetDelay(std::chrono::milliseconds delay);  // every call waits this long after being counted

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rightsd::test
