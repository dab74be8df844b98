# Jaeger, the trace backend, per environment, derived from the inventory (nixos/fleet.nix).
# Outputs:
#
#   jaeger.<env>       the configuration file of Jaeger v2 (an OpenTelemetry Collector
#                      distribution) as an attribute set (its JSON is YAML), for the
#                      environment's monitoring host; null without one.
#                      nixos/modules/monitoring.nix runs it; the fleet lab runs it as it is
#                      (dev/labkit/roles/monitoring.py), only its storage directory moved.
#   jaegerStateDir     where it keeps the traces (the unit's StateDirectory).
#   otlpEndpoint.<env> the OTLP/HTTP traces URL every service exports to
#                      (telemetry.otlp_endpoint in nixos/lib/settings.nix): the in-cluster
#                      name `jaeger`, a headless Service whose endpoint is the monitoring host
#                      (nixos/lib/manifests.nix); null without a monitoring host, which leaves
#                      the export off.
#
# One Jaeger per environment, beside Prometheus: the services send it every span over
# OTLP/HTTP (each pod's NetworkPolicy lets it out to that port of the monitoring host, the pods
# SNATed to their node's address, which the monitoring host's firewall admits:
# nixos/lib/firewall.nix); operators read the traces in its web UI, from the admin
# networks only, and in Grafana (a data source of nixos/modules/monitoring.nix). Its other
# listeners (the query API's gRPC port, the health check) stay on loopback.
#
# Storage: Badger on the host's disk, spans kept `retention` then dropped by Badger itself. A
# span carries no personal data (the platform's rule, checked by the e2e personal-data scan
# on dev/up's Jaeger); seven days covers an incident reviewed after a weekend.
{
  inventory,
  ports,
  workloads ? import ../workloads.nix,
  ...
}: let
  inherit (workloads) cluster;
  inherit (builtins) head length listToAttrs map toString;

  jaegerStateDir = "/var/lib/jaeger";
  retention = "168h";

  monitoringHost = env: let
    hosts = inventory.hostsOf env "monitoring";
  in
    if hosts == []
    then null
    else if length hosts == 1
    then head hosts
    else throw "jaeger.nix: ${env}: one Jaeger per environment, but ${toString (length hosts)} monitoring hosts";

  configOf = env: let
    host = monitoringHost env;
    on = address: port: "${address}:${toString port}";
  in
    if host == null
    then null
    else {
      service = {
        extensions = ["jaeger_storage" "jaeger_query" "healthcheckv2"];
        pipelines.traces = {
          receivers = ["otlp"];
          processors = ["batch"];
          exporters = ["jaeger_storage_exporter"];
        };
        telemetry = {
          resource."service.name" = "jaeger";
          # Its own metrics (spans received, refused, failed to store) for the environment's
          # Prometheus, job `jaeger` (nixos/lib/prometheus.nix): the alerts TargetDown and
          # TracesDropped (nixos/monitoring/rules/services.yaml).
          metrics = {
            level = "normal";
            readers = [
              {
                pull.exporter.prometheus = {
                  host = host.address;
                  port = ports.monitoring.jaegerMetrics;
                };
              }
            ];
          };
          logs.level = "info";
        };
      };
      extensions = {
        healthcheckv2 = {
          use_v2 = true;
          http.endpoint = on "127.0.0.1" ports.monitoring.jaegerHealth;
        };
        jaeger_query = {
          storage.traces = "badger";
          # Jaeger's own spans would land among the platform's.
          enable_tracing = false;
          http.endpoint = on host.address ports.monitoring.jaeger;
          grpc.endpoint = on "127.0.0.1" ports.monitoring.jaegerGrpc;
        };
        jaeger_storage.backends.badger.badger = {
          directories = {
            keys = "${jaegerStateDir}/keys";
            values = "${jaegerStateDir}/values";
          };
          ephemeral = false;
          ttl.spans = retention;
        };
      };
      receivers.otlp.protocols.http.endpoint = on host.address ports.monitoring.otlpHttp;
      processors.batch = {};
      exporters.jaeger_storage_exporter.trace_storage = "badger";
    };

  perEnv = f:
    listToAttrs (map (env: {
        name = env;
        value = f env;
      })
      inventory.environments);
in {
  inherit jaegerStateDir;
  jaeger = perEnv configOf;
  otlpEndpoint = perEnv (env: let
    host = monitoringHost env;
  in
    if host == null
    then null
    else "http://jaeger.${cluster.namespace}.svc.${cluster.domain}:${toString ports.monitoring.otlpHttp}/v1/traces");
}
