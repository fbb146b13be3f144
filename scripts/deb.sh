#!/usr/bin/env bash
# Builds the Debian packages postgresql-15-attendance (the extension, built with
# pg_buildext) and attendance-tools (attendance-proxy with its systemd unit, and
# attendancectl) with dpkg-buildpackage -b -uc -us, and puts them in dist/.
#   scripts/deb.sh             build only
#   scripts/deb.sh --install   build, then install both packages (as root)
# dpkg-buildpackage writes next to the source directory, so the build runs in a scratch
# copy of the source that is removed afterwards (and kept, and named, after a failure).
# The same source builds the same packages: when dist/ holds the packages of exactly this
# source (the SHA-256 of the copied tree and DEB_BUILD_OPTIONS, in dist/.built-from), they
# are used again instead of built again (remove dist/ to build anyway).
# Long steps print a progress line every 30 s and name their log.
# Environment (optional): ATTENDANCE_DEB_DIR, where to put the packages (default dist/);
# DEB_BUILD_OPTIONS, passed on (parallel= defaults to the number of CPUs).
set -euo pipefail
umask 022  # the packages' directories must be 0755 (dpkg applies them to /usr and the like)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
INSTALL=0
[ "${1:-}" = "--install" ] && INSTALL=1
OUT=${ATTENDANCE_DEB_DIR:-$ROOT/dist}
. scripts/progress.sh

scripts/deps.sh
# The source tree the packages are built from: everything but version control, build
# trees (the install script in sql/generated among them: the package's make builds it from
# sql/src), built objects and packages.
source_tree() {  # extra tar options...
  tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./build-asan --exclude=./build-release \
    --exclude=./sql/generated \
    --exclude=./dist --exclude=./results --exclude=./regression.diffs --exclude=./regression.out \
    --exclude=./test/isolation/output_iso --exclude=./bench/node_peer/node_modules \
    --exclude='./src/*.o' --exclude='./src/*.d' --exclude='*.so' --exclude='*.bc' --exclude=__pycache__ \
    "$@" -cf - .
}
FROM="sha256 $(source_tree --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 | sha256sum | cut -d' ' -f1) DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-}"

debs=()
if [ -f "$OUT/.built-from" ] && [ "$(head -1 "$OUT/.built-from")" = "$FROM" ]; then
  while read -r f; do debs+=("$OUT/$f"); done < <(tail -n +2 "$OUT/.built-from")
  for f in "${debs[@]}"; do [ -f "$f" ] || { debs=(); break; }; done
fi
if [ ${#debs[@]} -gt 0 ]; then
  echo "the packages of this very source are in $OUT already (built from ${FROM%% DEB*}); not building them again"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/attendance-deb.XXXXXX")
  mkdir "$WORK/attendance"
  source_tree | tar -C "$WORK/attendance" -xf -
  build() (
    cd "$WORK/attendance" &&
      DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -b -uc -us
  )
  if ! run_logged "building the packages with dpkg-buildpackage (a few minutes)" "$WORK/build.log" build; then
    echo "the package build failed; its log and tree are kept in $WORK" >&2
    exit 1
  fi
  mkdir -p "$OUT"
  # this source's packages replace those of an earlier one
  rm -f "$OUT/.built-from" "$OUT"/postgresql-15-attendance*_*.deb "$OUT"/attendance-tools*_*.deb
  for f in "$WORK"/*.deb; do
    mv "$f" "$OUT/"
    debs+=("$OUT/${f##*/}")
  done
  { echo "$FROM"; for f in "${debs[@]}"; do echo "${f##*/}"; done; } >"$OUT/.built-from"
  rm -rf "$WORK"
fi
printf '%s\n' "${debs[@]}"
if [ $INSTALL -eq 1 ]; then
  install=()
  for f in "${debs[@]}"; do
    case ${f##*/} in postgresql-15-attendance_*.deb | attendance-tools_*.deb) install+=("$f") ;; esac
  done
  LOG=$(mktemp "${TMPDIR:-/tmp}/attendance-deb-install.XXXXXX.log")
  # --reinstall: a package of the same version built from changed source replaces the
  # installed one (apt would keep it otherwise)
  run_logged "installing ${install[*]##*/}" "$LOG" \
    env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install --reinstall -y -qq \
    --no-install-recommends "${install[@]}"
  rm -f "$LOG"
  echo "installed: $(dpkg-query -W -f='${Package} ${Version}, ' postgresql-15-attendance attendance-tools | sed 's/, $//')"
  echo "remove them with: apt-get purge postgresql-15-attendance attendance-tools"
fi
