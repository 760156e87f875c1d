#include "peers/salesforce/soql_engine.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace rightsd::test::sfsim {

using nlohmann::json;

struct Condition {
  enum class Kind { kAnd, kOr, kNot, kCompare, kIn };
  Kind kind = Kind::kCompare;
  std::vector<std::shared_ptr<const Condition>> children;
  std::string field;
  bool negate = false;  // != / <> / NOT IN
  std::vector<json> values;
};

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

struct Token {
  enum class Kind { kIdent, kString, kNumber, kSymbol, kEnd };
  Kind kind = Kind::kEnd;
  std::string text;  // identifiers and symbols as written; strings unescaped
  double number = 0;
  std::size_t column = 0;
};

struct ParseFailure {
  std::size_t column;
  std::string explanation;
};

std::vector<Token> Lex(const std::string& q) {
  std::vector<Token> out;
  std::size_t i = 0;
  while (i < q.size()) {
    const char c = q[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.column = i + 1;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      std::size_t j = i;
      while (j < q.size() && (std::isalnum(static_cast<unsigned char>(q[j])) || q[j] == '_' || q[j] == '.')) ++j;
      t.kind = Token::Kind::kIdent;
      t.text = q.substr(i, j - i);
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && i + 1 < q.size() && std::isdigit(static_cast<unsigned char>(q[i + 1])))) {
      std::size_t j = i + 1;
      while (j < q.size() && (std::isdigit(static_cast<unsigned char>(q[j])) || q[j] == '.')) ++j;
      t.kind = Token::Kind::kNumber;
      t.text = q.substr(i, j - i);
      try {
        t.number = std::stod(t.text);
      } catch (const std::exception&) {
        throw ParseFailure{t.column, "unexpected token: '" + t.text + "'"};
      }
      i = j;
    } else if (c == '\'') {
      std::string value;
      std::size_t j = i + 1;
      bool closed = false;
      while (j < q.size()) {
        const char d = q[j];
        if (d == '\'') {
          closed = true;
          ++j;
          break;
        }
        if (d == '\\') {
          if (j + 1 >= q.size()) break;
          const char e = q[j + 1];
          switch (e) {
            case '\\': value += '\\'; break;
            case '\'': value += '\''; break;
            case '"': value += '"'; break;
            case 'n': case 'N': value += '\n'; break;
            case 'r': case 'R': value += '\r'; break;
            case 't': case 'T': value += '\t'; break;
            case 'b': case 'B': value += '\b'; break;
            case 'f': case 'F': value += '\f'; break;
            default:
              throw ParseFailure{j + 1, std::string("Invalid string literal. Illegal character sequence '\\") + e +
                                            "' in string literal."};
          }
          j += 2;
          continue;
        }
        value += d;
        ++j;
      }
      if (!closed) throw ParseFailure{t.column, "line 1:" + std::to_string(q.size()) + " mismatched character '<EOF>' expecting '''"};
      t.kind = Token::Kind::kString;
      t.text = std::move(value);
      i = j;
    } else {
      static const std::vector<std::string> kSymbols = {"!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", ","};
      bool matched = false;
      for (const auto& s : kSymbols) {
        if (q.compare(i, s.size(), s) == 0) {
          t.kind = Token::Kind::kSymbol;
          t.text = s;
          i += s.size();
          matched = true;
          break;
        }
      }
      if (!matched) throw ParseFailure{t.column, std::string("unexpected token: '") + c + "'"};
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.kind = Token::Kind::kEnd;
  end.column = q.size() + 1;
  out.push_back(end);
  return out;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  ParsedQuery Query() {
    ParsedQuery q;
    Keyword("SELECT");
    do {
      q.fields.push_back(Field());
    } while (Symbol(","));
    Keyword("FROM");
    q.type = Field();
    if (IsKeyword("WHERE")) {
      ++i_;
      q.where = Or();
      q.where_fields = std::move(where_fields_);
    }
    if (IsKeyword("LIMIT")) {
      ++i_;
      if (Peek().kind != Token::Kind::kNumber) Unexpected();
      q.limit = static_cast<long long>(Peek().number);
      ++i_;
    }
    if (Peek().kind != Token::Kind::kEnd) Unexpected();
    return q;
  }

 private:
  const Token& Peek() const { return t_[i_]; }
  [[noreturn]] void Unexpected() const {
    const Token& t = Peek();
    throw ParseFailure{t.column, t.kind == Token::Kind::kEnd ? "unexpected token: '<EOF>'"
                                                             : "unexpected token: '" + (t.kind == Token::Kind::kString ? "'" + t.text + "'" : t.text) + "'"};
  }
  bool IsKeyword(std::string_view k) const {
    return Peek().kind == Token::Kind::kIdent && Lower(Peek().text) == Lower(k);
  }
  void Keyword(std::string_view k) {
    if (!IsKeyword(k)) Unexpected();
    ++i_;
  }
  bool Symbol(std::string_view s) {
    if (Peek().kind == Token::Kind::kSymbol && Peek().text == s) {
      ++i_;
      return true;
    }
    return false;
  }
  FieldRef Field() {
    static const std::vector<std::string> kReserved = {"select", "from", "where", "and", "or", "not", "in",
                                                       "limit", "true", "false", "null"};
    if (Peek().kind != Token::Kind::kIdent ||
        std::find(kReserved.begin(), kReserved.end(), Lower(Peek().text)) != kReserved.end()) {
      Unexpected();
    }
    FieldRef f{Peek().text, Peek().column};
    ++i_;
    return f;
  }

  // One level of AND or OR: SOQL wants parentheses when the two are mixed.
  std::shared_ptr<const Condition> Or() {
    auto first = Unary();
    if (!IsKeyword("AND") && !IsKeyword("OR")) return first;
    const std::string joiner = Lower(Peek().text);
    auto node = std::make_shared<Condition>();
    node->kind = joiner == "and" ? Condition::Kind::kAnd : Condition::Kind::kOr;
    node->children.push_back(first);
    while (IsKeyword("AND") || IsKeyword("OR")) {
      if (Lower(Peek().text) != joiner) Unexpected();
      ++i_;
      node->children.push_back(Unary());
    }
    return node;
  }

  std::shared_ptr<const Condition> Unary() {
    if (IsKeyword("NOT")) {
      ++i_;
      auto node = std::make_shared<Condition>();
      node->kind = Condition::Kind::kNot;
      node->children.push_back(Unary());
      return node;
    }
    if (Symbol("(")) {
      auto inner = Or();
      if (!Symbol(")")) Unexpected();
      return inner;
    }
    const FieldRef field = Field();
    where_fields_.push_back(field);
    auto node = std::make_shared<Condition>();
    node->field = field.name;
    if (IsKeyword("NOT") || IsKeyword("IN")) {
      node->negate = IsKeyword("NOT");
      if (node->negate) ++i_;
      Keyword("IN");
      node->kind = Condition::Kind::kIn;
      if (!Symbol("(")) Unexpected();
      do {
        node->values.push_back(Value());
      } while (Symbol(","));
      if (!Symbol(")")) Unexpected();
      return node;
    }
    node->kind = Condition::Kind::kCompare;
    if (Symbol("=")) {
    } else if (Symbol("!=") || Symbol("<>")) {
      node->negate = true;
    } else {
      Unexpected();
    }
    node->values.push_back(Value());
    return node;
  }

  json Value() {
    const Token& t = Peek();
    json v;
    if (t.kind == Token::Kind::kString) {
      v = t.text;
    } else if (t.kind == Token::Kind::kNumber) {
      v = t.number;
    } else if (IsKeyword("true")) {
      v = true;
    } else if (IsKeyword("false")) {
      v = false;
    } else if (IsKeyword("null")) {
      v = nullptr;
    } else {
      Unexpected();
    }
    ++i_;
    return v;
  }

  std::vector<Token> t_;
  std::size_t i_ = 0;
  std::vector<FieldRef> where_fields_;
};

const json* FieldValue(const json& record, const std::string& name) {
  if (auto it = record.find(name); it != record.end()) return &*it;
  const std::string wanted = Lower(name);
  for (auto it = record.begin(); it != record.end(); ++it) {
    if (Lower(it.key()) == wanted) return &*it;
  }
  return nullptr;
}

bool LooksLikeIdField(const std::string& field) {
  const std::string f = Lower(field);
  return f == "id" || (f.size() > 2 && f.ends_with("id"));
}

bool Evaluate(const Condition& c, const json& record) {
  switch (c.kind) {
    case Condition::Kind::kAnd:
      return std::all_of(c.children.begin(), c.children.end(), [&](const auto& child) { return Evaluate(*child, record); });
    case Condition::Kind::kOr:
      return std::any_of(c.children.begin(), c.children.end(), [&](const auto& child) { return Evaluate(*child, record); });
    case Condition::Kind::kNot:
      return !Evaluate(*c.children.front(), record);
    case Condition::Kind::kCompare:
    case Condition::Kind::kIn: {
      const json* stored = FieldValue(record, c.field);
      const json value = stored ? *stored : json(nullptr);
      const bool any = std::any_of(c.values.begin(), c.values.end(),
                                   [&](const json& literal) { return SameValue(c.field, value, literal); });
      return c.negate ? !any : any;
    }
  }
  return false;
}

}  // namespace

