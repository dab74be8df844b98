# Everything derived from the fleet inventory, in pure Nix (builtins only). The NixOS modules
# (nixos/modules), deploy-rs (deploy-rs/), the checks (dev/check-fleet.sh) and the fleet lab
# (dev/lab) all read these outputs, so each setting has exactly one source. Evaluate any part
# here with, e.g.:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).rollout'
{
  fleet ? import ../fleet.nix,
  services ? import ../../nix/services.nix,
  graph ? import ../graph.nix,
  ports ? import ../ports.nix,
}: let
  inventory = import ./inventory.nix {inherit fleet;};
  args = {inherit fleet services graph ports inventory;};
  perEnv = f:
    builtins.listToAttrs (map (env: {
        name = env;
        value = f env;
      })
      inventory.environments);
in {
  inherit fleet services graph ports inventory;

  # Deploy order per environment: the canary, then the rest in inventory order.
  rollout = perEnv inventory.rolloutOrder;
  # Graphviz DOT per environment (docs/diagrams/fleet-<env>.svg).
  diagram = import ./diagram.nix args;
  deploy = import ./deploy.nix args;
  inherit (import ./pulsar.nix args) pulsar toProperties;
  patroni = import ./patroni.nix args;
  inherit (import ./firewall.nix args) firewall firewallRules;
  inherit (import ./prometheus.nix args) prometheus prometheusSecrets ruleFiles;
  inherit (import ./alertmanager.nix args) alertmanager alertmanagerSecrets;
  inherit (import ./jaeger.nix args) jaeger jaegerStateDir otlpEndpoint;
  # Each service's environment per environment, and the k3s objects that carry it.
  settings = import ./settings.nix args;
  manifests = import ./manifests.nix args;
}
