// Unit tests for daemon/sla.{h,cpp}: the legal clock. Deadlines (ComputeDeadlines), the SLA state on a given day
// (EvaluateSla) and the legal guards on actions (CheckEvent).
//
// Every date below was counted by hand on a wall calendar; the comments show the count. Day 0 (the local date of
// receipt) is never counted. "Today" is always a fixed date: nothing here reads the wall clock.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER
#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <variant>

#include "calendar.h"
#include "request_model.h"
#include "sla.h"

using rightsd::BusinessCalendar;
using rightsd::CheckEvent;
using rightsd::ComputeDeadlines;
using rightsd::Deadlines;
using rightsd::EvaluateSla;
using rightsd::FormatDate;
using rightsd::LocalDate;
using rightsd::ParseBusinessDays;
using rightsd::ParseHolidays;
using rightsd::RequestEvent;
using rightsd::RequestStatus;
using rightsd::RequestType;
using rightsd::SlaFacts;
using rightsd::SlaState;
using rightsd::SlaView;
using Catch::Matchers::Contains;

namespace {

LocalDate D(int y, unsigned m, unsigned d) { return LocalDate{date::year{y} / date::month{m} / date::day{d}}; }

std::chrono::system_clock::time_point Utc(int y, unsigned mo, unsigned d, int h, int mi) {
  return date::sys_days{date::year{y} / date::month{mo} / date::day{d}} + std::chrono::hours{h} +
         std::chrono::minutes{mi};
}

// California state holidays around the dates used below (weekday in brackets).
constexpr const char* kHolidays = R"(# test holidays
2025-11-11  # Veterans Day [Tue]
2025-11-27  # Thanksgiving [Thu]
2025-11-28  # Day after Thanksgiving [Fri]
2025-12-25  # Christmas [Thu]
2026-01-01  # New Year's Day [Thu]
2026-01-19  # Martin Luther King Jr. Day [Mon]
2026-02-16  # Presidents' Day [Mon]
2026-11-11  # Veterans Day [Wed]
2026-11-26  # Thanksgiving [Thu]
2026-11-27  # Day after Thanksgiving [Fri]
2026-12-25  # Christmas [Fri]
2027-01-01  # New Year's Day [Fri]
2027-01-18  # Martin Luther King Jr. Day [Mon]
)";

BusinessCalendar Cal() {
  return BusinessCalendar(date::locate_zone("America/Los_Angeles"), ParseHolidays(kHolidays),
                          ParseBusinessDays({"mon", "tue", "wed", "thu", "fri"}));
}

BusinessCalendar CalWithoutHolidays() {
  return BusinessCalendar(date::locate_zone("America/Los_Angeles"), {},
                          ParseBusinessDays({"mon", "tue", "wed", "thu", "fri"}));
}

std::string Iso(LocalDate d) { return FormatDate(d); }
std::string Iso(const std::optional<LocalDate>& d) { return d ? FormatDate(*d) : std::string("none"); }

std::string StateOf(const SlaView& v) { return std::string(rightsd::ToString(v.state)); }

// The base request of the EvaluateSla tests: an access request received Wed 2026-04-01 (no holiday nearby).
//   acknowledge_by: Apr 2 Thu(1) 3 Fri(2) 6 Mon(3) 7(4) 8(5) 9(6) 10 Fri(7) 13 Mon(8) 14(9) 15 Wed(10) = 2026-04-15
//   respond_by: Apr 1 + 45 = (Apr 1 -> Apr 30 is 29 days) + 16 = 2026-05-16 (a Saturday; calendar days)
// Written out literally so that these tests do not depend on ComputeDeadlines.
SlaFacts AccessFacts() {
  SlaFacts f{};
  f.type = RequestType::kAccess;
  f.status = RequestStatus::kReceived;
  f.received_on = D(2026, 4, 1);
  f.deadlines = Deadlines{D(2026, 4, 15), D(2026, 5, 16)};
  return f;
}

SlaFacts Acknowledged(SlaFacts f, LocalDate on) {
  f.status = RequestStatus::kVerifying;
  f.acknowledged_on = on;
  return f;
}

SlaFacts Closed(SlaFacts f, RequestStatus status, LocalDate on) {
  f.status = status;
  f.closed_on = on;
  return f;
}

