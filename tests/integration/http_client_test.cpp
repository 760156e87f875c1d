// The cpprestsdk HttpClient against a loopback RecordingServer: round trips, peer errors as values, transport
// failures as status 0, per-request deadlines, and many requests in flight on a fixed pool of threads.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include <catch2/catch.hpp>

#include "connectors/http_client.h"
#include "peers/recording_server.h"

namespace {

using namespace std::chrono_literals;
using rightsd::connectors::HttpClient;
using rightsd::connectors::HttpRequest;
using rightsd::connectors::HttpResponse;
using rightsd::connectors::MakeCpprestHttpClient;
using rightsd::connectors::ParseRetryAfter;
using rightsd::test::RecordingServer;

// One request, waited for with a bound; also proves `done` ran exactly once.
HttpResponse SendAndWait(HttpClient& client, HttpRequest request, std::chrono::seconds limit = 15s) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<HttpResponse> response;
    int calls = 0;
  };
  auto state = std::make_shared<State>();
  client.Send(std::move(request), [state](HttpResponse r) {
    std::lock_guard lock(state->mu);
    ++state->calls;
    state->response = std::move(r);
    state->cv.notify_all();
  });
  std::unique_lock lock(state->mu);
  bool answered = state->cv.wait_for(lock, limit, [&] { return state->response.has_value(); });
  REQUIRE(answered);
  lock.unlock();
  std::this_thread::sleep_for(50ms);  // room for a (wrong) second call to show up
  lock.lock();
  REQUIRE(state->calls == 1);
  return *state->response;
}

HttpRequest GetRequest(std::string url) {
  HttpRequest request;
  request.url = std::move(url);
  return request;
}

int ThreadCount() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A loopback port bound but never listened on: connecting to it is refused, and nobody else can take it meanwhile.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A handler that blocks until released (or 5 s pass), so a test can end without waiting out the sleep.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 5s, [this] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

void Echo(const httplib::Request& req, httplib::Response& res) {
  res.status = req.method == "POST" ? 201 : 200;
  res.set_header("X-Echo-Method", req.method);
  res.set_header("X-Echo-Test", req.get_header_value("X-Test"));
  res.set_content(req.method + " " + req.path + " " + req.body, "text/plain");
}

}  // namespace

TEST_CASE("connector: http client round trips every method with headers and bodies", "[connector]") {
  RecordingServer peer;
  peer.server().Get("/echo", Echo);
  peer.server().Post("/echo", Echo);
  peer.server().Put("/echo", Echo);
  peer.server().Patch("/echo", Echo);
  peer.server().Delete("/echo", Echo);
  peer.Start();
  auto client = MakeCpprestHttpClient();

  for (std::string method : {"GET", "POST", "PUT", "PATCH", "DELETE"}) {
    DYNAMIC_SECTION(method) {
      HttpRequest request;
      request.method = method;
      request.url = peer.base_url() + "/echo?x=1";
      request.headers = {{"X-Test", "value-" + method}, {"Content-Type", "application/json"}};
      if (method != "GET") request.body = R"({"n":1})";
      HttpResponse response = SendAndWait(*client, request);

      CHECK(response.error.empty());
      CHECK(response.status == (method == "POST" ? 201 : 200));
      CHECK(response.body == method + " /echo " + request.body);
      CHECK(response.Header("x-echo-method") == method);
      CHECK(response.Header("X-ECHO-TEST") == "value-" + method);
      CHECK(response.Header("Content-Type") == "text/plain");
      CHECK(response.Header("X-Absent").empty());

      auto calls = peer.CallsTo(method, "/echo");
      REQUIRE(calls.size() == 1);
      CHECK(calls[0].target == "/echo?x=1");
      CHECK(calls[0].body == request.body);
      CHECK(calls[0].headers.find("X-Test")->second == "value-" + method);
      if (method != "GET") CHECK(calls[0].headers.find("Content-Type")->second == "application/json");
    }
  }
}

