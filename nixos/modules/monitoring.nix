# The monitoring role: Prometheus (its configuration generated from the inventory by
# nixos/lib/prometheus.nix, its rules in nixos/monitoring/rules/), Alertmanager (its
# configuration from nixos/lib/alertmanager.nix: the operators told by e-mail through the
# environment's mail relay), Jaeger (its configuration from nixos/lib/jaeger.nix: every
# service's spans over OTLP/HTTP, kept seven days), and Grafana provisioned with that
# Prometheus, that Jaeger and the dashboards of nixos/monitoring/dashboards/.
# Operators reach them from the environment's admin networks only
# (nixos/lib/firewall.nix); none of them has TLS or, Prometheus, Alertmanager and Jaeger, any
# login of its own: the admin networks are the operators' VPN.
{
  config,
  lib,
  pkgs,
  comptoir,
  fleetLib,
  host,
  ...
}: let
  inherit (fleetLib) ports prometheusSecrets alertmanagerSecrets jaegerStateDir;
  relay = (fleetLib.inventory.environment host.env).smtpRelay;

  # The sops secrets Alertmanager reads, by the name of the systemd credential that carries
  # each (alertmanager.service runs with DynamicUser: no fixed owner for a secret file).
  alertmanagerCredentials =
    {smtp-password = "alertmanager/smtp-password";}
    // lib.optionalAttrs (relay.ca != null) {relay-ca = "alertmanager/relay-ca";};

  # The rule files of nixos/monitoring/rules/, each copied to the store as it is.
  ruleFiles = map (name: "${../monitoring/rules + "/${name}"}") fleetLib.ruleFiles;

  # The generated configuration plus the rule files; its JSON is valid YAML.
  prometheusConfig = fleetLib.prometheus.${host.env} // {rule_files = ruleFiles;};

  # The files the configuration reads (CA certificates, the Kubernetes token) are sops
  # secrets named after their path: /run/secrets/prometheus/k3s-token is the key
  # prometheus/k3s-token of secrets/<env>.yaml.
  secretName = path: let
    name = lib.removePrefix "/run/secrets/" path;
  in
    if name == path
    then throw "monitoring.nix: ${path} is not under /run/secrets"
    else name;

  grafanaSecret = name: "$__file{${config.sops.secrets."grafana/${name}".path}}";
in {
  sops.secrets =
    lib.mapAttrs' (_: path:
      lib.nameValuePair (secretName path) {
        owner = "prometheus";
        # Prometheus re-reads credential and CA files itself; a reload makes it immediate.
        reloadUnits = ["prometheus.service"];
      })
    prometheusSecrets
    // lib.mapAttrs' (_: name:
      lib.nameValuePair name {
        # Read by systemd (root) into the service's credentials, so root-only here.
        restartUnits = ["alertmanager.service"];
      })
    alertmanagerCredentials
    // {
      "grafana/admin-password" = {
        owner = "grafana";
        restartUnits = ["grafana.service"];
      };
      # Encrypts the data source credentials Grafana stores in its database. Grafana's
      # built-in default is public, so it would protect nothing.
      "grafana/secret-key" = {
        owner = "grafana";
        restartUnits = ["grafana.service"];
      };
    };

  services.prometheus = {
    enable = true;
    port = ports.monitoring.prometheus;
    webExternalUrl = "http://${host.address}:${toString ports.monitoring.prometheus}/";
    # The whole file, not the typed options: the generator's output is already the file, and
    # dev/fleet/check-hosts.sh checks exactly this with promtool.
    configText = builtins.toJSON prometheusConfig;
    # The build sandbox has no /run/secrets: check the syntax there; the full check (files in
    # place, rule files, unit tests) runs in dev/fleet/check-hosts.sh.
    checkConfig = "syntax-only";
    # A configuration change reloads Prometheus instead of restarting it (no gap in scrapes).
    enableReload = true;
    retentionTime = "30d";
  };

  services.prometheus.alertmanager = {
    enable = true;
    port = ports.monitoring.alertmanager;
    webExternalUrl = "http://${host.address}:${toString ports.monitoring.alertmanager}/";
    # One Alertmanager per environment: no cluster, so no gossip listener on 9094 (the
    # firewall would drop it anyway). With a second monitoring host, cluster them instead.
    extraFlags = ["--cluster.listen-address="];
    # The generated file (route, receivers); its credentials below.
    configuration = fleetLib.alertmanager.${host.env};
  };

  # The files of alertmanagerSecrets, at the paths the configuration names.
  systemd.services.alertmanager.serviceConfig.LoadCredential =
    lib.mapAttrsToList (credential: secret: "${credential}:${config.sops.secrets.${secret}.path}")
    alertmanagerCredentials;
  assertions = [
    {
      assertion =
        lib.all (path: lib.hasPrefix "/run/credentials/alertmanager.service/" path)
        (builtins.attrValues alertmanagerSecrets);
      message = "monitoring.nix: alertmanagerSecrets must be credentials of alertmanager.service";
    }
    {
      assertion = fleetLib.jaeger.${host.env} != null;
      message = "monitoring.nix: ${host.name} is a monitoring host, but nixos/lib/jaeger.nix made no configuration for ${host.env}";
    }
  ];

  # Jaeger: no NixOS module exists, so its unit is here. The configuration is the generated
  # file as it is (JSON is YAML); its traces in the state directory it names.
  systemd.services.jaeger = {
    description = "Jaeger: the services' traces (OTLP/HTTP in, web UI and query API out)";
    wantedBy = ["multi-user.target"];
    after = ["network-online.target"];
    wants = ["network-online.target"];
    serviceConfig =
      import ./hardening.nix
      // {
        ExecStart = "${comptoir.jaeger}/bin/jaeger --config ${pkgs.writeText "jaeger.yaml" (builtins.toJSON fleetLib.jaeger.${host.env})}";
        DynamicUser = true;
        StateDirectory = lib.removePrefix "/var/lib/" jaegerStateDir;
        StateDirectoryMode = "0700";
        Restart = "on-failure";
        RestartSec = 5;
        MemoryMax = "1G";
      };
  };

  services.grafana = {
    enable = true;
    settings = {
      server = {
        http_addr = "0.0.0.0";
        http_port = ports.monitoring.grafana;
        domain = host.address;
        root_url = "http://${host.address}:${toString ports.monitoring.grafana}/";
      };
      security = {
        admin_user = "admin";
        admin_password = grafanaSecret "admin-password";
        secret_key = grafanaSecret "secret-key";
        disable_gravatar = true;
      };
      users.allow_sign_up = false;
      analytics = {
        reporting_enabled = false;
        check_for_updates = false;
      };
    };
    provision = {
      enable = true;
      datasources.settings = {
        apiVersion = 1;
        datasources = [
          {
            name = "Prometheus";
            uid = "prometheus";
            type = "prometheus";
            access = "proxy";
            url = "http://localhost:${toString ports.monitoring.prometheus}";
            isDefault = true;
            editable = false;
          }
          {
            name = "Jaeger";
            uid = "jaeger";
            type = "jaeger";
            access = "proxy";
            url = "http://${host.address}:${toString ports.monitoring.jaeger}";
            editable = false;
          }
        ];
      };
      # Every JSON file of nixos/monitoring/dashboards/, in one folder; edits in the UI are not kept
      # (the files are the source).
      dashboards.settings = {
        apiVersion = 1;
        providers = [
          {
            name = "comptoir";
            folder = "Comptoir";
            type = "file";
            disableDeletion = true;
            allowUiUpdates = false;
            options.path = ../monitoring/dashboards;
          }
        ];
      };
    };
  };
}