// An opt-out received Wed 2026-04-01:
//   respond_by: ... 15 Wed(10) 16 Thu(11) 17 Fri(12) 20 Mon(13) 21 Tue(14) 22 Wed(15) = 2026-04-22
SlaFacts OptOutFacts() {
  SlaFacts f{};
  f.type = RequestType::kOptOut;
  f.status = RequestStatus::kReceived;
  f.received_on = D(2026, 4, 1);
  f.deadlines = Deadlines{std::nullopt, D(2026, 4, 22)};
  return f;
}

std::string Refusal(const std::variant<RequestStatus, std::string>& r) {
  if (const auto* s = std::get_if<std::string>(&r)) return *s;
  return "";
}

bool Allowed(const std::variant<RequestStatus, std::string>& r, RequestStatus expected) {
  const auto* s = std::get_if<RequestStatus>(&r);
  return s && *s == expected;
}

constexpr int kAtRisk = 10;

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// ComputeDeadlines
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("sla: deadlines for access, delete and correct received on a weekday", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Day 0 = Wed 2026-04-01.
  //   acknowledge_by: Apr 2 Thu(1) 3 Fri(2) 6 Mon(3) 7(4) 8(5) 9(6) 10 Fri(7) 13 Mon(8) 14(9) 15 Wed(10)
  //   respond_by: Apr 1 + 29 = Apr 30, + 16 = May 16
  //   extended: Apr 1 + 29 = Apr 30, + 31 = May 31 (60), + 30 = Jun 30 (90)
  for (RequestType type : {RequestType::kAccess, RequestType::kDelete, RequestType::kCorrect}) {
    INFO(rightsd::ToString(type));
    const Deadlines d = ComputeDeadlines(type, D(2026, 4, 1), false, cal);
    CHECK(Iso(d.acknowledge_by) == "2026-04-15");
    CHECK(Iso(d.respond_by) == "2026-05-16");
    const Deadlines x = ComputeDeadlines(type, D(2026, 4, 1), true, cal);
    CHECK(Iso(x.acknowledge_by) == "2026-04-15");  // the extension moves only respond_by
    CHECK(Iso(x.respond_by) == "2026-06-30");
  }
}

TEST_CASE("sla: deadlines for opt_out and limit are 15 business days without acknowledgement", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Day 0 = Wed 2026-04-01: ... 15 Wed(10) 16 Thu(11) 17 Fri(12) 20 Mon(13) 21 Tue(14) 22 Wed(15)
  for (RequestType type : {RequestType::kOptOut, RequestType::kLimit}) {
    INFO(rightsd::ToString(type));
    const Deadlines d = ComputeDeadlines(type, D(2026, 4, 1), false, cal);
    CHECK_FALSE(d.acknowledge_by.has_value());
    CHECK(Iso(d.respond_by) == "2026-04-22");
    // An (illegal) extension flag changes nothing for these types.
    const Deadlines x = ComputeDeadlines(type, D(2026, 4, 1), true, cal);
    CHECK_FALSE(x.acknowledge_by.has_value());
    CHECK(Iso(x.respond_by) == "2026-04-22");
  }
}

TEST_CASE("sla: deadlines for a Saturday receipt", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Received Sat 2025-10-04 at noon PDT (19:00Z): day 0 is the Saturday.
  const LocalDate sat = cal.LocalDateOf(Utc(2025, 10, 4, 19, 0));
  REQUIRE(Iso(sat) == "2025-10-04");

  // acknowledge_by: Oct 6 Mon(1) 7(2) 8(3) 9(4) 10 Fri(5) 13 Mon(6) 14(7) 15(8) 16(9) 17 Fri(10)
  // respond_by: Oct 4 + 27 = Oct 31, + 18 = Nov 18
  // extended: Oct 4 + 27 = Oct 31, + 30 = Nov 30 (57), + 31 = Dec 31 (88), + 2 = 2026-01-02 (90)
  const Deadlines d = ComputeDeadlines(RequestType::kAccess, sat, false, cal);
  CHECK(Iso(d.acknowledge_by) == "2025-10-17");
  CHECK(Iso(d.respond_by) == "2025-11-18");
  CHECK(Iso(ComputeDeadlines(RequestType::kAccess, sat, true, cal).respond_by) == "2026-01-02");

  // opt_out: ... 17 Fri(10) 20 Mon(11) 21(12) 22(13) 23(14) 24 Fri(15)
  const Deadlines o = ComputeDeadlines(RequestType::kOptOut, sat, false, cal);
  CHECK_FALSE(o.acknowledge_by.has_value());
  CHECK(Iso(o.respond_by) == "2025-10-24");

  // Received Fri 23:30 PDT (Sat 2025-10-04T06:30Z): day 0 is the Friday. The business-day deadlines are the same
  // (the Saturday was not a business day anyway) but the calendar-day deadline is one day earlier:
  // Oct 3 + 28 = Oct 31, + 17 = Nov 17.
  const LocalDate fri = cal.LocalDateOf(Utc(2025, 10, 4, 6, 30));
  REQUIRE(Iso(fri) == "2025-10-03");
  const Deadlines f = ComputeDeadlines(RequestType::kDelete, fri, false, cal);
  CHECK(Iso(f.acknowledge_by) == "2025-10-17");
  CHECK(Iso(f.respond_by) == "2025-11-17");
}

