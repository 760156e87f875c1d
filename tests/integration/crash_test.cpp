// Fault tests of issue 9, "nothing lost": the real binary killed with SIGKILL at random moments, or stopped with
// SIGTERM, while a client keeps submitting and tasks fan out to the OpenDSR processor simulator and a noop system.
// What must hold afterwards: every request the client saw acknowledged exists, once; every task has exactly one
// recorded outcome; the processor created each task's subject request once (the task id is the OpenDSR
// subject_request_id, the protocol's idempotency key); the audit chain verifies.
//
// RIGHTSD_SOAK=1 runs the SIGKILL test at the issue's scale (1000 requests, 20 kills) instead of 200 and 5.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "harness.h"
#include "peers/opendsr/opendsr_peer.h"
#include "peers/recording_server.h"

using namespace rightsd::test;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Scale {
  int requests;
  int kills;
  double intake_seconds;  // the client spreads its submissions over this long
};

Scale CrashScale() {
  const char* soak = std::getenv("RIGHTSD_SOAK");
  if (soak && std::string(soak) == "1") return {1000, 20, 40.0};
  return {200, 5, 8.0};
}

std::string Systems(const OpenDsrPeer& peer, int lease_ms, int drain_ms) {
  return fmt::format(R"toml(
[engine]
lease_ms = {}
drain_timeout_ms = {}
backoff_base_ms = 200
backoff_max_ms = 2000
[[systems]]
name = "processor"
connector = "webhook"
categories = ["identifiers"]
request_types = ["access", "delete"]
rate_per_second = 10000
burst = 1000
max_concurrency = 64
[systems.settings]
base_url = "{}"
poll_interval_seconds = 1
timeout_ms = 10000
[[systems]]
name = "crm"
connector = "noop"
rate_per_second = 10000
burst = 1000
max_concurrency = 64
)toml",
                     lease_ms, drain_ms, peer.base_url());
}

std::string Email(int i) { return fmt::format("p{}@example.com", i); }

std::string Body(const std::string& type, int i, const std::string& callback_url = "") {
  const std::string callback = callback_url.empty() ? "" : R"("callback_url":")" + callback_url + R"(",)";
  return fmt::format(R"({{"type":"{}",{}"subject":{{"identities":[{{"kind":"email","value":"{}"}}]}}}})", type,
                     callback, Email(i));
}

struct Answer {
  bool answered = false;  // false: the connection failed (refused, reset, closed before an answer)
  int status = 0;
  std::string body;
};

Answer Send(httplib::Client& client, const std::string& method, const std::string& path, const std::string& token,
            const std::string& body = "", httplib::Headers headers = {}) {
  headers.emplace("Authorization", "Bearer " + token);
  auto result = method == "GET" ? client.Get(path.c_str(), headers)
                                : client.Post(path.c_str(), headers, body, "application/json");
  if (!result) return {};
  return {true, result->status, result->body};
}

Answer SendTo(int port, const std::string& method, const std::string& path, const std::string& token,
              const std::string& body = "", httplib::Headers headers = {}) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2, 0);
  client.set_read_timeout(10, 0);
  return Send(client, method, path, token, body, std::move(headers));
}

// Checks that every task has exactly one recorded outcome event (the terminal task_* events and task_needs_manual:
// docs/api.md "audit events"), and returns the number of tasks that do not.
std::string TasksWithoutExactlyOneOutcome(TestDatabase& db) {
  return db.Scalar(
      "SELECT count(*) FROM (SELECT t.id FROM tasks t LEFT JOIN audit_events a ON a.detail->>'task' = t.id::text "
      "AND a.action IN ('task_done', 'task_not_found', 'task_retained_exempt', 'task_failed', 'task_needs_manual') "
      "GROUP BY t.id HAVING count(a.id) <> 1) x");
}

struct SideEffects {
  int processor_tasks = 0;
  int created_once = 0;    // processor tasks whose subject request the peer created exactly once
  int created_twice = 0;   // ... more than once: a repeated side effect
  int never_created = 0;
  int unknown_ids = 0;     // subject requests created for no task
  int submissions = 0;     // POST /requests the peer was sent, resubmissions included
};

