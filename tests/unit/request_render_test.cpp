// Unit tests for daemon/request_render.{h,cpp} and daemon/json_writer.{h,cpp}: the request answer written by hand
// says what the former nlohmann rendering said (tests/oracle/former_render.h keeps it as the oracle): both outputs
// are parsed and compared, and where no jsonb text is involved they must be the same bytes (same key order, same
// escaping).
#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include <date/date.h>
#include <nlohmann/json.hpp>

#include "../oracle/former_render.h"
#include "json_writer.h"
#include "request_render.h"

using namespace rightsd;
using nlohmann::json;

namespace {


using rightsd::oracle::OldRenderRequest;
using rightsd::oracle::OldText;

LocalDate Day(int y, unsigned m, unsigned d) { return LocalDate{date::year{y} / date::month{m} / date::day{d}}; }
Timestamp At(const char* rfc3339) { return *ParseRfc3339(rfc3339); }

// Strings that test the escaping: quotes, backslashes, every short escape, other control characters, DEL, 2-, 3-
// and 4-byte UTF-8, a script end tag, the empty string.
const std::vector<std::string> kNasty = {
    "",
    "plain",
    "quote \" backslash \\ slash /",
    "\b\f\n\r\t",
    std::string("nul \0 inside", 12),
    "\x01\x02\x1f control, \x7f del",
    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac",
    "</script><!--",
    "\xef\xbb\xbf bom, \xe2\x80\xa8 line separator",
};

RequestRecord Base() {
  RequestRecord r;
  r.id = "0b9e6c9e-2f7a-4c55-9a53-6f2d8c1e4a10";
  r.type = RequestType::kDelete;
  r.status = RequestStatus::kReceived;
  r.received_at = At("2026-11-02T17:00:00Z");
  r.received_on = Day(2026, 11, 2);
  r.channel = "web_form";
  r.deadlines = Deadlines{Day(2026, 11, 16), Day(2026, 12, 17)};
  r.created_by = "intake-bot";
  r.updated_at = At("2026-11-02T17:00:00.123456Z");
  return r;
}

// Records that between them take every branch of the renderer.
std::vector<RequestRecord> Varied(bool pg_style_jsonb) {
  // jsonb's text form (keys by length, ", " and ": ") or nlohmann's (keys sorted, compact): the same values.
  auto detail = [pg_style_jsonb](const char* pg, const char* compact) { return JsonText{pg_style_jsonb ? pg : compact}; };
  std::vector<RequestRecord> out;
  out.push_back(Base());  // received, nothing optional

  RequestRecord ack = Base();
  ack.acknowledged_on = Day(2026, 11, 3);
  ack.acknowledged_at = At("2026-11-03T10:11:12Z");
  ack.identities = {{"email", std::string("a@example.com")}, {"phone", std::nullopt}};
  ack.history = {{1, At("2026-11-02T17:00:00Z"), "intake-bot", "created",
                  detail(R"({"type": "delete", "channel": "web_form", "identity_kinds": ["email", "phone"]})",
                         R"({"channel":"web_form","identity_kinds":["email","phone"],"type":"delete"})")},
                 {2, At("2026-11-03T10:11:12.5Z"), "alice", "acknowledge",
                  detail(R"({"to": "received", "from": "received", "sla_state": "on_track"})",
                         R"({"from":"received","sla_state":"on_track","to":"received"})")}};
  out.push_back(ack);

  RequestRecord verified = ack;
  verified.status = RequestStatus::kInProgress;
  verified.verified_at = At("2026-11-04T08:00:00.000001Z");
  verified.verification = {{"method", "email_link"}, {"level", "reasonable"}, {"by", "alice"}};
  verified.callback_url = "https://example.com/hook?x=1&y=\"2\"";
  verified.tasks = {
      TaskView{"6d1c4c1e-0000-4000-8000-000000000001", "crm", "delete", "pending", 1,
               At("2026-11-04T08:05:00Z"), std::string("503 from crm: \"busy\"\n retry"), JsonText{}, std::nullopt},
      TaskView{"6d1c4c1e-0000-4000-8000-000000000002", "billing-eu", "deidentify", "running", 0,
               At("2026-11-04T08:06:00.25Z"), std::nullopt, JsonText{}, std::nullopt},
      TaskView{"6d1c4c1e-0000-4000-8000-000000000003", "mail_list", "delete", "done", 2, std::nullopt, std::nullopt,
               detail(R"({"deleted": 3, "records": [{"id": 1, "kind": "contact"}, {"id": 2.5, "note": null}], "ok": true})",
                      R"({"deleted":3,"ok":true,"records":[{"id":1,"kind":"contact"},{"id":2.5,"note":null}]})"),
               At("2026-11-04T09:00:00Z")},
      TaskView{"6d1c4c1e-0000-4000-8000-000000000004", "fhir", "delete", "failed", 5, std::nullopt,
               std::string("\x01\x1f bad \\ \"error\" \xe2\x82\xac"),
               detail(R"({"note": "caf\u00e9 \"quoted\" \\ \n", "empty": {}, "list": []})",
                      R"({"empty":{},"list":[],"note":"café \"quoted\" \\ \n"})"),
               At("2026-11-05T00:00:00.999999Z")}};
  out.push_back(verified);

  RequestRecord extended = verified;
  extended.extended = true;
  extended.extension_reason = "complex request: \"many systems\"\ttabbed";
  extended.deadlines.respond_by = Day(2027, 1, 31);
  out.push_back(extended);

  RequestRecord denied = ack;
  denied.status = RequestStatus::kDenied;
  denied.denial_reason = DenialReason::kExempt;
  denied.denial_detail = "11 CCR 7050 \xe2\x80\x94 exempt";
  denied.closed_at = At("2026-11-20T12:00:00Z");
  denied.closed_on = Day(2026, 11, 20);
  out.push_back(denied);

  RequestRecord denied_no_detail = denied;
  denied_no_detail.denial_reason = DenialReason::kUnverifiable;
  denied_no_detail.status = RequestStatus::kUnverifiable;
  denied_no_detail.denial_detail = std::nullopt;
  out.push_back(denied_no_detail);

  RequestRecord closed = verified;
  closed.type = RequestType::kAccess;
  closed.status = RequestStatus::kCompleted;
  closed.closed_at = At("2027-02-01T00:00:00Z");  // after respond_by: missed
  closed.closed_on = Day(2027, 2, 1);
  closed.purged_at = At("2028-02-01T03:04:05.000123Z");
  closed.authorized_agent = json{{"name", "Agent \"Smith\""}, {"firm", "Law & Co"}, {"id", 42}, {"nested", {1, 2}}};
  closed.corrections = {{"address", "1 Main St\nApt 2"}, {"name", "Zo\xc3\xab"}};
  out.push_back(closed);

  RequestRecord opt_out = Base();
  opt_out.type = RequestType::kOptOut;
  opt_out.status = RequestStatus::kInProgress;
  opt_out.deadlines = Deadlines{std::nullopt, Day(2026, 11, 23)};
  opt_out.channel = "gpc";
  out.push_back(opt_out);

  // Every nasty string in every free-text field.
  for (const auto& s : kNasty) {
    RequestRecord n = closed;
    n.channel = s;
    n.created_by = s;
    n.extension_reason = s;
    n.denial_reason = DenialReason::kOther;
    n.denial_detail = s;
    n.callback_url = s;
    n.identities = {{s, s}, {"email", std::nullopt}};
    n.corrections = {{s, s}};
    n.authorized_agent = json{{"name", s}};
    n.history.push_back({9, At("2027-01-01T00:00:00Z"), s, s, JsonText{OldText(json{{"why", s}})}});
    n.tasks.push_back(TaskView{s, s, s, s, 1, std::nullopt, s, JsonText{OldText(json{{s, s}})}, std::nullopt});
    out.push_back(n);
  }
  return out;
}

