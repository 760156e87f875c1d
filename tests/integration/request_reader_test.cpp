// The batched read of whole requests (Store::GetMany, RequestReader), against a real PostgreSQL: it says what the
// former one-request read said (its SQL, decoding and rendering kept here and in tests/oracle as the oracle), many
// concurrent reads each get their own request, errors reach every waiter, and stopping leaves nobody waiting. And
// the batched write of new requests (Store::Insert, IntakeWriter): each written once with the record a read shows,
// a refused batch retried request by request, the database's absence reaching every waiter.
// No assertion is about time; the waits have generous bounds only so that a bug fails instead of hanging.
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "crypto.h"
#include "errors.h"
#include "harness.h"
#include "oracle/former_render.h"
#include "audit.h"
#include "intake_writer.h"
#include "request_reader.h"
#include "request_render.h"
#include "store.h"
#include "store_fixture.h"

using namespace rightsd;
using namespace rightsd::test;
using nlohmann::json;

namespace {

struct Fixture : StoreFixture {
  Principal who{Role::kAdmin, "tester \"quoted\""};

  Fixture() : StoreFixture({.key_digit = 'b', .callbacks_enabled = true}) {}
  void Sql(const std::string& sql) const {
    auto conn = db.Connect();
    pqxx::nontransaction(*conn).exec(sql);
  }
};

Timestamp At(const std::string& rfc3339) { return *ParseRfc3339(rfc3339); }
LocalDate Day(int y, unsigned m, unsigned d) { return LocalDate{date::year{y} / date::month{m} / date::day{d}}; }

NewRequest Request(RequestType type, const std::string& email, const std::string& received_at) {
  NewRequest r;
  r.type = type;
  r.identities = {{"email", email}, {"phone", "+1 415 555 0100"}};
  r.received_at = At(received_at);
  r.canonical = email + received_at;
  return r;
}

// ---- the former read (Store::Get before GetMany): its statement and decoding, unchanged but for the JSON texts ----
std::optional<LocalDate> OptDate(const pqxx::field& f) {
  LocalDate d;
  if (f.is_null()) return std::nullopt;
  REQUIRE(ParseDate(f.c_str(), d));
  return d;
}
std::optional<Timestamp> OptTime(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return Timestamp{std::chrono::microseconds{f.as<long long>()}};
}
std::optional<std::string> OptText(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<std::string>();
}

std::optional<RequestRecord> FormerGet(Fixture& f, const std::string& id, bool with_values) {
  auto conn = f.db.Connect();
  pqxx::nontransaction txn(*conn);
  const auto result = txn.exec_params(
      "SELECT r.id::text, r.type, r.status, (extract(epoch from r.received_at) * 1000000)::bigint, "
      "r.received_on::text, r.channel, r.acknowledge_by::text, r.respond_by::text, r.extended, r.extension_reason, "
      "r.acknowledged_on::text, (extract(epoch from r.acknowledged_at) * 1000000)::bigint, (extract(epoch from "
      "r.verified_at) * 1000000)::bigint, r.verification::text, (extract(epoch from r.closed_at) * 1000000)::bigint, "
      "r.closed_on::text, r.denial_reason, r.denial_detail, r.sla_state, r.created_by, (extract(epoch from "
      "r.updated_at) * 1000000)::bigint, encode(r.agent_sealed, 'hex'), encode(r.corrections_sealed, 'hex'), "
      "r.callback_url, (extract(epoch from r.purged_at) * 1000000)::bigint, "
      "(SELECT coalesce(json_agg(json_build_array(i.ordinal, i.kind, encode(i.value_sealed, 'hex')) "
      "ORDER BY i.ordinal), '[]') FROM request_identities i WHERE i.request_id = r.id), "
      "(SELECT coalesce(json_agg(json_build_array(a.id, (extract(epoch from a.at) * 1000000)::bigint, "
      "a.actor, a.action, a.detail) ORDER BY a.id), '[]') FROM audit_events a WHERE a.request_id = r.id), "
      "(SELECT coalesce(json_agg(json_build_array(t.id, t.system, t.action, t.state, t.attempts, "
      "CASE WHEN t.state IN ('pending', 'running') THEN (extract(epoch from CASE WHEN t.state = "
      "'pending' THEN t.next_attempt_at ELSE t.lease_expires_at END) * 1000000)::bigint END, "
      "t.last_error, t.receipt, (extract(epoch from t.finished_at) * 1000000)::bigint) "
      "ORDER BY t.system), '[]') FROM tasks t WHERE t.request_id = r.id) "
      "FROM requests r WHERE r.id = $1::uuid",
      id);
  if (result.empty()) return std::nullopt;
  const pqxx::row row = result[0];
  RequestRecord r;
  r.id = row[0].as<std::string>();
  r.type = *ParseRequestType(row[1].c_str());
  r.status = *ParseRequestStatus(row[2].c_str());
  r.received_at = *OptTime(row[3]);
  r.received_on = *OptDate(row[4]);
  r.channel = row[5].as<std::string>();
  r.deadlines.acknowledge_by = OptDate(row[6]);
  r.deadlines.respond_by = *OptDate(row[7]);
  r.extended = row[8].as<bool>();
  r.extension_reason = OptText(row[9]);
  r.acknowledged_on = OptDate(row[10]);
  r.acknowledged_at = OptTime(row[11]);
  r.verified_at = OptTime(row[12]);
  r.verification = row[13].is_null() ? json() : json::parse(row[13].c_str());
  r.closed_at = OptTime(row[14]);
  r.closed_on = OptDate(row[15]);
  if (!row[16].is_null()) r.denial_reason = *ParseDenialReason(row[16].c_str());
  r.denial_detail = OptText(row[17]);
  r.stored_sla_state = *ParseSlaState(row[18].c_str());
  r.created_by = row[19].as<std::string>();
  r.updated_at = *OptTime(row[20]);
  r.callback_url = OptText(row[23]);
  r.purged_at = OptTime(row[24]);
  for (const auto& item : json::parse(row[25].c_str())) {
    IdentityView view{item[1].get<std::string>(), std::nullopt};
    if (with_values) {
      view.value = f.cipher.Open(*FromHex(item[2].get<std::string>()),
                                 fmt::format("{}:identity:{}:{}", r.id, item[0].get<int>(), view.kind));
    }
    r.identities.push_back(view);
  }
  for (const auto& item : json::parse(row[26].c_str())) {
    r.history.push_back(HistoryEntry{item[0].get<long long>(),
                                     Timestamp{std::chrono::microseconds{item[1].get<long long>()}},
                                     item[2].get<std::string>(), item[3].get<std::string>(), JsonText{item[4].dump()}});
  }
  for (const auto& item : json::parse(row[27].c_str())) {
    TaskView t;
    t.id = item[0].get<std::string>();
    t.system = item[1].get<std::string>();
    t.action = item[2].get<std::string>();
    t.state = item[3].get<std::string>();
    t.attempts = item[4].get<int>();
    if (!item[5].is_null()) t.next_attempt_at = Timestamp{std::chrono::microseconds{item[5].get<long long>()}};
    if (!item[6].is_null()) t.last_error = item[6].get<std::string>();
    if (!item[7].is_null()) t.receipt.text = item[7].dump();
    if (!item[8].is_null()) t.finished_at = Timestamp{std::chrono::microseconds{item[8].get<long long>()}};
    r.tasks.push_back(t);
  }
  if (with_values) {
    if (!row[21].is_null()) {
      r.authorized_agent = json::parse(*f.cipher.Open(*FromHex(row[21].c_str()), r.id + ":agent"));
    }
    if (!row[22].is_null()) {
      for (const auto& c : json::parse(*f.cipher.Open(*FromHex(row[22].c_str()), r.id + ":corrections"))) {
        r.corrections.push_back(CorrectionInput{c["field"].get<std::string>(), c["value"].get<std::string>()});
      }
    }
  }
  return r;
}
// ---- end of the former read ----

// Requests in every shape the answer has: open, acknowledged, verified with tasks in every state (receipts with
// nested, non-ASCII and control characters; systems whose order differs between byte order and a natural-language
// collation), extended, denied, cancelled, with an authorized agent and corrections, and awkward text everywhere.
std::vector<std::string> SeedVaried(Fixture& f) {
  std::vector<std::string> ids;
  const std::string odd = "tab\there, quote \" backslash \\ caf\xc3\xa9 \xf0\x9f\x98\x80 \x01 end";
  auto create = [&](NewRequest r) {
    ids.push_back(f.store->Create(r, f.who, std::nullopt, At("2026-11-03T17:00:00Z")).id);
    return ids.back();
  };
  auto apply = [&](const std::string& id, RequestEvent event, json detail = json::object()) {
    ActionInput a;
    a.event = event;
    a.detail = std::move(detail);
    if (event == RequestEvent::kVerify) a.verify = VerifyInput{"email_link", "reasonable"};
    if (event == RequestEvent::kExtend) a.extend = ExtendInput{odd};
    if (event == RequestEvent::kDeny) a.deny = DenyInput{DenialReason::kExempt, odd};
    f.store->Apply(id, a, f.who, At("2026-11-05T18:30:00.250001Z"));
  };

  create(Request(RequestType::kDelete, "plain@example.com", "2026-11-02T17:00:00Z"));
  const std::string acked = create(Request(RequestType::kAccess, "acked@example.com", "2026-11-02T17:00:00.5Z"));
  apply(acked, RequestEvent::kAcknowledge, {{"note", odd}, {"n", 1.5}, {"list", {1, "two", nullptr}}});

  NewRequest corr = Request(RequestType::kCorrect, "corr\xc3\xa9@example.com", "2026-11-02T18:00:00Z");
  corr.authorized_agent = json{{"name", odd}, {"firm", "Law & Co"}, {"licence", 12345}};
  corr.corrections = {{"address", "1 Main St\nApt 2"}, {"name", odd}};
  corr.channel = "mail \"room\"";
  const std::string worked = create(corr);
  apply(worked, RequestEvent::kAcknowledge);
  apply(worked, RequestEvent::kVerify);
  f.Sql(fmt::format(
      "INSERT INTO tasks (id, request_id, system, connector, action, state, respond_by, attempts, max_attempts, "
      "next_attempt_at, lease_owner, lease_expires_at, last_error, receipt, finished_at) VALUES "
      "(gen_random_uuid(), '{0}', 'crm', 'noop', 'correct', 'pending', '2026-12-17', 1, 5, "
      "'2026-11-06T00:00:00.123Z', NULL, NULL, '503 \"busy\"\n retry', NULL, NULL), "
      "(gen_random_uuid(), '{0}', 'a-b', 'noop', 'correct', 'running', '2026-12-17', 0, 5, now(), 'me', "
      "'2026-11-06T01:00:00Z', NULL, NULL, NULL), "
      "(gen_random_uuid(), '{0}', 'ab', 'noop', 'correct', 'done', '2026-12-17', 2, 5, now(), NULL, NULL, NULL, "
      "'{{\"records\": [{{\"id\": 1, \"kind\": \"contact\"}}, {{\"x\": 2.50, \"y\": null}}], \"ok\": true, "
      "\"note\": \"caf\\u00e9 \\u0001 \\\"q\\\"\"}}', '2026-11-07T00:00:00Z'), "
      "(gen_random_uuid(), '{0}', 'a_c', 'noop', 'correct', 'failed', '2026-12-17', 5, 5, now(), NULL, NULL, "
      "'gave up: \\ \"x\" \xe2\x82\xac', '{{}}', '2026-11-08T00:00:00.000001Z'), "
      "(gen_random_uuid(), '{0}', 'Zed', 'noop', 'correct', 'needs_manual', '2026-12-17', 1, 5, now(), NULL, NULL, "
      "NULL, '[]', NULL)",
      worked));
  const std::string extended = create(Request(RequestType::kDelete, "ext@example.com", "2026-11-02T19:00:00Z"));
  apply(extended, RequestEvent::kExtend, {{"reason", odd}});
  const std::string denied = create(Request(RequestType::kAccess, "denied@example.com", "2026-11-02T20:00:00Z"));
  apply(denied, RequestEvent::kDeny, {{"reason", "exempt"}, {"detail", odd}});
  const std::string cancelled = create(Request(RequestType::kDelete, "gone@example.com", "2026-11-02T21:00:00Z"));
  apply(cancelled, RequestEvent::kCancel, {{"reason", odd}});
  NewRequest opt_out = Request(RequestType::kOptOut, "optout@example.com", "2026-11-01T08:00:00Z");
  opt_out.identities.push_back({"email", odd + "@example.com"});
  create(opt_out);
  return ids;
}

}  // namespace

