#!/usr/bin/env python3
"""The integration guide's example client (examples/school_app.py) against the test cluster
and a real attendance-proxy, as the application's least-privilege role (examples/roles.sql):
what it prints is the fixture's expected attendance (test/fixtures/livekit/README.md), the
explain and the override are the database's, the role can do nothing else, and the guide
shows the roles script as it is (docs/integration.md).

Runs in the database the scheduler serves (attendance.database_name = postgres): the
example waits for the scheduler's own notification. Makes and removes the roles it uses.
Needs Debian's /usr/bin/python3 with python3-psycopg (scripts/deps.sh installs it)."""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import PROXY, ROOT, Proxy, case, ctl, finish, psql, run_checked  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "school_app.py")
ROLES_SQL = os.path.join(ROOT, "examples", "roles.sql")
GUIDE = os.path.join(ROOT, "docs", "integration.md")
FIXTURE_README = os.path.join(ROOT, "test", "fixtures", "livekit", "README.md")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-psycopg is installed
KEY, SECRET = "APIfixture", "fixture-secret-0123456789abcdef0123"
WEB, PROXY_ROLE, SCHEDULER, DPO = "e2e_example_web", "e2e_example_proxy", "e2e_example_scheduler", "e2e_example_dpo"
LOGIN_ROLES = (WEB, PROXY_ROLE, SCHEDULER, DPO)
GROUP_ROLES = ("school_app", "school_override", "school_privacy")
RULES_DB = "e2e_example_rules"
TMP = tempfile.mkdtemp(prefix="attendance-e2e-example.")


def as_role(role, sql):
    """Runs SQL as `role`; returns (SQLSTATE or None, output)."""
    p = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate",
                        "-U", role, "-d", "postgres", "-c", sql], capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        return None, p.stdout.strip()
    m = re.search(r"ERROR:\s+([0-9A-Z]{5})", p.stderr)
    return (m.group(1) if m else p.stderr.strip()), p.stderr.strip()


def rules(sql):
    return psql(sql, db=RULES_DB)


def attend(room, sid, user, joined, left, day="2025-11-21"):
    """A signed join and leave of user-<user> in `room` on `day` (times HH:MM, UTC)."""
    rules(f"""
        SELECT count(attendance_ingest_webhook(b, attendance_sign_webhook(b, '{KEY}')))
        FROM (SELECT json_build_object('event', ev, 'id', 'EV_' || '{sid}' || ev,
                'createdAt', extract(epoch FROM at)::bigint::text,
                'room', json_build_object('name', '{room}'),
                'participant', json_build_object('sid', '{sid}', 'identity', 'user-{user}',
                   'joinedAtMs', (extract(epoch FROM timestamptz '{day} {joined}Z') * 1000)::bigint::text))::text AS b
              FROM (VALUES ('participant_joined', timestamptz '{day} {joined}Z'),
                           ('participant_left', timestamptz '{day} {left}Z')) v(ev, at)) q""")


def drop_everything():
    psql("SET client_min_messages = warning; DROP EXTENSION IF EXISTS attendance CASCADE")
    for role in LOGIN_ROLES + GROUP_ROLES:
        # DROP OWNED revokes what the role was granted outside the extension (its schema)
        if psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == "1":
            psql(f"DROP OWNED BY {role}; DROP ROLE {role}")


def expected_attendance():
    """{user_id: (percentage, status)} from the fixture README's "Expected after calculation"."""
    text = open(FIXTURE_README, encoding="utf-8").read()
    section = text.split("Expected after calculation", 1)[1]
    rows = re.findall(r"^\| (\d+)(?: \(teacher\))? \| [^|]+\| ([0-9.]+) \| (\w+) \|", section, re.M)
    assert len(rows) == 6, rows
    return {int(u): (pct, status) for u, pct, status in rows}


def section(output, number):
    """The lines the example printed under its heading "== <number>. ..."."""
    m = re.search(rf"^== {number}\. .*?\n(.*?)(?=^== |\Z)", output, re.M | re.S)
    assert m, f"no section {number} in the output:\n{output}"
    return m.group(1)


