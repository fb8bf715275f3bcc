#!/usr/bin/env bash
# Installs, starts and stops a throwaway PostgreSQL server on loopback for the tests.
#
#   scripts/postgres.sh install          # apt-get install postgresql unless an initdb exists
#   eval "$(scripts/postgres.sh start)"  # start (or reuse) a server; exports ORDER_FSM_POSTGRES_URL
#   scripts/postgres.sh stop             # stop the server this script started
#
# Idempotent: `start` reuses a running server, `stop` without one does nothing. Everything
# but the export line goes to stderr.
#
# The cluster lives in target/services/postgres/ (data/ = the cluster, log = server log, the
# Unix socket sits next to them) and is ours alone: the Debian package's default cluster
# (port 5432) is neither used nor needed. PostgreSQL refuses to run as root, so when this
# script runs as root the cluster is owned by and run as the `postgres` user (created by the
# Debian package). That user must be able to traverse every directory above
# target/services/postgres/, so `start` adds o+x (traverse only, not read) to each ancestor
# directory the postgres user cannot enter, logging every change; for a clone under a
# private home such as /root this opens traversal of that directory to all users. The
# server listens on 127.0.0.1 only, on a free random port, with `trust` authentication.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/service.sh
source "$root/scripts/lib/service.sh"
state="$root/target/services"
pid_file="$state/postgres.pid"
port_file="$state/postgres.port"
dir="$state/postgres"
data="$dir/data"
log_file="$dir/log"
database=order_fsm
pg_user=postgres

log() { echo "postgres.sh: $*" >&2; }

# bindir: the newest /usr/lib/postgresql/N/bin (Debian's versioned server binaries).
bindir() {
  local initdb
  initdb="$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)"
  [[ -x "$initdb" ]] || return 1
  dirname "$initdb"
}

# as_pg CMD...: runs CMD as the postgres user when we are root (the server refuses root),
# else as ourselves. Runs from / so the postgres user never trips over an unreadable cwd.
as_pg() {
  if [[ "$(id -u)" -eq 0 ]]; then
    (cd / && runuser -u "$pg_user" -- "$@")
  else
    (cd / && "$@")
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

answers() {
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1
}

# server_up: whether a postmaster is running on our data directory.
server_up() {
  [[ -f "$data/postmaster.pid" ]] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# record: writes the postmaster PID (line 1 of postmaster.pid) and port (line 4) to $state.
record() {
  sed -n 1p "$data/postmaster.pid" >"$pid_file"
  sed -n 4p "$data/postmaster.pid" >"$port_file"
}

install() {
  local b
  if b="$(bindir)"; then
    log "postgresql already installed: $b"
    return
  fi
  log "installing postgresql from apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  # The package creates and may auto-start its own cluster (port 5432); we do not use it.
  service postgresql stop >/dev/null 2>&1 || true
  b="$(bindir)" || { log "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"; exit 1; }
  log "postgresql installed: $b"
}

# prepare: creates $dir owned by the postgres user and lets that user reach it.
prepare() {
  mkdir -p "$dir"
  if [[ "$(id -u)" -ne 0 ]]; then
    chmod 700 "$dir"
    return
  fi
  id "$pg_user" >/dev/null 2>&1 || { log "no '$pg_user' user; run: $0 install"; exit 1; }
  chown "$pg_user:" "$dir"
  chmod 700 "$dir"
  if ! as_pg test -x "$dir"; then
    # Top-down, so an untraversable ancestor does not make its descendants look closed.
    local d path=""
    local -a parts
    IFS=/ read -r -a parts <<<"${state#/}"
    for d in "" "${parts[@]}"; do
      path="${path%/}/$d"
      if ! as_pg test -x "$path"; then
        chmod o+x "$path"
        log "chmod o+x $path (so the $pg_user user can reach $dir)"
      fi
    done
  fi
}

start() {
  mkdir -p "$state"
  bin="$(bindir)" || { install; bin="$(bindir)"; }
  if [[ -d "$data" ]] && server_up; then
    local port
    port="$(sed -n 4p "$data/postmaster.pid")"
    if [[ -n "$port" ]] && answers "$port"; then
      record
      log "postgres already running (pid $(cat "$pid_file"), port $port)"
      echo "export ORDER_FSM_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/$database"
      return
    fi
    log "postgres on $data runs but does not answer; restarting it"
    as_pg "$bin/pg_ctl" -D "$data" -m fast stop >&2 || true
  fi
  prepare
  if [[ ! -f "$data/PG_VERSION" ]]; then
    rm -rf "$data" # a half-made directory from an interrupted initdb
    log "initialising a cluster in $data"
    as_pg "$bin/initdb" -D "$data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
      log "initdb failed; last lines of $dir/initdb.log:"
      tail -20 "$dir/initdb.log" >&2 || true
      exit 1
    }
  fi
  local port socket_dir="$dir"
  port="$(free_port)"
  # A Unix socket path is limited to 107 bytes; on a deep checkout go TCP-only.
  if (( ${#socket_dir} + 16 > 107 )); then socket_dir=""; fi
  # fsync/synchronous_commit/full_page_writes off: fast but unsafe on a crash. For
  # throwaway test clusters only, never for data anyone wants to keep.
  if ! as_pg "$bin/pg_ctl" -D "$data" -l "$log_file" -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k '$socket_dir' -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null 2>&1; then
    log "postgres did not start; last lines of $log_file:"
    tail -20 "$log_file" >&2 || true
    exit 1
  fi
  local ok=""
  for _ in $(seq 1 300); do
    if answers "$port"; then ok=1; break; fi
    sleep 0.1
  done
  if [[ -z "$ok" ]]; then
    log "postgres did not answer on 127.0.0.1:$port within 30 s; last lines of $log_file:"
    tail -20 "$log_file" >&2 || true
    exit 1
  fi
  record
  local psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres)
  if [[ "$("${psql[@]}" -tAc "select 1 from pg_database where datname='$database'")" != 1 ]]; then
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$database" >&2
    log "created database $database"
  fi
  log "postgres listening on 127.0.0.1:$port (pid $(cat "$pid_file"), log $log_file)"
  echo "export ORDER_FSM_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/$database"
}

stop() {
  if bin="$(bindir)" && [[ -d "$data" ]] && server_up; then
    local pid
    pid="$(sed -n 1p "$data/postmaster.pid")"
    if as_pg "$bin/pg_ctl" -D "$data" -m fast -t 30 stop >/dev/null 2>&1; then
      rm -f "$pid_file" "$port_file"
      log "postgres stopped (pid $pid)"
      return
    fi
    log "pg_ctl stop failed; stopping by PID"
  fi
  service_stop postgres "$pid_file" "$port_file"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
