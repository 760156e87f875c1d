// The oracle of the request answer: how rightsd rendered a request before the JSON writer (daemon/http_api.cpp's
// RenderRequest, with nlohmann), kept unchanged but for audit details and receipts, which it parses from their
// text as the former store did. Tests compare daemon/request_render.h's output with it.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "store.h"

namespace rightsd::oracle {

using nlohmann::json;

inline std::string OldText(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

inline json DateOrNull(const std::optional<LocalDate>& d) { return d ? json(FormatDate(*d)) : json(); }
inline json TimeOrNull(const std::optional<Timestamp>& t) { return t ? json(FormatRfc3339(*t)) : json(); }

inline json OldRenderRequest(const RequestRecord& r, LocalDate today, int at_risk_days, bool full, bool with_values) {
  const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days);
  json out = {
      {"id", r.id},
      {"type", ToString(r.type)},
      {"status", ToString(r.status)},
      {"received_at", FormatRfc3339(r.received_at)},
      {"channel", r.channel},
      {"sla",
       {{"acknowledge_by", DateOrNull(r.deadlines.acknowledge_by)},
        {"respond_by", FormatDate(r.deadlines.respond_by)},
        {"extended", r.extended},
        {"state", ToString(sla.state)},
        {"days_left", sla.days_left ? json(*sla.days_left) : json()}}},
      {"acknowledged_at", TimeOrNull(r.acknowledged_at)},
      {"verified_at", TimeOrNull(r.verified_at)},
      {"verification", r.verification},
      {"extension_reason", r.extension_reason ? json(*r.extension_reason) : json()},
      {"closed_at", TimeOrNull(r.closed_at)},
      {"denial", r.denial_reason ? json{{"reason", ToString(*r.denial_reason)},
                                        {"detail", r.denial_detail.value_or("")}}
                                 : json()},
      {"created_by", r.created_by},
      {"updated_at", FormatRfc3339(r.updated_at)},
      {"purged_at", TimeOrNull(r.purged_at)},
  };
  if (!full) return out;
  json identities = json::array();
  for (const auto& i : r.identities) {
    json item = {{"kind", i.kind}};
    if (with_values) item["value"] = i.value ? json(*i.value) : json();
    identities.push_back(item);
  }
  out["identities"] = identities;
  if (with_values) {
    out["authorized_agent"] = r.authorized_agent ? *r.authorized_agent : json();
    json corrections = json::array();
    for (const auto& c : r.corrections) corrections.push_back({{"field", c.field}, {"value", c.value}});
    out["corrections"] = corrections;
  }
  json history = json::array();
  for (const auto& h : r.history) {
    history.push_back(
        {{"at", FormatRfc3339(h.at)}, {"actor", h.actor}, {"action", h.action}, {"detail", json::parse(h.detail.text)}});
  }
  out["history"] = history;
  json tasks = json::array();
  for (const auto& t : r.tasks) {
    tasks.push_back({{"id", t.id},
                     {"system", t.system},
                     {"action", t.action},
                     {"state", t.state},
                     {"attempts", t.attempts},
                     {"next_attempt_at", TimeOrNull(t.next_attempt_at)},
                     {"last_error", t.last_error ? json(*t.last_error) : json()},
                     {"outcome", t.receipt.text.empty() ? json() : json::parse(t.receipt.text)},
                     {"finished_at", TimeOrNull(t.finished_at)}});
  }
  out["tasks"] = tasks;
  out["callback_url"] = r.callback_url ? json(*r.callback_url) : json();
  return out;
}

}  // namespace rightsd::oracle
