// Unit tests for daemon/auth.{h,cpp} (roles, permissions, the tokens file, bearer credentials) and
// daemon/crypto.{h,cpp} (sealing personal data, keyed look-up hashes, tokens, UUIDs, hex, SHA-256).
//
// The SHA-256 values below are published test vectors or were computed outside this code base with
// `printf %s TOKEN | sha256sum`. Nothing here touches the disk or the network.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER
#include <catch2/catch.hpp>

#include <cctype>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth.h"
#include "crypto.h"

using rightsd::BearerToken;
using rightsd::CryptoError;
using rightsd::Permission;
using rightsd::PiiCipher;
using rightsd::Principal;
using rightsd::Role;
using rightsd::TokensFileError;
using rightsd::TokenStore;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

// printf %s TOKEN | sha256sum
constexpr const char* kAliceToken = "rtd_alice-submits";
constexpr const char* kAliceHash = "af90c96c2aca305c0f3352d999795c7df04086d084c08dd9180535384364ee46";
constexpr const char* kVeraToken = "rtd_vera-views";
constexpr const char* kVeraHashUpper = "1A86E614AFDA2C97ACA6E74C9E02419B79647E20C34E949F648B3F40DEF65695";
constexpr const char* kAudreyToken = "rtd_audrey-audits";
constexpr const char* kAudreyHash = "7e58965658978302c655f1f74e280f8d1b0a121ecb26b42f5edef8bae69677c5";
constexpr const char* kAdamToken = "rtd_adam-admin";
constexpr const char* kAdamHash = "83b2f2dc2b0261555a841afc256de98ca5fef953053bd2f0b3c552f0581cc63d";

// 0x00 0x01 ... 0x1f
constexpr const char* kKeyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr const char* kKeyB = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

std::string Who(const std::optional<Principal>& p) {
  return p ? std::string(rightsd::ToString(p->role)) + ":" + p->name : std::string("none");
}

std::string Text(const std::optional<std::string_view>& v) { return v ? std::string(*v) : std::string("<none>"); }

std::string ParseError(std::string_view text) {
  try {
    TokenStore::Parse(text);
  } catch (const TokensFileError& e) {
    return e.what();
  }
  return "<accepted>";
}

