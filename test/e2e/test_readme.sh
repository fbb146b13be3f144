#!/usr/bin/env bash
# The README's first lines, in order, as a newcomer runs them on one machine:
#   1. scripts/demo.sh --keep prints the fixture's attendance without noise; the commands
#      it prints work pasted as they are (attendancectl status, explain, timeline --html, a
#      webhook signed with the demo's key through its proxy, the recalculation it causes);
#      its stop line leaves nothing of it;
#   2. scripts/test.sh is the command running this test: its other suites are not run
#      again here;
#   3. scripts/deb.sh --install installs both packages quietly;
#   4. then the test command's package suite, test/e2e/test_packages.sh, passes with the
#      packages installed, and leaves them installed as it found them.
# At the end the machine is put back as found (test/e2e/packages.sh: packages this test
# installed are purged, packages it found are installed again). Bounded: each step has a
# deadline: the demo 900 s, scripts/deb.sh --install ATTENDANCE_PACKAGE_BUILD_SECONDS
# (default 900, as test_packages.sh's build) plus 300, the package suite the same again.
# With the builds scripts/test.sh made before (build/, and the packages of
# test_packages.sh in ATTENDANCE_DEB_DIR) it takes a few minutes.
# Prints "PASS name" / "FAIL name: why" per case.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/test/e2e/packages.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attendance-readme-test.XXXXXX")
chmod 755 "$WORK"
DEB_DIR=${ATTENDANCE_DEB_DIR:-$WORK/dist}
PACKAGE_SECS=$((${ATTENDANCE_PACKAGE_BUILD_SECONDS:-900} + 300))
VERSION=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$ROOT/attendance.control")
FAILED=0
STOP_LINE=

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
# what a newcomer should not see: debconf's and apt's complaints, psql's empty result rows
noise() { grep -nE 'debconf|unable to initialize frontend|dpkg-preconfigure|^\(1 row\)|^ *-+ *$' "$1" | head -3; }
# waits up to $1 seconds for a command to succeed
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}
finish() {
  if [ -n "$STOP_LINE" ]; then bash -c "$STOP_LINE" >/dev/null 2>&1; fi
  if [ -f "$WORK/found/state" ] && ! packages_as_saved "$WORK/found"; then
    packages_put_back "$WORK/found" || echo "could not put the packages back as found: $WORK/found/put-back.log"
  fi
  if [ $FAILED -eq 0 ]; then rm -rf "$WORK"; else echo "work directory kept: $WORK"; fi
}
trap finish EXIT

if ! packages_save "$WORK/found"; then
  fail "preconditions" "dpkg-repack could not save the installed packages: $(tail -5 "$WORK/found/repack.log" | tr '\n' '|')"
  rm -f "$WORK/found/state"
  exit 1
fi

# ---- 1. scripts/demo.sh --keep -------------------------------------------------------
started=$SECONDS
timeout --kill-after=30 900 "$ROOT/scripts/demo.sh" --keep >"$WORK/demo.log" 2>&1
rc=$?
STOP_LINE=$(grep -A1 '^  stop everything and remove the data directory:$' "$WORK/demo.log" | tail -1 | sed 's/^ *//')
if [ $rc -eq 0 ] && grep -q '^matches the expected attendance of the fixture' "$WORK/demo.log"; then
  pass "scripts/demo.sh --keep prints the fixture's attendance ($((SECONDS - started)) s)"
else
  fail "demo" "exit status $rc: $(tail -15 "$WORK/demo.log" | tr '\n' '|')"
  exit 1
fi
said=$(noise "$WORK/demo.log")
if [ -z "$said" ] && grep -qE '^building .*\(log: /' "$WORK/demo.log"; then
  pass "the demo names the log of its build, and shows no apt or debconf noise and no empty result row"
else
  fail "demo output" "${said:-no build step naming its log}"
fi

# The block to paste: the lines indented by four spaces after "paste:".
awk '/In another shell, paste:$/ {on = 1; next} on && /^    / {print substr($0, 5); next} on {exit}' \
  "$WORK/demo.log" >"$WORK/paste.sh"
PGDIR=$(sed -n 's/^export PGHOST=\([^ ]*\) .*/\1/p' "$WORK/paste.sh")
PROXY_PID=$(sed -n 's/.*(attendance-proxy, pid \([0-9]*\), key APIdemo).*/\1/p' "$WORK/demo.log")
if [ -z "$PGDIR" ] || [ -z "$PROXY_PID" ] || [ -z "$STOP_LINE" ]; then
  fail "demo's commands" "no connection, proxy or stop line among them: $(tr '\n' '|' <"$WORK/paste.sh")"
  exit 1
