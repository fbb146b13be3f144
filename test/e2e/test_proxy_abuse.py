#!/usr/bin/env python3
"""attendance-proxy against abuse and a database that refuses writes (issue 21; docs/proxy.md,
"Rejected before the database", "Hostile clients", "Health and metrics").

- An unsigned flood (aimed at 5,000 requests/s) costs PostgreSQL no call at all: the
  ingestion function's call count is exactly the valid webhooks', PostgreSQL's log does not
  grow with the flood, the proxy's own log stays bounded; PostgreSQL's CPU time and the
  valid webhooks' latency meanwhile are measured and printed (numbers in
  docs/performance.md).
- Forged tokens that pass every test without the secret reach the database only until
  their source's budget is spent; then 429 with Retry-After, for that source only.
- The key names follow the database: a key added is accepted at once, a key retired is
  refused by the proxy itself within seconds; replay and development mode of the proxy's
  sessions are respected.
- One client holding 12,000 idle connections (reopened as the proxy closes them) does not
  lock out another source: >= 99 % of its webhooks are answered 2xx, with the per-source
  limit and, without it, at the connection cap.
- /readyz reports a database that refuses writes: read-only, and (as root) a full disk on a
  small tmpfs tablespace; it recovers when the disk has room again.

Loopback only (127.0.0.x are distinct sources on Linux), bounded in count and time. Needs
what test_proxy.py needs (ATTENDANCE_BUILD_DIR, ATTENDANCE_PGDIR, PGHOST, PGPORT, PGUSER).
Creates and drops the databases e2e_abuse and e2e_abuse_disk. Prints "PASS name" /
"FAIL name: why" (pgtest.py's reporting); exits 1 if any failed.

Also runs as its own load generators (separate processes, so that the measuring process is
not slowed by their work): --flood PORT RATE SECONDS and --hog PORT N SECONDS.
"""
import base64
import hashlib
import hmac
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402
import test_proxy as tp  # noqa: E402
from pgtest import Failure, check, note, report, run_case, wait_for  # noqa: E402

DB = "e2e_abuse"
DB_DISK = "e2e_abuse_disk"
FLOOD_RATE = 5000       # unsigned requests per second aimed at
FLOOD_SECONDS = 10
VALID_RATE = 40         # valid webhooks per second beside the flood
HOG = 12000             # idle connections one client holds
HOG_SECONDS = 25
P99_BOUND_S = 1.0       # generous, for a shared 2-core machine; measured figures are printed
SELF = os.path.abspath(__file__)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- load generators (run as separate processes) ----------------------------------------

