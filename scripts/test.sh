#!/usr/bin/env bash
# Runs every test suite and ends with one line "N passed, N failed":
#   clang-format, unit (GoogleTest), unit under ASan+UBSan, unit as a Release build, pg_regress,
#   isolation, Citus' install (scripts/citus.sh: built from source the first time, about
#   3 minutes), end-to-end (test/e2e/test_*; test_ha.py runs its own pg_auto_failover
#   formation on free ports and takes about 1.5 minutes; test_citus.py a coordinator and
#   two workers; test_packages.sh and
#   test_readme.sh install the Debian packages system-wide for a while and leave the
#   machine's packages as they found them).
# Works on a fresh Debian 12 machine as root: installs what it needs, builds, starts a
# throwaway PostgreSQL as an unprivileged user, and removes it afterwards.
# Environment (all optional):
#   ATTENDANCE_TEST_PORT     port of the throwaway cluster (default: a free port, picked
#                            by a bind probe and retried if it is taken meanwhile)
#   ATTENDANCE_KEEP_LOGS=1   keep the log directory after a green run too
#   ATTENDANCE_FUZZ_SECONDS  length of each fuzz target's run (test/e2e/test_fuzz.sh)
# The logs go to a temporary directory that is removed after a green run and kept (and
# named on the last lines) after a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="${PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

PASSED=0
FAILED=0
FAILED_SUITES=()
count() {  # suite passed failed
  PASSED=$((PASSED + $2))
  FAILED=$((FAILED + $3))
  [ "$3" -gt 0 ] && FAILED_SUITES+=("$1")
  printf '== %-22s %d passed, %d failed\n' "$1" "$2" "$3"
}
gtest_counts() {  # log -> "passed failed"
  local p f
  p=$(grep -Eo '^\[  PASSED  \] [0-9]+' "$1" | grep -Eo '[0-9]+$' || true)
  f=$(grep -Eo '^\[  FAILED  \] [0-9]+ test' "$1" | grep -Eo '[0-9]+' | head -1 || true)
  echo "${p:-0} ${f:-0}"
}

LOGDIR=$(mktemp -d /tmp/attendance-test-logs.XXXXXX)
chmod 755 "$LOGDIR"
PGDIR=
# On exit: stop the cluster; keep the logs (and the server's log) only after a failure.
finish() {
  local rc=$?
  if [ -n "$PGDIR" ]; then
    pg_stop "$PGDIR"
    cp "$PGDIR/server.log" "$LOGDIR/server.log" 2>/dev/null
    rm -rf "$PGDIR"
  fi
  if [ $rc -eq 0 ] && [ "${ATTENDANCE_KEEP_LOGS:-0}" != 1 ]; then rm -rf "$LOGDIR"; fi
}
trap finish EXIT
summary() {  # the last lines: where the logs are kept (if they are), then the counts
  if [ "$FAILED" -gt 0 ] || [ "${ATTENDANCE_KEEP_LOGS:-0}" = 1 ]; then echo "logs kept in $LOGDIR"; fi
  echo "$PASSED passed, $FAILED failed"
}

# ---- 0. formatting: every C++ file as clang-format (.clang-format) writes it ------------
echo "== clang-format"
if find src test bench -name '*.cpp' -o -name '*.hpp' | sort |
   xargs clang-format --dry-run -Werror >"$LOGDIR/format.log" 2>&1; then
  count clang-format 1 0
else
  grep 'error:' "$LOGDIR/format.log" | cut -d: -f1 | sort -u
  count clang-format 0 1
fi

