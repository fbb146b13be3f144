#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz_webhook, fuzz_token) with ASan + UBSan.
#   test/fuzz/build.sh [BUILD_DIR]        (default /tmp/attendance-fuzz)
# Needs clang++ (Debian: clang) and libFuzzer's runtime (Debian: libclang-rt-14-dev),
# plus nlohmann-json3-dev and libssl-dev like the rest of the project.
# Environment: CXX (default clang++), JOBS (parallel compiles, default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-/tmp/attendance-fuzz}
CXX=${CXX:-clang++}
JOBS=${JOBS:-2}
mkdir -p "$OUT/obj"

FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer
       "-fsanitize=fuzzer,address,undefined" -fno-sanitize-recover=undefined
       -Wall -Wextra -Werror -I "$ROOT/src" -I "$ROOT/test/fuzz")
CORE=(webhook token person)
TARGETS=(fuzz_webhook fuzz_token)

command -v "$CXX" >/dev/null || { echo "build.sh: $CXX not found (apt-get install clang)" >&2; exit 1; }

# Compile every translation unit (at most $JOBS at a time), then link each target.
compile() {  # source object
  "$CXX" "${FLAGS[@]}" -c "$1" -o "$2.tmp" && mv "$2.tmp" "$2"
}
pids=()
sources=()
for c in "${CORE[@]}"; do sources+=("$ROOT/src/core/$c.cpp:$OUT/obj/core_$c.o"); done
for t in "${TARGETS[@]}"; do sources+=("$ROOT/test/fuzz/$t.cpp:$OUT/obj/$t.o"); done
status=0
for pair in "${sources[@]}"; do
  src=${pair%%:*} obj=${pair#*:}
  compile "$src" "$obj" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] || { echo "build.sh: compilation failed" >&2; exit 1; }

core_objs=()
for c in "${CORE[@]}"; do core_objs+=("$OUT/obj/core_$c.o"); done
for t in "${TARGETS[@]}"; do
  "$CXX" "${FLAGS[@]}" "$OUT/obj/$t.o" "${core_objs[@]}" -lcrypto -o "$OUT/$t" || {
    echo "build.sh: linking $t failed (libFuzzer needs libclang-rt-14-dev)" >&2
    exit 1
  }
done
echo "built ${TARGETS[*]} in $OUT"
