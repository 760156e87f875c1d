// Unit tests for the pure part of daemon/audit.{h,cpp}: the canonical form, AuditLeaf, AuditHash and
// AuditGenesisHash. The chains in PostgreSQL are covered by the integration tests.
//
// Documented canonical form (audit.cpp): hash = SHA-256(prev_hash bytes, then for each field in the order id,
// request_id, actor, action, at_us, detail: the field's length in decimal, ':', the field). id and at_us are
// written in decimal.
#include <catch2/catch.hpp>

#include <string>

#include "audit.h"
#include "crypto.h"

using rightsd::AuditGenesisHash;
using rightsd::AuditHash;
using rightsd::AuditRecord;

namespace {

AuditRecord Record() {
  AuditRecord r;
  r.id = 42;
  r.request_id = "3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6b";  // 8+1+4+1+4+1+4+1+12 = 36 characters
  r.actor = "admin:alice";                              // 11
  r.action = "request.created";                         // 15
  r.at_us = 1767225600000000;                           // 2026-01-01T00:00:00Z, 16 digits
  r.detail = R"({"type": "access"})";                   // 18
  return r;
}

}  // namespace

TEST_CASE("audit: genesis hash is 32 zero bytes", "[audit]") {
  CHECK(AuditGenesisHash() == std::string(32, '\0'));
}

TEST_CASE("audit: hash is deterministic and 32 bytes", "[audit]") {
  const std::string h = AuditHash(AuditGenesisHash(), Record());
  CHECK(h.size() == 32);
  CHECK(AuditHash(AuditGenesisHash(), Record()) == h);
  CHECK(AuditHash(std::string(32, '\0'), Record()) == h);
}

TEST_CASE("audit: hash changes when any single field changes", "[audit]") {
  const std::string genesis = AuditGenesisHash();
  const std::string base = AuditHash(genesis, Record());

  AuditRecord r = Record();
  r.id = 43;
  CHECK(AuditHash(genesis, r) != base);

  r = Record();
  r.request_id = "3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6c";  // last character
  CHECK(AuditHash(genesis, r) != base);
  r.request_id = "";
  CHECK(AuditHash(genesis, r) != base);

  r = Record();
  r.actor = "admin:alicf";
  CHECK(AuditHash(genesis, r) != base);

  r = Record();
  r.action = "request.cancelled";
  CHECK(AuditHash(genesis, r) != base);

  r = Record();
  r.at_us = 1767225600000001;  // one microsecond later
  CHECK(AuditHash(genesis, r) != base);

  r = Record();
  r.detail = R"({"type": "delete"})";
  CHECK(AuditHash(genesis, r) != base);
  r.detail = R"({"type":"access"})";  // whitespace is content: the text form is hashed as stored
  CHECK(AuditHash(genesis, r) != base);

  // A different previous hash (one bit) changes the hash: the chain links.
  std::string prev = genesis;
  prev[31] = '\x01';
  CHECK(AuditHash(prev, Record()) != base);
  CHECK(AuditHash(base, Record()) != base);
}

TEST_CASE("audit: length prefixes keep field boundaries", "[audit]") {
  const std::string genesis = AuditGenesisHash();
  AuditRecord a = Record();
  a.actor = "ab";
  a.action = "c";
  AuditRecord b = Record();
  b.actor = "a";
  b.action = "bc";
  // Without length prefixes both would hash "...abc...".
  CHECK(AuditHash(genesis, a) != AuditHash(genesis, b));

  // A value that imitates a boundary ("1:x") does not collide either.
  AuditRecord c = Record();
  c.actor = "x";
  c.action = "";
  AuditRecord d = Record();
  d.actor = "";
  d.action = "1:x";
  CHECK(AuditHash(genesis, c) != AuditHash(genesis, d));

  // Moving text between request_id and actor.
  AuditRecord e = Record();
  e.request_id = "";
  e.actor = "3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6badmin:alice";
  CHECK(AuditHash(genesis, e) != AuditHash(genesis, Record()));
}

