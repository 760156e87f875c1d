// The request store: the only place that holds SQL about requests. Every change to a request goes through one
// funnel (Apply) that locks the row, asks the pure state table and legal clock whether the event is allowed,
// writes the new state and its audit event in one transaction. Identity values are sealed before they reach SQL.
// Thread-safe: each call leases its own connection.
#pragma once
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "auth.h"
#include "calendar.h"
#include "metrics.h"
#include "connectors/connector.h"
#include "crypto.h"
#include "data_map.h"
#include "db_pool.h"
#include "request_model.h"
#include "request_parse.h"
#include "sla.h"

namespace rightsd {

// A JSON value as PostgreSQL wrote it (the text form of a jsonb column): valid JSON, so an answer carries it as it
// is instead of parsing and dumping it again. Empty for SQL NULL.
struct JsonText {
  std::string text;
};

struct IdentityView {
  std::string kind;
  std::optional<std::string> value;  // only when the caller may see values
};

struct HistoryEntry {
  long long id = 0;
  Timestamp at;
  std::string actor;
  std::string action;
  JsonText detail;
};

struct TaskView {
  std::string id;
  std::string system;
  std::string action;
  std::string state;
  int attempts = 0;
  std::optional<Timestamp> next_attempt_at;  // pending or waiting on the peer
  std::optional<std::string> last_error;
  JsonText receipt;  // SQL NULL until the task has an outcome
  std::optional<Timestamp> finished_at;
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
  std::optional<Timestamp> purged_at;  // the retention purge removed its personal data (retention.h)
  // Filled by Get only.
  std::vector<IdentityView> identities;
  std::vector<HistoryEntry> history;
  std::optional<nlohmann::json> authorized_agent;  // only with values
  std::vector<CorrectionInput> corrections;          // only with values
  std::vector<TaskView> tasks;
  std::optional<std::string> callback_url;

  SlaFacts Facts() const;
};

// A new request with everything worked out that needs no database: its id, deadlines and SLA state, the seals and
// look-up hashes of its identities, its sealed agent and corrections, its audit detail, and its record as a read
// would show it but for the three values the insert returns (updated_at, the created event's id and time). Made by
// Store::Prepare without a connection; written by Store::Insert, many in one statement.
struct PreparedRequest {
  RequestRecord record;
  bool creates_tasks = false;  // opt-out and limit fan out at once
  std::string body_hash;       // hex: what an Idempotency-Key is checked against
  std::optional<std::string> agent_sealed, corrections_sealed;
  std::vector<std::string> lookup_hashes, seals;  // hex, one per identity
  std::string detail_text;                        // the created event's detail
};

// One request asked of Store::GetMany.
struct ReadKey {
  std::string_view id;
  bool with_values = false;  // identity values, the authorized agent and corrections opened
};

// What Store::GetMany found for one key.
struct ReadResult {
  std::optional<RequestRecord> record;  // none: no such request
  std::exception_ptr error;             // this request's rows could not be decoded (the batch's others can be)
};

struct CreateResult {
  std::string id;
  bool replayed = false;  // an earlier request with the same Idempotency-Key and body
  // The new request as Get(id, true) would read it back (identity values, agent and corrections included), built
  // from what was written and what the insert returned; none for a replay and for a request that fanned out at
  // once (its tasks are read back instead).
  std::optional<RequestRecord> record;
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
  std::map<std::string, long long> by_sla_state;  // all requests: open ones by clock state, closed ones met/missed
  long long open = 0;
  // The soonest respond_by dates among open requests, with how many fall due on each.
  std::vector<std::pair<LocalDate, long long>> next_due;
  std::optional<LocalDate> next_acknowledge_by;
  // Open requests by type, then by SLA state (on_track, at_risk, breached).
  std::map<std::string, std::map<std::string, long long>> open_by_type_sla;
  // Open requests that have a task on a system, by system, then by SLA state; and per system how many of those
  // tasks are not finished (pending, running, failed or waiting for a person).
  std::map<std::string, std::map<std::string, long long>> open_by_system_sla;
  std::map<std::string, long long> unfinished_tasks_by_system;
};

// What an action carries besides its event.
struct ActionInput {
  RequestEvent event = RequestEvent::kAcknowledge;
  nlohmann::json detail = nlohmann::json::object();  // recorded in the audit event
  std::optional<VerifyInput> verify;
  std::optional<ExtendInput> extend;
  std::optional<DenyInput> deny;
};

// A task claimed by this process, with what the connector needs (identity values opened from their seals).
struct ClaimedTask {
  std::string id;
  std::string request_id;
  std::string system;
  std::string action;
  std::string request_type;
  int attempts = 0;
  int max_attempts = 1;
  nlohmann::json continuation;
  std::string retain_basis;
  std::vector<connectors::Identity> identities;
  std::vector<connectors::Correction> corrections;
};

struct RetryPolicy {
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds max{900000};
};

// A status callback waiting to be delivered.
struct CallbackDelivery {
  long long id = 0;
  std::string request_id;
  std::string url;
  std::string body;
  int attempts = 0;
};

struct AuditPage {
  std::vector<HistoryEntry> items;
  std::vector<std::string> request_ids;  // parallel to items ("" when none)
};

class Store {
 public:
  Store(DbPool& pool, const BusinessCalendar& calendar, const PiiCipher& cipher, int at_risk_days,
        const DataMap* data_map = nullptr, bool callbacks_enabled = false)
      : pool_(pool),
        calendar_(calendar),
        cipher_(cipher),
        at_risk_days_(at_risk_days),
        data_map_(data_map),
        callbacks_enabled_(callbacks_enabled) {}

