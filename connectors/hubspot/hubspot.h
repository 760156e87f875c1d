// The HubSpot connector (type "hubspot"): a private app's bearer token against the CRM v3 contacts API. Contacts are
// located by email with the search endpoint (and by hubspot_id directly); access returns the configured contact
// properties by category; delete is the GDPR permanent delete (never the archiving DELETE); correct PATCHes the
// mapped properties; opt_out and limit set the configured properties. All calls of one connector instance pass one
// RateGate (rate_gate.h) that keeps them under HubSpot's burst, search and daily limits. See hubspot.cpp for the
// contract followed (reference/connector-apis.md 2.7) and the choices made where it is silent.
//
// Thread-safety: Run may be called from any thread; the connector's only mutable state is the rate gate, which is
// thread-safe. Destroying the connector refuses the calls still waiting in the gate (their tasks end with kRetry).
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::hubspot {

// Builds a connector from settings already checked against schemas/connectors/hubspot.json. Reads
// access_token_file now; throws ConnectorConfigError naming the setting when it cannot be read or is empty, when
// account_time_zone is not a known zone, or when a property maps to a category the system does not declare.
std::unique_ptr<Connector> MakeHubspotConnector(const nlohmann::json& settings, const ConnectorEnv& env);

// How long from `now` until the next midnight (plus one minute of slack) in `zone`: when HubSpot's daily counter
// starts again. Throws std::runtime_error for an unknown zone.
std::chrono::milliseconds UntilNextMidnight(const std::string& zone, std::chrono::system_clock::time_point now);

}  // namespace rightsd::connectors::hubspot
