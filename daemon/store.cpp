#include "store.h"

#include <fmt/format.h>

#include "audit.h"
#include "log.h"

namespace rightsd {

namespace {

using nlohmann::json;

// One column list for every read of a request row, so that RowToRecord has one shape to read.
constexpr const char* kRequestColumns =
    "r.id::text, r.type, r.status, (extract(epoch from r.received_at) * 1000000)::bigint, r.received_on::text, "
    "r.channel, r.acknowledge_by::text, r.respond_by::text, r.extended, r.extension_reason, r.acknowledged_on::text, "
    "(extract(epoch from r.acknowledged_at) * 1000000)::bigint, (extract(epoch from r.verified_at) * 1000000)::bigint, "
    "r.verification::text, (extract(epoch from r.closed_at) * 1000000)::bigint, r.closed_on::text, r.denial_reason, "
    "r.denial_detail, r.sla_state, r.created_by, (extract(epoch from r.updated_at) * 1000000)::bigint, "
    "encode(r.agent_sealed, 'hex'), encode(r.corrections_sealed, 'hex')";
constexpr int kColumnCount = 23;

Timestamp FromMicros(long long us) { return Timestamp{std::chrono::microseconds{us}}; }

LocalDate DateField(const pqxx::field& f) {
  LocalDate d;
  if (!ParseDate(f.c_str(), d)) throw std::runtime_error(fmt::format("unexpected date from database: {}", f.c_str()));
  return d;
}
std::optional<LocalDate> OptDate(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return DateField(f);
}
std::optional<Timestamp> OptTimestamp(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return FromMicros(f.as<long long>());
}
std::optional<std::string> OptString(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

template <typename T>
T Require(std::optional<T> v, std::string_view what) {
  if (!v) throw std::runtime_error(fmt::format("unexpected {} from database", what));
  return *v;
}

RequestRecord RowToRecord(const pqxx::row& row) {
  RequestRecord r;
  r.id = row[0].as<std::string>();
  r.type = Require(ParseRequestType(row[1].c_str()), "type");
  r.status = Require(ParseRequestStatus(row[2].c_str()), "status");
  r.received_at = FromMicros(row[3].as<long long>());
  r.received_on = DateField(row[4]);
  r.channel = row[5].as<std::string>();
  r.deadlines.acknowledge_by = OptDate(row[6]);
  r.deadlines.respond_by = DateField(row[7]);
  r.extended = row[8].as<bool>();
  r.extension_reason = OptString(row[9]);
  r.acknowledged_on = OptDate(row[10]);
  r.acknowledged_at = OptTimestamp(row[11]);
  r.verified_at = OptTimestamp(row[12]);
  r.verification = row[13].is_null() ? json() : json::parse(row[13].c_str());
  r.closed_at = OptTimestamp(row[14]);
  r.closed_on = OptDate(row[15]);
  if (!row[16].is_null()) r.denial_reason = Require(ParseDenialReason(row[16].c_str()), "denial reason");
  r.denial_detail = OptString(row[17]);
  r.stored_sla_state = Require(ParseSlaState(row[18].c_str()), "sla state");
  r.created_by = row[19].as<std::string>();
  r.updated_at = FromMicros(row[20].as<long long>());
  return r;
}

// Keeps optional SQL parameters alive for the duration of a statement and hands libpqxx a null pointer for none.
const char* OrNull(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }
std::optional<std::string> DateText(const std::optional<LocalDate>& d) {
  return d ? std::optional<std::string>(FormatDate(*d)) : std::nullopt;
}
std::optional<std::string> TimeText(const std::optional<Timestamp>& t) {
  return t ? std::optional<std::string>(FormatRfc3339(*t)) : std::nullopt;
}

std::string SealContext(const std::string& request_id, std::string_view field) {
  return fmt::format("{}:{}", request_id, field);
}

}  // namespace

SlaFacts RequestRecord::Facts() const {
  return SlaFacts{type, status, received_on, deadlines, extended, acknowledged_on, closed_on};
}

LocalDate Store::Today(Timestamp now) const {
  return calendar_.LocalDateOf(std::chrono::time_point_cast<std::chrono::system_clock::duration>(now));
}

CreateResult Store::Create(const NewRequest& req, const Principal& by, const std::optional<std::string>& idem_key,
                           Timestamp now) {
  const std::string id = NewUuid();
  const Timestamp received_at = req.received_at.value_or(now);
  const LocalDate received_on =
      calendar_.LocalDateOf(std::chrono::time_point_cast<std::chrono::system_clock::duration>(received_at));
  const Deadlines deadlines = ComputeDeadlines(req.type, received_on, false, calendar_);
  // Opt-out and limit need no verifiable request (11 CCR §7060(b), §7027(e)): work starts at once.
  const bool needs_verification = HasAcknowledgement(req.type);
  const RequestStatus status = needs_verification ? RequestStatus::kReceived : RequestStatus::kInProgress;
  const SlaFacts facts{req.type, status, received_on, deadlines, false, std::nullopt, std::nullopt};
  const SlaView sla = EvaluateSla(facts, Today(now), at_risk_days_);

  std::optional<std::string> agent_sealed;
  if (req.authorized_agent) agent_sealed = ToHex(cipher_.Seal(req.authorized_agent->dump(), SealContext(id, "agent")));
  std::optional<std::string> corrections_sealed;
  if (!req.corrections.empty()) {
    json list = json::array();
    for (const auto& c : req.corrections) list.push_back({{"field", c.field}, {"value", c.value}});
    corrections_sealed = ToHex(cipher_.Seal(list.dump(), SealContext(id, "corrections")));
  }
  const std::string body_hash = ToHex(cipher_.LookupHash("idempotency", req.canonical));

  return WithTransaction(pool_, [&](pqxx::work& txn) -> CreateResult {
    if (idem_key) {
      const auto inserted = txn.exec_params(
          "INSERT INTO idempotency_keys (client, key, body_hash, request_id) VALUES ($1, $2, decode($3, 'hex'), "
          "$4::uuid) ON CONFLICT DO NOTHING",
          by.name, *idem_key, body_hash, id);
      if (inserted.affected_rows() == 0) {
        const auto first = txn.exec_params1(
            "SELECT encode(body_hash, 'hex'), request_id::text FROM idempotency_keys WHERE client = $1 AND key = $2",
            by.name, *idem_key);
        if (first[0].as<std::string>() != body_hash) {
          throw ApiError(ErrorCode::kIdempotencyMismatch,
                         "this Idempotency-Key was already used with a different body", "Idempotency-Key");
        }
        return CreateResult{first[1].as<std::string>(), true};
      }
    }
    const auto ack_by = DateText(deadlines.acknowledge_by);
    const auto next_change = DateText(sla.next_change);
    txn.exec_params(
        "INSERT INTO requests (id, type, status, received_at, received_on, channel, agent_sealed, corrections_sealed, "
        "acknowledge_by, respond_by, sla_state, sla_next_change, created_by) VALUES ($1::uuid, $2, $3, "
        "$4::timestamptz, $5::date, $6, decode($7, 'hex'), decode($8, 'hex'), $9::date, $10::date, $11, $12::date, "
        "$13)",
        id, std::string(ToString(req.type)), std::string(ToString(status)), FormatRfc3339(received_at),
        FormatDate(received_on), req.channel, OrNull(agent_sealed), OrNull(corrections_sealed), OrNull(ack_by),
        FormatDate(deadlines.respond_by), std::string(ToString(sla.state)), OrNull(next_change), by.name);
    json kinds = json::array();
    for (std::size_t i = 0; i < req.identities.size(); ++i) {
      const auto& identity = req.identities[i];
      const std::string context = SealContext(id, fmt::format("identity:{}:{}", i, identity.kind));
      txn.exec_params(
          "INSERT INTO request_identities (request_id, ordinal, kind, lookup_hash, value_sealed) VALUES ($1::uuid, "
          "$2, $3, decode($4, 'hex'), decode($5, 'hex'))",
          id, static_cast<int>(i), identity.kind,
          ToHex(cipher_.LookupHash(identity.kind, NormalizeIdentity(identity.kind, identity.value))),
          ToHex(cipher_.Seal(identity.value, context)));
      kinds.push_back(identity.kind);
    }
    json detail = {{"type", ToString(req.type)},
                   {"status", ToString(status)},
                   {"channel", req.channel},
                   {"identity_kinds", kinds},
                   {"received_at", FormatRfc3339(received_at)},
                   {"respond_by", FormatDate(deadlines.respond_by)},
                   {"acknowledge_by", ack_by ? json(*ack_by) : json()},
                   {"authorized_agent", req.authorized_agent.has_value()}};
    if (!needs_verification) detail["verification"] = "not_required";
    AppendAudit(txn, id, by.name, "created", detail);
    return CreateResult{id, false};
  });
}

std::optional<RequestRecord> Store::Get(const std::string& id, bool with_values) {
  if (!IsUuid(id)) return std::nullopt;
  auto row = WithTransaction(pool_, [&](pqxx::work& txn) -> std::optional<pqxx::row> {
    const auto result = txn.exec_params(
        fmt::format("SELECT {}, "
                    "(SELECT coalesce(json_agg(json_build_array(i.ordinal, i.kind, encode(i.value_sealed, 'hex')) "
                    "ORDER BY i.ordinal), '[]') FROM request_identities i WHERE i.request_id = r.id), "
                    "(SELECT coalesce(json_agg(json_build_array(a.id, (extract(epoch from a.at) * 1000000)::bigint, "
                    "a.actor, a.action, a.detail) ORDER BY a.id), '[]') FROM audit_events a WHERE a.request_id = r.id) "
                    "FROM requests r WHERE r.id = $1::uuid",
                    kRequestColumns),
        id);
    if (result.empty()) return std::nullopt;
    return result[0];
  });
  if (!row) return std::nullopt;
  RequestRecord record = RowToRecord(*row);
  for (const auto& item : json::parse((*row)[kColumnCount].c_str())) {
    IdentityView view{item[1].get<std::string>(), std::nullopt};
    if (with_values) {
      const auto sealed = FromHex(item[2].get<std::string>());
      const std::string context =
          SealContext(record.id, fmt::format("identity:{}:{}", item[0].get<int>(), view.kind));
      view.value = sealed ? cipher_.Open(*sealed, context) : std::nullopt;
      if (!view.value) LogError("request {}: an identity does not open with the configured key", record.id);
    }
    record.identities.push_back(std::move(view));
  }
  for (const auto& item : json::parse((*row)[kColumnCount + 1].c_str())) {
    record.history.push_back(HistoryEntry{item[0].get<long long>(), FromMicros(item[1].get<long long>()),
                                          item[2].get<std::string>(), item[3].get<std::string>(), item[4]});
  }
  if (with_values) {
    if (!(*row)[21].is_null()) {
      if (auto opened = cipher_.Open(*FromHex((*row)[21].c_str()), SealContext(record.id, "agent"))) {
        record.authorized_agent = json::parse(*opened);
      }
    }
    if (!(*row)[22].is_null()) {
      if (auto opened = cipher_.Open(*FromHex((*row)[22].c_str()), SealContext(record.id, "corrections"))) {
        for (const auto& c : json::parse(*opened)) {
          record.corrections.push_back(CorrectionInput{c["field"].get<std::string>(), c["value"].get<std::string>()});
        }
      }
    }
  }
  return record;
}

ListPage Store::List(const ListFilter& f) {
  std::optional<std::string> status, type, sla_state, due_before, after_date, after_id;
  if (f.status) status = std::string(ToString(*f.status));
  if (f.type) type = std::string(ToString(*f.type));
  if (f.sla_state) sla_state = std::string(ToString(*f.sla_state));
  due_before = DateText(f.due_before);
  if (f.after) {
    after_date = FormatDate(f.after->first);
    after_id = f.after->second;
  }
  const auto rows = WithTransaction(pool_, [&](pqxx::work& txn) {
    return txn.exec_params(
        fmt::format("SELECT {} FROM requests r WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR "
                    "r.type = $2) AND ($3::text IS NULL OR r.sla_state = $3) AND ($4::date IS NULL OR r.respond_by < "
                    "$4::date) AND ($5::date IS NULL OR (r.respond_by, r.id) > ($5::date, $6::uuid)) "
                    "ORDER BY r.respond_by, r.id LIMIT $7",
                    kRequestColumns),
        OrNull(status), OrNull(type), OrNull(sla_state), OrNull(due_before), OrNull(after_date), OrNull(after_id),
        f.limit + 1);
  });
  ListPage page;
  for (const auto& row : rows) {
    if (static_cast<int>(page.items.size()) == f.limit) {
      const auto& last = page.items.back();
      page.next = std::make_pair(last.deadlines.respond_by, last.id);
      break;
    }
    page.items.push_back(RowToRecord(row));
  }
  return page;
}

SlaSummary Store::Summary() {
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    SlaSummary s;
    for (const auto& row : txn.exec(
             "SELECT status, type, sla_state, closed_at IS NULL, count(*) FROM requests GROUP BY 1, 2, 3, 4")) {
      const long long n = row[4].as<long long>();
      s.by_status[row[0].as<std::string>()] += n;
      s.by_sla_state[row[2].as<std::string>()] += n;
      if (row[3].as<bool>()) {
        s.by_type[row[1].as<std::string>()] += n;
        s.open += n;
      }
    }
    for (const auto& row : txn.exec("SELECT respond_by::text, count(*) FROM requests WHERE closed_at IS NULL "
                                    "GROUP BY respond_by ORDER BY respond_by LIMIT 10")) {
      s.next_due.emplace_back(DateField(row[0]), row[1].as<long long>());
    }
    const auto ack = txn.exec1(
        "SELECT min(acknowledge_by)::text FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL AND "
        "acknowledge_by IS NOT NULL");
    s.next_acknowledge_by = OptDate(ack[0]);
    return s;
  });
}

