// rightsd under systemd, without systemd: the real binary started with NOTIFY_SOCKET pointed at a datagram socket
// this test reads (what sd_notify writes is exactly what systemd's manager would receive), WATCHDOG_USEC set as
// WatchdogSec= would, and $CREDENTIALS_DIRECTORY as LoadCredential= would.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "harness.h"

namespace {

using namespace std::chrono_literals;
using rightsd::test::Daemon;
using rightsd::test::DaemonEnv;

// The manager's end of NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.string().size() < sizeof(addr.sun_path));
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    std::filesystem::remove(path);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  ~NotifySocket() {
    ::close(fd_);
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  // Every datagram that arrives within `wait`, split into its KEY=VALUE lines.
  std::vector<std::string> Read(std::chrono::milliseconds wait) {
    std::vector<std::string> lines;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) continue;
      std::string message(buf, static_cast<std::size_t>(n));
      for (std::size_t start = 0; start < message.size();) {
        std::size_t end = message.find('\n', start);
        if (end == std::string::npos) end = message.size();
        if (end > start) lines.push_back(message.substr(start, end - start));
        start = end + 1;
      }
    }
    return lines;
  }
  // Reads until `line` arrives (true) or `wait` passes (false); everything read is appended to `seen`.
  bool WaitFor(const std::string& line, std::chrono::milliseconds wait, std::vector<std::string>& seen) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& l : Read(100ms)) {
        seen.push_back(l);
        if (l == line) return true;
      }
    }
    return false;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Environment variables for the daemon this scope starts (it inherits the test's environment), removed afterwards.
class ScopedEnv {
 public:
  void Set(const std::string& name, const std::string& value) {
    ::setenv(name.c_str(), value.c_str(), 1);
    names_.push_back(name);
  }
  ~ScopedEnv() {
    for (const auto& n : names_) ::unsetenv(n.c_str());
  }

 private:
  std::vector<std::string> names_;
};

int Count(const std::vector<std::string>& lines, const std::string& line) {
  return static_cast<int>(std::count(lines.begin(), lines.end(), line));
}

}  // namespace

TEST_CASE("systemd: READY once serving, watchdog pings from the main loop, STOPPING on SIGTERM", "[systemd]") {
  DaemonEnv env(true);
  NotifySocket notify(env.dir() / "notify.sock");
  std::vector<std::string> seen;
  {
    ScopedEnv vars;
    vars.Set("NOTIFY_SOCKET", (env.dir() / "notify.sock").string());
    vars.Set("WATCHDOG_USEC", "400000");  // WatchdogSec=0.4s: pings every 0.2 s
    ::unsetenv("WATCHDOG_PID");
    Daemon d(env);
    REQUIRE(notify.WaitFor("READY=1", 10s, seen));
    // READY=1 comes only when the API answers: the listener is bound and the schema was checked.
    REQUIRE(d.WaitReady());  // learns the port from the log
    CHECK(d.Call("GET", "/v1/sla/summary", env.token("viewer")).status == 200);
    std::vector<std::string> pings = notify.Read(1500ms);
    INFO("notifications: " << Catch::Detail::stringify(pings));
    CHECK(Count(pings, "WATCHDOG=1") >= 4);
    CHECK(Count(pings, "WATCHDOG=1") <= 10);
    REQUIRE(::kill(d.pid(), SIGTERM) == 0);
    CHECK(notify.WaitFor("STOPPING=1", 10s, seen));
    CHECK(d.WaitExit(20) == 0);
  }
  CHECK(Count(seen, "READY=1") == 1);
}

TEST_CASE("systemd: no READY when the schema is not current, and the process exits non-zero", "[systemd]") {
  DaemonEnv env(false);  // not migrated
  NotifySocket notify(env.dir() / "notify.sock");
  ScopedEnv vars;
  vars.Set("NOTIFY_SOCKET", (env.dir() / "notify.sock").string());
  Daemon d(env);
  CHECK(d.WaitExit(20) == 1);
  const auto lines = notify.Read(300ms);
  CHECK(Count(lines, "READY=1") == 0);
  CHECK(d.Log().find("rightsd migrate") != std::string::npos);
}

