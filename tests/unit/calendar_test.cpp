// Unit tests for daemon/calendar.{h,cpp}: business-day counting, local dates across DST in
// America/Los_Angeles, holidays/business_days parsing and the strict date format.
//
// Every expected date below was worked out by hand on a wall calendar; the comments show the
// count. The holiday sets are written out in each test (the tests never read systemd/ files).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "calendar.h"

using rightsd::BusinessCalendar;
using rightsd::BusinessWeek;
using rightsd::CalendarError;
using rightsd::FormatDate;
using rightsd::LocalDate;
using rightsd::ParseBusinessDays;
using rightsd::ParseDate;
using rightsd::ParseHolidays;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

LocalDate D(int y, unsigned m, unsigned d) {
  return LocalDate{date::year{y} / date::month{m} / date::day{d}};
}

// A UTC instant, written out field by field so each test shows the exact Z time.
std::chrono::system_clock::time_point Utc(int y, unsigned mo, unsigned d, int h, int mi,
                                          int s = 0) {
  return date::sys_days{date::year{y} / date::month{mo} / date::day{d}} + std::chrono::hours{h} +
         std::chrono::minutes{mi} + std::chrono::seconds{s};
}

const date::time_zone* LosAngeles() { return date::locate_zone("America/Los_Angeles"); }

// Sunday..Saturday.
constexpr BusinessWeek kMonFri = {false, true, true, true, true, true, false};

BusinessCalendar Cal(std::set<LocalDate> holidays = {}, BusinessWeek week = kMonFri) {
  return BusinessCalendar(LosAngeles(), std::move(holidays), week);
}

std::string Nth(const BusinessCalendar& cal, LocalDate day0, int n) {
  return FormatDate(cal.NthBusinessDayAfter(day0, n));
}

std::vector<std::string> Iso(const std::set<LocalDate>& days) {
  std::vector<std::string> out;
  for (LocalDate d : days) out.push_back(FormatDate(d));
  return out;
}

}  // namespace

TEST_CASE("sla: calendar skips weekends", "[sla]") {
  const BusinessCalendar cal = Cal();
  CHECK(cal.IsBusinessDay(D(2025, 10, 3)));   // Fri
  CHECK_FALSE(cal.IsBusinessDay(D(2025, 10, 4)));  // Sat
  CHECK_FALSE(cal.IsBusinessDay(D(2025, 10, 5)));  // Sun
  CHECK(cal.IsBusinessDay(D(2025, 10, 6)));   // Mon

  // Day 0 = Wed 2025-10-01.
  CHECK(Nth(cal, D(2025, 10, 1), 1) == "2025-10-02");  // Thu
  // Oct 2 Thu(1) 3 Fri(2) 6 Mon(3) 7 Tue(4) 8 Wed(5)
  CHECK(Nth(cal, D(2025, 10, 1), 5) == "2025-10-08");
  // ... 9 Thu(6) 10 Fri(7) 13 Mon(8) 14 Tue(9) 15 Wed(10)
  CHECK(Nth(cal, D(2025, 10, 1), 10) == "2025-10-15");
  // ... 16 Thu(11) 17 Fri(12) 20 Mon(13) 21 Tue(14) 22 Wed(15)
  CHECK(Nth(cal, D(2025, 10, 1), 15) == "2025-10-22");

  // Day 0 = Fri 2025-10-03: the first business day is the Monday.
  CHECK(Nth(cal, D(2025, 10, 3), 1) == "2025-10-06");
}

