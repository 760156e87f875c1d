// Fuzzes the salesforce connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("secret", "fuzz-secret");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"login_url": "https://login.example.com", "auth": "client_credentials", "client_id": "fuzz-client",
                      "client_secret_file": "secret", "delete_batch_size": 2})json");
  RunConnectorOnce("salesforce", settings, {"Sforce-Limit-Info", "Retry-After", "Location", "Content-Type"}, {"contact", "marketing"}, data, size);
  return 0;
}
