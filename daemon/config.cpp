#include "config.h"

#include <arpa/inet.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "url_policy.h"

namespace rightsd {

namespace {

// The declared keys, table by table. A key missing here is rejected as unknown.
const std::map<std::string, std::set<std::string>>& KnownKeys() {
  static const std::map<std::string, std::set<std::string>> keys = {
      {"http", {"listen", "threads", "max_queued", "max_body_bytes", "keep_alive_timeout", "keep_alive_max_requests",
                "read_timeout",
                // TLS and the plaintext rule
                "tls_cert_file", "tls_key_file", "allow_plaintext_non_loopback"}},
      {"database", {"url", "pool_size", "acquire_timeout_ms", "statement_timeout_ms"}},
      {"calendar", {"timezone", "holidays_file", "business_days", "at_risk_days"}},
      {"auth", {"tokens_file",
                // per-token rate limit
                "rate_per_second", "burst"}},
      {"outbound", {"allowed_hosts"}},
      {"crypto", {"key_file"}},
      {"sweeper", {"interval_ms", "audit_seal_interval_ms"}},
      {"engine", {"enabled", "lease_ms", "claim_batch", "max_in_flight", "inline_workers", "backoff_base_ms",
                  "backoff_max_ms", "drain_timeout_ms"}},
      {"callbacks", {"secret_file", "max_attempts", "timeout_ms"}},
      {"purge", {"retention_months", "batch_size"}},
  };
  return keys;
}

class Reader {
 public:
  Reader(const toml::table& root, std::filesystem::path file) : root_(root), file_(std::move(file)) {}

  [[noreturn]] void Fail(std::string_view key, std::string_view problem) const {
    throw ConfigError(fmt::format("{}: {}: {}", file_.string(), key, problem));
  }

  void CheckKnown() const {
    for (const auto& [table_name, node] : root_) {
      const std::string name(table_name.str());
      if (name == "systems") continue;  // an array of tables, checked by ParseSystems
      auto known = KnownKeys().find(name);
      if (known == KnownKeys().end()) Fail(name, "unknown table");
      const auto* table = node.as_table();
      if (!table) Fail(name, "must be a table");
      for (const auto& [key, value] : *table) {
        (void)value;
        if (!known->second.count(std::string(key.str()))) Fail(name + "." + std::string(key.str()), "unknown key");
      }
    }
  }

  const toml::node* Find(std::string_view table, std::string_view key) const {
    const auto* t = root_.get_as<toml::table>(table);
    return t ? t->get(key) : nullptr;
  }

  std::string String(std::string_view table, std::string_view key, std::optional<std::string> fallback) const {
    const std::string name = fmt::format("{}.{}", table, key);
    const auto* node = Find(table, key);
    if (!node) {
      if (!fallback) Fail(name, "is required");
      return *fallback;
    }
    auto v = node->value<std::string>();
    if (!node->is_string() || !v) Fail(name, "must be a string");
    if (v->empty()) Fail(name, "must not be empty");
    return *v;
  }

  long Int(std::string_view table, std::string_view key, long fallback, long min, long max) const {
    const std::string name = fmt::format("{}.{}", table, key);
    const auto* node = Find(table, key);
    if (!node) return fallback;
    if (!node->is_integer()) Fail(name, "must be an integer");
    const long v = static_cast<long>(node->as_integer()->get());
    if (v < min || v > max) Fail(name, fmt::format("must be between {} and {}", min, max));
    return v;
  }

  bool Bool(std::string_view table, std::string_view key, bool fallback) const {
    const auto* node = Find(table, key);
    if (!node) return fallback;
    if (!node->is_boolean()) Fail(fmt::format("{}.{}", table, key), "must be true or false");
    return node->as_boolean()->get();
  }

  std::filesystem::path Path(std::string_view table, std::string_view key) const {
    std::filesystem::path p = String(table, key, std::nullopt);
    if (p.is_relative()) p = file_.parent_path() / p;
    return p.lexically_normal();
  }