TEST_CASE("api: a batched read answers what the former one-request read answered, for every shape of request",
          "[api][integration]") {
  Fixture f;
  const auto ids = SeedVaried(f);
  // Every id twice (with and without values), an id in capitals, a missing id and one that is not a UUID.
  std::vector<std::string> asked;
  std::vector<ReadKey> keys;
  for (const auto& id : ids) asked.push_back(id);
  std::string upper = ids[2];
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  asked.push_back(upper);
  asked.push_back("00000000-0000-4000-8000-00000000dead");
  asked.push_back("not-a-uuid");
  for (const auto& id : asked) keys.push_back({id, false});
  for (const auto& id : asked) keys.push_back({id, true});
  const auto results = f.store->GetMany(keys);
  REQUIRE(results.size() == keys.size());
  const LocalDate today = Day(2026, 11, 20);
  for (std::size_t k = 0; k < keys.size(); ++k) {
    INFO("key " << k << ": " << keys[k].id << " values " << keys[k].with_values);
    REQUIRE_FALSE(results[k].error);
    std::string lower(keys[k].id);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const auto former = IsUuid(lower) ? FormerGet(f, lower, keys[k].with_values) : std::nullopt;
    REQUIRE(results[k].record.has_value() == former.has_value());
    if (!former) continue;
    const std::string fresh = RenderRequestJson(*results[k].record, today, 10, true, keys[k].with_values);
    CHECK(json::parse(fresh) == oracle::OldRenderRequest(*former, today, 10, true, keys[k].with_values));
    // Batched or alone, the same record.
    const auto alone = f.store->Get(std::string(keys[k].id), keys[k].with_values);
    REQUIRE(alone);
    CHECK(RenderRequestJson(*alone, today, 10, true, keys[k].with_values) == fresh);
  }
  // The tasks in the order of the database's collation, as before: compared with the oracle above; and present.
  const auto worked = f.store->Get(ids[2], true);
  REQUIRE(worked);
  CHECK(worked->tasks.size() == 5);
  CHECK(worked->corrections.size() == 2);
  CHECK(worked->authorized_agent.has_value());
  CHECK(worked->identities.at(0).value == "corr\xc3\xa9@example.com");
}

