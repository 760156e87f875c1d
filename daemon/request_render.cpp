#include "request_render.h"

namespace rightsd {

namespace {

void Time(JsonWriter& w, const std::optional<Timestamp>& t) {
  if (t) {
    w.String(FormatRfc3339(*t));
  } else {
    w.Null();
  }
}

void Date(JsonWriter& w, const std::optional<LocalDate>& d) {
  if (d) {
    w.String(FormatDate(*d));
  } else {
    w.Null();
  }
}

void OptString(JsonWriter& w, const std::optional<std::string>& s) {
  if (s) {
    w.String(*s);
  } else {
    w.Null();
  }
}

}  // namespace

void WriteRequestJson(JsonWriter& w, const RequestRecord& r, LocalDate today, int at_risk_days, bool full,
                      bool with_values) {
  const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days);
  const bool values = full && with_values;
  // Keys in byte order, each level: what nlohmann's std::map wrote.
  w.BeginObject();
  w.Key("acknowledged_at");
  Time(w, r.acknowledged_at);
  if (values) {
    w.Key("authorized_agent");
    if (r.authorized_agent) {
      w.Json(*r.authorized_agent);
    } else {
      w.Null();
    }
  }
  if (full) {
    w.Key("callback_url");
    OptString(w, r.callback_url);
  }
  w.Key("channel");
  w.String(r.channel);
  w.Key("closed_at");
  Time(w, r.closed_at);
  if (values) {
    w.Key("corrections");
    w.BeginArray();
    for (const auto& c : r.corrections) {
      w.BeginObject();
      w.Key("field");
      w.String(c.field);
      w.Key("value");
      w.String(c.value);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("created_by");
  w.String(r.created_by);
  w.Key("denial");
  if (r.denial_reason) {
    w.BeginObject();
    w.Key("detail");
    w.String(r.denial_detail ? std::string_view(*r.denial_detail) : std::string_view());
    w.Key("reason");
    w.String(ToString(*r.denial_reason));
    w.EndObject();
  } else {
    w.Null();
  }
  w.Key("extension_reason");
  OptString(w, r.extension_reason);
  if (full) {
    w.Key("history");
    w.BeginArray();
    for (const auto& h : r.history) {
      w.BeginObject();
      w.Key("action");
      w.String(h.action);
      w.Key("actor");
      w.String(h.actor);
      w.Key("at");
      w.String(FormatRfc3339(h.at));
      w.Key("detail");
      w.Raw(h.detail.text);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("id");
  w.String(r.id);
  if (full) {
    w.Key("identities");
    w.BeginArray();
    for (const auto& i : r.identities) {
      w.BeginObject();
      w.Key("kind");
      w.String(i.kind);
      if (with_values) {
        w.Key("value");
        OptString(w, i.value);
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("purged_at");
  Time(w, r.purged_at);
  w.Key("received_at");
  w.String(FormatRfc3339(r.received_at));
  w.Key("sla");
  w.BeginObject();
  w.Key("acknowledge_by");
  Date(w, r.deadlines.acknowledge_by);
  w.Key("days_left");
  if (sla.days_left) {
    w.Int(*sla.days_left);
  } else {
    w.Null();
  }
  w.Key("extended");
  w.Bool(r.extended);
  w.Key("respond_by");
  w.String(FormatDate(r.deadlines.respond_by));
  w.Key("state");
  w.String(ToString(sla.state));
  w.EndObject();
  w.Key("status");
  w.String(ToString(r.status));
  if (full) {
    w.Key("tasks");
    w.BeginArray();
    for (const auto& t : r.tasks) {
      w.BeginObject();
      w.Key("action");
      w.String(t.action);
      w.Key("attempts");
      w.Int(t.attempts);
      w.Key("finished_at");
      Time(w, t.finished_at);
      w.Key("id");
      w.String(t.id);
      w.Key("last_error");
      OptString(w, t.last_error);
      w.Key("next_attempt_at");
      Time(w, t.next_attempt_at);
      w.Key("outcome");
      w.Raw(t.receipt.text);
      w.Key("state");
      w.String(t.state);
      w.Key("system");
      w.String(t.system);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("type");
  w.String(ToString(r.type));
  w.Key("updated_at");
  w.String(FormatRfc3339(r.updated_at));
  w.Key("verification");
  if (r.verification.is_null()) {
    w.Null();
  } else {
    w.Json(r.verification);
  }
  w.Key("verified_at");
  Time(w, r.verified_at);
  w.EndObject();
}

std::string RenderRequestJson(const RequestRecord& r, LocalDate today, int at_risk_days, bool full, bool with_values) {
  std::string out;
  out.reserve(full ? 1024 : 512);
  JsonWriter w(out);
  WriteRequestJson(w, r, today, at_risk_days, full, with_values);
  return out;
}

}  // namespace rightsd
