#include "metrics.h"

#include <cmath>

#include <fmt/format.h>

namespace rightsd {

namespace {

// Seconds. HTTP answers are milliseconds; connector calls range up to the peers' timeouts.
constexpr std::array<double, 14> kLatencyBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10,  30};

// A label value as the exposition format wants it: backslash, double quote and newline escaped.
std::string Label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void Observe(std::vector<long long>& buckets, long long& count, double& sum, double seconds) {
  if (buckets.empty()) buckets.assign(kLatencyBuckets.size() + 1, 0);
  std::size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  ++buckets[i];
  ++count;
  sum += seconds;
}

void Header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

void Metrics::ObserveHttp(std::string_view method, std::string_view route, int status, double seconds) {
  std::lock_guard lock(mu_);
  ++http_requests_[{std::string(method), std::string(route), std::to_string(status)}];
  auto& h = http_latency_[{std::string(method), std::string(route)}];
  Observe(h.buckets, h.count, h.sum, seconds);
}

void Metrics::ObserveTask(std::string_view system, std::string_view connector, std::string_view outcome,
                          double seconds) {
  std::lock_guard lock(mu_);
  ++task_outcomes_[{std::string(system), std::string(connector), std::string(outcome)}];
  auto& h = task_latency_[{std::string(system), std::string(connector)}];
  Observe(h.buckets, h.count, h.sum, seconds);
}

std::string Metrics::Render(const MetricGauges& g) const {
  std::string out;
  auto histogram = [&out](std::string_view name, const std::string& labels, const Histogram& h) {
    long long cumulative = 0;
    for (std::size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      const double le = i < kLatencyBuckets.size() ? kLatencyBuckets[i] : INFINITY;
      out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, Number(le), cumulative);
    }
    out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, Number(h.sum), name, labels, h.count);
  };
  {
    std::lock_guard lock(mu_);
    Header(out, "rightsd_http_requests_total", "counter", "HTTP requests answered by this process.");
    for (const auto& [key, n] : http_requests_) {
      const auto& [method, route, code] = key;
      out += fmt::format("rightsd_http_requests_total{{method=\"{}\",route=\"{}\",code=\"{}\"}} {}\n", Label(method),
                         Label(route), code, n);
    }
    Header(out, "rightsd_http_request_duration_seconds", "histogram",
           "Time from routing to the handler's answer, by route.");
    for (const auto& [key, h] : http_latency_) {
      histogram("rightsd_http_request_duration_seconds",
                fmt::format("method=\"{}\",route=\"{}\"", Label(key.first), Label(key.second)), h);
    }
    Header(out, "rightsd_connector_calls_total", "counter",
           "Connector runs finished in this process, by system, connector and outcome (retry = a retried failure).");
    for (const auto& [key, n] : task_outcomes_) {
      const auto& [system, connector, kind] = key;
      out += fmt::format("rightsd_connector_calls_total{{system=\"{}\",connector=\"{}\",outcome=\"{}\"}} {}\n",
                         Label(system), Label(connector), Label(kind), n);
    }
    Header(out, "rightsd_connector_call_duration_seconds", "histogram",
           "Time from a connector's Run to its outcome, by system.");
    for (const auto& [key, h] : task_latency_) {
      histogram("rightsd_connector_call_duration_seconds",
                fmt::format("system=\"{}\",connector=\"{}\"", Label(key.first), Label(key.second)), h);
    }
  }

  Header(out, "rightsd_open_requests", "gauge", "Open requests by type and SLA state.");
  long long breached = 0;
  for (const auto& [key, n] : g.open_requests) {
    out += fmt::format("rightsd_open_requests{{type=\"{}\",sla_state=\"{}\"}} {}\n", Label(key.first),
                       Label(key.second), n);
    if (key.second == "breached") breached += n;
  }
  Header(out, "rightsd_open_requests_breached", "gauge",
         "Open requests past a legal deadline (acknowledgement or response): each is a possible violation.");
  out += fmt::format("rightsd_open_requests_breached {}\n", breached);
  // Prometheus's base unit is the second: whole calendar days to respond_by, times 86400.
  Header(out, "rightsd_open_request_time_left_seconds", "histogram",
         "Open requests by time left to respond_by, in whole calendar days times 86400 (negative: overdue).");
  for (std::size_t i = 0; i < kDaysLeftBuckets.size() && i < g.days_left_cumulative.size(); ++i) {
    out += fmt::format("rightsd_open_request_time_left_seconds_bucket{{le=\"{}\"}} {}\n", kDaysLeftBuckets[i] * 86400LL,
                       g.days_left_cumulative[i]);
  }
  out += fmt::format("rightsd_open_request_time_left_seconds_bucket{{le=\"+Inf\"}} {}\n", g.days_left_count);
  out += fmt::format("rightsd_open_request_time_left_seconds_sum {}\nrightsd_open_request_time_left_seconds_count {}\n",
                     g.days_left_sum * 86400LL, g.days_left_count);
  Header(out, "rightsd_tasks", "gauge", "Unfinished tasks (pending, running, needs_manual, failed) by connector and state.");
  for (const auto& [key, n] : g.tasks) {
    out += fmt::format("rightsd_tasks{{connector=\"{}\",state=\"{}\"}} {}\n", Label(key.first), Label(key.second), n);
  }
  Header(out, "rightsd_task_queue_due", "gauge", "Pending tasks whose next attempt is due now.");
  out += fmt::format("rightsd_task_queue_due {}\n", g.due_tasks);
  Header(out, "rightsd_task_queue_oldest_due_seconds", "gauge",
         "How long the longest-waiting due task has been due (0 when none is).");
  out += fmt::format("rightsd_task_queue_oldest_due_seconds {}\n", Number(g.oldest_due_age_seconds.value_or(0)));
  return out;
}

