// A simulated Mailchimp account (reference/connector-apis.md 2.8) on a loopback RecordingServer, so that a test sees
// every call it was sent. Every call needs HTTP Basic auth with the account's API key as the password (any user
// name); otherwise 401 "API Key Invalid".
//
// Endpoints, under base_url() = http://127.0.0.1:PORT/3.0:
//   GET    /lists/{list_id}                                  the audience; 404 when the account has none by that id
//   POST   /lists/{list_id}/members                          adds a member: 400 "Member Exists", or 400 "Forgotten
//                                                            Email Not Subscribed" after a permanent delete
//   GET    /lists/{list_id}/members/{hash}                   the member; 404 "Resource Not Found"
//   PATCH  /lists/{list_id}/members/{hash}                   email_address, merge_fields, status; 400 "Invalid
//                                                            Resource" for an unknown merge tag or status, 400
//                                                            "Member Exists" for an address another member has
//   DELETE /lists/{list_id}/members/{hash}                   archives (204): the member and its data stay
//   POST   /lists/{list_id}/members/{hash}/actions/delete-permanent   removes the member and its data for good (204)
// {hash} is the lower-case hex MD5 of the lower-cased email; a member's "id" is that hash.
// Errors are application/problem+json {type, title, status, detail, instance} with X-Request-Id = instance; some
// details quote the member's address, as Mailchimp's do.
//
// Connections: a call that arrives while `max_connections` others are being answered is refused with 429 "Too Many
// Requests" ("too many connections"). SetDelay keeps every call open for a while so that overlaps are visible;
// MaxInFlight() is the most calls ever open at once (refused ones included).
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

struct MailchimpPeerOptions {
  std::string api_key = "0123456789abcdef0123456789abcdef-us21";
  std::vector<std::string> audiences = {"a1b2c3d4e5"};
  std::vector<std::string> merge_tags = {"FNAME", "LNAME", "PHONE", "ADDRESS", "BIRTHDAY"};
  int max_connections = 10;
  int port = 0;  // 0: a port of the kernel's choice
};

class MailchimpPeer {
 public:
  explicit MailchimpPeer(MailchimpPeerOptions options = {});
  ~MailchimpPeer();
  MailchimpPeer(const MailchimpPeer&) = delete;
  MailchimpPeer& operator=(const MailchimpPeer&) = delete;

  void Start();
  void Stop();
  RecordingServer& recorder();
  int port() const;
  std::string base_url() const;  // http://127.0.0.1:PORT/3.0
  const MailchimpPeerOptions& options() const;

  // The simulator's own MD5 of the lower-cased email.
  static std::string Hash(const std::string& email);

  // Members. AddMember returns the member's id (its hash).
  std::string AddMember(const std::string& list_id, const std::string& email, nlohmann::json merge_fields = {},
                        const std::string& status = "subscribed");
  std::optional<nlohmann::json> Member(const std::string& list_id, const std::string& hash) const;
  bool Forgotten(const std::string& list_id, const std::string& hash) const;

  int MaxInFlight() const;
  int TooManyConnections() const;  // 429s answered for the connection cap
  void SetDelay(std::chrono::milliseconds delay);
  // The next `calls` authenticated calls answer a problem of `status` with `title` and `detail`.
  void FailNext(int calls, int status, std::string title, std::string detail);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rightsd::test
