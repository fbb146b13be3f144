#!/usr/bin/env python3
"""One node against a Citus cluster on this machine (docs/scaling.md, "Citus"; the results
are in docs/performance.md, "0.5.2: a Citus cluster").

Runs, in the same run and on the same workload (bench/gen_workload.py: sessions of people
who join late, leave early, reconnect, with duplicates and lost leaves):
  * one node: a PostgreSQL server with the extension (shared_preload_libraries = 'citus,
    attendance', as on the cluster, so that the only difference is distribution);
  * the cluster: a coordinator and two workers (test/e2e/citus.py) with the log
    distributed by room (attendance_distribute()).
On each, with the scheduler held off (attendance.calculation_delay = 7 days,
attendance.fold_interval = 1 h):
  1. ingestion: pgbench, C clients, each webhook one attendance_ingest_webhook() call taking
     the next pre-signed webhook of the stream (as bench/run.sh does): webhooks/s, the
     latency per call (the first twentieth of the stream untimed, to warm the connections),
     and the CPU time per webhook of each node's server processes (/proc), which is what
     docs/scaling.md projects from;
  2. the fold of the whole stream (attendance_fold(), from an empty watermark);
  3. the calculation of every session (attendance_calculate_sessions(), whole).
Each measurement is repeated (--reps) and the median reported; the floor of ingestion is
a plain INSERT of the body into a table with a unique key on the same server (one node),
measured in the same run.

Usage (as root, Citus installed: scripts/citus.sh; the extension installed: make install):
  bench/citus_bench.py [--sessions N] [--people N] [--clients C] [--reps R] [--report FILE]
Prints a Markdown table (and writes it to --report). Leaves nothing running."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import citus  # noqa: E402
from ha import children_of  # noqa: E402

PG_BIN = citus.PG_BIN
KEY, SECRET = "APIbench", "bench-secret-0123456789abcdef"
# The scheduler holds off: no calculation (a week's delay: the workload's sessions ended a
# day or two ago) and no fold (an hour's interval)
# while a measurement runs; each step is called by the benchmark and timed.
SETTINGS = {"attendance.calculation_delay": "'7d'", "attendance.fold_interval": "'1h'",
            "attendance.webhook_log_level": "'off'",
            "shared_buffers": "'128MB'", "max_connections": "60"}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


def timed(node, sql):
    t = time.perf_counter()
    node.sql(sql, timeout=3600)
    return time.perf_counter() - t


def load(node, work, distributed):
    """The extension, the key, the workload's webhooks (bench.hooks), sessions and roster."""
    node.sql("CREATE EXTENSION IF NOT EXISTS attendance")
    if distributed:
        node.sql("SELECT attendance_distribute()")
    node.sql(f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}')")
    node.sql("CREATE SCHEMA bench; "
             "CREATE TABLE bench.hooks (seq bigint PRIMARY KEY, event_id text, session_id bigint, body text, tok text); "
             "CREATE SEQUENCE bench.seq; "
             "CREATE TABLE bench.floor (event_id text PRIMARY KEY, body text NOT NULL)")
    script(node, f"\\copy bench.hooks FROM '{work}/w.hooks.csv' CSV\n"
                 "CREATE TEMP TABLE s (session_id bigint, room_name text, starts_at timestamptz, ends_at timestamptz);\n"
                 f"\\copy s FROM '{work}/w.sessions.csv' CSV\n"
                 "SELECT count(attendance_schedule_session(session_id, room_name, starts_at, ends_at)) FROM s;\n"
                 "CREATE TEMP TABLE r (session_id bigint, user_id bigint, role text);\n"
                 f"\\copy r FROM '{work}/w.roster.csv' CSV\n"
                 "SELECT count(attendance_expect(session_id, user_id, role)) FROM r;\n")


def script(node, text):
    """A psql script (backslash commands too) on the node."""
    return run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(node.port),
                "-U", "postgres", "-d", "postgres"], input=text, timeout=1800)


