# shellcheck shell=bash
# Shared helpers for rightsd's shell scripts. Source it, don't run it:
#
#   source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
#
# Functions:
#   rightsd::install_deps             install missing Debian packages, then
#                                     rightsd::install_node_deps
#   rightsd::install_node_deps        Node.js >= 20.19 and npm, and `npm ci` for
#                                     the FHIR test peer, the OpenAPI checks and the
#                                     dashboard's browser test (tests/dashboard)
#   rightsd::build [cmake args...]    configure + build into $RIGHTSD_ROOT/${RIGHTSD_BUILD_DIR:-build}; only
#                                     the targets in $RIGHTSD_BUILD_TARGETS (space-separated) if it is set
#   rightsd::pg_init DIR [name=value...]
#                                     new cluster in DIR/data, socket dir DIR/socket
#   rightsd::pg_start DIR PORT        start it, wait (<= 30 s) for pg_isready
#   rightsd::pg_stop DIR              stop it (fast, then by pid as a last resort)
#
# All progress and tool chatter goes to stderr so callers keep stdout clean.
# The functions return non-zero (after printing why) instead of exiting, so
# they behave the same whether or not the caller runs under `set -e`.

if [[ -n "${RIGHTSD_LIB_SOURCED:-}" ]]; then
    return 0
fi
RIGHTSD_LIB_SOURCED=1

set -euo pipefail

# Repository root: this file lives in <root>/scripts/.
RIGHTSD_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
export RIGHTSD_ROOT

RIGHTSD_APT_PACKAGES=(
    build-essential cmake ninja-build ccache pkg-config git
    libcpp-httplib-dev libpqxx-dev libpq-dev nlohmann-json3-dev libcpprest-dev
    libfmt-dev catch2 libsystemd-dev libsodium-dev libtomlplusplus-dev libvalijson-dev
    libhowardhinnant-date-dev tzdata libssl-dev zlib1g-dev libbrotli-dev libtcmalloc-minimal4
    postgresql curl openssl systemd file
    # scripts/bench: the HTTP load generator (pgbench comes with postgresql)
    wrk
    chromium
    # libFuzzer targets (tests/fuzz, build-fuzz/): clang 14 and its compiler-rt, which holds libFuzzer's runtime
    # (libclang_rt.fuzzer-x86_64.a) and the sanitizer runtimes in Debian 12.
    clang-14 libclang-rt-14-dev
)

rightsd::log() { printf '%s\n' "$*" >&2; }
rightsd::err() { printf 'error: %s\n' "$*" >&2; }
rightsd::die() { rightsd::err "$*"; exit 1; }

# ---------------------------------------------------------------------------
# Dependencies
# ---------------------------------------------------------------------------

rightsd::install_deps() {
    rightsd::_install_apt_deps || return 1
    rightsd::install_node_deps || return 1
    rightsd::install_promtool
}

# promtool checks the /metrics exposition in the tests. It comes in Debian's prometheus package, whose postinst
# would set up and start a Prometheus server: the package is downloaded and unpacked into .cache/ instead.
rightsd::install_promtool() {
    local dest="$RIGHTSD_ROOT/.cache/promtool" tmp
    if command -v promtool >/dev/null 2>&1 || [[ -x "$dest/usr/bin/promtool" ]]; then
        return 0
    fi
    rightsd::log "fetching promtool (Debian package prometheus, unpacked into $dest)"
    tmp="$(mktemp -d)"
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
        rightsd::_apt_install_lists_only || true
        if ! (cd "$tmp" && apt-get download prometheus >&2); then
            rm -rf "$tmp"
            rightsd::err "could not download Debian's prometheus package (for promtool)"
            return 1
        fi
    fi
    mkdir -p "$dest"
    dpkg -x "$tmp"/prometheus_*.deb "$dest"
    rm -rf "$tmp"
    [[ -x "$dest/usr/bin/promtool" ]] || { rightsd::err "the prometheus package held no promtool"; return 1; }
}

