#include "sla.h"

#include <algorithm>

#include <fmt/format.h>

namespace rightsd {

Deadlines ComputeDeadlines(RequestType type, LocalDate received_on, bool extended, const BusinessCalendar& calendar) {
  if (!HasAcknowledgement(type)) {
    return Deadlines{std::nullopt, calendar.NthBusinessDayAfter(received_on, kOptOutBusinessDays)};
  }
  const int respond_days = extended ? kExtendedRespondCalendarDays : kRespondCalendarDays;
  return Deadlines{calendar.NthBusinessDayAfter(received_on, kAcknowledgeBusinessDays),
                   received_on + date::days{respond_days}};
}

namespace {

bool AcknowledgementMissed(const SlaFacts& f, LocalDate as_of) {
  if (!f.deadlines.acknowledge_by) return false;
  const LocalDate due = *f.deadlines.acknowledge_by;
  if (f.acknowledged_on) return *f.acknowledged_on > due;
  return as_of > due;
}

}  // namespace

SlaView EvaluateSla(const SlaFacts& f, LocalDate today, int at_risk_days) {
  const LocalDate respond_by = f.deadlines.respond_by;
  if (!IsOpen(f.status)) {
    const LocalDate closed = f.closed_on.value_or(today);
    const bool missed = closed > respond_by || AcknowledgementMissed(f, closed);
    return SlaView{missed ? SlaState::kMissed : SlaState::kMet, std::nullopt, std::nullopt};
  }
  const int days_left = (respond_by - today).count();
  if (today > respond_by || AcknowledgementMissed(f, today)) {
    return SlaView{SlaState::kBreached, days_left, std::nullopt};
  }
  // Candidates for the next change of state, all strictly after today.
  std::optional<LocalDate> next;
  auto consider = [&](LocalDate d) {
    if (d > today && (!next || d < *next)) next = d;
  };
  consider(respond_by + date::days{1});
  if (f.deadlines.acknowledge_by && !f.acknowledged_on) consider(*f.deadlines.acknowledge_by + date::days{1});
  const bool at_risk = days_left <= at_risk_days;
  if (!at_risk) consider(respond_by - date::days{at_risk_days});
  return SlaView{at_risk ? SlaState::kAtRisk : SlaState::kOnTrack, days_left, next};
}

std::variant<RequestStatus, std::string> CheckEvent(const SlaFacts& f, RequestEvent event, LocalDate today) {
  const auto next = Next(f.status, event);
  if (!next) {
    return fmt::format("a request that is {} cannot take the action {}", ToString(f.status), ToString(event));
  }
  switch (event) {
    case RequestEvent::kAcknowledge:
      if (!HasAcknowledgement(f.type)) {
        return fmt::format("{} requests have no acknowledgement (11 CCR §7026/§7027)", ToString(f.type));
      }
      if (f.acknowledged_on) return std::string("the request was already acknowledged");
      break;
    case RequestEvent::kExtend:
      if (!MayExtend(f.type)) {
        return fmt::format("{} requests cannot be extended: they must be honoured within {} business days",
                           ToString(f.type), kOptOutBusinessDays);
      }
      if (f.extended) return std::string("the request was already extended once; only one extension is allowed");
      if (today > f.deadlines.respond_by) {
        return fmt::format("an extension must be given on or before respond_by ({})",
                           FormatDate(f.deadlines.respond_by));
      }
      break;
    default:
      break;
  }
  return *next;
}

}  // namespace rightsd
