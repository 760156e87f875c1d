// JSON Web Signatures for the OAuth client assertions connectors send (Salesforce's JWT bearer flow, SMART Backend
// Services' private_key_jwt): base64url, PEM private keys, and compact JWS signed with OpenSSL's EVP API.
// RS256/RS384 are RSASSA-PKCS1-v1_5; ES384 is ECDSA on P-384 with the signature as raw r || s (48 + 48 bytes), as
// RFC 7518 section 3.4 requires, not OpenSSL's DER.
#pragma once
#include <openssl/evp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace rightsd::connectors::jose {

std::string Base64Url(std::string_view bytes);

struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using PrivateKey = std::unique_ptr<EVP_PKEY, KeyFree>;

// An unencrypted PEM private key (PKCS#8 or traditional); null when the text holds none.
PrivateKey ReadPrivateKeyPem(const std::string& pem);

enum class Algorithm { kRS256, kRS384, kES384 };
std::string_view ToString(Algorithm alg);
std::optional<Algorithm> ParseAlgorithm(std::string_view name);
// Why `key` cannot sign with `alg` (wrong type, RSA under 2048 bits, EC not on P-384); "" when it can.
std::string KeyMismatch(Algorithm alg, EVP_PKEY* key);

// header.claims.signature, with "alg" set in the header; "" if OpenSSL cannot sign (the key was checked at start-up).
std::string Sign(Algorithm alg, EVP_PKEY* key, nlohmann::json header, const nlohmann::json& claims);

// 128 random bits as 32 hex characters (a jti).
std::string RandomId();

}  // namespace rightsd::connectors::jose
