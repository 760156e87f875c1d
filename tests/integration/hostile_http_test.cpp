// The hostile HTTP table (issue 9): malformed and hostile requests sent as raw bytes to the real daemon, so that
// nothing on the way normalises them (httplib::Client would fix up Content-Length, paths and header values).
// Every row is refused with a 4xx problem+json whose detail says what is wrong, nothing is ever a 5xx, and the
// database is exactly as it was after each refused row. Rows whose input is legitimately acceptable (SQL and SOQL
// metacharacters, Unicode oddities in identity values) are accepted, stored verbatim and read back unchanged, and
// nothing else is written. bad_input_test.cpp has the first, smaller table; nothing here repeats it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <optional>
#include <string>
#include <vector>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

struct RawResponse {
  bool answered = false;  // false: the connection closed (or timed out) before a whole response arrived
  int status = 0;
  std::string content_type;
  std::string connection;
  std::string body;
  std::string trace;  // how the exchange went, for the test's messages
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Parses one HTTP/1.1 response from `buf`; nullopt while it is incomplete.
std::optional<RawResponse> ParseResponse(std::string buf) {
  // Interim answers (100 Continue) are not the response.
  while (buf.compare(0, 10, "HTTP/1.1 1") == 0 && buf.find("\r\n\r\n") != std::string::npos) {
    buf.erase(0, buf.find("\r\n\r\n") + 4);
  }
  const auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  RawResponse r;
  if (buf.compare(0, 9, "HTTP/1.1 ") != 0 && buf.compare(0, 9, "HTTP/1.0 ") != 0) return std::nullopt;
  r.status = std::atoi(buf.substr(9, 3).c_str());
  std::size_t length = 0;
  std::size_t pos = buf.find("\r\n") + 2;
  while (pos < end) {
    const auto eol = buf.find("\r\n", pos);
    const std::string line = buf.substr(pos, eol - pos);
    pos = eol + 2;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = Lower(line.substr(0, colon));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (name == "content-length") length = std::stoul(value);
    if (name == "content-type") r.content_type = value;
    if (name == "connection") r.connection = value;
  }
  if (buf.size() < end + 4 + length) return std::nullopt;
  r.body = buf.substr(end + 4, length);
  r.answered = true;
  return r;
}

// Sends `request` to 127.0.0.1:port over a fresh connection and reads one response, sending and reading at once
// (the daemon may answer a 413 before it has read the whole body). Bounded by `seconds`.
// half_close: shut our side down once all is sent. cpp-httplib writes no answer on a connection whose peer has
// half-closed, so only rows that send less than they announce use it (to end the wait for the rest at once).
RawResponse Exchange(int port, const std::string& request, bool half_close, int seconds = 20) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::size_t sent = 0;
  bool sending = true;
  std::string buf;
  std::optional<RawResponse> response;
  std::string trace;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!response && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, static_cast<short>(POLLIN | (sending ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 200) < 0) break;
    if (sending && (p.revents & POLLOUT)) {
      const ssize_t n = ::send(fd, request.data() + sent, std::min<std::size_t>(request.size() - sent, 65536),
                               MSG_NOSIGNAL);
      if (n < 0) {
        sending = false;  // the daemon closed its side: read what it said
      } else {
        sent += static_cast<std::size_t>(n);
        if (sent == request.size()) {
          sending = false;
          if (half_close) ::shutdown(fd, SHUT_WR);
        }
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[65536];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        trace = fmt::format("recv {} ({}) after {} of {} bytes sent, {} received", n, n < 0 ? std::strerror(errno) : "eof",
                            sent, request.size(), buf.size());
        break;
      }
      buf.append(chunk, static_cast<std::size_t>(n));
      response = ParseResponse(buf);
    }
  }
  ::close(fd);
  RawResponse out = response.value_or(RawResponse{});
  out.trace = trace.empty() ? fmt::format("{} of {} bytes sent, {} received", sent, request.size(), buf.size()) : trace;
  return out;
}

