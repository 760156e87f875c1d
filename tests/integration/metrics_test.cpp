// GET /metrics: the exposition checked by a real parser (Debian's promtool, unpacked by scripts/lib.sh) and its
// figures checked against requests, tasks and HTTP calls this test made.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <regex>
#include <string>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

const std::string kSystems = R"toml(
[[systems]]
name = "crm"
connector = "noop"
categories = ["identifiers"]
rate_per_second = 10000
burst = 1000
)toml";

// The value of the one sample whose name and labels are exactly `series`, e.g. `rightsd_task_queue_due` or
// `rightsd_open_requests{type="access",sla_state="on_track"}`; -1 when absent.
double Sample(const std::string& exposition, const std::string& series) {
  std::size_t pos = 0;
  while ((pos = exposition.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || exposition[pos - 1] == '\n') {
      const std::size_t end = exposition.find('\n', pos);
      return std::stod(exposition.substr(pos + series.size() + 1, end - pos - series.size() - 1));
    }
    pos += series.size();
  }
  return -1;
}

struct Checked {
  int exit_code = -1;
  std::string output;
};

Checked Promtool(const std::string& exposition, const std::filesystem::path& dir) {
  const auto file = dir / "metrics.txt";
  std::ofstream(file) << exposition;
  const std::string command = fmt::format("'{}' check metrics < '{}' 2>&1", RIGHTSD_PROMTOOL, file.string());
  Checked c;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) c.output += buf;
  const int status = ::pclose(pipe);
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return c;
}

}  // namespace

