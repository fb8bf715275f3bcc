#!/usr/bin/env bash
# MSRV check without an older toolchain (only one toolchain can be installed here).
#
# Reads the resolved dependency graph from `cargo metadata` (all features, the host
# platform) and, for every workspace member, takes the highest `rust-version` declared by
# any crate it builds with: its normal and build dependencies, transitively (other members
# included). Fails, naming the crates, when that exceeds the member's own `rust-version`
# (the workspace's [workspace.package] value unless the member sets one). Crates reached
# only through a member's dev-dependencies are reported separately and do not fail the check.
#
# This covers what our dependencies demand. What our own code demands is covered by clippy:
# its `incompatible_msrv` lint (on by default; CI runs clippy with -D warnings) flags any
# std API stabilised after the crate's rust-version.
#
# Limits: a crate that declares no rust-version counts as no requirement; the graph is the
# one `cargo metadata` resolves (features unified across the workspace), so a member may be
# charged for a feature another member turns on. MSRV_ALL_PLATFORMS=1 checks the deps of
# every target platform instead of the host's: Windows-only crates and crates behind
# custom cfgs such as cfg(loom) are then counted too (loom's `generator` pulls in
# windows-core 0.100, rust-version 1.95, a crate no normal build compiles).
set -euo pipefail
cd "$(dirname "$0")/.."

filter=(--filter-platform "$(rustc -vV | sed -n 's/^host: //p')")
[ "${MSRV_ALL_PLATFORMS:-0}" = 1 ] && filter=()

meta=$(mktemp)
trap 'rm -f "$meta"' EXIT
cargo metadata --format-version 1 --all-features "${filter[@]}" >"$meta"

python3 - "$meta" <<'EOF'
import json, sys, tomllib
from collections import deque

meta = json.load(open(sys.argv[1]))
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = meta["workspace_members"]
with open(f'{meta["workspace_root"]}/Cargo.toml', "rb") as f:
    workspace_msrv = tomllib.load(f).get("workspace", {}).get("package", {}).get("rust-version")


def ver(s):
    parts = [int(x) for x in s.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def show(v):
    return ".".join(map(str, v[:2])) if v[2] == 0 else ".".join(map(str, v))


def label(pid):
    p = packages[pid]
    return f'{p["name"]} {p["version"]}'


def edges(pid, kinds):
    for d in nodes[pid]["deps"]:
        if any(k["kind"] in kinds for k in d["dep_kinds"]):
            yield d["pkg"]


def closure(start, first_kinds):
    """Crates reachable from `start` through `first_kinds` edges, then normal/build edges
    (dependencies of dependencies: dev-dependencies never propagate). Returns {id: parent}."""
    parent = {}
    queue = deque()
    for d in edges(start, first_kinds):
        if d not in parent:
            parent[d] = start
            queue.append(d)
    while queue:
        pid = queue.popleft()
        for d in edges(pid, (None, "build")):
            if d not in parent and d != start:
                parent[d] = pid
                queue.append(d)
    return parent


def chain(parent, pid, root):
    path = [pid]
    while parent[path[-1]] != root:
        path.append(parent[path[-1]])
    return " <- ".join(packages[p]["name"] for p in path)


def needs(ids):
    return sorted(
        ((ver(packages[i]["rust_version"]), i) for i in ids if packages[i].get("rust_version")),
        key=lambda t: (t[0], packages[t[1]]["name"]),
        reverse=True,
    )


failed = []
overall = []
print(f"workspace rust-version: {workspace_msrv}")
for member in sorted(members, key=label):
    name = packages[member]["name"]
    declared = packages[member].get("rust_version")
    normal = closure(member, (None, "build"))
    dev_only = {k: v for k, v in closure(member, (None, "build", "dev")).items() if k not in normal}
    req = needs(normal)
    overall += [(v, i) for v, i in req if i not in members]
    top = req[0][0] if req else (0, 0, 0)
    unknown = sum(1 for i in normal if not packages[i].get("rust_version"))
    if declared is None:
        print(f"  {name}: declares no rust-version; its dependencies need {show(top)}")
        continue
    over = [(v, i) for v, i in req if v > ver(declared)]
    status = "ok" if not over else "TOO LOW"
    print(f"  {name}: declares {declared}, dependencies need {show(top)} "
          f"({len(normal)} crates, {unknown} without a rust-version): {status}")
    for v, i in over[:5]:
        print(f"      {show(v):6} {label(i)}  ({chain(normal, i, member)})")
    if len(over) > 5:
        print(f"      ... and {len(over) - 5} more crates above {declared}")
    if over:
        failed.append((name, declared, top))
    dev_req = needs(dev_only)
    if dev_req and dev_req[0][0] > ver(declared):
        v, i = dev_req[0]
        print(f"      (dev-dependencies only, not a failure: up to {show(v)}, {label(i)}; "
              f"tests and benches need that toolchain)")

if overall:
    v = max(t[0] for t in overall)
    print(f"highest rust-version of any dependency (members aside): {show(v)} "
          f"({', '.join(sorted({label(i) for w, i in overall if w == v}))})")
if failed:
    print(flush=True)
    for name, declared, top in failed:
        print(f"error: {name} declares rust-version {declared} but its dependencies need {top and show(top)}",
              file=sys.stderr)
    print("error: raise rust-version (Cargo.toml) to what the dependencies need, or pin older "
          "dependency versions", file=sys.stderr)
    sys.exit(1)
print("msrv: ok")
EOF
