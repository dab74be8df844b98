# The deployment diagram of each environment, as Graphviz DOT text generated from the
# inventory, the service graph and the ports. dev/check-fleet.sh renders it with `dot -Tsvg`
# and fails when the committed docs/diagrams/fleet-<env>.svg differs, so the picture in the
# docs is always the fleet as declared. Regenerate with: dev/check-fleet.sh --write-diagrams
{
  services,
  graph,
  ports,
  inventory,
  ...
}: let
  inherit (builtins) attrNames concatStringsSep elem filter length map toString;

  quote = s: "\"${s}\"";
  lines = concatStringsSep "\n";

  components = {
    k3s-server = "k3s server (control plane, embedded etcd) + workloads";
    k3s-agent = "k3s agent (workloads)";
    pulsar = "ZooKeeper · BookKeeper bookie · Pulsar broker";
    postgres = "PostgreSQL 17 · Patroni · etcd";
    monitoring = "Prometheus · Alertmanager · Grafana · Jaeger";
    ci = "Forgejo · Hydra · binary cache";
  };

  hostNode = host: let
    s = host.spec;
    canary = host.name == (inventory.environment host.env).canary;
  in "    ${quote host.name} [${
    if canary
    then "fillcolor=lightyellow, "
    else ""
  }label=<<b>${host.name}</b>${
    if canary
    then " (canary)"
    else ""
  }<br/>${host.address}<br/><font point-size=\"9\">${concatStringsSep "<br/>" (map (role: components.${role}) host.roles)}<br/>${host.size}: ${toString s.cpus} vCPU, ${toString (s.memoryMiB / 1024)} GiB, ${toString s.diskGiB} GB</font>>];";

  # One cluster box per role group present in the environment, hosts in inventory order.
  groups = env: [
    {
      id = "k3s";
      label = "k3s cluster — services: ${concatStringsSep ", " (attrNames services)}";
      hosts = inventory.k3sHosts env;
    }
    {
      id = "pulsar";
      label = "Apache Pulsar";
      hosts = inventory.hostsOf env "pulsar";
    }
    {
      id = "postgres";
      label = "PostgreSQL HA (Patroni)";
      hosts = inventory.hostsOf env "postgres";
    }
    {
      id = "monitoring";
      label = "monitoring";
      hosts = inventory.hostsOf env "monitoring";
    }
    {
      id = "ci";
      label = "delivery";
      hosts = inventory.hostsOf env "ci";
    }
  ];
  present = env: filter (group: group.hosts != []) (groups env);

  cluster = group:
    lines ([
        "  subgraph cluster_${group.id} {"
        "    label=${quote group.label}; style=rounded; color=gray40; fontname=Helvetica;"
      ]
      ++ map hostNode group.hosts
      ++ ["  }"]);

  # An edge from one representative host of a group to another, labelled with what flows.
  first = group: (builtins.head group.hosts).name;
  groupOf = env: id: let
    found = filter (group: group.id == id) (present env);
  in
    if found == []
    then null
    else builtins.head found;

  needsAny = what: filter (name: elem what graph.needs.${name}) (attrNames graph.needs);

  edge = env: from: to: label: let
    a = groupOf env from;
    b = groupOf env to;
  in
    if a == null || b == null
    then []
    else ["  ${quote (first a)} -> ${quote (first b)} [label=${quote label}, ltail=cluster_${from}, lhead=cluster_${to}];"];

  diagram = env: let
    e = inventory.environment env;
    k3s = groupOf env "k3s";
    monitoring = groupOf env "monitoring";
    smtpUsers = needsAny "smtp";
  in
    lines ([
        "// Generated from nixos/fleet.nix by nixos/lib/diagram.nix: do not edit."
        "digraph ${quote "fleet-${env}"} {"
        "  graph [compound=true, rankdir=LR, fontname=Helvetica, label=${quote "Comptoir fleet: ${env} (${e.subnet}, ${toString (length (inventory.envHosts env))} hosts, canary ${e.canary})"}, labelloc=t];"
        "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=Helvetica, fontsize=10];"
        "  edge [fontname=Helvetica, fontsize=9];"
        "  shoppers [label=\"shoppers\", shape=ellipse];"
        "  operators [label=${quote "operators (${concatStringsSep ", " e.adminNetworks})"}, shape=ellipse];"
        "  smtp [label=${quote "mail relay ${e.smtpRelay.address}:${toString e.smtpRelay.port}"}, shape=ellipse];"
      ]
      ++ map cluster (present env)
      ++ (
        if k3s == null
        then []
        else
          [
            "  shoppers -> ${quote (first k3s)} [label=${quote "HTTPS ${toString ports.ingressHttps} → ingress → ${concatStringsSep ", " graph.public}"}, lhead=cluster_k3s];"
            "  operators -> ${quote (first k3s)} [label=${quote "SSH, Kubernetes API ${toString ports.k3s.api}"}, lhead=cluster_k3s, style=dashed];"
          ]
          ++ (
            if smtpUsers == []
            then []
            else ["  ${quote (first k3s)} -> smtp [label=${quote "SMTP (${concatStringsSep ", " smtpUsers})"}, ltail=cluster_k3s];"]
          )
      )
      ++ edge env "k3s" "pulsar" "Pulsar TLS ${toString ports.pulsar.brokerTls} (${toString (length (needsAny "pulsar"))} services)"
      ++ edge env "k3s" "postgres" "PostgreSQL TLS ${toString ports.postgres.postgres} (${toString (length (needsAny "postgres"))} databases)"
      ++ edge env "ci" "k3s" "deploy-rs after the Hydra release gate (every host)"
      ++ edge env "monitoring" "k3s" "scrape"
      ++ edge env "k3s" "monitoring" "spans, OTLP/HTTP ${toString ports.monitoring.otlpHttp}"
      ++ edge env "monitoring" "pulsar" "scrape"
      ++ edge env "monitoring" "postgres" "scrape"
      ++ (
        if monitoring == null
        then []
        else ["  operators -> ${quote (first monitoring)} [label=\"Grafana, Prometheus, Jaeger\", lhead=cluster_monitoring, style=dashed];"]
      )
      ++ ["}" ""]);
in
  builtins.listToAttrs (map (env: {
      name = env;
      value = diagram env;
    })
    inventory.environments)
