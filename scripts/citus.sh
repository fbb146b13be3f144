#!/usr/bin/env bash
# Builds and installs Citus 13.2.2 for the PostgreSQL that pg_config names (PG_BIN, as
# the other scripts). Debian 12 packages no Citus; it is built from the release's source
# tarball with one compatibility patch for PostgreSQL 15.18 (docs/scaling.md, "Citus").
#
#   scripts/citus.sh            build (or take from the cache) and install; prints the
#                               installed version
#   scripts/citus.sh --check    exit 0 when this very build is installed, 1 otherwise
#
# The source: vendor/citus/ in the checkout (its README says what it is), or the directory
# ATTENDANCE_CITUS_VENDOR names; it holds citus-13.2.2.tar.gz, its .sha256 and
# citus-13.2.2-pg15.patch. The tarball's checksum is verified before anything is unpacked.
#
# The build is cached outside the checkout (ATTENDANCE_CITUS_CACHE, default
# /var/cache/attendance/citus): a staged install (make install DESTDIR=...) under a key
# made of the tarball's and the patch's checksums and the server's version, so a later
# run only copies the files (seconds). The first build took about 3 minutes on 2 cores here.
# Installs the Debian build dependencies itself (scripts/deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=13.2.2
export PATH="${PG_BIN:-/usr/lib/postgresql/15/bin}:$PATH"

vendor=${ATTENDANCE_CITUS_VENDOR:-$ROOT/vendor/citus}
if [ ! -f "$vendor/citus-$VERSION.tar.gz" ]; then
  echo "citus.sh: citus-$VERSION.tar.gz not found (set ATTENDANCE_CITUS_VENDOR to its directory)" >&2
  exit 2
fi
tarball=$vendor/citus-$VERSION.tar.gz
patchfile=$vendor/citus-$VERSION-pg15.patch

PG_CONFIG=$(command -v pg_config || true)
[ -n "$PG_CONFIG" ] || { echo "citus.sh: pg_config not found (scripts/deps.sh installs it)" >&2; exit 2; }
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)

key=$({
  sha256sum "$tarball" "$patchfile" | cut -d' ' -f1
  "$PG_CONFIG" --version
} | sha256sum | cut -c1-16)
cache=${ATTENDANCE_CITUS_CACHE:-/var/cache/attendance/citus}/$VERSION-$key
stamp=$pkglibdir/citus.attendance-build

installed() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && [ -f "$pkglibdir/citus.so" ] &&
  [ -f "$sharedir/extension/citus.control" ]; }

if [ "${1:-}" = --check ]; then installed; exit; fi

# Build dependencies (and, with them, the libraries citus.so links against).
"$ROOT/scripts/deps.sh" libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev \
  libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev autoconf flex

if installed; then
  echo "Citus $VERSION is installed ($pkglibdir/citus.so)"
  exit 0
fi

if [ ! -f "$cache/done" ]; then
  . "$ROOT/scripts/progress.sh"
  # the checksum file names the tarball; check it against the file actually read
  expected=$(awk '{print $1; exit}' "$vendor/citus-$VERSION.tar.gz.sha256")
  actual=$(sha256sum "$tarball" | cut -d' ' -f1)
  if [ "$expected" != "$actual" ]; then
    echo "citus.sh: checksum mismatch for $tarball: expected $expected, got $actual" >&2
    exit 1
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/attendance-citus-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$tarball" -C "$work"
  src=$work/citus-$VERSION
  patch -d "$src" -p1 --forward <"$patchfile" >/dev/null
  build() {
    cd "$src" &&
      ./configure PG_CONFIG="$PG_CONFIG" &&
      make -j"$(nproc)" &&
      rm -rf "$work/stage" &&
      make install DESTDIR="$work/stage"
  }
  run_logged "building Citus $VERSION from source (first time only: a few minutes)" \
    "$work/build.log" build
  mkdir -p "${cache%/*}"
  rm -rf "$cache.tmp"
  mv "$work/stage" "$cache.tmp"
  touch "$cache.tmp/done"
  rm -rf "$cache"
  mv "$cache.tmp" "$cache"
fi

# Only the server's libraries and the extension's files (headers and bitcode are not
# needed), found wherever the staged install put them: the same build serves every
# installation of this server version.
so=$(find "$cache" -name citus.so -path '*/lib/*' | head -1)
control=$(find "$cache" -name citus.control | head -1)
[ -n "$so" ] && [ -n "$control" ] || { echo "citus.sh: the cached build in $cache is incomplete; remove it" >&2; exit 1; }
for f in "${so%/*}"/citus*.so; do install -m 755 "$f" "$pkglibdir/"; done
install -m 644 "${control%/*}"/citus* "$sharedir/extension/"
echo "$key" >"$stamp"
echo "Citus $VERSION installed ($pkglibdir/citus.so)"