PiiCipher Cipher(const char* hex) {
  rightsd::InitCrypto();
  return PiiCipher::FromHexKey(hex);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Roles and permissions
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("authz: role x permission matrix", "[authz]") {
  struct Row {
    Role role;
    const char* name;
    bool create, act, read, identity_values, audit;
  };
  // clang-format off
  const Row matrix[] = {
      //                          create act    read   identity audit
      {Role::kSubmitter, "submitter", true,  true,  true,  false,   false},
      {Role::kViewer,    "viewer",    false, false, true,  false,   false},
      {Role::kAuditor,   "auditor",   false, false, true,  false,   true},
      {Role::kAdmin,     "admin",     true,  true,  true,  true,    true},
  };
  // clang-format on
  for (const Row& r : matrix) {
    INFO(r.name);
    CHECK(rightsd::Allows(r.role, Permission::kCreateRequest) == r.create);
    CHECK(rightsd::Allows(r.role, Permission::kActOnRequest) == r.act);
    CHECK(rightsd::Allows(r.role, Permission::kReadRequests) == r.read);
    CHECK(rightsd::Allows(r.role, Permission::kReadIdentityValues) == r.identity_values);
    CHECK(rightsd::Allows(r.role, Permission::kReadAudit) == r.audit);
  }
}

TEST_CASE("authz: role names round trip", "[authz]") {
  const std::vector<std::pair<Role, std::string>> roles = {
      {Role::kSubmitter, "submitter"}, {Role::kViewer, "viewer"}, {Role::kAdmin, "admin"}, {Role::kAuditor, "auditor"}};
  for (const auto& [role, name] : roles) {
    INFO(name);
    CHECK(std::string(rightsd::ToString(role)) == name);
    CHECK(rightsd::ParseRole(name) == std::optional<Role>(role));
  }
  for (const char* bad : {"", "Admin", "ADMIN", "root", "submitters", " viewer", "auditor ", "read-only"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(rightsd::ParseRole(bad).has_value());
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The tokens file
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("authz: TokenStore parses a file with comments and blank lines", "[authz]") {
  const std::string text = std::string("# rightsd tokens: <role> <name> <sha256 hex of the token>\n") +
                           "\n"
                           "submitter alice " + kAliceHash + "   # the intake form\n" +
                           "   \t\n"
                           "viewer\tvera   " + kVeraHashUpper + "\n" +        // tabs, spaces, upper-case hex
                           "  auditor audrey " + kAudreyHash + "\r\n" +       // leading spaces, CRLF
                           "#admin mallory " + kAliceHash + "\n" +            // commented out
                           "admin adam " + kAdamHash;                         // no final newline
  const TokenStore store = TokenStore::Parse(text);
  CHECK(store.size() == 4);
  CHECK(Who(store.Authenticate(kAliceToken)) == "submitter:alice");
  CHECK(Who(store.Authenticate(kVeraToken)) == "viewer:vera");
  CHECK(Who(store.Authenticate(kAudreyToken)) == "auditor:audrey");
  CHECK(Who(store.Authenticate(kAdamToken)) == "admin:adam");

  CHECK(TokenStore::Parse("").size() == 0);
  CHECK(TokenStore::Parse("# nothing yet\n\n   # still nothing\n").size() == 0);
}

TEST_CASE("authz: Authenticate refuses wrong, empty and oversized tokens", "[authz]") {
  const TokenStore store = TokenStore::Parse(std::string("submitter alice ") + kAliceHash + "\n");
  CHECK(Who(store.Authenticate(kAliceToken)) == "submitter:alice");
  CHECK(Who(store.Authenticate("rtd_alice-submitz")) == "none");  // one character off
  CHECK(Who(store.Authenticate("rtd_alice-submits ")) == "none");  // trailing space
  CHECK(Who(store.Authenticate("RTD_ALICE-SUBMITS")) == "none");   // tokens are case-sensitive
  CHECK(Who(store.Authenticate("")) == "none");
  CHECK(Who(store.Authenticate(kAliceHash)) == "none");  // the stored hash is not a credential
  CHECK(Who(store.Authenticate(std::string(513, 'a'))) == "none");
  // "abc" hashes to the published vector ba78...; it is not in this store.
  CHECK(Who(store.Authenticate("abc")) == "none");
  const TokenStore abc =
      TokenStore::Parse("viewer v ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
  CHECK(Who(abc.Authenticate("abc")) == "viewer:v");
}

TEST_CASE("authz: TokenStore errors name the line", "[authz]") {
  const std::string h = kAliceHash;
  // unknown role, on line 3 after a comment and a blank line
  CHECK_THAT(ParseError("# tokens\n\nroot bob " + h + "\n"), StartsWith("line 3: ") && Contains("'root'"));
  CHECK_THAT(ParseError("Admin bob " + h + "\n"), StartsWith("line 1: ") && Contains("'Admin'"));
  // bad hash length: 63 and 65 characters
  CHECK_THAT(ParseError("admin adam " + std::string(kAdamHash) + "\nviewer v " + h.substr(0, 63) + "\n"),
             StartsWith("line 2: ") && Contains("64 hex"));
  CHECK_THAT(ParseError("viewer v " + h + "0\n"), StartsWith("line 1: ") && Contains("64 hex"));
  // non-hex, 64 characters
  CHECK_THAT(ParseError("viewer v " + h.substr(0, 63) + "g\n"), StartsWith("line 1: ") && Contains("64 hex"));
  // duplicate name (different hashes)
  CHECK_THAT(ParseError("submitter alice " + h + "\nadmin alice " + kAdamHash + "\n"),
             StartsWith("line 2: ") && Contains("duplicate name 'alice'"));
  // the same hash under two names
  CHECK_THAT(ParseError("submitter alice " + h + "\n\n\nviewer vera " + h + "\n"), StartsWith("line 4: "));
  // missing field
  CHECK_THAT(ParseError("submitter alice\n"), StartsWith("line 1: ") && Contains("expected"));
  CHECK_THAT(ParseError("admin adam " + std::string(kAdamHash) + "\nsubmitter\n"), StartsWith("line 2: "));
  // extra field (a comment after '#' is not one)
  CHECK_THAT(ParseError("submitter alice " + h + " extra\n"), StartsWith("line 1: ") && Contains("expected"));
  CHECK(ParseError("submitter alice " + h + " # extra\n") == "<accepted>");
  CHECK_THROWS_AS(TokenStore::Parse("viewer v " + h + " x"), TokensFileError);
}

TEST_CASE("authz: BearerToken parsing", "[authz]") {
  CHECK(Text(BearerToken("Bearer x")) == "x");
  CHECK(Text(BearerToken("bearer x")) == "x");
  CHECK(Text(BearerToken("BEARER x")) == "x");
  CHECK(Text(BearerToken("Bearer  x  ")) == "x");
  CHECK(Text(BearerToken("Bearer rtd_AbC-_09")) == "rtd_AbC-_09");
  CHECK(Text(BearerToken("Basic x")) == "<none>");
  CHECK(Text(BearerToken("Basic dXNlcjpwYXNz")) == "<none>");
  CHECK(Text(BearerToken("Bearer")) == "<none>");
  CHECK(Text(BearerToken("Bearer ")) == "<none>");
  CHECK(Text(BearerToken("Bearer    ")) == "<none>");
  CHECK(Text(BearerToken("Bearer a b")) == "<none>");
  CHECK(Text(BearerToken("Bearerx")) == "<none>");
  CHECK(Text(BearerToken(" Bearer x")) == "<none>");
  CHECK(Text(BearerToken("")) == "<none>");
  CHECK(Text(BearerToken("Token x")) == "<none>");
}

// ---------------------------------------------------------------------------------------------------------------
// PiiCipher
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("authz: PiiCipher seal and open round trip", "[authz]") {
  const PiiCipher c = Cipher(kKeyA);
  const std::string plain = "alice@example.com";
  const std::string ctx = "3f1c2b9e-0a4d-4e6f-8b7a-1c2d3e4f5a6b/identity/0";
  const std::string sealed = c.Seal(plain, ctx);
  // 24-byte XChaCha20 nonce + ciphertext of the same length + 16-byte tag.
  CHECK(sealed.size() == 24 + plain.size() + 16);
  CHECK(sealed.find(plain) == std::string::npos);
  CHECK(c.Open(sealed, ctx) == std::optional<std::string>(plain));
  // Another cipher object from the same key opens it too.
  CHECK(Cipher(kKeyA).Open(sealed, ctx) == std::optional<std::string>(plain));
  // Empty and binary plaintexts.
  CHECK(c.Open(c.Seal("", ctx), ctx) == std::optional<std::string>(""));
  const std::string binary("\x00\x01\xff\x00", 4);
  CHECK(c.Open(c.Seal(binary, ""), "") == std::optional<std::string>(binary));
}

TEST_CASE("authz: PiiCipher open fails on wrong context, wrong key and tampering", "[authz]") {
  const PiiCipher c = Cipher(kKeyA);
  const std::string ctx = "req-1/identity/0";
  const std::string sealed = c.Seal("alice@example.com", ctx);

  CHECK_FALSE(c.Open(sealed, "req-2/identity/0").has_value());
  CHECK_FALSE(c.Open(sealed, "req-1/identity/1").has_value());
  CHECK_FALSE(c.Open(sealed, "").has_value());
  CHECK_FALSE(Cipher(kKeyB).Open(sealed, ctx).has_value());

  // Flip one bit in the nonce, the ciphertext and the tag.
  for (std::size_t pos : {std::size_t{0}, std::size_t{23}, std::size_t{24}, std::size_t{30}, sealed.size() - 1}) {
    INFO("byte " << pos);
    std::string tampered = sealed;
    tampered[pos] = static_cast<char>(tampered[pos] ^ 0x01);
    CHECK_FALSE(c.Open(tampered, ctx).has_value());
  }
  CHECK_FALSE(c.Open(sealed.substr(0, sealed.size() - 1), ctx).has_value());  // truncated
  CHECK_FALSE(c.Open(sealed + "x", ctx).has_value());                          // extended
  CHECK_FALSE(c.Open("", ctx).has_value());
  CHECK_FALSE(c.Open(std::string(39, '\0'), ctx).has_value());  // shorter than nonce + tag
  CHECK_FALSE(c.Open(std::string(40, '\0'), ctx).has_value());  // exactly nonce + tag, but not a valid seal
}

TEST_CASE("authz: PiiCipher seals of the same value differ", "[authz]") {
  const PiiCipher c = Cipher(kKeyA);
  std::set<std::string> seals;
  for (int i = 0; i < 8; ++i) seals.insert(c.Seal("alice@example.com", "ctx"));
  CHECK(seals.size() == 8);
  // ... and the nonces (first 24 bytes) differ too.
  std::set<std::string> nonces;
  for (const std::string& s : seals) nonces.insert(s.substr(0, 24));
  CHECK(nonces.size() == 8);
}

TEST_CASE("authz: PiiCipher LookupHash is deterministic and separated by domain and key", "[authz]") {
  const PiiCipher a = Cipher(kKeyA);
  const std::string h = a.LookupHash("email", "alice@example.com");
  CHECK(h.size() == 32);
  CHECK(a.LookupHash("email", "alice@example.com") == h);
  CHECK(Cipher(kKeyA).LookupHash("email", "alice@example.com") == h);
  CHECK(a.LookupHash("account_id", "alice@example.com") != h);
  CHECK(a.LookupHash("email", "bob@example.com") != h);
  CHECK(a.LookupHash("email", "Alice@example.com") != h);  // normalising is the caller's job
  CHECK(Cipher(kKeyB).LookupHash("email", "alice@example.com") != h);
  // Length-prefixed domain: the boundary between domain and value cannot move.
  CHECK(a.LookupHash("ab", "c") != a.LookupHash("a", "bc"));
  CHECK(a.LookupHash("", "abc") != a.LookupHash("abc", ""));
  // Not a plain hash of the value.
  CHECK(h != rightsd::Sha256Raw("alice@example.com"));
}

TEST_CASE("authz: PiiCipher FromHexKey validates the key", "[authz]") {
  rightsd::InitCrypto();
  const std::string key = kKeyA;
  CHECK_NOTHROW(PiiCipher::FromHexKey(key));
  CHECK_NOTHROW(PiiCipher::FromHexKey("  " + key + "\n"));  // surrounding whitespace (a key file line)
  // Upper-case hex is the same key.
  std::string upper = key;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  const PiiCipher lower_c = PiiCipher::FromHexKey(key);
  const PiiCipher upper_c = PiiCipher::FromHexKey(upper);
  CHECK(upper_c.LookupHash("d", "v") == lower_c.LookupHash("d", "v"));

  CHECK_THROWS_AS(PiiCipher::FromHexKey(key.substr(0, 63)), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(key + "0"), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(key.substr(0, 62)), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(key + "00"), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(key.substr(0, 63) + "g"), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey("zz" + key.substr(2)), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(key.substr(0, 32) + " " + key.substr(33)), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey(""), CryptoError);
  CHECK_THROWS_AS(PiiCipher::FromHexKey("   \n"), CryptoError);
}

// ---------------------------------------------------------------------------------------------------------------
// Tokens, keys, UUIDs, hex, SHA-256
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("authz: GenerateToken and GenerateKeyHex format", "[authz]") {
  const std::string t = rightsd::GenerateToken();
  CHECK_THAT(t, StartsWith("rtd_"));
  CHECK(t.size() == 4 + 43);  // 256 bits = 32 bytes = ceil(32 * 4 / 3) = 43 base64url characters, no padding
  for (char ch : t.substr(4)) {
    INFO(ch);
    CHECK(((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
           ch == '_'));
  }
  CHECK(rightsd::GenerateToken() != t);

  const std::string k = rightsd::GenerateKeyHex();
  CHECK(k.size() == 64);
  CHECK(k.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(rightsd::GenerateKeyHex() != k);
  CHECK_NOTHROW(PiiCipher::FromHexKey(k));
}

TEST_CASE("authz: NewUuid and IsUuid", "[authz]") {
  rightsd::InitCrypto();
  std::set<std::string> seen;
  for (int i = 0; i < 16; ++i) {
    const std::string u = rightsd::NewUuid();
    INFO(u);
    CHECK(rightsd::IsUuid(u));
    REQUIRE(u.size() == 36);
    CHECK(u[14] == '4');                                         // version 4
    CHECK(std::string("89ab").find(u[19]) != std::string::npos);  // RFC 4122 variant
    CHECK(u.find_first_not_of("0123456789abcdef-") == std::string::npos);  // lower case
    seen.insert(u);
  }
  CHECK(seen.size() == 16);

  CHECK(rightsd::IsUuid("123e4567-e89b-12d3-a456-426614174000"));
  CHECK(rightsd::IsUuid("00000000-0000-0000-0000-000000000000"));
  for (const char* bad :
       {"", "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-4266141740000",
        "123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a4564-26614174000",
        "123e4567-e89b-12d3-a456-42661417400g", "{123e4567-e89b-12d3-a456-426614174000}",
        "123e4567-e89b-12d3-a456_426614174000", " 23e4567-e89b-12d3-a456-426614174000"}) {
    INFO("'" << bad << "'");
    CHECK_FALSE(rightsd::IsUuid(bad));
  }
}

TEST_CASE("authz: ToHex and FromHex", "[authz]") {
  CHECK(rightsd::ToHex(std::string("\x00\x01\xab\xff", 4)) == "0001abff");
  CHECK(rightsd::ToHex("") == "");
  CHECK(rightsd::ToHex("abc") == "616263");
  CHECK(rightsd::FromHex("0001abff") == std::optional<std::string>(std::string("\x00\x01\xab\xff", 4)));
  CHECK(rightsd::FromHex("ABFF") == std::optional<std::string>(std::string("\xab\xff", 2)));
  CHECK(rightsd::FromHex("616263") == std::optional<std::string>("abc"));
  CHECK(rightsd::FromHex("") == std::optional<std::string>(""));
  CHECK_FALSE(rightsd::FromHex("abc").has_value());  // odd length
  CHECK_FALSE(rightsd::FromHex("zz").has_value());
  CHECK_FALSE(rightsd::FromHex("0g").has_value());
  CHECK_FALSE(rightsd::FromHex(" 0").has_value());
  CHECK_FALSE(rightsd::FromHex("0x00").has_value());
}

TEST_CASE("authz: Sha256 known answers", "[authz]") {
  // FIPS 180-2 test vectors.
  CHECK(rightsd::Sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(rightsd::Sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(rightsd::Sha256Hex("The quick brown fox jumps over the lazy dog") ==
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
  CHECK(rightsd::Sha256Raw("abc") ==
        std::string("\xba\x78\x16\xbf\x8f\x01\xcf\xea\x41\x41\x40\xde\x5d\xae\x22\x23"
                    "\xb0\x03\x61\xa3\x96\x17\x7a\x9c\xb4\x10\xff\x61\xf2\x00\x15\xad",
                    32));
}

TEST_CASE("authz: ConstantTimeEquals", "[authz]") {
  CHECK(rightsd::ConstantTimeEquals("", ""));
  CHECK(rightsd::ConstantTimeEquals("secret", "secret"));
  CHECK_FALSE(rightsd::ConstantTimeEquals("secret", "secreT"));
  CHECK_FALSE(rightsd::ConstantTimeEquals("secret", "secret "));
  CHECK_FALSE(rightsd::ConstantTimeEquals("a", ""));
}
