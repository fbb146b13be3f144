#!/usr/bin/env python3
"""High availability with pg_auto_failover (docs/scaling.md): a monitor, a primary and a
synchronous standby on this machine, attendance-proxy in front with a multi-host
conninfo and target_session_attrs=read-write. Under load the primary's postmaster and
keeper are killed with -9; the suite asserts that every webhook answered 2xx is in the
new primary's log, that every other one, sent again as LiveKit would, is recorded
exactly once, that a session which became due during the failover is calculated on the
new primary (whose scheduler starts without a restart), that the old primary rejoins as a
standby, that the scheduler never runs on a standby, and that read-only reporting works
on the standby while commands that write say they need the primary.

Needs the extension installed (scripts/test.sh does `make install`) and
ATTENDANCE_BUILD_DIR with attendance-proxy and attendancectl. Runs its own servers (not
the runner's cluster) on free ports, under one temporary directory that it removes.
Prints "PASS name" / "FAIL name: why" per case."""
import functools
import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import ha  # noqa: E402
from pgtest import FAILURES, PROXY, Proxy, case, ctl, finish, sql, wait_until  # noqa: E402

KEY, SECRET = "APIha", "ha-secret-0123456789abcdef0123"
DUE, LOADED = 7001, 7002  # the session that becomes due during the failover; the load's

NODE_SETTINGS = {
    # pg_autoctl's own include file names pg_stat_statements; these lines come after it.
    "shared_preload_libraries": "'pg_stat_statements,attendance'",
    "attendance.database_name": "'postgres'",
    "attendance.calculation_delay": "'2s'",
    "attendance.webhook_log_level": "'off'",
}


def on_sigterm(signum, frame):  # the runner's timeout: clean up on the way out
    raise SystemExit(f"stopped by signal {signum}")


signal.signal(signal.SIGTERM, on_sigterm)

started = time.time()
f = ha.Formation(NODE_SETTINGS, base=None)
state = {}  # what later cases need from earlier ones
proxy = None


