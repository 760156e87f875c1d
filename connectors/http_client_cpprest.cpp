// The production HttpClient on cpprestsdk, and the two helpers declared beside the interface (HttpResponse::Header,
// ParseRetryAfter), so that everything HTTP-shaped about connectors lives in one file.
//
// Clients: one web::http::client::http_client per scheme://host:port, created on first use and kept for the life of
// this object (connectors talk to a handful of fixed origins; each cached client keeps its own connection pool).
//
// Timeouts: cpprest's http_client_config::set_timeout is an inactivity timer -- it is re-armed whenever bytes move --
// so a peer that trickles a byte every few seconds would hold a request forever, and it is fixed per client, so
// honouring per-request timeouts with it would need one client (and one pool) per distinct timeout. Instead every
// client gets a long backstop timeout and each request gets its own hard deadline: a steady_timer on cpprest's own
// io_service (no extra thread) that cancels the request through a pplx cancellation token. A request that ends
// because of that deadline is reported as status 0, error "timeout".
//
// Redirects are not followed: a connector must see a 3xx rather than send its Authorization header somewhere else.
//
// Shutdown: every `done` the client owes is counted, and every request in flight keeps its cancellation source in
// one registry, so that Shutdown can cancel them all and wait until each `done` has returned. Without it, what a
// request still holds at exit (cpprest's request context, the connector's job behind `done`) is never freed.
//
// cpprest headers stay in this .cpp file: its macro U collides with fmt (see docs/stack-notes.md).
#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

// After the standard headers: http_client.h uses std::optional and std::string_view without including them.
#include "connectors/http_client.h"

#include <boost/asio/steady_timer.hpp>
#include <cpprest/http_client.h>
#include <pplx/threadpool.h>

namespace rightsd::connectors {

namespace {

namespace http = web::http;
using namespace std::chrono_literals;

// Longest deadline a request may ask for; also every cached client's own (inactivity) timeout, so that cpprest's
// timer never fires before ours.
constexpr std::chrono::milliseconds kMaxRequestTimeout = std::chrono::hours(1);

// Threads of cpprest's shared pool, which runs every socket completion, timer and pplx continuation of the client.
// None of them blocks (connects, reads, writes and our deadlines are all asynchronous), so the number in flight does
// not need threads: the pool only needs enough to keep both cores busy with completion handlers, and a little slack
// so that a callback that briefly waits on a connector's or the dispatcher's lock does not hold up all other I/O.
// 4 = 2 cores x 2. Asio adds one thread of its own for name resolution (getaddrinfo, one at a time, off the pool),
// so the client costs 5 threads whatever the load.
constexpr std::size_t kIoThreads = 4;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

boost::asio::io_service& IoService() { return crossplat::threadpool::shared_instance().service(); }

// Calls `done` on an I/O thread. An exception escaping `done` would land in a pplx task nobody observes (or in
// asio's run loop); it is a bug in the caller, and swallowing it keeps the I/O threads alive.
void Deliver(const std::function<void(HttpResponse)>& done, HttpResponse response) {
  try {
    done(std::move(response));
  } catch (...) {
  }
}

// What a client owes (see Shutdown at the top). Shared with the requests, which may end after the client is gone.
struct Outstanding {
  std::mutex mu;
  std::condition_variable cv;
  bool shut = false;       // Shutdown has begun: Send refuses
  std::size_t owed = 0;    // `done` callbacks not yet returned
  std::uint64_t next_id = 0;
  std::map<std::uint64_t, pplx::cancellation_token_source> in_flight;

