// The slice of SOQL the Salesforce simulator understands, parsed the way Salesforce parses it so that a badly
// escaped value changes what a query means (or makes it malformed) exactly as it would against a real org:
//   SELECT field, ... FROM Type [WHERE condition] [LIMIT n]
//   condition: comparisons joined by AND or OR (mixing both on one level without parentheses is refused, as
//   Salesforce refuses it), NOT, parentheses; comparison: field = | != | <> value, field [NOT] IN (value, ...);
//   value: 'string' (escapes \\ \' \" \n \r \t \b \f and their upper-case forms), true, false, null, a number.
// Comparisons follow Salesforce: text compares case-insensitively, ids by their case-sensitive 15-character form.
// Pure; thread-safe.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rightsd::test::sfsim {

struct SoqlError {
  std::string error_code;  // MALFORMED_QUERY
  std::string message;     // Salesforce's shape: "\n<query>\n   ^\nERROR at Row:1:Column:N\n<explanation>"
};

struct Condition;

struct FieldRef {
  std::string name;
  std::size_t column = 0;  // 1-based, for error messages
};

struct ParsedQuery {
  std::vector<FieldRef> fields;
  FieldRef type;
  std::shared_ptr<const Condition> where;  // null: every record
  std::optional<long long> limit;
  // Every field named in the WHERE clause, for the caller's schema check.
  std::vector<FieldRef> where_fields;
};

// nullopt + error on a syntax error.
std::optional<ParsedQuery> ParseSoql(const std::string& soql, SoqlError& error);

// Whether `record` (field name -> value, names compared case-insensitively) satisfies the query's WHERE.
bool Matches(const ParsedQuery& query, const nlohmann::json& record);

// The message Salesforce gives for a query problem at `column`.
std::string QueryErrorMessage(const std::string& soql, std::size_t column, const std::string& explanation);

// Salesforce's comparison of two values of one field.
bool SameValue(const std::string& field, const nlohmann::json& stored, const nlohmann::json& literal);

}  // namespace rightsd::test::sfsim
