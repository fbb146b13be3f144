#!/usr/bin/python3
"""A school application's side of attendance, end to end (docs/integration.md).

What the application does, in the order it meets things:

  1. LISTEN attendance_calculated (its own connection);
  2. creates a class: schedules session 456 in LiveKit room session-456 with its course,
     policy and roster, in one transaction;
  3. plays LiveKit's part: posts the recorded class of test/fixtures/livekit/session-456.jsonl
     to attendance-proxy, each body signed with the API key's secret as LiveKit signs it
     (a real deployment has no such step: LiveKit posts);
  4. waits until the session's results are ready: a notification says "read this session
     again", polling is the fallback;
  5. prints the attendance table and why user 40 is late (attendance_explain);
  6. excuses user 19 (attendance_override) and prints the recalculated row and its audit.

It logs in as a member of school_app and school_override (examples/roles.sql) and never
parses anything but ids from a notification: everything else is read from the views.

Usage (Debian: apt-get install python3-psycopg):
  /usr/bin/python3 examples/school_app.py --webhook-url http://127.0.0.1:8080/webhooks/livekit \\
      --api-key APIfixture --api-secret fixture-secret-0123456789abcdef0123 \\
      [--dsn 'host=/var/run/postgresql dbname=school user=school_web'] [--timeout 120]
--dsn is a libpq connection string; empty (the default) takes PGHOST, PGDATABASE, PGUSER ...
Run it in the database the scheduler serves (attendance.database_name), once: it creates
session 456. Exit codes: 0 done, 1 failed (the reason is printed), 2 bad usage.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import select
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDED_CLASS = os.path.join(ROOT, "test", "fixtures", "livekit", "session-456.jsonl")

# The class the application creates: the story of test/fixtures/livekit/README.md.
SESSION_ID = 456
ROOM = "session-456"
STARTS_AT = datetime(2025, 11, 14, 14, 30, tzinfo=timezone.utc)  # always with a time zone
ENDS_AT = datetime(2025, 11, 14, 15, 15, tzinfo=timezone.utc)
COURSE = "algebra-9b"
POLICY = "default"
ROSTER = [(7, "teacher"), (12, "student"), (19, "student"), (23, "student"), (31, "student"),
          (40, "student")]
EXPLAIN_USER = 40  # "why is my child marked late?"
EXCUSE_USER, EXCUSE_REASON = 19, "doctor's note (entered by teacher 7)"


class Failure(Exception):
    pass


def say(text=""):
    print(text, flush=True)


# ---- 1. notifications -----------------------------------------------------------------

class Listener:
    """A connection of its own that LISTENs; notifications are collected as they arrive
    (psycopg hands them to the handler whenever the connection reads from the server)."""

    def __init__(self, dsn, channel):
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="school_app listener")
        self.received = []
        self.conn.add_notify_handler(lambda n: self.received.append(n.payload))
        self.conn.execute(f"LISTEN {channel}")

    def wait(self, seconds):
        """Waits at most `seconds` for something from the server, then reads it."""
        if not self.received:
            select.select([self.conn.fileno()], [], [], max(seconds, 0))
            self.conn.execute("SELECT 1")  # reads whatever arrived; the handler collects it

    def take(self):
        self.conn.execute("SELECT 1")
        got, self.received = self.received, []
        return got


def session_id_of(payload):
    """The session id of an attendance_calculated payload: the id alone (docs/sql.md,
    "Notifications"), or an object that carries it. Ids only: the rest is read from the
    views."""
    payload = payload.strip()
    if payload.isdigit():
        return int(payload)
    return int(json.loads(payload)["session_id"])


# ---- 2. creating a class ----------------------------------------------------------------

def schedule_class(db):
    """One transaction: the session and its whole roster, or nothing."""
    with db.transaction():
        db.execute("SELECT attendance_schedule_session(%s, %s, %s, %s, %s, %s)",
                   (SESSION_ID, ROOM, STARTS_AT, ENDS_AT, POLICY, COURSE))
        for user_id, role in ROSTER:
            db.execute("SELECT attendance_expect(%s, %s, %s)", (SESSION_ID, user_id, role))
    say(f"session {SESSION_ID} in room {ROOM}: {STARTS_AT:%Y-%m-%d %H:%M}-{ENDS_AT:%H:%M} UTC, "
        f"course {COURSE}, policy {POLICY}")
    say("roster: " + ", ".join(f"{u} ({r})" for u, r in ROSTER))


# ---- 3. LiveKit's part ------------------------------------------------------------------

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def livekit_token(body, api_key, api_secret, ttl=600):
    """The Authorization header LiveKit sends: an HS256 JWT whose sha256 claim is the
    standard base64 of the SHA-256 of the exact body bytes."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": api_key, "nbf": now, "exp": now + ttl,
              "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = hmac.new(api_secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def play_livekit(url, api_key, api_secret):
    with open(RECORDED_CLASS, encoding="utf-8") as f:
        requests = [json.loads(line) for line in f if line.strip()]
    say(f"posting {len(requests)} webhooks to {url}")
    for r in requests:
        body = r["body"].encode()
        event = json.loads(body)
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": livekit_token(body, api_key, api_secret),
            "Content-Type": "application/webhook+json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise Failure(f"{event['event']} {event['id']}: HTTP {e.code} {e.read()[:300]!r}") from None
        who = event.get("participant", {}).get("identity", "")
        say(f"  HTTP {status}  {event['event']:<31} {who:<10} {answer['result']}")