fi
(cd / && timeout 300 bash -e -o pipefail "$WORK/paste.sh") >"$WORK/paste.log" 2>&1
rc=$?
checks=()
grep -q 'running' "$WORK/paste.log" || checks+=("attendancectl status does not say the scheduler is running")
grep -q '^User 12 in session 456: present (94.99 %' "$WORK/paste.log" || checks+=("explain 456 12 is not 'present (94.99 %'")
grep -q 'data-connection="PA_abc123ahmed2" data-end="reconciled"' "$PGDIR/session-456.html" 2>/dev/null ||
  checks+=("the timeline page has no reconciled bar for user 12")
grep -qE '"result": ?"recorded"' "$WORK/paste.log" || checks+=("the signed webhook was not recorded")
grep -q '^User 31 in session 456: late' "$WORK/paste.log" || checks+=("explain 456 31 is not 'late'")
if [ $rc -eq 0 ] && [ ${#checks[@]} -eq 0 ]; then
  pass "the demo's commands work pasted as they are: status, explain, timeline --html, a signed webhook, explain"
else
  fail "demo's commands" "exit status $rc; ${checks[*]}: $(tail -8 "$WORK/paste.log" | tr '\n' '|')"
fi
# the late webhook: the scheduler calculates the session again, user 31 is late
recalculated() {
  [ "$(PGHOST=$PGDIR PGPORT=$(sed -n 's/.* PGPORT=\([0-9]*\) .*/\1/p' "$WORK/paste.sh") PGUSER=postgres \
       psql -X -At -d postgres -c "SELECT attendance_status FROM meeting_attendances
                                   WHERE session_id = 456 AND user_id = 31 AND is_calculated" 2>/dev/null)" = late ]
}
if wait_until 60 recalculated; then
  pass "the late webhook is calculated by the scheduler: user 31 is late"
else
  fail "late webhook" "user 31 is not calculated late within 60 s"
fi
bash -c "$STOP_LINE" >"$WORK/stop.log" 2>&1
rc=$?
STOP_LINE=
# The stop line signals the proxy, which exits once it has drained; an exited process whose
# parent is gone may stay a zombie where the machine's first process does not reap (a
# container): that is stopped too.
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$state" ] && [ "${state#Z}" = "$state" ]
}
stopped() { ! running "$PROXY_PID" && ! pgrep -f -- "-D $PGDIR/data" >/dev/null; }
if [ $rc -eq 0 ] && [ ! -e "$PGDIR" ] && wait_until 60 stopped; then
  pass "the demo's stop line stops the proxy and PostgreSQL and removes the demo's directory"
else
  fail "stop line" "exit status $rc, proxy $(ps -o stat= -p "$PROXY_PID" 2>/dev/null || echo gone), directory $([ -e "$PGDIR" ] && echo kept || echo removed), server $(pgrep -f -- "-D $PGDIR/data" | tr '\n' ' '): $(tr '\n' '|' <"$WORK/stop.log")"
fi

# ---- 3. scripts/deb.sh --install -----------------------------------------------------------
started=$SECONDS
timeout --kill-after=30 "$PACKAGE_SECS" env ATTENDANCE_DEB_DIR="$DEB_DIR" "$ROOT/scripts/deb.sh" --install >"$WORK/deb.log" 2>&1
rc=$?
said=$(noise "$WORK/deb.log")
if [ $rc -eq 0 ] && installed postgresql-15-attendance && installed attendance-tools &&
   grep -q "^installed: .*postgresql-15-attendance $VERSION" "$WORK/deb.log" &&
   grep -q "^installed: .*attendance-tools $VERSION" "$WORK/deb.log" && [ -z "$said" ]; then
  pass "scripts/deb.sh --install installs both packages, without apt or debconf noise ($((SECONDS - started)) s)"
else
  fail "deb.sh --install" "exit status $rc; ${said}: $(tail -10 "$WORK/deb.log" | tr '\n' '|')"
  exit 1
fi

# ---- 4. the test command's package suite, with the packages installed ---------------------
started=$SECONDS
timeout --kill-after=30 "$PACKAGE_SECS" env ATTENDANCE_DEB_DIR="$DEB_DIR" "$ROOT/test/e2e/test_packages.sh" >"$WORK/packages.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && ! grep -q '^FAIL ' "$WORK/packages.log" &&
   grep -q '^PASS the packages found installed are installed again as they were' "$WORK/packages.log" &&
   installed postgresql-15-attendance && installed attendance-tools; then
  pass "after scripts/deb.sh --install the package suite passes and leaves the packages installed ($((SECONDS - started)) s)"
else
  fail "package suite after an install" "exit status $rc: $(grep -E '^(FAIL|PASS) ' "$WORK/packages.log" | tr '\n' '|')"
fi

# ---- the machine as found ------------------------------------------------------------------
if packages_put_back "$WORK/found" && packages_as_saved "$WORK/found"; then
  pass "the packages are back as found ($(packages_found "$WORK/found" | tr '\n' ' ' | sed 's/ $//;s/^$/none installed/'))"
else
  fail "put back" "$(diff "$WORK/found/state" "$WORK/found/state-now" 2>&1 | head -5 | tr '\n' '|')"
fi
[ $FAILED -eq 0 ]
