# Prometheus, per environment, derived from the inventory (nixos/fleet.nix) and the ports
# (nixos/ports.nix). Outputs:
#
#   prometheus.<env>        the configuration file as an attribute set (its JSON is YAML):
#                           global, alerting, scrape_configs. nixos/modules/monitoring.nix adds
#                           `rule_files` (store paths) and writes it; dev/fleet/check-hosts.sh
#                           checks it with promtool.
#   prometheusSecrets       the files the configuration reads at run time, which
#                           nixos/modules/monitoring.nix installs from sops (secrets/README.md).
#   ruleFiles               the names of the rule files of nixos/monitoring/rules/ every
#                           environment loads (the same for all; `env` is an external label).
#
# Targets are host addresses, not names: the fleet has no DNS of its own. Each target carries
# a `host` label with the inventory name, so dashboards and alerts speak of prod-pg-2, not of
# 10.20.0.42:9187. The environment is an external label (`env`), added to every series and
# alert this Prometheus sends out.
{
  ports,
  inventory,
  workloads ? import ../workloads.nix,
  ...
}: let
  inherit (builtins) head listToAttrs map toString;

  perEnv = f:
    listToAttrs (map (env: {
        name = env;
        value = f env;
      })
      inventory.environments);

  # sops-nix decrypts these on the monitoring hosts (owner prometheus, mode 0400).
  prometheusSecrets = {
    # The CA that signed the brokers' certificates (the brokers serve /metrics on their https
    # admin port only; docs/adr/0010-pulsar-tls-and-token-roles.md).
    pulsarCa = "/run/secrets/prometheus/pulsar-ca";
    # The k3s cluster's server CA (/var/lib/rancher/k3s/server/tls/server-ca.crt on a server)
    # and the token of the `prometheus` ServiceAccount, for the Kubernetes API (see the
    # comptoir-services job below).
    k3sCa = "/run/secrets/prometheus/k3s-ca";
    k3sToken = "/run/secrets/prometheus/k3s-token";
  };

  # One target group per host, so that each target has its `host` label, and its `role` (the
  # host's roles, comma-separated: the fleet-growth rules aggregate by it).
  targetsOf = port: hosts:
    map (host: {
      targets = ["${host.address}:${toString port}"];
      labels = {
        host = host.name;
        role = builtins.concatStringsSep "," host.roles;
      };
    })
    hosts;

  staticJob = name: port: hosts: {
    job_name = name;
    static_configs = targetsOf port hosts;
  };

  # The services run in k3s; their operational listener (the container port named `ops`,
  # ports.service.ops: /livez, /readyz, /metrics) is inside the pod network, which the
  # monitoring hosts are not part of. Choices:
  #   - scrape the pods through the API server's proxy (/api/v1/namespaces/N/pods/P:9000/proxy
  #     /metrics): one port (the API, already open to operators) and one credential; the API
  #     server reaches every pod over flannel. Chosen.
  #   - route the pod network to the monitoring hosts: flannel assigns node subnets at run
  #     time, and masquerades outside traffic into another node's pods, so the pods would not
  #     even see the monitoring host's address;
  #   - run Prometheus in the cluster: then the cluster's monitoring dies with the cluster.
  # So the pods see the scrapes coming from the API server (a k3s server's host or flannel
  # address), and their NetworkPolicies must admit the ops port from there.
  # Credentials for kubernetes_sd and the proxy: the token of a ServiceAccount `prometheus`
  # bound, in the services' namespace only, to a Role that may get/list/watch pods and get
  # pods/proxy, and nothing else (a long-lived token Secret; an operator copies the token and
  # the cluster's CA into secrets/<env>.yaml). Not the k3s admin kubeconfig: that is
  # cluster-admin. The API server is the environment's first k3s server (the one that
  # initialises the cluster): kubernetes_sd takes one URL, and the fleet has no load balancer
  # in front of the servers. While that server is down, the services' targets are not
  # refreshed or scraped; HostDown fires for it.
  servicesJob = env: let
    api = "${(head (inventory.hostsOf env "k3s-server")).address}:${toString ports.k3s.api}";
    auth = {
      tls_config.ca_file = prometheusSecrets.k3sCa;
      authorization.credentials_file = prometheusSecrets.k3sToken;
    };
  in
    auth
    // {
      job_name = "comptoir-services";
      scheme = "https";
      kubernetes_sd_configs = [
        (auth
          // {
            role = "pod";
            api_server = "https://${api}";
            namespaces.names = [workloads.cluster.namespace];
          })
      ];
      # Discovery yields one target per container port of every pod of the namespace: keep
      # the running pods' port named `ops` (nixos/lib/manifests.nix names it so).
      relabel_configs = [
        {
          source_labels = ["__meta_kubernetes_pod_container_port_name"];
          regex = "ops";
          action = "keep";
        }
        {
          source_labels = ["__meta_kubernetes_pod_phase"];
          regex = "Running";
          action = "keep";
        }
        {
          source_labels = ["__meta_kubernetes_namespace" "__meta_kubernetes_pod_name" "__meta_kubernetes_pod_container_port_number"];
          regex = "(.+);(.+);(.+)";
          target_label = "__metrics_path__";
          replacement = "/api/v1/namespaces/$1/pods/$2:$3/proxy/metrics";
        }
        {
          target_label = "__address__";
          replacement = api;
        }
        # Every target's address is the API server: name the instance after the pod.
        {
          source_labels = ["__meta_kubernetes_pod_name"];
          target_label = "instance";
        }
        {
          source_labels = ["__meta_kubernetes_namespace"];
          target_label = "namespace";
        }
        {
          source_labels = ["__meta_kubernetes_pod_label_app_kubernetes_io_name"];
          target_label = "service";
        }
        {
          source_labels = ["__meta_kubernetes_pod_node_name"];
          target_label = "node";
        }
      ];
    };

  config = env: let
    of = inventory.hostsOf env;
  in {
    global = {
      scrape_interval = "30s";
      scrape_timeout = "10s";
      evaluation_interval = "30s";
      external_labels.env = env;
    };

    # Every Alertmanager of the environment. With one monitoring host (every environment
    # today) there is one; with two, both Prometheus send to both Alertmanagers, which must
    # then be clustered (their gossip port, 9094, in ports.nix and the firewall) so that each
    # alert is notified once.
    alerting.alertmanagers = [
      {static_configs = [{targets = map (host: "${host.address}:${toString ports.monitoring.alertmanager}") (of "monitoring");}];}
    ];

    scrape_configs =
      [
        (staticJob "node" ports.nodeExporter (inventory.envHosts env))
        # Prometheus itself, each on its own host.
        {
          job_name = "prometheus";
          static_configs = [{targets = ["localhost:${toString ports.monitoring.prometheus}"];}];
        }
        (staticJob "alertmanager" ports.monitoring.alertmanager (of "monitoring"))
        # Jaeger's own metrics (nixos/lib/jaeger.nix): spans received, refused, stored.
        (staticJob "jaeger" ports.monitoring.jaegerMetrics (of "monitoring"))
        ((staticJob "pulsar-broker" ports.pulsar.webTls (of "pulsar"))
          // {
            # The brokers' certificates name their host's address (an IP SAN), which is what
            # Prometheus checks here. /metrics is not behind the token authentication
            # (authenticateMetricsEndpoint stays at its default, false).
            scheme = "https";
            tls_config.ca_file = prometheusSecrets.pulsarCa;
          })
        (staticJob "pulsar-bookie" ports.pulsar.bookieHttp (of "pulsar"))
        (staticJob "zookeeper" ports.pulsar.zookeeperMetrics (of "pulsar"))
        (staticJob "patroni" ports.postgres.patroni (of "postgres"))
        (staticJob "postgres" ports.postgres.exporter (of "postgres"))
      ]
      ++ (
        if of "k3s-server" == []
        then []
        else [(servicesJob env)]
      );
  };

  # The rule files every environment loads, in nixos/monitoring/rules/ (the same files the
  # fleet lab's and dev/up's Prometheus load): host-level alerts and the fleet's growth, the
  # services' messaging, saga and KPIs, and the SLOs (generated from nixos/monitoring/slo.toml
  # by dev/slo_rules.py). Plain rule files, not Nix: Prometheus and promtool read them as
  # they are, and each has its unit tests beside it (dev/check-monitoring.sh). Every
  # `*.yaml` of the folder but the tests: a new file is loaded everywhere without a list to edit.
  ruleFiles =
    builtins.filter
    (name: builtins.match ".*\\.yaml" name != null && builtins.match ".*\\.test\\.yaml" name == null)
    (builtins.attrNames (builtins.readDir ../monitoring/rules));
in {
  inherit prometheusSecrets ruleFiles;
  prometheus = perEnv config;
}
