#!/usr/bin/env python3
"""The partitioned log at 10^5 and 10^6 events (and more with --sizes): bytes per logged
event, the per-webhook cost of ingestion on top of it, and the partition maintenance
(attendance_maintain_log): how long a run takes and how long it holds the lock that makes
ingestion wait, with ingestion running meanwhile (its worst latency during the run).

Runs against the cluster named by PGHOST/PGPORT (bench/partitions.sh starts a throwaway
one with the installed extension). Prints a Markdown report on stdout.

The log is filled in bulk (INSERT ... SELECT, not through ingestion): sessions of 60
events (30 people joining and leaving) every few minutes over 360 days, bodies of LiveKit's
shape (~800 bytes), every session scheduled and final (calculated), the fold's watermark
past them: the state a year of production leaves."""
import argparse
import os
import re
import subprocess
import tempfile
import threading
import time

BODY = ('{"event":"participant_joined","room":{"sid":"RM_9riR8rKUGCas","name":"session-456","emptyTimeout":300,'
        '"departureTimeout":20,"creationTime":"1763130300","creationTimeMs":"1763130300000",'
        '"turnPassword":"qSzKooWjtOLLXdWuBVT4vNrYlioPMhEYNnn7Ql64Zic","enabledCodecs":[{"mime":"audio/PCMU"},'
        '{"mime":"audio/PCMA"},{"mime":"audio/opus"},{"mime":"audio/red"},{"mime":"video/VP8"},{"mime":"video/H264"}]},'
        '"participant":{"sid":"PA_abc123ahmed1","identity":"user-12","state":"ACTIVE","joinedAt":"1763130735",'
        '"joinedAtMs":"1763130735000","name":"Ahmed","version":2,"permission":{"canSubscribe":true,"canPublish":true,'
        '"canPublishData":true},"kind":"STANDARD","region":"eu-central"},"id":"EV_x","createdAt":"1763130735"}')


def psql(sql, check=True):
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"], input=sql, text=True,
                       capture_output=True)
    if check and p.returncode != 0:
        raise SystemExit("psql failed: %s\n%s" % (p.stderr, sql[:500]))
    return p.stdout.strip()


def timed(sql):
    out = psql("\\timing on\n" + sql)
    return float(re.findall(r"Time: ([0-9.]+) ms", out)[-1]), out


def load(first_session, last_session, sessions_total):
    """Sessions first..last (60 events each), spread over 360 days from 2025-01-01."""
    step = 360 * 86400 / sessions_total
    psql(f"""
BEGIN;
SELECT safe_id FROM attendance_fold_state FOR UPDATE;
INSERT INTO attendance_session_schedule (session_id, room_name, starts_at, ends_at, calculated_at,
    needs_calculation, needs_fold, recalculation_cause)
SELECT s, 'session-' || s, t, t + interval '50 minutes', t + interval '1 hour', false, false, NULL
FROM generate_series({first_session}, {last_session}) s,
     LATERAL (SELECT timestamptz '2025-01-01 00:00Z' + make_interval(secs => s * {step})) x(t);
INSERT INTO meeting_attendance_events (event_id, event_type, event_timestamp, session_id, room_name, room_sid,
    participant_sid, participant_identity, user_id, user_key, participant_name, role, participant_kind, joined_at,
    result, api_key, raw_webhook_data, disconnect_reason, duration_minutes)
SELECT 'EV_b' || s || '_' || e, CASE WHEN e % 2 = 0 THEN 'participant_joined' ELSE 'participant_left' END,
       at, s, 'session-' || s, 'RM_' || s, 'PA_' || s || '_' || (e / 2), 'user-' || (e / 2), e / 2, (e / 2)::text,
       'Person ' || (e / 2), 'student', 'STANDARD', t + make_interval(secs => e / 2 * 10), 'recorded', 'APIbench',
       jsonb_set(jsonb_set(jsonb_set('{BODY}'::jsonb, '{{id}}', to_jsonb('EV_b' || s || '_' || e)),
                 '{{room,name}}', to_jsonb('session-' || s)), '{{createdAt}}', to_jsonb(extract(epoch FROM at)::bigint::text)),
       CASE WHEN e % 2 = 1 THEN 'CLIENT_INITIATED' END, CASE WHEN e % 2 = 1 THEN 45 END
FROM generate_series({first_session}, {last_session}) s,
     LATERAL (SELECT timestamptz '2025-01-01 00:00Z' + make_interval(secs => s * {step})) x(t),
     generate_series(0, 59) e,
     LATERAL (SELECT t + make_interval(secs => e / 2 * 10 + (e % 2) * 2700)) y(at);
UPDATE attendance_fold_state SET safe_id = (SELECT max(id) FROM meeting_attendance_events);
COMMIT;
VACUUM ANALYZE meeting_attendance_events;
""")


