// The yearly metrics of 11 CCR §7102: for each request type (know = access, delete, correct, opt-out, limit) the
// requests received in a calendar year, how many were complied with in whole or in part, how many denied (and why),
// and the median and mean days to a substantive response -- as JSON and as the Markdown table a privacy policy
// page can carry.
//
// Choices where §7102 is silent (docs/compliance.md lists them for counsel):
// - A request counts in the year it was received (its local received_on in the business time zone).
// - "Substantive response": the request was closed as completed, partially_completed, denied or unverifiable.
//   Days = closed_on - received_on in calendar days (day 0 is the day of receipt). Withdrawn (cancelled) and
//   still-open requests are reported in their own columns and are in no average.
// - Denied = denied or unverifiable; the reasons follow §7102's optional breakdown (not verifiable, not a consumer,
//   exempt, other).
// Purged requests still count: `rightsd purge` keeps the fields these figures need (§7101(b)).
#pragma once
#include <string>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace rightsd {

// Throws std::invalid_argument for a year outside 2020..2100.
nlohmann::json ComputeYearMetrics(pqxx::work& txn, int year, const std::string& time_zone);
std::string YearMetricsMarkdown(const nlohmann::json& metrics);

}  // namespace rightsd
