#!/usr/bin/env bash
# Benchmark 4: waiting on a slow system. 2,000 tasks (2,000 delete requests x 1 system) against a system that
# answers each call 200 ms later, max_concurrency 100: the ideal is 2,000 / 100 x 0.2 s = 4 s, the goal 1.3 x that.
#
# The slow system is the noop connector with delay_ms = 200: its answers come from one timer thread, as an HTTP
# connector's come from the HTTP client's few I/O threads, so the dispatcher has 100 calls in flight and no thread
# per call. (No HTTP simulator fits as is: the Mailchimp connector caps itself at 10 connections, as Mailchimp does,
# and an OpenDSR task is a submission and then polls.)
#
# Threads: /proc/PID/task sampled every 50 ms during the run. The HTTP server's worker pool ([http] threads), its
# request readers and its intake writers (threads named rightsd-read and rightsd-intake, daemon/request_reader.h and
# daemon/intake_writer.h) are not counted: "counted" = all threads of the process - [http] threads - readers -
# writers. Everything else counts: main, signal, sweeper, HTTP listener, dispatcher
# loop and committers, the connector's timer thread, the HTTP client's I/O pool.
set -euo pipefail
: "${BENCH_ROOT:?}" "${BENCH_BUILD:?}" "${BENCH_PGDIR:?}" "${BENCH_PGPORT:?}" "${BENCH_WORK:?}" "${BENCH_RESULTS:?}"
BENCH_QUICK="${BENCH_QUICK:-0}"
# shellcheck source=tests/bench/engine_env.sh
source "$BENCH_ROOT/tests/bench/engine_env.sh"
trap bench_cleanup EXIT

DELAY_MS=200
CONCURRENCY=100
if [[ "$BENCH_QUICK" == 1 ]]; then TASKS=400; else TASKS=2000; fi
HTTP_THREADS=4
ideal="$(awk -v n="$TASKS" -v c="$CONCURRENCY" -v d="$DELAY_MS" 'BEGIN { printf "%.2f", n / c * d / 1000 }')"
goal="$(awk -v i="$ideal" 'BEGIN { printf "%.2f", i * 1.3 }')"

bench_setup slow
bench_config "[engine]
claim_batch = 1000
max_in_flight = 1000
[[systems]]
name = \"slow\"
connector = \"noop\"
categories = [\"identifiers\"]
request_types = [\"delete\"]
max_concurrency = $CONCURRENCY
rate_per_second = 100000
burst = 100000
settings = { delay_ms = $DELAY_MS }"
sed -i "s/^threads = .*/threads = $HTTP_THREADS/" "$BENCH_DIR/rightsd.toml"
bench_seed_function
bench_psql -d "$BENCH_DB" -c "SELECT bench_seed($TASKS, '{slow}')" >/dev/null
bench_psql -d "$BENCH_DB" -c "VACUUM ANALYZE" >/dev/null

log="$BENCH_DIR/daemon.log"
t0="$(bench_psql -d "$BENCH_DB" -At -c "SELECT extract(epoch from clock_timestamp())")"
bench_start_daemon "$log"
pid="$BENCH_DAEMON_PID"
max_threads=0
max_counted=0
readers=0
deadline=$((SECONDS + 120))
while :; do
    n="$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    r="$(cat /proc/"$pid"/task/*/comm 2>/dev/null | grep -c -E '^rightsd-(read|intake)$' || true)"
    ((n > max_threads)) && max_threads=$n
    ((r > readers)) && readers=$r
    ((n - r - HTTP_THREADS > max_counted)) && max_counted=$((n - r - HTTP_THREADS))
    open="$(bench_psql -d "$BENCH_DB" -At -c "SELECT count(*) FROM requests WHERE closed_at IS NULL")"
    [[ "$open" == 0 ]] && break
    if ((SECONDS > deadline)) || ! kill -0 "$pid" 2>/dev/null; then
        echo "slow: $open requests still open; daemon log tail:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    sleep 0.05
done
t_end="$(bench_psql -d "$BENCH_DB" -At -c "SELECT extract(epoch from max(finished_at)) FROM tasks")"
bench_stop_daemon
elapsed="$(awk -v a="$t0" -v b="$t_end" 'BEGIN { printf "%.2f", b - a }')"
counted=$max_counted
verdict="$(awk -v e="$elapsed" -v g="$goal" 'BEGIN { print (e <= g ? "pass" : "short") }')"
bench_result slow "elapsed seconds" "$elapsed" s "ideal $ideal s" "≤ $goal s" "$verdict" \
    "$TASKS tasks, each answered ${DELAY_MS} ms after its call, max_concurrency $CONCURRENCY; timed from the daemon's launch to the last task's finished_at"
verdict="$(((counted <= 16)) && echo pass || echo short)"
bench_result slow "max threads (dispatcher+connectors)" "$counted" threads "" "≤ 16" "$verdict" \
    "max $max_threads threads in /proc/$pid/task (sampled every 50 ms) minus the HTTP server's $HTTP_THREADS workers and $readers request readers and intake writers"
