#include "http_api.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <sys/socket.h>

#include <regex>

#include <fmt/format.h>

#include "connectors/webhook/webhook.h"
#include "crypto.h"
#include "http_queue.h"
#include "log.h"
#include "metrics.h"
#include "report.h"
#include "request_render.h"

namespace rightsd {

std::string_view DashboardFile(std::string_view stem);  // generated from daemon/dashboard/* (cmake/embed_files.cmake)

namespace {

using nlohmann::json;

constexpr const char* kProblemType = "application/problem+json";
constexpr int kMaxListLimit = 500;

std::string Dump(const json& body) { return body.dump(-1, ' ', false, json::error_handler_t::replace); }

void SendProblem(httplib::Response& res, const ApiError& error, const std::string& instance) {
  const auto& spec = ProblemFor(error.code());
  res.status = spec.status;
  if (spec.retry_after_s > 0) res.set_header("Retry-After", std::to_string(spec.retry_after_s));
  if (error.code() == ErrorCode::kUnauthenticated) res.set_header("WWW-Authenticate", "Bearer realm=\"rightsd\"");
  res.set_content(Dump(ProblemBody(error, instance)), kProblemType);
}

void SendJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

// An answer rendered as text already (request_render.h): moved into the response, not copied.
void SendJsonText(httplib::Response& res, int status, std::string body) {
  res.status = status;
  res.body = std::move(body);
  res.headers.erase("Content-Type");
  res.set_header("Content-Type", "application/json");
}

json DateOrNull(const std::optional<LocalDate>& d) { return d ? json(FormatDate(*d)) : json(); }

std::string EncodeCursor(const std::pair<LocalDate, std::string>& c) {
  const std::string raw = FormatDate(c.first) + "|" + c.second;
  std::string out(sodium_base64_ENCODED_LEN(raw.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<std::pair<LocalDate, std::string>> DecodeCursor(const std::string& text) {
  if (text.empty() || text.size() > 128) return std::nullopt;
  std::string raw(text.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(raw.data()), raw.size(), text.data(), text.size(), nullptr,
                        &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return std::nullopt;
  }
  raw.resize(len);
  const auto bar = raw.find('|');
  if (bar == std::string::npos) return std::nullopt;
  LocalDate d;
  const std::string id = raw.substr(bar + 1);
  if (!ParseDate(raw.substr(0, bar), d) || !IsUuid(id)) return std::nullopt;
  return std::make_pair(d, id);
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsJsonContentType(const std::string& value) {
  std::string v = value.substr(0, value.find(';'));
  while (!v.empty() && v.back() == ' ') v.pop_back();
  for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return v == "application/json";
}

// Known resource paths, for telling "no such path" (404) from "not with this method" (405).
const std::vector<std::pair<std::regex, std::string>>& KnownPaths() {
  static const std::vector<std::pair<std::regex, std::string>> paths = {
      {std::regex(R"(/healthz)"), "GET"},
      {std::regex(R"(/v1/requests)"), "GET, POST"},
      {std::regex(R"(/v1/requests/[^/]+)"), "GET"},
      {std::regex(R"(/v1/requests/[^/]+/(acknowledge|verify|extend|deny|cancel|complete))"), "POST"},
      {std::regex(R"(/v1/requests/[^/]+/tasks/[^/]+/(retry|complete))"), "POST"},
      {std::regex(R"(/v1/requests/[^/]+/package)"), "GET"},
      {std::regex(R"(/v1/callbacks/opendsr)"), "POST"},
      {std::regex(R"(/v1/sla/summary)"), "GET"},
      {std::regex(R"(/v1/audit)"), "GET"},
      {std::regex(R"(/dashboard(/(app\.js|style\.css|icon\.svg))?)"), "GET"},
  };
  return paths;
}

// The dashboard's files: what the page may load is only itself, from this origin (no inline script or style).
struct DashboardAsset {
  std::string_view stem;
  const char* content_type;
};

constexpr const char* kDashboardCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void SendDashboardFile(const httplib::Request& req, httplib::Response& res, const DashboardAsset& asset) {
  const std::string_view body = DashboardFile(asset.stem);
  if (body.empty()) throw ApiError(ErrorCode::kNotFound, "no such resource");
  // A strong validator from the content: the files change only with the binary.
  unsigned char hash[16];
  crypto_generichash(hash, sizeof hash, reinterpret_cast<const unsigned char*>(body.data()), body.size(), nullptr, 0);
  std::string etag = "\"";
  for (unsigned char b : hash) etag += fmt::format("{:02x}", b);
  etag += "\"";
  res.set_header("Content-Security-Policy", kDashboardCsp);
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
  res.set_header("Cross-Origin-Opener-Policy", "same-origin");
  res.set_header("Cross-Origin-Resource-Policy", "same-origin");
  // Revalidate every time (cheap: 304 on the ETag), so that an upgraded daemon never runs an old script.
  res.set_header("Cache-Control", "no-cache");
  res.set_header("ETag", etag);
  if (req.get_header_value("If-None-Match") == etag) {
    res.status = 304;
    return;
  }
  res.status = 200;
  res.set_content(body.data(), body.size(), asset.content_type);
}

}  // namespace

namespace {

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

}  // namespace

HttpApi::HttpApi(Deps deps)
    : deps_(std::move(deps)),
      reader_([this](std::span<const ReadKey> keys) { return deps_.store.GetMany(keys); }, RequestReader::Options{}),
      writer_(deps_.store, IntakeWriter::Options{}),
      buckets_(deps_.rate_per_second, deps_.burst) {
  if (deps_.http.tls()) {
    const std::string cert = deps_.http.tls_cert_file.string();
    const std::string key = deps_.http.tls_key_file.string();
    // The setup callback rather than the (cert, key) constructor: that one allows TLS 1.1 and cannot say why a
    // file was refused.
    server_ = std::make_unique<httplib::SSLServer>([this, cert, key](SSL_CTX& ctx) {
      SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
      SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
      if (SSL_CTX_use_certificate_chain_file(&ctx, cert.c_str()) != 1) {
        tls_error_ = fmt::format("http.tls_cert_file {}: cannot use the certificate: {}", cert, OpenSslError());
        return false;
      }
      if (SSL_CTX_use_PrivateKey_file(&ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        tls_error_ = fmt::format("http.tls_key_file {}: cannot use the private key: {}", key, OpenSslError());
        return false;
      }
      if (SSL_CTX_check_private_key(&ctx) != 1) {
        tls_error_ = fmt::format("http.tls_key_file {}: the key does not match the certificate in {}", key, cert);
        ERR_clear_error();
        return false;
      }
      return true;
    });
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  const int threads = deps_.http.threads;
  const int max_queued = deps_.http.max_queued;
  server_->new_task_queue = [threads, max_queued] { return new BoundedTaskQueue(threads, max_queued); };
  server_->set_tcp_nodelay(true);
  server_->set_keep_alive_max_count(static_cast<size_t>(deps_.http.keep_alive_max_requests));
  server_->set_keep_alive_timeout(deps_.http.keep_alive_timeout_s);
  server_->set_read_timeout(deps_.http.read_timeout_s, 0);
  server_->set_write_timeout(deps_.http.read_timeout_s, 0);
  server_->set_payload_max_length(static_cast<size_t>(deps_.http.max_body_bytes));
  // cpp-httplib listens with a backlog of 5, compiled into Debian's library; remember the socket so that Bind can
  // listen again with a real backlog (Linux lets listen() raise the backlog of a listening socket).
  server_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_fd_.store(sock);
  });
  Routes();
}

HttpApi::~HttpApi() {
  Stop();
  if (summary_thread_.joinable()) summary_thread_.join();
  // How much the batching gave: what scripts/bench reads back (the intake case replays batches of this size).
  writer_.Stop();
  reader_.Stop();
  const auto w = writer_.counts();
  const auto r = reader_.counts();
  const auto mean = [](long long n, long long d) { return d ? static_cast<double>(n) / static_cast<double>(d) : 0.0; };
  LogInfo("http: {} new requests written in {} statements, requests per statement: mean {:.1f} ({} written alone "
          "after their batch was refused); {} reads in {} statements, mean {:.1f}",
          w.requests, w.batches, mean(w.requests, w.batches), w.retried_alone, r.requests, r.batches,
          mean(r.requests, r.batches));
}

int HttpApi::Bind() {
  if (!server_->is_valid()) throw std::runtime_error(tls_error_.empty() ? "cannot set up TLS" : tls_error_);
  int port = deps_.http.port;
  if (port == 0) {
    port = server_->bind_to_any_port(deps_.http.host);
    if (port < 0) throw std::runtime_error(fmt::format("cannot listen on {}:0", deps_.http.host));
  } else if (!server_->bind_to_port(deps_.http.host, port)) {
    throw std::runtime_error(fmt::format("cannot listen on {}:{}", deps_.http.host, port));
  }
  if (const int fd = listen_fd_.load(); fd >= 0) ::listen(fd, SOMAXCONN);
  return port;
}

bool HttpApi::Run() { return server_->listen_after_bind(); }

void HttpApi::Stop() { server_->stop(); }

json HttpApi::SummaryJson() {
  // Dashboards poll this many times a second. An answer younger than kMaxAge is served as it is; an older one is
  // still served at once while one background refresh replaces it (its as_of says how old it is), so a poll never
  // waits on the database once there is an answer. Only the first polls after start-up wait, for one refresh.
  constexpr auto kMaxAge = std::chrono::seconds(1);
  std::unique_lock lock(summary_mu_);
  if (summary_cache_) {
    if (std::chrono::steady_clock::now() - summary_at_ >= kMaxAge && !summary_refreshing_) {
      summary_refreshing_ = true;
      // The previous refresh has ended (summary_refreshing_ was false), so this join returns at once.
      if (summary_thread_.joinable()) summary_thread_.join();
      summary_thread_ = std::thread([this] { RefreshSummary(); });
    }
    return *summary_cache_;
  }
  if (summary_refreshing_) {
    summary_cv_.wait(lock, [this] { return !summary_refreshing_; });
    if (summary_cache_) return *summary_cache_;
  }
  summary_refreshing_ = true;
  lock.unlock();
  json out;
  try {
    out = BuildSummaryJson();
  } catch (...) {
    lock.lock();
    summary_refreshing_ = false;
    summary_cv_.notify_all();
    throw;
  }
  lock.lock();
  summary_refreshing_ = false;
  summary_cache_ = out;
  summary_at_ = std::chrono::steady_clock::now();
  summary_cv_.notify_all();
  return out;
}

void HttpApi::RefreshSummary() {
  std::optional<json> out;
  try {
    out = BuildSummaryJson();
  } catch (const std::exception& e) {
    LogWarning("sla summary: refresh failed, serving the previous answer: {}", e.what());
  }
  std::lock_guard lock(summary_mu_);
  if (out) {
    summary_cache_ = std::move(*out);
    summary_at_ = std::chrono::steady_clock::now();
  }
  summary_refreshing_ = false;
  summary_cv_.notify_all();
}

json HttpApi::BuildSummaryJson() {
  json out;
  {
    const Timestamp now = deps_.now();
    const SlaSummary s = deps_.store.Summary();
    json by_status = json::object();
    for (auto st : {RequestStatus::kReceived, RequestStatus::kVerifying, RequestStatus::kInProgress,
                    RequestStatus::kCompleted, RequestStatus::kPartiallyCompleted, RequestStatus::kDenied,
                    RequestStatus::kUnverifiable, RequestStatus::kCancelled}) {
      auto it = s.by_status.find(std::string(ToString(st)));
      by_status[std::string(ToString(st))] = it == s.by_status.end() ? 0 : it->second;
    }
    json by_type = json::object();
    for (auto t : {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect, RequestType::kOptOut,
                   RequestType::kLimit}) {
      auto it = s.by_type.find(std::string(ToString(t)));
      by_type[std::string(ToString(t))] = it == s.by_type.end() ? 0 : it->second;
    }
    json by_sla = json::object();
    for (auto st : {SlaState::kOnTrack, SlaState::kAtRisk, SlaState::kBreached, SlaState::kMet, SlaState::kMissed}) {
      auto it = s.by_sla_state.find(std::string(ToString(st)));
      by_sla[std::string(ToString(st))] = it == s.by_sla_state.end() ? 0 : it->second;
    }
    // The dashboard's breakdowns: open requests by type and by system, each by clock state.
    auto by_open_state = [](const std::map<std::string, long long>& counts) {
      json o = json::object();
      for (auto st : {SlaState::kOnTrack, SlaState::kAtRisk, SlaState::kBreached}) {
        auto it = counts.find(std::string(ToString(st)));
        o[std::string(ToString(st))] = it == counts.end() ? 0 : it->second;
      }
      return o;
    };
    json type_sla = json::object();
    for (auto t : {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect, RequestType::kOptOut,
                   RequestType::kLimit}) {
      auto it = s.open_by_type_sla.find(std::string(ToString(t)));
      type_sla[std::string(ToString(t))] = by_open_state(it == s.open_by_type_sla.end() ? std::map<std::string, long long>{}
                                                                                          : it->second);
    }
    json system_sla = json::object();
    for (const auto& [system, counts] : s.open_by_system_sla) {
      json o = by_open_state(counts);
      auto it = s.unfinished_tasks_by_system.find(system);
      o["unfinished_tasks"] = it == s.unfinished_tasks_by_system.end() ? 0 : it->second;
      system_sla[system] = o;
    }
    json next_due = json::array();
    for (const auto& [day, count] : s.next_due) next_due.push_back({{"respond_by", FormatDate(day)}, {"count", count}});
    out = {{"as_of", FormatRfc3339(now)},
           {"today", FormatDate(deps_.store.Today(now))},
           {"open", s.open},
           {"by_status", by_status},
           {"open_by_type", by_type},
           {"by_sla_state", by_sla},
           {"next_due", next_due},
           {"next_acknowledge_by", DateOrNull(s.next_acknowledge_by)},
           {"open_by_type_sla", type_sla},
           {"open_by_system", system_sla}};
  }
  return out;
}

namespace {
// When the handler on this thread began: httplib runs one request at a time per worker thread, and its logger runs
// on that thread right after the handler.
thread_local std::optional<std::chrono::steady_clock::time_point> request_started;
}  // namespace

void HttpApi::Routes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  // Wraps a handler: authentication, authorisation and the one catch site.
  auto guarded = [this](std::optional<Permission> permission,
                        std::function<void(const Req&, Res&, const Principal&)> fn) {
    return [this, permission, fn](const Req& req, Res& res) {
      request_started = std::chrono::steady_clock::now();  // the logger below observes the latency
      try {
        // Before authentication: the point is to spend as little as possible on a connection over the bound.
        // /healthz is exempt: it costs nothing, and a supervisor must not take an overloaded daemon for a dead one.
        if (BoundedTaskQueue::OnOverflowLane() && req.path != "/healthz") {
          res.set_header("Connection", "close");
          throw ApiError(ErrorCode::kOverloaded, "too many connections are waiting; retry after the Retry-After");
        }
        Principal principal{Role::kViewer, ""};
        if (permission) {
          const std::string authorization = req.get_header_value("Authorization");
          const auto token = BearerToken(authorization);
          if (!token) throw ApiError(ErrorCode::kUnauthenticated, "send Authorization: Bearer <token>");
          auto who = deps_.tokens.Authenticate(*token);
          if (!who) throw ApiError(ErrorCode::kUnauthenticated, "the bearer token is not valid");
          // Before the role check, so that refused calls count too: a token is a caller, whatever it asks.
          if (const auto wait = buckets_.Take(who->name, TokenBuckets::Clock::now()); wait.count() > 0) {
            res.set_header("Retry-After", std::to_string((wait.count() + 999) / 1000));
            throw ApiError(ErrorCode::kTooManyRequests,
                           fmt::format("this token may make {} calls a second (bursts of {}); retry later",
                                       deps_.rate_per_second, deps_.burst));
          }
          if (!Allows(who->role, *permission)) {
            throw ApiError(ErrorCode::kForbidden,
                           fmt::format("the role {} may not do this", ToString(who->role)));
          }
          principal = *who;
        }
        fn(req, res, principal);
      } catch (const ApiError& e) {
        if (e.code() == ErrorCode::kInternal) {
          LogWarning("http {} {}: {}", req.method, req.path, e.detail());
        } else if (e.code() == ErrorCode::kUnavailable) {
          // While the database is away every call answers 503: one line a second says so, with the count.
          static LogThrottle unavailable_log(std::chrono::seconds(1));
          if (const auto v = unavailable_log.Allow(); v.log) {
            LogWarning("http {} {}: {}{}", req.method, req.path, e.detail(), HeldBack(v));
          }
        }
        SendProblem(res, e, req.path);
      } catch (const std::exception& e) {
        LogError("http {} {}: internal error: {}", req.method, req.path, e.what());
        SendProblem(res, ApiError(ErrorCode::kInternal, "the server failed to handle this request"), req.path);
      }
    };
  };
  auto require_json_body = [](const Req& req) {
    if (req.body.empty()) return;
    if (!req.has_header("Content-Type") || !IsJsonContentType(req.get_header_value("Content-Type"))) {
      throw ApiError(ErrorCode::kUnsupportedMediaType, "send the body as application/json", "Content-Type");
    }
  };
  auto check_params = [](const Req& req, std::initializer_list<std::string_view> allowed) {
    for (const auto& [name, value] : req.params) {
      (void)value;
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        throw ApiError(ErrorCode::kInvalidField, fmt::format("unknown query parameter '{}'", name.substr(0, 64)),
                       name.substr(0, 64));
      }
      if (req.get_param_value_count(name) > 1) {
        throw ApiError(ErrorCode::kInvalidField, fmt::format("query parameter '{}' is given twice", name), name);
      }
    }
  };

  server_->Get("/v1/reports/metrics", guarded(Permission::kReadRequests, [this, check_params](const Req& req, Res& res,
                                                                                          const Principal&) {
                check_params(req, {"year", "format"});
                const std::string year = req.get_param_value("year");
                if (year.size() != 4 || year.find_first_not_of("0123456789") != std::string::npos) {
                  throw ApiError(ErrorCode::kInvalidField, "'year' must be a year such as 2026", "year");
                }
                const std::string format = req.has_param("format") ? req.get_param_value("format") : "json";
                if (format != "json" && format != "markdown") {
                  throw ApiError(ErrorCode::kInvalidField, "'format' must be json or markdown", "format");
                }
                const auto metrics = deps_.store.YearMetrics(std::stoi(year));
                if (format == "markdown") {
                  res.status = 200;
                  res.set_content(YearMetricsMarkdown(metrics), "text/markdown; charset=utf-8");
                } else {
                  SendJson(res, 200, metrics);
                }
              }));
  server_->Get("/metrics", guarded(Permission::kReadRequests, [this](const Req&, Res& res, const Principal&) {
                const MetricGauges gauges = deps_.store.ReadMetricGauges(deps_.now());
                res.status = 200;
                res.set_content(ProcessMetrics().Render(gauges), "text/plain; version=0.0.4; charset=utf-8");
              }));
  // Every answer, routed or not, is counted; latency is known for routed ones (stamped by `guarded`).
  server_->set_logger([](const Req& req, const Res& res) {
    double seconds = 0;
    if (request_started) {
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - *request_started).count();
      request_started.reset();
    }
    ProcessMetrics().ObserveHttp(req.method, RouteLabel(req.path), res.status, seconds);
  });

  // The SLA dashboard: static files, no token (the page asks for one and sends it to the API as a bearer header).
  server_->Get("/dashboard", guarded(std::nullopt, [check_params](const Req& req, Res& res, const Principal&) {
                check_params(req, {});
                SendDashboardFile(req, res, {"index", "text/html; charset=utf-8"});
              }));
  server_->Get(R"(/dashboard/(app\.js|style\.css|icon\.svg))",
              guarded(std::nullopt, [check_params](const Req& req, Res& res, const Principal&) {
                check_params(req, {});
                const std::string file = req.matches[1].str();
                if (file == "app.js") SendDashboardFile(req, res, {"app", "text/javascript; charset=utf-8"});
                else if (file == "style.css") SendDashboardFile(req, res, {"style", "text/css; charset=utf-8"});
                else SendDashboardFile(req, res, {"icon", "image/svg+xml"});
              }));

  // Requests cpp-httplib would accept but read its own way, refused before any body is read (tests/integration/
  // hostile_http_test.cpp): two Content-Lengths (it takes the first), one that is not a plain decimal number (it
  // reads "12abc" as 12 and "-1" as 2^64-1), Content-Length next to Transfer-Encoding, a
  // transfer coding other than one "chunked", any Content-Encoding (it inflates gzip and ignores what it does not
  // know, and max_body_bytes does not bound the inflated body), CR, LF or NUL inside a header value, a repeated
  // Authorization or Content-Type header, and multipart bodies (it parses them itself and answers a bare 400).
  server_->set_pre_routing_handler([](const Req& req, Res& res) {
    std::optional<ApiError> error;
    const std::size_t lengths = req.get_header_value_count("Content-Length");
    const std::size_t codings = req.get_header_value_count("Transfer-Encoding");
    const auto bad_header = std::find_if(req.headers.begin(), req.headers.end(), [](const auto& h) {
      return h.second.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos;
    });
    const std::string content_type = Lower(req.get_header_value("Content-Type"));
    if (bad_header != req.headers.end()) {
      error = ApiError(ErrorCode::kMalformedBody, "a header value holds a CR, LF or NUL character",
                       bad_header->first.substr(0, 64));
    } else if (req.get_header_value_count("Authorization") > 1 || req.get_header_value_count("Content-Type") > 1) {
      error = ApiError(ErrorCode::kMalformedBody, "the Authorization or Content-Type header is given twice");
    } else if (lengths > 1) {
      error = ApiError(ErrorCode::kMalformedBody, "the request has more than one Content-Length header");
    } else if (const std::string length = req.get_header_value("Content-Length");
               lengths == 1 && (length.empty() || length.size() > 19 ||
                                !std::all_of(length.begin(), length.end(), [](char c) { return c >= '0' && c <= '9'; }))) {
      error = ApiError(ErrorCode::kMalformedBody, "Content-Length must be a decimal number of bytes");
    } else if (codings > 0 && lengths > 0) {
      error = ApiError(ErrorCode::kMalformedBody, "the request has both Transfer-Encoding and Content-Length");
    } else if (codings > 1 || (codings == 1 && Lower(req.get_header_value("Transfer-Encoding")) != "chunked")) {
      error = ApiError(ErrorCode::kMalformedBody, "Transfer-Encoding must be exactly 'chunked' when it is sent");
    } else if (req.has_header("Content-Encoding") && req.get_header_value("Content-Encoding") != "identity") {
      error = ApiError(ErrorCode::kUnsupportedMediaType,
                       "Content-Encoding is not supported: send the body uncompressed", "Content-Encoding");
    } else if (content_type.starts_with("multipart/")) {
      error = ApiError(ErrorCode::kUnsupportedMediaType, "send the body as application/json", "Content-Type");
    }
    if (!error) return httplib::Server::HandlerResponse::Unhandled;
    SendProblem(res, *error, req.path);
    res.set_header("Connection", "close");
    return httplib::Server::HandlerResponse::Handled;
  });

  server_->Get("/healthz", guarded(std::nullopt, [this](const Req&, Res& res, const Principal&) {
                SendJson(res, 200, {{"status", "ok"}, {"sweeper", deps_.holds_sweeper()}});
              }));

  server_->Post("/v1/requests",
               guarded(Permission::kCreateRequest, [this, require_json_body, check_params](
                                                       const Req& req, Res& res, const Principal& who) {
                 // Content type first: cpp-httplib parses a form body into query parameters.
                 require_json_body(req);
                 check_params(req, {});
                 std::optional<std::string> key;
                 if (req.has_header("Idempotency-Key")) {
                   key = req.get_header_value("Idempotency-Key");
                   const bool printable = std::all_of(key->begin(), key->end(), [](char c) {
                     return c > 0x20 && c < 0x7f;
                   });
                   if (key->empty() || key->size() > 255 || !printable) {
                     throw ApiError(ErrorCode::kInvalidField,
                                    "Idempotency-Key must be 1 to 255 visible ASCII characters", "Idempotency-Key");
                   }
                 }
                 const Timestamp now = deps_.now();
                 if (req.body.empty()) throw ApiError(ErrorCode::kMalformedBody, "the body is empty");
                 const NewRequest parsed = ParseNewRequest(req.body, now);
                 if (parsed.callback_url && deps_.outbound) {
                   if (auto refused = deps_.outbound->Check(*parsed.callback_url)) {
                     throw ApiError(ErrorCode::kInvalidField, "'callback_url' is not allowed: " + *refused,
                                    "/callback_url");
                   }
                 }
                 const bool values = Allows(who.role, Permission::kReadIdentityValues);
                 PreparedRequest prepared = deps_.store.Prepare(parsed, who, now);
                 CreateResult created;
                 if (!key && !prepared.creates_tasks) {
                   const std::string id = prepared.record.id;
                   created = CreateResult{id, false, writer_.Write(std::move(prepared))};
                 } else {
                   created = deps_.store.Create(std::move(prepared), who, key);
                 }
                 // Built from what was written (no read-back), but for a replay and a request that fanned out.
                 std::optional<RequestRecord> record = std::move(created.record);
                 if (!record) record = reader_.Get(created.id, values);
                 if (!record) throw ApiError(ErrorCode::kInternal, "the request vanished after it was written");
                 res.set_header("Location", "/v1/requests/" + created.id);
                 if (created.replayed) res.set_header("Idempotent-Replayed", "true");
                 SendJsonText(res, created.replayed ? 200 : 201,
                              RenderRequestJson(*record, deps_.store.Today(now), deps_.store.at_risk_days(), true,
                                                values));
               }));

  server_->Get("/v1/requests", guarded(Permission::kReadRequests, [this, check_params](const Req& req, Res& res,
                                                                                      const Principal&) {
                check_params(req, {"status", "type", "sla_state", "due_before", "limit", "cursor"});
                ListFilter filter;
                if (req.has_param("status")) {
                  filter.status = ParseRequestStatus(req.get_param_value("status"));
                  if (!filter.status) throw ApiError(ErrorCode::kInvalidField, "unknown status", "status");
                }
                if (req.has_param("type")) {
                  filter.type = ParseRequestType(req.get_param_value("type"));
                  if (!filter.type) throw ApiError(ErrorCode::kInvalidField, "unknown request type", "type");
                }
                if (req.has_param("sla_state")) {
                  filter.sla_state = ParseSlaState(req.get_param_value("sla_state"));
                  if (!filter.sla_state) throw ApiError(ErrorCode::kInvalidField, "unknown SLA state", "sla_state");
                }
                if (req.has_param("due_before")) {
                  LocalDate d;
                  if (!ParseDate(req.get_param_value("due_before"), d)) {
                    throw ApiError(ErrorCode::kInvalidField, "due_before must be YYYY-MM-DD", "due_before");
                  }
                  filter.due_before = d;
                }
                if (req.has_param("limit")) {
                  const std::string text = req.get_param_value("limit");
                  int limit = 0;
                  const bool digits = !text.empty() && text.size() <= 4 &&
                                      std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(c); });
                  if (digits) limit = std::stoi(text);
                  if (limit < 1 || limit > kMaxListLimit) {
                    throw ApiError(ErrorCode::kInvalidField, fmt::format("limit must be 1 to {}", kMaxListLimit),
                                   "limit");
                  }
                  filter.limit = limit;
                }
                if (req.has_param("cursor")) {
                  filter.after = DecodeCursor(req.get_param_value("cursor"));
                  if (!filter.after) throw ApiError(ErrorCode::kInvalidField, "the cursor is not valid", "cursor");
                }
                const ListPage page = deps_.store.List(filter);
                const LocalDate today = deps_.store.Today(deps_.now());
                std::string body;
                JsonWriter w(body);
                w.BeginObject();
                w.Key("items");
                w.BeginArray();
                for (const auto& r : page.items) {
                  WriteRequestJson(w, r, today, deps_.store.at_risk_days(), false, false);
                }
                w.EndArray();
                w.Key("next_cursor");
                if (page.next) {
                  w.String(EncodeCursor(*page.next));
                } else {
                  w.Null();
                }
                w.EndObject();
                SendJsonText(res, 200, std::move(body));
              }));

