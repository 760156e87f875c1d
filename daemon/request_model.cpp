#include "request_model.h"

#include <array>
#include <utility>

namespace rightsd {

namespace {

template <typename E, std::size_t N>
std::string_view Lookup(const std::array<std::pair<E, std::string_view>, N>& table, E value) {
  for (const auto& [e, s] : table) {
    if (e == value) return s;
  }
  return "unknown";
}

template <typename E, std::size_t N>
std::optional<E> ReverseLookup(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view s) {
  for (const auto& [e, name] : table) {
    if (name == s) return e;
  }
  return std::nullopt;
}

using RT = RequestType;
using RS = RequestStatus;
using EV = RequestEvent;

constexpr std::array<std::pair<RT, std::string_view>, 5> kTypes{{
    {RT::kAccess, "access"},
    {RT::kDelete, "delete"},
    {RT::kCorrect, "correct"},
    {RT::kOptOut, "opt_out"},
    {RT::kLimit, "limit"},
}};
constexpr std::array<std::pair<RS, std::string_view>, 8> kStatuses{{
    {RS::kReceived, "received"},
    {RS::kVerifying, "verifying"},
    {RS::kInProgress, "in_progress"},
    {RS::kCompleted, "completed"},
    {RS::kPartiallyCompleted, "partially_completed"},
    {RS::kDenied, "denied"},
    {RS::kUnverifiable, "unverifiable"},
    {RS::kCancelled, "cancelled"},
}};
constexpr std::array<std::pair<EV, std::string_view>, 8> kEvents{{
    {EV::kAcknowledge, "acknowledge"},
    {EV::kVerify, "verify"},
    {EV::kExtend, "extend"},
    {EV::kDeny, "deny"},
    {EV::kDenyUnverifiable, "deny_unverifiable"},
    {EV::kCancel, "cancel"},
    {EV::kComplete, "complete"},
    {EV::kCompletePartially, "complete_partially"},
}};
constexpr std::array<std::pair<SlaState, std::string_view>, 5> kSlaStates{{
    {SlaState::kOnTrack, "on_track"},
    {SlaState::kAtRisk, "at_risk"},
    {SlaState::kBreached, "breached"},
    {SlaState::kMet, "met"},
    {SlaState::kMissed, "missed"},
}};
constexpr std::array<std::pair<DenialReason, std::string_view>, 4> kDenialReasons{{
    {DenialReason::kUnverifiable, "unverifiable"},
    {DenialReason::kExempt, "exempt"},
    {DenialReason::kNotAConsumer, "not_a_consumer"},
    {DenialReason::kOther, "other"},
}};

// The whole machine. Type-specific rules (no acknowledgement or extension for opt-out/limit, one extension only,
// extension before respond_by) are legal guards checked in sla.cpp; this table is only about statuses.
constexpr std::array<Transition, 18> kTransitions{{
    {RS::kReceived, EV::kAcknowledge, RS::kVerifying},
    {RS::kReceived, EV::kVerify, RS::kInProgress},
    {RS::kReceived, EV::kExtend, RS::kReceived},
    {RS::kReceived, EV::kDeny, RS::kDenied},
    {RS::kReceived, EV::kDenyUnverifiable, RS::kUnverifiable},
    {RS::kReceived, EV::kCancel, RS::kCancelled},

    {RS::kVerifying, EV::kAcknowledge, RS::kVerifying},
    {RS::kVerifying, EV::kVerify, RS::kInProgress},
    {RS::kVerifying, EV::kExtend, RS::kVerifying},
    {RS::kVerifying, EV::kDeny, RS::kDenied},
    {RS::kVerifying, EV::kDenyUnverifiable, RS::kUnverifiable},
    {RS::kVerifying, EV::kCancel, RS::kCancelled},

    {RS::kInProgress, EV::kAcknowledge, RS::kInProgress},
    {RS::kInProgress, EV::kExtend, RS::kInProgress},
    {RS::kInProgress, EV::kDeny, RS::kDenied},
    {RS::kInProgress, EV::kCancel, RS::kCancelled},
    {RS::kInProgress, EV::kComplete, RS::kCompleted},
    {RS::kInProgress, EV::kCompletePartially, RS::kPartiallyCompleted},
    // Closed statuses have no rows: nothing moves a closed request.
}};

}  // namespace

std::string_view ToString(RequestType v) { return Lookup(kTypes, v); }
std::string_view ToString(RequestStatus v) { return Lookup(kStatuses, v); }
std::string_view ToString(RequestEvent v) { return Lookup(kEvents, v); }
std::string_view ToString(SlaState v) { return Lookup(kSlaStates, v); }
std::string_view ToString(DenialReason v) { return Lookup(kDenialReasons, v); }

std::optional<RequestType> ParseRequestType(std::string_view s) { return ReverseLookup(kTypes, s); }
std::optional<RequestStatus> ParseRequestStatus(std::string_view s) { return ReverseLookup(kStatuses, s); }
std::optional<SlaState> ParseSlaState(std::string_view s) { return ReverseLookup(kSlaStates, s); }
std::optional<DenialReason> ParseDenialReason(std::string_view s) { return ReverseLookup(kDenialReasons, s); }

bool IsOpen(RequestStatus status) {
  return status == RS::kReceived || status == RS::kVerifying || status == RS::kInProgress;
}

bool HasAcknowledgement(RequestType type) {
  return type == RT::kAccess || type == RT::kDelete || type == RT::kCorrect;
}
bool MayExtend(RequestType type) { return HasAcknowledgement(type); }

std::span<const Transition> TransitionTable() { return kTransitions; }

std::optional<RequestStatus> Next(RequestStatus from, RequestEvent event) {
  for (const auto& t : kTransitions) {
    if (t.from == from && t.event == event) return t.to;
  }
  return std::nullopt;
}

}  // namespace rightsd
