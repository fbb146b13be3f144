"""A pg_auto_failover formation on one machine, for the HA suite (test_ha.py) and the
failover benchmark (bench/failover.py): a monitor and two data nodes, each with its own
free port and data directory under one temporary directory, run as an unprivileged user
(PostgreSQL refuses root), with pg_autoctl's XDG directories pointed inside it. Also
a load that behaves as LiveKit does, through attendance-proxy (pgtest.Proxy) in front of
the pair.
Python standard library only. Every wait is bounded; stop() leaves nothing behind."""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The shared helpers (test/e2e/pgtest.py); bench/failover.py takes them from here too.
from pgtest import PG_BIN, Proxy, Timeout, free_port, sql, wait_until  # noqa: E402,F401 (re-exported)

OS_USER = os.environ.get("PG_OS_USER", "postgres")

# The monitor's health checks, tuned so that a dead primary is noticed within about
# 2 s instead of 20-30 s (pg_auto_failover's defaults; docs/scaling.md says why).
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",       # ms between checks (default 5000)
    "pgautofailover.health_check_timeout": "1000",      # ms for one check (default 5000)
    "pgautofailover.health_check_max_retries": "1",     # default 2
    "pgautofailover.health_check_retry_delay": "500",   # ms (default 2000)
    "pgautofailover.node_considered_unhealthy_timeout": "2000",  # ms (default 20000)
    # ms the monitor waits for a primary it cannot reach to demote itself before the
    # standby is promoted (default 30000). Safe here because the test kills the node;
    # on separate machines it must exceed the keeper's network_partition_timeout.
    "pgautofailover.primary_demote_timeout": "3000",
}
# pg_autoctl sizes memory for a dedicated machine (shared_buffers = 25 % of RAM): three
# servers on one test machine get small settings instead.
SMALL = {
    "shared_buffers": "'32MB'",
    "work_mem": "'4MB'",
    "maintenance_work_mem": "'64MB'",
    "effective_cache_size": "'1GB'",
    "wal_keep_size": "'256MB'",
    "fsync": "off",
}


def children_of(pid):
    """Every descendant of pid (from /proc), deepest last."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in parents.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Node:
    def __init__(self, name, port, pgdata):
        self.name, self.port, self.pgdata = name, port, pgdata
        self.proc = None
        self.log = None
        self.runs = 0

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None


def keeper_semaphores():
    """Ids of the System V semaphore sets of one semaphore owned by OS_USER."""
    try:
        uid = pwd.getpwnam(OS_USER).pw_uid
        with open("/proc/sysvipc/sem") as fh:
            rows = [r.split() for r in fh.read().splitlines()[1:]]
    except (KeyError, OSError):
        return set()
    return {int(r[1]) for r in rows if int(r[3]) == 1 and int(r[4]) == uid}


def scheduler_processes(node):
    """The node's attendance scheduler (launcher) and run processes, found among its
    postmaster's children by their process titles."""
    pm = node.postmaster_pid()
    if not pm or not alive(pm):
        return []
    found = []
    for pid in children_of(pm):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                title = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "attendance scheduler" in title or "attendance run" in title:
            found.append((pid, title.strip()))
    return found


