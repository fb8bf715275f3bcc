# PID-file bookkeeping shared by the service scripts (sourced, not run).

# service_running PIDFILE: whether the process named in PIDFILE is alive.
service_running() {
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# service_stop NAME PIDFILE [FILE...]: stops the process (TERM, up to 5 s, then KILL) and
# removes PIDFILE and the other files.
service_stop() {
  local name=$1 pid_file=$2
  shift 2
  if service_running "$pid_file"; then
    local pid
    pid="$(cat "$pid_file")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    echo "$name stopped (pid $pid)" >&2
  else
    echo "$name not running" >&2
  fi
  rm -f "$pid_file" "$@"
}