TEST_CASE("api: the batched read looks every table up by its index, even in a database that is still empty",
          "[api][integration]") {
  // The plan PostgreSQL makes once and keeps (the generic plan) must not scan a table: made while the tables are
  // empty or small, as at intake's start, a scan would be kept as they grow. (A first version, = ANY(ids) over
  // whole tables, did exactly that: intake fell by a third.)
  TestDatabase db;
  db.Migrate();
  auto conn = db.Connect();
  pqxx::nontransaction txn(*conn);
  txn.exec("SET plan_cache_mode = force_generic_plan");
  txn.exec("PREPARE get_requests(text, boolean) AS " + Store::GetManyStatement());
  std::string plan;
  for (const auto& row : txn.exec("EXPLAIN EXECUTE get_requests('{00000000-0000-4000-8000-000000000001}', true)")) {
    plan += row[0].as<std::string>() + "\n";
  }
  INFO(plan);
  for (const char* table : {"requests", "request_identities", "audit_events", "tasks"}) {
    CHECK(plan.find(std::string("Seq Scan on ") + table) == std::string::npos);
  }
  CHECK(plan.find("Index Scan using requests_pkey") != std::string::npos);
}

TEST_CASE("bench: the intake reference replays the statement the daemon sends for one request",
          "[bench][integration]") {
  // tests/bench/intake-pgbench.sql holds Store::Insert's statement for one request with its parameters written in as
  // pgbench expressions; the intake benchmark compares the daemon with pgbench running it. (There is no read-back:
  // the 201 answer is built from what was written.)
  std::ifstream in(SourceDir() + "/tests/bench/intake-pgbench.sql");
  REQUIRE(in);
  const std::string id = "md5(:a::text || ':' || :client_id::text)::uuid";
  const std::vector<std::pair<int, std::string>> params = {
      {1, "ARRAY[" + id + "]"},
      {2, "ARRAY['access']"},
      {3, "ARRAY['received']"},
      {4, "ARRAY[now()]"},
      {5, "ARRAY[current_date]"},
      {6, "ARRAY['web_form']"},
      {7, "ARRAY[NULL::text]"},
      {8, "ARRAY[NULL::text]"},
      {9, "ARRAY[current_date + 14]"},
      {10, "ARRAY[current_date + 45]"},
      {11, "ARRAY['on_track']"},
      {12, "ARRAY['bench-submitter']"},
      {13, "ARRAY[NULL::text]"},
      {14, R"(ARRAY['{"type":"access","status":"received","channel":"web_form","identity_kinds":["email","phone"],)"
           R"("received_at":"2026-11-23T18:00:00Z","respond_by":"2027-01-07","acknowledge_by":"2026-12-08",)"
           R"("authorized_agent": false}'])"},
      {15, "ARRAY[" + id + ", " + id + "]"},
      {16, "ARRAY[0, 1]"},
      {17, "ARRAY['email', 'phone']"},
      {18, "ARRAY[md5(:a::text || 'e') || md5(:a::text || 'f'), md5(:a::text || 'p') || md5(:a::text || 'q')]"},
      {19, "ARRAY[md5(:a::text || 'g') || md5(:a::text || 'h') || md5(:a::text || 'i') || md5(:a::text || 'j') || "
           "md5(:a::text || 'k'), md5(:a::text || 'r') || md5(:a::text || 's') || md5(:a::text || 't') || "
           "md5(:a::text || 'u')]"},
  };
  std::string expected = Store::InsertStatement();
  // From $19 down, so that $1 is not taken for the start of $14.
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    const std::string name = "$" + std::to_string(it->first);
    for (auto at = expected.find(name); at != std::string::npos; at = expected.find(name, at + it->second.size())) {
      expected.replace(at, name.size(), it->second);
    }
  }
  std::string line;
  bool found = false;
  while (std::getline(in, line)) found = found || line == expected + ";";
  INFO(expected);
  CHECK(found);
}

