// Unit tests for daemon/request_parse.{h,cpp}: strict parsing of the bodies a client sends.
//
// Every refusal is checked for its error code (kMalformedBody: not JSON at all / not UTF-8 / duplicate keys / too
// deep; kInvalidField: JSON, but a field is wrong) AND for the JSON pointer it names. "Now" is a fixed instant.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <date/date.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "errors.h"
#include "request_parse.h"

using rightsd::ApiError;
using rightsd::ErrorCode;
using rightsd::FormatRfc3339;
using rightsd::NewRequest;
using rightsd::NormalizeIdentity;
using rightsd::ParseNewRequest;
using rightsd::ParseRfc3339;
using rightsd::RequestType;
using rightsd::Timestamp;

namespace {

Timestamp Ts(int y, unsigned mo, unsigned d, int h, int mi, int s, long us = 0) {
  return Timestamp{date::sys_days{date::year{y} / date::month{mo} / date::day{d}}} + std::chrono::hours{h} +
         std::chrono::minutes{mi} + std::chrono::seconds{s} + std::chrono::microseconds{us};
}

// The server's "now" in every test: Sun 2026-03-01 12:00:00 UTC.
const Timestamp kNow = Ts(2026, 3, 1, 12, 0, 0);

constexpr const char* kEmail = R"({"kind":"email","value":"a@example.com"})";

// A delete request with the given identities (the JSON text of the array's items).
std::string WithIds(const std::string& ids) {
  return R"({"type":"delete","subject":{"identities":[)" + ids + "]}}";
}
// A valid delete request plus extra top-level members.
std::string WithExtra(const std::string& members, const std::string& type = "delete") {
  return R"({"type":")" + type + R"(","subject":{"identities":[)" + kEmail + "]}," + members + "}";
}
// A valid delete request whose first identity's value is the given JSON string body (between the quotes).
std::string WithValue(const std::string& kind, const std::string& raw_value) {
  return WithIds(R"({"kind":")" + kind + R"(","value":")" + raw_value + R"("})");
}
std::string Nested(int depth, const std::string& inner) {
  return std::string(static_cast<std::size_t>(depth), '[') + inner + std::string(static_cast<std::size_t>(depth), ']');
}
std::string NestedObjects(int depth, const std::string& inner) {
  std::string s;
  for (int i = 0; i < depth - 1; ++i) s += R"({"a":)";
  s += inner;
  for (int i = 0; i < depth - 1; ++i) s += "}";
  return s;
}

std::string CodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::kMalformedBody: return "malformed_body";
    case ErrorCode::kInvalidField: return "invalid_field";
    default: return "other(" + std::to_string(static_cast<int>(c)) + ")";
  }
}

const std::string M = "malformed_body";
const std::string I = "invalid_field";

struct Refusal {
  std::string code;
  std::string field;
  std::string detail;
};

template <typename Fn>
Refusal Refused(Fn&& fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return Refusal{CodeName(e.code()), e.field(), e.detail()};
  }
  return Refusal{"accepted", "", ""};
}

struct BadBody {
  const char* what;
  std::string body;
  std::string code;
  std::string field;
};

