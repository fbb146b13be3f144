#!/usr/bin/env python3
"""attendancectl export and the low-attendance notifications, against the test cluster in
a database of its own (e2e_export): a course's report and a session as CSV (RFC 4180,
parsed back by Python's csv module: Arabic names and names with commas, quotes and line
breaks round-trip) and JSON, the same numbers as attendance_course_report, errors and exit
codes, and NOTIFY attendance_low_attendance when an alert is raised and when a late
webhook clears it."""
import csv
import functools
import io
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import pgtest  # noqa: E402
from pgtest import case, finish, psql  # noqa: E402

DB = "e2e_export"
TMP = tempfile.mkdtemp(prefix="attendancectl-export-")
ARABIC = "أحمد علي"
TRICKY = 'Smith, "Jo"\nJr.'
FORMULA = '=HYPERLINK("http://x.example","grade")'
NAMES = {1: ARABIC, 2: TRICKY, 3: "Carol", 4: FORMULA, 5: "@SUM(A1)"}


# attendancectl's output as bytes (the CSV's line ends are checked)
ctl = functools.partial(pgtest.ctl, text=False, PGDATABASE=DB)
sql = functools.partial(psql, db=DB)


def attend(session, user, join_min, leave_min):
    """Logs a signed join and leave of `user` in `session`, minutes after its start."""
    sql(f"""
        SELECT count(attendance_ingest_webhook(b, attendance_sign_webhook(b, 'APIfixture')))
        FROM (SELECT json_build_object(
                'event', ev, 'id', format('EV_%s_%s_%s', {session}, {user}, ev),
                'createdAt', (t0 + m * 60)::text,
                'room', json_build_object('name', 'ar-{session}', 'sid', 'RM_{session}'),
                'participant', json_build_object('sid', 'PA_{session}_{user}', 'identity', 'user-{user}',
                   'name', {lit(NAMES[user])}, 'joinedAtMs', ((t0 + {join_min} * 60) * 1000)::text))::text AS b
              FROM (SELECT extract(epoch FROM timestamptz '2025-11-01 08:00Z'
                                   + {session} * interval '1 day')::bigint AS t0) t,
                   (VALUES ('participant_joined', {join_min}), ('participant_left', {leave_min})) v(ev, m)) q""")


def lit(text):
    return "'" + text.replace("'", "''") + "'"


