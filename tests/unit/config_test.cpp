// Unit tests for daemon/config.{h,cpp}: ParseConfig on inline TOML text. The path is fake ("/etc/rightsd/...") and
// is only used to resolve relative paths and to name the file in errors: nothing is read from disk.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "config.h"

using rightsd::Config;
using rightsd::ConfigError;
using rightsd::ParseConfig;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const std::filesystem::path kFile = "/etc/rightsd/rightsd.toml";

// The keys every config must have; tests add or replace tables around them.
constexpr const char* kRequired = R"(
[database]
url = "postgresql://rightsd@/rightsd?host=/run/postgresql"

[calendar]
holidays_file = "holidays.txt"

[auth]
tokens_file = "tokens"

[crypto]
key_file = "pii.key"
)";

std::string Error(const std::string& toml) {
  try {
    ParseConfig(toml, kFile);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<accepted>";
}

// kRequired plus one more table (keys of a table may not be split, so only for tables not in kRequired).
std::string With(const std::string& extra) { return std::string(kRequired) + "\n" + extra + "\n"; }

// A config whose [database] table is `database` (the other required tables unchanged).
std::string WithDatabase(const std::string& database) {
  return "[database]\n" + database +
         "\n[calendar]\nholidays_file = \"h\"\n[auth]\ntokens_file = \"t\"\n[crypto]\nkey_file = \"k\"\n";
}
std::string WithCalendar(const std::string& calendar) {
  return "[database]\nurl = \"postgresql:///rightsd\"\n[calendar]\n" + calendar +
         "\n[auth]\ntokens_file = \"t\"\n[crypto]\nkey_file = \"k\"\n";
}

}  // namespace

TEST_CASE("config: full valid config", "[config]") {
  const Config c = ParseConfig(R"(# rightsd configuration
[http]
listen = "0.0.0.0:8443"
threads = 32
tls_cert_file = "tls/cert.pem"
tls_key_file = "/etc/rightsd/tls/key.pem"

[database]
url = "postgresql://rightsd@/rightsd?host=/run/postgresql"
pool_size = 16

[calendar]
timezone = "America/New_York"
holidays_file = "holidays.txt"
business_days = ["mon", "tue", "wed", "thu"]
at_risk_days = 7

[auth]
tokens_file = "tokens"

[crypto]
key_file = "/var/lib/rightsd/pii.key"
)",
                               kFile);
  CHECK(c.file == kFile);
  CHECK(c.http.host == "0.0.0.0");
  CHECK(c.http.port == 8443);
  CHECK(c.http.threads == 32);
  CHECK(c.database.url == "postgresql://rightsd@/rightsd?host=/run/postgresql");
  CHECK(c.database.pool_size == 16);
  CHECK(c.calendar.timezone == "America/New_York");
  CHECK(c.calendar.holidays_file == "/etc/rightsd/holidays.txt");  // relative: next to the config file
  CHECK(c.calendar.business_days == std::vector<std::string>{"mon", "tue", "wed", "thu"});
  CHECK(c.calendar.at_risk_days == 7);
  CHECK(c.auth.tokens_file == "/etc/rightsd/tokens");
  CHECK(c.crypto.key_file == "/var/lib/rightsd/pii.key");  // absolute: unchanged

  // Keys not given keep their defaults.
  CHECK(c.http.max_body_bytes == 1048576);  // 1 << 20
  CHECK(c.http.keep_alive_timeout_s == 5);
  CHECK(c.http.keep_alive_max_requests == 100000);
  CHECK(c.http.read_timeout_s == 10);
  CHECK(c.database.acquire_timeout_ms == 2000);
  CHECK(c.database.statement_timeout_ms == 5000);
  CHECK(c.sweeper.interval_ms == 30000);
  CHECK(c.sweeper.audit_seal_interval_ms == 250);
}

TEST_CASE("config: defaults for a minimal config", "[config]") {
  const Config c = ParseConfig(kRequired, kFile);
  CHECK(c.http.host == "127.0.0.1");
  CHECK(c.http.port == 8080);
  CHECK(c.http.threads == 64);
  CHECK(c.database.pool_size == 8);
  CHECK(c.calendar.timezone == "America/Los_Angeles");
  CHECK(c.calendar.business_days == std::vector<std::string>{"mon", "tue", "wed", "thu", "fri"});
  CHECK(c.calendar.at_risk_days == 10);
  CHECK(c.calendar.holidays_file == "/etc/rightsd/holidays.txt");
  CHECK(c.auth.tokens_file == "/etc/rightsd/tokens");
  CHECK(c.crypto.key_file == "/etc/rightsd/pii.key");
  CHECK(c.engine.inline_workers == 2);
}