std::vector<BadBody> BadBodies() {
  std::string many_ids;  // 21 distinct e-mail identities
  for (int i = 0; i <= 20; ++i) {
    if (i) many_ids += ",";
    many_ids += R"({"kind":"email","value":"u)" + std::to_string(i) + R"(@example.com"})";
  }
  std::string many_corrections;  // 51 corrections
  for (int i = 0; i <= 50; ++i) {
    if (i) many_corrections += ",";
    many_corrections += R"({"field":"f)" + std::to_string(i) + R"(","value":"v"})";
  }
  const std::string long_value(513, 'x');

  return {
      // --- not JSON at all: kMalformedBody, no field ---------------------------------------------------------
      {"empty body", "", M, ""},
      {"whitespace only", "  \n ", M, ""},
      {"truncated object", R"({"type":"delete","subject":{"identities":[)", M, ""},
      {"truncated inside a string", R"({"type":"del)", M, ""},
      {"truncated after a key", R"({"type")", M, ""},
      {"trailing garbage", WithIds(kEmail) + " x", M, ""},
      {"two documents", WithIds(kEmail) + "{}", M, ""},
      {"single quotes", R"({'type':'delete'})", M, ""},
      {"trailing comma", R"({"type":"delete",})", M, ""},
      {"comment", R"({"type":"delete" /* c */})", M, ""},
      {"bare NaN", R"({"type":NaN})", M, ""},
      {"invalid UTF-8 byte 0xFF in a value", WithValue("name", std::string("Ann\xff") + "Lee"), M, ""},
      {"overlong UTF-8 in a value", WithValue("name", std::string("\xc0\xaf")), M, ""},
      {"truncated UTF-8 sequence in a value", WithValue("name", std::string("\xe2\x82")), M, ""},
      {"UTF-8 encoded surrogate in a value", WithValue("name", std::string("\xed\xa0\x80")), M, ""},
      {"lone surrogate escape", WithValue("name", R"(\ud800)"), M, ""},
      {"invalid UTF-8 in a key", std::string(R"({"ty)") + "\xfe" + R"(pe":"delete"})", M, ""},
      {"duplicate top-level key", R"({"type":"delete","type":"access","subject":{"identities":[)" +
                                      std::string(kEmail) + "]}}",
       M, ""},
      {"duplicate key spelled with a \\u escape", R"({"type":"delete","\u0074ype":"access","subject":{"identities":[)" +
                                                     std::string(kEmail) + "]}}",
       M, ""},
      {"duplicate key in subject", R"({"type":"delete","subject":{"identities":[)" + std::string(kEmail) +
                                       R"(],"identities":[)" + kEmail + "]}}",
       M, ""},
      {"duplicate key in an identity", WithIds(R"({"kind":"email","kind":"phone","value":"a@example.com"})"), M,
       ""},
      {"duplicate key in an identity after a valid one",
       WithIds(std::string(kEmail) + R"(,{"kind":"name","value":"A","value":"B"})"), M, ""},
      {"nesting deeper than 16 (20 arrays in channel)", WithExtra(R"("channel":)" + Nested(20, "1")), M, ""},
      {"nesting deeper than 16 (objects)", NestedObjects(40, "{}"), M, ""},

      // --- JSON, but not an object: the pointer names the whole body -----------------------------------------
      {"body is an array", "[]", I, "/"},
      {"body is an array of a request", "[" + WithIds(kEmail) + "]", I, "/"},
      {"body is null", "null", I, "/"},
      {"body is a string", R"("delete")", I, "/"},
      {"body is a number", "42", I, "/"},

      // --- top level ------------------------------------------------------------------------------------------
      {"empty object: type missing", "{}", I, "/type"},
      {"missing type", R"({"subject":{"identities":[)" + std::string(kEmail) + "]}}", I, "/type"},
      {"unknown type", R"({"type":"erase","subject":{"identities":[)" + std::string(kEmail) + "]}}", I, "/type"},
      {"type with wrong case", R"({"type":"Delete","subject":{"identities":[)" + std::string(kEmail) + "]}}", I,
       "/type"},
      {"type not a string", R"({"type":1,"subject":{"identities":[)" + std::string(kEmail) + "]}}", I, "/type"},
      {"type is an array", R"({"type":["delete"],"subject":{"identities":[)" + std::string(kEmail) + "]}}", I,
       "/type"},
      {"type empty", R"({"type":"","subject":{"identities":[)" + std::string(kEmail) + "]}}", I, "/type"},
      {"unknown top-level field", WithExtra(R"("priority":"high")"), I, "/priority"},
      {"top-level field with wrong case", WithExtra(R"("Type":"delete")"), I, "/Type"},
      {"missing subject", R"({"type":"delete"})", I, "/subject"},
      {"subject not an object", R"({"type":"delete","subject":[]})", I, "/subject"},
      {"unknown subject field", R"({"type":"delete","subject":{"identities":[)" + std::string(kEmail) +
                                    R"(],"name":"Ann"}})",
       I, "/subject/name"},

      // --- identities -----------------------------------------------------------------------------------------
      {"identities missing", R"({"type":"delete","subject":{}})", I, "/subject/identities"},
      {"identities empty", WithIds(""), I, "/subject/identities"},
      {"identities not an array", R"({"type":"delete","subject":{"identities":)" + std::string(kEmail) + "}}", I,
       "/subject/identities"},
      {"identities null", R"({"type":"delete","subject":{"identities":null}})", I, "/subject/identities"},
      {"more than 20 identities", WithIds(many_ids), I, "/subject/identities"},
      {"identity not an object", WithIds(R"("a@example.com")"), I, "/subject/identities/0"},
      {"second identity not an object", WithIds(std::string(kEmail) + ",[]"), I, "/subject/identities/1"},
      {"unknown identity field", WithIds(R"({"kind":"email","value":"a@example.com","verified":true})"), I,
       "/subject/identities/0/verified"},
      {"identity kind missing", WithIds(R"({"value":"a@example.com"})"), I, "/subject/identities/0/kind"},
      {"unknown identity kind", WithValue("ssn", "123-45-6789"), I, "/subject/identities/0/kind"},
      {"identity kind with wrong case", WithValue("Email", "a@example.com"), I, "/subject/identities/0/kind"},
      {"identity kind not a string", WithIds(R"({"kind":7,"value":"a@example.com"})"), I,
       "/subject/identities/0/kind"},
      {"identity value missing", WithIds(R"({"kind":"email"})"), I, "/subject/identities/0/value"},
      {"identity value not a string", WithIds(R"({"kind":"phone","value":4155550100})"), I,
       "/subject/identities/0/value"},
      {"identity value blank", WithValue("name", "   "), I, "/subject/identities/0/value"},
      {"email without @", WithValue("email", "alice.example.com"), I, "/subject/identities/0/value"},
      {"email with two @", WithValue("email", "alice@home@example.com"), I, "/subject/identities/0/value"},
      {"email without local part", WithValue("email", "@example.com"), I, "/subject/identities/0/value"},
      {"email without domain", WithValue("email", "alice@"), I, "/subject/identities/0/value"},
      {"email with a space", WithValue("email", "alice smith@example.com"), I, "/subject/identities/0/value"},
      {"email longer than 254", WithValue("email", std::string(250, 'a') + "@b.com"), I,
       "/subject/identities/0/value"},
      {"phone with 6 digits", WithValue("phone", "555-012"), I, "/subject/identities/0/value"},
      {"phone with 16 digits", WithValue("phone", "+1234567890123456"), I, "/subject/identities/0/value"},
      {"phone with letters", WithValue("phone", "555-CALL-NOW"), I, "/subject/identities/0/value"},
      {"bad phone as second identity", WithIds(std::string(kEmail) + R"(,{"kind":"phone","value":"12"})"), I,
       "/subject/identities/1/value"},
      {"value longer than 512", WithValue("name", long_value), I, "/subject/identities/0/value"},
      {"control character U+0001 in a value", WithValue("name", R"(Ann\u0001Lee)"), I,
       "/subject/identities/0/value"},
      {"tab inside a value", WithValue("name", R"(Ann\tLee)"), I, "/subject/identities/0/value"},
      {"newline inside a value", WithValue("postal_address", R"(1 Main St\nSpringfield)"), I,
       "/subject/identities/0/value"},
      {"DEL inside a value", WithValue("account_id", R"(ab\u007fc)"), I, "/subject/identities/0/value"},
      {"duplicate email differing only in case",
       WithIds(R"({"kind":"email","value":"Alice@Example.com"},{"kind":"email","value":"alice@example.COM"})"), I,
       "/subject/identities/1"},
      {"duplicate email with surrounding spaces",
       WithIds(R"({"kind":"email","value":"a@example.com"},{"kind":"name","value":"A"},)"
               R"({"kind":"email","value":" a@example.com "})"),
       I, "/subject/identities/2"},
      {"duplicate phone in another format",
       WithIds(R"({"kind":"phone","value":"+1 (415) 555-0100"},{"kind":"phone","value":"+1-415-555-0100"})"), I,
       "/subject/identities/1"},

      // --- received_at ----------------------------------------------------------------------------------------
      {"received_at one second in the future", WithExtra(R"("received_at":"2026-03-01T12:00:01Z")"), I,
       "/received_at"},
      {"received_at in the future through its offset", WithExtra(R"("received_at":"2026-03-01T04:00:01-08:00")"), I,
       "/received_at"},
      {"received_at before 2020", WithExtra(R"("received_at":"2019-12-31T23:59:59Z")"), I, "/received_at"},
      {"received_at before 2020 through its offset", WithExtra(R"("received_at":"2020-01-01T00:30:00+01:00")"), I,
       "/received_at"},
      {"received_at without offset", WithExtra(R"("received_at":"2026-01-15T10:00:00")"), I, "/received_at"},
      {"received_at with an impossible date", WithExtra(R"("received_at":"2026-02-30T10:00:00Z")"), I,
       "/received_at"},
      {"received_at date only", WithExtra(R"("received_at":"2026-01-15")"), I, "/received_at"},
      {"received_at with a space for T", WithExtra(R"("received_at":"2026-01-15 10:00:00Z")"), I, "/received_at"},
      {"received_at hour 24", WithExtra(R"("received_at":"2026-01-15T24:00:00Z")"), I, "/received_at"},
      {"received_at as epoch number", WithExtra(R"("received_at":1768471200)"), I, "/received_at"},

      // --- corrections ----------------------------------------------------------------------------------------
      {"corrections on a delete request", WithExtra(R"("corrections":[{"field":"email","value":"b@example.com"}])"),
       I, "/corrections"},
      {"corrections on an access request",
       WithExtra(R"("corrections":[{"field":"email","value":"b@example.com"}])", "access"), I, "/corrections"},
      {"correct without corrections", R"({"type":"correct","subject":{"identities":[)" + std::string(kEmail) + "]}}",
       I, "/corrections"},
      {"corrections empty", WithExtra(R"("corrections":[])", "correct"), I, "/corrections"},
      {"corrections not an array", WithExtra(R"("corrections":{"field":"email","value":"b@example.com"})", "correct"),
       I, "/corrections"},
      {"more than 50 corrections", WithExtra(R"("corrections":[)" + many_corrections + "]", "correct"), I,
       "/corrections"},
      {"correction not an object", WithExtra(R"("corrections":["email"])", "correct"), I, "/corrections/0"},
      {"correction field with upper case", WithExtra(R"("corrections":[{"field":"Email","value":"b@example.com"}])",
                                                     "correct"),
       I, "/corrections/0/field"},
      {"correction field with a dash",
       WithExtra(R"("corrections":[{"field":"email","value":"x"},{"field":"postal-address","value":"y"}])",
                 "correct"),
       I, "/corrections/1/field"},
      {"correction field missing", WithExtra(R"("corrections":[{"value":"b@example.com"}])", "correct"), I,
       "/corrections/0/field"},
      {"correction value missing", WithExtra(R"("corrections":[{"field":"email"}])", "correct"), I,
       "/corrections/0/value"},
      {"correction unknown field", WithExtra(R"("corrections":[{"field":"email","value":"b","old":"a"}])", "correct"),
       I, "/corrections/0/old"},

      // --- channel and authorized_agent -----------------------------------------------------------------------
      {"unknown channel", WithExtra(R"("channel":"fax")"), I, "/channel"},
      {"channel with wrong case", WithExtra(R"("channel":"API")"), I, "/channel"},
      {"channel not a string", WithExtra(R"("channel":["api"])"), I, "/channel"},
      {"authorized_agent not an object", WithExtra(R"("authorized_agent":"Jane Agent")"), I, "/authorized_agent"},
      {"authorized_agent is an array", WithExtra(R"("authorized_agent":[{"name":"Jane"}])"), I, "/authorized_agent"},
      {"agent with unknown field", WithExtra(R"("authorized_agent":{"name":"Jane","phone":"555"})"), I,
       "/authorized_agent/phone"},
      {"agent without name", WithExtra(R"("authorized_agent":{"kind":"person"})"), I, "/authorized_agent/name"},
      {"agent with unknown kind", WithExtra(R"("authorized_agent":{"name":"Jane","kind":"robot"})"), I,
       "/authorized_agent/kind"},
      {"agent with unknown proof", WithExtra(R"("authorized_agent":{"name":"Jane","proof":"handshake"})"), I,
       "/authorized_agent/proof"},
  };
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// ParseNewRequest: refusals
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("api: ParseNewRequest refuses bad bodies with the right code and JSON pointer", "[api]") {
  const auto cases = BadBodies();
  CHECK(cases.size() >= 40);
  for (const BadBody& c : cases) {
    INFO(c.what);
    const Refusal r = Refused([&] { ParseNewRequest(c.body, kNow); });
    CHECK(r.code == c.code);
    CHECK(r.field == c.field);
    CHECK_FALSE(r.detail.empty());
  }
}

TEST_CASE("api: ParseNewRequest never echoes the body in a refusal", "[api]") {
  // A refused secret-looking value does not come back in the detail.
  const Refusal r = Refused([] { ParseNewRequest(WithValue("email", "secret-value-123"), kNow); });
  CHECK(r.field == "/subject/identities/0/value");
  CHECK(r.detail.find("secret-value-123") == std::string::npos);
  const Refusal m = Refused([] { ParseNewRequest(R"({"type":"secret-value-456)", kNow); });
  CHECK(m.code == M);
  CHECK(m.detail.find("secret-value-456") == std::string::npos);
}

TEST_CASE("api: JSON nesting limit is 16 levels", "[api]") {
  // 16 nested arrays around a scalar: accepted (the scalar sits inside the 16th level).
  CHECK_NOTHROW(rightsd::ParseJsonStrict(Nested(16, "1")));
  CHECK_NOTHROW(rightsd::ParseJsonStrict(NestedObjects(16, R"({"a":1})")));  // 16 objects
  // 17 levels: refused.
  const Refusal arrays = Refused([] { rightsd::ParseJsonStrict(Nested(17, "1")); });
  CHECK(arrays.code == M);
  CHECK(arrays.field == "");
  const Refusal objects = Refused([] { rightsd::ParseJsonStrict(NestedObjects(17, R"({"a":1})")); });
  CHECK(objects.code == M);
}

TEST_CASE("api: JSON nesting limit counts empty containers too", "[api]") {
  // 16 nested empty arrays: accepted.
  CHECK_NOTHROW(rightsd::ParseJsonStrict(Nested(16, "")));
  // 17 nested arrays are nesting deeper than 16 whether or not the innermost one holds a value:
  // "[[[...[]...]]]" with 17 '[' must be refused like "[[[...[1]...]]]".
  const Refusal arrays = Refused([] { rightsd::ParseJsonStrict(Nested(17, "")); });
  CHECK(arrays.code == M);
  const Refusal objects = Refused([] { rightsd::ParseJsonStrict(NestedObjects(17, "{}")); });  // 17 objects
  CHECK(objects.code == M);
}

TEST_CASE("api: JSON pointers escape '~' and '/' in member names (RFC 6901)", "[api]") {
  // RFC 6901 section 3: '~' is written "~0" and '/' is written "~1" inside a reference token. An unknown member
  // named "a/b" is at "/a~1b"; "/a/b" would point at member "b" of member "a".
  const Refusal slash = Refused([] { ParseNewRequest(WithExtra(R"("a/b":1)"), kNow); });
  CHECK(slash.code == I);
  CHECK(slash.field == "/a~1b");
  const Refusal tilde = Refused([] { ParseNewRequest(WithExtra(R"("x~y":1)"), kNow); });
  CHECK(tilde.code == I);
  CHECK(tilde.field == "/x~0y");
  const Refusal nested =
      Refused([] { ParseNewRequest(WithIds(R"({"kind":"email","value":"a@example.com","k/v":1})"), kNow); });
  CHECK(nested.code == I);
  CHECK(nested.field == "/subject/identities/0/k~1v");
}

TEST_CASE("api: ParseJsonStrict refuses duplicate keys at any depth but allows the same key in siblings", "[api]") {
  CHECK(Refused([] { rightsd::ParseJsonStrict(R"({"a":1,"a":1})"); }).code == M);
  CHECK(Refused([] { rightsd::ParseJsonStrict(R"({"x":{"a":1,"b":2,"a":3}})"); }).code == M);
  CHECK(Refused([] { rightsd::ParseJsonStrict(R"([{"a":1},{"b":1,"b":2}])"); }).code == M);
  // The same key in different objects is fine, and so is a key equal to the parent's key.
  CHECK_NOTHROW(rightsd::ParseJsonStrict(R"([{"a":1},{"a":2}])"));
  CHECK_NOTHROW(rightsd::ParseJsonStrict(R"({"a":{"a":{"a":1}},"b":{"a":2}})"));
  // Keys that differ only in case are different keys.
  CHECK_NOTHROW(rightsd::ParseJsonStrict(R"({"a":1,"A":2})"));
}

// ---------------------------------------------------------------------------------------------------------------
// ParseNewRequest: good bodies
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("api: ParseNewRequest minimal delete", "[api]") {
  const NewRequest r =
      ParseNewRequest(R"({"type":"delete","subject":{"identities":[{"kind":"email","value":" Alice@Example.com "}]}})",
                      kNow);
  CHECK(r.type == RequestType::kDelete);
  REQUIRE(r.identities.size() == 1);
  CHECK(r.identities[0].kind == "email");
  CHECK(r.identities[0].value == "Alice@Example.com");  // trimmed, case kept as given
  CHECK_FALSE(r.received_at.has_value());
  CHECK(r.channel == "api");
  CHECK_FALSE(r.authorized_agent.has_value());
  CHECK(r.corrections.empty());
  // Canonical form: sorted keys, no whitespace, values as sent.
  CHECK(r.canonical == R"({"subject":{"identities":[{"kind":"email","value":" Alice@Example.com "}]},"type":"delete"})");
  // The same body with other key order and whitespace has the same canonical form.
  const NewRequest again = ParseNewRequest(
      "{ \"subject\" : { \"identities\" : [ { \"value\" : \" Alice@Example.com \" , \"kind\" : \"email\" } ] } ,\n"
      "  \"type\" : \"delete\" }",
      kNow);
  CHECK(again.canonical == r.canonical);
  // A different value does not.
  CHECK(ParseNewRequest(WithIds(kEmail), kNow).canonical != r.canonical);
}

TEST_CASE("api: ParseNewRequest correct with corrections", "[api]") {
  const NewRequest r = ParseNewRequest(
      R"({"type":"correct","subject":{"identities":[{"kind":"email","value":"a@example.com"}]},)"
      R"("corrections":[{"field":"postal_address","value":" 1 Main St, Springfield "},)"
      R"({"field":"email","value":"new@example.com"},{"field":"address.line2","value":"Apt 4"}]})",
      kNow);
  CHECK(r.type == RequestType::kCorrect);
  REQUIRE(r.corrections.size() == 3);
  CHECK(r.corrections[0].field == "postal_address");
  CHECK(r.corrections[0].value == "1 Main St, Springfield");
  CHECK(r.corrections[1].field == "email");
  CHECK(r.corrections[1].value == "new@example.com");
  CHECK(r.corrections[2].field == "address.line2");

  // 50 corrections is the most allowed.
  std::string fifty;
  for (int i = 0; i < 50; ++i) fifty += (i ? "," : "") + std::string(R"({"field":"f)") + std::to_string(i) +
                                        R"(","value":"v"})";
  CHECK(ParseNewRequest(WithExtra(R"("corrections":[)" + fifty + "]", "correct"), kNow).corrections.size() == 50);
}

TEST_CASE("api: ParseNewRequest opt_out with gpc channel", "[api]") {
  const NewRequest r = ParseNewRequest(
      R"({"type":"opt_out","channel":"gpc","subject":{"identities":[{"kind":"device_id","value":"dev-42"}]}})", kNow);
  CHECK(r.type == RequestType::kOptOut);
  CHECK(r.channel == "gpc");
  REQUIRE(r.identities.size() == 1);
  CHECK(r.identities[0].kind == "device_id");
  CHECK(r.identities[0].value == "dev-42");

  for (const char* ch : {"api", "web_form", "email", "phone", "mail", "in_person", "mobile_app", "gpc",
                         "authorized_agent"}) {
    INFO(ch);
    CHECK(ParseNewRequest(WithExtra(std::string(R"("channel":")") + ch + "\""), kNow).channel == ch);
  }
  const NewRequest limit = ParseNewRequest(WithExtra(R"("channel":"web_form")", "limit"), kNow);
  CHECK(limit.type == RequestType::kLimit);
  CHECK(ParseNewRequest(WithExtra(R"("channel":"api")", "access"), kNow).type == RequestType::kAccess);
}

TEST_CASE("api: ParseNewRequest received_at with offset is converted to UTC", "[api]") {
  // 10:00 at -08:00 is 18:00Z.
  const NewRequest r = ParseNewRequest(WithExtra(R"("received_at":"2026-01-15T10:00:00-08:00")"), kNow);
  REQUIRE(r.received_at.has_value());
  CHECK(*r.received_at == Ts(2026, 1, 15, 18, 0, 0));
  CHECK(FormatRfc3339(*r.received_at) == "2026-01-15T18:00:00Z");

  // 20:30 at -08:00 on Dec 31 is 04:30Z on Jan 1 (the UTC date moves).
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2025-12-31T20:30:00-08:00")"), kNow).received_at ==
        Ts(2026, 1, 1, 4, 30, 0));
  // 01:30 at +05:30 on Jan 1 is 20:00Z on Dec 31.
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-01-01T01:30:00+05:30")"), kNow).received_at ==
        Ts(2025, 12, 31, 20, 0, 0));
  // Exactly now, and exactly 2020-01-01T00:00:00Z, are accepted.
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-03-01T12:00:00Z")"), kNow).received_at == kNow);
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2020-01-01T00:00:00Z")"), kNow).received_at ==
        Ts(2020, 1, 1, 0, 0, 0));
  // 2019-12-31T16:00:00-08:00 is 2020-01-01T00:00:00Z: accepted.
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2019-12-31T16:00:00-08:00")"), kNow).received_at ==
        Ts(2020, 1, 1, 0, 0, 0));
  // 04:00:00 at -08:00 is exactly now: accepted (one second more was refused above).
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-03-01T04:00:00-08:00")"), kNow).received_at == kNow);
}

