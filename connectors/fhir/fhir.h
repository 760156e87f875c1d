// The EHR connector (type "fhir"): an HL7 FHIR R4 server reached as a SMART Backend Services client. It finds the
// patient (MRN identifier, FHIR id, email, phone), returns the patient's record for access requests ($everything,
// or a search per configured resource type where the server has no $everything), deletes only what the data map
// marks deletable and reports the rest as retained under the HIPAA/CMIA exemption, corrects demographics with JSON
// Patch under If-Match, and records opt-out and limit requests as Consent resources with a deny provision. See
// fhir.cpp for the contract followed (reference/connector-apis.md sections 2.4 and 2.5) and the choices made where
// it is silent.
//
// Thread-safety: the connector holds a mutex-guarded token cache and an atomic "no $everything here" flag;
// everything else is immutable after construction. Run may be called from any thread.
#pragma once
#include <memory>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::fhir {

// Builds a connector from settings already checked against schemas/connectors/fhir.json. Reads private_key_file
// now; throws ConnectorConfigError naming the setting when the key cannot be read or does not fit the algorithm.
std::unique_ptr<Connector> MakeFhirConnector(const nlohmann::json& settings, const ConnectorEnv& env);

}  // namespace rightsd::connectors::fhir
