// Secrets and personal data at rest: identity values and other personal fields are sealed with
// XChaCha20-Poly1305 (libsodium) under a subkey of the configured 32-byte key, bound to the row they belong to;
// look-ups use a keyed BLAKE2b hash under a second subkey, so the database never holds a plain value or an
// unkeyed hash that could be reversed by a dictionary. Thread-safe after construction.
#pragma once
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace rightsd {

struct CryptoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Must be called once before any other function here (sodium_init is idempotent and thread-safe).
void InitCrypto();

class PiiCipher {
 public:
  // 64 hex characters (surrounding whitespace allowed); throws CryptoError otherwise.
  static PiiCipher FromHexKey(std::string_view hex);

  // nonce || ciphertext+tag, as raw bytes. `context` (e.g. request id + field) is authenticated, not stored:
  // a sealed value copied to another row no longer opens.
  std::string Seal(std::string_view plaintext, std::string_view context) const;
  std::optional<std::string> Open(std::string_view sealed, std::string_view context) const;

  // Keyed hash for equality look-ups; `domain` separates e.g. identity kinds from idempotency bodies.
  std::string LookupHash(std::string_view domain, std::string_view value) const;

 private:
  std::array<unsigned char, 32> seal_key_{};
  std::array<unsigned char, 32> hash_key_{};
};

std::string GenerateKeyHex();                   // 32 random bytes as 64 hex characters
std::string GenerateToken();                    // "rtd_" + 43 base64url characters (256 bits)
std::string Sha256Hex(std::string_view data);   // token hashes in the tokens file
std::string Sha256Raw(std::string_view data);   // 32 raw bytes
std::string NewUuid();                          // random (v4) UUID, lower-case canonical text
bool IsUuid(std::string_view text);
std::string ToHex(std::string_view bytes);
std::optional<std::string> FromHex(std::string_view hex);
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace rightsd
