// What an access package may disclose. 11 CCR §7024(d) forbids disclosing Social Security numbers, driver's
// licence and other government ID numbers, financial account numbers, health insurance or medical ID numbers,
// account passwords, security questions and answers, and unique biometric data: the package says such an item is
// held instead. Pure; thread-safe.
#pragma once
#include <nlohmann/json.hpp>

namespace rightsd {

inline constexpr const char* kWithheldStatement =
    "held but not disclosed: 11 CCR 7024(d) forbids disclosing this item";

// Returns a copy of `records` with every forbidden item replaced by kWithheldStatement: by field name (e.g. ssn,
// drivers_license, account_number, member_id, password, security_answer, biometric...) and, whatever the field is
// called, any string that holds a US Social Security number pattern.
nlohmann::json RedactForDisclosure(const nlohmann::json& records);

}  // namespace rightsd
