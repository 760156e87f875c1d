#!/usr/bin/env bash
# Benchmark 3, rightsd's side: fan-out throughput on the noop connector.
#
# 100,000 tasks are 10,000 delete requests x 10 noop systems: a request fans out to every system of the data map
# and ten systems is a modest data map, so the cost of a request's completion (its row, its audit event, the check
# that its last task finished) is paid once per ten tasks, as it would be in production. Every task is claimed
# under a lease, run, and its outcome and audit event committed; every request ends completed.
#
#   burst:  all tasks seeded before the daemon starts; rate = tasks / (last finished_at - daemon launch)
#   steady: (full mode) a feeder keeps the backlog above one claim round's worth for 120 s; rate = tasks finished
#           within the window / 120 s, with the min and max of its 10-second buckets
#   ratio:  burst rate / the best peer line ("fanout<TAB>peer ...") already in $BENCH_RESULTS
set -euo pipefail
: "${BENCH_ROOT:?}" "${BENCH_BUILD:?}" "${BENCH_PGDIR:?}" "${BENCH_PGPORT:?}" "${BENCH_WORK:?}" "${BENCH_RESULTS:?}"
BENCH_QUICK="${BENCH_QUICK:-0}"
# shellcheck source=tests/bench/common.sh
source "$BENCH_ROOT/tests/bench/common.sh"  # for its CPU accounting; engine_env.sh's cleanup trap replaces its own
# shellcheck source=tests/bench/engine_env.sh
source "$BENCH_ROOT/tests/bench/engine_env.sh"
trap bench_cleanup EXIT

SYSTEMS=10
if [[ "$BENCH_QUICK" == 1 ]]; then REQUESTS=${FANOUT_REQUESTS:-200}; else REQUESTS=${FANOUT_REQUESTS:-10000}; fi
TASKS=$((REQUESTS * SYSTEMS))
STEADY_SECONDS=120

bench_setup fanout
systems_toml=""
systems_sql="{"
for i in $(seq -w 1 "$SYSTEMS"); do
    systems_toml+="