TEST_CASE("api: /metrics is valid Prometheus text with the open requests, breaches, tasks and HTTP figures",
          "[api][metrics]") {
  DaemonEnv env(true, kSystems);
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string submitter = env.token("submitter");
  for (int i = 0; i < 3; ++i) {
    REQUIRE(d.Call("POST", "/v1/requests", submitter,
                   fmt::format(R"({{"type":"access","subject":{{"identities":[{{"kind":"email","value":"m{}@example.com"}}]}}}})", i))
                .status == 201);
  }
  // An opt-out fans out at once: a noop task runs through the dispatcher.
  const auto opt_out = d.Call("POST", "/v1/requests", submitter,
                              R"({"type":"opt_out","subject":{"identities":[{"kind":"email","value":"o@example.com"}]}})");
  REQUIRE(opt_out.status == 201);
  const std::string opt_out_id = opt_out.json()["id"];
  REQUIRE(Eventually([&] { return d.Call("GET", "/v1/requests/" + opt_out_id, submitter).json()["status"] == "completed"; }, 20));
  // One access request more, overdue: its deadline moved into the past as if it had been forgotten.
  const auto late = d.Call("POST", "/v1/requests", submitter,
                           R"({"type":"access","subject":{"identities":[{"kind":"email","value":"late@example.com"}]}})");
  REQUIRE(late.status == 201);
  const std::string late_id = late.json()["id"];
  // Three days before the daemon's today, which is the local date in its zone: the database's current_date is the
  // UTC date, a day ahead of Los Angeles from 16:00 or 17:00 local time (CI failed so: 2 days overdue, not 3).
  REQUIRE(env.db().Scalar("WITH u AS (UPDATE requests SET respond_by = (now() AT TIME ZONE 'America/Los_Angeles')::date "
                          "- 3, sla_state = 'breached' "
                          "WHERE id = '" + late_id + "' RETURNING 1) SELECT count(*) FROM u") == "1");
  // Some HTTP traffic to count: a 404 on an id (never a label), a 401 and an unknown route.
  CHECK(d.Call("GET", "/v1/requests/00000000-0000-4000-8000-000000000000", submitter).status == 404);
  CHECK(d.Call("GET", "/v1/requests", "not-a-token").status == 401);
  CHECK(d.Call("GET", "/v1/no/such/route", submitter).status == 404);

  CHECK(d.Call("GET", "/metrics", "").status == 401);
  const auto metrics = d.Call("GET", "/metrics", env.token("viewer"));
  REQUIRE(metrics.status == 200);
  CHECK(metrics.content_type.starts_with("text/plain; version=0.0.4"));
  const std::string& text = metrics.body;
  INFO(text);

  const Checked lint = Promtool(text, env.dir());
  INFO("promtool: " << lint.output);
  CHECK(lint.exit_code == 0);

  CHECK(Sample(text, R"(rightsd_open_requests{type="access",sla_state="on_track"})") == 3);
  CHECK(Sample(text, R"(rightsd_open_requests{type="access",sla_state="breached"})") == 1);
  CHECK(Sample(text, "rightsd_open_requests_breached") == 1);
  CHECK(Sample(text, R"(rightsd_open_request_time_left_seconds_bucket{le="0"})") == 1);  // the overdue one
  CHECK(Sample(text, R"(rightsd_open_request_time_left_seconds_bucket{le="172800"})") == 1);
  CHECK(Sample(text, R"(rightsd_open_request_time_left_seconds_bucket{le="7776000"})") == 4);  // 90 days
  CHECK(Sample(text, R"(rightsd_open_request_time_left_seconds_bucket{le="+Inf"})") == 4);
  CHECK(Sample(text, "rightsd_open_request_time_left_seconds_count") == 4);
  // Three due in 45 days and one 3 days overdue.
  CHECK(Sample(text, "rightsd_open_request_time_left_seconds_sum") == (3 * 45 - 3) * 86400.0);
  CHECK(Sample(text, R"(rightsd_connector_calls_total{system="crm",connector="noop",outcome="done"})") == 1);
  CHECK(Sample(text, R"(rightsd_connector_call_duration_seconds_count{system="crm",connector="noop"})") == 1);
  CHECK(Sample(text, R"(rightsd_http_requests_total{method="POST",route="/v1/requests",code="201"})") == 5);
  CHECK(Sample(text, R"(rightsd_http_requests_total{method="GET",route="/v1/requests/{id}",code="404"})") == 1);
  CHECK(Sample(text, R"(rightsd_http_requests_total{method="GET",route="/v1/requests",code="401"})") == 1);
  CHECK(Sample(text, R"(rightsd_http_requests_total{method="GET",route="unmatched",code="404"})") == 1);
  CHECK(Sample(text, R"(rightsd_http_request_duration_seconds_count{method="POST",route="/v1/requests"})") == 5);
  CHECK(Sample(text, "rightsd_task_queue_due") == 0);
  // No request id, and no identity value, is ever a label.
  CHECK(text.find(late_id) == std::string::npos);
  CHECK(text.find(opt_out_id) == std::string::npos);
  CHECK(text.find("@example.com") == std::string::npos);
  CHECK(d.Stop() == 0);
}

TEST_CASE("api: /metrics counts unfinished tasks by connector and state and the age of the due queue",
          "[api][metrics]") {
  // The engine is off in this process: tasks wait, due, as they would behind a stuck engine.
  DaemonEnv env(true, kSystems + "\n[engine]\nenabled = false\n");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  for (int i = 0; i < 2; ++i) {
    REQUIRE(d.Call("POST", "/v1/requests", env.token("submitter"),
                   fmt::format(R"({{"type":"opt_out","subject":{{"identities":[{{"kind":"email","value":"q{}@example.com"}}]}}}})", i))
                .status == 201);
  }
  REQUIRE(env.db().Scalar("WITH u AS (UPDATE tasks SET next_attempt_at = now() - interval '90 seconds' RETURNING 1) "
                          "SELECT count(*) FROM u") == "2");
  const auto metrics = d.Call("GET", "/metrics", env.token("viewer"));
  REQUIRE(metrics.status == 200);
  INFO(metrics.body);
  CHECK(Sample(metrics.body, R"(rightsd_tasks{connector="noop",state="pending"})") == 2);
  CHECK(Sample(metrics.body, "rightsd_task_queue_due") == 2);
  CHECK(Sample(metrics.body, "rightsd_task_queue_oldest_due_seconds") >= 90);
  CHECK(Promtool(metrics.body, env.dir()).exit_code == 0);
  CHECK(d.Stop() == 0);
}
