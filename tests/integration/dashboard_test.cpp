// GET /dashboard: the SLA dashboard served by the daemon, checked twice: its HTTP headers here, and the page itself
// in Debian's headless Chromium driven by tests/dashboard/dashboard.test.mjs (playwright-core, axe-core) against
// a daemon holding planted requests: three on track, one at risk and one breached (set by SQL), two with tasks.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness.h"

using namespace rightsd::test;
using nlohmann::json;

namespace {

const std::string kManualSystems = R"toml(
[[systems]]
name = "ehr"
connector = "manual"
categories = ["identifiers"]
[systems.settings]
instructions = "Apply the request in the EHR."
[[systems]]
name = "billing"
connector = "manual"
categories = ["identifiers"]
)toml";

struct NodeRun {
  int exit_code = -1;
  bool timed_out = false;
  std::string output;
};

// Runs node on the script with the extra environment, in a process group of its own, for at most `seconds`; on
// timeout the group (node; playwright's browser has a group of its own that the script's watchdog kills) is ended.
NodeRun RunNode(const std::string& script, const std::vector<std::pair<std::string, std::string>>& env_vars,
                const std::filesystem::path& out_file, int seconds) {
  NodeRun run;
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    for (const auto& [k, v] : env_vars) ::setenv(k.c_str(), v.c_str(), 1);
    FILE* out = std::freopen(out_file.c_str(), "w", stdout);
    if (out == nullptr) ::_exit(126);
    ::dup2(::fileno(stdout), 2);
    ::execl(RIGHTSD_NODE, RIGHTSD_NODE, script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      run.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!run.timed_out && WIFEXITED(status)) run.exit_code = WEXITSTATUS(status);
  std::ifstream in(out_file);
  std::stringstream ss;
  ss << in.rdbuf();
  run.output = ss.str();
  return run;
}

std::string CreateRequest(Daemon& d, const std::string& token, const std::string& type, const std::string& email) {
  const auto res = d.Call("POST", "/v1/requests", token,
                          fmt::format(R"({{"type":"{}","subject":{{"identities":[{{"kind":"email","value":"{}"}}]}}}})",
                                      type, email));
  INFO(res.body);
  REQUIRE(res.status == 201);
  return res.json()["id"];
}

}  // namespace

TEST_CASE("api: dashboard is served without a token, with its content types, a strict CSP, nosniff and cache headers",
          "[api][dashboard]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  struct File {
    std::string path;
    std::string type;
    std::string needle;
  };
  for (const File& f : {File{"/dashboard", "text/html; charset=utf-8", "<main"},
                        File{"/dashboard/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
                        File{"/dashboard/style.css", "text/css; charset=utf-8", "prefers-reduced-motion"},
                        File{"/dashboard/icon.svg", "image/svg+xml", "<svg"}}) {
    INFO(f.path);
    const auto res = d.Call("GET", f.path, "");
    REQUIRE(res.status == 200);
    CHECK(res.content_type == f.type);
    CHECK(res.body.find(f.needle) != std::string::npos);
    const std::string csp = res.headers.find("Content-Security-Policy")->second;
    CHECK(csp.find("default-src 'none'") != std::string::npos);
    CHECK(csp.find("script-src 'self';") != std::string::npos);
    CHECK(csp.find("style-src 'self';") != std::string::npos);
    CHECK(csp.find("unsafe") == std::string::npos);
    CHECK(csp.find("frame-ancestors 'none'") != std::string::npos);
    CHECK(res.headers.find("X-Content-Type-Options")->second == "nosniff");
    CHECK(res.headers.find("Cache-Control")->second == "no-cache");
    const std::string etag = res.headers.find("ETag")->second;
    CHECK(etag.size() == 34);
    // Revalidation: the same ETag answers 304 with no body.
    const auto again = d.Call("GET", f.path, "", "", {{"If-None-Match", etag}});
    CHECK(again.status == 304);
    CHECK(again.body.empty());
  }
  // The page loads no script or style inline, so the CSP holds.
  const std::string html = d.Call("GET", "/dashboard", "").body;
  CHECK(html.find("<script>") == std::string::npos);
  CHECK(html.find("<style") == std::string::npos);
  CHECK(html.find("style=") == std::string::npos);
  CHECK(d.Call("GET", "/dashboard/other.js", "").status == 404);
  CHECK(d.Call("POST", "/dashboard", "", "").status == 405);
  CHECK(d.Call("GET", "/dashboard?token=x", "").status == 422);
}

