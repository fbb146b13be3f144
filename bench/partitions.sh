#!/usr/bin/env bash
# The partitioned log's measurements (bench/partitions.py) on a throwaway cluster with the
# installed extension (the scheduler off, so that the timed maintenance runs are the only
# ones): bench/partitions.sh [--sizes 100000,1000000] [--reps 3]
# Prints a Markdown report (docs/performance.md, "The partitioned log", quotes it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/lib/postgresql/15/bin:$PATH"
. scripts/pg.sh
DIR=$(mktemp -d /tmp/attendance-parts-bench.XXXXXX)
trap 'pg_stop "$DIR" >/dev/null 2>&1; rm -rf "$DIR"' EXIT
pg_start "$DIR" "" "attendance.calculation_delay = '7d'" "attendance.webhook_log_level = 'off'" \
  "attendance.reconcile_interval = '7d'" "shared_buffers = '1GB'" "max_wal_size = '8GB'" \
  "checkpoint_timeout = '30min'" "jit = off" "attendance.enable_scheduler = off" >/dev/null
python3 bench/partitions.py "$@"