bool SameValue(const std::string& field, const json& stored, const json& literal) {
  if (literal.is_null()) return stored.is_null();
  if (stored.is_null()) return false;
  if (literal.is_string() && stored.is_string()) {
    const std::string a = stored.get<std::string>(), b = literal.get<std::string>();
    if (LooksLikeIdField(field) && (a.size() == 15 || a.size() == 18) && (b.size() == 15 || b.size() == 18)) {
      return a.substr(0, 15) == b.substr(0, 15);
    }
    return Lower(a) == Lower(b);
  }
  if (literal.is_boolean() && stored.is_boolean()) return literal.get<bool>() == stored.get<bool>();
  if (literal.is_number() && stored.is_number()) return std::fabs(literal.get<double>() - stored.get<double>()) < 1e-9;
  return false;
}

std::string QueryErrorMessage(const std::string& soql, std::size_t column, const std::string& explanation) {
  return "\n" + soql + "\n" + std::string(column > 0 ? column - 1 : 0, ' ') + "^\nERROR at Row:1:Column:" +
         std::to_string(column) + "\n" + explanation;
}

std::optional<ParsedQuery> ParseSoql(const std::string& soql, SoqlError& error) {
  try {
    Parser parser(Lex(soql));
    return parser.Query();
  } catch (const ParseFailure& f) {
    error.error_code = "MALFORMED_QUERY";
    error.message = QueryErrorMessage(soql, f.column, f.explanation);
    return std::nullopt;
  }
}

bool Matches(const ParsedQuery& query, const json& record) {
  return !query.where || Evaluate(*query.where, record);
}

}  // namespace rightsd::test::sfsim
