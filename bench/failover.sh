#!/usr/bin/env bash
# Measures failover under load (bench/failover.py): builds the programs, installs the
# extension, runs 3 failovers of a pg_auto_failover pair and prints the medians.
#   bench/failover.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target attendance-proxy >/dev/null
make -j2 >/dev/null && make install >/dev/null
exec bench/failover.py --build build "$@"