  server_->Get(R"(/v1/requests/([^/]+))",
              guarded(Permission::kReadRequests, [this, check_params](const Req& req, Res& res, const Principal& who) {
                check_params(req, {"identity_values"});
                // identity_values=omit: a caller that may read identity values asks not to receive them (the
                // dashboard does, whatever token it is given).
                bool omit = false;
                if (req.has_param("identity_values")) {
                  if (req.get_param_value("identity_values") != "omit") {
                    throw ApiError(ErrorCode::kInvalidField, "identity_values may only be 'omit'", "identity_values");
                  }
                  omit = true;
                }
                const bool values = Allows(who.role, Permission::kReadIdentityValues) && !omit;
                auto record = reader_.Get(req.matches[1].str(), values);
                if (!record) throw ApiError(ErrorCode::kNotFound, "no request with this id");
                SendJsonText(res, 200,
                             RenderRequestJson(*record, deps_.store.Today(deps_.now()), deps_.store.at_risk_days(),
                                               true, values));
              }));

  server_->Post(R"(/v1/requests/([^/]+)/(acknowledge|verify|extend|deny|cancel))",
               guarded(Permission::kActOnRequest, [this, require_json_body, check_params](
                                                      const Req& req, Res& res, const Principal& who) {
                 // Content type first: cpp-httplib parses a form body into query parameters.
                 require_json_body(req);
                 check_params(req, {});
                 const std::string id = req.matches[1].str();
                 const std::string verb = req.matches[2].str();
                 ActionInput action;
                 action.event = RequestEvent::kAcknowledge;
                 if (verb == "acknowledge") {
                   ParseEmptyObject(req.body);
                 } else if (verb == "verify") {
                   action.event = RequestEvent::kVerify;
                   action.verify = ParseVerify(req.body);
                   action.detail = {{"method", action.verify->method}, {"level", action.verify->level}};
                 } else if (verb == "extend") {
                   action.event = RequestEvent::kExtend;
                   action.extend = ParseExtend(req.body);
                   action.detail = {{"reason", action.extend->reason}};
                 } else if (verb == "deny") {
                   action.deny = ParseDeny(req.body);
                   action.event = action.deny->reason == DenialReason::kUnverifiable ? RequestEvent::kDenyUnverifiable
                                                                                     : RequestEvent::kDeny;
                   action.detail = {{"reason", ToString(action.deny->reason)}, {"detail", action.deny->detail}};
                 } else {
                   action.event = RequestEvent::kCancel;
                   const CancelInput cancel = ParseCancel(req.body);
                   action.detail = {{"reason", cancel.reason}};
                 }
                 const Timestamp now = deps_.now();
                 deps_.store.Apply(id, action, who, now);
                 const bool values = Allows(who.role, Permission::kReadIdentityValues);
                 auto record = reader_.Get(id, values);
                 if (!record) throw ApiError(ErrorCode::kNotFound, "no request with this id");
                 SendJsonText(res, 200,
                              RenderRequestJson(*record, deps_.store.Today(now), deps_.store.at_risk_days(), true, values));
               }));

