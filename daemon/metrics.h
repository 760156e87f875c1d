// What monitoring reads at GET /metrics, in the Prometheus text exposition format (version 0.0.4).
//
// Two kinds of figures: counters and histograms this process keeps (HTTP requests, connector calls and their
// outcomes) -- process-wide by nature, so one instance per process (ProcessMetrics) that the listener and the
// dispatcher write to without being wired to each other -- and gauges read from the database at scrape time
// (open requests by type and SLA state, days left, tasks by connector and state, the due queue), which are the
// same whichever process of a deployment is scraped.
//
// Thread-safety: every member may be called from any thread.
#pragma once
#include <array>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace rightsd {

// The database's side, filled by Store::ReadMetricGauges.
struct MetricGauges {
  std::map<std::pair<std::string, std::string>, long long> open_requests;  // (type, sla_state) -> count
  // Open requests by whole days left to respond_by (negative: overdue), cumulative over kDaysLeftBuckets.
  std::vector<long long> days_left_cumulative;
  long long days_left_count = 0;
  long long days_left_sum = 0;
  std::map<std::pair<std::string, std::string>, long long> tasks;  // (connector, state) -> count, unfinished states
  long long due_tasks = 0;                                         // pending and due now
  std::optional<double> oldest_due_age_seconds;
};

inline constexpr std::array<int, 9> kDaysLeftBuckets = {0, 2, 5, 10, 15, 20, 30, 45, 90};

class Metrics {
 public:
  // One HTTP exchange. `route` must come from RouteLabel (bounded cardinality).
  void ObserveHttp(std::string_view method, std::string_view route, int status, double seconds);
  // One connector call, from Run to its outcome; `outcome` is the OutcomeKind's name.
  void ObserveTask(std::string_view system, std::string_view connector, std::string_view outcome, double seconds);

  // The whole exposition: this process's counters and histograms, then `gauges`.
  std::string Render(const MetricGauges& gauges) const;

 private:
  struct Histogram {
    std::vector<long long> buckets;  // non-cumulative counts per upper bound of kLatencyBuckets, then +Inf
    long long count = 0;
    double sum = 0;
  };
  mutable std::mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, long long> http_requests_;  // method, route, code
  std::map<std::pair<std::string, std::string>, Histogram> http_latency_;                // method, route
  std::map<std::tuple<std::string, std::string, std::string>, long long> task_outcomes_;  // system, connector, kind
  std::map<std::pair<std::string, std::string>, Histogram> task_latency_;                // system, connector
};

Metrics& ProcessMetrics();

// A request path as a route template ("/v1/requests/{id}/verify"), or "unmatched": ids never become labels.
std::string RouteLabel(std::string_view path);

}  // namespace rightsd
