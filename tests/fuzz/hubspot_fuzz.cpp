// Fuzzes the hubspot connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("token", "fuzz-token");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"access_token_file": "token", "base_url": "https://api.hubapi.example.com",
                      "search_per_second": 100, "burst_limit": 10000, "max_local_wait_ms": 0,
                      "opt_out_properties": {"ccpa_do_not_sell": "true"}, "corrections": {"postal_address": "address"}})json");
  RunConnectorOnce("hubspot", settings, {"Retry-After", "X-HubSpot-RateLimit-Remaining", "X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Interval-Milliseconds", "X-HubSpot-RateLimit-Daily", "X-HubSpot-RateLimit-Daily-Remaining"}, {"marketing"}, data, size);
  return 0;
}
