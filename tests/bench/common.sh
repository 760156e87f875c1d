# Shared helpers of the benchmark cases (tests/bench/<case>.sh), sourced by each. scripts/bench runs every case
# as `bash tests/bench/<case>.sh` with:
#   BENCH_ROOT     the repository
#   BENCH_BUILD    the build directory (rightsd, tests/rightsd_bench, the peers)
#   BENCH_PGDIR    the benchmark's PostgreSQL cluster (socket directory $BENCH_PGDIR/socket, superuser postgres)
#   BENCH_PGPORT   its port
#   BENCH_WORK     a scratch directory of this case (its daemons' configs and logs)
#   BENCH_QUICK    1 = smoke mode (seconds per case, figures mean nothing), 0 = the real run
#   BENCH_RESULTS  the file every case appends its figures to (bench::result)
#   BENCH_PORT     the first of ten TCP ports on 127.0.0.1 this case may use
# A case stops every process it starts (bench::track + the EXIT trap set here) and exits non-zero only when the
# harness itself breaks: a goal missed is a result with verdict "short", not an error.
set -euo pipefail

: "${BENCH_ROOT:?}" "${BENCH_BUILD:?}" "${BENCH_PGDIR:?}" "${BENCH_PGPORT:?}" "${BENCH_WORK:?}" "${BENCH_QUICK:?}"
: "${BENCH_RESULTS:?}" "${BENCH_PORT:?}"
BENCH_PSQL="$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)"
BENCH_PSQL="${BENCH_PSQL:-psql}"
BENCH_PGBENCH="$(dirname "$BENCH_PSQL")/pgbench"
BENCH_TOOL="$BENCH_BUILD/tests/rightsd_bench"
BENCH_RIGHTSD="$BENCH_BUILD/rightsd"
mkdir -p "$BENCH_WORK"

bench::log() { printf '    %s\n' "$*" >&2; }

# --- processes -----------------------------------------------------------------------------------------------
BENCH_PIDS=()
bench::track() { BENCH_PIDS+=("$1"); }
# Stops one process by pid: SIGTERM, up to 10 s, then SIGKILL.
bench::stop_pid() {
    local pid="$1" i
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
bench::_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do bench::stop_pid "$pid"; done
    BENCH_PIDS=()
}
trap bench::_cleanup EXIT

# --- results -------------------------------------------------------------------------------------------------
# bench::result CASE METRIC VALUE UNIT REFERENCE GOAL VERDICT NOTE   (one TSV line in $BENCH_RESULTS)
bench::result() {
    (($# == 8)) || { echo "bench::result needs 8 fields, got $#" >&2; return 1; }
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$BENCH_RESULTS"
    bench::log "$2: $3 $4${5:+ (reference $5)} goal $6 -> $7"
}
# bench::verdict VALUE OP LIMIT -> pass|short  (OP is <= or >=; in quick mode always "smoke")
bench::verdict() {
    if [[ "$BENCH_QUICK" == 1 ]]; then echo smoke; return; fi
    if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !((op == "<=") ? (v <= l) : (v >= l)) }'; then
        echo pass
    else
        echo short
    fi
}
# bench::ratio A B -> A/B with two decimals
bench::ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "0" }'; }

# --- PostgreSQL ----------------------------------------------------------------------------------------------
bench::psql() { # DB [psql args...]
    local db="$1"
    shift
    "$BENCH_PSQL" -X -q -v ON_ERROR_STOP=1 -h "$BENCH_PGDIR/socket" -p "$BENCH_PGPORT" -U postgres -d "$db" "$@"
}
bench::createdb() { # NAME: a fresh, empty database
    bench::psql postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" -c "CREATE DATABASE \"$1\""
}
bench::dropdb() { bench::psql postgres -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null || true; }
bench::db_url() { printf 'postgresql:///%s?host=%s&port=%s&user=postgres' "$1" "$BENCH_PGDIR/socket" "$BENCH_PGPORT"; }

