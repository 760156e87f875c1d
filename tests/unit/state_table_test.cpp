// Unit tests for daemon/request_model.{h,cpp}: the status transition table and the string tables of every enum.
//
// The expected table is written out literally below -- all 8 statuses x 8 events = 64 cells -- from the design:
//   received -> verifying (acknowledge) -> in_progress (verify) -> completed | partially_completed;
//   received/verifying -> unverifiable (deny_unverifiable); any open status -> cancelled (cancel), -> denied (deny);
//   acknowledge and extend keep the status (received stays received on extend); closed statuses accept nothing;
//   complete/complete_partially only from in_progress; verify only from received/verifying; deny_unverifiable not
//   from in_progress.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER
#include <catch2/catch.hpp>

#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "request_model.h"

using rightsd::DenialReason;
using rightsd::Next;
using rightsd::RequestEvent;
using rightsd::RequestStatus;
using rightsd::RequestType;
using rightsd::SlaState;

namespace {

using RS = RequestStatus;
using EV = RequestEvent;

constexpr RS kAllStatuses[] = {RS::kReceived,  RS::kVerifying,    RS::kInProgress, RS::kCompleted,
                               RS::kPartiallyCompleted, RS::kDenied, RS::kUnverifiable, RS::kCancelled};
constexpr EV kAllEvents[] = {EV::kAcknowledge, EV::kVerify, EV::kExtend,   EV::kDeny,
                             EV::kDenyUnverifiable, EV::kCancel, EV::kComplete, EV::kCompletePartially};

// "-" means: no such transition (the action is refused with 409).
struct Cell {
  RS from;
  EV event;
  const char* to;
};

// clang-format off
const Cell kExpected[64] = {
    // received
    {RS::kReceived, EV::kAcknowledge,       "verifying"},
    {RS::kReceived, EV::kVerify,            "in_progress"},
    {RS::kReceived, EV::kExtend,            "received"},
    {RS::kReceived, EV::kDeny,              "denied"},
    {RS::kReceived, EV::kDenyUnverifiable,  "unverifiable"},
    {RS::kReceived, EV::kCancel,            "cancelled"},
    {RS::kReceived, EV::kComplete,          "-"},
    {RS::kReceived, EV::kCompletePartially, "-"},
    // verifying
    {RS::kVerifying, EV::kAcknowledge,       "verifying"},
    {RS::kVerifying, EV::kVerify,            "in_progress"},
    {RS::kVerifying, EV::kExtend,            "verifying"},
    {RS::kVerifying, EV::kDeny,              "denied"},
    {RS::kVerifying, EV::kDenyUnverifiable,  "unverifiable"},
    {RS::kVerifying, EV::kCancel,            "cancelled"},
    {RS::kVerifying, EV::kComplete,          "-"},
    {RS::kVerifying, EV::kCompletePartially, "-"},
    // in_progress
    {RS::kInProgress, EV::kAcknowledge,       "in_progress"},
    {RS::kInProgress, EV::kVerify,            "-"},
    {RS::kInProgress, EV::kExtend,            "in_progress"},
    {RS::kInProgress, EV::kDeny,              "denied"},
    {RS::kInProgress, EV::kDenyUnverifiable,  "-"},
    {RS::kInProgress, EV::kCancel,            "cancelled"},
    {RS::kInProgress, EV::kComplete,          "completed"},
    {RS::kInProgress, EV::kCompletePartially, "partially_completed"},
    // completed
    {RS::kCompleted, EV::kAcknowledge,       "-"},
    {RS::kCompleted, EV::kVerify,            "-"},
    {RS::kCompleted, EV::kExtend,            "-"},
    {RS::kCompleted, EV::kDeny,              "-"},
    {RS::kCompleted, EV::kDenyUnverifiable,  "-"},
    {RS::kCompleted, EV::kCancel,            "-"},
    {RS::kCompleted, EV::kComplete,          "-"},
    {RS::kCompleted, EV::kCompletePartially, "-"},
    // partially_completed
    {RS::kPartiallyCompleted, EV::kAcknowledge,       "-"},
    {RS::kPartiallyCompleted, EV::kVerify,            "-"},
    {RS::kPartiallyCompleted, EV::kExtend,            "-"},
    {RS::kPartiallyCompleted, EV::kDeny,              "-"},
    {RS::kPartiallyCompleted, EV::kDenyUnverifiable,  "-"},
    {RS::kPartiallyCompleted, EV::kCancel,            "-"},
    {RS::kPartiallyCompleted, EV::kComplete,          "-"},
    {RS::kPartiallyCompleted, EV::kCompletePartially, "-"},
    // denied
    {RS::kDenied, EV::kAcknowledge,       "-"},
    {RS::kDenied, EV::kVerify,            "-"},
    {RS::kDenied, EV::kExtend,            "-"},
    {RS::kDenied, EV::kDeny,              "-"},
    {RS::kDenied, EV::kDenyUnverifiable,  "-"},
    {RS::kDenied, EV::kCancel,            "-"},
    {RS::kDenied, EV::kComplete,          "-"},
    {RS::kDenied, EV::kCompletePartially, "-"},
    // unverifiable
    {RS::kUnverifiable, EV::kAcknowledge,       "-"},
    {RS::kUnverifiable, EV::kVerify,            "-"},
    {RS::kUnverifiable, EV::kExtend,            "-"},
    {RS::kUnverifiable, EV::kDeny,              "-"},
    {RS::kUnverifiable, EV::kDenyUnverifiable,  "-"},
    {RS::kUnverifiable, EV::kCancel,            "-"},
    {RS::kUnverifiable, EV::kComplete,          "-"},
    {RS::kUnverifiable, EV::kCompletePartially, "-"},
    // cancelled
    {RS::kCancelled, EV::kAcknowledge,       "-"},
    {RS::kCancelled, EV::kVerify,            "-"},
    {RS::kCancelled, EV::kExtend,            "-"},
    {RS::kCancelled, EV::kDeny,              "-"},
    {RS::kCancelled, EV::kDenyUnverifiable,  "-"},
    {RS::kCancelled, EV::kCancel,            "-"},
    {RS::kCancelled, EV::kComplete,          "-"},
    {RS::kCancelled, EV::kCompletePartially, "-"},
};
// clang-format on

std::string Name(std::optional<RS> s) { return s ? std::string(rightsd::ToString(*s)) : std::string("-"); }

}  // namespace