  server_->Post(R"(/v1/requests/([^/]+)/complete)",
               guarded(Permission::kOperateEngine, [this, require_json_body, check_params](
                                                       const Req& req, Res& res, const Principal& who) {
                 require_json_body(req);
                 check_params(req, {});
                 const CancelInput reason = ParseCancel(req.body);  // {"reason"} optional, same shape
                 ActionInput action;
                 action.event = RequestEvent::kCompletePartially;
                 action.detail = {{"reason", reason.reason}};
                 const std::string id = req.matches[1].str();
                 const Timestamp now = deps_.now();
                 deps_.store.Apply(id, action, who, now);
                 auto record = reader_.Get(id, true);
                 if (!record) throw ApiError(ErrorCode::kNotFound, "no request with this id");
                 SendJsonText(res, 200,
                              RenderRequestJson(*record, deps_.store.Today(now), deps_.store.at_risk_days(), true, true));
               }));

  server_->Post(R"(/v1/requests/([^/]+)/tasks/([^/]+)/(retry|complete))",
               guarded(Permission::kActOnRequest, [this, require_json_body, check_params](
                                                      const Req& req, Res& res, const Principal& who) {
                 require_json_body(req);
                 check_params(req, {});
                 const std::string id = req.matches[1].str();
                 const std::string task = req.matches[2].str();
                 const Timestamp now = deps_.now();
                 if (req.matches[3].str() == "retry") {
                   if (!Allows(who.role, Permission::kOperateEngine)) {
                     throw ApiError(ErrorCode::kForbidden, "only an admin may retry a dead-lettered task");
                   }
                   ParseEmptyObject(req.body);
                   deps_.store.RetryTask(id, task, who, now);
                 } else {
                   const TaskCompletionInput input = ParseTaskCompletion(req.body);
                   deps_.store.CompleteTaskManually(id, task, input.outcome, input.note, who, now);
                 }
                 const bool values = Allows(who.role, Permission::kReadIdentityValues);
                 auto record = reader_.Get(id, values);
                 if (!record) throw ApiError(ErrorCode::kNotFound, "no request with this id");
                 SendJsonText(res, 200,
                              RenderRequestJson(*record, deps_.store.Today(now), deps_.store.at_risk_days(), true, values));
               }));