  std::vector<std::string> Strings(std::string_view table, std::string_view key,
                                   std::vector<std::string> fallback) const {
    const std::string name = fmt::format("{}.{}", table, key);
    const auto* node = Find(table, key);
    if (!node) return fallback;
    const auto* arr = node->as_array();
    if (!arr) Fail(name, "must be an array of strings");
    std::vector<std::string> out;
    for (const auto& item : *arr) {
      auto v = item.value<std::string>();
      if (!item.is_string() || !v) Fail(name, "must be an array of strings");
      out.push_back(*v);
    }
    return out;
  }

 private:
  const toml::table& root_;
  std::filesystem::path file_;
};

void ParseListen(const Reader& r, const std::string& listen, Config::Http& http) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) r.Fail("http.listen", "must be \"host:port\"");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = listen.substr(colon + 1);
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(port_text, &used);
    if (used != port_text.size()) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) r.Fail("http.listen", "port must be a number from 0 to 65535");
  http.host = host;
  http.port = port;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

void ParseTls(const Reader& r, Config::Http& http) {
  const bool cert = r.Find("http", "tls_cert_file") != nullptr;
  const bool key = r.Find("http", "tls_key_file") != nullptr;
  if (cert != key) r.Fail(cert ? "http.tls_key_file" : "http.tls_cert_file", "set both http.tls_cert_file and "
                          "http.tls_key_file, or neither");
  if (cert) {
    http.tls_cert_file = r.Path("http", "tls_cert_file");
    http.tls_key_file = r.Path("http", "tls_key_file");
  }
  http.allow_plaintext_non_loopback = r.Bool("http", "allow_plaintext_non_loopback", false);
  // Tokens and identity values cross this listener: in clear only where nothing but this machine can listen.
  if (!http.tls() && !http.allow_plaintext_non_loopback && !IsLoopbackHost(http.host)) {
    r.Fail("http.allow_plaintext_non_loopback",
           fmt::format("http.listen is {}, not a loopback address: plain HTTP there is refused; set "
                       "http.tls_cert_file and http.tls_key_file, or allow_plaintext_non_loopback = true when a "
                       "TLS-terminating proxy on a private network is in front", http.host));
  }
}

void ParseAuthLimits(const Reader& r, Config::Auth& auth) {
  if (const auto* v = r.Find("auth", "rate_per_second")) {
    if (!v->is_number()) r.Fail("auth.rate_per_second", "must be a number");
    auth.rate_per_second = v->is_integer() ? static_cast<double>(v->as_integer()->get()) : v->as_floating_point()->get();
    if (!(auth.rate_per_second >= 0.01 && auth.rate_per_second <= 1000000)) {
      r.Fail("auth.rate_per_second", "must be from 0.01 to 1000000");
    }
  }
  auth.burst = static_cast<int>(r.Int("auth", "burst", auth.burst, 1, 1000000));
}

void ParseOutbound(const Reader& r, Config::Outbound& outbound) {
  outbound.allowed_hosts = r.Strings("outbound", "allowed_hosts", {});
  try {
    (void)OutboundPolicy::Parse(outbound.allowed_hosts);
  } catch (const std::invalid_argument& e) {
    r.Fail("outbound.allowed_hosts", e.what());
  }
}

