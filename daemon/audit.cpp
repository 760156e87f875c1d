#include "audit.h"

#include <charconv>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "crypto.h"

namespace rightsd {

namespace {

// The fields as the canonical form takes them, in the text forms PostgreSQL's audit_canonical() is given.
constexpr const char* kSelectColumns =
    "id, coalesce(request_id::text, ''), actor, action, "
    "(extract(epoch from at) * 1000000)::bigint, detail::text";

AuditRecord FromRow(const pqxx::row& row) {
  return AuditRecord{row[0].as<long long>(), row[1].as<std::string>(), row[2].as<std::string>(),
                     row[3].as<std::string>(), row[4].as<long long>(),  row[5].as<std::string>()};
}

std::string Bytes(const pqxx::field& hex_field) { return FromHex(hex_field.c_str()).value_or(std::string()); }

// A bigint[]'s text form, "{1,2,3}".
std::vector<long long> ParseIdArray(std::string_view text) {
  std::vector<long long> ids;
  if (text.size() < 2) return ids;
  text = text.substr(1, text.size() - 2);
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    long long v = 0;
    std::from_chars(item.data(), item.data() + item.size(), v);
    ids.push_back(v);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return ids;
}

std::string IdArrayLiteral(const std::vector<long long>& ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "}";
}

struct Verifier {
  pqxx::work& txn;
  AuditVerifyResult result;

  bool Fail(long long id, std::string problem) {
    result.ok = false;
    result.first_bad_id = id;
    result.problem = std::move(problem);
    return false;
  }

  // The first chain: one hash per event, in chain_seq order, ending at audit_chain_head.
  bool FirstChain() {
    std::string prev = AuditGenesisHash();
    long long expected_seq = 1;
    for (;;) {
      const auto rows = txn.exec_params(
          fmt::format("SELECT {}, chain_seq, encode(prev_hash, 'hex'), encode(hash, 'hex') FROM audit_events "
                      "WHERE chain_seq >= $1 ORDER BY chain_seq LIMIT 10000",
                      kSelectColumns),
          expected_seq);
      if (rows.empty()) break;
      for (const auto& row : rows) {
        const AuditRecord record = FromRow(row);
        if (row[6].as<long long>() != expected_seq) {
          return Fail(record.id, fmt::format("chain position {} is missing before event {} (a row was deleted)",
                                             expected_seq, record.id));
        }
        if (Bytes(row[7]) != prev) {
          return Fail(record.id, fmt::format("event {} does not link to the event before it", record.id));
        }
        const std::string hash = AuditHash(prev, record);
        if (Bytes(row[8]) != hash) {
          return Fail(record.id, fmt::format("event {} was altered: its content does not match its hash", record.id));
        }
        prev = hash;
        ++expected_seq;
        ++result.verified;
        ++result.first_chain;
      }
    }
    const auto head = txn.exec("SELECT chain_seq, encode(hash, 'hex') FROM audit_chain_head");
    if (!head.empty()) {
      const long long head_seq = head[0][0].as<long long>();
      if (head_seq != result.first_chain || Bytes(head[0][1]) != prev) {
        return Fail(0, fmt::format("the chain ends at position {} but its recorded head is position {}: sealed "
                                   "events were removed from the end",
                                   result.first_chain, head_seq));
      }
    } else if (result.first_chain > 0) {
      return Fail(0, "sealed events exist but the chain head is missing");
    }
    return true;
  }

  // One of the linked chains, link by link. Links are read a page at a time, and their events a group of links
  // at a time (about kEventsPerRead events: a batch link of the engine holds thousands).
  bool LinkedChain(int chain, long long head_seq, const std::string& head_hash) {
    constexpr std::size_t kEventsPerRead = 20000;
    std::string prev = AuditGenesisHash();
    long long expected_seq = 1;
    for (;;) {
      const auto links = txn.exec_params(
          "SELECT seq, encode(hash, 'hex'), encode(leaves, 'hex'), event_ids::text "
          "FROM audit_links WHERE chain_id = $1 AND seq >= $2 ORDER BY seq LIMIT 500",
          chain, expected_seq);
      if (links.empty()) break;
      std::vector<std::vector<long long>> link_ids;
      for (const auto& link : links) link_ids.push_back(ParseIdArray(link[3].c_str()));
      for (std::size_t from = 0; from < links.size();) {
        std::size_t to = from;
        std::vector<long long> group_ids;
        while (to < links.size() && (to == from || group_ids.size() + link_ids[to].size() <= kEventsPerRead)) {
          group_ids.insert(group_ids.end(), link_ids[to].begin(), link_ids[to].end());
          ++to;
        }
        std::map<long long, AuditRecord> events;
        for (const auto& row : txn.exec_params(
                 fmt::format("SELECT {} FROM audit_events WHERE id = ANY($1::bigint[])", kSelectColumns),
                 IdArrayLiteral(group_ids))) {
          AuditRecord record = FromRow(row);
          events.emplace(record.id, std::move(record));
        }
        for (std::size_t l = from; l < to; ++l) {
          if (!Link(chain, links[static_cast<int>(l)], link_ids[l], events, expected_seq, prev)) return false;
        }
        from = to;
      }
    }
    if (head_seq != expected_seq - 1 || head_hash != prev) {
      return Fail(0, fmt::format("chain {} ends at link {} but its recorded head is link {}: links were removed "
                                 "from the end",
                                 chain, expected_seq - 1, head_seq));
    }
    return true;
  }

