"""A Citus cluster on one machine, for the Citus suite (test_citus.py): a coordinator and
workers, each its own PostgreSQL 15 server on a free port under one temporary directory,
run as an unprivileged user (PostgreSQL refuses root), every node with
shared_preload_libraries = 'citus,attendance' (docs/scaling.md, "Citus").
Needs Citus installed for this server (scripts/citus.sh). Python standard library only;
every wait is bounded; stop() leaves nothing behind."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ha import OS_USER  # noqa: E402
# bench/citus_bench.py takes PG_BIN and wait_until from here too
from pgtest import PG_BIN, free_port, sql, wait_until  # noqa: E402,F401 (re-exported)

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_preload_libraries": "'citus,attendance'",
    "attendance.database_name": "'postgres'",
    "attendance.calculation_delay": "'2s'",
    "attendance.webhook_log_level": "'off'",
    # Citus' two-phase commits for writes that touch several nodes
    "max_prepared_transactions": "20",
    "shared_buffers": "'32MB'",
    "fsync": "off",
}


def as_user(args):
    return ["runuser", "-u", OS_USER, "--", *args] if os.geteuid() == 0 else list(args)


class Node:
    def __init__(self, name, base):
        self.name = name
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = None

    def pg_ctl(self, action, *extra, timeout=120):
        return subprocess.run(as_user([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w",
                                       "-t", "90", *extra, action]),
                              capture_output=True, text=True, cwd="/", timeout=timeout)

    def sql(self, query, **kw):
        return sql(self.port, query, **{"timeout": 60, **kw})


class Cluster:
    """A coordinator (nodes[0]) and `workers` workers, started and joined (citus_add_node).
    extra: further postgresql.conf settings for every node."""

    def __init__(self, workers=2, extra=None):
        self.base = tempfile.mkdtemp(prefix="attendance-citus.")
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(OS_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                "/usr/sbin/nologin", OS_USER], check=True)
        self.nodes = [Node("coordinator", self.base)] + [Node(f"worker{i}", self.base)
                                                         for i in range(1, workers + 1)]
        self.settings = {**SETTINGS, **(extra or {})}
        try:
            for node in self.nodes:
                self._start(node)
            for node in self.nodes:
                node.sql("CREATE EXTENSION citus")
            c = self.coordinator
            c.sql(f"SELECT citus_set_coordinator_host('127.0.0.1', {c.port})")
            for w in self.workers:
                c.sql(f"SELECT citus_add_node('127.0.0.1', {w.port})")
        except BaseException:
            self.stop()
            raise

    @property
    def coordinator(self):
        return self.nodes[0]

    @property
    def workers(self):
        return self.nodes[1:]

    def _start(self, node):
        os.makedirs(node.dir)
        if os.geteuid() == 0:
            os.chown(node.dir, pwd.getpwnam(OS_USER).pw_uid, -1)
        os.chmod(node.dir, 0o700)
        init = subprocess.run(as_user([f"{PG_BIN}/initdb", "-D", node.data, "-U", "postgres",
                                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                              capture_output=True, text=True, cwd="/", timeout=300)
        if init.returncode != 0:
            raise RuntimeError(f"initdb {node.name}: {init.stderr[-1000:]}")
        for _ in range(5):  # another program may take a probed port before the server binds it
            port = free_port()
            lines = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
            lines += f"unix_socket_directories = '{node.dir}'\nport = {port}\n"
            subprocess.run(as_user(["tee", "-a", os.path.join(node.data, "postgresql.conf")]),
                           input=lines, text=True, check=True, stdout=subprocess.DEVNULL, cwd="/")
            if node.pg_ctl("start").returncode == 0:
                node.port = port
                return
        raise RuntimeError(f"{node.name} did not start; see {node.log}")

    def restart(self, node):
        r = node.pg_ctl("restart", "-m", "fast")
        if r.returncode != 0:
            raise RuntimeError(f"restart of {node.name} failed: {r.stderr[-500:]}")

    def logs(self):
        """The end of every node's server log (for a failure's message)."""
        out = []
        for node in self.nodes:
            try:
                with open(node.log, errors="replace") as f:
                    out.append(f"--- {node.name}\n" + "".join(f.readlines()[-15:]))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for node in self.nodes:
            if os.path.exists(os.path.join(node.data, "postmaster.pid")):
                node.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.base, ignore_errors=True)
