#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, conformance, doc tests) against real
# services on loopback. Installs what is missing and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/services.sh
source scripts/services.sh
services_start
trap services_stop EXIT

cargo test --workspace --all-features --no-fail-fast
