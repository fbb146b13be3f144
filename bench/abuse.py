#!/usr/bin/env python3
"""What an unsigned flood costs (issue 21; docs/performance.md, "The receiver under abuse").

For each proxy binary given (the current build, and optionally an older one to compare):
valid webhooks alone, then an unsigned flood alone, then both, on loopback:

  - PostgreSQL's CPU time and log growth during the flood, the calls of
    attendance_ingest_webhook and the failed transactions (exact: counted after the proxy's
    sessions ended);
  - the proxy's own log growth;
  - the valid webhooks' p50/p99 (from another source, at --valid-rate) alone and beside
    the flood.

Uses the machinery of test/e2e/test_proxy_abuse.py (its flood runs as a separate process)
and the running throwaway cluster of scripts/pg.sh (PGHOST, PGPORT, PGUSER,
ATTENDANCE_PGDIR, PG_BIN, as scripts/test.sh sets them). Creates and drops the database
e2e_abuse. Prints one JSON object per binary and a Markdown table.

  bench/abuse.py [--proxy build/attendance-proxy] [--baseline OLD_PROXY] [--seconds 10]
                 [--rate 5000] [--valid-rate 40] [--repeat 1]
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import test_proxy as tp  # noqa: E402
import test_proxy_abuse as ta  # noqa: E402


RUNS = [0]


def process_cpu(pid):
    """CPU seconds (user + system) the process used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, new_flags, seconds, rate, valid_rate):
    RUNS[0] += 1
    tp.PROXY = binary
    flags = ["--reject-rate", "0"] if new_flags else []  # every request judged, none rate-limited
    start = ta.start_proxy if new_flags else tp.start_proxy  # a 0.4.1 proxy first reads the key names
    proxy = start("bench-abuse", f"dbname={ta.DB}", *flags)
    calls0, rollbacks0 = ta.ingest_calls(), ta.rollbacks()
    hooks = ta.signed("bn%d" % RUNS[0], int(2 * seconds * valid_rate))
    half = len(hooks) // 2
    try:
        alone = ta.post_valid(proxy.port, hooks[:half], valid_rate)
        log0, plog0, cpu0 = ta.server_log_size(), os.path.getsize(proxy.logpath), ta.postgres_cpu()
        pcpu0 = process_cpu(proxy.proc.pid)
        gen = ta.run_generator("--flood", proxy.port, rate, seconds)
        out, _ = gen.communicate(timeout=seconds + 120)
        cpu1, log1, plog1 = ta.postgres_cpu(), ta.server_log_size(), os.path.getsize(proxy.logpath)
        pcpu1 = process_cpu(proxy.proc.pid)
        flood_a = json.loads(out.strip().splitlines()[-1])
        gen = ta.run_generator("--flood", proxy.port, rate, seconds)
        during = ta.post_valid(proxy.port, hooks[half:], valid_rate)
        out, _ = gen.communicate(timeout=seconds + 120)
        flood_b = json.loads(out.strip().splitlines()[-1])
    finally:
        proxy.stop(30)
    ta.backends_gone()
    secs = flood_a["seconds"]
    ok_alone = [v[3] for v in alone if v[1] == 200]
    ok_during = [v[3] for v in during if v[1] == 200]
    return {
        "proxy": binary,
        "flood_requests_per_s": round(flood_a["sent"] / secs),
        "flood_answers": flood_a["statuses"],
        "pg_cpu_share_of_a_core": round(ta.cpu_between(cpu0, cpu1) / secs, 4),
        "proxy_cpu_share_of_a_core": round((pcpu1 - pcpu0) / secs, 4),
        "pg_log_bytes_per_min": round((log1 - log0) / secs * 60),
        "proxy_log_bytes_per_min": round((plog1 - plog0) / secs * 60),
        "ingest_calls": ta.ingest_calls() - calls0,
        "failed_calls": ta.rollbacks() - rollbacks0,
        "valid_sent": len(alone) + len(during),
        "valid_200": len(ok_alone) + len(ok_during),
        "valid_alone_p50_ms": round(ta.percentile(ok_alone, 50) * 1000, 2),
        "valid_alone_p99_ms": round(ta.percentile(ok_alone, 99) * 1000, 2),
        "valid_flood_p50_ms": round(ta.percentile(ok_during, 50) * 1000, 2) if ok_during else None,
        "valid_flood_p99_ms": round(ta.percentile(ok_during, 99) * 1000, 2) if ok_during else None,
        "flood_b_requests_per_s": round(flood_b["sent"] / flood_b["seconds"]),
        "load_average": round(os.getloadavg()[0], 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", default=os.path.join(ROOT, "build", "attendance-proxy"))
    ap.add_argument("--baseline", help="an older attendance-proxy (before 0.4.1) to compare")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--valid-rate", type=float, default=40)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for var in ("ATTENDANCE_PGDIR", "PGHOST", "PGPORT"):
        if not os.environ.get(var):
            sys.exit(f"abuse.py: {var} is not set (run it against scripts/pg.sh's cluster)")
    tp.setup_database(ta.DB)
    tp.psql(f"ALTER DATABASE {ta.DB} SET track_functions = 'all'", "postgres")
    rows = []
    try:
        for _ in range(args.repeat):
            runs = [(args.proxy, True)] + ([(args.baseline, False)] if args.baseline else [])
            for binary, new in runs:
                r = measure(binary, new, args.seconds, args.rate, args.valid_rate)
                print(json.dumps(r), flush=True)
                rows.append(r)
    finally:
        tp.psql(f"DROP DATABASE IF EXISTS {ta.DB} WITH (FORCE)", "postgres")
    print("\n| proxy | flood/s | PostgreSQL CPU | proxy CPU | PostgreSQL log | proxy log | ingest calls (failed) |"
          " valid alone p50/p99 ms | beside the flood p50/p99 ms | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {os.path.basename(os.path.dirname(os.path.dirname(r['proxy'])))}/{os.path.basename(r['proxy'])}"
              f" | {r['flood_requests_per_s']} | {100 * r['pg_cpu_share_of_a_core']:.1f} % of a core"
              f" | {100 * r['proxy_cpu_share_of_a_core']:.0f} %"
              f" | {r['pg_log_bytes_per_min'] / 1e6:.2f} MB/min | {r['proxy_log_bytes_per_min'] / 1e6:.2f} MB/min"
              f" | {r['ingest_calls']} ({r['failed_calls']}) | {r['valid_alone_p50_ms']} / {r['valid_alone_p99_ms']}"
              f" | {r['valid_flood_p50_ms']} / {r['valid_flood_p99_ms']} | {r['load_average']} |")


if __name__ == "__main__":
    main()