TEST_CASE("sla: deadlines for a receipt just before Thanksgiving 2026", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Day 0 = Wed 2026-11-25. Nov 26 Thu holiday, 27 Fri holiday, 28-29 weekend,
  // 30 Mon(1) Dec 1 Tue(2) 2(3) 3(4) 4 Fri(5) 7 Mon(6) 8(7) 9(8) 10(9) 11 Fri(10)
  // respond_by: Nov 25 + 5 = Nov 30, + 31 = Dec 31 (36), + 9 = 2027-01-09 (45)
  // extended: ... Dec 31 (36), + 31 = Jan 31 (67), + 23 = 2027-02-23 (90)
  const Deadlines d = ComputeDeadlines(RequestType::kAccess, D(2026, 11, 25), false, cal);
  CHECK(Iso(d.acknowledge_by) == "2026-12-11");
  CHECK(Iso(d.respond_by) == "2027-01-09");
  CHECK(Iso(ComputeDeadlines(RequestType::kAccess, D(2026, 11, 25), true, cal).respond_by) == "2027-02-23");
  // opt_out: ... 11 Fri(10) 14 Mon(11) 15(12) 16(13) 17(14) 18 Fri(15)
  CHECK(Iso(ComputeDeadlines(RequestType::kOptOut, D(2026, 11, 25), false, cal).respond_by) == "2026-12-18");

  // Day 0 = Tue 2026-11-24: 25 Wed(1), 26-27 holidays, 30 Mon(2) Dec 1(3) 2(4) 3(5) 4 Fri(6) 7 Mon(7) 8(8) 9(9)
  // 10 Thu(10)
  CHECK(Iso(ComputeDeadlines(RequestType::kCorrect, D(2026, 11, 24), false, cal).acknowledge_by) == "2026-12-10");
  // Without the holidays the same count lands two business days earlier:
  // 25 Wed(1) 26(2) 27 Fri(3) 30 Mon(4) Dec 1(5) 2(6) 3(7) 4 Fri(8) 7 Mon(9) 8 Tue(10)
  CHECK(Iso(ComputeDeadlines(RequestType::kCorrect, D(2026, 11, 24), false, CalWithoutHolidays()).acknowledge_by) ==
        "2026-12-08");
  // The calendar-day deadline ignores holidays: Nov 24 + 6 = Nov 30, + 31 = Dec 31 (37), + 8 = 2027-01-08.
  CHECK(Iso(ComputeDeadlines(RequestType::kCorrect, D(2026, 11, 24), false, cal).respond_by) == "2027-01-08");
}

