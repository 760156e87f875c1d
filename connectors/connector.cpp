#include "connectors/connector.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

namespace rightsd::connectors {

namespace {
constexpr std::array<std::pair<TaskAction, std::string_view>, 7> kActions{{
    {TaskAction::kAccess, "access"},
    {TaskAction::kDelete, "delete"},
    {TaskAction::kDeidentify, "deidentify"},
    {TaskAction::kLocate, "locate"},
    {TaskAction::kCorrect, "correct"},
    {TaskAction::kOptOut, "opt_out"},
    {TaskAction::kLimit, "limit"},
}};
}  // namespace

std::string_view ToString(TaskAction action) {
  for (const auto& [a, s] : kActions) {
    if (a == action) return s;
  }
  return "unknown";
}

std::optional<TaskAction> ParseTaskAction(std::string_view s) {
  for (const auto& [a, name] : kActions) {
    if (name == s) return a;
  }
  return std::nullopt;
}

std::string_view ToString(OutcomeKind kind) {
  switch (kind) {
    case OutcomeKind::kDone: return "done";
    case OutcomeKind::kNotFound: return "not_found";
    case OutcomeKind::kRetainedExempt: return "retained_exempt";
    case OutcomeKind::kRetry: return "retry";
    case OutcomeKind::kFailed: return "failed";
    case OutcomeKind::kNeedsManual: return "needs_manual";
    case OutcomeKind::kInProgress: return "in_progress";
  }
  return "unknown";
}

Outcome Outcome::Done(nlohmann::json receipt) {
  Outcome o;
  o.kind = OutcomeKind::kDone;
  o.receipt = std::move(receipt);
  return o;
}

Outcome Outcome::NotFound(nlohmann::json receipt) {
  Outcome o;
  o.kind = OutcomeKind::kNotFound;
  o.receipt = std::move(receipt);
  return o;
}

Outcome Outcome::Retry(std::string message, std::optional<std::chrono::milliseconds> after) {
  Outcome o;
  o.kind = OutcomeKind::kRetry;
  o.message = std::move(message);
  o.retry_after = after;
  return o;
}

Outcome Outcome::Failed(std::string message) {
  Outcome o;
  o.kind = OutcomeKind::kFailed;
  o.message = std::move(message);
  return o;
}

const ConnectorType* FindConnectorType(std::string_view name) {
  for (const auto& type : Registry()) {
    if (type.name == name) return &type;
  }
  return nullptr;
}

void ValidateSettings(const ConnectorType& type, const std::string& system, const nlohmann::json& settings) {
  const auto schema_doc = nlohmann::json::parse(type.settings_schema, nullptr, false);
  if (schema_doc.is_discarded()) {
    throw ConnectorConfigError(fmt::format("connector type {}: its settings schema is not valid JSON", type.name));
  }
  valijson::Schema schema;
  valijson::SchemaParser parser;
  valijson::adapters::NlohmannJsonAdapter schema_adapter(schema_doc);
  parser.populateSchema(schema_adapter, schema);
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(settings);
  if (validator.validate(schema, target, &results)) return;
  // valijson reports the outermost failure first; the deepest one names the setting best.
  valijson::ValidationResults::Error error, deepest;
  std::size_t depth = 0;
  while (results.popError(error)) {
    if (error.context.size() >= depth) {
      depth = error.context.size();
      deepest = error;
    }
  }
  std::string pointer;
  for (std::size_t i = 1; i < deepest.context.size(); ++i) {
    std::string part = deepest.context[i];
    if (part.size() >= 2 && part.front() == '[' && part.back() == ']') part = part.substr(1, part.size() - 2);
    if (part.size() >= 2 && part.front() == '"' && part.back() == '"') part = part.substr(1, part.size() - 2);
    pointer += "/" + part;
  }
  throw ConnectorConfigError(fmt::format("system {}: settings{}: {}", system, pointer, deepest.description));
}

std::string ReadCredential(const ConnectorEnv& env, const std::string& setting, const std::string& path) {
  std::filesystem::path p = path;
  if (p.is_relative()) {
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    if (creds && *creds && std::filesystem::exists(std::filesystem::path(creds) / p)) {
      p = std::filesystem::path(creds) / p;
    } else {
      p = env.config_dir / p;
    }
  }
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ConnectorConfigError(fmt::format("system {}: settings/{}: cannot read {}", env.system, setting, p.string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

std::size_t Utf8SequenceLength(std::string_view in, std::size_t i) {
  const auto c = static_cast<unsigned char>(in[i]);
  const std::size_t len = c < 0x80                 ? 1
                          : c >= 0xC2 && c <= 0xDF ? 2
                          : c >= 0xE0 && c <= 0xEF ? 3
                          : c >= 0xF0 && c <= 0xF4 ? 4
                                                   : 0;
  bool ok = len > 0 && i + len <= in.size();
  for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
  if (ok && len >= 3) {
    const auto d = static_cast<unsigned char>(in[i + 1]);
    ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0) && !(c == 0xF0 && d < 0x90) &&
         !(c == 0xF4 && d >= 0x90);  // overlong forms, surrogates, beyond U+10FFFF
  }
  return ok ? len : 0;
}

std::string ToValidUtf8(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  std::size_t i = 0;
  while (i < in.size()) {
    if (const std::size_t len = Utf8SequenceLength(in, i)) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

}  // namespace rightsd::connectors
