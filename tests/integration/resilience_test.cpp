// Issue 9, "nothing lost": the daemon under a database restart, under intake load at twice its capacity, and with
// a downstream system that answers 503 and then times out for a while. Each test prints what it measured (run
// ctest with -V to see the figures). RIGHTSD_SOAK=1 makes the downstream outage 60 s instead of 10 s.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "audit.h"
#include "harness.h"
#include "migrate.h"
#include "peers/opendsr/opendsr_peer.h"

using namespace rightsd::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The p-th percentile (0..1) by the nearest-rank method; 0 for no values.
double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

bool Soak() {
  const char* v = std::getenv("RIGHTSD_SOAK");
  return v && std::string(v) == "1";
}

// CPU seconds (user + system) the process has used so far.
double CpuSeconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::vector<std::string> fields((std::istream_iterator<std::string>(rest)), std::istream_iterator<std::string>());
  // After "(comm) ": state is field 3 of stat(5), utime 14 and stime 15 -> indexes 11 and 12 here.
  REQUIRE(fields.size() > 12);
  return static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12])) /
         static_cast<double>(::sysconf(_SC_CLK_TCK));
}

long RssKib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) return std::stol(line.substr(6));
  }
  return -1;
}

std::string RequestBody(const std::string& tag) {
  return R"({"type":"access","subject":{"identities":[{"kind":"email","value":")" + tag + R"(@example.com"}]}})";
}

// A PostgreSQL cluster of the test's own (socket only, in `dir`), for a test that restarts it: the ctest
// fixture's cluster is shared by every test running at the same time. Stopped and removed at the end.
class PrivateCluster {
 public:
  PrivateCluster(std::filesystem::path dir, std::filesystem::path log, int port)
      : dir_(std::move(dir)), log_(std::move(log)), port_(port) {
    started_ = Run("start") == 0;
  }
  ~PrivateCluster() {
    if (started_) Run("stop");
  }
  bool started() const { return started_; }
  std::string url() const {
    return fmt::format("host={}/socket port={} user=postgres dbname=postgres", dir_.string(), port_);
  }
  // tests/pg-cluster.sh ACTION DIR PORT [EXTRA]; its chatter goes to the log file. Returns the exit status.
  int Run(const std::string& action, const std::string& extra = "") const {
    const std::string command = fmt::format("'{}/tests/pg-cluster.sh' {} '{}' {} {} >>'{}' 2>&1", SourceDir(), action,
                                            dir_.string(), port_, extra, log_.string());
    return std::system(command.c_str());
  }

 private:
  std::filesystem::path dir_, log_;
  int port_;
  bool started_ = false;
};

struct Sample {
  Clock::time_point start, end;
  int status = 0;  // 0: no answer
  std::string retry_after;
  std::string content_type;
  std::string problem_type;  // of an error answer
  std::string id;            // of a created (or replayed) request
  std::string connection;
  double ms() const { return Ms(end - start); }
};

Sample Send(httplib::Client& client, const std::string& token, const std::string& body,
            const std::string& idempotency_key = "") {
  httplib::Headers headers{{"Authorization", "Bearer " + token}};
  if (!idempotency_key.empty()) headers.emplace("Idempotency-Key", idempotency_key);
  Sample s;
  s.start = Clock::now();
  auto r = client.Post("/v1/requests", headers, body, "application/json");
  s.end = Clock::now();
  if (!r) return s;
  s.status = r->status;
  s.retry_after = r->get_header_value("Retry-After");
  s.content_type = r->get_header_value("Content-Type");
  s.connection = r->get_header_value("Connection");
  if (s.status >= 400) {
    const json problem = json::parse(r->body, nullptr, false);
    if (problem.is_object() && problem.contains("type")) s.problem_type = problem["type"];
  } else {
    const json created = json::parse(r->body, nullptr, false);
    if (created.is_object() && created.contains("id")) s.id = created["id"];
  }
  return s;
}

json TaskOf(const json& request, const std::string& system) {
  for (const auto& t : request["tasks"]) {
    if (t["system"] == system) return t;
  }
  return json();
}

