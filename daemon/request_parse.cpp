#include "request_parse.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include <date/date.h>
#include <fmt/format.h>

namespace rightsd {

namespace {

using nlohmann::json;

constexpr int kMaxDepth = 16;
constexpr std::size_t kMaxIdentities = 20;
constexpr std::size_t kMaxCorrections = 50;
constexpr std::size_t kMaxValueLength = 512;
constexpr std::size_t kMaxTextLength = 2000;

constexpr std::array<std::string_view, 13> kIdentityKinds = {
    "email",      "phone",   "mrn",           "salesforce_id",  "hubspot_id", "mailchimp_id", "sfmc_contact_key",
    "fhir_patient_id", "name", "postal_address", "date_of_birth", "device_id", "account_id",
};

constexpr std::array<std::string_view, 9> kChannels = {
    "api", "web_form", "email", "phone", "mail", "in_person", "mobile_app", "gpc", "authorized_agent",
};

[[noreturn]] void Invalid(std::string pointer, std::string detail) {
  throw ApiError(ErrorCode::kInvalidField, std::move(detail), std::move(pointer));
}

bool HasControlChars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

const json& RequireObject(const json& doc, const std::string& pointer) {
  if (!doc.is_object()) Invalid(pointer.empty() ? "/" : pointer, "must be a JSON object");
  return doc;
}

// RFC 6901: '~' and '/' inside a member name are written ~0 and ~1.
std::string PointerToken(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

void RejectUnknown(const json& object, const std::string& pointer, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : object.items()) {
    (void)value;
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      const std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
      Invalid(pointer + "/" + PointerToken(key), fmt::format("unknown field '{}'", shown));
    }
  }
}

std::string RequireString(const json& object, const std::string& pointer, const char* key, std::size_t max_len,
                          bool required = true) {
  const std::string path = pointer + "/" + key;
  auto it = object.find(key);
  if (it == object.end()) {
    if (required) Invalid(path, fmt::format("'{}' is required", key));
    return {};
  }
  if (!it->is_string()) Invalid(path, fmt::format("'{}' must be a string", key));
  std::string value = Trim(it->get_ref<const std::string&>());
  if (required && value.empty()) Invalid(path, fmt::format("'{}' must not be empty", key));
  if (value.size() > max_len) Invalid(path, fmt::format("'{}' is longer than {} bytes", key, max_len));
  if (HasControlChars(value)) Invalid(path, fmt::format("'{}' contains control characters", key));
  return value;
}

bool IsToken(std::string_view s, std::size_t max_len) {
  if (s.empty() || s.size() > max_len || !std::islower(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' ||
           c == '.';
  });
}

void ValidateIdentityValue(std::string_view kind, const std::string& value, const std::string& pointer) {
  if (kind == "email") {
    const auto at = value.find('@');
    if (at == std::string::npos || at == 0 || at + 1 >= value.size() || value.find('@', at + 1) != std::string::npos ||
        value.size() > 254 || value.find(' ') != std::string::npos) {
      Invalid(pointer, "an email identity must look like name@domain");
    }
  } else if (kind == "phone") {
    const std::string digits = NormalizeIdentity(kind, value);
    const std::size_t n = digits.size() - (digits.starts_with('+') ? 1 : 0);
    const bool allowed = std::all_of(value.begin(), value.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || c == '+' || c == ' ' || c == '-' || c == '(' ||
             c == ')' || c == '.';
    });
    if (!allowed || n < 7 || n > 15) Invalid(pointer, "a phone identity must hold 7 to 15 digits");
  }
}

}  // namespace

