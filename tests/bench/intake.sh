# Benchmarks 1 and 5: intake against pgbench running the same SQL, and the daemon's footprint.
#   - start to READY=1 (NOTIFY_SOCKET), median of three starts; resident memory idle
#   - POST /v1/requests: wrk, 32 connections, unique bodies (tests/bench/intake.lua); peak resident memory
#   - pgbench, 32 clients, -M prepared, tests/bench/intake-pgbench.sql: the statement the daemon runs for one
#     request, on a database with the same schema (rightsd migrate), rows, indexes and durability
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

seconds=20
((BENCH_QUICK == 1)) && seconds=2
dir="$BENCH_WORK/daemon"
port="$BENCH_PORT"

bench::createdb bench_intake >/dev/null
bench::daemon_dir "$dir" bench_intake "$port"

# Footprint: three starts on the migrated, empty database.
ready=()
for i in 1 2 3; do
    bench::start_daemon "$dir"
    ready+=("$BENCH_READY_MS")
    if ((i < 3)); then bench::stop_daemon; fi
done
ready_ms="$(printf '%s\n' "${ready[@]}" | sort -n | sed -n 2p)"
bench::result footprint "start to READY=1 (median of 3)" "$ready_ms" ms "-" "≤ 300" \
    "$(bench::verdict "$ready_ms" '<=' 300)" "starts: ${ready[*]} ms; migrated empty database"
sleep 2
idle_kib="$(bench::rss_kib "$BENCH_DAEMON_PID")"
idle_mb="$(awk -v k="$idle_kib" 'BEGIN { printf "%.1f", k / 1024 }')"
bench::result footprint "resident memory idle" "$idle_mb" MB "-" "≤ 30" "$(bench::verdict "$idle_mb" '<=' 30)" \
    "VmRSS 2 s after READY"

# Warm the connection pool and the server's caches, then measure.
BENCH_TOKEN="$(cat "$dir/submitter.token")" BENCH_ROOT="$BENCH_ROOT" \
    wrk -t2 -c32 -d1s -s "$BENCH_ROOT/tests/bench/intake.lua" "http://127.0.0.1:$port" >/dev/null
daemon_cpu0="$(bench::cpu_seconds "$BENCH_DAEMON_PID")"
pg_cpu0="$(bench::cpu_seconds $(bench::pg_pids))"
BENCH_TOKEN="$(cat "$dir/submitter.token")" BENCH_ROOT="$BENCH_ROOT" \
    wrk -t2 -c32 -d"${seconds}s" --latency -s "$BENCH_ROOT/tests/bench/intake.lua" "http://127.0.0.1:$port" \
    >"$BENCH_WORK/wrk-intake.txt"
read -r rps p99 non2xx errors <<<"$(bench::wrk_summary "$BENCH_WORK/wrk-intake.txt")"
daemon_us="$(bench::cpu_per_request "$daemon_cpu0" "$(bench::cpu_seconds "$BENCH_DAEMON_PID")" \
    "$(awk '/^RESULT / { print $8 }' "$BENCH_WORK/wrk-intake.txt")")"
pg_us="$(bench::cpu_per_request "$pg_cpu0" "$(bench::cpu_seconds $(bench::pg_pids))" \
    "$(awk '/^RESULT / { print $8 }' "$BENCH_WORK/wrk-intake.txt")")"
peak_kib="$(bench::hwm_kib "$BENCH_DAEMON_PID")"
peak_mb="$(awk -v k="$peak_kib" 'BEGIN { printf "%.1f", k / 1024 }')"
stored="$(bench::psql bench_intake -tAc "SELECT count(*) FROM requests")"
bench::stop_daemon

# The reference: pgbench on a database of its own with the same schema.
bench::createdb bench_intake_pgbench >/dev/null
sed "s|/bench_intake?|/bench_intake_pgbench?|" "$dir/rightsd.toml" >"$BENCH_WORK/pgbench.toml"
cp "$dir/pii.key" "$dir/tokens" "$BENCH_WORK/"
"$BENCH_RIGHTSD" migrate --config "$BENCH_WORK/pgbench.toml" >"$BENCH_WORK/pgbench-migrate.log" 2>&1
"$BENCH_PGBENCH" -n -M prepared -c 32 -j 2 -T "$seconds" -h "$BENCH_PGDIR/socket" -p "$BENCH_PGPORT" -U postgres \
    -f "$BENCH_ROOT/tests/bench/intake-pgbench.sql" bench_intake_pgbench >"$BENCH_WORK/pgbench.txt" 2>&1 ||
    { cat "$BENCH_WORK/pgbench.txt" >&2; exit 1; }
tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$BENCH_WORK/pgbench.txt" | tail -n 1)"
pg_latency="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$BENCH_WORK/pgbench.txt")"

# A second reference, for what the daemon does under load: it writes concurrent POSTs in one statement (its intake
# writer's mean batch is in its log at shutdown), two statements at a time. pgbench runs that statement with batches
# of the same size from two clients: the database's rate for the daemon's own write pattern.
batch="$(sed -n 's/.* new requests written in [0-9]* statements, requests per statement: mean \([0-9.]*\).*/\1/p' \
    "$dir/rightsd.log" | tail -n 1)"
batch="$(awk -v b="${batch:-1}" 'BEGIN { k = int(b + 0.5); print (k < 1 ? 1 : k) }')"
"$BENCH_TOOL" intake-sql --batch "$batch" >"$BENCH_WORK/intake-pgbench-batch.sql"
bench::createdb bench_intake_batch >/dev/null
sed "s|/bench_intake?|/bench_intake_batch?|" "$dir/rightsd.toml" >"$BENCH_WORK/pgbench-batch.toml"
"$BENCH_RIGHTSD" migrate --config "$BENCH_WORK/pgbench-batch.toml" >"$BENCH_WORK/pgbench-batch-migrate.log" 2>&1
"$BENCH_PGBENCH" -n -M prepared -c 2 -j 2 -T "$seconds" -h "$BENCH_PGDIR/socket" -p "$BENCH_PGPORT" -U postgres \
    -f "$BENCH_WORK/intake-pgbench-batch.sql" bench_intake_batch >"$BENCH_WORK/pgbench-batch.txt" 2>&1 ||
    { cat "$BENCH_WORK/pgbench-batch.txt" >&2; exit 1; }
batch_tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$BENCH_WORK/pgbench-batch.txt" | tail -n 1)"
batch_rps="$(awk -v t="$batch_tps" -v k="$batch" 'BEGIN { printf "%.0f", t * k }')"

ratio="$(bench::ratio "$rps" "$tps")"
note="${seconds} s, 32 connections; $non2xx non-2xx, $errors socket errors; $stored requests stored"
bench::result intake "POST /v1/requests" "${rps%.*}" req/s "pgbench ${tps%.*} tps (avg ${pg_latency} ms)" "-" info "$note"
bench::result intake "ratio to pgbench, same SQL" "$ratio" × "${tps%.*} tps" "≥ 0.8" "$(bench::verdict "$ratio" '>=' 0.8)" \
    "pgbench -M prepared -c 32 -j 2, tests/bench/intake-pgbench.sql: one request per transaction; the daemon writes concurrent POSTs in one statement"
bench::result intake "pgbench, the daemon's batches" "$batch_rps" req/s "-" "-" info \
    "Store::Insert's statement for $batch requests (the daemon's mean), 2 clients (its two writers): ${batch_tps%.*} tps; rightsd / this: $(bench::ratio "$rps" "$batch_rps")"
bench::result intake "CPU per POST: rightsd / PostgreSQL" "$daemon_us / $pg_us" µs "-" "-" info \
    "$(nproc) cores shared by wrk, rightsd and PostgreSQL"
bench::result intake "POST /v1/requests p99" "$p99" ms "-" "≤ 25" "$(bench::verdict "$p99" '<=' 25)" "wrk --latency"
bench::result footprint "resident memory peak (intake load)" "$peak_mb" MB "-" "≤ 150" \
    "$(bench::verdict "$peak_mb" '<=' 150)" "VmHWM after the intake run"
if ((non2xx > 0 || errors > 0)) && ((BENCH_QUICK == 0)); then
    bench::result intake "failed answers" "$((non2xx + errors))" answers "-" "0" short "see $BENCH_WORK/daemon/rightsd.log"
fi
bench::dropdb bench_intake
bench::dropdb bench_intake_pgbench
bench::dropdb bench_intake_batch