TEST_CASE("sla: deadlines across Christmas and New Year", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Day 0 = Mon 2026-12-21. 22 Tue(1) 23 Wed(2) 24 Thu(3), 25 Fri holiday, 28 Mon(4) 29(5) 30(6) 31 Thu(7),
  // 2027-01-01 Fri holiday, Jan 4 Mon(8) 5 Tue(9) 6 Wed(10)
  const Deadlines d = ComputeDeadlines(RequestType::kDelete, D(2026, 12, 21), false, cal);
  CHECK(Iso(d.acknowledge_by) == "2027-01-06");
  // respond_by: Dec 21 + 10 = Dec 31, + 31 = Jan 31 (41), + 4 = 2027-02-04 (45)
  CHECK(Iso(d.respond_by) == "2027-02-04");
  // extended: ... Jan 31 (41), + 28 = Feb 28 (69), + 21 = 2027-03-21 (90)
  CHECK(Iso(ComputeDeadlines(RequestType::kDelete, D(2026, 12, 21), true, cal).respond_by) == "2027-03-21");
  // limit: ... 6 Wed(10) 7 Thu(11) 8 Fri(12) 11 Mon(13) 12 Tue(14) 13 Wed(15)
  CHECK(Iso(ComputeDeadlines(RequestType::kLimit, D(2026, 12, 21), false, cal).respond_by) == "2027-01-13");

  // Day 0 = Fri 2025-12-19. 22 Mon(1) 23(2) 24 Wed(3), 25 Thu holiday, 26 Fri(4) 29 Mon(5) 30(6) 31 Wed(7),
  // Jan 1 Thu holiday, 2 Fri(8) 5 Mon(9) 6 Tue(10) ... 7 Wed(11) 8(12) 9 Fri(13) 12 Mon(14) 13 Tue(15)
  CHECK(Iso(ComputeDeadlines(RequestType::kAccess, D(2025, 12, 19), false, cal).acknowledge_by) == "2026-01-06");
  CHECK(Iso(ComputeDeadlines(RequestType::kOptOut, D(2025, 12, 19), false, cal).respond_by) == "2026-01-13");
  // respond_by: Dec 19 + 12 = Dec 31, + 31 = Jan 31 (43), + 2 = 2026-02-02 (45)
  CHECK(Iso(ComputeDeadlines(RequestType::kAccess, D(2025, 12, 19), false, cal).respond_by) == "2026-02-02");
}

// ---------------------------------------------------------------------------------------------------------------
// EvaluateSla, open requests
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("sla: on_track with days_left and next_change", "[sla]") {
  // Acknowledged on Fri 2026-04-03. Today Fri 2026-04-10: days_left = May 16 - Apr 10 = 20 + 16 = 36.
  // next_change = respond_by - at_risk_days = May 16 - 10 = May 6 (earlier than the breach on May 17).
  const SlaView v = EvaluateSla(Acknowledged(AccessFacts(), D(2026, 4, 3)), D(2026, 4, 10), kAtRisk);
  CHECK(StateOf(v) == "on_track");
  CHECK(v.days_left == std::optional<int>(36));
  CHECK(Iso(v.next_change) == "2026-05-06");
}

TEST_CASE("sla: next_change is the unacknowledged acknowledge_by + 1 when it comes first", "[sla]") {
  const SlaFacts f = AccessFacts();  // not acknowledged; acknowledge_by Apr 15, respond_by May 16
  // Today Thu 2026-04-02: days_left = 28 (Apr 2 -> Apr 30) + 16 = 44.
  // Candidates: Apr 16 (acknowledge_by + 1), May 6 (May 16 - 10), May 17 (breach). The first is Apr 16.
  const SlaView v = EvaluateSla(f, D(2026, 4, 2), kAtRisk);
  CHECK(StateOf(v) == "on_track");
  CHECK(v.days_left == std::optional<int>(44));
  CHECK(Iso(v.next_change) == "2026-04-16");

  // With at_risk_days = 35 the at-risk day comes first: May 16 - 16 = Apr 30, - 19 = Apr 11.
  const SlaView w = EvaluateSla(f, D(2026, 4, 2), 35);
  CHECK(StateOf(w) == "on_track");
  CHECK(Iso(w.next_change) == "2026-04-11");

  // With at_risk_days = 45 the request is already at risk (44 <= 45): the next change is the acknowledgement
  // breach on Apr 16.
  const SlaView x = EvaluateSla(f, D(2026, 4, 2), 45);
  CHECK(StateOf(x) == "at_risk");
  CHECK(x.days_left == std::optional<int>(44));
  CHECK(Iso(x.next_change) == "2026-04-16");

  // Once acknowledged the acknowledge_by candidate disappears: May 6.
  const SlaView y = EvaluateSla(Acknowledged(f, D(2026, 4, 2)), D(2026, 4, 2), kAtRisk);
  CHECK(Iso(y.next_change) == "2026-05-06");
}