TEST_CASE("api: ParseNewRequest received_at with fractional seconds", "[api]") {
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-02-28T23:59:59.123456Z")"), kNow).received_at ==
        Ts(2026, 2, 28, 23, 59, 59, 123456));
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-02-28T23:59:59.5+00:00")"), kNow).received_at ==
        Ts(2026, 2, 28, 23, 59, 59, 500000));
  // Digits beyond the microsecond are dropped (not rounded): .1234569 -> 123456 us.
  CHECK(*ParseNewRequest(WithExtra(R"("received_at":"2026-02-28T23:59:59.1234569Z")"), kNow).received_at ==
        Ts(2026, 2, 28, 23, 59, 59, 123456));
  // Now + 1 microsecond is in the future.
  CHECK(Refused([] { ParseNewRequest(WithExtra(R"("received_at":"2026-03-01T12:00:00.000001Z")"), kNow); }).field ==
        "/received_at");
}

TEST_CASE("api: ParseNewRequest accepts every identity kind and the limits", "[api]") {
  const NewRequest r = ParseNewRequest(
      WithIds(R"({"kind":"email","value":"a@b"},{"kind":"phone","value":"555-0100"},)"
              R"({"kind":"mrn","value":"MRN-0001"},{"kind":"salesforce_id","value":"003xx000004TmiQ"},)"
              R"({"kind":"hubspot_id","value":"51"},{"kind":"mailchimp_id","value":"mc1"},)"
              R"({"kind":"sfmc_contact_key","value":"ck-1"},{"kind":"fhir_patient_id","value":"pat-1"},)"
              R"({"kind":"name","value":"Ann Lee"},{"kind":"postal_address","value":"1 Main St"},)"
              R"({"kind":"date_of_birth","value":"1980-01-02"},{"kind":"device_id","value":"d1"},)"
              R"({"kind":"account_id","value":"a@b"},{"kind":"phone","value":"+123456789012345"})"),
      kNow);
  // 13 kinds + a second phone with 15 digits = 14 identities; "a@b" as email and as account_id is not a duplicate.
  CHECK(r.identities.size() == 14);
  CHECK(r.identities[1].value == "555-0100");  // 7 digits: the fewest allowed; the value is kept as given

  std::string twenty;
  for (int i = 0; i < 20; ++i) twenty += (i ? "," : "") + std::string(R"({"kind":"email","value":"u)") +
                                         std::to_string(i) + R"(@example.com"})";
  CHECK(ParseNewRequest(WithIds(twenty), kNow).identities.size() == 20);
  // 512 bytes is the longest value.
  CHECK(ParseNewRequest(WithValue("name", std::string(512, 'x')), kNow).identities[0].value.size() == 512);
  // Non-ASCII UTF-8 is fine.
  CHECK(ParseNewRequest(WithValue("name", "Zo\xc3\xab M\xc3\xbcller"), kNow).identities[0].value ==
        "Zo\xc3\xab M\xc3\xbcller");
}

