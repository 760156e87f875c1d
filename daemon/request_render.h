// The JSON answer for a request (GET /v1/requests/{id}, the answers of intake and of the actions, list items),
// written with JsonWriter: the hottest answer of the API, so no nlohmann tree is built for it. Keys are in
// alphabetical order at every level, as the former nlohmann rendering (std::map-ordered objects) had them; jsonb
// values (audit details, task receipts) are carried in PostgreSQL's text form. Pure; thread-safe.
#pragma once
#include <string>

#include "json_writer.h"
#include "store.h"

namespace rightsd {

// `full`: with identities, history, tasks and callback_url (a list item has none of them). `with_values`: with
// identity values, the authorized agent and corrections (the caller may read them and the record holds them).
void WriteRequestJson(JsonWriter& w, const RequestRecord& r, LocalDate today, int at_risk_days, bool full,
                      bool with_values);
std::string RenderRequestJson(const RequestRecord& r, LocalDate today, int at_risk_days, bool full, bool with_values);

}  // namespace rightsd
