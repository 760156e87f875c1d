#include "errors.h"

#include <array>
#include <utility>

namespace rightsd {

namespace {
struct Row {
  ErrorCode code;
  ProblemSpec spec;
};
constexpr std::array kProblems = {
    Row{ErrorCode::kMalformedBody, {400, "urn:rightsd:problem:malformed-body", "The request body is not valid JSON"}},
    Row{ErrorCode::kInvalidField, {422, "urn:rightsd:problem:invalid-field", "A field of the request is invalid"}},
    Row{ErrorCode::kUnsupportedMediaType,
        {415, "urn:rightsd:problem:unsupported-media-type", "The body must be application/json"}},
    Row{ErrorCode::kPayloadTooLarge, {413, "urn:rightsd:problem:payload-too-large", "The request body is too large"}},
    Row{ErrorCode::kUnauthenticated, {401, "urn:rightsd:problem:unauthenticated", "A valid bearer token is required"}},
    Row{ErrorCode::kBadSignature, {401, "urn:rightsd:problem:bad-signature", "The callback's signature does not verify"}},
    Row{ErrorCode::kForbidden, {403, "urn:rightsd:problem:forbidden", "The token's role may not do this"}},
    Row{ErrorCode::kNotFound, {404, "urn:rightsd:problem:not-found", "No such resource"}},
    Row{ErrorCode::kGone, {410, "urn:rightsd:problem:gone", "The resource was removed under the retention policy"}},
    Row{ErrorCode::kMethodNotAllowed, {405, "urn:rightsd:problem:method-not-allowed", "Method not allowed here"}},
    Row{ErrorCode::kIdempotencyMismatch,
        {409, "urn:rightsd:problem:idempotency-key-reused", "The Idempotency-Key was used with another body"}},
    Row{ErrorCode::kTransitionNotAllowed,
        {409, "urn:rightsd:problem:transition-not-allowed", "The request's state does not allow this action"}},
    Row{ErrorCode::kTooManyRequests,
        {429, "urn:rightsd:problem:too-many-requests", "Too many requests for this token; retry later"}},
    // A database restart takes a few seconds and the pool retries its connect within one: 1 s is soon enough.
    Row{ErrorCode::kUnavailable, {503, "urn:rightsd:problem:unavailable", "Temporarily unavailable; retry later", 1}},
    Row{ErrorCode::kOverloaded,
        {503, "urn:rightsd:problem:overloaded", "The server is at capacity; retry later", 1}},
    Row{ErrorCode::kInternal, {500, "urn:rightsd:problem:internal", "Internal error"}},
};
}  // namespace

const ProblemSpec& ProblemFor(ErrorCode code) {
  for (const auto& row : kProblems) {
    if (row.code == code) return row.spec;
  }
  return kProblems.back().spec;
}

nlohmann::json ProblemBody(const ApiError& error, std::string_view instance) {
  const auto& spec = ProblemFor(error.code());
  nlohmann::json body = {
      {"type", spec.type},
      {"title", spec.title},
      {"status", spec.status},
      {"detail", error.detail()},
  };
  if (!instance.empty()) body["instance"] = instance;
  if (!error.field().empty()) {
    body["field"] = error.field();
    // RFC 9457 §3's "errors" extension: a JSON pointer for body fields, a name for headers and query parameters.
    const char* locator = error.field().starts_with('/') ? "pointer" : "name";
    body["errors"] = nlohmann::json::array({{{locator, error.field()}, {"detail", error.detail()}}});
  }
  return body;
}

}  // namespace rightsd
