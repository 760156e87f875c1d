// The connector interface: one system (Salesforce, the EHR, a marketing platform, a webhook, a person) that holds a
// consumer's data. The engine gives a connector one task at a time; the connector answers with an Outcome value --
// peer failures (timeouts, 5xx, 429, malformed answers) are outcomes, never exceptions.
//
// Rules every connector keeps:
// - Run starts the work and returns at once; `done` is called exactly once, from any thread. No thread may be held
//   for the length of a remote call.
// - Every action is idempotent: the engine may run the same task again after a crash, so deleting what is already
//   gone is kDone, and a task id sent to a peer as an idempotency key must not double an effect.
// - Messages, receipts and logs never contain identity values; records (access results) may, and are sealed by the
//   engine before they reach the database.
// Connectors are created once at start-up and shared by the dispatcher's threads: Run must be thread-safe.
#pragma once
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "connectors/http_client.h"

namespace rightsd::connectors {

// What a task asks of one system.
enum class TaskAction {
  kAccess,      // return the person's records (right to know)
  kDelete,      // erase them
  kDeidentify,  // erase the identifying fields, keep the rest
  kLocate,      // find them and keep them: the system is exempt (e.g. HIPAA/CMIA records); answer kRetainedExempt
  kCorrect,     // apply the requested corrections
  kOptOut,      // stop selling/sharing
  kLimit,       // limit the use of sensitive personal information
};
std::string_view ToString(TaskAction action);
std::optional<TaskAction> ParseTaskAction(std::string_view s);

struct Identity {
  std::string kind;
  std::string value;
};
struct Correction {
  std::string field;
  std::string value;
};

struct TaskInput {
  std::string request_id;
  std::string task_id;  // stable across retries: use it as the idempotency key at the peer
  std::string system;
  std::string request_type;  // access | delete | correct | opt_out | limit
  TaskAction action = TaskAction::kAccess;
  std::vector<Identity> identities;
  std::vector<Correction> corrections;
  int attempt = 1;
  nlohmann::json continuation;  // what an earlier kInProgress outcome asked to keep (e.g. an operation id)
  std::string retain_basis;     // kLocate: the legal basis to put in the receipt
};

enum class OutcomeKind {
  kDone,
  kNotFound,
  kRetainedExempt,
  kRetry,        // transient failure: try again after retry_after (or the engine's backoff)
  kFailed,       // permanent failure: a person must look (dead letter)
  kNeedsManual,  // a person must do it and close the task through the API
  kInProgress,   // started at the peer; poll again after retry_after with `continuation`
};
std::string_view ToString(OutcomeKind kind);

struct Outcome {
  OutcomeKind kind = OutcomeKind::kFailed;
  std::string message;                                   // last_error / receipt note; never identity values
  std::optional<std::chrono::milliseconds> retry_after;  // kRetry and kInProgress
  nlohmann::json receipt = nlohmann::json::object();     // what was found and done, by which call
  nlohmann::json records;                                // kAccess + kDone: {"category": [record, ...]}
  nlohmann::json continuation;                           // kInProgress

  static Outcome Done(nlohmann::json receipt = nlohmann::json::object());
  static Outcome NotFound(nlohmann::json receipt = nlohmann::json::object());
  static Outcome Retry(std::string message, std::optional<std::chrono::milliseconds> after = std::nullopt);
  static Outcome Failed(std::string message);
};

using OutcomeCallback = std::function<void(Outcome)>;

class Connector {
 public:
  virtual ~Connector() = default;
  virtual bool Supports(TaskAction action) const = 0;
  virtual void Run(const TaskInput& input, OutcomeCallback done) = 0;
  // True when Run always calls `done` before it returns, touches nothing outside the process and may be called
  // again for the same task: the engine then runs such tasks inside the transaction that claims them and commits
  // their outcomes there, so a task costs one row write instead of a lease write and an outcome write. Through a
  // backlog such a round runs as several transactions at once: Run is then called from several threads together.
  virtual bool AnswersInline() const { return false; }
  // A status callback from the peer about one of this system's tasks (e.g. OpenDSR's signed callbacks on
  // POST /v1/callbacks/opendsr). True when `body` is authentic: the engine then polls the task at once.
  // `header` returns a request header by name ("" when absent). Connectors without callbacks keep the default.
  virtual bool VerifyCallback(const std::string& body,
                              const std::function<std::string(std::string_view)>& header) const {
    (void)body;
    (void)header;
    return false;
  }
};

struct ConnectorConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a connector gets at construction besides its own settings.
struct ConnectorEnv {
  std::string system;                  // the [[systems]] name, for messages
  std::filesystem::path config_dir;    // relative credential paths resolve against it
  HttpClient* http = nullptr;          // shared outbound client
  std::vector<std::string> categories; // the data map's categories for this system
};

struct ConnectorType {
  std::string_view name;
  // JSON Schema (draft 7) of the settings table; checked before `make` is called.
  std::string_view settings_schema;
  // Builds an instance; throws ConnectorConfigError naming the setting for what the schema cannot express
  // (e.g. an unreadable credential file).
  std::function<std::unique_ptr<Connector>(const nlohmann::json& settings, const ConnectorEnv& env)> make;
};

// The explicit list of connector types (connectors/registry.cpp). No static self-registration.
std::span<const ConnectorType> Registry();
const ConnectorType* FindConnectorType(std::string_view name);

// Validates `settings` against the type's schema; throws ConnectorConfigError("<system>: settings<pointer>: ...").
void ValidateSettings(const ConnectorType& type, const std::string& system, const nlohmann::json& settings);

// Peer text (bodies, header values) can be any bytes, but an outcome's message becomes last_error (PostgreSQL text)
// and its receipt is stored with json::dump, which throws on invalid UTF-8; cutting text to a length can also split
// a character. This keeps valid UTF-8 as it is and turns every invalid or cut sequence into '?'.
std::string ToValidUtf8(std::string_view text);

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF)
// that starts at `at`, or 0 if none does. The one definition of valid UTF-8 for ToValidUtf8 and the JSON writer.
std::size_t Utf8SequenceLength(std::string_view text, std::size_t at);

// Reads a credential file named by a setting: relative to config_dir, or to $CREDENTIALS_DIRECTORY when that is
// set and the file exists there (systemd LoadCredential=). Trailing newlines are removed.
std::string ReadCredential(const ConnectorEnv& env, const std::string& setting, const std::string& path);

}  // namespace rightsd::connectors
