// The webhook connector (type "webhook"): a processor that speaks OpenDSR (formerly OpenGDPR). Access and delete
// tasks become OpenDSR "access" and "erasure" requests keyed by the task id; the connector submits them, polls their
// status (or is woken early by the processor's signed status callbacks, which VerifyCallback checks) and returns
// the processor's results for access. See webhook.cpp for the specification followed and the choices made.
//
// Thread-safety: the connector is immutable after construction except for a mutex-guarded cache of the processor's
// discovery document; Run and VerifyCallback may be called from any thread.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "connectors/connector.h"

namespace rightsd::connectors::webhook {

// Builds a connector from settings already checked against schemas/connectors/webhook.json. Reads
// bearer_token_file and processor_certificate_file now; throws ConnectorConfigError naming the setting when a file
// cannot be read, is empty, or (the certificate) holds neither a PEM certificate nor a PEM public key.
std::unique_ptr<Connector> MakeWebhookConnector(const nlohmann::json& settings, const ConnectorEnv& env);

// The subject_request_id an OpenDSR status callback body names -- the task id this connector sent -- or nullopt when
// the body is not JSON or names none. Only a look-up key: authenticity is VerifyCallback's job.
std::optional<std::string> OpenDsrCallbackRequestId(const std::string& body);

}  // namespace rightsd::connectors::webhook
