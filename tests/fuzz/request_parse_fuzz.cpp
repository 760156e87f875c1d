// Fuzzes every body parser of daemon/request_parse (intake, verify, extend, deny, cancel, acknowledge, task
// completion) and the RFC 3339 parser. The first byte picks the parser, the rest is the body.
// Oracles besides the sanitizers: only ApiError escapes; an error's problem body dumps as strict UTF-8 and its
// detail quotes no string value of the body; an accepted intake body keeps the documented limits and its canonical
// form parses back to itself.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "request_parse.h"

using namespace rightsd;
using rightsd::fuzz::Check;
using nlohmann::json;

namespace {

// 2026-06-01T00:00:00Z: a fixed "now" keeps every run reproducible.
const Timestamp kNow = Timestamp(std::chrono::seconds(1780272000));

// The values of every "value" member (identity and correction values): personal data that no error may show.
void CollectValues(const json& doc, std::vector<std::string>& out) {
  if (doc.is_object()) {
    for (const auto& [key, v] : doc.items()) {
      if (key == "value" && v.is_string() && v.get_ref<const std::string&>().size() >= 3) {
        out.push_back(v.get<std::string>());
      }
      CollectValues(v, out);
    }
  } else if (doc.is_array()) {
    for (const auto& v : doc) CollectValues(v, out);
  }
}

void CheckError(const ApiError& e, std::string_view body) {
  Check(e.code() == ErrorCode::kMalformedBody || e.code() == ErrorCode::kInvalidField,
        "a body parser answered with something other than malformed-body or invalid-field");
  const json problem = ProblemBody(e, "/v1/requests");
  Check(fuzz::DumpsStrictly(problem), "the problem body is not valid UTF-8");
  Check(e.detail().size() <= 512, "the problem detail is longer than 512 bytes");
  if (e.code() == ErrorCode::kInvalidField) {
    Check(!e.field().empty() && e.field().front() == '/', "an invalid-field error names no JSON pointer");
  }
  // The error never quotes the body back: no identity or correction value is in the detail or the field.
  const json doc = json::parse(body.begin(), body.end(), nullptr, false);
  std::vector<std::string> values;
  CollectValues(doc, values);
  for (const auto& v : values) {
    Check(e.detail().find(v) == std::string::npos, "the problem detail quotes an identity or correction value");
    Check(e.field().find(v) == std::string::npos, "the problem field quotes an identity or correction value");
  }
}

bool CleanText(const std::string& s, std::size_t max) {
  if (s.size() > max || !fuzz::IsValidUtf8(s)) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return s.empty() || (!std::isspace(static_cast<unsigned char>(s.front())) &&
                       !std::isspace(static_cast<unsigned char>(s.back())));
}

void CheckNewRequest(const NewRequest& r) {
  Check(!r.identities.empty() && r.identities.size() <= 20, "an accepted request has 0 or more than 20 identities");
  for (const auto& i : r.identities) {
    Check(IsKnownIdentityKind(i.kind), "an accepted identity has an unknown kind");
    Check(!i.value.empty() && CleanText(i.value, 512), "an accepted identity value breaks the documented rules");
    (void)NormalizeIdentity(i.kind, i.value);
  }
  Check(r.corrections.size() <= 50, "more than 50 corrections accepted");
  Check((r.type == RequestType::kCorrect) == !r.corrections.empty(), "corrections on the wrong request type");
  for (const auto& c : r.corrections) {
    Check(CleanText(c.field, 64) && !c.field.empty(), "a correction field breaks the rules");
    Check(CleanText(c.value, 2000) && !c.value.empty(), "a correction value breaks the rules");
  }
  if (r.received_at) Check(*r.received_at <= kNow, "received_at in the future accepted");
  if (r.callback_url) Check(r.callback_url->size() <= 2048, "callback_url longer than 2048 bytes accepted");
  Check(fuzz::IsValidUtf8(r.canonical), "the canonical form is not valid UTF-8");
  // The canonical form is what an Idempotency-Key replay is compared with: it must be a fixed point.
  NewRequest again;
  try {
    again = ParseNewRequest(r.canonical, kNow);
  } catch (const ApiError&) {
    fuzz::Fail("the canonical form of an accepted body is refused");
  }
  Check(again.canonical == r.canonical, "the canonical form does not parse back to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t which = data[0] % 9;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    switch (which) {
      case 0:
      case 1:
        CheckNewRequest(ParseNewRequest(body, kNow));
        break;
      case 2: {
        const VerifyInput v = ParseVerify(body);
        Check(CleanText(v.method, 64) && !v.method.empty(), "a verify method breaks the rules");
        Check(v.level == "reasonable" || v.level == "reasonably_high" || v.level == "not_required",
              "an unknown verify level accepted");
        break;
      }
      case 3:
        Check(CleanText(ParseExtend(body).reason, 2000), "an extend reason breaks the rules");
        break;
      case 4:
        Check(CleanText(ParseDeny(body).detail, 2000), "a deny detail breaks the rules");
        break;
      case 5:
        Check(CleanText(ParseCancel(body).reason, 2000), "a cancel reason breaks the rules");
        break;
      case 6:
        ParseEmptyObject(body);
        break;
      case 7: {
        const TaskCompletionInput t = ParseTaskCompletion(body);
        Check(CleanText(t.note, 2000), "a task note breaks the rules");
        Check(t.outcome != "retained_exempt" || !t.note.empty(), "retained_exempt without a note accepted");
        break;
      }
      case 8: {
        if (const auto t = ParseRfc3339(body)) {
          const std::string text = FormatRfc3339(*t);
          const auto back = ParseRfc3339(text);
          Check(back && *back == *t, "FormatRfc3339 does not parse back to the same instant");
        }
        (void)ParseJsonStrict(body);
        break;
      }
    }
  } catch (const ApiError& e) {
    CheckError(e, body);
  }
  return 0;
}