TEST_CASE("config: engine.inline_workers is 1 to 16", "[config][engine]") {
  CHECK(ParseConfig(With("[engine]\ninline_workers = 1"), kFile).engine.inline_workers == 1);
  CHECK(ParseConfig(With("[engine]\ninline_workers = 16"), kFile).engine.inline_workers == 16);
  CHECK(Error(With("[engine]\ninline_workers = 0")) ==
        "/etc/rightsd/rightsd.toml: engine.inline_workers: must be between 1 and 16");
  CHECK(Error(With("[engine]\ninline_workers = 17")) ==
        "/etc/rightsd/rightsd.toml: engine.inline_workers: must be between 1 and 16");
}

TEST_CASE("config: every optional key", "[config]") {
  const Config c = ParseConfig(With(R"(
[http]
listen = "[::1]:9000"
threads = 2
max_body_bytes = 2048
keep_alive_timeout = 30
keep_alive_max_requests = 1000
read_timeout = 60

[sweeper]
interval_ms = 1000
audit_seal_interval_ms = 50
)"),
                               kFile);
  CHECK(c.http.host == "::1");  // brackets removed
  CHECK(c.http.port == 9000);
  CHECK(c.http.threads == 2);
  CHECK(c.http.max_body_bytes == 2048);
  CHECK(c.http.keep_alive_timeout_s == 30);
  CHECK(c.http.keep_alive_max_requests == 1000);
  CHECK(c.http.read_timeout_s == 60);
  CHECK(c.sweeper.interval_ms == 1000);
  CHECK(c.sweeper.audit_seal_interval_ms == 50);

  const Config d = ParseConfig(WithDatabase("url = \"u\"\npool_size = 512\nacquire_timeout_ms = 1\n"
                                            "statement_timeout_ms = 0"),
                               kFile);
  CHECK(d.database.pool_size == 512);
  CHECK(d.database.acquire_timeout_ms == 1);
  CHECK(d.database.statement_timeout_ms == 0);
}

TEST_CASE("config: relative paths resolve against the config file's directory", "[config]") {
  const Config c = ParseConfig(
      "[database]\nurl = \"u\"\n"
      "[calendar]\nholidays_file = \"../shared/holidays.txt\"\n"
      "[auth]\ntokens_file = \"./tokens\"\n"
      "[crypto]\nkey_file = \"keys/pii.key\"\n",
      kFile);
  CHECK(c.calendar.holidays_file == "/etc/shared/holidays.txt");
  CHECK(c.auth.tokens_file == "/etc/rightsd/tokens");
  CHECK(c.crypto.key_file == "/etc/rightsd/keys/pii.key");

  // Another config directory gives other paths.
  const Config d = ParseConfig(kRequired, "/opt/rightsd/etc/rightsd.toml");
  CHECK(d.calendar.holidays_file == "/opt/rightsd/etc/holidays.txt");
  CHECK(d.auth.tokens_file == "/opt/rightsd/etc/tokens");
}

TEST_CASE("config: range limits are inclusive", "[config]") {
  CHECK(ParseConfig(With("[http]\nthreads = 4096"), kFile).http.threads == 4096);
  CHECK(ParseConfig(WithDatabase("url = \"u\"\npool_size = 1"), kFile).database.pool_size == 1);
  CHECK(ParseConfig(WithCalendar("holidays_file = \"h\"\nat_risk_days = 0"), kFile).calendar.at_risk_days == 0);
  CHECK(ParseConfig(WithCalendar("holidays_file = \"h\"\nat_risk_days = 90"), kFile).calendar.at_risk_days == 90);
  CHECK(ParseConfig(With("[http]\nlisten = \"127.0.0.1:0\""), kFile).http.port == 0);
  CHECK(ParseConfig(With("[http]\nlisten = \"127.0.0.1:65535\""), kFile).http.port == 65535);
}

