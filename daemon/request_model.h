// The vocabulary of a consumer-rights request: types, statuses, events, SLA states and denial reasons as enums,
// with one string table each way (strings exist only at the JSON and SQL edges), and the status transition table.
// Pure: no I/O. All functions are thread-safe.
#pragma once
#include <optional>
#include <span>
#include <string_view>

namespace rightsd {

enum class RequestType { kAccess, kDelete, kCorrect, kOptOut, kLimit };
enum class RequestStatus {
  kReceived,
  kVerifying,
  kInProgress,
  kCompleted,
  kPartiallyCompleted,
  kDenied,
  kUnverifiable,
  kCancelled,
};
// What can happen to a request. Acknowledge and Extend leave the status as it is (or move received -> verifying)
// but are still rows of the table, so that the whole machine is visible in one place.
enum class RequestEvent {
  kAcknowledge,
  kVerify,
  kExtend,
  kDeny,              // exempt / not a consumer / other
  kDenyUnverifiable,  // deny with reason "unverifiable"
  kCancel,            // withdrawn by the consumer
  kComplete,
  kCompletePartially,
};
enum class SlaState { kOnTrack, kAtRisk, kBreached, kMet, kMissed };
enum class DenialReason { kUnverifiable, kExempt, kNotAConsumer, kOther };

std::string_view ToString(RequestType v);
std::string_view ToString(RequestStatus v);
std::string_view ToString(RequestEvent v);
std::string_view ToString(SlaState v);
std::string_view ToString(DenialReason v);

std::optional<RequestType> ParseRequestType(std::string_view s);
std::optional<RequestStatus> ParseRequestStatus(std::string_view s);
std::optional<SlaState> ParseSlaState(std::string_view s);
std::optional<DenialReason> ParseDenialReason(std::string_view s);

bool IsOpen(RequestStatus status);
// Access, delete and correct get an acknowledgement deadline and may be extended once; opt-out and limit may not.
bool HasAcknowledgement(RequestType type);
bool MayExtend(RequestType type);

struct Transition {
  RequestStatus from;
  RequestEvent event;
  RequestStatus to;
};
std::span<const Transition> TransitionTable();
// The status after `event`, or nullopt when the table has no such row (the action is refused with 409).
std::optional<RequestStatus> Next(RequestStatus from, RequestEvent event);

}  // namespace rightsd
