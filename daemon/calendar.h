#pragma once
// Business-day calendar for statutory deadlines.
//
// A BusinessCalendar turns a receipt instant into a local calendar date in the business time
// zone and counts business days from it (a weekday in the configured business week that is not
// a listed holiday). It is pure computation: it does no I/O and never reads the wall clock.
// Callers pass in the zone (date::locate_zone), the holiday set (ParseHolidays on text the caller
// has read) and the instants to convert.
#include <array>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <date/date.h>
#include <date/tz.h>

namespace rightsd {

using LocalDate = date::local_days;  // a calendar date in the business time zone

// Index 0 = Sunday ... 6 = Saturday (date::weekday::c_encoding()).
using BusinessWeek = std::array<bool, 7>;

struct CalendarError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Parses the holidays file text: one ISO date (YYYY-MM-DD) a line; '#' starts a comment anywhere on
// the line; blank lines and surrounding whitespace are ignored; anything else throws
// CalendarError("line N: <what is wrong>"). Rejects invalid dates like 2025-02-30, 2025-2-3 and
// trailing junk. Duplicates are allowed.
std::set<LocalDate> ParseHolidays(std::string_view text);

// "mon".."sun" (lower case only); unknown names, duplicates or an empty list throw CalendarError
// naming the bad entry.
BusinessWeek ParseBusinessDays(const std::vector<std::string>& names);

class BusinessCalendar {
 public:
  // Throws CalendarError if tz is null or the week has no business day.
  BusinessCalendar(const date::time_zone* tz, std::set<LocalDate> holidays, BusinessWeek week);

  // The local calendar date of `instant` in the business time zone.
  LocalDate LocalDateOf(std::chrono::system_clock::time_point instant) const;

  bool IsBusinessDay(LocalDate day) const;

  // The n-th business day strictly after day0 (n >= 1). Throws CalendarError if n < 1 or if no
  // such day exists within 3660 days (e.g. a holiday file listing every day) -- never loops
  // forever.
  LocalDate NthBusinessDayAfter(LocalDate day0, int n) const;

  const date::time_zone* Zone() const { return tz_; }

 private:
  const date::time_zone* tz_;
  std::set<LocalDate> holidays_;
  BusinessWeek week_;
};

// "YYYY-MM-DD"
std::string FormatDate(LocalDate day);

// Parses strict "YYYY-MM-DD"; returns false on anything else (including impossible dates).
bool ParseDate(std::string_view text, LocalDate& out);

}  // namespace rightsd
