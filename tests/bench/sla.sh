# Benchmark 3: the SLA dashboards and the SLA sweep over the same requests.
#   - GET /v1/sla/summary polled by 50 connections (wrk -t2 -c50 --latency) over :open open and :closed closed
#     requests; the reference is one run of the pre-0004 full-scan GROUP BY on the same rows.
#   - `rightsd sweep` for today: steady state (requests received over the last 45 days, last swept yesterday: the
#     ones whose deadlines move them today change), the same with no closed requests (its cost must not grow with
#     them), a second sweep the same day (nothing changes), and stale states (every open request stored as on_track,
#     as after restoring an old backup: every one whose deadlines say otherwise changes).
# Rows are seeded with SQL (tests/bench/sla-seed.sql), not through the API.
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

rows=1000000
seconds=20
if ((BENCH_QUICK == 1)); then
    rows=20000
    seconds=2
fi
db=bench_sla
dir="$BENCH_WORK/daemon"
port="$BENCH_PORT"
today="$(TZ=America/Los_Angeles date +%F)"

bench::createdb "$db" >/dev/null
bench::daemon_dir "$dir" "$db" "$port"
cat >>"$dir/rightsd.toml" <<EOF

[[systems]]
name = "crm"
connector = "noop"
categories = ["identifiers"]
[[systems]]
name = "ehr"
connector = "noop"
categories = ["identifiers"]
EOF
# No dispatcher: the tasks are there to be counted, not run.
sed -i 's/^\[database\]/[engine]\nenabled = false\n\n[database]/' "$dir/rightsd.toml"

seed() { # OPEN CLOSED FROM
    bench::psql "$db" -v open="$1" -v closed="$2" -v from="$3" -v today="$today" \
        -f "$BENCH_ROOT/tests/bench/sla-seed.sql"
    bench::psql "$db" -c "VACUUM ANALYZE requests" -c "VACUUM ANALYZE tasks"
}
# One `rightsd sweep`; prints "seconds changed".
sweep() {
    local out
    out="$("$BENCH_RIGHTSD" sweep --config "$dir/rightsd.toml" --date "$today" 2>>"$dir/sweep.log")"
    printf '%s\n' "$out" >>"$dir/sweep.log"
    sed -n 's/^sla sweep for .*: \([0-9]*\) requests changed state in \([0-9.]*\) s$/\2 \1/p' <<<"$out"
}
# Back to the state left by yesterday's sweep (only the rows a sweep moved are rewritten).
reset_sla() {
    bench::psql "$db" -c "UPDATE requests r SET sla_state = b.sla_state
        FROM bench_sla_baseline b WHERE r.id = b.id AND r.sla_state <> b.sla_state" \
        -c "VACUUM ANALYZE requests"
}

bench::log "seeding $rows open requests"
seed "$rows" 0 1
bench::psql "$db" -c "CREATE TABLE bench_sla_baseline AS SELECT id, sla_state FROM requests"
# The requests whose state the legal clock changes today (daemon/sla.cpp), at_risk_days 10.
due="$(bench::psql "$db" -tAc "SELECT count(*) FROM requests WHERE closed_at IS NULL AND (
    (sla_state = 'on_track' AND respond_by <= '$today'::date + 10) OR (sla_state = 'at_risk' AND respond_by < '$today')
    OR (sla_state <> 'breached' AND acknowledged_on IS NULL AND acknowledge_by < '$today'))")"

read -r s_open changed_open <<<"$(sweep)"
reset_sla
bench::log "seeding $rows closed requests"
seed 0 "$rows" $((rows + 1))
read -r s_closed changed_closed <<<"$(sweep)"
bench::result sla "sweep, steady state, $rows open + $rows closed" "$s_closed" s "$s_open s with 0 closed" "≤ 2" \
    "$(bench::verdict "$s_closed" '<=' 2)" "$due due today, $changed_closed changed state (one audit event each)"
growth="$(bench::ratio "$s_closed" "$s_open")"
bench::result sla "sweep time with closed / without" "$growth" × "-" "≈ 1" info \
    "cost must not grow with closed requests: the sweep walks a partial index of open ones"

# Nothing changes: the same day's second sweep. It reads no row that keeps its state.
read -r s_again changed_again <<<"$(sweep)"
bench::result sla "sweep, nothing changes (second sweep the same day), $rows open" "$s_again" s "-" "≤ 2" \
    "$(bench::verdict "$s_again" '<=' 2)" "$changed_again changed state; the due set comes from the deadlines"

