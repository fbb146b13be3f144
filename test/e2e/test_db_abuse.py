#!/usr/bin/env python3
"""What a login role without grants, the proxy's role and the reader can learn or break in
the database, against the test cluster (docs/security.md):
- notifications: a role with no grants and the proxy's role LISTEN on both channels and
  receive ids only (the low-attendance payload used to name the person and the rate); the
  details need the reader role; a forged notification names no alert the reader can find;
- forgetting: after attendance_forget_person and a VACUUM, neither the reader nor the owner
  finds any of the person's values in pg_stats (most common values, histograms), whether
  or not the log as a whole had statistics; they were there before (the control);
- maintenance: right after CREATE EXTENSION, four attendance_maintain_log calls and the
  scheduler's own first `partitions` run, all under way at once, never deadlock or fail;
  each run creates what is missing, or waits, or skips and says so, and every partition is
  made once (in database postgres, the scheduler's: attendance.database_name)."""
import functools
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import case, finish, psql, wait_for  # noqa: E402

DB = "e2e_db_abuse"
NOBODY, PROXY, READER = "e2e_abuse_nobody", "e2e_abuse_proxy", "e2e_abuse_reader"


sql = functools.partial(psql, db=DB)


def as_role(role, query, db=DB):
    """Runs SQL as a login role; returns (exit code, stdout, stderr)."""
    proc = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", db,
                           "-c", query], capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def drop_roles():
    for role in (NOBODY, PROXY, READER):
        psql(f"DROP ROLE IF EXISTS {role}")


def ingest(event, event_id, at_s, joined_s, room, sid, user, name):
    body = json.dumps({"event": event, "id": event_id, "createdAt": str(at_s), "room": {"name": room},
                       "participant": {"sid": sid, "identity": f"user-{user}", "name": name,
                                       "metadata": json.dumps({"email": f"{name.split()[0].lower()}@school.example"}),
                                       "joinedAtMs": str(joined_s * 1000)}})
    q = body.replace("'", "''")
    return sql(f"SELECT attendance_ingest_webhook('{q}', attendance_sign_webhook('{q}', 'APIabuse'))->>'result'")


def attend(session, room, start_s, user, name, visits, minutes):
    """`visits` joins and leaves of one person, every 10 minutes from a minute in, each
    `minutes` long."""
    for v in range(visits):
        sid = f"PA_{session}_{user}_{v}"
        t = start_s + 60 + v * 600
        for kind, at in (("joined", t), ("left", t + minutes * 60)):
            assert ingest(f"participant_{kind}", f"EV_{kind}{session}_{user}_{v}", at, t, room, sid, user,
                          name) == "recorded"


drop_roles()
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
psql(f"CREATE DATABASE {DB}")
psql(f"CREATE ROLE {NOBODY} LOGIN; CREATE ROLE {PROXY} LOGIN IN ROLE attendance_ingest; "
     f"CREATE ROLE {READER} LOGIN IN ROLE attendance_reader")
sql("SET client_min_messages = warning; CREATE EXTENSION attendance")
sql("SELECT attendance_add_webhook_key('APIabuse', 'abuse-secret-0123456789abcdef0123')")
# partitions around now: the sessions of today land in one, those of 2025 in the default one
sql("SELECT attendance_maintain_log()")
sql("INSERT INTO attendance_policies (name, alert_below, alert_sessions, alert_min_sessions) "
    "VALUES ('abuse', 75, 10, 1)")
NOW = int(float(sql("SELECT floor(extract(epoch FROM date_trunc('hour', now()) - interval '3 hours'))")))
OLD = 1763114400  # 2025-11-14 10:00Z
PERSONS = {948271: "Zebulon Quixote", 948272: "Ysolde Marchetti"}
OTHERS = {101: "Student One", 102: "Student Two", 103: "Student Three", 104: "Student Four"}
# sessions 1 (today) and 2 (2025) of course c-abuse. Both persons are present in 1, with
# more visits than anybody else (their values are the most common), and absent from 2
# (one of them comes for 4 minutes): below 75 %, an alert each. The others are present.
sql(f"SELECT attendance_schedule_session(1, 'abuse-room-1', to_timestamp({NOW}), to_timestamp({NOW + 3600}), "
    "'abuse', 'c-abuse');"
    f"SELECT attendance_schedule_session(2, 'abuse-room-2', to_timestamp({OLD}), to_timestamp({OLD + 3600}), "
    "'abuse', 'c-abuse')")
sql("SELECT attendance_expect(s, u) FROM generate_series(1, 2) s, "
    f"unnest(ARRAY[{','.join(str(u) for u in list(PERSONS) + list(OTHERS))}]::bigint[]) u")
for user, name in PERSONS.items():
    attend(1, "abuse-room-1", NOW, user, name, 6, 9)
attend(2, "abuse-room-2", OLD, 948271, PERSONS[948271], 1, 4)
for user, name in OTHERS.items():
    attend(1, "abuse-room-1", NOW, user, name, 1, 55)
    attend(2, "abuse-room-2", OLD, user, name, 1, 55)