TEST_CASE("api: ParseNewRequest authorized_agent", "[api]") {
  const NewRequest r = ParseNewRequest(
      WithExtra(R"("channel":"authorized_agent","authorized_agent":{"name":" Jane Agent ","kind":"business",)"
                R"("proof":"power_of_attorney","contact":"jane@agent.example"})"),
      kNow);
  REQUIRE(r.authorized_agent.has_value());
  CHECK(*r.authorized_agent == nlohmann::json::parse(
                                   R"({"name":"Jane Agent","kind":"business","proof":"power_of_attorney",)"
                                   R"("contact":"jane@agent.example"})"));
  const NewRequest only_name = ParseNewRequest(WithExtra(R"("authorized_agent":{"name":"Jane"})"), kNow);
  REQUIRE(only_name.authorized_agent.has_value());
  CHECK(*only_name.authorized_agent == nlohmann::json::parse(R"({"name":"Jane"})"));
}

// ---------------------------------------------------------------------------------------------------------------
// The action bodies
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("api: ParseVerify", "[api]") {
  const auto v = rightsd::ParseVerify(R"({"method":"account_login","level":"reasonably_high"})");
  CHECK(v.method == "account_login");
  CHECK(v.level == "reasonably_high");
  CHECK(rightsd::ParseVerify(R"({"method":"id.document2","level":"reasonable"})").level == "reasonable");
  CHECK(rightsd::ParseVerify(R"({"method":"none","level":"not_required"})").level == "not_required");

  struct Bad {
    const char* body;
    std::string code;
    std::string field;
  };
  for (const Bad& b : {Bad{"", I, "/method"}, Bad{"{", M, ""}, Bad{"[]", I, "/"},
                       Bad{R"({"level":"reasonable"})", I, "/method"},
                       Bad{R"({"method":"account_login"})", I, "/level"},
                       Bad{R"({"method":"Account_Login","level":"reasonable"})", I, "/method"},
                       Bad{R"({"method":"account login","level":"reasonable"})", I, "/method"},
                       Bad{R"({"method":"_x","level":"reasonable"})", I, "/method"},
                       Bad{R"({"method":"account_login","level":"high"})", I, "/level"},
                       Bad{R"({"method":"account_login","level":"Reasonable"})", I, "/level"},
                       Bad{R"({"method":"account_login","level":"reasonable","note":"x"})", I, "/note"},
                       Bad{R"({"method":"account_login","method":"sms","level":"reasonable"})", M, ""}}) {
    INFO(b.body);
    const Refusal r = Refused([&] { rightsd::ParseVerify(b.body); });
    CHECK(r.code == b.code);
    CHECK(r.field == b.field);
  }
}

