#!/usr/bin/env bash
# The main job: on a fresh Debian 12 machine (as root) install, build, start a throwaway
# PostgreSQL with the extension preloaded and attendance-proxy in front of it, replay a
# realistic class through the proxy (reconnects, a duplicate, a lost leave, a late
# student, a recorder), let the background scheduler calculate it, and print the
# attendance. Leaves nothing running unless --keep is given; with --keep it ends with
# ready-to-paste commands that fit the running demo (attendancectl status, explain,
# timeline --html, a signed webhook through the proxy) and the line that stops it.
# Builds in build/ (CMake: attendance-proxy, attendancectl) and installs the extension
# with make install (into PG_BIN's PostgreSQL). After a failure the demo's directory, with
# its logs, is kept and named.
# Environment (all optional):
#   ATTENDANCE_DEMO_PORT       PostgreSQL's port (default: a free port, picked by a bind
#                              probe and retried if it is taken meanwhile)
#   ATTENDANCE_DEMO_HTTP_PORT  attendance-proxy's port (default: likewise a free port)
#   PG_BIN                     PostgreSQL's programs (default /usr/lib/postgresql/15/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
export PATH="${PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"
. scripts/progress.sh
. scripts/pg.sh

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The demo's directory: the cluster's data, the logs, the files the commands at the end use.
PGDIR=$(mktemp -d /tmp/attendance-demo.XXXXXX)
PROXY_PID=
cleanup() {
  local rc=$?
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null; fi
  pg_stop "$PGDIR"
  if [ $rc -eq 0 ]; then
    rm -rf "$PGDIR"
  else
    rm -rf "$PGDIR/data"
    echo "the demo failed; its logs are kept in $PGDIR" >&2
  fi
}
trap cleanup EXIT  # on success with --keep, disarmed at the end

step "installing dependencies and building"
scripts/deps.sh
build() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build build -j2 --target attendance-proxy attendancectl &&
    make -j2 && make install
}
run_logged "building attendance-proxy, attendancectl and the extension (a few minutes the first time)" \
  "$PGDIR/build.log" build

step "starting a throwaway PostgreSQL with the extension preloaded"
pg_start "$PGDIR" "${ATTENDANCE_DEMO_PORT:-}" "attendance.calculation_delay = '3s'"
PORT=$PGPORT
echo "data directory $PGDIR, port $PORT (user postgres, database postgres)"

psql -X -q -o /dev/null -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION attendance;
SELECT attendance_add_webhook_key('APIdemo', 'demo-secret-0123456789abcdef0123');
SQL

# The class of the fixture README, moved so that it ends 10 seconds from now.
SHIFT=$(psql -X -At -c "SELECT floor(extract(epoch FROM now()))::bigint + 10 - 1763133300")
START=$(psql -X -At -c "SELECT to_timestamp(1763130600 + $SHIFT)")
END=$(psql -X -At -c "SELECT to_timestamp(1763133300 + $SHIFT)")
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 <<SQL
SELECT attendance_schedule_session(456, 'session-456', '$START', '$END');
SELECT attendance_expect(456, u, r) FROM (VALUES (7, 'teacher'), (12, 'student'), (19, 'student'),
       (23, 'student'), (31, 'student'), (40, 'student')) v(u, r);
SQL
echo "session 456 in room session-456: $START – $END; roster: teacher 7, students 12 19 23 31 40"

step "starting attendance-proxy"
# Waits until the proxy answers /healthz (true) or has exited (false), at most 30 s.
proxy_up() {
  local deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$PROXY_PID" 2>/dev/null || return 1
    curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
for attempt in 1 2 3 4 5; do
  HTTP_PORT=${ATTENDANCE_DEMO_HTTP_PORT:-$(free_port)}
  build/attendance-proxy --listen 127.0.0.1 --port "$HTTP_PORT" \
    --conninfo "host=$PGDIR port=$PORT user=postgres dbname=postgres" >>"$PGDIR/proxy.log" 2>&1 &
  PROXY_PID=$!
  proxy_up && break
  kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
  if [ -n "${ATTENDANCE_DEMO_HTTP_PORT:-}" ] || [ $attempt -eq 5 ]; then
    echo "attendance-proxy did not start on port $HTTP_PORT:" >&2
    tail -5 "$PGDIR/proxy.log" >&2
    exit 1
  fi
  echo "port $HTTP_PORT was taken meanwhile; trying another free port"
done
echo "attendance-proxy listening on http://127.0.0.1:$HTTP_PORT/webhooks/livekit (pid $PROXY_PID)"

step "replaying the class through the proxy (re-timed, signed as LiveKit would)"
python3 - "$SHIFT" "$HTTP_PORT" "$ROOT/test/fixtures/livekit/session-456.jsonl" <<'PY'
import json, subprocess, sys, urllib.request
shift, port, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def moved(body):
    b = json.loads(body)
    b["createdAt"] = str(int(b["createdAt"]) + shift)
    for k in ("joinedAt",):
        if k in b.get("participant", {}): b["participant"][k] = str(int(b["participant"][k]) + shift)
    if "joinedAtMs" in b.get("participant", {}):
        b["participant"]["joinedAtMs"] = str(int(b["participant"]["joinedAtMs"]) + shift * 1000)
    return json.dumps(b, ensure_ascii=False, separators=(",", ":"))
def sign(body):
    q = body.replace("'", "''")
    return subprocess.run(["psql", "-X", "-At", "-c", f"SELECT attendance_sign_webhook('{q}', 'APIdemo')"],
                          capture_output=True, text=True, check=True).stdout.strip()
for line in open(path, encoding="utf-8"):
    body = moved(json.loads(line)["body"])
    req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/livekit", data=body.encode(),
                                 headers={"Authorization": sign(body), "Content-Type": "application/webhook+json"})
    with urllib.request.urlopen(req) as resp:
        answer = json.loads(resp.read())
    ev = json.loads(body)
    who = ev.get("participant", {}).get("identity", "")
    print(f"  HTTP {resp.status}  {ev['event']:<31} {who:<11} -> {answer['result']}"
          + (f" ({answer['reason']})" if answer.get("reason") else ""))
