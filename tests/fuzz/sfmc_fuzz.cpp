// Fuzzes the sfmc connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("secret", "fuzz-secret");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"subdomain": "mc-fuzz", "client_id": "fuzz-client", "client_secret_file": "secret",
                "email_is_contact_key": true, "suppression": {"data_extension_key": "DNS"}})json");
  RunConnectorOnce("sfmc", settings, {"Retry-After", "Content-Type", "Location"}, {"marketing"}, data, size);
  return 0;
}
