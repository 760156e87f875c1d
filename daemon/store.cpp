#include "store.h"

#include "report.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <unordered_map>

#include <sodium.h>

#include "audit.h"
#include "log.h"
#include "package.h"

namespace rightsd {

namespace {

using nlohmann::json;

// One column list for every read of a request row, so that RowToRecord has one shape to read.
constexpr std::array<const char*, 25> kRequestColumnList = {
    "r.id::text", "r.type", "r.status", "(extract(epoch from r.received_at) * 1000000)::bigint", "r.received_on::text",
    "r.channel", "r.acknowledge_by::text", "r.respond_by::text", "r.extended", "r.extension_reason",
    "r.acknowledged_on::text", "(extract(epoch from r.acknowledged_at) * 1000000)::bigint",
    "(extract(epoch from r.verified_at) * 1000000)::bigint", "r.verification::text",
    "(extract(epoch from r.closed_at) * 1000000)::bigint", "r.closed_on::text", "r.denial_reason", "r.denial_detail",
    "r.sla_state", "r.created_by", "(extract(epoch from r.updated_at) * 1000000)::bigint",
    "encode(r.agent_sealed, 'hex')", "encode(r.corrections_sealed, 'hex')", "r.callback_url",
    "(extract(epoch from r.purged_at) * 1000000)::bigint"};
constexpr int kColumnCount = static_cast<int>(kRequestColumnList.size());

// The list joined, each column followed by `suffix` (GetMany casts them all to text).
std::string RequestColumns(std::string_view suffix = "") {
  std::string out;
  for (const char* column : kRequestColumnList) {
    if (!out.empty()) out += ", ";
    out += column;
    out += suffix;
  }
  return out;
}
const std::string kRequestColumns = RequestColumns();

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

// The columns of kRequestColumns, starting at column `at` of the row.
RequestRecord RowToRecord(const pqxx::row& row, int at = 0) {
  auto col = [&row, at](int i) { return row[at + i]; };
  RequestRecord r;
  r.id = col(0).as<std::string>();
  r.type = Require(ParseRequestType(col(1).c_str()), "type");
  r.status = Require(ParseRequestStatus(col(2).c_str()), "status");
  r.received_at = FromMicros(col(3).as<long long>());
  r.received_on = DateField(col(4));
  r.channel = col(5).as<std::string>();
  r.deadlines.acknowledge_by = OptDate(col(6));
  r.deadlines.respond_by = DateField(col(7));
  r.extended = col(8).as<bool>();  // "t" from a boolean column, "true" from its text cast: libpqxx reads both
  r.extension_reason = OptString(col(9));
  r.acknowledged_on = OptDate(col(10));
  r.acknowledged_at = OptTimestamp(col(11));
  r.verified_at = OptTimestamp(col(12));
  r.verification = col(13).is_null() ? json() : json::parse(col(13).c_str());
  r.closed_at = OptTimestamp(col(14));
  r.closed_on = OptDate(col(15));
  if (!col(16).is_null()) r.denial_reason = Require(ParseDenialReason(col(16).c_str()), "denial reason");
  r.denial_detail = OptString(col(17));
  r.stored_sla_state = Require(ParseSlaState(col(18).c_str()), "sla state");
  r.created_by = col(19).as<std::string>();
  r.updated_at = FromMicros(col(20).as<long long>());
  r.callback_url = OptString(col(23));
  r.purged_at = OptTimestamp(col(24));
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

// The hot statements are prepared on each connection the first time it runs them (libpqxx declares a name once and
// ignores a repeated identical definition): parsing and planning them on every call cost more than running them --
// GET /v1/requests/{id}'s query ran at a quarter of its prepared rate.
template <typename... Args>
pqxx::result ExecPrepared(pqxx::transaction_base& txn, const char* name, const std::string& sql, Args&&... args) {
  txn.conn().prepare(name, sql);
  return txn.exec_prepared(name, std::forward<Args>(args)...);
}

// A PostgreSQL text[] literal: every element quoted, backslash and quote escaped.
std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// A PostgreSQL array literal whose elements may be NULL.
std::string ArrayLiteral(const std::vector<std::optional<std::string>>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    if (!items[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// New requests, their identities and their "created" audit events in one statement: atomic without a transaction
// block, one round trip for however many requests (tests/bench/intake-pgbench.sql replays it for one). Requests come
// as parallel arrays ($1-$14), identities as parallel arrays naming their request ($15-$19). Returned, per request:
// what only the database knows -- the event's id and time, and now() (the row's updated_at).
const std::string kCreateRequestsSql =
    "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::date[], "
    "$6::text[], $7::text[], $8::text[], $9::date[], $10::date[], $11::text[], $12::text[], $13::text[], "
    "$14::text[]) WITH ORDINALITY AS x(id, type, status, received_at, received_on, channel, agent_sealed, "
    "corrections_sealed, acknowledge_by, respond_by, sla_state, created_by, callback_url, detail, n)), "
    "request AS (INSERT INTO requests (id, type, status, received_at, received_on, channel, agent_sealed, "
    "corrections_sealed, acknowledge_by, respond_by, sla_state, created_by, callback_url) "
    "SELECT id, type, status, received_at, received_on, channel, decode(agent_sealed, 'hex'), "
    "decode(corrections_sealed, 'hex'), acknowledge_by, respond_by, sla_state, created_by, "
    "callback_url FROM input ORDER BY n), "
    "identities AS (INSERT INTO request_identities (request_id, ordinal, kind, lookup_hash, value_sealed) "
    "SELECT y.request_id, y.ordinal, y.kind, decode(y.lookup_hash, 'hex'), decode(y.value_sealed, 'hex') "
    "FROM unnest($15::uuid[], $16::smallint[], $17::text[], $18::text[], $19::text[]) "
    "AS y(request_id, ordinal, kind, lookup_hash, value_sealed)), "
    "audit AS (INSERT INTO audit_events (request_id, actor, action, detail) SELECT id, created_by, 'created', "
    "detail::jsonb FROM input ORDER BY n RETURNING request_id, id, (extract(epoch from at) * 1000000)::bigint AS "
    "at_us) "
    "SELECT a.request_id::text, a.id, a.at_us, (extract(epoch from now()) * 1000000)::bigint FROM audit a";

}  // namespace

SlaFacts RequestRecord::Facts() const {
  return SlaFacts{type, status, received_on, deadlines, extended, acknowledged_on, closed_on};
}

LocalDate Store::Today(Timestamp now) const {
  return calendar_.LocalDateOf(std::chrono::time_point_cast<std::chrono::system_clock::duration>(now));
}

PreparedRequest Store::Prepare(const NewRequest& req, const Principal& by, Timestamp now) const {
  if (req.callback_url && !callbacks_enabled_) {
    throw ApiError(ErrorCode::kInvalidField, "status callbacks are not configured on this server", "/callback_url");
  }
  PreparedRequest p;
  RequestRecord& r = p.record;
  r.id = NewUuid();
  r.type = req.type;
  r.received_at = req.received_at.value_or(now);
  r.received_on =
      calendar_.LocalDateOf(std::chrono::time_point_cast<std::chrono::system_clock::duration>(r.received_at));
  r.deadlines = ComputeDeadlines(req.type, r.received_on, false, calendar_);
  // Opt-out and limit need no verifiable request (11 CCR §7060(b), §7027(e)): work starts at once.
  const bool needs_verification = HasAcknowledgement(req.type);
  r.status = needs_verification ? RequestStatus::kReceived : RequestStatus::kInProgress;
  p.creates_tasks = r.status == RequestStatus::kInProgress;
  const SlaView sla = EvaluateSla(r.Facts(), Today(now), at_risk_days_);
  r.stored_sla_state = sla.state;
  r.channel = req.channel;
  r.created_by = by.name;
  r.callback_url = req.callback_url;
  r.authorized_agent = req.authorized_agent;
  r.corrections = req.corrections;

  if (req.authorized_agent) {
    p.agent_sealed = ToHex(cipher_.Seal(req.authorized_agent->dump(), SealContext(r.id, "agent")));
  }
  if (!req.corrections.empty()) {
    json list = json::array();
    for (const auto& c : req.corrections) list.push_back({{"field", c.field}, {"value", c.value}});
    p.corrections_sealed = ToHex(cipher_.Seal(list.dump(), SealContext(r.id, "corrections")));
  }
  p.body_hash = ToHex(cipher_.LookupHash("idempotency", req.canonical));
  json kinds = json::array();
  for (std::size_t i = 0; i < req.identities.size(); ++i) {
    const auto& identity = req.identities[i];
    p.lookup_hashes.push_back(
        ToHex(cipher_.LookupHash(identity.kind, NormalizeIdentity(identity.kind, identity.value))));
    p.seals.push_back(ToHex(cipher_.Seal(identity.value, SealContext(r.id, fmt::format("identity:{}:{}", i,
                                                                                         identity.kind)))));
    kinds.push_back(identity.kind);
    r.identities.push_back(IdentityView{identity.kind, identity.value});
  }
  const auto ack_by = DateText(r.deadlines.acknowledge_by);
  json detail = {{"type", ToString(req.type)},
                 {"status", ToString(r.status)},
                 {"channel", req.channel},
                 {"identity_kinds", kinds},
                 {"received_at", FormatRfc3339(r.received_at)},
                 {"respond_by", FormatDate(r.deadlines.respond_by)},
                 {"acknowledge_by", ack_by ? json(*ack_by) : json()},
                 {"authorized_agent", req.authorized_agent.has_value()}};
  if (!needs_verification) detail["verification"] = "not_required";
  p.detail_text = detail.dump(-1, ' ', false, json::error_handler_t::replace);
  r.history.push_back(HistoryEntry{0, Timestamp{}, by.name, "created", JsonText{p.detail_text}});
  return p;
}

void Store::Insert(const std::vector<PreparedRequest*>& requests, pqxx::transaction_base* txn) {
  if (requests.empty()) return;
  std::vector<std::string> ids, types, statuses, received_at, received_on, channels, respond_by, sla_states,
      created_by, details, identity_requests, ordinals, kinds, hashes, seals;
  std::vector<std::optional<std::string>> agents, corrections, ack_by, callback_urls;
  for (const PreparedRequest* p : requests) {
    const RequestRecord& r = p->record;
    ids.push_back(r.id);
    types.emplace_back(ToString(r.type));
    statuses.emplace_back(ToString(r.status));
    received_at.push_back(FormatRfc3339(r.received_at));
    received_on.push_back(FormatDate(r.received_on));
    channels.push_back(r.channel);
    agents.push_back(p->agent_sealed);
    corrections.push_back(p->corrections_sealed);
    ack_by.push_back(DateText(r.deadlines.acknowledge_by));
    respond_by.push_back(FormatDate(r.deadlines.respond_by));
    sla_states.emplace_back(ToString(r.stored_sla_state));
    created_by.push_back(r.created_by);
    callback_urls.push_back(r.callback_url);
    details.push_back(p->detail_text);
    for (std::size_t i = 0; i < r.identities.size(); ++i) {
      identity_requests.push_back(r.id);
      ordinals.push_back(std::to_string(i));
      kinds.push_back(r.identities[i].kind);
      hashes.push_back(p->lookup_hashes[i]);
      seals.push_back(p->seals[i]);
    }
  }
  const auto run = [&](pqxx::transaction_base& t) {
    return ExecPrepared(t, "create_requests", kCreateRequestsSql, ArrayLiteral(ids), ArrayLiteral(types),
                        ArrayLiteral(statuses), ArrayLiteral(received_at), ArrayLiteral(received_on),
                        ArrayLiteral(channels), ArrayLiteral(agents), ArrayLiteral(corrections), ArrayLiteral(ack_by),
                        ArrayLiteral(respond_by), ArrayLiteral(sla_states), ArrayLiteral(created_by),
                        ArrayLiteral(callback_urls), ArrayLiteral(details),
                        ArrayLiteral(identity_requests), ArrayLiteral(ordinals), ArrayLiteral(kinds),
                        ArrayLiteral(hashes), ArrayLiteral(seals));
  };
  const pqxx::result returned =
      txn ? run(*txn) : WithSingleWrite(pool_, [&](pqxx::nontransaction& t) { return run(t); });
  std::map<std::string, const pqxx::row*> by_id;
  std::vector<pqxx::row> rows(returned.begin(), returned.end());
  for (const auto& row : rows) by_id.emplace(row[0].as<std::string>(), &row);
  for (PreparedRequest* p : requests) {
    const auto it = by_id.find(p->record.id);
    if (it == by_id.end()) throw std::runtime_error("a new request's created event was not returned");
    const pqxx::row& row = *it->second;
    HistoryEntry& created = p->record.history.front();
    created.id = row[1].as<long long>();
    created.at = FromMicros(row[2].as<long long>());
    p->record.updated_at = FromMicros(row[3].as<long long>());
  }
}

CreateResult Store::Create(const NewRequest& req, const Principal& by, const std::optional<std::string>& idem_key,
                           Timestamp now) {
  return Create(Prepare(req, by, now), by, idem_key);
}

CreateResult Store::Create(PreparedRequest p, const Principal& by, const std::optional<std::string>& idem_key) {
  // Everything but the SQL is done before a connection is taken. The answer to the POST is the request as a read
  // would show it, built from what was written rather than read back: one round trip per request, not two.
  const std::string id = p.record.id;
  if (!idem_key && !p.creates_tasks) {
    Insert({&p});
    return CreateResult{id, false, std::move(p.record)};
  }
  return WithTransaction(pool_, [&](pqxx::work& txn) -> CreateResult {
    if (idem_key) {
      const auto inserted = txn.exec_params(
          "INSERT INTO idempotency_keys (client, key, body_hash, request_id) VALUES ($1, $2, decode($3, 'hex'), "
          "$4::uuid) ON CONFLICT DO NOTHING",
          by.name, *idem_key, p.body_hash, id);
      if (inserted.affected_rows() == 0) {
        const auto first = txn.exec_params1(
            "SELECT encode(body_hash, 'hex'), request_id::text FROM idempotency_keys WHERE client = $1 AND key = $2",
            by.name, *idem_key);
        if (first[0].as<std::string>() != p.body_hash) {
          throw ApiError(ErrorCode::kIdempotencyMismatch,
                         "this Idempotency-Key was already used with a different body", "Idempotency-Key");
        }
        return CreateResult{first[1].as<std::string>(), true, std::nullopt};
      }
    }
    // A retried transaction writes the same request again: Insert only completes the record.
    PreparedRequest attempt = p;
    Insert({&attempt}, &txn);
    if (attempt.creates_tasks) {
      InsertTasks(txn, id, attempt.record.type, attempt.record.deadlines.respond_by);
      return CreateResult{id, false, std::nullopt};
    }
    return CreateResult{id, false, std::move(attempt.record)};
  });
}

namespace {

// GetMany's statement. Whole requests for a batch of ids in one statement, so one round trip whatever the batch's
// size, and in plain columns: the former read built a JSON array per part in correlated subqueries (json_agg),
// which cost PostgreSQL more than the rows themselves, and the daemon then parsed that JSON again.
//
// For each id of $1 (k.n: its position there, from 1), a UNION ALL of four parts in one column layout: n, part,
// seq, then the part's own columns, padded with NULLs to the request row's width. Every column but n, part and seq
// is text, which is how libpq delivers every value anyway.
//   part 0  the request row: kRequestColumns
//   part 1  an identity: kind, sealed value in hex (NULL unless $2: no caller in the batch may see values)
//   part 2  an audit event: at, actor, action, detail (jsonb text)
//   part 3  a task: id, system, action, state, attempts, next attempt (pending) or lease expiry (running), last
//           error, receipt (jsonb text), finished_at
// seq orders a request's rows within a part as the answer lists them: identity ordinal, audit event id, and the
// task's rank by system in the database's collation (what the former ORDER BY t.system inside json_agg gave).
// Rows arrive in no particular order; GetMany sorts each request's by seq.
//
// Why this shape, measured:
// - Per id (LATERAL), each part is a lookup of one key, which PostgreSQL answers from the index whatever a table's
//   size. With `= ANY(ids)` over whole tables instead, the plan made on an empty or small table scanned the tables
//   and was kept while they grew (until the next ANALYZE): intake, whose tables start empty, fell from 2,307 to
//   1,530 requests/s, PostgreSQL's CPU per request from 575 to 1,077 us.
// - The ids come as (SELECT $1::uuid[]), a sub-select, not as $1 itself: the planner then cannot see how many there
//   are, so the plan it makes once (the generic plan) costs what a plan for one call's ids would, and PostgreSQL
//   keeps using it. Seeing a 1-id array, it estimated every new plan cheaper than the generic one (which assumes 10)
//   and planned the four-part statement again at every call: 460 us of PostgreSQL CPU per read instead of ~130.
constexpr int kNColumn = 0;
constexpr int kPartColumn = 1;
constexpr int kSeqColumn = 2;
constexpr int kOwnColumn = 3;  // part 0's kRequestColumns, or the first column of parts 1-3

std::string Micros(std::string_view timestamp) {
  return fmt::format("(extract(epoch from {}) * 1000000)::bigint::text", timestamp);
}

std::string GetManySql() {
  // Parts 1-3 fill `used` columns; the rest of the request row's width is NULL.
  auto pad = [](int used) {
    std::string out;
    for (int i = used; i < kColumnCount; ++i) out += ", NULL";
    return out;
  };
  return fmt::format(
      "SELECT k.n, x.* FROM unnest((SELECT $1::uuid[])) WITH ORDINALITY AS k(id, n) CROSS JOIN LATERAL ("
      "SELECT 0, NULL::bigint, {0} FROM requests r WHERE r.id = k.id "
      "UNION ALL "
      "SELECT 1, i.ordinal::bigint, i.kind, CASE WHEN $2::boolean THEN encode(i.value_sealed, 'hex') END{1} "
      "FROM request_identities i WHERE i.request_id = k.id "
      "UNION ALL "
      "SELECT 2, a.id, {2}, a.actor, a.action, a.detail::text{3} FROM audit_events a WHERE a.request_id = k.id "
      "UNION ALL "
      "SELECT 3, row_number() OVER (ORDER BY t.system), t.id::text, t.system, t.action, t.state, t.attempts::text, "
      "{4}, t.last_error, t.receipt::text, {5}{6} FROM tasks t WHERE t.request_id = k.id) x",
      RequestColumns("::text"), pad(2), Micros("a.at"), pad(4),
      Micros("CASE t.state WHEN 'pending' THEN t.next_attempt_at WHEN 'running' THEN t.lease_expires_at END"),
      Micros("t.finished_at"), pad(9));
}

std::string_view FieldView(const pqxx::field& f) { return std::string_view(f.c_str(), f.size()); }

}  // namespace

std::optional<RequestRecord> Store::Get(const std::string& id, bool with_values) {
  const ReadKey key{id, with_values};
  auto results = GetMany(std::span<const ReadKey>(&key, 1));
  if (results[0].error) std::rethrow_exception(results[0].error);
  return std::move(results[0].record);
}

const std::string& Store::InsertStatement() { return kCreateRequestsSql; }

const std::string& Store::GetManyStatement() {
  static const std::string sql = GetManySql();
  return sql;
}

std::vector<ReadResult> Store::GetMany(std::span<const ReadKey> keys) {
  const std::string& sql = GetManyStatement();
  // One slot per distinct (id, with_values): a request read both with and without values is decoded twice, so
  // that a record without values never held them.
  struct Slot {
    bool with_values = false;
    int same_id = -1;  // the next slot with the same id
    int uses = 0;      // keys answered from this slot
    int request_row = -1;
    std::vector<std::pair<long long, int>> parts[3];  // (seq, row) of identities, audit events, tasks
    ReadResult result;
  };
  std::vector<Slot> slots;
  std::vector<int> slot_of(keys.size(), -1);
  std::unordered_map<std::string_view, int> id_index;  // id -> its position in `ids`
  std::vector<std::string> ids;                        // distinct, for the statement: k.n - 1 indexes it
  std::vector<int> first_slot;                         // per position in `ids`
  bool any_values = false;
  slots.reserve(keys.size());
  ids.reserve(keys.size());  // id_index's keys point into it
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (!IsUuid(keys[k].id)) continue;  // never found; and ::uuid[] would refuse the whole batch
    std::string id(keys[k].id);
    for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto it = id_index.find(id);
    int s = it == id_index.end() ? -1 : first_slot[it->second];
    while (s >= 0 && slots[s].with_values != keys[k].with_values) s = slots[s].same_id;
    if (s < 0) {
      s = static_cast<int>(slots.size());
      Slot& slot = slots.emplace_back();
      slot.with_values = keys[k].with_values;
      if (it == id_index.end()) {
        ids.push_back(std::move(id));
        first_slot.push_back(s);
        id_index.emplace(ids.back(), static_cast<int>(ids.size()) - 1);
      } else {
        slot.same_id = first_slot[it->second];
        first_slot[it->second] = s;
      }
    }
    any_values = any_values || keys[k].with_values;
    slot_of[k] = s;
    ++slots[s].uses;
  }
  std::vector<ReadResult> out(keys.size());
  if (slots.empty()) return out;

  const pqxx::result rows = WithSingleRead(pool_, [&](pqxx::nontransaction& txn) {
    return ExecPrepared(txn, "get_requests", sql, ArrayLiteral(ids), any_values);
  });
  for (int i = 0; i < static_cast<int>(rows.size()); ++i) {
    const pqxx::row row = rows[i];
    const auto n = row[kNColumn].as<std::size_t>();
    if (n < 1 || n > ids.size()) continue;  // not asked for: cannot happen
    const int part = row[kPartColumn].as<int>();
    const long long seq = part == 0 ? 0 : row[kSeqColumn].as<long long>();
    for (int s = first_slot[n - 1]; s >= 0; s = slots[s].same_id) {
      if (part == 0) {
        slots[s].request_row = i;
      } else if (part >= 1 && part <= 3) {
        slots[s].parts[part - 1].emplace_back(seq, i);
      }
    }
  }

  for (Slot& slot : slots) {
    if (slot.request_row < 0) continue;
    // A row that does not decode fails its own request only, not the batch's others.
    try {
      for (auto& part : slot.parts) std::sort(part.begin(), part.end());
      RequestRecord record = RowToRecord(rows[slot.request_row], kOwnColumn);
      const pqxx::row request_row = rows[slot.request_row];
      for (const auto& [ordinal, i] : slot.parts[0]) {
        const pqxx::row row = rows[i];
        IdentityView view{row[kOwnColumn].as<std::string>(), std::nullopt};
        if (slot.with_values) {
          const auto sealed = row[kOwnColumn + 1].is_null() ? std::nullopt : FromHex(FieldView(row[kOwnColumn + 1]));
          const std::string context = SealContext(record.id, fmt::format("identity:{}:{}", ordinal, view.kind));
          view.value = sealed ? cipher_.Open(*sealed, context) : std::nullopt;
          if (!view.value) LogError("request {}: an identity does not open with the configured key", record.id);
        }
        record.identities.push_back(std::move(view));
      }
      for (const auto& [event_id, i] : slot.parts[1]) {
        const pqxx::row row = rows[i];
        record.history.push_back(HistoryEntry{event_id, FromMicros(row[kOwnColumn].as<long long>()),
                                              row[kOwnColumn + 1].as<std::string>(),
                                              row[kOwnColumn + 2].as<std::string>(),
                                              JsonText{row[kOwnColumn + 3].as<std::string>()}});
      }
      for (const auto& [rank, i] : slot.parts[2]) {
        const pqxx::row row = rows[i];
        TaskView t;
        t.id = row[kOwnColumn].as<std::string>();
        t.system = row[kOwnColumn + 1].as<std::string>();
        t.action = row[kOwnColumn + 2].as<std::string>();
        t.state = row[kOwnColumn + 3].as<std::string>();
        t.attempts = row[kOwnColumn + 4].as<int>();
        t.next_attempt_at = OptTimestamp(row[kOwnColumn + 5]);
        t.last_error = OptString(row[kOwnColumn + 6]);
        if (!row[kOwnColumn + 7].is_null()) t.receipt.text = row[kOwnColumn + 7].as<std::string>();
        t.finished_at = OptTimestamp(row[kOwnColumn + 8]);
        record.tasks.push_back(std::move(t));
      }
      if (slot.with_values) {
        if (const auto agent = request_row[kOwnColumn + 21]; !agent.is_null()) {
          if (auto opened = cipher_.Open(*FromHex(FieldView(agent)), SealContext(record.id, "agent"))) {
            record.authorized_agent = json::parse(*opened);
          }
        }
        if (const auto sealed = request_row[kOwnColumn + 22]; !sealed.is_null()) {
          if (auto opened = cipher_.Open(*FromHex(FieldView(sealed)), SealContext(record.id, "corrections"))) {
            for (const auto& c : json::parse(*opened)) {
              record.corrections.push_back(
                  CorrectionInput{c["field"].get<std::string>(), c["value"].get<std::string>()});
            }
          }
        }
      }
      slot.result.record = std::move(record);
    } catch (...) {
      slot.result = ReadResult{std::nullopt, std::current_exception()};
    }
  }
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (slot_of[k] < 0) continue;
    Slot& slot = slots[slot_of[k]];
    out[k] = --slot.uses == 0 ? std::move(slot.result) : slot.result;
  }
  return out;
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
  // Reads only the tallies of migration 0004 (a few hundred rows whatever the number of requests) and two index
  // probes: a poll never scans requests.
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    SlaSummary s;
    for (const auto& row : txn.exec("SELECT status, type, sla_state, sum(n) FROM sla_request_tallies "
                                    "GROUP BY 1, 2, 3 HAVING sum(n) <> 0")) {
      const std::string status = row[0].as<std::string>();
      const long long n = row[3].as<long long>();
      s.by_status[status] += n;
      s.by_sla_state[row[2].as<std::string>()] += n;
      const auto parsed = ParseRequestStatus(status);
      if (parsed && IsOpen(*parsed)) {
        s.by_type[row[1].as<std::string>()] += n;
        s.open_by_type_sla[row[1].as<std::string>()][row[2].as<std::string>()] += n;
        s.open += n;
      }
    }
    for (const auto& row : txn.exec("SELECT system, sla_state, sum(tasks), sum(unfinished) FROM sla_system_tallies "
                                    "GROUP BY 1, 2 HAVING sum(tasks) <> 0 OR sum(unfinished) <> 0")) {
      s.open_by_system_sla[row[0].as<std::string>()][row[1].as<std::string>()] += row[2].as<long long>();
      s.unfinished_tasks_by_system[row[0].as<std::string>()] += row[3].as<long long>();
    }
    // Walks the primary key in respond_by order and stops at the tenth day that still has open requests; the
    // sweep deletes days whose count fell to zero, so few are skipped.
    for (const auto& row : txn.exec("SELECT respond_by::text, sum(n) FROM sla_due_tallies GROUP BY respond_by "
                                    "HAVING sum(n) <> 0 ORDER BY respond_by LIMIT 10")) {
      s.next_due.emplace_back(DateField(row[0]), row[1].as<long long>());
    }
    const auto ack = txn.exec1(  // one probe of requests_ack_due
        "SELECT min(acknowledge_by)::text FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL AND "
        "acknowledge_by IS NOT NULL");
    s.next_acknowledge_by = OptDate(ack[0]);
    return s;
  });
}

nlohmann::json Store::YearMetrics(int year) {
  if (year < 2020 || year > 2100) throw ApiError(ErrorCode::kInvalidField, "'year' must be between 2020 and 2100", "year");
  return WithTransaction(pool_, [&](pqxx::work& txn) { return ComputeYearMetrics(txn, year, calendar_.Zone()->name()); });
}

MetricGauges Store::ReadMetricGauges(Timestamp now) {
  const LocalDate today = Today(now);
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    MetricGauges g;
    for (const auto& row : txn.exec(
             "SELECT type, sla_state, count(*) FROM requests WHERE closed_at IS NULL GROUP BY 1, 2")) {
      g.open_requests[{row[0].as<std::string>(), row[1].as<std::string>()}] = row[2].as<long long>();
    }
    // One pass over open requests: a count at or below each bucket's bound, and the sum and count.
    std::string buckets;
    for (int bound : kDaysLeftBuckets) buckets += fmt::format("count(*) FILTER (WHERE respond_by - $1::date <= {}), ", bound);
    const auto days = txn.exec_params1(
        fmt::format("SELECT {} count(*), coalesce(sum(respond_by - $1::date), 0) FROM requests WHERE closed_at IS NULL",
                    buckets),
        FormatDate(today));
    for (std::size_t i = 0; i < kDaysLeftBuckets.size(); ++i) g.days_left_cumulative.push_back(days[static_cast<int>(i)].as<long long>());
    g.days_left_count = days[static_cast<int>(kDaysLeftBuckets.size())].as<long long>();
    g.days_left_sum = days[static_cast<int>(kDaysLeftBuckets.size()) + 1].as<long long>();
    for (const auto& row : txn.exec(
             "SELECT connector, state, count(*) FROM tasks WHERE state IN ('pending', 'running', 'needs_manual', "
             "'failed') GROUP BY 1, 2")) {
      g.tasks[{row[0].as<std::string>(), row[1].as<std::string>()}] = row[2].as<long long>();
    }
    const auto due = txn.exec1(
        "SELECT count(*), extract(epoch FROM now() - min(next_attempt_at))::float8 FROM tasks "
        "WHERE state = 'pending' AND next_attempt_at <= now()");
    g.due_tasks = due[0].as<long long>();
    if (!due[1].is_null()) g.oldest_due_age_seconds = std::max(0.0, due[1].as<double>());
    return g;
  });
}