def parse_csv(data):
    """Rows of an RFC 4180 file (bytes): UTF-8, CRLF record ends."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# ---- setup: a course of three daily sessions --------------------------------------------
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
psql(f"CREATE DATABASE {DB}")
sql("SET client_min_messages = warning; CREATE EXTENSION attendance")
sql("SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123')")
# alerts below 50 % over a person's last 2 sessions
sql("INSERT INTO attendance_policies (name, alert_below, alert_sessions, alert_min_sessions) "
    "VALUES ('e2e', 50, 2, 2)")
sql("SELECT attendance_schedule_session(s, 'ar-' || s, t, t + interval '1 hour', 'e2e', 'arabic-101') "
    "FROM generate_series(1, 3) s, "
    "LATERAL (SELECT timestamptz '2025-11-01 08:00Z' + s * interval '1 day' AS t) x")
sql("SELECT attendance_expect(s, u) FROM generate_series(1, 3) s, generate_series(1, 3) u")
# user 1 always; user 2 late in session 2; user 3 only in session 1 (session 3's join
# arrives late, below)
for s in (1, 2, 3):
    attend(s, 1, 0, 60)
attend(1, 2, 0, 60)
attend(2, 2, 20, 60)
attend(3, 2, 0, 60)
attend(1, 3, 0, 60)
sql("SELECT attendance_calculate_sessions(ARRAY[1, 2])")
sql("SELECT attendance_override(2, 1, 'excused', 'family')")


@case("export --course --format csv: RFC 4180, CRLF, Arabic and quoted names round-trip")
def _():
    sql("SELECT attendance_calculate(3)")
    data = ctl("export", "--course", "arabic-101", "--from", "2025-11-01", "--to", "2025-11-30",
               check_rc=0).stdout
    assert data.endswith(b"\r\n") and not data.startswith(b"\xef\xbb\xbf"), data[:80]
    # every record ends with CRLF; the line break inside the quoted name stays a bare LF
    assert data.count(b"\r\n") == 4, data
    rows = parse_csv(data)
    header, body = rows[0], rows[1:]
    assert header[:4] == ["course", "from_date", "to_date", "user_id"], header
    assert header[-1] == "attendance_rate", header
    by_user = {r[header.index("user_id")]: dict(zip(header, r)) for r in body}
    assert by_user["1"]["participant_name"] == ARABIC, by_user["1"]
    assert by_user["2"]["participant_name"] == TRICKY, by_user["2"]
    assert by_user["1"]["course"] == "arabic-101" and by_user["1"]["from_date"] == "2025-11-01"
    # the same numbers as the SQL report (one rule): user 1 excused once, 2 of 2 attended
    report = sql("SELECT string_agg(concat_ws(':', user_id, sessions_expected, present, late, excused, "
                 "absent, attended_minutes, attendance_rate), ' ' ORDER BY user_id) "
                 "FROM attendance_course_report('arabic-101', '2025-11-01', '2025-11-30')")
    exported = " ".join(":".join(by_user[u][k] for k in ("user_id", "sessions_expected", "present", "late",
                                                          "excused", "absent", "attended_minutes",
                                                          "attendance_rate")) for u in ("1", "2", "3"))
    assert exported == report, (exported, report)
    assert by_user["1"]["attendance_rate"] == "100.00" and by_user["1"]["excused"] == "1"
    assert by_user["3"]["attendance_rate"] == "33.33", by_user["3"]


@case("export CSV: a name a spreadsheet would run as a formula is written as text, unless --raw")
def _():
    sql("SELECT attendance_schedule_session(9, 'ar-9', t, t + interval '1 hour') "
        "FROM (SELECT timestamptz '2025-11-01 08:00Z' + 9 * interval '1 day' AS t) x")
    attend(9, 4, 0, 60)
    attend(9, 5, 0, 60)
    sql("SELECT attendance_calculate(9)")
    header, *body = parse_csv(ctl("export", "--session", "9", check_rc=0).stdout)
    names = sorted(r[header.index("participant_name")] for r in body)
    assert names == sorted(["'" + FORMULA, "'@SUM(A1)"]), names
    # numbers are not touched (a negative one neither), the JSON neither
    assert all(not r[header.index("user_id")].startswith("'") for r in body), body
    rows = json.loads(ctl("export", "--session", "9", "--format", "json", check_rc=0).stdout)
    assert sorted(r["participant_name"] for r in rows) == sorted([FORMULA, "@SUM(A1)"]), rows
    header, *body = parse_csv(ctl("export", "--session", "9", "--raw", check_rc=0).stdout)
    assert sorted(r[header.index("participant_name")] for r in body) == sorted([FORMULA, "@SUM(A1)"])
    ctl("export", "--session", "9", "--raw", "--format", "json", check_rc=2)


@case("export --course --format json: an array of objects with the same values")
def _():
    out = ctl("export", "--course", "arabic-101", "--from", "2025-11-01", "--to", "2025-11-30",
              "--format", "json", check_rc=0).stdout
    rows = json.loads(out.decode("utf-8"))
    by_user = {r["user_id"]: r for r in rows}
    assert by_user[1]["participant_name"] == ARABIC and by_user[2]["participant_name"] == TRICKY
    assert by_user[3]["attendance_rate"] == 33.33 and by_user[3]["absent"] == 2, by_user[3]
    # --json is the same as --format json
    assert json.loads(ctl("--json", "export", "--course", "arabic-101", "--from", "2025-11-01",
                          "--to", "2025-11-30", check_rc=0).stdout.decode("utf-8")) == rows


@case("export --session -o FILE: the session's rows, written whole")
def _():
    path = os.path.join(TMP, "session-2.csv")
    assert ctl("export", "--session", "2", "-o", path, check_rc=0).stdout == b""
    assert not os.path.exists(path + ".tmp")
    with open(path, "rb") as f:
        rows = parse_csv(f.read())
    header, body = rows[0], rows[1:]
    assert header[:3] == ["session_id", "course", "room_name"], header
    got = {r[header.index("user_id")]: (r[header.index("participant_name")], r[header.index("status")],
                                        r[header.index("override_reason")]) for r in body}
    assert got == {"1": (ARABIC, "excused", "family"), "2": (TRICKY, "late", ""),
                   "3": ("", "absent", "")}, got
    # NULL is an empty field, not ""
    raw = open(path, "rb").read().decode("utf-8")
    assert ',"",' not in raw, raw
    assert sql("SELECT count(*) FROM meeting_attendances WHERE session_id = 2") == str(len(body))
    js = json.loads(ctl("export", "--session", "2", "-f", "json", check_rc=0).stdout.decode("utf-8"))
    assert [r["participant_name"] for r in js] == [ARABIC, TRICKY, None], js


@case("export errors: usage exit 2, unknown session or course and bad dates exit 4, no file left")
def _():
    for args in (("export",), ("export", "--session", "2", "--from", "2025-11-01"),
                 ("export", "--course", "arabic-101", "--from", "2025-11-01"),
                 ("export", "--session", "2", "--course", "arabic-101"),
                 ("export", "--session", "2", "--format", "xml"), ("export", "--session", "x")):
        p = ctl(*args)
        assert p.returncode == 2 and b"usage error" in p.stderr, (args, p.returncode, p.stderr)
    cases = [(("--session", "99"), b"42704"),
             (("--course", "nope", "--from", "2025-11-01", "--to", "2025-11-30"), b"42704"),
             (("--course", "arabic-101", "--from", "2025-11-30", "--to", "2025-11-01"), b"22023"),
             (("--course", "arabic-101", "--from", "2025-02-30", "--to", "2025-11-01"), b"22008")]
    for args, state in cases:
        path = os.path.join(TMP, "bad.csv")
        p = ctl("export", *args, "-o", path)
        assert p.returncode == 4 and state in p.stderr, (args, p.returncode, p.stderr)
        assert not os.path.exists(path) and not os.path.exists(path + ".tmp"), args
    p = ctl("export", "--session", "2", "-o", os.path.join(TMP, "no-such-dir", "x.csv"))
    assert p.returncode == 5 and b"cannot write" in p.stderr, (p.returncode, p.stderr)
    assert ctl("export", "--help", check_rc=0).stdout.startswith(b"Usage: attendancectl export")
    assert re.search(rb"^  export\s", ctl("--help", check_rc=0).stdout, re.M)


@case("the COPY recipe of docs/attendancectl.md gives the same file (LF instead of CRLF)")
def _():
    path = os.path.join(TMP, "copy.csv")
    recipe = ("\\copy (SELECT 'arabic-101' AS course, date '2025-11-01' AS from_date, date '2025-11-30' AS to_date, "
              "r.* FROM attendance_course_report('arabic-101', '2025-11-01', '2025-11-30') r) "
              f"TO '{path}' WITH (FORMAT csv, HEADER, ENCODING 'UTF8')")
    proc = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB], input=recipe + "\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    with open(path, "rb") as f:
        copied = f.read()
    exported = ctl("export", "--course", "arabic-101", "--from", "2025-11-01", "--to", "2025-11-30",
                   check_rc=0).stdout
    assert b"\r" not in copied and ARABIC.encode() in copied, copied
    assert exported.replace(b"\r\n", b"\n") == copied, (exported, copied)


def notifications(script):
    """Runs a psql script that LISTENs and returns the payloads it received, parsed."""
    proc = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", DB],
                          input="LISTEN attendance_low_attendance;\n" + script,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(m) for m in re.findall(
        r'^Asynchronous notification "attendance_low_attendance" with payload "(.*)" received', proc.stdout,
        re.M)]


@case("NOTIFY attendance_low_attendance: ids only, raised by a crossing, once; cleared by a late webhook")
def _():
    # user 3 absent in sessions 2 and 3: 0 % over the last 2 (the first case calculated 3)
    sql("DELETE FROM attendance_alerts")
    got = notifications("SELECT count(*) FROM attendance_calculate(3);\n"
                        "SELECT count(*) FROM attendance_calculate(3);\n")
    assert len(got) == 1, got
    n = got[0]
    # the payload names the alert row and the session whose calculation raised it, nothing
    # else; the details are read through the reader role
    assert sorted(n) == ["alert_id", "session_id"] and n["session_id"] == 3, n
    details = ("SET ROLE attendance_reader; SELECT concat_ws(':', course, user_id, user_key, rate, threshold, "
               "sessions_counted, raised_session_id, raised_cause, cleared_cause, cleared_rate) "
               f"FROM attendance_alerts WHERE id = {n['alert_id']}")
    assert sql(details) == "arabic-101:3:3:0.00:50.00:2:3:manual", sql(details)
    assert sql("SELECT string_agg(user_key || ':' || rate, ',') FROM attendance_low_attendance") == "3:0.00"
    # user 3's join to session 3 arrives late; the scheduler's path clears the alert
    attend(3, 3, 0, 60)
    got = notifications("SELECT * FROM attendance_calculate();\n")
    assert got == [{"alert_id": n["alert_id"], "session_id": 3}], got
    assert sql(details) == "arabic-101:3:3:0.00:50.00:2:3:manual:late webhook:50.00", sql(details)
    assert sql("SELECT count(*) FROM attendance_low_attendance") == "0"
    assert sql("SELECT cleared_cause FROM attendance_alerts") == "late webhook"


psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
finish()
