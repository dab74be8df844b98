# Prometheus, per environment, derived from the inventory (nixos/fleet.nix) and the ports
# (nixos/ports.nix). Outputs:
#
#   prometheus.<env>        the configuration file as an attribute set (its JSON is YAML):
#                           global, alerting, scrape_configs. nixos/modules/monitoring.nix adds
#                           `rule_files` (a store path) and writes it; dev/fleet/check-hosts.sh
#                           checks it with promtool.
#   prometheusSecrets       the files the configuration reads at run time, which
#                           nixos/modules/monitoring.nix installs from sops (secrets/README.md).
#   alertRules.<env>        the host-level alerting rules (a rule file as an attribute set),
#                           unit-tested by dev/fleet/alert-rules.test.yaml.
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

  # Host-level alerts only: the observability work adds the services' own (latency, errors,
  # saga backlog) next to their dashboards. Every rule has a unit test in
  # dev/fleet/alert-rules.test.yaml. Labels: severity critical (someone acts now) or warning
  # (someone looks today). The same rules serve every environment; `env` comes from the
  # external labels.
  localFs = ''fstype!~"tmpfs|ramfs"'';
  hostRules = {
    groups = [
      {
        name = "hosts";
        rules = [
          {
            alert = "HostDown";
            expr = ''up{job="node"} == 0'';
            for = "2m";
            labels.severity = "critical";
            annotations.summary = "{{ $labels.host }} is down: its node exporter has not answered for 2 minutes";
          }
          {
            alert = "TargetDown";
            expr = ''up{job!="node"} == 0'';
            for = "5m";
            labels.severity = "warning";
            annotations.summary = "{{ $labels.job }} on {{ $labels.instance }} has not answered scrapes for 5 minutes";
          }
          {
            # /boot (vfat) included: old NixOS generations fill it.
            alert = "FilesystemAlmostFull";
            expr = ''
              node_filesystem_avail_bytes{${localFs}} / node_filesystem_size_bytes{${localFs}} < 0.10
              and node_filesystem_readonly{${localFs}} == 0'';
            for = "5m";
            labels.severity = "critical";
            annotations.summary = "{{ $labels.host }}: {{ $labels.mountpoint }} has less than 10% free";
          }
          {
            alert = "FilesystemFillingUp";
            expr = ''
              predict_linear(node_filesystem_avail_bytes{${localFs}}[6h], 24 * 3600) < 0
              and node_filesystem_avail_bytes{${localFs}} / node_filesystem_size_bytes{${localFs}} < 0.40
              and node_filesystem_readonly{${localFs}} == 0'';
            for = "1h";
            labels.severity = "warning";
            annotations.summary = "{{ $labels.host }}: {{ $labels.mountpoint }} will be full within 24 hours at the rate of the last 6";
          }
          {
            # Needs the node exporter's systemd collector (nixos/modules/common.nix).
            alert = "SystemdUnitFailed";
            expr = ''node_systemd_unit_state{state="failed"} == 1'';
            for = "5m";
            labels.severity = "warning";
            annotations.summary = "{{ $labels.host }}: unit {{ $labels.name }} has failed";
          }
          {
            # etcd, ZooKeeper, TLS and the tokens' expiry all assume synchronised clocks.
            alert = "ClockNotSynchronised";
            expr = "min_over_time(node_timex_sync_status[5m]) == 0 and node_timex_maxerror_seconds >= 16";
            for = "10m";
            labels.severity = "warning";
            annotations.summary = "{{ $labels.host }}: the clock is not synchronised (chrony)";
          }
        ];
      }

      # The fleet's growth, per role (C8.4 of docs/certification-matrix.md): what the hosts of a
      # role hold and use, recorded every minute so a year of it costs a few series, and the
      # alerts that say when a role needs another host (one entry in nixos/fleet.nix). Read
      # with, e.g., `role:node_cpu_utilisation:avg5m{env="prod"}` over 90 days.
      {
        name = "fleet-growth";
        interval = "1m";
        rules = [
          {
            record = "role:hosts:count";
            expr = ''count by (role) (up{job="node"})'';
          }
          {
            record = "role:node_cpu_cores:count";
            expr = ''count by (role) (node_cpu_seconds_total{job="node", mode="idle"})'';
          }
          {
            record = "role:node_cpu_utilisation:avg5m";
            expr = ''1 - avg by (role) (rate(node_cpu_seconds_total{job="node", mode="idle"}[5m]))'';
          }
          {
            record = "role:node_memory_bytes:sum";
            expr = ''sum by (role) (node_memory_MemTotal_bytes{job="node"})'';
          }
          {
            record = "role:node_memory_utilisation:ratio";
            expr = ''
              1 - sum by (role) (node_memory_MemAvailable_bytes{job="node"})
                / sum by (role) (node_memory_MemTotal_bytes{job="node"})'';
          }
          {
            record = "role:node_filesystem_used_bytes:sum";
            expr = ''sum by (role) (node_filesystem_size_bytes{job="node", ${localFs}} - node_filesystem_avail_bytes{job="node", ${localFs}})'';
          }
          {
            # Bytes a day the role's disks grow by, over the last week.
            record = "role:node_filesystem_used_bytes:growth1d";
            expr = "deriv(role:node_filesystem_used_bytes:sum[7d]) * 86400";
          }
          {
            alert = "RoleCpuSaturated";
            expr = "role:node_cpu_utilisation:avg5m > 0.75";
            for = "30m";
            labels.severity = "warning";
            annotations.summary = "the {{ $labels.role }} hosts average {{ $value | humanizePercentage }} CPU for 30 minutes: add a host of that role to nixos/fleet.nix";
          }
          {
            alert = "RoleMemorySaturated";
            expr = "role:node_memory_utilisation:ratio > 0.85";
            for = "30m";
            labels.severity = "warning";
            annotations.summary = "the {{ $labels.role }} hosts use {{ $value | humanizePercentage }} of their memory for 30 minutes: add a host of that role to nixos/fleet.nix";
          }
        ];
      }

      # Hydra's release gate (hydra/release-gate, the hook that deploys green release builds of
      # main): its metrics come from the ci host's node exporter (textfile collector), so the
      # alerts name that host, and the deploy wrapper's canary gate, which ignores alerts about
      # other hosts, is not stopped by them.
      {
        name = "release";
        rules = [
          {
            # Set by the failed attempt, cleared by the next successful one.
            alert = "ProductionDeployFailed";
            expr = ''comptoir_release_last_deploy_failed{target_env="prod"} == 1'';
            labels.severity = "critical";
            annotations.summary = "{{ $labels.host }}: the release gate's last deploy to prod failed: read journalctl -u comptoir-release-gate and deploys.jsonl in /var/lib/comptoir-release, then restart the build in Hydra or deploy by hand";
          }
          {
            # The newest finished release build failed, or its release.json is unusable.
            alert = "ReleaseGateRed";
            expr = "comptoir_release_last_build_failed == 1";
            for = "6h";
            labels.severity = "warning";
            annotations.summary = "{{ $labels.host }}: the newest release build of main has been failing for 6 hours: nothing reaches production";
          }
        ];
      }
    ];
  };
in {
  inherit prometheusSecrets;
  prometheus = perEnv config;
  alertRules = perEnv (_: hostRules);
}
