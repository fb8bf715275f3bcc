#!/usr/bin/env bash
# Installs, starts and stops osmem-server (an in-memory Elasticsearch-API server, PyPI
# `osmem-server`) on loopback for the tests.
#
#   scripts/elastic.sh install          # pip install osmem-server unless it is importable
#   eval "$(scripts/elastic.sh start)"  # start (or reuse) a server; exports ORDER_FSM_ES_URL
#   scripts/elastic.sh stop             # stop the server this script started (by PID)
#
# Idempotent: `start` reuses a running server, `stop` without one does nothing. Everything
# but the export line goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/service.sh
source "$root/scripts/lib/service.sh"
state="$root/target/services"
pid_file="$state/elastic.pid"
url_file="$state/elastic.url"
log_file="$state/elastic.log"
python="${PYTHON:-python3}"

log() { echo "elastic.sh: $*" >&2; }

running() {
  service_running "$pid_file"
}

answers() {
  "$python" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

binary() {
  "$python" -c 'import osmem_server; print(osmem_server.resolve_binary())' 2>/dev/null
}

install() {
  if bin="$(binary)" && [[ -x "$bin" ]]; then
    log "osmem-server already installed: $bin"
    return
  fi
  log "installing osmem-server from PyPI"
  "$python" -m pip install --quiet --disable-pip-version-check osmem-server >&2
  bin="$(binary)" || { log "osmem-server installed but its binary was not found"; exit 1; }
  log "osmem-server installed: $bin"
}

start() {
  mkdir -p "$state"
  if running && [[ -f "$url_file" ]] && answers "$(cat "$url_file")"; then
    log "osmem-server already running (pid $(cat "$pid_file"))"
    echo "export ORDER_FSM_ES_URL=$(cat "$url_file")"
    return
  fi
  local bin
  bin="$(binary)" || { install; bin="$(binary)"; }
  # Port 0: the server picks a free loopback port and prints {"url": ...} on stdout.
  nohup "$bin" -addr 127.0.0.1:0 -no-stdin-watch -no-ja </dev/null >"$log_file" 2>&1 &
  echo $! >"$pid_file"
  rm -f "$url_file"
  for _ in $(seq 1 100); do
    local url
    url="$(sed -n 's/.*"url":"\(http:\/\/127\.0\.0\.1:[0-9]*\)".*/\1/p' "$log_file" | head -1)"
    if [[ -n "$url" ]] && answers "$url"; then
      echo "$url" >"$url_file"
      log "osmem-server listening on $url (pid $(cat "$pid_file"), log $log_file)"
      echo "export ORDER_FSM_ES_URL=$url"
      return
    fi
    if ! running; then break; fi
    sleep 0.1
  done
  log "osmem-server did not start; last lines of $log_file:"
  tail -20 "$log_file" >&2 || true
  exit 1
}

stop() {
  service_stop osmem-server "$pid_file" "$url_file"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