  // Counts one `done` owed (a refusal posted to an I/O thread).
  void Owe() {
    std::lock_guard lock(mu);
    ++owed;
  }
  // Counts one `done` owed and registers a request's cancellation source, in one step so that a Shutdown cannot
  // miss it; nullopt (counted, not registered) once Shutdown has begun.
  std::optional<std::uint64_t> OweRequest(const pplx::cancellation_token_source& cancel) {
    std::lock_guard lock(mu);
    ++owed;
    if (shut) return std::nullopt;
    const std::uint64_t id = next_id++;
    in_flight.emplace(id, cancel);
    return id;
  }
  // After a `done` has returned.
  void Paid(std::optional<std::uint64_t> id) {
    {
      std::lock_guard lock(mu);
      if (id) in_flight.erase(*id);
      --owed;
    }
    cv.notify_all();
  }
};

void DeliverLater(const std::shared_ptr<Outstanding>& outstanding, std::function<void(HttpResponse)> done,
                  std::string error) {
  outstanding->Owe();
  HttpResponse response;
  response.error = std::move(error);
  // The interface promises an I/O thread: calling back inside Send could re-enter a caller holding a lock.
  IoService().post([outstanding, done = std::move(done), response = std::move(response)]() mutable {
    Deliver(done, std::move(response));
    outstanding->Paid(std::nullopt);
  });
}

// One request in flight: its callback, its deadline and the token the deadline (or Shutdown) cancels.
struct InFlight {
  InFlight(std::function<void(HttpResponse)> d, std::shared_ptr<Outstanding> o)
      : done(std::move(d)), outstanding(std::move(o)), timer(IoService()) {}
  // The one way `done` is called, so that "exactly once" holds whichever path ends the request.
  void Finish(HttpResponse response) {
    if (finished.exchange(true)) return;
    Deliver(done, std::move(response));
    outstanding->Paid(id);
  }
  std::function<void(HttpResponse)> done;
  std::shared_ptr<Outstanding> outstanding;
  std::optional<std::uint64_t> id;  // in outstanding->in_flight; set before the request starts
  std::atomic<bool> finished{false};
  pplx::cancellation_token_source cancel;
  std::atomic<bool> deadline_passed{false};
  boost::asio::steady_timer timer;
};

std::string DescribeFailure(const std::exception& e) {
  std::string what = e.what();
  if (what.empty()) what = "unknown transport error";
  return "transport error: " + what;
}

class CpprestHttpClient final : public HttpClient {
 public:
  explicit CpprestHttpClient(UrlGuard guard) : guard_(std::move(guard)) {}

  std::size_t Shutdown(std::chrono::milliseconds timeout) override {
    std::vector<pplx::cancellation_token_source> cancels;
    {
      std::lock_guard lock(outstanding_->mu);
      outstanding_->shut = true;
      for (const auto& [id, cancel] : outstanding_->in_flight) cancels.push_back(cancel);
    }
    // Outside the lock: cancel() runs cpprest's cancellation callbacks at once, and a request may end on the spot.
    for (auto& cancel : cancels) cancel.cancel();
    std::unique_lock lock(outstanding_->mu);
    outstanding_->cv.wait_for(lock, timeout, [this] { return outstanding_->owed == 0; });
    return outstanding_->owed;
  }

  void Send(HttpRequest request, std::function<void(HttpResponse)> done) override {
    if (guard_) {
      if (auto refused = guard_(request.url)) {
        DeliverLater(outstanding_, std::move(done), *refused);
        return;
      }
    }
    std::optional<web::uri> uri;
    try {
      uri.emplace(request.url);
    } catch (const std::exception&) {
      // The message of uri_exception quotes the URL; URLs may carry ids we do not want in error text.
      DeliverLater(outstanding_, std::move(done), "invalid url");
      return;
    }
    if (!(uri->scheme() == "http" || uri->scheme() == "https") || uri->host().empty()) {
      DeliverLater(outstanding_, std::move(done), "invalid url: only absolute http and https urls are supported");
      return;
    }

    auto in_flight = std::make_shared<InFlight>(std::move(done), outstanding_);
    in_flight->id = outstanding_->OweRequest(in_flight->cancel);
    if (!in_flight->id) {
      HttpResponse response;
      response.error = "shutting down";
      IoService().post([in_flight, response = std::move(response)]() mutable {
        in_flight->Finish(std::move(response));
      });
      return;
    }
    try {
      http::http_request message(request.method);
      message.set_request_uri(uri->resource());
      std::string content_type;
      for (auto& [name, value] : request.headers) {
        // set_body takes the content type as an argument; passing it there keeps cpprest from adding its own.
        if (EqualsIgnoreCase(name, "Content-Type")) {
          content_type = value;
        } else {
          message.headers().add(name, value);
        }
      }
      if (!request.body.empty() || !content_type.empty()) {
        message.set_body(std::move(request.body), content_type.empty() ? "application/octet-stream" : content_type);
      }

      // Armed before the request starts, so that the only later touch of the timer is the cancel() below.
      in_flight->timer.expires_after(std::clamp<std::chrono::milliseconds>(request.timeout, 1ms, kMaxRequestTimeout));
      in_flight->timer.async_wait([weak = std::weak_ptr<InFlight>(in_flight)](const boost::system::error_code& ec) {
        if (ec) return;  // cancelled: the request finished first
        if (auto live = weak.lock()) {
          live->deadline_passed = true;
          live->cancel.cancel();
        }
      });

      ClientFor(*uri)
          ->request(message, in_flight->cancel.get_token())
          .then([](http::http_response response) {
            auto out = std::make_shared<HttpResponse>();
            out->status = response.status_code();
            for (const auto& [name, value] : response.headers()) out->headers.emplace_back(name, value);
            // Raw bytes: extract_string would insist on a text content type and transcode by charset.
            return response.extract_vector().then([out](std::vector<unsigned char> body) {
              out->body.assign(body.begin(), body.end());
              return std::move(*out);
            });
          })
          .then([in_flight](pplx::task<HttpResponse> finished) {
            HttpResponse response;
            try {
              response = finished.get();
            } catch (const http::http_exception& e) {
              response = HttpResponse{};
              response.error = e.error_code() == std::errc::timed_out ? "timeout" : DescribeFailure(e);
            } catch (const pplx::task_canceled&) {
              response = HttpResponse{};
              response.error = "cancelled";
            } catch (const std::exception& e) {
              response = HttpResponse{};
              response.error = DescribeFailure(e);
            }
            // Whatever cpprest reports for a connection we closed (cancelled, aborted, ...), it was our deadline.
            // Likewise for one Shutdown cancelled.
            if (response.status == 0 && in_flight->deadline_passed) {
              response.error = "timeout";
            } else if (response.status == 0 && in_flight->cancel.get_token().is_canceled()) {
              response.error = "cancelled";
            }
            in_flight->timer.cancel();
            in_flight->Finish(std::move(response));
          });
    } catch (const std::exception& e) {
      // cpprest refused the request before any I/O (e.g. a method token it cannot send).
      in_flight->cancel.cancel();
      HttpResponse response;
      response.error = DescribeFailure(e);
      IoService().post([in_flight, response = std::move(response)]() mutable {
        in_flight->timer.cancel();
        in_flight->Finish(std::move(response));
      });
    }
  }

