-- Loaded by the benchmarks' wrk scripts: one machine-readable line with exact figures.
--   RESULT <requests/s> <p99 ms> <non-2xx/3xx answers> <socket errors> <p50 ms> <max ms> <requests>
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %.1f %.2f %d %d %.2f %.2f %d\n", summary.requests / seconds,
    latency:percentile(99) / 1000, summary.errors.status, errors, latency:percentile(50) / 1000,
    latency.max / 1000, summary.requests))
end