# ---- 1. unit tests (pure core, no server) ----------------------------------------
echo "== building the core, unit tests and programs (CMake)"
if cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOGDIR/cmake.log" 2>&1 &&
   cmake --build build -j2 >>"$LOGDIR/cmake.log" 2>&1; then
  build/attendance_unit_tests >"$LOGDIR/unit.log" 2>&1
  read -r p f < <(gtest_counts "$LOGDIR/unit.log")
  [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1
  count unit "$p" "$f"
else
  tail -40 "$LOGDIR/cmake.log"
  count unit-build 0 1
fi
grep -E '^\[  FAILED  \] [A-Za-z]' "$LOGDIR/unit.log" 2>/dev/null | sort -u

echo "== building the unit tests with AddressSanitizer and UndefinedBehaviorSanitizer"
if cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DATTENDANCE_SANITIZE=ON -DATTENDANCE_BUILD_PROGRAMS=OFF \
     >"$LOGDIR/cmake-asan.log" 2>&1 &&
   cmake --build build-asan -j2 --target attendance_unit_tests >>"$LOGDIR/cmake-asan.log" 2>&1; then
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/attendance_unit_tests >"$LOGDIR/unit-asan.log" 2>&1
  rc=$?
  read -r p f < <(gtest_counts "$LOGDIR/unit-asan.log")
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; tail -30 "$LOGDIR/unit-asan.log"; fi
  count unit-asan-ubsan "$p" "$f"
else
  tail -40 "$LOGDIR/cmake-asan.log"
  count unit-asan-build 0 1
fi

# Release (-O3) must build too: GCC reports warnings at -O3 that -O2 never sees, and
# -Werror makes them errors. Only the unit tests run again; the programs are compiled.
echo "== building and running the unit tests and programs as a Release build"
if cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >"$LOGDIR/cmake-release.log" 2>&1 &&
   cmake --build build-release -j2 >>"$LOGDIR/cmake-release.log" 2>&1; then
  build-release/attendance_unit_tests >"$LOGDIR/unit-release.log" 2>&1
  read -r p f < <(gtest_counts "$LOGDIR/unit-release.log")
  [ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1
  count unit-release "$p" "$f"
else
  grep -E 'error' "$LOGDIR/cmake-release.log" | head -20
  count release-build 0 1
fi

# ---- 2. the extension, against a throwaway cluster ----------------------------------
echo "== building and installing the extension (PGXS)"
if ! { make -j2 >"$LOGDIR/make.log" 2>&1 && make install >>"$LOGDIR/make.log" 2>&1; }; then
  tail -40 "$LOGDIR/make.log"
  count extension-build 0 1
  summary
  exit 1
fi

. scripts/pg.sh
PGDIR=$(mktemp -d /tmp/attendance-test-pg.XXXXXX)
# attendance.verify_calculation: every calculation that reads what the fold stored is
# checked against a derivation from the log, in every suite below.
if ! pg_start "$PGDIR" "${ATTENDANCE_TEST_PORT:-}" \
     "attendance.calculation_delay = '2s'" \
     "attendance.webhook_log_level = 'debug1'" \
     "attendance.verify_calculation = on"; then
  count postgres-start 0 1
  summary
  exit 1
fi
echo "== throwaway PostgreSQL on port $PGPORT (socket directory $PGDIR)"
export ATTENDANCE_PGDIR="$PGDIR"
# The end-to-end tests' temporary files (proxy logs, scratch files) go under the log
# directory, so that a green run leaves nothing behind.
export TMPDIR="$LOGDIR/tmp"
mkdir -p "$TMPDIR"
chmod 1777 "$TMPDIR"
# The Debian packages are built once per run: test_packages.sh builds them here, and
# test_readme.sh's scripts/deb.sh --install finds them built from this very source.
export ATTENDANCE_DEB_DIR="${ATTENDANCE_DEB_DIR:-$LOGDIR/dist}"

echo "== pg_regress"
rm -rf results regression.diffs regression.out
make installcheck >"$LOGDIR/regress.log" 2>&1
p=$(grep -cE '^(test | +)?[a-z_0-9]+ +\.\.\. ok' "$LOGDIR/regress.log")
f=$(grep -cE '\.\.\. FAILED' "$LOGDIR/regress.log")
[ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1
count pg_regress "$p" "$f"
[ "$f" -gt 0 ] && { grep -E '\.\.\. FAILED' "$LOGDIR/regress.log"; head -80 regression.diffs 2>/dev/null; }

echo "== isolation"
rm -rf test/isolation/output_iso
make isolation-installcheck >"$LOGDIR/isolation.log" 2>&1
p=$(grep -cE '\.\.\. ok' "$LOGDIR/isolation.log")
f=$(grep -cE '\.\.\. FAILED' "$LOGDIR/isolation.log")
[ "$p" -eq 0 ] && [ "$f" -eq 0 ] && f=1
count isolation "$p" "$f"
[ "$f" -gt 0 ] && { grep -E '\.\.\. FAILED' "$LOGDIR/isolation.log"; head -80 test/isolation/output_iso/regression.diffs 2>/dev/null; }

# ---- 3. Citus, for the Citus suite (test/e2e/test_citus.py) ---------------------------
# Built from the vendored source once and cached outside the checkout (scripts/citus.sh):
# the first run on a machine pays for the build, later runs copy the files.
echo "== Citus 13.2.2 (scripts/citus.sh)"
if scripts/citus.sh >"$LOGDIR/citus.log" 2>&1; then
  count citus-install 1 0
else
  tail -30 "$LOGDIR/citus.log"
  count citus-install 0 1
fi

# ---- 4. end-to-end suites: each prints "PASS name" / "FAIL name: why" ----------------
for t in test/e2e/test_*.py test/e2e/test_*.sh; do
  [ -e "$t" ] || continue
  name=$(basename "$t")
  echo "== e2e $name"
  # the package suites build the packages (ATTENDANCE_PACKAGE_BUILD_SECONDS) and have
  # deadlines of their own for each step; test_readme.sh runs the demo too
  limit=1200
  case $name in
    test_packages.sh) limit=$((${ATTENDANCE_PACKAGE_BUILD_SECONDS:-900} + 900)) ;;
    test_readme.sh) limit=$((2 * ${ATTENDANCE_PACKAGE_BUILD_SECONDS:-900} + 2100)) ;;
  esac
  ATTENDANCE_BUILD_DIR="$ROOT/build" timeout "$limit" "$t" >"$LOGDIR/$name.log" 2>&1
  rc=$?
  p=$(grep -c '^PASS ' "$LOGDIR/$name.log")
  f=$(grep -c '^FAIL ' "$LOGDIR/$name.log")
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  count "e2e:$name" "$p" "$f"
  if [ "$f" -gt 0 ]; then grep '^FAIL ' "$LOGDIR/$name.log"; tail -30 "$LOGDIR/$name.log"; fi
done

echo
[ ${#FAILED_SUITES[@]} -gt 0 ] && echo "failing suites: ${FAILED_SUITES[*]}"
# pg_regress and isolation outputs of a green run are not kept either.
[ "$FAILED" -eq 0 ] && rm -rf results regression.diffs regression.out test/isolation/output_iso
summary
[ "$FAILED" -eq 0 ]