 private:
  std::shared_ptr<http::client::http_client> ClientFor(const web::uri& uri) {
    int port = uri.port();
    if (port <= 0) port = uri.scheme() == "https" ? 443 : 80;
    std::string origin = uri.scheme() + "://" + uri.host() + ":" + std::to_string(port);
    std::lock_guard lock(mu_);
    auto& client = clients_[origin];
    if (!client) {
      http::client::http_client_config config;
      config.set_timeout(kMaxRequestTimeout);
      config.set_max_redirects(0);
      web::uri_builder base;
      base.set_scheme(uri.scheme()).set_host(uri.host()).set_port(port);
      client = std::make_shared<http::client::http_client>(base.to_uri(), config);
    }
    return client;
  }

  const UrlGuard guard_;
  const std::shared_ptr<Outstanding> outstanding_ = std::make_shared<Outstanding>();
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<http::client::http_client>> clients_;
};

// --- Retry-After ------------------------------------------------------------------------------------------------

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kShortDays = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDays = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                                       "Friday", "Saturday", "Sunday"};
// Anything longer is not a plausible back-off and would overflow milliseconds arithmetic sooner or later.
constexpr std::uint64_t kMaxDeltaSeconds = 100ULL * 365 * 24 * 3600;

// A cursor over the header value; every Take* consumes on success only.
struct Scanner {
  std::string_view rest;

  bool Take(std::string_view literal) {
    if (!rest.starts_with(literal)) return false;
    rest.remove_prefix(literal.size());
    return true;
  }
  std::optional<int> TakeDigits(std::size_t count) {
    if (rest.size() < count) return std::nullopt;
    int value = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(rest[i]))) return std::nullopt;
      value = value * 10 + (rest[i] - '0');
    }
    rest.remove_prefix(count);
    return value;
  }
  std::optional<int> TakeMonth() {
    for (std::size_t i = 0; i < kMonths.size(); ++i) {
      if (Take(kMonths[i])) return static_cast<int>(i) + 1;
    }
    return std::nullopt;
  }
  template <std::size_t N>
  bool TakeOneOf(const std::array<std::string_view, N>& words) {
    return std::any_of(words.begin(), words.end(), [this](std::string_view w) { return Take(w); });
  }
};

std::optional<std::chrono::system_clock::time_point> MakeTime(int year, int month, int day, int hour, int minute,
                                                              int second) {
  std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                                  std::chrono::day{static_cast<unsigned>(day)}};
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  return std::chrono::sys_days{ymd} + std::chrono::hours{hour} + std::chrono::minutes{minute} +
         std::chrono::seconds{second};
}

