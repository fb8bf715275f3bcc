#!/usr/bin/env bash
# Installs, starts and stops the tansu Kafka-protocol broker on loopback for the tests.
#
#   scripts/kafka.sh install          # cargo install tansu 0.6.0 unless `tansu` is on PATH
#   eval "$(scripts/kafka.sh start)"  # start (or reuse) a broker; exports ORDER_FSM_KAFKA_BROKERS
#                                     # and ORDER_FSM_KAFKA_BROKER_KIND (tests skip what it cannot do)
#   scripts/kafka.sh stop             # stop the broker this script started (by PID)
#
# Idempotent: `start` reuses a running broker, `stop` without one does nothing. Everything
# but the export line goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/service.sh
source "$root/scripts/lib/service.sh"
state="$root/target/services"
pid_file="$state/kafka.pid"
port_file="$state/kafka.port"
log_file="$state/kafka.log"
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "kafka.sh: $*" >&2; }

port_answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running() {
  service_running "$pid_file"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

install() {
  if command -v tansu >/dev/null 2>&1; then
    log "tansu already installed: $(command -v tansu)"
    return
  fi
  log "installing tansu 0.6.0 (takes about 13 minutes on 2 cores)"
  cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore >&2
}

start() {
  mkdir -p "$state"
  if running && [[ -f "$port_file" ]] && port_answers "$(cat "$port_file")"; then
    log "tansu already running (pid $(cat "$pid_file"))"
    echo "export ORDER_FSM_KAFKA_BROKERS=127.0.0.1:$(cat "$port_file") ORDER_FSM_KAFKA_BROKER_KIND=tansu-0.6.0"
    return
  fi
  command -v tansu >/dev/null 2>&1 || install
  local port
  port="$(free_port)"
  nohup tansu broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$log_file" 2>&1 &
  echo $! >"$pid_file"
  echo "$port" >"$port_file"
  for _ in $(seq 1 100); do
    if port_answers "$port"; then
      log "tansu listening on 127.0.0.1:$port (pid $(cat "$pid_file"), log $log_file)"
      echo "export ORDER_FSM_KAFKA_BROKERS=127.0.0.1:$port ORDER_FSM_KAFKA_BROKER_KIND=tansu-0.6.0"
      return
    fi
    if ! running; then break; fi
    sleep 0.1
  done
  log "tansu did not start; last lines of $log_file:"
  tail -20 "$log_file" >&2 || true
  exit 1
}

stop() {
  service_stop tansu "$pid_file" "$port_file"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
