# Every port the fleet listens on, once. The firewalls, the role settings, the Prometheus
# targets and the manifests read them from here.
{
  ssh = 22;
  nodeExporter = 9100;
  ingressHttp = 80;
  ingressHttps = 443;

  k3s = {
    api = 6443;
    kubelet = 10250;
    etcdClient = 2379;
    etcdPeer = 2380;
    flannelVxlan = 8472; # UDP
  };

  pulsar = {
    zookeeperClient = 2181;
    zookeeperPeer = 2888;
    zookeeperElection = 3888;
    zookeeperMetrics = 7000;
    bookie = 3181;
    bookieHttp = 8000; # bookie metrics
    brokerTls = 6651;
    webTls = 8443; # admin API and broker metrics
  };

  postgres = {
    postgres = 5432;
    patroni = 8008;
    etcdClient = 2379;
    etcdPeer = 2380;
    exporter = 9187;
  };

  monitoring = {
    prometheus = 9090;
    alertmanager = 9093;
    grafana = 3000;
    # Jaeger (nixos/lib/jaeger.nix): the services' OTLP/HTTP spans in, the web UI and query
    # API out; its gRPC query port and health check on loopback.
    otlpHttp = 4318;
    jaeger = 16686;
    jaegerGrpc = 16685; # loopback
    jaegerHealth = 13133; # loopback
    jaegerMetrics = 8888; # its own metrics, for Prometheus
  };

  # The ci host (nixos/modules/ci.nix). nginx serves the forge, Hydra and the binary cache by
  # name on one HTTPS port; Forgejo's own SSH server serves git beside the host's sshd. Hydra
  # and Harmonia listen on loopback only, behind nginx (Forgejo on a unix socket).
  ci = {
    https = 443;
    gitSsh = 2222;
    hydra = 3000; # loopback
    cache = 5000; # loopback: Harmonia
  };

  # Inside every service's pod: the public listener and the operational one (/livez,
  # /readyz, /metrics), which only the kubelet and Prometheus reach; and, for a service
  # whose workload sets `tls` (workloads.nix), its HTTPS listener (http.tls).
  service = {
    http = 8080;
    ops = 9000;
    https = 8443;
  };
}
