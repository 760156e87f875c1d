// The manual connector: a person does the work (paper records, a system with no API). The task waits in
// needs_manual until POST /v1/requests/{id}/tasks/{task}/complete closes it with the person's outcome.
#pragma once
#include "connectors/connector.h"

namespace rightsd::connectors::manual {
std::unique_ptr<Connector> MakeManualConnector(const nlohmann::json& settings, const ConnectorEnv& env);
}