  // Throws ApiError(kIdempotencyMismatch) when the key was used with another body.
  PreparedRequest Prepare(const NewRequest& request, const Principal& by, Timestamp now) const;
  // Writes new requests, their identities and their created events in one statement (atomic without a transaction
  // block; in the caller's transaction if given), and completes each record with what the insert returned. All or
  // nothing: on failure it throws and nothing was written. Tasks and Idempotency-Keys are the caller's.
  void Insert(const std::vector<PreparedRequest*>& requests, pqxx::transaction_base* txn = nullptr);
  CreateResult Create(const NewRequest& request, const Principal& by, const std::optional<std::string>& idempotency_key,
                      Timestamp now);
  // The same for a request already prepared (by `by`).
  CreateResult Create(PreparedRequest prepared, const Principal& by, const std::optional<std::string>& idempotency_key);
  // A whole request (identities, history, tasks): GetMany of one. Throws what GetMany throws, or its error.
  std::optional<RequestRecord> Get(const std::string& id, bool with_values);
  // Whole requests for many ids in one statement (RequestReader gathers concurrent reads into one call); results in
  // the order of `keys`, an id that is not a UUID simply not found. Throws ApiError(kUnavailable) for the whole
  // batch when the database is away or the statement timed out.
  std::vector<ReadResult> GetMany(std::span<const ReadKey> keys);
  // GetMany's statement ($1: the ids as a text[] literal, $2: whether any caller may see values), for the tests
  // that check its plan and that tests/bench/intake-pgbench.sql replays it.
  static const std::string& GetManyStatement();
  // Insert's statement, for the test that tests/bench/intake-pgbench.sql replays it.
  static const std::string& InsertStatement();
  ListPage List(const ListFilter& filter);
  SlaSummary Summary();
  // The database's figures for GET /metrics. Reads open requests (partial index) and unfinished tasks only.
  MetricGauges ReadMetricGauges(Timestamp now);
  // The 11 CCR 7102 figures of requests received in `year` (report.h). Throws ApiError for a year out of range.
  nlohmann::json YearMetrics(int year);
  // The funnel. Throws ApiError(kNotFound) or ApiError(kTransitionNotAllowed) (nothing written).
  void Apply(const std::string& id, const ActionInput& action, const Principal& by, Timestamp now);
  // Revisits open requests whose SLA state may have changed by `now`; returns how many changed state.
  int SweepSla(Timestamp now);
  AuditPage ListAudit(long long after_id, int limit, const std::optional<std::string>& request_id);

  LocalDate Today(Timestamp now) const;
  int at_risk_days() const { return at_risk_days_; }
  bool callbacks_enabled() const { return callbacks_enabled_; }