TEST_CASE("sla: at_risk starts at exactly at_risk_days left", "[sla]") {
  const SlaFacts f = Acknowledged(AccessFacts(), D(2026, 4, 3));  // respond_by Sat 2026-05-16
  // Tue May 5: 11 days left -> on_track, next change May 6.
  const SlaView before = EvaluateSla(f, D(2026, 5, 5), kAtRisk);
  CHECK(StateOf(before) == "on_track");
  CHECK(before.days_left == std::optional<int>(11));
  CHECK(Iso(before.next_change) == "2026-05-06");
  // Wed May 6: 10 days left -> at_risk, next change the breach on May 17.
  const SlaView at = EvaluateSla(f, D(2026, 5, 6), kAtRisk);
  CHECK(StateOf(at) == "at_risk");
  CHECK(at.days_left == std::optional<int>(10));
  CHECK(Iso(at.next_change) == "2026-05-17");
  // Thu May 7: 9 days left -> still at_risk.
  const SlaView after = EvaluateSla(f, D(2026, 5, 7), kAtRisk);
  CHECK(StateOf(after) == "at_risk");
  CHECK(after.days_left == std::optional<int>(9));
  CHECK(Iso(after.next_change) == "2026-05-17");
}

TEST_CASE("sla: breached the day after respond_by, not on it", "[sla]") {
  const SlaFacts f = Acknowledged(AccessFacts(), D(2026, 4, 3));
  const SlaView on = EvaluateSla(f, D(2026, 5, 16), kAtRisk);
  CHECK(StateOf(on) == "at_risk");
  CHECK(on.days_left == std::optional<int>(0));
  CHECK(Iso(on.next_change) == "2026-05-17");

  const SlaView after = EvaluateSla(f, D(2026, 5, 17), kAtRisk);
  CHECK(StateOf(after) == "breached");
  CHECK(after.days_left == std::optional<int>(-1));
  CHECK_FALSE(after.next_change.has_value());  // breached never changes by itself

  // May 16 -> Jun 1 = 15 + 1 = 16 days late.
  const SlaView later = EvaluateSla(f, D(2026, 6, 1), kAtRisk);
  CHECK(StateOf(later) == "breached");
  CHECK(later.days_left == std::optional<int>(-16));
}

TEST_CASE("sla: breached when acknowledge_by passed without acknowledgement", "[sla]") {
  const SlaFacts f = AccessFacts();  // acknowledge_by Wed 2026-04-15, never acknowledged
  // On Apr 15 itself: not yet. days_left = 15 (Apr 15 -> Apr 30) + 16 = 31.
  const SlaView on = EvaluateSla(f, D(2026, 4, 15), kAtRisk);
  CHECK(StateOf(on) == "on_track");
  CHECK(on.days_left == std::optional<int>(31));
  CHECK(Iso(on.next_change) == "2026-04-16");
  // Thu Apr 16: breached although respond_by is a month away. days_left = 14 + 16 = 30.
  const SlaView after = EvaluateSla(f, D(2026, 4, 16), kAtRisk);
  CHECK(StateOf(after) == "breached");
  CHECK(after.days_left == std::optional<int>(30));
  CHECK_FALSE(after.next_change.has_value());
  // Also while verifying/in progress without an acknowledgement.
  SlaFacts g = f;
  g.status = RequestStatus::kInProgress;
  CHECK(StateOf(EvaluateSla(g, D(2026, 4, 16), kAtRisk)) == "breached");
}

TEST_CASE("sla: acknowledgement on acknowledge_by is in time, a late one stays breached", "[sla]") {
  // Acknowledged on the deadline day Apr 15: on_track on Apr 20 (days_left = 10 + 16 = 26).
  const SlaView in_time = EvaluateSla(Acknowledged(AccessFacts(), D(2026, 4, 15)), D(2026, 4, 20), kAtRisk);
  CHECK(StateOf(in_time) == "on_track");
  CHECK(in_time.days_left == std::optional<int>(26));
  CHECK(Iso(in_time.next_change) == "2026-05-06");

  // Acknowledged one day late (Apr 16): still breached on Apr 20, and forever.
  const SlaFacts late = Acknowledged(AccessFacts(), D(2026, 4, 16));
  const SlaView v = EvaluateSla(late, D(2026, 4, 20), kAtRisk);
  CHECK(StateOf(v) == "breached");
  CHECK(v.days_left == std::optional<int>(26));
  CHECK_FALSE(v.next_change.has_value());
  CHECK(StateOf(EvaluateSla(late, D(2026, 5, 10), kAtRisk)) == "breached");
}