TEST_CASE("api: many concurrent reads through the batching reader each get their own request and values",
          "[api][integration]") {
  Fixture f;
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    NewRequest r = Request(RequestType::kDelete, fmt::format("person{}@example.com", i), "2026-11-02T17:00:00Z");
    if (i % 3 == 0) r.authorized_agent = json{{"agent_for", i}};
    ids.push_back(f.store->Create(r, f.who, std::nullopt, At("2026-11-03T17:00:00Z")).id);
  }
  RequestReader reader([&f](std::span<const ReadKey> keys) { return f.store->GetMany(keys); },
                       RequestReader::Options{2, 16});
  constexpr int kThreads = 24;
  constexpr int kReads = 60;
  std::atomic<int> wrong{0}, found{0}, missing{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(1000 + t));
      for (int n = 0; n < kReads; ++n) {
        const int pick = static_cast<int>(rng() % 50);  // 40..49: no such request
        const bool values = rng() % 2 == 0;
        const std::string id = pick < 40 ? ids[pick] : fmt::format("00000000-0000-4000-8000-{:012x}", 0xdead00 + pick);
        const auto record = reader.Get(id, values);
        if (pick >= 40) {
          (record ? wrong : missing)++;
          continue;
        }
        const bool right = record && record->id == id && record->identities.size() == 2 &&
                           record->identities[0].value ==
                               (values ? std::optional<std::string>(fmt::format("person{}@example.com", pick))
                                       : std::nullopt) &&
                           record->authorized_agent.has_value() == (values && pick % 3 == 0) &&
                           (!record->authorized_agent || (*record->authorized_agent)["agent_for"] == pick) &&
                           !record->history.empty();
        (right ? found : wrong)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  CHECK(found + missing == kThreads * kReads);
  const auto counts = reader.counts();
  CHECK(counts.requests == kThreads * kReads);
  CHECK(counts.batches >= 1);
  CHECK(counts.batches <= counts.requests);
  CHECK(counts.queued == 0);
}

