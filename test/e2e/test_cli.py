#!/usr/bin/env python3
"""attendancectl against the test cluster, in its own database e2e_cli: every command,
its output with real values, --json, exit codes, colours, --watch under a pty, keys,
sign, and replay over SQL and (when the proxy is built) over HTTP."""
import functools
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import pgtest  # noqa: E402
from pgtest import CTL, PROXY, ROOT, case, environ, finish, psql  # noqa: E402

FIXTURES = os.path.join(ROOT, "test", "fixtures", "livekit")
SESSION_456 = os.path.join(FIXTURES, "session-456.jsonl")
SPACED_456 = os.path.join(FIXTURES, "session-456.spaced.jsonl")
NEGATIVES = os.path.join(FIXTURES, "negatives.jsonl")
DB = "e2e_cli"
ANSI = "\x1b["
COMMANDS = ["debug", "calculate", "reconcile", "explain", "events", "sessions", "status", "keys",
            "sign", "replay", "timeline"]
SUMMARY_456 = "15 requests: 11 recorded, 1 duplicate, 3 ignored, 0 rejected"
TMP = tempfile.mkdtemp(prefix="attendancectl-e2e-")


def env(**extra):
    return environ(**{"PGDATABASE": DB, "NO_COLOR": None, **extra})


# attendancectl with stdout/stderr piped (never a terminal), against this suite's database
ctl = functools.partial(pgtest.ctl, PGDATABASE=DB, NO_COLOR=None)
sql = functools.partial(psql, db=DB)


def table_rows(text):
    """Data rows of an aligned table as lists of stripped cells (header and rule skipped)."""
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if re.match(r"^-+(\+-+)*-*$", line.strip()) and i > 0:
            for data in lines[i + 1:]:
                if not data.strip() or data.startswith("("):
                    break
                rows.append([c.strip() for c in data.split("|")])
    return rows


# ---- setup: a database of our own ---------------------------------------------------
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
psql(f"CREATE DATABASE {DB}")
sql("SET client_min_messages = warning; CREATE EXTENSION attendance")
sql("SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z')")
sql("SELECT attendance_expect(456, 7, 'teacher')")
sql("SELECT attendance_expect(456, u) FROM unnest(ARRAY[12, 19, 23, 31, 40]) u")
sql("SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123')")


@case("--help: global and per command, exit 0")
def _():
    out = ctl("--help", check_rc=0).stdout
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s", out, re.M), f"{name} missing from --help"
    assert "Exit codes:" in out and "PGHOST" in out, out
    for name in COMMANDS:
        sub = ctl(name, "--help", check_rc=0).stdout
        assert sub.startswith(f"Usage: attendancectl {name}"), sub[:200]
    assert ctl("help", "replay", check_rc=0).stdout.startswith("Usage: attendancectl replay")
    assert ctl("--version", check_rc=0).stdout.startswith("attendancectl ")


@case("usage errors exit 2")
def _():
    cases = [(), ("bogus",), ("events", "--bogus"), ("calculate", "abc"), ("explain", "456"),
             ("debug", "--json"), ("debug", "--events", "0"), ("replay",),
             ("replay", SESSION_456, "--url", "http://127.0.0.1:9/x", "--replay-mode"),
             ("replay", SESSION_456, "--url", "https://example.org/"), ("keys",), ("keys", "frob"),
             ("sign", SESSION_456), ("sessions", "--status", "maybe"), ("events", "--last")]
    for args in cases:
        p = ctl(*args)
        assert p.returncode == 2, f"{args}: exit {p.returncode}: {p.stderr}"
        assert "usage error" in p.stderr and "--help" in p.stderr, f"{args}: {p.stderr}"
        assert p.stdout == "", f"{args}: stdout {p.stdout!r}"


@case("connection failure exits 3, missing extension exits 4")
def _():
    p = ctl("status", PGPORT=1)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert "cannot connect" in p.stderr, p.stderr
    p = ctl("-d", "host=/nonexistent-socket-dir", "sessions")
    assert p.returncode == 3, (p.returncode, p.stderr)
    p = ctl("-d", "template1", "status")
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert 'extension "attendance" is not installed in database "template1"' in p.stderr, p.stderr