try:
    @case("LISTEN as a role with no grants and as the proxy's role: ids only; the details need the reader")
    def _():
        listeners = {}
        for role in (NOBODY, PROXY):
            p = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-U", role, "-d", DB], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            p.stdin.write("LISTEN attendance_low_attendance; LISTEN attendance_calculated; SELECT 'listening';\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "listening", p.stderr.read()
            listeners[role] = p
        try:
            sql("SELECT attendance_calculate_sessions(ARRAY[1, 2])")
            # a forgery: any role may NOTIFY on any channel
            rc, _, err = as_role(NOBODY, """NOTIFY attendance_low_attendance, '{"alert_id": 99999999, "session_id": 1}'""")
            assert rc == 0, err
            outs = {role: p.communicate("SELECT 'done';\n", timeout=60)[0] for role, p in listeners.items()}
        finally:
            for p in listeners.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
        alerts = sql("SELECT string_agg(id || ':' || user_id || ':' || raised_session_id, ',' ORDER BY user_id) "
                     "FROM attendance_alerts")
        # the two persons, absent from session 2, are below 75 % over the course
        assert [a.split(":")[1] for a in alerts.split(",")] == ["948271", "948272"], alerts
        for role, out in outs.items():
            low = re.findall(r'notification "attendance_low_attendance" with payload "(.*)" received', out)
            calc = re.findall(r'notification "attendance_calculated" with payload "(.*)" received', out)
            assert sorted(calc) == ["1", "2"], (role, out)
            payloads = [json.loads(x) for x in low]
            assert payloads[-1] == {"alert_id": 99999999, "session_id": 1}, (role, out)
            got = sorted(f"{x['alert_id']}:{x['session_id']}" for x in payloads[:-1])
            assert got == sorted(f"{a.split(':')[0]}:{a.split(':')[2]}" for a in alerts.split(",")), (role, out)
            assert not re.search(r"948271|948272|Zebulon|Ysolde|c-abuse|rate|user", "".join(low)), (role, out)
            # the ids alone tell this role nothing: it may not read the alerts
            rc, _, err = as_role(role, f"SELECT * FROM attendance_alerts WHERE id = {payloads[0]['alert_id']}")
            assert rc != 0 and "permission denied" in err, (role, rc, err)
        # the reader reads the details by id; the forged id names nothing
        first = outs[NOBODY]
        alert_id = json.loads(re.findall(r'"attendance_low_attendance" with payload "(.*)" received', first)[0])["alert_id"]
        rc, out, err = as_role(READER, "SELECT course || ':' || user_id || ':' || rate || ':' || threshold "
                                       f"FROM attendance_alerts WHERE id = {alert_id}")
        assert rc == 0 and re.fullmatch(r"c-abuse:94827[12]:50\.00:75\.00", out), (rc, out, err)
        rc, out, err = as_role(READER, "SELECT count(*) FROM attendance_alerts WHERE id = 99999999")
        assert (rc, out) == (0, "0"), (rc, out, err)

    # the override's free text names the person too (and its calculations audit)
    sql("SELECT attendance_override(2, 948271, 'excused', 'Zebulon Quixote: doctor''s note')")
    sql("SELECT attendance_override(2, 948271, NULL, 'Zebulon Quixote: note withdrawn')")

    def traces(pattern, role=READER):
        """The columns whose statistics in pg_stats, as `role` sees them (the columns it may
        read), hold a value matching the pattern; [whole] marks the log as a whole."""
        rc, out, err = as_role(role, "SELECT string_agg(t, ' ' ORDER BY t) FROM (SELECT DISTINCT tablename || "
                               "'.' || attname || CASE WHEN inherited THEN '[whole]' ELSE '' END AS t "
                               "FROM pg_stats WHERE schemaname = 'public' AND concat_ws(' ', most_common_vals, "
                               f"histogram_bounds, most_common_elems) ~* '{pattern}') x")
        assert rc == 0, err
        return out.split() if out else []

    def analyze_all(with_log_as_a_whole):
        tables = ["meeting_attendances", "attendance_sessions", "attendance_roster", "attendance_overrides",
                  "attendance_status_changes", "attendance_alerts"]
        if with_log_as_a_whole:
            tables.append("meeting_attendance_events")  # and every partition
        else:
            tables += sql("SELECT string_agg(partition::text, ' ') FROM _attendance_log_partitions()").split()
            tables.append("meeting_attendance_events_default")
        sql("ANALYZE " + ", ".join(tables))

    def forget_leaves_no_statistics(user, name, with_log_as_a_whole):
        pattern = rf"(\m{user}\M|{name.split()[0]}|{name.split()[1]})"
        analyze_all(with_log_as_a_whole)
        # the control: the reader finds the person in the statistics of the derived rows (and,
        # analyzed as a whole, of the log as a whole); the owner also in those of the
        # partitions that hold the person's events, which only the owner may read
        before = traces(pattern)
        expected = {"meeting_attendances.user_id", "attendance_sessions.user_key", "attendance_roster.user_id"}
        if with_log_as_a_whole:
            expected.add("meeting_attendance_events.participant_name[whole]")
        assert expected <= set(before), (sorted(expected - set(before)), before)
        assert not [t for t in before if t.startswith("meeting_attendance_events_")], before
        owner_before = traces(pattern, "postgres")
        parts = [t for t in owner_before if re.match(r"meeting_attendance_events_\d{8}_\d{4}\.participant_name$", t)]
        assert len(parts) == 1, owner_before
        if user == 948271:  # who came to the session of 2025 too, whose events are in the default partition
            assert "meeting_attendance_events_default.participant_name" in owner_before, owner_before
        erased = sql(f"SELECT log_rows FROM attendance_forget_person({user})")
        assert int(erased) >= 12, erased
        sql("VACUUM")
        assert traces(pattern) == [], traces(pattern)
        assert traces(pattern, "postgres") == [], traces(pattern, "postgres")

    @case("forgetting leaves nothing in pg_stats: the log with statistics of its partitions only")
    def _():
        forget_leaves_no_statistics(948271, PERSONS[948271], False)

    @case("forgetting leaves nothing in pg_stats: the log with statistics of its own too")
    def _():
        forget_leaves_no_statistics(948272, PERSONS[948272], True)
