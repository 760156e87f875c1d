// Fuzzes the webhook connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("token", "fuzz-token");
  WriteCredential("processor.pem", MakeKey(false).public_pem);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"base_url": "https://processor.example.com/opendsr/v2", "bearer_token_file": "token",
                      "processor_certificate_file": "processor.pem",
                      "callback_url": "https://rightsd.example.com/v1/callbacks/opendsr"})json");
  RunConnectorOnce("webhook", settings, {"Retry-After", "X-OpenDSR-Signature", "X-OpenDSR-Processor-Domain", "Location", "Content-Type"}, {"marketing"}, data, size);
  return 0;
}