# --- the daemon ----------------------------------------------------------------------------------------------
# bench::daemon_dir DIR DB PORT [EXTRA_TOML_FILE]
#   writes DIR/rightsd.toml (listener 127.0.0.1:PORT, database DB, the systems of EXTRA_TOML_FILE appended), a
#   key, tokens (DIR/admin.token, DIR/viewer.token, DIR/submitter.token) and migrates DB.
bench::daemon_dir() {
    local dir="$1" db="$2" port="$3" extra="${4:-}" role out
    mkdir -p "$dir"
    cat >"$dir/rightsd.toml" <<EOF
[http]
listen = "127.0.0.1:$port"
threads = 64
max_queued = 256

[database]
url = "$(bench::db_url "$db")"
pool_size = 16

[calendar]
timezone = "America/Los_Angeles"
holidays_file = "$BENCH_ROOT/systemd/holidays-ca.txt"

[auth]
tokens_file = "tokens"
# The bench is one client per role hammering the API: the per-token limit would be what is measured.
rate_per_second = 1000000
burst = 1000000

[crypto]
key_file = "pii.key"
EOF
    if [[ -n "$extra" ]]; then
        printf '\n' >>"$dir/rightsd.toml"
        cat "$extra" >>"$dir/rightsd.toml"
    fi
    : >"$dir/tokens"
    "$BENCH_RIGHTSD" keygen --config "$dir/rightsd.toml" >/dev/null 2>&1
    for role in admin viewer submitter; do
        out="$("$BENCH_RIGHTSD" token new --role "$role" --name "bench-$role" --config "$dir/rightsd.toml")"
        sed -n 's/^token: //p' <<<"$out" >"$dir/$role.token"
        sed -n 's/^tokens-file line: //p' <<<"$out" >>"$dir/tokens"
    done
    "$BENCH_RIGHTSD" migrate --config "$dir/rightsd.toml" >"$dir/migrate.log" 2>&1 ||
        { cat "$dir/migrate.log" >&2; return 1; }
}

# bench::start_daemon DIR -> sets BENCH_DAEMON_PID and BENCH_READY_MS (start to READY=1 over NOTIFY_SOCKET)
bench::start_daemon() {
    local dir="$1" line
    line="$("$BENCH_TOOL" ready -- "$BENCH_RIGHTSD" serve --config "$dir/rightsd.toml" 2>>"$dir/rightsd.log" \
        </dev/null)" || { tail -n 20 "$dir/rightsd.log" >&2; return 1; }
    BENCH_DAEMON_PID="${line%% *}"
    BENCH_READY_MS="${line##* }"
    bench::track "$BENCH_DAEMON_PID"
}
# The daemon's stderr goes to its log: `ready` hands the child the descriptor it was given.
bench::stop_daemon() { bench::stop_pid "${BENCH_DAEMON_PID:-}"; BENCH_DAEMON_PID=""; }

bench::rss_kib() { "$BENCH_TOOL" rss "$1" | cut -d' ' -f1; }
bench::hwm_kib() { "$BENCH_TOOL" rss "$1" | cut -d' ' -f2; }

# --- wrk -----------------------------------------------------------------------------------------------------
# bench::wrk_summary FILE -> "requests_per_second p99_ms non2xx errors" from `wrk --latency` output
#   (requires the Lua done() hook of tests/bench/wrk-report.lua, which prints exact figures).
bench::wrk_summary() {
    awk '/^RESULT / { print $2, $3, $4, $5 }' "$1"
}

# --- CPU accounting: where a request's time goes on a machine whose cores are all shared ---------------------
# bench::cpu_seconds PID...  user+system CPU seconds of those processes so far
bench::cpu_seconds() {
    local tck pid total=0 t
    tck="$(getconf CLK_TCK)"
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that closes the command name.
        t="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || t=0
        total=$((total + ${t:-0}))
    done
    awk -v t="$total" -v k="$tck" 'BEGIN { printf "%.3f", t / k }'
}
# bench::pg_pids: the postmaster and its children (backends, checkpointer, WAL writer...)
bench::pg_pids() {
    local master
    master="$(head -n 1 "$BENCH_PGDIR/data/postmaster.pid")"
    echo "$master" $(pgrep -P "$master")
}
# bench::cpu_per_request SECONDS_BEFORE SECONDS_AFTER REQUESTS -> microseconds of CPU per request
bench::cpu_per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1e6 / n; else print 0 }'; }
# The whole machine's busy CPU, every process on every core (the load generator's and the peers' too): the one
# measure that compares rightsd with a reference whose processes are not rightsd's and PostgreSQL's. Steal excluded.
# bench::machine_busy -> "BUSY_TICKS TOTAL_TICKS" so far, from /proc/stat's first line
bench::machine_busy() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; print busy, busy + $5 + $6 }' /proc/stat; }
# bench::machine_cpu_per_item "B0 T0" "B1 T1" ITEMS -> "MICROSECONDS_PER_ITEM BUSY_CORES" over that interval
bench::machine_cpu_per_item() {
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" -v cores="$(nproc)" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; total = y[2] - x[2]
        printf "%.0f %.2f\n", (n > 0 ? busy / hz * 1e6 / n : 0), (total > 0 ? busy / total * cores : 0) }'
}
