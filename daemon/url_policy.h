// Where the daemon may send requests: the [outbound] allowed_hosts list. Every URL the daemon calls (connector base
// URLs, URLs that peers hand back such as a SMART token_endpoint or a Salesforce instance_url, status callback_urls)
// is parsed strictly and matched against it, so that neither a submitter's callback_url nor a peer's answer can
// point the daemon at an internal host (SSRF).
//
// A URL is refused, not interpreted, when another parser could read its host differently from ours: userinfo
// (http://allowed@evil), percent-encoding or a backslash in the authority, a trailing dot, IPv4 in any notation
// but plain dotted-quad (0x7f.1, 2130706433, 127.1, 017.0.0.1), IPv6 literals other than [::1] (so no
// [::ffff:127.0.0.1]), non-ASCII, spaces or control characters. Host names are compared lower-cased.
//
// Entries: [http://|https://]HOST[:PORT|:*]
//   HOST  an exact host name, a dotted-quad IPv4 address, [::1], or *.SUFFIX (any name below SUFFIX, which needs at
//         least two labels; not SUFFIX itself, never an IP address)
//   PORT  absent: the scheme's default port only (443, or 80 for http); a number: that port; *: any port
//   https is always required unless the entry starts with http://, which allows plain http (and https) to that
//   exact host; http:// does not combine with a wildcard.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rightsd {

struct OutboundUrl {
  std::string scheme;  // "http" or "https"
  std::string host;    // lower-case; "[::1]" for the IPv6 loopback
  int port = 0;        // explicit or the scheme's default
  bool ip_literal = false;
};

// nullopt with `why` set (a reason that never quotes the URL) when the URL is not one we accept.
std::optional<OutboundUrl> ParseOutboundUrl(std::string_view url, std::string* why);

class OutboundPolicy {
 public:
  // Throws std::invalid_argument("entry N ...: problem") for a malformed entry.
  static OutboundPolicy Parse(const std::vector<std::string>& entries);
  // nullopt when allowed; else why not. The reason names scheme, host and port only, never the path or query,
  // which may carry identifiers.
  std::optional<std::string> Check(std::string_view url) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    bool allow_http = false;
    bool wildcard = false;  // host holds the suffix, with its leading dot
    std::string host;
    int port = 0;  // 0: the scheme's default; -1: any
  };
  std::vector<Entry> entries_;
};

}  // namespace rightsd
