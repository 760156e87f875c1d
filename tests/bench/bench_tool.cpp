// Helpers for scripts/bench that need rightsd's own code or precise timing:
//
//   rightsd_bench seed-identities --key-file K --from A --count N
//       COPY text for request_identities of the seeded requests A..A+N-1 (ids from SeededRequestId): an e-mail
//       address and a phone number each, sealed and hashed with the key the daemon uses, so that
//       GET /v1/requests/{id} opens them exactly as it opens values that came through the API.
//   rightsd_bench ready -- <daemon argv...>
//       starts the daemon with NOTIFY_SOCKET pointed here, prints "<pid> <milliseconds to READY=1>" and leaves it
//       running (the caller stops it by that pid). Exits non-zero if the daemon exits or is not ready in 30 s.
//   rightsd_bench ceiling --port P --threads T
//       the HTTP ceiling of benchmark 2: cpp-httplib answering a fixed 200-byte JSON, configured at its best
//       (TCP_NODELAY, a pool of T threads, long keep-alive). Runs until SIGTERM.
//   rightsd_bench rss PID
//       resident memory of PID in KiB (VmRSS) and its peak (VmHWM).
//   rightsd_bench intake-sql --batch K
//       a pgbench script of Store::Insert's statement (the daemon's own text) writing K requests at once, as the
//       daemon's intake writer does when K POSTs share a statement; values of the same kinds and lengths as
//       tests/bench/intake-pgbench.sql (the reference for one request, kept as a file and checked by a test).
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>

#include "crypto.h"
#include "request_parse.h"
#include "store.h"

namespace {

int Usage() {
  std::cerr << "usage: rightsd_bench seed-identities --key-file K --from A --count N\n"
               "       rightsd_bench ready -- DAEMON ARGS...\n"
               "       rightsd_bench ceiling --port P --threads T\n"
               "       rightsd_bench rss PID\n"
               "       rightsd_bench intake-sql --batch K\n";
  return 2;
}

std::string Arg(const std::vector<std::string>& args, const std::string& name) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == name) return args[i + 1];
  }
  throw std::runtime_error("missing " + name);
}

// Must match tests/bench/seed-requests.sql: request number n has this id.
std::string SeededRequestId(long long n) { return fmt::format("00000000-0000-4000-8000-{:012x}", n); }

// COPY text format: bytea as \\x<hex>.
int SeedIdentities(const std::vector<std::string>& args) {
  std::ifstream key_file(Arg(args, "--key-file"));
  std::string hex((std::istreambuf_iterator<char>(key_file)), std::istreambuf_iterator<char>());
  const auto cipher = rightsd::PiiCipher::FromHexKey(hex);
  const long long from = std::stoll(Arg(args, "--from"));
  const long long count = std::stoll(Arg(args, "--count"));
  std::string out;
  out.reserve(1 << 20);
  for (long long n = from; n < from + count; ++n) {
    const std::string id = SeededRequestId(n);
    const std::pair<std::string, std::string> values[] = {
        {"email", fmt::format("bench.person{}@example.org", n)},
        {"phone", fmt::format("+1415{:07d}", n % 10000000)}};
    for (int ordinal = 0; ordinal < 2; ++ordinal) {
      const auto& [kind, value] = values[ordinal];
      const std::string context = fmt::format("{}:identity:{}:{}", id, ordinal, kind);
      out += fmt::format("{}\t{}\t{}\t\\\\x{}\t\\\\x{}\n", id, ordinal, kind,
                         rightsd::ToHex(cipher.LookupHash(kind, rightsd::NormalizeIdentity(kind, value))),
                         rightsd::ToHex(cipher.Seal(value, context)));
    }
    if (out.size() > (1 << 20) - 4096) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int Ready(int argc, char** argv) {
  int first = 2;
  if (first < argc && std::string(argv[first]) == "--") ++first;
  if (first >= argc) return Usage();
  const std::string path = fmt::format("/tmp/rightsd-bench-notify-{}", ::getpid());
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ::unlink(path.c_str());
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("notify socket");
    return 1;
  }
  const auto started = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    // The caller reads our stdout to its end: the daemon must not hold it open.
    ::dup2(2, 1);
    ::execv(argv[first], argv + first);
    std::perror("exec");
    ::_exit(127);
  }
  const auto deadline = started + std::chrono::seconds(30);
  int rc = 1;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      std::cerr << "rightsd_bench ready: no READY=1 within 30 s\n";
      break;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 100))) > 0) {
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0 && std::string(buf, static_cast<std::size_t>(n)).find("READY=1") != std::string::npos) {
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
        std::cout << pid << ' ' << fmt::format("{:.1f}", ms) << std::endl;
        rc = 0;
        break;
      }
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::cerr << "rightsd_bench ready: the daemon exited before READY=1\n";
      break;
    }
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (rc != 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  return rc;
}