TEST_CASE("sla: calendar skips holidays", "[sla]") {
  // Veterans Day (Tue) and Thanksgiving (Thu) 2025.
  const BusinessCalendar cal = Cal({D(2025, 11, 11), D(2025, 11, 27)});
  CHECK_FALSE(cal.IsBusinessDay(D(2025, 11, 11)));
  CHECK(cal.IsBusinessDay(D(2025, 11, 12)));

  // Day 0 = Mon 2025-11-10. Nov 11 holiday; 12 Wed(1) 13(2) 14 Fri(3) 17 Mon(4) 18(5) 19(6)
  // 20(7) 21 Fri(8) 24 Mon(9) 25 Tue(10)
  CHECK(Nth(cal, D(2025, 11, 10), 10) == "2025-11-25");
  // ... 26 Wed(11) 27 Thu holiday, 28 Fri(12) Dec 1 Mon(13) 2 Tue(14) 3 Wed(15)
  CHECK(Nth(cal, D(2025, 11, 10), 15) == "2025-12-03");

  // The same count with no holidays lands a day (10th) and two days (15th) earlier.
  const BusinessCalendar plain = Cal();
  CHECK(Nth(plain, D(2025, 11, 10), 10) == "2025-11-24");
  CHECK(Nth(plain, D(2025, 11, 10), 15) == "2025-12-01");

  // Memorial Day and Juneteenth 2025. Day 0 = Mon 2025-06-09: 10 Tue(1) 11(2) 12(3) 13 Fri(4)
  // 16 Mon(5) 17(6) 18(7) 19 Thu holiday, 20 Fri(8) 23 Mon(9) 24 Tue(10)
  const BusinessCalendar june = Cal({D(2025, 5, 26), D(2025, 6, 19)});
  CHECK(Nth(june, D(2025, 6, 9), 10) == "2025-06-24");
  // ... 25 Wed(11) 26(12) 27 Fri(13) 30 Mon(14) Jul 1 Tue(15)
  CHECK(Nth(june, D(2025, 6, 9), 15) == "2025-07-01");
}

TEST_CASE("sla: calendar skips an observed Monday holiday", "[sla]") {
  // July 4 2027 is a Sunday; Gov. Code 6701 makes Monday July 5 the holiday. Both are listed.
  const BusinessCalendar cal = Cal({D(2027, 7, 4), D(2027, 7, 5)});
  CHECK_FALSE(cal.IsBusinessDay(D(2027, 7, 5)));  // Mon, observed
  CHECK(cal.IsBusinessDay(D(2027, 7, 6)));

  // Day 0 = Fri 2027-07-02. Jul 3 Sat, 4 Sun, 5 Mon holiday, 6 Tue(1)
  CHECK(Nth(cal, D(2027, 7, 2), 1) == "2027-07-06");
  // 6 Tue(1) 7(2) 8(3) 9 Fri(4) 12 Mon(5) 13(6) 14(7) 15(8) 16 Fri(9) 19 Mon(10)
  CHECK(Nth(cal, D(2027, 7, 2), 10) == "2027-07-19");
  // ... 20 Tue(11) 21(12) 22(13) 23 Fri(14) 26 Mon(15)
  CHECK(Nth(cal, D(2027, 7, 2), 15) == "2027-07-26");
}

TEST_CASE("sla: calendar holiday on a weekend is still not a business day", "[sla]") {
  const BusinessCalendar cal = Cal({D(2026, 7, 4)});  // Sat
  CHECK_FALSE(cal.IsBusinessDay(D(2026, 7, 4)));
  // Day 0 = Thu 2026-07-02: 3 Fri(1) 6 Mon(2) -- the Saturday holiday moves nothing.
  CHECK(Nth(cal, D(2026, 7, 2), 2) == "2026-07-06");
}

TEST_CASE("sla: calendar receipt on a Saturday or Sunday starts counting the next day",
          "[sla]") {
  const BusinessCalendar cal = Cal();
  // A request received Saturday 2025-10-04 at noon PDT (19:00Z): day 0 is the Saturday itself.
  const LocalDate sat = cal.LocalDateOf(Utc(2025, 10, 4, 19, 0));
  CHECK(FormatDate(sat) == "2025-10-04");
  CHECK_FALSE(cal.IsBusinessDay(sat));
  CHECK(Nth(cal, sat, 1) == "2025-10-06");  // Mon
  // Oct 6 Mon(1) 7(2) 8(3) 9(4) 10 Fri(5) 13 Mon(6) 14(7) 15(8) 16(9) 17 Fri(10)
  CHECK(Nth(cal, sat, 10) == "2025-10-17");
  // ... 20 Mon(11) 21(12) 22(13) 23(14) 24 Fri(15)
  CHECK(Nth(cal, sat, 15) == "2025-10-24");

  // Sunday 2025-10-05 gives the same deadlines.
  const LocalDate sun = D(2025, 10, 5);
  CHECK(Nth(cal, sun, 1) == "2025-10-06");
  CHECK(Nth(cal, sun, 10) == "2025-10-17");
  CHECK(Nth(cal, sun, 15) == "2025-10-24");

  // A business day 0 is not counted either: Mon 2025-10-06 -> Tue(1).
  CHECK(Nth(cal, D(2025, 10, 6), 1) == "2025-10-07");
}

