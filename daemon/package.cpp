#include "package.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <regex>
#include <string>

namespace rightsd {

namespace {

std::string Normalize(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (std::isalnum(static_cast<unsigned char>(c))) out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

// Field names (lower-case, punctuation removed) that name a forbidden item; matched as substrings.
constexpr std::array<std::string_view, 26> kForbiddenKeyParts = {
    "ssn",           "socialsecurity", "taxpayerid",      "taxid",         "driverslicense", "driverlicense",
    "licensenumber", "passport",       "governmentid",    "nationalid",    "stateid",        "accountnumber",
    "bankaccount",   "routingnumber",  "cardnumber",      "creditcard",    "iban",           "medicalid",
    "memberid",      "insuranceid",    "policynumber",    "healthplanid",  "password",       "securityquestion",
    "securityanswer", "biometric",
};

bool IsForbiddenKey(const std::string& key) {
  const std::string k = Normalize(key);
  if (k == "mrn" || k == "medicalrecordnumber") return false;  // the organisation's own patient id, not an insurance id
  if (k == "itin" || k.ends_with("itin")) return true;          // individual taxpayer id (not "waiting_list")
  return std::any_of(kForbiddenKeyParts.begin(), kForbiddenKeyParts.end(),
                     [&](std::string_view part) { return k.find(part) != std::string::npos; }) ||
         k.find("fingerprint") != std::string::npos || k.find("faceprint") != std::string::npos ||
         k.find("retina") != std::string::npos || k.find("voiceprint") != std::string::npos;
}

bool LooksLikeSsn(const std::string& value) {
  // 123-45-6789 or 123 45 6789 anywhere in the text, or nine digits alone (phone numbers are 3-3-4, not 3-2-4).
  static const std::regex kSeparated(R"((^|[^0-9])[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}([^0-9]|$))");
  static const std::regex kBare(R"(^[0-9]{9}$)");
  return value.size() <= 4096 && (std::regex_search(value, kSeparated) || std::regex_match(value, kBare));
}

nlohmann::json Redact(const nlohmann::json& v, int depth) {
  if (depth > 64) return kWithheldStatement;  // no record is this deep; refuse to walk further
  if (v.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, value] : v.items()) {
      out[key] = IsForbiddenKey(key) && !value.is_null() ? nlohmann::json(kWithheldStatement) : Redact(value, depth + 1);
    }
    return out;
  }
  if (v.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : v) out.push_back(Redact(item, depth + 1));
    return out;
  }
  if (v.is_string() && LooksLikeSsn(v.get<std::string>())) return kWithheldStatement;
  return v;
}

}  // namespace

nlohmann::json RedactForDisclosure(const nlohmann::json& records) { return Redact(records, 0); }

}  // namespace rightsd
