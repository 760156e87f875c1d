#include "app.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "db_pool.h"
#include "dispatcher.h"
#include "http_api.h"
#include "log.h"
#include "migrate.h"
#include "store.h"
#include "sweeper.h"

namespace rightsd {

namespace {

std::string ReadFile(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read the {}", path.string(), what));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Under systemd, secrets come through LoadCredential=: a file in $CREDENTIALS_DIRECTORY with the configured file's
// name wins over the configured path (which the hardened unit does not let the service user read). The same rule
// as connectors' credential files (connectors::ReadCredential).
std::filesystem::path CredentialPath(const std::filesystem::path& configured) {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0' || configured.filename().empty()) return configured;
  std::filesystem::path candidate = std::filesystem::path(dir) / configured.filename();
  std::error_code ec;
  return std::filesystem::is_regular_file(candidate, ec) ? candidate : configured;
}

Timestamp WallClock() {
  return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
}

}  // namespace

Runtime LoadRuntime(const Config& config) {
  Runtime rt;
  rt.config = config;
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(config.calendar.timezone);
  } catch (const std::exception&) {
    throw ConfigError(fmt::format("{}: calendar.timezone: unknown time zone '{}'", config.file.string(),
                                  config.calendar.timezone));
  }
  BusinessWeek week;
  try {
    week = ParseBusinessDays(config.calendar.business_days);
  } catch (const CalendarError& e) {
    throw ConfigError(fmt::format("{}: calendar.business_days: {}", config.file.string(), e.what()));
  }
  try {
    auto holidays = ParseHolidays(ReadFile(config.calendar.holidays_file, "holidays file"));
    rt.calendar = std::make_unique<BusinessCalendar>(zone, std::move(holidays), week);
  } catch (const CalendarError& e) {
    throw ConfigError(fmt::format("{}: {}", config.calendar.holidays_file.string(), e.what()));
  }
  try {
    rt.tokens = TokenStore::Parse(ReadFile(CredentialPath(config.auth.tokens_file), "tokens file"));
  } catch (const TokensFileError& e) {
    throw ConfigError(fmt::format("{}: {}", config.auth.tokens_file.string(), e.what()));
  }
  const std::filesystem::path key_file = CredentialPath(config.crypto.key_file);
  struct stat st {};
  if (config.http.tls() && ::stat(config.http.tls_key_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    LogWarning("http: TLS key file {} is readable by group or others; chmod 600 it", config.http.tls_key_file.string());
  }
  if (::stat(key_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    LogWarning("crypto: key file {} is readable by group or others; chmod 600 it", key_file.string());
  }
  try {
    rt.cipher = std::make_unique<PiiCipher>(PiiCipher::FromHexKey(ReadFile(key_file, "key file")));
  } catch (const CryptoError& e) {
    throw ConfigError(fmt::format("{}: {}", config.crypto.key_file.string(), e.what()));
  }
  if (!config.callbacks.secret_file.empty()) {
    rt.callback_secret = ReadFile(CredentialPath(config.callbacks.secret_file), "callbacks secret file");
    while (!rt.callback_secret.empty() && (rt.callback_secret.back() == '\n' || rt.callback_secret.back() == '\r')) {
      rt.callback_secret.pop_back();
    }
    if (rt.callback_secret.size() < 32) {
      throw ConfigError(fmt::format("{}: the callbacks secret must be at least 32 characters",
                                    config.callbacks.secret_file.string()));
    }
  }
  rt.outbound = std::make_shared<const OutboundPolicy>(OutboundPolicy::Parse(config.outbound.allowed_hosts));
  rt.http = connectors::MakeCpprestHttpClient([policy = rt.outbound](const std::string& url) {
    return policy->Check(url);
  });
  rt.data_map = DataMap::Build(config, rt.http.get(), rt.outbound.get());
  return rt;
}

namespace {

// SIGHUP: the whole new configuration is checked as `rightsd check-config` would (the config file and every file it
// names, the data map's connectors); if it passes, the tokens file is swapped in -- so a revoked token stops working
// at once -- and if it fails, the running configuration stays and the log says why. Everything else the config
// sets (listener, pool, data map, engine) is built once at start and takes effect at the next restart: swapping it
// under in-flight requests and leased tasks would need a drain, which a restart already is.
void Reload(const Config& running, Runtime& rt) {
  const auto now_usec = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
  // MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) tell this reload from an earlier one.
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%lld", static_cast<long long>(now_usec));
  try {
    const Config fresh = LoadConfig(running.file);
    Runtime checked = LoadRuntime(fresh);
    rt.tokens.ReplaceWith(checked.tokens);
    LogInfo("sighup: configuration checked; the tokens file is reloaded ({} tokens); other changes take effect at "
            "the next restart",
            checked.tokens.size());
  } catch (const std::exception& e) {
    LogError("sighup: the new configuration is refused and the running one stays: {}", e.what());
  }
  sd_notify(0, "READY=1");
}

}  // namespace

int Serve(const Config& config) {
  // Signals are blocked before any thread starts, so that only the main thread's sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Runtime rt = LoadRuntime(config);
  if (rt.tokens.size() == 0) LogWarning("auth: the tokens file has no tokens; every API call will be refused");

  DbPool pool({config.database.url, config.database.pool_size,
               std::chrono::milliseconds(config.database.acquire_timeout_ms), config.database.statement_timeout_ms,
               "rightsd"},
              nullptr);
  try {
    auto conn = pool.Connect();
    const SchemaStatus schema = CheckSchema(*conn);
    if (!schema.current()) {
      LogError("database schema is at version {} but this binary needs {}: run 'rightsd migrate'",
               schema.applied_version, schema.latest_version);
      return 1;
    }
  } catch (const MigrationError& e) {
    LogError("database schema: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    LogError("database unreachable: {}", e.what());
    return 1;
  }

  Store store(pool, *rt.calendar, *rt.cipher, config.calendar.at_risk_days, &rt.data_map,
              !rt.callback_secret.empty());
  Sweeper sweeper(pool, store, config.sweeper, WallClock);
  Dispatcher dispatcher(pool, store, rt.data_map, rt.http.get(),
                        {config.engine, config.callbacks, rt.callback_secret}, WallClock);
  HttpApi api({store, rt.tokens, config.http, WallClock, [&sweeper] { return sweeper.HoldsLock(); },
               &rt.data_map, rt.outbound.get(), config.auth.rate_per_second, config.auth.burst});
  int port = 0;
  try {
    port = api.Bind();
  } catch (const std::exception& e) {
    LogError("http: {}", e.what());
    return 1;
  }
  sweeper.Start();
  if (config.engine.enabled) dispatcher.Start();
  std::atomic<bool> listening{true};
  std::thread http_thread([&api, &listening] {
    if (!api.Run()) {
      listening = false;
      LogError("http: the listener stopped unexpectedly");
      ::kill(::getpid(), SIGTERM);  // let the main thread shut down in order
    }
  });
  LogInfo("listening on {}://{}:{}", config.http.tls() ? "https" : "http", config.http.host, port);
  sd_notify(0, "READY=1");

  // WatchdogSec=: ping at half the interval from this loop. A ping says the process is not wedged: the main thread
  // runs and the listener thread has not died.
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  const auto ping_every = std::chrono::microseconds(watchdog ? watchdog_usec / 2 : 0);
  for (;;) {
    int sig = 0;
    if (watchdog) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(ping_every);
      const timespec wait{static_cast<time_t>(seconds.count()),
                          static_cast<long>(std::chrono::nanoseconds(ping_every - seconds).count())};
      sig = sigtimedwait(&signals, nullptr, &wait);
      if (sig < 0) {
        if (listening.load()) sd_notify(0, "WATCHDOG=1");
        continue;
      }
    } else if (sigwait(&signals, &sig) != 0) {
      continue;
    }
    if (sig == SIGHUP) {
      Reload(config, rt);
      continue;
    }
    LogInfo("signal {}: stopping", sig == SIGTERM ? "term" : "int");
    break;
  }
  sd_notify(0, "STOPPING=1");
  api.Stop();
  // The engine drains while the HTTP workers finish: joining the listener first waits for every idle keep-alive
  // connection to time out (http.keep_alive_timeout, 5 s by default), and the engine would go on claiming new tasks
  // all that time and only then start its drain_timeout_ms. Requests still being served need the store and the
  // pool, not the engine; tasks they create are picked up by the next engine process.
  dispatcher.Stop();
  // Calls still under way when the drain ended (their tasks were given back) are cancelled and awaited, so that
  // nothing they hold (the connector's job, cpprest's request) is still alive when the process exits.
  constexpr auto kHttpShutdown = std::chrono::seconds(2);
  if (const std::size_t owed = rt.http->Shutdown(kHttpShutdown); owed > 0) {
    LogWarning("outbound http: {} calls had not ended {} s after they were cancelled", owed, kHttpShutdown.count());
  }
  http_thread.join();
  sweeper.Stop();
  LogInfo("stopped");
  return 0;
}

}  // namespace rightsd
