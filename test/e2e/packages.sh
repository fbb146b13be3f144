# Sourced by test_packages.sh and test_readme.sh, which install the project's Debian
# packages system-wide: how they leave the machine as they found it.
#   packages_save DIR       saves the packages found installed (dpkg-repack) into DIR, with
#                           their versions and files' checksums, auto/manual marks and the
#                           unit's enablement (and whether it runs, under systemd)
#   packages_put_back DIR   purges the packages, then installs again what DIR saved, so
#                           marked and enabled as it was
#   packages_as_saved DIR   true when the machine holds exactly what DIR saved
#   packages_found DIR      the names DIR saved, one a line (nothing when none was installed)
# The apt calls wait up to 5 minutes for the package lock, ask nothing and log to DIR.

PACKAGES=(attendance-tools postgresql-15-attendance)
UNIT_WANTS=/etc/systemd/system/multi-user.target.wants/attendance-proxy.service
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
known() { dpkg-query -W -f='${Status}' "$1" >/dev/null 2>&1 && ! dpkg-query -W -f='${Status}' "$1" | grep -q "not-installed"; }

# For each installed package of PACKAGES: its name and version, then the checksum of each
# of its files; then its auto/manual mark and whether its unit is enabled.
packages_state() {
  local p f
  for p in "${PACKAGES[@]}"; do
    installed "$p" || continue
    dpkg-query -W -f='${Package} ${Version}\n' "$p"
    dpkg -L "$p" | while read -r f; do if [ -f "$f" ] && [ ! -L "$f" ]; then md5sum "$f"; fi; done
    if apt-mark showauto "$p" | grep -qx "$p"; then echo "$p auto"; else echo "$p manual"; fi
  done
  if [ -L "$UNIT_WANTS" ]; then echo "unit enabled"; fi
}

packages_found() { cat "$1/packages" 2>/dev/null; }

packages_save() {
  local dir=$1 p found=()
  mkdir -p "$dir"
  for p in "${PACKAGES[@]}"; do if installed "$p"; then found+=("$p"); fi; done
  packages_state >"$dir/state"
  if [ ${#found[@]} -eq 0 ]; then : >"$dir/packages"; return 0; fi
  mkdir -p "$dir/debs"
  (cd "$dir/debs" && dpkg-repack "${found[@]}") >"$dir/repack.log" 2>&1 || return 1
  apt-mark showauto "${found[@]}" >"$dir/auto"
  if [ -d /run/systemd/system ] && systemctl -q is-active attendance-proxy 2>/dev/null; then touch "$dir/active"; fi
  printf '%s\n' "${found[@]}" >"$dir/packages"
}

packages_put_back() {
  local dir=$1 p purge=()
  for p in "${PACKAGES[@]}"; do if known "$p"; then purge+=("$p"); fi; done
  if [ ${#purge[@]} -gt 0 ]; then "${APT[@]}" purge "${purge[@]}" >>"$dir/put-back.log" 2>&1 || return 1; fi
  [ -s "$dir/packages" ] || return 0
  "${APT[@]}" install --reinstall --allow-downgrades --no-install-recommends "$dir"/debs/*.deb \
    >>"$dir/put-back.log" 2>&1 || return 1
  if [ -s "$dir/auto" ]; then xargs apt-mark auto <"$dir/auto" >>"$dir/put-back.log" 2>&1 || return 1; fi
  if grep -qx 'unit enabled' "$dir/state"; then systemctl enable attendance-proxy >>"$dir/put-back.log" 2>&1 || return 1; fi
  if [ -f "$dir/active" ]; then systemctl start attendance-proxy >>"$dir/put-back.log" 2>&1 || return 1; fi
  return 0
}

packages_as_saved() {
  local dir=$1
  packages_state >"$dir/state-now"
  cmp -s "$dir/state" "$dir/state-now"
}
