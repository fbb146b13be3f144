#!/usr/bin/env python3
"""End-to-end tests of attendance-proxy against a real PostgreSQL with the extension.

Needs (as scripts/test.sh provides): ATTENDANCE_BUILD_DIR (attendance-proxy inside),
ATTENDANCE_PGDIR (the throwaway cluster: data dir and server.log), and PGHOST, PGPORT,
PGUSER for a superuser. Creates and drops its own databases (e2e_proxy, e2e_proxy_sql).
Prints one line per case, "PASS name" or "FAIL name: why" (pgtest.py's reporting); exits 1
if any failed. Python standard library only.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
from pgtest import PG_BIN, PROXY, ROOT, WEBHOOK, check, note, report, run_case  # noqa: E402

PGDIR = os.environ.get("ATTENDANCE_PGDIR", "")
FIXTURES = os.path.join(ROOT, "test", "fixtures", "livekit")
DB = "e2e_proxy"
DB_SQL = "e2e_proxy_sql"
KEY = "APIfixture"
SECRET = "fixture-secret-0123456789abcdef0123"
MAX_BODY = 65536
LOGDIR = tempfile.mkdtemp(prefix="attendance-e2e-proxy.")

# ---- PostgreSQL -----------------------------------------------------------------------

def psql(sql, db=DB):
    """Runs SQL as a psql script (tab-separated); returns stdout; raises on error."""
    return pgtest.psql(sql, db, script=True)


def scalar(sql, db=DB):
    return psql(sql, db).strip()


def pg_ctl(action):
    return pgtest.pg_ctl(action, ["-m", "fast"] if action == "stop" else [])


def pg_running():
    return os.path.exists(os.path.join(PGDIR, "data", "postmaster.pid"))


def ensure_pg_running():
    if not pg_running():
        p = pg_ctl("start")
        if p.returncode != 0:
            print(f"  # could not restart PostgreSQL: {p.stdout} {p.stderr}", flush=True)


def setup_database(db):
    psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
    psql(f"CREATE DATABASE {db}", db="postgres")
    psql("SET client_min_messages = warning; CREATE EXTENSION attendance;"
         f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}');"
         "SELECT attendance_schedule_session(456, 'session-456', '2025-11-14 14:30:00Z', '2025-11-14 15:15:00Z');"
         f"ALTER DATABASE {db} SET attendance.webhook_log_level = 'off';", db=db)


def fold(db=DB):
    """What the scheduler's fold does within attendance.fold_interval (it serves another
    database): connections and live rows derived from the log."""
    scalar("SELECT attendance_fold()", db)


def counts(db=DB, like="%"):
    fold(db)
    out = scalar(f"SELECT (SELECT count(*) FROM meeting_attendance_events WHERE event_id LIKE '{like}'),"
                 f" (SELECT count(*) FROM attendance_sessions), (SELECT count(*) FROM meeting_attendances)", db)
    return tuple(int(x) for x in out.split("\t"))


def snapshot(db):
    """The recorded state, without ids, clock columns and the logging transaction, one sorted line
    per row."""
    fold(db)
    return psql("SELECT x FROM ("
                " SELECT 'E ' || (to_jsonb(e) - 'id' - 'received_at' - 'created_at' - 'logged_xid')::text AS x"
                "   FROM meeting_attendance_events e"
                " UNION ALL SELECT 'S ' || (to_jsonb(s) - 'derived_at')::text FROM attendance_sessions s"
                " UNION ALL SELECT 'M ' || (to_jsonb(m) - 'id' - 'created_at' - 'updated_at')::text"
                "   FROM meeting_attendances m) t ORDER BY x", db).splitlines()


def sign_bulk(prefix, n, identities=1000):
    """n distinct participant_joined bodies for room session-456, signed in one query."""
    out = psql(
        "SELECT b, attendance_sign_webhook(b, 'APIfixture', 3600) FROM ("
        " SELECT format('{\"event\":\"participant_joined\",\"room\":{\"sid\":\"RM_load\",\"name\":\"session-456\"},"
        "\"participant\":{\"sid\":\"PA_%1$s_%2$s\",\"identity\":\"user-%3$s\",\"state\":\"ACTIVE\","
        "\"joinedAt\":\"1763131000\",\"joinedAtMs\":\"1763131000123\",\"name\":\"Load %2$s\"},"
        f"\"id\":\"EV_%1$s_%2$s\",\"createdAt\":\"1763131000\"}}', '{prefix}', i, 100000 + i % {identities}) AS b"
        f" FROM generate_series(1, {n}) i) s ORDER BY b")
    pairs = []
    for line in out.splitlines():
        body, token = line.split("\t")
        event_id = json.loads(body)["id"]
        pairs.append((event_id, body.encode(), token))
    return pairs


def sign(body):
    return scalar("SELECT attendance_sign_webhook(convert_from(decode('%s', 'hex'), 'UTF8'), 'APIfixture')"
                  % body.hex())


# ---- the proxy ------------------------------------------------------------------------

def request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def post(port, body, token, timeout=30):
    headers = {"Content-Type": "application/webhook+json"}
    if token is not None:
        headers["Authorization"] = token
    return request(port, "POST", WEBHOOK, body, headers, timeout)


def start_proxy(name, conninfo, *extra):
    """attendance-proxy (pgtest.Proxy) with this suite's body limit and keep-alive timeout,
    logging to LOGDIR/<name>.log."""
    return pgtest.Proxy(PROXY, conninfo, os.path.join(LOGDIR, f"{name}.log"),
                        "--max-body-bytes", str(MAX_BODY), "--keepalive-timeout", "2", *extra)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- the cases ------------------------------------------------------------------------

def test_fixture_replay(proxy):
    lines = fixture("session-456.jsonl")
    check(len(lines) == 15, f"expected 15 fixture lines, found {len(lines)}")
    via_proxy = []
    for i, line in enumerate(lines):
        status, _, body = post(proxy.port, line["body"].encode(), line["authorization"])
        check(status == 200, f"line {i + 1}: status {status} {body[:200]!r}")
        via_proxy.append(json.loads(body)["result"])
    # The same requests straight through SQL into a second database.
    script = ["SET attendance.replay_mode = on;"]
    for line in lines:
        script.append("SELECT attendance_ingest_webhook($fx$%s$fx$, $fx$%s$fx$) ->> 'result';"
                      % (line["body"], line["authorization"]))
    via_sql = psql("\n".join(script), DB_SQL).split()
    check(via_proxy == via_sql, f"results differ: proxy {via_proxy} sql {via_sql}")
    check(via_proxy.count("duplicate") == 1, f"expected one duplicate: {via_proxy}")
    events, connections, _ = counts()
    check(events == 14, f"{events} events logged, expected 14")
    check(connections == 6, f"{connections} connections in attendance_sessions, expected 6")
    a, b = snapshot(DB), snapshot(DB_SQL)
    diff = [x for x in set(a) ^ set(b)]
    check(a == b, f"state differs from the SQL replay ({len(diff)} rows), e.g. {diff[:2]}")
    note(f"fixture results: {', '.join(via_proxy)}; {len(a)} rows identical to the SQL replay")


def test_negatives(proxies):
    before = counts()
    lines = fixture("negatives.jsonl")
    check(len(lines) == 5, f"expected 5 negative fixtures, found {len(lines)}")
    for proxy in proxies:  # in replay mode (expiry not checked) and against the clock
        for line in lines:
            status, _, body = post(proxy.port, line["body"].encode(), line["authorization"])
            check(status == 401, f"{line['variant']}: status {status} {body[:200]!r}")
            err = json.loads(body)
            check(err.get("sqlstate") == "28000" and err.get("error"), f"{line['variant']}: error body {err}")
    check(counts() == before, f"something was written: {before} -> {counts()}")


def test_methods_and_paths(proxy):
    status, headers, body = request(proxy.port, "GET", WEBHOOK)
    check(status == 405, f"GET {WEBHOOK}: {status}")
    check(headers.get("allow") == "POST", f"Allow header: {headers.get('allow')}")
    check("error" in json.loads(body), f"405 body {body!r}")
    status, headers, _ = request(proxy.port, "PUT", WEBHOOK, b"{}")
    check(status == 405 and headers.get("allow") == "POST", f"PUT {WEBHOOK}: {status}")
    status, _, body = request(proxy.port, "GET", "/no/such/path")
    check(status == 404, f"unknown path: {status}")
    check("error" in json.loads(body), f"404 body {body!r}")
    status, _, _ = post_to(proxy.port, "/webhooks/livekit2")
    check(status == 404, f"POST to another path: {status}")


def post_to(port, path):
    return request(port, "POST", path, b"{}", {"Content-Type": "application/webhook+json"})


def test_bad_bodies(proxy):
    before = counts()
    for body, sqlstate in [(b"not json", "22P02"), (b'{"event":"participant_joined"}', "22023")]:
        status, _, answer = post(proxy.port, body, sign(body))
        check(status == 400, f"{body!r}: status {status} {answer[:200]!r}")
        check(json.loads(answer).get("sqlstate") == sqlstate, f"{body!r}: {answer[:200]!r}")
    bad_utf8 = b'{"event":"participant_joined","id":"EV_\xff\xfe","createdAt":"1763130580"}'
    status, _, answer = post(proxy.port, bad_utf8, "eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
    check(status == 400, f"invalid UTF-8: status {status} {answer[:200]!r}")
    check("UTF-8" in json.loads(answer)["error"], f"invalid UTF-8: {answer[:200]!r}")
    status, _, answer = post(proxy.port, b'{"a":"\x00"}', "x")
    check(status == 400, f"NUL byte: status {status} {answer[:200]!r}")
    check(counts() == before, f"something was written: {before} -> {counts()}")


def test_oversized(proxy):
    big = b'{"pad":"' + b"x" * (MAX_BODY + 10) + b'"}'
    status, headers, answer = post(proxy.port, big, "x")
    check(status == 413, f"Content-Length over the limit: status {status} {answer[:200]!r}")

    def chunks():
        for _ in range(8):
            yield b"y" * (MAX_BODY // 4)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("POST", WEBHOOK, body=chunks(), headers={"Authorization": "x"}, encode_chunked=True)
        r = conn.getresponse()
        status = r.status
        r.read()
    finally:
        conn.close()
    check(status == 413, f"chunked body over the limit: status {status}")
    # A body exactly at the limit is read (and rejected by the database as not JSON).
    status, _, answer = post(proxy.port, b"z" * MAX_BODY, "x")
    check(status == 401, f"body at the limit: status {status} {answer[:200]!r}")


def test_health_and_metrics(proxy):
    status, _, body = request(proxy.port, "GET", "/healthz")
    check(status == 200, f"/healthz: {status} {body!r}")
    status, headers, body = request(proxy.port, "GET", "/metrics")
    check(status == 200, f"/metrics: {status}")
    check(headers.get("content-type", "").startswith("text/plain"), f"content type {headers.get('content-type')}")
    text = body.decode()
    for needle in ['attendance_proxy_requests_total{handler="webhook",status="200",result="recorded"}',
                   'attendance_proxy_requests_total{handler="webhook",status="200",result="duplicate"}',
                   'attendance_proxy_requests_total{handler="webhook",status="401",result=""}',
                   'attendance_proxy_webhook_duration_seconds_bucket{le="+Inf"}',
                   'attendance_proxy_webhook_duration_seconds_count',
                   'attendance_proxy_db_errors_total{sqlstate="28000"}',
                   'attendance_proxy_pool_size 8', 'attendance_proxy_pool_in_use',
                   'attendance_proxy_pool_connections', 'attendance_proxy_in_flight_requests']:
        check(needle in text, f"/metrics lacks {needle}")
    recorded = [line for line in text.splitlines()
                if line.startswith('attendance_proxy_requests_total{handler="webhook",status="200",result="recorded"}')]
    check(recorded and int(recorded[0].split()[-1]) >= 1, f"recorded counter: {recorded}")
    # HEAD answers GET's header fields with no body (RFC 9110 9.3.2): on one keep-alive
    # connection, the next answer starts right after the HEAD answer's header section.
    for path in ("/healthz", "/metrics"):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
            s.sendall(f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"
                      f"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        check(sep and head.startswith(b"HTTP/1.1 200"), f"HEAD {path}: {data[:200]!r}")
        length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        check(length and int(length[0].split(b":")[1]) > 0,
              f"HEAD {path} names the length GET would send: {head!r}")
        check(rest.startswith(b"HTTP/1.1 200"), f"HEAD {path} sent a body: {rest[:120]!r}")


def test_database_restart(proxy):
    body = (b'{"event":"participant_joined","room":{"sid":"RM_restart","name":"session-456"},'
            b'"participant":{"sid":"PA_restart_1","identity":"user-9001","state":"ACTIVE",'
            b'"joinedAtMs":"1763131000123"},"id":"EV_restart_1","createdAt":"1763131000"}')
    token = sign(body)
    status, _, _ = request(proxy.port, "GET", "/healthz")
    check(status == 200, f"/healthz before the restart: {status}")
    p = pg_ctl("stop")
    check(p.returncode == 0, f"pg_ctl stop failed: {p.stderr}")
    try:
        for attempt in range(3):  # stale pooled connections and new ones alike
            status, headers, answer = post(proxy.port, body, token)
            check(status == 503, f"with PostgreSQL stopped (attempt {attempt + 1}): {status} {answer[:200]!r}")
            check("retry-after" in headers, f"503 without Retry-After: {headers}")
        status, _, _ = request(proxy.port, "GET", "/healthz")
        check(status == 503, f"/healthz with PostgreSQL stopped: {status}")
    finally:
        p = pg_ctl("start")
    check(p.returncode == 0, f"pg_ctl start failed: {p.stderr}")
    deadline = time.time() + 30
    started = time.time()
    status = None
    while time.time() < deadline:
        status, _, answer = post(proxy.port, body, token)
        if status == 200:
            break
        check(status == 503, f"after the restart: {status} {answer[:200]!r}")
        time.sleep(0.2)
    check(status == 200, "no 200 within 30 s after PostgreSQL started again")
    check(json.loads(answer)["result"] == "recorded", f"after the restart: {answer!r}")
    check(proxy.proc.poll() is None, "the proxy exited")
    status, _, _ = request(proxy.port, "GET", "/healthz")
    check(status == 200, f"/healthz after the restart: {status}")
    note(f"first 200 {time.time() - started:.2f} s after PostgreSQL was up again")


def test_connection_killed_mid_request(proxy):
    """The backend serving a request dies mid-statement: 503, nothing stored, and the
    next request gets a fresh connection."""
    body = (b'{"event":"participant_joined","room":{"sid":"RM_kill","name":"session-456"},'
            b'"participant":{"sid":"PA_kill_1","identity":"user-9002","state":"ACTIVE",'
            b'"joinedAtMs":"1763131000123"},"id":"EV_kill_1","createdAt":"1763131000"}')
    token = sign(body)
    locker = subprocess.Popen([os.path.join(PG_BIN, "psql"), "-X", "-q", "-d", DB], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    answer = {}
    try:
        locker.stdin.write("BEGIN; LOCK TABLE meeting_attendance_events IN ACCESS EXCLUSIVE MODE;\n")
        locker.stdin.flush()
        pgtest.wait_until(lambda: scalar("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                                         " WHERE c.relname = 'meeting_attendance_events' AND l.granted"
                                         " AND l.mode = 'AccessExclusiveLock'") == "1",
                          20, "the table lock", interval=0.05)
        t = threading.Thread(target=lambda: answer.update(r=post(proxy.port, body, token)))
        t.start()
        waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()" \
                  " AND application_name = 'attendance-proxy' AND wait_event_type = 'Lock'"
        pgtest.wait_until(lambda: scalar(waiting) != "", 20, "the proxy's statement to wait on the lock",
                          interval=0.05)
        scalar(f"SELECT pg_terminate_backend(pid) FROM ({waiting}) w")
        t.join(30)
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(30)
    check("r" in answer, "no answer")
    status, headers, text = answer["r"]
    check(status == 503, f"status {status} {text[:200]!r}")
    check("retry-after" in headers, f"503 without Retry-After: {headers}")
    # libpq keeps the server's SQLSTATE (57P01) only when it read the error before EOF.
    check(json.loads(text).get("sqlstate") in ("57P01", None), f"answer {text[:200]!r}")
    check(scalar("SELECT count(*) FROM meeting_attendance_events WHERE event_id = 'EV_kill_1'") == "0",
          "the event was stored although 503 was answered")
    status, _, text = post(proxy.port, body, token)
    check(status == 200 and json.loads(text)["result"] == "recorded", f"retry: {status} {text[:200]!r}")


def test_sigterm_under_load(conninfo):
    """Load from 4 clients; a table lock holds some requests inside the database; SIGTERM;
    the proxy must wait for them, answer them after their commit, and exit 0."""
    pairs = sign_bulk("term", 3000)
    proxy = start_proxy("sigterm", conninfo)
    acked, answered, failed = [], {}, []
    lock = threading.Lock()
    next_item = iter(pairs)
    sigterm_at = [None]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        while True:
            with lock:
                item = next(next_item, None)
            if item is None:
                return
            event_id, body, token = item
            try:
                conn.request("POST", WEBHOOK, body=body,
                             headers={"Authorization": token, "Content-Type": "application/webhook+json"})
                r = conn.getresponse()
                answer = r.read()
                with lock:
                    answered[event_id] = r.status
                    if r.status == 200:
                        acked.append((event_id, json.loads(answer)["result"], sigterm_at[0] is not None))
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    failed.append((event_id, type(e).__name__))
                return  # the proxy is going away: this client stops

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    pgtest.wait_until(lambda: len(acked) >= 300, 20, "300 acknowledged webhooks", interval=0.05)
    locker = subprocess.Popen([os.path.join(PG_BIN, "psql"), "-X", "-q", "-d", DB], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        locker.stdin.write("BEGIN; LOCK TABLE meeting_attendance_events IN ACCESS EXCLUSIVE MODE;\n")
        locker.stdin.flush()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND application_name = 'attendance-proxy' AND wait_event_type = 'Lock'")
        pgtest.wait_until(lambda: int(scalar(waiting)) >= 2, 20, "requests held inside the database", interval=0.05)
        with lock:
            sigterm_at[0] = time.time()
        proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        check(proxy.proc.poll() is None, "the proxy exited with requests still in flight")
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(30)
    for t in threads:
        t.join(60)
    rc = proxy.stop(30)
    check(rc == 0, f"proxy exit status {rc}: {proxy.tail()}")
    stored = set(psql("SELECT event_id FROM meeting_attendance_events WHERE event_id LIKE 'EV_term_%'").split())
    lost = [e for e, _, _ in acked if e not in stored]
    check(not lost, f"{len(lost)} acknowledged webhooks are not stored, e.g. {lost[:3]}")
    check(all(r == "recorded" for _, r, _ in acked), "an acknowledged webhook was not 'recorded'")
    after = sum(1 for _, _, late in acked if late)
    check(after >= 2, f"only {after} in-flight requests were answered after SIGTERM")
    bad = {e: s for e, s in answered.items() if s != 200}
    check(len(acked) < len(pairs), "every request finished before SIGTERM took effect")
    check("SIGTERM" in proxy.tail(50), "no shutdown message in the proxy's log")
    note(f"SIGTERM: {len(acked)} acknowledged and all stored ({after} of them in flight at SIGTERM),"
         f" {len(bad)} other answers {sorted(set(bad.values()))}, {len(failed)} refused/closed,"
         f" {len(pairs) - len(answered) - len(failed)} never sent; exit 0")


def test_concurrency(proxy):
    distinct = sign_bulk("conc", 10000)
    duplicates = distinct[::10]  # 1,000 byte-identical redeliveries
    work = list(distinct)
    rng = random.Random(456)
    for item in duplicates:  # each after its original, at a random later place
        pos = work.index(item)
        work.insert(rng.randint(pos + 1, len(work)), item)
    check(len(work) == 11000, f"work list has {len(work)} items")
    answers = {"recorded": [], "duplicate": [], "other": []}
    lock = threading.Lock()
    cursor = iter(work)
    retries = [0]

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                conn.close()
                return
            event_id, body, token = item
            for attempt in range(5):  # like LiveKit: retry connection errors and 5xx
                try:
                    conn.request("POST", WEBHOOK, body=body,
                                 headers={"Authorization": token, "Content-Type": "application/webhook+json"})
                    r = conn.getresponse()
                    answer = r.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
                    status, answer = None, b""
                else:
                    status = r.status
                if status is not None and status < 500:
                    break
                with lock:
                    retries[0] += 1
                time.sleep(0.05 * (attempt + 1))
            result = json.loads(answer).get("result") if status == 200 else None
            with lock:
                answers[result if result in ("recorded", "duplicate") else "other"].append((event_id, status))

    started = time.time()
    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    recorded = [e for e, _ in answers["recorded"]]
    check(not answers["other"], f"{len(answers['other'])} requests not answered 200, e.g. {answers['other'][:3]}")
    check(len(recorded) == 10000, f"{len(recorded)} answered 'recorded', expected 10000")
    check(len(set(recorded)) == 10000, "an event was answered 'recorded' twice")
    check(len(answers["duplicate"]) == 1000, f"{len(answers['duplicate'])} answered 'duplicate', expected 1000")
    stored = psql("SELECT event_id FROM meeting_attendance_events WHERE event_id LIKE 'EV_conc_%'").split()
    check(len(stored) == 10000 and set(stored) == set(recorded),
          f"{len(stored)} logged events, {len(set(stored) ^ set(recorded))} differ from the 'recorded' answers")
    fold()
    conns = int(scalar("SELECT count(*) FROM attendance_sessions WHERE participant_sid LIKE 'PA_conc_%'"))
    check(conns == 10000, f"{conns} connections recorded, expected 10000")
    note(f"concurrency: 11000 requests from 8 clients in {elapsed:.1f} s ({11000 / elapsed:.0f} req/s),"
         f" {retries[0]} retries")


# ---- main -----------------------------------------------------------------------------

def main():
    for var in ("ATTENDANCE_PGDIR", "PGHOST", "PGPORT"):
        if not os.environ.get(var):
            report("setup", f"{var} is not set")
            return
    if not os.access(PROXY, os.X_OK):
        report("setup", f"{PROXY} not built")
        return
    note(f"proxy logs in {LOGDIR}")
    proxy = replay = None
    try:
        try:
            setup_database(DB)
            setup_database(DB_SQL)
            # The fixtures' tokens are long expired: replay mode (superuser only) skips
            # the expiry check; signatures and body hashes are still verified. Tokens
            # signed now go through a proxy without it (replay mode checks nbf against
            # the webhook's createdAt, which the generated bodies set in the past).
            replay = start_proxy("replay", f"dbname={DB} options='-c attendance.replay_mode=on'")
            proxy = start_proxy("main", f"dbname={DB}")
        except Exception as e:  # noqa: BLE001
            report("setup", pgtest.describe(e))
            return

        cases = [
            ("fixtures_replayed_through_proxy", lambda: test_fixture_replay(replay)),
            ("negatives_401_nothing_written", lambda: test_negatives([replay, proxy])),
            ("get_405_unknown_path_404", lambda: test_methods_and_paths(proxy)),
            ("garbage_and_invalid_utf8_400", lambda: test_bad_bodies(proxy)),
            ("oversized_body_413", lambda: test_oversized(proxy)),
            ("healthz_and_metrics", lambda: test_health_and_metrics(replay)),
            ("backend_killed_mid_request_503", lambda: test_connection_killed_mid_request(proxy)),
            ("postgres_restart_503_then_200", lambda: test_database_restart(proxy)),
            ("sigterm_under_load_loses_nothing", lambda: test_sigterm_under_load(f"dbname={DB}")),
            ("concurrency_10000_plus_1000_duplicates", lambda: test_concurrency(proxy)),
        ]
        for name, fn in cases:
            try:
                run_case(name, fn)
            finally:
                ensure_pg_running()
            if proxy.proc.poll() is not None and name != cases[-1][0]:
                report("proxy_alive", f"the main proxy exited with {proxy.proc.returncode}: {proxy.tail()}")
                break

        rc, rc_replay = proxy.stop(30), replay.stop(30)
        report("clean_exit_on_sigterm",
               None if rc == 0 and rc_replay == 0 else f"exit status {rc}/{rc_replay}: {proxy.tail()}")
    finally:
        for p in (proxy, replay):
            if p is not None and p.proc.poll() is None:
                p.proc.kill()
        ensure_pg_running()
        for db in (DB, DB_SQL):
            try:
                psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
            except Exception:  # noqa: BLE001
                pass
    if pgtest.FAILURES:
        note(f"proxy logs kept in {LOGDIR}")
    else:
        shutil.rmtree(LOGDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
    pgtest.finish()
