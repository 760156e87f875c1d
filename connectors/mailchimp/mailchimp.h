// The Mailchimp connector (type "mailchimp"): one Mailchimp account through the Marketing API 3.0 with an API key.
// For each configured audience (list id) a member is addressed by its subscriber hash (MD5 of the lower-cased
// email): access reads the member, delete is the permanent delete (actions/delete-permanent), correct PATCHes the
// mapped merge fields, opt_out sets the status "unsubscribed". Every call of one connector instance passes a
// connection cap (Mailchimp allows 10 simultaneous connections per account). See mailchimp.cpp for the contract
// followed (reference/connector-apis.md 2.8) and the choices made where it is silent.
//
// Thread-safety: Run may be called from any thread; the connection cap is the only mutable state and is
// thread-safe. Destroying the connector refuses calls still waiting for a connection (their tasks end with kRetry).
#pragma once
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::mailchimp {

// Builds a connector from settings already checked against schemas/connectors/mailchimp.json. Reads api_key_file
// now; throws ConnectorConfigError naming the setting when it cannot be read, is empty, or (without base_url) has
// no data-centre suffix ("...-us21").
std::unique_ptr<Connector> MakeMailchimpConnector(const nlohmann::json& settings, const ConnectorEnv& env);

// Mailchimp's subscriber hash: the lower-case hex MD5 of the email with ASCII letters lower-cased.
std::string SubscriberHash(std::string_view email);

// The API root for a key: "<key>-us21" -> "https://us21.api.mailchimp.com/3.0"; "" when the key has no valid suffix.
std::string ApiRootForKey(std::string_view api_key);

}  // namespace rightsd::connectors::mailchimp
