#!/usr/bin/env bash
# The Debian packages end to end: builds postgresql-15-attendance and attendance-tools
# with scripts/deb.sh (dpkg-buildpackage -b -uc -us), installs them, starts a throwaway
# cluster of Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin, where the packaged
# library goes, whatever PG_BIN says) that preloads the packaged library, and runs a smoke
# test (CREATE EXTENSION, one signed webhook through the installed attendance-proxy,
# attendance_calculate, the installed attendancectl). Then it purges both packages,
# checks that they left nothing behind, and puts back any file of the build tree's
# `make install` that the packages replaced, so the suites after this one are unchanged.
# Packages found installed (scripts/deb.sh --install ran before) are saved first with
# dpkg-repack and installed again at the end, with their auto/manual mark and their
# unit's enablement, so that the machine is left as it was found; the last case checks
# that their files are the ones found.
# Time-bounded: the package build gets ATTENDANCE_PACKAGE_BUILD_SECONDS (default 900),
# every later wait its own deadline. With ATTENDANCE_DEB_DIR set, the packages are built
# there, or taken from there when scripts/deb.sh built them from this very source.
# Prints "PASS name" / "FAIL name: why" per case.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# the PostgreSQL the packages install into; a private copy of the tree (PG_BIN) would
# load its own attendance.so, not the packaged one
PG_BIN=/usr/lib/postgresql/15/bin
. "$ROOT/scripts/pg.sh"
BUILD_SECS=${ATTENDANCE_PACKAGE_BUILD_SECONDS:-900}
# the version being packaged: the extension's default version
VERSION=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$ROOT/attendance.control")
. "$ROOT/test/e2e/packages.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attendance-packages-test.XXXXXX")
chmod 755 "$WORK"
DEB_DIR=${ATTENDANCE_DEB_DIR:-$WORK/dist}
FAILED=0
PGDIR="$WORK/pg"
INSTALLED_BY_US=0
PUT_BACK=0

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }

# Puts back the files the packages replaced (saved in $WORK/backup before the install).
restore() {
  local f
  if [ -d "$WORK/backup" ]; then
    (cd "$WORK/backup" && find . ! -type d) | while read -r f; do cp -a "$WORK/backup/${f#./}" "/${f#./}"; done
  fi
  rm -rf "$WORK/backup"
}
finish() {
  if [ -f "$WORK/proxy.pid" ]; then kill "$(cat "$WORK/proxy.pid")" 2>/dev/null; fi
  pg_stop "$PGDIR"
  if [ $INSTALLED_BY_US -eq 1 ]; then
    for p in "${PACKAGES[@]}"; do known "$p" && "${APT[@]}" purge "$p" >/dev/null 2>&1; done
    restore
  fi
  if [ $PUT_BACK -eq 0 ] && [ -n "$(packages_found "$WORK/found")" ]; then
    packages_put_back "$WORK/found" ||
      echo "could not install again the packages found installed, saved in $WORK/found (log: $WORK/found/put-back.log)"
  fi
  if [ $FAILED -eq 0 ]; then rm -rf "$WORK"; else echo "work directory kept: $WORK"; fi
}
trap finish EXIT

# ---- packages found installed: saved, to be installed again at the end ------------------
if ! packages_save "$WORK/found"; then
  fail "preconditions" "dpkg-repack could not save the installed packages: $(tail -5 "$WORK/found/repack.log" | tr '\n' '|')"
  : >"$WORK/found/packages"
  exit 1
fi
if [ -n "$(packages_found "$WORK/found")" ]; then
  pass "the packages found installed are saved, to be installed again afterwards: $(packages_found "$WORK/found" | xargs dpkg-query -W -f='${Package} ${Version}  ')"
fi