finally:
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    drop_roles()


def fresh_extension(then=""):
    """DROP EXTENSION may meet a scheduler run and be chosen as a deadlock's victim: retried.
    `then`: more SQL in the same transaction."""
    for attempt in range(5):
        try:
            psql("SET client_min_messages = warning; DROP EXTENSION IF EXISTS attendance CASCADE; "
                 "CREATE EXTENSION attendance; " + then)
            return
        except RuntimeError as exc:
            if "deadlock detected" not in str(exc) or attempt == 4:
                raise


@case("four maintenance runs and the scheduler's first run at once, right after CREATE EXTENSION")
def _():
    # The test holds SHARE UPDATE EXCLUSIVE on the log: every run gets as far as attaching
    # its first partition (or waiting for another run) and waits there, so that the five
    # overlap; then the test lets go. The scheduler's `partitions` job is held back by a run
    # recorded with CREATE EXTENSION (the scheduler runs every second here, and would
    # otherwise make the partitions before the test holds the log), and let go once it does.
    ahead = int(psql("SHOW attendance.partitions_ahead"))
    runner_sql = "SELECT attendance_maintain_log('30 seconds')"
    for round_ in range(3):
        gate = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        runners = []
        try:
            fresh_extension("INSERT INTO attendance_job_runs (job, status, finished_at, message) "
                            "VALUES ('partitions', 'succeeded', now(), 'held back by the test')")
            gate.stdin.write("BEGIN; LOCK TABLE meeting_attendance_events IN SHARE UPDATE EXCLUSIVE MODE; "
                             "SELECT 'closed';\n")
            gate.stdin.flush()
            line = gate.stdout.readline().strip()
            assert line == "closed", (line, gate.stderr.read() if gate.poll() is not None else "")
            for _ in range(4):
                runners.append(subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c",
                                                 runner_sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True))
            # the scheduler's first partition maintenance
            psql("DELETE FROM attendance_job_runs WHERE job = 'partitions'; SELECT _attendance_wake_worker()")
            waiting = wait_for(lambda: any(r.poll() is not None for r in runners) or psql(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                f"        AND query = $${runner_sql}$$) = 4 "
                "   AND EXISTS (SELECT 1 FROM attendance_job_runs WHERE job = 'partitions')") == "t", 60)
            ended = [r.communicate() for r in runners if r.poll() is not None]
            assert waiting and not ended, ("a run ended while the log was held", ended)
            # the scheduler's run waits too, unless its 2 s were over already
            wait_for(lambda: psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'attendance run' "
                                  "AND wait_event_type = 'Lock'") == "1", 5)
            gate.stdin.write("COMMIT; SELECT 'open';\n")
            gate.stdin.flush()
            line = gate.stdout.readline().strip()
            assert line == "open", (line, gate.stderr.read() if gate.poll() is not None else "")
            results = []
            for r in runners:
                out, err = r.communicate(timeout=120)
                assert r.returncode == 0, (round_, r.returncode, err)
                results.append(json.loads(out.strip()))
        finally:
            for p in [gate] + runners:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        run = wait_for(lambda: psql("SELECT status || '|' || processed || '|' || coalesce(message, '') "
                                    "FROM attendance_job_runs WHERE job = 'partitions' AND status <> 'running'"), 60)
        assert run, psql("SELECT * FROM attendance_job_runs")
        status, processed, message = run.split("|", 2)
        # waited for another run (then found nothing to do), or skipped after its 2 s, or
        # postponed attaching (the log was busy): never an error
        assert status == "succeeded", run
        assert message.startswith(("created ", "skipped: another partition maintenance")), run
        for x in results:
            assert not x["skipped"] and x["message"].startswith("created "), x
        created = sum(x["created"] for x in results) + int(processed)
        partitions = int(psql("SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached'"))
        # each partition made once, by one of the five runs
        assert partitions == ahead + 1 and created == partitions, (round_, results, run, partitions)


fresh_extension()
finish()