FLOOD_BODY = b'{"event":"participant_joined","room":{"name":"session-456"},"id":"EV_flood","createdAt":"1"}'
UNSIGNED = (b"POST /webhooks/livekit HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/webhook+json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(FLOOD_BODY)) + FLOOD_BODY


def flood(port, rate, seconds, connections=4, batch=25):
    """Unsigned webhooks at `rate` per second over keep-alive connections, pipelined in
    batches; prints {"sent", "answered", "statuses", "seconds"} as JSON."""
    stats = {"sent": 0, "answered": 0, "statuses": {}, "errors": 0}
    lock = threading.Lock()
    start = time.time()
    per_conn = rate / connections

    def worker():
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sent = answered = 0
        statuses = {}
        buf = b""
        t0 = time.time()
        try:
            while time.time() - start < seconds:
                due = int((time.time() - t0) * per_conn)
                if sent >= due:
                    time.sleep(min(0.005, (sent + 1 - due) / per_conn))
                    continue
                n = min(batch, max(1, due - sent))
                sock.sendall(UNSIGNED * n)
                sent += n
                while answered < sent:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    buf += data
                    while True:
                        i = buf.find(b"HTTP/1.1 ")
                        j = buf.find(b"\r\n\r\n", i) if i >= 0 else -1
                        if i < 0 or j < 0:
                            break
                        head = buf[i:j].decode("latin-1")
                        length = 0
                        for line in head.split("\r\n")[1:]:
                            k, _, v = line.partition(":")
                            if k.strip().lower() == "content-length":
                                length = int(v)
                        if len(buf) < j + 4 + length:
                            break
                        status = head[9:12]
                        statuses[status] = statuses.get(status, 0) + 1
                        answered += 1
                        buf = buf[j + 4 + length:]
        except OSError:
            with lock:
                stats["errors"] += 1
        finally:
            sock.close()
            with lock:
                stats["sent"] += sent
                stats["answered"] += answered
                for k, v in statuses.items():
                    stats["statuses"][k] = stats["statuses"].get(k, 0) + v

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    stats["seconds"] = time.time() - start
    print(json.dumps(stats), flush=True)


def hog(port, n, seconds, max_connects=200000):
    """Holds n connections from 127.0.0.1 that send nothing, opening a new one whenever the
    proxy closes one (as an attacker would), for `seconds`; prints {"connects", "open_end",
    "closed_by_proxy"} as JSON. Prints "ready" once n connects were made."""
    raise_nofile()
    sel = selectors.DefaultSelector()
    connects = closed = 0
    open_socks = set()

    def open_one():
        nonlocal connects
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            return False
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        open_socks.add(s)
        connects += 1
        return True

    for _ in range(n):
        open_one()
    print("ready", flush=True)
    deadline = time.time() + seconds
    while time.time() < deadline and connects < max_connects:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                continue
            sel.unregister(s)
            open_socks.discard(s)
            s.close()
            closed += 1
        while len(open_socks) < n and connects < max_connects and time.time() < deadline:
            if not open_one():
                break
    print(json.dumps({"connects": connects, "open_end": len(open_socks), "closed_by_proxy": closed}),
          flush=True)
    for s in open_socks:
        s.close()


# ---- helpers ------------------------------------------------------------------------------

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def forged_token(body, iss=tp.KEY, secret=b"not-the-secret", ttl=600):
    """What an attacker who knows a key name can make: well-formed, valid now, the body's
    hash, and a MAC under the wrong secret (with the right secret: a good token)."""
    now = int(time.time())
    header = b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"iss": iss, "nbf": now, "iat": now, "exp": now + ttl,
              "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()}
    payload = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def signed(prefix, n, key=tp.KEY, db=DB):
    out = tp.psql(
        "SELECT b, attendance_sign_webhook(b, '%s', 3600) FROM ("
        " SELECT format('{\"event\":\"participant_joined\",\"room\":{\"sid\":\"RM_a\",\"name\":\"session-456\"},"
        "\"participant\":{\"sid\":\"PA_%%1$s_%%2$s\",\"identity\":\"user-%%2$s\",\"state\":\"ACTIVE\","
        "\"joinedAtMs\":\"1763131000123\"},\"id\":\"EV_%%1$s_%%2$s\",\"createdAt\":\"1763131000\"}', '%s', i) AS b"
        " FROM generate_series(1, %d) i) s ORDER BY b" % (key, prefix, n), db=db)
    pairs = []
    for line in out.splitlines():
        body, token = line.split("\t")
        pairs.append((json.loads(body)["id"], body.encode(), token))
    return pairs


def raw_post(body, token):
    head = ["POST /webhooks/livekit HTTP/1.1", "Host: proxy", "Content-Type: application/webhook+json",
            f"Content-Length: {len(body)}"]
    if token is not None:
        head.append(f"Authorization: {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Client:
    """Keep-alive HTTP/1.1 from a chosen loopback source; reconnects when closed."""

    def __init__(self, port, source="127.0.0.2"):
        self.port, self.source, self.sock, self.buf = port, source, None, b""

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30,
                                             source_address=(self.source, 0))
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    def exchange(self, raw, new_connection=False):
        """(status, headers, body) or (None, {}, b"") when the connection failed."""
        try:
            if new_connection or self.sock is None:
                self.close()
                self._connect()
            self.sock.sendall(raw)
            while b"\r\n\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("closed")
                self.buf += data
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                data = self.sock.recv(65536)
                if not data:
                    raise OSError("closed")
                self.buf += data
            body, self.buf = self.buf[:n], self.buf[n:]
            if headers.get("connection", "").lower() == "close":
                self.close()
            return int(lines[0].split()[1]), headers, body
        except OSError:
            self.close()
            return None, {}, b""


def metrics(port, source="127.0.0.9"):
    c = Client(port, source)
    try:
        status, _, body = c.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        c.close()
    check(status == 200, f"/metrics: {status}")
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def start_proxy(name, conninfo, *flags):
    """A proxy that has read the key names and settings once (before that it judges
    nothing itself: every request goes to the database)."""
    proxy = tp.start_proxy(name, conninfo, *flags)
    if not wait_for(lambda: metrics(proxy.port)["attendance_proxy_key_names"] >= 0, 30):
        proxy.stop(30)
        raise Failure(f"{name} did not read the key names within 30 s: {proxy.tail()}")
    return proxy


def ingest_calls(db=DB):
    """attendance_ingest_webhook's calls in the database (track_functions = all). Exact once
    the calling backends have ended (a backend reports its counts at the latest on exit)."""
    v = tp.scalar("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
                  " WHERE funcname = 'attendance_ingest_webhook'", db)
    return int(v)


def rollbacks(db=DB):
    """Transactions of the database that ended in an error (a rejected call raises, and a call
    that raises is not counted by pg_stat_user_functions). Exact once the backends ended."""
    return int(tp.scalar(f"SELECT xact_rollback FROM pg_stat_database WHERE datname = '{db}'", db))


def function_calls(name, db=DB):
    return int(tp.scalar(f"SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE funcname = '{name}'", db))


def backends_gone(db=DB):
    return wait_for(
        lambda: tp.scalar(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'"
                          " AND application_name = 'attendance-proxy'", "postgres") == "0", 30)


def postgres_pids():
    with open(os.path.join(tp.PGDIR, "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def postgres_cpu():
    """CPU seconds used so far by each process of the cluster: {pid: seconds}."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in postgres_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return out


def cpu_between(before, after):
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def server_log_size():
    return os.path.getsize(os.path.join(tp.PGDIR, "server.log"))


def run_generator(*args):
    return subprocess.Popen([sys.executable, SELF, *map(str, args)], stdout=subprocess.PIPE, text=True)


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v))) - 1))]


def post_valid(port, webhooks, rate, stop=None):
    """Posts the webhooks from 127.0.0.2 at `rate` per second (a new connection every 10);
    returns [(event_id, status, result, seconds)]."""
    client = Client(port, "127.0.0.2")
    out = []
    t0 = time.time()
    try:
        for i, (event_id, body, token) in enumerate(webhooks):
            if stop is not None and stop.is_set():
                break
            wait = t0 + i / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            started = time.perf_counter()
            status, _, answer = client.exchange(raw_post(body, token), new_connection=i % 10 == 0)
            took = time.perf_counter() - started
            result = json.loads(answer).get("result") if status == 200 else None
            out.append((event_id, status, result, took))
    finally:
        client.close()
    return out


# ---- the cases ------------------------------------------------------------------------------

def test_unsigned_flood():
    """Valid webhooks alone, then an unsigned flood alone, then both: PostgreSQL is called for
    the valid webhooks only, its log does not grow with the flood, the proxy's log stays
    bounded, and the valid webhooks are all stored."""
    proxy = start_proxy("abuse-flood", f"dbname={DB}", "--reject-rate", "0")  # every request judged
    calls_before, rollbacks_before, log_start = ingest_calls(), rollbacks(), server_log_size()
    n0 = 4 * VALID_RATE
    nb = FLOOD_SECONDS * VALID_RATE
    hooks = signed("fl", n0 + nb)
    try:
        # 0: the valid webhooks alone
        alone = post_valid(proxy.port, hooks[:n0], VALID_RATE)
        # A: the flood alone
        log0, plog0, cpu0 = server_log_size(), os.path.getsize(proxy.logpath), postgres_cpu()
        m0 = metrics(proxy.port)
        gen = run_generator("--flood", proxy.port, FLOOD_RATE, FLOOD_SECONDS)
        out, _ = gen.communicate(timeout=FLOOD_SECONDS + 120)
        cpu1, log1, plog1 = postgres_cpu(), server_log_size(), os.path.getsize(proxy.logpath)
        flood_a = json.loads(out.strip().splitlines()[-1])
        m1 = metrics(proxy.port)
        # B: the flood and the valid webhooks together
        gen = run_generator("--flood", proxy.port, FLOOD_RATE, FLOOD_SECONDS)
        during = post_valid(proxy.port, hooks[n0:], VALID_RATE)
        out, _ = gen.communicate(timeout=FLOOD_SECONDS + 120)
        flood_b = json.loads(out.strip().splitlines()[-1])
        m2 = metrics(proxy.port)
    finally:
        rc = proxy.stop(30)
    check(rc == 0, f"proxy exit status {rc}")
    check(backends_gone(), "the proxy's database sessions did not end")
    calls = ingest_calls() - calls_before
    failed_calls = rollbacks() - rollbacks_before
    with open(os.path.join(tp.PGDIR, "server.log"), "rb") as f:
        f.seek(log_start)
        rejections_logged = f.read().count(b"webhook rejected")

    for name, f in (("A", flood_a), ("B", flood_b)):
        check(f["sent"] > 0 and f["answered"] == f["sent"] and f["errors"] == 0,
              f"flood {name}: {f}")
        check(set(f["statuses"]) == {"401"}, f"flood {name} answers: {f['statuses']}")
    rejected = m1.get('attendance_proxy_rejected_total{reason="missing_token"}', 0) - \
        m0.get('attendance_proxy_rejected_total{reason="missing_token"}', 0)
    check(rejected == flood_a["sent"], f"{rejected:.0f} rejections counted for {flood_a['sent']} requests")
    valid = alone + during
    bad = [v for v in valid if v[1] != 200 or v[2] != "recorded"]
    check(not bad, f"{len(bad)} valid webhooks not answered 200 recorded, e.g. {bad[:3]}")
    stored = int(tp.scalar("SELECT count(*) FROM meeting_attendance_events WHERE event_id LIKE 'EV_fl_%'", DB))
    check(stored == len(valid), f"{stored} of {len(valid)} valid webhooks stored")
    # The database was called for the valid webhooks and for nothing of the floods: every
    # call succeeded (a call that raises is a rollback, and a rejection in its log).
    check(calls == len(valid), f"attendance_ingest_webhook ran {calls} times for {len(valid)} valid webhooks"
                               f" and {flood_a['sent'] + flood_b['sent']} unsigned ones")
    check(failed_calls == 0 and rejections_logged == 0,
          f"{failed_calls} transactions failed in the database, {rejections_logged} rejections in its log")

    secs_a = flood_a["seconds"]
    pg_cpu = cpu_between(cpu0, cpu1)
    pg_log_per_min = (log1 - log0) / secs_a * 60
    proxy_log_per_min = (plog1 - plog0) / secs_a * 60
    check(pg_log_per_min < 1e6, f"PostgreSQL's log grew {log1 - log0} bytes in {secs_a:.1f} s of flood")
    check(proxy_log_per_min < 1e6, f"the proxy's log grew {plog1 - plog0} bytes in {secs_a:.1f} s of flood")
    not_logged = m1["attendance_proxy_rejections_not_logged_total"] - m0["attendance_proxy_rejections_not_logged_total"]
    check(not_logged >= flood_a["sent"] - 3 * 10, f"{not_logged:.0f} of {flood_a['sent']} rejections left out of the log")
    check(pg_cpu / secs_a < 0.25, f"PostgreSQL used {pg_cpu:.2f} s of CPU in {secs_a:.1f} s of flood")
    p99_alone = percentile([v[3] for v in alone], 99)
    p99_during = percentile([v[3] for v in during], 99)
    check(p99_during < P99_BOUND_S, f"valid webhooks' p99 {p99_during * 1000:.1f} ms during the flood")
    note(f"flood A: {flood_a['sent']} unsigned in {secs_a:.1f} s ({flood_a['sent'] / secs_a:.0f}/s), all 401 before"
         f" the database; PostgreSQL CPU {pg_cpu:.3f} s ({100 * pg_cpu / secs_a:.2f} % of a core), its log"
         f" +{log1 - log0} B ({pg_log_per_min / 1e3:.1f} kB/min), the proxy's log +{plog1 - plog0} B"
         f" ({proxy_log_per_min / 1e3:.1f} kB/min); attendance_ingest_webhook calls {calls} = valid webhooks {len(valid)},"
         f" failed calls {failed_calls}")
    note(f"valid webhooks from another source: alone p50 {percentile([v[3] for v in alone], 50) * 1000:.2f} ms"
         f" p99 {p99_alone * 1000:.2f} ms; beside flood B ({flood_b['sent'] / flood_b['seconds']:.0f}/s)"
         f" p50 {percentile([v[3] for v in during], 50) * 1000:.2f} ms p99 {p99_during * 1000:.2f} ms;"
         f" load average {os.getloadavg()[0]:.1f}")
    return m2


def test_forged_budget():
    """Tokens that pass every test without the secret reach the database until their
    source's budget (burst 20, then one per 5 s here) is spent; then 429 with Retry-After and no database
    call, for that source only; the budget refills."""
    proxy = start_proxy("abuse-budget", f"dbname={DB}", "--reject-burst", "20", "--reject-rate", "0.2")
    log_before = server_log_size()
    (e1, b1, t1), (e2, b2, t2), (e3, b3, t3) = signed("bud", 3)
    statuses = {}
    client = Client(proxy.port, "127.0.0.5")
    try:
        t0 = time.time()
        for i in range(300):
            body = b'{"event":"participant_joined","room":{"name":"session-456"},"id":"EV_forged_%d","createdAt":"1"}' % i
            status, headers, answer = client.exchange(raw_post(body, forged_token(body)))
            statuses[status] = statuses.get(status, 0) + 1
            if status == 429:
                check(int(headers.get("retry-after", "0")) >= 1, f"429 without Retry-After: {headers}")
        elapsed = time.time() - t0
        # The source is over its budget: even its valid webhook waits; another source's does not.
        status, headers, _ = client.exchange(raw_post(b1, t1))
        check(status == 429, f"a valid webhook from the source over its budget: {status}")
        other = Client(proxy.port, "127.0.0.6")
        status, _, answer = other.exchange(raw_post(b2, t2))
        other.close()
        check(status == 200 and json.loads(answer)["result"] == "recorded", f"another source: {status} {answer[:200]!r}")
        # After Retry-After the source is heard again.
        wait = int(headers.get("retry-after", "1"))
        check(1 <= wait <= 5, f"Retry-After {wait}")  # a rejection's worth of the rate
        ok = wait_for(lambda: client.exchange(raw_post(b3, t3))[0] == 200, 15)
        check(ok, "the source was not heard again after its Retry-After")
        summary = wait_for(lambda: "rejected" in proxy.tail(200) and "not logged one by one" in proxy.tail(200), 20)
        m = metrics(proxy.port)
    finally:
        client.close()
        proxy.stop(30)
    check(backends_gone(), "the proxy's database sessions did not end")
    # Each forged token that reached the database is one rejection in PostgreSQL's log
    # (a failed call is not counted in pg_stat_user_functions).
    with open(os.path.join(tp.PGDIR, "server.log"), "rb") as f:
        f.seek(log_before)
        forged_calls = f.read().count(b"webhook rejected: bad signature for API key")
    allowed = 20 + 0.2 * (elapsed + 1)
    check(statuses.get(401, 0) + statuses.get(429, 0) == 300, f"answers {statuses}")
    check(forged_calls == statuses.get(401, 0), f"{forged_calls} database calls for {statuses.get(401, 0)} 401s")
    check(forged_calls <= allowed, f"{forged_calls} forged tokens reached the database, the budget allows {allowed:.0f}")
    check(statuses.get(429, 0) >= 300 - allowed, f"answers {statuses}")
    check(m["attendance_proxy_rate_limited_total"] >= statuses.get(429, 0) + 1, "rate_limited_total")
    check(summary, "no summary line of the rejections in the proxy's log")
    with open(proxy.logpath) as f:
        lines = [line for line in f if "POST /webhooks/livekit status=4" in line]
    check(len(lines) <= 10 * (1 + elapsed / 10 + 2), f"{len(lines)} rejections logged one by one")
    note(f"300 forged tokens from one source in {elapsed:.1f} s: {statuses.get(401, 0)} reached the database (401),"
         f" {statuses.get(429, 0)} answered 429; {len(lines)} access-log lines for them")


def test_key_names_followed():
    """A key added is accepted at once; a key retired is refused by the proxy itself within
    seconds (no database call); development and replay mode of the proxy's sessions are the
    extension's to judge."""
    proxy = start_proxy("abuse-keys", f"dbname={DB}")
    dev = start_proxy("abuse-dev", f"dbname={DB} options='-c attendance.development_mode=on'")
    try:
        body = b'{"event":"participant_joined","room":{"name":"session-456"},"participant":{"sid":"PA_k1",' \
               b'"identity":"user-77","joinedAtMs":"1763131000123"},"id":"EV_key_1","createdAt":"1763131000"}'
        new_secret = "new-secret-0123456789abcdef0123"
        token = forged_token(body, "APInew", new_secret.encode())
        before = metrics(proxy.port)
        status, _, answer = Client(proxy.port).exchange(raw_post(body, token))
        check(status == 401 and b"unknown or retired API key 'APInew'" in answer, f"unknown key: {status} {answer!r}")
        after = metrics(proxy.port)
        check(after.get('attendance_proxy_rejected_total{reason="unknown_key"}', 0) ==
              before.get('attendance_proxy_rejected_total{reason="unknown_key"}', 0) + 1,
              "the unknown key was not refused by the proxy")
        # Added: accepted at once (a token naming an unknown key is refused only with key
        # names read after it came: docs/proxy.md).
        tp.psql(f"SELECT attendance_add_webhook_key('APInew', '{new_secret}')", DB)
        token = forged_token(body, "APInew", new_secret.encode())
        status, _, answer = Client(proxy.port).exchange(raw_post(body, token))
        check(status == 200 and json.loads(answer)["result"] == "recorded", f"a key just added: {status} {answer!r}")
        # Retired: refused by the proxy itself once it read the names again (every 5 s).
        tp.psql("SELECT attendance_retire_webhook_key('APInew')", DB)
        body2 = body.replace(b"EV_key_1", b"EV_key_2").replace(b"PA_k1", b"PA_k2")
        t0 = time.time()

        def refused_here():
            m = metrics(proxy.port)
            before_n = m.get('attendance_proxy_rejected_total{reason="unknown_key"}', 0)
            st, _, _ = Client(proxy.port).exchange(raw_post(body2, forged_token(body2, "APInew", new_secret.encode())))
            m = metrics(proxy.port)
            return st == 401 and m.get('attendance_proxy_rejected_total{reason="unknown_key"}', 0) == before_n + 1
        check(wait_for(refused_here, 20), "a retired key was still sent to the database after 20 s")
        note(f"a key added was accepted at once; a retired one refused by the proxy after {time.time() - t0:.1f} s")
        # Development mode (set for the proxy's sessions): an unsigned webhook goes on to the
        # extension, which accepts it; the signed path is unchanged.
        dev_body = b'{"event":"participant_joined","room":{"name":"session-456"},"participant":{"sid":"PA_dev1",' \
                   b'"identity":"user-78","joinedAtMs":"1763131000123"},"id":"EV_dev_1","createdAt":"1763131000"}'
        status, _, answer = Client(dev.port).exchange(raw_post(dev_body, None))
        check(status == 200 and json.loads(answer)["result"] == "recorded", f"development mode: {status} {answer!r}")
        status, _, answer = Client(proxy.port).exchange(raw_post(dev_body, None))
        check(status == 401, f"without development mode: {status} {answer!r}")
    finally:
        proxy.stop(30)
        dev.stop(30)

    # A flood of made-up key names: each refused by the proxy, none by the database, and
    # the names read again at most 5 at once and 10 a second (plus one every 5 s).
    flood = start_proxy("abuse-fake-keys", f"dbname={DB}", "--reject-rate", "0")
    log_before = server_log_size()
    try:
        m0 = metrics(flood.port)
        client = Client(flood.port, "127.0.0.5")
        t0 = time.time()
        for i in range(300):
            body = b'{"event":"room_started","room":{"name":"session-456"},"id":"EV_fake_%d","createdAt":"1"}' % i
            status, _, answer = client.exchange(raw_post(body, forged_token(body, f"APIfake{i}")))
            check(status == 401 and b"unknown or retired API key 'APIfake" in answer, f"made-up key: {status} {answer!r}")
        elapsed = time.time() - t0
        client.close()
        m1 = metrics(flood.port)
    finally:
        flood.stop(30)
    refused = m1['attendance_proxy_rejected_total{reason="unknown_key"}'] - \
        m0.get('attendance_proxy_rejected_total{reason="unknown_key"}', 0)
    reads = m1["attendance_proxy_key_name_reads_total"] - m0["attendance_proxy_key_name_reads_total"]
    with open(os.path.join(tp.PGDIR, "server.log"), "rb") as f:
        f.seek(log_before)
        in_database = f.read().count(b"unknown or retired API key 'APIfake")
    check(refused == 300 and in_database == 0, f"{refused:.0f} refused by the proxy, {in_database} by the database")
    check(reads <= 5 + 10 * elapsed + elapsed / 5 + 2, f"{reads:.0f} readings of the names in {elapsed:.1f} s")
    note(f"300 made-up key names in {elapsed:.1f} s: all refused by the proxy, {reads:.0f} readings of the names")


def hog_case(name, *flags):
    """One client (127.0.0.1) holds HOG idle connections, reopened as they are closed;
    valid webhooks from 127.0.0.2 meanwhile: >= 99 % answered 2xx."""
    proxy = tp.start_proxy(name, f"dbname={DB}", *flags)
    hooks = signed(f"hg{name[-1]}", 400)
    gen = subprocess.Popen([sys.executable, SELF, "--hog", str(proxy.port), str(HOG), str(HOG_SECONDS)],
                           stdout=subprocess.PIPE, text=True)
    try:
        first = gen.stdout.readline().strip()
        check(first == "ready", f"the hog did not start: {first!r}")
        held = metrics(proxy.port)["attendance_proxy_open_connections"]
        answers = post_valid(proxy.port, hooks, 40)
        m = metrics(proxy.port)
        out, _ = gen.communicate(timeout=HOG_SECONDS + 120)
        hog_stats = json.loads(out.strip().splitlines()[-1])
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        rc = proxy.stop(60)
    ok = [a for a in answers if a[1] is not None and 200 <= a[1] < 300]
    share = len(ok) / len(answers)
    check(len(answers) == len(hooks), f"{len(answers)} of {len(hooks)} webhooks sent")
    check(share >= 0.99, f"only {100 * share:.1f} % of the valid webhooks answered 2xx"
                         f" ({[a for a in answers if a not in ok][:3]})")
    check(rc == 0, f"proxy exit status {rc}")
    lat = [a[3] for a in ok]
    note(f"{name}: one client made {hog_stats['connects']} connects to hold {HOG} ({held:.0f} open at the proxy"
         f" when the webhooks began; evicted {m['attendance_proxy_connections_evicted_total']:.0f}, refused"
         f" {m['attendance_proxy_connections_refused_total'] + m['attendance_proxy_source_connections_refused_total']:.0f});"
         f" another source's {len(answers)} webhooks: {100 * share:.1f} % 2xx, p50 {percentile(lat, 50) * 1000:.1f} ms,"
         f" p99 {percentile(lat, 99) * 1000:.1f} ms")


def test_readiness_read_only():
    """A read-only database: /readyz 503 'database refuses writes', /healthz 200, webhooks
    503; back to ready when it is writable again."""
    tp.psql(f"ALTER DATABASE {DB} SET default_transaction_read_only = on", "postgres")
    proxy = tp.start_proxy("abuse-ready", f"dbname={DB}")
    try:
        status, headers, body = Client(proxy.port, "127.0.0.7").exchange(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status == 503 and json.loads(body) == {"error": "database refuses writes", "sqlstate": None},
              f"/readyz read-only: {status} {body!r}")
        check("retry-after" in headers, "503 without Retry-After")
        status, _, _ = Client(proxy.port, "127.0.0.7").exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status == 200, f"/healthz read-only: {status}")
        (e1, b1, t1), = signed("ro", 1)
        status, _, _ = Client(proxy.port, "127.0.0.7").exchange(raw_post(b1, t1))
        check(status == 503, f"a webhook to a read-only database: {status}")
        check("25006" in proxy.tail(30), "the log does not name the cause (25006)")
    finally:
        tp.psql(f"ALTER DATABASE {DB} RESET default_transaction_read_only", "postgres")
    try:
        checks = 1
        probes_before = function_calls("attendance_write_probe")

        def ready_now():
            nonlocal checks
            checks += 1
            return Client(proxy.port, "127.0.0.7").exchange(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        check(wait_for(ready_now, 20), "/readyz did not come back to 200 once the database was writable")
        # The refused webhook, retried as LiveKit would, is stored (a pooled connection opened
        # while the database was read-only is replaced when it fails).
        check(wait_for(lambda: Client(proxy.port, "127.0.0.7").exchange(raw_post(b1, t1))[0] == 200, 20),
              "the refused webhook was not stored when retried")
        # Many readiness checks at once: one probe answers all that come within a second.
        codes = []
        threads = [threading.Thread(target=lambda: codes.append(Client(proxy.port, "127.0.0.7").exchange(
            b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")[0])) for _ in range(20)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        burst = time.time() - t0
        checks += 20
        check(codes == [200] * 20, f"/readyz answers {codes}")
    finally:
        proxy.stop(30)
    check(backends_gone(), "the proxy's database sessions did not end")
    probes = function_calls("attendance_write_probe") - probes_before
    bound = checks - 20 + burst + 2
    check(probes <= bound, f"attendance_write_probe ran {probes} times for {checks} readiness checks"
                           f" ({burst:.1f} s for the 20 at once)")
    note(f"read-only: /readyz 503 then 200; {checks} readiness checks ran the write probe {probes} times")


def test_readiness_disk_full():
    """The data disk full (a 40 MB tmpfs tablespace holding the database): /readyz 503
    'database refuses writes' and webhooks 503 while /healthz stays 200; with room again,
    /readyz 200 and the refused webhook is stored when retried. Nothing answered 200 is
    lost."""
    mnt = tempfile.mkdtemp(prefix="attendance-disk.")
    mounted = False
    proxy = None
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt], check=True)
        mounted = True
        shutil.chown(mnt, os.environ.get("PG_OS_USER", "postgres"))
        tp.psql(f"DROP DATABASE IF EXISTS {DB_DISK} WITH (FORCE)", "postgres")
        tp.psql("DROP TABLESPACE IF EXISTS attendance_e2e_small", "postgres")
        tp.psql(f"CREATE TABLESPACE attendance_e2e_small LOCATION '{mnt}'", "postgres")
        tp.psql(f"CREATE DATABASE {DB_DISK} TABLESPACE attendance_e2e_small", "postgres")
        tp.psql("SET client_min_messages = warning; CREATE EXTENSION attendance;"
                f"SELECT attendance_add_webhook_key('{tp.KEY}', '{tp.SECRET}');"
                f"ALTER DATABASE {DB_DISK} SET attendance.webhook_log_level = 'off';", DB_DISK)
        hooks = signed("dsk", 3000, db=DB_DISK)
        proxy = tp.start_proxy("abuse-disk", f"dbname={DB_DISK}")
        client = Client(proxy.port, "127.0.0.8")
        acked, refused = [], None
        for event_id, body, token in hooks[:20]:  # before the disk is full
            status, _, answer = client.exchange(raw_post(body, token))
            check(status == 200, f"with room on the disk: {status} {answer[:200]!r}")
            acked.append(event_id)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:  # root's: PostgreSQL cannot free it
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        for event_id, body, token in hooks[20:]:
            status, _, answer = client.exchange(raw_post(body, token))
            if status == 200:
                acked.append(event_id)
                continue
            check(status == 503, f"a webhook on a full disk: {status} {answer[:200]!r}")
            refused = (event_id, body, token)
            break
        check(refused is not None, f"{len(acked)} webhooks stored on a full disk, none refused")
        status, _, body = Client(proxy.port, "127.0.0.8").exchange(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status == 503 and json.loads(body)["error"] == "database refuses writes", f"/readyz full: {status} {body!r}")
        status, _, _ = Client(proxy.port, "127.0.0.8").exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(status == 200, f"/healthz with a full disk: {status}")
        check("53100" in proxy.tail(40), "the log does not name the cause (53100)")
        os.unlink(filler)
        ready = wait_for(lambda: Client(proxy.port, "127.0.0.8").exchange(
            b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200, 20)
        check(ready, "/readyz did not come back to 200 with room on the disk")
        status, _, answer = client.exchange(raw_post(refused[1], refused[2]))
        check(status == 200 and json.loads(answer)["result"] == "recorded", f"the refused webhook retried: {status}")
        stored = set(tp.psql("SELECT event_id FROM meeting_attendance_events WHERE event_id LIKE 'EV_dsk_%'",
                             DB_DISK).split())
        lost = [e for e in acked + [refused[0]] if e not in stored]
        check(not lost, f"{len(lost)} acknowledged webhooks lost, e.g. {lost[:3]}")
        client.close()
        note(f"full disk: {len(acked) - 20} more webhooks stored, then 503 and /readyz 503 (53100), /healthz 200; with room again"
             " /readyz 200 and the retry stored; nothing acknowledged lost")
    finally:
        if proxy is not None:
            proxy.stop(30)
        try:
            tp.psql(f"DROP DATABASE IF EXISTS {DB_DISK} WITH (FORCE)", "postgres")
            tp.psql("DROP TABLESPACE IF EXISTS attendance_e2e_small", "postgres")
        except Exception:  # noqa: BLE001
            pass
        if mounted:
            subprocess.run(["umount", mnt])
        shutil.rmtree(mnt, ignore_errors=True)


# ---- main ---------------------------------------------------------------------------------

def main():
    for var in ("ATTENDANCE_PGDIR", "PGHOST", "PGPORT"):
        if not os.environ.get(var):
            report("setup", f"{var} is not set")
            return
    limit = raise_nofile()
    try:
        try:
            tp.setup_database(DB)
            # Counts of the ingestion function's calls, for the load-independent assertions.
            tp.psql(f"ALTER DATABASE {DB} SET track_functions = 'all'", "postgres")
        except Exception as e:  # noqa: BLE001
            report("setup", pgtest.describe(e))
            return
        cases = [
            ("unsigned_flood_reaches_no_database_call", test_unsigned_flood),
            ("forged_tokens_budget_then_429_per_source", test_forged_budget),
            ("key_names_followed_dev_mode_respected", test_key_names_followed),
            ("idle_hog_12000_per_source_limit_99pct_2xx", lambda: hog_case("abuse-hog1")),
            ("idle_hog_12000_at_the_cap_99pct_2xx",
             lambda: hog_case("abuse-hog2", "--max-connections-per-source", "0")),
            ("readyz_read_only_503_then_200", test_readiness_read_only),
        ]
        if os.geteuid() == 0:
            cases.append(("readyz_disk_full_503_then_200", test_readiness_disk_full))
        else:
            note("not root: the full-disk case (a tmpfs mount) is left out")
        if limit < HOG + 200:
            note(f"open-file limit {limit}: the idle-hog cases are left out")
            cases = [c for c in cases if "hog" not in c[0]]
        for name, fn in cases:
            run_case(name, fn)
    finally:
        for db in (DB, DB_DISK):
            try:
                tp.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", db="postgres")
            except Exception:  # noqa: BLE001
                pass
    if not pgtest.FAILURES:
        shutil.rmtree(tp.LOGDIR, ignore_errors=True)
    else:
        note(f"proxy logs kept in {tp.LOGDIR}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        flood(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--hog":
        hog(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        sys.exit(0)
    main()
    pgtest.finish()