TEST_CASE("api: state table, every status x event pair", "[api]") {
  // The literal table covers every pair exactly once.
  std::set<std::pair<int, int>> covered;
  for (const Cell& c : kExpected) covered.emplace(static_cast<int>(c.from), static_cast<int>(c.event));
  REQUIRE(covered.size() == 64);
  for (RS s : kAllStatuses) {
    for (EV e : kAllEvents) CHECK(covered.count({static_cast<int>(s), static_cast<int>(e)}) == 1);
  }

  for (const Cell& c : kExpected) {
    INFO(rightsd::ToString(c.from) << " x " << rightsd::ToString(c.event));
    CHECK(Name(Next(c.from, c.event)) == c.to);
  }
}

TEST_CASE("api: state table rows are exactly the allowed cells", "[api]") {
  // Count of non-"-" cells above: received 6 + verifying 6 + in_progress 6 = 18; closed statuses 0.
  const auto table = rightsd::TransitionTable();
  CHECK(table.size() == 18);
  std::set<std::pair<int, int>> seen;
  for (const auto& t : table) {
    INFO(rightsd::ToString(t.from) << " x " << rightsd::ToString(t.event));
    CHECK(seen.emplace(static_cast<int>(t.from), static_cast<int>(t.event)).second);  // no duplicate rows
    CHECK(rightsd::IsOpen(t.from));
    bool found = false;
    for (const Cell& c : kExpected) {
      if (c.from == t.from && c.event == t.event) {
        found = true;
        CHECK(std::string(rightsd::ToString(t.to)) == c.to);
      }
    }
    CHECK(found);
  }
}

TEST_CASE("api: state table open statuses and type rules", "[api]") {
  CHECK(rightsd::IsOpen(RS::kReceived));
  CHECK(rightsd::IsOpen(RS::kVerifying));
  CHECK(rightsd::IsOpen(RS::kInProgress));
  CHECK_FALSE(rightsd::IsOpen(RS::kCompleted));
  CHECK_FALSE(rightsd::IsOpen(RS::kPartiallyCompleted));
  CHECK_FALSE(rightsd::IsOpen(RS::kDenied));
  CHECK_FALSE(rightsd::IsOpen(RS::kUnverifiable));
  CHECK_FALSE(rightsd::IsOpen(RS::kCancelled));

  CHECK(rightsd::HasAcknowledgement(RequestType::kAccess));
  CHECK(rightsd::HasAcknowledgement(RequestType::kDelete));
  CHECK(rightsd::HasAcknowledgement(RequestType::kCorrect));
  CHECK_FALSE(rightsd::HasAcknowledgement(RequestType::kOptOut));
  CHECK_FALSE(rightsd::HasAcknowledgement(RequestType::kLimit));

  CHECK(rightsd::MayExtend(RequestType::kAccess));
  CHECK(rightsd::MayExtend(RequestType::kDelete));
  CHECK(rightsd::MayExtend(RequestType::kCorrect));
  CHECK_FALSE(rightsd::MayExtend(RequestType::kOptOut));
  CHECK_FALSE(rightsd::MayExtend(RequestType::kLimit));
}