# apt-get update alone (as root or through sudo), for a machine whose package lists are empty.
rightsd::_apt_install_lists_only() {
    local -a sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || return 1
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update >&2
}

rightsd::_install_apt_deps() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        rightsd::err "dpkg-query not found: this script installs dependencies on Debian/Ubuntu only."
        rightsd::err "install these packages (or their equivalents) by hand: ${RIGHTSD_APT_PACKAGES[*]}"
        return 1
    fi

    local missing=() pkg status
    for pkg in "${RIGHTSD_APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    rightsd::_apt_install "${missing[@]}"
}

# rightsd::_apt_install PKG...: apt-get update + install, through sudo when not root.
rightsd::_apt_install() {
    local -a sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            rightsd::err "missing packages and not root (and no sudo): $*"
            rightsd::err "install them with: apt-get install -y --no-install-recommends $*"
            return 1
        fi
    fi

    rightsd::log "installing missing packages: $*"
    local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    if ! "${apt[@]}" update; then
        rightsd::err "apt-get update failed"
        return 1
    fi
    if ! "${apt[@]}" install -y --no-install-recommends "$@"; then
        rightsd::err "apt-get install failed for: $*"
        return 1
    fi
}

# Node.js runs the FHIR test peer (tests/peers/fhir); @medplum/fhir-router 4.5 wants ^20.19 or >= 22.12.
RIGHTSD_NODE_WANTED="^20.19 or >= 22.12"

# rightsd::_node_version_ok vX.Y.Z -> 0 if that version can run the FHIR peer
rightsd::_node_version_ok() {
    local major minor rest
    IFS=. read -r major minor rest <<<"${1#v}"
    if ! [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]]; then
        return 1
    fi
    if ((major == 20 && minor >= 19)) || ((major == 22 && minor >= 12)) || ((major > 22)); then
        return 0
    fi
    return 1
}

# rightsd::install_node_deps: node and npm (nodejs + npm from apt if there is no node at all), then `npm ci` for
# the FHIR test peer when its node_modules is missing or older than its package-lock.json.
rightsd::install_node_deps() {
    local dir version
    if ! command -v node >/dev/null 2>&1; then
        rightsd::log "node not found; trying the distribution's nodejs and npm"
        if ! rightsd::_apt_install nodejs npm; then
            rightsd::err "cannot install Node.js: the FHIR test peer needs Node.js $RIGHTSD_NODE_WANTED and npm"
            return 1
        fi
        hash -r
    fi
    version="$(node --version 2>/dev/null || true)"
    if ! rightsd::_node_version_ok "$version"; then
        rightsd::err "Node.js ${version:-of unknown version} ($(command -v node)) cannot run the FHIR test peer" \
            "(tests/peers/fhir, @medplum/fhir-router 4.5): it needs Node.js $RIGHTSD_NODE_WANTED."
        rightsd::err "install a newer Node.js with its npm (e.g. from nodejs.org or NodeSource) and run this again"
        return 1
    fi
    if ! command -v npm >/dev/null 2>&1; then
        rightsd::err "npm not found (Node.js $version is installed): install the npm that goes with it"
        return 1
    fi
    rightsd::_npm_ci "$RIGHTSD_ROOT/tests/peers/fhir" "the FHIR test peer's" || return 1
    rightsd::_npm_ci "$RIGHTSD_ROOT/tests/openapi" "the OpenAPI checks' (Redocly CLI)" || return 1
    # playwright-core drives Debian's /usr/bin/chromium (the chromium package above); it downloads no browser.
    rightsd::_npm_ci "$RIGHTSD_ROOT/tests/dashboard" "the dashboard test's (playwright-core, axe-core)" || return 1
}