class StandbySampler(threading.Thread):
    """Samples every data node a few times a second: a node in recovery must never have
    an attendance scheduler or run, neither as a process nor in shared memory."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes, self.stopping = nodes, threading.Event()
        self.in_recovery_samples, self.violations = {}, []

    def run(self):
        while not self.stopping.is_set():
            for node in self.nodes:
                # First what runs, then whether the node is in recovery: a scheduler that
                # exists while the node is still in recovery afterwards ran on a standby.
                procs = ha.scheduler_processes(node)
                try:
                    out = sql(node.port, "SELECT running || '|' || pg_is_in_recovery() FROM (SELECT "
                              "attendance_worker_status()->>'running' AS running OFFSET 0) s", timeout=5)
                except Exception:  # noqa: BLE001 - a node that is down has nothing to sample
                    continue
                running, recovering = out.split("|")
                if recovering == "true":
                    self.in_recovery_samples[node.name] = self.in_recovery_samples.get(node.name, 0) + 1
                    if procs or running != "false":
                        self.violations.append((node.name, time.time(), procs, running))
            self.stopping.wait(0.25)


def scheduler(node):
    """(launcher processes, attendance_worker_status running) of the node."""
    launchers = [p for p in ha.scheduler_processes(node) if "attendance scheduler" in p[1]]
    return len(launchers), sql(node.port, "SELECT attendance_worker_status()->>'running'")


def conninfo(node):
    return f"host=127.0.0.1 port={node.port} dbname=postgres user=postgres"


def need(*keys):
    missing = [k for k in keys if k not in state]
    if missing:
        raise AssertionError(f"an earlier case failed (no {', '.join(missing)})")


sampler = None
try:
    @case("formation: monitor, primary and synchronous standby on free ports, extension on the primary")
    def _():
        f.start_monitor()
        n1 = f.add_node("node1")
        f.wait_states({"node1": {"single"}}, 120)
        wait_until(lambda: sql(n1.port, "SELECT 1", timeout=5) == "1", 60, "node1 accepts connections")
        sql(n1.port, "SET client_min_messages = warning; CREATE EXTENSION attendance;"
                     f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')")
        n2 = f.add_node("node2")
        f.wait_states({"node1": {"primary"}, "node2": {"secondary"}}, 180)
        # synchronous: the primary waits for the standby's flush before a commit returns
        names = sql(n1.port, "SHOW synchronous_standby_names")
        assert names, "synchronous_standby_names is empty on the primary"
        wait_until(lambda: sql(n1.port, "SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
                   in ("sync", "quorum"), 60, "the standby replicates synchronously")
        assert sql(n1.port, "SHOW synchronous_commit") in ("on", "remote_apply", "remote_write")
        # the extension replicated; the scheduler runs on the primary only
        assert sql(n2.port, "SELECT extversion FROM pg_extension WHERE extname = 'attendance'"), \
            "the extension did not replicate"
        wait_until(lambda: scheduler(n1) == (1, "true"), 60, "the primary's scheduler")
        assert scheduler(n2) == (0, "false"), f"the standby's scheduler: {scheduler(n2)}"
        state.update(primary=n1, standby=n2)
        print(f"    formation up in {time.time() - started:.1f} s: monitor {f.monitor.port}, "
              f"node1 {n1.port}, node2 {n2.port}; synchronous_standby_names = {names}", flush=True)

    if "primary" in state:
        sampler = StandbySampler(list(f.nodes.values()))
        sampler.start()
        proxy = Proxy(PROXY, f.conninfo(), os.path.join(f.base, "proxy.log"),
                      "--pool-size", "4", "--pool-timeout-ms", "2000", "--retry-after", "1")

    @case("the proxy with a multi-host conninfo reaches the primary")
    def _():
        need("primary")
        # the standby is sampled a few times before anything else happens
        wait_until(lambda: sampler.in_recovery_samples.get("node2", 0) >= 3, 60, "samples of the standby")
        wait_until(lambda: proxy.get("/healthz")[0] == 200, 30, "proxy /healthz")
        p = state["primary"].port
        sql(p, f"SELECT attendance_schedule_session({LOADED}, 'session-{LOADED}', "
               "now() - interval '10 minutes', now() + interval '2 hours')")
        # the session that becomes due while the primary is dead; moved to end just before
        # the kill (below), so that the load's start may take as long as it takes
        sql(p, f"SELECT attendance_schedule_session({DUE}, 'session-{DUE}', now() - interval '30 minutes', "
               "now() + interval '1 hour'); "
               f"SELECT attendance_expect({DUE}, 1); SELECT attendance_expect({DUE}, 2)")
        joined = int(float(sql(p, "SELECT extract(epoch FROM now() - interval '25 minutes') * 1000")))
        body = ('{"event":"participant_joined","room":{"name":"session-%d"},"participant":{"sid":"PA_due_1",'
                '"identity":"user-1","joinedAtMs":"%d"},"id":"EV_due_1","createdAt":"%d"}' % (DUE, joined, joined // 1000))
        token = sql(p, f"SELECT attendance_sign_webhook($b${body}$b$, '{KEY}', 3600)")
        status, text = proxy.post(body.encode(), token)
        assert status == 200 and '"recorded"' in text, f"{status} {text}"
        state["load"] = ha.sign(p, "load", 8000, f"session-{LOADED}", joined + 60_000, KEY)

    @case("failover under load: every 2xx is on the new primary, the rest recorded exactly once when resent")
    def _():
        need("load")
        old, new = state["primary"], state["standby"]
        new_start = sql(new.port, "SELECT pg_postmaster_start_time()")
        due = {}

        def before_kill():
            # the session ends now, so it is due 1.5 s from now (calculation_delay 2 s),
            # while there is no primary
            due["at"] = float(sql(old.port, f"SELECT attendance_schedule_session({DUE}, 'session-{DUE}', "
                                            "now() - interval '30 minutes', now() - interval '0.5 seconds'); "
                                            "SELECT extract(epoch FROM due_at) FROM attendance_sessions_due "
                                            f"WHERE session_id = {DUE}").splitlines()[-1])
            calc = sql(old.port, f"SELECT calculated_at IS NULL FROM attendance_session_schedule "
                                 f"WHERE session_id = {DUE}")
            assert calc == "t", "the due session was calculated before the kill: the test proves nothing"

        r = ha.failover_round(f, proxy, state["load"], before_kill=before_kill)
        assert r["old"] is old and r["new"] is new, "the monitor's primary was not node1"
        assert r["t_kill"] < due["at"], "the kill came after the due moment"
        assert r["acked_before"] >= 200 and r["non_2xx"], "the kill did not hit the load: the test proves nothing"
        assert r["statuses"] == [503], f"answers other than 2xx must be 503 (LiveKit retries): {r['statuses']}"
        assert not r["lost"], f"{len(r['lost'])} acknowledged webhooks are not on the new primary, " \
                              f"e.g. {sorted(r['lost'])[:3]}"
        counts = sql(new.port, "SELECT count(*) || '|' || count(DISTINCT event_id) FROM meeting_attendance_events "
                               "WHERE event_id LIKE 'EV\\_load\\_%'")
        total, distinct = map(int, counts.split("|"))
        logged = set(sql(new.port, "SELECT event_id FROM meeting_attendance_events "
                                   "WHERE event_id LIKE 'EV\\_load\\_%'").split())
        sent = r["sent"]
        assert total == distinct == len(sent) and logged == sent, \
            f"after resending: {total} rows, {distinct} distinct, {len(sent)} sent, {len(sent - logged)} missing"
        assert sql(new.port, "SELECT pg_postmaster_start_time()") == new_start, "the new primary was restarted"
        state.update(t_kill=r["t_kill"], old=old, new=new)
        print(f"    {r['acked']} webhooks answered 2xx ({r['acked_before']} before the kill), all on the new "
              f"primary; {len(r['non_2xx'])} answered 503 (slowest in {r['slowest_non_2xx_s']:.2f} s), resent "
              f"with {r['resends']} requests ({r['duplicates']} had been stored already), each recorded once",
              flush=True)
        print(f"    promoted (monitor) {r['promoted_s']:.2f} s and first 2xx {r['first_2xx_s']:.2f} s "
              f"after the primary's death", flush=True)

    @case("a session that became due during the failover is calculated on the new primary")
    def _():
        need("new")
        new, t_kill = state["new"], state["t_kill"]
        wait_until(lambda: sql(new.port, f"SELECT calculated_at IS NOT NULL FROM attendance_session_schedule "
                                         f"WHERE session_id = {DUE}") == "t", 120,
                   "the due session's calculation on the new primary")
        row = sql(new.port, f"SELECT extract(epoch FROM s.calculated_at) || '|' || "
                            f"extract(epoch FROM s.calculated_at - s.ends_at - interval '2 seconds') FROM "
                            f"attendance_session_schedule s WHERE session_id = {DUE}")
        calculated_at, lag = map(float, row.split("|"))
        assert calculated_at > t_kill, "calculated before the kill"
        rows = sql(new.port, f"SELECT user_key || ':' || attendance_status || ':' || is_calculated FROM "
                             f"meeting_attendances WHERE session_id = {DUE} ORDER BY user_key")
        assert rows.split() == ["1:present:true", "2:absent:true"], rows
        runs = sql(new.port, "SELECT count(*) FROM attendance_job_runs WHERE job = 'calculate' AND "
                             f"status = 'succeeded' AND started_at > to_timestamp({t_kill})")
        assert int(runs) >= 1, "no calculate run on the new primary"
        assert scheduler(new) == (1, "true"), f"the new primary's scheduler: {scheduler(new)}"
        print(f"    calculated {lag:.2f} s after its due moment, by the promoted node's scheduler", flush=True)

    @case("the old primary rejoins as a standby, without a scheduler")
    def _():
        need("old")
        old, new = state["old"], state["new"]
        f.run(old)
        f.wait_states({old.name: {"secondary"}, new.name: {"primary"}}, 180)
        assert sql(old.port, "SELECT pg_is_in_recovery()") == "t"
        target = sql(new.port, "SELECT pg_current_wal_lsn()")
        wait_until(lambda: sql(old.port, f"SELECT pg_last_wal_replay_lsn() >= '{target}'") == "t", 60,
                   "the rejoined standby replays the new primary's WAL")
        n_old = sql(old.port, "SELECT count(*) FROM meeting_attendance_events")
        assert n_old == sql(new.port, "SELECT count(*) FROM meeting_attendance_events"), "the standby lags"
        assert scheduler(old) == (0, "false"), f"the rejoined standby's scheduler: {scheduler(old)}"
        wait_until(lambda: sql(new.port, "SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
                   in ("sync", "quorum"), 60, "synchronous replication again")

    @case("read-only reporting on the standby: views, explain, attendancectl; writes say they need the primary")
    def _():
        need("old")
        standby, primary = state["old"], state["new"]
        report = sql(standby.port, f"SELECT count(*) FROM attendance_session_report WHERE session_id = {DUE}")
        assert report == "2", report
        explain = sql(standby.port, f"SELECT attendance_explain({DUE}, 1::bigint)->>'session_id'")
        assert explain == str(DUE), explain
        for view in ("attendance_recent_events", "attendance_sessions_due", "attendance_job_status",
                     "attendance_in_meeting_now", "attendance_unmatched_events"):
            sql(standby.port, f"SELECT count(*) FROM {view}")
        on_standby = functools.partial(ctl, "--no-color", conninfo=conninfo(standby), PGTZ="UTC")
        for args in (["sessions"], ["sessions", str(DUE)], ["explain", str(DUE), "1"],
                     ["events", "--session", str(DUE)], ["status"], ["debug", str(DUE)], ["keys", "list"]):
            r = on_standby(*args)
            assert r.returncode == 0, f"attendancectl {' '.join(args)} on the standby: {r.returncode} {r.stderr}"
        r = on_standby("explain", str(DUE), "1")
        assert "present" in r.stdout, r.stdout[:300]
        r = on_standby("calculate", str(DUE))
        assert r.returncode == 4, f"calculate on the standby: exit {r.returncode} {r.stderr}"
        assert "SQLSTATE 25006" in r.stderr and "primary" in r.stderr and "target_session_attrs" in r.stderr, r.stderr
        r = ctl("--no-color", "calculate", str(DUE), conninfo=f.conninfo(), PGTZ="UTC")
        assert r.returncode == 0, f"calculate through the multi-host conninfo: {r.returncode} {r.stderr}"

    @case("the scheduler never ran on a standby (sampled throughout)")
    def _():
        need("old")
        # both nodes were sampled while standbys: node2 before the failover, node1 after
        wait_until(lambda: sampler.in_recovery_samples.get("node1", 0) >= 3, 60, "samples of node1 as standby")
        assert sampler.in_recovery_samples.get("node2", 0) >= 3, sampler.in_recovery_samples
        assert not sampler.violations, f"a scheduler ran on a standby: {sampler.violations[:3]}"
        print(f"    samples of a node in recovery: {sampler.in_recovery_samples}, none with a scheduler", flush=True)
finally:
    if sampler is not None:
        sampler.stopping.set()
        sampler.join(10)
    if proxy is not None:
        rc = proxy.stop()
        if "formation up" not in FAILURES and rc not in (0, None):
            print(f"    attendance-proxy exited with {rc}", flush=True)
    if FAILURES:
        print(f"    logs kept in {f.save_logs()}", flush=True)
    f.stop()

    @case("teardown leaves nothing behind: processes, ports, directories, semaphores")
    def _():
        left = [p.pid for _, p in f.procs if p.poll() is None]
        assert not left, f"pg_autoctl still running: {left}"
        for node in [f.monitor, *f.nodes.values()]:
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", node.port)) != 0, f"port {node.port} still listens"
        assert not os.path.exists(f.base), f"{f.base} is still there"
        assert not os.path.exists(os.path.join("/tmp/pg_autoctl", f.base.lstrip("/"))), "pg_autoctl's /tmp files"
        assert not f.semaphores_left(), f"semaphores left: {f.semaphores_left()}"
    print(f"    suite took {time.time() - started:.1f} s", flush=True)
finish()