TEST_CASE("api: enum strings round trip", "[api]") {
  const std::vector<std::pair<RequestType, std::string>> types = {{RequestType::kAccess, "access"},
                                                                  {RequestType::kDelete, "delete"},
                                                                  {RequestType::kCorrect, "correct"},
                                                                  {RequestType::kOptOut, "opt_out"},
                                                                  {RequestType::kLimit, "limit"}};
  for (const auto& [v, s] : types) {
    INFO(s);
    CHECK(std::string(rightsd::ToString(v)) == s);
    CHECK(rightsd::ParseRequestType(s) == std::optional<RequestType>(v));
  }

  const std::vector<std::pair<RS, std::string>> statuses = {
      {RS::kReceived, "received"},     {RS::kVerifying, "verifying"},
      {RS::kInProgress, "in_progress"}, {RS::kCompleted, "completed"},
      {RS::kPartiallyCompleted, "partially_completed"}, {RS::kDenied, "denied"},
      {RS::kUnverifiable, "unverifiable"}, {RS::kCancelled, "cancelled"}};
  for (const auto& [v, s] : statuses) {
    INFO(s);
    CHECK(std::string(rightsd::ToString(v)) == s);
    CHECK(rightsd::ParseRequestStatus(s) == std::optional<RS>(v));
  }

  // Events have no parser (they never come in as strings) but each has its own name.
  const std::vector<std::pair<EV, std::string>> events = {
      {EV::kAcknowledge, "acknowledge"}, {EV::kVerify, "verify"},
      {EV::kExtend, "extend"},           {EV::kDeny, "deny"},
      {EV::kDenyUnverifiable, "deny_unverifiable"}, {EV::kCancel, "cancel"},
      {EV::kComplete, "complete"},       {EV::kCompletePartially, "complete_partially"}};
  for (const auto& [v, s] : events) {
    INFO(s);
    CHECK(std::string(rightsd::ToString(v)) == s);
  }

  const std::vector<std::pair<SlaState, std::string>> states = {{SlaState::kOnTrack, "on_track"},
                                                                {SlaState::kAtRisk, "at_risk"},
                                                                {SlaState::kBreached, "breached"},
                                                                {SlaState::kMet, "met"},
                                                                {SlaState::kMissed, "missed"}};
  for (const auto& [v, s] : states) {
    INFO(s);
    CHECK(std::string(rightsd::ToString(v)) == s);
    CHECK(rightsd::ParseSlaState(s) == std::optional<SlaState>(v));
  }

  const std::vector<std::pair<DenialReason, std::string>> reasons = {{DenialReason::kUnverifiable, "unverifiable"},
                                                                     {DenialReason::kExempt, "exempt"},
                                                                     {DenialReason::kNotAConsumer, "not_a_consumer"},
                                                                     {DenialReason::kOther, "other"}};
  for (const auto& [v, s] : reasons) {
    INFO(s);
    CHECK(std::string(rightsd::ToString(v)) == s);
    CHECK(rightsd::ParseDenialReason(s) == std::optional<DenialReason>(v));
  }
}

TEST_CASE("api: enum parsers reject unknown strings and wrong case", "[api]") {
  for (const char* s : {"", "Access", "ACCESS", "access ", " access", "opt-out", "optout", "OPT_OUT", "Opt_Out",
                        "read", "erase", "access\n", "limit_use"}) {
    INFO("'" << s << "'");
    CHECK_FALSE(rightsd::ParseRequestType(s).has_value());
  }
  for (const char* s : {"", "Received", "RECEIVED", "in progress", "in-progress", "InProgress", "In_Progress",
                        "canceled", "complete", "partially completed", "closed", "open", "verified"}) {
    INFO("'" << s << "'");
    CHECK_FALSE(rightsd::ParseRequestStatus(s).has_value());
  }
  for (const char* s : {"", "On_Track", "ON_TRACK", "on-track", "ontrack", "at risk", "Breached", "MET", "late"}) {
    INFO("'" << s << "'");
    CHECK_FALSE(rightsd::ParseSlaState(s).has_value());
  }
  for (const char* s : {"", "Exempt", "EXEMPT", "not-a-consumer", "not a consumer", "Other", "unverified",
                        "fraud", "unverifiable "}) {
    INFO("'" << s << "'");
    CHECK_FALSE(rightsd::ParseDenialReason(s).has_value());
  }
  // A string with an embedded NUL is not the name it starts with.
  CHECK_FALSE(rightsd::ParseRequestType(std::string_view("access\0x", 8)).has_value());
  CHECK_FALSE(rightsd::ParseRequestStatus(std::string_view("received\0", 9)).has_value());
}

TEST_CASE("api: enum strings are unique within each enum", "[api]") {
  std::set<std::string> statuses;
  for (RS s : kAllStatuses) statuses.emplace(rightsd::ToString(s));
  CHECK(statuses.size() == 8);
  std::set<std::string> events;
  for (EV e : kAllEvents) events.emplace(rightsd::ToString(e));
  CHECK(events.size() == 8);
  CHECK(events.count("unknown") == 0);
  CHECK(statuses.count("unknown") == 0);
}