void Store::Apply(const std::string& id, const ActionInput& action, const Principal& by, Timestamp now) {
  if (!IsUuid(id)) throw ApiError(ErrorCode::kNotFound, "no request with this id");
  const LocalDate today = Today(now);
  WithTransaction(pool_, [&](pqxx::work& txn) {
    const auto rows = txn.exec_params(
        fmt::format("SELECT {} FROM requests r WHERE r.id = $1::uuid FOR UPDATE", kRequestColumns), id);
    if (rows.empty()) throw ApiError(ErrorCode::kNotFound, "no request with this id");
    RequestRecord r = RowToRecord(rows[0]);
    const auto decision = CheckEvent(r.Facts(), action.event, today);
    if (const auto* refusal = std::get_if<std::string>(&decision)) {
      throw ApiError(ErrorCode::kTransitionNotAllowed, *refusal);
    }
    const RequestStatus from = r.status;
    r.status = std::get<RequestStatus>(decision);
    json detail = action.detail;
    detail["from"] = ToString(from);
    detail["to"] = ToString(r.status);
    switch (action.event) {
      case RequestEvent::kAcknowledge:
        r.acknowledged_on = today;
        r.acknowledged_at = now;
        break;
      case RequestEvent::kVerify:
        r.verified_at = now;
        r.verification = {{"method", action.verify->method}, {"level", action.verify->level}, {"by", by.name}};
        break;
      case RequestEvent::kExtend:
        r.extended = true;
        r.extension_reason = action.extend->reason;
        r.deadlines = ComputeDeadlines(r.type, r.received_on, true, calendar_);
        detail["respond_by"] = FormatDate(r.deadlines.respond_by);
        break;
      case RequestEvent::kDeny:
      case RequestEvent::kDenyUnverifiable:
        r.denial_reason = action.deny->reason;
        r.denial_detail = action.deny->detail;
        break;
      default:
        break;
    }
    if (!IsOpen(r.status)) {
      r.closed_at = now;
      r.closed_on = today;
    }
    const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days_);
    detail["sla_state"] = ToString(sla.state);
    const auto ack_on = DateText(r.acknowledged_on);
    const auto ack_at = TimeText(r.acknowledged_at);
    const auto verified_at = TimeText(r.verified_at);
    const std::optional<std::string> verification =
        r.verification.is_null() ? std::nullopt : std::optional<std::string>(r.verification.dump());
    const auto closed_at = TimeText(r.closed_at);
    const auto closed_on = DateText(r.closed_on);
    const std::optional<std::string> denial_reason =
        r.denial_reason ? std::optional<std::string>(std::string(ToString(*r.denial_reason))) : std::nullopt;
    const auto next_change = DateText(sla.next_change);
    txn.exec_params(
        "UPDATE requests SET status = $2, acknowledged_on = $3::date, acknowledged_at = $4::timestamptz, "
        "verified_at = $5::timestamptz, verification = $6::jsonb, extended = $7, extension_reason = $8, "
        "respond_by = $9::date, closed_at = $10::timestamptz, closed_on = $11::date, denial_reason = $12, "
        "denial_detail = $13, sla_state = $14, sla_next_change = $15::date, updated_at = now() WHERE id = $1::uuid",
        id, std::string(ToString(r.status)), OrNull(ack_on), OrNull(ack_at), OrNull(verified_at),
        OrNull(verification), r.extended, OrNull(r.extension_reason), FormatDate(r.deadlines.respond_by),
        OrNull(closed_at), OrNull(closed_on), OrNull(denial_reason), OrNull(r.denial_detail),
        std::string(ToString(sla.state)), OrNull(next_change));
    AppendAudit(txn, id, by.name, std::string(ToString(action.event)), detail);
  });
}

