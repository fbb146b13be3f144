#!/usr/bin/env bash
# Installs what building and testing need, from Debian's packages (Debian 12, as root).
# Does nothing when everything is already there.
# Arguments: further packages a single test needs (test_timeline.py: chromium), installed
# the same way; the default run does not install them.
#
# Quiet: apt's and debconf's output goes to a log (named on the first line, with a
# progress line every 30 s), and nothing asks a question (DEBIAN_FRONTEND=noninteractive).
#
# Debian's postgresql-15 package creates a cluster of its own, 15/main on port 5432, and
# on a machine run by systemd starts it at once and at every boot. The scripts need no
# such cluster (they run throwaway clusters of their own on free ports), so when this
# script is the one that installs postgresql-15 it tells postgresql-common not to create
# it, for that one install (a drop-in in /etc/postgresql-common/createcluster.d, removed
# afterwards). A cluster that exists already, 15/main or any other, is never touched.
# Create Debian's default cluster later with: pg_createcluster 15 main --start
set -euo pipefail
packages=(
  build-essential cmake pkg-config clang-format clang libclang-rt-14-dev
  postgresql-15 postgresql-server-dev-15 libpq-dev
  nlohmann-json3-dev libssl-dev libboost-dev libcpp-httplib-dev libcli11-dev libgtest-dev
  python3 python3-psycopg curl jq
  debhelper postgresql-server-dev-all dpkg-repack
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
  . "$(dirname "$0")/progress.sh"
  export DEBIAN_FRONTEND=noninteractive
  LOG=$(mktemp "${TMPDIR:-/tmp}/attendance-deps.XXXXXX.log")
  NO_MAIN=/etc/postgresql-common/createcluster.d/attendance-deps-no-main-cluster.conf
  CREATED_DIR=0
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]] && ! ls /etc/postgresql/15/*/postgresql.conf >/dev/null 2>&1; then
    [ -d "${NO_MAIN%/*}" ] || { mkdir -p "${NO_MAIN%/*}"; CREATED_DIR=1; }
    echo "create_main_cluster = false" >"$NO_MAIN"
    # (and removed whatever happens)
    trap 'rm -f "$NO_MAIN"; [ $CREATED_DIR -eq 0 ] || rmdir "${NO_MAIN%/*}" 2>/dev/null || true' EXIT
    echo "postgresql-15 is installed without Debian's default cluster 15/main (the scripts run throwaway clusters of their own); to have it: pg_createcluster 15 main --start"
  fi
  install_missing() {
    apt-get -o DPkg::Lock::Timeout=900 update -qq &&
      apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}"
  }
  run_logged "installing ${#missing[@]} Debian packages: ${missing[*]}" "$LOG" install_missing
  rm -f "$LOG"
fi
export PATH="${PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"
command -v pg_config >/dev/null