int Ceiling(const std::vector<std::string>& args) {
  const int port = std::stoi(Arg(args, "--port"));
  const int threads = std::stoi(Arg(args, "--threads"));
  // 200 bytes, about what a small status answer is.
  std::string body = R"({"id":"00000000-0000-4000-8000-000000000001","type":"access","status":"in_progress",)"
                     R"("respond_by":"2026-12-31","sla":{"state":"on_track","days_left":38},"pad":")";
  body += std::string(200 - body.size() - 2, 'x') + "\"}";
  httplib::Server server;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(100000);
  server.set_keep_alive_timeout(30);
  server.Get("/v1/requests/:id", [&body](const httplib::Request&, httplib::Response& res) {
    res.set_content(body, "application/json");
  });
  static httplib::Server* running = &server;
  ::signal(SIGTERM, [](int) { running->stop(); });
  ::signal(SIGINT, [](int) { running->stop(); });
  if (!server.listen("127.0.0.1", port)) {
    std::cerr << "rightsd_bench ceiling: cannot listen on 127.0.0.1:" << port << "\n";
    return 1;
  }
  return 0;
}

int Rss(const std::vector<std::string>& args) {
  if (args.size() < 2) return Usage();
  std::ifstream status("/proc/" + args[1] + "/status");
  std::string line;
  long rss = -1, hwm = -1;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stol(line.substr(6));
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::stol(line.substr(6));
  }
  if (rss < 0) return 1;
  std::cout << rss << ' ' << hwm << '\n';
  return 0;
}

}  // namespace

// Each $n of the statement as a pgbench expression making K values (g = 1..K, o = the identity's ordinal).
int IntakeSql(const std::vector<std::string>& args) {
  const int k = std::stoi(Arg(args, "--batch"));
  if (k < 1 || k > 10000) throw std::runtime_error("--batch must be 1 to 10000");
  const std::string id = "md5(:a::text || ':' || :client_id::text || ':' || g)::uuid";
  const auto per_request = [&](const std::string& value) {
    return fmt::format("ARRAY(SELECT {} FROM generate_series(1, {}) g)", value, k);
  };
  const auto per_identity = [&](const std::string& value) {
    return fmt::format("ARRAY(SELECT {} FROM generate_series(1, {}) g, generate_series(0, 1) o ORDER BY g, o)", value,
                       k);
  };
  const std::vector<std::pair<int, std::string>> params = {
      {1, per_request(id)},
      {2, per_request("'access'::text")},
      {3, per_request("'received'::text")},
      {4, per_request("now()")},
      {5, per_request("current_date")},
      {6, per_request("'web_form'::text")},
      {7, per_request("NULL::text")},
      {8, per_request("NULL::text")},
      {9, per_request("current_date + 14")},
      {10, per_request("current_date + 45")},
      {11, per_request("'on_track'::text")},
      {12, per_request("'bench-submitter'::text")},
      {13, per_request("NULL::text")},
      {14, per_request(R"('{"type":"access","status":"received","channel":"web_form","identity_kinds":["email","phone"],)"
                       R"("received_at":"2026-11-23T18:00:00Z","respond_by":"2027-01-07","acknowledge_by":"2026-12-08",)"
                       R"("authorized_agent": false}'::text)")},
      {15, per_identity(id)},
      {16, per_identity("o")},
      {17, per_identity("CASE o WHEN 0 THEN 'email' ELSE 'phone' END")},
      {18, per_identity("md5(:a::text || g || o) || md5(:a::text || 'f' || g || o)")},
      {19, per_identity("md5(:a::text || 'g' || g || o) || md5(:a::text || 'h' || g || o) || md5(:a::text || 'i' || g "
                        "|| o) || md5(:a::text || 'j' || g || o) || md5(:a::text || 'k' || g || o)")},
  };
  std::string sql = rightsd::Store::InsertStatement();
  // From $19 down, so that $1 is not taken for the start of $14.
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const std::string name = "$" + std::to_string(it->first);
    for (auto at = sql.find(name); at != std::string::npos; at = sql.find(name, at + it->second.size())) {
      sql.replace(at, name.size(), it->second);
    }
  }
  std::cout << "-- Generated by rightsd_bench intake-sql --batch " << k << ": Store::Insert's statement for " << k
            << " requests.\n\\set a random(1, 4611686018427387903)\n"
            << sql << ";\n";
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string command = argv[1];
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (command == "seed-identities") return SeedIdentities(args);
    if (command == "ready") return Ready(argc, argv);
    if (command == "ceiling") return Ceiling(args);
    if (command == "rss") return Rss(args);
    if (command == "intake-sql") return IntakeSql(args);
  } catch (const std::exception& e) {
    std::cerr << "rightsd_bench " << command << ": " << e.what() << "\n";
    return 1;
  }
  return Usage();
}
