#!/usr/bin/env bash
# Starts and stops the real services the tests use. Each service has its own script with
# `install`, `start` (prints `export VAR=...` lines) and `stop`; this file drives them all.
# Sourced by scripts/test.sh.

SERVICES=()
for candidate in kafka elastic smtp; do
  if [ -x "scripts/$candidate.sh" ]; then SERVICES+=("$candidate"); fi
done

services_start() {
  local s
  for s in "${SERVICES[@]}"; do
    echo "== installing $s (skipped when present)" >&2
    "scripts/$s.sh" install >&2
    echo "== starting $s" >&2
    eval "$("scripts/$s.sh" start)"
  done
}

services_stop() {
  local s
  for s in "${SERVICES[@]}"; do
    "scripts/$s.sh" stop >&2 || true
  done
}