// [[systems]]: the connector's own settings are checked later against its schema (data_map.cpp); the keys the
// engine reads are checked here.
std::vector<Config::System> ParseSystems(const toml::table& root, const Reader& r) {
  std::vector<Config::System> out;
  const auto* node = root.get("systems");
  if (!node) return out;
  const auto* arr = node->as_array();
  if (!arr || !arr->is_array_of_tables()) r.Fail("systems", "must be an array of tables ([[systems]])");
  static const std::set<std::string> known = {"name", "connector", "categories", "on_delete", "retain_basis",
                                              "request_types", "max_concurrency", "rate_per_second", "burst",
                                              "max_attempts", "settings"};
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto& t = *arr->get(i)->as_table();
    const std::string where = fmt::format("systems[{}]", i);
    for (const auto& [key, value] : t) {
      (void)value;
      if (!known.count(std::string(key.str()))) r.Fail(where + "." + std::string(key.str()), "unknown key");
    }
    Config::System sys;
    auto str = [&](const char* key, bool required) -> std::string {
      const auto* v = t.get(key);
      if (!v) {
        if (required) r.Fail(where + "." + key, "is required");
        return {};
      }
      if (!v->is_string() || v->as_string()->get().empty()) r.Fail(where + "." + key, "must be a non-empty string");
      return v->as_string()->get();
    };
    auto strings = [&](const char* key, std::vector<std::string> fallback) {
      const auto* v = t.get(key);
      if (!v) return fallback;
      const auto* a = v->as_array();
      if (!a) r.Fail(where + "." + key, "must be an array of strings");
      std::vector<std::string> list;
      for (const auto& item : *a) {
        if (!item.is_string()) r.Fail(where + "." + key, "must be an array of strings");
        list.push_back(item.as_string()->get());
      }
      return list;
    };
    auto integer = [&](const char* key, long fallback, long min, long max) {
      const auto* v = t.get(key);
      if (!v) return fallback;
      if (!v->is_integer()) r.Fail(where + "." + key, "must be an integer");
      const long n = static_cast<long>(v->as_integer()->get());
      if (n < min || n > max) r.Fail(where + "." + key, fmt::format("must be between {} and {}", min, max));
      return n;
    };
    sys.name = str("name", true);
    sys.connector = str("connector", true);
    sys.categories = strings("categories", {});
    if (t.get("on_delete")) sys.on_delete = str("on_delete", true);
    if (sys.on_delete != "delete" && sys.on_delete != "retain" && sys.on_delete != "deidentify") {
      r.Fail(where + ".on_delete", "must be delete, retain or deidentify");
    }
    sys.retain_basis = str("retain_basis", sys.on_delete == "retain");
    sys.request_types = strings("request_types", sys.request_types);
    sys.max_concurrency = static_cast<int>(integer("max_concurrency", sys.max_concurrency, 1, 1000));
    if (const auto* v = t.get("rate_per_second")) {
      if (!v->is_number()) r.Fail(where + ".rate_per_second", "must be a number");
      sys.rate_per_second = v->is_integer() ? static_cast<double>(v->as_integer()->get()) : v->as_floating_point()->get();
      if (sys.rate_per_second <= 0 || sys.rate_per_second > 100000) {
        r.Fail(where + ".rate_per_second", "must be above 0 and at most 100000");
      }
    }
    sys.burst = static_cast<int>(integer("burst", sys.burst, 1, 100000));
    sys.max_attempts = static_cast<int>(integer("max_attempts", sys.max_attempts, 1, 100));
    if (const auto* v = t.get("settings")) {
      if (!v->is_table()) r.Fail(where + ".settings", "must be a table");
      std::ostringstream json;
      json << toml::json_formatter{*v->as_table()};
      sys.settings = nlohmann::json::parse(json.str());
    }
    out.push_back(std::move(sys));
  }
  return out;
}

}  // namespace