void Store::Apply(const std::string& id, const ActionInput& action, const Principal& by, Timestamp now) {
  if (!IsUuid(id)) throw ApiError(ErrorCode::kNotFound, "no request with this id");
  WithTransaction(pool_, [&](pqxx::work& txn) {
    const auto rows = txn.exec_params(
        fmt::format("SELECT {} FROM requests r WHERE r.id = $1::uuid FOR UPDATE", kRequestColumns), id);
    if (rows.empty()) throw ApiError(ErrorCode::kNotFound, "no request with this id");
    RequestRecord r = RowToRecord(rows[0]);
    if (action.event == RequestEvent::kCompletePartially) {
      // An admin closes a request whose fan-out cannot finish: only once nothing is still running or queued.
      const auto open = txn.exec_params1(
          "SELECT count(*) FILTER (WHERE state IN ('pending', 'running')), count(*) FILTER (WHERE state = 'failed'), "
          "count(*) FROM tasks WHERE request_id = $1::uuid",
          id);
      if (open[0].as<long>() > 0) {
        throw ApiError(ErrorCode::kTransitionNotAllowed,
                       fmt::format("{} tasks are still pending or running; wait for them or let them fail first",
                                   open[0].as<long>()));
      }
      if (open[1].as<long>() == 0) {
        throw ApiError(ErrorCode::kTransitionNotAllowed,
                       "no task has failed: a request whose tasks all finish completes by itself");
      }
    }
    ApplyLocked(txn, r, action, by, now);
    // What the systems that did answer returned is still the consumer's to receive.
    if (action.event == RequestEvent::kCompletePartially && r.type == RequestType::kAccess) SealPackage(txn, id, now);
  });
}

