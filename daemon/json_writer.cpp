#include "json_writer.h"

#include <charconv>

#include "connectors/connector.h"

namespace rightsd {

namespace {

// The sequences nlohmann's decoder accepts.
bool IsValidUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {  // most of every answer: no call
      ++i;
      continue;
    }
    const std::size_t len = connectors::Utf8SequenceLength(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  if (!IsValidUtf8(s)) {
    // Never from the database (PostgreSQL keeps text valid in a UTF8 database) nor from a parsed body; if it
    // happens anyway, the answer carries exactly what nlohmann's replacement has always made of it.
    out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s, run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        const char escaped[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof escaped);
      }
    }
  }
  out.append(s, run, s.size() - run);
  out += '"';
}

void JsonWriter::Int(long long v) {
  Separate();
  char buf[24];
  const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  out_.append(buf, static_cast<std::size_t>(end - buf));
  comma_ = true;
}

void JsonWriter::Json(const nlohmann::json& v) {
  Literal(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace rightsd