@case("replay session-456 --sql --replay-mode: 11 recorded, 1 duplicate, 3 ignored, 0 rejected")
def _():
    p = ctl("replay", SESSION_456, "--sql", "--replay-mode", check_rc=0)
    assert SUMMARY_456 in p.stdout, p.stdout
    assert "rejected" not in p.stderr, p.stderr
    assert sql("SELECT count(*) FROM meeting_attendance_events") == "14"
    # what the scheduler's fold does within attendance.fold_interval (it serves another
    # database): connections and live rows derived from the log
    assert json.loads(sql("SELECT attendance_fold()"))["events"] == 14


def open_session_now():
    """Session 458 runs now and user 88 is in it (an open connection): 'In meeting'."""
    sql("SELECT attendance_schedule_session(458, 'session-458', now() - interval '10 minutes', "
        "now() + interval '50 minutes')")
    sql("""WITH b AS (SELECT json_build_object('event', 'participant_joined', 'id', 'EV_cli458',
                   'createdAt', extract(epoch FROM now())::bigint::text,
                   'room', json_build_object('name', 'session-458'),
                   'participant', json_build_object('sid', 'PA_cli458', 'identity', 'user-88',
                     'joinedAtMs', (extract(epoch FROM now() - interval '5 minutes') * 1000)::bigint::text))::text AS body)
           SELECT attendance_ingest_webhook(body, attendance_sign_webhook(body, 'APIfixture')) FROM b""")
    sql("SELECT attendance_fold()")


def close_session_now():
    sql("DELETE FROM meeting_attendance_events WHERE room_name = 'session-458'; "
        "DELETE FROM attendance_sessions WHERE session_id = 458; "
        "DELETE FROM meeting_attendances WHERE session_id = 458; "
        "DELETE FROM attendance_session_schedule WHERE session_id = 458")


@case("debug (piped): plain text, recent webhooks, 'In meeting' for an open connection before calculation")
def _():
    open_session_now()
    p = ctl("debug", check_rc=0)
    out = p.stdout
    assert ANSI not in out, "ANSI escapes in piped output"
    for title in ("Recent webhook activity", "Uncalculated attendance", "Scheduler", "Jobs"):
        assert title in out, f"{title} missing:\n{out}"
    assert re.search(r"participant_joined\s*\|\s*recorded\s*\|\s*456\s*\|\s*12\s*\|\s*PA_abc123ahmed2", out), out
    assert re.search(r"participant_left\s*\|\s*recorded\s*\|\s*456\s*\|\s*19\s*\|\s*PA_sara19phone1\s*\|\s*00:15:00", out), out
    uncalculated = {r[1]: r for r in table_rows(out.split("Uncalculated attendance")[1].split("Scheduler")[0])}
    # user 12's second leave was lost: the derivation closes it at the room's room_finished
    assert uncalculated["12"][3] == "2025-11-14 15:15:40", uncalculated
    assert uncalculated["12"][4] == "2", uncalculated  # two connections (cycles)
    assert uncalculated["88"][0] == "458" and uncalculated["88"][3] == "In meeting", uncalculated
    assert uncalculated["19"][3] == "2025-11-14 15:05:00", uncalculated
    assert uncalculated["7"][5] == "45 min", uncalculated
    assert "session 456 (session-456) due 2025-11-14 15:15:02" in out, out
    assert "running (launcher pid" in out, out
    # one session only, fewer events
    p = ctl("debug", "456", "--events", "3", check_rc=0)
    recent = table_rows(p.stdout.split("Recent webhook activity")[1].split("Uncalculated")[0])
    assert len(recent) == 3 and recent[0][1] == "room_finished", recent
    p = ctl("debug", "999", check_rc=0)
    assert "(0 rows)" in p.stdout, p.stdout


def run_pty(args, **extra_env):
    """Runs attendancectl with a terminal as stdout; returns (output bytes, exit code)."""
    child_env = env(TERM="xterm", **extra_env)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(CTL, [CTL, *args], child_env)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return data, os.WEXITSTATUS(status)


