#!/usr/bin/env bash
# Checks the deploy-rs side of the fleet (deploy-rs/README.md) without Nix builds or hosts:
#   1. the flake's `deploy` output: deploy-rs/default.nix, the very function flake.nix calls,
#      evaluated with nix-instantiate and stand-ins for the two things that need nixpkgs (each
#      host's NixOS system and deploy-rs's activation wrapper, replaced by a placeholder store
#      path naming the host);
#   2. that node set read by deploy-rs 1.0.0's own types plus what they accept silently
#      (deploy-rs/check: unknown keys, rollback settings, timeouts, groups, the system profile),
#      after the crate's unit tests, then refused when a key is misspelt (the check can fail);
#   3. the node set against the inventory, computed here from nixos/fleet.nix and not through
#      the generator: one node per host, at its address, in its environment's group and its
#      roles' groups, `canary` only on the environment's canary;
#   4. the `deploy` wrapper's tests (deploy-rs/tests/wrapper.sh: canary first, health gate,
#      refusals, pass-through), with a stand-in for deploy-rs and local HTTP servers.
# deploy-rs/check builds outside the workspace, in $COMPTOIR_CACHE/target-deploy-check (about
# two minutes the first time). Needs nix-instantiate, jq, curl, python3, cargo.
# Usage: dev/fleet/check-deploy.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-deploy"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

for tool in nix-instantiate jq curl python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

eval_json() {
  nix_eval_json -E "$1"
}

# 1. The flake's `deploy` output, with placeholders where nixpkgs would build.
log "evaluating deploy-rs/default.nix"
# shellcheck disable=SC2016 # ${...} is Nix's interpolation, not the shell's
eval_json '
  let
    fleetLib = import ./nixos/lib {};
    # Stand-ins: a host system knows its platform; the activation script of a system is a
    # store path (here a placeholder naming the host, so a mix-up shows).
    self.nixosConfigurations = builtins.mapAttrs (name: _: {
      inherit name;
      pkgs.stdenv.hostPlatform.system = "x86_64-linux";
    }) fleetLib.inventory.hosts;
    deploy-rs.lib.x86_64-linux.activate.nixos = system:
      "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" system.name)}-activatable-nixos-system-${system.name}";
  in import ./deploy-rs { inherit self deploy-rs fleetLib; }
' >"$WORK/deploy.json"
log "$(jq '.nodes | length' "$WORK/deploy.json") nodes"

# 2. deploy-rs's own reading of it.
export CARGO_TARGET_DIR="$COMPTOIR_CACHE/target-deploy-check"
manifest=deploy-rs/check/Cargo.toml
log "deploy-rs/check: unit tests, then the node set"
cargo test --locked --quiet --manifest-path "$manifest" >"$WORK/test.log" 2>&1 \
  || { cat "$WORK/test.log" >&2; die "deploy-rs/check's tests failed"; }
cargo build --locked --quiet --manifest-path "$manifest"
checker="$CARGO_TARGET_DIR/debug/comptoir-deploy-check"
"$checker" <"$WORK/deploy.json" || die "the flake's deploy output is not what deploy-rs 1.0.0 reads (above)"

first="$(jq -r '.nodes | keys[0]' "$WORK/deploy.json")"
jq --arg n "$first" '.nodes[$n].magicRollbak = true' "$WORK/deploy.json" >"$WORK/misspelt.json"
if "$checker" <"$WORK/misspelt.json" 2>"$WORK/misspelt.err"; then
  die "deploy-rs/check accepted a misspelt key (magicRollbak on $first)"
fi
grep -q magicRollbak "$WORK/misspelt.err" || die "deploy-rs/check refused the misspelt key without naming it: $(cat "$WORK/misspelt.err")"
log "deploy-rs/check refuses a misspelt key: $(head -1 "$WORK/misspelt.err")"

# 3. The node set against the inventory itself.
eval_json 'import ./nixos/fleet.nix' >"$WORK/fleet.json"
python3 - "$WORK/fleet.json" "$WORK/deploy.json" <<'EOF'
import json
import sys

fleet = json.load(open(sys.argv[1]))
nodes = json.load(open(sys.argv[2]))["nodes"]
problems = []
expected = {}
for env, spec in fleet["environments"].items():
    for host in spec["hosts"]:
        expected[host["name"]] = (env, host, spec["canary"] == host["name"])
if set(nodes) != set(expected):
    problems.append(f"nodes {sorted(set(nodes) ^ set(expected))} are not exactly the inventory's hosts")
for name, (env, host, canary) in expected.items():
    node = nodes.get(name)
    if node is None:
        continue
    if node.get("hostname") != host["address"]:
        problems.append(f"{name}: hostname {node.get('hostname')} is not its address {host['address']}")
    groups = set(node.get("groups", []))
    want = {env, *host["roles"]} | ({"canary"} if canary else set())
    if groups != want:
        problems.append(f"{name}: groups {sorted(groups)}, expected {sorted(want)}")
    path = node.get("profiles", {}).get("system", {}).get("path", "")
    if not path.endswith(f"-activatable-nixos-system-{name}"):
        problems.append(f"{name}: system profile path {path!r} is not its own system's")
for p in problems:
    print(f"check-deploy: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "every host of nixos/fleet.nix is one node, at its address, in its groups"

# 4. The wrapper.
deploy-rs/tests/wrapper.sh

log "deploy-rs checks passed"