json ParseJsonStrict(std::string_view body) {
  // One set of keys per open object, to refuse duplicate keys that a last-one-wins parser would hide.
  std::vector<std::set<std::string>> open_objects;
  std::string problem;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    // nlohmann reports a container's start at the depth of its parent: count the container itself.
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (depth + (opens ? 1 : 0) > kMaxDepth) {
      problem = fmt::format("nesting deeper than {} levels", kMaxDepth);
      throw std::invalid_argument(problem);
    }
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && !open_objects.back().insert(parsed.get<std::string>()).second) {
          problem = fmt::format("duplicate key '{}'", parsed.get<std::string>());
          throw std::invalid_argument(problem);
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), callback);
  } catch (const json::parse_error& e) {
    // nlohmann's message names a byte position; never echo the body itself.
    throw ApiError(ErrorCode::kMalformedBody, fmt::format("the body is not valid JSON (byte {})", e.byte));
  } catch (const std::invalid_argument&) {
    throw ApiError(ErrorCode::kMalformedBody, fmt::format("the body is refused: {}", problem));
  } catch (const json::out_of_range&) {
    // A number too large for a double (e.g. 1e999999): nlohmann reports it as out_of_range, not a parse error.
    throw ApiError(ErrorCode::kMalformedBody, "the body is not valid JSON: a number is out of range");
  }
}

bool IsKnownIdentityKind(std::string_view kind) {
  return std::find(kIdentityKinds.begin(), kIdentityKinds.end(), kind) != kIdentityKinds.end();
}

std::string NormalizeIdentity(std::string_view kind, std::string_view value) {
  std::string v = Trim(value);
  if (kind == "email") {
    for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else if (kind == "phone") {
    std::string digits;
    for (char c : v) {
      if (std::isdigit(static_cast<unsigned char>(c)) || (c == '+' && digits.empty())) digits.push_back(c);
    }
    v = digits;
  }
  return v;
}

NewRequest ParseNewRequest(std::string_view body, Timestamp now) {
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "",
                {"type", "subject", "received_at", "channel", "authorized_agent", "corrections", "callback_url"});

  NewRequest req;
  const std::string type_text = RequireString(doc, "", "type", 32);
  auto type = ParseRequestType(type_text);
  if (!type) Invalid("/type", "'type' must be one of access, delete, correct, opt_out, limit");
  req.type = *type;

  auto subject_it = doc.find("subject");
  if (subject_it == doc.end()) Invalid("/subject", "'subject' is required");
  RequireObject(*subject_it, "/subject");
  RejectUnknown(*subject_it, "/subject", {"identities"});
  auto ids_it = subject_it->find("identities");
  if (ids_it == subject_it->end()) Invalid("/subject/identities", "'identities' is required");
  if (!ids_it->is_array() || ids_it->empty()) {
    Invalid("/subject/identities", "'identities' must be a non-empty array");
  }
  if (ids_it->size() > kMaxIdentities) {
    Invalid("/subject/identities", fmt::format("at most {} identities", kMaxIdentities));
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (std::size_t i = 0; i < ids_it->size(); ++i) {
    const std::string pointer = fmt::format("/subject/identities/{}", i);
    const json& item = (*ids_it)[i];
    RequireObject(item, pointer);
    RejectUnknown(item, pointer, {"kind", "value"});
    IdentityInput identity;
    identity.kind = RequireString(item, pointer, "kind", 32);
    if (!IsKnownIdentityKind(identity.kind)) {
      Invalid(pointer + "/kind", fmt::format("unknown identity kind '{}'", identity.kind.substr(0, 32)));
    }
    identity.value = RequireString(item, pointer, "value", kMaxValueLength);
    ValidateIdentityValue(identity.kind, identity.value, pointer + "/value");
    if (!seen.emplace(identity.kind, NormalizeIdentity(identity.kind, identity.value)).second) {
      Invalid(pointer, "the same identity is listed twice");
    }
    req.identities.push_back(std::move(identity));
  }

  if (doc.contains("received_at")) {
    const std::string text = RequireString(doc, "", "received_at", 64);
    auto t = ParseRfc3339(text);
    if (!t) Invalid("/received_at", "'received_at' must be an RFC 3339 date-time with an offset");
    if (*t > now) Invalid("/received_at", "'received_at' must not be in the future");
    if (*t < date::sys_days{date::year{2020} / 1 / 1}) {
      Invalid("/received_at", "'received_at' must not be before 2020-01-01 (the CCPA's operative date)");
    }
    req.received_at = *t;
  }

  if (doc.contains("channel")) {
    req.channel = RequireString(doc, "", "channel", 32);
    if (std::find(kChannels.begin(), kChannels.end(), req.channel) == kChannels.end()) {
      Invalid("/channel",
              "'channel' must be one of api, web_form, email, phone, mail, in_person, mobile_app, gpc, "
              "authorized_agent");
    }
  }

  if (doc.contains("authorized_agent")) {
    const json& agent = doc["authorized_agent"];
    RequireObject(agent, "/authorized_agent");
    RejectUnknown(agent, "/authorized_agent", {"name", "kind", "proof", "contact"});
    json clean = json::object();
    clean["name"] = RequireString(agent, "/authorized_agent", "name", 200);
    if (agent.contains("kind")) {
      const std::string kind = RequireString(agent, "/authorized_agent", "kind", 16);
      if (kind != "person" && kind != "business") Invalid("/authorized_agent/kind", "'kind' must be person or business");
      clean["kind"] = kind;
    }
    if (agent.contains("proof")) {
      const std::string proof = RequireString(agent, "/authorized_agent", "proof", 32);
      if (proof != "signed_permission" && proof != "power_of_attorney") {
        Invalid("/authorized_agent/proof", "'proof' must be signed_permission or power_of_attorney");
      }
      clean["proof"] = proof;
    }
    if (agent.contains("contact")) clean["contact"] = RequireString(agent, "/authorized_agent", "contact", 320);
    req.authorized_agent = clean;
  }

  if (doc.contains("corrections")) {
    if (req.type != RequestType::kCorrect) {
      Invalid("/corrections", "'corrections' is only allowed on a correct request");
    }
    const json& list = doc["corrections"];
    if (!list.is_array() || list.empty()) Invalid("/corrections", "'corrections' must be a non-empty array");
    if (list.size() > kMaxCorrections) Invalid("/corrections", fmt::format("at most {} corrections", kMaxCorrections));
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string pointer = fmt::format("/corrections/{}", i);
      RequireObject(list[i], pointer);
      RejectUnknown(list[i], pointer, {"field", "value"});
      CorrectionInput c;
      c.field = RequireString(list[i], pointer, "field", 64);
      if (!IsToken(c.field, 64)) {
        Invalid(pointer + "/field", "'field' must be a lower-case name such as email or postal_address");
      }
      c.value = RequireString(list[i], pointer, "value", kMaxTextLength);
      req.corrections.push_back(std::move(c));
    }
  } else if (req.type == RequestType::kCorrect) {
    Invalid("/corrections", "'corrections' is required for a correct request");
  }

  if (doc.contains("callback_url")) {
    const std::string url = RequireString(doc, "", "callback_url", 2048);
    const bool scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    const auto host_start = url.find("://") + 3;
    if (!scheme_ok || host_start >= url.size() || url.find(' ') != std::string::npos || url[host_start] == '/') {
      Invalid("/callback_url", "'callback_url' must be an absolute http or https URL");
    }
    req.callback_url = url;
  }

  req.canonical = doc.dump();  // nlohmann objects are ordered maps: the dump is canonical
  return req;
}