def cpu_seconds(nodes):
    """CPU time (user + system) so far of each node's server processes, by node name: the
    live ones', and through the postmaster's cumulative children's time (cutime, cstime)
    those that exited and were reaped (a client's backend ends with its connection)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for node in nodes:
        with open(os.path.join(node.data, "postmaster.pid")) as f:
            pm = int(f.readline())
        total = 0
        for pid in [pm] + children_of(pm):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
                if pid == pm:
                    total += int(fields[13]) + int(fields[14])  # cutime, cstime
            except (OSError, ValueError, IndexError):
                pass
        out[node.name] = total / tick
    return out


def pgbench(node, path, clients, transactions):
    out = run([f"{PG_BIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(node.port), "-U", "postgres",
               "-c", str(clients), "-j", str(min(clients, 2)), "-t", str(transactions), "-f", path,
               "postgres"], timeout=3600).stdout
    tps = float(next(l for l in out.splitlines() if l.startswith("tps")).split("=")[1].split()[0])
    lat = float(next(l for l in out.splitlines() if l.startswith("latency average")).split("=")[1].split()[0])
    return tps, lat


def measure(node, nodes, work, clients, side, results):
    n = int(node.sql("SELECT count(*) FROM bench.hooks"))
    per_client = n // clients
    ingest = os.path.join(work, "ingest.sql")
    floor = os.path.join(work, "floor.sql")
    with open(ingest, "w") as f:
        f.write("SELECT attendance_ingest_webhook(h.body, h.tok) FROM bench.hooks h "
                "WHERE h.seq = (SELECT nextval('bench.seq'));\n")
    with open(floor, "w") as f:
        f.write("INSERT INTO bench.floor (event_id, body) SELECT h.event_id, h.body FROM bench.hooks h "
                "WHERE h.seq = (SELECT nextval('bench.seq')) ON CONFLICT (event_id) DO NOTHING;\n")
    # The first twentieth of the stream warms the clients' connections (to the workers, and
    # the caches of the shards' metadata) untimed; the rest is timed.
    # CPU: from before the warm-up to after both runs' backends are gone (an ended backend's
    # time reaches the postmaster's children's time when it is reaped), per webhook of both
    # runs, connections included.
    warm = max(1, per_client // 20)
    node.sql("SELECT setval('bench.seq', 1, false)")
    before = cpu_seconds(nodes)
    pgbench(node, ingest, clients, warm)
    tps, lat = pgbench(node, ingest, clients, per_client - warm)
    citus.wait_until(lambda: node.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")
                     == "0", 30, "pgbench's backends gone")
    time.sleep(0.5)
    after = cpu_seconds(nodes)
    hooks = clients * per_client
    results[side]["cpu_ms_coordinator"].append(1000 * (after[node.name] - before[node.name]) / hooks)
    results[side]["cpu_ms_workers"].append(
        1000 * sum(after[k] - before[k] for k in after if k != node.name) / hooks)
    results[side]["ingest_tps"].append(tps)
    results[side]["ingest_ms"].append(lat)
    if side == "one node":
        node.sql("SELECT setval('bench.seq', 1, false)")
        pgbench(node, floor, clients, warm)
        ftps, flat = pgbench(node, floor, clients, per_client - warm)
        results[side]["floor_tps"].append(ftps)
        results[side]["floor_ms"].append(flat)
    stored = int(node.sql("SELECT count(*) FROM meeting_attendance_events"))
    results[side]["events"].append(stored)
    results[side]["fold_s"].append(timed(node, "SELECT attendance_fold()"))
    results[side]["calc_s"].append(timed(node, "SELECT count(*) FROM attendance_calculate_sessions("
                                               "ARRAY(SELECT session_id FROM attendance_session_schedule))"))
    results[side]["calculated"].append(int(node.sql("SELECT count(*) FROM meeting_attendances WHERE is_calculated")))


def reset(node):
    """Empties what a repetition wrote: the log, the derived rows, the floor; keeps the
    schedule, roster and key."""
    node.sql("TRUNCATE meeting_attendance_events")
    node.sql("TRUNCATE attendance_sessions, meeting_attendances, attendance_status_changes, "
             "attendance_rooms, attendance_alerts, bench.floor; "
             "UPDATE attendance_fold_state SET safe_id = 0; "
             "UPDATE attendance_session_schedule SET calculated_at = NULL, needs_calculation = true, "
             "calculated_snapshot = NULL, needs_fold = true")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--report")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="attendance-bench-citus.")
    os.chmod(work, 0o755)
    base = int(time.time()) - 2 * 86400
    run([sys.executable, os.path.join(HERE, "gen_workload.py"), "--sessions", str(a.sessions), "--people",
         str(a.people), "--base", str(base), "--span-hours", "20", "--api-key", KEY, "--secret", SECRET,
         "--out", os.path.join(work, "w")], timeout=600)
    # bench.hooks: seq,event_id,session_id,body,authorization
    for name in ("w.hooks.csv", "w.sessions.csv", "w.roster.csv"):
        os.chmod(os.path.join(work, name), 0o644)
    results = {s: {k: [] for k in ("ingest_tps", "ingest_ms", "floor_tps", "floor_ms", "cpu_ms_coordinator",
                                   "cpu_ms_workers", "events", "fold_s", "calc_s", "calculated")}
               for s in ("one node", "cluster")}
    one = cluster = None
    try:
        one = citus.Cluster(workers=0, extra=SETTINGS)
        cluster = citus.Cluster(workers=2, extra=SETTINGS)
        load(one.coordinator, work, False)
        load(cluster.coordinator, work, True)
        for rep in range(a.reps):
            for side, c in (("one node", one), ("cluster", cluster)):
                if rep:
                    reset(c.coordinator)
                measure(c.coordinator, c.nodes, work, a.clients, side, results)
                print(f"rep {rep + 1} {side}: " + json.dumps({k: v[-1] for k, v in results[side].items() if v}),
                      flush=True)
    finally:
        for c in (one, cluster):
            if c:
                c.stop()
        subprocess.run(["rm", "-rf", work])
    med = {s: {k: statistics.median(v) for k, v in r.items() if v} for s, r in results.items()}
    o, c = med["one node"], med["cluster"]
    lines = [
        f"Workload: {a.sessions} sessions x {a.people} people, {o['events']:.0f} webhooks stored "
        f"(bench/gen_workload.py); {a.clients} pgbench clients; median of {a.reps}.",
        "",
        "| measure | one node | cluster (coordinator + 2 workers) | cluster ÷ one node |",
        "|---|---|---|---|",
        f"| ingestion, webhooks/s | {o['ingest_tps']:.0f} | {c['ingest_tps']:.0f} | {c['ingest_tps'] / o['ingest_tps']:.2f} |",
        f"| ingestion, ms per webhook (pgbench latency) | {o['ingest_ms']:.3f} | {c['ingest_ms']:.3f} | "
        f"{c['ingest_ms'] / o['ingest_ms']:.2f} |",
        f"| floor (plain INSERT of the body), webhooks/s | {o['floor_tps']:.0f} | | |",
        f"| server CPU per webhook: the one node / the coordinator, ms | {o['cpu_ms_coordinator']:.3f} | "
        f"{c['cpu_ms_coordinator']:.3f} | {c['cpu_ms_coordinator'] / o['cpu_ms_coordinator']:.2f} |",
        f"| server CPU per webhook: the workers together, ms | | {c['cpu_ms_workers']:.3f} | |",
        f"| fold of the whole stream, s | {o['fold_s']:.2f} | {c['fold_s']:.2f} | {c['fold_s'] / o['fold_s']:.2f} |",
        f"| calculation of every session, s | {o['calc_s']:.2f} | {c['calc_s']:.2f} | {c['calc_s'] / o['calc_s']:.2f} |",
        f"| sessions x persons calculated | {o['calculated']:.0f} | {c['calculated']:.0f} | |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.report:
        with open(a.report, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