PY

step "waiting for the background scheduler (due 3 s after the class ends)"
for _ in $(seq 1 60); do
  done_=$(psql -X -At -c "SELECT count(*) = 0 FROM attendance_sessions_due WHERE session_id = 456")
  [ "$done_" = "t" ] && break
  sleep 1
done
psql -X -At -c "SELECT 'calculated by the scheduler at ' || calculated_at FROM attendance_session_schedule WHERE session_id = 456"

step "attendance of session 456"
psql -X -P pager=off -c "SELECT user_id AS user, role, enter_time::time(0) AS entered, leave_time::time(0) AS left,
       minutes, percentage, status FROM attendance_session_report WHERE session_id = 456 ORDER BY user_id"
echo "user 12's last leave was never delivered: the derivation closes that connection by reconciliation's rule (the room's room_finished, else the scheduled end), labelled reconciled; the recorder has no row."
# The class is the fixture's story: the result must be the fixture README's table.
got=$(psql -X -At -c "SELECT string_agg(user_id || ':' || status || ':' || percentage, ' ' ORDER BY user_id)
                      FROM attendance_session_report WHERE session_id = 456 AND is_calculated")
want="7:present:100.00 12:present:94.99 19:partial:33.33 23:absent:0.00 31:absent:0.00 40:late:61.85"
if [ "$got" = "$want" ]; then
  echo "matches the expected attendance of the fixture (test/fixtures/livekit/README.md)"
else
  echo "MISMATCH: got '$got', expected '$want'" >&2
  exit 1
fi

# A webhook for the commands at the end: user 31's join 20 minutes into the class, as if
# it had been lost until now (its late arrival makes the scheduler calculate again).
LATE_AT=$((1763130600 + SHIFT + 1200))
printf '{"event":"participant_joined","id":"EV_demo_late31","createdAt":"%s","room":{"name":"session-456"},"participant":{"sid":"PA_demo_late31","identity":"user-31","name":"Omar","joinedAtMs":"%s"}}' \
  "$LATE_AT" "${LATE_AT}000" >"$PGDIR/late-join.json"

step "where to look next"
if [ $KEEP -eq 0 ]; then
  cat <<TXT
  scripts/demo.sh --keep leaves the demo running and ends with commands that fit it:
  attendancectl status, explain, timeline --html, a signed webhook through the proxy, psql.
  The commands: docs/attendancectl.md; every SQL function and view: docs/sql.md.
TXT
  exit 0
fi
trap - EXIT
STOP_PG="$PG_BIN/pg_ctl -D $PGDIR/data -m fast -w stop"
[ "$(id -u)" -eq 0 ] && STOP_PG="(cd / && runuser -u $PG_OS_USER -- $STOP_PG)"
URL="http://127.0.0.1:$HTTP_PORT/webhooks/livekit"
# The lines indented by four spaces after "paste:" are commands to paste as they are
# (test/e2e/test_readme.sh runs them).
cat <<TXT
  The demo keeps running. In another shell, paste:
    export PGHOST=$PGDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
    cd $ROOT
    build/attendancectl status                   # the background scheduler and its jobs
    build/attendancectl explain 456 12           # why user 12 is present: connections, rules, trace
    build/attendancectl timeline 456 --html $PGDIR/session-456.html   # open it in a browser
    # a late webhook, signed with the demo's key APIdemo: user 31's join, lost until now
    token=\$(build/attendancectl sign $PGDIR/late-join.json --key APIdemo --token-only) &&
      curl -sS -w '\\n' -H "Authorization: \$token" -H 'Content-Type: application/webhook+json' \\
        --data-binary @$PGDIR/late-join.json $URL
    build/attendancectl sessions 456             # calculated again within seconds (late webhook)
    build/attendancectl explain 456 31           # user 31: absent before, late now
  psql works with the same variables (every function and view: docs/sql.md).
  webhooks: $URL (attendance-proxy, pid $PROXY_PID, key APIdemo)
  logs:     server.log and proxy.log in $PGDIR

kept running (scripts/demo.sh --keep):
  connect:  PGHOST=$PGDIR PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres psql
  webhooks: $URL (attendance-proxy, pid $PROXY_PID)
  stop everything and remove the data directory:
            kill $PROXY_PID; $STOP_PG; rm -rf $PGDIR
TXT
