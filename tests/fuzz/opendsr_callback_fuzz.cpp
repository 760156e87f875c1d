// Fuzzes the OpenDSR status callback path of POST /v1/callbacks/opendsr: OpenDsrCallbackRequestId (run on every
// body before anything is verified) and the webhook connector's VerifyCallback with fuzzed signature and domain
// headers. Some inputs carry a real signature over the fuzzed body, so the checks after the signature are fuzzed
// too. Oracles: a forged signature never verifies; a correctly signed JSON object meant for this endpoint always
// does; the request id is a non-empty string.
#include <openssl/evp.h>

#include "connector_harness.h"
#include "connectors/webhook/webhook.h"

using namespace rightsd::fuzz;

namespace {

KeyPem& ProcessorKey() {
  static KeyPem key = MakeKey(false);
  return key;
}

std::string SignBase64(const std::string& body) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  std::string sig;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, ProcessorKey().key.get()) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(body.data()), body.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(body.data()), body.size()) != 1) {
      Fail("signing failed");
    }
    sig.resize(len);
  } else {
    Fail("signing failed");
  }
  EVP_MD_CTX_free(ctx);
  std::string out(4 * ((sig.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(sig.data()), static_cast<int>(sig.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

const char* kCallbackUrl = "https://rightsd.example.com/v1/callbacks/opendsr";

std::unique_ptr<Connector>& TheConnector() {
  static std::unique_ptr<Connector> connector;
  return connector;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  WriteCredential("processor.pem", ProcessorKey().public_pem);
  const nlohmann::json settings = {{"base_url", "https://processor.example.com/opendsr/v2"},
                                   {"processor_certificate_file", "processor.pem"},
                                   {"callback_url", kCallbackUrl}};
  const ConnectorType* type = FindConnectorType("webhook");
  ValidateSettings(*type, "fuzz", settings);
  // VerifyCallback never sends anything; the connector only needs a client to exist.
  static FuzzedDataProvider none(nullptr, 0);
  static FuzzHttp http(none, {});
  TheConnector() = type->make(settings, ConnectorEnv{"fuzz", CredentialDir(), &http, {"marketing"}});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const bool sign = fdp.ConsumeBool();
  const int header_slot = fdp.ConsumeIntegralInRange<int>(0, 3);  // which of the three names carries it (3: none)
  const std::string fuzzed_signature = fdp.ConsumeRandomLengthString(700);
  const std::string domain = fdp.ConsumeRandomLengthString(100);
  const std::string body = fdp.ConsumeRemainingBytesAsString();

  if (const auto id = rightsd::connectors::webhook::OpenDsrCallbackRequestId(body)) {
    Check(!id->empty() && IsValidUtf8(*id), "a callback request id that is empty or not UTF-8");
  }
  const std::string signature = sign ? SignBase64(body) : fuzzed_signature;
  static constexpr const char* kNames[] = {"X-OpenDSR-Signature", "X-OpenGDPR-Signature",
                                           "X-OpenCompliance-Signature"};
  auto header = [&](std::string_view name) -> std::string {
    if (header_slot < 3 && name == kNames[header_slot]) return signature;
    if (name == "X-OpenDSR-Processor-Domain") return domain;
    return "";
  };
  const bool verified = TheConnector()->VerifyCallback(body, header);
  if (!sign || header_slot == 3) {
    Check(!verified, "a callback without a valid signature verified");
  } else {
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    const bool for_us = doc.is_object() && (!doc.contains("status_callback_url") ||
                                            !doc["status_callback_url"].is_string() ||
                                            doc["status_callback_url"] == kCallbackUrl);
    Check(verified == for_us, "a correctly signed callback was judged wrongly");
  }
  return 0;
}