TEST_CASE("sla: calendar crosses the year end", "[sla]") {
  // Christmas 2025 (Thu), New Year 2026 (Thu), MLK day 2026 (Mon Jan 19).
  const BusinessCalendar cal = Cal({D(2025, 12, 25), D(2026, 1, 1), D(2026, 1, 19)});

  // Day 0 = Wed 2025-12-24. Dec 25 holiday, 26 Fri(1) 29 Mon(2) 30(3) 31 Wed(4), Jan 1 holiday,
  // Jan 2 Fri(5) 5 Mon(6) 6(7) 7(8) 8(9) 9 Fri(10)
  CHECK(Nth(cal, D(2025, 12, 24), 10) == "2026-01-09");
  // ... 12 Mon(11) 13(12) 14(13) 15(14) 16 Fri(15)
  CHECK(Nth(cal, D(2025, 12, 24), 15) == "2026-01-16");

  // Day 0 = Wed 2025-12-31. Jan 1 holiday, 2 Fri(1) 5 Mon(2) 6(3) 7(4) 8(5) 9 Fri(6) 12 Mon(7)
  // 13(8) 14(9) 15 Thu(10)
  CHECK(Nth(cal, D(2025, 12, 31), 1) == "2026-01-02");
  CHECK(Nth(cal, D(2025, 12, 31), 10) == "2026-01-15");
  // ... 16 Fri(11), 19 Mon holiday, 20 Tue(12) 21(13) 22(14) 23 Fri(15)
  CHECK(Nth(cal, D(2025, 12, 31), 15) == "2026-01-23");
}

TEST_CASE("sla: calendar crosses a leap day", "[sla]") {
  const BusinessCalendar cal = Cal();
  // Day 0 = Fri 2028-02-25. 28 Mon(1) 29 Tue(2) Mar 1 Wed(3) 2(4) 3 Fri(5) 6 Mon(6) 7(7) 8(8)
  // 9(9) 10 Fri(10)
  CHECK(Nth(cal, D(2028, 2, 25), 2) == "2028-02-29");
  CHECK(Nth(cal, D(2028, 2, 25), 10) == "2028-03-10");
}

TEST_CASE("sla: calendar local date across DST in America/Los_Angeles", "[sla]") {
  const BusinessCalendar cal = Cal();

  // Spring forward, Sun 2026-03-08: 02:00 PST jumps to 03:00 PDT.
  // 01:59 PST (UTC-8) = 09:59Z.
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 3, 8, 9, 59))) == "2026-03-08");
  // 03:00 PDT (UTC-7) = 10:00Z, one minute later in real time.
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 3, 8, 10, 0))) == "2026-03-08");
  // After the change local midnight is 07:00Z (UTC-7): 2026-03-09T06:59:59Z = 23:59:59 PDT on
  // Sun Mar 8, and 07:00:00Z = 00:00 Mon Mar 9 (a fixed UTC-8 offset would still say Mar 8).
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 3, 9, 6, 59, 59))) == "2026-03-08");
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 3, 9, 7, 0, 0))) == "2026-03-09");

  // The one-second difference moves the deadlines.
  // Day 0 = Sun Mar 8: 9 Mon(1) 10(2) 11(3) 12(4) 13 Fri(5) 16 Mon(6) 17(7) 18(8) 19(9) 20 Fri(10)
  CHECK(Nth(cal, cal.LocalDateOf(Utc(2026, 3, 9, 6, 59, 59)), 10) == "2026-03-20");
  // ... 23 Mon(11) 24(12) 25(13) 26(14) 27 Fri(15)
  CHECK(Nth(cal, cal.LocalDateOf(Utc(2026, 3, 9, 6, 59, 59)), 15) == "2026-03-27");
  // Day 0 = Mon Mar 9: 10 Tue(1) 11(2) 12(3) 13 Fri(4) 16 Mon(5) 17(6) 18(7) 19(8) 20 Fri(9)
  // 23 Mon(10)
  CHECK(Nth(cal, cal.LocalDateOf(Utc(2026, 3, 9, 7, 0, 0)), 10) == "2026-03-23");

  // Fall back, Sun 2026-11-01: 01:00-01:59 happens twice.
  // First 01:30 (PDT, UTC-7) = 08:30Z; second 01:30 (PST, UTC-8) = 09:30Z.
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 11, 1, 8, 30))) == "2026-11-01");
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 11, 1, 9, 30))) == "2026-11-01");
  // Local midnight after the change is 08:00Z (UTC-8), not 07:00Z.
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 11, 2, 7, 59, 59))) == "2026-11-01");
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 11, 2, 8, 0, 0))) == "2026-11-02");

  // Day 0 = Sun Nov 1 2026 with Veterans Day (Wed Nov 11) and Thanksgiving (Thu Nov 26):
  // 2 Mon(1) 3(2) 4(3) 5(4) 6 Fri(5) 9 Mon(6) 10 Tue(7) 11 holiday, 12 Thu(8) 13 Fri(9)
  // 16 Mon(10)
  const BusinessCalendar nov = Cal({D(2026, 11, 11), D(2026, 11, 26)});
  const LocalDate day0 = nov.LocalDateOf(Utc(2026, 11, 1, 9, 30));
  CHECK(Nth(nov, day0, 10) == "2026-11-16");
  // ... 17 Tue(11) 18(12) 19(13) 20 Fri(14) 23 Mon(15)
  CHECK(Nth(nov, day0, 15) == "2026-11-23");

  // New Year's Eve: 2026-01-01T07:00Z is 23:00 PST on Dec 31; 08:00Z is local midnight.
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 1, 1, 7, 0))) == "2025-12-31");
  CHECK(FormatDate(cal.LocalDateOf(Utc(2026, 1, 1, 8, 0))) == "2026-01-01");
}

