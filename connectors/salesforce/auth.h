// OAuth 2.0 for the Salesforce connector: the JWT bearer assertion (RS256, signed with OpenSSL EVP) and a token
// source that fetches an access token and instance_url from <login_url>/services/oauth2/token, caches them for
// every task of the system, and fetches a new one when a task reports the cached one refused (401
// INVALID_SESSION_ID). Concurrent askers while a fetch is under way wait for that one fetch.
//
// Tokens, assertions and secrets never appear in outcomes, messages or logs.
// Thread-safety: TokenSource is safe to share between threads; its callbacks run on the HTTP client's I/O thread,
// or on the caller's thread when the token is cached.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connectors/connector.h"
#include "connectors/salesforce/settings.h"

namespace rightsd::connectors::salesforce {

// The compact JWS of the JWT bearer flow: {"alg":"RS256"} . {iss, sub, aud, exp = now + 150 s} . RS256 signature.
// Empty if OpenSSL cannot sign (the key was checked at start-up, so this is not expected).
std::string MakeJwtAssertion(const Settings& settings, std::chrono::system_clock::time_point now);

struct AccessToken {
  std::string access_token;
  std::string instance_url;  // scheme://host[:port], no trailing slash
};

class TokenSource : public std::enable_shared_from_this<TokenSource> {
 public:
  // Exactly one of the two is set.
  using Callback = std::function<void(const AccessToken* token, const Outcome* failure)>;

  explicit TokenSource(std::shared_ptr<const Settings> settings) : settings_(std::move(settings)) {}

  void Get(Callback done);
  // Forgets `access_token` if it is still the cached one (another task may already have replaced it).
  void Invalidate(const std::string& access_token);

 private:
  void Fetch();
  void OnAnswer(const HttpResponse& response);

  std::shared_ptr<const Settings> settings_;
  mutable std::mutex mu_;
  std::optional<AccessToken> token_;
  bool fetching_ = false;
  std::vector<Callback> waiters_;
};

}  // namespace rightsd::connectors::salesforce
