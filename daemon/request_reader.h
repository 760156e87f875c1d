// Reads whole requests for the HTTP API, gathering concurrent reads into batches so that one database round trip
// serves many of them (issue 8).
//
// Why: a status read was one statement per GET, and per statement costs dominated on both sides -- PostgreSQL's
// per-statement work, and in the daemon the send/poll syscalls and a blocked thread per round trip. The same read
// for 16 ids in one statement cost PostgreSQL about a quarter per id of what 16 single reads did.
//
// How: an HTTP thread hands its id to Get and waits; `readers` threads each take everything queued (up to
// `max_batch`), read it with one Fetch call (Store::GetMany: one statement) and hand every waiter its own result
// (a BatchQueue: no timer, batches grow with the load by themselves). Each reader holds at most one database
// connection, for its batch.
//
// Errors: a Fetch that throws (database away -> ApiError(kUnavailable), statement timeout, ...) gives every waiter
// of that batch the same exception; an error that concerns one request only (a row that does not decode) stays
// with that request (ReadResult::error). Stop() answers queued waiters ApiError(kUnavailable) at once, refuses new
// ones, waits for the batches in flight to be answered and joins the readers. Thread-safe.
#pragma once
#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "batch_queue.h"
#include "store.h"

namespace rightsd {

class RequestReader {
 public:
  // One result per key, in the keys' order. May throw: every key of the batch then gets the exception.
  using Fetch = std::function<std::vector<ReadResult>(std::span<const ReadKey>)>;
  struct Options {
    // Two readers keep the database busy while one of them is decoding and answering its batch; more would only
    // cut the batches smaller on two cores (measured in docs/performance.md).
    int readers = 2;
    std::size_t max_batch = 64;
  };

  RequestReader(Fetch fetch, Options options);

  // The request, or none if there is no such request (an id that is not a UUID included). Throws what the batch's
  // Fetch threw, this request's own decoding error, or ApiError(kUnavailable) once Stop has begun.
  std::optional<RequestRecord> Get(std::string_view id, bool with_values);
  // Idempotent; may be called from any thread, but not from a Fetch.
  void Stop() { queue_.Stop(); }

  // Batches read and requests taken into them so far (the mean batch size), and requests queued now.
  struct Counts {
    long long batches = 0;
    long long requests = 0;
    std::size_t queued = 0;
  };
  Counts counts() const;

 private:
  BatchQueue<ReadKey, std::optional<RequestRecord>> queue_;
};

}  // namespace rightsd
