#include "log.h"

#include <unistd.h>

#include <atomic>
#include <string>

namespace rightsd {

namespace {
std::atomic<int> g_max_level{static_cast<int>(LogLevel::kInfo)};
}

void SetLogLevel(LogLevel max_level) { g_max_level.store(static_cast<int>(max_level)); }

void LogLine(LogLevel level, std::string_view message) {
  if (static_cast<int>(level) > g_max_level.load(std::memory_order_relaxed)) return;
  std::string line = fmt::format("<{}>", static_cast<int>(level));
  line.reserve(line.size() + message.size() + 1);
  for (char c : message) line.push_back(c == '\n' ? ' ' : c);  // one event, one line
  line.push_back('\n');
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace rightsd
