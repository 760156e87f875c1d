#!/usr/bin/env bash
# Fails when systemd/rightsd.service loses a hardening line or its exposure rating rises above 2.0 ("OK").
#   tests/systemd/hardening_test.sh path/to/rightsd.service
set -euo pipefail

unit="${1:?usage: hardening_test.sh UNIT_FILE}"
[[ -f "$unit" ]] || { echo "no unit file at $unit" >&2; exit 1; }

# Every line the rating relies on, and those the rating does not score but the service needs (Type=notify,
# WatchdogSec=, LoadCredential=, the dedicated user).
required=(
    "Type=notify" "NotifyAccess=main" "Restart=on-failure" "WatchdogSec=20s" "User=rightsd" "Group=rightsd"
    "LoadCredential=pii.key:/etc/rightsd/credentials/pii.key" "LoadCredential=tokens:/etc/rightsd/credentials/tokens"
    "UMask=0077" "NoNewPrivileges=yes" "CapabilityBoundingSet=" "AmbientCapabilities=" "PrivateUsers=yes"
    "PrivateTmp=yes" "PrivateDevices=yes" "DevicePolicy=closed" "ProtectSystem=strict" "ProtectHome=yes"
    "ProtectKernelTunables=yes" "ProtectKernelModules=yes" "ProtectKernelLogs=yes" "ProtectControlGroups=yes"
    "ProtectClock=yes" "ProtectHostname=yes" "ProtectProc=invisible" "ProcSubset=pid"
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" "RestrictNamespaces=yes" "RestrictRealtime=yes"
    "RestrictSUIDSGID=yes" "LockPersonality=yes" "MemoryDenyWriteExecute=yes" "RemoveIPC=yes" "PrivateMounts=yes"
    "KeyringMode=private" "SystemCallArchitectures=native" "SystemCallFilter=@system-service"
    "SystemCallFilter=~@privileged @resources" "SystemCallErrorNumber=EPERM"
)
missing=0
for line in "${required[@]}"; do
    if ! grep -qxF -- "$line" "$unit"; then
        echo "missing from $unit: $line" >&2
        missing=1
    fi
done

command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (Debian package systemd)" >&2; exit 1; }
# --offline reads the file as systemd would, without a running manager (systemd >= 250).
out="$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1)" || true
score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)"
if [[ -z "$score" ]]; then
    echo "systemd-analyze gave no rating:" >&2
    echo "$out" >&2
    exit 1
fi
echo "exposure rating of $(basename "$unit"): $score"
if ! awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
    echo "the rating $score is above 2.0; what raised it:" >&2
    grep '✗' <<<"$out" >&2 || true
    exit 1
fi
exit "$missing"