  // ---- The engine (store_tasks.cpp). ----
  // Claims due tasks under a lease for `owner`, up to a limit per system (system, limit), earliest respond_by first
  // within each system: one statement for all systems.
  std::vector<ClaimedTask> ClaimTasks(const std::vector<std::pair<std::string, int>>& limits, const std::string& owner,
                                      std::chrono::milliseconds lease);
  // For systems whose connector answers inline (Connector::AnswersInline): claims due tasks as ClaimTasks does, but
  // only locks them, runs `run` on each inside the same transaction and writes each outcome, its audit event and the
  // completion of every request whose last task finished there -- a task is written once, claim and outcome
  // together, and nothing is committed unless all of it is. `run` may be called again for a task if the
  // transaction is retried. With `shares` > 1 only the tasks of requests in share `share` (of `shares`, split by
  // request id) are taken, so that that many rounds can run at once without contending for the same requests.
  struct InlineRound {
    std::map<std::string, int> claimed;                                    // per system: tasks locked
    std::vector<std::pair<std::string, connectors::OutcomeKind>> outcomes;  // (system, kind) of each written
  };
  InlineRound RunInline(const std::vector<std::pair<std::string, int>>& limits, const std::string& owner,
                        const RetryPolicy& policy, Timestamp now,
                        const std::function<connectors::Outcome(const ClaimedTask&)>& run, int share = 0,
                        int shares = 1);
  void RenewLeases(const std::vector<std::string>& task_ids, const std::string& owner, std::chrono::milliseconds lease);
  // Gives tasks back (shutdown): they are due again at once for any process.
  void ReleaseLeases(const std::vector<std::string>& task_ids, const std::string& owner);
  // Writes a connector's outcome if `owner` still holds the lease (false otherwise: another process took the task
  // over and its answer counts). Completes the request when its last task finishes.
  bool RecordOutcome(const ClaimedTask& task, const connectors::Outcome& outcome, const std::string& owner,
                     const RetryPolicy& policy, Timestamp now);
  // The same for many outcomes in one transaction, written set-based: each outcome with its audit event, and every
  // request whose last task finished completed. All or nothing; per item, whether it was written (false: the lease
  // was lost, or the same task came twice and only its first outcome counts).
  struct OutcomeRef {
    const ClaimedTask* task;
    const connectors::Outcome* outcome;
  };
  std::vector<bool> RecordOutcomes(const std::vector<OutcomeRef>& items, const std::string& owner,
                                   const RetryPolicy& policy, Timestamp now);
  // The earliest moment a task of these systems becomes due (pending or lease expiry); none if no such task.
  std::optional<Timestamp> NextDue(const std::vector<std::string>& systems);
  // Admin: a dead-lettered (failed) task is re-queued with a fresh attempt count.
  void RetryTask(const std::string& request_id, const std::string& task_id, const Principal& by, Timestamp now);
  // A person closes a needs_manual (or failed) task with their outcome.
  void CompleteTaskManually(const std::string& request_id, const std::string& task_id, const std::string& outcome,
                            const std::string& note, const Principal& by, Timestamp now);
  // The peer says a task changed: poll it now.
  bool WakeTask(const std::string& task_id);
  // The system a task belongs to, or none.
  std::optional<std::string> TaskSystem(const std::string& task_id);
  // The sealed access package, opened; none if the request has none. Throws ApiError(kGone) for a request the
  // retention purge has emptied.
  std::optional<nlohmann::json> GetPackage(const std::string& request_id);

  std::vector<CallbackDelivery> ClaimCallbacks(int limit, std::chrono::milliseconds lease);
  void RecordCallbackResult(const CallbackDelivery& delivery, bool delivered, const std::string& error,
                            int max_attempts, const RetryPolicy& policy);

 private:
  // The funnel's body, inside the caller's transaction, on a row the caller locked with FOR UPDATE.
  void ApplyLocked(pqxx::work& txn, RequestRecord& r, const ActionInput& action, const Principal& by, Timestamp now);
  void InsertTasks(pqxx::work& txn, const std::string& request_id, RequestType type, LocalDate respond_by);
  void EnqueueCallback(pqxx::work& txn, const RequestRecord& r, RequestStatus from, Timestamp now);
  // Seals the access package from what the request's tasks returned (redacted per 11 CCR §7024(d)).
  void SealPackage(pqxx::work& txn, const std::string& request_id, Timestamp now);
  // Completes an in_progress request whose tasks are all finished; builds the access package.
  void CompleteIfFinished(pqxx::work& txn, const std::string& request_id, Timestamp now);
  // The same for many requests, each already locked by the caller, with one read and one write for all of them.
  void CompleteAllFinished(pqxx::work& txn, const std::vector<std::string>& request_ids, Timestamp now);

  DbPool& pool_;
  const BusinessCalendar& calendar_;
  const PiiCipher& cipher_;
  int at_risk_days_;
  const DataMap* data_map_;
  bool callbacks_enabled_;
};

}  // namespace rightsd