TEST_CASE("api: dashboard in headless Chromium shows the planted SLA counts, drills down, and passes axe WCAG 2.2 AA",
          "[api][dashboard][browser]") {
  const std::string chromium = "/usr/bin/chromium";
  const std::filesystem::path script = std::filesystem::path(RIGHTSD_SOURCE_DIR) / "tests/dashboard/dashboard.test.mjs";
  const std::filesystem::path modules = std::filesystem::path(RIGHTSD_SOURCE_DIR) / "tests/dashboard/node_modules";
  if (!std::filesystem::exists(chromium) || !std::filesystem::exists(modules / "playwright-core") ||
      !std::filesystem::exists(modules / "axe-core")) {
    FAIL("needs /usr/bin/chromium and tests/dashboard/node_modules: run scripts/lib.sh rightsd::install_deps");
  }
  DaemonEnv env(true, kManualSystems);
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string sub = env.token("submitter");
  const std::string admin = env.token("admin");
  const std::string viewer = env.token("viewer");
  CreateRequest(d, sub, "access", "ontrack1@example.com");
  CreateRequest(d, sub, "access", "ontrack2@example.com");
  CreateRequest(d, sub, "delete", "ontrack3@example.com");
  // Opt-outs fan out at once: their manual tasks wait for a person, so they stay open with tasks.
  const std::string at_risk = CreateRequest(d, sub, "opt_out", "atrisk@example.com");
  const std::string breached = CreateRequest(d, sub, "opt_out", "breached@example.com");
  for (const auto& id : {at_risk, breached}) {
    REQUIRE(Eventually([&] {
      const json r = d.Call("GET", "/v1/requests/" + id, viewer).json();
      int waiting = 0;
      for (const auto& t : r["tasks"]) waiting += t["state"] == "needs_manual";
      return waiting == 2;
    }, 20));
  }
  const std::string today = d.Call("GET", "/v1/sla/summary", viewer).json()["today"];
  {
    auto conn = env.db().Connect();
    pqxx::work txn(*conn);
    txn.exec_params("UPDATE requests SET respond_by = $1::date + 3, sla_state = 'at_risk' "
                    "WHERE id = $2::uuid", today, at_risk);
    txn.exec_params("UPDATE requests SET respond_by = $1::date - 2, sla_state = 'breached' "
                    "WHERE id = $2::uuid", today, breached);
    txn.commit();
  }
  // The API agrees before the browser looks (the summary is cached for a second).
  json summary;
  REQUIRE(Eventually([&] {
    summary = d.Call("GET", "/v1/sla/summary", viewer).json();
    return summary["by_sla_state"]["at_risk"] == 1 && summary["by_sla_state"]["breached"] == 1;
  }, 10));
  INFO(summary.dump());
  CHECK(summary["open"] == 5);
  CHECK(summary["by_sla_state"]["on_track"] == 3);
  CHECK(summary["open_by_type_sla"]["opt_out"] == json({{"on_track", 0}, {"at_risk", 1}, {"breached", 1}}));
  CHECK(summary["open_by_type_sla"]["access"]["on_track"] == 2);
  CHECK(summary["open_by_system"]["ehr"] ==
        json({{"on_track", 0}, {"at_risk", 1}, {"breached", 1}, {"unfinished_tasks", 2}}));
  // identity_values=omit: even an admin gets none.
  const json full = d.Call("GET", "/v1/requests/" + breached + "?identity_values=omit", admin).json();
  CHECK(full["identities"] == json::array({{{"kind", "email"}}}));
  CHECK(d.Call("GET", "/v1/requests/" + breached, admin).json()["identities"][0]["value"] == "breached@example.com");
  CHECK(d.Call("GET", "/v1/requests/" + breached + "?identity_values=show", admin).status == 422);

  const json expect = {{"open", 5},
                       {"on_track", 3},
                       {"at_risk", 1},
                       {"breached", 1},
                       {"drill", breached},
                       {"systems", {"billing", "ehr"}},
                       {"identity_values", {"atrisk@example.com", "breached@example.com", "ontrack1@example.com"}}};
  const auto screenshot = std::filesystem::current_path() / "dashboard.png";
  const NodeRun run = RunNode(script.string(),
                              {{"RIGHTSD_URL", fmt::format("http://127.0.0.1:{}", d.port())},
                               {"RIGHTSD_TOKEN", viewer},
                               {"RIGHTSD_EXPECT", expect.dump()},
                               {"RIGHTSD_SCREENSHOT", screenshot.string()},
                               {"RIGHTSD_CHROMIUM", chromium}},
                              env.dir() / "node.out", 60);
  INFO(run.output);
  CHECK_FALSE(run.timed_out);
  CHECK(run.exit_code == 0);
  CHECK(run.output.find(R"("check":"axe: no WCAG 2.2 AA violations","ok":true)") != std::string::npos);
  CHECK(std::filesystem::exists(screenshot));
  // The daemon logged no failed dashboard call.
  CHECK(d.Log().find("internal error") == std::string::npos);
}
