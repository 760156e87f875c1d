// Text helpers of the Salesforce connector: SOQL string literals, identity values shaped for matching, the
// Sforce-Limit-Info header, URL encoding. Pure functions; thread-safe.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rightsd::connectors::salesforce {

// `value` as a quoted SOQL string literal ('...'), escaped as "Quoted String Escape Sequences" of the SOQL and
// SOSL reference lists: \\ \' \" \n \r \t \b \f. Salesforce refuses a backslash in any other context and has no
// escape for other control characters, so a value holding one yields nullopt and is never sent.
std::optional<std::string> SoqlLiteral(std::string_view value);

// A Salesforce record id: 15 case-sensitive or 18 case-insensitive alphanumeric characters.
bool IsSalesforceId(std::string_view value);

// The ways a phone number may be stored in a Salesforce phone field, which keeps what was typed (the UI formats
// North American numbers as "(415) 555-0100" for en_US users): the value as given, its digits (with a leading +
// kept), and for a North American number the 10-digit, +1, 1-prefixed, (AAA) BBB-CCCC and AAA-BBB-CCCC forms.
// Empty when the value holds fewer than 7 digits.
std::vector<std::string> PhoneVariants(std::string_view value);

// "api-usage=<used>/<max>" from a Sforce-Limit-Info header (e.g. "api-usage=10018/100000; per-app-api-usage=...").
struct ApiUsage {
  long long used = 0;
  long long max = 0;
};
std::optional<ApiUsage> ParseApiUsage(std::string_view header);

// Percent-encodes everything but RFC 3986 unreserved characters (so '+' is %2B and ' ' is %20).
std::string UrlEncode(std::string_view value);

// The API name rule for sObjects and fields as this connector accepts them from its settings: a letter, then
// letters, digits and underscores (custom names end in __c, namespaced ones hold ns__).
bool IsApiName(std::string_view name);

}  // namespace rightsd::connectors::salesforce
