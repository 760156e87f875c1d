// The outbound allow-list: strict URL parsing (refuse what another parser could read differently) and matching.
#include <catch2/catch.hpp>

#include "url_policy.h"

using rightsd::OutboundPolicy;
using rightsd::ParseOutboundUrl;

namespace {

bool Allowed(const OutboundPolicy& p, const std::string& url) { return !p.Check(url).has_value(); }

std::string ParseError(const std::string& url) {
  std::string why;
  return ParseOutboundUrl(url, &why) ? "" : why;
}

}  // namespace

TEST_CASE("authz: outbound URLs that other parsers could read differently are refused", "[authz][url]") {
  // Each of these reaches 127.0.0.1 (or another host than it seems) in some URL parser.
  for (const char* url : {
           "http://allowed.example.com@127.0.0.1/",   // userinfo
           "http://user:pw@allowed.example.com/",
           "https://0x7f.1/", "https://0x7f000001/", "https://2130706433/", "https://127.1/",
           "https://017.0.0.1/", "https://127.0.0.1.", "https://allowed.example.com./x",  // trailing dot
           "https://[::ffff:127.0.0.1]/", "https://[0:0:0:0:0:0:0:1]/", "https://[::1",
           "https://allowed%2eexample.com/", "https://%31%32%37.0.0.1/",  // percent-encoding
           "https://allowed.example.com\\@evil.example/", "https://evil.example\\.allowed.example.com/",
           "https://allowed.example.com:0/", "https://allowed.example.com:080/", "https://allowed.example.com:65536/",
           "https://allowed.example.com:/", "https://a.example.com:1:2/", "https://allowed .example.com/",
           "https://allowed.example.com/\x01", "https://bücher.example/", "ftp://allowed.example.com/",
           "//allowed.example.com/", "https:///path", "https://-bad.example.com/", "https://a..example.com/",
           "https://256.0.0.1/", "https://1.2.3.0x4/"}) {
    INFO(url);
    CHECK(ParseError(url) != "");
  }
  CHECK(ParseError("https://Allowed.Example.COM:8443/a?b=c#d") == "");
  const auto u = ParseOutboundUrl("HTTPS://Allowed.Example.COM/path", nullptr);
  REQUIRE(u);
  CHECK(u->scheme == "https");
  CHECK(u->host == "allowed.example.com");
  CHECK(u->port == 443);
  CHECK(ParseOutboundUrl("http://[::1]:8080/", nullptr)->host == "[::1]");
  CHECK(ParseOutboundUrl("http://10.0.0.1/", nullptr)->ip_literal);
}

TEST_CASE("authz: outbound allow-list matches scheme, host and port", "[authz][url]") {
  const auto p = OutboundPolicy::Parse(
      {"http://127.0.0.1:*", "*.salesforce.com", "api.hubapi.com", "ehr.example.org:8443", "[::1]:9000"});
  CHECK(Allowed(p, "http://127.0.0.1:5000/x"));
  CHECK(Allowed(p, "https://127.0.0.1:1/x"));  // an http:// entry allows https too
  CHECK_FALSE(Allowed(p, "http://127.0.0.2:5000/x"));
  CHECK(Allowed(p, "https://acme.my.salesforce.com/services"));
  CHECK(Allowed(p, "https://LOGIN.Salesforce.com"));
  CHECK_FALSE(Allowed(p, "https://salesforce.com/"));          // the suffix itself is not below it
  CHECK_FALSE(Allowed(p, "https://evilsalesforce.com/"));
  CHECK_FALSE(Allowed(p, "https://salesforce.com.evil.example/"));
  CHECK_FALSE(Allowed(p, "http://acme.my.salesforce.com/"));   // https required
  CHECK_FALSE(Allowed(p, "https://acme.my.salesforce.com:8443/"));  // no port given: 443 only
  CHECK(Allowed(p, "https://api.hubapi.com/crm/v3"));
  CHECK(Allowed(p, "https://api.hubapi.com:443/crm/v3"));
  CHECK_FALSE(Allowed(p, "http://api.hubapi.com/crm/v3"));
  CHECK_FALSE(Allowed(p, "https://api.hubapi.com:444/"));
  CHECK(Allowed(p, "https://ehr.example.org:8443/fhir"));
  CHECK_FALSE(Allowed(p, "https://ehr.example.org/fhir"));
  CHECK(Allowed(p, "https://[::1]:9000/"));
  CHECK_FALSE(Allowed(p, "http://[::1]:9000/"));
  CHECK_FALSE(Allowed(p, "https://allowed@api.hubapi.com/"));
  // The reason names scheme, host and port only: paths and queries may carry identifiers.
  const auto why = p.Check("https://internal.example/contacts/jane@example.com?email=jane@example.com");
  REQUIRE(why);
  CHECK(*why == "https://internal.example:443 is not in [outbound] allowed_hosts");
  CHECK(p.Check("https://x@internal.example/jane")->find("jane") == std::string::npos);
  // Nothing allowed without entries.
  CHECK_FALSE(Allowed(OutboundPolicy::Parse({}), "https://api.hubapi.com/"));
}

TEST_CASE("authz: malformed outbound allow-list entries are refused", "[authz][url]") {
  for (const char* entry : {"*", "*.com", "http://*.example.com", "a.*.example.com", "*example.com",
                            "https://api.example.com/path", "user@api.example.com", "api.example.com:0",
                            "api.example.com:x", "*.10.0.0.1", "0x7f.1", "[::ffff:127.0.0.1]", "api.example.com.",
                            ""}) {
    INFO(entry);
    CHECK_THROWS_AS(OutboundPolicy::Parse({entry}), std::invalid_argument);
  }
}
