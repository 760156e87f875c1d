// The noop connector: answers every action without calling anything, at once or after settings.delay_ms. For benchmarks and tests of the
// engine; never put it in a production data map (scripts/run's demo uses real peers instead).
#pragma once
#include "connectors/connector.h"

namespace rightsd::connectors::noop {
std::unique_ptr<Connector> MakeNoopConnector(const nlohmann::json& settings, const ConnectorEnv& env);
}
