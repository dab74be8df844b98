# The k3s roles: `k3s-server` (control plane with embedded etcd, also runs pods) and
# `k3s-agent` (runs pods). Every k3s host of an environment joins one cluster:
#   - the environment's first k3s-server (inventory order, fleetLib.inventory.clusterInit)
#     initialises the embedded etcd (--cluster-init) — exactly one host does;
#   - every other server and every agent joins it at https://<that host>:6443.
# Servers must be odd in number for etcd's quorum (1 or 3; checked by dev/fleet/inventory.py).
#
# What runs in the cluster comes from Nix, not from a registry:
#   - the services' images (nix/images.nix) are preloaded on every node (services.k3s.images);
#     the pods use imagePullPolicy Never, so a node without the image fails loudly;
#   - the Kubernetes objects of nixos/lib/manifests.nix are written to every server's
#     auto-deploy directory (services.k3s.manifests), which k3s applies at start and whenever
#     the file changes (that is, on each deploy-rs activation that changes them).
# Secrets never pass through Nix: on the cluster-init server, comptoir-k3s-secrets reads the
# files sops-nix decrypted (secrets/README.md: k3s/...) and applies them as the Secrets and the
# ConfigMap the manifests name, after every activation that changes them.
{
  config,
  lib,
  pkgs,
  fleetLib,
  host,
  comptoir,
  ...
}: let
  inherit (fleetLib) inventory ports;
  workloads = import ../workloads.nix;
  inherit (workloads) cluster;

  isServer = inventory.hasRole "k3s-server" host;
  # The host that initialises the embedded etcd; everyone else joins it.
  initHost = inventory.hosts.${inventory.clusterInit host.env};
  isInit = initHost.name == host.name;

  # The sops keys of the cluster's secrets, as they appear in secrets/<env>.yaml.
  tokenSecret = "k3s/token";
  serviceSecret = service: file: "k3s/${service}/${file}";
  serviceSecrets = lib.concatLists (lib.mapAttrsToList (service: w:
    map (file: {
      inherit service file;
      key = serviceSecret service file;
    })
    w.secrets)
  workloads.services);
  tlsSecrets = {
    "tls.crt" = "k3s/shop-tls/cert";
    "tls.key" = "k3s/shop-tls/key";
  };
  caSecrets = lib.mapAttrs' (what: file: lib.nameValuePair file "k3s/ca/${what}") cluster.caFiles;
  secretPath = key: config.sops.secrets.${key}.path;

  kubectl = "${config.services.k3s.package}/bin/k3s kubectl";

  # `kubectl create ... --dry-run=client -o yaml | kubectl apply`: create or replace, from
  # files, without the values ever appearing on a command line or in the store.
  applyFrom = kind: name: files: ''
    ${kubectl} create ${kind} ${name} --namespace ${cluster.namespace} \
      ${lib.concatStringsSep " " (lib.mapAttrsToList (file: key: "--from-file=${file}=${secretPath key}") files)} \
      --dry-run=client --output yaml | ${kubectl} apply --filename -
  '';
  byService = lib.groupBy (s: s.service) serviceSecrets;
in {
  assertions = [
    {
      assertion = inventory.hostsOf host.env "k3s-server" != [];
      message = "nixos/fleet.nix: environment ${host.env} has k3s hosts but no k3s-server.";
    }
  ];

  services.k3s = {
    enable = true;
    role =
      if isServer
      then "server"
      else "agent";
    clusterInit = isInit;
    serverAddr = lib.mkIf (!isInit) "https://${initHost.address}:${toString ports.k3s.api}";
    tokenFile = secretPath tokenSecret;
    # The containers' images, built by the flake and imported by containerd at start.
    images = lib.attrValues comptoir.images;
    extraFlags =
      [
        "--node-ip=${host.address}"
        "--node-name=${host.name}"
      ]
      ++ lib.optionals isServer [
        # The values the manifests and the firewall are written for (nixos/workloads.nix),
        # passed explicitly so nothing drifts with a k3s default.
        "--cluster-cidr=${cluster.podCidr}"
        "--service-cidr=${cluster.serviceCidr}"
        "--cluster-domain=${cluster.domain}"
        # The API server reaches pods through the agent of the pod's own node (k3s' default,
        # spelled out): the NetworkPolicies rely on it for the Prometheus scrapes
        # (nixos/lib/manifests.nix).
        "--egress-selector-mode=pod"
        # Secrets encrypted at rest in etcd.
        "--secrets-encryption"
        # The API server's certificate also names the host's address (the operators and the
        # environment's Prometheus connect to it).
        "--tls-san=${host.address}"
        # Nobody but root reads the admin kubeconfig.
        "--write-kubeconfig-mode=0600"
        # ServiceLB stays: it is what publishes Traefik's LoadBalancer Service on every node's
        # ports 80 and 443 (the shop's entry, open in the k3s hosts' rulesets).
      ];
    # Every server carries the manifests: any of them may apply them, and k3s does so again
    # when a server restarts, so a lost server loses nothing.
    manifests = lib.mkIf isServer {
      comptoir.content = fleetLib.manifests.${host.env};
    };
    gracefulNodeShutdown.enable = true;
  };

  sops.secrets =
    {
      ${tokenSecret}.restartUnits = ["k3s.service"];
    }
    // lib.optionalAttrs isInit (lib.listToAttrs (map (key:
      lib.nameValuePair key {
        restartUnits = ["comptoir-k3s-secrets.service"];
      })
    (map (s: s.key) serviceSecrets ++ lib.attrValues tlsSecrets ++ lib.attrValues caSecrets)));

  # The Secrets and the CA ConfigMap, from the decrypted files, on the cluster-init server.
  systemd.services.comptoir-k3s-secrets = lib.mkIf isInit {
    description = "Comptoir: apply the services' Secrets to k3s";
    after = ["k3s.service"];
    requires = ["k3s.service"];
    wantedBy = ["multi-user.target"];
    # The namespace comes from the auto-deployed manifests: wait for it (k3s may still be
    # starting), then apply. Failure leaves the unit failed (SystemdUnitFailed alert).
    script = ''
      for _ in $(seq 60); do
        ${kubectl} get namespace ${cluster.namespace} >/dev/null 2>&1 && break
        sleep 5
      done
      ${lib.concatStrings (lib.mapAttrsToList (service: files:
        applyFrom "secret generic" "${service}-secrets"
        (lib.listToAttrs (map (s: lib.nameValuePair s.file s.key) files)))
      byService)}
      ${applyFrom "secret generic --type=kubernetes.io/tls" "shop-tls" tlsSecrets}
      ${applyFrom "configmap" "comptoir-ca" caSecrets}
    '';
    path = [pkgs.coreutils];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      Restart = "on-failure";
      RestartSec = 30;
    };
  };
}