// hh:mm:ss
bool TakeTimeOfDay(Scanner& s, int& hour, int& minute, int& second) {
  auto h = s.TakeDigits(2);
  if (!h || !s.Take(":")) return false;
  auto m = s.TakeDigits(2);
  if (!m || !s.Take(":")) return false;
  auto sec = s.TakeDigits(2);
  if (!sec) return false;
  hour = *h;
  minute = *m;
  second = *sec;
  return true;
}

// The three forms RFC 9110 section 5.6.7 obliges a recipient to accept: IMF-fixdate (what senders must produce),
// and the obsolete RFC 850 and asctime forms.
std::optional<std::chrono::system_clock::time_point> ParseHttpDate(std::string_view text) {
  int hour = 0, minute = 0, second = 0;
  {  // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    Scanner s{text};
    if (s.TakeOneOf(kShortDays) && s.Take(", ")) {
      auto day = s.TakeDigits(2);
      if (!day || !s.Take(" ")) return std::nullopt;
      auto month = s.TakeMonth();
      if (!month || !s.Take(" ")) return std::nullopt;
      auto year = s.TakeDigits(4);
      if (!year || !s.Take(" ") || !TakeTimeOfDay(s, hour, minute, second) || !s.Take(" GMT") || !s.rest.empty()) {
        return std::nullopt;
      }
      return MakeTime(*year, *month, *day, hour, minute, second);
    }
  }
  {  // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    Scanner s{text};
    if (s.TakeOneOf(kLongDays) && s.Take(", ")) {
      auto day = s.TakeDigits(2);
      if (!day || !s.Take("-")) return std::nullopt;
      auto month = s.TakeMonth();
      if (!month || !s.Take("-")) return std::nullopt;
      auto yy = s.TakeDigits(2);
      if (!yy || !s.Take(" ") || !TakeTimeOfDay(s, hour, minute, second) || !s.Take(" GMT") || !s.rest.empty()) {
        return std::nullopt;
      }
      // Two-digit years: RFC 9110 says to read ones more than 50 years ahead as the past century; for a retry
      // header "70..99 -> 19xx" is the same rule in practice.
      return MakeTime(*yy < 70 ? 2000 + *yy : 1900 + *yy, *month, *day, hour, minute, second);
    }
  }
  {  // asctime: Sun Nov  6 08:49:37 1994
    Scanner s{text};
    if (s.TakeOneOf(kShortDays) && s.Take(" ")) {
      auto month = s.TakeMonth();
      if (!month || !s.Take(" ")) return std::nullopt;
      std::optional<int> day;
      if (s.Take(" ")) {
        day = s.TakeDigits(1);
      } else {
        day = s.TakeDigits(2);
      }
      if (!day || !s.Take(" ") || !TakeTimeOfDay(s, hour, minute, second) || !s.Take(" ")) return std::nullopt;
      auto year = s.TakeDigits(4);
      if (!year || !s.rest.empty()) return std::nullopt;
      return MakeTime(*year, *month, *day, hour, minute, second);
    }
  }
  return std::nullopt;
}

}  // namespace

std::string HttpResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

std::unique_ptr<HttpClient> MakeCpprestHttpClient(UrlGuard guard) {
  // cpprest's shared pool would start 40 threads on first use, which alone breaks the daemon's budget of 16 for the
  // dispatcher and connectors. The pool can only be sized before that first use, and this file is the only user of
  // cpprest in rightsd, so the first client made sizes it. (Sizing it to 4 once looked like it made 50 of 200
  // concurrent test calls hang for a minute: that was the test peer's listen backlog of 5 losing handshakes, with
  // every pool thread idle in epoll_wait -- see tests/peers/recording_server.cpp.)
  static std::once_flag sized;
  std::call_once(sized, [] {
    try {
      crossplat::threadpool::initialize_with_threads(kIoThreads);
    } catch (const std::exception&) {
      // Only if a future caller touches cpprest before the first client: the pool keeps cpprest's default size.
    }
  });
  return std::make_unique<CpprestHttpClient>(std::move(guard));
}

std::optional<std::chrono::milliseconds> ParseRetryAfter(std::string_view value,
                                                         std::chrono::system_clock::time_point now) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;

  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    std::uint64_t seconds = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc{} || end != value.data() + value.size() || seconds > kMaxDeltaSeconds) return std::nullopt;
    return std::chrono::milliseconds(seconds * 1000);
  }

  auto at = ParseHttpDate(value);
  if (!at) return std::nullopt;
  // A date already past means "now" (RFC 9110 section 10.2.3 gives no other reading).
  if (*at <= now) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(*at - now);
}

}  // namespace rightsd::connectors