  server_->Get(R"(/v1/requests/([^/]+)/package)",
              guarded(Permission::kReadPackage, [this, check_params](const Req& req, Res& res, const Principal& who) {
                check_params(req, {});
                const std::string id = req.matches[1].str();
                auto package = deps_.store.GetPackage(id);
                if (!package) {
                  throw ApiError(ErrorCode::kNotFound,
                                 "no access package: the request does not exist, is not an access request, or is "
                                 "not completed yet");
                }
                LogInfo("request {}: access package read by {}", id, who.name);
                res.set_header("Cache-Control", "no-store");
                SendJson(res, 200, *package);
              }));

  // OpenDSR processors report status changes here. No bearer token: the body's signature, checked by the
  // connector of the system that owns the task, is what authenticates it.
  server_->Post("/v1/callbacks/opendsr", guarded(std::nullopt, [this](const Req& req, Res& res, const Principal&) {
                 if (!deps_.data_map) throw ApiError(ErrorCode::kNotFound, "no such resource");
                 const auto task_id = connectors::webhook::OpenDsrCallbackRequestId(req.body);
                 if (!task_id) {
                   throw ApiError(ErrorCode::kInvalidField, "the callback names no subject_request_id",
                                  "/subject_request_id");
                 }
                 const auto system = deps_.store.TaskSystem(*task_id);
                 const SystemPlan* plan = system ? deps_.data_map->Find(*system) : nullptr;
                 auto header = [&req](std::string_view name) { return req.get_header_value(std::string(name).c_str()); };
                 if (!plan || !plan->connector->VerifyCallback(req.body, header)) {
                   throw ApiError(ErrorCode::kBadSignature,
                                  "the callback's signature does not verify against the processor's certificate");
                 }
                 deps_.store.WakeTask(*task_id);
                 res.status = 204;
               }));

