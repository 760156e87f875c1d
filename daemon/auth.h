// Bearer tokens and roles. The tokens file holds only SHA-256 hashes of tokens, one "<role> <name> <hex>" a line;
// a presented token is hashed and looked up, so the daemon never holds a token in the clear.
// A TokenStore is immutable after parsing and so safe to share between threads.
#pragma once
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace rightsd {

enum class Role { kSubmitter, kViewer, kAdmin, kAuditor };
enum class Permission {
  kCreateRequest,         // POST /v1/requests
  kActOnRequest,          // acknowledge, verify, extend, deny, cancel
  kReadRequests,          // requests, lists, SLA summary
  kReadIdentityValues,    // identity values in clear in request answers
  kReadAudit,             // the audit trail
  kReadPackage,           // access packages (personal data): admin and submitter
  kOperateEngine,         // retry dead-lettered tasks, close a request with failed tasks: admin only
};

std::string_view ToString(Role role);
std::optional<Role> ParseRole(std::string_view s);
bool Allows(Role role, Permission permission);

struct Principal {
  Role role;
  std::string name;
};

struct TokensFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class TokenStore {
 public:
  // Throws TokensFileError("line N: ...") on a malformed line, an unknown role, a bad hash or a duplicate name.
  static TokenStore Parse(std::string_view text);
  std::optional<Principal> Authenticate(std::string_view token) const;
  std::size_t size() const { return by_hash_.size(); }

 private:
  std::unordered_map<std::string, Principal> by_hash_;  // hex sha256 -> principal
};

// "Bearer <token>" -> token; nullopt when the header is missing or not a bearer credential.
std::optional<std::string_view> BearerToken(std::string_view authorization_header);

}  // namespace rightsd