namespace {

// A Fetch whose first call waits until the test opens the gate: the test can queue waiters behind it, then let go.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int calls = 0;
  void Wait() {
    std::unique_lock lock(mu);
    if (calls++ == 0) cv.wait(lock, [this] { return open; });
  }
  void Open() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
};

ReadResult Found(std::string_view id) {
  RequestRecord r;
  r.id = std::string(id);
  return ReadResult{r, nullptr};
}

// Waits (bounded, so that a bug fails instead of hanging) until `n` requests are queued behind the busy reader.
void UntilQueued(const RequestReader& reader, std::size_t n) {
  REQUIRE(Eventually([&] { return reader.counts().queued == n; }, 30));
}

}  // namespace

TEST_CASE("api: a batch whose read fails gives every one of its waiters the error, the next batch reads again",
          "[api][integration]") {
  Gate gate;
  std::atomic<int> call{0};
  RequestReader reader(
      [&](std::span<const ReadKey> keys) {
        gate.Wait();
        if (++call == 2) throw ApiError(ErrorCode::kUnavailable, "the database is unreachable");
        std::vector<ReadResult> out;
        for (const auto& k : keys) {
          // One request's own decoding error stays with that request.
          if (k.id == "bad") {
            out.push_back(ReadResult{std::nullopt, std::make_exception_ptr(std::runtime_error("bad row"))});
          } else {
            out.push_back(Found(k.id));
          }
        }
        return out;
      },
      RequestReader::Options{1, 64});
  auto first = std::async(std::launch::async, [&] { return reader.Get("first", false); });
  REQUIRE(Eventually([&] { return reader.counts().batches == 1; }, 30));  // the reader holds "first" at the gate
  constexpr int kWaiters = 12;
  std::vector<std::future<std::optional<RequestRecord>>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(std::async(std::launch::async, [&reader, i] { return reader.Get(fmt::format("w{}", i), false); }));
  }
  UntilQueued(reader, kWaiters);
  gate.Open();
  CHECK(first.get()->id == "first");
  for (auto& w : waiters) {
    REQUIRE(w.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    try {
      w.get();
      FAIL("a waiter of the failed batch got a record");
    } catch (const ApiError& e) {
      CHECK(e.code() == ErrorCode::kUnavailable);
    }
  }
  CHECK(reader.counts().batches == 2);  // all twelve left in one batch
  // The next batch reads again; a request whose own row fails gets its error, the others their records.
  auto good = std::async(std::launch::async, [&] { return reader.Get("good", false); });
  auto bad = std::async(std::launch::async, [&] { return reader.Get("bad", false); });
  CHECK(good.get()->id == "good");
  CHECK_THROWS_WITH(bad.get(), "bad row");
}

