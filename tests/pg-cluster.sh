#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the ctest fixture.
#
#   tests/pg-cluster.sh start DIR PORT   wipe DIR (stopping any cluster in it),
#                                        init DIR/data, start it on DIR/socket
#   tests/pg-cluster.sh stop  DIR PORT   stop it and remove DIR
#   tests/pg-cluster.sh restart DIR PORT [SECONDS_DOWN]
#                                        pg_ctl restart -m fast; with SECONDS_DOWN, a fast stop, that long
#                                        with no server, then a start (an outage a client can observe)
#
# stdout carries exactly one line on a successful start:
#   postgres ready on DIR/socket port PORT
# Everything else goes to stderr (the server log is DIR/postgres.log).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../scripts/lib.sh"

usage() {
    echo "usage: $0 start|stop DIR PORT" >&2
    exit 2
}

(($# == 3)) || { (($# == 4)) && [[ "$1" == restart ]]; } || usage
action="$1"
[[ -n "$2" ]] || usage
dir="$(realpath -m -- "$2")"
port="$3"
[[ "$port" =~ ^[0-9]+$ ]] || rightsd::die "PORT must be a number, got '$port'"

# Refuse to wipe anything that is not obviously ours.
safe_to_wipe() {
    local d="$1"
    case "$d" in
    / | /bin | /boot | /dev | /etc | /home | /lib* | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /work)
        return 1 ;;
    esac
    [[ "$d" != "$RIGHTSD_ROOT" && "$d" != "${HOME:-/root}" ]] || return 1
    [[ -e "$d" ]] || return 0
    [[ -d "$d" ]] || return 1
    [[ -z "$(ls -A "$d")" || -e "$d/.rightsd-pg-cluster" || -f "$d/data/PG_VERSION" ]]
}

wipe() {
    local d="$1"
    [[ -e "$d" ]] || return 0
    safe_to_wipe "$d" || rightsd::die "refusing to remove $d: it does not look like a cluster made by $0"
    rightsd::pg_stop "$d" || rightsd::die "could not stop the cluster in $d"
    rm -rf -- "$d"
}

case "$action" in
start)
    safe_to_wipe "$dir" || rightsd::die "refusing to use $dir: it exists and does not look like a cluster made by $0"
    wipe "$dir"
    rightsd::pg_init "$dir" max_connections=200 shared_buffers=128MB >/dev/null
    rightsd::pg_start "$dir" "$port" >/dev/null
    echo "postgres ready on $dir/socket port $port"
    ;;
stop)
    wipe "$dir"
    ;;
restart)
    [[ -f "$dir/.rightsd-pg-cluster" ]] || rightsd::die "no cluster made by $0 in $dir"
    down="${4:-0}"
    [[ "$down" =~ ^[0-9]+(\.[0-9]+)?$ ]] || rightsd::die "SECONDS_DOWN must be a number, got '$down'"
    if [[ "$down" == 0 ]]; then
        rightsd::_as_pg "$(rightsd::pg_bindir)/pg_ctl" restart -m fast -w -t 30 -D "$dir/data" -l "$dir/postgres.log" >&2
    else
        rightsd::pg_stop "$dir"
        sleep "$down"
    fi
    rightsd::pg_start "$dir" "$port" >/dev/null
    echo "postgres ready on $dir/socket port $port"
    ;;
*)
    usage
    ;;
esac
