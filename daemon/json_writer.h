// A small JSON text writer for the hot answers (a request's status, GET /v1/requests/{id}): it appends to one
// string instead of building an nlohmann::json tree and dumping it -- building the tree cost about a fifth of a
// status read's CPU, most of it allocations of nodes and map entries.
//
// Strings are escaped as nlohmann's dump(-1, ' ', false, replace) escapes them (quote, backslash, \b \f \n \r \t,
// other control characters as \u00xx, everything else as it is), so that an answer reads the same whichever
// writer produced it; a string that is not valid UTF-8 is handed to nlohmann itself, whose replacement of invalid
// bytes (U+FFFD) is what the answers have always carried. The caller writes keys in the order it wants (answers
// list them alphabetically, as nlohmann's std::map-ordered objects did) and must pair every Begin with its End.
// Not thread-safe; cheap to construct.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rightsd {

// `s` as a JSON string, quotes included, escaped as described above.
void AppendJsonString(std::string& out, std::string_view s);

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }
  // An object's key: a literal that needs no escaping (every key of our answers).
  void Key(std::string_view key) {
    Separate();
    out_ += '"';
    out_ += key;
    out_ += "\":";
    comma_ = false;
  }

  void String(std::string_view s) {
    Separate();
    AppendJsonString(out_, s);
    comma_ = true;
  }
  void Int(long long v);
  void Bool(bool v) { Literal(v ? "true" : "false"); }
  void Null() { Literal("null"); }
  // Text that already is one valid JSON value (a jsonb column's text form); empty writes null.
  void Raw(std::string_view json) { Literal(json.empty() ? std::string_view("null") : json); }
  // A value that exists as an nlohmann::json (the rare ones: verification, an authorized agent).
  void Json(const nlohmann::json& v);

 private:
  void Separate() {
    if (comma_) out_ += ',';
  }
  void Literal(std::string_view text) {
    Separate();
    out_ += text;
    comma_ = true;
  }
  void Open(char c) {
    Separate();
    out_ += c;
    comma_ = false;
  }
  void Close(char c) {
    out_ += c;
    comma_ = true;
  }

  std::string& out_;
  bool comma_ = false;  // the next value or key follows another one at the same level
};

}  // namespace rightsd