TEST_CASE("api: stopping the batching reader answers its queued waiters at once and does not hang",
          "[api][integration]") {
  Gate gate;
  RequestReader reader(
      [&](std::span<const ReadKey> keys) {
        gate.Wait();
        std::vector<ReadResult> out;
        for (const auto& k : keys) out.push_back(Found(k.id));
        return out;
      },
      RequestReader::Options{1, 64});
  auto in_flight = std::async(std::launch::async, [&] { return reader.Get("in-flight", true); });
  REQUIRE(Eventually([&] { return reader.counts().batches == 1; }, 30));
  constexpr int kWaiters = 10;
  std::vector<std::future<std::optional<RequestRecord>>> queued;
  for (int i = 0; i < kWaiters; ++i) {
    queued.push_back(std::async(std::launch::async, [&reader, i] { return reader.Get(fmt::format("q{}", i), false); }));
  }
  UntilQueued(reader, kWaiters);
  auto stopped = std::async(std::launch::async, [&] { reader.Stop(); });
  // The queued ones are answered while the batch in flight still holds the reader.
  for (auto& q : queued) {
    REQUIRE(q.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    CHECK_THROWS_AS(q.get(), ApiError);
  }
  CHECK_THROWS_AS(reader.Get("late", false), ApiError);
  gate.Open();
  REQUIRE(stopped.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(in_flight.get()->id == "in-flight");
  reader.Stop();  // again: nothing left to do
}

TEST_CASE("api: concurrent GETs over HTTP each get their own request, values only for an admin, 404 for a missing id",
          "[api][integration]") {
  DaemonEnv env;
  Daemon d(env);
  REQUIRE(d.WaitReady());
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    const auto created = d.Call("POST", "/v1/requests", env.token("submitter"),
                                fmt::format(R"({{"type":"delete","subject":{{"identities":[{{"kind":"email",)"
                                            R"("value":"concurrent{}@example.com"}}]}}}})",
                                            i));
    REQUIRE(created.status == 201);
    ids.push_back(created.json()["id"].get<std::string>());
  }
  std::mutex mu;
  std::vector<std::string> wrong;  // Catch2 may only be called from the test's own thread
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 20; ++n) {
        const int pick = (t * 7 + n * 5) % 15;  // 12..14: no such request
        const bool admin = (t + n) % 2 == 0;
        const bool omit = admin && n % 5 == 0;  // an admin asking not to see values
        const std::string id =
            pick < 12 ? ids[pick] : fmt::format("00000000-0000-4000-8000-{:012x}", 0xbeef00 + pick);
        const auto r = d.Call("GET", "/v1/requests/" + id + (omit ? "?identity_values=omit" : ""),
                              env.token(admin ? "admin" : "viewer"));
        bool right = false;
        if (pick >= 12) {
          right = r.status == 404;
        } else if (r.status == 200) {
          const json body = r.json();
          const json& identity = body["identities"][0];
          right = body["id"] == id && identity["kind"] == "email" &&
                  (admin && !omit ? identity.value("value", "") == fmt::format("concurrent{}@example.com", pick)
                                  : !identity.contains("value") && !body.contains("authorized_agent") &&
                                        !body.contains("corrections"));
        }
        if (!right) {
          std::lock_guard lock(mu);
          wrong.push_back(fmt::format("GET {} admin {} omit {}: {} {}", id, admin, omit, r.status, r.body));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& w : wrong) UNSCOPED_INFO(w);
  CHECK(wrong.empty());
  CHECK(d.Stop() == 0);
}

// ---- the batched write of new requests (Store::Insert, IntakeWriter) ----

TEST_CASE("api: concurrent new requests through the intake writer are written once each, with the record a read "
          "shows",
          "[api][integration]") {
  Fixture f;
  IntakeWriter writer(*f.store, IntakeWriter::Options{2, 16});
  constexpr int kThreads = 24;
  std::vector<std::optional<RequestRecord>> written(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      NewRequest r = Request(i % 2 ? RequestType::kAccess : RequestType::kDelete, fmt::format("w{}@example.com", i),
                             "2026-11-02T17:00:00Z");
      if (i % 5 == 0) r.authorized_agent = json{{"name", fmt::format("agent {}", i)}};
      written[static_cast<std::size_t>(i)] = writer.Write(f.store->Prepare(r, f.who, At("2026-11-03T17:00:00Z")));
    });
  }
  for (auto& t : threads) t.join();
  CHECK(f.db.Scalar("SELECT count(*) FROM requests") == std::to_string(kThreads));
  CHECK(f.db.Scalar("SELECT count(*) FROM request_identities") == std::to_string(2 * kThreads));
  CHECK(f.db.Scalar("SELECT count(*) FROM audit_events WHERE action = 'created'") == std::to_string(kThreads));
  // Each statement's events are one link: fewer links than requests when batches formed, never more.
  CHECK(std::stoi(f.db.Scalar("SELECT count(*) FROM audit_links")) <= kThreads);
  const auto counts = writer.counts();
  CHECK(counts.requests == kThreads);
  CHECK(counts.batches >= 1);
  CHECK(counts.batches <= kThreads);
  CHECK(counts.retried_alone == 0);
  for (const auto& record : written) {
    REQUIRE(record);
    const auto read = f.store->Get(record->id, true);
    REQUIRE(read);
    // The answer a POST gives is the one a read gives, to the byte but for jsonb's own spelling of the detail.
    const LocalDate today = Day(2026, 11, 3);
    CHECK(json::parse(RenderRequestJson(*record, today, 10, true, true)) ==
          json::parse(RenderRequestJson(*read, today, 10, true, true)));
  }
  auto conn = f.db.Connect();
  CHECK(VerifyAuditChain(*conn).ok);
}

