// The audit trail: every accepted change appends an event in the same transaction as the change, and that
// transaction also chains it (migration 0007): a statement-level trigger hashes each new event's canonical form
// into a leaf and appends one link, SHA-256(previous link || leaves), to one of 64 chains (one per database
// session, so concurrent writers do not queue on one chain head). Events written before migration 0007 stay in the
// first, per-event chain (chain_seq, prev_hash, hash). `rightsd audit verify` recomputes both and names the first
// event or link whose content, order or presence does not match. Functions take the caller's transaction.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

namespace rightsd {

inline constexpr int kAuditChains = 64;  // audit_chains rows 1..64, made by migration 0007

struct AuditRecord {
  long long id = 0;
  std::string request_id;  // empty for events not about one request
  std::string actor;
  std::string action;
  long long at_us = 0;     // microseconds since the epoch
  std::string detail;      // PostgreSQL's text form of the jsonb value
};

// The canonical form: each field (id, request_id, actor, action, at_us, detail) as its length in bytes, ':' and
// its bytes, so that no value can imitate a field boundary. audit_canonical() in migration 0007 writes the same.
std::string AuditCanonical(const AuditRecord& record);
// A linked event's leaf: SHA-256 of its canonical form (32 raw bytes).
std::string AuditLeaf(const AuditRecord& record);
// The first chain's per-event hash (events sealed before migration 0007): SHA-256(prev_hash || canonical).
std::string AuditHash(const std::string& prev_hash, const AuditRecord& record);
std::string AuditGenesisHash();  // 32 zero bytes: the previous hash of every chain's first link or event

// Appends one event; the database links it when the statement ends.
void AppendAudit(pqxx::work& txn, const std::string& request_id, const std::string& actor, const std::string& action,
                 const nlohmann::json& detail);

struct AuditVerifyResult {
  bool ok = true;
  long long verified = 0;     // events verified (before the problem, when there is one)
  long long first_chain = 0;  // of them, events of the first chain (sealed before migration 0007)
  long long links = 0;        // links verified
  long long first_bad_id = 0;  // the event the problem is about; 0 when none or when it is about a link
  std::string problem;
};
// Reads the whole trail in one read-only snapshot (it can run while daemons write).
AuditVerifyResult VerifyAuditChain(pqxx::connection& conn);

}  // namespace rightsd
