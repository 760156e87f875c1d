#!/usr/bin/env bash
# The suite's last word on logs: every daemon log the integration tests produced (the harness keeps a copy of each in
# DIR) is scanned for identity values -- e-mail addresses, phone numbers and MRNs in the shapes the tests plant --
# and for bearer tokens. The daemon must never log them (docs/operations.md, "Logs"); one hit fails the suite.
#   tests/log_canary.sh DIR
set -euo pipefail

dir="${1:?usage: log_canary.sh DIR}"
if [[ ! -d "$dir" ]] || [[ -z "$(ls -A "$dir")" ]]; then
    # A selection of tests (ctest -R) that started no daemon leaves nothing to scan.
    echo "no daemon logs in $dir: the selected tests started no daemon"
    exit 0
fi
patterns=(
    '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}'  # e-mail addresses
    '\(?[0-9]{3}\)?[ .-][0-9]{3}-[0-9]{4}'                               # US phone numbers as the tests write them
    'MRN-[0-9]+'                                                         # the tests' medical record numbers
    'rtd_[A-Za-z0-9_-]{20,}'                                             # rightsd bearer tokens
)
hits=0
for p in "${patterns[@]}"; do
    if grep -rnE -- "$p" "$dir" >/tmp/log-canary.$$ 2>/dev/null; then
        echo "identity-shaped values in daemon logs (pattern $p):" >&2
        head -n 20 /tmp/log-canary.$$ >&2
        hits=1
    fi
done
rm -f /tmp/log-canary.$$
echo "$(ls "$dir" | wc -l) daemon logs, $(cat "$dir"/* | wc -l) lines scanned"
exit "$hits"
