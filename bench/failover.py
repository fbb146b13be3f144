#!/usr/bin/env python3
"""Failover under load, measured (docs/scaling.md, docs/performance.md): one
pg_auto_failover formation (the HA suite's, test/e2e/ha.py: a monitor, a primary and a
synchronous standby, the suite's health-check settings), attendance-proxy in front with a
multi-host conninfo, and ROUNDS failovers in a row: each kills the current primary's
postmaster and keeper with -9 under load, waits for the standby's promotion, resends
what was not acknowledged, and restarts the killed node, which rejoins as the standby
of the next round. Prints one line per round and the medians as a Markdown table.

Usage (after `make install` and a CMake build, as root or as a user that may run
PostgreSQL): bench/failover.py [--rounds N] [--build DIR]. bench/failover.sh wraps it."""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import ha  # noqa: E402

KEY, SECRET = "APIbench", "bench-secret-0123456789abcdef0123"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    started = time.time()
    f = ha.Formation({
        "shared_preload_libraries": "'pg_stat_statements,attendance'",
        "attendance.database_name": "'postgres'",
        "attendance.webhook_log_level": "'off'",
    })
    proxy = None
    rows = []
    try:
        f.start_monitor()
        n1 = f.add_node("node1")
        f.wait_states({"node1": {"single"}}, 120)
        ha.wait_until(lambda: ha.sql(n1.port, "SELECT 1", timeout=5) == "1", 60, "node1 accepts connections")
        ha.sql(n1.port, "SET client_min_messages = warning; CREATE EXTENSION attendance;"
                        f"SELECT attendance_add_webhook_key('{KEY}', '{SECRET}');"
                        "SELECT attendance_schedule_session(9001, 'session-9001', now() - interval '10 minutes', "
                        "now() + interval '1 day')")
        f.add_node("node2")
        f.wait_states({"node1": {"primary"}, "node2": {"secondary"}}, 180)
        proxy = ha.Proxy(os.path.join(args.build, "attendance-proxy"), f.conninfo(),
                         os.path.join(f.base, "proxy.log"), "--pool-size", "4", "--pool-timeout-ms", "2000",
                         "--retry-after", "1")
        joined = int(time.time() * 1000) - 300_000
        for i in range(args.rounds):
            primary = f.primary()
            hooks = ha.sign(primary.port, f"r{i}", 8000, "session-9001", joined, KEY)
            ha.wait_until(lambda: proxy.get("/healthz")[0] == 200, 60, "proxy /healthz")
            r = ha.failover_round(f, proxy, hooks)
            t = time.time()
            f.run(r["old"])
            f.wait_states({r["old"].name: {"secondary"}, r["new"].name: {"primary"}}, 180)
            rejoin = time.time() - t
            ha.wait_until(lambda: ha.sql(r["new"].port, "SELECT string_agg(sync_state, ',') FROM "
                                         "pg_stat_replication") in ("sync", "quorum"), 60, "synchronous again")
            logged = int(ha.sql(r["new"].port, "SELECT count(*) FROM meeting_attendance_events "
                                               f"WHERE event_id LIKE 'EV\\_r{i}\\_%'"))
            row = {
                "round": i + 1, "killed": r["old"].name, "promoted_s": r["promoted_s"],
                "first_2xx_s": r["first_2xx_s"], "non_2xx": len(r["non_2xx"]), "acked": r["acked"],
                "lost": len(r["lost"]), "resends": r["resends"], "duplicates": r["duplicates"],
                "exactly_once": logged == len(r["sent"]), "rejoin_s": rejoin,
                "slowest_503_s": r["slowest_non_2xx_s"],
            }
            rows.append(row)
            print(f"round {row['round']}: killed {row['killed']}; promoted after {row['promoted_s']:.2f} s; "
                  f"first 2xx after {row['first_2xx_s']:.2f} s; {row['non_2xx']} answered 503 "
                  f"(slowest {row['slowest_503_s']:.2f} s); {row['acked']} acknowledged, {row['lost']} lost; "
                  f"{row['resends']} resends ({row['duplicates']} already stored); every webhook once: "
                  f"{row['exactly_once']}; rejoined in {rejoin:.1f} s", flush=True)
    finally:
        if proxy is not None:
            proxy.stop()
        f.stop()
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print()
    print(f"| measure (median of {len(rows)} failovers) | value |")
    print("|---|---:|")
    print(f"| seconds from the primary's death to the first 2xx on the new primary | {med('first_2xx_s'):.2f} |")
    print(f"| seconds until the monitor reports the standby promoted | {med('promoted_s'):.2f} |")
    print(f"| webhooks answered 503 during the failover (4 clients, 20 ms pause, 100 ms after a 503) | {med('non_2xx'):.0f} |")
    print(f"| requests to resend them until each was 2xx | {med('resends'):.0f} |")
    print(f"| acknowledged webhooks lost (every round) | {sum(r['lost'] for r in rows)} |")
    print(f"| every webhook recorded exactly once (every round) | {all(r['exactly_once'] for r in rows)} |")
    print(f"| seconds for the killed node to rejoin as standby | {med('rejoin_s'):.1f} |")
    print(f"\n{len(rows)} rounds in {time.time() - started:.0f} s")
    return 0 if rows and all(r["lost"] == 0 and r["exactly_once"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
