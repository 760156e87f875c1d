// Bearer tokens and roles. The tokens file holds only SHA-256 hashes of tokens, one "<role> <name> <hex>" a line;
// a presented token is hashed and looked up, so the daemon never holds a token in the clear.
// A TokenStore is safe to share between threads; ReplaceWith swaps its whole table at once (SIGHUP reload).
#pragma once
#include <memory>
#include <mutex>
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
  std::size_t size() const { return Current()->size(); }
  // Puts `fresh`'s tokens in place of these -- for this store and every copy of it -- while other threads
  // authenticate: on SIGHUP a token taken out of the tokens file stops working without a restart.
  void ReplaceWith(const TokenStore& fresh);

 private:
  using Map = std::unordered_map<std::string, Principal>;  // hex sha256 -> principal
  struct State {
    std::mutex mu;
    std::shared_ptr<const Map> map = std::make_shared<const Map>();
  };
  std::shared_ptr<const Map> Current() const;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// "Bearer <token>" -> token; nullopt when the header is missing or not a bearer credential.
std::optional<std::string_view> BearerToken(std::string_view authorization_header);

}  // namespace rightsd