void Store::ApplyLocked(pqxx::work& txn, RequestRecord& r, const ActionInput& action, const Principal& by,
                        Timestamp now) {
  const std::string id = r.id;
  const LocalDate today = Today(now);
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
  txn.exec_params(
      "UPDATE requests SET status = $2, acknowledged_on = $3::date, acknowledged_at = $4::timestamptz, "
      "verified_at = $5::timestamptz, verification = $6::jsonb, extended = $7, extension_reason = $8, "
      "respond_by = $9::date, closed_at = $10::timestamptz, closed_on = $11::date, denial_reason = $12, "
      "denial_detail = $13, sla_state = $14, updated_at = now() WHERE id = $1::uuid",
      id, std::string(ToString(r.status)), OrNull(ack_on), OrNull(ack_at), OrNull(verified_at), OrNull(verification),
      r.extended, OrNull(r.extension_reason), FormatDate(r.deadlines.respond_by), OrNull(closed_at),
      OrNull(closed_on), OrNull(denial_reason), OrNull(r.denial_detail), std::string(ToString(sla.state)));
  r.stored_sla_state = sla.state;
  AppendAudit(txn, id, by.name, std::string(ToString(action.event)), detail);
  if (action.event == RequestEvent::kExtend) {
    txn.exec_params("UPDATE tasks SET respond_by = $2::date WHERE request_id = $1::uuid", id,
                    FormatDate(r.deadlines.respond_by));
  }
  if (from != RequestStatus::kInProgress && r.status == RequestStatus::kInProgress) {
    InsertTasks(txn, id, r.type, r.deadlines.respond_by);
  }
  if (!IsOpen(r.status)) {
    // Work not yet done for a closed request stops; what already finished keeps its receipt.
    const auto stopped = txn.exec_params(
        "UPDATE tasks SET state = 'cancelled', lease_owner = NULL, finished_at = now(), updated_at = now(), "
        "last_error = 'the request was closed (' || $2 || ') before this task finished' "
        "WHERE request_id = $1::uuid AND state IN ('pending', 'running', 'needs_manual')",
        id, std::string(ToString(r.status)));
    if (stopped.affected_rows() > 0) {
      AppendAudit(txn, id, by.name, "tasks_cancelled", {{"count", stopped.affected_rows()}});
    }
  }
  if (from != r.status) EnqueueCallback(txn, r, from, now);
}

