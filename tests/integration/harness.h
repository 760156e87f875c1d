// Integration test harness: a fresh database per test in the PostgreSQL cluster that the ctest fixture started
// (RIGHTSD_TEST_PG), a temporary directory with a config, a key, a holidays file and one
// token per role, and the real rightsd binary started and stopped by pid. Loopback only.
#pragma once
#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>
#include <date/date.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace rightsd::test {

// A sanitizer build (RIGHTSD_SANITIZE, a Debug build, or RIGHTSD_TSAN): the test programs and the daemon they start
// run several times slower and use more memory, so a bound on speed or memory is scaled there (never one on
// behaviour). GCC defines these under -fsanitize=address and -fsanitize=thread.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// A database created for one test and dropped (with force) afterwards.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  const std::string& name() const { return name_; }
  std::string url() const;
  std::unique_ptr<pqxx::connection> Connect() const;
  void Migrate() const;
  // A single value from a query, as text ("" for NULL).
  std::string Scalar(const std::string& sql) const;

 private:
  std::string name_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A temporary directory holding everything a daemon needs; removed at the end.
class DaemonEnv {
 public:
  explicit DaemonEnv(bool migrate = true, std::string extra_toml = "");
  ~DaemonEnv();
  TestDatabase& db() { return db_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path config() const { return dir_ / "rightsd.toml"; }
  // Tokens by role name: "submitter", "viewer", "admin", "auditor".
  const std::string& token(const std::string& role) const { return tokens_.at(role); }
  void WriteConfig(const std::string& database_url, const std::string& extra_toml = "");
  // For tests that load the daemon far beyond one token's default rate (auth.rate_per_second): what they measure is
  // the daemon, not the per-token limit, so the limit is lifted in the config written last.
  void LiftTokenRateLimit() const;
  CliResult Cli(const std::vector<std::string>& args) const;

 private:
  TestDatabase db_;
  std::filesystem::path dir_;
  std::map<std::string, std::string> tokens_;
};

// The real binary, started with `serve --config`; stderr goes to a file the test can read.
class Daemon {
 public:
  explicit Daemon(const DaemonEnv& env, const std::string& name = "daemon");
  ~Daemon();
  // Waits for "listening on" in the log (10 s at most); false if the process died or never listened.
  bool WaitReady();
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string Log() const;
  // SIGTERM and wait (up to 10 s); returns the exit status, or -1 if it had to be killed.
  int Stop();
  void Kill();  // SIGKILL and reap
  bool Running();
  // Waits for the process to exit by itself (up to `seconds`); returns the exit code or -1.
  int WaitExit(int seconds);

  struct Response {
    int status = 0;
    std::string body;
    std::string content_type;
    httplib::Headers headers;
    nlohmann::json json() const;
  };
  Response Call(const std::string& method, const std::string& path, const std::string& token,
                const std::string& body = "", const httplib::Headers& headers = {},
                const std::string& content_type = "application/json");

 private:
  std::filesystem::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string BinaryPath();
std::string SourceDir();
// Polls `condition` every 50 ms up to `seconds`.
bool Eventually(const std::function<bool()>& condition, double seconds);

}  // namespace rightsd::test
