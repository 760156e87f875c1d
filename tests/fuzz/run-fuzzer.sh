#!/usr/bin/env bash
# run-fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS
# Runs a libFuzzer target for SECONDS on a fresh copy of its committed seed corpus (the seeds are never written to)
# and fails on any crash, leak, timeout, out-of-memory or sanitizer report. New inputs and a crash reproducer, if
# any, stay in WORK_DIR; a reproducer worth keeping goes into tests/fuzz/corpus/<target>/ as a regression input.
set -euo pipefail
if (($# != 4)); then
    echo "usage: $0 FUZZER SEED_DIR WORK_DIR SECONDS" >&2
    exit 2
fi
fuzzer="$1" seeds="$2" work="$3" seconds="$4"
if [[ ! -d "$seeds" ]] || [[ -z "$(ls -A "$seeds")" ]]; then
    echo "no seed corpus in $seeds" >&2
    exit 1
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/"
log="$work/fuzz.log"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
rc=0
# -timeout: one input taking longer than 10 s is a hang; -rss_limit_mb/-malloc_limit_mb: a memory blow-up is a
# finding, not a reason to take the machine down.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1 || rc=$?
execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
if ((rc != 0)) || grep -qE '^(==[0-9]+==ERROR|SUMMARY: (Address|Undefined|Leak)Sanitizer)|runtime error:' "$log"; then
    echo "fuzzer failed (exit $rc) after ${execs:-?} executions; last lines of $log:" >&2
    tail -n 60 "$log" >&2
    ls -l "$work/artifacts" >&2 || true
    exit 1
fi
echo "$(basename "$fuzzer"): ${execs:-?} executions in ${seconds} s, clean ($(ls "$work/corpus" | wc -l) corpus inputs)"