int Store::SweepSla(Timestamp now) {
  const LocalDate today = Today(now);
  const std::string today_text = FormatDate(today);
  int changed = 0;
  int kept = 0;
  // The open requests whose state changes today, found from their deadlines (migration 0008): one keyset walk per
  // way a state changes by itself (EvaluateSla), each over an index of open requests, so a sweep reads only rows
  // that change, whatever was stored before. $1 the pass's bound day, $2/$3 the keyset, $4 the batch size.
  struct Pass {
    const char* due;    // the rows of this way still in the old state
    const char* day;    // the indexed date the walk is ordered by
    bool at_risk_days;  // the bound is today + at_risk_days rather than today
  };
  static constexpr Pass kPasses[] = {
      // on_track -> at_risk (at most at_risk_days left), or breached if respond_by already passed
      {"r.sla_state = 'on_track' AND r.respond_by <= $1::date", "r.respond_by", true},
      // at_risk -> breached: respond_by passed
      {"r.sla_state = 'at_risk' AND r.respond_by < $1::date", "r.respond_by", false},
      // on_track or at_risk -> breached: acknowledge_by passed without an acknowledgement
      {"r.acknowledged_on IS NULL AND r.acknowledge_by IS NOT NULL AND r.sla_state <> 'breached' "
       "AND r.acknowledge_by < $1::date",
       "r.acknowledge_by", false},
  };
  // Set-based: one SELECT, one UPDATE and one audit INSERT per batch, whatever its size. Big batches keep the round
  // trips few; each batch is its own transaction so that row locks are held briefly.
  constexpr int kBatch = 5000;
  struct Batch {
    int seen = 0;
    int changed = 0;
    std::string last_day, last_id;
    std::vector<std::string> breaches;  // a warning line for each request this batch breached
  };
  // A breach is worth a warning of its own, but not hundreds of thousands of them (a sweep after weeks away, or a
  // restored backup): past the first ones the sweep says how many more; each has its sla_changed audit event.
  constexpr int kBreachLines = 100;
  int breach_lines = 0;
  long long breaches_not_logged = 0;
  for (const Pass& pass : kPasses) {
    // The keyset makes every walk finish: a row is never read twice by one walk, even one whose state did not change
    // or whose lock someone else held (those are revisited by the next sweep; the holder recomputes the state anyway).
    const std::string bound = pass.at_risk_days ? FormatDate(today + date::days{at_risk_days_}) : today_text;
    std::string after_day = "-infinity";
    std::string after_id = "00000000-0000-0000-0000-000000000000";
    const std::string select =
        fmt::format("SELECT {0}, {1}::text FROM requests r WHERE r.closed_at IS NULL AND {2} "
                    "AND ({1}, r.id) > ($2::date, $3::uuid) ORDER BY {1}, r.id LIMIT $4 FOR UPDATE SKIP LOCKED",
                    kRequestColumns, pass.day, pass.due);
    for (;;) {
      // Everything the batch learns is returned, not accumulated: WithTransaction may run it again after a deadlock.
      const Batch batch = WithTransaction(pool_, [&](pqxx::work& txn) {
        const auto rows = txn.exec_params(select, bound, after_day, after_id, kBatch);
        if (rows.empty()) return Batch{};
        std::vector<std::string> ids, states, from, respond_by, days_left, breaches;
        for (const auto& row : rows) {
          const RequestRecord r = RowToRecord(row);
          const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days_);
          if (sla.state == r.stored_sla_state) continue;
          ids.push_back(r.id);
          states.emplace_back(ToString(sla.state));
          from.emplace_back(ToString(r.stored_sla_state));
          respond_by.push_back(FormatDate(r.deadlines.respond_by));
          days_left.push_back(std::to_string(sla.days_left.value_or(0)));
          if (sla.state == SlaState::kBreached) {
            breaches.push_back(fmt::format(
                "request {}: sla breached (acknowledge_by {}, acknowledged {}, respond_by {})", r.id,
                r.deadlines.acknowledge_by ? FormatDate(*r.deadlines.acknowledge_by) : "none",
                r.acknowledged_on ? FormatDate(*r.acknowledged_on) : "no", FormatDate(r.deadlines.respond_by)));
          }
        }
        if (!ids.empty()) {
          txn.exec_params("UPDATE requests r SET sla_state = u.state FROM unnest($1::uuid[], $2::text[]) "
                          "AS u(id, state) WHERE r.id = u.id",
                          ArrayLiteral(ids), ArrayLiteral(states));
          // The same detail as one AppendAudit per change; WITH ORDINALITY keeps the events in the batch's order.
          txn.exec_params(
              "INSERT INTO audit_events (request_id, actor, action, detail) "
              "SELECT u.id, 'system:sweeper', 'sla_changed', jsonb_build_object('from', u.from_state, 'to', "
              "u.to_state, 'respond_by', u.respond_by, 'days_left', u.days_left) "
              "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[]) WITH ORDINALITY "
              "AS u(id, from_state, to_state, respond_by, days_left, ord) ORDER BY u.ord",
              ArrayLiteral(ids), ArrayLiteral(from), ArrayLiteral(states), ArrayLiteral(respond_by),
              ArrayLiteral(days_left));
        }
        return Batch{static_cast<int>(rows.size()), static_cast<int>(ids.size()),
                     rows.back()[kColumnCount].as<std::string>(), rows.back()[0].as<std::string>(),
                     std::move(breaches)};
      });
      // Logged once the batch has committed, so that a line never reports a change that was rolled back.
      for (const auto& line : batch.breaches) {
        if (breach_lines < kBreachLines) {
          LogLine(LogLevel::kWarning, line);
          ++breach_lines;
        } else {
          ++breaches_not_logged;
        }
      }
      changed += batch.changed;
      kept += batch.seen - batch.changed;
      if (batch.seen < kBatch) break;
      after_day = batch.last_day;
      after_id = batch.last_id;
    }
  }
  if (breaches_not_logged > 0) {
    LogWarning("sweeper: {} more requests breached in this sweep (their sla_changed audit events name them)",
               breaches_not_logged);
  }
  // Every row a walk reads should change state; one that does not means the walks and EvaluateSla disagree.
  if (kept > 0) LogWarning("sweeper: {} requests were due by their deadlines but kept their sla state", kept);
  // Days of sla_due_tallies that no open request falls due on any more; Summary skips them, this keeps them few.
  WithTransaction(pool_, [&](pqxx::work& txn) { txn.exec("DELETE FROM sla_due_tallies WHERE n = 0"); });
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
                                      JsonText{row[4].as<std::string>()}});
    page.request_ids.push_back(row[5].as<std::string>());
  }
  return page;
}

}  // namespace rightsd