// The days a record is rendered on: before every deadline, inside the at-risk window, past respond_by.
const std::vector<LocalDate> kToday = {Day(2026, 11, 3), Day(2026, 12, 10), Day(2027, 3, 1)};

}  // namespace

TEST_CASE("api: the request answer written by hand is byte for byte what nlohmann rendered", "[api][unit]") {
  int compared = 0;
  for (const auto& r : Varied(false)) {
    for (const LocalDate today : kToday) {
      for (const bool full : {false, true}) {
        for (const bool values : {false, true}) {
          INFO("record " << r.id << " channel " << json(r.channel).dump() << " full " << full << " values " << values);
          const std::string fresh = RenderRequestJson(r, today, 10, full, values);
          const std::string old = OldText(OldRenderRequest(r, today, 10, full, values));
          CHECK(fresh == old);
          CHECK(json::parse(fresh) == json::parse(old));
          ++compared;
        }
      }
    }
  }
  CHECK(compared == 12 * static_cast<int>(Varied(false).size()));
}

TEST_CASE("api: the request answer with jsonb texts as PostgreSQL writes them parses to what nlohmann rendered",
          "[api][unit]") {
  for (const auto& r : Varied(true)) {
    for (const LocalDate today : kToday) {
      for (const bool full : {false, true}) {
        for (const bool values : {false, true}) {
          const std::string fresh = RenderRequestJson(r, today, 10, full, values);
          CHECK(json::parse(fresh) == OldRenderRequest(r, today, 10, full, values));
        }
      }
    }
  }
}

