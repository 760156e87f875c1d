#include "cli.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "app.h"
#include "audit.h"
#include "config.h"
#include "crypto.h"
#include "log.h"
#include "migrate.h"
#include "report.h"
#include "retention.h"
#include "store.h"

namespace rightsd {

namespace {

constexpr const char* kDefaultConfig = "/etc/rightsd/rightsd.toml";
constexpr const char* kUsage =
    "usage: rightsd <command> [--config FILE]\n"
    "commands:\n"
    "  serve                          run the daemon\n"
    "  migrate                        apply pending database migrations\n"
    "  check-config                   validate the config and the files it names\n"
    "  token new --role R --name N    print a new token and its tokens-file line\n"
    "  keygen [--out FILE]            write a new 32-byte PII key (to crypto.key_file by default)\n"
    "  audit verify                   check the audit trail's hash chain\n"
    "  sweep [--date YYYY-MM-DD]      move open requests to the SLA state of that day (default today), as the\n"
    "                                 daemon's sweeper does; prints how many changed and how long it took\n"
    "  purge [--dry-run]              remove the personal data of requests closed over purge.retention_months ago\n"
    "  report metrics --year Y [--format json|markdown]\n"
    "                                 the 11 CCR 7102 figures of requests received in year Y\n"
    "FILE defaults to /etc/rightsd/rightsd.toml\n";

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "rightsd: %s\n", message.c_str());
  return code;
}

struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> options;
};

// Options are "--name value" or "--name=value"; everything else is a command word.
std::optional<Args> ParseArgs(int argc, char** argv, std::string& error) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      args.options["help"] = "1";
    } else if (a == "--dry-run") {
      args.options["dry-run"] = "1";
    } else if (a.starts_with("--")) {
      std::string name = a.substr(2), value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        error = fmt::format("option --{} needs a value", name);
        return std::nullopt;
      }
      args.options[name] = value;
    } else {
      args.words.push_back(a);
    }
  }
  return args;
}

bool CheckOptions(const Args& args, std::initializer_list<std::string_view> allowed, std::string& error) {
  for (const auto& [name, value] : args.options) {
    (void)value;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      error = fmt::format("unknown option --{}", name);
      return false;
    }
  }
  return true;
}

std::string ConfigPath(const Args& args) {
  auto it = args.options.find("config");
  return it == args.options.end() ? kDefaultConfig : it->second;
}

std::unique_ptr<pqxx::connection> ConnectOrExplain(const Config& config, std::string& error) {
  try {
    auto conn = std::make_unique<pqxx::connection>(config.database.url);
    pqxx::nontransaction setup(*conn);
    setup.exec("SET TimeZone = 'UTC'; SET application_name = 'rightsd-cli'");
    return conn;
  } catch (const std::exception& e) {
    std::string what = e.what();
    while (!what.empty() && (what.back() == '\n' || what.back() == ' ')) what.pop_back();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    error = fmt::format("database unreachable: {}", what);
    return nullptr;
  }
}

int TokenNew(const Args& args) {
  auto role_it = args.options.find("role");
  auto name_it = args.options.find("name");
  if (role_it == args.options.end() || name_it == args.options.end()) {
    return Fail(2, "token new needs --role (submitter, viewer, admin, auditor) and --name");
  }
  if (!ParseRole(role_it->second)) {
    return Fail(2, fmt::format("unknown role '{}': use submitter, viewer, admin or auditor", role_it->second));
  }
  const std::string& name = name_it->second;
  const bool name_ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (!name_ok) return Fail(2, "--name must be 1 to 64 letters, digits, '-', '_' or '.'");
  const std::string token = GenerateToken();
  std::printf("token: %s\ntokens-file line: %s %s %s\n", token.c_str(), role_it->second.c_str(), name.c_str(),
              Sha256Hex(token).c_str());
  return 0;
}

int Keygen(const Args& args) {
  std::filesystem::path out;
  if (auto it = args.options.find("out"); it != args.options.end()) {
    out = it->second;
  } else {
    try {
      out = LoadConfig(ConfigPath(args)).crypto.key_file;
    } catch (const ConfigError& e) {
      return Fail(1, e.what());
    }
  }
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Fail(1, fmt::format("{} exists; refusing to overwrite a key (data sealed with it would be lost)",
                                 out.string()));
    }
    return Fail(1, fmt::format("cannot create {}: {}", out.string(), std::strerror(errno)));
  }
  const std::string line = GenerateKeyHex() + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return Fail(1, fmt::format("cannot write {}", out.string()));
  std::fprintf(stderr, "rightsd: wrote a new key to %s (mode 0600); back it up: without it, identities cannot be read\n",
               out.c_str());
  return 0;
}

