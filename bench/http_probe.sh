#!/usr/bin/env bash
# Builds attendance-proxy, the load generator and the two probe servers (libmicrohttpd,
# cpp-httplib) under /tmp and runs bench/http_probe.py: the measurement that chose the
# proxy's HTTP library (docs/proxy.md, docs/performance.md). As root on Debian 12
# (installs libmicrohttpd-dev and libcpp-httplib-dev, which only this comparison needs).
#   bench/http_probe.sh [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
scripts/deps.sh
if [ "$(id -u)" -eq 0 ]; then
  for p in libmicrohttpd-dev libcpp-httplib-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  done
fi
WORK=$(mktemp -d /tmp/attendance-http-probe-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "== building in $WORK" >&2
cmake -S "$ROOT" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1
cmake --build "$WORK/build" -j2 --target attendance-proxy >>"$WORK/cmake.log" 2>&1
g++ -std=c++20 -O2 -pthread "$ROOT/bench/loadgen.cpp" -o "$WORK/loadgen"
g++ -std=c++20 -O2 -Wall -Wextra -Werror "$ROOT/bench/http_probe/probe_mhd.cpp" -o "$WORK/probe_mhd" -lmicrohttpd
g++ -std=c++20 -O2 -Wall -Wextra "$ROOT/bench/http_probe/probe_httplib.cpp" -o "$WORK/probe_httplib" -lcpp-httplib -pthread
python3 bench/http_probe.py --loadgen "$WORK/loadgen" \
  --server "attendance-proxy (Boost.Beast)=$WORK/build/attendance-proxy --port {port} --conninfo 'host=127.0.0.1 port=1'" \
  --server "libmicrohttpd=$WORK/probe_mhd {port}" \
  --server "cpp-httplib=$WORK/probe_httplib {port}" "$@"
