#!/usr/bin/env bash
# One command for every attendance benchmark (issues 6, 11 and 12):
#   bench/run.sh [--quick] [--reps N] [--max-log N] [--no-build] [--no-profile] [--phases LIST] [--report FILE]
# As root on Debian 12: installs what it needs, builds the extension, the proxy and the
# load generator in /tmp (the extension goes into a private copy of the PostgreSQL tree,
# not into the system), starts a throwaway PostgreSQL as an unprivileged user, generates the deterministic
# workload, runs every measurement (extension, PL/pgSQL baseline and floor in the same
# run), writes docs/performance.md and leaves nothing running.
#
#   --quick       1 repetition and short runs (a smoke test of the bench, not results)
#   --reps N      repetitions of each measurement (default 3)
#   --max-log N   largest event-log size of the growth measurement (default 10000000;
#                 1000000 saves about 7 minutes and 30 GB of disk)
#   --no-build    use the system-wide installed extension and an existing proxy build
#   --no-profile  skip the perf profiles
#   --phases LIST only these of ingest_sql,live_lag,ingest_http,http_fold,calculation,profile
#                 (ingest_http includes the Node.js peer; http_fold times HTTP latency with
#                 the fold running, with it held off, and the Node.js peer, interleaved)
#   --report FILE write the report there instead of docs/performance.md
# Environment: BENCH_PG_PORT, BENCH_HTTP_PORT, BENCH_NODE_PORT (default: free ports, so that
# two benchmarks on one machine do not meet), BENCH_WORKDIR (mktemp),
# BENCH_KEEP=1 (keep the cluster and the workload files in the work directory).
# The run takes about 20 minutes on 2 cores and needs ~45 GB of free disk in /tmp for
# the 10^7-event log (without it, the 10^7 step is skipped and said so).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="bench/run.sh${*:+ $*}"
export PATH="/usr/lib/postgresql/15/bin:$PATH"

QUICK=0 BUILD=1 PROFILE=1 MAX_LOG=10000000 PHASES="" REPORT=docs/performance.md REPS=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --no-profile) PROFILE=0 ;;
    --max-log) MAX_LOG=$2; shift ;;
    --phases) PHASES=$2; shift ;;
    --reps) REPS=$2; shift ;;
    --report) REPORT=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

. scripts/pg.sh
PG_PORT=${BENCH_PG_PORT:-}
HTTP_PORT=${BENCH_HTTP_PORT:-$(free_port)}
NODE_PORT=${BENCH_NODE_PORT:-$(free_port)}
while [ "$NODE_PORT" = "$HTTP_PORT" ]; do NODE_PORT=$(free_port); done
WORK=${BENCH_WORKDIR:-$(mktemp -d /tmp/attendance-bench.XXXXXX)}
mkdir -p "$WORK"
chmod 755 "$WORK"
BUILD_DIR="$WORK/proxy-build"
echo "== work directory $WORK"

# ---- dependencies (Debian packages) ------------------------------------------------------
scripts/deps.sh
if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null 2>&1 || true
  fi
fi
PERF=""
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null && perf record -o "$WORK/perf-probe.data" -- true >/dev/null 2>&1; then
  PERF=$(command -v perf)
fi

# ---- builds (all outputs under /tmp) -------------------------------------------------------
# The extension is built from a copy of the sources and installed into a private copy of
# the PostgreSQL 15 tree ($WORK/pgroot: the server binaries copied, everything else
# linked), so the cluster runs exactly this build even when someone else runs
# `make install` meanwhile, and the system-wide installation is left alone. PostgreSQL
# finds its lib and share directories relative to its own binary.
SYS_BIN=/usr/lib/postgresql/15/bin
SYS_LIB=$(pg_config --pkglibdir)
SYS_SHARE=$(pg_config --sharedir)
PGROOT="$WORK/pgroot"
PRIV_BIN="$PGROOT$SYS_BIN" PRIV_LIB="$PGROOT$SYS_LIB" PRIV_SHARE="$PGROOT$SYS_SHARE"
if [ "$BUILD" = 1 ]; then
  echo "== building the extension (a copy of the sources in $WORK/ext)"
  mkdir -p "$WORK/ext"
  tar -C "$ROOT" --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - Makefile attendance.control sql src \
    | tar -C "$WORK/ext" -xf -
  make -C "$WORK/ext" -j2 >"$WORK/make.log" 2>&1 && make -C "$WORK/ext" install DESTDIR="$WORK/stage" >>"$WORK/make.log" 2>&1 ||
    { tail -30 "$WORK/make.log"; echo "bench/run.sh: the extension does not build" >&2; exit 1; }
  # Release at -O2 (the extension's optimisation level; GCC 12 at -O3 reports false
  # -Wrestrict positives that -Werror turns into errors).
  echo "== building the proxy (Release, -O2) in $BUILD_DIR"
  if cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
       >"$WORK/cmake.log" 2>&1 &&
     cmake --build "$BUILD_DIR" -j2 --target attendance-proxy >>"$WORK/cmake.log" 2>&1; then
    :
  else
    echo "   the proxy does not build: HTTP ingestion will not be measured (see $WORK/cmake.log)"
    rm -f "$BUILD_DIR/attendance-proxy"
  fi
