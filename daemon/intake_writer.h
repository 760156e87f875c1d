// Writes new requests for the HTTP API, gathering concurrent POSTs into one statement (issue 8).
//
// Why: a new request was one statement per POST, and most of its cost in PostgreSQL is per statement, not per row:
// the statement's planning and executor start, the audit trigger that links the statement's events into a chain,
// the SLA tally upserts, and the commit's WAL flush. Many requests in one statement share all of it.
//
// How: an HTTP thread prepares its request (seals, hashes, deadlines: Store::Prepare, no connection), hands it to
// Write and waits; `writers` threads each take everything queued (a BatchQueue: no timer, so a lone POST is written
// at once, and batches grow with the load) and write it with one Store::Insert. Only requests that need neither an
// Idempotency-Key check nor tasks come here; the others keep their own transaction (Store::Create).
//
// Errors: the statement is atomic, so a batch is written whole or not at all. When the database is away
// (ApiError kUnavailable, a lost connection) every waiter gets that error, as each alone would have. Any other
// failure is retried one request at a time, so that one request the database refuses fails alone and the others
// are written. Stop() answers queued waiters ApiError(kUnavailable) and joins the writers. Thread-safe.
#pragma once
#include <atomic>
#include <cstddef>
#include <span>
#include <vector>

#include "batch_queue.h"
#include "store.h"

namespace rightsd {

// What IntakeWriter does with one batch: all of it in one statement, or -- if the database refused the statement
// for a reason other than being away -- one request at a time. One outcome per request, in order; throws
// ApiError(kUnavailable) for the whole batch. Each written request's record is completed (and moved out).
// `retried_alone`, if given, counts the requests written one at a time.
std::vector<BatchQueue<PreparedRequest, RequestRecord>::Outcome> WriteNewRequests(
    Store& store, std::span<PreparedRequest> batch, std::atomic<long long>* retried_alone = nullptr);

class IntakeWriter {
 public:
  struct Options {
    // Two writers: one batch can be in the database (its commit waiting on the WAL flush) while the next is
    // gathered and sent.
    int writers = 2;
    std::size_t max_batch = 64;
  };

  IntakeWriter(Store& store, Options options);

  // Writes the request and returns its record as a read would show it. Throws ApiError(kUnavailable) when the
  // database is away or the server is stopping, or the error that writing this request alone gave.
  RequestRecord Write(PreparedRequest request);
  void Stop() { queue_.Stop(); }

  struct Counts {
    long long batches = 0;
    long long requests = 0;
    long long retried_alone = 0;  // requests written one by one after their batch failed
  };
  Counts counts() const;

 private:
  Store& store_;
  std::atomic<long long> retried_alone_{0};
  BatchQueue<PreparedRequest, RequestRecord> queue_;  // last: its threads use the members above
};

}  // namespace rightsd
