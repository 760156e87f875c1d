// Fuzzes the holidays file parser, the business-week parser and the strict date parser, then counts business days
// on the calendar they make: errors are CalendarError naming the line, and counting never loops past its bound.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "calendar.h"
#include "fuzz_common.h"

using namespace rightsd;
using rightsd::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // "<business days, comma-separated>\n<holidays file>"
  const auto nl = input.find('\n');
  const std::string_view week_text = nl == std::string_view::npos ? std::string_view() : input.substr(0, nl);
  const std::string_view holidays_text = nl == std::string_view::npos ? input : input.substr(nl + 1);

  LocalDate day;
  if (ParseDate(input.substr(0, 10), day)) {
    Check(FormatDate(day) == input.substr(0, 10), "ParseDate accepted a date that does not format back to itself");
  }

  std::set<LocalDate> holidays;
  try {
    holidays = ParseHolidays(holidays_text);
  } catch (const CalendarError& e) {
    const std::string what = e.what();
    Check(what.starts_with("line "), "a holidays error that names no line");
    Check(fuzz::IsValidUtf8(what), "a holidays error that is not valid UTF-8");
    return 0;
  }
  for (const auto& h : holidays) {
    LocalDate back;
    Check(ParseDate(FormatDate(h), back) && back == h, "a parsed holiday does not format back to itself");
  }

  BusinessWeek week{false, true, true, true, true, true, false};
  if (!week_text.empty()) {
    std::vector<std::string> names;
    std::string_view rest = week_text;
    for (int i = 0; i < 16 && !rest.empty(); ++i) {
      const auto comma = rest.find(',');
      names.emplace_back(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    try {
      week = ParseBusinessDays(names);
    } catch (const CalendarError&) {
      return 0;
    }
  }
  try {
    const BusinessCalendar calendar(date::locate_zone("America/Los_Angeles"), holidays, week);
    const LocalDate start = holidays.empty() ? LocalDate(date::year(2026) / 1 / 1) : *holidays.begin();
    for (int n : {1, 10, 45, 90}) {
      const LocalDate due = calendar.NthBusinessDayAfter(start, n);
      Check(due > start && calendar.IsBusinessDay(due), "NthBusinessDayAfter answered a day that is not a business day");
    }
  } catch (const CalendarError&) {
    // A calendar with no business day left within its bound: refused, never a hang.
  }
  return 0;
}
