// Contract followed: ../shared/reference/connector-apis.md section 2.1 -- POST <login>/services/oauth2/token,
// form-urlencoded; JWT bearer: grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT> with
// iss = consumer key, sub = username, aud = login URL, exp about 3 minutes out [S]; client credentials:
// grant_type=client_credentials&client_id&client_secret [V]. Both answer {access_token, instance_url, ...} and no
// refresh token, so a refused token is replaced by running the flow again.
#include "connectors/salesforce/auth.h"

#include <algorithm>
#include <string_view>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "connectors/jose.h"
#include "connectors/salesforce/soql.h"

namespace rightsd::connectors::salesforce {

namespace {

using nlohmann::json;

// Salesforce wants exp "within 3 minutes"; 150 s leaves room for a clock running a little ahead of theirs.
constexpr std::chrono::seconds kAssertionLifetime{150};

// Text from the token endpoint that may reach a task message: control characters flattened, shortened.
std::string Tidy(std::string text) {
  if (text.size() > 200) text = text.substr(0, 200) + "...";
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return text;
}

bool IsTransient(int status) { return status == 0 || status == 408 || status == 429 || status >= 500; }

// scheme://host[:port] and nothing else: where every API call (and the token with it) will go.
bool IsOrigin(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return false;
  }
  return !rest.empty() && std::none_of(rest.begin(), rest.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '/' || c == '?' || c == '#' || c == '@' ||
           c == '\\';
  });
}

}  // namespace

std::string MakeJwtAssertion(const Settings& settings, std::chrono::system_clock::time_point now) {
  const long long exp =
      std::chrono::duration_cast<std::chrono::seconds>((now + kAssertionLifetime).time_since_epoch()).count();
  const json claims = {{"iss", settings.client_id}, {"sub", settings.username}, {"aud", settings.audience}, {"exp", exp}};
  // Salesforce's examples send a header of alg alone.
  return jose::Sign(jose::Algorithm::kRS256, settings.private_key.get(), json::object(), claims);
}

void TokenSource::Get(Callback done) {
  std::unique_lock lock(mu_);
  if (token_) {
    const AccessToken token = *token_;
    lock.unlock();
    done(&token, nullptr);
    return;
  }
  waiters_.push_back(std::move(done));
  if (fetching_) return;
  fetching_ = true;
  lock.unlock();
  Fetch();
}

void TokenSource::Invalidate(const std::string& access_token) {
  std::lock_guard lock(mu_);
  if (token_ && token_->access_token == access_token) token_.reset();
}

void TokenSource::Fetch() {
  HttpRequest request;
  request.method = "POST";
  request.url = settings_->token_url;
  request.timeout = settings_->timeout;
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}};
  if (settings_->auth == AuthFlow::kJwtBearer) {
    const std::string assertion = MakeJwtAssertion(*settings_, std::chrono::system_clock::now());
    if (assertion.empty()) {
      OnAnswer(HttpResponse{0, {}, "", "cannot sign the JWT assertion with private_key_file"});
      return;
    }
    request.body = "grant_type=" + UrlEncode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
                   "&assertion=" + UrlEncode(assertion);
  } else {
    request.body = "grant_type=client_credentials&client_id=" + UrlEncode(settings_->client_id) +
                   "&client_secret=" + UrlEncode(settings_->client_secret);
  }
  settings_->http->Send(std::move(request),
                        [self = shared_from_this()](HttpResponse response) { self->OnAnswer(response); });
}

void TokenSource::OnAnswer(const HttpResponse& response) {
  std::optional<AccessToken> token;
  Outcome failure;
  const json doc = json::parse(response.body, nullptr, false);
  if (response.status == 200 && doc.is_object() && doc.contains("access_token") && doc["access_token"].is_string() &&
      doc.contains("instance_url") && doc["instance_url"].is_string()) {
    std::string instance = doc["instance_url"].get<std::string>();
    while (!instance.empty() && instance.back() == '/') instance.pop_back();
    if (IsOrigin(instance) && !doc["access_token"].get<std::string>().empty()) {
      token = AccessToken{doc["access_token"].get<std::string>(), instance};
    } else {
      failure = Outcome::Retry("getting an access token: Salesforce's answer holds no usable instance_url");
    }
  } else if (response.status == 200) {
    failure = Outcome::Retry("getting an access token: Salesforce's answer is not a token response");
  } else if (response.status == 0) {
    failure = Outcome::Retry(response.error == "timeout"
                                 ? fmt::format("getting an access token: Salesforce did not answer within {} ms",
                                               settings_->timeout.count())
                                 : "getting an access token: " + Tidy(response.error));
  } else {
    // RFC 6749 section 5.2 errors: {"error": "invalid_grant", "error_description": "..."}.
    std::string said;
    if (doc.is_object()) {
      said = doc.value("error", "");
      if (doc.contains("error_description") && doc["error_description"].is_string()) {
        said += (said.empty() ? "" : ": ") + doc["error_description"].get<std::string>();
      }
    }
    const std::string message = fmt::format("getting an access token: Salesforce answered {}{}", response.status,
                                            said.empty() ? "" : " " + Tidy(said));
    if (IsTransient(response.status)) {
      failure = Outcome::Retry(message, ParseRetryAfter(response.Header("Retry-After"), std::chrono::system_clock::now()));
    } else {
      failure = Outcome::Failed(message);
    }
  }

  std::vector<Callback> waiters;
  {
    std::lock_guard lock(mu_);
    fetching_ = false;
    if (token) token_ = token;
    waiters.swap(waiters_);
  }
  for (auto& waiter : waiters) {
    try {
      if (token) {
        waiter(&*token, nullptr);
      } else {
        waiter(nullptr, &failure);
      }
    } catch (...) {
      // A task's continuation threw; the other waiters still get their answer.
    }
  }
}

}  // namespace rightsd::connectors::salesforce