TEST_CASE("api: ParseExtend", "[api]") {
  CHECK(rightsd::ParseExtend(R"({"reason":" records are archived off-site "})").reason ==
        "records are archived off-site");
  struct Bad {
    const char* body;
    std::string code;
    std::string field;
  };
  for (const Bad& b : {Bad{"", I, "/reason"}, Bad{"  \n", I, "/reason"}, Bad{"{}", I, "/reason"},
                       Bad{R"({"reason":"   "})", I, "/reason"}, Bad{R"({"reason":42})", I, "/reason"},
                       Bad{R"({"reason":"x","days":45})", I, "/days"}, Bad{"[]", I, "/"},
                       Bad{R"({"reason":)", M, ""}}) {
    INFO(b.body);
    const Refusal r = Refused([&] { rightsd::ParseExtend(b.body); });
    CHECK(r.code == b.code);
    CHECK(r.field == b.field);
  }
  // 2000 bytes is the longest reason.
  CHECK(rightsd::ParseExtend(R"({"reason":")" + std::string(2000, 'r') + "\"}").reason.size() == 2000);
  const Refusal too_long = Refused([] { rightsd::ParseExtend(R"({"reason":")" + std::string(2001, 'r') + "\"}"); });
  CHECK(too_long.code == I);
  CHECK(too_long.field == "/reason");
}