fi
mkdir -p "$PRIV_BIN" "$PRIV_LIB" "$PRIV_SHARE/extension"
cp "$SYS_BIN/postgres" "$SYS_BIN/initdb" "$SYS_BIN/pg_ctl" "$PRIV_BIN/"
for f in "$SYS_LIB"/*; do [ "$(basename "$f")" = attendance.so ] || ln -sfn "$f" "$PRIV_LIB/"; done
for f in "$SYS_SHARE"/*; do [ "$(basename "$f")" = extension ] || ln -sfn "$f" "$PRIV_SHARE/"; done
for f in "$SYS_SHARE"/extension/*; do
  case "$(basename "$f")" in attendance.control|attendance--*) ;; *) ln -sfn "$f" "$PRIV_SHARE/extension/" ;; esac
done
if [ "$BUILD" = 1 ]; then
  cp "$WORK/stage$SYS_LIB/attendance.so" "$PRIV_LIB/"
  cp "$WORK/stage$SYS_SHARE"/extension/attendance* "$PRIV_SHARE/extension/"
else
  cp "$SYS_LIB/attendance.so" "$PRIV_LIB/"
  cp "$SYS_SHARE"/extension/attendance* "$PRIV_SHARE/extension/"
fi
chmod -R a+rX "$PGROOT"
export BENCH_PKGLIBDIR="$PRIV_LIB"
PROXY=""
[ -x "$BUILD_DIR/attendance-proxy" ] && PROXY="$BUILD_DIR/attendance-proxy"
echo "== building the load generator"
g++ -std=c++20 -O2 -pthread "$ROOT/bench/loadgen.cpp" -o "$WORK/loadgen"
# The Node.js peer (bench/node_peer): LiveKit's server SDK needs Node.js 19 or later and
# its packages from the npm registry (versions pinned by package-lock.json).
NODE_PEER=""
if command -v node >/dev/null && command -v npm >/dev/null &&
   [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 19 ]; then
  echo "== installing the Node.js peer (npm ci) in $WORK/node_peer"
  mkdir -p "$WORK/node_peer"
  cp bench/node_peer/package.json bench/node_peer/package-lock.json bench/node_peer/server.js \
     bench/node_peer/schema.sql "$WORK/node_peer/"
  if (cd "$WORK/node_peer" && npm ci --no-audit --no-fund >"$WORK/npm.log" 2>&1); then
    NODE_PEER="$WORK/node_peer"
  else
    echo "   npm ci failed: the Node.js peer will not be measured (see $WORK/npm.log)"
  fi
else
  echo "   no Node.js 19 or later: the Node.js peer will not be measured"
fi

# ---- the throwaway cluster -------------------------------------------------------------------
# The same settings for all three variants. pg.sh adds fsync = off (so every variant
# measures CPU work, not the disk) and preloads the extension (its scheduler runs, and
# its fold derives the live rows at the default attendance.fold_interval of 500 ms).
# track_commit_timestamp times the live-row lag (commit of a webhook to commit of its row).
PG_SETTINGS=(
  "shared_preload_libraries = 'attendance,pg_stat_statements'"
  "shared_buffers = '1GB'"
  "max_wal_size = '8GB'"
  "checkpoint_timeout = '30min'"
  "jit = off"
  "attendance.calculation_delay = '7d'"
  "attendance.reconcile_interval = '7d'"
  "attendance.webhook_log_level = 'off'"
  "track_commit_timestamp = on"
)
PG_BIN="$PRIV_BIN"
PGDIR="$WORK/pg"
cleanup() {
  local rc=$?
  pg_stop "$PGDIR"
  # Keep results.json and the logs; the cluster (tens of GB at 10^7 events) goes.
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    rm -rf "$PGDIR" "$PGROOT" "$WORK/stage" "$WORK/ext" "$WORK/node_peer" "$WORK/proxy-build" "$WORK"/*.csv "$WORK"/*.tsv "$WORK"/perf-*.data
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
pg_start "$PGDIR" "$PG_PORT" "${PG_SETTINGS[@]}"
echo "== PostgreSQL on port $PGPORT; the proxy on $HTTP_PORT, the Node.js peer on $NODE_PORT"

ARGS=(--workdir "$WORK" --http-port "$HTTP_PORT" --loadgen "$WORK/loadgen" --max-log "$MAX_LOG")
[ -n "$PROXY" ] && ARGS+=(--proxy "$PROXY")
[ -n "$PERF" ] && ARGS+=(--perf "$PERF")
[ -n "$PHASES" ] && ARGS+=(--phases "$PHASES")
[ -n "$REPS" ] && ARGS+=(--reps "$REPS")
[ -n "$NODE_PEER" ] && ARGS+=(--node "$NODE_PEER" --node-port "$NODE_PORT")
if [ "$QUICK" = 1 ]; then
  ARGS+=(--reps 1 --large-reps 1 --ingest-seconds 3 --http-seconds 3 --stream-sessions 2500 --growth-webhooks 2000 --lag-seconds 5
         --max-log 100000)
fi
python3 bench/bench.py "${ARGS[@]}"
python3 bench/report.py "$WORK/results.json" --command "$COMMAND" --out "$REPORT"
echo "== wrote $REPORT (raw results: $WORK/results.json)"
