// One line per event on stderr, prefixed with a syslog priority ("<3>", "<4>", "<6>", "<7>") that journald
// understands. Lines are lowercase and name the entity; identity values never reach a log line -- callers pass
// ids, kinds and counts only. Thread-safe: each line is written with a single write(2).
#pragma once
#include <string_view>

#include <fmt/format.h>

namespace rightsd {

enum class LogLevel { kError = 3, kWarning = 4, kInfo = 6, kDebug = 7 };

void SetLogLevel(LogLevel max_level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void LogError(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kError, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogWarning(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kWarning, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogInfo(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogDebug(fmt::format_string<Args...> f, Args&&... args) {
  LogLine(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace rightsd