  bool Link(int chain, const pqxx::row& link, const std::vector<long long>& ids,
            const std::map<long long, AuditRecord>& events, long long& expected_seq, std::string& prev) {
    const long long seq = link[0].as<long long>();
    const long long first_id = ids.empty() ? 0 : ids.front();
    if (seq != expected_seq) {
      return Fail(first_id, fmt::format("chain {} link {} is missing before link {} (its events and link were "
                                        "deleted)",
                                        chain, expected_seq, seq));
    }
    const std::string leaves = Bytes(link[2]);
    if (ids.empty() || leaves.size() != 32 * ids.size()) {
      return Fail(first_id, fmt::format("chain {} link {} was altered: its event list does not match its leaves",
                                        chain, seq));
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const auto it = events.find(ids[i]);
      if (it == events.end()) {
        return Fail(ids[i], fmt::format("event {} of chain {} link {} is missing (a row was deleted)", ids[i], chain,
                                        seq));
      }
      if (AuditLeaf(it->second) != leaves.substr(32 * i, 32)) {
        return Fail(ids[i], fmt::format("event {} was altered: its content does not match its hash", ids[i]));
      }
    }
    // `prev` is the previous link's hash as recomputed here, so a mismatch is this link's own: its stored hash or
    // leaves were changed (an altered event with its leaf recomputed to match ends here).
    const std::string hash = Sha256Raw(prev + leaves);
    if (Bytes(link[1]) != hash) {
      return Fail(first_id, fmt::format("chain {} link {} was altered: its hash does not match its events", chain,
                                        seq));
    }
    prev = hash;
    ++expected_seq;
    ++result.links;
    result.verified += static_cast<long long>(ids.size());
    return true;
  }

  bool LinkedChains() {
    const auto heads = txn.exec("SELECT chain_id, seq, encode(hash, 'hex') FROM audit_chains ORDER BY chain_id");
    std::map<int, std::pair<long long, std::string>> by_chain;
    for (const auto& row : heads) by_chain[row[0].as<int>()] = {row[1].as<long long>(), Bytes(row[2])};
    for (int chain = 1; chain <= kAuditChains; ++chain) {
      const auto it = by_chain.find(chain);
      if (it == by_chain.end()) return Fail(0, fmt::format("the head row of chain {} is missing", chain));
      if (!LinkedChain(chain, it->second.first, it->second.second)) return false;
    }
    return true;
  }

  // Every event is in exactly one place: the first chain or one link.
  bool Coverage() {
    const long long total = txn.exec1("SELECT count(*) FROM audit_events")[0].as<long long>();
    if (total == result.verified) return true;
    if (total > result.verified) {
      const auto row = txn.exec(
          "SELECT e.id FROM audit_events e LEFT JOIN (SELECT unnest(event_ids) AS id FROM audit_links) l "
          "ON l.id = e.id WHERE l.id IS NULL AND e.chain_seq IS NULL ORDER BY e.id LIMIT 1");
      const long long id = row.empty() ? 0 : row[0][0].as<long long>();
      return Fail(id, fmt::format("event {} is in no chain (it was written around the trigger that links events)",
                                  id));
    }
    const auto row = txn.exec(
        "SELECT id FROM (SELECT unnest(event_ids) AS id FROM audit_links UNION ALL SELECT id FROM audit_events "
        "WHERE chain_seq IS NOT NULL) x GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 1");
    const long long id = row.empty() ? 0 : row[0][0].as<long long>();
    return Fail(id, fmt::format("event {} is in more than one link", id));
  }
};

}  // namespace

std::string AuditGenesisHash() { return std::string(32, '\0'); }

std::string AuditCanonical(const AuditRecord& r) {
  std::string canonical;
  for (const std::string& field : {std::to_string(r.id), r.request_id, r.actor, r.action, std::to_string(r.at_us),
                                   r.detail}) {
    canonical += std::to_string(field.size());
    canonical += ':';
    canonical += field;
  }
  return canonical;
}

std::string AuditLeaf(const AuditRecord& r) { return Sha256Raw(AuditCanonical(r)); }

std::string AuditHash(const std::string& prev_hash, const AuditRecord& r) {
  return Sha256Raw(prev_hash + AuditCanonical(r));
}

void AppendAudit(pqxx::work& txn, const std::string& request_id, const std::string& actor, const std::string& action,
                 const nlohmann::json& detail) {
  txn.exec_params("INSERT INTO audit_events (request_id, actor, action, detail) VALUES ($1, $2, $3, $4::jsonb)",
                  request_id.empty() ? nullptr : request_id.c_str(), actor, action,
                  detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

AuditVerifyResult VerifyAuditChain(pqxx::connection& conn) {
  pqxx::work txn(conn, "audit-verify");
  txn.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");
  Verifier v{txn, {}};
  if (v.FirstChain() && v.LinkedChains()) v.Coverage();
  txn.commit();
  return v.result;
}

}  // namespace rightsd
