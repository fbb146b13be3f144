# Sourced by the scripts: runs a long step with its output in a log file, and says so.
#   run_logged WHAT LOG COMMAND [ARG]...
# Prints "WHAT (log: LOG)", then every 30 s a progress line with the time so far and the
# log's last short line, and at the end how long it took. On failure it prints the log's last
# lines and where the whole log is. Returns the command's exit status.
# The command runs in the foreground (Ctrl-C reaches it as usual); the progress lines come
# from a small background loop that ends with the command, or with this script.

run_logged() {
  local what=$1 log=$2
  shift 2
  local started=$SECONDS rc=0 ticker parent=$$
  echo "$what (log: $log)"
  (
    n=0
    while kill -0 "$parent" 2>/dev/null; do
      sleep 1
      n=$((n + 1))
      if [ $((n % 30)) -eq 0 ]; then
        # the log's last short line (a compiler's command line says little)
        printf '  ... %d s: %s\n' "$n" \
          "$(tail -n 30 "$log" 2>/dev/null | tr -cd '[:print:]\n' | awk 'length < 120' | tail -n 1 | cut -c1-90)"
      fi
    done
  ) &
  ticker=$!
  "$@" >>"$log" 2>&1 </dev/null || rc=$?
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null || true
  if [ $rc -eq 0 ]; then
    printf '  done in %d s\n' "$((SECONDS - started))"
  else
    tail -n 25 "$log" >&2
    echo "failed after $((SECONDS - started)) s (exit status $rc); the whole log: $log" >&2
  fi
  return $rc
}
