// The 11 CCR §7102 yearly metrics: a seeded year of requests (and its neighbours), whose figures this test
// computes on its own from the seed, against `rightsd report metrics` and GET /v1/reports/metrics.
#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

struct Seeded {
  std::string type;
  std::string status;         // final or open
  std::string denial_reason;  // "" = NULL
  int received_day = 0;       // day of the year, 0 = January 1
  int days_to_close = 0;      // closed_on - received_on, when closed
  int year = 2025;
};

bool Closed(const Seeded& s) {
  return s.status != "received" && s.status != "verifying" && s.status != "in_progress";
}
bool Responded(const Seeded& s) {
  return s.status == "completed" || s.status == "partially_completed" || s.status == "denied" ||
         s.status == "unverifiable";
}

std::vector<Seeded> MakeSeed() {
  std::mt19937 rng(7102);
  const std::vector<std::string> types = {"access", "delete", "correct", "opt_out", "limit"};
  const std::vector<std::string> statuses = {"completed", "completed",    "completed", "partially_completed", "denied",
                                             "unverifiable", "cancelled", "in_progress", "received"};
  const std::vector<std::string> reasons = {"unverifiable", "exempt", "not_a_consumer", "other"};
  std::vector<Seeded> out;
  for (int i = 0; i < 240; ++i) {
    Seeded s;
    s.type = types[rng() % types.size()];
    s.status = statuses[rng() % statuses.size()];
    if ((s.type == "opt_out" || s.type == "limit") && s.status == "unverifiable") s.status = "denied";
    if (s.status == "denied") s.denial_reason = reasons[rng() % reasons.size()];
    s.received_day = static_cast<int>(rng() % 365);
    s.days_to_close = 1 + static_cast<int>(rng() % 60);
    out.push_back(s);
  }
  // Neighbours on both sides of the year: never counted in 2025.
  out.push_back({"access", "completed", "", 364, 5, 2024});
  out.push_back({"delete", "denied", "exempt", 0, 5, 2026});
  // The first and last day of the year are in it.
  out.push_back({"access", "completed", "", 0, 10, 2025});
  out.push_back({"access", "completed", "", 364, 20, 2025});
  return out;
}

std::string InsertSql(const Seeded& s) {
  const std::string received_on = fmt::format("(date '{}-01-01' + {})", s.year, s.received_day);
  const bool closed = Closed(s);
  const bool deadlines = s.type == "access" || s.type == "delete" || s.type == "correct";
  return fmt::format(
      "INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by, "
      "closed_at, closed_on, denial_reason, sla_state, created_by) VALUES (gen_random_uuid(), '{0}', '{1}', "
      "{2}::timestamp AT TIME ZONE 'America/Los_Angeles' + interval '12 hours', {2}, 'api', {3}, {2} + 45, {4}, {5}, "
      "{6}, '{7}', 'seed')",
      s.type, s.status, received_on, deadlines ? received_on + " + 14" : "NULL",
      closed ? fmt::format("({} + {})::timestamp AT TIME ZONE 'America/Los_Angeles' + interval '15 hours'", received_on,
                           s.days_to_close)
             : "NULL",
      closed ? fmt::format("{} + {}", received_on, s.days_to_close) : "NULL",
      s.denial_reason.empty() ? "NULL" : "'" + s.denial_reason + "'", closed ? "met" : "on_track");
}

// What §7102 asks, computed from the seed alone.
json Expected(const std::vector<Seeded>& seed, const std::string& type) {
  long long received = 0, whole = 0, part = 0, denied = 0, withdrawn = 0, pending = 0;
  std::map<std::string, long long> reasons = {{"not_verifiable", 0}, {"not_a_consumer", 0}, {"exempt", 0}, {"other", 0}};
  std::vector<int> days;
  for (const auto& s : seed) {
    if (s.year != 2025 || s.type != type) continue;
    ++received;
    if (s.status == "completed") ++whole;
    if (s.status == "partially_completed") ++part;
    if (s.status == "denied" || s.status == "unverifiable") {
      ++denied;
      if (s.status == "unverifiable" || s.denial_reason == "unverifiable") {
        ++reasons["not_verifiable"];
      } else {
        ++reasons[s.denial_reason];
      }
    }
    if (s.status == "cancelled") ++withdrawn;
    if (!Closed(s)) ++pending;
    if (Responded(s)) days.push_back(s.days_to_close);
  }
  json d = {{"responses", days.size()}, {"median", nullptr}, {"mean", nullptr}};
  if (!days.empty()) {
    std::sort(days.begin(), days.end());
    const double median = days.size() % 2 ? days[days.size() / 2]
                                          : (days[days.size() / 2 - 1] + days[days.size() / 2]) / 2.0;
    const double mean = std::accumulate(days.begin(), days.end(), 0.0) / static_cast<double>(days.size());
    d["median"] = std::round(median * 10) / 10;
    d["mean"] = std::round(mean * 10) / 10;
  }
  return {{"received", received},
          {"complied_in_whole", whole},
          {"complied_in_part", part},
          {"complied_whole_or_part", whole + part},
          {"denied", denied},
          {"denied_reasons", reasons},
          {"withdrawn", withdrawn},
          {"pending", pending},
          {"days_to_substantive_response", d}};
}