SideEffects ProcessorSideEffects(TestDatabase& db, const OpenDsrPeer& peer) {
  SideEffects out;
  auto conn = db.Connect();
  pqxx::nontransaction txn(*conn);
  std::set<std::string> task_ids;
  for (const auto& row : txn.exec("SELECT id::text FROM tasks WHERE system = 'processor'")) {
    task_ids.insert(row[0].as<std::string>());
  }
  out.processor_tasks = static_cast<int>(task_ids.size());
  const auto creations = peer.Creations();
  for (const auto& id : task_ids) {
    const auto it = creations.find(id);
    if (it == creations.end()) {
      ++out.never_created;
    } else if (it->second == 1) {
      ++out.created_once;
    } else {
      ++out.created_twice;
    }
  }
  for (const auto& [id, n] : creations) out.unknown_ids += task_ids.count(id) == 0;
  out.submissions = peer.SubmitCount();
  return out;
}

// The text between the first `before` and the next `after`; "" if there is none.
std::string Between(const std::string& text, const std::string& before, const std::string& after) {
  const auto start = text.find(before);
  if (start == std::string::npos) return "";
  const auto end = text.find(after, start + before.size());
  if (end == std::string::npos) return "";
  return text.substr(start + before.size(), end - start - before.size());
}

int CountLines(const std::string& log, const std::string& needle) {
  int n = 0;
  for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("crash: SIGKILL during fan-out loses no acknowledged request and repeats no side effect",
          "[crash][integration]") {
  const Scale scale = CrashScale();
  const auto test_start = Clock::now();
  OpenDsrPeerOptions options;
  options.complete_after_polls = 2;
  options.send_callbacks = false;  // the daemon's port changes with every restart: polls only
  OpenDsrPeer peer(options);
  for (int i = 0; i < scale.requests; ++i) {
    peer.SeedRecord("email", Email(i), "identifiers", {{"plan", "gold"}, {"n", i}});
  }
  peer.Start();
  // Every processor call takes 100 ms, so that a kill finds calls under way: submissions the processor received
  // whose outcome the daemon never recorded, which the next run must not turn into a second subject request.
  peer.SetDelay(100ms);
  // Status callbacks go through the outbox too: every status change must reach the receiver, at least once.
  RecordingServer receiver;
  receiver.server().Post("/hooks", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  receiver.Start();
  // Short leases: a killed process's tasks are taken over after 2 s instead of a minute; a delivery a killed
  // process left unanswered is sent again after 3 s (3 x timeout_ms) instead of 30.
  DaemonEnv env(true, Systems(peer, 2000, 2000) +
                          "[callbacks]\nsecret_file = \"callbacks.secret\"\ntimeout_ms = 1000\n");
  std::ofstream(env.dir() / "callbacks.secret") << "crash-test-callback-secret-0123456789abcdef\n";
  const std::string token = env.token("submitter");

  // The client keeps calling the port it knows while the daemon is down (refused connections), as a real client
  // would; it learns the new port when the restarted daemon listens.
  std::atomic<int> port{0};
  std::vector<std::unique_ptr<Daemon>> daemons;
  daemons.push_back(std::make_unique<Daemon>(env, "run0"));
  REQUIRE(daemons.back()->WaitReady());
  port = daemons.back()->port();

  // The client: each request under its own Idempotency-Key, retried until it is acknowledged (201, or 200 for a
  // replay of one whose answer was lost in a kill), then verified, also retried.
  std::vector<std::string> acknowledged(scale.requests);
  std::vector<std::string> client_problems;
  int connection_errors = 0, server_errors = 0, replays = 0, verify_conflicts = 0;
  const auto client_deadline = Clock::now() + std::chrono::duration<double>(scale.intake_seconds + 60);
  std::thread client([&] {
    const auto start = Clock::now();
    auto retry = [&](const std::function<Answer(int)>& call) -> Answer {
      while (Clock::now() < client_deadline) {
        Answer a = call(port.load());
        if (!a.answered) {
          ++connection_errors;
        } else if (a.status >= 500) {
          ++server_errors;
        } else {
          return a;
        }
        std::this_thread::sleep_for(20ms);
      }
      return {};
    };
    for (int i = 0; i < scale.requests; ++i) {
      const std::string key = fmt::format("crash-{}", i);
      const std::string body = Body(i % 2 ? "access" : "delete", i, receiver.base_url() + "/hooks");
      const Answer created = retry([&](int p) {
        return SendTo(p, "POST", "/v1/requests", token, body, {{"Idempotency-Key", key}});
      });
      if (!created.answered || (created.status != 201 && created.status != 200)) {
        client_problems.push_back(fmt::format("request {}: {} {}", i, created.status, created.body));
        continue;
      }
      replays += created.status == 200;
      const std::string id = json::parse(created.body)["id"];
      acknowledged[i] = id;
      const Answer verified = retry([&](int p) {
        return SendTo(p, "POST", "/v1/requests/" + id + "/verify", token,
                      R"({"method":"account_login","level":"reasonably_high"})");
      });
      if (verified.answered && verified.status == 409) {
        // The verify committed but its answer was lost in a kill: the request must have moved on.
        ++verify_conflicts;
        const Answer now = retry([&](int p) { return SendTo(p, "GET", "/v1/requests/" + id, token); });
        const std::string status = now.answered ? json::parse(now.body).value("status", "") : "";
        if (status != "in_progress" && status != "completed") {
          client_problems.push_back(fmt::format("request {}: verify 409 and status {}", i, status));
        }
      } else if (!verified.answered || verified.status != 200) {
        client_problems.push_back(fmt::format("request {}: verify {} {}", i, verified.status, verified.body));
      }
      std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                                scale.intake_seconds * (i + 1) / scale.requests)));
    }
  });

  // K kills at random moments over the intake and the fan-out that follows it, each restarted after 0-300 ms.
  const unsigned seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::vector<double> at;
  for (int k = 0; k < scale.kills; ++k) {
    at.push_back(std::uniform_real_distribution<double>(0.2, scale.intake_seconds + 3)(rng));
  }
  std::sort(at.begin(), at.end());
  const auto kill_start = Clock::now();
  int restarts_ok = 0;
  for (int k = 0; k < scale.kills; ++k) {
    std::this_thread::sleep_until(kill_start + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(at[k])));
    daemons.back()->Kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 300)(rng)));
    daemons.push_back(std::make_unique<Daemon>(env, fmt::format("run{}", k + 1)));
    if (!daemons.back()->WaitReady()) break;
    ++restarts_ok;
    port = daemons.back()->port();
  }
  client.join();
  REQUIRE(restarts_ok == scale.kills);
  INFO(fmt::format("client problems: {}", fmt::join(client_problems, "; ")));
  CHECK(client_problems.empty());

  // Let the last daemon finish the work; every request completes.
  const std::string total = std::to_string(scale.requests);
  const bool finished = Eventually([&] {
    return env.db().Scalar("SELECT count(*) FROM requests WHERE status = 'completed'") == total &&
           env.db().Scalar("SELECT count(*) FROM callbacks WHERE state <> 'delivered'") == "0";
  }, 60);
  INFO(env.db().Scalar("SELECT string_agg(state || ':' || n, ', ') FROM (SELECT state, count(*) n FROM tasks "
                       "GROUP BY state) x"));
  CHECK(finished);
  Daemon& last = *daemons.back();
  CHECK(last.Stop() == 0);

  // Acknowledged requests: all there, each once, each the request its key names.
  CHECK(env.db().Scalar("SELECT count(*) FROM requests") == total);
  CHECK(env.db().Scalar("SELECT count(*) FROM idempotency_keys") == total);
  {
    auto conn = env.db().Connect();
    pqxx::nontransaction txn(*conn);
    std::map<std::string, std::string> by_key;
    for (const auto& row : txn.exec("SELECT key, request_id::text FROM idempotency_keys")) {
      by_key[row[0].as<std::string>()] = row[1].as<std::string>();
    }
    int mismatched = 0;
    for (int i = 0; i < scale.requests; ++i) mismatched += by_key[fmt::format("crash-{}", i)] != acknowledged[i];
    CHECK(mismatched == 0);
  }
  // Tasks: two per request, all finished, exactly one outcome event each; one fan-out and one completion each.
  CHECK(env.db().Scalar("SELECT count(*) FROM tasks") == std::to_string(2 * scale.requests));
  CHECK(env.db().Scalar("SELECT count(*) FROM tasks WHERE state NOT IN ('done', 'not_found')") == "0");
  CHECK(TasksWithoutExactlyOneOutcome(env.db()) == "0");
  CHECK(env.db().Scalar("SELECT count(*) FROM (SELECT request_id FROM audit_events WHERE action = 'fanned_out' "
                        "GROUP BY 1 HAVING count(*) <> 1) x") == "0");
  CHECK(env.db().Scalar("SELECT count(*) FROM audit_events WHERE action = 'complete'") == total);
  CHECK(env.db().Scalar("SELECT count(*) FROM request_packages") == std::to_string(scale.requests / 2));
  // The processor: one subject request per task, whatever was resubmitted; erasures erased, access data kept.
  const SideEffects fx = ProcessorSideEffects(env.db(), peer);
  CHECK(fx.processor_tasks == scale.requests);
  CHECK(fx.created_once == scale.requests);
  CHECK(fx.created_twice == 0);
  CHECK(fx.never_created == 0);
  CHECK(fx.unknown_ids == 0);
  int held_after_delete = 0, held_after_access = 0;
  for (int i = 0; i < scale.requests; ++i) {
    (i % 2 ? held_after_access : held_after_delete) += static_cast<int>(peer.HeldRecords("email", Email(i)));
  }
  CHECK(held_after_delete == 0);
  CHECK(held_after_access == scale.requests / 2);
  // Callbacks: in_progress and completed for every request, each delivery id always the same status change.
  std::map<std::string, std::set<std::string>> reported;           // request id -> statuses
  std::map<std::string, std::pair<std::string, std::string>> deliveries;  // delivery id -> (request, status)
  int callback_calls = 0, inconsistent_deliveries = 0;
  const bool all_reported = Eventually([&] {
    reported.clear();
    deliveries.clear();
    const auto calls = receiver.CallsTo("POST", "/hooks");
    callback_calls = static_cast<int>(calls.size());
    inconsistent_deliveries = 0;
    for (const auto& c : calls) {
      const json body = json::parse(c.body, nullptr, false);
      const std::pair<std::string, std::string> change{body.value("request_id", ""), body.value("status", "")};
      reported[change.first].insert(change.second);
      const auto delivery = c.headers.find("Rightsd-Delivery");
      const std::string delivery_id = delivery == c.headers.end() ? "" : delivery->second;
      const auto [it, fresh] = deliveries.emplace(delivery_id, change);
      inconsistent_deliveries += !fresh && it->second != change;
    }
    return static_cast<int>(reported.size()) == scale.requests &&
           std::all_of(reported.begin(), reported.end(), [](const auto& r) {
             return r.second == std::set<std::string>{"in_progress", "completed"};
           });
  }, 30);
  CHECK(all_reported);
  CHECK(inconsistent_deliveries == 0);
  CHECK(static_cast<int>(deliveries.size()) == 2 * scale.requests);
  CHECK(env.db().Scalar("SELECT count(*) FROM callbacks WHERE state <> 'delivered'") == "0");
  // No daemon hit an internal error on the way.
  int dropped = 0;
  for (const auto& d : daemons) {
    const std::string log = d->Log();
    CHECK(log.find("connector threw") == std::string::npos);
    CHECK(log.find("internal error") == std::string::npos);
    dropped += CountLines(log, "outcome dropped");
  }
  const auto verify = env.Cli({"audit", "verify", "--config", env.config().string()});
  INFO(verify.out + verify.err);
  CHECK(verify.exit_code == 0);

  std::cout << fmt::format(
                   "crash: seed {}, {} requests, {} kills: {} client connection errors, {} 5xx, {} idempotent replays, {} verify "
                   "409s; processor: {} submissions for {} subject requests ({} resubmissions after kills); {} "
                   "outcomes dropped; {} callback deliveries for {} status changes; {:.1f} s\n",
                   seed, scale.requests, scale.kills, connection_errors, server_errors, replays, verify_conflicts,
                   fx.submissions, fx.processor_tasks, fx.submissions - fx.processor_tasks, dropped, callback_calls, deliveries.size(),
                   std::chrono::duration<double>(Clock::now() - test_start).count())
            << std::flush;
}