// ---------------------------------------------------------------------------------------------------------------
// The engine's side of the store.

namespace rightsd {

namespace {

// The claim statements' parameters: the systems with a free slot and how many tasks each may take, as two
// parallel arrays.
std::pair<std::vector<std::string>, std::vector<std::string>> ClaimLimitArrays(
    const std::vector<std::pair<std::string, int>>& limits) {
  std::pair<std::vector<std::string>, std::vector<std::string>> arrays;
  for (const auto& [system, n] : limits) {
    if (n <= 0) continue;
    arrays.first.push_back(system);
    arrays.second.push_back(std::to_string(n));
  }
  return arrays;
}

using CorrectionsByRequest = std::map<std::string, std::vector<connectors::Correction>>;

// A claimed task from a claim query's row (id, request_id, system, action, request_type, attempts, max_attempts,
// continuation, retain_basis, the request's sealed corrections); each request's corrections are opened once.
ClaimedTask ClaimedTaskFromRow(const pqxx::row& row, const PiiCipher& cipher, CorrectionsByRequest& corrections) {
  ClaimedTask t;
  t.id = row[0].as<std::string>();
  t.request_id = row[1].as<std::string>();
  t.system = row[2].as<std::string>();
  t.action = row[3].as<std::string>();
  t.request_type = row[4].as<std::string>();
  t.attempts = row[5].as<int>();
  t.max_attempts = row[6].as<int>();
  t.continuation = row[7].is_null() ? json() : json::parse(row[7].c_str());
  t.retain_basis = row[8].as<std::string>();
  if (!row[9].is_null() && !corrections.count(t.request_id)) {
    auto& list = corrections[t.request_id];
    if (auto opened = cipher.Open(*FromHex(row[9].c_str()), SealContext(t.request_id, "corrections"))) {
      for (const auto& c : json::parse(*opened)) list.push_back({c["field"], c["value"]});
    }
  }
  return t;
}

// Gives each claimed task its request's identities (opened) and corrections: one query for all their requests.
void AttachSubjects(pqxx::transaction_base& txn, const PiiCipher& cipher, std::vector<ClaimedTask>& claimed,
                    CorrectionsByRequest& corrections) {
  std::set<std::string> request_ids;
  for (const auto& t : claimed) request_ids.insert(t.request_id);
  std::map<std::string, std::vector<connectors::Identity>> identities;
  for (const auto& row : ExecPrepared(
           txn, "claim_identities",
           "SELECT request_id::text, ordinal, kind, encode(value_sealed, 'hex') FROM request_identities "
           "WHERE request_id = ANY($1::uuid[]) ORDER BY request_id, ordinal",
           ArrayLiteral(std::vector<std::string>(request_ids.begin(), request_ids.end())))) {
    const std::string rid = row[0].as<std::string>();
    const std::string kind = row[2].as<std::string>();
    auto opened = cipher.Open(*FromHex(row[3].c_str()),
                              SealContext(rid, fmt::format("identity:{}:{}", row[1].as<int>(), kind)));
    if (!opened) {
      LogError("request {}: an identity does not open with the configured key", rid);
      continue;
    }
    identities[rid].push_back({kind, *opened});
  }
  for (auto& t : claimed) {
    t.identities = identities[t.request_id];
    t.corrections = corrections[t.request_id];
  }
}


using connectors::Outcome;
using connectors::OutcomeKind;

std::chrono::milliseconds Backoff(int attempts, const RetryPolicy& policy) {
  // Exponential with "equal jitter": half fixed, half random, so that many tasks failing together spread out.
  const int exponent = std::clamp(attempts - 1, 0, 30);
  const double full = std::min(static_cast<double>(policy.max.count()),
                               static_cast<double>(policy.base.count()) * static_cast<double>(1LL << exponent));
  const double jitter = static_cast<double>(randombytes_uniform(1000001)) / 1000000.0;
  return std::chrono::milliseconds(static_cast<long long>(full / 2 + full / 2 * jitter));
}

std::string TaskRecordsContext(const std::string& task_id) { return task_id + ":records"; }
std::string PackageContext(const std::string& request_id) { return request_id + ":package"; }

std::string Truncate(std::string s, std::size_t n) {
  if (s.size() > n) s = s.substr(0, n) + "...";
  return s;
}

}  // namespace

void Store::InsertTasks(pqxx::work& txn, const std::string& request_id, RequestType type, LocalDate respond_by) {
  if (!data_map_) return;
  const auto plan = data_map_->Plan(type);
  json systems = json::array();
  for (const auto& p : plan) {
    txn.exec_params(
        "INSERT INTO tasks (id, request_id, system, connector, action, state, respond_by, max_attempts, retain_basis) "
        "VALUES ($1::uuid, $2::uuid, $3, $4, $5, 'pending', $6::date, $7, $8) ON CONFLICT (request_id, system) DO NOTHING",
        NewUuid(), request_id, p.system->name, p.system->connector_type, std::string(connectors::ToString(p.action)),
        FormatDate(respond_by), p.system->max_attempts,
        p.action == connectors::TaskAction::kLocate ? p.system->retain_basis.c_str() : nullptr);
    systems.push_back({{"system", p.system->name}, {"action", connectors::ToString(p.action)}});
  }
  if (!plan.empty()) AppendAudit(txn, request_id, "system:engine", "fanned_out", {{"tasks", systems}});
}

void Store::EnqueueCallback(pqxx::work& txn, const RequestRecord& r, RequestStatus from, Timestamp now) {
  if (!r.callback_url || !callbacks_enabled_) return;
  const json body = {{"event", "request.status_changed"},
                     {"request_id", r.id},
                     {"type", ToString(r.type)},
                     {"status", ToString(r.status)},
                     {"previous_status", ToString(from)},
                     {"respond_by", FormatDate(r.deadlines.respond_by)},
                     {"sla_state", ToString(r.stored_sla_state)},
                     {"at", FormatRfc3339(now)}};
  txn.exec_params("INSERT INTO callbacks (request_id, url, body) VALUES ($1::uuid, $2, $3::jsonb)", r.id,
                  *r.callback_url, body.dump());
}

void Store::SealPackage(pqxx::work& txn, const std::string& request_id, Timestamp now) {
  json systems = json::object();
  json retained = json::array();
  json not_found = json::array();
  json not_answered = json::array();  // failed systems of a request an admin closed as partially completed
  for (const auto& t : txn.exec_params(
           "SELECT id::text, system, state, encode(records_sealed, 'hex'), retain_basis FROM tasks "
           "WHERE request_id = $1::uuid ORDER BY system",
           request_id)) {
    const std::string task_id = t[0].as<std::string>();
    const std::string system = t[1].as<std::string>();
    const std::string state = t[2].as<std::string>();
    if (state == "retained_exempt") {
      retained.push_back({{"system", system}, {"basis", t[4].is_null() ? "" : t[4].as<std::string>()}});
    } else if (state == "not_found") {
      not_found.push_back(system);
    } else if (state == "failed") {
      not_answered.push_back(system);
    }
    if (t[3].is_null()) continue;
    const auto opened = cipher_.Open(*FromHex(t[3].c_str()), TaskRecordsContext(task_id));
    if (!opened) throw std::runtime_error(fmt::format("task {}: records do not open with the configured key", task_id));
    systems[system] = RedactForDisclosure(json::parse(*opened));
  }
  const json package = {{"request_id", request_id},
                        {"generated_at", FormatRfc3339(now)},
                        {"systems", systems},
                        {"retained_exempt", retained},
                        {"not_found", not_found},
                        {"not_answered", not_answered},
                        {"withheld_items_note", kWithheldStatement}};
  txn.exec_params(
      "INSERT INTO request_packages (request_id, package_sealed) VALUES ($1::uuid, decode($2, 'hex')) "
      "ON CONFLICT (request_id) DO NOTHING",
      request_id, ToHex(cipher_.Seal(package.dump(), PackageContext(request_id))));
}

void Store::CompleteIfFinished(pqxx::work& txn, const std::string& request_id, Timestamp now) {
  const auto rows = txn.exec_params(
      fmt::format("SELECT {} FROM requests r WHERE r.id = $1::uuid FOR UPDATE", kRequestColumns), request_id);
  if (rows.empty()) return;
  RequestRecord r = RowToRecord(rows[0]);
  if (r.status != RequestStatus::kInProgress) return;
  const auto counts = txn.exec_params1(
      "SELECT count(*), count(*) FILTER (WHERE state IN ('done', 'not_found', 'retained_exempt')) FROM tasks "
      "WHERE request_id = $1::uuid",
      request_id);
  const long total = counts[0].as<long>();
  if (total == 0 || counts[1].as<long>() != total) return;

  if (r.type == RequestType::kAccess) SealPackage(txn, request_id, now);
  ActionInput complete;
  complete.event = RequestEvent::kComplete;
  complete.detail = {{"tasks", total}};
  ApplyLocked(txn, r, complete, Principal{Role::kAdmin, "system:engine"}, now);
}

std::vector<ClaimedTask> Store::ClaimTasks(const std::vector<std::pair<std::string, int>>& limits,
                                           const std::string& owner, std::chrono::milliseconds lease) {
  const auto [systems, counts] = ClaimLimitArrays(limits);
  if (systems.empty()) return {};
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    std::vector<ClaimedTask> claimed;
    // Per system, expired leases first (work another process dropped), then due pending tasks up to the system's
    // limit, each read in claim order from its own partial index (migrations/0005): a claim reads about as many
    // index entries as it takes, where an OR of the two states would scan both sets whole.
    const auto rows = txn.exec_params(
        "WITH w AS (SELECT * FROM unnest($1::text[], $2::int[]) AS w(system, n)), "
        "expired AS (SELECT e.id, w.system FROM w CROSS JOIN LATERAL (SELECT id FROM tasks WHERE system = w.system "
        "AND state = 'running' AND lease_expires_at <= now() ORDER BY lease_expires_at LIMIT w.n "
        "FOR UPDATE SKIP LOCKED) e), "
        "ready AS (SELECT p.id FROM w CROSS JOIN LATERAL (SELECT id FROM tasks WHERE system = w.system AND "
        "state = 'pending' AND next_attempt_at <= now() ORDER BY respond_by, next_attempt_at "
        "LIMIT w.n - (SELECT count(*) FROM expired x WHERE x.system = w.system) FOR UPDATE SKIP LOCKED) p), "
        "due AS (SELECT id FROM expired UNION ALL SELECT id FROM ready) "
        "UPDATE tasks t SET state = 'running', lease_owner = $3, lease_expires_at = now() + $4 * interval '1 "
        "millisecond', attempts = t.attempts + CASE WHEN t.continuation IS NULL THEN 1 ELSE 0 END, updated_at = now() "
        "FROM due, requests r WHERE t.id = due.id AND r.id = t.request_id "
        "RETURNING t.id::text, t.request_id::text, t.system, t.action, r.type, t.attempts, t.max_attempts, "
        "t.continuation::text, coalesce(t.retain_basis, ''), encode(r.corrections_sealed, 'hex')",
        ArrayLiteral(systems), ArrayLiteral(counts), owner, static_cast<long long>(lease.count()));
    if (rows.empty()) return claimed;
    CorrectionsByRequest corrections;
    for (const auto& row : rows) claimed.push_back(ClaimedTaskFromRow(row, cipher_, corrections));
    AttachSubjects(txn, cipher_, claimed, corrections);
    return claimed;
  });
}