TEST_CASE("sla: opt_out has no acknowledgement deadline", "[sla]") {
  const SlaFacts f = OptOutFacts();  // respond_by Wed 2026-04-22
  // Apr 2: days_left = 20 -> on_track; next change Apr 22 - 10 = Apr 12 (no acknowledgement candidate).
  const SlaView a = EvaluateSla(f, D(2026, 4, 2), kAtRisk);
  CHECK(StateOf(a) == "on_track");
  CHECK(a.days_left == std::optional<int>(20));
  CHECK(Iso(a.next_change) == "2026-04-12");
  // Apr 16 (when an access request would be breached without acknowledgement): 6 days left -> at_risk.
  const SlaView b = EvaluateSla(f, D(2026, 4, 16), kAtRisk);
  CHECK(StateOf(b) == "at_risk");
  CHECK(b.days_left == std::optional<int>(6));
  CHECK(Iso(b.next_change) == "2026-04-23");
  // Apr 22: at_risk with 0 left; Apr 23: breached.
  CHECK(StateOf(EvaluateSla(f, D(2026, 4, 22), kAtRisk)) == "at_risk");
  CHECK(StateOf(EvaluateSla(f, D(2026, 4, 23), kAtRisk)) == "breached");
}

TEST_CASE("sla: an extended request is measured against the extended respond_by", "[sla]") {
  // Extended to Apr 1 + 90 = Jun 30. Today Sun May 17 (past the original May 16):
  // days_left = 14 (May 17 -> May 31) + 30 = 44; next change Jun 30 - 10 = Jun 20.
  SlaFacts f = Acknowledged(AccessFacts(), D(2026, 4, 3));
  f.extended = true;
  f.status = RequestStatus::kInProgress;
  f.deadlines.respond_by = D(2026, 6, 30);
  const SlaView v = EvaluateSla(f, D(2026, 5, 17), kAtRisk);
  CHECK(StateOf(v) == "on_track");
  CHECK(v.days_left == std::optional<int>(44));
  CHECK(Iso(v.next_change) == "2026-06-20");
}

// ---------------------------------------------------------------------------------------------------------------
// EvaluateSla, closed requests
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("sla: closed on respond_by is met, the day after is missed", "[sla]") {
  const SlaFacts acked = Acknowledged(AccessFacts(), D(2026, 4, 3));
  const SlaView met = EvaluateSla(Closed(acked, RequestStatus::kCompleted, D(2026, 5, 16)), D(2026, 6, 1), kAtRisk);
  CHECK(StateOf(met) == "met");
  CHECK_FALSE(met.days_left.has_value());
  CHECK_FALSE(met.next_change.has_value());

  const SlaView missed =
      EvaluateSla(Closed(acked, RequestStatus::kCompleted, D(2026, 5, 17)), D(2026, 6, 1), kAtRisk);
  CHECK(StateOf(missed) == "missed");
  CHECK_FALSE(missed.days_left.has_value());
  CHECK_FALSE(missed.next_change.has_value());

  // Every closed status is judged the same way, by the day it closed and not by "today".
  for (RequestStatus s : {RequestStatus::kPartiallyCompleted, RequestStatus::kDenied, RequestStatus::kUnverifiable,
                          RequestStatus::kCancelled}) {
    INFO(rightsd::ToString(s));
    CHECK(StateOf(EvaluateSla(Closed(acked, s, D(2026, 5, 16)), D(2026, 5, 20), kAtRisk)) == "met");
    CHECK(StateOf(EvaluateSla(Closed(acked, s, D(2026, 5, 17)), D(2026, 5, 20), kAtRisk)) == "missed");
  }
}

