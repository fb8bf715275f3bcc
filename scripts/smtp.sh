#!/usr/bin/env bash
# SMTP server for tests: aiosmtpd on loopback storing mail in a Maildir.
#   install  pip-installs aiosmtpd when missing
#   start    starts it; prints `export ORDER_FSM_SMTP_URL=... ORDER_FSM_SMTP_MAILDIR=...`
#   stop     stops the server this script started
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/service.sh
source scripts/lib/service.sh
state=target/services
pidfile=$state/smtp.pid

case "${1:-}" in
  install)
    python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install --quiet aiosmtpd >&2
    ;;
  start)
    mkdir -p "$state"
    if service_running "$pidfile"; then
      cat "$state/smtp.env"
      exit 0
    fi
    maildir=$(pwd)/$state/maildir
    rm -rf "$maildir"
    python3 scripts/smtp_server.py --maildir "$maildir" > "$state/smtp.port" 2> "$state/smtp.log" &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      [ -s "$state/smtp.port" ] && break
      sleep 0.1
    done
    port=$(head -n1 "$state/smtp.port")
    [ -n "$port" ] || { echo "smtp server did not start: $(cat "$state/smtp.log")" >&2; exit 1; }
    printf 'export ORDER_FSM_SMTP_URL=smtp://127.0.0.1:%s ORDER_FSM_SMTP_MAILDIR=%s\n' "$port" "$maildir" | tee "$state/smtp.env"
    ;;
  stop)
    service_stop aiosmtpd "$pidfile" "$state/smtp.env"
    ;;
  *)
    echo "usage: $0 install|start|stop" >&2
    exit 2
    ;;
esac
