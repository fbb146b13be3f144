"""The helpers every end-to-end suite shares (docs/development.md, "Tests"): the paths of
the built programs, psql and pg_ctl calls, bounded waits, free ports, attendancectl and
attendance-proxy runs, and the PASS/FAIL reporting that scripts/test.sh counts.
Python standard library only."""
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ATTENDANCE_BUILD_DIR", os.path.join(ROOT, "build"))
CTL = os.path.join(BUILD, "attendancectl")
PROXY = os.path.join(BUILD, "attendance-proxy")
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
WEBHOOK = "/webhooks/livekit"


# ---- reporting: one line per case, "PASS name" or "FAIL name: why" ----------------------
# scripts/test.sh counts the lines that begin with "PASS " and "FAIL "; finish() ends the
# suite with "N passed, N failed" and exit status 1 if any case failed.

PASSED = []
FAILURES = []


class Failure(AssertionError):
    """A check that did not hold (reported with its message alone, as an assert is)."""


def check(cond, why):
    if not cond:
        raise Failure(why)


def describe(exc):
    """What a FAIL line says about an exception: an assertion's message, or the type and
    message of anything unexpected."""
    return str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"


def report(name, error=None):
    """Reports one case: passed when error is None, else failed with that text."""
    if error is None:
        PASSED.append(name)
        print(f"PASS {name}", flush=True)
    else:
        FAILURES.append(name)
        print(f"FAIL {name}: {error}", flush=True)


def run_case(name, fn):
    """Runs fn() as the case `name` and reports it; True if it passed. An exception fails
    the case, never the suite."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - a failing case must not stop the others
        report(name, describe(exc))
        return False
    report(name)
    return True


def case(name):
    """Decorator: runs the test case at once and reports it."""
    def run(fn):
        run_case(name, fn)
        return fn
    return run


def note(text):
    print(f"  # {text}", flush=True)


def finish():
    print(f"{len(PASSED)} passed, {len(FAILURES)} failed", flush=True)
    sys.exit(1 if FAILURES else 0)


# ---- waiting ------------------------------------------------------------------------------

class Timeout(AssertionError):
    pass


def wait_until(predicate, timeout, what, interval=0.2):
    """Polls predicate until it returns a truthy value (returned); an exception counts as
    not yet. After timeout seconds raises Timeout, naming `what` and the last result."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        if time.time() >= deadline:
            raise Timeout(f"{what}: not within {timeout} s (last: {last!r})")
        time.sleep(interval)


def wait_for(predicate, timeout, interval=0.2):
    """Bounded polling: returns the first truthy value of predicate() or None."""
    try:
        return wait_until(predicate, timeout, "", interval)
    except Timeout:
        return None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_on_free_port(start, attempts=5):
    """Calls start(port) with a free port until it returns a truthy value: another
    program may take a probed port before the server binds it. Returns (value, port)
    or (None, None) after `attempts` ports."""
    for _ in range(attempts):
        port = free_port()
        value = start(port)
        if value:
            return value, port
    return None, None


# ---- PostgreSQL ---------------------------------------------------------------------------