VerifyInput ParseVerify(std::string_view body) {
  if (Trim(body).empty()) Invalid("/method", "'method' and 'level' are required");
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {"method", "level"});
  VerifyInput v;
  v.method = RequireString(doc, "", "method", 64);
  if (!IsToken(v.method, 64)) Invalid("/method", "'method' must be a lower-case name such as account_login");
  v.level = RequireString(doc, "", "level", 32);
  if (v.level != "reasonable" && v.level != "reasonably_high" && v.level != "not_required") {
    Invalid("/level", "'level' must be reasonable, reasonably_high or not_required");
  }
  return v;
}

ExtendInput ParseExtend(std::string_view body) {
  if (Trim(body).empty()) Invalid("/reason", "'reason' is required: the consumer must be told why (§7021(b))");
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {"reason"});
  return ExtendInput{RequireString(doc, "", "reason", kMaxTextLength)};
}

DenyInput ParseDeny(std::string_view body) {
  if (Trim(body).empty()) Invalid("/reason", "'reason' is required");
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {"reason", "detail"});
  const std::string reason_text = RequireString(doc, "", "reason", 32);
  auto reason = ParseDenialReason(reason_text);
  if (!reason) Invalid("/reason", "'reason' must be unverifiable, exempt, not_a_consumer or other");
  DenyInput d{*reason, RequireString(doc, "", "detail", kMaxTextLength, false)};
  if (d.reason == DenialReason::kOther && d.detail.empty()) {
    Invalid("/detail", "'detail' is required when the reason is other");
  }
  return d;
}