std::string SubmitVerified(Daemon& d, const DaemonEnv& env, const std::string& type, const std::string& email) {
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              R"({"type":")" + type + R"(","subject":{"identities":[{"kind":"email","value":")" +
                                  email + R"("}]}})");
  REQUIRE(created.status == 201);
  const std::string id = created.json()["id"];
  REQUIRE(d.Call("POST", "/v1/requests/" + id + "/verify", env.token("submitter"),
                 R"({"method":"account_login","level":"reasonably_high"})")
              .status == 200);
  return id;
}

// The harness writes [http] itself; a test that needs other http settings edits that table in place.
void SetHttp(const DaemonEnv& env, const std::string& lines) {
  std::ifstream in(env.config());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string from = "threads = 16\n";
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  text.replace(at, from.size(), lines);
  std::ofstream(env.config(), std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("crash: the database restarts under intake load: 503 + Retry-After while it is down, reconnect within "
          "5 s, nothing acknowledged is lost",
          "[crash][resilience][integration][latency]") {
  DaemonEnv env(false);
  PrivateCluster pg(env.dir() / "pg", env.dir() / "cluster.log", 54341);
  REQUIRE(pg.started());
  {
    pqxx::connection conn(pg.url());
    rightsd::ApplyMigrations(conn);
  }
  // acquire_timeout_ms is the longest any call may wait for the pool: the bound on a 503 while the database is down.
  env.WriteConfig(pg.url(), "[[systems]]\nname = \"crm\"\nconnector = \"noop\"\n");
  env.LiftTokenRateLimit();
  Daemon d(env);
  REQUIRE(d.WaitReady());

  // Intake load: each worker submits requests with an Idempotency-Key and, as a client should, retries a 503 or a
  // lost answer with the same key until it gets 201 (or 200, a replay). Bounded in time and in count.
  constexpr int kWorkers = 4;
  constexpr int kMaxPerWorker = 3000;
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<Sample> samples;
  std::set<std::string> acknowledged;
  const auto hard_deadline = Clock::now() + std::chrono::seconds(40);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      httplib::Client client("127.0.0.1", d.port());
      client.set_connection_timeout(5, 0);
      client.set_read_timeout(10, 0);
      int serial = 0;
      std::string key = fmt::format("restart-{}-{}", w, serial);
      for (int i = 0; i < kMaxPerWorker && !stop && Clock::now() < hard_deadline; ++i) {
        const Sample s = Send(client, env.token("submitter"), RequestBody(key), key);
        const bool ok = s.status == 201 || s.status == 200;
        {
          std::lock_guard lock(mu);
          samples.push_back(s);
          if (ok) acknowledged.insert(s.id);
        }
        if (ok) key = fmt::format("restart-{}-{}", w, ++serial);
        std::this_thread::sleep_for(std::chrono::milliseconds(ok ? 10 : 50));
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const double cpu_before = CpuSeconds(d.pid());
  const auto down_at = Clock::now();
  // Fast shutdown, 2 s with no server at all, start: the window in which intake must answer 503.
  const int restarted = pg.Run("restart", "2");
  const auto up_at = Clock::now();
  const double cpu_down = CpuSeconds(d.pid()) - cpu_before;
  std::this_thread::sleep_for(std::chrono::seconds(6));
  stop = true;
  for (auto& t : workers) t.join();
  REQUIRE(restarted == 0);

  std::vector<double> down_503_ms;
  int other_statuses = 0, no_answer = 0, bad_503 = 0, before = 0;
  std::optional<Clock::time_point> first_ok_after_up;
  for (const auto& s : samples) {
    if (s.status == 0) ++no_answer;
    if (s.status != 0 && s.status != 200 && s.status != 201 && s.status != 503) ++other_statuses;
    if (s.status == 503) {
      if (s.retry_after != "1" || s.content_type != "application/problem+json" ||
          s.problem_type != "urn:rightsd:problem:unavailable") {
        ++bad_503;
      }
      if (s.start >= down_at && s.start < up_at) down_503_ms.push_back(s.ms());
    }
    if ((s.status == 201 || s.status == 200) && s.start >= up_at &&
        (!first_ok_after_up || s.end < *first_ok_after_up)) {
      first_ok_after_up = s.end;
    }
    if (s.end < down_at && (s.status == 201 || s.status == 200)) ++before;
  }
  const double reconnect_ms = first_ok_after_up ? Ms(*first_ok_after_up - up_at) : -1;
  const double down_s = std::chrono::duration<double>(up_at - down_at).count();
  fmt::print("database restart: {} calls, {} acknowledged ({} before the restart); database down {:.2f} s\n",
             samples.size(), acknowledged.size(), before, down_s);
  fmt::print("  while down: {} x 503, latency p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms; daemon CPU {:.2f} s\n",
             down_503_ms.size(), Percentile(down_503_ms, 0.5), Percentile(down_503_ms, 0.99),
             Percentile(down_503_ms, 1.0), cpu_down);
  fmt::print("  first acknowledged intake {:.0f} ms after the database was back\n", reconnect_ms);
  INFO(d.Log());
  CHECK(before > 0);
  CHECK(other_statuses == 0);  // no 500, ever
  CHECK(no_answer == 0);
  CHECK(bad_503 == 0);
  REQUIRE_FALSE(down_503_ms.empty());
  // At once: never longer than the pool's acquire timeout (2 s), with slack for a loaded machine.
  CHECK(Percentile(down_503_ms, 1.0) < 2500);
  CHECK(Percentile(down_503_ms, 0.99) < 1000);
  REQUIRE(first_ok_after_up);
  CHECK(reconnect_ms <= 5000);
  // The sweeper and the dispatcher neither exited nor spun while the database was away.
  CHECK(cpu_down < 0.5 * down_s);
  CHECK(d.Running());
  CHECK(d.Log().find("database: connected again") != std::string::npos);
  // Every 503 is counted, not logged: the warnings about them come at most once a second, each with what it held back.
  {
    const std::string log = d.Log();
    long long lines = 0, held_back = 0;
    for (std::size_t at = 0; (at = log.find("<4>http POST /v1/requests", at)) != std::string::npos; ++at) {
      ++lines;
      const auto eol = log.find('\n', at);
      const auto line = log.substr(at, eol - at);
      if (const auto h = line.find(" ("); h != std::string::npos && line.find(" like it held back)") != std::string::npos) {
        held_back += std::stoll(line.substr(h + 2));
      }
    }
    fmt::print("  503 warnings logged: {} lines for {} answers ({} held back)\n", lines, down_503_ms.size(), held_back);
    CHECK(lines <= static_cast<long long>(down_s + 3));
    if (down_503_ms.size() > 10) CHECK(held_back > 0);
  }

  // Nothing acknowledged is lost.
  std::set<std::string> stored;
  {
    pqxx::connection conn(pg.url());
    pqxx::nontransaction txn(conn);
    for (const auto& row : txn.exec("SELECT id::text FROM requests")) stored.insert(row[0].as<std::string>());
  }
  std::vector<std::string> lost;
  std::set_difference(acknowledged.begin(), acknowledged.end(), stored.begin(), stored.end(),
                      std::back_inserter(lost));
  CHECK(lost.empty());
  // One key, one request: a retried key never made a second one. A worker stopped mid-retry may leave one
  // unacknowledged request behind.
  CHECK(stored.size() >= acknowledged.size());
  CHECK(stored.size() <= acknowledged.size() + kWorkers);

  // Every event written around the restart is in the audit chain, and the dispatcher runs tasks again.
  {
    pqxx::connection conn(pg.url());
    const auto audit = rightsd::VerifyAuditChain(conn);
    INFO(audit.problem);
    CHECK(audit.ok);
  }
  const std::string id = SubmitVerified(d, env, "delete", "after-restart@example.com");
  CHECK(Eventually([&] { return d.Call("GET", "/v1/requests/" + id, env.token("viewer")).json()["status"] == "completed"; },
                   15));
  CHECK(d.Stop() == 0);
}

TEST_CASE("crash: intake at twice its capacity gets a bounded queue and quick 503 + Retry-After, and recovers when "
          "the load stops",
          "[crash][resilience][integration][latency]") {
  DaemonEnv env(true);
  // A small server, so that twice its capacity is a load this test can generate on a shared 2-core machine.
  constexpr int kThreads = 4;
  constexpr int kMaxQueued = 4;
  SetHttp(env, fmt::format("threads = {}\nmax_queued = {}\n", kThreads, kMaxQueued));
  env.LiftTokenRateLimit();
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string token = env.token("submitter");

  // Capacity: as many closed-loop clients as the server has threads, for 2 s.
  std::atomic<int> capacity_ok{0};
  std::vector<double> base_ms;
  std::mutex mu;
  {
    const auto until = Clock::now() + std::chrono::seconds(2);
    std::vector<std::thread> ts;
    for (int w = 0; w < kThreads; ++w) {
      ts.emplace_back([&, w] {
        httplib::Client client("127.0.0.1", d.port());
        client.set_read_timeout(10, 0);
        for (int i = 0; i < 20000 && Clock::now() < until; ++i) {
          const Sample s = Send(client, token, RequestBody(fmt::format("cap-{}-{}", w, i)));
          if (s.status == 201) ++capacity_ok;
          std::lock_guard lock(mu);
          base_ms.push_back(s.ms());
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  const double capacity = capacity_ok / 2.0;
  REQUIRE(capacity > 0);

  // Twice that, open loop: 48 clients, each sending on its own schedule (late ones send at once), for 3 s.
  constexpr int kClients = 48;
  constexpr double kSeconds = 3;
  const double rate = 2 * capacity;
  const long rss_before = RssKib(d.pid());
  std::vector<Sample> samples;
  {
    const auto t0 = Clock::now();
    const auto until = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kSeconds));
    const int per_client = static_cast<int>(rate * kSeconds / kClients) + 1;
    std::vector<std::thread> ts;
    for (int c = 0; c < kClients; ++c) {
      ts.emplace_back([&, c] {
        httplib::Client client("127.0.0.1", d.port());
        client.set_connection_timeout(5, 0);
        client.set_read_timeout(10, 0);
        for (int k = 0; k < per_client; ++k) {
          const auto at = t0 + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>((k * kClients + c) / rate));
          if (at >= until) break;
          std::this_thread::sleep_until(at);
          const Sample s = Send(client, token, RequestBody(fmt::format("load-{}-{}", c, k)));
          std::lock_guard lock(mu);
          samples.push_back(s);
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  const auto load_end = Clock::now();
  const long rss_after = RssKib(d.pid());

  // Recovery: the first plain 201 after the load, then a short run that must see no 503 at all.
  std::optional<double> recovered_ms;
  {
    httplib::Client client("127.0.0.1", d.port());
    client.set_read_timeout(10, 0);
    for (int i = 0; i < 200 && Clock::now() - load_end < std::chrono::seconds(10); ++i) {
      const Sample s = Send(client, token, RequestBody(fmt::format("after-{}", i)));
      if (s.status == 201) {
        recovered_ms = Ms(s.end - load_end);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  std::vector<double> after_ms;
  int after_not_201 = 0;
  {
    httplib::Client client("127.0.0.1", d.port());
    client.set_read_timeout(10, 0);
    for (int i = 0; i < 50; ++i) {
      const Sample s = Send(client, token, RequestBody(fmt::format("calm-{}", i)));
      if (s.status != 201) ++after_not_201;
      after_ms.push_back(s.ms());
    }
  }

  std::vector<double> ok_ms, overloaded_ms;
  int unavailable = 0, others = 0, no_answer = 0, bad_503 = 0;
  std::set<std::string> created;
  for (const auto& s : samples) {
    if (s.status == 201) {
      ok_ms.push_back(s.ms());
      created.insert(s.id);
    } else if (s.status == 503 && s.problem_type == "urn:rightsd:problem:overloaded") {
      overloaded_ms.push_back(s.ms());
      if (s.retry_after != "1" || s.content_type != "application/problem+json" || s.connection != "close") ++bad_503;
    } else if (s.status == 503 && s.problem_type == "urn:rightsd:problem:unavailable") {
      ++unavailable;
    } else if (s.status == 0) {
      ++no_answer;
    } else {
      ++others;
    }
  }
  fmt::print("overload: capacity {:.0f} req/s (p50 {:.1f} ms, p99 {:.1f} ms with {} clients); offered {:.0f} req/s "
             "for {:.0f} s, sent {} ({:.0f} req/s)\n",
             capacity, Percentile(base_ms, 0.5), Percentile(base_ms, 0.99), kThreads, rate, kSeconds, samples.size(),
             static_cast<double>(samples.size()) / kSeconds);
  fmt::print("  201: {} (p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms); 503 overloaded: {} (p50 {:.1f} ms, p99 {:.1f} "
             "ms, max {:.1f} ms); 503 unavailable: {}; no answer: {}; other: {}\n",
             ok_ms.size(), Percentile(ok_ms, 0.5), Percentile(ok_ms, 0.99), Percentile(ok_ms, 1.0),
             overloaded_ms.size(), Percentile(overloaded_ms, 0.5), Percentile(overloaded_ms, 0.99),
             Percentile(overloaded_ms, 1.0), unavailable, no_answer, others);
  fmt::print("  RSS {} KiB before, {} KiB after; first 201 {:.0f} ms after the load stopped; then 50 calls p99 {:.1f} "
             "ms\n",
             rss_before, rss_after, recovered_ms.value_or(-1), Percentile(after_ms, 0.99));
  INFO(d.Log().substr(0, 4000));
  CHECK(no_answer == 0);
  CHECK(others == 0);
  CHECK(bad_503 == 0);
  // The bound engaged, its answers were quick, and what was admitted waited behind a bounded queue.
  REQUIRE_FALSE(overloaded_ms.empty());
  CHECK(Percentile(overloaded_ms, 0.99) < 500);
  REQUIRE_FALSE(ok_ms.empty());
  CHECK(Percentile(ok_ms, 0.99) < 10 * Percentile(base_ms, 0.99) + 500);
  // ASan holds freed memory in its quarantine (256 MiB by default) before reusing it, so there the memory of every
  // request served shows up as growth until the quarantine is full.
  CHECK(rss_after - rss_before < (kSanitized ? 256 + 64 : 64) * 1024);
  // Recovered alone.
  REQUIRE(recovered_ms);
  CHECK(*recovered_ms < 2000);
  CHECK(after_not_201 == 0);
  CHECK(d.Log().find("http: at capacity") != std::string::npos);
  // Every 201 is stored.
  const long stored = std::stol(env.db().Scalar(
      "SELECT count(*) FROM requests WHERE id::text IN ('" +
      [&] {
        std::string joined;
        for (const auto& id : created) joined += (joined.empty() ? "" : "','") + id;
        return joined;
      }() +
      "')"));
  CHECK(stored == static_cast<long>(created.size()));
  CHECK(d.Stop() == 0);
}

TEST_CASE("crash: a downstream system answers 503 and then times out for a while: retries back off, the status "
          "endpoint stays fast, the tasks finish when it is back",
          "[crash][resilience][integration][webhook][latency]") {
  const auto outage = std::chrono::seconds(Soak() ? 60 : 10);
  OpenDsrPeerOptions options;
  options.complete_after_polls = 1;
  OpenDsrPeer peer(options);
  peer.Start();
  DaemonEnv env(true);
  peer.WriteCertificatePem(env.dir() / "processor.pem");
  // Attempts enough for the longest outage here; a connector call gives up after 1 s.
  env.WriteConfig(env.db().url(), fmt::format(R"toml(
[engine]
lease_ms = 5000
backoff_base_ms = 200
backoff_max_ms = 4000
[[systems]]
name = "telehealth"
connector = "webhook"
categories = ["identifiers"]
request_types = ["access", "delete"]
max_attempts = 60
[systems.settings]
base_url = "{}"
processor_certificate_file = "processor.pem"
poll_interval_seconds = 1
timeout_ms = 1000
[[systems]]
name = "crm"
connector = "noop"
)toml",
                                              peer.base_url()));
  env.LiftTokenRateLimit();
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const std::string viewer = env.token("viewer");

  // Unloaded: one request through end to end, then its status read 200 times.
  const std::string probe = SubmitVerified(d, env, "delete", "probe@example.com");
  REQUIRE(Eventually([&] { return d.Call("GET", "/v1/requests/" + probe, viewer).json()["status"] == "completed"; },
                     20));
  auto sample_status = [&](int count, std::chrono::milliseconds gap) {
    std::vector<double> ms;
    for (int i = 0; i < count; ++i) {
      const auto start = Clock::now();
      const auto r = d.Call("GET", "/v1/requests/" + probe, viewer);
      ms.push_back(Ms(Clock::now() - start));
      REQUIRE(r.status == 200);
      std::this_thread::sleep_for(gap);
    }
    return ms;
  };
  const std::vector<double> unloaded = sample_status(200, std::chrono::milliseconds(5));

  // The outage: first half 503 with Retry-After: 1, second half no answer within the connector's timeout.
  peer.recorder().ClearCalls();
  peer.FailNext(1000000, 503, 1);
  const auto outage_start = Clock::now();
  constexpr int kRequests = 10;
  std::vector<std::string> ids;
  for (int i = 0; i < kRequests; ++i) ids.push_back(SubmitVerified(d, env, "delete", fmt::format("outage-{}@example.com", i)));
  // Nothing is stuck behind the failing system: the other system's tasks finish during the outage.
  const bool others_done = Eventually([&] {
    for (const auto& id : ids) {
      if (TaskOf(d.Call("GET", "/v1/requests/" + id, viewer).json(), "crm")["state"] != "done") return false;
    }
    return true;
  }, 5);
  std::vector<double> during;
  const auto half = outage_start + outage / 2;
  const auto end = outage_start + outage;
  while (Clock::now() < half) {
    const auto part = sample_status(10, std::chrono::milliseconds(20));
    during.insert(during.end(), part.begin(), part.end());
  }
  peer.FailNext(0);
  peer.SetDelay(std::chrono::milliseconds(1500));
  while (Clock::now() < end) {
    const auto part = sample_status(10, std::chrono::milliseconds(20));
    during.insert(during.end(), part.begin(), part.end());
  }
  std::map<std::string, int> open_during;
  for (const auto& id : ids) {
    const json r = d.Call("GET", "/v1/requests/" + id, viewer).json();
    open_during[std::string(TaskOf(r, "telehealth")["state"])]++;
  }
  const auto calls = peer.recorder().Calls();
  peer.SetDelay(std::chrono::milliseconds(0));
  const auto back_at = Clock::now();

  // Every task finishes once the system answers again.
  double finished_s = -1;
  const bool all_done = Eventually([&] {
    for (const auto& id : ids) {
      if (d.Call("GET", "/v1/requests/" + id, viewer).json()["status"] != "completed") return false;
    }
    finished_s = std::chrono::duration<double>(Clock::now() - back_at).count();
    return true;
  }, 60);

  // Attempts per task at the processor while it was down (POST /v2/requests carries the task id).
  std::map<std::string, std::vector<Clock::time_point>> attempts;
  for (const auto& c : calls) {
    if (c.method != "POST" || c.path != "/v2/requests") continue;
    const json body = json::parse(c.body, nullptr, false);
    if (body.is_object() && body.contains("subject_request_id")) attempts[body["subject_request_id"]].push_back(c.at);
  }
  int max_attempts = 0;
  double first_gap_ms = 0, last_gap_ms = 0;
  for (const auto& [task, at] : attempts) {
    max_attempts = std::max(max_attempts, static_cast<int>(at.size()));
    if (at.size() >= 3 && first_gap_ms == 0) {
      first_gap_ms = Ms(at[1] - at[0]);
      last_gap_ms = Ms(at.back() - at[at.size() - 2]);
    }
  }
  const double outage_s = std::chrono::duration<double>(outage).count();
  const double p99_unloaded = Percentile(unloaded, 0.99), p99_during = Percentile(during, 0.99);
  fmt::print("downstream outage {:.0f} s ({} requests): GET /v1/requests/{{id}} p50/p99 unloaded {:.1f}/{:.1f} ms "
             "({} calls), during the outage {:.1f}/{:.1f} ms ({} calls)\n",
             outage_s, kRequests, Percentile(unloaded, 0.5), p99_unloaded, unloaded.size(),
             Percentile(during, 0.5), p99_during, during.size());
  fmt::print("  processor calls during the outage: {} ({} tasks seen, at most {} submissions per task, first gap "
             "{:.0f} ms, last gap {:.0f} ms); all completed {:.1f} s after it was back\n",
             calls.size(), attempts.size(), max_attempts, first_gap_ms, last_gap_ms, finished_s);
  INFO(d.Log().substr(0, 4000));
  CHECK(others_done);
  // A status read costs a handful of queries whatever the connectors are doing. (The slack is for the noise of a
  // shared machine, larger where everything runs several times slower.)
  CHECK(p99_during <= 2 * p99_unloaded + (kSanitized ? 100 : 25));
  // Backed off: one try a second (the Retry-After) would be outage_s tries; the backoff makes it fewer, and the
  // gaps grow.
  CHECK(attempts.size() == static_cast<std::size_t>(kRequests));
  CHECK(max_attempts < outage_s);
  CHECK(last_gap_ms > first_gap_ms);
  // Still being retried at the end of the outage, not dead-lettered.
  CHECK(open_during["failed"] == 0);
  CHECK(all_done);
  CHECK(d.Stop() == 0);
}

TEST_CASE("crash: an outcome that arrives while the database is away for 13 s is recorded when it is back, and the "
          "task does not run again",
          "[crash][resilience][integration]") {
  DaemonEnv env(false);
  PrivateCluster pg(env.dir() / "pg", env.dir() / "cluster.log", 54342);
  REQUIRE(pg.started());
  {
    pqxx::connection conn(pg.url());
    rightsd::ApplyMigrations(conn);
  }
  // The call answers 1.5 s after it was made, by then the database is down; the lease outlives the outage, so a
  // task run twice could only come from an outcome that was dropped. (It was dropped, before: the committer gave
  // up after 50 tries 200 ms apart, and the task stayed leased until the lease ran out, then ran again.)
  env.WriteConfig(pg.url(), R"toml(
[engine]
lease_ms = 120000
[[systems]]
name = "crm"
connector = "noop"
categories = ["identifiers"]
[systems.settings]
delay_ms = 1500
)toml");
  Daemon d(env);
  REQUIRE(d.WaitReady());
  const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                              R"({"type":"opt_out","subject":{"identities":[{"kind":"device_id","value":"outage-1"}]}})");
  REQUIRE(created.status == 201);
  const auto task_state = [&] {
    pqxx::connection conn(pg.url());
    pqxx::nontransaction txn(conn);
    const auto r = txn.exec("SELECT state, attempts FROM tasks");
    return r.size() == 1 ? fmt::format("{} {}", r[0][0].c_str(), r[0][1].c_str()) : std::string("none");
  };
  std::string running;
  const bool claimed = Eventually([&] { return (running = task_state()).starts_with("running "); }, 10);
  INFO("task: " << running);
  REQUIRE(claimed);
  const std::string attempts_then = running.substr(8);
  const auto down_at = Clock::now();
  REQUIRE(pg.Run("restart", "13") == 0);
  fmt::print("outage outcome: database down {:.1f} s\n", std::chrono::duration<double>(Clock::now() - down_at).count());
  std::string last;
  CHECK(Eventually([&] { return (last = task_state()).starts_with("done "); }, 20));
  CHECK(last == "done " + attempts_then);  // claimed once: the run whose outcome waited out the outage
  INFO("task: " << last);
  INFO(d.Log());
  pqxx::connection conn(pg.url());
  pqxx::nontransaction txn(conn);
  CHECK(txn.exec1("SELECT count(*) FROM audit_events WHERE action = 'task_done'")[0].as<int>() == 1);
  CHECK(txn.exec1("SELECT status FROM requests")[0].as<std::string>() == "completed");
  CHECK(d.Log().find("the database is away") != std::string::npos);
  CHECK(d.Log().find("dropped") == std::string::npos);
  CHECK(d.Stop() == 0);
}