TEST_CASE("sla: calendar local date depends on the configured zone", "[sla]") {
  const BusinessCalendar utc(date::locate_zone("Etc/UTC"), {}, kMonFri);
  CHECK(FormatDate(utc.LocalDateOf(Utc(2026, 3, 9, 6, 59, 59))) == "2026-03-09");
  CHECK(utc.Zone() == date::locate_zone("Etc/UTC"));
  CHECK(Cal().Zone() == LosAngeles());
  // Sub-second instants before midnight stay on the earlier day.
  const auto just_before = date::sys_days{D(2026, 1, 1).time_since_epoch()} -
                           std::chrono::nanoseconds{1};
  CHECK(FormatDate(utc.LocalDateOf(just_before)) == "2025-12-31");
}

TEST_CASE("sla: calendar custom business weeks", "[sla]") {
  const BusinessCalendar mon_sat =
      Cal({}, ParseBusinessDays({"mon", "tue", "wed", "thu", "fri", "sat"}));
  CHECK(mon_sat.IsBusinessDay(D(2025, 10, 4)));        // Sat
  CHECK_FALSE(mon_sat.IsBusinessDay(D(2025, 10, 5)));  // Sun
  // Day 0 = Fri 2025-10-03. 4 Sat(1) 6 Mon(2) 7(3) 8(4) 9(5) 10 Fri(6) 11 Sat(7) 13 Mon(8) 14(9)
  // 15 Wed(10)
  CHECK(Nth(mon_sat, D(2025, 10, 3), 1) == "2025-10-04");
  CHECK(Nth(mon_sat, D(2025, 10, 3), 10) == "2025-10-15");
  // ... 16 Thu(11) 17 Fri(12) 18 Sat(13) 20 Mon(14) 21 Tue(15)
  CHECK(Nth(mon_sat, D(2025, 10, 3), 15) == "2025-10-21");

  // Only Wednesdays, with a holiday on one of them. Day 0 = Wed 2025-10-01:
  // Oct 8(1), 15 holiday, 22(2), 29(3)
  const BusinessCalendar wed = Cal({D(2025, 10, 15)}, ParseBusinessDays({"wed"}));
  CHECK(Nth(wed, D(2025, 10, 1), 1) == "2025-10-08");
  CHECK(Nth(wed, D(2025, 10, 1), 3) == "2025-10-29");

  // Sunday to Thursday. Day 0 = Thu 2025-10-02: 5 Sun(1) 6 Mon(2) 7(3) 8(4) 9 Thu(5) 12 Sun(6)
  const BusinessCalendar sun_thu =
      Cal({}, ParseBusinessDays({"thu", "wed", "tue", "mon", "sun"}));
  CHECK(Nth(sun_thu, D(2025, 10, 2), 1) == "2025-10-05");
  CHECK(Nth(sun_thu, D(2025, 10, 2), 6) == "2025-10-12");
}