def sizes():
    n, total, heap = psql("""SELECT (SELECT count(*) FROM meeting_attendance_events),
        (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('meeting_attendance_events')),
        (SELECT sum(pg_relation_size(relid)) FROM pg_partition_tree('meeting_attendance_events'))""").split("|")
    parts = psql("SELECT count(*) FROM attendance_log_partitions WHERE state = 'attached'")
    return int(n), int(total), int(heap), int(parts)


def make_hooks(n, tag):
    """n signed webhooks of now (the current partition), for pgbench."""
    psql(f"""
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.hooks; DROP SEQUENCE IF EXISTS bench.seq;
CREATE SEQUENCE bench.seq;
CREATE TABLE bench.hooks AS
SELECT k AS id, b::text AS body, attendance_sign_webhook(b::text, 'APIbench', 86400) AS tok
FROM generate_series(1, {n}) k,
     LATERAL (SELECT jsonb_set(jsonb_set(jsonb_set('{BODY}'::jsonb, '{{id}}', to_jsonb('EV_h{tag}_' || k)),
              '{{room,name}}', to_jsonb('session-' || (900000 + k / 60))),
              '{{createdAt}}', to_jsonb(extract(epoch FROM now())::bigint::text)) AS b) x;
CREATE UNIQUE INDEX ON bench.hooks (id);
ANALYZE bench.hooks;
""")


SCRIPT = "SELECT attendance_ingest_webhook(h.body, h.tok) FROM bench.hooks h WHERE h.id = (SELECT nextval('bench.seq'));\n"


def pgbench(clients, seconds, logdir=None, rate=None):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(SCRIPT)
    cmd = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), "-f", f.name]
    if rate:
        cmd += ["--rate", str(rate)]
    if logdir:
        cmd += ["-l", "--log-prefix", os.path.join(logdir, "tx")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=logdir or "/tmp")
    os.unlink(f.name)
    m = re.search(r"tps = ([0-9.]+)", out.stdout)
    if not m:
        raise SystemExit("pgbench failed: " + out.stderr + out.stdout)
    return float(m.group(1))