class Formation:
    """Monitor + two nodes. node_settings: postgresql.conf lines for the data nodes (the
    first node's postgresql.conf is copied to the second by pg_basebackup)."""

    def __init__(self, node_settings, base=None):
        self.base = base or tempfile.mkdtemp(prefix="attendance-ha.")
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(OS_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", OS_USER], check=True)
            os.chown(self.base, pwd.getpwnam(OS_USER).pw_uid, -1)
        self.env = {
            "XDG_CONFIG_HOME": os.path.join(self.base, "config"),
            "XDG_DATA_HOME": os.path.join(self.base, "share"),
            "XDG_RUNTIME_DIR": os.path.join(self.base, "run"),
            "PATH": f"{PG_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": self.base,
            "PG_CONFIG": f"{PG_BIN}/pg_config",
        }
        # pg_autoctl falls back to /tmp for a runtime directory that does not exist
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
            os.mkdir(self.env[key], 0o700)
            if os.geteuid() == 0:
                os.chown(self.env[key], pwd.getpwnam(OS_USER).pw_uid, -1)
        # pg_autoctl connects to its local server through PostgreSQL's default socket
        # directory, which only the Debian service's start creates
        if os.geteuid() == 0 and not os.path.isdir("/var/run/postgresql"):
            os.makedirs("/var/run/postgresql", 0o2775)
            os.chown("/var/run/postgresql", pwd.getpwnam(OS_USER).pw_uid, pwd.getpwnam(OS_USER).pw_gid)
        self.node_settings = node_settings
        self.monitor = Node("monitor", free_port(), os.path.join(self.base, "monitor"))
        self.nodes = {}
        self.procs = []  # every pg_autoctl run started, for stop()
        self.semaphores_before = keeper_semaphores()

    # ---- pg_autoctl ---------------------------------------------------------------
    def as_user(self, args):
        # A clean environment: the caller's PGHOST, PGPORT, ... (scripts/test.sh sets them
        # for its own cluster) would redirect pg_autoctl's connections to its own servers.
        env = [f"{k}={v}" for k, v in self.env.items()]
        if os.geteuid() == 0:
            return ["runuser", "-u", OS_USER, "--", "env", "-i", *env, *args]
        return ["env", "-i", *env, *args]

    def autoctl(self, *args, timeout=180):
        proc = subprocess.run(self.as_user(["pg_autoctl", *args]), capture_output=True, text=True,
                              timeout=timeout, cwd="/")
        if proc.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args[:2])} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-1500:]}")
        return proc.stdout

    def append_conf(self, node, settings):
        lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
        path = os.path.join(node.pgdata, "postgresql.conf")
        subprocess.run(self.as_user(["tee", "-a", path]), input=lines, text=True, check=True,
                       stdout=subprocess.DEVNULL, cwd="/")

    def run(self, node):
        """Starts `pg_autoctl run` for the node (its keeper and its postgres)."""
        node.runs += 1
        node.log = os.path.join(self.base, f"{node.name}.run{node.runs}.log")
        with open(node.log, "w") as log:
            node.proc = subprocess.Popen(self.as_user(["pg_autoctl", "run", "--pgdata", node.pgdata]),
                                         stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                         start_new_session=True)
        self.procs.append((node, node.proc))

    def monitor_uri(self):
        return f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    def start_monitor(self):
        m = self.monitor
        self.autoctl("create", "monitor", "--pgdata", m.pgdata, "--pgport", str(m.port),
                     "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl")
        self.autoctl("config", "set", "--pgdata", m.pgdata, "postgresql.listen_addresses", "127.0.0.1")
        self.append_conf(m, {**SMALL, **MONITOR_SETTINGS})
        self.run(m)
        wait_until(lambda: sql(m.port, "SELECT 1", db="pg_auto_failover", user="autoctl_node", timeout=5) == "1",
                   60, "the monitor accepts connections")

    def add_node(self, name):
        node = Node(name, free_port(), os.path.join(self.base, name))
        first = not self.nodes
        self.nodes[name] = node
        self.autoctl("create", "postgres", "--pgdata", node.pgdata, "--pgport", str(node.port),
                     "--listen", "127.0.0.1", "--hostname", "127.0.0.1", "--name", name,
                     "--auth", "trust", "--no-ssl", "--monitor", self.monitor_uri())
        if first:
            self.append_conf(node, {**SMALL, **self.node_settings})
        self.run(node)
        return node

    # ---- state --------------------------------------------------------------------
    def states(self):
        out = sql(self.monitor.port,
                  "SELECT nodename || '|' || reportedstate || '|' || goalstate FROM pgautofailover.node",
                  db="pg_auto_failover", user="autoctl_node", timeout=10)
        return {line.split("|")[0]: tuple(line.split("|")[1:]) for line in out.splitlines()}

    def wait_states(self, expected, timeout):
        """expected: {node name: set of acceptable states}, reported and assigned alike."""
        def ok():
            s = self.states()
            return s if all(n in s and s[n][0] in want and s[n][1] in want
                            for n, want in expected.items()) else None
        return wait_until(ok, timeout, f"node states {expected}", interval=0.25)

    def primary(self):
        for name, (reported, _) in self.states().items():
            if reported in ("primary", "wait_primary", "single"):
                return self.nodes[name]
        return None

    def other(self, node):
        return next(n for n in self.nodes.values() if n is not node)

    def conninfo(self, db="postgres"):
        hosts = ",".join("127.0.0.1" for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes.values())
        return (f"host={hosts} port={ports} dbname={db} user=postgres "
                f"target_session_attrs=read-write connect_timeout=2")

    # ---- faults -------------------------------------------------------------------
    def kill(self, node):
        """kill -9 of the node's postmaster and its keeper (every pg_autoctl process of
        the node, so that nothing restarts the postmaster): the machine is gone. Returns
        the time of the kill."""
        victims = set(children_of(node.proc.pid)) | {node.proc.pid}
        semaphore = self.keeper_semaphore(node)
        pm = node.postmaster_pid()
        if pm:
            victims.add(pm)
        t = time.time()
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(30)
        # the postmaster's children notice its death and exit by themselves
        wait_until(lambda: not any(alive(p) for p in victims) and
                   not (pm and alive(pm)), 60, f"{node.name}'s processes exit")
        # pg_autoctl serializes its log lines with a System V semaphore that only a clean
        # exit removes; a killed keeper's would outlive the suite.
        if semaphore is not None:
            subprocess.run(["ipcrm", "-s", str(semaphore)], capture_output=True)
        return t

    def semaphores_left(self):
        """One-semaphore sets (pg_autoctl's kind) of the formation's user that were not
        there when the formation was made: what its keepers left behind."""
        return sorted(keeper_semaphores() - self.semaphores_before)

    def keeper_semaphore(self, node):
        """The id of the semaphore of the node's running pg_autoctl, from its pidfile (line
        5 of pg_autoctl 2.0's pidfile), if the system lists it as a one-semaphore set of the
        formation's user (PostgreSQL's own sets have 17)."""
        pidfile = None
        for root, _, files in os.walk(self.env["XDG_RUNTIME_DIR"]):
            if "pg_autoctl.pid" in files and root.endswith(node.pgdata):
                pidfile = os.path.join(root, "pg_autoctl.pid")
        try:
            with open(pidfile) as fh:
                lines = fh.read().splitlines()
            semid = int(lines[4])
            uid = pwd.getpwnam(OS_USER).pw_uid
            with open("/proc/sysvipc/sem") as fh:
                for row in fh.read().splitlines()[1:]:
                    cols = row.split()
                    if int(cols[1]) == semid and int(cols[3]) == 1 and int(cols[4]) == uid:
                        return semid
        except (TypeError, OSError, ValueError, IndexError, KeyError):
            pass
        return None

    # ---- teardown -----------------------------------------------------------------
    def save_logs(self):
        """Copies the logs (pg_autoctl's, each server's, the proxy's) to a new directory
        beside the formation's, which stop() removes with the data; returns its path."""
        out = tempfile.mkdtemp(prefix="attendance-ha-logs.", dir=os.path.dirname(self.base))
        for name in os.listdir(self.base):
            path = os.path.join(self.base, name)
            if name.endswith(".log"):
                shutil.copy(path, out)
            elif os.path.isdir(os.path.join(path, "log")):
                shutil.copytree(os.path.join(path, "log"), os.path.join(out, name + "-postgres-log"))
        return out

    def stop(self):
        """Stops every node (gracefully, then by force) and removes the directory. Safe
        to call twice and after any failure."""
        for node in list(self.nodes.values()) + [self.monitor]:
            if node.proc is not None and node.proc.poll() is None:
                try:
                    self.autoctl("stop", "--pgdata", node.pgdata, timeout=30)
                except Exception:  # noqa: BLE001 - then by signal below
                    pass
        for node, proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            rest = children_of(proc.pid) + ([proc.pid] if proc.poll() is None else [])
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # A postmaster left without its keeper (or a kill that raced the stop).
        for node in list(self.nodes.values()) + [self.monitor]:
            pm = node.postmaster_pid()
            if pm and alive(pm):
                subprocess.run(self.as_user([f"{PG_BIN}/pg_ctl", "-D", node.pgdata, "-m", "immediate",
                                             "-w", "-t", "30", "stop"]), capture_output=True, cwd="/")
        shutil.rmtree(self.base, ignore_errors=True)


