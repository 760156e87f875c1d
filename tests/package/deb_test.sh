#!/usr/bin/env bash
# Builds the .deb with cpack from a configured build tree, unpacks it into a scratch root with dpkg -x and checks
# what an administrator gets: the binary, the unit, the sysusers/tmpfiles files, the example config, the migrations
# and the docs, and package metadata that pulls in the shared libraries.
#   tests/package/deb_test.sh BUILD_DIR
set -euo pipefail

build="${1:?usage: deb_test.sh BUILD_DIR}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/rightsd-deb.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

(cd "$build" && cpack -G DEB -B "$scratch/out" >"$scratch/cpack.log" 2>&1) || { cat "$scratch/cpack.log" >&2; exit 1; }
deb="$(ls "$scratch"/out/rightsd_*_amd64.deb 2>/dev/null | head -n 1)"
[[ -n "$deb" ]] || { echo "cpack made no rightsd_*.deb:" >&2; ls -R "$scratch/out" >&2; exit 1; }

fail=0
info="$(dpkg-deb -I "$deb")"
for field in "Package: rightsd" "Section: admin"; do
    grep -qF " $field" <<<"$info" || { echo "control lacks '$field'" >&2; fail=1; }
done
for dep in libpqxx-6.4 libsodium23 libcpprest2.10 systemd tzdata; do
    grep -q "^ Depends:.*$dep" <<<"$info" || { echo "Depends lacks $dep" >&2; fail=1; }
done
for script in postinst prerm postrm; do
    grep -qE "^ +[0-9]+ bytes.* $script " <<<"$info" || { echo "no $script maintainer script" >&2; fail=1; }
done

root="$scratch/root"
dpkg -x "$deb" "$root"
for f in usr/bin/rightsd usr/lib/systemd/system/rightsd.service usr/lib/systemd/system/rightsd-purge.service \
    usr/lib/systemd/system/rightsd-purge.timer usr/lib/sysusers.d/rightsd.conf \
    usr/lib/tmpfiles.d/rightsd.conf usr/share/rightsd/holidays-ca.txt usr/share/rightsd/migrations/0001_core.sql \
    usr/share/rightsd/migrations/0002_tasks.sql usr/share/doc/rightsd/rightsd.example.toml \
    usr/share/doc/rightsd/operations.md usr/share/doc/rightsd/api.md usr/share/doc/rightsd/README.md; do
    [[ -f "$root/$f" ]] || { echo "the package does not install /$f" >&2; fail=1; }
done
[[ -x "$root/usr/bin/rightsd" ]] || { echo "/usr/bin/rightsd is not executable" >&2; fail=1; }
# Every migration of the source tree is in the package.
for m in "$(dirname "$0")"/../../migrations/*.sql; do
    [[ -f "$root/usr/share/rightsd/migrations/$(basename "$m")" ]] || { echo "missing migration $(basename "$m")" >&2; fail=1; }
done
# The unit starts the binary the package installs.
grep -qx 'ExecStart=/usr/bin/rightsd serve --config /etc/rightsd/rightsd.toml' "$root/usr/lib/systemd/system/rightsd.service" ||
    { echo "the unit's ExecStart does not run /usr/bin/rightsd" >&2; fail=1; }
# The installed binary runs (stripped, linked against the system's libraries) and knows its commands.
set +e
usage="$("$root/usr/bin/rightsd" 2>&1)"
set -e
grep -q "serve" <<<"$usage" || { echo "the installed binary did not print its usage: $usage" >&2; fail=1; }
if file "$root/usr/bin/rightsd" | grep -q "not stripped"; then
    echo "the installed binary is not stripped" >&2
    fail=1
fi
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"
exit "$fail"