Config ParseConfig(std::string_view text, const std::filesystem::path& file) {
  toml::table root;
  try {
    root = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}:{}:{}: {}", file.string(), e.source().begin.line, e.source().begin.column,
                                  e.description()));
  }
  Reader r(root, file);
  r.CheckKnown();

  Config c;
  c.file = file;
  ParseListen(r, r.String("http", "listen", "127.0.0.1:8080"), c.http);
  c.http.threads = static_cast<int>(r.Int("http", "threads", c.http.threads, 2, 4096));
  c.http.max_queued = static_cast<int>(r.Int("http", "max_queued", c.http.max_queued, 0, 100000));
  c.http.max_body_bytes = r.Int("http", "max_body_bytes", c.http.max_body_bytes, 1024, 64L << 20);
  c.http.keep_alive_timeout_s = static_cast<int>(r.Int("http", "keep_alive_timeout", c.http.keep_alive_timeout_s, 1, 3600));
  c.http.keep_alive_max_requests =
      static_cast<int>(r.Int("http", "keep_alive_max_requests", c.http.keep_alive_max_requests, 1, 100000000));
  c.http.read_timeout_s = static_cast<int>(r.Int("http", "read_timeout", c.http.read_timeout_s, 1, 600));

  ParseTls(r, c.http);

  c.database.url = r.String("database", "url", std::nullopt);
  c.database.pool_size = static_cast<int>(r.Int("database", "pool_size", c.database.pool_size, 1, 512));
  c.database.acquire_timeout_ms =
      static_cast<int>(r.Int("database", "acquire_timeout_ms", c.database.acquire_timeout_ms, 1, 600000));
  c.database.statement_timeout_ms =
      static_cast<int>(r.Int("database", "statement_timeout_ms", c.database.statement_timeout_ms, 0, 3600000));

  c.calendar.timezone = r.String("calendar", "timezone", c.calendar.timezone);
  c.calendar.holidays_file = r.Path("calendar", "holidays_file");
  c.calendar.business_days = r.Strings("calendar", "business_days", c.calendar.business_days);
  // With no business day, "10 business days to acknowledge" never arrives: every deadline would be unreachable.
  if (c.calendar.business_days.empty()) r.Fail("calendar.business_days", "must name at least one day");
  c.calendar.at_risk_days = static_cast<int>(r.Int("calendar", "at_risk_days", c.calendar.at_risk_days, 0, 90));

  c.auth.tokens_file = r.Path("auth", "tokens_file");
  ParseAuthLimits(r, c.auth);
  ParseOutbound(r, c.outbound);
  c.crypto.key_file = r.Path("crypto", "key_file");

  c.sweeper.interval_ms = static_cast<int>(r.Int("sweeper", "interval_ms", c.sweeper.interval_ms, 100, 3600000));
  c.sweeper.audit_seal_interval_ms =
      static_cast<int>(r.Int("sweeper", "audit_seal_interval_ms", c.sweeper.audit_seal_interval_ms, 10, 60000));
  c.engine.enabled = r.Bool("engine", "enabled", c.engine.enabled);
  c.engine.lease_ms = static_cast<int>(r.Int("engine", "lease_ms", c.engine.lease_ms, 1000, 3600000));
  c.engine.claim_batch = static_cast<int>(r.Int("engine", "claim_batch", c.engine.claim_batch, 1, 1000));
  c.engine.max_in_flight = static_cast<int>(r.Int("engine", "max_in_flight", c.engine.max_in_flight, 1, 100000));
  c.engine.inline_workers = static_cast<int>(r.Int("engine", "inline_workers", c.engine.inline_workers, 1, 16));
  c.engine.backoff_base_ms = static_cast<int>(r.Int("engine", "backoff_base_ms", c.engine.backoff_base_ms, 10, 3600000));
  c.engine.backoff_max_ms = static_cast<int>(r.Int("engine", "backoff_max_ms", c.engine.backoff_max_ms, 10, 86400000));
  c.engine.drain_timeout_ms =
      static_cast<int>(r.Int("engine", "drain_timeout_ms", c.engine.drain_timeout_ms, 0, 600000));
  if (r.Find("callbacks", "secret_file")) c.callbacks.secret_file = r.Path("callbacks", "secret_file");
  c.callbacks.max_attempts = static_cast<int>(r.Int("callbacks", "max_attempts", c.callbacks.max_attempts, 1, 100));
  c.callbacks.timeout_ms = static_cast<int>(r.Int("callbacks", "timeout_ms", c.callbacks.timeout_ms, 100, 600000));

  c.purge.retention_months =
      static_cast<int>(r.Int("purge", "retention_months", c.purge.retention_months, 24, 1200));
  c.purge.batch_size = static_cast<int>(r.Int("purge", "batch_size", c.purge.batch_size, 1, 10000));

  c.systems = ParseSystems(root, r);
  return c;
}

Config LoadConfig(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read the config file", file.string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseConfig(buffer.str(), std::filesystem::absolute(file));
}

}  // namespace rightsd
