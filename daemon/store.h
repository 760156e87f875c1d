// The request store: the only place that holds SQL about requests. Every change to a request goes through one
// funnel (Apply) that locks the row, asks the pure state table and legal clock whether the event is allowed,
// writes the new state and its audit event in one transaction. Identity values are sealed before they reach SQL.
// Thread-safe: each call leases its own connection.
#pragma once
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth.h"
#include "calendar.h"
#include "crypto.h"
#include "db_pool.h"
#include "request_model.h"
#include "request_parse.h"
#include "sla.h"

namespace rightsd {

struct IdentityView {
  std::string kind;
  std::optional<std::string> value;  // only when the caller may see values
};

struct HistoryEntry {
  long long id = 0;
  Timestamp at;
  std::string actor;
  std::string action;
  nlohmann::json detail;
};

struct RequestRecord {
  std::string id;
  RequestType type = RequestType::kAccess;
  RequestStatus status = RequestStatus::kReceived;
  Timestamp received_at;
  LocalDate received_on;
  std::string channel;
  Deadlines deadlines;
  bool extended = false;
  std::optional<std::string> extension_reason;
  std::optional<LocalDate> acknowledged_on;
  std::optional<Timestamp> acknowledged_at;
  std::optional<Timestamp> verified_at;
  nlohmann::json verification;  // null until verified
  std::optional<Timestamp> closed_at;
  std::optional<LocalDate> closed_on;
  std::optional<DenialReason> denial_reason;
  std::optional<std::string> denial_detail;
  SlaState stored_sla_state = SlaState::kOnTrack;
  std::string created_by;
  Timestamp updated_at;
  // Filled by Get only.
  std::vector<IdentityView> identities;
  std::vector<HistoryEntry> history;
  std::optional<nlohmann::json> authorized_agent;  // only with values
  std::vector<CorrectionInput> corrections;          // only with values

  SlaFacts Facts() const;
};

struct CreateResult {
  std::string id;
  bool replayed = false;  // an earlier request with the same Idempotency-Key and body
};

struct ListFilter {
  std::optional<RequestStatus> status;
  std::optional<RequestType> type;
  std::optional<SlaState> sla_state;
  std::optional<LocalDate> due_before;
  int limit = 50;
  std::optional<std::pair<LocalDate, std::string>> after;  // keyset cursor: (respond_by, id)
};

struct ListPage {
  std::vector<RequestRecord> items;
  std::optional<std::pair<LocalDate, std::string>> next;
};

struct SlaSummary {
  std::map<std::string, long long> by_status;
  std::map<std::string, long long> by_type;
  std::map<std::string, long long> by_sla_state;  // open requests only
  long long open = 0;
  // The soonest respond_by dates among open requests, with how many fall due on each.
  std::vector<std::pair<LocalDate, long long>> next_due;
  std::optional<LocalDate> next_acknowledge_by;
};

// What an action carries besides its event.
struct ActionInput {
  RequestEvent event = RequestEvent::kAcknowledge;
  nlohmann::json detail = nlohmann::json::object();  // recorded in the audit event
  std::optional<VerifyInput> verify;
  std::optional<ExtendInput> extend;
  std::optional<DenyInput> deny;
};

struct AuditPage {
  std::vector<HistoryEntry> items;
  std::vector<std::string> request_ids;  // parallel to items ("" when none)
};

class Store {
 public:
  Store(DbPool& pool, const BusinessCalendar& calendar, const PiiCipher& cipher, int at_risk_days)
      : pool_(pool), calendar_(calendar), cipher_(cipher), at_risk_days_(at_risk_days) {}

  // Throws ApiError(kIdempotencyMismatch) when the key was used with another body.
  CreateResult Create(const NewRequest& request, const Principal& by, const std::optional<std::string>& idempotency_key,
                      Timestamp now);
  std::optional<RequestRecord> Get(const std::string& id, bool with_values);
  ListPage List(const ListFilter& filter);
  SlaSummary Summary();
  // The funnel. Throws ApiError(kNotFound) or ApiError(kTransitionNotAllowed) (nothing written).
  void Apply(const std::string& id, const ActionInput& action, const Principal& by, Timestamp now);
  // Revisits open requests whose SLA state may have changed by `now`; returns how many changed state.
  int SweepSla(Timestamp now);
  AuditPage ListAudit(long long after_id, int limit, const std::optional<std::string>& request_id);

  LocalDate Today(Timestamp now) const;
  int at_risk_days() const { return at_risk_days_; }

 private:
  DbPool& pool_;
  const BusinessCalendar& calendar_;
  const PiiCipher& cipher_;
  int at_risk_days_;
};

}  // namespace rightsd
