# Sourced by the scripts: a throwaway PostgreSQL 15 cluster run by an unprivileged
# user (PostgreSQL refuses to run as root).
#   pg_start DIR PORT [extra postgresql.conf lines...]   pg_stop DIR
# Exports PGHOST (the socket directory), PGPORT, PGUSER, PGDATABASE for clients.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_OS_USER=${PG_OS_USER:-postgres}

pg_as_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
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
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "shared_preload_libraries = 'attendance'"
    echo "attendance.database_name = 'postgres'"
    echo "max_connections = 100"
    echo "fsync = off"
    echo "log_line_prefix = '%m [%p] %q%a '"
    local line
    for line in "$@"; do echo "$line"; done
  } | pg_as_user tee -a "$dir/data/postgresql.conf" >/dev/null
  pg_as_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    { cat "$dir/server.log" >&2; return 1; }
  export PGHOST="$dir" PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
}

pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && pg_as_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  return 0
}