[[systems]]
name = \"noop$i\"
connector = \"noop\"
categories = [\"identifiers\"]
request_types = [\"delete\"]
max_concurrency = 1000
rate_per_second = 100000
burst = 100000
"
    systems_sql+="noop$i,"
done
systems_sql="${systems_sql%,}}"
bench_config "[engine]
claim_batch = ${FANOUT_CLAIM_BATCH:-1000}
max_in_flight = ${FANOUT_MAX_IN_FLIGHT:-4000}
${FANOUT_INLINE_WORKERS:+inline_workers = $FANOUT_INLINE_WORKERS}
$systems_toml"
bench_seed_function

# ---- burst ----
bench_psql -d "$BENCH_DB" -c "SELECT bench_seed($REQUESTS, '$systems_sql')" >/dev/null
bench_psql -d "$BENCH_DB" -c "VACUUM ANALYZE" >/dev/null
bench_psql -d "$BENCH_DB" -c "SELECT pg_stat_reset()" >/dev/null
log="$BENCH_DIR/burst.log"
# Timed from just before the daemon starts: its start-up (connections, LISTEN) counts against it.
t0="$(bench_psql -d "$BENCH_DB" -At -c "SELECT extract(epoch from clock_timestamp())")"
pg_cpu0="$(bench::cpu_seconds $(bench::pg_pids))"
machine0="$(bench::machine_busy)"
bench_start_daemon "$log"
deadline=$((SECONDS + 600))
while :; do
    open="$(bench_psql -d "$BENCH_DB" -At -c "SELECT count(*) FROM requests WHERE closed_at IS NULL")"
    [[ "$open" == 0 ]] && break
    if ((SECONDS > deadline)) || ! kill -0 "$BENCH_DAEMON_PID" 2>/dev/null; then
        echo "fanout: $open requests still open; daemon log tail:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.2
done
read -r unfinished t_end <<<"$(bench_psql -d "$BENCH_DB" -At -F ' ' -c \
    "SELECT count(*) FILTER (WHERE state NOT IN ('done', 'not_found', 'retained_exempt')),
            extract(epoch from max(finished_at)) FROM tasks")"
if [[ "$unfinished" != 0 ]]; then
    echo "fanout: $unfinished tasks did not finish (requests closed without them?)" >&2
    exit 1
fi
machine1="$(bench::machine_busy)"
# Read before the daemon stops: PostgreSQL's backends exit with its connections, and their CPU with them.
daemon_us="$(bench::cpu_per_request 0 "$(bench::cpu_seconds "$BENCH_DAEMON_PID")" "$TASKS")"
pg_us="$(bench::cpu_per_request "$pg_cpu0" "$(bench::cpu_seconds $(bench::pg_pids))" "$TASKS")"
read -r machine_us machine_cores <<<"$(bench::machine_cpu_per_item "$machine0" "$machine1" "$TASKS")"
burst="$(awk -v n="$TASKS" -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.0f", n / (b - a) }')"
burst_seconds="$(awk -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')"
bench_stop_daemon
batches="$(grep -o 'outcomes per commit: .*' "$log" | tail -1 || true)"

# ---- ratio to the best peer ----
touch "$BENCH_RESULTS"
best="$(awk -F'\t' '$1 == "fanout" && $2 ~ /^peer / { if ($3 + 0 > best) { best = $3 + 0; name = $2 } }
    END { if (best > 0) printf "%s\t%s", best, name }' "$BENCH_RESULTS")"
burst_note="$TASKS tasks ($REQUESTS delete requests x $SYSTEMS noop systems) in ${burst_seconds} s, each claimed, run, its outcome + audit event committed, every request completed${batches:+; $batches}"
bench_result fanout "burst tasks/s" "$burst" "tasks/s" "${best%%$'\t'*}" "" info "$burst_note"
if [[ -n "$best" ]]; then
    best_value="${best%%$'\t'*}"
    best_name="${best#*$'\t'}"
    ratio="$(awk -v a="$burst" -v b="$best_value" 'BEGIN { printf "%.2f", a / b }')"
    verdict="$(awk -v r="$ratio" 'BEGIN { print (r >= 1.2 ? "pass" : "short") }')"
    bench_result fanout "ratio to best peer" "$ratio" "×" "$best_value ($best_name)" "≥ 1.2" "$verdict" \
        "rightsd burst $burst tasks/s vs $best_name"
else
    bench_result fanout "ratio to best peer" "" "×" "" "≥ 1.2" info "no peer line in $BENCH_RESULTS"
fi
bench_result fanout "CPU per task: rightsd / PostgreSQL" "$daemon_us / $pg_us" µs "-" "-" info \
    "the burst, from the daemon's launch until its last task finished (PostgreSQL: every process of the cluster, autovacuum workers that exited excepted); $(nproc) cores shared by both"

# The same measure as the peers' (tests/bench/peers/common.mjs): the whole machine's CPU over the run, per job. Their
# quotient is the ratio rightsd would reach if both kept the machine equally busy: what the work per task allows.
peer_cpu="$(awk -F'\t' -v name="${best#*$'\t'}" 'BEGIN { sub(/^peer /, "", name); sub(/ jobs\/s$/, "", name) }
    $1 == "fanout" && $2 == "CPU per job (machine): " name { print $3 }' "$BENCH_RESULTS" | tail -n 1)"
bench_result fanout "CPU per task (machine)" "$machine_us" µs "${peer_cpu:+$peer_cpu µs per job (best peer)}" "-" info \
    "every process on the machine over the burst; $machine_cores of $(nproc) cores busy"
if [[ -n "$peer_cpu" && "$machine_us" -gt 0 ]]; then
    bench_result fanout "ratio at equal CPU use" "$(awk -v p="$peer_cpu" -v r="$machine_us" 'BEGIN { printf "%.2f", p / r }')" × \
        "-" "-" info "the best peer's machine CPU per job / rightsd's per task"
fi

# ---- steady: 120 s with the queue kept fed (full mode only) ----
if [[ "$BENCH_QUICK" != 1 ]]; then
    # The feeder tops the backlog up to 40,000 pending tasks (4,000 requests at a time) twice a second.
    (
        while :; do
            bench_psql -d "$BENCH_DB" -At -c "SELECT bench_seed(4000, '$systems_sql')
                WHERE (SELECT count(*) FROM tasks WHERE state = 'pending') < 40000" >/dev/null || exit 0
            sleep 0.5
        done
    ) &
    BENCH_PIDS+=("$!")
    feeder=$!
    sleep 3
    log="$BENCH_DIR/steady.log"
    bench_start_daemon "$log"
    sleep 5  # warm-up: the window starts once the dispatcher runs at speed
    w0="$(bench_psql -d "$BENCH_DB" -At -c "SELECT extract(epoch from clock_timestamp())")"
    sleep "$STEADY_SECONDS"
    w1="$(awk -v a="$w0" -v s="$STEADY_SECONDS" 'BEGIN { printf "%.6f", a + s }')"
    # Two queries: an ORDER BY after a UNION ALL sorts the total in among the buckets, and the first line was then
    # the smallest bucket, not the total.
    total="$(bench_psql -d "$BENCH_DB" -At -c "
        SELECT count(*) FROM tasks WHERE finished_at >= to_timestamp($w0) AND finished_at < to_timestamp($w1)")"
    per10="$(bench_psql -d "$BENCH_DB" -At -c "
        SELECT coalesce(count(t.finished_at), 0) / 10 FROM generate_series(0, $((STEADY_SECONDS / 10 - 1))) AS b
        LEFT JOIN tasks t ON t.finished_at >= to_timestamp($w0) + b * interval '10 s'
                         AND t.finished_at < to_timestamp($w0) + (b + 1) * interval '10 s'
        GROUP BY b ORDER BY b")"
    kill "$feeder" 2>/dev/null || true
    echo "fanout steady: per-10-s tasks/s in order: $(tr '\n' ' ' <<<"$per10")" >&2
    min="$(sort -n <<<"$per10" | head -1)"
    max="$(sort -n <<<"$per10" | tail -1)"
    steady="$(awk -v n="$total" -v s="$STEADY_SECONDS" 'BEGIN { printf "%.0f", n / s }')"
    bench_stop_daemon
    batches="$(grep -o 'outcomes per commit: .*' "$log" | tail -1 || true)"
    bench_result fanout "steady tasks/s (120 s)" "$steady" "tasks/s" "" "" info \
        "$total tasks finished in a ${STEADY_SECONDS}-s window, backlog kept >= 40,000 by a feeder; per-10-s min $min, max $max tasks/s${batches:+; $batches}"
fi