TEST_CASE("sla: closed before acknowledge_by needed no acknowledgement", "[sla]") {
  const SlaFacts f = AccessFacts();  // never acknowledged; acknowledge_by Apr 15
  // Closed Apr 10, before the acknowledgement deadline: met.
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kCompleted, D(2026, 4, 10)), D(2026, 6, 1), kAtRisk)) ==
        "met");
  // Closed on Apr 15 itself: met.
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kDenied, D(2026, 4, 15)), D(2026, 6, 1), kAtRisk)) == "met");
  // Closed Apr 16 without ever acknowledging: the acknowledgement deadline was missed.
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kCompleted, D(2026, 4, 16)), D(2026, 6, 1), kAtRisk)) ==
        "missed");
  // Acknowledged late (Apr 16), closed well before respond_by: missed.
  CHECK(StateOf(EvaluateSla(Closed(Acknowledged(f, D(2026, 4, 16)), RequestStatus::kCompleted, D(2026, 4, 20)),
                            D(2026, 6, 1), kAtRisk)) == "missed");
  // Acknowledged in time, closed before respond_by: met.
  CHECK(StateOf(EvaluateSla(Closed(Acknowledged(f, D(2026, 4, 15)), RequestStatus::kCompleted, D(2026, 4, 20)),
                            D(2026, 6, 1), kAtRisk)) == "met");
}

TEST_CASE("sla: closed opt_out met or missed on its 15th business day", "[sla]") {
  const SlaFacts f = OptOutFacts();  // respond_by Apr 22
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kCompleted, D(2026, 4, 22)), D(2026, 5, 1), kAtRisk)) == "met");
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kCompleted, D(2026, 4, 23)), D(2026, 5, 1), kAtRisk)) ==
        "missed");
  // No acknowledgement is ever required: closed on Apr 20 without one is met.
  CHECK(StateOf(EvaluateSla(Closed(f, RequestStatus::kCompleted, D(2026, 4, 20)), D(2026, 5, 1), kAtRisk)) == "met");
}

// ---------------------------------------------------------------------------------------------------------------
// CheckEvent
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("sla: extension is refused for opt_out and limit", "[sla]") {
  for (RequestType t : {RequestType::kOptOut, RequestType::kLimit}) {
    INFO(rightsd::ToString(t));
    SlaFacts f = OptOutFacts();
    f.type = t;
    f.status = RequestStatus::kInProgress;
    const auto r = CheckEvent(f, RequestEvent::kExtend, D(2026, 4, 2));
    REQUIRE(std::holds_alternative<std::string>(r));
    CHECK_THAT(Refusal(r), Contains("cannot be extended"));
    CHECK_THAT(Refusal(r), Contains(std::string(rightsd::ToString(t))));
  }
}

TEST_CASE("sla: extension is allowed once, on or before respond_by", "[sla]") {
  SlaFacts f = Acknowledged(AccessFacts(), D(2026, 4, 3));
  f.status = RequestStatus::kInProgress;

  // Well before, and on respond_by (May 16) itself: allowed, status unchanged.
  CHECK(Allowed(CheckEvent(f, RequestEvent::kExtend, D(2026, 4, 20)), RequestStatus::kInProgress));
  CHECK(Allowed(CheckEvent(f, RequestEvent::kExtend, D(2026, 5, 16)), RequestStatus::kInProgress));
  // Also while still verifying or received.
  SlaFacts v = f;
  v.status = RequestStatus::kVerifying;
  CHECK(Allowed(CheckEvent(v, RequestEvent::kExtend, D(2026, 5, 16)), RequestStatus::kVerifying));

  // The day after respond_by: refused, naming the date.
  const auto late = CheckEvent(f, RequestEvent::kExtend, D(2026, 5, 17));
  REQUIRE(std::holds_alternative<std::string>(late));
  CHECK_THAT(Refusal(late), Contains("2026-05-16"));

  // A second extension: refused, even well before the (extended) respond_by.
  SlaFacts twice = f;
  twice.extended = true;
  twice.deadlines.respond_by = D(2026, 6, 30);
  const auto again = CheckEvent(twice, RequestEvent::kExtend, D(2026, 4, 20));
  REQUIRE(std::holds_alternative<std::string>(again));
  CHECK_THAT(Refusal(again), Contains("already extended"));
}