# ---- setup: the operator's part -----------------------------------------------------------
drop_everything()
psql("SET client_min_messages = warning; CREATE EXTENSION attendance")
psql(f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')")
run_checked(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-f", ROLES_SQL], 0)
psql(f"CREATE ROLE {WEB} LOGIN IN ROLE school_app, school_override")
psql(f"CREATE ROLE {SCHEDULER} LOGIN IN ROLE school_app")
psql(f"CREATE ROLE {DPO} LOGIN IN ROLE school_privacy")
psql(f"CREATE ROLE {PROXY_ROLE} LOGIN IN ROLE attendance_ingest")
proxy = proxy_error = None
try:
    proxy = Proxy(PROXY, f"dbname=postgres user={PROXY_ROLE}", os.path.join(TMP, "proxy.log"),
                  healthy=True, timeout=30)
except RuntimeError as e:  # the first case reports it
    proxy_error = e
OUTPUT = ""

try:
    @case("the example runs as the application's role against attendance-proxy and exits 0")
    def _():
        global OUTPUT
        assert proxy is not None, f"attendance-proxy did not start: {proxy_error}"
        p = run_checked([PYTHON, EXAMPLE, "--dsn", f"dbname=postgres user={WEB}",
                         "--webhook-url", f"http://127.0.0.1:{proxy.port}/webhooks/livekit",
                         "--api-key", KEY, "--api-secret", SECRET, "--timeout", "180"], 0, timeout=400)
        OUTPUT = p.stdout
        print(OUTPUT, flush=True)
        assert OUTPUT.rstrip().endswith("done"), OUTPUT[-500:]

    @case("it posted the recorded class: 15 answers 200, one duplicate")
    def _():
        answers = re.findall(r"^  HTTP (\d+)  (\w+)\s+\S*\s+(\w+)$", section(OUTPUT, 3), re.M)
        assert len(answers) == 15 and all(a[0] == "200" for a in answers), answers
        results = [a[2] for a in answers]
        assert results.count("duplicate") == 1 and results.count("recorded") == 11, results
        logged = psql("SELECT count(DISTINCT event_id) FROM meeting_attendance_events")
        assert logged == "14", logged

    @case("it waited for the scheduler's attendance_calculated notification")
    def _():
        notes = re.findall(r"^  notification attendance_calculated: session (\d+)$", section(OUTPUT, 4), re.M)
        assert notes and set(notes) == {"456"}, section(OUTPUT, 4)
        runs = psql("SELECT count(*) FROM attendance_job_runs WHERE job = 'calculate' AND processed >= 1")
        assert int(runs) >= 1, "the scheduler calculated nothing"

    @case("the table it printed is the fixture's expected attendance, all final")
    def _():
        printed = re.findall(r"^\s+(\d+)  (teacher|student)\s+(\w+)\s+([0-9.]+)\s+\d+\s+.*?\s(yes|no)\s",
                             section(OUTPUT, 5), re.M)
        got = {int(u): (pct, status) for u, _, status, pct, _ in printed}
        assert got == expected_attendance(), f"printed {got}\nexpected {expected_attendance()}"
        assert all(final == "yes" for *_, final in printed), printed
        assert [r[1] for r in printed if r[0] == "7"] == ["teacher"], printed

    @case("the explain it printed is attendance_explain's: user 40 late, first presence 14:46:10")
    def _():
        text = section(OUTPUT, 6)
        x = json.loads(psql("SELECT attendance_explain(456, 40::bigint)"))
        assert x["status"] == "late" and x["percentage"] == expected_attendance()[40][0], x["status"]
        assert ("user 40 is late (rule late): first presence 14:46:10 is after 14:45:00 (start + 15 min) "
                f"and {x['percentage']} % is at most {x['policy']['numbers']['late_max']} %") in text, text
        assert f"presence {x['presence_seconds']} s of a 2700 s window = 61.85 %" in text, text

    @case("the override: user 19 partial -> excused, recalculated, audited as the application's role")
    def _():
        text = section(OUTPUT, 7)
        assert "notification attendance_calculated: session 456" in text, text
        assert ("user 19: partial 33.33 % -> excused 33.33 % (rule override, final yes), "
                "reason: doctor's note (entered by teacher 7)") in text, text
        assert f"audit: partial -> excused, cause override, by database role {WEB}" in text, text
        row = psql("SELECT attendance_status || ' ' || status_rule || ' ' || is_calculated FROM meeting_attendances "
                   "WHERE session_id = 456 AND user_id = 19")
        assert row == "excused override true", row
        actor = psql("SELECT actor FROM attendance_overrides WHERE session_id = 456 AND user_key = '19'")
        assert actor == WEB, actor

    @case("the application's roles can do nothing else (42501)")
    def _():
        denied = {
            WEB: ["SELECT * FROM attendance_webhook_keys",
                  "SELECT attendance_list_webhook_keys()",
                  "SELECT attendance_add_webhook_key('APIx', 'x-secret-0123456789abcdef0123')",
                  "SELECT attendance_sign_webhook('{}', 'APIfixture')",
                  "SELECT attendance_ingest_webhook('{}', 'x')",
                  "SELECT * FROM attendance_calculate(456)",
                  "SELECT attendance_forget_person(12)",
                  "UPDATE attendance_policies SET late_max = 100",
                  "DELETE FROM attendance_session_schedule",
                  "DELETE FROM attendance_roster",
                  "DELETE FROM meeting_attendance_events",
                  "SELECT attendance_run_job('calculate')"],
            SCHEDULER: ["SELECT attendance_override(456, 23, 'excused', 'x')",
                        "UPDATE meeting_attendances SET attendance_status = 'present'",
                        "INSERT INTO attendance_status_changes (session_id, user_key, cause) VALUES (456, '23', 'x')"],
            DPO: ["SELECT count(*) FROM meeting_attendances",
                  "SELECT attendance_schedule_session(1, 'r', now(), now() + interval '1 hour')"],
        }
        for role, statements in denied.items():
            for sql in statements:
                state, out = as_role(role, sql)
                assert state == "42501", f"{role}: {sql}: {state} {out}"
        # and what school_app alone may do, it may: schedule, move, set a roster, read
        state, out = as_role(SCHEDULER, "SELECT (attendance_schedule_session(457, 'session-457', "
                             "'2025-11-21 14:30Z', '2025-11-21 15:15Z', 'default', 'algebra-9b')).course;"
                             "SELECT (attendance_expect(457, 12)).role;"
                             "SELECT count(*) FROM attendance_course_report('algebra-9b', '2025-11-01', '2025-11-30')")
        assert state is None and out.split() == ["algebra-9b", "student", "6"], (state, out)

    @case("the application's role reads exports and the timeline with attendancectl")
    def _():
        rows = json.loads(ctl("export", "--session", "456", "--format", "json", check_rc=0,
                              PGUSER=WEB, PGDATABASE="postgres").stdout)
        got = {r["user_id"]: (r["status"], float(r["percentage"])) for r in rows}
        assert got[19] == ("excused", 33.33) and got[40] == ("late", 61.85), got
        page = os.path.join(TMP, "456.html")
        ctl("timeline", "456", "--html", page, check_rc=0, PGUSER=WEB, PGDATABASE="postgres")
        html = open(page, encoding="utf-8").read()
        assert "PA_late40xxxxx1" in html and "Late Student" in html, html[:300]

    @case("forgetting a person is a role of its own (school_privacy)")
    def _():
        state, out = as_role(DPO, "SELECT (attendance_forget_person(31)).sessions")
        assert state is None and out == "{456}", (state, out)
        left = psql("SELECT count(*) FROM meeting_attendances WHERE user_id = 31")
        assert left == "0", left

    @case("docs/integration.md shows examples/roles.sql as it is")
    def _():
        guide = open(GUIDE, encoding="utf-8").read()
        script = open(ROLES_SQL, encoding="utf-8").read()
        blocks = re.findall(r"^```sql\n(.*?)^```$", guide, re.M | re.S)
        shown = [b for b in blocks if b.startswith("-- The school application's database roles")]
        assert len(shown) == 1, f"{len(shown)} copies of the roles script in the guide"
        assert shown[0] == script, "the guide's roles script differs from examples/roles.sql"

    # ---- what the guide says this version does with breakout rooms, room reuse, unknown
    # rooms and roster changes: when a version changes it, this fails and the section named
    # in the case is to be updated.
    psql(f"DROP DATABASE IF EXISTS {RULES_DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {RULES_DB}")
    rules("SET client_min_messages = warning; CREATE EXTENSION attendance")
    rules(f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')")

    @case("guide, 'Breakout rooms': linked by name, by room pattern and by attendance_link_room; time there counts")
    def _():
        rules("SELECT attendance_schedule_session(7, 'math-main', '2025-11-21 10:00Z', '2025-11-21 11:00Z')")
        attend("math-main", "PA_5a", 5, "10:00", "10:20")
        attend("b1-session-7", "PA_5b", 5, "10:20", "10:50")
        attend("math-main-breakout-1", "PA_9", 9, "10:20", "10:50")
        attend("math-lab", "PA_6", 6, "10:00", "10:45")
        rules("SELECT attendance_link_room(7, 'math-lab')")
        rules("SELECT attendance_fold()")
        got = rules("SELECT string_agg(user_id || ':' || attendance_status || ':' || attendance_percentage, ' ' "
                    "ORDER BY user_id) FROM attendance_calculate(7)")
        # 5: 20 + 30 of 60 min; 6: 45 of 60 in the linked room; 9: 30 of 60 from 10:20 (late)
        assert got == "5:present:83.33 6:present:75.00 9:late:50.00", got
        links = rules("SELECT string_agg(room_name || ':' || link, ' ' ORDER BY room_name) "
                      "FROM attendance_session_room_links WHERE session_id = 7")
        assert links == ("b1-session-7:room pattern math-lab:linked math-main:main "
                         "math-main-breakout-1:breakout name"), links
        unknown = rules("SELECT count(*) FROM attendance_unmatched_events")
        assert unknown == "0", unknown

    @case("guide, 'Reusing a room': back to back in one room, each class keeps its own people")
    def _():
        rules("SELECT attendance_schedule_session(1, 'room-x', '2025-11-20 10:00Z', '2025-11-20 11:00Z');"
              "SELECT attendance_schedule_session(2, 'room-x', '2025-11-20 11:00Z', '2025-11-20 12:00Z')")
        attend("room-x", "PA_1", 1, "10:00", "10:50", day="2025-11-20")
        rules("SELECT attendance_fold()")
        first = rules("SELECT string_agg(user_id || ':' || attendance_status || ':' || attendance_percentage, ' ') "
                      "FROM attendance_calculate(1)")
        second = rules("SELECT count(*) FROM attendance_calculate(2)")
        assert (first, second) == ("1:present:83.33", "0"), (first, second)
        end = rules("SELECT end_reason FROM attendance_sessions WHERE session_id = 1")
        assert end == "left", end

    @case("guide, 'Unknown rooms': logged, listed, and claimed by a session scheduled later")
    def _():
        attend("lobby-3", "PA_3", 3, "10:00", "10:40", day="2025-11-22")
        listed = rules("SELECT count(*) FROM attendance_unmatched_events WHERE room_name = 'lobby-3'")
        assert listed == "2", listed
        rules("SELECT attendance_schedule_session(3, 'lobby-3', '2025-11-22 10:00Z', '2025-11-22 11:00Z')")
        listed = rules("SELECT count(*) FROM attendance_unmatched_events WHERE room_name = 'lobby-3'")
        assert listed == "0", listed
        rules("SELECT attendance_fold()")
        got = rules("SELECT user_id || ':' || attendance_percentage FROM attendance_calculate(3)")
        assert got == "3:66.67", got

    @case("guide, 'Creating a class': observer takes a person off the roster, even one who joined")
    def _():
        rules("SELECT attendance_expect(7, 5, 'observer')")
        rules("SELECT attendance_fold()")
        got = rules("SELECT count(*) FROM attendance_calculate(7) WHERE user_id = 5")
        assert got == "0", got

    @case("guide, 'Cancelling': scheduled again without its course, a session leaves the course report")
    def _():
        for sid, day in ((8, "2025-11-24"), (9, "2025-11-25")):
            rules(f"SELECT attendance_schedule_session({sid}, 'room-{sid}', '{day} 10:00Z', '{day} 11:00Z', "
                  f"'default', 'chem'); SELECT attendance_expect({sid}, 4)")
        rules("SELECT attendance_calculate_sessions(ARRAY[8, 9])")
        report = "SELECT sessions_expected FROM attendance_course_report('chem', '2025-11-01', '2025-11-30')"
        assert rules(report) == "2", rules(report)
        rules("SELECT attendance_schedule_session(9, 'room-9', '2025-11-25 10:00Z', '2025-11-25 11:00Z')")
        rules("SELECT attendance_calculate_sessions(ARRAY[9])")
        assert rules(report) == "1", rules(report)
        assert rules("SELECT attendance_status FROM meeting_attendances WHERE session_id = 9") == "absent"
finally:
    if proxy is not None:
        proxy.stop()
    drop_everything()
    psql(f"DROP DATABASE IF EXISTS {RULES_DB} WITH (FORCE)")

finish()
