// Fuzzes the fhir connector's handling of every answer its peer can give, through its public Run with a fake
// HttpClient (see connector_harness.h for the oracles).
#include "connector_harness.h"

using namespace rightsd::fuzz;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("fhir-key.pem", MakeKey(true).private_pem);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nlohmann::json settings = nlohmann::json::parse(R"json({"base_url": "https://ehr.example.com/fhir/R4", "client_id": "fuzz-client", "key_id": "fuzz-kid",
                "private_key_file": "fhir-key.pem", "match_on": ["mrn", "fhir_patient_id", "email", "phone"],
                "identifier_systems": {"mrn": "urn:oid:1.2.3.4"}, "max_pages": 3, "max_patients": 2,
                "resources": [{"type": "Observation"}, {"type": "Appointment", "search_param": "patient", "on_delete": "delete"}]})json");
  RunConnectorOnce("fhir", settings, {"ETag", "Retry-After", "Location", "Content-Type"}, {"clinical"}, data, size);
  return 0;
}
