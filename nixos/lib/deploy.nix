# deploy-rs, derived from the inventory: the node set (everything but the store path of each
# system, which needs nixpkgs and is added by deploy-rs/default.nix), the rollout order with
# the canary first, and the health gate the `deploy` wrapper (deploy-rs/deploy) checks on the
# canary before it deploys the rest. Evaluate it with:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).deploy'
{
  inventory,
  ports,
  ...
}: let
  inherit (builtins) foldl' head listToAttrs map;

  perEnv = f:
    listToAttrs (map (env: {
        name = env;
        value = f env;
      })
      inventory.environments);

  isCanary = host: (inventory.environment host.env).canary == host.name;
  isK3s = host: inventory.hasRole "k3s-server" host || inventory.hasRole "k3s-agent" host;

  # How deploy-rs logs in: as `deploy`, an unprivileged account with only the operators' SSH
  # keys, which may run the activation as root through sudo without a password (the host
  # baseline, nixos/modules/common.nix, creates it and makes it a trusted Nix user so that
  # `nix copy` of unsigned closures is accepted). Nobody logs in as root over SSH.
  sshUser = "deploy";

  # After activating, deploy-rs opens a NEW SSH connection to confirm; if that does not happen
  # within this many seconds, the host rolls itself back (magic rollback). A fresh connection
  # takes well under a second on the admin network, so 60 s is margin for a host busy
  # restarting its services, while a host that locked us out (a firewall dropping SSH, a
  # broken sshd or network configuration) is back on its previous system within a minute.
  # deploy-rs's default is 30 s.
  confirmTimeout = 60;

  # How long deploy-rs waits for the activation itself (switch-to-configuration: units
  # restarted and started) before it calls the deploy failed. Too short turns a slow but good
  # activation into a failure and a rollback, that is a second restart of the same services;
  # too long only delays the report of a hung one. So: deploy-rs's default (240 s) plus margin
  # for plain hosts, and 10 minutes where restarts are slow: k3s is Type=notify and is ready
  # only once a server has rejoined the embedded etcd and the node has imported the preloaded
  # service images; a bookie replays its journal at start; PostgreSQL under Patroni ends with
  # a shutdown checkpoint and starts with crash recovery when it was not clean.
  activationTimeouts = {
    k3s-server = 600;
    k3s-agent = 600;
    pulsar = 600;
    postgres = 600;
    monitoring = 300;
    ci = 300;
  };
  activationTimeout = host:
    foldl' (longest: role: let
      t = activationTimeouts.${role} or (throw "nixos/lib/deploy.nix: decide an activation timeout for role ${role}");
    in
      if t > longest
      then t
      else longest)
    300
    host.roles;

  node = host: {
    hostname = host.address;
    inherit sshUser confirmTimeout;
    user = "root";
    # Magic rollback: the new system must let deploy-rs back in (see confirmTimeout). Auto
    # rollback: a failed activation goes back to the previous generation. Both are deploy-rs's
    # defaults; spelled out because the safety of a rollout rests on them, and
    # deploy-rs/check refuses a node without them.
    magicRollback = true;
    autoRollback = true;
    activationTimeout = activationTimeout host;
    # `deploy --groups prod` or `--groups postgres` select nodes with these (deploy-rs 1.0.0),
    # but without the canary gate: an environment goes out through the wrapper, `deploy prod`.
    groups =
      [host.env]
      ++ host.roles
      ++ (
        if isCanary host
        then ["canary"]
        else []
      );
    # The NixOS system profile is root's `system` profile; deploy-rs/default.nix adds `path`.
    profiles.system.user = "root";
  };

  # What the wrapper checks on the canary after deploying it. The services' own /readyz are on
  # their ops listener (port 9000), inside the cluster only, and the gateway does not serve
  # /readyz on its public listener when it has an ops listener (libs/platform/src/http.rs). So
  # the gate asks the shop itself, through the ingress, for two public GETs that need the
  # path a shopper's request takes: identity's keys through the gateway (what the gateway's
  # own readiness waits for) and the catalog's categories (the catalog and its database).
  # When the canary is a k3s node, curl connects to the ingress on the canary's own address
  # (--resolve), so the check crosses the canary's new k3s, CNI and firewall; otherwise it goes
  # wherever shop.<domain> resolves.
  readyPaths = ["/.well-known/jwks.json" "/v1/categories"];

  # Then no alert of these severities may be firing in the environment's Prometheus, except
  # alerts that name another host of the fleet (that host's trouble, which this very rollout
  # may be fixing): one about the canary, a pod or a whole service may be the new system's.
  alertSeverities = ["critical" "page"];

  # How long the gate waits after the canary's activation before it looks: alerts fire only
  # after their `for:` duration, so a regression cannot show before that. Prod waits 5 minutes
  # (the longest `for:` of a paging rule); staging and the lab shorter, to keep iterating.
  settleSeconds = {
    prod = 300;
    staging = 120;
    lab = 30;
  };

  healthOf = env: let
    inherit (inventory.environment env) canary domain;
    host = inventory.hosts.${canary};
    shop = "shop.${domain}";
    monitoring = inventory.hostsOf env "monitoring";
  in {
    host = canary;
    inherit (host) address;
    inherit alertSeverities;
    # Each URL must answer 200; `resolve` is curl's --resolve (host:port:address) or null.
    urls =
      map (path: {
        url = "https://${shop}${path}";
        resolve =
          if isK3s host
          then "${shop}:${toString ports.ingressHttps}:${host.address}"
          else null;
      })
      readyPaths;
    # The environment's Prometheus (reachable from the admin networks), null without a
    # monitoring host: the wrapper then refuses to roll the environment out.
    prometheus =
      if monitoring == []
      then null
      else "http://${(head monitoring).address}:${toString ports.monitoring.prometheus}";
    settleSeconds = settleSeconds.${env} or 300;
    # Readiness is retried this many times, this far apart, before the gate gives up.
    attempts = 10;
    intervalSeconds = 6;
  };
in {
  nodes = listToAttrs (map (host: {
      inherit (host) name;
      value = node host;
    })
    inventory.hostList);

  # The canary, then the rest in inventory order (nixos/lib/inventory.nix).
  rollout = perEnv inventory.rolloutOrder;
  canary = perEnv (env: (inventory.environment env).canary);
  health = perEnv healthOf;
}
