#include "intake_writer.h"

#include "errors.h"
#include "log.h"

namespace rightsd {

IntakeWriter::IntakeWriter(Store& store, Options options)
    : store_(store),
      queue_([this](std::span<PreparedRequest> batch) { return WriteNewRequests(store_, batch, &retried_alone_); },
             {options.writers, options.max_batch, "rightsd-intake"}) {}

RequestRecord IntakeWriter::Write(PreparedRequest request) { return queue_.Submit(std::move(request)); }

std::vector<BatchQueue<PreparedRequest, RequestRecord>::Outcome> WriteNewRequests(
    Store& store, std::span<PreparedRequest> batch, std::atomic<long long>* retried_alone) {
  std::vector<BatchQueue<PreparedRequest, RequestRecord>::Outcome> outcomes(batch.size());
  std::vector<PreparedRequest*> all;
  for (auto& request : batch) all.push_back(&request);
  try {
    store.Insert(all);
    for (std::size_t i = 0; i < batch.size(); ++i) outcomes[i].value = std::move(batch[i].record);
    return outcomes;
  } catch (const ApiError&) {
    throw;  // the database is away (or timed out): every request of the batch would have met the same
  } catch (const std::exception& e) {
    if (batch.size() == 1) throw;
    // Nothing of the batch was written (one statement). Find the request the database refuses by writing each
    // alone: the others should not fail with it.
    LogWarning("intake: a batch of {} new requests was refused ({}); writing them one at a time", batch.size(),
               e.what());
  }
  if (retried_alone) *retried_alone += static_cast<long long>(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    try {
      store.Insert({&batch[i]});
      outcomes[i].value = std::move(batch[i].record);
    } catch (...) {
      outcomes[i].error = std::current_exception();
    }
  }
  return outcomes;
}

IntakeWriter::Counts IntakeWriter::counts() const {
  const auto c = queue_.counts();
  return Counts{c.batches, c.items, retried_alone_.load()};
}

}  // namespace rightsd
