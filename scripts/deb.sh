#!/usr/bin/env bash
# Builds the Debian packages postgresql-15-attendance (the extension, built with
# pg_buildext) and attendance-tools (attendance-proxy with its systemd unit, and
# attendancectl) with dpkg-buildpackage -b -uc -us, and puts them in dist/.
#   scripts/deb.sh             build only
#   scripts/deb.sh --install   build, then install both packages (as root)
# dpkg-buildpackage writes next to the source directory, so the build runs in a scratch
# copy of the source that is removed afterwards (and kept, and named, after a failure).
# Environment (optional): ATTENDANCE_DEB_DIR, where to put the packages (default dist/).
set -euo pipefail
umask 022  # the packages' directories must be 0755 (dpkg applies them to /usr and the like)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
INSTALL=0
[ "${1:-}" = "--install" ] && INSTALL=1
OUT=${ATTENDANCE_DEB_DIR:-$ROOT/dist}

scripts/deps.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/attendance-deb.XXXXXX")
mkdir "$WORK/attendance"
tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./build-asan --exclude=./dist \
  --exclude=./results --exclude=./regression.diffs --exclude=./regression.out \
  --exclude='./src/*.o' --exclude='./src/*.d' --exclude='*.so' --exclude=__pycache__ -cf - . |
  tar -C "$WORK/attendance" -xf -
echo "building the packages (log: $WORK/build.log)"
if ! (cd "$WORK/attendance" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
      dpkg-buildpackage -b -uc -us) >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  echo "the package build failed; its log and tree are kept in $WORK" >&2
  exit 1
fi
mkdir -p "$OUT"
mv "$WORK"/*.deb "$OUT"/
rm -rf "$WORK"
ls -1 "$OUT"/*.deb
if [ $INSTALL -eq 1 ]; then
  apt-get install -y --no-install-recommends "$OUT"/postgresql-15-attendance_*.deb "$OUT"/attendance-tools_*.deb
fi
