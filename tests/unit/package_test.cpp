// What an access package may disclose (11 CCR §7024(d)).
#include <catch2/catch.hpp>

#include "package.h"

using rightsd::kWithheldStatement;
using rightsd::RedactForDisclosure;
using nlohmann::json;

TEST_CASE("engine: package withholds forbidden items by field name", "[engine][package]") {
  const json records = {
      {"identifiers",
       json::array({{{"email", "jane@example.com"},
                     {"SSN", "123-45-6789"},
                     {"Social_Security_Number", "123456789"},
                     {"drivers_license", "D1234567"},
                     {"passportNumber", "X123"},
                     {"bank_account_number", "000123"},
                     {"health_insurance_member_id", "MBR-9"},
                     {"password", "hunter2"},
                     {"security_answer", "Fluffy"},
                     {"biometric_template", "base64..."},
                     {"mrn", "MRN-77"},
                     {"waiting_list", "cardiology"},
                     {"ITIN", "912-70-1234"},
                     {"phone", "415-555-0100"}}})}};
  const json out = RedactForDisclosure(records);
  const json& r = out["identifiers"][0];
  for (const char* key : {"SSN", "Social_Security_Number", "drivers_license", "passportNumber", "bank_account_number",
                          "health_insurance_member_id", "password", "security_answer", "biometric_template"}) {
    INFO(key);
    CHECK(r[key] == kWithheldStatement);
  }
  // The organisation's own record number, the email and a phone number are the person's to see.
  CHECK(r["mrn"] == "MRN-77");
  CHECK(r["waiting_list"] == "cardiology");  // contains "itin" but is no taxpayer id
  CHECK(r["ITIN"] == kWithheldStatement);
  CHECK(r["email"] == "jane@example.com");
  CHECK(r["phone"] == "415-555-0100");
}

TEST_CASE("engine: package withholds an SSN whatever the field is called", "[engine][package]") {
  const json records = {{"notes", json::array({"patient said SSN is 078-05-1120 on the phone", "call back 415 555 0100",
                                               "id 078 05 1120", "987654321", "12345678"})},
                        {"nested", {{"deeper", {{"free_text", "ssn:078-05-1120."}}}}}};
  const json out = RedactForDisclosure(records);
  CHECK(out["notes"][0] == kWithheldStatement);
  CHECK(out["notes"][1] == "call back 415 555 0100");
  CHECK(out["notes"][2] == kWithheldStatement);
  CHECK(out["notes"][3] == kWithheldStatement);  // nine digits alone
  CHECK(out["notes"][4] == "12345678");
  CHECK(out["nested"]["deeper"]["free_text"] == kWithheldStatement);
  CHECK(out.dump().find("078-05-1120") == std::string::npos);
}

TEST_CASE("engine: package redaction keeps shapes, nulls and numbers", "[engine][package]") {
  const json records = {{"a", nullptr}, {"ssn", nullptr}, {"n", 42}, {"list", json::array()}, {"ok", true}};
  const json out = RedactForDisclosure(records);
  CHECK(out == records);
}
