#!/usr/bin/env bash
# Fan-out throughput, reference peers: graphile-worker and pg-boss running no-op jobs at concurrency 10 on
# the benchmark's PostgreSQL, each in its default and its best documented configuration
# (tests/bench/peers/graphile.mjs and pgboss.mjs say what those are).
#
#   bash tests/bench/fanout-peers.sh     (run by the bench harness)
#
# Environment (all set by the harness):
#   BENCH_ROOT     repo root
#   BENCH_PGDIR    PostgreSQL cluster dir; its unix socket dir is $BENCH_PGDIR/socket, superuser postgres, no password
#   BENCH_PGPORT   its port
#   BENCH_WORK     scratch dir for this case (the peers' stderr logs go there)
#   BENCH_QUICK    1: smoke mode, the two default configs on a few jobs; 0 (default): all four runs on 100,000 jobs
#   BENCH_RESULTS  file to append one TSV line per run to:
#                  fanout <TAB> peer <peer> <config> jobs/s <TAB> <int> <TAB> jobs/s <TAB> - <TAB> - <TAB> info <TAB> <settings, N jobs, S s>
#                  and one more, the machine's CPU per job over the run (all processes; rightsd's fan-out is measured
#                  the same way): fanout <TAB> CPU per job (machine): <peer> <config> <TAB> <int> <TAB> µs <TAB> ...
# Optional:
#   BENCH_PEERS_JOBS           jobs per run (default 100000, quick 2000)
#   BENCH_PGBOSS_DEFAULT_JOBS  jobs for pg-boss's default config (default 500, quick 20): with its defaults each
#                              of the 10 workers fetches one job per 2 s polling interval, ~5 jobs/s, so 100,000
#                              jobs would take hours; the rate is the same on fewer jobs, and the info column
#                              says how many were run.
#
# Each run gets a fresh database (created before, dropped after). install.sh brings Node 22 and the peers
# from the npm registry the first time. Exits non-zero only when the harness breaks: the install or a peer
# run fails (the other runs still go ahead and report).
set -euo pipefail

for v in BENCH_ROOT BENCH_PGDIR BENCH_PGPORT BENCH_WORK BENCH_RESULTS; do
    [[ -n "${!v:-}" ]] || { echo "fanout-peers.sh: $v is not set" >&2; exit 2; }
done
quick="${BENCH_QUICK:-0}"
peers="$BENCH_ROOT/tests/bench/peers"
socket="$BENCH_PGDIR/socket"
mkdir -p "$BENCH_WORK"

log() { printf 'fanout-peers: %s\n' "$*" >&2; }

psql_bin=/usr/lib/postgresql/15/bin/psql
[[ -x "$psql_bin" ]] || psql_bin="$(command -v psql)" || { log "psql not found"; exit 1; }
pg() { PGOPTIONS="-c client_min_messages=warning" "$psql_bin" -h "$socket" -p "$BENCH_PGPORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

if [[ "$quick" == 1 ]]; then
    jobs="${BENCH_PEERS_JOBS:-2000}"
    pgboss_default_jobs="${BENCH_PGBOSS_DEFAULT_JOBS:-20}"
    timeout_s=120
    runs=("graphile default" "pgboss default")
else
    jobs="${BENCH_PEERS_JOBS:-100000}"
    pgboss_default_jobs="${BENCH_PGBOSS_DEFAULT_JOBS:-500}"
    timeout_s=900
    runs=("graphile default" "graphile best" "pgboss default" "pgboss best")
fi

node_pid=""
databases=()
cleanup() {
    local rc=$?
    if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
        log "stopping peer process $node_pid"
        kill -TERM "$node_pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$node_pid" 2>/dev/null || true
    fi
    local db
    for db in "${databases[@]}"; do
        pg -c "drop database if exists \"$db\" with (force)" 2>/dev/null || true
    done
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Node 22 and the peers
if ! node="$(bash "$peers/install.sh" | tail -n 1)" || [[ ! -x "$node" ]]; then
    log "install of the Node peers failed (tests/bench/peers/install.sh)"
    exit 1
fi

# 2. the runs
failed=0
for run in "${runs[@]}"; do
    read -r script config <<<"$run"
    n="$jobs"
    [[ "$run" == "pgboss default" ]] && n="$pgboss_default_jobs"
    db="bench_fanout_${script}_${config}_$$"
    databases+=("$db")
    pg -c "drop database if exists \"$db\" with (force)" -c "create database \"$db\""
    errlog="$BENCH_WORK/peer-$script-$config.log"
    out="$BENCH_WORK/peer-$script-$config.json"
    log "$script $config: $n jobs, concurrency 10 (stderr in $errlog)"
    rc=0
    (cd "$peers" && exec "$node" "$script.mjs" --db "host=$socket port=$BENCH_PGPORT user=postgres dbname=$db" \
        --jobs "$n" --concurrency 10 --config "$config" --timeout-seconds "$timeout_s") >"$out" 2>"$errlog" &
    node_pid=$!
    wait "$node_pid" || rc=$?
    node_pid=""
    pg -c "drop database if exists \"$db\" with (force)" || true
    unset 'databases[-1]'
    if ((rc != 0)); then
        log "$script $config failed (exit $rc); the end of $errlog:"
        tail -n 20 "$errlog" >&2 || true
        failed=$((failed + 1))
        continue
    fi
    # One JSON line -> the TSV line for the results file and a line for people.
    # shellcheck disable=SC2016 # JavaScript, not shell
    if ! "$node" -e '
        const fs = require("fs");
        const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8").trim().split("\n").pop());
        const info = `${r.settings}, ${r.jobs} jobs, ${r.seconds.toFixed(3)} s`;
        const cpu = `every process on the machine over the run; ${r.busy_cores} of ${r.cores} cores busy`;
        fs.appendFileSync(process.argv[2],
            ["fanout", `peer ${r.peer} ${r.config} jobs/s`, String(Math.round(r.jobs_per_second)), "jobs/s", "-", "-", "info", info].join("\t") + "\n" +
            ["fanout", `CPU per job (machine): ${r.peer} ${r.config}`, String(r.machine_cpu_us_per_job), "µs", "-", "-", "info", cpu].join("\t") + "\n");
        console.log(`fanout peer ${r.peer} ${r.config}: ${Math.round(r.jobs_per_second)} jobs/s (${info}); ${r.machine_cpu_us_per_job} µs of machine CPU per job (${cpu})`);
    ' "$out" "$BENCH_RESULTS"; then
        log "$script $config: could not read its result line from $out"
        failed=$((failed + 1))
    fi
done

if ((failed > 0)); then
    log "$failed of ${#runs[@]} peer runs failed"
    exit 1
fi