CancelInput ParseCancel(std::string_view body) {
  if (Trim(body).empty()) return {};
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {"reason"});
  return CancelInput{RequireString(doc, "", "reason", kMaxTextLength, false)};
}

void ParseEmptyObject(std::string_view body) {
  if (Trim(body).empty()) return;
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {});
}

TaskCompletionInput ParseTaskCompletion(std::string_view body) {
  if (Trim(body).empty()) Invalid("/outcome", "'outcome' is required");
  const json doc = ParseJsonStrict(body);
  RequireObject(doc, "");
  RejectUnknown(doc, "", {"outcome", "note"});
  TaskCompletionInput t;
  t.outcome = RequireString(doc, "", "outcome", 32);
  if (t.outcome != "done" && t.outcome != "not_found" && t.outcome != "retained_exempt" && t.outcome != "failed") {
    Invalid("/outcome", "'outcome' must be done, not_found, retained_exempt or failed");
  }
  t.note = RequireString(doc, "", "note", kMaxTextLength, false);
  if (t.outcome == "retained_exempt" && t.note.empty()) {
    Invalid("/note", "'note' must give the legal basis when the outcome is retained_exempt");
  }
  return t;
}

std::optional<Timestamp> ParseRfc3339(std::string_view s) {
  auto digits = [&](std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, se;
  if (!digits(0, 4, y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, mo) || s[7] != '-' || !digits(8, 2, d) ||
      (s[10] != 'T' && s[10] != 't') || !digits(11, 2, h) || s[13] != ':' || !digits(14, 2, mi) || s[16] != ':' ||
      !digits(17, 2, se)) {
    return std::nullopt;
  }
  const date::year_month_day ymd{date::year{y}, date::month{static_cast<unsigned>(mo)},
                                 date::day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || se > 59) return std::nullopt;
  std::size_t pos = 19;
  long micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t n = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (n < 6) micros = micros * 10 + (s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0 || n > 9) return std::nullopt;
    for (std::size_t i = n; i < 6; ++i) micros *= 10;
  }
  int offset_minutes = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(pos + 4, 2, om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const auto local = date::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} +
                     std::chrono::seconds{se} + std::chrono::microseconds{micros};
  return std::chrono::time_point_cast<std::chrono::microseconds>(local - std::chrono::minutes{offset_minutes});
}

std::string FormatRfc3339(Timestamp t) {
  const auto secs = date::floor<std::chrono::seconds>(t);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t - secs).count();
  const auto day = date::floor<date::days>(secs);
  const date::year_month_day ymd{day};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) {
    std::string out = date::format("%FT%T", secs);
    if (micros != 0) out += fmt::format(".{:06}", micros);
    return out + 'Z';
  }
  // Every answer renders a dozen of these: digits by hand, not date::format's iostream (5 % of a status read).
  const date::hh_mm_ss<std::chrono::seconds> tod{secs - day};
  char buf[32];
  const auto put = [&buf](int at, long long value, int width) {
    for (int i = width - 1; i >= 0; --i, value /= 10) buf[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, year, 4);
  buf[4] = '-';
  put(5, static_cast<unsigned>(ymd.month()), 2);
  buf[7] = '-';
  put(8, static_cast<unsigned>(ymd.day()), 2);
  buf[10] = 'T';
  put(11, tod.hours().count(), 2);
  buf[13] = ':';
  put(14, tod.minutes().count(), 2);
  buf[16] = ':';
  put(17, tod.seconds().count(), 2);
  int len = 19;
  if (micros != 0) {
    buf[19] = '.';
    put(20, micros, 6);
    len = 26;
  }
  buf[len++] = 'Z';
  return std::string(buf, static_cast<std::size_t>(len));
}

}  // namespace rightsd