TEST_CASE("api: a list page written by hand is what nlohmann rendered for it", "[api][unit]") {
  const auto records = Varied(false);
  std::string fresh;
  JsonWriter w(fresh);
  w.BeginObject();
  w.Key("items");
  w.BeginArray();
  json items = json::array();
  for (const auto& r : records) {
    WriteRequestJson(w, r, kToday[1], 10, false, false);
    items.push_back(OldRenderRequest(r, kToday[1], 10, false, false));
  }
  w.EndArray();
  w.Key("next_cursor");
  w.Null();
  w.EndObject();
  CHECK(fresh == OldText({{"items", items}, {"next_cursor", nullptr}}));
}

TEST_CASE("api: JSON strings are escaped as nlohmann escapes them, invalid UTF-8 included", "[api][unit]") {
  auto same = [](const std::string& s) {
    std::string fresh;
    AppendJsonString(fresh, s);
    INFO("nlohmann: " << OldText(json(s)));
    CHECK(fresh == OldText(json(s)));
  };
  for (int c = 0; c < 0x100; ++c) same(std::string(1, static_cast<char>(c)) + "x");
  for (const auto& s : kNasty) same(s);
  // Invalid: a lone continuation byte, a truncated sequence, an overlong form, a surrogate, above U+10FFFF.
  for (const char* s : {"a\x80z", "a\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok \xff\xfe end"}) {
    same(s);
  }
  // Random byte strings, mostly valid UTF-8 with control characters mixed in (fixed seed: the same every run).
  std::mt19937 rng(20261206);
  const std::vector<std::string> pieces = {"a", "\"", "\\", "\n", "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80", "/", " ", "\t", "\xff"};
  for (int i = 0; i < 5000; ++i) {
    std::string s;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) s += pieces[rng() % (i % 2 == 0 ? pieces.size() - 1 : pieces.size())];
    same(s);
  }
}

TEST_CASE("api: the JSON writer separates values at every nesting level", "[api][unit]") {
  std::string out;
  JsonWriter w(out);
  w.BeginArray();
  w.BeginObject();
  w.EndObject();
  w.BeginArray();
  w.EndArray();
  w.Int(-9223372036854775807LL - 1);
  w.BeginObject();
  w.Key("a");
  w.BeginArray();
  w.Bool(true);
  w.Null();
  w.Raw("");
  w.Raw(R"({"x": [1, 2]})");
  w.EndArray();
  w.Key("b");
  w.Json(json{{"k", "v"}});
  w.EndObject();
  w.String("end");
  w.EndArray();
  CHECK(out == R"([{},[],-9223372036854775808,{"a":[true,null,null,{"x": [1, 2]}],"b":{"k":"v"}},"end"])");
  CHECK_NOTHROW(json::parse(out));
}