void CheckFigures(const json& report, const std::vector<Seeded>& seed) {
  REQUIRE(report["year"] == 2025);
  for (const std::string type : {"access", "delete", "correct", "opt_out", "limit"}) {
    INFO("type " << type);
    json got = report["by_type"][type];
    got.erase("label");
    CHECK(got == Expected(seed, type));
  }
}

}  // namespace

TEST_CASE("api: the 7102 yearly metrics match figures computed independently from a seeded year", "[api][report]") {
  DaemonEnv env(true);
  const auto seed = MakeSeed();
  std::string sql;
  for (const auto& s : seed) sql += InsertSql(s) + ";\n";
  env.db().Scalar("DO $seed$ BEGIN " + sql + " END $seed$; SELECT 1");

  SECTION("rightsd report metrics") {
    const auto out = env.Cli({"report", "metrics", "--year", "2025", "--config", env.config().string()});
    INFO(out.err);
    REQUIRE(out.exit_code == 0);
    CheckFigures(json::parse(out.out), seed);
    CHECK(json::parse(out.out)["by_type"]["access"]["label"] == "know");
    const auto md = env.Cli({"report", "metrics", "--year", "2025", "--format", "markdown", "--config", env.config().string()});
    REQUIRE(md.exit_code == 0);
    const json expected_access = Expected(seed, "access");
    CHECK(md.out.find(fmt::format("| know | {} | {} | {} |", expected_access["received"].get<long long>(),
                                  expected_access["complied_whole_or_part"].get<long long>(),
                                  expected_access["denied"].get<long long>())) != std::string::npos);
    CHECK(md.out.find("| Request | Received | Complied with in whole or in part | Denied |") != std::string::npos);
    CHECK(env.Cli({"report", "metrics", "--config", env.config().string()}).exit_code == 2);
    CHECK(env.Cli({"report", "metrics", "--year", "25", "--config", env.config().string()}).exit_code == 2);
    CHECK(env.Cli({"report", "metrics", "--year", "2025", "--format", "csv", "--config", env.config().string()}).exit_code == 2);
  }
  SECTION("GET /v1/reports/metrics") {
    Daemon d(env);
    REQUIRE(d.WaitReady());
    const auto res = d.Call("GET", "/v1/reports/metrics?year=2025", env.token("viewer"));
    REQUIRE(res.status == 200);
    CheckFigures(res.json(), seed);
    const auto md = d.Call("GET", "/v1/reports/metrics?year=2025&format=markdown", env.token("auditor"));
    REQUIRE(md.status == 200);
    CHECK(md.content_type.starts_with("text/markdown"));
    const auto bad = d.Call("GET", "/v1/reports/metrics?year=twenty", env.token("viewer"));
    CHECK(bad.status == 422);
    CHECK(bad.body.find("year") != std::string::npos);
    CHECK(d.Call("GET", "/v1/reports/metrics?year=1999", env.token("viewer")).status == 422);
    CHECK(d.Call("GET", "/v1/reports/metrics?year=2025&format=xml", env.token("viewer")).status == 422);
    CHECK(d.Call("GET", "/v1/reports/metrics?year=2025", "").status == 401);
    // An empty year has zeros and no averages, not an error.
    const auto empty = d.Call("GET", "/v1/reports/metrics?year=2031", env.token("viewer")).json();
    CHECK(empty["by_type"]["delete"]["received"] == 0);
    CHECK(empty["by_type"]["delete"]["days_to_substantive_response"]["median"].is_null());
    CHECK(d.Stop() == 0);
  }
}