TEST_CASE("systemd: secrets come from $CREDENTIALS_DIRECTORY when LoadCredential= hands them over", "[systemd]") {
  DaemonEnv env(true);
  // The credentials directory holds a tokens file of the same name with one admin token of its own; the configured
  // file (with the harness's tokens) is then not read.
  const std::filesystem::path credentials = env.dir() / "credentials";
  std::filesystem::create_directories(credentials);
  const auto made = env.Cli({"token", "new", "--role", "admin", "--name", "from-credential"});
  REQUIRE(made.exit_code == 0);
  const std::string token = made.out.substr(7, made.out.find('\n') - 7);  // "token: <value>"
  const std::string entry = made.out.substr(made.out.find("tokens-file line: ") + 18);
  std::ofstream(credentials / "tokens") << entry;
  std::filesystem::permissions(credentials / "tokens", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ScopedEnv vars;
  vars.Set("CREDENTIALS_DIRECTORY", credentials.string());
  Daemon d(env);
  REQUIRE(d.WaitReady());
  CHECK(d.Call("GET", "/v1/sla/summary", token).status == 200);
  CHECK(d.Call("GET", "/v1/sla/summary", env.token("viewer")).status == 401);
  CHECK(d.Stop() == 0);
}

TEST_CASE("systemd: SIGHUP reloads the tokens file between RELOADING and READY, and keeps the running config when "
          "the new one is refused",
          "[systemd][authz]") {
  DaemonEnv env(true);
  NotifySocket notify(env.dir() / "notify.sock");
  ScopedEnv vars;
  vars.Set("NOTIFY_SOCKET", (env.dir() / "notify.sock").string());
  Daemon d(env);
  std::vector<std::string> seen;
  REQUIRE(notify.WaitFor("READY=1", 10s, seen));
  REQUIRE(d.WaitReady());
  const std::string viewer = env.token("viewer");
  REQUIRE(d.Call("GET", "/v1/sla/summary", viewer).status == 200);

  // Revoke the viewer token and add a new one, then reload.
  const auto made = env.Cli({"token", "new", "--role", "viewer", "--name", "dashboard-2", "--config", env.config().string()});
  REQUIRE(made.exit_code == 0);
  const std::string fresh = made.out.substr(7, made.out.find('\n') - 7);
  const std::string entry = made.out.substr(made.out.find("tokens-file line: ") + 18);
  std::string tokens;
  {
    std::ifstream in(env.dir() / "tokens");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("viewer ", 0) != 0) tokens += line + "\n";
    }
  }
  std::ofstream(env.dir() / "tokens", std::ios::trunc) << tokens << entry;
  REQUIRE(::kill(d.pid(), SIGHUP) == 0);
  std::vector<std::string> reload;
  REQUIRE(notify.WaitFor("READY=1", 10s, reload));
  CHECK(reload.front() == "RELOADING=1");
  CHECK(d.Call("GET", "/v1/sla/summary", viewer).status == 401);
  CHECK(d.Call("GET", "/v1/sla/summary", fresh).status == 200);
  CHECK(d.Log().find("sighup: configuration checked; the tokens file is reloaded") != std::string::npos);

  // A config that does not load is refused; the running one, with its tokens, stays.
  std::string config;
  {
    std::ifstream in(env.config());
    config.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::ofstream(env.config(), std::ios::app) << "\n[no_such_table]\nkey = 1\n";
  std::ofstream(env.dir() / "tokens", std::ios::trunc) << tokens;  // would revoke `fresh` if it were read
  REQUIRE(::kill(d.pid(), SIGHUP) == 0);
  std::vector<std::string> refused;
  REQUIRE(notify.WaitFor("READY=1", 10s, refused));
  CHECK(refused.front() == "RELOADING=1");
  CHECK(d.Log().find("sighup: the new configuration is refused and the running one stays") != std::string::npos);
  CHECK(d.Log().find("no_such_table") != std::string::npos);
  CHECK(d.Call("GET", "/v1/sla/summary", fresh).status == 200);
  std::ofstream(env.config(), std::ios::trunc) << config;
  CHECK(d.Stop() == 0);
}
