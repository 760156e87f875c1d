// Outbound HTTP for connectors, behind one small interface so that the implementation (cpprestsdk today; its own
// README says it is in maintenance mode) can change in one file and tests can inject fakes.
// Send never blocks the caller for I/O: `done` is called exactly once, from an I/O thread, with the response or a
// transport error (status 0). Implementations are thread-safe.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rightsd::connectors {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute: scheme://host[:port]/path?query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{30000};
};

struct HttpResponse {
  int status = 0;            // 0: no HTTP answer (connection refused, timeout, TLS failure); see `error`
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string error;         // transport error text, never containing request bodies
  // Case-insensitive header look-up; "" when absent.
  std::string Header(std::string_view name) const;
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual void Send(HttpRequest request, std::function<void(HttpResponse)> done) = 0;
  // For the end of the process: from now on Send refuses (`done` gets status 0, error "shutting down"), requests in
  // flight are cancelled (their `done` gets status 0, error "cancelled"), and the call waits up to `timeout` for
  // every `done` owed to have returned, so that nothing a request holds is still alive when the process exits.
  // Returns how many were still owed at the timeout (0 when all are done). Idempotent.
  virtual std::size_t Shutdown(std::chrono::milliseconds /*timeout*/) { return 0; }
};

// Decides whether a URL may be called: nullopt to allow, else the transport error to report (status 0). The
// daemon's guard is the [outbound] allow-list, so that URLs a peer hands back (a SMART token_endpoint, a
// Salesforce instance_url, an SFMC rest_instance_url) are held to the same list as the configured ones.
using UrlGuard = std::function<std::optional<std::string>(const std::string& url)>;

// The production client (cpprestsdk, asynchronous; one pooled client per scheme+host+port). Redirects are not
// followed, so a guarded URL cannot be bounced elsewhere.
std::unique_ptr<HttpClient> MakeCpprestHttpClient(UrlGuard guard = {});

// Parses a Retry-After value (delta-seconds or an HTTP-date relative to `now`); nullopt when absent or invalid.
std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now);

}  // namespace rightsd::connectors
