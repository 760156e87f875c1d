// The legal clock: deadlines of a request (11 CCR §7021, §7026, §7027), its SLA state on a given day, and the
// legal guards on actions (one extension, given on or before respond_by, never for opt-out/limit). Pure: no I/O, and "today"
// is always passed in, never read from the wall clock. Thread-safe.
#pragma once
#include <optional>
#include <string>
#include <variant>

#include "calendar.h"
#include "request_model.h"

namespace rightsd {

inline constexpr int kRespondCalendarDays = 45;
inline constexpr int kExtendedRespondCalendarDays = 90;
inline constexpr int kAcknowledgeBusinessDays = 10;
inline constexpr int kOptOutBusinessDays = 15;

struct Deadlines {
  std::optional<LocalDate> acknowledge_by;  // none for opt_out/limit
  LocalDate respond_by;
};

// received_on is day 0: the local date of received_at. Day 0 itself is never counted.
Deadlines ComputeDeadlines(RequestType type, LocalDate received_on, bool extended, const BusinessCalendar& calendar);

// What the clock needs to know about one request.
struct SlaFacts {
  RequestType type;
  RequestStatus status;
  LocalDate received_on;
  Deadlines deadlines;
  bool extended = false;
  std::optional<LocalDate> acknowledged_on;
  std::optional<LocalDate> closed_on;
};

struct SlaView {
  SlaState state;
  std::optional<int> days_left;          // respond_by - today while open; none once closed
  // The first day after today on which `state` changes by itself; none if never. Not stored: the sweeper finds the
  // requests that change from their deadlines (Store::SweepSla), and a test checks the two agree day by day.
  std::optional<LocalDate> next_change;
};

// open: breached once today is past respond_by, or past acknowledge_by without (or with a late) acknowledgement;
// at_risk when respond_by is at most at_risk_days away; otherwise on_track.
// closed: missed when closed after respond_by or a required acknowledgement came (or never came) after its
// deadline; otherwise met. A request closed before acknowledge_by needed no acknowledgement (§7021(a)).
SlaView EvaluateSla(const SlaFacts& facts, LocalDate today, int at_risk_days);

// The status after `event`, or the reason (for a 409 answer) why the state table or the law refuses it today.
std::variant<RequestStatus, std::string> CheckEvent(const SlaFacts& facts, RequestEvent event, LocalDate today);

}  // namespace rightsd
