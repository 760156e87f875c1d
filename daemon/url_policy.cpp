#include "url_policy.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace rightsd {

namespace {

constexpr std::size_t kMaxUrl = 2048;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
bool AllDigits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit); }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const auto at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// 1..65535, digits only, no leading zero: "080" and "+80" are read differently by different parsers.
std::optional<int> ParsePort(std::string_view s) {
  if (!AllDigits(s) || s.size() > 5 || s.front() == '0') return std::nullopt;
  const int port = std::stoi(std::string(s));
  if (port < 1 || port > 65535) return std::nullopt;
  return port;
}

// Checks a lower-cased host (without brackets or port). Sets ip_literal for dotted-quad addresses.
bool CheckHost(std::string_view host, bool* ip_literal, std::string* why) {
  *ip_literal = false;
  if (host.empty()) return *why = "the URL has no host", false;
  if (host.size() > 253) return *why = "the host name is too long", false;
  if (host.back() == '.') return *why = "the host ends with a dot", false;
  const auto labels = Split(host, '.');
  // WHATWG URL parsers read a host whose last label is a number (decimal, or 0x hex) as an IPv4 address in any of
  // several notations; only plain dotted-quad is accepted, the rest is ambiguous.
  const std::string_view last = labels.back();
  const bool hex = last.size() >= 2 && last[0] == '0' && last[1] == 'x' &&
                   std::all_of(last.begin() + 2, last.end(), IsHexDigit);
  if (AllDigits(last) || hex) {
    bool quad = labels.size() == 4;
    for (auto part : labels) {
      if (!quad) break;
      quad = AllDigits(part) && part.size() <= 3 && !(part.size() > 1 && part[0] == '0') &&
             std::stoi(std::string(part)) <= 255;
    }
    if (!quad) return *why = "an IP address must be written as four decimal numbers (a.b.c.d)", false;
    *ip_literal = true;
    return true;
  }
  for (auto label : labels) {
    if (label.empty() || label.size() > 63) return *why = "the host has an empty or too long label", false;
    const bool chars = std::all_of(label.begin(), label.end(), [](char c) {
      return IsDigit(c) || (c >= 'a' && c <= 'z') || c == '-';
    });
    if (!chars || label.front() == '-' || label.back() == '-') {
      return *why = "the host may hold only letters, digits, '-' and '.'", false;
    }
  }
  return true;
}

}  // namespace

std::optional<OutboundUrl> ParseOutboundUrl(std::string_view url, std::string* why) {
  std::string ignored;
  if (!why) why = &ignored;
  if (url.size() > kMaxUrl) return *why = "the URL is longer than 2048 bytes", std::nullopt;
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return *why = "the URL holds a space, a control or a non-ASCII character", std::nullopt;
    if (c == '\\') return *why = "the URL holds a backslash", std::nullopt;
  }
  const auto sep = url.find("://");
  if (sep == std::string_view::npos) return *why = "the URL must be absolute (https://host/...)", std::nullopt;
  OutboundUrl out;
  out.scheme = Lower(url.substr(0, sep));
  if (out.scheme != "https" && out.scheme != "http") return *why = "the scheme must be https or http", std::nullopt;
  const std::string_view rest = url.substr(sep + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return *why = "the URL holds user information (@)", std::nullopt;
  if (authority.find('%') != std::string_view::npos) return *why = "the host is percent-encoded", std::nullopt;
  std::string_view host_part = authority;
  std::string_view port_part;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return *why = "the IPv6 address is not closed with ]", std::nullopt;
    if (Lower(authority.substr(0, close + 1)) != "[::1]") {
      return *why = "IPv6 addresses other than [::1] are refused", std::nullopt;
    }
    host_part = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return *why = "unexpected text after the IPv6 address", std::nullopt;
      has_port = true;
      port_part = after.substr(1);
    }
    out.host = "[::1]";
    out.ip_literal = true;
  } else {
    const auto colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host_part = authority.substr(0, colon);
      port_part = authority.substr(colon + 1);
      has_port = true;
    }
    out.host = Lower(host_part);
    if (!CheckHost(out.host, &out.ip_literal, why)) return std::nullopt;
  }
  if (has_port) {
    auto port = ParsePort(port_part);
    if (!port) return *why = "the port must be a number from 1 to 65535", std::nullopt;
    out.port = *port;
  } else {
    out.port = out.scheme == "https" ? 443 : 80;
  }
  return out;
}