# ---- build ---------------------------------------------------------------------------
started=$SECONDS
if timeout --kill-after=30 "$BUILD_SECS" env ATTENDANCE_DEB_DIR="$DEB_DIR" TMPDIR="$WORK" \
     "$ROOT/scripts/deb.sh" >"$WORK/deb.log" 2>&1; then
  ext=$(grep -E '/postgresql-15-attendance_[^/]*\.deb$' "$WORK/deb.log" | tail -1)
  tools=$(grep -E '/attendance-tools_[^/]*\.deb$' "$WORK/deb.log" | tail -1)
  if [ -n "$ext" ] && [ -n "$tools" ] && [ -f "$ext" ] && [ -f "$tools" ]; then
    how="built"
    grep -q 'not building them again' "$WORK/deb.log" && how="taken from $DEB_DIR, built from this very source"
    pass "dpkg-buildpackage -b -uc -us builds both packages ($how, $((SECONDS - started)) s)"
  else
    fail "build" "the packages are missing: $(tail -5 "$WORK/deb.log" | tr '\n' ' ')"
    exit 1
  fi
else
  rc=$?
  [ $rc -eq 124 ] && why="did not finish within $BUILD_SECS s (ATTENDANCE_PACKAGE_BUILD_SECONDS)" || why="exit status $rc"
  fail "build" "$why: $(tail -15 "$WORK/deb.log" | tr '\n' '|')"
  exit 1
fi