TEST_CASE("api: ParseDeny", "[api]") {
  const auto exempt = rightsd::ParseDeny(R"({"reason":"exempt"})");
  CHECK(exempt.reason == rightsd::DenialReason::kExempt);
  CHECK(exempt.detail.empty());
  CHECK(rightsd::ParseDeny(R"({"reason":"unverifiable"})").reason == rightsd::DenialReason::kUnverifiable);
  CHECK(rightsd::ParseDeny(R"({"reason":"not_a_consumer","detail":"employee"})").detail == "employee");
  const auto other = rightsd::ParseDeny(R"({"reason":"other","detail":" duplicate of an earlier request "})");
  CHECK(other.reason == rightsd::DenialReason::kOther);
  CHECK(other.detail == "duplicate of an earlier request");

  struct Bad {
    const char* body;
    std::string code;
    std::string field;
  };
  for (const Bad& b : {Bad{"", I, "/reason"}, Bad{"{}", I, "/reason"},
                       Bad{R"({"reason":"other"})", I, "/detail"},
                       Bad{R"({"reason":"other","detail":"  "})", I, "/detail"},
                       Bad{R"({"reason":"fraud"})", I, "/reason"}, Bad{R"({"reason":"Exempt"})", I, "/reason"},
                       Bad{R"({"reason":["exempt"]})", I, "/reason"},
                       Bad{R"({"reason":"exempt","detail":7})", I, "/detail"},
                       Bad{R"({"reason":"exempt","code":"x"})", I, "/code"}, Bad{"null", I, "/"},
                       Bad{R"({"reason":"exempt"} x)", M, ""}}) {
    INFO(b.body);
    const Refusal r = Refused([&] { rightsd::ParseDeny(b.body); });
    CHECK(r.code == b.code);
    CHECK(r.field == b.field);
  }
}