void Store::RenewLeases(const std::vector<std::string>& task_ids, const std::string& owner,
                        std::chrono::milliseconds lease) {
  if (task_ids.empty()) return;
  WithTransaction(pool_, [&](pqxx::work& txn) {
    // A task a committer has locked is being finished: skipped rather than waited for, so that a renewal and a
    // batch of outcomes, which lock many task rows each, never wait on each other in a cycle.
    txn.exec_params(
        "UPDATE tasks SET lease_expires_at = now() + $3 * interval '1 millisecond' WHERE id IN (SELECT id FROM tasks "
        "WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND state = 'running' FOR UPDATE SKIP LOCKED)",
        ArrayLiteral(task_ids), owner, static_cast<long long>(lease.count()));
  });
}

void Store::ReleaseLeases(const std::vector<std::string>& task_ids, const std::string& owner) {
  if (task_ids.empty()) return;
  WithTransaction(pool_, [&](pqxx::work& txn) {
    // A task given back this way did not fail: its attempt is not counted against it.
    txn.exec_params(
        "UPDATE tasks SET state = CASE WHEN continuation IS NULL THEN 'pending' ELSE 'running' END, "
        "attempts = CASE WHEN continuation IS NULL THEN greatest(attempts - 1, 0) ELSE attempts END, "
        "lease_owner = NULL, lease_expires_at = now(), next_attempt_at = now(), updated_at = now() "
        "WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND state = 'running'",
        ArrayLiteral(task_ids), owner);
  });
}

namespace {

// What one outcome writes to its task row, worked out before the transaction so that a retried transaction
// writes the same thing (same backoff draw, same sealed records).
struct PlannedOutcome {
  std::string state;
  std::optional<std::string> error;
  std::optional<std::string> records;  // hex of the sealed records
  std::optional<std::string> continuation;
  std::optional<std::string> receipt;
  long long delay_ms = 0;
  bool finished = false;  // done, not_found or retained_exempt: counts towards completing the request
};

PlannedOutcome PlanOutcome(const ClaimedTask& task, const Outcome& outcome, const RetryPolicy& policy,
                           const PiiCipher& cipher) {
  PlannedOutcome p;
  switch (outcome.kind) {
    case OutcomeKind::kDone: p.state = "done"; p.finished = true; break;
    case OutcomeKind::kNotFound: p.state = "not_found"; p.finished = true; break;
    case OutcomeKind::kRetainedExempt: p.state = "retained_exempt"; p.finished = true; break;
    case OutcomeKind::kNeedsManual: p.state = "needs_manual"; break;
    case OutcomeKind::kFailed:
      p.state = "failed";
      p.error = Truncate(outcome.message, 2000);
      break;
    case OutcomeKind::kRetry:
      if (task.attempts >= task.max_attempts) {
        p.state = "failed";
        p.error = Truncate(fmt::format("gave up after {} attempts: {}", task.attempts, outcome.message), 2000);
      } else {
        p.state = "pending";
        p.error = Truncate(outcome.message, 2000);
        // The peer's Retry-After is a floor, not the delay: a system that says "1 s" all through a long outage
        // would otherwise use up max_attempts in seconds and dead-letter tasks it is about to accept.
        p.delay_ms = std::max(outcome.retry_after ? std::min(*outcome.retry_after, std::chrono::milliseconds(86400000))
                                                  : std::chrono::milliseconds(0),
                              Backoff(task.attempts, policy))
                         .count();
      }
      break;
    case OutcomeKind::kInProgress:
      p.state = "running";
      p.continuation = outcome.continuation.is_null() ? json::object().dump() : outcome.continuation.dump();
      p.delay_ms = outcome.retry_after ? outcome.retry_after->count() : 60000;
      break;
  }
  if (task.action == "access" && outcome.kind == OutcomeKind::kDone && !outcome.records.is_null()) {
    p.records = ToHex(cipher.Seal(outcome.records.dump(), TaskRecordsContext(task.id)));
  }
  if (!outcome.receipt.is_null() && !outcome.receipt.empty()) p.receipt = outcome.receipt.dump();
  return p;
}

std::string AuditText(const json& detail) { return detail.dump(-1, ' ', false, json::error_handler_t::replace); }

// Writes planned outcomes to their task rows and their audit events, in the caller's transaction, which holds the
// rows of the tasks' requests. `claimed_here`: the caller locked the task rows itself in this transaction (inline
// connectors), so the rows are taken as they are -- pending or running, their attempt counted now -- where
// otherwise only the rows whose lease `owner` still holds are written. Per item, whether it was written;
// `finished_requests` gets the requests of tasks that finished.
std::vector<bool> WriteOutcomeRows(pqxx::work& txn, const std::vector<Store::OutcomeRef>& items,
                                   const std::vector<PlannedOutcome>& plans, const std::string& owner,
                                   bool claimed_here, std::set<std::string>& finished_requests) {
  std::vector<bool> written(items.size(), false);
  std::map<std::string, std::size_t> first;  // task id -> its first item: a second outcome of a task is not ours
  std::vector<std::string> ids, states, delays, closes;
  std::vector<std::optional<std::string>> errors, receipts, records, continuations;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!first.emplace(items[i].task->id, i).second) continue;
    const PlannedOutcome& p = plans[i];
    ids.push_back(items[i].task->id);
    states.push_back(p.state);
    errors.push_back(p.error);
    receipts.push_back(p.receipt);
    records.push_back(p.records);
    continuations.push_back(p.continuation);
    delays.push_back(std::to_string(p.delay_ms));
    closes.push_back(p.finished || p.state == "failed" ? "t" : "f");
  }
  // The lease check is in the WHERE: only the rows this process still holds are written and returned.
  static const std::string kLeased =
      "UPDATE tasks t SET state = o.state, last_error = o.error, receipt = coalesce(o.receipt, t.receipt), "
      "records_sealed = coalesce(decode(o.records, 'hex'), t.records_sealed), continuation = o.continuation, "
      "lease_owner = NULL, "
      "lease_expires_at = CASE WHEN o.state = 'running' THEN now() + o.delay_ms * interval '1 millisecond' END, "
      "next_attempt_at = CASE WHEN o.state = 'pending' THEN now() + o.delay_ms * interval '1 millisecond' "
      "ELSE t.next_attempt_at END, finished_at = CASE WHEN o.closes THEN now() END, updated_at = now() "
      "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[], $7::bigint[], "
      "$8::boolean[]) AS o(id, state, error, receipt, records, continuation, delay_ms, closes) "
      "WHERE t.id = o.id AND t.lease_owner = $9 AND t.state = 'running' RETURNING t.id::text";
  // The rows are locked by this transaction (FOR UPDATE when claimed): no lease to check, and the attempt counted
  // here as a claim would have counted it. $9 is unused but kept so both take the same parameters.
  static const std::string kClaimedHere =
      "UPDATE tasks t SET state = o.state, last_error = o.error, receipt = coalesce(o.receipt, t.receipt), "
      "records_sealed = coalesce(decode(o.records, 'hex'), t.records_sealed), continuation = o.continuation, "
      "attempts = t.attempts + CASE WHEN t.continuation IS NULL THEN 1 ELSE 0 END, lease_owner = NULL, "
      "lease_expires_at = CASE WHEN o.state = 'running' THEN now() + o.delay_ms * interval '1 millisecond' END, "
      "next_attempt_at = CASE WHEN o.state = 'pending' THEN now() + o.delay_ms * interval '1 millisecond' "
      "ELSE t.next_attempt_at END, finished_at = CASE WHEN o.closes THEN now() END, updated_at = now() "
      "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[], $7::bigint[], "
      "$8::boolean[]) AS o(id, state, error, receipt, records, continuation, delay_ms, closes) "
      "WHERE t.id = o.id AND t.state IN ('pending', 'running') AND $9::text IS NOT NULL RETURNING t.id::text";
  const auto mine = ExecPrepared(txn, claimed_here ? "outcomes_claimed_here" : "outcomes_leased",
                                 claimed_here ? kClaimedHere : kLeased, ArrayLiteral(ids), ArrayLiteral(states),
                                 ArrayLiteral(errors), ArrayLiteral(receipts), ArrayLiteral(records),
                                 ArrayLiteral(continuations), ArrayLiteral(delays), ArrayLiteral(closes), owner);
  std::vector<std::string> audit_requests, audit_actions, audit_details;
  for (const auto& row : mine) {
    const std::size_t i = first.at(row[0].as<std::string>());
    written[i] = true;
    const ClaimedTask& task = *items[i].task;
    const PlannedOutcome& p = plans[i];
    if (p.state != "pending" && p.state != "running") {
      json detail = {{"task", task.id}, {"system", task.system}, {"action", task.action},
                     {"attempts", task.attempts}, {"worker", owner}};
      if (p.error) detail["error"] = *p.error;
      audit_requests.push_back(task.request_id);
      audit_actions.push_back("task_" + p.state);
      audit_details.push_back(AuditText(detail));
    }
    if (p.finished) finished_requests.insert(task.request_id);
  }
  if (!audit_requests.empty()) {
    ExecPrepared(txn, "outcome_audit",
                 "INSERT INTO audit_events (request_id, actor, action, detail) SELECT e.request_id, 'system:engine', "
                 "e.action, e.detail FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) WITH ORDINALITY "
                 "AS e(request_id, action, detail, n) ORDER BY e.n",
                 ArrayLiteral(audit_requests), ArrayLiteral(audit_actions), ArrayLiteral(audit_details));
  }
  return written;
}

}  // namespace

