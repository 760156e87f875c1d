#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "crypto.h"
#include "migrate.h"

namespace rightsd::test {

namespace {

// The daemons and CLI runs the tests start are instrumented too, but their stderr goes to a file, so a sanitizer
// report there would pass unnoticed: look for one (ASan, LSan and TSan say "...Sanitizer:", UBSan "runtime error:")
// and fail the test with the report on stderr.
void CheckForSanitizerReport(const std::string& what, const std::string& output) {
  if (output.find("Sanitizer:") == std::string::npos && output.find(": runtime error: ") == std::string::npos) {
    return;
  }
  std::cerr << "==== sanitizer report in the output of " << what << " ====\n" << output << "==== end of " << what
            << " ====\n";
  // Not while a failed REQUIRE unwinds through a destructor: the report is on stderr and the test fails anyway.
  if (std::uncaught_exceptions() == 0) FAIL_CHECK("a sanitizer reported an error in " << what << " (see stderr)");
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    throw std::runtime_error(fmt::format("{} is not set: run integration tests through ctest (the postgres fixture)",
                                         name));
  }
  return v;
}

// RIGHTSD_TEST_PG = "<socket dir>:<port>", set by ctest for tests that need the postgres fixture.
std::string ServerPart() {
  const std::string v = Env("RIGHTSD_TEST_PG");
  const auto colon = v.rfind(':');
  return fmt::format("host={} port={} user=postgres", v.substr(0, colon), v.substr(colon + 1));
}

std::string AdminUrl() { return ServerPart() + " dbname=postgres"; }

std::string RandomSuffix() {
  std::random_device rd;
  return fmt::format("{:08x}{:08x}", rd(), rd());
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::filesystem::path& path, const std::string& text, mode_t mode = 0644) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  std::filesystem::permissions(path, static_cast<std::filesystem::perms>(mode));
}

