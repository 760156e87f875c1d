# Helpers shared by the engine bench cases (fanout.sh, slow.sh): a database of their own, a daemon config, the
# daemon started and stopped by pid. Minimal on purpose: tests/bench/common.sh was not on main when these were
# written; once it is, these should give way to its helpers.
#
# Needs BENCH_BUILD, BENCH_PGDIR, BENCH_PGPORT, BENCH_WORK. Sourced; defines bench_* functions and BENCH_PIDS.

BENCH_PIDS=()
BENCH_DB=""

bench_psql() {
    psql -X -q -v ON_ERROR_STOP=1 -h "$BENCH_PGDIR/socket" -p "$BENCH_PGPORT" -U postgres "$@"
}

# bench_cleanup: stops every process this case started (by pid) and drops its database.
bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [[ -n "$BENCH_DB" ]]; then
        bench_psql -d postgres -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
}

# bench_setup NAME: a scratch dir $BENCH_DIR with key, tokens and holidays, and an empty migrated-later database.
bench_setup() {
    local name="$1"
    BENCH_DIR="$BENCH_WORK/$name"
    rm -rf "$BENCH_DIR"
    mkdir -p "$BENCH_DIR"
    BENCH_DB="rightsd_bench_${name}_$$"
    bench_psql -d postgres -c "CREATE DATABASE \"$BENCH_DB\"" >/dev/null
    "$BENCH_BUILD/rightsd" keygen --out "$BENCH_DIR/pii.key" >/dev/null 2>&1
    "$BENCH_BUILD/rightsd" token new --role admin --name bench-admin |
        sed -n 's/^tokens-file line: //p' >"$BENCH_DIR/tokens"
    chmod 600 "$BENCH_DIR/tokens"
    BENCH_TOKEN="$("$BENCH_BUILD/rightsd" token new --role admin --name bench-unused | sed -n 's/^token: //p')"
    printf '# none\n' >"$BENCH_DIR/holidays.txt"
}

# bench_config EXTRA_TOML: writes $BENCH_DIR/rightsd.toml (loopback only) and migrates the database.
bench_config() {
    cat >"$BENCH_DIR/rightsd.toml" <<EOF
[http]
listen = "127.0.0.1:0"
threads = 4
[database]
url = "host=$BENCH_PGDIR/socket port=$BENCH_PGPORT user=postgres dbname=$BENCH_DB"
pool_size = 8
acquire_timeout_ms = 5000
[calendar]
timezone = "America/Los_Angeles"
holidays_file = "holidays.txt"
business_days = ["mon", "tue", "wed", "thu", "fri"]
at_risk_days = 10
[auth]
tokens_file = "tokens"
[crypto]
key_file = "pii.key"
[outbound]
allowed_hosts = ["http://127.0.0.1:*"]
$1
EOF
    "$BENCH_BUILD/rightsd" migrate --config "$BENCH_DIR/rightsd.toml" >/dev/null 2>"$BENCH_DIR/migrate.log" || { cat "$BENCH_DIR/migrate.log" >&2; return 1; }
}

# bench_start_daemon LOG: starts `rightsd serve` in the background (pid in BENCH_DAEMON_PID) and waits until its
# dispatcher has started (30 s at most).
bench_start_daemon() {
    local log="$1"
    "$BENCH_BUILD/rightsd" serve --config "$BENCH_DIR/rightsd.toml" >"$log" 2>&1 &
    BENCH_DAEMON_PID=$!
    BENCH_PIDS+=("$BENCH_DAEMON_PID")
    for _ in $(seq 1 300); do
        grep -q "listening on" "$log" 2>/dev/null && return 0
        kill -0 "$BENCH_DAEMON_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "daemon did not start; log:" >&2
    tail -20 "$log" >&2
    return 1
}

bench_stop_daemon() {
    local pid="$BENCH_DAEMON_PID" kept=()
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
    BENCH_PIDS=("${kept[@]}")
}

# bench_result CASE METRIC VALUE UNIT REFERENCE GOAL VERDICT NOTE
bench_result() {
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$BENCH_RESULTS"
    printf '%s\n' "$*" >&2
}

# Seeds requests (delete, in progress, due in 45 days) each with one pending task per system, all due now. Written
# as the intake writes them (Store::Create + InsertTasks) minus the identities: the bench's key is the daemon's,
# and identity seals are made by the daemon only; the noop connector reads none.
bench_seed_function() {
    bench_psql -d "$BENCH_DB" <<'SQL'
CREATE FUNCTION bench_seed(n integer, systems text[]) RETURNS void LANGUAGE sql AS $$
    WITH r AS (
        INSERT INTO requests (id, type, status, received_at, received_on, channel, acknowledge_by, respond_by,
                              acknowledged_on, acknowledged_at, verified_at, sla_state, created_by)
        SELECT gen_random_uuid(), 'delete', 'in_progress', now(), current_date, 'api', current_date + 10,
               current_date + 45, current_date, now(), now(), 'on_track', 'bench'
        FROM generate_series(1, n)
        RETURNING id, respond_by)
    INSERT INTO tasks (id, request_id, system, connector, action, state, respond_by, max_attempts)
    SELECT gen_random_uuid(), r.id, s, 'noop', 'delete', 'pending', r.respond_by, 5
    FROM r CROSS JOIN unnest(systems) AS s;
$$;
SQL
}
