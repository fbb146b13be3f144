#!/usr/bin/env python3
"""attendance on a Citus cluster (docs/scaling.md, "Citus"): a coordinator and two workers
on free ports, every node with shared_preload_libraries = 'citus,attendance'.
CREATE EXTENSION attendance on the coordinator reaches the workers; attendance_distribute()
distributes the log by room; the scheduler runs once for the cluster, on the coordinator,
and stands down on every worker; each webhook is a single-shard write; a class workload
with a shared room, a breakout room and a linked room, posted through attendance-proxy to
the coordinator, gives exactly the rows, reports, views and explanations the same webhooks
give on one node, and its rooms are spread over both workers; forgetting a person, new
partitions and retention give the same answers as on one node; a redelivery is stored
once; a worker restarted under load loses nothing acknowledged.

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
from pgtest import FAILURES, PG_BIN, PROXY, ROOT, Proxy, case, ctl, finish, psql, wait_until  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench"))
from gen_workload import Signer  # noqa: E402

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
    # a room no session has: its events are unmatched
    ("citus-nowhere", "PA_x11", 11, 10, 20),
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
    s = [f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')",
         # alerts below 90 % from the first session, so that the course's alerts are compared
         "UPDATE attendance_policies SET alert_below = 90, alert_min_sessions = 1 WHERE name = 'default'"]
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
    # (not which session's calculation raised an alert: that follows the order the
    # scheduler calculated in)
    "alerts": "SELECT course, user_key, threshold, rate, sessions_counted, cleared_at IS NULL "
              "FROM attendance_alerts WHERE cleared_at IS NULL ORDER BY 1, 2",
    # (less the moments of the calculation and of the call)
    "explain": "SELECT (attendance_explain(23001, 2) #- '{stored,calculated_at}' #- '{window,as_of}' "
               "#- '{window,as_of_ms}')::text",
    "log": "SELECT event_id, event_type, event_timestamp, room_name, participant_sid, result "
           "FROM meeting_attendance_events WHERE room_name LIKE 'citus-%' ORDER BY event_id",
    "recent": "SELECT event_id, event_type, result, session_id, room_name, user_key, connection_duration "
              "FROM attendance_recent_events WHERE room_name LIKE 'citus-%' ORDER BY event_id",
    "unmatched": "SELECT event_id, problem FROM attendance_unmatched_events ORDER BY event_id",
    "room_links": "SELECT * FROM attendance_session_room_links WHERE session_id IN (23001, 23002, 23003) "
                  "ORDER BY 1, 2",
    "activity": "SELECT event_type, result, webhooks FROM attendance_webhook_activity(60) ORDER BY 1, 2",
    "report": "SELECT session_id, user_key, status, percentage, enter_time, leave_time FROM attendance_session_report "
              "WHERE session_id IN (23001, 23002, 23003) ORDER BY 1, 2",
}


EARLY = json.dumps({"event": "participant_joined", "id": "EV_citus_early", "createdAt": str(T0),
                    "room": {"name": "citus-early"},
                    "participant": {"sid": "PA_early", "identity": "user-12", "joinedAtMs": str(T0 * 1000)}},
                   separators=(",", ":"))


def log_early(run, signer):
    """What a log holds before it is distributed: a webhook, and a row without a room as
    versions before 0.5.2 logged it (NULL)."""
    assert json.loads(run(f"SELECT attendance_ingest_webhook('{EARLY}', '{signer.sign(EARLY)}')"))["result"] \
        == "recorded"
    run("INSERT INTO meeting_attendance_events (event_id, event_type, event_timestamp, room_name, result, reason, "
        f"raw_webhook_data) VALUES ('EV_citus_roomless', 'egress_started', to_timestamp({T0}), NULL, 'ignored', "
        "'an egress', '{}')")


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

    @case("attendance_distribute() distributes a log that holds rows by room, once")
    def _():
        # rows logged before: a webhook, and a row without a room as versions before 0.5.2
        # logged it (NULL): it gets the room ''
        signer = Signer(KEY, SECRET, 3600)
        c.sql(f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')")
        log_early(c.sql, signer)
        out = json.loads(c.sql("SELECT attendance_distribute()"))
        assert out["distributed"] is True and out["shards"] == 32 and out["roomless_events"] == 1, out
        assert c.sql("SELECT string_agg(event_id || ':' || room_name, ',' ORDER BY event_id) FROM meeting_attendance_events") \
            == "EV_citus_early:citus-early,EV_citus_roomless:", "the rows logged before are in the shards"
        # the redelivery of a row logged before is still one
        again = json.loads(c.sql(f"SELECT attendance_ingest_webhook('{EARLY}', '{signer.sign(EARLY)}')"))
        assert again["result"] == "duplicate", again
        assert c.sql("SELECT partmethod::text || ' ' || column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition "
                     "WHERE logicalrelid = 'meeting_attendance_events'::regclass") == "h room_name"
        assert c.sql("SELECT partmethod FROM pg_dist_partition "
                     "WHERE logicalrelid = 'attendance_retired_events'::regclass") == "n"
        # every partition is distributed with the log, co-located
        assert c.sql("SELECT count(DISTINCT colocationid) FROM pg_dist_partition p JOIN pg_inherits i "
                     "ON i.inhrelid = p.logicalrelid WHERE i.inhparent = 'meeting_attendance_events'::regclass") == "1"
        again = json.loads(c.sql("SELECT attendance_distribute()"))
        assert again["distributed"] is False, again
        # the other tables stay on the coordinator
        assert c.sql("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = "
                     "'attendance_session_schedule'::regclass") == "0"
        # on a worker it refuses, with its SQLSTATE
        w = cluster.workers[0]
        p = subprocess.run([f"{PG_BIN}/psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(w.port), "-U", "postgres",
                            "-v", "VERBOSITY=verbose", "-c", "SELECT attendance_distribute()"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "55000" in p.stderr and "Citus worker" in p.stderr, p.stderr

    @case("each webhook is a single-shard write")
    def _():
        plan = c.sql("EXPLAIN (COSTS OFF) INSERT INTO meeting_attendance_events (event_id, event_type, "
                     "event_timestamp, room_name, result, raw_webhook_data) VALUES ('EV_x', 'participant_joined', "
                     "now(), 'citus-math', 'recorded', '{}') ON CONFLICT DO NOTHING RETURNING id")
        assert "Task Count: 1" in plan, plan
        # and so is a redelivery's look-up, by its room (src/pg/ingest.cpp)
        plan = c.sql("EXPLAIN (COSTS OFF) SELECT id FROM meeting_attendance_events WHERE event_id = 'EV_x' "
                     "AND event_timestamp = now() AND room_name = 'citus-math'")
        assert "Task Count: 1" in plan, plan

    @case("the scheduler runs on the coordinator and stands down on every worker")
    def _():
        # (each scheduler ran once before the extension existed: the state asserted is waited for)
        wait_until(lambda: c.sql("SELECT count(*) FROM attendance_job_runs WHERE job = 'partitions' "
                                 "AND status = 'succeeded'") != "0", 90, "a run of the coordinator's scheduler")
        wait_until(lambda: json.loads(c.sql("SELECT attendance_worker_status()"))["last_run_ok"] is True,
                   90, "the coordinator's scheduler ran well")
        for w in cluster.workers:
            status = wait_until(
                lambda w=w: (lambda s: s if "Citus worker" in (s.get("last_run_message") or "") else None)(
                    json.loads(w.sql("SELECT attendance_worker_status()"))),
                90, f"the scheduler of {w.name} stands down")
            assert status["last_run_ok"] is False, status
            # it wrote nothing: no run history, no fold
            assert w.sql("SELECT count(*) FROM attendance_job_runs") == "0", w.name
            assert w.sql("SELECT folds FROM attendance_fold_state") == "0", w.name

    @case("a class workload through the proxy gives the rows of one node")
    def _():
        global proxy
        bodies = webhooks()
        signer = Signer(KEY, SECRET, 3600)
        # one node: the runner's cluster, a database of its own, the same webhooks by SQL
        psql(f"DROP DATABASE IF EXISTS {SINGLE_DB}")
        psql(f"CREATE DATABASE {SINGLE_DB}")
        psql("CREATE EXTENSION attendance", db=SINGLE_DB)
        # without Citus it says so, with its SQLSTATE, and changes nothing
        p = subprocess.run(["psql", "-X", "-At", "-v", "VERBOSITY=verbose", "-d", SINGLE_DB,
                            "-c", "SELECT attendance_distribute()"], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "55000" in p.stderr and "Citus is not installed" in p.stderr, p.stderr
        psql(inputs_sql(), db=SINGLE_DB)
        log_early(lambda q: psql(q, db=SINGLE_DB), signer)
        for b in bodies:
            q = b.replace("'", "''")
            psql(f"SELECT attendance_ingest_webhook('{q}', '{signer.sign(b)}')", db=SINGLE_DB)
        # the cluster: through the proxy, to the coordinator
        c.sql(inputs_sql())
        proxy = Proxy(PROXY, f"host=127.0.0.1 port={c.port} user=postgres dbname=postgres",
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
        # an event no session claims shows the same on both sides, and so do the alerts
        assert one["unmatched"], one["unmatched"]
        assert one["alerts"], "no alert was raised: the comparison of alerts would prove nothing"
        # and so does attendancectl's view of the log of a session (its breakout room too)
        events = {}
        for side, env in (("one", {"PGDATABASE": SINGLE_DB}),
                          ("cluster", {"PGHOST": "127.0.0.1", "PGPORT": str(c.port), "PGDATABASE": "postgres"})):
            out = ctl("events", "--session", "23001", "--last", "100", "--json", **env)
            assert out.returncode == 0, out.stderr
            events[side] = [{k: v for k, v in e.items() if k not in ("id", "received_at")} for e in json.loads(out.stdout)]
        assert events["one"] == events["cluster"], events
        assert any(e["room_name"] == "citus-math-breakout-1" for e in events["one"]), events["one"]

    @case("forgetting a person gives the rows of one node")
    def _():
        single = lambda q: psql(q, db=SINGLE_DB)  # noqa: E731
        for run in (single, c.sql):
            out = run("SELECT log_rows || ' ' || attendance_rows FROM attendance_forget_person(3)")
            assert out.split()[0] != "0", out
            calculate(run)
        # each installation has a secret salt of its own, so the pseudonyms differ: compared
        # under one name
        one, many = ({name: text.replace(run("SELECT pseudonym FROM attendance_erasures"), "PSEUDONYM")
                      for name, text in rows_of(run).items()} for run in (single, c.sql))
        for name in ROWS:
            assert one[name] == many[name], f"{name} differ:\none node:\n{one[name]}\ncluster:\n{many[name]}"
        assert "|PSEUDONYM|" in one["results"], one["results"]
        assert c.sql("SELECT count(*) FROM meeting_attendance_events WHERE user_id = 3") == "0"

    @case("new partitions and retention on the distributed log give the answers of one node")
    def _():
        signer = state["signer"]
        old_t, ahead_t = int(time.time()) - 100 * 86400, int(time.time()) + 150 * 86400

        def hook(event_id, t):
            return json.dumps({"event": "participant_joined", "id": event_id, "createdAt": str(t),
                               "room": {"name": "citus-archive"},
                               "participant": {"sid": "PA_arch", "identity": "user-99",
                                               "joinedAtMs": str(t * 1000)}}, separators=(",", ":"))

        answers = {}
        for side, run in (("one", lambda q: psql(q, db=SINGLE_DB)), ("cluster", c.sql)):
            got = []
            for event_id, t in (("EV_arch_old", old_t), ("EV_arch_ahead", ahead_t)):
                b = hook(event_id, t)
                got.append(json.loads(run(f"SELECT attendance_ingest_webhook('{b}', '{signer.sign(b)}')"))["result"])
            # both rows land in the default partition; the maintenance gives each range a
            # partition of its own and retires the old one (30 days' retention). (The
            # scheduler's own maintenance, which keeps everything, may run meanwhile: a call
            # that found it running is made again.)
            wait_until(lambda run=run: not json.loads(run(
                "SET attendance.event_retention = '30d'; SELECT attendance_maintain_log()"))["skipped"],
                120, "a maintenance run")
            got.append(run(f"SELECT count(*) FROM attendance_retired_events WHERE range_start <= to_timestamp({old_t}) "
                           f"AND range_end > to_timestamp({old_t})"))
            b = hook("EV_arch_late", old_t + 60)
            got.append(json.loads(run(f"SELECT attendance_ingest_webhook('{b}', '{signer.sign(b)}')"))["result"])
            got.append(run("SELECT string_agg(event_id, ',' ORDER BY event_id) FROM meeting_attendance_events "
                           "WHERE room_name = 'citus-archive'"))
            got.append(run("SELECT count(*) FROM meeting_attendance_events_default"))
            answers[side] = got
        assert answers["one"] == answers["cluster"], answers
        assert answers["one"] == ["recorded", "recorded", "1", "retired", "EV_arch_ahead", "0"], answers
        # the new partition is distributed with the log
        assert c.sql("SELECT count(*) FROM pg_inherits i LEFT JOIN pg_dist_partition p ON p.logicalrelid = i.inhrelid "
                     "WHERE i.inhparent = 'meeting_attendance_events'::regclass AND p.logicalrelid IS NULL") == "0"

    @case("a redelivery is stored once")
    def _():
        bodies, signer = state["bodies"], state["signer"]
        before = c.sql("SELECT count(*) FROM meeting_attendance_events")
        status, text = proxy.post(bodies[3].encode(), signer.sign(bodies[3]))
        assert status == 200 and json.loads(text)["result"] == "duplicate", (status, text)
        assert c.sql("SELECT count(*) FROM meeting_attendance_events") == before

    @case("a worker restarted under load loses nothing acknowledged")
    def _():
        hooks = [h for k in range(20)
                 for h in ha.sign(c.port, f"citusload{k}", 20, f"citus-load-{k}", (T0 + 3600) * 1000, KEY)]
        load = ha.Load(proxy, hooks, threads=3, pause=0.01)
        wait_until(lambda: load.acked_after(0) >= 100, 120, "100 webhooks acknowledged")
        cluster.restart(cluster.workers[0])
        wait_until(lambda: len(load.answers) == len(hooks), 300, "every webhook answered once")
        load.stop()
        load.resend(timeout=120)
        stored = set(c.sql("SELECT event_id FROM meeting_attendance_events WHERE room_name LIKE 'citus-load-%'")
                     .splitlines())
        missing = load.acked - stored
        assert not missing, f"{len(missing)} acknowledged webhooks are not in the log"
        assert stored == {h[0] for h in hooks}, f"{len(stored)} of {len(hooks)} stored after resending"
        assert cluster.workers[0].sql("SELECT 1") == "1"
        # the rooms are spread over both workers: each holds some of the log's rows
        held = c.sql("SELECT n.nodeport, count(*) FROM meeting_attendance_events e "
                     "JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column("
                     "'meeting_attendance_events', e.room_name) "
                     "JOIN pg_dist_node n ON n.groupid = p.groupid GROUP BY 1 ORDER BY 1").splitlines()
        assert sorted(int(r.split("|")[0]) for r in held) == sorted(w.port for w in cluster.workers), held
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
