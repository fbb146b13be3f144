"""Small helpers shared by the end-to-end tests: psql calls and PASS/FAIL reporting."""
import os
import socket
import subprocess
import sys
import time

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
FAILURES = []


def psql(sql, db="postgres", check=True, timeout=60):
    """Runs SQL through psql (unaligned, tuples only) and returns stdout stripped."""
    proc = subprocess.run(
        ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
        capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"psql failed: {proc.stderr.strip()}\nSQL: {sql[:300]}")
    return proc.stdout.strip()


def pg_ctl(action, extra=()):
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
        if subprocess.run(["pg_isready", "-q"]).returncode == 0:
            try:
                psql("SELECT 1", timeout=5)
                return True
            except Exception:
                pass
        time.sleep(0.2)
    return False


def wait_for(predicate, timeout, interval=0.2):
    """Bounded polling: returns the first truthy value of predicate() or None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
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


def case(name):
    """Decorator: runs the test case at once and prints PASS/FAIL."""
    def run(fn):
        try:
            fn()
            print(f"PASS {name}", flush=True)
        except Exception as exc:  # noqa: BLE001 - a failing case must not stop the others
            FAILURES.append(name)
            print(f"FAIL {name}: {exc}", flush=True)
        return fn
    return run


def finish():
    sys.exit(1 if FAILURES else 0)
