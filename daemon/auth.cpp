#include "auth.h"

#include <set>
#include <sstream>

#include <fmt/format.h>

#include "crypto.h"

namespace rightsd {

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kSubmitter: return "submitter";
    case Role::kViewer: return "viewer";
    case Role::kAdmin: return "admin";
    case Role::kAuditor: return "auditor";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view s) {
  for (Role r : {Role::kSubmitter, Role::kViewer, Role::kAdmin, Role::kAuditor}) {
    if (ToString(r) == s) return r;
  }
  return std::nullopt;
}

bool Allows(Role role, Permission p) {
  switch (role) {
    case Role::kAdmin:
      return true;
    case Role::kSubmitter:
      return p == Permission::kCreateRequest || p == Permission::kActOnRequest || p == Permission::kReadRequests ||
             p == Permission::kReadPackage;
    case Role::kViewer:
      return p == Permission::kReadRequests;
    case Role::kAuditor:
      return p == Permission::kReadRequests || p == Permission::kReadAudit;
  }
  return false;
}

TokenStore TokenStore::Parse(std::string_view text) {
  Map by_hash;
  std::set<std::string> names;
  std::istringstream in{std::string(text)};
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    std::istringstream fields(line);
    std::string role_text, name, digest, extra;
    if (!(fields >> role_text)) continue;
    if (!(fields >> name >> digest) || (fields >> extra)) {
      throw TokensFileError(fmt::format("line {}: expected '<role> <name> <sha256 hex>'", line_no));
    }
    auto role = ParseRole(role_text);
    if (!role) {
      throw TokensFileError(
          fmt::format("line {}: unknown role '{}' (submitter, viewer, admin, auditor)", line_no, role_text));
    }
    for (char& c : digest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (digest.size() != 64 || !FromHex(digest)) {
      throw TokensFileError(fmt::format("line {}: the token hash must be 64 hex characters (sha256)", line_no));
    }
    if (!names.insert(name).second) throw TokensFileError(fmt::format("line {}: duplicate name '{}'", line_no, name));
    if (!by_hash.emplace(digest, Principal{*role, name}).second) {
      throw TokensFileError(fmt::format("line {}: the same token hash appears twice", line_no));
    }
  }
  TokenStore store;
  store.state_->map = std::make_shared<const Map>(std::move(by_hash));
  return store;
}

std::shared_ptr<const TokenStore::Map> TokenStore::Current() const {
  std::lock_guard lock(state_->mu);
  return state_->map;
}

void TokenStore::ReplaceWith(const TokenStore& fresh) {
  std::shared_ptr<const Map> map = fresh.Current();
  std::lock_guard lock(state_->mu);
  state_->map = std::move(map);
}

// Why a hash-map look-up is safe against timing attacks although it is not a constant-time compare: what is compared
// (bucket choice, then string equality) is the SHA-256 of the presented token, never the token. How long that takes
// can at most reveal how many leading digest characters of a guess match a stored digest, and steering a guess's
// digest towards a stored one needs SHA-256 preimages; tokens are 256 random bits, so nothing learnt shortens the
// search. The time to hash depends only on the presented token's length.
std::optional<Principal> TokenStore::Authenticate(std::string_view token) const {
  if (token.empty() || token.size() > 512) return std::nullopt;
  const auto by_hash = Current();
  auto it = by_hash->find(Sha256Hex(token));
  if (it == by_hash->end()) return std::nullopt;
  return it->second;
}

std::optional<std::string_view> BearerToken(std::string_view header) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return std::nullopt;
  }
  std::string_view token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty() || token.find(' ') != std::string_view::npos) return std::nullopt;
  return token;
}

}  // namespace rightsd