def psql(sql, db="postgres", check=True, timeout=60, port=None, user=None, script=False):
    """Runs SQL through psql (unaligned, tuples only) and returns its output: stripped, or
    with script=True the SQL is read as a script from stdin (each statement in its own
    transaction), columns are separated by tabs and the output is returned as printed.
    The server is PGHOST/PGPORT's, or 127.0.0.1:port; the role PGUSER's, or user."""
    cmd = [os.path.join(PG_BIN, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db]
    if port is not None:
        cmd += ["-h", "127.0.0.1", "-p", str(port)]
    if user is not None:
        cmd += ["-U", user]
    if script:
        cmd += ["-F", "\t"]
    else:
        cmd += ["-c", sql]
    proc = subprocess.run(cmd, input=sql if script else None, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        where = f" on port {port}" if port is not None else ""
        raise RuntimeError(f"psql{where} failed: {proc.stderr.strip()[:500]}\nSQL: {sql[:300]}")
    return proc.stdout if script else proc.stdout.strip()


def sql(port, query, db="postgres", user="postgres", timeout=30, check=True):
    """psql against a server a suite runs itself on 127.0.0.1:port (test/e2e/ha.py,
    citus.py), as postgres."""
    return psql(query, db=db, check=check, timeout=timeout, port=port, user=user)


def pg_ctl(action, extra=()):
    """pg_ctl on the throwaway cluster of scripts/test.sh (ATTENDANCE_PGDIR)."""
    data = os.path.join(os.environ["ATTENDANCE_PGDIR"], "data")
    log = os.path.join(os.environ["ATTENDANCE_PGDIR"], "server.log")
    cmd = [f"{PG_BIN}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", *extra, action]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    # cwd "/": PostgreSQL's programs warn when the caller's directory is not theirs to read
    return subprocess.run(cmd, capture_output=True, text=True, cwd="/")


def wait_ready(timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q"]).returncode == 0:
            try:
                psql("SELECT 1", timeout=5)
                return True
            except Exception:
                pass
        time.sleep(0.2)
    return False


# ---- programs -----------------------------------------------------------------------------

def run_checked(cmd, check_rc=None, text=True, stdin=None, env=None, timeout=60):
    """Runs a program with stdout and stderr piped (never a terminal); with check_rc, its exit
    code must be that one, else the AssertionError shows the ends of both outputs."""
    proc = subprocess.run(cmd, capture_output=True, text=text, input=stdin, env=env, timeout=timeout)
    if check_rc is not None and proc.returncode != check_rc:
        out, err = proc.stdout, proc.stderr
        if not text:
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
        raise AssertionError(f"{os.path.basename(cmd[0])} {' '.join(cmd[1:])}: exit {proc.returncode}, "
                             f"expected {check_rc}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}")
    return proc


def environ(**changes):
    """A copy of the environment with `changes` made (a value None removes the variable)."""
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def ctl(*args, check_rc=None, stdin=None, text=True, timeout=60, conninfo=None, **env):
    """Runs attendancectl (the build's) with stdout and stderr piped, as run_checked does:
    with -d conninfo when given, in the environment changed by `env` (environ()). Suites bind
    their database with functools.partial(ctl, PGDATABASE=...)."""
    cmd = [CTL, *(["-d", conninfo] if conninfo is not None else []), *args]
    return run_checked(cmd, check_rc, text=text, stdin=stdin, env=environ(**env), timeout=timeout)


class Proxy:
    """attendance-proxy on a free port of 127.0.0.1 (another one if the port is taken before
    the proxy binds it), its output appended to logpath. Ready when GET /healthz is answered
    (any status; with healthy=True, 200) within `timeout` seconds; else RuntimeError with the
    log's last lines."""

    def __init__(self, binary, conninfo, logpath, *extra, env=None, healthy=False, timeout=15, attempts=5):
        self.port = None
        self.proc = None
        self.logpath = logpath
        for _ in range(attempts):  # another program may take the probed port first
            port = free_port()
            with open(logpath, "a") as log:
                self.proc = subprocess.Popen(
                    [binary, "--listen", "127.0.0.1", "--port", str(port), "--conninfo", conninfo, *extra],
                    stdout=log, stderr=subprocess.STDOUT, env=env)
            self.port = port
            deadline = time.time() + timeout
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    status, _ = self.get("/healthz", timeout=5)
                    if status == 200 or not healthy:
                        return
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"attendance-proxy did not start (exit status {self.proc.returncode}): {self.tail()}")

    def get(self, path, timeout=10):
        """(status, body text) of GET path."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            conn.close()

    def post(self, body, token, timeout=30):
        """(status, body text) of a webhook POSTed with that Authorization."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", WEBHOOK, body=body,
                         headers={"Authorization": token, "Content-Type": "application/webhook+json"})
            r = conn.getresponse()
            return r.status, r.read().decode(errors="replace")
        finally:
            conn.close()

    def tail(self, n=15):
        """The log's last n lines, joined with " | "."""
        try:
            with open(self.logpath, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError as e:
            return f"(no log: {e})"

    def stop(self, timeout=30):
        """SIGTERM, then the exit status; killed after `timeout` seconds (status -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
