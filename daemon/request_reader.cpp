#include "request_reader.h"

namespace rightsd {

RequestReader::RequestReader(Fetch fetch, Options options)
    : queue_(
          [fetch = std::move(fetch)](std::span<ReadKey> keys) {
            std::vector<ReadResult> results = fetch(keys);
            if (results.size() != keys.size()) throw std::logic_error("a batched read returned a result count of its own");
            std::vector<BatchQueue<ReadKey, std::optional<RequestRecord>>::Outcome> outcomes;
            outcomes.reserve(results.size());
            for (auto& r : results) outcomes.push_back({std::move(r.record), r.error});
            return outcomes;
          },
          {options.readers, options.max_batch, "rightsd-read"}) {}

std::optional<RequestRecord> RequestReader::Get(std::string_view id, bool with_values) {
  return queue_.Submit(ReadKey{id, with_values});
}

RequestReader::Counts RequestReader::counts() const {
  const auto c = queue_.counts();
  return Counts{c.batches, c.items, c.queued};
}

}  // namespace rightsd
