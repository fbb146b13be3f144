#!/usr/bin/env python3
"""Runs every attendance benchmark against a running throwaway cluster (bench/run.sh
starts it, builds the programs and calls this) and writes the results as JSON.

Three variants, always in the same run and interleaved (rep 1: extension, baseline,
floor; rep 2: ...), reporting medians:
  extension  attendance_ingest_webhook / attendance_calculate_sessions (the C++ extension;
             calculation is also timed one session per call, _attendance_calculate_session)
  baseline   bench_baseline.* (bench/baseline/baseline.sql: the same rules in PL/pgSQL + pgcrypto)
  floor      one INSERT of the body into a table with a unique event id / one set-based
             statement summing clipped connection durations per person (no union, no rules)
"""
import argparse
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = ("extension", "baseline", "floor")
# SQL ingestion also times the extension with the worker's fold held off during the run
# (attendance.fold_interval = 1 h; the backlog is folded afterwards, untimed): the hot path
# alone, without the fold's share of the two cores.
INGEST_VARIANTS = ("extension", "extension_nofold", "baseline", "floor")
# Calculation also times the extension one session per call, to show what batching gives.
CALC_VARIANTS = ("extension", "extension_single", "baseline", "floor")


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------------------------------
# PostgreSQL helpers
# ---------------------------------------------------------------------------------------
class PG:
    def __init__(self, env):
        self.env = env

    def run(self, sql, check=True, vars=None):
        cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        for k, v in (vars or {}).items():
            cmd += ["-v", "%s=%s" % (k, v)]
        p = subprocess.run(cmd, input=sql, text=True, capture_output=True, env=self.env)
        if check and p.returncode != 0:
            raise RuntimeError("psql failed: %s\n--- sql ---\n%s" % (p.stderr.strip(), sql[:2000]))
        return p.stdout.strip()

    def file(self, path, vars=None):
        return self.run(Path(path).read_text(), vars=vars)

    def val(self, sql):
        out = self.run(sql)
        return out.splitlines()[0] if out else None

    def timed(self, sql, sample_memory=False):
        """Runs sql in a fresh connection; returns (milliseconds, peak private memory kB of
        the backend or None). The time is psql's \\timing of that one statement."""
        script = "SELECT pg_backend_pid();\n\\timing on\n" + sql.rstrip().rstrip(";") + ";\n"
        p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        p.stdin.write(script)
        p.stdin.close()
        pid = int(p.stdout.readline().strip())
        sampler = MemSampler([pid]) if sample_memory else None
        if sampler:
            sampler.start()
        out = p.stdout.read()
        err = p.stderr.read()
        p.wait()
        if sampler:
            sampler.stop()
        if p.returncode != 0:
            raise RuntimeError("psql failed: %s\n%s" % (err, sql[:500]))
        m = re.findall(r"Time: ([0-9.]+) ms", out)
        if not m:
            raise RuntimeError("no timing in psql output: %r" % out[-500:])
        return float(m[-1]), (sampler.peak(pid) if sampler else None)


class MemSampler(threading.Thread):
    """Samples VmRSS and RssAnon (private heap, without shared buffers) of processes every
    50 ms; pids may be a list or a callable returning the pids to watch."""

    def __init__(self, pids, interval=0.05):
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.stop_flag = threading.Event()
        self.max = {}  # pid -> {"VmRSS": kB, "RssAnon": kB, "VmHWM": kB}

    def run(self):
        while not self.stop_flag.is_set():
            pids = self.pids() if callable(self.pids) else self.pids
            for pid in pids:
                try:
                    text = Path("/proc/%d/status" % pid).read_text()
                except OSError:
                    continue
                cur = self.max.setdefault(pid, {})
                for key in ("VmRSS", "RssAnon", "VmHWM"):
                    m = re.search(r"^%s:\s+(\d+) kB" % key, text, re.M)
                    if m:
                        cur[key] = max(cur.get(key, 0), int(m.group(1)))
            self.stop_flag.wait(self.interval)

    def stop(self):
        self.stop_flag.set()
        self.join()

    def peak(self, pid=None, key="RssAnon"):
        if pid is not None:
            return self.max.get(pid, {}).get(key)
        vals = [m.get(key, 0) for m in self.max.values()]
        return max(vals) if vals else None


class Session:
    """One long-lived psql connection (no Python driver is needed): query() sends SQL and
    reads the unaligned rows up to a marker."""

    def __init__(self, env):
        self.p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, bufsize=1)

    def query(self, sql):
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo __END__\n")
        self.p.stdin.flush()
        rows = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("psql session ended: %s" % self.p.stderr.read()[-1000:])
            line = line.rstrip("\n")
            if line == "__END__":
                return rows
            rows.append(line)

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.p.wait()


class LockWatch(threading.Thread):
    """Samples, every 20 ms over one connection, which of the proxy's backends wait for a
    heavyweight lock and for which kind (pg_stat_activity.wait_event: relation, tuple,
    transactionid, ...): shows whether ingestion ever queues behind the fold."""

    QUERY = ("SELECT coalesce(string_agg(wait_event, ','), '') FROM pg_stat_activity "
             "WHERE usename = '{user}' AND state = 'active' AND wait_event_type = 'Lock'")

    def __init__(self, env, user, interval=0.02):
        super().__init__(daemon=True)
        self.session = Session(env)
        self.sql = self.QUERY.format(user=user)
        self.interval = interval
        self.stop_flag = threading.Event()
        self.samples = 0
        self.waiting = {}  # wait_event -> samples in which at least one backend waited for it

    def run(self):
        while not self.stop_flag.is_set():
            t = time.time()
            row = self.session.query(self.sql)[0]
            self.samples += 1
            for kind in set(x for x in row.split(",") if x):
                self.waiting[kind] = self.waiting.get(kind, 0) + 1
            self.stop_flag.wait(max(0.0, self.interval - (time.time() - t)))

    def stop(self):
        self.stop_flag.set()
        self.join()
        self.session.close()
        return {"samples": self.samples, "waiting": self.waiting}


def listen_overflows():
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            if head.startswith("TcpExt:"):
                return int(dict(zip(head.split()[1:], vals.split()[1:]))["ListenOverflows"])
    except Exception:
        return None


