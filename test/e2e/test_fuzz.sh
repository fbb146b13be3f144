#!/usr/bin/env bash
# Short fuzzing run for scripts/test.sh: builds the libFuzzer targets of test/fuzz into
# a temporary directory, replays the saved crash inputs of test/fuzz/crashes/<target>/
# (each must no longer fail), then runs each target for ATTENDANCE_FUZZ_SECONDS
# (default 30) on a copy of its seed corpus. Prints one line per target:
#   PASS fuzz_webhook (N runs, cov X)
#   FAIL fuzz_webhook: <why> (input: <path of the input>; log: <log>)
# and exits non-zero if any target failed. On failure the work directory (logs,
# inputs, binaries) is kept and named; otherwise it is removed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${ATTENDANCE_FUZZ_SECONDS:-30}
TARGETS=(fuzz_webhook fuzz_token)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attendance-fuzz-test.XXXXXX")
LIMITS=(-timeout=10 -rss_limit_mb=2048)

# Why a libFuzzer run failed, from its log and exit status.
why_failed() {  # log rc
  local log=$1 rc=$2 line
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "did not stop in time (killed)"
  elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
    echo "timeout (one input ran longer than 10 s)"
  elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then
    echo "out of memory (over 2048 MB)"
  elif grep -q 'ERROR: LeakSanitizer' "$log"; then
    echo "memory leak"
  elif line=$(grep -m1 'PROPERTY VIOLATED' "$log"); then
    echo "${line#\*\*\* }" | cut -c1-300
  elif line=$(grep -m1 -E 'runtime error:' "$log"); then
    echo "undefined behaviour: ${line#*runtime error: } at ${line%%: runtime error*}" | cut -c1-300
  elif line=$(grep -m1 -E 'ERROR: AddressSanitizer: [a-z-]+' "$log"); then
    echo "$line" | grep -Eo 'AddressSanitizer: [a-z-]+( on [a-z]+ [a-z]+)?'
  elif grep -q 'deadly signal' "$log"; then
    echo "crash ($(grep -m1 -E '==[0-9]+==' "$log" | cut -c1-150))"
  else
    echo "exit status $rc"
  fi
}

if ! "$ROOT/test/fuzz/build.sh" "$WORK/build" >"$WORK/build.log" 2>&1; then
  tail -20 "$WORK/build.log"
  why=$(grep -m1 -E 'error|not found|failed' "$WORK/build.log" | cut -c1-200)
  for t in "${TARGETS[@]}"; do echo "FAIL $t: build failed: ${why:-see $WORK/build.log}"; done
  exit 1
fi

failed=0
for t in "${TARGETS[@]}"; do
  name=${t#fuzz_}  # fuzz_webhook -> webhook
  bin="$WORK/build/$t" corpus="$WORK/corpus-$name" artifacts="$WORK/artifacts-$name"
  mkdir -p "$corpus" "$artifacts"

  # 1. Saved crash inputs: each one alone, so every still-failing input is named.
  regress=()
  for input in "$ROOT/test/fuzz/crashes/$name"/*; do
    [ -f "$input" ] || continue
    case "$input" in *.md) continue ;; esac
    log="$WORK/replay-$name-$(basename "$input").log"
    timeout -k 10 120 "$bin" "${LIMITS[@]}" -artifact_prefix="$artifacts/" "$input" >"$log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || regress+=("${input#"$ROOT"/} ($(why_failed "$log" $rc))")
  done

  # 2. Fuzzing on a copy of the seed corpus.
  cp -R "$ROOT/test/fuzz/corpus/$name/." "$corpus/"
  dict=()
  [ -f "$ROOT/test/fuzz/$name.dict" ] && dict=("-dict=$ROOT/test/fuzz/$name.dict")
  log="$WORK/$t.log"
  # libFuzzer stops by itself; the outer timeout only guards against a hung process.
  timeout -k 10 $((SECS * 2 + 120)) "$bin" "${dict[@]}" "${LIMITS[@]}" \
    -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$artifacts/fuzz-" \
    "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -1)
  cov=$(grep -Eo ' cov: [0-9]+' "$log" | grep -Eo '[0-9]+' | tail -1)
  input=$(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/^Test unit written to //')
  [ -n "$input" ] || input=$(find "$artifacts" -type f -name 'fuzz-*' | head -1)

  if [ $rc -ne 0 ] || [ -n "$input" ]; then
    failed=1
    more=""
    [ ${#regress[@]} -gt 0 ] && more="; also ${#regress[@]} saved crash input(s) still fail"
    echo "FAIL $t: $(why_failed "$log" $rc) (input: ${input:-none}; log: $log)$more"
  elif [ ${#regress[@]} -gt 0 ]; then
    failed=1
    list=$(printf '%s; ' "${regress[@]}")
    echo "FAIL $t: saved crash input(s) still fail: ${list%; } [fuzzing itself: ${runs:-0} runs, cov ${cov:-0}, no new failure]"
  else
    echo "PASS $t (${runs:-0} runs, cov ${cov:-0})"
  fi
done

if [ $failed -eq 0 ]; then
  rm -rf "$WORK"
else
  echo "fuzzing work directory kept: $WORK (reproduce: $WORK/build/<target> <input>)"
fi
exit $failed