TEST_CASE("audit: known answer pins the canonical form", "[audit]") {
  // First event: prev = 32 zero bytes, then
  //   id          "42"                                    -> "2:42"
  //   request_id  "3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6b" -> "36:3f1c..."
  //   actor       "admin:alice"                           -> "11:admin:alice"
  //   action      "request.created"                       -> "15:request.created"
  //   at_us       "1767225600000000"                      -> "16:1767225600000000"
  //   detail      {"type": "access"}                      -> "18:{\"type\": \"access\"}"
  const std::string canonical1 = std::string(32, '\0') + "2:42" + "36:3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6b" +
                                 "11:admin:alice" + "15:request.created" + "16:1767225600000000" +
                                 "18:{\"type\": \"access\"}";
  const std::string h1 = AuditHash(AuditGenesisHash(), Record());
  CHECK(h1 == rightsd::Sha256Raw(canonical1));
  // The same digest computed outside this code base (Python hashlib.sha256 over the bytes above).
  CHECK(rightsd::ToHex(h1) == "881c0f7bbd1c25dab2be32693f5025fd66f6c688c3ef8af662721c0219a373b5");

  // Second event, chained to the first; no request id.
  //   "2:43" "0:" "14:system:sweeper" "12:sla.breached" "16:1767312000000000" "2:{}"
  AuditRecord r2;
  r2.id = 43;
  r2.request_id = "";
  r2.actor = "system:sweeper";
  r2.action = "sla.breached";
  r2.at_us = 1767312000000000;  // 2026-01-02T00:00:00Z
  r2.detail = "{}";
  const std::string canonical2 =
      h1 + "2:43" + "0:" + "14:system:sweeper" + "12:sla.breached" + "16:1767312000000000" + "2:{}";
  const std::string h2 = AuditHash(h1, r2);
  CHECK(h2 == rightsd::Sha256Raw(canonical2));
  CHECK(rightsd::ToHex(h2) == "e5f5caf06d1ab22744b58ed3af19c31d0eadf1474eac6fcb504a6c0672c6ae85");
}

TEST_CASE("audit: numeric fields are hashed in decimal", "[audit]") {
  AuditRecord r;
  r.id = 7;
  r.at_us = 0;
  // "1:7" "0:" "0:" "0:" "1:0" "0:"
  CHECK(AuditHash(AuditGenesisHash(), r) ==
        rightsd::Sha256Raw(std::string(32, '\0') + "1:7" + "0:" + "0:" + "0:" + "1:0" + "0:"));
  // A negative instant (before 1970) keeps its sign: "-1" has length 2.
  r.at_us = -1;
  CHECK(AuditHash(AuditGenesisHash(), r) ==
        rightsd::Sha256Raw(std::string(32, '\0') + "1:7" + "0:" + "0:" + "0:" + "2:-1" + "0:"));
  // Multi-byte UTF-8: the prefix counts bytes. "Zoë" is 4 bytes.
  AuditRecord u;
  u.id = 1;
  u.actor = "Zo\xc3\xab";
  CHECK(AuditHash(AuditGenesisHash(), u) ==
        rightsd::Sha256Raw(std::string(32, '\0') + "1:1" + "0:" + "4:Zo\xc3\xab" + "0:" + "1:0" + "0:"));
}

TEST_CASE("audit: a linked event's leaf is SHA-256 of the canonical form alone (known answers from Python hashlib)",
          "[audit]") {
  // The value migration 0007's trigger stores for the same fields; computed independently with
  //   hashlib.sha256("".join(f"{len(x.encode())}:{x}" for x in fields).encode()).hexdigest()
  CHECK(rightsd::ToHex(rightsd::AuditLeaf(Record())) ==
        "f471db428556caef002534392c50947b692cc05fb9d61225a885fced5966c20f");
  AuditRecord r;
  r.id = 7;
  r.actor = "admin:zo\xc3\xab";
  r.action = "note";
  r.at_us = -1;
  r.detail = "{\"t\": \"\xf0\x9f\x98\x80\"}";
  CHECK(rightsd::AuditCanonical(r) == "1:70:10:admin:zo\xc3\xab" "4:note2:-113:{\"t\": \"\xf0\x9f\x98\x80\"}");
  CHECK(rightsd::ToHex(rightsd::AuditLeaf(r)) == "705018e6b15429a56c4733d83612365f7d4a784061358a837c4491d929e60dbc");
  // The leaf is not the first chain's per-event hash with a genesis previous hash.
  CHECK(rightsd::AuditLeaf(r) != AuditHash(AuditGenesisHash(), r));
}