TEST_CASE("api: ParseCancel and ParseEmptyObject", "[api]") {
  CHECK(rightsd::ParseCancel("").reason.empty());
  CHECK(rightsd::ParseCancel(" \r\n").reason.empty());
  CHECK(rightsd::ParseCancel("{}").reason.empty());
  CHECK(rightsd::ParseCancel(R"({"reason":"changed my mind"})").reason == "changed my mind");
  struct Bad {
    const char* body;
    std::string code;
    std::string field;
  };
  for (const Bad& b : {Bad{R"({"reason":5})", I, "/reason"}, Bad{R"({"why":"x"})", I, "/why"},
                       Bad{"[]", I, "/"}, Bad{"{", M, ""}, Bad{R"({"reason":"a","reason":"b"})", M, ""}}) {
    INFO(b.body);
    const Refusal r = Refused([&] { rightsd::ParseCancel(b.body); });
    CHECK(r.code == b.code);
    CHECK(r.field == b.field);
  }

  for (const char* ok : {"", "  ", "{}", " { } \n"}) {
    INFO("'" << ok << "'");
    CHECK_NOTHROW(rightsd::ParseEmptyObject(ok));
  }
  for (const Bad& b : {Bad{R"({"a":1})", I, "/a"}, Bad{R"({"reason":"x"})", I, "/reason"}, Bad{"[]", I, "/"},
                       Bad{"null", I, "/"}, Bad{"{", M, ""}, Bad{"{}{}", M, ""}}) {
    INFO(b.body);
    const Refusal r = Refused([&] { rightsd::ParseEmptyObject(b.body); });
    CHECK(r.code == b.code);
    CHECK(r.field == b.field);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// NormalizeIdentity, IsKnownIdentityKind
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("api: NormalizeIdentity", "[api]") {
  CHECK(NormalizeIdentity("email", " Alice@Example.COM ") == "alice@example.com");
  CHECK(NormalizeIdentity("email", "a@b") == "a@b");
  CHECK(NormalizeIdentity("phone", "+1 (415) 555-0100") == "+14155550100");
  CHECK(NormalizeIdentity("phone", "(415) 555-0100") == "4155550100");
  CHECK(NormalizeIdentity("phone", "415.555.0100") == "4155550100");
  CHECK(NormalizeIdentity("phone", " +44 20 7946 0958 ") == "+442079460958");
  CHECK(NormalizeIdentity("phone", "1-415-555-0100") == "14155550100");  // no + unless one leads
  // Other kinds are only trimmed: case and punctuation are significant.
  CHECK(NormalizeIdentity("name", "  Ann Lee ") == "Ann Lee");
  CHECK(NormalizeIdentity("account_id", "AbC-1") == "AbC-1");
  CHECK(NormalizeIdentity("mrn", "MRN-0001") == "MRN-0001");
}

TEST_CASE("api: IsKnownIdentityKind", "[api]") {
  for (const char* k : {"email", "phone", "mrn", "salesforce_id", "hubspot_id", "mailchimp_id", "sfmc_contact_key",
                        "fhir_patient_id", "name", "postal_address", "date_of_birth", "device_id", "account_id"}) {
    INFO(k);
    CHECK(rightsd::IsKnownIdentityKind(k));
  }
  for (const char* k : {"", "Email", "EMAIL", "ssn", "e-mail", "email ", "phone_number"}) {
    INFO(k);
    CHECK_FALSE(rightsd::IsKnownIdentityKind(k));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// ParseRfc3339 / FormatRfc3339
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("api: FormatRfc3339 writes what date::format writes, over years 0 to 9999 and both sides of 1970",
          "[api]") {
  // The formatter writes its digits by hand; date::format is the reference it replaced.
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  const auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const long long lo = -62167219200LL * 1000000;   // 0000-01-01T00:00:00Z
  const long long hi = 253402300799LL * 1000000 + 999999;  // 9999-12-31T23:59:59.999999Z
  std::vector<long long> samples = {lo, hi, 0, -1, 1, 951782400LL * 1000000, 4107542399LL * 1000000};
  for (int i = 0; i < 20000; ++i) {
    long long v = lo + static_cast<long long>(next() % static_cast<std::uint64_t>(hi - lo));
    if (i % 3 == 0) v -= v % 1000000;  // whole seconds take the short form
    samples.push_back(v);
  }
  for (const long long v : samples) {
    const Timestamp t{std::chrono::microseconds{v}};
    const auto secs = date::floor<std::chrono::seconds>(t);
    std::string expected = date::format("%FT%T", secs);
    if (const auto us = (t - secs).count(); us != 0) expected += fmt::format(".{:06}", us);
    expected += 'Z';
    INFO(v);
    REQUIRE(FormatRfc3339(t) == expected);
  }
}

TEST_CASE("api: ParseRfc3339 and FormatRfc3339 round trip", "[api]") {
  // Canonical text: parses and formats back to itself.
  for (const char* s : {"2026-01-15T18:00:00Z", "2026-01-15T18:00:00.000001Z", "2026-01-15T18:00:00.123456Z",
                        "1999-12-31T23:59:59Z", "2024-02-29T00:00:00Z", "1970-01-01T00:00:00Z",
                        "1969-12-31T23:59:59.500000Z", "2026-11-01T09:30:00Z"}) {
    INFO(s);
    const auto t = ParseRfc3339(s);
    REQUIRE(t.has_value());
    CHECK(FormatRfc3339(*t) == s);
  }
  // Values pinned by hand.
  CHECK(ParseRfc3339("1970-01-01T00:00:00Z") == std::optional<Timestamp>(Timestamp{}));
  CHECK(ParseRfc3339("1970-01-01T00:00:01.000002Z") ==
        std::optional<Timestamp>(Timestamp{std::chrono::microseconds{1000002}}));
  CHECK(ParseRfc3339("1969-12-31T23:59:59.500000Z") ==
        std::optional<Timestamp>(Timestamp{std::chrono::microseconds{-500000}}));
  CHECK(FormatRfc3339(Ts(2026, 1, 15, 18, 0, 0, 500000)) == "2026-01-15T18:00:00.500000Z");
  CHECK(FormatRfc3339(Ts(2026, 1, 15, 18, 0, 0, 0)) == "2026-01-15T18:00:00Z");

  // Non-canonical but valid text: normalised to UTC "Z", microseconds only when non-zero.
  struct Pair {
    const char* in;
    const char* out;
  };
  for (const Pair& p : {Pair{"2026-01-15t18:00:00z", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-15T10:00:00-08:00", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-15T18:00:00+00:00", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-15T18:00:00-00:00", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-16T03:45:00+09:45", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-15T18:00:00.000Z", "2026-01-15T18:00:00Z"},
                        Pair{"2026-01-15T18:00:00.1Z", "2026-01-15T18:00:00.100000Z"},
                        Pair{"2026-01-15T18:00:00.123456789Z", "2026-01-15T18:00:00.123456Z"},
                        Pair{"2026-03-01T00:30:00+01:00", "2026-02-28T23:30:00Z"},
                        Pair{"2024-02-28T23:30:00-01:00", "2024-02-29T00:30:00Z"}}) {
    INFO(p.in);
    const auto t = ParseRfc3339(p.in);
    REQUIRE(t.has_value());
    CHECK(FormatRfc3339(*t) == p.out);
  }
}

TEST_CASE("api: ParseRfc3339 rejects malformed text", "[api]") {
  for (const char* s :
       {"", "2026-01-15", "2026-01-15T18:00:00", "2026-01-15T18:00Z", "2026-01-15 18:00:00Z", "2026-01-15_18:00:00Z",
        "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
        "2026-01-15T24:00:00Z", "2026-01-15T18:60:00Z", "2026-01-15T18:00:60Z", "2026-01-15T18:00:00+0800",
        "2026-01-15T18:00:00+08", "2026-01-15T18:00:00+24:00", "2026-01-15T18:00:00+08:60", "2026-01-15T18:00:00.Z",
        "2026-01-15T18:00:00.1234567890Z", "2026-01-15T18:00:00Zjunk", " 2026-01-15T18:00:00Z",
        "2026-01-15T18:00:00Z ", "2026-1-15T18:00:00Z", "26-01-15T18:00:00Z", "2026/01/15T18:00:00Z",
        "2026-01-15T18:00:00UTC", "2026-01-15T18:00:00+08:00 ", "2026-01-15T18:0a:00Z", "+2026-01-15T18:00:00Z"}) {
    INFO("'" << s << "'");
    CHECK_FALSE(ParseRfc3339(s).has_value());
  }
}
