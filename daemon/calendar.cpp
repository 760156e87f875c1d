#include "calendar.h"

#include <cstdio>
#include <utility>

namespace rightsd {
namespace {

// How far NthBusinessDayAfter searches before giving up (about ten years).
constexpr int kMaxSearchDays = 3660;

constexpr std::array<std::string_view, 7> kDayNames = {"sun", "mon", "tue", "wed",
                                                       "thu", "fri", "sat"};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Quotes untrusted text for an error message: bounded length, non-printable bytes replaced.
std::string Quote(std::string_view s) {
  constexpr std::size_t kMax = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

}  // namespace

bool ParseDate(std::string_view text, LocalDate& out) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u}) {
    if (!IsDigit(text[i])) return false;
  }
  auto num = [&](std::size_t pos, std::size_t len) {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) v = v * 10 + (text[i] - '0');
    return v;
  };
  const date::year_month_day ymd{date::year{num(0, 4)},
                                 date::month{static_cast<unsigned>(num(5, 2))},
                                 date::day{static_cast<unsigned>(num(8, 2))}};
  if (!ymd.ok()) return false;
  out = LocalDate{ymd};
  return true;
}

std::string FormatDate(LocalDate day) {
  const date::year_month_day ymd{day};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", year, static_cast<unsigned>(ymd.month()),
                  static_cast<unsigned>(ymd.day()));
    return buf;
  }
  // A status answer writes several dates and SQL parameters many more: digits by hand, not snprintf (about 1 % of
  // a status read's CPU).
  char buf[10];
  const auto put = [&buf](int at, unsigned value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10) buf[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, static_cast<unsigned>(year), 4);
  buf[4] = '-';
  put(5, static_cast<unsigned>(ymd.month()), 2);
  buf[7] = '-';
  put(8, static_cast<unsigned>(ymd.day()), 2);
  return std::string(buf, sizeof buf);
}

std::set<LocalDate> ParseHolidays(std::string_view text) {
  std::set<LocalDate> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = (nl == std::string_view::npos) ? std::string_view{} : text.substr(nl + 1);

    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = Trim(line);
    if (line.empty()) continue;

    LocalDate day;
    if (!ParseDate(line, day)) {
      throw CalendarError("line " + std::to_string(line_no) + ": " + Quote(line) +
                          " is not a valid date (expected YYYY-MM-DD)");
    }
    out.insert(day);
  }
  return out;
}

BusinessWeek ParseBusinessDays(const std::vector<std::string>& names) {
  if (names.empty()) throw CalendarError("business_days is empty: at least one day is required");
  BusinessWeek week{};
  for (const std::string& name : names) {
    std::size_t idx = kDayNames.size();
    for (std::size_t i = 0; i < kDayNames.size(); ++i) {
      if (name == kDayNames[i]) idx = i;
    }
    if (idx == kDayNames.size()) {
      throw CalendarError("business_days: unknown day " + Quote(name) +
                          " (expected mon, tue, wed, thu, fri, sat or sun, lower case)");
    }
    if (week[idx]) throw CalendarError("business_days: duplicate day " + Quote(name));
    week[idx] = true;
  }
  return week;
}

BusinessCalendar::BusinessCalendar(const date::time_zone* tz, std::set<LocalDate> holidays,
                                   BusinessWeek week)
    : tz_(tz), holidays_(std::move(holidays)), week_(week) {
  if (tz_ == nullptr) throw CalendarError("business calendar: no time zone");
  bool any = false;
  for (bool b : week_) any = any || b;
  if (!any) throw CalendarError("business calendar: the business week has no business day");
}

LocalDate BusinessCalendar::LocalDateOf(std::chrono::system_clock::time_point instant) const {
  return date::floor<date::days>(tz_->to_local(instant));
}

bool BusinessCalendar::IsBusinessDay(LocalDate day) const {
  return week_[date::weekday{day}.c_encoding()] && !holidays_.contains(day);
}

LocalDate BusinessCalendar::NthBusinessDayAfter(LocalDate day0, int n) const {
  if (n < 1) {
    throw CalendarError("business calendar: n must be at least 1, got " + std::to_string(n));
  }
  int found = 0;
  for (int offset = 1; offset <= kMaxSearchDays; ++offset) {
    const LocalDate day = day0 + date::days{offset};
    if (IsBusinessDay(day) && ++found == n) return day;
  }
  throw CalendarError("business calendar: fewer than " + std::to_string(n) +
                      " business days in the " + std::to_string(kMaxSearchDays) +
                      " days after " + FormatDate(day0) +
                      " (check business_days and the holidays file)");
}

}  // namespace rightsd
