// Fuzzes ParseConfig: any TOML text either loads or is refused with a ConfigError naming the file and the key (or
// the TOML line and column); nothing else may escape, and a loaded config keeps its declared ranges.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config.h"
#include "fuzz_common.h"

using rightsd::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::filesystem::path file = "/nonexistent/rightsd-fuzz/rightsd.toml";
  try {
    const rightsd::Config c = rightsd::ParseConfig(text, file);
    Check(c.http.port >= 0 && c.http.port <= 65535, "http.port out of range accepted");
    Check(c.http.threads >= 1, "http.threads below 1 accepted");
    Check(c.http.max_body_bytes >= 1, "http.max_body_bytes below 1 accepted");
    Check(c.database.pool_size >= 1, "database.pool_size below 1 accepted");
    Check(!c.calendar.business_days.empty(), "an empty business week accepted");
    for (const auto& s : c.systems) {
      Check(!s.name.empty() && !s.connector.empty(), "a system without a name or connector accepted");
      Check(s.max_concurrency >= 1 && s.max_attempts >= 1, "a system's limits below 1 accepted");
      Check(rightsd::fuzz::DumpsStrictly(s.settings), "system settings that do not dump as UTF-8 accepted");
    }
  } catch (const rightsd::ConfigError& e) {
    const std::string what = e.what();
    Check(what.starts_with(file.string()), "a ConfigError that does not start with the file name");
    Check(rightsd::fuzz::IsValidUtf8(what), "a ConfigError message that is not valid UTF-8");
  }
  return 0;
}
