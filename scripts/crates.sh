#!/usr/bin/env bash
# The library crates as crates.io will see them (issue 15):
#   1. a feature matrix: each publishable crate checked with no default features and with
#      all features (cargo check: cheap, catches a `cfg` that only builds one way);
#   2. `cargo publish --dry-run` of every publishable crate (packages them, then builds each
#      package against the others' packages, as crates.io users will);
#   3. cargo-semver-checks against the last release tag (`v*`), once there is one.
set -euo pipefail
cd "$(dirname "$0")/.."

crates=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p.get("publish") != []:
        print(p["name"])')

for crate in $crates; do
  echo "-- $crate: cargo check --no-default-features / --all-features"
  cargo check --quiet -p "$crate" --no-default-features
  cargo check --quiet -p "$crate" --all-features
done

echo "-- cargo publish --dry-run: $(echo $crates)"
# Test, bench and example targets are left out of the packages on purpose (`include` in each
# manifest: they need servers and the repository); cargo warns once per target.
log=$(mktemp)
# cargo verifies each package against the others through a local registry. Registry
# packages count as immutable: their sources are unpacked under $CARGO_HOME/registry/src/-<hash>/
# once, and their build outputs in target/ are reused by name and version, so a later run
# would build today's crate against an earlier run's copy of its sibling (seen: the old build
# script of order-fsm-grpc). Forget every copy and build of our own crates first (a fresh
# clone's target/ has none; the workspace's own builds of them are simply redone).
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/order-fsm*
target_dir=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rm -rf "$target_dir"/debug/.fingerprint/order-fsm-* "$target_dir"/debug/build/order-fsm-* \
  "$target_dir"/debug/deps/*order_fsm*
# shellcheck disable=SC2046
if ! cargo publish --dry-run $(printf -- '-p %s ' $crates) >"$log" 2>&1; then
  cat "$log"
  exit 1
fi
grep -v "^warning: ignoring \(test\|example\|benchmark\) \`\|^ *\(Compiling\|Checking\|Finished\|Packaging\|Packaged\|Verifying\|Archiving\|Updating\|Locking\|Adding\|Downloaded\|Downloading\|Unpacking\)" "$log" || true
rm -f "$log"

baseline=$(git tag --list 'v*' --sort=-v:refname | head -n 1)
if [ -z "$baseline" ]; then
  echo "-- cargo semver-checks: no release tag (v*) yet, nothing to compare with"
else
  if ! cargo semver-checks --version >/dev/null 2>&1; then
    cargo install --locked cargo-semver-checks
  fi
  echo "-- cargo semver-checks against $baseline"
  cargo semver-checks check-release --baseline-rev "$baseline" $(printf -- '-p %s ' $crates)
fi