TEST_CASE("config: unknown tables and keys are named", "[config]") {
  CHECK(Error(With("[server]\nport = 80")) == "/etc/rightsd/rightsd.toml: server: unknown table");
  CHECK(Error(With("[http]\nport = 80")) == "/etc/rightsd/rightsd.toml: http.port: unknown key");
  CHECK(Error(WithDatabase("url = \"u\"\nuser = \"rightsd\"")) ==
        "/etc/rightsd/rightsd.toml: database.user: unknown key");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nholidays = \"h\"")) ==
        "/etc/rightsd/rightsd.toml: calendar.holidays: unknown key");
  CHECK(Error(With("[http.tls]\ncert = \"c\"")) == "/etc/rightsd/rightsd.toml: http.tls: unknown key");
  // A top-level key outside any table.
  CHECK(Error("debug = true\n" + std::string(kRequired)) == "/etc/rightsd/rightsd.toml: debug: unknown table");
  CHECK(Error("http = 5\n" + std::string(kRequired)) == "/etc/rightsd/rightsd.toml: http: must be a table");
}

TEST_CASE("config: wrong types are named", "[config]") {
  CHECK(Error(With("[http]\nthreads = \"32\"")) == "/etc/rightsd/rightsd.toml: http.threads: must be an integer");
  CHECK(Error(With("[http]\nthreads = 32.0")) == "/etc/rightsd/rightsd.toml: http.threads: must be an integer");
  CHECK(Error(With("[http]\nlisten = 8080")) == "/etc/rightsd/rightsd.toml: http.listen: must be a string");
  CHECK(Error(WithDatabase("url = 5")) == "/etc/rightsd/rightsd.toml: database.url: must be a string");
  CHECK(Error(WithDatabase("url = \"\"")) == "/etc/rightsd/rightsd.toml: database.url: must not be empty");
  CHECK(Error(WithDatabase("url = \"u\"\npool_size = true")) ==
        "/etc/rightsd/rightsd.toml: database.pool_size: must be an integer");
  CHECK(Error(WithCalendar("holidays_file = true")) ==
        "/etc/rightsd/rightsd.toml: calendar.holidays_file: must be a string");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nbusiness_days = \"mon\"")) ==
        "/etc/rightsd/rightsd.toml: calendar.business_days: must be an array of strings");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nbusiness_days = [\"mon\", 2]")) ==
        "/etc/rightsd/rightsd.toml: calendar.business_days: must be an array of strings");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\ntimezone = [\"UTC\"]")) ==
        "/etc/rightsd/rightsd.toml: calendar.timezone: must be a string");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nat_risk_days = \"10\"")) ==
        "/etc/rightsd/rightsd.toml: calendar.at_risk_days: must be an integer");
}

TEST_CASE("config: out-of-range values are named", "[config]") {
  CHECK(Error(With("[http]\nthreads = 1")) == "/etc/rightsd/rightsd.toml: http.threads: must be between 2 and 4096");
  CHECK(Error(With("[http]\nthreads = 4097")) ==
        "/etc/rightsd/rightsd.toml: http.threads: must be between 2 and 4096");
  CHECK(Error(WithDatabase("url = \"u\"\npool_size = 0")) ==
        "/etc/rightsd/rightsd.toml: database.pool_size: must be between 1 and 512");
  CHECK(Error(WithDatabase("url = \"u\"\npool_size = 513")) ==
        "/etc/rightsd/rightsd.toml: database.pool_size: must be between 1 and 512");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nat_risk_days = 91")) ==
        "/etc/rightsd/rightsd.toml: calendar.at_risk_days: must be between 0 and 90");
  CHECK(Error(WithCalendar("holidays_file = \"h\"\nat_risk_days = -1")) ==
        "/etc/rightsd/rightsd.toml: calendar.at_risk_days: must be between 0 and 90");
  // 1 KiB .. 64 MiB = 67108864
  CHECK(Error(With("[http]\nmax_body_bytes = 1023")) ==
        "/etc/rightsd/rightsd.toml: http.max_body_bytes: must be between 1024 and 67108864");
  CHECK_THAT(Error(With("[http]\nmax_body_bytes = 67108865")), StartsWith("/etc/rightsd/rightsd.toml: http.max_body_bytes:"));
  CHECK_THAT(Error(With("[sweeper]\ninterval_ms = 99")), StartsWith("/etc/rightsd/rightsd.toml: sweeper.interval_ms:"));
  // A value that does not fit in 32 bits is out of range, not wrapped.
  CHECK(Error(With("[http]\nthreads = 4294967298")) ==
        "/etc/rightsd/rightsd.toml: http.threads: must be between 2 and 4096");
}