TEST_CASE("sla: calendar ParseBusinessDays", "[sla]") {
  const BusinessWeek week = ParseBusinessDays({"mon", "tue", "wed", "thu", "fri"});
  CHECK(week == BusinessWeek{false, true, true, true, true, true, false});
  CHECK(ParseBusinessDays({"sat", "sun"}) ==
        BusinessWeek{true, false, false, false, false, false, true});

  CHECK_THROWS_AS(ParseBusinessDays({}), CalendarError);
  CHECK_THROWS_WITH(ParseBusinessDays({"mon", "Tue"}), Contains("'Tue'"));
  CHECK_THROWS_WITH(ParseBusinessDays({"mon", "monday"}), Contains("'monday'"));
  CHECK_THROWS_WITH(ParseBusinessDays({"mon", ""}), Contains("''"));
  CHECK_THROWS_WITH(ParseBusinessDays({" mon"}), Contains("' mon'"));
  CHECK_THROWS_WITH(ParseBusinessDays({"mon", "tue", "mon"}),
                    Contains("duplicate") && Contains("'mon'"));
  CHECK_THROWS_AS(ParseBusinessDays({"fri", "fri"}), CalendarError);
}

TEST_CASE("sla: calendar constructor rejects a null zone or an empty week", "[sla]") {
  CHECK_THROWS_AS(BusinessCalendar(nullptr, {}, kMonFri), CalendarError);
  CHECK_THROWS_AS(BusinessCalendar(LosAngeles(), {}, BusinessWeek{}), CalendarError);
}

TEST_CASE("sla: calendar ParseHolidays accepts comments, blanks and whitespace", "[sla]") {
  const std::string text =
      "# California holidays\n"
      "\n"
      "2025-01-01   # New Year's Day\n"
      "  \t2025-12-25\t\r\n"      // surrounding whitespace, CRLF
      "2025-12-25\n"               // duplicate
      "#2025-07-04 commented out\n"
      "2024-02-29#leap day, comment without a space\n"
      "   \n"
      "2026-01-01";                // no final newline
  CHECK(Iso(ParseHolidays(text)) ==
        std::vector<std::string>{"2024-02-29", "2025-01-01", "2025-12-25", "2026-01-01"});
  CHECK(ParseHolidays("").empty());
  CHECK(ParseHolidays("\n\n# nothing\n").empty());
}

TEST_CASE("sla: calendar ParseHolidays rejects bad lines with their line number", "[sla]") {
  CHECK_THROWS_WITH(ParseHolidays("2025-01-01\n\n2025-02-30\n"), StartsWith("line 3: "));
  CHECK_THROWS_WITH(ParseHolidays("2025-02-30"), Contains("'2025-02-30'"));
  CHECK_THROWS_WITH(ParseHolidays("# header\n2025-2-3\n"), StartsWith("line 2: "));
  CHECK_THROWS_WITH(ParseHolidays("2025-01-01 junk\n"), StartsWith("line 1: "));
  CHECK_THROWS_WITH(ParseHolidays("2025-01-01x"), StartsWith("line 1: "));
  CHECK_THROWS_WITH(ParseHolidays("2025-01-01 2025-01-02"), StartsWith("line 1: "));
  CHECK_THROWS_WITH(ParseHolidays("\n\n\n\n2025-13-01 # bad month"), StartsWith("line 5: "));
  CHECK_THROWS_WITH(ParseHolidays("2025-01-01\r\n2023-02-29\r\n"), StartsWith("line 2: "));
  CHECK_THROWS_WITH(ParseHolidays("2025/01/01"), StartsWith("line 1: "));
  CHECK_THROWS_WITH(ParseHolidays("New Year 2025-01-01"), StartsWith("line 1: "));
  CHECK_THROWS_AS(ParseHolidays("2025-01-01\n2025-01-0"), CalendarError);
}