@case("colours: on a terminal; not with NO_COLOR, --no-color or a pipe; --color forces them")
def _():
    out, rc = run_pty(["sessions"])
    assert rc == 0 and b"\x1b[33mdue" in out, out[:400]
    out, rc = run_pty(["sessions"], NO_COLOR="1")
    assert rc == 0 and b"\x1b[" not in out and b"due" in out, out[:400]
    out, rc = run_pty(["sessions", "--no-color"])
    assert rc == 0 and b"\x1b[" not in out, out[:400]
    assert ANSI not in ctl("sessions", check_rc=0).stdout
    assert ANSI in ctl("debug", "--color", check_rc=0).stdout


@case("debug --watch 1 under a pty redraws in place and exits 0 on SIGINT")
def _():
    child_env = env(TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(CTL, [CTL, "debug", "--watch", "1"], child_env)
    data = b""
    deadline = time.time() + 3.2
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data += os.read(fd, 65536)
            except OSError:
                break
    os.kill(pid, signal.SIGINT)
    end = time.time() + 10
    status = None
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                data += os.read(fd, 65536)
            except OSError:
                pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("debug --watch did not stop on SIGINT")
    os.close(fd)
    clears = data.count(b"\x1b[2J")
    assert clears >= 2, f"{clears} redraws in 3 s: {data[:300]!r}"
    assert b"Recent webhook activity" in data and b"In meeting" in data
    assert b"\x1b[32m" in data, "no colours on a terminal"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"wait status {status}"
    close_session_now()


@case("events: the log with --session, --last, --type and --json")
def _():
    p = ctl("events", "--session", "456", check_rc=0)
    rows = table_rows(p.stdout)
    assert len(rows) == 14 and "(14 rows)" in p.stdout, p.stdout
    assert rows[0][2] == "room_started" and rows[-1][2] == "room_finished", rows  # oldest first
    egress = [r for r in rows if r[7] == "PA_V9gU6ZfU98BV"]
    assert len(egress) == 2 and all(r[3] == "ignored" for r in egress), egress
    assert "participant kind EGRESS" in egress[0][9], egress
    ahmed = [r for r in rows if r[5] == "12"]
    assert ahmed[0][6] == "أحمد محمد", ahmed
    assert len(table_rows(ctl("events", "--last", "3", check_rc=0).stdout)) == 3
    left = table_rows(ctl("events", "--type", "participant_left", check_rc=0).stdout)
    assert len(left) == 5 and {r[2] for r in left} == {"participant_left"}, left
    data = json.loads(ctl("events", "--session", "456", "--json", check_rc=0).stdout)
    assert len(data) == 14 and data[1]["event_type"] == "participant_joined", data[:2]
    assert data[1]["user_id"] == 7 and data[1]["session_id"] == 456, data[1]
    assert json.loads(ctl("events", "--session", "1", "--json", check_rc=0).stdout) == []


@case("sessions: 456 is due before calculation")
def _():
    rows = table_rows(ctl("sessions", check_rc=0).stdout)
    assert rows[0][0] == "456" and rows[0][5] == "due", rows
    assert rows[0][8] == "6", rows  # roster
    data = json.loads(ctl("sessions", "--json", check_rc=0).stdout)
    assert data[0]["session_id"] == 456 and data[0]["status"] == "due", data


@case("calculate 456: the table with the real percentages and statuses")
def _():
    p = ctl("calculate", "456", check_rc=0)
    assert "Session 456 (session-456" in p.stdout, p.stdout
    rows = {r[0]: r for r in table_rows(p.stdout)}
    expected = {"7": ("100.00", "present"), "12": ("94.99", "present"), "40": ("61.85", "late"),
                "19": ("33.33", "partial"), "23": ("0.00", "absent"), "31": ("0.00", "absent")}
    got = {u: (rows[u][6], rows[u][7]) for u in rows}
    assert got == expected, got
    assert rows["12"][1] == "أحمد محمد" and rows["7"][2] == "teacher", rows
    assert ANSI not in p.stdout


@case("calculate 456 --json")
def _():
    data = json.loads(ctl("calculate", "456", "--json", check_rc=0).stdout)
    by_user = {r["user_id"]: r for r in data}
    assert by_user[12]["attendance_percentage"] == 94.99, by_user[12]
    assert by_user[40]["attendance_status"] == "late", by_user[40]
    assert by_user[19]["attendance_status"] == "partial" and by_user[31]["attendance_status"] == "absent"
    assert all(r["is_calculated"] for r in data), data


@case("sessions after calculation: calculated")
def _():
    data = json.loads(ctl("sessions", "456", "--json", check_rc=0).stdout)
    assert data[0]["status"] == "calculated" and data[0]["people"] == 6, data
    rows = table_rows(ctl("sessions", "--status", "calculated", check_rc=0).stdout)
    assert [r[0] for r in rows] == ["456"], rows
    assert table_rows(ctl("sessions", "--status", "due", check_rc=0).stdout) == []


@case("explain 456 12: summary, rules and the trace with 94.99")
def _():
    p = ctl("explain", "456", "12", check_rc=0)
    assert "User 12 in session 456: present (94.99 %" in p.stdout, p.stdout[:500]
    assert "PA_abc123ahmed1" in p.stdout and "PA_abc123ahmed2" in p.stdout
    assert re.search(r"present\s*\|\s*otherwise\s*\|\s*yes\s*\|\s*<- present", p.stdout), p.stdout
    data = json.loads(ctl("explain", "456", "12", "--json", check_rc=0).stdout)
    assert data["percentage"] == "94.99" and data["presence_ms"] == 2564700, data
    assert data["status"] == "present" and data["user_id"] == 12
    late = json.loads(ctl("explain", "456", "40", "--json", check_rc=0).stdout)
    assert late["status"] == "late" and late["percentage"] == "61.85", late
    # a non-numeric USER is a user key (the text overload)
    p = ctl("explain", "456", "nobody")
    assert p.returncode == 4 and "no attendance for user nobody" in p.stderr, (p.returncode, p.stderr)


def view_due(session):
    """What the view attendance_sessions_due says of a session: (due now, due_at as text)."""
    row = sql(f"SELECT due_at <= now(), to_char(due_at, 'YYYY-MM-DD HH24:MI:SS') "
              f"FROM attendance_sessions_due WHERE session_id = {session}")
    assert row, f"attendance_sessions_due does not list {session}"
    due, due_at = row.split("|")
    return due == "t", due_at


def assert_sessions_label_as_view(session):
    """A session with a failed calculation whose retry is an hour away is not due by the view,
    and attendancectl sessions says provisional (table, --json, --status); once the retry time
    has come, both say due. (Before, the CLI called every session with a failure due.)"""
    sql(f"UPDATE attendance_session_schedule SET next_attempt_at = now() + interval '1 hour' "
        f"WHERE session_id = {session}")
    assert sql(f"SELECT failed_attempts > 0 FROM attendance_session_schedule WHERE session_id = {session}") == "t"
    due, due_at = view_due(session)
    assert not due, f"the view says {session} is due"
    row = table_rows(ctl("sessions", str(session), check_rc=0).stdout)[0]
    assert (row[5], row[6]) == ("provisional", due_at), row
    assert json.loads(ctl("sessions", str(session), "--json", check_rc=0).stdout)[0]["status"] == "provisional"
    listed = lambda status: [r[0] for r in table_rows(ctl("sessions", "--status", status, check_rc=0).stdout)]
    assert str(session) not in listed("due") and str(session) in listed("provisional")
    sql(f"UPDATE attendance_session_schedule SET next_attempt_at = now() - interval '1 second' "
        f"WHERE session_id = {session}")
    due, due_at = view_due(session)
    assert due, f"the view says {session} is not due"
    row = table_rows(ctl("sessions", str(session), check_rc=0).stdout)[0]
    assert (row[5], row[6]) == ("due", due_at), row
    assert str(session) in listed("due") and str(session) not in listed("provisional")


@case("calculate (all due): processed/failed, exit 1 when a session fails; while its retry is "
      "in the future attendancectl sessions and attendance_sessions_due agree it is not due")
def _():
    p = ctl("calculate", check_rc=0)
    assert re.match(r"processed \d+, failed 0", p.stdout), p.stdout
    data = json.loads(ctl("calculate", "--json", check_rc=0).stdout)
    assert data["failed"] == 0, data
    sql("SELECT attendance_schedule_session(457, 'session-457', now() - interval '1 hour', now() - interval '1 minute')")
    sql("SELECT attendance_expect(457, 5)")
    sql("""CREATE FUNCTION public.fail_457() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF NEW.session_id = 457 THEN RAISE EXCEPTION 'boom in session 457'; END IF; RETURN NEW; END $$""")
    sql("CREATE TRIGGER fail_457 BEFORE INSERT OR UPDATE ON meeting_attendances FOR EACH ROW EXECUTE FUNCTION public.fail_457()")
    try:
        p = ctl("calculate", check_rc=1)
        assert "failed 1" in p.stdout and "boom in session 457" in p.stdout, p.stdout
        rows = table_rows(ctl("sessions", "457", check_rc=0).stdout)
        assert "1 failed: " in rows[0][10] and "boom in session 457" in rows[0][10], rows
        assert_sessions_label_as_view(457)
    finally:
        sql("DROP TRIGGER IF EXISTS fail_457 ON meeting_attendances; DROP FUNCTION IF EXISTS public.fail_457()")
    ctl("calculate", "457", check_rc=0)


@case("reconcile: user 12's orphaned connection is closed by the derivation; nothing left open")
def _():
    row = sql("SELECT end_reason, leave_is_synthetic FROM attendance_sessions WHERE participant_sid = 'PA_abc123ahmed2'")
    assert row == "reconciled|t", row
    p = ctl("reconcile", check_rc=0)
    assert re.search(r"sessions_rederived:\s+0\b", p.stdout), p.stdout
    # an open connection whose session has ended since it was derived is closed now
    sql("INSERT INTO attendance_sessions (session_id, room_name, participant_sid, user_key, join_time) "
        "VALUES (456, 'session-456', 'PA_abc123ahmed2', '12', '2025-11-14 14:44:31Z') "
        "ON CONFLICT (session_id, room_name, participant_sid) DO UPDATE SET leave_time = NULL, "
        "end_reason = NULL, leave_is_synthetic = false")
    data = json.loads(ctl("reconcile", "--json", check_rc=0).stdout)
    assert data["sessions_rederived"] == 1, data
    row = sql("SELECT end_reason, leave_is_synthetic FROM attendance_sessions WHERE participant_sid = 'PA_abc123ahmed2'")
    assert row == "reconciled|t", row
    assert json.loads(ctl("explain", "456", "12", "--json", check_rc=0).stdout)["percentage"] == "94.99"


@case("status and status --json")
def _():
    p = ctl("status", check_rc=0)
    assert "scheduler:" in p.stdout and "Jobs" in p.stdout and "Latest runs" in p.stdout, p.stdout
    assert "not this database, e2e_cli" in p.stdout, p.stdout  # the worker serves 'postgres'
    data = json.loads(ctl("status", "--json", check_rc=0).stdout)
    assert data["running"] is True and data["database"] == "postgres", data
    assert isinstance(data["last_runs"], list)


@case("keys add (secret from stdin) / list (never the secret) / retire")
def _():
    secret = "cli-secret-0123456789abcdefXYZ"
    p = ctl("keys", "add", "APIcli", "-", "--note", "from the e2e test", stdin=secret + "\n", check_rc=0)
    assert "key APIcli added" in p.stdout, p.stdout
    assert sql("SELECT secret FROM attendance_webhook_keys WHERE api_key = 'APIcli'") == secret
    listing = ctl("keys", "list", check_rc=0).stdout
    rows = {r[0]: r for r in table_rows(listing)}
    assert rows["APIcli"][1] == "active" and rows["APIcli"][5] == "from the e2e test", rows
    assert secret not in listing and "fixture-secret" not in listing, listing
    data = json.loads(ctl("keys", "list", "--json", check_rc=0).stdout)
    assert {k["api_key"] for k in data} == {"APIfixture", "APIcli"}, data
    assert all("secret" not in k for k in data) and secret not in json.dumps(data)
    p = ctl("keys", "retire", "APIcli", check_rc=0)
    assert "key APIcli retired" in p.stdout, p.stdout
    rows = {r[0]: r for r in table_rows(ctl("keys", "list", check_rc=0).stdout)}
    assert rows["APIcli"][1] == "retired" and rows["APIcli"][3], rows
    p = ctl("keys", "retire", "APInope")
    assert p.returncode == 1 and "no key APInope" in p.stderr, (p.returncode, p.stderr)


@case("sign prints a curl command whose token verifies")
def _():
    body = ('{"event":"participant_joined","id":"EV_cli_sign1","createdAt":"%d","room":{"name":"session-458"},'
            '"participant":{"sid":"PA_clisign1","identity":"user-77","joinedAtMs":"%d"}}'
            % (int(time.time()), int(time.time() * 1000)))
    path = os.path.join(TMP, "body's.json")  # a quote in the name: shell quoting
    with open(path, "w") as f:
        f.write(body)
    p = ctl("sign", path, "--key", "APIfixture", "--url", "http://127.0.0.1:8080/webhooks/livekit",
            check_rc=0)
    out = p.stdout
    assert out.startswith("curl -sS -w '\\n' -X POST 'http://127.0.0.1:8080/webhooks/livekit'"), out
    assert "-H 'Content-Type: application/webhook+json'" in out, out
    assert "--data-binary @'" + path.replace("'", "'\\''") + "'" in out, out
    m = re.search(r"-H 'Authorization: ([A-Za-z0-9_\-.]+)'", out)
    assert m, out
    token = m.group(1)
    q = body.replace("'", "''")
    answer = json.loads(sql(f"SELECT attendance_ingest_webhook('{q}', '{token}')"))
    assert answer["result"] == "recorded", answer
    # the printed command itself is valid shell: run it with curl replaced by a stub
    stub = os.path.join(TMP, "curl")
    with open(stub, "w") as f:
        f.write("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    os.chmod(stub, 0o755)
    args = subprocess.run(["sh", "-c", out], capture_output=True, text=True,
                          env={**os.environ, "PATH": TMP + ":" + os.environ["PATH"]}).stdout.splitlines()
    assert f"Authorization: {token}" in args and "@" + path in args, args
    assert args[args.index("-w") + 1] == "\\n", args  # curl itself turns it into a newline
    only = ctl("sign", path, "--key", "APIfixture", "--token-only", check_rc=0).stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+", only), only
    p = ctl("sign", path, "--key", "APInope")
    assert p.returncode == 4, (p.returncode, p.stderr)


@case("replay negatives.jsonl: exit 1, 5 rejected with a 28000 breakdown, nothing written")
def _():
    before = sql("SELECT count(*) FROM meeting_attendance_events")
    p = ctl("replay", NEGATIVES, "--sql")
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "5 requests: 0 recorded, 0 duplicate, 0 ignored, 5 rejected (28000: 5)" in p.stdout, p.stdout
    reasons = table_rows(p.stdout.split("rejected by reason:")[1])
    assert len(reasons) == 5 and {r[0] for r in reasons} == {"28000"}, reasons
    assert any("expired" in r[2] for r in reasons) and any("missing token" in r[2] for r in reasons), reasons
    for variant in ("unsigned", "tampered", "bad-secret", "expired", "wrong-key"):
        assert f"({variant}): rejected 28000" in p.stderr, p.stderr
    assert sql("SELECT count(*) FROM meeting_attendance_events") == before
    ctl("replay", NEGATIVES, "--allow-rejects", "-q", check_rc=0)
    data = json.loads(ctl("replay", NEGATIVES, "--json", "-q", check_rc=1).stdout)
    assert data["rejected"] == 5 and data["recorded"] == 0, data
    assert sum(r["count"] for r in data["rejected_by_reason"] if r["code"] == "28000") == 5, data


@case("replay --resign and --json: the spaced variant is all duplicates")
def _():
    data = json.loads(ctl("replay", SPACED_456, "--resign", "APIfixture", "--json", check_rc=0).stdout)
    assert (data["requests"], data["duplicate"], data["rejected"]) == (15, 15, 0), data


@case("replay of a malformed file exits 5 and sends nothing")
def _():
    path = os.path.join(TMP, "bad.jsonl")
    with open(SESSION_456) as f:
        first = f.readline()
    with open(path, "w") as f:
        f.write(first + "{not json\n")
    before = sql("SELECT count(*) FROM meeting_attendance_events")
    p = ctl("replay", path)
    assert p.returncode == 5 and "bad.jsonl:2:" in p.stderr, (p.returncode, p.stderr)
    assert sql("SELECT count(*) FROM meeting_attendance_events") == before
    p = ctl("replay", os.path.join(TMP, "missing.jsonl"))
    assert p.returncode == 5, (p.returncode, p.stderr)
    p = ctl("replay", SESSION_456, "--url", "http://127.0.0.1:1/webhooks/livekit")
    assert p.returncode == 5 and "cannot connect to http://127.0.0.1:1" in p.stderr, p.stderr


# ---- replay over HTTP through attendance-proxy (only when it is built) ------------------
def start_proxy(db):
    """Starts attendance-proxy (pgtest.Proxy), ready once /healthz says 200. None if it is
    not built."""
    if not os.access(PROXY, os.X_OK):
        return None
    # The proxy's own connection runs in replay mode (superuser), so the archived,
    # expired fixture tokens are accepted as with --replay-mode.
    conninfo = f"dbname={db} options='-c attendance.replay_mode=on'"
    proxy = pgtest.Proxy(PROXY, conninfo, os.path.join(TMP, "proxy.log"), env=env(), healthy=True, timeout=30)
    print(f"note: attendance-proxy on port {proxy.port}", flush=True)
    return proxy


HTTP_DB = "e2e_cli_http"
psql(f"DROP DATABASE IF EXISTS {HTTP_DB} WITH (FORCE)")
psql(f"CREATE DATABASE {HTTP_DB}")
psql("SET client_min_messages = warning; CREATE EXTENSION attendance", db=HTTP_DB)
psql("SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z'); "
     "SELECT attendance_expect(456, 7, 'teacher'); "
     "SELECT attendance_expect(456, u) FROM unnest(ARRAY[12, 19, 23, 31, 40]) u; "
     "SELECT attendance_add_webhook_key('APIfixture', 'fixture-secret-0123456789abcdef0123')", db=HTTP_DB)
proxy = start_proxy(HTTP_DB)
if proxy is None:
    print("note: replay over HTTP not tested: attendance-proxy is not built", flush=True)
else:
    try:
        @case("replay session-456 over HTTP through attendance-proxy: same summary")
        def _():
            url = f"http://127.0.0.1:{proxy.port}/webhooks/livekit"
            p = ctl("replay", SESSION_456, "--url", url, check_rc=0, PGDATABASE=HTTP_DB)
            assert SUMMARY_456 in p.stdout, p.stdout
            assert f"over HTTP to {url}" in p.stdout, p.stdout
            rows = {r[0]: r for r in table_rows(
                ctl("calculate", "456", check_rc=0, PGDATABASE=HTTP_DB).stdout)}
            assert (rows["12"][6], rows["40"][7]) == ("94.99", "late"), rows
            # a bad token is answered 401 with its SQLSTATE
            p = ctl("replay", NEGATIVES, "--url", url, "-q", PGDATABASE=HTTP_DB)
            assert p.returncode == 1, (p.returncode, p.stdout)
            assert re.search(r"HTTP 401 \(28000\)", p.stdout), p.stdout
    finally:
        proxy.stop(10)

psql(f"DROP DATABASE IF EXISTS {HTTP_DB} WITH (FORCE)")
shutil.rmtree(TMP, ignore_errors=True)
finish()
