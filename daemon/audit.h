// The audit trail: every accepted change appends an event in the same transaction as the change. Events are then
// sealed, in the order they became visible, into a SHA-256 chain: hash = SHA256(prev_hash || canonical(event)).
// Sealing runs in the one process that holds the sweeper lock; `rightsd audit verify` recomputes the chain and
// names the first event whose content, order or link does not match. Functions take the caller's transaction.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace rightsd {

struct AuditRecord {
  long long id = 0;
  std::string request_id;  // empty for events not about one request
  std::string actor;
  std::string action;
  long long at_us = 0;     // microseconds since the epoch
  std::string detail;      // PostgreSQL's text form of the jsonb value
};

std::string AuditGenesisHash();  // 32 zero bytes
std::string AuditHash(const std::string& prev_hash, const AuditRecord& record);

// Appends one event (unsealed).
void AppendAudit(pqxx::work& txn, const std::string& request_id, const std::string& actor, const std::string& action,
                 const nlohmann::json& detail);

// Seals up to `limit` unsealed events in id order; returns how many.
int SealAuditBatch(pqxx::work& txn, int limit);

struct AuditVerifyResult {
  bool ok = true;
  long long sealed = 0;
  long long unsealed = 0;
  long long first_bad_id = 0;  // 0 when ok
  std::string problem;
};
AuditVerifyResult VerifyAuditChain(pqxx::connection& conn);

}  // namespace rightsd
