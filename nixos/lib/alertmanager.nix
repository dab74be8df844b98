# Alertmanager, per environment, derived from the inventory (nixos/fleet.nix). Outputs:
#
#   alertmanager.<env>     the configuration file as an attribute set (its JSON is YAML):
#                          the route and the receivers. nixos/modules/monitoring.nix writes
#                          it; dev/fleet/check-hosts.sh checks it with amtool; the fleet lab
#                          runs it (dev/labkit/roles/monitoring.py).
#   alertmanagerSecrets    the files it reads at run time: systemd credentials of
#                          alertmanager.service (the module runs it with DynamicUser, so the
#                          sops files reach it through LoadCredential, not an owner).
#
# The operators are told by e-mail, through the environment's mail relay (`smtpRelay`, the
# outside party notifications hands the shoppers' mail to) with an account of Alertmanager's
# own (`alerts.username`: a leaked monitoring host cannot send as the shop), TLS as the relay
# requires and its certificate verified for `smtpRelay.host`. Resolved alerts are mailed too.
# `Watchdog` (always firing, nixos/monitoring/rules/services.yaml) proves the path from the
# rules to Alertmanager; it goes to the `heartbeat` receiver, for a dead man's switch, never
# to the operators' mailbox.
{inventory, ...}: let
  inherit (builtins) concatStringsSep listToAttrs map toString;

  credentials = "/run/credentials/alertmanager.service";
  alertmanagerSecrets = {
    # The password of alerts.username at the relay: sops secret alertmanager/smtp-password.
    smtpPassword = "${credentials}/smtp-password";
    # The CA of the relay's certificate when smtpRelay.ca names one (null: public roots):
    # sops secret alertmanager/relay-ca.
    relayCa = "${credentials}/relay-ca";
  };

  # Alertmanager speaks implicit TLS on port 465 only, and STARTTLS elsewhere when told to
  # require it.
  tlsOf = env: relay:
    if relay.tls == "starttls"
    then {require_tls = true;}
    else if relay.tls == "tls"
    then
      if relay.port == 465
      then {require_tls = false;}
      else throw "alertmanager.nix: ${env}: Alertmanager uses implicit TLS on port 465 only; smtpRelay.port is ${toString relay.port}"
    else if relay.tls == "none"
    then {require_tls = false;}
    else throw "alertmanager.nix: ${env}: unknown smtpRelay.tls ${relay.tls}";

  configOf = env: let
    environment = inventory.environment env;
    relay = environment.smtpRelay;
    inherit (environment) alerts;
  in {
    route = {
      receiver = "operators";
      group_by = ["alertname" "env" "host"];
      group_wait = "30s";
      group_interval = "5m";
      repeat_interval = "4h";
      routes = [
        {
          receiver = "heartbeat";
          matchers = ["alertname=\"Watchdog\""];
          # Re-sent every minute, so its absence is noticed within minutes.
          group_wait = "0s";
          group_interval = "1m";
          repeat_interval = "1m";
        }
      ];
    };
    receivers = [
      {
        name = "operators";
        email_configs = [
          ({
              to = concatStringsSep ", " alerts.to;
              inherit (alerts) from;
              smarthost = "${relay.host}:${toString relay.port}";
              hello = "alertmanager.${environment.domain}";
              auth_username = alerts.username;
              auth_password_file = alertmanagerSecrets.smtpPassword;
              send_resolved = true;
              tls_config =
                {server_name = relay.host;}
                // (
                  if relay.ca == null
                  then {}
                  else {ca_file = alertmanagerSecrets.relayCa;}
                );
            }
            // tlsOf env relay)
        ];
      }
      # No destination yet: point it at a dead man's switch service (a webhook) that pages
      # when the heartbeat stops.
      {name = "heartbeat";}
    ];
  };
in {
  inherit alertmanagerSecrets;
  alertmanager = listToAttrs (map (env: {
      name = env;
      value = configOf env;
    })
    inventory.environments);
}
