#!/usr/bin/env bash
# The fleet's checks that run here without NixOS (docs/fleet.md, docs/architecture.md §11):
# the pure-Nix generators under nixos/lib are evaluated with nix-instantiate and their output
# checked with the real tools.
#   1. inventory invariants        (dev/fleet/inventory.py: unique names and addresses, subnets,
#                                   roles, canary, rollout order, the service graph)
#   2. deployment diagrams         (dot -Tsvg of each environment's generated DOT; fails when
#                                   docs/diagrams/fleet-<env>.svg differs)
#   3. hosts                       (dev/fleet/check-hosts.sh: nftables rulesets with nft -c in a
#                                   throwaway namespace, Prometheus config with promtool)
#   4. stateful roles              (dev/fleet/check-data.sh: ZooKeeper, quorums, Patroni
#                                   --validate-config)
#   5. k3s manifests               (dev/fleet/check-manifests.sh: Kubernetes schemas, kube-score,
#                                   NetworkPolicies = the service graph, the services' own
#                                   --check-config on the ConfigMaps)
#   6. deploy-rs                   (dev/fleet/check-deploy.sh: deploy-rs's own types, the
#                                   rollout, the `deploy` wrapper's tests)
# Usage: dev/check-fleet.sh [--write-diagrams]   (as root: namespaces and apt-get)
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-fleet"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

write_diagrams=false
case "${1:-}" in
  "") ;;
  --write-diagrams) write_diagrams=true ;;
  *) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

# nix-instantiate of an expression over the generators, as JSON on stdout.
eval_json() {
  nix_eval_json -E "let lib = import ./nixos/lib {}; in $1"
}

check_inventory() {
  log "inventory invariants"
  eval_json '{
    inherit (lib) fleet services graph rollout;
    clusterInit = builtins.listToAttrs (map (env: {
      name = env;
      value = lib.inventory.clusterInit env;
    }) lib.inventory.environments);
  }' | python3 dev/fleet/inventory.py
}

check_diagrams() {
  local env tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the trap must remove this directory
  trap "rm -rf '$tmp'" RETURN
  for env in $(eval_json 'lib.inventory.environments' | json_words); do
    eval_json "lib.diagram.${env}" | json_text >"$tmp/$env.dot"
    check_drawing "$tmp/$env.dot" "docs/diagrams/fleet-$env.svg" "$write_diagrams" "dev/check-fleet.sh --write-diagrams"
  done
  $write_diagrams || log "deployment diagrams match the inventory"
}

main() {
  install_nix_and_graphviz
  check_inventory
  check_diagrams
  local part
  for part in hosts data manifests deploy; do
    log "── $part ──"
    "dev/fleet/check-$part.sh"
  done
  log "all fleet checks passed"
}

main
