-- GET /v1/requests/{id} over random seeded ids (tests/bench/seed-requests.sql numbers them 1..BENCH_SEEDED).
dofile(os.getenv("BENCH_ROOT") .. "/tests/bench/wrk-report.lua")
local token = os.getenv("BENCH_TOKEN")
local seeded = tonumber(os.getenv("BENCH_SEEDED"))
local headers = { ["Authorization"] = "Bearer " .. (token or "") }

function init(args)
  math.randomseed(os.time() + (thread_id or 0))
end

function request()
  local n = math.random(1, seeded)
  return wrk.format("GET", string.format("/v1/requests/00000000-0000-4000-8000-%012x", n), headers)
end