bool Store::RecordOutcome(const ClaimedTask& task, const Outcome& outcome, const std::string& owner,
                          const RetryPolicy& policy, Timestamp now) {
  return RecordOutcomes({OutcomeRef{&task, &outcome}}, owner, policy, now)[0];
}

std::vector<bool> Store::RecordOutcomes(const std::vector<OutcomeRef>& items, const std::string& owner,
                                        const RetryPolicy& policy, Timestamp now) {
  std::vector<bool> written(items.size(), false);
  if (items.empty()) return written;
  std::vector<PlannedOutcome> plans;
  plans.reserve(items.size());
  std::set<std::string> request_ids;
  for (std::size_t i = 0; i < items.size(); ++i) {
    plans.push_back(PlanOutcome(*items[i].task, *items[i].outcome, policy, cipher_));
    request_ids.insert(items[i].task->request_id);
  }
  WithTransaction(pool_, [&](pqxx::work& txn) {
    // The request rows first, as every change to a request does, and in one order (by id) across all writers of
    // many: outcomes of one request are serialised, so the last one to finish sees all the others and completes
    // the request, and two batches sharing requests cannot deadlock.
    txn.exec_params("SELECT 1 FROM requests WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                    ArrayLiteral(std::vector<std::string>(request_ids.begin(), request_ids.end())));
    std::set<std::string> finished_requests;
    written = WriteOutcomeRows(txn, items, plans, owner, false, finished_requests);
    if (!finished_requests.empty()) {
      CompleteAllFinished(txn, std::vector<std::string>(finished_requests.begin(), finished_requests.end()), now);
    }
  });
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (written[i] && plans[i].state == "failed") {
      LogWarning("request {}: task {} on system {} dead-lettered after {} attempts", items[i].task->request_id,
                 items[i].task->id, items[i].task->system, items[i].task->attempts);
    }
  }
  return written;
}

Store::InlineRound Store::RunInline(const std::vector<std::pair<std::string, int>>& limits, const std::string& owner,
                                     const RetryPolicy& policy, Timestamp now,
                                     const std::function<Outcome(const ClaimedTask&)>& run, int share, int shares) {
  const auto [systems, counts] = ClaimLimitArrays(limits);
  if (systems.empty()) return {};
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    InlineRound round;
    // The claim of ClaimTasks without its UPDATE: the rows are locked, not leased, and read from the locking scan
    // (the version it locked), with the attempt this run counts.
    const auto rows = ExecPrepared(
        txn, "claim_inline",
        "WITH w AS (SELECT * FROM unnest($1::text[], $2::int[]) AS w(system, n)), "
        "expired AS (SELECT e.* FROM w CROSS JOIN LATERAL (SELECT id, request_id, system, action, attempts, "
        "max_attempts, continuation, retain_basis FROM tasks WHERE system = w.system AND state = 'running' AND "
        "lease_expires_at <= now() AND ($3::int = 1 OR get_byte(uuid_send(request_id), 15) % $3::int = $4::int) "
        "ORDER BY lease_expires_at LIMIT w.n FOR UPDATE SKIP LOCKED) e), "
        "ready AS (SELECT p.* FROM w CROSS JOIN LATERAL (SELECT id, request_id, system, action, attempts, "
        "max_attempts, continuation, retain_basis FROM tasks WHERE system = w.system AND state = 'pending' AND "
        "next_attempt_at <= now() AND ($3::int = 1 OR get_byte(uuid_send(request_id), 15) % $3::int = $4::int) "
        "ORDER BY respond_by, next_attempt_at "
        "LIMIT w.n - (SELECT count(*) FROM expired x WHERE x.system = w.system) FOR UPDATE SKIP LOCKED) p), "
        "due AS (SELECT * FROM expired UNION ALL SELECT * FROM ready) "
        "SELECT d.id::text, d.request_id::text, d.system, d.action, r.type, "
        "d.attempts + CASE WHEN d.continuation IS NULL THEN 1 ELSE 0 END, d.max_attempts, d.continuation::text, "
        "coalesce(d.retain_basis, ''), encode(r.corrections_sealed, 'hex') "
        "FROM due d JOIN requests r ON r.id = d.request_id",
        ArrayLiteral(systems), ArrayLiteral(counts), shares, share);
    if (rows.empty()) return round;
    std::set<std::string> request_ids;
    for (const auto& row : rows) {
      ++round.claimed[row[2].as<std::string>()];
      request_ids.insert(row[1].as<std::string>());
    }
    // The requests after the tasks, which is the reverse of every other writer's order: so they are taken with SKIP
    // LOCKED and never waited for. A task whose request another transaction holds stays as it is (its lock ends
    // with this transaction) and is claimed again by a later round.
    std::set<std::string> locked;
    for (const auto& row : ExecPrepared(txn, "claim_inline_requests",
                                        "SELECT id::text FROM requests WHERE id = ANY($1::uuid[]) ORDER BY id "
                                        "FOR UPDATE SKIP LOCKED",
                                        ArrayLiteral(std::vector<std::string>(request_ids.begin(), request_ids.end())))) {
      locked.insert(row[0].as<std::string>());
    }
    std::vector<ClaimedTask> claimed;
    CorrectionsByRequest corrections;
    for (const auto& row : rows) {
      if (locked.count(row[1].as<std::string>())) claimed.push_back(ClaimedTaskFromRow(row, cipher_, corrections));
    }
    if (claimed.empty()) return round;
    AttachSubjects(txn, cipher_, claimed, corrections);
    std::vector<Outcome> outcomes;
    outcomes.reserve(claimed.size());
    for (auto& t : claimed) outcomes.push_back(run(t));
    std::vector<OutcomeRef> items;
    std::vector<PlannedOutcome> plans;
    items.reserve(claimed.size());
    plans.reserve(claimed.size());
    for (std::size_t i = 0; i < claimed.size(); ++i) {
      items.push_back({&claimed[i], &outcomes[i]});
      plans.push_back(PlanOutcome(claimed[i], outcomes[i], policy, cipher_));
    }
    std::set<std::string> finished_requests;
    const auto written = WriteOutcomeRows(txn, items, plans, owner, true, finished_requests);
    if (!finished_requests.empty()) {
      CompleteAllFinished(txn, std::vector<std::string>(finished_requests.begin(), finished_requests.end()), now);
    }
    for (std::size_t i = 0; i < claimed.size(); ++i) {
      if (!written[i]) continue;
      round.outcomes.emplace_back(claimed[i].system, outcomes[i].kind);
      if (plans[i].state == "failed") {
        LogWarning("request {}: task {} on system {} dead-lettered after {} attempts", claimed[i].request_id,
                   claimed[i].id, claimed[i].system, claimed[i].attempts);
      }
    }
    return round;
  });
}

void Store::CompleteAllFinished(pqxx::work& txn, const std::vector<std::string>& request_ids, Timestamp now) {
  const auto rows = txn.exec_params(
      fmt::format("SELECT {}, (SELECT count(*) FROM tasks t WHERE t.request_id = r.id) FROM requests r "
                  "WHERE r.id = ANY($1::uuid[]) AND r.status = 'in_progress' AND NOT EXISTS (SELECT 1 FROM tasks t "
                  "WHERE t.request_id = r.id AND t.state NOT IN ('done', 'not_found', 'retained_exempt')) "
                  "ORDER BY r.id",
                  kRequestColumns),
      ArrayLiteral(request_ids));
  if (rows.empty()) return;
  const LocalDate today = Today(now);
  const std::string at = FormatRfc3339(now);
  std::vector<std::string> ids, statuses, closed_on, sla_states, audit_details;
  std::vector<std::pair<RequestRecord, RequestStatus>> callbacks;
  for (const auto& row : rows) {
    RequestRecord r = RowToRecord(row);
    const long long total = row[kColumnCount].as<long long>();
    if (total == 0) continue;
    const auto decision = CheckEvent(r.Facts(), RequestEvent::kComplete, today);
    if (std::holds_alternative<std::string>(decision)) {
      // Not expected for an in_progress request; ApplyLocked says why in the error it throws.
      CompleteIfFinished(txn, r.id, now);
      continue;
    }
    if (r.type == RequestType::kAccess) SealPackage(txn, r.id, now);
    // As ApplyLocked writes a completion; the task cancellation it also does has nothing to cancel here (every task
    // of these requests is finished, under the request locks the caller holds).
    const RequestStatus from = r.status;
    r.status = std::get<RequestStatus>(decision);
    r.closed_at = now;
    r.closed_on = today;
    const SlaView sla = EvaluateSla(r.Facts(), today, at_risk_days_);
    r.stored_sla_state = sla.state;
    const json detail = {{"tasks", total},
                         {"from", ToString(from)},
                         {"to", ToString(r.status)},
                         {"sla_state", ToString(sla.state)}};
    ids.push_back(r.id);
    statuses.push_back(std::string(ToString(r.status)));
    closed_on.push_back(FormatDate(today));
    sla_states.push_back(std::string(ToString(sla.state)));
    audit_details.push_back(AuditText(detail));
    if (r.callback_url) callbacks.emplace_back(std::move(r), from);
  }
  if (ids.empty()) return;
  txn.exec_params(
      "UPDATE requests r SET status = x.status, closed_at = $2::timestamptz, closed_on = x.closed_on, "
      "sla_state = x.sla_state, updated_at = now() "
      "FROM unnest($1::uuid[], $3::text[], $4::date[], $5::text[]) AS x(id, status, closed_on, sla_state) "
      "WHERE r.id = x.id",
      ArrayLiteral(ids), at, ArrayLiteral(statuses), ArrayLiteral(closed_on), ArrayLiteral(sla_states));
  txn.exec_params(
      "INSERT INTO audit_events (request_id, actor, action, detail) SELECT e.request_id, 'system:engine', $2, "
      "e.detail FROM unnest($1::uuid[], $3::jsonb[]) WITH ORDINALITY AS e(request_id, detail, n) ORDER BY e.n",
      ArrayLiteral(ids), std::string(ToString(RequestEvent::kComplete)), ArrayLiteral(audit_details));
  for (const auto& [r, from] : callbacks) EnqueueCallback(txn, r, from, now);
}