def processes_named(prefix):
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(prefix):
            out.append(int(d.name))
    return out


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, a):
        self.a = a
        self.work = Path(a.workdir)
        self.env = dict(os.environ)
        self.pg = PG(self.env)
        self.R = {"config": vars(a).copy(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        self.results_path = self.work / "results.json"

    def save(self):
        self.results_path.write_text(json.dumps(self.R, indent=1))

    # -- workload ------------------------------------------------------------------------
    def generate(self):
        a = self.a
        now = int(time.time())
        # Sessions start two days ago (midnight UTC): all are over, none is due for the
        # scheduler (attendance.calculation_delay = 7d), and every token is valid.
        base = (now // 86400 - 2) * 86400 + 8 * 3600
        self.R["workload_base_epoch"] = base
        gen = [sys.executable, str(HERE / "gen_workload.py"), "--base", str(base), "--seed", a.seed,
               "--api-key", a.api_key, "--secret", a.secret]
        log("generating the calculation workload: %d sessions x %d people" % (100, a.people))
        c = subprocess.run(gen + ["--sessions", "100", "--people", str(a.people), "--first-id", "1",
                                  "--span-hours", "20", "--out", str(self.work / "calc")],
                           check=True, capture_output=True, text=True)
        log("generating the ingestion stream: %d sessions x %d people" % (a.stream_sessions, a.people))
        i = subprocess.run(gen + ["--sessions", str(a.stream_sessions), "--people", str(a.people),
                                  "--first-id", str(a.stream_first_id), "--span-hours", "20", "--tsv",
                                  "--out", str(self.work / "stream")],
                           check=True, capture_output=True, text=True)
        self.R["workload"] = {"calc": json.loads(c.stdout), "stream": json.loads(i.stdout)}
        log("  calc: %s" % c.stdout.strip())
        log("  stream: %s" % i.stdout.strip())

    def setup(self):
        a = self.a
        pg = self.pg
        log("creating the extension, the baseline and the floor")
        if a.drop_first:  # for re-running against a development cluster
            pg.run("DROP SCHEMA IF EXISTS bench, bench_floor, bench_baseline CASCADE; "
                   "DROP EXTENSION IF EXISTS attendance CASCADE;")
        pg.file(HERE / "sql" / "setup.sql", vars={"api_key": a.api_key, "secret": a.secret})
        pg.run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
        pg.file(HERE / "baseline" / "baseline.sql")
        w = self.work
        pg.run("""
\\copy bench.hooks FROM '{w}/stream.hooks.csv' CSV
\\copy bench.hooks_c FROM '{w}/calc.hooks.csv' CSV
\\copy bench.sessions FROM '{w}/stream.sessions.csv' CSV
\\copy bench.sessions FROM '{w}/calc.sessions.csv' CSV
\\copy bench.roster FROM '{w}/stream.roster.csv' CSV
\\copy bench.roster FROM '{w}/calc.roster.csv' CSV
SELECT count(attendance_schedule_session(session_id, room_name, starts_at, ends_at)) FROM bench.sessions;
INSERT INTO attendance_roster (session_id, user_id, role) SELECT session_id, user_id, role FROM bench.roster;
INSERT INTO bench_baseline.webhook_keys (api_key, secret) VALUES (:'api_key', :'secret');
INSERT INTO bench_baseline.session_schedule (session_id, room_name, starts_at, ends_at)
  SELECT session_id, room_name, starts_at, ends_at FROM bench.sessions;
INSERT INTO bench_baseline.roster SELECT session_id, user_id, role FROM bench.roster;
VACUUM ANALYZE;
""".format(w=w), vars={"api_key": a.api_key, "secret": a.secret})
        self.stream_rows = int(pg.val("SELECT count(*) FROM bench.hooks"))
        self.growth_rows_used = 0

    # -- resets ----------------------------------------------------------------------------
    def reset(self, variants=VARIANTS, checkpoint=True):
        sql = []
        if "extension" in variants:
            # The log is emptied and its ids restart, so the fold's watermark goes back to 0
            # (in the same transaction: a fold waits for it on the state row). No session is
            # left marked for the fold: it derives only what the next run logs.
            sql.append("BEGIN;")
            sql.append("UPDATE attendance_fold_state SET safe_id = 0, last_fold_at = NULL, last_events = 0, "
                       "last_sessions = 0, last_lag_ms = NULL;")
            sql.append("TRUNCATE meeting_attendance_events, attendance_sessions, meeting_attendances, "
                       "attendance_status_changes RESTART IDENTITY;")
            sql.append("UPDATE attendance_session_schedule SET room_finished_at = NULL, calculated_at = NULL, "
                       "calculated_snapshot = NULL, needs_calculation = true, recalculation_cause = NULL, "
                       "needs_fold = false WHERE room_finished_at IS NOT NULL OR calculated_at IS NOT NULL "
                       "OR needs_fold;")
            sql.append("COMMIT;")
        if "baseline" in variants:
            sql.append("TRUNCATE bench_baseline.events, bench_baseline.connections, bench_baseline.attendances, "
                       "bench_baseline.status_changes;")
            sql.append("UPDATE bench_baseline.session_schedule SET room_finished_at = NULL, calculated_at = NULL, "
                       "needs_calculation = true, recalculation_cause = NULL WHERE room_finished_at IS NOT NULL "
                       "OR calculated_at IS NOT NULL;")
        if "floor" in variants:
            sql.append("TRUNCATE bench_floor.events, bench_floor.results;")
        sql.append("VACUUM ANALYZE attendance_session_schedule, bench_baseline.session_schedule;")
        if checkpoint:
            sql.append("CHECKPOINT;")
        self.pg.run("\n".join(sql))

    def fold_pending(self):
        """Logged events the fold has not passed yet, plus sessions marked for it."""
        return int(self.pg.val(
            "SELECT greatest((SELECT coalesce(max(id), 0) FROM meeting_attendance_events) - "
            "(SELECT safe_id FROM attendance_fold_state), 0) + "
            "(SELECT count(*) FROM attendance_session_schedule WHERE needs_fold)"))

    def wait_fold(self, timeout=600):
        """Waits until the worker's fold has passed every logged event (the live rows are
        derived), so that its work never overlaps the next measurement; returns the seconds
        waited."""
        t0 = time.time()
        while self.fold_pending() > 0:
            if time.time() - t0 > timeout:
                raise RuntimeError("the worker's fold did not catch up within %d s" % timeout)
            time.sleep(0.1)
        return time.time() - t0

    # -- pgbench ----------------------------------------------------------------------------
    def pgbench(self, variant, clients, seconds=None, transactions=None, start=1):
        script = HERE / "pgbench" / ("ingest_%s.sql" % variant.replace("_nofold", ""))
        self.pg.run("SELECT setval('bench.seq', %d, false);" % start)
        cmd = ["pgbench", "-n", "-M", "prepared", "-f", str(script), "-c", str(clients),
               "-j", str(min(clients, self.a.pgbench_threads))]
        if seconds:
            cmd += ["-T", str(seconds)]
        else:
            cmd += ["-t", str(transactions)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if p.returncode != 0:
            raise RuntimeError("pgbench failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
        tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout).group(1))
        n = int(re.search(r"number of transactions actually processed: (\d+)", p.stdout).group(1))
        lat = re.search(r"latency average = ([0-9.]+) ms", p.stdout)
        used = int(self.pg.val("SELECT last_value FROM bench.seq")) - start + 1
        if start + used - 1 > self.stream_rows:
            raise RuntimeError("the webhook stream was exhausted (%d rows): generate more (--stream-sessions)"
                               % self.stream_rows)
        return {"tps": tps, "transactions": n, "latency_ms": float(lat.group(1)) if lat else None}

    # -- 1. ingestion through SQL -------------------------------------------------------------
    def ingest_sql(self):
        a = self.a
        runs = {v: {c: [] for c in a.clients} for v in INGEST_VARIANTS}
        wakes = []
        drains = {c: [] for c in a.clients}
        nofold_drains = {c: [] for c in a.clients}
        for rep in range(a.reps):
            for c in a.clients:
                for v in INGEST_VARIANTS:
                    self.reset()
                    if v == "extension_nofold":
                        self.hold_fold(True)
                    before = self.worker_runs()
                    r = self.pgbench(v, c, seconds=a.ingest_seconds)
                    runs[v][c].append(r["tps"])
                    if v == "extension_nofold":
                        self.hold_fold(False)
                        t = time.time()
                        self.wait_fold()
                        nofold_drains[c].append(time.time() - t)
                    if v == "extension":
                        # The fold ran during the run (every attendance.fold_interval); what it
                        # had not derived when pgbench stopped is drained before the next run.
                        drain = self.wait_fold()
                        drains[c].append(drain)
                        wakes.append((self.worker_runs() - before, r["transactions"]))
                        log("ingest-sql rep %d clients %2d fold backlog drained %.2f s after the run"
                            % (rep + 1, c, drain))
                    log("ingest-sql rep %d clients %2d %-16s %8.0f webhooks/s" % (rep + 1, c, v, r["tps"]))
        # what the stream's webhooks did (one extension run, for the record)
        self.reset()
        self.pgbench("extension", 4, transactions=2500)
        mix = self.pg.run("SELECT coalesce(result, '?') || '=' || count(*) FROM meeting_attendance_events GROUP BY result")
        self.wait_fold()
        self.R["ingest_sql"] = {
            "seconds_per_run": a.ingest_seconds, "runs": runs,
            "median": {v: {str(c): median(runs[v][c]) for c in a.clients} for v in INGEST_VARIANTS},
            "result_mix": mix.replace("\n", ", "), "result_mix_of": 10000,
            "nofold_fold_afterwards_s": {str(c): [round(x, 2) for x in xs] for c, xs in nofold_drains.items()},
            "scheduler_runs_per_1000_webhooks": round(1000 * sum(w for w, _ in wakes) / max(sum(n for _, n in wakes), 1), 2),
            "fold_drain_s": {str(c): [round(x, 2) for x in xs] for c, xs in drains.items()},
        }
        self.save()

    def hold_fold(self, hold):
        """Holds the worker's fold off (attendance.fold_interval = 1 h: it folds new events at
        most once an hour after its last fold), or restores the default."""
        if hold:
            self.wait_fold()
            self.pg.run("ALTER SYSTEM SET attendance.fold_interval = '1h'; SELECT pg_reload_conf();")
        else:
            self.pg.run("ALTER SYSTEM RESET attendance.fold_interval; SELECT pg_reload_conf();")
        want = "1h" if hold else "500ms"
        for _ in range(100):
            if self.pg.val("SHOW attendance.fold_interval") == want:
                break
            time.sleep(0.05)
        time.sleep(0.2)  # the launcher reloads on SIGHUP

    def worker_runs(self):
        return int(self.pg.val("SELECT coalesce(attendance_worker_status()->>'runs_since_start', '0')"))

    # -- 1b. live-row lag -----------------------------------------------------------------------
    # An event is *live* once the connection row it makes or ends is committed: for a join,
    # the row of its sid whose join_event_id is the event; for a leave, the row whose
    # leave_event_id is the event (the fold writes connections and live rows in one
    # transaction). Lag = commit time of that row's version - commit time of the webhook's
    # transaction, both from pg_xact_commit_timestamp (track_commit_timestamp = on). A
    # poller records each event the first time it sees its row; a row is rewritten only by a
    # later fold (>= attendance.fold_interval later), so a poll every ~100 ms reads the
    # version that first showed the event (a missed version could only make the lag larger).
    LAG_POLL = """
WITH cand AS (
  SELECT e.id, e.event_type, e.xmin AS exmin, e.received_at, c.xmin AS cxmin, c.derived_at
  FROM meeting_attendance_events e
  JOIN attendance_sessions c ON c.session_id = e.session_id AND c.participant_sid = e.participant_sid
  WHERE e.id > {low} AND e.result = 'recorded' AND e.event_type IN ('participant_joined', 'participant_left')
    AND (c.join_event_id = e.event_id OR c.leave_event_id = e.event_id)
    AND NOT EXISTS (SELECT 1 FROM bench.lag l WHERE l.id = e.id)),
ins AS (
  INSERT INTO bench.lag (id, event_type, event_commit, received_at, live_commit, derived_at, seen_at)
  SELECT id, event_type, pg_xact_commit_timestamp(exmin), received_at, pg_xact_commit_timestamp(cxmin),
         derived_at, clock_timestamp() FROM cand
  RETURNING 1)
SELECT count(*) FROM ins;
SELECT coalesce((SELECT min(e.id) - 1 FROM meeting_attendance_events e
                 WHERE e.id > {low} AND e.result = 'recorded'
                   AND e.event_type IN ('participant_joined', 'participant_left')
                   AND NOT EXISTS (SELECT 1 FROM bench.lag l WHERE l.id = e.id)),
                (SELECT coalesce(max(id), {low}) FROM meeting_attendance_events)),
       (SELECT count(*) FROM meeting_attendance_events e WHERE e.id > {low} AND e.result = 'recorded'
          AND e.event_type IN ('participant_joined', 'participant_left')
          AND NOT EXISTS (SELECT 1 FROM bench.lag l WHERE l.id = e.id))"""

    def live_lag(self, key="live_lag", fresh=True, reps=None):
        """fresh: each run starts from an empty log (reset); otherwise the runs ingest webhooks
        of the stream not used yet on top of the current log (the growth phase's last size)."""
        a = self.a
        res = self.R.setdefault(key, {})
        if self.pg.val("SHOW track_commit_timestamp") != "on":
            res["skipped"] = "track_commit_timestamp is off (bench/run.sh turns it on)"
            log("live-lag skipped: " + res["skipped"])
            self.save()
            return
        res.update({"rate": a.lag_rate, "seconds_per_run": a.lag_seconds, "clients": a.lag_clients,
                    "warmup_s": a.lag_warmup, "poll_interval_s": a.lag_poll,
                    "fold_interval": self.pg.val("SHOW attendance.fold_interval"),
                    "fold_wait": self.pg.val("SHOW attendance.fold_wait"), "runs": []})
        for rep in range(reps or a.reps):
            if fresh:
                self.reset(("extension",))
                seq_start = 1
            else:
                self.wait_fold()
                self.pg.run("VACUUM ANALYZE; CHECKPOINT;")
                seq_start = self.growth_rows_used + 1
                self.growth_rows_used += a.lag_rate * (a.lag_seconds + 2)
                if self.growth_rows_used > self.stream_rows:
                    raise RuntimeError("the webhook stream was exhausted (live lag at size)")
            self.pg.run("TRUNCATE bench.lag;")
            start_id = int(self.pg.val("SELECT coalesce(max(id), 0) FROM meeting_attendance_events"))
            res["log_events_before"] = start_id if not fresh else 0
            folds0 = int(self.pg.val("SELECT folds FROM attendance_fold_state"))
            runs0 = self.worker_runs()
            sess = Session(self.env)
            stop = threading.Event()
            state = {"low": start_id, "left": 0, "polls": 0, "poll_ms": []}

            def poll_once():
                t = time.time()
                out = sess.query(self.LAG_POLL.format(low=state["low"]))
                state["poll_ms"].append((time.time() - t) * 1000)
                state["polls"] += 1
                low, left = out[-1].split("|")
                state["low"], state["left"] = int(low), int(left)

            def poller():
                while not stop.is_set():
                    t = time.time()
                    poll_once()
                    stop.wait(max(0.0, a.lag_poll - (time.time() - t)))

            th = threading.Thread(target=poller, daemon=True)
            th.start()
            self.pg.run("SELECT setval('bench.seq', %d, false);" % seq_start)
            cmd = ["pgbench", "-n", "-M", "prepared", "-f", str(HERE / "pgbench" / "ingest_extension.sql"),
                   "-c", str(a.lag_clients), "-j", str(min(a.lag_clients, a.pgbench_threads)),
                   "-R", str(a.lag_rate), "-T", str(a.lag_seconds)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
            stop.set()
            th.join()
            if p.returncode != 0:
                sess.close()
                raise RuntimeError("pgbench failed: %s" % p.stderr[-1000:])
            tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout).group(1))
            lat = re.search(r"latency average = ([0-9.]+) ms", p.stdout)
            # Drain: every event of the run becomes live (or the deadline says it did not).
            deadline = time.time() + (60 if fresh else 300)
            poll_once()
            while state["left"] > 0 and time.time() < deadline:
                time.sleep(a.lag_poll)
                poll_once()
            sess.close()
            q = self.pg.run("""
WITH t0 AS (SELECT min(received_at) + {w} * interval '1 second' AS t FROM meeting_attendance_events
            WHERE id > {s}),
l AS (SELECT extract(epoch FROM live_commit - event_commit) AS lag,
             extract(epoch FROM live_commit - received_at) AS lag_recv,
             extract(epoch FROM seen_at - live_commit) AS poll_delay
      FROM bench.lag, t0 WHERE received_at >= t0.t),
f AS (SELECT DISTINCT live_commit, derived_at FROM bench.lag),
fd AS (SELECT extract(epoch FROM live_commit - derived_at) AS d FROM f)
SELECT (SELECT count(*) FROM l),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) FROM l),
       (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY lag) FROM l),
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) FROM l),
       (SELECT max(lag) FROM l), (SELECT min(lag) FROM l),
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_recv) FROM l),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY poll_delay) FROM l),
       (SELECT count(*) FROM f),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM fd),
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY d) FROM fd),
       (SELECT max(d) FROM fd),
       (SELECT count(*) FROM meeting_attendance_events WHERE id > {s}),
       (SELECT count(*) FROM meeting_attendance_events e WHERE e.id > {s} AND e.result = 'recorded'
          AND e.event_type IN ('participant_joined', 'participant_left')
          AND NOT EXISTS (SELECT 1 FROM bench.lag x WHERE x.id = e.id)),
       (SELECT folds FROM attendance_fold_state)""".format(w=a.lag_warmup, s=start_id)).split("|")
            num = lambda x: float(x) if x not in ("", None) else None
            r = {"achieved_rate": tps, "webhook_latency_avg_ms": float(lat.group(1)) if lat else None,
                 "events_measured": int(q[0]), "p50_s": num(q[1]), "p90_s": num(q[2]), "p99_s": num(q[3]),
                 "max_s": num(q[4]), "min_s": num(q[5]), "p99_from_received_at_s": num(q[6]),
                 "poll_delay_p50_s": num(q[7]), "folds_seen": int(q[8]), "fold_p50_s": num(q[9]),
                 "fold_p99_s": num(q[10]), "fold_max_s": num(q[11]), "events_logged": int(q[12]),
                 "never_live": int(q[13]), "folds": int(q[14]) - folds0,
                 "scheduler_runs": self.worker_runs() - runs0, "polls": state["polls"],
                 "poll_ms_p50": median(state["poll_ms"])}
            res["runs"].append(r)
            log(key + " rep %d at %d/s offered (achieved %.0f/s): lag p50 %.3f s p90 %.3f s p99 %.3f s max %.3f s "
                "over %d events; %d folds (p50 %.3f s, max %.3f s); never live: %d" % (
                    rep + 1, a.lag_rate, tps, r["p50_s"] or -1, r["p90_s"] or -1, r["p99_s"] or -1, r["max_s"] or -1,
                    r["events_measured"], r["folds"], r["fold_p50_s"] or -1, r["fold_max_s"] or -1, r["never_live"]))
            self.save()
        res["median"] = {k: median([r[k] for r in res["runs"]]) for k in
                         ("achieved_rate", "p50_s", "p90_s", "p99_s", "max_s", "fold_p50_s", "fold_p99_s",
                          "poll_delay_p50_s", "events_measured", "folds")}
        res["never_live"] = sum(r["never_live"] for r in res["runs"])
        self.save()

    # -- 2. ingestion through HTTP ------------------------------------------------------------
    def proxy_start(self):
        a = self.a
        self.pg.run("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_proxy') THEN "
                    "CREATE ROLE bench_proxy LOGIN IN ROLE attendance_ingest; END IF; END$$;")
        conninfo = "host=%s port=%s dbname=%s user=bench_proxy" % (self.env["PGHOST"], self.env["PGPORT"],
                                                                 self.env.get("PGDATABASE", "postgres"))
        cmd = [a.proxy, "--listen", "127.0.0.1", "--port", str(a.http_port), "--conninfo", conninfo] + \
            shlex.split(a.proxy_args)
        self.R.setdefault("ingest_http", {})["proxy_command"] = " ".join(shlex.quote(x) for x in cmd)
        self.proxy_log = open(self.work / "proxy.log", "w")
        self.proxy = subprocess.Popen(cmd, stdout=self.proxy_log, stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % a.http_port, timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            if self.proxy.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("the proxy did not become healthy; see %s/proxy.log" % self.work)

    def proxy_stop(self):
        if getattr(self, "proxy", None) and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)
            try:
                self.proxy.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        self.proxy = None

    def loadgen(self, rate, seconds, idle=0, slow=0, port=None):
        a = self.a
        cmd = [a.loadgen, "--port", str(port or a.http_port), "--path", a.http_path, "--file",
               str(self.work / "stream.hooks.tsv"), "--rate", str(rate), "--duration", str(seconds),
               "--connections", str(a.http_connections)]
        if idle or slow:
            cmd += ["--idle", str(idle), "--slow", str(slow)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(p.stdout)

    def pgbench_rate(self, rate, seconds, clients):
        """The same offered load straight into SQL (pgbench --rate, latency from the scheduled
        start), to tell the proxy's share of the latency from the database's."""
        prefix = self.work / "pgbench-rate"
        for f in self.work.glob("pgbench-rate*"):
            f.unlink()
        self.pg.run("SELECT setval('bench.seq', 1, false);")
        cmd = ["pgbench", "-n", "-M", "prepared", "-f", str(HERE / "pgbench" / "ingest_extension.sql"),
               "-c", str(clients), "-j", str(self.a.pgbench_threads), "-R", str(rate), "-T", str(seconds),
               "-l", "--log-prefix", str(prefix)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=self.work)
        if p.returncode != 0:
            raise RuntimeError("pgbench failed: %s" % p.stderr[-1000:])
        lat = []
        for f in self.work.glob("pgbench-rate*"):
            for line in f.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000.0)
            f.unlink()
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p / 100 * (len(lat) - 1) + 0.5))] if lat else None
        tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout).group(1))
        return {"achieved_rate": tps, "p50_ms": q(50), "p99_ms": q(99), "max_ms": lat[-1] if lat else None}

    def ingest_http(self):
        a = self.a
        res = self.R.setdefault("ingest_http", {})
        if not a.proxy or not Path(a.proxy).exists():
            res["skipped"] = "the proxy binary is not available (%s)" % a.proxy
            log("ingest-http skipped: " + res["skipped"])
            self.save()
            return
        self.proxy_start()
        pid = self.proxy.pid
        overflows = listen_overflows()
        sampler = MemSampler([pid], interval=0.1)
        sampler.start()
        runs = {str(r): [] for r in a.http_rates}
        runs["max"] = []
        runs["attack"] = []  # 1,000/s with 1,000 idle and 64 slow-drip connections held open
        attack_rss = []
        sql_runs = {str(r): [] for r in a.http_rates}
        rss_idle = None
        try:
            text = Path("/proc/%d/status" % pid).read_text()
            rss_idle = int(re.search(r"^VmRSS:\s+(\d+)", text, re.M).group(1))
            # Warm-up (not measured): the pool opens its connections, the backends load the
            # extension and prepare their statements, as in a proxy that has been running.
            self.reset(("extension",))
            self.loadgen(200, 3)
            for rep in range(a.reps):
                for rate in a.http_rates:
                    self.reset(("extension",))
                    r = self.loadgen(rate, a.http_seconds)
                    runs[str(rate)].append(r)
                    self.reset(("extension",))
                    q = self.pgbench_rate(rate, a.http_seconds, a.http_connections)
                    sql_runs[str(rate)].append(q)
                    log("ingest-sql-at-rate rep %d offered %5d/s: achieved %.0f/s p50 %.2f ms p99 %.2f ms max %.1f ms"
                        % (rep + 1, rate, q["achieved_rate"], q["p50_ms"], q["p99_ms"], q["max_ms"]))
                    log("ingest-http rep %d offered %5d/s: achieved %.0f/s p50 %.2f ms p99 %.2f ms max %.1f ms "
                        "non2xx %d errors %d" % (rep + 1, rate, r["achieved_rate"], r["p50_ms"], r["p99_ms"],
                                                 r["max_ms"], r["non2xx"], r["errors"]))
                self.reset(("extension",))
                r = self.loadgen(0, a.http_seconds)
                runs["max"].append(r)
                log("ingest-http rep %d closed loop (%d connections): %.0f/s p50 %.2f ms p99 %.2f ms non2xx %d" %
                    (rep + 1, a.http_connections, r["achieved_rate"], r["p50_ms"], r["p99_ms"], r["non2xx"]))
                self.reset(("extension",))
                attack_sampler = MemSampler([pid], interval=0.1)
                attack_sampler.start()
                try:
                    r = self.loadgen(1000, a.http_seconds, idle=1000, slow=64)
                finally:
                    attack_sampler.stop()
                runs["attack"].append(r)
                attack_rss.append(attack_sampler.peak(pid, "VmRSS"))
                log("ingest-http rep %d at 1000/s with 1000 idle + 64 slow-drip connections: %.0f/s p50 %.2f ms "
                    "p99 %.2f ms max %.1f ms non2xx %d errors %d (attack reconnects %d)" %
                    (rep + 1, r["achieved_rate"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["non2xx"], r["errors"],
                     r["attack_reconnects"]))
        finally:
            sampler.stop()
            self.proxy_stop()
        med = {}
        for k, rs in runs.items():
            med[k] = {f: median([r[f] for r in rs]) for f in
                      ("achieved_rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
            med[k]["non2xx"] = sum(r["non2xx"] for r in rs)
            med[k]["errors"] = sum(r["errors"] for r in rs)
        sql_med = {k: {f: median([r[f] for r in rs]) for f in ("achieved_rate", "p50_ms", "p99_ms", "max_ms")}
                   for k, rs in sql_runs.items()}
        res.update({"sql_at_rate_runs": sql_runs, "sql_at_rate_median": sql_med})
        after = listen_overflows()
        res["listen_overflows"] = (after - overflows) if after is not None and overflows is not None else None
        res.update({"runs": runs, "median": med, "seconds_per_run": a.http_seconds,
                    "connections": a.http_connections, "proxy_rss_idle_kb": rss_idle,
                    "proxy_rss_peak_kb": sampler.peak(pid, "VmRSS"), "proxy_hwm_kb": sampler.peak(pid, "VmHWM"),
                    "proxy_rss_attack_kb": median([x for x in attack_rss if x]) if any(attack_rss) else None})
        self.save()

    def node_start(self, workers):
        a = self.a
        env = dict(self.env)
        env.update({"PORT": str(a.node_port), "PGHOST": self.env["PGHOST"], "PGPORT": self.env["PGPORT"],
                    "PGUSER": self.env.get("PGUSER", "postgres"),
                    "PGDATABASE": self.env.get("PGDATABASE", "postgres"), "LIVEKIT_API_KEY": a.api_key,
                    "LIVEKIT_API_SECRET": a.secret, "POOL_SIZE": "8", "WORKERS": str(workers),
                    "WEBHOOK_PATH": a.http_path})
        self.node_log = open(self.work / ("node-%d.log" % workers), "w")
        self.node = subprocess.Popen(["node", str(Path(a.node) / "server.js")], env=env, cwd=a.node,
                                     stdout=self.node_log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", a.node_port), timeout=1).close()
                return
            except OSError:
                if self.node.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("the Node peer did not start; see %s" % self.node_log.name)

    def node_stop(self):
        if getattr(self, "node", None) and self.node.poll() is None:
            self.node.send_signal(signal.SIGTERM)
            try:
                self.node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.node.kill()
                self.node.wait()
        self.node = None

    def ingest_node(self):
        """The peer a team would build instead (bench/node_peer: LiveKit's server SDK with
        WebhookReceiver, node-postgres, one INSERT ... ON CONFLICT DO NOTHING per webhook),
        measured with the same load generator, workload and rates as the proxy."""
        a = self.a
        res = self.R.setdefault("ingest_http", {}).setdefault("node", {})
        if not a.node or not (Path(a.node) / "node_modules").is_dir():
            res["skipped"] = "the Node peer is not installed (%s)" % a.node
            log("node peer skipped: " + res["skipped"])
            self.save()
            return
        self.pg.file(HERE / "node_peer" / "schema.sql")
        truncate = "TRUNCATE bench_node.webhook_events; CHECKPOINT;"
        for workers in a.node_workers:
            runs = {str(r): [] for r in a.http_rates}
            runs["max"] = []
            stored = []
            self.node_start(workers)
            try:
                self.pg.run(truncate)
                self.loadgen(200, 3, port=a.node_port)  # warm-up, not measured
                for rep in range(a.reps):
                    for rate in a.http_rates:
                        self.pg.run(truncate)
                        r = self.loadgen(rate, a.http_seconds, port=a.node_port)
                        runs[str(rate)].append(r)
                        log("node peer (%d worker%s) rep %d offered %5d/s: achieved %.0f/s p50 %.2f ms p99 %.2f ms "
                            "max %.1f ms non2xx %d errors %d" % (workers, "" if workers == 1 else "s", rep + 1, rate,
                                                                 r["achieved_rate"], r["p50_ms"], r["p99_ms"],
                                                                 r["max_ms"], r["non2xx"], r["errors"]))
                    self.pg.run(truncate)
                    r = self.loadgen(0, a.http_seconds, port=a.node_port)
                    runs["max"].append(r)
                    stored.append(int(self.pg.val("SELECT count(*) FROM bench_node.webhook_events")))
                    log("node peer (%d worker%s) rep %d closed loop: %.0f/s p50 %.2f ms p99 %.2f ms non2xx %d; "
                        "%d rows stored for %d answered 200" % (workers, "" if workers == 1 else "s", rep + 1,
                                                                r["achieved_rate"], r["p50_ms"], r["p99_ms"],
                                                                r["non2xx"], stored[-1], r["ok"]))
            finally:
                self.node_stop()
            med = {}
            for k, rs in runs.items():
                med[k] = {f: median([r[f] for r in rs]) for f in
                          ("achieved_rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
                med[k]["non2xx"] = sum(r["non2xx"] for r in rs)
                med[k]["errors"] = sum(r["errors"] for r in rs)
            res[str(workers)] = {"runs": runs, "median": med, "stored_after_closed_loop": stored}
        self.pg.run(truncate)
        self.save()

    # -- 2b. HTTP latency with the fold running, held off, and the Node.js peer -----------------
    HTTP_FOLD_VARIANTS = ("fold", "fold_held_off", "node")

    def http_fold(self):
        """What the worker's fold costs webhooks their latency (issue 26): at each offered rate,
        attendance-proxy with the fold at its default, the same with the fold held off
        (attendance.fold_interval = 1 h for the run), and the Node.js peer (one process), one
        after the other in every repetition (the order rotates), so that the ratios come from
        one run on the same cluster. The proxy and the peer both listen for the whole phase."""
        a = self.a
        res = self.R.setdefault("http_fold", {})
        if not a.proxy or not Path(a.proxy).exists():
            res["skipped"] = "the proxy binary is not available (%s)" % a.proxy
            log("http-fold skipped: " + res["skipped"])
            self.save()
            return
        variants = list(self.HTTP_FOLD_VARIANTS)
        node = bool(a.node) and (Path(a.node) / "node_modules").is_dir()
        if not node:
            variants.remove("node")
            res["node_skipped"] = "the Node peer is not installed (%s)" % a.node
        runs = {str(r): {v: [] for v in variants} for r in a.fold_http_rates}
        res.update({"rates": a.fold_http_rates, "seconds_per_run": a.http_seconds, "connections": a.http_connections,
                    "fold_interval": self.pg.val("SHOW attendance.fold_interval"),
                    "fold_wait": self.pg.val("SHOW attendance.fold_wait"), "variants": variants, "runs": runs})
        truncate_node = "TRUNCATE bench_node.webhook_events; CHECKPOINT;"
        self.proxy_start()
        try:
            if node:
                self.pg.file(HERE / "node_peer" / "schema.sql")
                self.node_start(1)
            # Warm-up (not measured): connections opened, statements prepared.
            self.reset(("extension",))
            self.loadgen(200, 3)
            if node:
                self.pg.run(truncate_node)
                self.loadgen(200, 3, port=a.node_port)
            for rep in range(a.reps):
                for rate in a.fold_http_rates:
                    k = (rep + a.fold_http_rates.index(rate)) % len(variants)
                    for v in variants[k:] + variants[:k]:
                        if v == "node":
                            self.pg.run(truncate_node)
                            r = self.loadgen(rate, a.http_seconds, port=a.node_port)
                        else:
                            if v == "fold_held_off":
                                self.hold_fold(True)
                            self.reset(("extension",))
                            folds0 = int(self.pg.val("SELECT folds FROM attendance_fold_state"))
                            watch = LockWatch(self.env, "bench_proxy")
                            watch.start()
                            try:
                                r = self.loadgen(rate, a.http_seconds)
                            finally:
                                r_locks = watch.stop()
                            r["lock_waits"] = r_locks
                            # Folds during the run (and the instant after it): none when held off.
                            r["folds"] = int(self.pg.val("SELECT folds FROM attendance_fold_state")) - folds0
                            if v == "fold_held_off":
                                self.hold_fold(False)
                            r["fold_drain_s"] = round(self.wait_fold(), 2)
                        runs[str(rate)][v].append(r)
                        log("http-fold rep %d offered %5d/s %-13s achieved %.0f/s p50 %.2f ms p99 %.2f ms "
                            "max %.1f ms non2xx %d errors %d%s" % (
                                rep + 1, rate, v, r["achieved_rate"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                                r["non2xx"], r["errors"], "" if v == "node" else
                                "; %d folds; lock waits in %s of %d samples" % (
                                    r["folds"], r["lock_waits"]["waiting"] or "none", r["lock_waits"]["samples"])))
                        self.save()
        finally:
            self.proxy_stop()
            if node:
                self.node_stop()
        res["median"] = {rate: {v: {f: median([r[f] for r in rs]) for f in
                                    ("achieved_rate", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
                                for v, rs in byv.items()} for rate, byv in runs.items()}
        for rate, byv in runs.items():
            for v, rs in byv.items():
                m = res["median"][rate][v]
                m["non2xx"] = sum(r["non2xx"] for r in rs)
                m["errors"] = sum(r["errors"] for r in rs)
                if v != "node":
                    m["folds"] = median([r["folds"] for r in rs])
                    m["lock_samples"] = sum(r["lock_waits"]["samples"] for r in rs)
                    m["lock_waits"] = {}
                    for r in rs:
                        for kind, n in r["lock_waits"]["waiting"].items():
                            m["lock_waits"][kind] = m["lock_waits"].get(kind, 0) + n
            # p99 with the fold running over p99 with it held off, repetition by repetition
            f, h = byv.get("fold", []), byv.get("fold_held_off", [])
            res.setdefault("p99_ratio_per_rep", {})[rate] = [
                round(x["p99_ms"] / y["p99_ms"], 2) if y["p99_ms"] else None for x, y in zip(f, h)]
        self.save()

    # -- 3. calculation -------------------------------------------------------------------------
    def ingest_calc_workload(self):
        """The 100-session workload through each variant's own ingestion, one webhook per
        statement in delivery order (untimed)."""
        self.reset()
        log("ingesting the calculation workload (100 sessions) through every variant")
        self.pg.run("""
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT body, tok FROM bench.hooks_c ORDER BY id LOOP PERFORM attendance_ingest_webhook(r.body, r.tok); END LOOP;
END$$;
DO $$DECLARE r record; BEGIN
  FOR r IN SELECT body, tok FROM bench.hooks_c ORDER BY id LOOP PERFORM bench_baseline.ingest_webhook(r.body, r.tok); END LOOP;
END$$;
INSERT INTO bench_floor.events (event_id, body) SELECT event_id, body FROM bench.hooks_c ORDER BY id ON CONFLICT DO NOTHING;
""")
        # The extension's connections and live rows are derived by the worker's fold (the
        # floor's calculation reads those connections).
        self.wait_fold()
        self.pg.run("VACUUM ANALYZE;")
        self.calc_set_events = int(self.pg.val("SELECT count(*) FROM meeting_attendance_events"))

    CALC_SQL = {
        "extension": "SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, {n})::bigint))",
        "extension_single": "SELECT count(_attendance_calculate_session(g, 'bench')) FROM generate_series(1, {n}) g",
        "baseline": "SELECT count(bench_baseline.calculate_session(g, 'bench')) FROM generate_series(1, {n}) g",
        "floor": """INSERT INTO bench_floor.results AS f (session_id, user_key, presence_ms)
SELECT c.session_id, c.user_key,
       (extract(epoch FROM sum(greatest(interval '0', least(coalesce(c.leave_time, s.ends_at), s.ends_at)
                                                     - greatest(c.join_time, s.starts_at)))) * 1000)::bigint
FROM attendance_sessions c JOIN attendance_session_schedule s ON s.session_id = c.session_id
WHERE c.session_id BETWEEN 1 AND {n} AND c.join_time IS NOT NULL
GROUP BY c.session_id, c.user_key
ON CONFLICT (session_id, user_key) DO UPDATE SET presence_ms = excluded.presence_ms""",
    }
    VACUUM_FOR = {
        "extension": "VACUUM ANALYZE meeting_attendances, attendance_session_schedule, attendance_status_changes",
        "extension_single": "VACUUM ANALYZE meeting_attendances, attendance_session_schedule, "
                            "attendance_status_changes",
        "baseline": "VACUUM ANALYZE bench_baseline.attendances, bench_baseline.session_schedule, "
                    "bench_baseline.status_changes",
        "floor": "VACUUM ANALYZE bench_floor.results",
    }

    def calc_runs(self, n, variants=CALC_VARIANTS, reps=None, label=""):
        reps = reps or self.a.reps
        out = {v: [] for v in variants}
        mem = []
        for rep in range(reps):
            for v in variants:
                self.uncalculate(v, n)
                self.pg.run(self.VACUUM_FOR[v] + "; CHECKPOINT;")
                ms, peak = self.pg.timed(self.CALC_SQL[v].format(n=n), sample_memory=(v == "extension"))
                out[v].append(ms)
                if peak:
                    mem.append(peak)
                log("calc %s%d sessions rep %d %-9s %9.1f ms" % (label, n, rep + 1, v, ms))
        return {"runs_ms": out, "median_ms": {v: median(out[v]) for v in variants},
                "extension_backend_rss_anon_peak_kb": max(mem) if mem else None}

    def uncalculate(self, variant, n):
        """Puts sessions 1..n back to the state before their first calculation (live rows
        from ingestion only), so that every timed run is a first calculation."""
        if variant == "floor":
            self.pg.run("DELETE FROM bench_floor.results WHERE session_id BETWEEN 1 AND %d" % n)
            return
        if variant.startswith("extension"):
            # Since 0.3.0 the fold gives every person (roster included) a live row before any
            # calculation, so a first calculation updates rows and inserts none: the results
            # are cleared, the rows stay.
            self.pg.run("""
UPDATE meeting_attendances SET attendance_status = NULL, status_rule = NULL, attendance_percentage = NULL,
    presence_ms = NULL, session_duration_minutes = NULL, policy_name = NULL, is_calculated = false,
    attendance_calculated_at = NULL
WHERE session_id BETWEEN 1 AND {n} AND attendance_calculated_at IS NOT NULL;
UPDATE attendance_session_schedule SET calculated_at = NULL, calculated_snapshot = NULL, needs_calculation = true,
    recalculation_cause = NULL
WHERE session_id BETWEEN 1 AND {n} AND calculated_at IS NOT NULL;
DELETE FROM attendance_status_changes WHERE session_id BETWEEN 1 AND {n};""".format(n=n))
            return
        att, sched, changes = (("meeting_attendances", "attendance_session_schedule", "attendance_status_changes")
                               if variant.startswith("extension") else
                               ("bench_baseline.attendances", "bench_baseline.session_schedule",
                                "bench_baseline.status_changes"))
        self.pg.run("""
DELETE FROM {att} WHERE session_id BETWEEN 1 AND {n} AND participant_identity IS NULL;  -- created by a calculation
UPDATE {att} SET attendance_status = NULL, status_rule = NULL, attendance_percentage = NULL, presence_ms = NULL,
    session_duration_minutes = NULL, policy_name = NULL, is_calculated = false, attendance_calculated_at = NULL
WHERE session_id BETWEEN 1 AND {n} AND attendance_calculated_at IS NOT NULL;
UPDATE {sched} SET calculated_at = NULL, needs_calculation = true, recalculation_cause = NULL
WHERE session_id BETWEEN 1 AND {n} AND calculated_at IS NOT NULL;
DELETE FROM {changes} WHERE session_id BETWEEN 1 AND {n};""".format(att=att, sched=sched, changes=changes, n=n))

    def check_equal(self, n):
        cols = "session_id, user_key, attendance_status, attendance_percentage, presence_ms, total_duration_minutes"
        diff = self.pg.val("""
SELECT count(*) FROM (
  (SELECT {c} FROM meeting_attendances WHERE session_id BETWEEN 1 AND {n}
   EXCEPT ALL SELECT {c} FROM bench_baseline.attendances WHERE session_id BETWEEN 1 AND {n})
  UNION ALL
  (SELECT {c} FROM bench_baseline.attendances WHERE session_id BETWEEN 1 AND {n}
   EXCEPT ALL SELECT {c} FROM meeting_attendances WHERE session_id BETWEEN 1 AND {n})) d""".format(c=cols, n=n))
        persons = int(self.pg.val("SELECT count(*) FROM meeting_attendances WHERE session_id BETWEEN 1 AND %d "
                                  "AND attendance_status IS NOT NULL" % n))
        if int(diff) != 0 or persons == 0:
            sample = self.pg.run("""
SELECT 'extension', {c} FROM meeting_attendances WHERE session_id BETWEEN 1 AND {n}
EXCEPT SELECT 'extension', {c} FROM bench_baseline.attendances WHERE session_id BETWEEN 1 AND {n} LIMIT 5""".format(
                c=cols, n=n))
            raise SystemExit("ABORT: the baseline and the extension differ on %s persons of sessions 1..%d "
                             "(%d persons calculated). Examples:\n%s" % (diff, n, persons, sample))
        statuses = self.pg.run("SELECT attendance_status || '=' || count(*) FROM meeting_attendances "
                               "WHERE session_id BETWEEN 1 AND %d GROUP BY attendance_status ORDER BY 1" % n).replace("\n", ", ")
        log("check: extension and baseline agree on all %d persons of sessions 1..%d (%s)" % (persons, n, statuses))
        return {"persons": persons, "differences": 0, "statuses": statuses}

    # -- growth: clones of the 100-session workload -------------------------------------------
    def columns(self, table):
        return self.pg.run("SELECT attname FROM pg_attribute WHERE attrelid = '%s'::regclass AND attnum > 0 "
                           "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum" % table).split()

    def clone_sql(self, table, k_from, k_to, subs, skip=("id",), where="t.session_id BETWEEN 1 AND 100"):
        cols = [c for c in self.columns(table) if c not in skip]
        exprs = [subs.get(c, "t." + c) for c in cols]
        return "INSERT INTO %s (%s) SELECT %s FROM %s t, generate_series(%d, %d) k WHERE %s;" % (
            table, ", ".join(cols), ", ".join(exprs), table, k_from, k_to, where)

    def clone(self, *args, **kw):
        self.pg.run(self.clone_sql(*args, **kw))

    def clone_extension(self, k_from, k_to, with_log=True, filler=False):
        """Copies of sessions 1..100 as sessions s + 100k (k in [k_from, k_to]): their schedule
        rows (room session-<id>), roster, logged events (new event ids and sids, the new room
        name, so that the matching rule gives each copy to its own session) and the rows the
        fold derived from them (connections and live rows, copied rather than derived again:
        they are a cache of the log). The fold's watermark is moved past the copied events in
        the same transaction, which the worker's fold waits for on the state row: it never
        derives the copies again."""
        if k_from > k_to:
            return
        sid = "t.session_id + 100 * k"
        room = "'session-' || (t.session_id + 100 * k)"
        sched = {"session_id": sid, "room_name": room, "needs_fold": "false", "calculated_snapshot": "NULL"}
        if filler:  # already calculated: the scheduler never picks them up
            sched.update({"needs_calculation": "false", "calculated_at": "now()", "recalculation_cause": "NULL"})
        sfx = lambda col: "CASE WHEN t.%s IS NULL THEN NULL ELSE t.%s || '.' || k END" % (col, col)
        sql = ["BEGIN;", "SELECT safe_id FROM attendance_fold_state FOR UPDATE;",
               self.clone_sql("attendance_session_schedule", k_from, k_to, sched),
               self.clone_sql("attendance_roster", k_from, k_to, {"session_id": sid}),
               self.clone_sql("meeting_attendances", k_from, k_to, {"session_id": sid}),
               self.clone_sql("attendance_sessions", k_from, k_to,
                              {"participant_sid": "t.participant_sid || '.' || k", "session_id": sid,
                               "room_name": "CASE WHEN t.room_name = 'session-' || t.session_id THEN %s "
                                            "ELSE t.room_name || '.' || k END" % room,
                               "join_event_id": sfx("join_event_id"), "leave_event_id": sfx("leave_event_id")},
                              skip=()),
               # Since 0.5.0 the fold keeps every room the log has seen (attendance_rooms): the
               # copies' rooms are added with their events.
               self.clone_sql("attendance_rooms", k_from, k_to,
                              {"room_name": "'session-' || (t.room_session + 100 * k)",
                               "room_session": "t.room_session + 100 * k"},
                              skip=(), where="t.room_session BETWEEN 1 AND 100 "
                                             "AND t.room_name = 'session-' || t.room_session")]
        if with_log:
            sql.append(self.clone_sql(
                "meeting_attendance_events", k_from, k_to,
                {"event_id": "t.event_id || '.' || k",
                 "session_id": "CASE WHEN t.session_id IS NULL THEN NULL ELSE %s END" % sid,
                 "room_name": "CASE WHEN t.room_name IS NULL THEN NULL ELSE %s END" % room,
                 "participant_sid": sfx("participant_sid")},
                where="t.session_id BETWEEN 1 AND 100 AND t.event_id NOT LIKE '%.%'"))
            sql.append(self.clone_sql("bench_floor.events", k_from, k_to, {"event_id": "t.event_id || '.' || k"},
                                      skip=(), where="t.event_id IN (SELECT c.event_id FROM bench.hooks_c c)"))
        sql.append("UPDATE attendance_fold_state SET safe_id = greatest(safe_id, "
                   "(SELECT coalesce(max(id), 0) FROM meeting_attendance_events));")
        sql.append("COMMIT;")
        self.pg.run("\n".join(sql))

    def clone_baseline(self, k_from, k_to):
        sid = "t.session_id + 100 * k"
        room = "'session-' || (t.session_id + 100 * k)"
        self.clone("bench_baseline.session_schedule", k_from, k_to, {"session_id": sid, "room_name": room})
        self.clone("bench_baseline.roster", k_from, k_to, {"session_id": sid})
        self.clone("bench_baseline.attendances", k_from, k_to, {"session_id": sid})
        self.clone("bench_baseline.connections", k_from, k_to,
                   {"participant_sid": "t.participant_sid || '.' || k", "session_id": sid, "room_name": room})

    def sizes(self):
        q = self.pg.run("""
SELECT (SELECT count(*) FROM meeting_attendance_events),
       (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meeting_attendance_events')),
       (SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('meeting_attendance_events')),
       (SELECT count(*) FROM bench_floor.events),
       pg_total_relation_size('bench_floor.events'),
       (SELECT count(*) FROM attendance_sessions),
       (SELECT count(*) FROM meeting_attendances),
       (SELECT count(*) FROM attendance_session_schedule),
       pg_total_relation_size('attendance_sessions') + pg_total_relation_size('meeting_attendances')
         + pg_total_relation_size('attendance_session_schedule') + pg_total_relation_size('attendance_roster'),
       (SELECT avg(octet_length(body)) FROM bench.hooks)""").split("|")
        ev, ev_bytes, ev_heap, fl, fl_bytes, conns, persons, sessions, state_bytes, body = q
        ev, fl = int(ev), int(fl)
        return {"events": ev, "events_total_bytes": int(ev_bytes), "bytes_per_event": round(int(ev_bytes) / ev),
                "heap_bytes_per_event": round(int(ev_heap) / ev), "floor_events": fl,
                "floor_bytes_per_event": round(int(fl_bytes) / fl), "connections": int(conns),
                "persons": int(persons), "sessions": int(sessions), "state_total_bytes": int(state_bytes),
                "mean_body_bytes": round(float(body))}

    def growth_step(self, label, seg):
        """Ingestion (extension, floor) on fresh webhooks and calculation of sessions 1..100
        at the current log size."""
        a = self.a
        self.pg.run("VACUUM ANALYZE; CHECKPOINT;")
        size = self.sizes()
        log("growth %s: %d logged events (%d bytes each with indexes), %d connections, %d sessions" % (
            label, size["events"], size["bytes_per_event"], size["connections"], size["sessions"]))
        n = a.growth_webhooks
        ing = {"extension": [], "floor": []}
        drains = []
        for rep in range(a.reps):
            start = 1 + (seg * a.reps + rep) * n
            self.growth_rows_used = start + n - 1
            for v in ("extension", "floor"):
                self.pg.run("CHECKPOINT;")
                r = self.pgbench(v, a.growth_clients, transactions=n // a.growth_clients, start=start)
                ing[v].append(r["tps"])
                if v == "extension":
                    drains.append(round(self.wait_fold(), 2))
                log("growth %s ingest rep %d %-9s %8.0f webhooks/s" % (label, rep + 1, v, r["tps"]))
        calc = self.calc_runs(100, ("extension", "floor"), label="@%s " % label)
        return {"size": size, "ingest_runs": ing, "ingest_median": {v: median(x) for v, x in ing.items()},
                "ingest_us_per_webhook": {v: 1e6 / median(x) for v, x in ing.items()}, "calc100": calc,
                "fold_drain_s": drains}

    def calculation_and_growth(self):
        a = self.a
        self.ingest_calc_workload()
        E = self.calc_set_events
        res = self.R.setdefault("calculation", {})
        res["c100"] = self.calc_runs(100)
        res["check_100"] = self.check_equal(100)
        self.save()

        growth = self.R.setdefault("growth", {"steps": {}})
        k_done = 0
        seg = 0
        targets = [t for t in (10 ** 5, 10 ** 6, 10 ** 7) if t <= a.max_log]
        for target in targets:
            k_to = max(math.ceil(target / E) - 1, 1)
            if target == 10 ** 6:
                k_to = max(k_to, 99)  # sessions 1..10000 for the large calculation
            if target >= 10 ** 7:
                st = os.statvfs(str(self.work))
                free_gb = st.f_bavail * st.f_frsize / 1e9
                if free_gb < 45:
                    growth["skipped_1e7"] = "only %.0f GB of disk free; 10^7 needs about 45 GB" % free_gb
                    log("growth 1e7 skipped: " + growth["skipped_1e7"])
                    break
            t0 = time.time()
            log("growing the log to ~%d events: copies %d..%d of the 100-session workload" % (target, k_done + 1, k_to))
            self.clone_extension(k_done + 1, min(k_to, 99))
            k = max(k_done + 1, 100)
            while k <= k_to:  # chunks of ~1.7 M events
                self.clone_extension(k, min(k + 199, k_to), filler=True)
                k += 200
                if k <= k_to:
                    log("  ... copies up to %d done (%.0f s)" % (k - 1, time.time() - t0))
            k_done = k_to
            fill_s = time.time() - t0
            before = growth.get("events_so_far", E)
            label = "1e%d" % round(math.log10(target))
            step = self.growth_step(label, seg)
            step["fill_seconds"] = round(fill_s, 1)
            step["fill_rate"] = round((step["size"]["events"] - before) / max(fill_s, 0.001))
            growth["events_so_far"] = step["size"]["events"]
            growth["steps"][label] = step
            seg += 1
            self.save()
            if target == 10 ** 6:
                self.large_calculation()
        if growth["steps"] and "live_lag" in a.phases_list:
            # The live-row lag again, on top of the largest log: the fold reads the log too.
            log("live-row lag at %d logged events" % growth["events_so_far"])
            self.live_lag(key="live_lag_at_size", fresh=False, reps=1)
        self.save()

    def large_calculation(self):
        a = self.a
        res = self.R["calculation"]
        log("copying the baseline's state for 10,000 sessions")
        self.clone_baseline(1, 99)
        self.pg.run("VACUUM ANALYZE; CHECKPOINT;")
        # Not the one-session-per-call path here: since 0.3.0 each call reads the whole log
        # (bench/analysis.md), which at this size would take hours for 10,000 sessions.
        big = ("extension", "baseline", "floor")
        res["c100_at_100x"] = self.calc_runs(100, variants=big, label="@100x ")
        res["c10000"] = self.calc_runs(10000, variants=big, reps=a.large_reps)
        res["check_10000"] = self.check_equal(10000)
        res["persons_10000"] = res["check_10000"]["persons"]
        self.save()
        self.worker_run()

    def worker_run(self):
        """The scheduler's own path: 10,000 due sessions, calculated by its background run."""
        pg = self.pg
        self.uncalculate("extension", 10000)
        pg.run("UPDATE attendance_session_schedule SET needs_calculation = (session_id BETWEEN 1 AND 10000), "
               "recalculation_cause = NULL;")
        pg.run("VACUUM ANALYZE; CHECKPOINT;")
        last = pg.val("SELECT coalesce(max(id), 0) FROM attendance_job_runs")
        sampler = MemSampler(lambda: processes_named("postgres: attendance run"), interval=0.05)
        sampler.start()
        t0 = time.time()
        pg.run("ALTER SYSTEM SET attendance.calculation_delay = 0; SELECT pg_reload_conf();")
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                left = int(pg.val("SELECT count(*) FROM attendance_session_schedule WHERE needs_calculation "
                                  "AND session_id BETWEEN 1 AND 10000"))
                if left == 0:
                    break
                time.sleep(0.2)
            wall = time.time() - t0
        finally:
            pg.run("ALTER SYSTEM RESET attendance.calculation_delay; SELECT pg_reload_conf();")
            sampler.stop()
        run = pg.run("SELECT job || '|' || status || '|' || processed || '|' || failed || '|' || "
                     "round(extract(epoch FROM finished_at - started_at)::numeric * 1000, 1) FROM attendance_job_runs "
                     "WHERE id > %s AND job = 'calculate' ORDER BY id" % last)
        runs = [dict(zip(("job", "status", "processed", "failed", "ms"), r.split("|"))) for r in run.splitlines()]
        self.R["calculation"]["worker"] = {
            "wall_s": round(wall, 2), "job_runs": runs,
            "rss_anon_peak_kb": sampler.peak(key="RssAnon"), "vm_rss_peak_kb": sampler.peak(key="VmRSS"),
            "processes_seen": len(sampler.max)}
        log("worker: 10,000 due sessions calculated in %.1f s by the scheduler; runs %s; peak private memory %s kB"
            % (wall, runs, sampler.peak(key="RssAnon")))
        self.save()

    # -- profile ------------------------------------------------------------------------------
    def profile(self):
        """Where the extension's time goes, at the final log size: per internal statement
        (pg_stat_statements, track = all, in one backend) and per function (perf, when it
        works here) for 6,000 webhooks ingested and 1,000 sessions calculated."""
        a = self.a
        res = self.R.setdefault("profile", {})
        n_hooks = 6000
        first = max(self.growth_rows_used + 1, self.stream_rows - n_hooks + 1)
        # The worker's fold is held off (fold_interval 1 h) while the webhooks are ingested, so
        # that the fold of those webhooks can be profiled in one backend: attendance_fold()
        # is what the worker's run executes.
        self.hold_fold(True)
        jobs = (
            ("ingest", n_hooks, "",
             "SELECT count(attendance_ingest_webhook(h.body, h.tok)) FROM bench.hooks h WHERE h.id BETWEEN %d AND %d"
             % (first, first + n_hooks - 1)),
            ("fold", n_hooks, "", "SELECT attendance_fold()"),
            ("calculate", 1000, "calc",
             "SELECT * FROM attendance_calculate_sessions(ARRAY(SELECT generate_series(1, 1000)::bigint))"),
        )
        for name, units, prep, sql in jobs:
            if name == "calculate":
                self.hold_fold(False)
                self.wait_fold()
            if prep == "calc":
                self.uncalculate("extension", 1000)
                self.pg.run(self.VACUUM_FOR["extension"] + "; CHECKPOINT;")
            runs_before = self.pg.val("SELECT attendance_worker_status()->>'runs_since_start'")
            data = self.work / ("perf-%s.data" % name)
            script = ("SELECT pg_backend_pid();\nSET pg_stat_statements.track = 'all';\n"
                      "SELECT pg_stat_statements_reset();\nSELECT pg_sleep(0.3);\n\\timing on\n%s;\n" % sql)
            p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
            p.stdin.write(script)
            p.stdin.close()
            pid = int(p.stdout.readline())
            rec = None
            if a.perf:
                rec = subprocess.Popen([a.perf, "record", "-F", "499", "-g", "-p", str(pid), "-o", str(data)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out = p.stdout.read()
            p.wait()
            if rec:
                rec.send_signal(signal.SIGINT)
                rec.wait()
            ms = float(re.findall(r"Time: ([0-9.]+) ms", out)[-1])
            runs_after = self.pg.val("SELECT attendance_worker_status()->>'runs_since_start'")
            stmts = []
            for line in self.pg.run("""
SELECT calls, round(total_exec_time::numeric, 3), rows, shared_blks_hit, shared_blks_read,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SET %'
  AND query NOT LIKE 'SELECT pg_sleep%' AND query NOT LIKE '%attendance_worker_status%'
ORDER BY total_exec_time DESC LIMIT 16""").splitlines():
                calls, total, rows, hit, read, q = line.split("|", 5)
                stmts.append({"calls": int(calls), "total_ms": float(total), "rows": int(rows),
                              "blks_hit_per_call": round(int(hit) / max(int(calls), 1), 1),
                              "blks_read_per_call": round(int(read) / max(int(calls), 1), 2),
                              "us_per_unit": round(float(total) * 1000 / units, 1), "query": q})
            entry = {"units": units, "ms": ms, "us_per_unit": round(ms * 1000 / units, 1), "statements": stmts,
                     "scheduler_runs_started": (int(runs_after or 0) - int(runs_before or 0))}
            if rec and data.exists():
                entry.update(self.perf_summary(data))
            res[name] = entry
            if name == "fold":
                entry["result"] = out.strip().splitlines()[-2] if len(out.strip().splitlines()) > 1 else out.strip()
            log("profile %s: %.1f us per %s; top statement: %s" % (
                name, entry["us_per_unit"], "session" if name == "calculate" else "webhook",
                stmts[1]["query"][:60] if len(stmts) > 1 else "-"))
        self.save()

    def perf_summary(self, data):
        a = self.a
        rep = subprocess.run([a.perf, "report", "-i", str(data), "--no-children", "--stdio", "-g", "none",
                              "--percent-limit", "0.8", "--sort", "dso,symbol"], capture_output=True, text=True)
        top = []
        for line in rep.stdout.splitlines():
            m = re.match(r"\s+([0-9.]+)%\s+(\S+(?: \(deleted\))?)\s+\[.\]\s+(.*)$", line)
            if m:
                sym = re.sub(r"\s+-\s+-\s*$", "", m.group(3)).strip()
                sym = re.sub(r"\(.*", "", sym)[:80]
                top.append([float(m.group(1)), m.group(2), sym])
        dso = subprocess.run([a.perf, "report", "-i", str(data), "--no-children", "--stdio", "-g", "none",
                              "--sort", "dso"], capture_output=True, text=True)
        dsos = []
        for line in dso.stdout.splitlines():
            m = re.match(r"\s+([0-9.]+)%\s+(\S+)", line)
            if m:
                dsos.append([float(m.group(1)), m.group(2)])
        return {"perf_top": top[:20], "perf_dso": dsos[:8]}


def library_md5():
    import hashlib
    try:
        libdir = os.environ.get("BENCH_PKGLIBDIR") or subprocess.run(
            ["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
        return hashlib.md5(Path(libdir, "attendance.so").read_bytes()).hexdigest()
    except Exception:
        return None


def source_revision():
    """The commit the sources were copied from, and whether the working tree differed."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip().splitlines()
        return head + (" with %d modified files in the working tree" % len(dirty) if dirty else "")
    except Exception:
        return None


def machine_facts(env):
    facts = {"attendance_so_md5": library_md5(), "source": source_revision()}
    facts["nproc"] = os.cpu_count()
    try:
        cpu = [l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")]
        facts["cpu"] = cpu[0].split(":", 1)[1].strip() if cpu else platform.processor()
    except OSError:
        facts["cpu"] = platform.processor()
    try:
        mem = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()).group(1)
        facts["ram_gb"] = round(int(mem) / 1024 / 1024, 1)
    except Exception:
        pass
    facts["kernel"] = platform.release()
    try:
        facts["os"] = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()).group(1)
    except Exception:
        pass
    p = subprocess.run(["psql", "-X", "-At", "-c", "SELECT version()"], capture_output=True, text=True, env=env)
    facts["postgres"] = p.stdout.strip()
    p = subprocess.run(["psql", "-X", "-At", "-c",
                        "SELECT name || ' = ' || current_setting(name) FROM pg_settings WHERE name IN ("
                        "'fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'checkpoint_timeout', "
                        "'jit', 'max_connections', 'shared_preload_libraries', 'autovacuum', 'wal_level', "
                        "'work_mem', 'pg_stat_statements.track', 'track_commit_timestamp') OR (name LIKE 'attendance.%' AND source <> 'default') "
                        "ORDER BY name"],
                       capture_output=True, text=True, env=env)
    facts["settings"] = p.stdout.strip().splitlines()
    return facts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--phases", default="ingest_sql,live_lag,ingest_http,http_fold,calculation,profile")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--large-reps", type=int, default=3)
    ap.add_argument("--people", type=int, default=30)
    ap.add_argument("--stream-sessions", type=int, default=5000)
    ap.add_argument("--stream-first-id", type=int, default=5_000_001)
    ap.add_argument("--seed", default="attendance-bench-1")
    ap.add_argument("--api-key", default="APIbench")
    ap.add_argument("--secret", default="bench-secret-0123456789abcdef")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--pgbench-threads", type=int, default=2)
    ap.add_argument("--ingest-seconds", type=int, default=6)
    ap.add_argument("--growth-webhooks", type=int, default=8000)
    ap.add_argument("--growth-clients", type=int, default=4)
    ap.add_argument("--max-log", type=int, default=10 ** 7, help="largest event-log size for the growth step")
    ap.add_argument("--proxy", default="")
    ap.add_argument("--proxy-args", default="")
    ap.add_argument("--loadgen", default="")
    ap.add_argument("--http-port", type=int, default=18480)
    ap.add_argument("--http-path", default="/webhooks/livekit")
    ap.add_argument("--http-rates", default="500,1000,2000")
    ap.add_argument("--http-seconds", type=int, default=8)
    ap.add_argument("--http-connections", type=int, default=16)
    ap.add_argument("--node", default="", help="bench/node_peer with its node_modules installed")
    ap.add_argument("--node-port", type=int, default=18481)
    ap.add_argument("--node-workers", default="1,2", help="1: one process; more: node:cluster")
    ap.add_argument("--fold-http-rates", default="1000,2000",
                    help="offered webhooks/s of the http_fold phase (fold running, held off, Node.js peer)")
    ap.add_argument("--lag-rate", type=int, default=2000, help="offered webhooks/s of the live-row lag run")
    ap.add_argument("--lag-seconds", type=int, default=20)
    ap.add_argument("--lag-clients", type=int, default=8)
    ap.add_argument("--lag-warmup", type=float, default=2.0, help="seconds at the start not counted")
    ap.add_argument("--lag-poll", type=float, default=0.1, help="seconds between the poller's looks")
    ap.add_argument("--perf", default="")
    ap.add_argument("--drop-first", action="store_true", help="drop the bench objects first (development)")
    a = ap.parse_args()
    a.clients = [int(x) for x in a.clients.split(",")]
    a.http_rates = [int(x) for x in a.http_rates.split(",")]
    a.node_workers = [int(x) for x in a.node_workers.split(",")]
    a.fold_http_rates = [int(x) for x in a.fold_http_rates.split(",")]
    phases = a.phases.split(",")
    a.phases_list = phases

    b = Bench(a)
    t0 = time.time()
    b.R["machine"] = machine_facts(b.env)
    b.generate()
    b.setup()
    b.save()
    timings = {}
    for ph in ("ingest_sql", "live_lag", "ingest_http", "http_fold", "calculation", "profile"):
        if ph not in phases:
            continue
        t = time.time()
        {"ingest_sql": b.ingest_sql, "live_lag": b.live_lag, "ingest_http": lambda: (b.ingest_http(), b.ingest_node()),
         "http_fold": b.http_fold, "calculation": b.calculation_and_growth, "profile": b.profile}[ph]()
        timings[ph] = round(time.time() - t)
    b.R["phase_seconds"] = timings
    b.R["attendance_so_md5_at_end"] = library_md5()
    if b.R["attendance_so_md5_at_end"] != b.R["machine"]["attendance_so_md5"]:
        log("WARNING: attendance.so was replaced (by another build) while the benchmark ran")
    b.R["total_seconds"] = round(time.time() - t0)
    b.save()
    log("results in %s (%d s)" % (b.results_path, b.R["total_seconds"]))


if __name__ == "__main__":
    main()
