// One error type for everything a client can be told, and one table that maps each code to an HTTP status,
// an RFC 9457 problem type and a title. Only the HTTP layer renders it; what is logged is kept apart.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rightsd {

enum class ErrorCode {
  kMalformedBody,         // not JSON / not UTF-8 / duplicate keys / too deep
  kInvalidField,          // JSON but a field is wrong, missing or unknown
  kUnsupportedMediaType,  // body is not application/json
  kPayloadTooLarge,
  kUnauthenticated,
  kBadSignature,          // a peer's signed callback that does not verify
  kForbidden,
  kNotFound,
  kGone,                  // it existed, and was removed on purpose (the retention purge)
  kMethodNotAllowed,
  kIdempotencyMismatch,   // same Idempotency-Key, different body
  kTransitionNotAllowed,  // the state table or a legal rule forbids the action now
  kTooManyRequests,       // the token's rate limit: retry after Retry-After
  kUnavailable,           // database down or pool exhausted: retry later
  kOverloaded,            // more connections than http.threads + http.max_queued: retry later
  kInternal,
};

struct ProblemSpec {
  int status;
  std::string_view type;
  std::string_view title;
  int retry_after_s = 0;  // > 0: answers carry "Retry-After: <seconds>"
};

const ProblemSpec& ProblemFor(ErrorCode code);

class ApiError : public std::runtime_error {
 public:
  ApiError(ErrorCode code, std::string detail, std::string field = {})
      : std::runtime_error(detail), code_(code), detail_(std::move(detail)), field_(std::move(field)) {}
  ErrorCode code() const { return code_; }
  const std::string& detail() const { return detail_; }
  // JSON pointer (RFC 6901) into the request body, or a header/parameter name; empty when not about one field.
  const std::string& field() const { return field_; }

 private:
  ErrorCode code_;
  std::string detail_;
  std::string field_;
};

// The application/problem+json body for an error.
nlohmann::json ProblemBody(const ApiError& error, std::string_view instance);

}  // namespace rightsd