int Store::SweepSla(Timestamp now) {
  const LocalDate today = Today(now);
  int changed = 0;
  constexpr int kBatch = 500;
  for (;;) {
    const int seen = WithTransaction(pool_, [&](pqxx::work& txn) {
      const auto rows = txn.exec_params(
          fmt::format("SELECT {} FROM requests r WHERE r.closed_at IS NULL AND r.sla_next_change <= $1::date "
                      "ORDER BY r.sla_next_change LIMIT $2 FOR UPDATE SKIP LOCKED",
                      kRequestColumns),
          FormatDate(today), kBatch);
      for (const auto& row : rows) {
        const RequestRecord r = RowToRecord(row);
        const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days_);
        const auto next_change = DateText(sla.next_change);
        txn.exec_params("UPDATE requests SET sla_state = $2, sla_next_change = $3::date WHERE id = $1::uuid", r.id,
                        std::string(ToString(sla.state)), OrNull(next_change));
        if (sla.state != r.stored_sla_state) {
          AppendAudit(txn, r.id, "system:sweeper", "sla_changed",
                      {{"from", ToString(r.stored_sla_state)}, {"to", ToString(sla.state)},
                       {"respond_by", FormatDate(r.deadlines.respond_by)}, {"days_left", sla.days_left.value_or(0)}});
          ++changed;
          if (sla.state == SlaState::kBreached) {
            LogWarning("request {}: sla breached (respond_by {})", r.id, FormatDate(r.deadlines.respond_by));
          }
        }
      }
      return static_cast<int>(rows.size());
    });
    if (seen < kBatch) break;
  }
  return changed;
}

AuditPage Store::ListAudit(long long after_id, int limit, const std::optional<std::string>& request_id) {
  const auto rows = WithTransaction(pool_, [&](pqxx::work& txn) {
    return txn.exec_params(
        "SELECT id, (extract(epoch from at) * 1000000)::bigint, actor, action, detail::text, "
        "coalesce(request_id::text, '') FROM audit_events WHERE id > $1 AND ($2::uuid IS NULL OR request_id = "
        "$2::uuid) ORDER BY id LIMIT $3",
        after_id, OrNull(request_id), limit);
  });
  AuditPage page;
  for (const auto& row : rows) {
    page.items.push_back(HistoryEntry{row[0].as<long long>(), FromMicros(row[1].as<long long>()),
                                      row[2].as<std::string>(), row[3].as<std::string>(),
                                      json::parse(row[4].c_str())});
    page.request_ids.push_back(row[5].as<std::string>());
  }
  return page;
}

}  // namespace rightsd
