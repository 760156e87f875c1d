#include "connectors/jose.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace rightsd::connectors::jose {

std::string Base64Url(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned n = byte(i) << 16;
    for (int shift : {18, 12}) out += kAlphabet[(n >> shift) & 63];
  } else if (i + 2 == bytes.size()) {
    const unsigned n = (byte(i) << 16) | (byte(i + 1) << 8);
    for (int shift : {18, 12, 6}) out += kAlphabet[(n >> shift) & 63];
  }
  return out;
}

PrivateKey ReadPrivateKeyPem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  ERR_clear_error();
  return PrivateKey(key);
}

std::string_view ToString(Algorithm alg) {
  switch (alg) {
    case Algorithm::kRS256: return "RS256";
    case Algorithm::kRS384: return "RS384";
    case Algorithm::kES384: return "ES384";
  }
  return "";
}

std::optional<Algorithm> ParseAlgorithm(std::string_view name) {
  for (auto alg : {Algorithm::kRS256, Algorithm::kRS384, Algorithm::kES384}) {
    if (ToString(alg) == name) return alg;
  }
  return std::nullopt;
}

std::string KeyMismatch(Algorithm alg, EVP_PKEY* key) {
  if (!key) return "no key";
  if (alg == Algorithm::kES384) {
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return "ES384 needs an EC key on P-384";
    std::array<char, 64> group{};
    std::size_t length = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(), &length) != 1 ||
        (std::string_view(group.data(), length) != "secp384r1" && std::string_view(group.data(), length) != "P-384")) {
      ERR_clear_error();
      return "ES384 needs an EC key on P-384 (secp384r1)";
    }
    return "";
  }
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) return std::string(ToString(alg)) + " needs an RSA key";
  if (EVP_PKEY_get_bits(key) < 2048) return "the RSA key is shorter than 2048 bits";
  return "";
}

std::string Sign(Algorithm alg, EVP_PKEY* key, nlohmann::json header, const nlohmann::json& claims) {
  header["alg"] = std::string(ToString(alg));
  const std::string signing_input = Base64Url(header.dump()) + "." + Base64Url(claims.dump());
  const EVP_MD* digest = alg == Algorithm::kRS256 ? EVP_sha256() : EVP_sha384();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  const auto* data = reinterpret_cast<const unsigned char*>(signing_input.data());
  std::size_t size = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, digest, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size, data, signing_input.size()) != 1) {
    ERR_clear_error();
    return "";
  }
  std::string signature(size, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &size, data,
                     signing_input.size()) != 1) {
    ERR_clear_error();
    return "";
  }
  signature.resize(size);
  if (alg == Algorithm::kES384) {
    // DER ECDSA-Sig-Value -> r || s, each left-padded to the curve's 48 bytes.
    const auto* der = reinterpret_cast<const unsigned char*>(signature.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
        d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(signature.size())), ECDSA_SIG_free);
    std::string raw(96, '\0');
    if (!sig || BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(raw.data()), 48) != 48 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(raw.data()) + 48, 48) != 48) {
      ERR_clear_error();
      return "";
    }
    signature = std::move(raw);
  }
  return signing_input + "." + Base64Url(signature);
}

std::string RandomId() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    ERR_clear_error();
    throw std::runtime_error("the system's random source failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace rightsd::connectors::jose