# ---- 4. waiting for the results ---------------------------------------------------------

def pending(db, session_id):
    """What the session still waits for, or None when its rows are final: it is calculated,
    nothing flagged it for recalculation, and the scheduler's fold has read every webhook
    of its room (a webhook it has not read yet may still flag it)."""
    row = db.execute(
        "SELECT s.calculated_at IS NULL, s.needs_calculation, s.recalculation_cause, s.needs_fold,"
        "       (SELECT count(*) FROM meeting_attendance_events e"
        "        WHERE e.room_name = s.room_name AND e.id > f.safe_id)"
        " FROM attendance_session_schedule s CROSS JOIN attendance_fold_state f"
        " WHERE s.session_id = %s", (session_id,)).fetchone()
    if row is None:
        raise Failure(f"session {session_id} is not scheduled")
    never, flagged, cause, needs_fold, unread = row
    if never:
        return "not calculated yet"
    if unread:
        return f"{unread} webhook(s) not yet read by the scheduler"
    if needs_fold:
        return "a schedule or roster change not yet read by the scheduler"
    if flagged:
        return f"recalculation pending ({cause or 'not final yet'})"
    return None


def wait_until_ready(db, listener, session_id, deadline, poll_seconds=2.0):
    last = None
    while True:
        notified = listener.take()
        state = pending(db, session_id)
        if state is None:
            notified += listener.take()  # what came while we looked
        for payload in notified:
            say(f"  notification attendance_calculated: session {session_id_of(payload)}")
        if state is None:
            return
        if state != last:
            say(f"  waiting: {state}")
            last = state
        if time.monotonic() > deadline:
            raise Failure(f"session {session_id} not ready in time: {state}")
        # A notification wakes us at once; without one we poll every few seconds, which
        # also covers a notification missed while the listener was reconnecting.
        listener.wait(min(poll_seconds, deadline - time.monotonic()))


# ---- 5. showing attendance --------------------------------------------------------------

def hms(ts):
    return ts.astimezone(timezone.utc).strftime("%H:%M:%S") if ts else "-"


def print_table(db, session_id):
    rows = db.execute(
        "SELECT user_id, role, status, percentage, minutes, enter_time, leave_time, status_rule,"
        "       is_calculated, participant_name"
        " FROM attendance_session_report WHERE session_id = %s"
        " ORDER BY role = 'teacher' DESC, user_id NULLS LAST, user_key", (session_id,)).fetchall()
    say(f"{'user':>5}  {'role':<8} {'status':<8} {'percent':>7} {'minutes':>7}  {'entered':<8}  "
        f"{'left':<8}  {'rule':<13} {'final':<5}  name")
    for user_id, role, status, pct, minutes, entered, left, rule, final, name in rows:
        say(f"{user_id:>5}  {role:<8} {status or '-':<8} {pct if pct is not None else '-':>7} "
            f"{minutes if minutes is not None else '-':>7}  {hms(entered):<8}  {hms(left):<8}  "
            f"{rule or '-':<13} {'yes' if final else 'no':<5}  {name or ''}")


