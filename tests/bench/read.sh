# Benchmark 2: GET /v1/requests/{id} over 1,000,000 stored requests (seeded with SQL, identities sealed with the
# daemon's key) against the HTTP ceiling: a minimal cpp-httplib server answering a fixed 200-byte JSON at its best
# configuration (rightsd_bench ceiling: TCP_NODELAY, 64 threads, long keep-alive). wrk, 50 keep-alive connections,
# random ids, both in this run.
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

seconds=20
seeded=1000000
if ((BENCH_QUICK == 1)); then
    seconds=2
    seeded=20000
fi
dir="$BENCH_WORK/daemon"
port="$BENCH_PORT"
ceiling_port=$((BENCH_PORT + 1))

bench::createdb bench_read >/dev/null
bench::daemon_dir "$dir" bench_read "$port"
seed_start=$SECONDS
chunk=200000
for ((from = 1; from <= seeded; from += chunk)); do
    count=$((seeded - from + 1 < chunk ? seeded - from + 1 : chunk))
    bench::psql bench_read -v from="$from" -v count="$count" -f "$BENCH_ROOT/tests/bench/seed-requests.sql" >/dev/null
    "$BENCH_TOOL" seed-identities --key-file "$dir/pii.key" --from "$from" --count "$count" |
        bench::psql bench_read -c "COPY request_identities (request_id, ordinal, kind, lookup_hash, value_sealed) FROM STDIN"
done
bench::psql bench_read -c "VACUUM ANALYZE" >/dev/null
# Read the tables and their indexes into shared buffers: a status endpoint in service reads a warm database, and
# the first seconds of a cold one would measure the disk, not rightsd.
bench::psql bench_read -tA -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
    -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')" >/dev/null
bench::log "seeded $seeded requests in $((SECONDS - seed_start)) s"
# Bring the seeded SLA states up to today first, as a running daemon's sweeper would have: otherwise the daemon's
# first sweep rewrites ~100,000 of them while wrk measures (the first full run did, p99 52 ms).
"$BENCH_RIGHTSD" sweep --config "$dir/rightsd.toml" >"$BENCH_WORK/sweep.log" 2>&1
bench::psql bench_read -c "VACUUM ANALYZE requests" >/dev/null

bench::start_daemon "$dir"
warm_wrk() { # URL TOKEN: one second of the same load, not measured (connections, caches, the pool's backends)
    BENCH_TOKEN="$2" BENCH_SEEDED="$seeded" BENCH_ROOT="$BENCH_ROOT" \
        wrk -t2 -c50 -d1s -s "$BENCH_ROOT/tests/bench/read.lua" "$1" >/dev/null
}
run_wrk() { # NAME URL TOKEN
    BENCH_TOKEN="$3" BENCH_SEEDED="$seeded" BENCH_ROOT="$BENCH_ROOT" \
        wrk -t2 -c50 -d"${seconds}s" --latency -s "$BENCH_ROOT/tests/bench/read.lua" "$2" >"$BENCH_WORK/wrk-$1.txt"
    bench::wrk_summary "$BENCH_WORK/wrk-$1.txt"
}
# CPU spent per request by the daemon and by PostgreSQL (backends exit with their connections, so the pool's
# stay for the whole run: the daemon's are opened by the warm-up), and by the whole machine, wrk included, which is
# what the ceiling's run is measured by too. Sampled around the measured run only.
warm_wrk "http://127.0.0.1:$port" "$(cat "$dir/viewer.token")"
daemon_cpu0="$(bench::cpu_seconds "$BENCH_DAEMON_PID")"
pg_cpu0="$(bench::cpu_seconds $(bench::pg_pids))"
machine0="$(bench::machine_busy)"
read -r rps p99 non2xx errors <<<"$(run_wrk viewer "http://127.0.0.1:$port" "$(cat "$dir/viewer.token")")"
machine1="$(bench::machine_busy)"
daemon_cpu1="$(bench::cpu_seconds "$BENCH_DAEMON_PID")"
pg_cpu1="$(bench::cpu_seconds $(bench::pg_pids))"
requests="$(awk '/^RESULT / { print $8 }' "$BENCH_WORK/wrk-viewer.txt")"
daemon_us="$(bench::cpu_per_request "$daemon_cpu0" "$daemon_cpu1" "$requests")"
pg_us="$(bench::cpu_per_request "$pg_cpu0" "$pg_cpu1" "$requests")"
read -r machine_us machine_cores <<<"$(bench::machine_cpu_per_item "$machine0" "$machine1" "$requests")"
warm_wrk "http://127.0.0.1:$port" "$(cat "$dir/admin.token")"
read -r admin_rps admin_p99 admin_non2xx _ <<<"$(run_wrk admin "http://127.0.0.1:$port" "$(cat "$dir/admin.token")")"
bench::stop_daemon

"$BENCH_TOOL" ceiling --port "$ceiling_port" --threads 64 &
ceiling_pid=$!
bench::track "$ceiling_pid"
for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ceiling_port/v1/requests/x" 2>/dev/null && break
    sleep 0.05
done
warm_wrk "http://127.0.0.1:$ceiling_port" ""
machine0="$(bench::machine_busy)"
read -r ceiling_rps ceiling_p99 _ _ <<<"$(run_wrk ceiling "http://127.0.0.1:$ceiling_port" "")"
machine1="$(bench::machine_busy)"
ceiling_requests="$(awk '/^RESULT / { print $8 }' "$BENCH_WORK/wrk-ceiling.txt")"
read -r ceiling_machine_us ceiling_machine_cores <<<"$(bench::machine_cpu_per_item "$machine0" "$machine1" "$ceiling_requests")"
bench::stop_pid "$ceiling_pid"

ratio="$(bench::ratio "$rps" "$ceiling_rps")"
note="$seeded requests, ${seconds} s, 50 connections, viewer token; $non2xx non-2xx, $errors socket errors"
bench::result read "GET /v1/requests/{id}" "${rps%.*}" req/s "ceiling ${ceiling_rps%.*} req/s (p99 $ceiling_p99 ms)" "-" info "$note"
bench::result read "ratio to the HTTP ceiling" "$ratio" × "${ceiling_rps%.*} req/s" "≥ 0.5" \
    "$(bench::verdict "$ratio" '>=' 0.5)" "ceiling: cpp-httplib, fixed 200-byte JSON, nodelay, 64 threads"
bench::result read "GET /v1/requests/{id} p99" "$p99" ms "-" "≤ 10" "$(bench::verdict "$p99" '<=' 10)" "wrk --latency"
bench::result read "CPU per GET: rightsd / PostgreSQL" "$daemon_us / $pg_us" µs "-" "-" info \
    "$(nproc) cores shared by wrk, rightsd and PostgreSQL: ${requests} requests in ${seconds} s"
# What half the ceiling leaves a GET: every core busy at half the ceiling's rate, for everything (wrk included).
budget_us="$(awk -v c="$(nproc)" -v r="$ceiling_rps" 'BEGIN { printf "%.0f", (r > 0 ? c * 1e6 / (0.5 * r) : 0) }')"
bench::result read "machine CPU per request: GET / ceiling" "$machine_us / $ceiling_machine_us" µs "-" "-" info \
    "every process, wrk's too; $machine_cores / $ceiling_machine_cores of $(nproc) cores busy; at 0.5 × the ceiling a GET may cost $budget_us µs"
bench::result read "GET /v1/requests/{id} with identity values opened" "${admin_rps%.*}" req/s "-" "-" info \
    "admin token: both identities opened (XChaCha20-Poly1305); p99 $admin_p99 ms; $admin_non2xx non-2xx"
bench::dropdb bench_read
