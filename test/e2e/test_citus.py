#!/usr/bin/env python3
"""attendance on a Citus cluster (docs/scaling.md, "Citus"): a coordinator and two workers
on free ports, every node with shared_preload_libraries = 'citus,attendance'.
CREATE EXTENSION attendance on the coordinator reaches the workers; the scheduler runs
once for the cluster, on the coordinator, and stands down on every worker; a class
workload with a shared room, a breakout room and a linked room, posted through
attendance-proxy to the coordinator, gives exactly the rows the same webhooks give on one
node; a redelivery is stored once; a worker restarted under load loses nothing
acknowledged. The extension's tables stay on the coordinator (distribution by room is
not built yet: docs/scaling.md says what blocks it).

Needs Citus installed for this server (scripts/test.sh runs scripts/citus.sh first), the
extension installed, ATTENDANCE_BUILD_DIR with attendance-proxy, and the runner's cluster
(PGHOST/PGPORT) for the one-node side. Prints "PASS name" / "FAIL name: why" per case."""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import citus  # noqa: E402
import ha  # noqa: E402
from pgtest import FAILURES, case, finish, psql  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from gen_workload import Signer  # noqa: E402

BUILD = os.environ.get("ATTENDANCE_BUILD_DIR", os.path.join(ROOT, "build"))
PROXY = os.path.join(BUILD, "attendance-proxy")
KEY, SECRET = "APIcitus", "citus-secret-0123456789abcdef0123"
SINGLE_DB = "e2e_citus_single"  # the one-node side, in the runner's cluster
SESSIONS = (23001, 23002, 23003)


def on_sigterm(signum, frame):  # the runner's timeout: clean up on the way out
    raise SystemExit(f"stopped by signal {signum}")


signal.signal(signal.SIGTERM, on_sigterm)


