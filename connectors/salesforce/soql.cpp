#include "connectors/salesforce/soql.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace rightsd::connectors::salesforce {

std::optional<std::string> SoqlLiteral(std::string_view value) {
  std::string out = "'";
  out.reserve(value.size() + 8);
  for (char c : value) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\'': out += "\\'"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
        out += c;  // UTF-8 bytes pass as they are: SOQL strings are Unicode
    }
  }
  out += '\'';
  return out;
}

bool IsSalesforceId(std::string_view value) {
  if (value.size() != 15 && value.size() != 18) return false;
  return std::all_of(value.begin(), value.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

std::vector<std::string> PhoneVariants(std::string_view value) {
  std::string trimmed(value);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.erase(0, 1);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
  std::string digits;
  for (char c : trimmed) {
    if (std::isdigit(static_cast<unsigned char>(c))) digits.push_back(c);
  }
  if (digits.size() < 7) return {};
  std::vector<std::string> out;
  auto add = [&out](std::string v) {
    if (!v.empty() && std::find(out.begin(), out.end(), v) == out.end()) out.push_back(std::move(v));
  };
  add(trimmed);
  add(trimmed.starts_with('+') ? "+" + digits : digits);
  std::string national;
  if (digits.size() == 10) national = digits;
  if (digits.size() == 11 && digits.front() == '1') national = digits.substr(1);
  if (!national.empty()) {
    const std::string a = national.substr(0, 3), b = national.substr(3, 3), c = national.substr(6);
    add(national);
    add("+1" + national);
    add("1" + national);
    add("(" + a + ") " + b + "-" + c);
    add(a + "-" + b + "-" + c);
  }
  return out;
}

std::optional<ApiUsage> ParseApiUsage(std::string_view header) {
  while (!header.empty()) {
    const auto end = header.find(';');
    std::string_view part = header.substr(0, end);
    header = end == std::string_view::npos ? std::string_view() : header.substr(end + 1);
    while (!part.empty() && std::isspace(static_cast<unsigned char>(part.front()))) part.remove_prefix(1);
    while (!part.empty() && std::isspace(static_cast<unsigned char>(part.back()))) part.remove_suffix(1);
    constexpr std::string_view kKey = "api-usage=";
    if (!part.starts_with(kKey)) continue;
    part.remove_prefix(kKey.size());
    const auto slash = part.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    ApiUsage usage;
    const std::string_view used = part.substr(0, slash), max = part.substr(slash + 1);
    auto [u_end, u_ec] = std::from_chars(used.data(), used.data() + used.size(), usage.used);
    auto [m_end, m_ec] = std::from_chars(max.data(), max.data() + max.size(), usage.max);
    if (u_ec != std::errc{} || m_ec != std::errc{} || u_end != used.data() + used.size() ||
        m_end != max.data() + max.size() || usage.used < 0 || usage.max <= 0) {
      return std::nullopt;
    }
    return usage;
  }
  return std::nullopt;
}

std::string UrlEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

bool IsApiName(std::string_view name) {
  if (name.empty() || name.size() > 80 || !std::isalpha(static_cast<unsigned char>(name.front()))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

}  // namespace rightsd::connectors::salesforce
