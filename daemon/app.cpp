#include "app.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

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
    rt.tokens = TokenStore::Parse(ReadFile(config.auth.tokens_file, "tokens file"));
  } catch (const TokensFileError& e) {
    throw ConfigError(fmt::format("{}: {}", config.auth.tokens_file.string(), e.what()));
  }
  struct stat st {};
  if (config.http.tls() && ::stat(config.http.tls_key_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    LogWarning("http: TLS key file {} is readable by group or others; chmod 600 it", config.http.tls_key_file.string());
  }
  if (::stat(config.crypto.key_file.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    LogWarning("crypto: key file {} is readable by group or others; chmod 600 it", config.crypto.key_file.string());
  }
  try {
    rt.cipher = std::make_unique<PiiCipher>(PiiCipher::FromHexKey(ReadFile(config.crypto.key_file, "key file")));
  } catch (const CryptoError& e) {
    throw ConfigError(fmt::format("{}: {}", config.crypto.key_file.string(), e.what()));
  }
  if (!config.callbacks.secret_file.empty()) {
    rt.callback_secret = ReadFile(config.callbacks.secret_file, "callbacks secret file");
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
  std::thread http_thread([&api] {
    if (!api.Run()) {
      LogError("http: the listener stopped unexpectedly");
      ::kill(::getpid(), SIGTERM);  // let the main thread shut down in order
    }
  });
  LogInfo("listening on {}://{}:{}", config.http.tls() ? "https" : "http", config.http.host, port);
  sd_notify(0, "READY=1");

  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      LogWarning("sighup: configuration reload is not supported yet; restart the service to apply changes");
      continue;
    }
    LogInfo("signal {}: stopping", sig == SIGTERM ? "term" : "int");
    break;
  }
  sd_notify(0, "STOPPING=1");
  api.Stop();
  http_thread.join();
  dispatcher.Stop();
  sweeper.Stop();
  LogInfo("stopped");
  return 0;
}

}  // namespace rightsd