// One SLA sweep, the same as the daemon's sweeper runs (Store::SweepSla): for operators after downtime, and for
// timing it. Rows another process holds locked are skipped, so it is safe next to a running daemon.
int Sweep(const Config& config, const Args& args) {
  Runtime rt = LoadRuntime(config);
  Timestamp now = std::chrono::time_point_cast<Timestamp::duration>(std::chrono::system_clock::now());
  if (auto d = args.options.find("date"); d != args.options.end()) {
    LocalDate day;
    if (!ParseDate(d->second, day)) return Fail(2, "--date is YYYY-MM-DD");
    // Local noon of that day in the business time zone: Today() of it is `day`.
    now = std::chrono::time_point_cast<Timestamp::duration>(
        date::make_zoned(rt.calendar->Zone(), day + std::chrono::hours(12)).get_sys_time());
  }
  DbPool pool({config.database.url, 1, std::chrono::milliseconds(config.database.acquire_timeout_ms),
               config.database.statement_timeout_ms, "rightsd-cli"},
              nullptr);
  Store store(pool, *rt.calendar, *rt.cipher, config.calendar.at_risk_days, &rt.data_map, false);
  const auto started = std::chrono::steady_clock::now();
  const int changed = store.SweepSla(now);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("sla sweep for %s: %d requests changed state in %.3f s\n", FormatDate(store.Today(now)).c_str(),
              changed, seconds);
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  std::string error;
  auto parsed = ParseArgs(argc, argv, error);
  if (!parsed) return Fail(2, error + "\n" + kUsage);
  const Args& args = *parsed;
  if (args.options.count("help") || args.words.empty()) {
    std::fputs(kUsage, args.words.empty() && !args.options.count("help") ? stderr : stdout);
    return args.options.count("help") ? 0 : 2;
  }
  const std::string command = args.words[0] + (args.words.size() > 1 ? " " + args.words[1] : "");
  const std::size_t expected_words =
      (args.words[0] == "token" || args.words[0] == "audit" || args.words[0] == "report") ? 2 : 1;
  if (args.words.size() != expected_words) return Fail(2, fmt::format("unknown command '{}'\n{}", command, kUsage));

  try {
    InitCrypto();
    if (command == "token new") {
      if (!CheckOptions(args, {"role", "name", "config"}, error)) return Fail(2, error);
      return TokenNew(args);
    }
    if (command == "keygen") {
      if (!CheckOptions(args, {"out", "config"}, error)) return Fail(2, error);
      return Keygen(args);
    }
    const bool options_ok = command == "purge"            ? CheckOptions(args, {"config", "dry-run"}, error)
                            : command == "sweep"          ? CheckOptions(args, {"config", "date"}, error)
                            : command == "report metrics" ? CheckOptions(args, {"config", "year", "format"}, error)
                                                          : CheckOptions(args, {"config"}, error);
    if (!options_ok) return Fail(2, error);
    if (command != "serve" && command != "migrate" && command != "check-config" && command != "audit verify" &&
        command != "purge" && command != "report metrics" && command != "sweep") {
      return Fail(2, fmt::format("unknown command '{}'\n{}", command, kUsage));
    }
    int report_year = 0;
    std::string report_format = "json";
    if (command == "report metrics") {
      const auto year = args.options.find("year");
      if (year == args.options.end() || year->second.size() != 4 ||
          year->second.find_first_not_of("0123456789") != std::string::npos ||
          (report_year = std::stoi(year->second)) < 2020 || report_year > 2100) {
        return Fail(2, "report metrics needs --year YYYY (2020 to 2100)");
      }
      if (auto f = args.options.find("format"); f != args.options.end()) report_format = f->second;
      if (report_format != "json" && report_format != "markdown") return Fail(2, "--format is json or markdown");
    }
    Config config = LoadConfig(ConfigPath(args));
    if (command == "check-config") {
      LoadRuntime(config);
      std::printf("config ok: %s\n", config.file.c_str());
      return 0;
    }
    if (command == "serve") return Serve(config);
    auto conn = ConnectOrExplain(config, error);
    if (!conn) return Fail(1, error);
    if (command == "migrate") {
      const int applied = ApplyMigrations(*conn);
      const SchemaStatus status = CheckSchema(*conn);
      std::printf("schema at version %d (%d migration%s applied now)\n", status.applied_version, applied,
                  applied == 1 ? "" : "s");
      return 0;
    }
    if (command == "purge") {
      // A schema without purged_at would fail half-way; say what to do instead.
      const SchemaStatus status = CheckSchema(*conn);
      if (!status.current()) {
        return Fail(1, fmt::format("database schema is at version {} but this binary needs {}: run 'rightsd migrate'",
                                   status.applied_version, status.latest_version));
      }
      const PurgePolicy policy{config.purge.retention_months, config.purge.batch_size, config.calendar.timezone};
      const bool dry_run = args.options.count("dry-run") > 0;
      const PurgeReport report = dry_run ? PlanPurge(*conn, policy) : RunPurge(*conn, policy);
      std::printf("%s\n", PurgeSummary(report, dry_run).c_str());
      return 0;
    }
    if (command == "sweep") {
      const SchemaStatus status = CheckSchema(*conn);
      if (!status.current()) {
        return Fail(1, fmt::format("database schema is at version {} but this binary needs {}: run 'rightsd migrate'",
                                   status.applied_version, status.latest_version));
      }
      conn.reset();
      return Sweep(config, args);
    }
    if (command == "report metrics") {
      pqxx::work txn(*conn);
      const auto metrics = ComputeYearMetrics(txn, report_year, config.calendar.timezone);
      txn.commit();
      const std::string text = report_format == "json" ? metrics.dump(2) + "\n" : YearMetricsMarkdown(metrics);
      std::fputs(text.c_str(), stdout);
      return 0;
    }
    // audit verify
    const AuditVerifyResult result = VerifyAuditChain(*conn);
    if (!result.ok) {
      return Fail(1, fmt::format("audit chain broken: {} ({} events verified before it)", result.problem,
                                 result.verified));
    }
    std::printf("audit chain ok: %lld events verified (%lld in the first chain, %lld in %lld links)\n",
                result.verified, result.first_chain, result.verified - result.first_chain, result.links);
    return 0;
  } catch (const ConfigError& e) {
    return Fail(1, fmt::format("config: {}", e.what()));
  } catch (const MigrationError& e) {
    return Fail(1, fmt::format("migrate: {}", e.what()));
  } catch (const std::exception& e) {
    return Fail(1, e.what());
  }
}

}  // namespace rightsd