# Stale states: every open request stored as on_track (a backup restored from before any of them was at risk, or a
# daemon away for weeks). Every request whose deadlines say otherwise changes, each with its row update and event.
bench::psql "$db" -c "UPDATE requests SET sla_state = 'on_track' WHERE closed_at IS NULL AND sla_state <> 'on_track'" \
    -c "VACUUM ANALYZE requests"
read -r s_stale changed_stale <<<"$(sweep)"
per_change="$(awk -v s="$s_stale" -v n="$changed_stale" 'BEGIN { if (n > 0) printf "%.1f", s * 1e6 / n; else print "-" }')"
bench::result sla "sweep, stale states: all $rows open stored on_track" "$s_stale" s "-" "≤ 2" \
    "$(bench::verdict "$s_stale" '<=' 2)" \
    "$changed_stale changed state ($per_change µs each: the row update and its audit event); the rest not read"

# What one refresh of the summary costs in the database, against the pre-0004 full scan of the same rows.
time_sql() { # SQL... -> milliseconds of the slowest of three runs of them all
    local i best=""
    for i in 1 2 3; do
        local ms
        ms="$( { printf '\\timing on\n'; printf '%s;\n' "$@"; } | bench::psql "$db" -o /dev/null 2>&1 |
            sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | awk '{ s += $1 } END { printf "%.2f", s }')"
        best="$(awk -v a="$best" -v b="$ms" 'BEGIN { if (a == "" || b > a) print b; else print a }')"
    done
    echo "$best"
}
new_ms="$(time_sql \
    "SELECT status, type, sla_state, sum(n) FROM sla_request_tallies GROUP BY 1, 2, 3 HAVING sum(n) <> 0" \
    "SELECT system, sla_state, sum(tasks), sum(unfinished) FROM sla_system_tallies GROUP BY 1, 2 HAVING sum(tasks) <> 0 OR sum(unfinished) <> 0" \
    "SELECT respond_by::text, sum(n) FROM sla_due_tallies GROUP BY respond_by HAVING sum(n) <> 0 ORDER BY respond_by LIMIT 10" \
    "SELECT min(acknowledge_by)::text FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL AND acknowledge_by IS NOT NULL")"
old_ms="$(time_sql \
    "SELECT status, type, sla_state, closed_at IS NULL, count(*) FROM requests GROUP BY 1, 2, 3, 4" \
    "SELECT t.system, r.sla_state, count(DISTINCT r.id), count(*) FILTER (WHERE t.state IN ('pending', 'running', 'failed', 'needs_manual')) FROM tasks t JOIN requests r ON r.id = t.request_id WHERE r.closed_at IS NULL GROUP BY 1, 2" \
    "SELECT respond_by::text, count(*) FROM requests WHERE closed_at IS NULL GROUP BY respond_by ORDER BY respond_by LIMIT 10" \
    "SELECT min(acknowledge_by)::text FROM requests WHERE closed_at IS NULL AND acknowledged_on IS NULL AND acknowledge_by IS NOT NULL")"
bench::result sla "summary refresh, database time" "$new_ms" ms "$old_ms ms (pre-0004 full scan)" "-" info \
    "slowest of 3; the daemon refreshes at most once a second, in the background"

# The dashboards.
bench::start_daemon "$dir"
token="$(cat "$dir/viewer.token")"
url="http://127.0.0.1:$port/v1/sla/summary"
curl -fsS -H "Authorization: Bearer $token" "$url" >"$BENCH_WORK/summary.json"
wrk -t2 -c50 -d1s -H "Authorization: Bearer $token" "$url" >/dev/null
wrk -t2 -c50 -d"${seconds}s" --latency -H "Authorization: Bearer $token" -s "$BENCH_ROOT/tests/bench/wrk-report.lua" \
    "$url" >"$BENCH_WORK/wrk-summary.txt"
read -r rps p99 non2xx errors <<<"$(bench::wrk_summary "$BENCH_WORK/wrk-summary.txt")"
bench::stop_daemon
bench::result sla "GET /v1/sla/summary p99, 50 dashboards" "$p99" ms "-" "≤ 20" "$(bench::verdict "$p99" '<=' 20)" \
    "wrk -t2 -c50 ${seconds} s over $rows open + $rows closed; $non2xx non-2xx, $errors socket errors"
bench::result sla "GET /v1/sla/summary throughput" "${rps%.*}" req/s "-" "-" info "same run"
if ((non2xx > 0 || errors > 0)) && ((BENCH_QUICK == 0)); then
    bench::result sla "failed answers" "$((non2xx + errors))" answers "-" "0" short "see $dir/rightsd.log"
fi
bench::dropdb "$db"