# ---- the packages' directories -----------------------------------------------------------
# dpkg gives existing directories (/usr, /usr/lib, ...) the modes the package says: a
# package built with a strict umask would lock PostgreSQL out of its own tree. Refuse to
# install one whose directories are not 0755.
bad=$(for deb in "$ext" "$tools"; do dpkg-deb -c "$deb" | awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" {print $1, $6}'; done)
if [ -n "$bad" ]; then
  fail "package directories are 0755" "$(echo "$bad" | head -5 | tr '\n' ' ')"
  exit 1
fi
pass "package directories are 0755"

# ---- install -------------------------------------------------------------------------
# (only files no package owns, such as a `make install`'s: the files of packages found
# installed come back with them, from $WORK/found)
mkdir -p "$WORK/backup"
for deb in "$ext" "$tools"; do
  dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|' | while read -r f; do
    if { [ -f "$f" ] || [ -L "$f" ]; } && ! dpkg -S "$f" >/dev/null 2>&1; then
      mkdir -p "$WORK/backup$(dirname "$f")" && cp -a "$f" "$WORK/backup$f"
    fi
  done
done
INSTALLED_BY_US=1
# --reinstall: over packages of the same version found installed too
if "${APT[@]}" install --reinstall --no-install-recommends "$ext" "$tools" >"$WORK/install.log" 2>&1 &&
   installed postgresql-15-attendance && installed attendance-tools; then
  pass "apt-get installs both packages, asking nothing"
else
  fail "install" "$(tail -15 "$WORK/install.log" | tr '\n' '|')"
  exit 1
fi

contents() {
  local f unit
  for f in /usr/lib/postgresql/15/lib/attendance.so /usr/share/postgresql/15/extension/attendance.control \
           /usr/share/postgresql/15/extension/attendance--0.1.0.sql \
           /usr/share/postgresql/15/extension/attendance--0.1.0--0.2.0.sql \
           /usr/share/postgresql/15/extension/attendance--0.2.0--0.3.0.sql \
           /usr/share/postgresql/15/extension/attendance--0.3.0--0.4.0.sql \
           /usr/share/postgresql/15/extension/attendance--0.4.0--0.4.1.sql \
           /usr/share/postgresql/15/extension/attendance--0.4.1--0.5.0.sql \
           /usr/share/postgresql/15/extension/attendance--0.5.0--0.5.1.sql \
           "/usr/share/postgresql/15/extension/attendance--$VERSION.sql"; do
    dpkg -S "$f" | grep -q '^postgresql-15-attendance:' || { echo "$f is not from postgresql-15-attendance"; exit 1; }
  done
  for f in /usr/bin/attendance-proxy /usr/bin/attendancectl; do
    dpkg -S "$f" | grep -q '^attendance-tools:' || { echo "$f is not from attendance-tools"; exit 1; }
  done
  unit=$(dpkg -L attendance-tools | grep '/systemd/system/attendance-proxy.service$')
  [ -n "$unit" ] || { echo "no attendance-proxy.service in attendance-tools"; exit 1; }
  # one install path: the packaged unit of packaging/, byte for byte, running the packaged program
  cmp -s "$unit" "$ROOT/packaging/attendance-proxy.service" || { echo "the unit is not packaging/attendance-proxy.service"; exit 1; }
  grep -qx 'ExecStart=/usr/bin/attendance-proxy' "$unit" || { echo "the unit does not start /usr/bin/attendance-proxy"; exit 1; }
  grep -qx 'DynamicUser=yes' "$unit" || { echo "the unit is not the hardened one"; exit 1; }
  grep -qx 'Environment=ATTENDANCE_PROXY_LISTEN=127.0.0.1' "$unit" || { echo "the unit does not listen on loopback by default"; exit 1; }
  grep -qx 'EnvironmentFile=-/etc/attendance-proxy.env' "$unit" || { echo "the unit reads no /etc/attendance-proxy.env"; exit 1; }
  [ "$(grep -v '^#' "$unit" | grep -c 'ATTENDANCE_PROXY_LISTEN=')" -eq 1 ] ||
    { echo "the unit sets another listen address"; exit 1; }
  if command -v systemd-analyze >/dev/null; then
    local said
    said=$(systemd-analyze verify "$unit" 2>&1) || true
    [ -z "$said" ] || { echo "systemd-analyze verify: $said"; exit 1; }
  fi
  if [ -z "$(packages_found "$WORK/found")" ]; then
    ! ls /etc/systemd/system/*.wants/attendance-proxy.service >/dev/null 2>&1 ||
      { echo "the unit was enabled at install"; exit 1; }
  fi
  /usr/bin/attendancectl --version | grep -qF "$VERSION" || { echo "attendancectl --version"; exit 1; }
}
(contents) >"$WORK/contents.log" 2>&1
if [ $? -eq 0 ]; then
  pass "the extension's files, both programs and the unit (packaging/'s, loopback by default, verified by systemd-analyze, not enabled) are where Debian puts them"
else
  fail "contents" "$(tr '\n' ' ' <"$WORK/contents.log")"
fi

# ---- smoke test ------------------------------------------------------------------------
smoke() {
  set -e
  pg_start "$PGDIR" "" "attendance.calculation_delay = '1h'"
  echo "cluster of the packaged extension on port $PGPORT" | tee "$WORK/ports"
  local q="psql -X -At -v ON_ERROR_STOP=1"
  $q -c "SET client_min_messages = warning; CREATE EXTENSION attendance" >/dev/null
  # the server preloaded the packaged library: its scheduler runs
  local deadline=$((SECONDS + 30))
  until $q -c "SELECT attendance_worker_status()->>'running'" | grep -qx true; do
    [ $SECONDS -lt $deadline ] || { echo "the packaged scheduler is not running"; return 1; }
    sleep 0.2
  done
  [ "$($q -c "SELECT extversion FROM pg_extension WHERE extname = 'attendance'")" = "$VERSION" ]
  $q -c "SELECT attendance_add_webhook_key('APIpkg', 'package-secret-0123456789abcdef')" >/dev/null
  local start_s
  start_s=$($q -c "SELECT floor(extract(epoch FROM now()))::bigint - 1800")
  $q -c "SELECT attendance_schedule_session(456, 'session-456', to_timestamp($start_s), to_timestamp($start_s + 1740));
         SELECT attendance_expect(456, 12)" >/dev/null
  local body token
  body="{\"event\":\"participant_joined\",\"id\":\"EV_pkg_1\",\"createdAt\":\"$((start_s - 60))\",\"room\":{\"name\":\"session-456\"},\"participant\":{\"sid\":\"PA_pkg_1\",\"identity\":\"user-12\",\"joinedAtMs\":\"$(((start_s - 60) * 1000))\"}}"
  token=$($q -c "SELECT attendance_sign_webhook('$body', 'APIpkg')")
  local attempt port up
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    /usr/bin/attendance-proxy --listen 127.0.0.1 --port "$port" \
      --conninfo "host=$PGDIR port=$PGPORT user=postgres dbname=postgres" >>"$WORK/proxy.log" 2>&1 &
    PROXY_PID=$!
    echo "$PROXY_PID" >"$WORK/proxy.pid"
    up=0
    deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ] && kill -0 "$PROXY_PID" 2>/dev/null; do
      if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then up=1; break; fi
      sleep 0.1
    done
    [ $up -eq 1 ] && break
    kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
  done
  [ $up -eq 1 ] || { echo "the installed attendance-proxy did not start: $(tail -3 "$WORK/proxy.log")"; return 1; }
  echo "installed attendance-proxy on port $port" | tee -a "$WORK/ports"
  local answer
  answer=$(curl -sS -w ' %{http_code}' -H "Authorization: $token" -H 'Content-Type: application/webhook+json' \
    --data-binary "$body" "http://127.0.0.1:$port/webhooks/livekit")
  case "$answer" in *'"result":"recorded"'*' 200'|*'"result": "recorded"'*' 200') ;;
    *) echo "the webhook through the installed proxy: $answer"; return 1 ;;
  esac
  local row
  row=$($q -c "SELECT user_id || '|' || attendance_status || '|' || attendance_percentage FROM attendance_calculate(456)")
  [ "$row" = "12|present|100.00" ] || { echo "attendance_calculate(456): '$row', expected 12|present|100.00"; return 1; }
  /usr/bin/attendancectl calculate 456 | grep -q present || { echo "the installed attendancectl calculate 456"; return 1; }
}
(smoke) >"$WORK/smoke.log" 2>&1
rc=$?
# the subshell's proxy, if it is still running
if [ -f "$WORK/proxy.pid" ]; then kill "$(cat "$WORK/proxy.pid")" 2>/dev/null; rm -f "$WORK/proxy.pid"; fi
pg_stop "$PGDIR"
[ -f "$WORK/ports" ] && sed 's/^/  # /' "$WORK/ports"
if [ $rc -eq 0 ]; then
  pass "smoke test: CREATE EXTENSION, a signed webhook through the installed proxy, attendance_calculate"
else
  fail "smoke test" "$(tail -8 "$WORK/smoke.log" | tr '\n' '|')"
fi

# ---- purge -----------------------------------------------------------------------------
if "${APT[@]}" purge "${PACKAGES[@]}" >"$WORK/purge.log" 2>&1; then
  left=()
  for p in "${PACKAGES[@]}"; do known "$p" && left+=("package $p"); done
  for f in /usr/bin/attendance-proxy /usr/bin/attendancectl /lib/systemd/system/attendance-proxy.service \
           /usr/lib/systemd/system/attendance-proxy.service /usr/share/doc/attendance-tools \
           /usr/share/doc/postgresql-15-attendance /usr/lib/postgresql/15/lib/attendance.so \
           /usr/share/postgresql/15/extension/attendance.control "$UNIT_WANTS"; do
    [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
  done
  if [ ${#left[@]} -eq 0 ]; then
    pass "apt-get purge removes both packages and leaves nothing behind"
  else
    fail "purge" "left behind: ${left[*]}"
  fi
else
  fail "purge" "$(tail -10 "$WORK/purge.log" | tr '\n' '|')"
fi
restore
INSTALLED_BY_US=0

# ---- the packages found installed, back as they were -------------------------------------
if [ -n "$(packages_found "$WORK/found")" ]; then
  PUT_BACK=1
  if packages_put_back "$WORK/found" && packages_as_saved "$WORK/found"; then
    pass "the packages found installed are installed again as they were (versions, files, marks, unit)"
  else
    fail "put back" "not as found: $(diff "$WORK/found/state" "$WORK/found/state-now" 2>&1 | head -5 | tr '\n' '|') $(tail -5 "$WORK/found/put-back.log" 2>/dev/null | tr '\n' '|')"
  fi
fi
[ $FAILED -eq 0 ]
