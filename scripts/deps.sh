#!/usr/bin/env bash
# Installs what building and testing need, from Debian's packages (Debian 12, as root).
# Does nothing when everything is already there.
# Arguments: further packages a single test needs (test_timeline.py: chromium), installed
# the same way; the default run does not install them.
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang-format clang libclang-rt-14-dev
  postgresql-15 postgresql-server-dev-15 libpq-dev
  nlohmann-json3-dev libssl-dev libboost-dev libcpp-httplib-dev libcli11-dev libgtest-dev
  python3 python3-psycopg curl jq
  debhelper postgresql-server-dev-all
  postgresql-15-auto-failover pg-auto-failover-cli
  "$@"
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster of its own; ours are throwaway ones.
export PATH="${PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"
command -v pg_config >/dev/null
