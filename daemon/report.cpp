#include "report.h"

#include <array>
#include <cmath>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

namespace rightsd {

namespace {

struct TypeName {
  std::string_view type;   // requests.type
  std::string_view label;  // §7102's word
};
constexpr std::array<TypeName, 5> kTypes = {{{"access", "know"},
                                             {"delete", "delete"},
                                             {"correct", "correct"},
                                             {"opt_out", "opt-out of sale/sharing"},
                                             {"limit", "limit use of sensitive personal information"}}};

nlohmann::json Days(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return std::round(f.as<double>() * 10) / 10;  // one decimal: a published figure, not a measurement
}

}  // namespace

nlohmann::json ComputeYearMetrics(pqxx::work& txn, int year, const std::string& time_zone) {
  if (year < 2020 || year > 2100) throw std::invalid_argument("year must be between 2020 and 2100");
  const std::string from = fmt::format("{}-01-01", year);
  const std::string to = fmt::format("{}-01-01", year + 1);
  constexpr std::string_view kResponded = "status IN ('completed', 'partially_completed', 'denied', 'unverifiable')";
  const auto rows = txn.exec_params(
      fmt::format("SELECT type, count(*), "
                  "count(*) FILTER (WHERE status = 'completed'), "
                  "count(*) FILTER (WHERE status = 'partially_completed'), "
                  "count(*) FILTER (WHERE status IN ('denied', 'unverifiable')), "
                  "count(*) FILTER (WHERE status = 'unverifiable' OR (status = 'denied' AND denial_reason = "
                  "'unverifiable')), "
                  "count(*) FILTER (WHERE status = 'denied' AND denial_reason = 'not_a_consumer'), "
                  "count(*) FILTER (WHERE status = 'denied' AND denial_reason = 'exempt'), "
                  "count(*) FILTER (WHERE status = 'denied' AND (denial_reason = 'other' OR denial_reason IS NULL)), "
                  "count(*) FILTER (WHERE status = 'cancelled'), "
                  "count(*) FILTER (WHERE closed_at IS NULL), "
                  "count(*) FILTER (WHERE {0}), "
                  "percentile_cont(0.5) WITHIN GROUP (ORDER BY closed_on - received_on) FILTER (WHERE {0}), "
                  "avg(closed_on - received_on) FILTER (WHERE {0}) "
                  "FROM requests WHERE received_on >= $1::date AND received_on < $2::date GROUP BY type",
                  kResponded),
      from, to);
  nlohmann::json by_type = nlohmann::json::object();
  for (const auto& t : kTypes) {
    by_type[std::string(t.type)] = {{"label", t.label},
                                    {"received", 0},
                                    {"complied_whole_or_part", 0},
                                    {"complied_in_whole", 0},
                                    {"complied_in_part", 0},
                                    {"denied", 0},
                                    {"denied_reasons",
                                     {{"not_verifiable", 0}, {"not_a_consumer", 0}, {"exempt", 0}, {"other", 0}}},
                                    {"withdrawn", 0},
                                    {"pending", 0},
                                    {"days_to_substantive_response", {{"responses", 0}, {"median", nullptr}, {"mean", nullptr}}}};
  }
  for (const auto& r : rows) {
    auto& m = by_type[r[0].as<std::string>()];
    m["received"] = r[1].as<long long>();
    m["complied_in_whole"] = r[2].as<long long>();
    m["complied_in_part"] = r[3].as<long long>();
    m["complied_whole_or_part"] = r[2].as<long long>() + r[3].as<long long>();
    m["denied"] = r[4].as<long long>();
    m["denied_reasons"] = {{"not_verifiable", r[5].as<long long>()},
                           {"not_a_consumer", r[6].as<long long>()},
                           {"exempt", r[7].as<long long>()},
                           {"other", r[8].as<long long>()}};
    m["withdrawn"] = r[9].as<long long>();
    m["pending"] = r[10].as<long long>();
    m["days_to_substantive_response"] = {{"responses", r[11].as<long long>()}, {"median", Days(r[12])}, {"mean", Days(r[13])}};
  }
  return {{"year", year},
          {"time_zone", time_zone},
          {"counted", "requests received in the calendar year (local date of receipt)"},
          {"days", "calendar days from the day of receipt to the day of the substantive response (completed, "
                   "partially completed, denied or unverifiable)"},
          {"by_type", by_type}};
}

std::string YearMetricsMarkdown(const nlohmann::json& metrics) {
  auto days = [](const nlohmann::json& v) { return v.is_null() ? std::string("–") : fmt::format("{:.1f}", v.get<double>()); };
  std::string out = fmt::format(
      "### Consumer requests received in {}\n\n"
      "| Request | Received | Complied with in whole or in part | Denied | Median days to respond | Mean days to "
      "respond |\n"
      "| --- | ---: | ---: | ---: | ---: | ---: |\n",
      metrics.at("year").get<int>());
  for (const auto& t : kTypes) {
    const auto& m = metrics.at("by_type").at(std::string(t.type));
    const auto& d = m.at("days_to_substantive_response");
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", t.label, m.at("received").get<long long>(),
                       m.at("complied_whole_or_part").get<long long>(), m.at("denied").get<long long>(),
                       days(d.at("median")), days(d.at("mean")));
  }
  out += "\n| Request | Denied: not verifiable | Denied: not a consumer | Denied: exempt | Denied: other |\n"
         "| --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& t : kTypes) {
    const auto& r = metrics.at("by_type").at(std::string(t.type)).at("denied_reasons");
    out += fmt::format("| {} | {} | {} | {} | {} |\n", t.label, r.at("not_verifiable").get<long long>(),
                       r.at("not_a_consumer").get<long long>(), r.at("exempt").get<long long>(),
                       r.at("other").get<long long>());
  }
  out += fmt::format("\nDays are calendar days from the day a request was received to the day it was answered. "
                     "Requests are counted in the year they were received ({}).\n",
                     metrics.at("time_zone").get<std::string>());
  return out;
}

}  // namespace rightsd
