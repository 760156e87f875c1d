// The explicit list of connector types. Adding a connector means adding one line here, its folder, its schema in
// schemas/connectors/<name>.json and its tests -- nothing registers itself.
#include "connectors/connector.h"
#include "connectors/fhir/fhir.h"
#include "connectors/hubspot/hubspot.h"
#include "connectors/mailchimp/mailchimp.h"
#include "connectors/manual/manual.h"
#include "connectors/noop/noop.h"
#include "connectors/salesforce/salesforce.h"
#include "connectors/sfmc/sfmc.h"
#include "connectors/webhook/webhook.h"

namespace rightsd {
std::string_view ConnectorSettingsSchema(std::string_view stem);  // generated from schemas/connectors/*.json
}

namespace rightsd::connectors {

std::span<const ConnectorType> Registry() {
  static const std::vector<ConnectorType> types = {
      {"fhir", ConnectorSettingsSchema("fhir"), fhir::MakeFhirConnector},
      {"hubspot", ConnectorSettingsSchema("hubspot"), hubspot::MakeHubspotConnector},
      {"mailchimp", ConnectorSettingsSchema("mailchimp"), mailchimp::MakeMailchimpConnector},
      {"manual", ConnectorSettingsSchema("manual"), manual::MakeManualConnector},
      {"noop", ConnectorSettingsSchema("noop"), noop::MakeNoopConnector},
      {"salesforce", ConnectorSettingsSchema("salesforce"), salesforce::MakeSalesforceConnector},
      {"sfmc", ConnectorSettingsSchema("sfmc"), sfmc::MakeSfmcConnector},
      {"webhook", ConnectorSettingsSchema("webhook"), webhook::MakeWebhookConnector},
  };
  return types;
}

}  // namespace rightsd::connectors
