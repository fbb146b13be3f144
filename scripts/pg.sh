# Sourced by the scripts: a throwaway PostgreSQL 15 cluster run by an unprivileged
# user (PostgreSQL refuses to run as root).
#   pg_start DIR PORT [extra postgresql.conf lines...]   pg_stop DIR
#   free_port                                            prints a free TCP port
# PORT may be empty: then a free port is picked (bind probe), and if another program
# takes it before the server binds it, the start is retried on another free port.
# Exports PGHOST (the socket directory), PGPORT, PGUSER, PGDATABASE for clients.
# Reads PG_BIN (default /usr/lib/postgresql/15/bin) and PG_OS_USER (default postgres).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_OS_USER=${PG_OS_USER:-postgres}

# Runs a command as the cluster's user. From a neutral directory: the programs of
# PostgreSQL look up their own path and warn when the caller's directory (e.g. root's
# home) is not readable by that user.
pg_as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

# A TCP port on 127.0.0.1 that nothing listens on now: the kernel's choice for port 0.
free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

pg_start() {
  local dir=$1 port=$2
  shift 2
  if [ "$(id -u)" -eq 0 ] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown "$PG_OS_USER" "$dir"
  chmod 700 "$dir"
  pg_as_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "shared_preload_libraries = 'attendance'"
    echo "attendance.database_name = 'postgres'"
    echo "max_connections = 100"
    echo "fsync = off"
    echo "log_line_prefix = '%m [%p] %q%a '"
    local line
    for line in "$@"; do echo "$line"; done
  } | pg_as_user tee -a "$dir/data/postgresql.conf" >/dev/null
  local attempt try_port seen
  for attempt in 1 2 3 4 5; do
    try_port=${port:-$(free_port)}
    # The last "port" line wins; it stays in the file so that a restart with plain
    # pg_ctl (as the end-to-end tests do) comes back on the same port.
    echo "port = $try_port" | pg_as_user tee -a "$dir/data/postgresql.conf" >/dev/null
    seen=0
    if [ -f "$dir/server.log" ]; then seen=$(wc -l <"$dir/server.log"); fi
    if pg_as_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null; then
      export PGHOST="$dir" PGPORT="$try_port" PGUSER=postgres PGDATABASE=postgres
      return 0
    fi
    if [ -z "$port" ] && tail -n +"$((seen + 1))" "$dir/server.log" | grep -q 'Address already in use'; then
      echo "port $try_port was taken meanwhile; trying another free port" >&2
      continue
    fi
    break
  done
  cat "$dir/server.log" >&2
  return 1
}

pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && pg_as_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  return 0
}
