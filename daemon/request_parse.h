// Parsing and validating the bodies a client sends. Strict: malformed JSON, invalid UTF-8, duplicate keys, nesting
// deeper than 16, unknown fields, wrong types and out-of-range values are refused with an ApiError naming the
// field as a JSON pointer. Pure: "now" is passed in. Thread-safe.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "errors.h"
#include "request_model.h"

namespace rightsd {

using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

struct IdentityInput {
  std::string kind;
  std::string value;  // as given, surrounding whitespace removed
};

struct CorrectionInput {
  std::string field;
  std::string value;
};

struct NewRequest {
  RequestType type = RequestType::kAccess;
  std::vector<IdentityInput> identities;
  std::optional<Timestamp> received_at;  // none: the server's now
  std::string channel = "api";
  std::optional<nlohmann::json> authorized_agent;
  std::vector<CorrectionInput> corrections;
  std::optional<std::string> callback_url;  // http(s) URL that receives signed status callbacks
  // The body in canonical form (sorted keys): what an Idempotency-Key is compared against.
  std::string canonical;
};

struct VerifyInput {
  std::string method;
  std::string level;  // "reasonable" | "reasonably_high" | "not_required"
};
struct ExtendInput {
  std::string reason;
};
struct DenyInput {
  DenialReason reason;
  std::string detail;
};
struct CancelInput {
  std::string reason;
};

struct TaskCompletionInput {
  std::string outcome;  // done | not_found | retained_exempt | failed
  std::string note;
};

// Parses JSON with the hostile-input rules above; throws ApiError(kMalformedBody).
nlohmann::json ParseJsonStrict(std::string_view body);

NewRequest ParseNewRequest(std::string_view body, Timestamp now);
VerifyInput ParseVerify(std::string_view body);
ExtendInput ParseExtend(std::string_view body);
DenyInput ParseDeny(std::string_view body);
CancelInput ParseCancel(std::string_view body);  // empty body allowed
void ParseEmptyObject(std::string_view body);     // acknowledge: empty body or {}
TaskCompletionInput ParseTaskCompletion(std::string_view body);

// Known identity kinds; value rules differ per kind.
bool IsKnownIdentityKind(std::string_view kind);
// The form a value is hashed in for look-ups: emails lower-cased, phone numbers reduced to digits (and a leading +).
std::string NormalizeIdentity(std::string_view kind, std::string_view value);

// RFC 3339 date-time with a mandatory offset; fractional seconds to microseconds.
std::optional<Timestamp> ParseRfc3339(std::string_view text);
std::string FormatRfc3339(Timestamp t);  // UTC, "Z", microseconds only when non-zero

}  // namespace rightsd
