// The composition root. LoadRuntime reads the files the config names (holidays, tokens, key) into immutable
// parts; Serve builds the running daemon in dependency order (config -> pool -> store -> sweeper -> HTTP API),
// waits for signals in the main thread, and tears it down in reverse.
#pragma once
#include <memory>

#include "auth.h"
#include "calendar.h"
#include "config.h"
#include "connectors/http_client.h"
#include "crypto.h"
#include "data_map.h"
#include "url_policy.h"

namespace rightsd {

struct Runtime {
  Config config;
  std::unique_ptr<BusinessCalendar> calendar;
  TokenStore tokens;
  std::unique_ptr<PiiCipher> cipher;
  std::shared_ptr<const OutboundPolicy> outbound;  // [outbound] allowed_hosts; the http client checks every URL
  std::unique_ptr<connectors::HttpClient> http;  // before data_map: connectors hold a pointer to it
  DataMap data_map;
  std::string callback_secret;  // empty when [callbacks] secret_file is not set
};

// Throws ConfigError naming the file and the problem.
Runtime LoadRuntime(const Config& config);

// Returns the process exit code.
int Serve(const Config& config);

}  // namespace rightsd