# ---- the workload ---------------------------------------------------------------------
# Three classes four hours ago: 23001 and 23002 one after the other in the shared room
# citus-math (23001 also in its breakout room citus-math-breakout-1, found by name), 23003
# in citus-art and the room linked to it, citus-art-side. Times are minutes from T0.
T0 = (int(time.time()) // 60 - 240) * 60
SCHEDULE = [  # session, room, start, end (minutes), course
    (23001, "citus-math", 0, 45, "citus-math"),
    (23002, "citus-math", 60, 105, "citus-math"),
    (23003, "citus-art", 0, 45, "citus-art"),
]
LINKS = [(23003, "citus-art-side")]
ROSTER = [(23001, 1, "teacher"), (23001, 2, "student"), (23001, 3, "student"), (23001, 4, "student"),
          (23001, 5, "student"), (23002, 1, "teacher"), (23002, 2, "student"), (23002, 6, "student"),
          (23002, 7, "student"), (23003, 8, "teacher"), (23003, 2, "student"), (23003, 9, "student"),
          (23003, 10, "student")]
# connections: room, sid, user, join minute, leave minute (None: the leave never came)
CONNECTIONS = [
    ("citus-math", "PA_m1", 1, -2, 46), ("citus-math", "PA_m2", 2, 0, 20),
    ("citus-math-breakout-1", "PA_m2b", 2, 21, 40), ("citus-math", "PA_m2c", 2, 41, 45),
    ("citus-math", "PA_m3", 3, 17, 45), ("citus-math", "PA_m4", 4, 5, 15),
    ("citus-math", "PA_m4b", 4, 16, None),
    # 23002, in the same room: 2 stays from the first class into the second
    ("citus-math", "PA_n1", 1, 58, 106), ("citus-math", "PA_n2", 2, 50, 100),
    ("citus-math", "PA_n6", 6, 75, 105), ("citus-math", "PA_n7", 7, 61, 70),
    ("citus-art", "PA_a8", 8, 0, 45), ("citus-art", "PA_a2", 2, 2, 30),
    ("citus-art-side", "PA_a2s", 2, 30, 44), ("citus-art-side", "PA_a9", 9, 10, 40),
]
ROOMS = [("citus-math", -5, 110), ("citus-math-breakout-1", 20, 42), ("citus-art", -3, 47),
         ("citus-art-side", 9, 46)]


def webhooks():
    """The workload's bodies in delivery order (a leave may come before its join)."""
    out = []

    def emit(event, minute, room, n, participant=None):
        body = {"event": event, "room": {"sid": f"RM_{room}", "name": room},
                "id": f"EV_citus_{room}_{event}_{n}", "createdAt": str(T0 + int(minute * 60))}
        if participant:
            body["participant"] = participant
        out.append((minute, json.dumps(body, separators=(",", ":"))))

    for room, start, end in ROOMS:
        emit("room_started", start, room, 0)
        emit("room_finished", end, room, 0)
    for room, sid, user, joined, left in CONNECTIONS:
        p = {"sid": sid, "identity": f"user-{user}", "name": f"User {user}",
             "joinedAtMs": str((T0 + joined * 60) * 1000), "state": "ACTIVE"}
        emit("participant_joined", joined, room, sid, p)
        if left is not None:
            emit("participant_left", left + (0.2 if sid == "PA_m3" else 0), room, sid,
                 {**p, "state": "DISCONNECTED"})
    out.sort(key=lambda x: x[0])
    # LiveKit's disorder: one leave before its join
    bodies = [b for _, b in out]
    i = next(k for k, b in enumerate(bodies) if '"PA_m3"' in b and "participant_left" in b)
    j = next(k for k, b in enumerate(bodies) if '"PA_m3"' in b and "participant_joined" in b)
    bodies[i], bodies[j] = bodies[j], bodies[i]
    return bodies


def inputs_sql():
    """The schedule, links and roster (the same statements on both sides)."""
    s = [f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')"]
    for sid, room, a, b, course in SCHEDULE:
        s.append(f"SELECT attendance_schedule_session({sid}, '{room}', to_timestamp({T0 + a * 60}), "
                 f"to_timestamp({T0 + b * 60}), course => '{course}')")
    s += [f"SELECT attendance_link_room({sid}, '{room}')" for sid, room in LINKS]
    s += [f"SELECT attendance_expect({sid}, {u}, '{r}')" for sid, u, r in ROSTER]
    return "; ".join(s)


RESULT_COLUMNS = ("session_id, user_key, user_id, role, attendance_status, attendance_percentage, "
                  "presence_ms, first_join_time, last_leave_time, join_count, leave_count, "
                  "total_duration_minutes, status_rule, is_calculated")
ROWS = {  # what must be equal on both sides
    "results": f"SELECT {RESULT_COLUMNS} FROM meeting_attendances WHERE session_id IN (23001, 23002, 23003) "
               "ORDER BY session_id, user_key",
    "connections": "SELECT session_id, room_name, participant_sid, user_key, join_time, join_source, leave_time, "
                   "end_reason FROM attendance_sessions WHERE session_id IN (23001, 23002, 23003) "
                   "ORDER BY 1, 2, 3",
    "course": "SELECT * FROM attendance_course_report('citus-math', current_date - 2, current_date + 1) "
              "ORDER BY 1, 2",
    "alerts": "SELECT course, user_key, threshold, rate, sessions_counted, raised_session_id, cleared_at IS NULL "
              "FROM attendance_alerts ORDER BY 1, 2, 6",
    # (less the moments of the calculation and of the call)
    "explain": "SELECT (attendance_explain(23001, 2) #- '{stored,calculated_at}' #- '{window,as_of}' "
               "#- '{window,as_of_ms}')::text",
    "log": "SELECT event_id, event_type, event_timestamp, room_name, participant_sid, result "
           "FROM meeting_attendance_events WHERE room_name LIKE 'citus-%' ORDER BY event_id",
}


def calculate(run):
    """Folds and calculates the three sessions (whatever the scheduler did already)."""
    run("SELECT attendance_fold()")
    for sid in SESSIONS:
        run(f"SELECT attendance_calculate({sid})")


def rows_of(run):
    return {name: run(q) for name, q in ROWS.items()}


cluster = None
proxy = None
state = {}
try:
    try:
        cluster = citus.Cluster(workers=2)
    except Exception as exc:  # noqa: BLE001
        FAILURES.append("cluster")
        print(f"FAIL a coordinator and two workers: {exc}", flush=True)
        raise SystemExit(finish())
    c = cluster.coordinator

    @case("CREATE EXTENSION attendance beside citus reaches every worker")
    def _():
        c.sql("CREATE EXTENSION attendance")
        assert c.sql("SELECT count(*) FROM citus_get_active_worker_nodes()") == "2"
        for w in cluster.workers:
            assert w.sql("SELECT extversion FROM pg_extension WHERE extname = 'attendance'") == \
                c.sql("SELECT extversion FROM pg_extension WHERE extname = 'attendance'"), w.name

    @case("the scheduler runs on the coordinator and stands down on every worker")
    def _():
        citus.wait_until(lambda: json.loads(c.sql("SELECT attendance_worker_status()"))["runs_since_start"] > 0,
                         90, "a run of the coordinator's scheduler")
        assert json.loads(c.sql("SELECT attendance_worker_status()"))["last_run_ok"] is True, \
            c.sql("SELECT attendance_worker_status()")
        for w in cluster.workers:
            status = citus.wait_until(
                lambda w=w: (lambda s: s if s.get("runs_since_start", 0) > 0 else None)(
                    json.loads(w.sql("SELECT attendance_worker_status()"))),
                90, f"the scheduler of {w.name} reports")
            assert status["last_run_ok"] is False and "Citus worker" in status["last_run_message"], status
            # it wrote nothing: no run history, no partition of its own
            assert w.sql("SELECT count(*) FROM attendance_job_runs") == "0", w.name
            assert w.sql("SELECT count(*) FROM pg_inherits WHERE inhparent = "
                         "'meeting_attendance_events'::regclass") == "1", w.name
        assert c.sql("SELECT count(*) FROM attendance_job_runs WHERE job = 'partitions'") != "0"

    @case("a class workload through the proxy gives the rows of one node")
    def _():
        global proxy
        bodies = webhooks()
        signer = Signer(KEY, SECRET, 3600)
        # one node: the runner's cluster, a database of its own, the same webhooks by SQL
        psql(f"DROP DATABASE IF EXISTS {SINGLE_DB}")
        psql(f"CREATE DATABASE {SINGLE_DB}")
        psql("CREATE EXTENSION attendance", db=SINGLE_DB)
        psql(inputs_sql(), db=SINGLE_DB)
        for b in bodies:
            q = b.replace("'", "''")
            psql(f"SELECT attendance_ingest_webhook('{q}', '{signer.sign(b)}')", db=SINGLE_DB)
        # the cluster: through the proxy, to the coordinator
        c.sql(inputs_sql())
        proxy = ha.Proxy(PROXY, f"host=127.0.0.1 port={c.port} user=postgres dbname=postgres",
                         os.path.join(cluster.base, "proxy.log"))
        for b in bodies:
            status, text = proxy.post(b.encode(), signer.sign(b))
            assert status == 200, (status, text)
        state["bodies"], state["signer"] = bodies, signer
        calculate(lambda q: psql(q, db=SINGLE_DB))
        calculate(c.sql)
        one, many = rows_of(lambda q: psql(q, db=SINGLE_DB)), rows_of(c.sql)
        for name in ROWS:
            assert one[name] == many[name], f"{name} differ:\none node:\n{one[name]}\ncluster:\n{many[name]}"
        # the workload means something: every session has results, statuses vary, the
        # breakout and linked rooms count, the lost leave was closed
        assert one["results"].count("\n") + 1 >= 13, one["results"]
        for status in ("present", "late", "absent"):
            assert f"|{status}|" in one["results"], (status, one["results"])
        assert "citus-math-breakout-1|PA_m2b" in one["connections"], one["connections"]
        assert "citus-art-side|PA_a9" in one["connections"], one["connections"]
        lost = [r for r in one["connections"].splitlines() if "|PA_m4b|" in r]
        assert lost and all(r.endswith("|reconciled") for r in lost), one["connections"]

    @case("a redelivery is stored once")
    def _():
        bodies, signer = state["bodies"], state["signer"]
        before = c.sql("SELECT count(*) FROM meeting_attendance_events")
        status, text = proxy.post(bodies[3].encode(), signer.sign(bodies[3]))
        assert status == 200 and json.loads(text)["result"] == "duplicate", (status, text)
        assert c.sql("SELECT count(*) FROM meeting_attendance_events") == before

    @case("a worker restarted under load loses nothing acknowledged")
    def _():
        hooks = ha.sign(c.port, "citusload", 400, "citus-load", (T0 + 3600) * 1000, KEY)
        load = ha.Load(proxy, hooks, threads=3, pause=0.01)
        citus.wait_until(lambda: load.acked_after(0) >= 100, 120, "100 webhooks acknowledged")
        cluster.restart(cluster.workers[0])
        citus.wait_until(lambda: len(load.answers) == len(hooks), 300, "every webhook answered once")
        load.stop()
        load.resend(timeout=120)
        stored = set(c.sql("SELECT event_id FROM meeting_attendance_events WHERE room_name = 'citus-load'")
                     .splitlines())
        missing = load.acked - stored
        assert not missing, f"{len(missing)} acknowledged webhooks are not in the log"
        assert stored == {h[0] for h in hooks}, f"{len(stored)} of {len(hooks)} stored after resending"
        assert cluster.workers[0].sql("SELECT 1") == "1"
finally:
    if proxy:
        proxy.stop()
    if FAILURES and cluster:
        print(cluster.logs())
    if cluster:
        cluster.stop()
    try:
        psql(f"DROP DATABASE IF EXISTS {SINGLE_DB}")
    except Exception:  # noqa: BLE001
        pass
finish()
