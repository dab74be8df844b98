#!/usr/bin/env bash
# Checks the hosts' baseline outputs (nixos/lib/firewall.nix, nixos/lib/prometheus.nix,
# nixos/lib/alertmanager.nix, nixos/lib/jaeger.nix) for every host of every environment, with the real tools:
#   1. every host's ruleset, in a throwaway network namespace (created, used, deleted; no
#      interface but loopback, no route anywhere): `nft -c -f`, then loaded twice (the file
#      must replace its own table when re-applied), then listed back as JSON
#   2. invariants (dev/fleet/hosts.py check): the allowances computed independently from
#      graph.nix, the roles and ports.nix = the generator's firewallRules = what nftables
#      loaded, and nothing more; input policy drop, forward drop except on k3s hosts; every
#      host a node-exporter target of its environment's Prometheus, every host of a role a
#      target of its role's job, the services discovered through a k3s server's API, every
#      target reachable through the target's firewall from the monitoring hosts; Alertmanager
#      mails every environment's alerts.to through its smtpRelay with alerts.username, TLS as
#      the relay requires, its credentials where monitoring.nix loads them; one Jaeger per
#      environment on its monitoring host (nixos/lib/jaeger.nix): OTLP/HTTP and the UI on the
#      host's address, the rest on loopback, spans on disk with a time to live, and every
#      service's settings exporting to it
#   3. per environment, `promtool check config` with the rule files and the secret files in
#      place (placeholders), and `amtool check-config` of Alertmanager's configuration; the
#      rules' own checks and unit tests are dev/check-monitoring.sh's
# promtool is Prometheus 3.7.3's, with the Kubernetes discovery the services' job uses
# (Debian's 2.42 has none): built once from the Go module proxy into $COMPTOIR_CACHE/bin
# (about 5 minutes on 2 cores), the way nixpkgs selects discovery plugins. Installs what else
# is missing with apt-get (nix-bin, nftables, iproute2, prometheus-alertmanager for amtool). Must run as root (network namespaces).
# Usage: dev/fleet/check-hosts.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-hosts"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

# shellcheck source=dev/lib/promtool.sh
source "$COMPTOIR_DEV_DIR/lib/promtool.sh"

WORK=""
NETNS=""

cleanup() {
  if [[ -n "$NETNS" ]]; then
    ip netns delete "$NETNS" 2>/dev/null || true
    NETNS=""
  fi
  if [[ -n "$WORK" ]]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

install_tools() {
  local -a missing=()
  command -v nix-instantiate >/dev/null || missing+=(nix-bin)
  command -v nft >/dev/null || missing+=(nftables)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  install_missing "${missing[@]}"
  install_promtool
}


nix_eval() {
  nix-instantiate --eval --strict --json "$@" 2>/dev/null \
    || nix-instantiate --eval --strict --json "$@" >/dev/null
}

# The data files as they are, and the generators' outputs, as JSON for hosts.py.
evaluate() {
  local dir="$1" name
  for name in fleet graph ports workloads; do
    nix_eval "nixos/$name.nix" >"$dir/$name.json" || die "nixos/$name.nix does not evaluate"
  done
  for name in firewall firewallRules prometheus prometheusSecrets ruleFiles alertmanager alertmanagerSecrets \
    jaeger jaegerStateDir otlpEndpoint settings; do
    nix_eval -E "(import ./nixos/lib {}).$name" >"$dir/$name.json" \
      || die "nixos/lib: $name does not evaluate"
  done
}

# One host's ruleset in its own namespace: checked, loaded twice, listed back.
check_ruleset() {
  local host="$1" file="$2" listing="$3" out
  NETNS="comptoir-check-hosts-$$"
  ip netns add "$NETNS"
  if ! out="$(ip netns exec "$NETNS" nft -c -f "$file" 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "$host: nft -c rejects its ruleset ($file)"
  fi
  ip netns exec "$NETNS" nft -f "$file" || die "$host: nft cannot load its ruleset"
  ip netns exec "$NETNS" nft -f "$file" || die "$host: its ruleset cannot be re-applied over itself"
  ip netns exec "$NETNS" nft -j list ruleset >"$listing"
  ip netns delete "$NETNS"
  NETNS=""
}

main() {
  [[ $# -eq 0 ]] || { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  is_root || die "must run as root (network namespaces)"
  install_tools

  WORK="$(mktemp -d)"
  local eval_dir="$WORK/eval" out="$WORK/out"
  mkdir -p "$eval_dir" "$out"
  log "evaluating the inventory and the generators"
  evaluate "$eval_dir"
  python3 dev/fleet/hosts.py prepare "$eval_dir" "$out"

  local file host count=0
  for file in "$out"/nft/*.nft; do
    host="$(basename "$file" .nft)"
    check_ruleset "$host" "$file" "$out/nft/$host.json"
    count=$((count + 1))
  done
  log "nft: $count rulesets checked, loaded and re-applied in throwaway namespaces"

  python3 dev/fleet/hosts.py check "$eval_dir" "$out" || die "the firewalls or Prometheus break an invariant (above)"

  local config env
  for config in "$out"/prometheus/*.yml; do
    env="$(basename "$config" .yml)"
    "$PROMTOOL" check config "$config" >"$WORK/promtool.log" 2>&1 \
      || { cat "$WORK/promtool.log" >&2; die "$env: promtool check config fails"; }
    log "$env: promtool $PROMETHEUS_VERSION check config passes (with the rule files of nixos/monitoring/rules)"
  done
  for config in "$out"/alertmanager/*.yml; do
    env="$(basename "$config" .yml)"
    amtool check-config "$config" >"$WORK/amtool.log" 2>&1 \
      || { cat "$WORK/amtool.log" >&2; die "$env: amtool check-config fails"; }
    log "$env: amtool check-config passes (Alertmanager: the operators by e-mail through the relay)"
  done
  log "all host checks passed"
}

main "$@"