Metrics& ProcessMetrics() {
  static Metrics metrics;
  return metrics;
}

std::string RouteLabel(std::string_view path) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 1; start <= path.size();) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    parts.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  if (path.empty() || path[0] != '/') return "unmatched";
  const auto n = parts.size();
  auto is = [&](std::size_t i, std::string_view s) { return i < n && parts[i] == s; };
  if (n == 1 && (is(0, "healthz") || is(0, "metrics") || is(0, "dashboard"))) return "/" + std::string(parts[0]);
  if (n == 2 && is(0, "dashboard") && (is(1, "app.js") || is(1, "style.css") || is(1, "icon.svg"))) {
    return "/dashboard/" + std::string(parts[1]);
  }
  if (!is(0, "v1") || n < 2) return "unmatched";
  if (n == 3 && is(1, "sla") && is(2, "summary")) return "/v1/sla/summary";
  if (n == 2 && is(1, "audit")) return "/v1/audit";
  if (n == 3 && is(1, "callbacks") && is(2, "opendsr")) return "/v1/callbacks/opendsr";
  if (n == 3 && is(1, "reports") && is(2, "metrics")) return "/v1/reports/metrics";
  if (!is(1, "requests")) return "unmatched";
  if (n == 2) return "/v1/requests";
  // Whatever stands in an id position is an id, never a label value.
  if (parts[2].empty()) return "unmatched";
  if (n == 3) return "/v1/requests/{id}";
  static constexpr std::array<std::string_view, 7> kActions = {"acknowledge", "verify", "extend", "deny",
                                                               "cancel",      "complete", "package"};
  if (n == 4) {
    for (auto a : kActions) {
      if (parts[3] == a) return "/v1/requests/{id}/" + std::string(a);
    }
    return "unmatched";
  }
  if (n == 6 && is(3, "tasks") && (is(5, "retry") || is(5, "complete"))) {
    return "/v1/requests/{id}/tasks/{task}/" + std::string(parts[5]);
  }
  return "unmatched";
}

}  // namespace rightsd