TEST_CASE("crash: SIGTERM under load drains and exits 0", "[crash][integration][latency]") {
  constexpr int kDrainMs = 3000;
  constexpr int kRequests = 40;
  OpenDsrPeerOptions options;
  options.complete_after_polls = 2;
  options.send_callbacks = false;
  OpenDsrPeer peer(options);
  peer.Start();
  // A slow processor: with 40 submissions and its 8 handler threads, calls are still under way at SIGTERM and
  // for longer than the drain, so some tasks finish during the drain and the others must be given back.
  peer.SetDelay(1500ms);
  DaemonEnv env(true, Systems(peer, 5000, kDrainMs));
  const std::string token = env.token("submitter");
  Daemon d(env, "loaded");
  REQUIRE(d.WaitReady());
  const std::string owner = Between(d.Log(), "dispatcher ", ": started");
  REQUIRE(!owner.empty());
  for (int i = 0; i < kRequests; ++i) {
    const auto created = d.Call("POST", "/v1/requests", token, Body("delete", i));
    REQUIRE(created.status == 201);
    REQUIRE(d.Call("POST", "/v1/requests/" + created.json()["id"].get<std::string>() + "/verify", token,
                   R"({"method":"account_login","level":"reasonably_high"})")
                .status == 200);
  }
  REQUIRE(Eventually([&] { return peer.recorder().CallsTo("POST", "/v2/requests").size() >= 8; }, 10));

  // An idle keep-alive connection, as a load balancer or a dashboard keeps one open.
  httplib::Client idle("127.0.0.1", d.port());
  idle.set_keep_alive(true);
  REQUIRE(idle.Get("/healthz"));

  // Three clients on keep-alive connections submit opt-outs as fast as they are answered, each under its own key,
  // until the daemon is gone. (Three: each blocked submission below holds one of the pool's four connections.)
  struct Sent {
    std::string key;
    Answer answer;
    Clock::time_point sent_at, answered_at;
  };
  std::atomic<bool> stop{false};
  constexpr int kClients = 3;
  std::vector<std::vector<Sent>> sent(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      httplib::Client client("127.0.0.1", d.port());
      client.set_keep_alive(true);
      client.set_connection_timeout(2, 0);
      client.set_read_timeout(10, 0);
      int refused_in_a_row = 0;
      const auto deadline = Clock::now() + 30s;
      for (int n = 0; n < 20000 && !stop && Clock::now() < deadline && refused_in_a_row < 20; ++n) {
        Sent s{fmt::format("term-{}-{}", c, n), {}, Clock::now(), {}};
        s.answer = Send(client, "POST", "/v1/requests", token,
                        fmt::format(R"({{"type":"opt_out","channel":"gpc","subject":{{"identities":[{{"kind":"device_id","value":"dev-{}-{}"}}]}}}})",
                                    c, n),
                        {{"Idempotency-Key", s.key}});
        s.answered_at = Clock::now();
        refused_in_a_row = s.answer.answered ? 0 : refused_in_a_row + 1;
        if (!s.answer.answered) std::this_thread::sleep_for(10ms);
        sent[c].push_back(std::move(s));
      }
    });
  }
  std::this_thread::sleep_for(500ms);
  // Submissions in flight at SIGTERM for sure: intake reads idempotency_keys first, so a lock on it holds every
  // client's next submission inside the daemon until it is released, a second after SIGTERM.
  auto locker = env.db().Connect();
  pqxx::work lock(*locker);
  lock.exec("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE");
  std::this_thread::sleep_for(300ms);
  const auto term_at = Clock::now();
  REQUIRE(::kill(d.pid(), SIGTERM) == 0);
  std::this_thread::sleep_for(1s);
  lock.commit();
  const int code = d.WaitExit(kDrainMs / 1000 + 20);
  const double exit_seconds = std::chrono::duration<double>(Clock::now() - term_at).count();
  stop = true;
  for (auto& t : clients) t.join();

  CHECK(code == 0);
  // The drain runs while the listener waits for the idle keep-alive connection to time out (http.keep_alive_timeout,
  // 5 s in the test config as by default), not after it: the longer of the two, plus time to give the leftovers
  // back. (In sequence they took 7.6 s.)
  CHECK(exit_seconds <= std::max(kDrainMs / 1000.0, 5.0) + 1.5);
  const std::string log = d.Log();
  const std::string given_back = Between(log, "stopped; ", " unfinished tasks given back");
  CHECK(!given_back.empty());
  // No task stays leased to the process that exited.
  CHECK(env.db().Scalar("SELECT count(*) FROM tasks WHERE state = 'running' AND lease_owner = '" + owner + "'") ==
        "0");

  // HTTP: every submission the daemon committed was answered. A submission that got no answer (refused, or reset
  // before it was read) must have changed nothing, so that the client may retry it.
  int answered = 0, in_flight_at_term = 0, in_flight_created = 0, unanswered = 0, server_errors = 0;
  std::vector<std::string> unanswered_keys;
  std::set<std::string> created_keys;
  for (const auto& list : sent) {
    for (const auto& s : list) {
      if (s.answer.answered) {
        ++answered;
        if (s.sent_at < term_at && s.answered_at > term_at) {
          ++in_flight_at_term;
          in_flight_created += s.answer.status == 201;
        }
        server_errors += s.answer.status >= 500;
        if (s.answer.status == 201) created_keys.insert(s.key);
      } else {
        ++unanswered;
        unanswered_keys.push_back("'" + s.key + "'");
      }
    }
  }
  CHECK(server_errors == 0);
  // The submissions held in the daemon at SIGTERM were finished and answered.
  CHECK(in_flight_at_term >= kClients);
  CHECK(in_flight_created == in_flight_at_term);
  CHECK(env.db().Scalar(fmt::format("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'term-%' AND key IN ({})",
                                    unanswered_keys.empty() ? "''" : fmt::format("{}", fmt::join(unanswered_keys, ","))))
        == "0");
  CHECK(env.db().Scalar("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'term-%'") ==
        std::to_string(created_keys.size()));

  // A new process (and a fast processor) finishes everything: one outcome per task, one subject request each.
  peer.SetDelay(0ms);
  Daemon next(env, "next");
  REQUIRE(next.WaitReady());
  const std::string total = env.db().Scalar("SELECT count(*) FROM requests");
  CHECK(Eventually([&] {
    return env.db().Scalar("SELECT count(*) FROM requests WHERE status = 'completed'") == total;
  }, 30));
  CHECK(next.Stop() == 0);
  CHECK(TasksWithoutExactlyOneOutcome(env.db()) == "0");
  const SideEffects fx = ProcessorSideEffects(env.db(), peer);
  CHECK(fx.processor_tasks == kRequests);
  CHECK(fx.created_once == kRequests);
  CHECK(fx.created_twice + fx.never_created + fx.unknown_ids == 0);
  const auto verify = env.Cli({"audit", "verify", "--config", env.config().string()});
  INFO(verify.out + verify.err);
  CHECK(verify.exit_code == 0);

  std::cout << fmt::format(
                   "sigterm: exit {} after {:.2f} s (drain_timeout_ms {}); {} tasks given back; {} submissions answered "
                   "({} of them in flight at SIGTERM), {} unanswered, none of them committed; processor: {} submissions for {} "
                   "subject requests\n",
                   code, exit_seconds, kDrainMs, given_back, answered,
                   in_flight_at_term, unanswered, fx.submissions, fx.processor_tasks)
            << std::flush;
}