# ---- attendance-proxy and the load ----------------------------------------------------

def sign(port, prefix, n, room, joined_ms, key):
    """n distinct participant_joined webhooks for `room`, signed on the primary (port):
    [(event_id, body bytes, token)]."""
    out = sql(port,
              "SELECT b || E'\\t' || attendance_sign_webhook(b, '%s', 3600) FROM ("
              " SELECT format('{\"event\":\"participant_joined\",\"room\":{\"name\":\"%s\"},"
              "\"participant\":{\"sid\":\"PA_%%1$s_%%2$s\",\"identity\":\"user-%%3$s\",\"joinedAtMs\":\"%d\"},"
              "\"id\":\"EV_%%1$s_%%2$s\",\"createdAt\":\"%d\"}', '%s', i, 100000 + i) AS b"
              " FROM generate_series(1, %d) i) s" % (key, room, joined_ms, joined_ms // 1000, prefix, n))
    hooks = []
    for line in out.splitlines():
        body, token = line.split("\t")
        hooks.append((body.split('"id":"')[1].split('"')[0], body.encode(), token))
    return hooks


class Load:
    """Posts each webhook once from several threads, as fast as answers come (a short
    pause between requests). A webhook answered anything but 2xx (or not answered) is
    kept for resending, as LiveKit does; resend() sends them again until each is 2xx."""

    def __init__(self, proxy, hooks, threads=4, pause=0.005, pause_after_failure=0.1):
        self.proxy, self.hooks, self.pause = proxy, hooks, pause
        # slower while answers fail, so that a long outage does not use up the webhooks
        self.pause_after_failure = pause_after_failure
        self.answers = []          # (event_id, sent, answered, status)
        self.failed = []           # hooks answered non-2xx or not at all
        self.acked = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next = 0
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _take(self):
        with self.lock:
            if self.stopping.is_set() or self.next >= len(self.hooks):
                return None
            h = self.hooks[self.next]
            self.next += 1
            return h

    def _work(self):
        while True:
            h = self._take()
            if h is None:
                return
            sent = time.time()
            try:
                status, _ = self.proxy.post(h[1], h[2], timeout=30)
            except OSError:
                status = None
            answered = time.time()
            ok = status is not None and 200 <= status < 300
            with self.lock:
                self.answers.append((h[0], sent, answered, status))
                if ok:
                    self.acked.add(h[0])
                else:
                    self.failed.append(h)
            time.sleep(self.pause if ok else self.pause_after_failure)

    def acked_after(self, t):
        with self.lock:
            return sum(1 for _, sent, _, s in self.answers if sent >= t and s is not None and 200 <= s < 300)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(120)

    def resend(self, timeout=120):
        """Sends every failed webhook again (same body, same token) until it is 2xx, with
        LiveKit's back-off shape (doubling, capped). Returns (resends, duplicates): how
        many requests it took and how many were already stored (answered "duplicate")."""
        resends = duplicates = 0
        deadline = time.time() + timeout
        for event_id, body, token in self.failed:
            delay = 0.1
            while True:
                resends += 1
                try:
                    status, text = self.proxy.post(body, token, timeout=30)
                except OSError:
                    status, text = None, ""
                if status is not None and 200 <= status < 300:
                    duplicates += '"duplicate"' in text
                    break
                if time.time() > deadline:
                    raise Timeout(f"webhook {event_id} still not stored after resending for {timeout} s")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
        return resends, duplicates


def failover_round(formation, proxy, hooks, before_kill=None, threads=4, pause=0.02):
    """One failover under load: posts `hooks` through the proxy, kills the primary (its
    postmaster and keeper, -9) once 200 were acknowledged (and before_kill() returned),
    waits for the standby's promotion and 200 more acknowledgements, then resends what
    was not acknowledged until each is. Returns what it saw; the caller asserts."""
    old = formation.primary()
    new = formation.other(old)
    load = Load(proxy, hooks, threads=threads, pause=pause)
    try:
        wait_until(lambda: len(load.acked) >= 200, 120, "200 webhooks acknowledged before the kill")
        if before_kill:
            before_kill()
        acked_before = len(load.acked)
        t_kill = formation.kill(old)
        formation.wait_states({new.name: {"wait_primary", "primary"}}, 120)
        t_promoted = time.time()
        wait_until(lambda: load.acked_after(t_kill) >= 200, 120, "200 webhooks acknowledged after the kill")
    finally:
        load.stop()
    after = [a for a in load.answers if a[1] >= t_kill]
    oks = [a[2] for a in after if a[3] is not None and 200 <= a[3] < 300]
    non_2xx = [a for a in load.answers if a[3] is None or not 200 <= a[3] < 300]
    prefix = hooks[0][0].rsplit("_", 1)[0]
    logged = set(sql(new.port, "SELECT event_id FROM meeting_attendance_events "
                               f"WHERE event_id LIKE '{prefix}\\_%'").split())
    lost = load.acked - logged  # read before resending: only what the first posts stored
    resends, duplicates = load.resend(timeout=180)
    return {
        "old": old, "new": new, "load": load, "t_kill": t_kill,
        "acked_before": acked_before, "acked": len(load.acked), "lost": lost,
        "first_2xx_s": min(oks) - t_kill,
        "promoted_s": t_promoted - t_kill,  # as the monitor reports it (polled every 0.25 s)
        "non_2xx": non_2xx, "statuses": sorted({a[3] for a in non_2xx}, key=str),
        "slowest_non_2xx_s": max((a[2] - a[1] for a in non_2xx), default=0.0),
        "resends": resends, "duplicates": duplicates,
        "sent": {h[0] for h in hooks[:load.next]},
    }