# rightsd::_npm_ci DIR WHAT: `npm ci` in DIR unless its node_modules is newer than its lock file.
rightsd::_npm_ci() {
    local dir="$1" what="$2"
    if [[ -d "$dir/node_modules" && ! "$dir/package-lock.json" -nt "$dir/node_modules" ]]; then
        return 0
    fi
    rightsd::log "installing $what npm packages (npm ci in $dir)"
    if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --prefix "$dir" >&2; then
        rightsd::err "npm ci failed in $dir"
        return 1
    fi
    # npm ci recreates node_modules, but make its date say "after the lock file" whatever the file system did.
    touch "$dir/node_modules"
}

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------

# rightsd::build [extra cmake configure args...]   (into $RIGHTSD_ROOT/${RIGHTSD_BUILD_DIR:-build}; all targets,
# or only those in $RIGHTSD_BUILD_TARGETS, e.g. "rightsd unit_tests integration_tests")
rightsd::build() {
    local dir="$RIGHTSD_ROOT/${RIGHTSD_BUILD_DIR:-build}"
    local -a args=(-S "$RIGHTSD_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo)
    local -a targets=()
    if [[ -n "${RIGHTSD_BUILD_TARGETS:-}" ]]; then
        read -r -a targets <<<"$RIGHTSD_BUILD_TARGETS"
        targets=(--target "${targets[@]}")
    fi
    if command -v ccache >/dev/null 2>&1; then
        args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    fi
    args+=("$@")

    if ! cmake "${args[@]}"; then
        rightsd::err "cmake configure failed (${args[*]})"
        return 1
    fi
    if ! cmake --build "$dir" -j2 "${targets[@]}"; then
        rightsd::err "build failed"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# PostgreSQL (throwaway clusters listening on a unix socket only)
# ---------------------------------------------------------------------------

# Directory holding initdb/pg_ctl/postgres. Override with RIGHTSD_PG_BINDIR.
rightsd::pg_bindir() {
    local d
    if [[ -n "${RIGHTSD_PG_BINDIR:-}" ]]; then
        printf '%s\n' "$RIGHTSD_PG_BINDIR"
        return 0
    fi
    if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
        printf '%s\n' /usr/lib/postgresql/15/bin
        return 0
    fi
    # Any other installed major version, newest first.
    while IFS= read -r d; do
        if [[ -x "$d/pg_ctl" ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn)
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    rightsd::err "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH); install the 'postgresql' package or set RIGHTSD_PG_BINDIR"
    return 1
}

# Absolute path of a possibly not-yet-existing path.
rightsd::_abspath() { realpath -m -- "$1"; }

# Run a command as the cluster owner: `postgres` via runuser when we are
# root (PostgreSQL refuses to run as root), ourselves otherwise. Runs from /
# so the postgres user never trips over an unreadable working directory.
rightsd::_as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# As root, make sure the postgres user can reach DIR: every ancestor must be
# searchable (x) by it. Adds o+x (search only, no listing) where missing.
rightsd::_pg_ensure_traversable() {
    local dir="$1" d
    ((EUID == 0)) || return 0
    if ! id -u postgres >/dev/null 2>&1; then
        rightsd::err "running as root but there is no 'postgres' user to run PostgreSQL as (install the 'postgresql' package)"
        return 1
    fi
    d="$dir"
    local -a chain=()
    while [[ "$d" != "/" ]]; do
        d="$(dirname "$d")"
        chain=("$d" "${chain[@]}")
    done
    for d in "${chain[@]}"; do
        if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
            rightsd::log "note: granting search permission (o+x) on $d so the postgres user can reach $dir"
            if ! chmod o+x "$d"; then
                rightsd::err "cannot make $d traversable for the postgres user"
                return 1
            fi
        fi
    done
}

# rightsd::pg_init DIR [name=value ...]
# Creates DIR/data (cluster) and DIR/socket; extra settings are appended to
# postgresql.conf. Refuses to touch an existing non-empty DIR/data.
rightsd::pg_init() {
    if (($# < 1)) || [[ -z "$1" ]]; then
        rightsd::err "usage: rightsd::pg_init DIR [name=value ...]"
        return 1
    fi
    local dir bindir setting
    dir="$(rightsd::_abspath "$1")"
    shift
    bindir="$(rightsd::pg_bindir)" || return 1

    for setting in "$@"; do
        if [[ "$setting" != *=* ]]; then
            rightsd::err "pg_init: setting '$setting' is not of the form name=value"
            return 1
        fi
    done
    if [[ -e "$dir/data" ]] && [[ -n "$(ls -A "$dir/data" 2>/dev/null)" ]]; then
        rightsd::err "pg_init: $dir/data already exists and is not empty (already initialized?)"
        return 1
    fi

    mkdir -p "$dir/data" "$dir/socket" || return 1
    : >"$dir/.rightsd-pg-cluster" || return 1
    chmod 0700 "$dir/data" || return 1
    if ((EUID == 0)); then
        rightsd::_pg_ensure_traversable "$dir" || return 1
        chown -R postgres: "$dir" || return 1
    fi

    local locale=C
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale=C.UTF-8
    fi

    rightsd::log "initializing PostgreSQL cluster in $dir/data"
    if ! rightsd::_as_pg "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale="$locale" \
        >"$dir/initdb.log" 2>&1; then
        rightsd::err "initdb failed; its output ($dir/initdb.log):"
        cat "$dir/initdb.log" >&2 || true
        return 1
    fi

    # Socket only: no TCP listener at all. The port given to pg_start only
    # names the socket file (.s.PGSQL.<port>).
    local conf="$dir/data/postgresql.conf" sockdir_q
    sockdir_q="${dir//\'/\'\'}/socket"
    {
        printf '\n# --- added by rightsd scripts/lib.sh ---\n'
        printf "listen_addresses = ''\n"
        printf "unix_socket_directories = '%s'\n" "$sockdir_q"
        for setting in "$@"; do
            printf '%s = %s\n' "${setting%%=*}" "${setting#*=}"
        done
    } | rightsd::_as_pg tee -a "$conf" >/dev/null || {
        rightsd::err "could not write $conf"
        return 1
    }
}

# rightsd::pg_is_running DIR -> 0 if a postmaster runs on DIR/data
rightsd::pg_is_running() {
    local dir bindir
    dir="$(rightsd::_abspath "$1")"
    bindir="$(rightsd::pg_bindir)" || return 1
    [[ -f "$dir/data/PG_VERSION" ]] || return 1
    rightsd::_as_pg "$bindir/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# rightsd::pg_start DIR PORT
rightsd::pg_start() {
    if (($# != 2)) || [[ -z "$1" ]]; then
        rightsd::err "usage: rightsd::pg_start DIR PORT"
        return 1
    fi
    local dir port bindir sockdir
    dir="$(rightsd::_abspath "$1")"
    port="$2"
    if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
        rightsd::err "pg_start: bad port '$port'"
        return 1
    fi
    bindir="$(rightsd::pg_bindir)" || return 1
    sockdir="$dir/socket"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        rightsd::err "pg_start: no cluster in $dir/data (run rightsd::pg_init first)"
        return 1
    fi
    # sun_path is 108 bytes including the terminating NUL.
    local sockfile="$sockdir/.s.PGSQL.$port"
    if ((${#sockfile} > 107)); then
        rightsd::err "pg_start: socket path too long for a unix socket (${#sockfile} > 107 bytes): $sockfile"
        return 1
    fi
    mkdir -p "$sockdir" || return 1
    if ((EUID == 0)); then
        rightsd::_pg_ensure_traversable "$dir" || return 1
        chown postgres: "$dir" "$sockdir" || return 1
    fi

    local log="$dir/postgres.log"
    if rightsd::pg_is_running "$dir"; then
        rightsd::log "PostgreSQL already running on $dir/data; waiting for it to accept connections"
    else
        rightsd::log "starting PostgreSQL ($dir/data, socket $sockdir, port $port, log $log)"
        # The socket directory comes from postgresql.conf (see pg_init).
        if ! rightsd::_as_pg "$bindir/pg_ctl" start -W -D "$dir/data" -l "$log" -o "-p $port" >&2; then
            rightsd::err "pg_ctl start failed; last lines of $log:"
            tail -n 30 "$log" >&2 2>/dev/null || true
            return 1
        fi
    fi

    local isready="$bindir/pg_isready"
    [[ -x "$isready" ]] || isready="pg_isready"
    local start now
    start="$(date +%s)"
    while :; do
        if "$isready" -q -h "$sockdir" -p "$port" -U postgres -d postgres -t 2 >/dev/null 2>&1; then
            return 0
        fi
        now="$(date +%s)"
        # The postmaster writes its pid file almost at once; if after a couple
        # of seconds it is not running, it died: no point waiting 30 s.
        if ((now - start >= 2)) && ! rightsd::pg_is_running "$dir"; then
            rightsd::err "PostgreSQL exited during startup; last lines of $log:"
            tail -n 30 "$log" >&2 2>/dev/null || true
            return 1
        fi
        if ((now - start >= 30)); then
            rightsd::err "PostgreSQL not ready after 30 s (pg_isready -h $sockdir -p $port); last lines of $log:"
            tail -n 30 "$log" >&2 2>/dev/null || true
            rightsd::pg_stop "$dir" || true
            return 1
        fi
        sleep 0.2
    done
}

# True if PID is a live (non-zombie) process.
rightsd::_pid_alive() {
    local pid="$1" stat
    kill -0 "$pid" 2>/dev/null || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != "Z" ]]
}

# rightsd::pg_stop DIR
# Fast shutdown through pg_ctl; if that fails, signal the postmaster whose
# pid is on the first line of DIR/data/postmaster.pid. No-op if not running.
rightsd::pg_stop() {
    if (($# != 1)) || [[ -z "$1" ]]; then
        rightsd::err "usage: rightsd::pg_stop DIR"
        return 1
    fi
    local dir bindir pidfile pid
    dir="$(rightsd::_abspath "$1")"
    pidfile="$dir/data/postmaster.pid"
    if [[ ! -f "$pidfile" ]]; then
        return 0
    fi
    bindir="$(rightsd::pg_bindir)" || return 1

    rightsd::log "stopping PostgreSQL ($dir/data)"
    if rightsd::_as_pg "$bindir/pg_ctl" stop -m fast -w -t 30 -D "$dir/data" >&2; then
        return 0
    fi

    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    if ! [[ "$pid" =~ ^[0-9]+$ ]]; then
        rightsd::err "pg_ctl stop failed and $pidfile holds no pid"
        return 1
    fi
    if ! rightsd::_pid_alive "$pid"; then
        # Stale pid file from a crashed server; PostgreSQL cleans it up on the
        # next start, but remove it so nobody thinks it's still running.
        rm -f "$pidfile"
        return 0
    fi
    local comm
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [[ "$comm" != postgres* ]]; then
        rightsd::err "pg_ctl stop failed; pid $pid from $pidfile is '$comm', not postgres: not killing it"
        return 1
    fi

    local sig i
    for sig in QUIT KILL; do
        rightsd::log "pg_ctl stop failed; sending SIG$sig to postmaster $pid"
        kill "-$sig" "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            rightsd::_pid_alive "$pid" || break
            sleep 0.2
        done
        if ! rightsd::_pid_alive "$pid"; then
            rm -f "$pidfile"
            return 0
        fi
    done
    rightsd::err "could not stop postmaster $pid"
    return 1
}

# rightsd::pg_psql DIR PORT [psql args...]: psql as postgres over the socket.
rightsd::pg_psql() {
    local dir port bindir psql
    dir="$(rightsd::_abspath "$1")"
    port="$2"
    shift 2
    bindir="$(rightsd::pg_bindir)" || return 1
    psql="$bindir/psql"
    [[ -x "$psql" ]] || psql="psql"
    "$psql" -X -v ON_ERROR_STOP=1 -h "$dir/socket" -p "$port" -U postgres "$@"
}