def explain(db, session_id, user_id):
    x = db.execute("SELECT attendance_explain(%s, %s::bigint)", (session_id, user_id)).fetchone()[0]
    hit = next(r for r in x["rules"] if r["hit"])
    numbers = x["policy"]["numbers"]
    why = {
        "override": lambda: f"a manual status was set: {x['override_status']}",
        "no_presence": lambda: "no presence inside the scheduled window",
        "below_absent": lambda: f"{x['percentage']} % is below {numbers['absent_below']} %",
        "below_partial": lambda: f"{x['percentage']} % is below {numbers['partial_below']} %",
        "late": lambda: (f"first presence {hms(parse_ts(x['first_presence']))} is after "
                         f"{hms(parse_ts(hit['late_after']))} (start + "
                         f"{numbers['late_after_ms'] // 60000} min) and {x['percentage']} % is at most "
                         f"{numbers['late_max']} %"),
        "present": lambda: "no other rule matched",
    }[hit["rule"]]()
    say(f"user {user_id} is {x['status']} (rule {hit['rule']}): {why}")
    say(f"  presence {x['presence_seconds']} s of a {x['window_ms'] // 1000} s window "
        f"= {x['percentage']} %, policy {x['policy']['name']}")
    for c in x["connections"]:
        say(f"  connection {c['sid']}: {hms(parse_ts(c['join']))}-{hms(parse_ts(c['leave']))} "
            f"({c['end_source']}), {c['clipped_ms'] / 1000:.1f} s inside the window")


def parse_ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


# ---- 6. overrides -----------------------------------------------------------------------

def excuse(db, listener, session_id, user_id, reason, deadline):
    before = db.execute("SELECT status, percentage FROM attendance_session_report"
                        " WHERE session_id = %s AND user_id = %s", (session_id, user_id)).fetchone()
    listener.take()  # what came before is not about this change
    with db.transaction():
        db.execute("SELECT attendance_override(%s, %s, 'excused', %s)", (session_id, user_id, reason))
    # attendance_override recalculated the session in its transaction; the notification
    # tells every other part of the application to read it again.
    while session_id not in [session_id_of(p) for p in listener.take()]:
        if time.monotonic() > deadline:
            raise Failure("no attendance_calculated notification after the override")
        listener.wait(deadline - time.monotonic())
    say(f"  notification attendance_calculated: session {session_id}")
    status, pct, rule, final, why = db.execute(
        "SELECT status, percentage, status_rule, is_calculated, override_reason"
        " FROM attendance_session_report WHERE session_id = %s AND user_id = %s",
        (session_id, user_id)).fetchone()
    say(f"user {user_id}: {before[0]} {before[1]} % -> {status} {pct} % (rule {rule}, "
        f"final {'yes' if final else 'no'}), reason: {why}")
    old, new, cause, actor = db.execute(
        "SELECT old_status, new_status, cause, actor FROM attendance_status_changes"
        " WHERE session_id = %s AND user_key = %s ORDER BY id DESC LIMIT 1",
        (session_id, str(user_id))).fetchone()
    say(f"  audit: {old} -> {new}, cause {cause}, by database role {actor}")


# ---- the story --------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn", default="", help="libpq connection string (default: the PG* variables)")
    p.add_argument("--webhook-url", required=True, help="attendance-proxy's webhook URL")
    p.add_argument("--api-key", required=True, help="the LiveKit API key (registered with attendance_add_webhook_key)")
    p.add_argument("--api-secret", required=True, help="its secret")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for each result (default 120)")
    args = p.parse_args()

    listener = Listener(args.dsn, "attendance_calculated")
    db = psycopg.connect(args.dsn, autocommit=True, application_name="school_app")
    say("== 1. listening on attendance_calculated")

    say("== 2. creating the class")
    schedule_class(db)

    say("== 3. the class happens (LiveKit posts its webhooks)")
    play_livekit(args.webhook_url, args.api_key, args.api_secret)

    say(f"== 4. waiting for the results of session {SESSION_ID}")
    wait_until_ready(db, listener, SESSION_ID, time.monotonic() + args.timeout)

    say(f"== 5. attendance of session {SESSION_ID} (times in UTC)")
    print_table(db, SESSION_ID)
    say(f"== 6. why this status? attendance_explain({SESSION_ID}, {EXPLAIN_USER})")
    explain(db, SESSION_ID, EXPLAIN_USER)

    say(f"== 7. excusing user {EXCUSE_USER}")
    excuse(db, listener, SESSION_ID, EXCUSE_USER, EXCUSE_REASON, time.monotonic() + args.timeout)
    say("done")


if __name__ == "__main__":
    try:
        main()
    except psycopg.Error as e:
        print(f"school_app: database error: {e.diag.message_primary or e} (SQLSTATE {e.sqlstate})",
              file=sys.stderr)
        sys.exit(1)
    except (Failure, OSError) as e:
        print(f"school_app: {e}", file=sys.stderr)
        sys.exit(1)