std::string Counts(TestDatabase& db) {
  return db.Scalar(
      "SELECT (SELECT count(*) FROM requests) || '/' || (SELECT count(*) FROM request_identities) || '/' || "
      "(SELECT count(*) FROM audit_events) || '/' || (SELECT count(*) FROM idempotency_keys) || '/' || "
      "(SELECT count(*) FROM tasks) || '/' || (SELECT coalesce(max(updated_at)::text, '') FROM requests)");
}

struct Row {
  std::string name;
  std::string raw;                // the whole request, as bytes on the wire
  std::vector<int> statuses;      // the acceptable answers (all 4xx)
  std::string detail_has;         // the problem detail must contain this (case-insensitively)
  bool may_drop = false;          // the HTTP layer may also close the connection without an answer
  bool half_close = false;        // sends less than it announces: half-close after sending (see Exchange)
  int valid_status = 0;           // a stated valid outcome: the daemon answers this (2xx) and nothing changes
  int seconds = 20;               // how long the exchange may take (see Exchange)
};

// A POST with the given headers; Content-Length is added unless `headers` carries its own framing.
std::string Post(const std::string& path, const std::string& body, const std::string& token,
                 const std::string& headers = "Content-Type: application/json\r\n", bool add_length = true) {
  std::string out = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\n" + headers;
  if (add_length) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

std::string Get(const std::string& path, const std::string& token, const std::string& headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\n" + headers + "\r\n";
}

std::string Gzip(const std::string& data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Chunked(const std::string& body) {
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
}

const std::string kIds = R"("subject":{"identities":[{"kind":"email","value":"jane.hostile@example.com"}]})";
const std::string kValid = R"({"type":"delete",)" + kIds + "}";

std::string WithIdentity(const std::string& kind, const std::string& value_json) {
  return R"({"type":"delete","subject":{"identities":[{"kind":")" + kind + R"(","value":)" + value_json + "}]}}";
}

}  // namespace

TEST_CASE("fuzz: hostile HTTP table gets 4xx problem bodies and changes nothing", "[fuzz][api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string admin = env.token("admin");
  const std::string existing =
      d.Call("POST", "/v1/requests", admin,
             R"({"type":"access","subject":{"identities":[{"kind":"mrn","value":"H-1"}]}})")
          .json()["id"];
  const std::string on = "/v1/requests/" + existing;
  const std::string json_type = "Content-Type: application/json\r\n";

  std::vector<Row> rows;
  auto bad = [&rows](std::string name, std::string raw, std::vector<int> statuses, std::string detail_has = "",
                     bool may_drop = false) {
    rows.push_back({std::move(name), std::move(raw), std::move(statuses), std::move(detail_has), may_drop});
  };

  // --- truncated and invalid JSON -----------------------------------------------------------------------------
  for (std::size_t cut : {1ul, 2ul, 9ul, 17ul, 30ul, 45ul, 60ul, 75ul, kValid.size() - 2, kValid.size() - 1}) {
    bad("truncated json at byte " + std::to_string(cut), Post("/v1/requests", kValid.substr(0, cut), admin), {400},
        "not valid JSON");
  }
  for (const std::string& body : {std::string("{'type':'delete'}"), std::string("{\"type\":\"delete\",}"),
                                  std::string("{\"type\" \"delete\"}"), std::string("{\"type\":delete}"),
                                  kValid + "x", kValid + kValid,
                                  std::string("{\"type\":\"delete\"/*c*/}"), std::string("NaN"),
                                  std::string("{\"type\":\"del\x01ete\"}"), std::string(" \t\r\n ")}) {
    bad("invalid json " + std::to_string(rows.size()), Post("/v1/requests", body, admin), {400});
  }
  bad("NUL byte inside the body", Post("/v1/requests", std::string("{\"type\":\"delete\"\0}", 18), admin), {400});

  // --- invalid UTF-8 in a value and in a key --------------------------------------------------------------------
  const std::vector<std::pair<std::string, std::string>> utf8 = {
      {"overlong slash", "\xc0\xaf"},           {"overlong 3-byte", "\xe0\x80\xaf"},
      {"overlong 4-byte", "\xf0\x80\x80\xaf"},   {"high surrogate", "\xed\xa0\x80"},
      {"low surrogate", "\xed\xb0\x80"},         {"lone continuation", "\x80"},
      {"lone continuation bf", "\xbf"},          {"truncated sequence", "\xe2\x82"},
      {"beyond U+10FFFF", "\xf4\x90\x80\x80"},   {"F5 lead byte", "\xf5\x80\x80\x80"},
      {"FE byte", "\xfe"},                       {"5-byte form", "\xf8\x88\x80\x80\x80"},
  };
  for (const auto& [what, bytes] : utf8) {
    bad("invalid UTF-8 in a value: " + what,
        Post("/v1/requests", WithIdentity("name", "\"Jane " + bytes + " Doe\""), admin), {400}, "not valid JSON");
  }
  bad("invalid UTF-8 in a key", Post("/v1/requests", "{\"ty\xc0\xafpe\":\"delete\"," + kIds + "}", admin), {400});
  bad("unpaired surrogate escape", Post("/v1/requests", WithIdentity("name", R"("Jane \ud800 Doe")"), admin), {400});
  bad("low surrogate escape first", Post("/v1/requests", WithIdentity("name", R"("\udc00\ud800")"), admin), {400});
  bad("escaped NUL in a value", Post("/v1/requests", WithIdentity("name", R"("Jane\u0000Doe")"), admin), {422},
      "control");

  // --- sizes and nesting ----------------------------------------------------------------------------------------
  bad("10 MB body", Post("/v1/requests", R"({"type":"delete","pad":")" + std::string(10 << 20, 'a') + "\"}", admin),
      {413}, "larger than", true);
  bad("10 MB announced, 10 bytes sent", Post("/v1/requests", "{\"type\":\"", admin, json_type + "Content-Length: 10485760\r\n", false),
      {413}, "", true);
  rows.back().half_close = true;
  bad("17 levels of arrays", Post("/v1/requests", "{\"type\":\"delete\"," + kIds + ",\"x\":" + std::string(16, '[') +
                                                       std::string(16, ']') + "}", admin),
      {400}, "deep");
  bad("100000 levels of arrays", Post("/v1/requests", std::string(100000, '[') + std::string(100000, ']'), admin),
      {400}, "deep");
  bad("100000 unclosed arrays", Post("/v1/requests", std::string(100000, '['), admin), {400});
  bad("deeply nested objects", Post("/v1/requests", [] {
        std::string s;
        for (int i = 0; i < 5000; ++i) s += "{\"a\":";
        return s + "1" + std::string(5000, '}');
      }(), admin),
      {400}, "deep");
  bad("a million identities", Post("/v1/requests", [] {
        std::string s = R"({"type":"delete","subject":{"identities":[)";
        for (int i = 0; i < 30000; ++i) s += R"({"kind":"mrn","value":"x"},)";
        return s + R"({"kind":"mrn","value":"y"}]}})";
      }(), admin),
      {422}, "");
  // 810 KB of JSON: a Debug build under ASan parses and checks it several times slower than a release build.
  rows.back().seconds = kSanitized ? 120 : 20;
  bad("huge number", Post("/v1/requests", R"({"type":1e999999,)" + kIds + "}", admin), {400, 422});

  // --- duplicate keys -------------------------------------------------------------------------------------------
  bad("duplicate key in subject", Post("/v1/requests", R"({"type":"delete","subject":{"identities":[],"identities":[{"kind":"mrn","value":"1"}]}})", admin),
      {400}, "duplicate key");
  bad("duplicate key in identity", Post("/v1/requests", WithIdentity("email", R"("a@example.com","value":"b@example.com")"), admin),
      {400}, "duplicate key");
  bad("duplicate key in verify", Post(on + "/verify", R"({"method":"a","level":"reasonable","level":"reasonably_high"})", admin),
      {400}, "duplicate key");
  bad("duplicate key after escape", Post("/v1/requests", R"({"type":"delete","\u0074ype":"access",)" + kIds + "}", admin),
      {400}, "duplicate key");

  // --- wrong types everywhere -----------------------------------------------------------------------------------
  const std::vector<std::pair<std::string, std::string>> wrong_types = {
      {R"({"type":null,)" + kIds + "}", "/type"},
      {R"({"type":["delete"],)" + kIds + "}", "/type"},
      {R"({"type":{"v":"delete"},)" + kIds + "}", "/type"},
      {R"({"type":"delete","subject":"jane"})", "/subject"},
      {R"({"type":"delete","subject":[]})", "/subject"},
      {R"({"type":"delete","subject":{"identities":{"kind":"mrn","value":"1"}}})", "/subject/identities"},
      {R"({"type":"delete","subject":{"identities":"mrn:1"}})", "/subject/identities"},
      {R"({"type":"delete","subject":{"identities":["mrn:1"]}})", "/subject/identities/0"},
      {R"({"type":"delete","subject":{"identities":[{"kind":1,"value":"1"}]}})", "/subject/identities/0/kind"},
      {R"({"type":"delete","subject":{"identities":[{"kind":"mrn","value":true}]}})", "/subject/identities/0/value"},
      {R"({"type":"delete","subject":{"identities":[{"kind":"mrn","value":null}]}})", "/subject/identities/0/value"},
      {R"({"type":"delete","subject":{"identities":[{"kind":"mrn","value":["1"]}]}})", "/subject/identities/0/value"},
      {R"({"type":"delete","received_at":1767225600,)" + kIds + "}", "/received_at"},
      {R"({"type":"delete","channel":false,)" + kIds + "}", "/channel"},
      {R"({"type":"delete","callback_url":1,)" + kIds + "}", "/callback_url"},
      {R"({"type":"delete","authorized_agent":"Agent Smith",)" + kIds + "}", "/authorized_agent"},
      {R"({"type":"delete","authorized_agent":{"name":7},)" + kIds + "}", "/authorized_agent/name"},
      {R"({"type":"correct","corrections":{"field":"a","value":"b"},)" + kIds + "}", "/corrections"},
      {R"({"type":"correct","corrections":[{"field":"a","value":5}],)" + kIds + "}", "/corrections/0/value"},
      {R"({"type":"delete","subject":{"identities":[{"kind":"mrn","value":"1","extra":1}]}})",
       "/subject/identities/0/extra"},
      {R"({"type":"delete","a/b~c":1,)" + kIds + "}", "/a~1b~0c"},
      {R"({"Type":"delete",)" + kIds + "}", "/Type"},
  };
  for (const auto& [body, field] : wrong_types) {
    bad("wrong type at " + field, Post("/v1/requests", body, admin), {422}, "");
    rows.back().detail_has = "";
    rows.back().name += " (field " + field + ")";
  }
  const std::vector<std::pair<std::string, std::string>> wrong_action_bodies = {
      {"/verify", R"({"method":1,"level":"reasonable"})"},
      {"/verify", R"({"method":"account login","level":"reasonable"})"},
      {"/verify", R"([])"},
      {"/deny", R"({"reason":["exempt"]})"},
      {"/deny", R"({"reason":"exempt","detail":{}})"},
      {"/extend", R"({"reason":{"why":"x"}})"},
      {"/extend", R"({"reason":")" + std::string(2001, 'r') + "\"}"},
      {"/cancel", R"({"reason":7})"},
      {"/cancel", R"("withdrawn")"},
      {"/acknowledge", R"([])"},
      {"/complete", R"({"reason":null})"},
      {"/tasks/0e7c1d2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a/complete", R"({"outcome":null})"},
      {"/tasks/0e7c1d2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a/complete", R"({"outcome":"retained_exempt"})"},
  };
  for (const auto& [verb, body] : wrong_action_bodies) bad("action body " + verb + " " + body.substr(0, 40), Post(on + verb, body, admin), {422});

  // --- content types --------------------------------------------------------------------------------------------
  for (const std::string type : {"", "text/plain", "application/json-patch+json", "application/jsonx", "text/json",
                                  "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                                  "application/ json", "json"}) {
    bad("content type '" + type + "'",
        Post("/v1/requests", kValid, admin, type.empty() ? "" : "Content-Type: " + type + "\r\n"), {415},
        "application/json");
  }
  bad("gzip body", Post("/v1/requests", Gzip(kValid), admin, json_type + "Content-Encoding: gzip\r\n"), {415});
  bad("gzip bomb", Post("/v1/requests", Gzip(std::string(64 << 20, ' ')), admin, json_type + "Content-Encoding: gzip\r\n"),
      {413, 415});
  bad("unknown content encoding", Post("/v1/requests", kValid, admin, json_type + "Content-Encoding: zstd\r\n"), {415});
  bad("not really gzip", Post("/v1/requests", kValid, admin, json_type + "Content-Encoding: gzip\r\n"), {400, 415});

  // --- header tricks --------------------------------------------------------------------------------------------
  bad("two different Content-Lengths", Post("/v1/requests", kValid, admin, json_type + "Content-Length: 5\r\n"), {400},
      "Content-Length");
  bad("two equal Content-Lengths",
      Post("/v1/requests", kValid, admin, json_type + "Content-Length: " + std::to_string(kValid.size()) + "\r\n"),
      {400}, "Content-Length");
  bad("Content-Length and chunked",
      Post("/v1/requests", Chunked(kValid), admin, json_type + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", false),
      {400}, "Transfer-Encoding");
  bad("Transfer-Encoding gzip, chunked",
      Post("/v1/requests", Chunked(kValid), admin, json_type + "Transfer-Encoding: gzip, chunked\r\n", false), {400, 501},
      "Transfer-Encoding");
  bad("Transfer-Encoding identity",
      Post("/v1/requests", kValid, admin, json_type + "Transfer-Encoding: identity\r\n"), {400, 501}, "Transfer-Encoding");
  bad("chunked twice",
      Post("/v1/requests", Chunked(kValid), admin, json_type + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
           false),
      {400}, "Transfer-Encoding");
  bad("bad chunk size", Post("/v1/requests", "zz\r\n{}\r\n0\r\n\r\n", admin, json_type + "Transfer-Encoding: chunked\r\n", false),
      {400}, "", true);
  bad("chunk size overflow",
      Post("/v1/requests", "ffffffffffffffffff\r\n{}\r\n0\r\n\r\n", admin, json_type + "Transfer-Encoding: chunked\r\n", false),
      {400, 413}, "", true);
  bad("chunked body without its last chunk",
      Post("/v1/requests", "5\r\n{\"a\":\r\n", admin, json_type + "Transfer-Encoding: chunked\r\n", false), {400}, "", true);
  rows.back().half_close = true;
  bad("negative Content-Length", Post("/v1/requests", kValid, admin, json_type + "Content-Length: -1\r\n", false), {400},
      "", true);
  bad("non-numeric Content-Length", Post("/v1/requests", kValid, admin, json_type + "Content-Length: 12abc\r\n", false),
      {400}, "", true);
  bad("Content-Length beyond 64 bits",
      Post("/v1/requests", kValid, admin, json_type + "Content-Length: 99999999999999999999999\r\n", false), {400},
      "", true);
  bad("POST without a length", Post("/v1/requests", "", admin, json_type, false), {400}, "malformed");
  bad("a 100 KB header", Get("/v1/requests", admin, "X-Pad: " + std::string(100000, 'h') + "\r\n"), {400, 431}, "",
      true);
  // Valid outcomes: 500 small headers are legal HTTP, and cpp-httplib drops a line without a colon and an obs-fold
  // continuation line (RFC 9112 sec. 5.2 lets a server replace it) instead of merging it into a header, so nothing
  // smuggled reaches the daemon: the request is served as if the line were not there.
  bad("500 headers", Get("/v1/requests", admin, [] {
        std::string h;
        for (int i = 0; i < 500; ++i) h += "X-H" + std::to_string(i) + ": v\r\n";
        return h;
      }()),
      {400, 431}, "", true);
  rows.back().valid_status = 200;
  bad("bare CR in a header value", Get("/v1/requests", admin, "X-Trick: a\rInjected: b\r\n"), {400}, "", true);
  bad("bare LF in a header value", "GET /v1/requests HTTP/1.1\r\nHost: x\r\nX-Trick: a\nAuthorization: Bearer " + admin +
                                       "\r\n\r\n",
      {400, 401}, "", true);
  rows.back().valid_status = 200;  // RFC 9112 sec. 2.2: a recipient MAY take a bare LF as the end of a line
  bad("NUL in a header value", Get("/v1/requests", admin, std::string("X-Trick: a\0b\r\n", 14)), {400}, "", true);
  bad("header without a colon", Get("/v1/requests", admin, "NoColonHere\r\n"), {400}, "", true);
  rows.back().valid_status = 200;
  bad("space before the colon", Post("/v1/requests", kValid, admin, "Content-Type : application/json\r\n"), {400, 415},
      "", true);
  bad("obsolete line folding", Get("/v1/requests", admin, "X-Fold: a\r\n b\r\n"), {400}, "", true);
  rows.back().valid_status = 200;
  bad("CRLF in the token", "GET /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin.substr(0, 5) +
                               "\r\n" + admin.substr(5) + "\r\n\r\n",
      {400, 401}, "", true);
  bad("lower-case bearer", "GET /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: bearer\r\n\r\n", {401}, "Bearer");
  bad("two Authorization headers", Get("/v1/requests", admin, "Authorization: Bearer rtd_nope\r\n"), {400, 401}, "");
  bad("token with trailing garbage", Get("/v1/requests", admin + "'--"), {401}, "not valid");
  bad("Idempotency-Key with a control character",
      Post("/v1/requests", kValid, admin, json_type + "Idempotency-Key: key\x01one\r\n"), {422}, "Idempotency-Key");
  bad("Idempotency-Key with UTF-8", Post("/v1/requests", kValid, admin, json_type + "Idempotency-Key: cl\xc3\xa9\r\n"),
      {422}, "Idempotency-Key");
  bad("Expect: 100-continue, then nothing",
      Post("/v1/requests", "", admin, json_type + "Expect: 100-continue\r\nContent-Length: 20\r\n", false), {400, 417},
      "", true);
  rows.back().half_close = true;

  // --- request line and path tricks -----------------------------------------------------------------------------
  bad("dot-dot path", Get("/v1/requests/../requests/" + existing + "/../../audit", admin), {400, 404});
  bad("encoded dot-dot", Get("/v1/requests/%2e%2e/%2e%2e/healthz", admin), {404});
  bad("encoded NUL in the id", Get("/v1/requests/" + existing + "%00", admin), {404});
  bad("raw NUL in the path", Get(std::string("/v1/requests/a\0b", 16), admin), {400, 404}, "", true);
  bad("double slashes", Get("//v1//requests//" + existing, admin), {404});
  bad("trailing slash", Get("/v1/requests/", admin), {404});
  bad("overlong path", Get("/v1/requests/" + std::string(20000, 'a'), admin), {400, 404, 414}, "", true);
  bad("overlong id under the limit", Get("/v1/requests/" + std::string(7000, 'a'), admin), {404});
  // Valid outcome: cpp-httplib decodes the path before routing, so %2F is a slash and this is the request itself,
  // read with the same token check.
  bad("percent-encoded slash", Get("/v1/requests%2F" + existing, admin), {404});
  rows.back().valid_status = 200;
  bad("invalid percent escape", Get("/v1/requests/%zz%", admin), {400, 404});
  bad("SQL in the id", Get("/v1/requests/1'%20OR%20'1'='1", admin), {404}, "no request");
  bad("SQL in an action id", Post("/v1/requests/';DROP%20TABLE%20requests;--/verify",
                                  R"({"method":"account_login","level":"reasonable"})", admin),
      {404});
  bad("SQL in a task id", Post(on + "/tasks/x'%20OR%201=1--/complete", R"({"outcome":"done"})", admin), {404});
  bad("unknown method", "BREW /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin + "\r\n\r\n",
      {400, 404, 405}, "", true);
  bad("lower-case method", "get /v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin + "\r\n\r\n",
      {400, 404, 405}, "", true);
  bad("DELETE a request", "DELETE " + on + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin + "\r\n\r\n", {405},
      "GET");
  bad("PATCH a request", Post(on, "{}", admin).replace(0, 4, "PATCH"), {405}, "GET");
  bad("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", {400, 404, 405}, "", true);
  bad("absolute-form target", "GET http://127.0.0.1/v1/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + admin +
                                  "\r\n\r\n",
      {400, 404}, "", true);
  bad("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 404, 405, 505}, "", true);
  bad("unknown HTTP version", "GET /v1/requests HTTP/9.9\r\nHost: x\r\nAuthorization: Bearer " + admin + "\r\n\r\n",
      {400, 505}, "", true);
  bad("no HTTP version", "GET /v1/requests\r\nHost: x\r\n\r\n", {400}, "", true);
  bad("tab-separated request line", "GET\t/v1/requests\tHTTP/1.1\r\nHost: x\r\n\r\n", {400}, "", true);
  bad("space in the path", "GET /v1/requests /x HTTP/1.1\r\nHost: x\r\n\r\n", {400}, "", true);
  bad("binary request line", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n", {400}, "",
      true);

  // --- query strings --------------------------------------------------------------------------------------------
  bad("limit with NUL", Get("/v1/requests?limit=1%00", admin), {422}, "limit");
  bad("status with invalid UTF-8", Get("/v1/requests?status=%ff%fe", admin), {422}, "status");
  bad("negative limit", Get("/v1/requests?limit=-1", admin), {422}, "limit");
  bad("limit in exponent form", Get("/v1/requests?limit=1e3", admin), {422}, "limit");
  bad("limit without a value", Get("/v1/requests?limit", admin), {422}, "limit");
  bad("huge cursor", Get("/v1/requests?cursor=" + std::string(4000, 'A'), admin), {422}, "cursor");
  bad("query parameter on a POST action", Post(on + "/acknowledge?force=true", "", admin), {422}, "force");
  bad("audit after overflow", Get("/v1/audit?after=999999999999999999", admin), {200, 422});  // checked below
  rows.back().statuses = {422};
  rows.back().raw = Get("/v1/audit?after=99999999999999999999", admin);
  bad("unknown parameter with invalid UTF-8", Get("/v1/requests?%ff=1", admin), {422});

  // --- the OpenDSR callback endpoint (no token) -----------------------------------------------------------------
  auto callback = [](const std::string& body, const std::string& headers) {
    return "POST /v1/callbacks/opendsr HTTP/1.1\r\nHost: x\r\n" + headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  bad("callback not JSON", callback("request_status=completed", json_type), {404, 422});
  bad("callback without request id", callback(R"({"request_status":"completed"})", json_type), {404, 422});
  bad("callback with SQL as request id", callback(R"({"subject_request_id":"'; DROP TABLE tasks;--"})", json_type),
      {401, 404});
  bad("callback for an unknown task",
      callback(R"({"subject_request_id":"0e7c1d2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a","request_status":"completed"})",
               json_type + "X-OpenDSR-Signature: c2ln\r\n"),
      {401, 404});
  bad("callback 10 MB", callback(std::string(10 << 20, '{'), json_type), {413}, "", true);

  REQUIRE(rows.size() >= 100);
  const std::string before = Counts(env.db());
  for (const auto& row : rows) {
    const RawResponse r = Exchange(d.port(), row.raw, row.half_close, row.seconds);
    INFO(row.name << ": answered=" << r.answered << " status=" << r.status << " body=" << r.body.substr(0, 300) << " ["
                  << r.trace << "]");
    CHECK(d.Running());
    CHECK(Counts(env.db()) == before);
    if (!r.answered) {
      CHECK(row.may_drop);
      continue;
    }
    CHECK(r.status < 500);
    if (row.valid_status != 0) {
      CHECK(r.status == row.valid_status);
      continue;
    }
    CHECK(std::find(row.statuses.begin(), row.statuses.end(), r.status) != row.statuses.end());
    CHECK(r.content_type == "application/problem+json");
    const json problem = json::parse(r.body, nullptr, false);
    CHECK(problem.is_object());
    if (!problem.is_object()) continue;
    CHECK(problem.value("status", 0) == r.status);
    CHECK(problem.contains("detail"));
    const std::string detail = problem.value("detail", "");
    CHECK(!detail.empty());
    if (!row.detail_has.empty()) CHECK(Lower(detail).find(Lower(row.detail_has)) != std::string::npos);
    // No identity value of the table ever comes back in an error.
    CHECK(r.body.find("jane.hostile@example.com") == std::string::npos);
  }
  CHECK(Counts(env.db()) == before);

  // The daemon still serves a normal request, and no identity value reached its log.
  const auto ok = d.Call("POST", "/v1/requests", admin, kValid);
  CHECK(ok.status == 201);
  CHECK(d.Running());
  const std::string log = d.Log();
  CHECK(log.find("internal error") == std::string::npos);
  CHECK(log.find("jane.hostile@example.com") == std::string::npos);
}

TEST_CASE("fuzz: hostile HTTP identity values that are legitimate are stored verbatim", "[fuzz][api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string admin = env.token("admin");
  // kind, value as JSON text, the value that must come back
  const std::vector<std::tuple<std::string, std::string, std::string>> accepted = {
      {"email", R"("o'brien@example.com")", "o'brien@example.com"},
      {"email", R"("x'--@example.com")", "x'--@example.com"},
      {"email", R"("a\"b;DROP\\TABLE@example.com")", "a\"b;DROP\\TABLE@example.com"},
      {"name", R"("Robert'); DROP TABLE requests;--")", "Robert'); DROP TABLE requests;--"},
      {"name", R"("' OR '1'='1")", "' OR '1'='1"},
      {"name", R"("O\\'Brien' OR Name LIKE '%")", "O\\'Brien' OR Name LIKE '%"},
      {"account_id", R"("acct%_\\%' AND Id != null")", "acct%_\\%' AND Id != null"},
      {"salesforce_id", R"("003' OR Id != '")", "003' OR Id != '"},
      {"postal_address", R"("1 Main St $1 $$x$$ :name ?")", "1 Main St $1 $$x$$ :name ?"},
      {"name", R"("\u202eeoD enaJ")", "\u202e" "eoD enaJ"},
      {"name", R"("Ja\u200dne\ufeff")", "Ja\u200dne\ufeff"},
      {"name", R"("Zoë Ñandú 山田 😀")", "Zoë Ñandú 山田 😀"},
      {"name", R"("e\u0301\u0301\u0301")", "e\u0301\u0301\u0301"},
      {"name", R"("line\u2028sep\u2029")", "line\u2028sep\u2029"},
      {"device_id", R"("\uffff\ufffe")", "\uffff\ufffe"},
      {"mrn", R"("  MRN-7  ")", "MRN-7"},
  };
  for (const auto& [kind, value_json, expected] : accepted) {
    const std::string before_requests = env.db().Scalar("SELECT count(*) FROM requests");
    const std::string before_identities = env.db().Scalar("SELECT count(*) FROM request_identities");
    const auto r = d.Call("POST", "/v1/requests", admin, WithIdentity(kind, value_json));
    INFO(kind << " " << value_json << ": " << r.status << " " << r.body.substr(0, 300));
    REQUIRE(r.status == 201);
    const std::string id = r.json()["id"];
    CHECK(std::stoi(env.db().Scalar("SELECT count(*) FROM requests")) == std::stoi(before_requests) + 1);
    CHECK(std::stoi(env.db().Scalar("SELECT count(*) FROM request_identities")) == std::stoi(before_identities) + 1);
    const auto back = d.Call("GET", "/v1/requests/" + id, admin);
    REQUIRE(back.status == 200);
    const json identities = back.json()["identities"];
    REQUIRE(identities.size() == 1);
    CHECK(identities[0]["kind"] == kind);
    CHECK(identities[0]["value"] == expected);
  }
  // A UTF-8 byte order mark before the body: RFC 8259 sec. 8.1 lets a parser ignore it, and this one does.
  const auto bom = d.Call("POST", "/v1/requests", admin, "\xef\xbb\xbf" + WithIdentity("mrn", R"("BOM-1")"));
  CHECK(bom.status == 201);
  // Every table still exists and holds what it should.
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == std::to_string(accepted.size() + 1));
  CHECK(d.Running());
}