TEST_CASE("sla: calendar never loops forever", "[sla]") {
  const LocalDate day0 = D(2025, 1, 1);
  const BusinessWeek every_day = {true, true, true, true, true, true, true};

  // Holidays on days 1..3659 after day 0: the only business day in range is day 3660.
  // 2025-01-01 + 3652 days (ten years, leap days 2028 and 2032) = 2035-01-01; + 8 = 2035-01-09.
  std::set<LocalDate> almost;
  for (int i = 1; i < 3660; ++i) almost.insert(day0 + date::days{i});
  const BusinessCalendar last_chance = Cal(almost, every_day);
  CHECK(Nth(last_chance, day0, 1) == "2035-01-09");
  CHECK_THROWS_AS(last_chance.NthBusinessDayAfter(day0, 2), CalendarError);

  // Every day a holiday: throws instead of spinning.
  std::set<LocalDate> all = almost;
  for (int i = 3660; i < 4000; ++i) all.insert(day0 + date::days{i});
  const BusinessCalendar none = Cal(all, every_day);
  CHECK_THROWS_AS(none.NthBusinessDayAfter(day0, 1), CalendarError);
  CHECK_THROWS_WITH(none.NthBusinessDayAfter(day0, 10), Contains("2025-01-01"));

  // A Saturday-only week whose Saturdays are all holidays.
  std::set<LocalDate> saturdays;
  for (LocalDate d = D(2025, 1, 4); d < D(2036, 1, 1); d += date::days{7}) saturdays.insert(d);
  const BusinessCalendar sat_only = Cal(saturdays, ParseBusinessDays({"sat"}));
  CHECK_THROWS_AS(sat_only.NthBusinessDayAfter(day0, 1), CalendarError);

  // A count that needs more than ten years of weekdays.
  CHECK_THROWS_AS(Cal().NthBusinessDayAfter(day0, 3000), CalendarError);
  CHECK_NOTHROW(Cal().NthBusinessDayAfter(day0, 2000));
}

TEST_CASE("sla: calendar rejects n < 1", "[sla]") {
  const BusinessCalendar cal = Cal();
  CHECK_THROWS_AS(cal.NthBusinessDayAfter(D(2025, 10, 1), 0), CalendarError);
  CHECK_THROWS_AS(cal.NthBusinessDayAfter(D(2025, 10, 1), -1), CalendarError);
  CHECK_THROWS_AS(cal.NthBusinessDayAfter(D(2025, 10, 1), -2147483647 - 1), CalendarError);
}

TEST_CASE("sla: calendar FormatDate and ParseDate", "[sla]") {
  CHECK(FormatDate(D(2026, 3, 8)) == "2026-03-08");
  CHECK(FormatDate(D(2025, 12, 31)) == "2025-12-31");
  CHECK(FormatDate(D(999, 1, 2)) == "0999-01-02");

  for (const char* s : {"2025-01-01", "2024-02-29", "2000-02-29", "1970-01-01", "0001-01-01",
                        "9999-12-31", "2026-11-01"}) {
    LocalDate d;
    INFO(s);
    REQUIRE(ParseDate(s, d));
    CHECK(FormatDate(d) == s);
  }
  LocalDate d;
  REQUIRE(ParseDate("2026-03-08", d));
  CHECK((d == D(2026, 3, 8)));

  for (const char* s :
       {"", "2025-02-30", "2023-02-29", "1900-02-29", "2025-2-3", "2025-02-3", "2025-13-01",
        "2025-00-10", "2025-01-00", "2025-01-32", "2025-04-31", "2025/01/01", "20250101",
        " 2025-01-01", "2025-01-01 ", "2025-01-01x", "2025-01-01T00:00", "+025-01-01",
        "-025-01-01", "2025-0a-01", "2025--1-01", "abcd-ef-gh", "12025-01-01"}) {
    INFO(s);
    CHECK_FALSE(ParseDate(s, d));
  }
  // Embedded NUL is not a date either.
  CHECK_FALSE(ParseDate(std::string_view("2025-01-0\0", 10), d));
}

TEST_CASE("sla: FormatDate writes what snprintf's %04d-%02u-%02u wrote, for every day of years 0 to 9999 sampled",
          "[sla]") {
  // The formatter writes its digits by hand; snprintf is the reference it replaced.
  std::vector<LocalDate> days;
  for (LocalDate d = D(1899, 12, 1); d <= D(2101, 1, 31); d += date::days{1}) days.push_back(d);
  for (int y : {0, 1, 9, 10, 99, 100, 999, 1000, 1969, 1970, 9998, 9999}) {
    for (unsigned m : {1u, 2u, 12u}) days.push_back(D(y, m, 1));
    days.push_back(D(y, 12, 31));
  }
  days.push_back(D(-1, 6, 15));    // outside 0..9999: still snprintf
  days.push_back(D(10000, 1, 1));
  for (const LocalDate d : days) {
    const date::year_month_day ymd{d};
    char expected[32];
    std::snprintf(expected, sizeof expected, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    INFO(expected);
    REQUIRE(FormatDate(d) == expected);
  }
}