  server_->Get("/v1/sla/summary", guarded(Permission::kReadRequests,
                                         [this, check_params](const Req& req, Res& res, const Principal&) {
                                           check_params(req, {});
                                           SendJson(res, 200, SummaryJson());
                                         }));

  server_->Get("/v1/audit", guarded(Permission::kReadAudit, [this, check_params](const Req& req, Res& res,
                                                                                  const Principal&) {
                check_params(req, {"after", "limit", "request_id"});
                long long after = 0;
                int limit = 100;
                std::optional<std::string> request_id;
                if (req.has_param("after")) {
                  const std::string text = req.get_param_value("after");
                  const bool digits = !text.empty() && text.size() <= 18 &&
                                      std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(c); });
                  if (!digits) throw ApiError(ErrorCode::kInvalidField, "after must be an event id", "after");
                  after = std::stoll(text);
                }
                if (req.has_param("limit")) {
                  const std::string text = req.get_param_value("limit");
                  const bool digits = !text.empty() && text.size() <= 4 &&
                                      std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(c); });
                  limit = digits ? std::stoi(text) : 0;
                  if (limit < 1 || limit > 1000) throw ApiError(ErrorCode::kInvalidField, "limit must be 1 to 1000", "limit");
                }
                if (req.has_param("request_id")) {
                  request_id = req.get_param_value("request_id");
                  if (!IsUuid(*request_id)) {
                    throw ApiError(ErrorCode::kInvalidField, "request_id must be a UUID", "request_id");
                  }
                }
                const AuditPage page = deps_.store.ListAudit(after, limit, request_id);
                json items = json::array();
                for (std::size_t i = 0; i < page.items.size(); ++i) {
                  const auto& e = page.items[i];
                  items.push_back({{"id", e.id},
                                   {"request_id", page.request_ids[i].empty() ? json() : json(page.request_ids[i])},
                                   {"at", FormatRfc3339(e.at)},
                                   {"actor", e.actor},
                                   {"action", e.action},
                                   {"detail", json::parse(e.detail.text)}});
                }
                SendJson(res, 200, {{"items", items}});
              }));

  // Everything that reaches no handler, and failures cpp-httplib detects itself (413, 400 on a broken request
  // line), gets a problem body too.
  server_->set_error_handler([](const Req& req, Res& res) {
    if (!res.body.empty()) return;
    ApiError error(ErrorCode::kNotFound, "no such resource");
    if (res.status == 404) {
      for (const auto& [pattern, allow] : KnownPaths()) {
        if (std::regex_match(req.path, pattern)) {
          res.set_header("Allow", allow);
          error = ApiError(ErrorCode::kMethodNotAllowed, fmt::format("use {} on this resource", allow));
          break;
        }
      }
    } else if (res.status == 413) {
      error = ApiError(ErrorCode::kPayloadTooLarge, "the body is larger than the configured limit");
    } else if (res.status == 415) {
      error = ApiError(ErrorCode::kUnsupportedMediaType, "unsupported content encoding or type");
    } else if (res.status >= 400 && res.status < 500) {
      error = ApiError(ErrorCode::kMalformedBody, "the HTTP request is malformed");
    } else if (res.status >= 500) {
      error = ApiError(ErrorCode::kInternal, "the server failed to handle this request");
    }
    const int status = res.status;
    SendProblem(res, error, req.path);
    if (status == 414 || status == 431) {
      // cpp-httplib's own limits (URI, headers): keep its status and say so in the body.
      nlohmann::json body = ProblemBody(error, req.path);
      body["status"] = status;
      body["detail"] = status == 414 ? "the request URI is too long" : "the request headers are too large";
      res.status = status;
      res.set_content(Dump(body), kProblemType);
    }
  });
  server_->set_exception_handler([](const Req& req, Res& res, std::exception_ptr) {
    LogError("http {} {}: unhandled exception", req.method, req.path);
    SendProblem(res, ApiError(ErrorCode::kInternal, "the server failed to handle this request"), req.path);
  });
}

}  // namespace rightsd