TEST_CASE("config: bad listen addresses", "[config]") {
  for (const char* listen : {"localhost", "host:99999", "host:abc", "host:", ":8080", "host:80x", "host:-1",
                             "host:65536", ""}) {
    INFO("'" << listen << "'");
    CHECK_THAT(Error(With(std::string("[http]\nlisten = \"") + listen + "\"")),
               StartsWith("/etc/rightsd/rightsd.toml: http.listen: "));
  }
}

TEST_CASE("config: required keys", "[config]") {
  CHECK(Error("[calendar]\nholidays_file = \"h\"\n[auth]\ntokens_file = \"t\"\n[crypto]\nkey_file = \"k\"\n") ==
        "/etc/rightsd/rightsd.toml: database.url: is required");
  CHECK(Error(WithDatabase("pool_size = 4")) == "/etc/rightsd/rightsd.toml: database.url: is required");
  CHECK(Error("[database]\nurl = \"u\"\n[auth]\ntokens_file = \"t\"\n[crypto]\nkey_file = \"k\"\n") ==
        "/etc/rightsd/rightsd.toml: calendar.holidays_file: is required");
  CHECK(Error("[database]\nurl = \"u\"\n[calendar]\nholidays_file = \"h\"\n[crypto]\nkey_file = \"k\"\n") ==
        "/etc/rightsd/rightsd.toml: auth.tokens_file: is required");
  CHECK(Error("[database]\nurl = \"u\"\n[calendar]\nholidays_file = \"h\"\n[auth]\ntokens_file = \"t\"\n") ==
        "/etc/rightsd/rightsd.toml: crypto.key_file: is required");
  CHECK(Error("") == "/etc/rightsd/rightsd.toml: database.url: is required");
}

TEST_CASE("config: TOML syntax errors name the line", "[config]") {
  // Unterminated string on line 3.
  CHECK_THAT(Error("[http]\nthreads = 4\nlisten = \"127.0.0.1:8080\n[database]\nurl = \"u\"\n"),
             StartsWith("/etc/rightsd/rightsd.toml:3:"));
  // A key without a value on line 6 (after the required tables' first lines).
  CHECK_THAT(Error("# c\n[database]\nurl = \"u\"\n\n[http]\nthreads =\n"), StartsWith("/etc/rightsd/rightsd.toml:6:"));
  // The same key twice: the second, on line 4, is the error.
  CHECK_THAT(Error("[http]\nthreads = 4\n# again\nthreads = 8\n"), StartsWith("/etc/rightsd/rightsd.toml:4:"));
  // The same table twice, the second on line 3.
  CHECK_THAT(Error("[http]\nthreads = 4\n[http]\nlisten = \"a:1\"\n"), StartsWith("/etc/rightsd/rightsd.toml:3:"));
  CHECK_THROWS_AS(ParseConfig("[http", kFile), ConfigError);
}

// 11 CCR §7101 keeps records of requests at least 24 months: a shorter retention is a config error, not a choice.
TEST_CASE("purge: retention_months defaults to 24, and below 24 is refused", "[config][purge]") {
  const Config defaults = ParseConfig(kRequired, kFile);
  CHECK(defaults.purge.retention_months == 24);
  CHECK(defaults.purge.batch_size == 500);
  CHECK(ParseConfig(With("[purge]\nretention_months = 24"), kFile).purge.retention_months == 24);
  CHECK(ParseConfig(With("[purge]\nretention_months = 84\nbatch_size = 1"), kFile).purge.retention_months == 84);
  CHECK(Error(With("[purge]\nretention_months = 23")) ==
        "/etc/rightsd/rightsd.toml: purge.retention_months: must be between 24 and 1200");
  CHECK(Error(With("[purge]\nretention_months = 0")) ==
        "/etc/rightsd/rightsd.toml: purge.retention_months: must be between 24 and 1200");
  CHECK(Error(With("[purge]\nretention_months = 24.5")) ==
        "/etc/rightsd/rightsd.toml: purge.retention_months: must be an integer");
  CHECK(Error(With("[purge]\nbatch_size = 0")) ==
        "/etc/rightsd/rightsd.toml: purge.batch_size: must be between 1 and 10000");
  CHECK(Error(With("[purge]\nretention_days = 730")) == "/etc/rightsd/rightsd.toml: purge.retention_days: unknown key");
}

