#!/usr/bin/env python3
"""Faults under load (issue 7): PostgreSQL backends and the postmaster killed with -9 and
restarted while attendance-proxy is under load; a read-only database. Every webhook
answered 200 must be in the log afterwards, every other answer must be a 5xx (so LiveKit
retries it), and the proxy and the scheduler must carry on by themselves.
Uses the runner's cluster (ATTENDANCE_PGDIR, PG* variables) and its own database."""
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from pgtest import FAILURES, PROXY, Proxy, case, finish, pg_ctl, psql, wait_for, wait_ready  # noqa: E402

DB = "e2e_faults"
TMP = tempfile.mkdtemp(prefix="attendance-e2e-faults.")


def setup():
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB}")
    psql("SET client_min_messages = warning; CREATE EXTENSION attendance;"
         "SELECT attendance_add_webhook_key('APIfault', 'fault-secret-0123456789abcdef');"
         "SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z');"
         f"ALTER DATABASE {DB} SET attendance.webhook_log_level = 'off';", db=DB)


def signed(prefix, n):
    out = psql(
        "SELECT b || E'\\t' || attendance_sign_webhook(b, 'APIfault', 3600) FROM ("
        " SELECT format('{\"event\":\"participant_joined\",\"room\":{\"name\":\"session-456\"},"
        "\"participant\":{\"sid\":\"PA_%1$s_%2$s\",\"identity\":\"user-%3$s\",\"joinedAtMs\":\"1763131000123\"},"
        f"\"id\":\"EV_%1$s_%2$s\",\"createdAt\":\"1763131000\"}}', '{prefix}', i, 1000 + i % 300) AS b"
        f" FROM generate_series(1, {n}) i) s", db=DB)
    pairs = []
    for line in out.splitlines():
        body, token = line.split("\t")
        pairs.append((body.split('"id":"')[1].split('"')[0], body.encode(), token))
    return pairs


def load(port, hooks, threads=4):
    """Posts every webhook once from several threads; returns {event_id: status or 'conn'}."""
    answers = {}
    lock = threading.Lock()
    chunks = [hooks[i::threads] for i in range(threads)]

    def worker(chunk):
        for event_id, body, token in chunk:
            status = "conn"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/webhooks/livekit", body=body,
                             headers={"Authorization": token, "Content-Type": "application/webhook+json"})
                status = conn.getresponse().status
                conn.close()
            except OSError:
                time.sleep(0.02)
            with lock:
                answers[event_id] = status
    ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in ts:
        t.start()
    return ts, answers


def check_answers(answers):
    ok = [e for e, s in answers.items() if s == 200]
    bad = {e: s for e, s in answers.items() if s not in (200, "conn") and not (isinstance(s, int) and s >= 500)}
    assert not bad, f"answers that are neither 200 nor 5xx nor a connection error: {list(bad.items())[:5]}"
    logged = set(psql("SELECT event_id FROM meeting_attendance_events", db=DB).split())
    missing = [e for e in ok if e not in logged]
    assert not missing, f"{len(missing)} webhooks answered 200 are not in the log, e.g. {missing[:3]}"
    return len(ok), sum(1 for s in answers.values() if s != 200)


setup()
proxy = Proxy(PROXY, f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=postgres dbname={DB}",
              os.path.join(TMP, "proxy.log"), "--max-body-bytes", "65536", "--keepalive-timeout", "2",
              "--pool-size", "4", "--pool-timeout-ms", "2000")


@case("a backend killed with -9 under load: every 200 is logged, the rest are 5xx")
def _():
    hooks = signed("kb", 3000)
    ts, answers = load(proxy.port, hooks)
    assert wait_for(lambda: sum(1 for v in list(answers.values()) if v == 200) >= 100, 60), "no load got through"

    pids = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB}' AND pid <> pg_backend_pid()").split()
    assert pids, "the proxy had no backend to kill"
    os.kill(int(pids[0]), signal.SIGKILL)  # the postmaster restarts every backend
    for t in ts:
        t.join()
    assert wait_ready(60), "PostgreSQL did not come back"
    ok, other = check_answers(answers)
    print(f"    {ok} answered 200 and logged, {other} answered 5xx or failed to connect")
    assert other > 0 and ok >= 100, "the kill did not hit the load: the test proved nothing"


def proxy_healthy():
    return proxy.get("/healthz", timeout=10)[0] == 200


@case("the postmaster killed with -9 under load, then restarted: every 200 is logged")
def _():
    hooks = signed("kp", 3000)
    # After the previous kill the proxy waits (with backoff) before it reconnects, and
    # answers 503 at once meanwhile: a load started then could be all 503 before the
    # proxy is back. So start it once the proxy answers /healthz with 200 again.
    assert wait_for(proxy_healthy, 60), "the proxy did not reconnect after the previous case"
    ts, answers = load(proxy.port, hooks)
    assert wait_for(lambda: sum(1 for v in list(answers.values()) if v == 200) >= 100, 60), "no load got through"

    pid = int(open(os.path.join(os.environ["ATTENDANCE_PGDIR"], "data", "postmaster.pid")).readline())
    os.kill(pid, signal.SIGKILL)
    for t in ts:
        t.join()
    # orphaned backends exit when they notice; then the server can start again
    started = wait_for(lambda: pg_ctl("start").returncode == 0 or wait_ready(1), 60, interval=1)
    assert started and wait_ready(60), "PostgreSQL could not be restarted"
    ok, other = check_answers(answers)
    print(f"    {ok} answered 200 and logged, {other} answered 5xx or failed to connect")
    assert other > 0 and ok >= 100, "the kill did not hit the load"


@case("after recovery the proxy answers 200 and the scheduler runs, by themselves")
def _():
    (event_id, body, token), = signed("after", 1)
    assert wait_for(lambda: proxy.post(body, token, timeout=10)[0] == 200, 30), "the proxy did not recover"
    assert wait_for(lambda: '"running": true' in psql("SELECT attendance_worker_status()", db=DB), 30)


@case("a read-only database answers 503, never a false 200")
def _():
    psql(f"ALTER DATABASE {DB} SET default_transaction_read_only = on")
    psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB}' AND pid <> pg_backend_pid()")
    try:
        hooks = signed("ro", 20)  # signing reads only
        ts, answers = load(proxy.port, hooks, threads=2)
        for t in ts:
            t.join()
        statuses = set(answers.values())
        assert statuses == {503}, f"statuses {statuses}"
        assert psql("SELECT count(*) FROM meeting_attendance_events WHERE event_id LIKE 'EV_ro_%'", db=DB) == "0"
    finally:
        psql(f"ALTER DATABASE {DB} RESET default_transaction_read_only")
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DB}' AND pid <> pg_backend_pid()")
    ts, answers = load(proxy.port, signed("rw", 20), threads=2)
    for t in ts:
        t.join()
    assert set(answers.values()) == {200}, set(answers.values())


proxy.stop()
if subprocess.run(["pg_isready", "-q"]).returncode != 0:
    pg_ctl("start")
wait_ready(60)
psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
if FAILURES:
    print(f"    proxy log kept in {TMP}", flush=True)
else:
    shutil.rmtree(TMP, ignore_errors=True)
finish()
