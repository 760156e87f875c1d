// Fuzzes the mailchimp connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("api-key", "0123456789abcdef-us21");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"api_key_file": "api-key", "audiences": ["aud1", "aud2"],
                          "base_url": "https://us21.api.mailchimp.example.com/3.0", "merge_fields": {"name": "FNAME"}})json");
  RunConnectorOnce("mailchimp", settings, {"Retry-After", "X-Request-Id", "Content-Type"}, {"marketing"}, data, size);
  return 0;
}