pid_t Spawn(const std::vector<std::string>& args, const std::filesystem::path& out,
            const std::filesystem::path& err) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    ::dup2(in, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int WaitFor(pid_t pid, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) return -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string BinaryPath() { return RIGHTSD_BINARY; }
std::string SourceDir() { return RIGHTSD_SOURCE_DIR; }

bool Eventually(const std::function<bool()>& condition, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return condition();
}

TestDatabase::TestDatabase() : name_("t_" + RandomSuffix()) {
  pqxx::connection admin(AdminUrl());
  pqxx::nontransaction txn(admin);
  txn.exec("CREATE DATABASE " + txn.quote_name(name_));
}

TestDatabase::~TestDatabase() {
  try {
    pqxx::connection admin(AdminUrl());
    pqxx::nontransaction txn(admin);
    txn.exec("DROP DATABASE IF EXISTS " + txn.quote_name(name_) + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The cluster is thrown away by the fixture anyway.
  }
}

std::string TestDatabase::url() const {
  return ServerPart() + " dbname=" + name_;
}

std::unique_ptr<pqxx::connection> TestDatabase::Connect() const { return std::make_unique<pqxx::connection>(url()); }

void TestDatabase::Migrate() const {
  auto conn = Connect();
  ApplyMigrations(*conn);
}

std::string TestDatabase::Scalar(const std::string& sql) const {
  auto conn = Connect();
  pqxx::nontransaction txn(*conn);
  const auto r = txn.exec1(sql);
  return r[0].is_null() ? "" : r[0].as<std::string>();
}

DaemonEnv::DaemonEnv(bool migrate, std::string extra_toml) {
  dir_ = std::filesystem::temp_directory_path() / ("rightsd-test-" + RandomSuffix());
  std::filesystem::create_directories(dir_);
  WriteFile(dir_ / "pii.key", GenerateKeyHex() + "\n", 0600);
  // A small holidays file of its own, so tests do not depend on the shipped default's years.
  WriteFile(dir_ / "holidays.txt",
            "# test holidays\n2026-11-26 # Thanksgiving\n2026-12-25\n2027-01-01\n2027-01-18\n");
  std::string lines = "# role name sha256\n";
  for (const char* role : {"submitter", "viewer", "admin", "auditor"}) {
    const std::string token = GenerateToken();
    tokens_[role] = token;
    lines += fmt::format("{} {}-client {}\n", role, role, Sha256Hex(token));
  }
  WriteFile(dir_ / "tokens", lines, 0600);
  WriteConfig(db_.url(), extra_toml);
  if (migrate) db_.Migrate();
}

DaemonEnv::~DaemonEnv() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void DaemonEnv::LiftTokenRateLimit() const {
  std::ifstream in(config());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string from = "tokens_file = \"tokens\"\n";
  const auto at = text.find(from);
  if (at == std::string::npos) throw std::runtime_error("LiftTokenRateLimit: no tokens_file line in the config");
  text.replace(at, from.size(), from + "rate_per_second = 1000000\nburst = 1000000\n");
  std::ofstream(config(), std::ios::trunc) << text;
}

void DaemonEnv::WriteConfig(const std::string& database_url, const std::string& extra_toml) {
  WriteFile(dir_ / "rightsd.toml", fmt::format(R"([http]
listen = "127.0.0.1:0"
threads = 16
[database]
url = "{}"
pool_size = 4
acquire_timeout_ms = 2000
[calendar]
timezone = "America/Los_Angeles"
holidays_file = "holidays.txt"
business_days = ["mon", "tue", "wed", "thu", "fri"]
at_risk_days = 10
[auth]
tokens_file = "tokens"
[crypto]
key_file = "pii.key"
[sweeper]
interval_ms = 500
audit_seal_interval_ms = 50
[outbound]
# Test peers listen on loopback in plain HTTP.
allowed_hosts = ["http://127.0.0.1:*"]
{}
)",
                                               database_url, extra_toml));
}

CliResult DaemonEnv::Cli(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{BinaryPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string tag = RandomSuffix();
  const auto out = dir_ / ("cli-" + tag + ".out");
  const auto err = dir_ / ("cli-" + tag + ".err");
  const pid_t pid = Spawn(argv, out, err);
  CliResult result;
  result.exit_code = WaitFor(pid, 60);
  if (result.exit_code == -2) {
    ::kill(pid, SIGKILL);
    WaitFor(pid, 5);
  }
  result.out = ReadAll(out);
  result.err = ReadAll(err);
  CheckForSanitizerReport(fmt::format("rightsd {}", fmt::join(args, " ")), result.err);
  return result;
}

Daemon::Daemon(const DaemonEnv& env, const std::string& name) {
  log_ = env.dir() / (name + ".log");
  pid_ = Spawn({BinaryPath(), "serve", "--config", env.config().string()}, log_, log_);
}

Daemon::~Daemon() {
  // In a sanitizer build the daemon is stopped with SIGTERM (SIGKILL after 10 s) rather than killed, so that it
  // runs its exit-time checks: LeakSanitizer, and ThreadSanitizer's failing exit status.
  if (pid_ > 0) {
    if (kSanitized) {
      Stop();
    } else {
      Kill();
    }
  }
  CheckForSanitizerReport(fmt::format("the daemon ({})", log_.filename().string()), Log());
  // Every daemon log of the suite is kept for the last ctest entry, which scans them all for identity values
  // (tests/log_canary.sh): the test's own directory is removed with it.
  static std::atomic<int> kept{0};
  std::error_code ec;
  std::filesystem::create_directories(RIGHTSD_SUITE_LOG_DIR, ec);
  std::filesystem::copy_file(log_,
                             std::filesystem::path(RIGHTSD_SUITE_LOG_DIR) /
                                 fmt::format("{}-{}-{}", ::getpid(), ++kept, log_.filename().string()),
                             std::filesystem::copy_options::overwrite_existing, ec);
}

bool Daemon::WaitReady() {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string log = Log();
    auto at = log.find("listening on http://");
    if (at == std::string::npos) at = log.find("listening on https://");
    if (at != std::string::npos) {
      const auto colon = log.find(':', log.find("://", at) + 3);
      port_ = std::stoi(log.substr(colon + 1));
      return true;
    }
    if (!Running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string Daemon::Log() const { return ReadAll(log_); }

bool Daemon::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int Daemon::Stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  const int code = WaitFor(pid_, 10);
  if (code == -2) {
    Kill();
    return -1;
  }
  pid_ = -1;
  return code;
}

void Daemon::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  WaitFor(pid_, 10);
  pid_ = -1;
}

int Daemon::WaitExit(int seconds) {
  if (pid_ <= 0) return -1;
  const int code = WaitFor(pid_, seconds);
  if (code != -2) pid_ = -1;
  return code;
}

nlohmann::json Daemon::Response::json() const {
  return nlohmann::json::parse(body, nullptr, false);
}

Daemon::Response Daemon::Call(const std::string& method, const std::string& path, const std::string& token,
                              const std::string& body, const httplib::Headers& headers,
                              const std::string& content_type) {
  httplib::Client client("127.0.0.1", port_);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(15, 0);
  httplib::Headers all = headers;
  if (!token.empty()) all.emplace("Authorization", "Bearer " + token);
  httplib::Result result{nullptr, httplib::Error::Unknown};
  if (method == "GET") {
    result = client.Get(path.c_str(), all);
  } else if (method == "POST") {
    result = client.Post(path.c_str(), all, body, content_type.c_str());
  } else if (method == "PUT") {
    result = client.Put(path.c_str(), all, body, content_type.c_str());
  } else if (method == "DELETE") {
    result = client.Delete(path.c_str(), all);
  } else if (method == "PATCH") {
    result = client.Patch(path.c_str(), all, body, content_type.c_str());
  } else {
    throw std::runtime_error("unsupported method " + method);
  }
  if (!result) throw std::runtime_error(fmt::format("{} {}: no answer ({})", method, path, static_cast<int>(result.error())));
  Response r;
  r.status = result->status;
  r.body = result->body;
  r.content_type = result->get_header_value("Content-Type");
  r.headers = result->headers;
  return r;
}

}  // namespace rightsd::test
