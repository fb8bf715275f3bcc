#!/usr/bin/env bash
# Starts and stops the real services the tests use. Each service has its own script with
# `install`, `start` (prints `export VAR=...` lines) and `stop`; this file drives them all.
# Sourced by scripts/test.sh.

SERVICES=()
for candidate in kafka elastic smtp postgres; do
  if [ -x "scripts/$candidate.sh" ]; then SERVICES+=("$candidate"); fi
done

# Python clients the interoperability tests drive (a second, independent implementation of
# each wire protocol).
python_clients() {
  python3 -c "import grpc_tools" 2>/dev/null || python3 -m pip install --quiet -r scripts/grpc-requirements.txt >&2
  python3 -c "import confluent_kafka" 2>/dev/null || python3 -m pip install --quiet confluent-kafka >&2
  python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install --quiet prometheus-client >&2
}

# promtool (Debian's `prometheus` package) validates deploy/prometheus.yml and the Grafana
# dashboard's queries (examples/tests/deploy.rs); headless Chromium loads the live dashboard
# (examples/tests/dashboard.rs). Each about 10 s to install.
tools() {
  local packages=()
  command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
  [ "${#packages[@]}" -eq 0 ] && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${packages[@]}" >&2 ||
    { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "${packages[@]}" >&2; }
}

services_start() {
  local s
  echo "== installing Python interop clients (skipped when present)" >&2
  python_clients
  echo "== installing promtool and chromium (skipped when present)" >&2
  tools
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
