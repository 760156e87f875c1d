#include "audit.h"

#include <fmt/format.h>

#include "crypto.h"

namespace rightsd {

namespace {

constexpr const char* kSelectColumns =
    "id, coalesce(request_id::text, ''), actor, action, "
    "(extract(epoch from at) * 1000000)::bigint, detail::text";

AuditRecord FromRow(const pqxx::row& row) {
  return AuditRecord{row[0].as<long long>(), row[1].as<std::string>(), row[2].as<std::string>(),
                     row[3].as<std::string>(), row[4].as<long long>(),  row[5].as<std::string>()};
}

std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += items[i];
  }
  return out + "}";
}

}  // namespace

std::string AuditGenesisHash() { return std::string(32, '\0'); }

std::string AuditHash(const std::string& prev_hash, const AuditRecord& r) {
  // Length-prefixed fields: no value can imitate a field boundary.
  std::string canonical = prev_hash;
  for (const std::string& field : {std::to_string(r.id), r.request_id, r.actor, r.action, std::to_string(r.at_us),
                                   r.detail}) {
    canonical += std::to_string(field.size());
    canonical += ':';
    canonical += field;
  }
  return Sha256Raw(canonical);
}

void AppendAudit(pqxx::work& txn, const std::string& request_id, const std::string& actor, const std::string& action,
                 const nlohmann::json& detail) {
  txn.exec_params("INSERT INTO audit_events (request_id, actor, action, detail) VALUES ($1, $2, $3, $4::jsonb)",
                  request_id.empty() ? nullptr : request_id.c_str(), actor, action,
                  detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

int SealAuditBatch(pqxx::work& txn, int limit) {
  long long seq = 0;
  std::string prev = AuditGenesisHash();
  const auto head = txn.exec("SELECT chain_seq, encode(hash, 'hex') FROM audit_chain_head FOR UPDATE");
  if (!head.empty()) {
    seq = head[0][0].as<long long>();
    prev = *FromHex(head[0][1].as<std::string>());
  }
  const auto rows = txn.exec_params(
      fmt::format("SELECT {} FROM audit_events WHERE chain_seq IS NULL ORDER BY id LIMIT $1 FOR UPDATE", kSelectColumns),
      limit);
  if (rows.empty()) return 0;
  std::vector<std::string> ids, seqs, prevs, hashes;
  for (const auto& row : rows) {
    const AuditRecord record = FromRow(row);
    const std::string hash = AuditHash(prev, record);
    ids.push_back(std::to_string(record.id));
    seqs.push_back(std::to_string(++seq));
    prevs.push_back(ToHex(prev));
    hashes.push_back(ToHex(hash));
    prev = hash;
  }
  txn.exec_params(
      "UPDATE audit_events e SET chain_seq = s.seq, prev_hash = decode(s.prev, 'hex'), hash = decode(s.hash, 'hex') "
      "FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS s(id, seq, prev, hash) WHERE e.id = s.id",
      ArrayLiteral(ids), ArrayLiteral(seqs), ArrayLiteral(prevs), ArrayLiteral(hashes));
  txn.exec_params(
      "INSERT INTO audit_chain_head (singleton, chain_seq, hash) VALUES (true, $1, decode($2, 'hex')) "
      "ON CONFLICT (singleton) DO UPDATE SET chain_seq = EXCLUDED.chain_seq, hash = EXCLUDED.hash",
      seq, ToHex(prev));
  return static_cast<int>(rows.size());
}

AuditVerifyResult VerifyAuditChain(pqxx::connection& conn) {
  AuditVerifyResult result;
  pqxx::work txn(conn, "audit-verify");
  txn.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");
  std::string prev = AuditGenesisHash();
  long long expected_seq = 1;
  long long after = 0;
  auto fail = [&](long long id, std::string problem) {
    result.ok = false;
    result.first_bad_id = id;
    result.problem = std::move(problem);
    return result;
  };
  for (;;) {
    const auto rows = txn.exec_params(
        fmt::format("SELECT {}, chain_seq, encode(prev_hash, 'hex'), encode(hash, 'hex') FROM audit_events "
                    "WHERE chain_seq > $1 ORDER BY chain_seq LIMIT 10000",
                    kSelectColumns),
        after);
    if (rows.empty()) break;
    for (const auto& row : rows) {
      const AuditRecord record = FromRow(row);
      const long long seq = row[6].as<long long>();
      if (seq != expected_seq) {
        return fail(record.id, fmt::format("chain position {} is missing before event {} (a row was deleted)",
                                           expected_seq, record.id));
      }
      if (*FromHex(row[7].as<std::string>()) != prev) {
        return fail(record.id, fmt::format("event {} does not link to the event before it", record.id));
      }
      const std::string hash = AuditHash(prev, record);
      if (*FromHex(row[8].as<std::string>()) != hash) {
        return fail(record.id, fmt::format("event {} was altered: its content does not match its hash", record.id));
      }
      prev = hash;
      ++expected_seq;
      ++result.sealed;
      after = seq;
    }
  }
  const auto head = txn.exec("SELECT chain_seq, encode(hash, 'hex') FROM audit_chain_head");
  if (!head.empty()) {
    const long long head_seq = head[0][0].as<long long>();
    if (head_seq != result.sealed || *FromHex(head[0][1].as<std::string>()) != prev) {
      return fail(0, fmt::format("the chain ends at position {} but its recorded head is position {}: sealed events "
                                 "were removed from the end",
                                 result.sealed, head_seq));
    }
  } else if (result.sealed > 0) {
    return fail(0, "sealed events exist but the chain head is missing");
  }
  result.unsealed = txn.exec1("SELECT count(*) FROM audit_events WHERE chain_seq IS NULL")[0].as<long long>();
  txn.commit();
  return result;
}

}  // namespace rightsd
