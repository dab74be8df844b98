# Every host's nftables firewall, derived from the inventory (nixos/fleet.nix), the service
# graph (nixos/graph.nix) and the ports (nixos/ports.nix). Two outputs:
#
#   firewallRules.<host> = [ { port; proto; group; from = [address or CIDR ...]; why; } ... ]
#     what the host accepts, as data: one entry per port and source group. The checks
#     (dev/fleet/check-hosts.sh) compare it with an independent computation of the edges.
#   firewall.<host> = "<nftables ruleset>"
#     the same allowances rendered as text, which nixos/modules/common.nix installs with
#     networking.nftables.ruleset and the fleet lab (dev/lab) loads into each host's namespace.
#
# The ruleset owns one table, `inet comptoir_filter`, and touches nothing else: k3s (flannel,
# kube-proxy, kube-router) keeps its own tables on the same hosts. The input policy is drop;
# a host accepts loopback, replies to its own connections, the ICMP that IPv4 and IPv6 need,
# then exactly the ports its roles serve, each from the hosts that use it.
{
  graph,
  ports,
  inventory,
  workloads ? import ../workloads.nix,
  ...
}: let
  inherit (builtins) attrNames concatMap concatStringsSep elem filter isString length listToAttrs map split stringLength substring;

  # The pod network (k3s' --cluster-cidr, nixos/workloads.nix). Pods that reach a port of
  # their *own* node (the API server behind the `kubernetes` service IP, the kubelet for
  # metrics-server) arrive with their pod address: no SNAT happens on the way into the local
  # host. Traffic that leaves the node is masqueraded to the node's address, so other hosts
  # see the k3s hosts, not pods.
  k3sPodNetwork = workloads.cluster.podCidr;

  anywhere = ["0.0.0.0/0" "::/0"];

  addresses = map (host: host.address);

  # The services that need `what` in graph.nix (postgres, pulsar, smtp): openings for the
  # services' traffic exist only while some service needs them.
  servicesNeeding = what: filter (service: elem what graph.needs.${service}) (attrNames graph.needs);
  needed = what: servicesNeeding what != [];
  neededBy = what: "needed by ${concatStringsSep ", " (servicesNeeding what)}";

  # Where traffic may come from, per environment: the name is the nftables set's name.
  sourceGroups = env: {
    admin = (inventory.environment env).adminNetworks;
    monitoring = addresses (inventory.hostsOf env "monitoring");
    k3s_hosts = addresses (inventory.k3sHosts env);
    k3s_servers = addresses (inventory.hostsOf env "k3s-server");
    k3s_pods = [k3sPodNetwork];
    pulsar_hosts = addresses (inventory.hostsOf env "pulsar");
    postgres_hosts = addresses (inventory.hostsOf env "postgres");
    # Every host of the environment (the ci host's binary cache serves them all).
    fleet_hosts = addresses (inventory.envHosts env);
    # The ci host, whose release gate deploys the environment (nixos/modules/ci.nix).
    ci_hosts = addresses (inventory.hostsOf env "ci");
    inherit anywhere;
  };

  # One allowance: a port, the groups it is open to, and why (the rule's comment on the host:
  # short, no double quotes).
  allow = port: groups: why: {
    inherit port groups why;
    proto = "tcp";
  };
  allowUdp = port: groups: why: allow port groups why // {proto = "udp";};
  optional = cond: x:
    if cond
    then [x]
    else [];

  # What every host accepts.
  baseline = [
    # deploy-rs runs on the operators' machines and in the ci host's release gate.
    (allow ports.ssh ["admin" "ci_hosts"] "ssh: operators and deploy-rs (theirs, the release gate's)")
    (allow ports.nodeExporter ["monitoring"] "node exporter: Prometheus")
  ];

  # What every k3s node (server or agent) accepts.
  k3sNode = [
    (allow ports.k3s.kubelet ["k3s_hosts" "k3s_pods"] "kubelet: API servers (logs, exec), metrics-server")
    (allowUdp ports.k3s.flannelVxlan ["k3s_hosts"] "flannel VXLAN: pod network between nodes")
    (allow ports.ingressHttp ["anywhere"] "ingress http")
    (allow ports.ingressHttps ["anywhere"] "ingress https: the shop")
  ];

  # Per role. A host with several roles accepts the union.
  roleRules = {
    k3s-server =
      k3sNode
      ++ [
        # Prometheus discovers the services' pods and scrapes them through the API server
        # (nixos/lib/prometheus.nix), so monitoring reaches it too.
        (allow ports.k3s.api ["k3s_hosts" "k3s_pods" "admin" "monitoring"] "Kubernetes API: nodes, pods, operators, Prometheus")
        (allow ports.k3s.etcdClient ["k3s_servers"] "k3s embedded etcd: client")
        (allow ports.k3s.etcdPeer ["k3s_servers"] "k3s embedded etcd: peers")
      ];

    k3s-agent = k3sNode;

    pulsar =
      [
        (allow ports.pulsar.zookeeperClient ["pulsar_hosts"] "ZooKeeper: brokers and bookies")
        (allow ports.pulsar.zookeeperPeer ["pulsar_hosts"] "ZooKeeper: followers to leader")
        (allow ports.pulsar.zookeeperElection ["pulsar_hosts"] "ZooKeeper: leader election")
        (allow ports.pulsar.bookie ["pulsar_hosts"] "BookKeeper: brokers and auto-recovery to bookies")
        (allow ports.pulsar.zookeeperMetrics ["monitoring"] "ZooKeeper metrics: Prometheus")
        (allow ports.pulsar.bookieHttp ["monitoring"] "bookie metrics: Prometheus")
      ]
      # The services' pods reach the brokers SNATed to their node's address.
      ++ (
        if needed "pulsar"
        then [
          (allow ports.pulsar.brokerTls ["pulsar_hosts" "k3s_hosts"] "Pulsar TLS: brokers, services (${neededBy "pulsar"})")
          (allow ports.pulsar.webTls ["pulsar_hosts" "k3s_hosts" "admin" "monitoring"] "Pulsar admin/metrics https: brokers, services, operators, Prometheus")
        ]
        else [
          (allow ports.pulsar.brokerTls ["pulsar_hosts"] "Pulsar TLS: brokers")
          (allow ports.pulsar.webTls ["pulsar_hosts" "admin" "monitoring"] "Pulsar admin/metrics https: brokers, operators, Prometheus")
        ]
      );

    postgres = [
      (allow ports.postgres.postgres (["postgres_hosts"] ++ optional (needed "postgres") "k3s_hosts")
        (
          if needed "postgres"
          then "PostgreSQL: replicas, services (${neededBy "postgres"})"
          else "PostgreSQL: replicas"
        ))
      (allow ports.postgres.patroni ["postgres_hosts" "monitoring"] "Patroni REST: peers, Prometheus")
      (allow ports.postgres.etcdClient ["postgres_hosts"] "Patroni's etcd: client")
      (allow ports.postgres.etcdPeer ["postgres_hosts"] "Patroni's etcd: peers")
      (allow ports.postgres.exporter ["monitoring"] "postgres exporter: Prometheus")
    ];

    monitoring = [
      # The release gate's deploy asks Prometheus for firing alerts after the canary.
      (allow ports.monitoring.prometheus ["admin" "ci_hosts"] "Prometheus: operators, the release gate's health check")
      # Prometheus pushes alerts to (and scrapes) every Alertmanager of its environment.
      (allow ports.monitoring.alertmanager ["admin" "monitoring"] "Alertmanager: operators, Prometheus")
      (allow ports.monitoring.grafana ["admin"] "Grafana: operators")
      # The services' spans, from their pods SNATed to the node's address (nixos/lib/jaeger.nix).
      (allow ports.monitoring.otlpHttp ["k3s_hosts"] "Jaeger OTLP/HTTP: the services' spans")
      (allow ports.monitoring.jaeger ["admin"] "Jaeger web UI and query API: operators")
      (allow ports.monitoring.jaegerMetrics ["monitoring"] "Jaeger metrics: Prometheus")
    ];

    # nginx on the ci host serves three names on one port: the forge and Hydra to operators, the
    # binary cache to operators and to every host of the environment (its substituter). nginx
    # narrows each name further (nixos/modules/ci.nix): forge and Hydra answer the admin
    # networks only. Hydra, Harmonia and Forgejo's HTTP listen on loopback or a socket.
    ci = [
      (allow ports.ci.https ["admin" "fleet_hosts"] "nginx https: forge, Hydra (operators), binary cache (operators, the hosts)")
      (allow ports.ci.gitSsh ["admin"] "Forgejo git over SSH: operators")
    ];
  };

  # A host's allowances, one entry per (proto, port, group), without duplicates (a host with
  # two roles may get the same opening twice) and without empty groups (an environment
  # without a monitoring host opens nothing to "monitoring").
  rulesOf = host: let
    groups = sourceGroups host.env;
    wanted = baseline ++ concatMap (role: roleRules.${role}) host.roles;
    expanded = concatMap (rule:
      map (group: {
        inherit (rule) port proto why;
        inherit group;
        from = groups.${group};
      })
      rule.groups)
    wanted;
    # Zero-padded, so that sorting the keys sorts by port number.
    padded = port: let
      text = toString port;
    in
      substring 0 (5 - stringLength text) "00000" + text;
    keyed = listToAttrs (map (rule: {
        name = "${rule.proto}/${padded rule.port}/${rule.group}";
        value = rule;
      })
      (filter (rule: rule.from != []) expanded));
  in
    # attrNames sorts, so the order is stable: by protocol, then port, then group.
    map (key: keyed.${key}) (attrNames keyed);

  # Indents every non-empty line of a block by two spaces.
  indent = text:
    concatStringsSep "\n" (map (line:
      if line == ""
      then ""
      else "  ${line}") (filter isString (split "\n" text)));

  isK3s = host: elem "k3s-server" host.roles || elem "k3s-agent" host.roles;

  # nftables keeps at most 128 bytes of a comment; a longer `why` (many services needing a
  # port) is cut there, the full text stays in firewallRules.
  comment = why:
    if stringLength why > 120
    then ''comment "${substring 0 117 why}..."''
    else ''comment "${why}"'';

  renderSet = groups: name: ''
    set ${name} {
      type ipv4_addr
      flags interval
      auto-merge
      elements = { ${concatStringsSep ", " groups.${name}} }
    }
  '';

  renderRule = rule: let
    source =
      if rule.group == "anywhere"
      then ""
      else "ip saddr @${rule.group} ";
  in "    ${source}${rule.proto} dport ${toString rule.port} accept ${comment rule.why}";

  render = host: rules: let
    groups = sourceGroups host.env;
    usedSets = filter (name: name != "anywhere" && elem name (map (rule: rule.group) rules)) (attrNames groups);
    forward =
      if isK3s host
      then ''
        # No forward chain: k3s (flannel, kube-proxy, kube-router) owns forwarding in its own
        # tables. A packet must be accepted by every base chain of its hook, so a forward
        # chain with policy drop here would drop the pods' traffic whatever k3s decides.
      ''
      else ''
        # Not a router: nothing is forwarded.
        chain forward {
          type filter hook forward priority filter; policy drop;
        }
      '';
  in ''
    # ${host.name} (${host.env}; roles: ${concatStringsSep ", " host.roles}): generated by
    # nixos/lib/firewall.nix from nixos/fleet.nix, nixos/graph.nix and nixos/ports.nix.
    # Re-applying this file replaces the table atomically: create it if missing, delete it,
    # then define it again, all in one transaction. Other tables (k3s') are left alone.
    table inet comptoir_filter
    delete table inet comptoir_filter

    table inet comptoir_filter {
    ${indent (concatStringsSep "\n" (map (renderSet groups) usedSets))}
      chain input {
        type filter hook input priority filter; policy drop;

        iifname "lo" accept
        ct state established,related accept
        ct state invalid drop

        # IPv4: ping and the errors TCP needs (path MTU discovery: fragmentation-needed).
        icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
        # IPv6: neighbour discovery, ping and errors (packet-too-big is path MTU discovery).
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, echo-request, destination-unreachable, packet-too-big, time-exceeded, parameter-problem } accept

        # Allowed: ${toString (length rules)} (port, source) pairs.
    ${concatStringsSep "\n" (map renderRule rules)}

        # Everything else is dropped by the policy; this counts it (nft list chain inet comptoir_filter input).
        counter comment "dropped by policy"
      }

    ${indent forward}
      chain output {
        type filter hook output priority filter; policy accept;
      }
    }
  '';

  firewallRules = builtins.mapAttrs (_: rulesOf) inventory.hosts;
in {
  inherit firewallRules;
  firewall = builtins.mapAttrs (name: host: render host firewallRules.${name}) inventory.hosts;
}