OutboundPolicy OutboundPolicy::Parse(const std::vector<std::string>& entries) {
  OutboundPolicy policy;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& text = entries[i];
    auto fail = [&](std::string_view problem) {
      throw std::invalid_argument(fmt::format("entry {} (\"{}\"): {}", i + 1, text.substr(0, 200), problem));
    };
    Entry e;
    std::string_view rest = text;
    if (rest.starts_with("http://")) {
      e.allow_http = true;
      rest.remove_prefix(7);
    } else if (rest.starts_with("https://")) {
      rest.remove_prefix(8);
    }
    if (rest.find_first_of("/?#@%\\") != std::string_view::npos) fail("give a host and an optional port only");
    std::string_view host = rest;
    std::string_view port;
    bool has_port = false;
    if (rest.starts_with('[')) {
      const auto close = rest.find(']');
      if (close == std::string_view::npos) fail("the IPv6 address is not closed with ]");
      host = rest.substr(0, close + 1);
      if (close + 1 < rest.size()) {
        if (rest[close + 1] != ':') fail("unexpected text after the IPv6 address");
        port = rest.substr(close + 2);
        has_port = true;
      }
    } else if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
      has_port = true;
    }
    if (has_port) {
      if (port == "*") {
        e.port = -1;
      } else if (auto p = ParsePort(port)) {
        e.port = *p;
      } else {
        fail("the port must be a number from 1 to 65535 or *");
      }
    }
    std::string lower = Lower(host);
    if (lower.starts_with("*.")) {
      if (e.allow_http) fail("http:// needs an exact host, not a wildcard");
      std::string why;
      bool ip = false;
      const std::string suffix = lower.substr(2);
      if (!CheckHost(suffix, &ip, &why)) fail(why);
      if (ip) fail("a wildcard cannot match IP addresses");
      if (suffix.find('.') == std::string::npos) fail("a wildcard needs a suffix of at least two labels (*.example.com)");
      e.wildcard = true;
      e.host = "." + suffix;
    } else if (lower == "[::1]") {
      e.host = lower;
    } else {
      if (lower.find('*') != std::string::npos) fail("a wildcard must be the whole first label (*.example.com)");
      std::string why;
      bool ip = false;
      if (lower.starts_with('[')) fail("IPv6 addresses other than [::1] are not supported");
      if (!CheckHost(lower, &ip, &why)) fail(why);
      e.host = lower;
    }
    policy.entries_.push_back(std::move(e));
  }
  return policy;
}

std::optional<std::string> OutboundPolicy::Check(std::string_view url) const {
  std::string why;
  const auto parsed = ParseOutboundUrl(url, &why);
  if (!parsed) return fmt::format("the URL is refused: {}", why);
  for (const auto& e : entries_) {
    if (parsed->scheme == "http" && !e.allow_http) continue;
    const bool host_ok = e.wildcard ? !parsed->ip_literal && parsed->host.size() > e.host.size() &&
                                          parsed->host.ends_with(e.host)
                                    : parsed->host == e.host;
    if (!host_ok) continue;
    const int default_port = parsed->scheme == "https" ? 443 : 80;
    if (e.port == -1 || (e.port == 0 && parsed->port == default_port) || e.port == parsed->port) return std::nullopt;
  }
  return fmt::format("{}://{}:{} is not in [outbound] allowed_hosts", parsed->scheme, parsed->host, parsed->port);
}

}  // namespace rightsd