TEST_CASE("sla: acknowledge refused for opt_out and when already acknowledged", "[sla]") {
  // A received opt-out: the state table has received -> verifying, but the law has no acknowledgement for it.
  const auto o = CheckEvent(OptOutFacts(), RequestEvent::kAcknowledge, D(2026, 4, 2));
  REQUIRE(std::holds_alternative<std::string>(o));
  CHECK_THAT(Refusal(o), Contains("opt_out") && Contains("no acknowledgement"));
  SlaFacts limit = OptOutFacts();
  limit.type = RequestType::kLimit;
  CHECK(std::holds_alternative<std::string>(CheckEvent(limit, RequestEvent::kAcknowledge, D(2026, 4, 2))));

  // Already acknowledged.
  const auto twice = CheckEvent(Acknowledged(AccessFacts(), D(2026, 4, 3)), RequestEvent::kAcknowledge, D(2026, 4, 4));
  REQUIRE(std::holds_alternative<std::string>(twice));
  CHECK_THAT(Refusal(twice), Contains("already acknowledged"));

  // A first acknowledgement of a received access request moves it to verifying -- also after the deadline
  // (late is better than never; the SLA keeps the breach).
  CHECK(Allowed(CheckEvent(AccessFacts(), RequestEvent::kAcknowledge, D(2026, 4, 2)), RequestStatus::kVerifying));
  CHECK(Allowed(CheckEvent(AccessFacts(), RequestEvent::kAcknowledge, D(2026, 4, 20)), RequestStatus::kVerifying));
}

TEST_CASE("sla: open requests follow the state table", "[sla]") {
  const SlaFacts f = AccessFacts();
  CHECK(Allowed(CheckEvent(f, RequestEvent::kVerify, D(2026, 4, 2)), RequestStatus::kInProgress));
  CHECK(Allowed(CheckEvent(f, RequestEvent::kDeny, D(2026, 4, 2)), RequestStatus::kDenied));
  CHECK(Allowed(CheckEvent(f, RequestEvent::kDenyUnverifiable, D(2026, 4, 2)), RequestStatus::kUnverifiable));
  CHECK(Allowed(CheckEvent(f, RequestEvent::kCancel, D(2026, 4, 2)), RequestStatus::kCancelled));
  // Completing a request that was never verified is refused by the table, with a readable reason.
  const auto c = CheckEvent(f, RequestEvent::kComplete, D(2026, 4, 2));
  REQUIRE(std::holds_alternative<std::string>(c));
  CHECK_THAT(Refusal(c), Contains("received") && Contains("complete"));
  // Opt-outs are completed from in_progress like everything else; a breach does not block closing.
  SlaFacts o = OptOutFacts();
  o.status = RequestStatus::kInProgress;
  CHECK(Allowed(CheckEvent(o, RequestEvent::kComplete, D(2026, 5, 1)), RequestStatus::kCompleted));
  CHECK(Allowed(CheckEvent(o, RequestEvent::kCompletePartially, D(2026, 5, 1)), RequestStatus::kPartiallyCompleted));
}

TEST_CASE("sla: any event on a closed request is refused with a readable reason", "[sla]") {
  struct Closedness {
    RequestStatus status;
    const char* name;
  };
  struct EventName {
    RequestEvent event;
    const char* name;
  };
  const Closedness closed[] = {{RequestStatus::kCompleted, "completed"},
                               {RequestStatus::kPartiallyCompleted, "partially_completed"},
                               {RequestStatus::kDenied, "denied"},
                               {RequestStatus::kUnverifiable, "unverifiable"},
                               {RequestStatus::kCancelled, "cancelled"}};
  const EventName events[] = {{RequestEvent::kAcknowledge, "acknowledge"},
                              {RequestEvent::kVerify, "verify"},
                              {RequestEvent::kExtend, "extend"},
                              {RequestEvent::kDeny, "deny"},
                              {RequestEvent::kDenyUnverifiable, "deny_unverifiable"},
                              {RequestEvent::kCancel, "cancel"},
                              {RequestEvent::kComplete, "complete"},
                              {RequestEvent::kCompletePartially, "complete_partially"}};
  int refused = 0;
  for (const auto& c : closed) {
    for (const auto& e : events) {
      INFO(c.name << " x " << e.name);
      const SlaFacts f = Closed(AccessFacts(), c.status, D(2026, 4, 10));
      const auto r = CheckEvent(f, e.event, D(2026, 4, 11));
      REQUIRE(std::holds_alternative<std::string>(r));
      // e.g. "a request that is completed cannot take the action cancel"
      CHECK_THAT(Refusal(r), Contains(c.name) && Contains(e.name));
      ++refused;
    }
  }
  CHECK(refused == 5 * 8);
}