TEST_CASE("connector: http client keeps binary bodies byte for byte", "[connector]") {
  RecordingServer peer;
  const std::string bytes("\x00\x01\xff\xfe text \x00 end", 15);
  // By value: `bytes` is destroyed before `peer`, whose threads may still be answering.
  peer.server().Post("/bytes", [bytes](const httplib::Request& req, httplib::Response& res) {
    res.set_content(req.body + bytes, "application/octet-stream");
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();
  HttpRequest request;
  request.method = "POST";
  request.url = peer.base_url() + "/bytes";
  request.body = bytes;
  HttpResponse response = SendAndWait(*client, request);
  CHECK(response.status == 200);
  CHECK(response.body == bytes + bytes);
  CHECK(peer.Calls().at(0).body == bytes);
}

TEST_CASE("connector: http client returns a 503 and its Retry-After as a value", "[connector]") {
  RecordingServer peer;
  peer.server().Get("/busy", [](const httplib::Request&, httplib::Response& res) {
    res.status = 503;
    res.set_header("Retry-After", "120");
    res.set_content(R"({"error":{"code":503,"message":"try later"}})", "application/json");
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();
  HttpResponse response = SendAndWait(*client, GetRequest(peer.base_url() + "/busy"));
  CHECK(response.status == 503);
  CHECK(response.error.empty());
  CHECK(response.body == R"({"error":{"code":503,"message":"try later"}})");
  auto after = ParseRetryAfter(response.Header("retry-after"), std::chrono::system_clock::now());
  REQUIRE(after);
  CHECK(*after == 120s);
}

TEST_CASE("connector: http client does not follow redirects", "[connector]") {
  RecordingServer peer;
  peer.server().Get("/moved", [](const httplib::Request&, httplib::Response& res) {
    res.status = 302;
    res.set_header("Location", "/elsewhere");
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();
  HttpResponse response = SendAndWait(*client, GetRequest(peer.base_url() + "/moved"));
  CHECK(response.status == 302);
  CHECK(response.Header("Location") == "/elsewhere");
  CHECK(peer.CallsTo("GET", "/elsewhere").empty());
}

TEST_CASE("connector: http client recovers when the peer closed an idle pooled connection", "[connector]") {
  RecordingServer peer;
  peer.server().set_keep_alive_timeout(1);
  peer.server().Get("/ping",
                    [](const httplib::Request&, httplib::Response& res) { res.set_content("pong", "text/plain"); });
  peer.Start();
  auto client = MakeCpprestHttpClient();
  CHECK(SendAndWait(*client, GetRequest(peer.base_url() + "/ping")).body == "pong");
  std::this_thread::sleep_for(1500ms);  // the peer has closed the kept-alive connection by now
  HttpResponse again = SendAndWait(*client, GetRequest(peer.base_url() + "/ping"));
  CHECK(again.status == 200);
  CHECK(again.body == "pong");
}

TEST_CASE("connector: http client reports a refused connection as status 0", "[connector]") {
  RefusingPort nobody;
  auto client = MakeCpprestHttpClient();
  HttpRequest request = GetRequest("http://127.0.0.1:" + std::to_string(nobody.port()) + "/x");
  request.timeout = 5s;
  auto started = std::chrono::steady_clock::now();
  HttpResponse response = SendAndWait(*client, request);
  CHECK(response.status == 0);
  CHECK_FALSE(response.error.empty());
  CHECK(response.error != "timeout");
  CHECK(std::chrono::steady_clock::now() - started < 4s);
}

TEST_CASE("connector: http client reports bad urls as status 0", "[connector]") {
  auto client = MakeCpprestHttpClient();
  for (std::string url : {"not a url", "ftp://127.0.0.1/file", "/relative/path", ""}) {
    HttpResponse response = SendAndWait(*client, GetRequest(url));
    CHECK(response.status == 0);
    CHECK_FALSE(response.error.empty());
  }
}

TEST_CASE("connector: http client gives up at the request timeout", "[connector]") {
  Gate gate;  // before the server: it must outlive the handlers that wait on it
  RecordingServer peer;
  peer.server().Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    gate.Wait();
    res.set_content("late", "text/plain");
  });
  // Headers at once, then a body that stalls: the deadline covers the whole exchange, not just the first byte.
  peer.server().Get("/stalled-body", [&](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [&](size_t offset, httplib::DataSink& sink) {
      if (offset == 0) {
        sink.write("x", 1);
        return true;
      }
      gate.Wait();
      sink.done();
      return true;
    });
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();

  for (std::string path : {"/slow", "/stalled-body"}) {
    DYNAMIC_SECTION(path) {
      HttpRequest request = GetRequest(peer.base_url() + path);
      request.timeout = 500ms;
      auto started = std::chrono::steady_clock::now();
      HttpResponse response = SendAndWait(*client, request);
      auto elapsed = std::chrono::steady_clock::now() - started;
      CHECK(response.status == 0);
      CHECK(response.error == "timeout");
      CHECK(elapsed >= 450ms);
      CHECK(elapsed < 1500ms);
    }
  }
  gate.Open();
}

TEST_CASE("connector: http client shutdown cancels the calls in flight, waits for them and refuses new ones",
          "[connector]") {
  Gate gate;  // before the server: it must outlive the handlers that wait on it
  RecordingServer peer;
  peer.server().Get("/slow", [&](const httplib::Request&, httplib::Response& res) {
    gate.Wait();
    res.set_content("late", "text/plain");
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();

  constexpr int kCalls = 4;
  std::atomic<int> calls{0};
  std::atomic<int> cancelled{0};
  for (int i = 0; i < kCalls; ++i) {
    HttpRequest request = GetRequest(peer.base_url() + "/slow");
    request.timeout = 60s;
    client->Send(request, [&](HttpResponse r) {
      std::this_thread::sleep_for(100ms);  // Shutdown waits for `done` to return, not just to start
      if (r.status == 0 && r.error == "cancelled") ++cancelled;
      ++calls;
    });
  }
  std::this_thread::sleep_for(300ms);  // the requests are at the peer
  const auto started = std::chrono::steady_clock::now();
  CHECK(client->Shutdown(10s) == 0);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(calls == kCalls);
  CHECK(cancelled == kCalls);
  CHECK(elapsed < 3s);  // not the peer's 5 s gate, nor the requests' 60 s

  HttpResponse refused = SendAndWait(*client, GetRequest(peer.base_url() + "/slow"));
  CHECK(refused.status == 0);
  CHECK(refused.error == "shutting down");
  CHECK(client->Shutdown(1s) == 0);
  gate.Open();
}

TEST_CASE("connector: http client serves 200 concurrent requests on a fixed pool of threads", "[connector]") {
  RecordingServer peer;
  // One request per connection: an idle keep-alive connection would otherwise hold one of the peer's 16 threads.
  peer.server().set_keep_alive_max_count(1);
  peer.server().Get(R"(/item/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(20ms);
    res.set_content(req.matches[1].str(), "text/plain");
  });
  peer.Start();
  auto client = MakeCpprestHttpClient();
  // Warm up the client's own threads so the baseline counts them.
  CHECK(SendAndWait(*client, GetRequest(peer.base_url() + "/item/0")).status == 200);
  const int baseline = ThreadCount();

  constexpr int kRequests = 200;
  std::vector<std::atomic<int>> calls(kRequests);
  std::vector<std::atomic<int>> statuses(kRequests);
  std::atomic<int> answered{0};
  std::atomic<int> wrong_body{0};
  std::mutex error_mu;
  std::string first_error;
  for (int i = 0; i < kRequests; ++i) {
    HttpRequest request = GetRequest(peer.base_url() + "/item/" + std::to_string(i));
    // All 200 take about 0.3 s (200 x 20 ms over the peer's 16 threads); the rest is room for a loaded machine.
    request.timeout = 10s;
    client->Send(request, [&, i](HttpResponse r) {
      statuses[i] = r.status;
      if (r.body != std::to_string(i)) ++wrong_body;
      if (!r.error.empty()) {
        std::lock_guard lock(error_mu);
        if (first_error.empty()) first_error = r.error;
      }
      ++calls[i];
      ++answered;
    });
  }
  int peak = ThreadCount();
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (answered < kRequests && std::chrono::steady_clock::now() < deadline) {
    peak = std::max(peak, ThreadCount());
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(answered == kRequests);
  std::this_thread::sleep_for(50ms);
  INFO("threads before: " << baseline << ", peak while in flight: " << peak << ", first error: " << first_error);
  CHECK(peak - baseline < 10);
  CHECK(peak < 100);
  CHECK(wrong_body == 0);
  int not_once = 0, not_ok = 0;
  for (int i = 0; i < kRequests; ++i) {
    if (calls[i] != 1) ++not_once;
    if (statuses[i] != 200) ++not_ok;
  }
  CHECK(not_once == 0);
  CHECK(not_ok == 0);
}

TEST_CASE("connector: http client keeps 200 calls to a 200 ms system in flight at once on its fixed pool",
          "[connector]") {
  // A peer with a thread per connection, so that it answers every call 200 ms after receiving it: any wait beyond
  // that is the client's. One request per connection keeps idle keep-alive connections from holding its threads.
  constexpr int kRequests = 200;
  constexpr auto kDelay = 200ms;
  RecordingServer peer;
  peer.server().new_task_queue = [] { return new httplib::ThreadPool(kRequests + 16); };
  peer.server().set_keep_alive_max_count(1);
  peer.server().Get(R"(/slow/(\d+))", [&](const httplib::Request& req, httplib::Response& res) {
    std::this_thread::sleep_for(kDelay);
    res.set_content(req.matches[1].str(), "text/plain");
  });
  peer.Start();
  // httplib starts the peer's workers from its listening thread: one call through another client makes sure they
  // are all running before the count.
  REQUIRE(httplib::Client(peer.base_url()).Get("/slow/0"));
  const int before_client = ThreadCount();
  auto client = MakeCpprestHttpClient();
  // The first call starts the client's threads (if no earlier test in this process did), so the baseline counts them.
  CHECK(SendAndWait(*client, GetRequest(peer.base_url() + "/slow/0")).status == 200);
  const int baseline = ThreadCount();

  std::vector<std::atomic<int>> statuses(kRequests);
  std::atomic<int> answered{0};
  std::atomic<int> wrong_body{0};
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kRequests; ++i) {
    HttpRequest request = GetRequest(peer.base_url() + "/slow/" + std::to_string(i));
    request.timeout = 10s;
    client->Send(request, [&, i](HttpResponse r) {
      statuses[i] = r.status;
      if (r.body != std::to_string(i)) ++wrong_body;
      ++answered;
    });
  }
  int peak = ThreadCount();
  int samples_in_flight = 0;
  const auto deadline = started + 30s;
  while (answered < kRequests && std::chrono::steady_clock::now() < deadline) {
    const int n = ThreadCount();
    if (answered < kRequests) ++samples_in_flight;
    peak = std::max(peak, n);
    std::this_thread::sleep_for(2ms);
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE(answered == kRequests);
  const auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  INFO("threads before the client: " << before_client << ", after its first call: " << baseline
                                     << ", peak with calls in flight: " << peak << "; " << kRequests
                                     << " calls in " << elapsed_ms << " ms");
  int not_ok = 0;
  for (const auto& s : statuses) not_ok += s != 200;
  CHECK(not_ok == 0);
  CHECK(wrong_body == 0);
  CHECK(samples_in_flight > 10);
  // Ideal: one delay, as every call waits at the same time. A client that needed a thread per call in flight would
  // take kRequests / threads x 200 ms (10 s on 4 threads, 2.5 s on 16); 1.5 s leaves room for a loaded machine.
  CHECK(elapsed >= kDelay);
  CHECK(elapsed < 1500ms);
  // The client's threads: its pool (4) and asio's resolver thread; none started for calls in flight.
  CHECK(baseline - before_client <= 5);
  CHECK(peak == baseline);
}

TEST_CASE("connector: http client parses Retry-After", "[connector]") {
  using std::chrono::milliseconds;
  // 1994-11-06 08:49:07 UTC: 30 s before the RFC examples' instant.
  const auto now = std::chrono::sys_days{std::chrono::year{1994} / 11 / 6} + 8h + 49min + 7s;

  SECTION("delta-seconds") {
    CHECK(ParseRetryAfter("120", now) == milliseconds(120000));
    CHECK(ParseRetryAfter("0", now) == milliseconds(0));
    CHECK(ParseRetryAfter(" 7 ", now) == milliseconds(7000));
  }
  SECTION("HTTP-date in the three forms a recipient must accept") {
    CHECK(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now) == milliseconds(30000));
    CHECK(ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now) == milliseconds(30000));
    CHECK(ParseRetryAfter("Sun Nov  6 08:49:37 1994", now) == milliseconds(30000));
    CHECK(ParseRetryAfter("Mon, 07 Nov 1994 08:49:07 GMT", now) == milliseconds(24 * 3600 * 1000));
  }
  SECTION("a date already past means now") {
    CHECK(ParseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", now) == milliseconds(0));
  }
  SECTION("garbage and negatives are absent") {
    for (std::string_view bad :
         {"", "   ", "-5", "+5", "1.5", "5s", "abc", "99999999999999999999999", "Sun, 31 Feb 1994 08:49:37 GMT",
          "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
          "Sun, 06 Nov 1994 08:49:37 GMT trailing", "06 Nov 1994 08:49:37 GMT"}) {
      INFO("value: '" << bad << "'");
      CHECK_FALSE(ParseRetryAfter(bad, now).has_value());
    }
  }
}

TEST_CASE("connector: http client header look-up ignores case", "[connector]") {
  HttpResponse response;
  response.headers = {{"Content-Type", "application/json"}, {"retry-after", "5"}};
  CHECK(response.Header("content-type") == "application/json");
  CHECK(response.Header("Retry-After") == "5");
  CHECK(response.Header("X-Missing").empty());
}
