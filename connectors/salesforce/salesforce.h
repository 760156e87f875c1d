// The Salesforce connector (type "salesforce"): Salesforce CRM and Health Cloud over the REST API.
// A task finds the person with SOQL over the configured objects (email, phone and salesforce_id identities, then
// records related to what was found), and then:
//   access  -> the found records' mapped fields, by data-map category;
//   delete  -> ShouldForget = true on the person's Individual, sObject Collections deletes of everything else
//              (objects marked retain are reported, not deleted);
//   locate  -> what was found, as retained_exempt (the system's on_delete = "retain");
//   correct -> PATCH of the mapped fields of each record found;
//   opt_out / limit -> the Individual's HasOptedOut* flags and OptOut ContactPointTypeConsent records.
// See salesforce.cpp for the contract followed and the choices made, docs/connectors/salesforce.md for setup.
//
// Thread-safety: the connector is immutable after construction except for the token cache and the API-allowance
// tracker, both mutex-guarded; Run may be called from any thread.
#pragma once
#include <memory>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::salesforce {

// Builds a connector from settings already checked against schemas/connectors/salesforce.json. Reads
// private_key_file or client_secret_file now; throws ConnectorConfigError naming the setting when a file cannot be
// read or used, or a setting the flow needs is missing.
std::unique_ptr<Connector> MakeSalesforceConnector(const nlohmann::json& settings, const ConnectorEnv& env);

}  // namespace rightsd::connectors::salesforce