def ingest_cost(reps):
    runs = []
    for rep in range(reps):
        psql("SELECT setval('bench.seq', (SELECT coalesce(max(id), 0) FROM bench.hooks WHERE id <= %d) + 1, false)"
             % (rep * 20000))
        psql("CHECKPOINT")
        runs.append(pgbench(1, 8))
    runs.sort()
    return runs[len(runs) // 2], runs


def maintenance_under_load(label, setup_sql, rate=200):
    """Runs attendance_maintain_log() while pgbench ingests at `rate` webhooks/s; returns
    the run's time, the lock time it reports, and ingestion's worst latency meanwhile."""
    psql(setup_sql)
    logdir = tempfile.mkdtemp(prefix="parts-bench-")
    os.chmod(logdir, 0o777)
    result = {}

    def run():
        time.sleep(3)
        ms, out = timed("SET attendance.event_retention = '%s'; SELECT attendance_maintain_log('10 seconds');"
                        % result.get("retention", "0"))
        result["ms"] = ms
        result["out"] = out.splitlines()[-2] if len(out.splitlines()) > 1 else out
    t = threading.Thread(target=run)
    result["retention"] = label_retention.get(label, "0")
    t.start()
    pgbench(2, 10, logdir=logdir, rate=rate)
    t.join()
    lat = []
    for name in os.listdir(logdir):
        for line in open(os.path.join(logdir, name)):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    lat.sort()
    m = re.search(r'"lock_ms": ([0-9.]+)', result["out"])
    return {"label": label, "run_ms": result["ms"], "lock_ms": float(m.group(1)) if m else None,
            "max_latency_ms": lat[-1] / 1000 if lat else None,
            "p99_latency_ms": lat[int(len(lat) * 0.99)] / 1000 if lat else None, "transactions": len(lat),
            "message": re.sub(r".*\"message\": \"([^\"]*)\".*", r"\1", result["out"])}


label_retention = {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    sizes_wanted = [int(x) for x in a.sizes.split(",")]
    total_sessions = max(sizes_wanted) // 60
    psql("SET client_min_messages = warning; DROP EXTENSION IF EXISTS attendance CASCADE; DROP SCHEMA IF EXISTS bench CASCADE;"
         "CREATE EXTENSION attendance; SELECT attendance_add_webhook_key('APIbench', 'bench-secret-0123456789abcdef0123')")
    print("| logged events | partitions | bytes per event (heap + indexes) | heap bytes per event | "
          "µs per webhook (1 client, median of %d) | runs /s |" % a.reps)
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    done = 0
    for k, n in enumerate(sizes_wanted):
        # each size holds sessions spread over the same year (a denser log, not a longer one)
        load(done + 1, n // 60, total_sessions)
        done = n // 60
        # maintenance gives any rows outside partitions their own (none expected: 30 d partitions
        # are made for the year by the first run)
        psql("SELECT attendance_maintain_log()")
        psql("VACUUM ANALYZE")
        ev, total, heap, parts = sizes()
        make_hooks(20000 * a.reps + 10, k)
        us, runs = ingest_cost(a.reps)
        rows.append((ev, parts, total / ev, heap / ev, 1e6 / us, runs))
        print("| %s | %d | %.0f | %.0f | %.1f | %s |" % (f"{ev:,}", parts, total / ev, heap / ev, 1e6 / us,
                                                      ", ".join("%.0f" % r for r in runs)), flush=True)
    print()
    # maintenance at the largest size
    print("Maintenance at %s logged events (ingestion meanwhile: pgbench, 2 clients, 200 webhooks/s offered):" % f"{ev:,}")
    print()
    print("| run | run time ms | lock held ms (reported) | ingestion p99 ms | ingestion max ms | message |")
    print("|---|---:|---:|---:|---:|---|")
    make_hooks(5000, "m")
    cases = [
        ("nothing to do", ""),
        ("create 10 partitions ahead", "ALTER SYSTEM SET attendance.partitions_ahead = 12; SELECT pg_reload_conf();"),
        ("move 10,000 rows out of the default partition",
         "INSERT INTO meeting_attendance_events (event_id, event_type, event_timestamp, room_name, result, raw_webhook_data) "
         "SELECT 'EV_def' || g, 'participant_joined', timestamptz '2024-06-01' + g * interval '1 second', 'lobby', 'recorded', "
         "'{}'::jsonb FROM generate_series(1, 10000) g; UPDATE attendance_fold_state SET safe_id = (SELECT max(id) FROM meeting_attendance_events);"),
        ("retire (drop) the partitions older than 180 days", ""),
    ]
    label_retention["retire (drop) the partitions older than 180 days"] = "%dd" % (
        (time.time() - 1735689600) / 86400 - 180)
    for label, sql in cases:
        psql("SELECT setval('bench.seq', 1, false)")
        r = maintenance_under_load(label, sql or "SELECT 1")
        print("| %s | %.0f | %s | %.1f | %.1f | %s |" % (label, r["run_ms"], r["lock_ms"] if r["lock_ms"] is not None else "–",
                                                    r["p99_latency_ms"], r["max_latency_ms"], r["message"]), flush=True)
        psql("TRUNCATE bench.hooks; INSERT INTO bench.hooks SELECT k, b::text, attendance_sign_webhook(b::text, 'APIbench', 86400) "
             "FROM generate_series(1, 5000) k, LATERAL (SELECT jsonb_set(jsonb_set('%s'::jsonb, '{id}', to_jsonb('EV_m%s_' || k)), "
             "'{createdAt}', to_jsonb(extract(epoch FROM now())::bigint::text)) AS b) x" % (BODY, abs(hash(label)) % 100000))
    psql("ALTER SYSTEM RESET attendance.partitions_ahead; SELECT pg_reload_conf();")
    ev, total, heap, parts = sizes()
    print()
    print("After: %s logged events in %d partitions." % (f"{ev:,}", parts))


if __name__ == "__main__":
    main()