std::optional<Timestamp> Store::NextDue(const std::vector<std::string>& systems) {
  if (systems.empty()) return std::nullopt;
  return WithTransaction(pool_, [&](pqxx::work& txn) -> std::optional<Timestamp> {
    const auto row = txn.exec_params1(
        "SELECT (extract(epoch from least((SELECT min(next_attempt_at) FROM tasks WHERE state = 'pending' AND system "
        "= ANY($1::text[])), (SELECT min(lease_expires_at) FROM tasks WHERE state = 'running' AND system = "
        "ANY($1::text[])))) * 1000000)::bigint",
        ArrayLiteral(systems));
    if (row[0].is_null()) return std::nullopt;
    return FromMicros(row[0].as<long long>());
  });
}

namespace {

struct LockedTask {
  std::string request_status;
  std::string state;
  std::string system;
};

// The request row locked (as every change to a request does) and its task read; 404 for either missing.
LockedTask LockTask(pqxx::work& txn, const std::string& request_id, const std::string& task_id) {
  const auto req = txn.exec_params("SELECT status FROM requests WHERE id = $1::uuid FOR UPDATE", request_id);
  if (req.empty()) throw ApiError(ErrorCode::kNotFound, "no request with this id");
  const auto task = txn.exec_params("SELECT state, system FROM tasks WHERE id = $1::uuid AND request_id = $2::uuid",
                                    task_id, request_id);
  if (task.empty()) throw ApiError(ErrorCode::kNotFound, "no such task on this request");
  return LockedTask{req[0][0].as<std::string>(), task[0][0].as<std::string>(), task[0][1].as<std::string>()};
}

}  // namespace

void Store::RetryTask(const std::string& request_id, const std::string& task_id, const Principal& by, Timestamp) {
  if (!IsUuid(request_id) || !IsUuid(task_id)) throw ApiError(ErrorCode::kNotFound, "no such task");
  WithTransaction(pool_, [&](pqxx::work& txn) {
    const LockedTask task = LockTask(txn, request_id, task_id);
    if (task.state != "failed") {
      throw ApiError(ErrorCode::kTransitionNotAllowed,
                     fmt::format("only a failed (dead-lettered) task can be retried; this one is {}", task.state));
    }
    if (task.request_status != "in_progress") {
      throw ApiError(ErrorCode::kTransitionNotAllowed, "the request is no longer in progress");
    }
    txn.exec_params(
        "UPDATE tasks SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL, "
        "finished_at = NULL, continuation = NULL, updated_at = now() WHERE id = $1::uuid",
        task_id);
    AppendAudit(txn, request_id, by.name, "task_retry", {{"task", task_id}, {"system", task.system}});
  });
}

void Store::CompleteTaskManually(const std::string& request_id, const std::string& task_id, const std::string& outcome,
                                 const std::string& note, const Principal& by, Timestamp now) {
  if (!IsUuid(request_id) || !IsUuid(task_id)) throw ApiError(ErrorCode::kNotFound, "no such task");
  WithTransaction(pool_, [&](pqxx::work& txn) {
    const LockedTask task = LockTask(txn, request_id, task_id);
    const std::string& state = task.state;
    if (task.request_status != "in_progress") {
      throw ApiError(ErrorCode::kTransitionNotAllowed, "the request is no longer in progress");
    }
    if (state != "needs_manual" && state != "failed") {
      throw ApiError(ErrorCode::kTransitionNotAllowed,
                     fmt::format("only a needs_manual or failed task can be completed by hand; this one is {}", state));
    }
    const json receipt = {{"completed_by", by.name}, {"outcome", outcome}, {"note", note}, {"at", FormatRfc3339(now)}};
    txn.exec_params(
        "UPDATE tasks SET state = $2, receipt = coalesce(receipt, '{}'::jsonb) || $3::jsonb, last_error = "
        "CASE WHEN $2 = 'failed' THEN $4 END, lease_owner = NULL, finished_at = now(), updated_at = now() "
        "WHERE id = $1::uuid",
        task_id, outcome, receipt.dump(), note.empty() ? "failed by hand" : note);
    AppendAudit(txn, request_id, by.name, "task_" + outcome,
                {{"task", task_id}, {"system", task.system}, {"manual", true}});
    CompleteIfFinished(txn, request_id, now);
  });
}

bool Store::WakeTask(const std::string& task_id) {
  if (!IsUuid(task_id)) return false;
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    const auto r = txn.exec_params(
        "UPDATE tasks SET lease_expires_at = CASE WHEN state = 'running' AND lease_owner IS NULL THEN now() ELSE "
        "lease_expires_at END, next_attempt_at = CASE WHEN state = 'pending' THEN now() ELSE next_attempt_at END "
        "WHERE id = $1::uuid AND state IN ('pending', 'running')",
        task_id);
    txn.exec("SELECT pg_notify('rightsd_tasks', '')");
    return r.affected_rows() > 0;
  });
}

std::optional<std::string> Store::TaskSystem(const std::string& task_id) {
  if (!IsUuid(task_id)) return std::nullopt;
  return WithTransaction(pool_, [&](pqxx::work& txn) -> std::optional<std::string> {
    const auto r = txn.exec_params("SELECT system FROM tasks WHERE id = $1::uuid", task_id);
    if (r.empty()) return std::nullopt;
    return r[0][0].as<std::string>();
  });
}

std::optional<json> Store::GetPackage(const std::string& request_id) {
  if (!IsUuid(request_id)) return std::nullopt;
  const auto sealed = WithTransaction(pool_, [&](pqxx::work& txn) -> std::optional<std::string> {
    const auto r = txn.exec_params(
        "SELECT (extract(epoch from r.purged_at) * 1000000)::bigint, encode(p.package_sealed, 'hex') FROM requests r "
        "LEFT JOIN request_packages p ON p.request_id = r.id WHERE r.id = $1::uuid",
        request_id);
    if (r.empty()) return std::nullopt;
    if (!r[0][0].is_null()) {
      throw ApiError(ErrorCode::kGone,
                     fmt::format("the request's personal data, any access package included, was purged at {} under "
                                 "the retention policy (11 CCR 7101); its record is kept",
                                 FormatRfc3339(FromMicros(r[0][0].as<long long>()))));
    }
    if (r[0][1].is_null()) return std::nullopt;
    return r[0][1].as<std::string>();
  });
  if (!sealed) return std::nullopt;
  const auto opened = cipher_.Open(*FromHex(*sealed), PackageContext(request_id));
  if (!opened) throw std::runtime_error(fmt::format("request {}: the package does not open with the configured key", request_id));
  return json::parse(*opened);
}

std::vector<CallbackDelivery> Store::ClaimCallbacks(int limit, std::chrono::milliseconds lease) {
  return WithTransaction(pool_, [&](pqxx::work& txn) {
    std::vector<CallbackDelivery> out;
    // Oldest first per request, so a consumer of callbacks sees the statuses in the order they happened.
    const auto rows = txn.exec_params(
        "WITH due AS (SELECT c.id FROM callbacks c WHERE c.state = 'pending' AND c.next_attempt_at <= now() AND NOT "
        "EXISTS (SELECT 1 FROM callbacks o WHERE o.request_id = c.request_id AND o.state = 'pending' AND o.id < c.id) "
        "ORDER BY c.id LIMIT $1 FOR UPDATE SKIP LOCKED) "
        "UPDATE callbacks c SET attempts = c.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond' "
        "FROM due WHERE c.id = due.id RETURNING c.id, c.request_id::text, c.url, c.body::text, c.attempts",
        limit, static_cast<long long>(lease.count()));
    for (const auto& row : rows) {
      out.push_back(CallbackDelivery{row[0].as<long long>(), row[1].as<std::string>(), row[2].as<std::string>(),
                                     row[3].as<std::string>(), row[4].as<int>()});
    }
    return out;
  });
}

void Store::RecordCallbackResult(const CallbackDelivery& d, bool delivered, const std::string& error,
                                 int max_attempts, const RetryPolicy& policy) {
  WithTransaction(pool_, [&](pqxx::work& txn) {
    if (delivered) {
      txn.exec_params("UPDATE callbacks SET state = 'delivered', delivered_at = now(), last_error = NULL WHERE id = $1",
                      d.id);
    } else if (d.attempts >= max_attempts) {
      txn.exec_params("UPDATE callbacks SET state = 'failed', last_error = $2 WHERE id = $1", d.id,
                      Truncate(error, 500));
      AppendAudit(txn, d.request_id, "system:callbacks", "callback_failed",
                  {{"callback", d.id}, {"attempts", d.attempts}, {"error", Truncate(error, 500)}});
    } else {
      txn.exec_params(
          "UPDATE callbacks SET last_error = $2, next_attempt_at = now() + $3 * interval '1 millisecond' WHERE id = $1",
          d.id, Truncate(error, 500), static_cast<long long>(Backoff(d.attempts, policy).count()));
    }
  });
}

}  // namespace rightsd