TEST_CASE("config: plain HTTP only on loopback, TLS files both or neither", "[config][authz]") {
  for (const char* listen : {"127.0.0.1:8080", "127.3.4.5:1", "[::1]:8080", "localhost:8080"}) {
    INFO(listen);
    CHECK_FALSE(ParseConfig(With(std::string("[http]\nlisten = \"") + listen + "\""), kFile).http.tls());
  }
  for (const char* listen : {"0.0.0.0:8080", "10.0.0.5:8080", "[::]:8080", "rightsd.example.org:80"}) {
    INFO(listen);
    CHECK_THAT(Error(With(std::string("[http]\nlisten = \"") + listen + "\"")),
               StartsWith("/etc/rightsd/rightsd.toml: http.allow_plaintext_non_loopback: http.listen is "));
    CHECK(ParseConfig(With(std::string("[http]\nlisten = \"") + listen + "\"\nallow_plaintext_non_loopback = true"),
                      kFile).http.allow_plaintext_non_loopback);
  }
  const Config tls = ParseConfig(
      With("[http]\nlisten = \"0.0.0.0:8443\"\ntls_cert_file = \"tls/c.pem\"\ntls_key_file = \"tls/k.pem\""), kFile);
  CHECK(tls.http.tls());
  CHECK(tls.http.tls_cert_file == "/etc/rightsd/tls/c.pem");
  CHECK(tls.http.tls_key_file == "/etc/rightsd/tls/k.pem");
  CHECK(Error(With("[http]\ntls_cert_file = \"c.pem\"")) ==
        "/etc/rightsd/rightsd.toml: http.tls_key_file: set both http.tls_cert_file and http.tls_key_file, or neither");
  CHECK(Error(With("[http]\ntls_key_file = \"k.pem\"")) ==
        "/etc/rightsd/rightsd.toml: http.tls_cert_file: set both http.tls_cert_file and http.tls_key_file, or neither");
  CHECK_THAT(Error(With("[http]\ntls_cert_file = \"\"\ntls_key_file = \"k\"")),
             StartsWith("/etc/rightsd/rightsd.toml: http.tls_cert_file: must not be empty"));
}

TEST_CASE("config: outbound allow-list and per-token rate limits", "[config][authz]") {
  const Config defaults = ParseConfig(kRequired, kFile);
  CHECK(defaults.outbound.allowed_hosts.empty());
  CHECK(defaults.auth.rate_per_second == 100);
  CHECK(defaults.auth.burst == 200);
  CHECK(ParseConfig(With("[outbound]\nallowed_hosts = [\"*.salesforce.com\", \"http://127.0.0.1:*\"]"), kFile)
            .outbound.allowed_hosts.size() == 2);
  CHECK_THAT(Error(With("[outbound]\nallowed_hosts = [\"api.example.com\", \"*\"]")),
             StartsWith("/etc/rightsd/rightsd.toml: outbound.allowed_hosts: entry 2 (\"*\"): "));
  CHECK_THAT(Error(With("[outbound]\nallowed_hosts = \"api.example.com\"")),
             StartsWith("/etc/rightsd/rightsd.toml: outbound.allowed_hosts: must be an array of strings"));
  CHECK_THAT(Error(With("[outbound]\nhosts = []")), StartsWith("/etc/rightsd/rightsd.toml: outbound.hosts: unknown key"));
  const std::string auth = "[database]\nurl = \"u\"\n[calendar]\nholidays_file = \"h\"\n[crypto]\nkey_file = \"k\"\n"
                           "[auth]\ntokens_file = \"t\"\n";
  const Config limited = ParseConfig(auth + "rate_per_second = 0.5\nburst = 3\n", kFile);
  CHECK(limited.auth.rate_per_second == 0.5);
  CHECK(limited.auth.burst == 3);
  CHECK(Error(auth + "rate_per_second = 0\n") ==
        "/etc/rightsd/rightsd.toml: auth.rate_per_second: must be from 0.01 to 1000000");
  CHECK(Error(auth + "burst = 0\n") == "/etc/rightsd/rightsd.toml: auth.burst: must be between 1 and 1000000");
}