TEST_CASE("api: a batch of new requests the database refuses is written one at a time, so only the refused one fails",
          "[api][integration]") {
  Fixture f;
  std::vector<PreparedRequest> batch;
  for (int i = 0; i < 6; ++i) {
    batch.push_back(f.store->Prepare(Request(RequestType::kDelete, fmt::format("b{}@example.com", i),
                                             "2026-11-02T17:00:00Z"),
                                     f.who, At("2026-11-03T17:00:00Z")));
  }
  // The fourth has the third's id: the statement for all six fails on the primary key.
  batch[3].record.id = batch[2].record.id;
  std::atomic<long long> retried{0};
  const auto outcomes = WriteNewRequests(*f.store, batch, &retried);
  REQUIRE(outcomes.size() == 6);
  CHECK(retried == 6);
  for (int i = 0; i < 6; ++i) {
    INFO(i);
    if (i == 3) {
      CHECK(outcomes[3].error);
    } else {
      CHECK_FALSE(outcomes[static_cast<std::size_t>(i)].error);
      CHECK(outcomes[static_cast<std::size_t>(i)].value.history.front().id > 0);
    }
  }
  CHECK(f.db.Scalar("SELECT count(*) FROM requests") == "5");
  CHECK(f.db.Scalar("SELECT count(*) FROM audit_events") == "5");
  auto conn = f.db.Connect();
  CHECK(VerifyAuditChain(*conn).ok);
}

TEST_CASE("api: while the database is away every new request of a batch gets 503", "[api][integration]") {
  Fixture f;
  // A pool whose server does not exist: every connection attempt fails.
  DbPool away(DbPool::Options{"host=127.0.0.1 port=9 dbname=none user=none connect_timeout=1", 2,
                              std::chrono::milliseconds(300), 5000, "test"},
              nullptr);
  Store store(away, f.calendar, f.cipher, 10, nullptr, true);
  IntakeWriter writer(store, IntakeWriter::Options{1, 16});
  std::vector<std::thread> threads;
  std::atomic<int> unavailable{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      try {
        writer.Write(store.Prepare(Request(RequestType::kAccess, fmt::format("a{}@example.com", i),
                                           "2026-11-02T17:00:00Z"),
                                   f.who, At("2026-11-03T17:00:00Z")));
      } catch (const ApiError& e) {
        if (e.code() == ErrorCode::kUnavailable) ++unavailable;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(unavailable == 8);
  CHECK(writer.counts().retried_alone == 0);
}
