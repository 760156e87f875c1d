-- POST /v1/requests with a unique body each time (wrk -s intake.lua): the e-mail address carries the thread's
-- number and a counter; the types rotate over the three that need verification, so no task is created at intake
-- and every request runs the one transaction tests/bench/intake-pgbench.sql replays.
dofile(os.getenv("BENCH_ROOT") .. "/tests/bench/wrk-report.lua")
local token = os.getenv("BENCH_TOKEN")
local types = { "access", "delete", "correct" }
local counter = 0
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

function request()
  counter = counter + 1
  local kind = types[(counter % 3) + 1]
  local extra = ""
  if kind == "correct" then extra = ',"corrections":[{"field":"postal_address","value":"1 Main St"}]' end
  local body = string.format('{"type":"%s","channel":"web_form","subject":{"identities":['
    .. '{"kind":"email","value":"p%d.%d@example.org"},{"kind":"phone","value":"+1415555%04d"}]}%s}',
    kind, thread_id, counter, counter % 10000, extra)
  return wrk.format("POST", "/v1/requests",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end
