// The Salesforce Marketing Cloud Engagement connector (type "sfmc"). It signs in with the client-credentials grant
// of an API Integration component (tokens cached and shared by all tasks), finds contact keys by email address,
// deletes contacts with the asynchronous contact-delete API (submit, then poll the operation over hours without
// holding a worker: OutcomeKind::kInProgress with the operation id as continuation), and carries out opt-out and
// limit requests by upserting the contact into a configured suppression data extension. See sfmc.cpp for the
// contract followed (reference/connector-apis.md section 2.9) and the choices made where it is silent.
//
// Thread-safety: the connector holds a mutex-guarded token cache and a mutex-guarded memo of submitted operations;
// everything else is immutable after construction. Run may be called from any thread.
#pragma once
#include <memory>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::sfmc {

// Builds a connector from settings already checked against schemas/connectors/sfmc.json. Reads client_secret_file
// now; throws ConnectorConfigError naming the setting when it cannot be read or is empty, or when the settings
// name no way to reach the tenant.
std::unique_ptr<Connector> MakeSfmcConnector(const nlohmann::json& settings, const ConnectorEnv& env);

}  // namespace rightsd::connectors::sfmc
