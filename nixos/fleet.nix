# The fleet inventory: plain data, nothing computed. Everything else is derived from it by the
# pure-Nix generators in nixos/lib/ (host firewalls, role settings, Prometheus targets, k3s
# manifests, deploy-rs nodes and rollout order, the deployment diagram), which the NixOS
# modules, deploy-rs, the checks of dev/check-fleet.sh and the fleet lab (dev/lab) all read.
# docs/fleet.md explains the fleet; adding a host is one entry in `hosts`.
#
# Host entries, in rollout order after the canary:
#   name     host name, unique in the fleet (also the deploy-rs node name)
#   address  its IPv4 address inside the environment's subnet, unique in the fleet
#   roles    k3s-server | k3s-agent | pulsar | postgres | monitoring | ci
#   size     a key of `sizes`
# Ids that must never change when a host is added or removed (ZooKeeper server ids, etcd
# member names) are derived from the address or the name, never from a position in the list.
{
  # Machine sizes, for capacity planning and the diagram; the hosts' hardware configuration
  # (disks, NICs) is per host under nixos/hosts/ when a real machine is installed.
  sizes = {
    small = {
      cpus = 2;
      memoryMiB = 4096;
      diskGiB = 40;
    };
    medium = {
      cpus = 4;
      memoryMiB = 16384;
      diskGiB = 100;
    };
    large = {
      cpus = 8;
      memoryMiB = 32768;
      diskGiB = 500;
    };
  };

  # Who may log in, with SSH keys only. The key below is a placeholder whose private half was
  # thrown away: replace it with your operators' keys before the first deploy (docs/fleet.md).
  admins = {
    ops = {
      sshKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG8pK3/NDiZZC3tO2hdQAP7n81TgKXcNGKYcSS0zr0Jh replace-me@comptoir"];
    };
    # Not a person: the ci host's release gate, which deploys production when Hydra's `release`
    # job is green on main (nixos/modules/ci.nix). Its key, like every admin's, lets it in as
    # `deploy`; the private half is the secret ci/deploy-ssh-key on the ci host. The key below
    # is a placeholder whose private half was thrown away: replace it with the public half of
    # that secret (docs/runbooks/ci-host.md).
    hydra-release = {
      sshKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAeOQB3p9SPLn5hdRKccD+g/y6BCLxbM1H+xZF2+4Wtm hydra-release@prod-ci-1 replace-me"];
    };
  };

  environments = {
    prod = {
      # The public name of the shop: the ingress serves https://shop.<domain>.
      domain = "comptoir.example";
      subnet = "10.20.0.0/24";
      # Where operators come from (a VPN or bastion range): SSH, the Kubernetes API, Prometheus,
      # Alertmanager and Grafana accept them and the fleet's own hosts, nobody else.
      adminNetworks = ["10.20.250.0/24"];
      # The mail relay the notifications service hands mail to (an outside party): the
      # submission port, STARTTLS required, our account on it (its password is the
      # `smtp-password` file of notifications' Secret). `host` is the name its certificate
      # holds, what notifications connects to; it must resolve to `address`, the only one the
      # NetworkPolicy lets the pods reach. `ca`: the kind of cluster.caFiles (workloads.nix)
      # that signed its certificate, or null for a public certificate (the webpki roots).
      smtpRelay = {
        host = "smtp.comptoir.example";
        address = "10.20.0.250";
        port = 587;
        tls = "starttls";
        username = "comptoir-prod";
        ca = null;
      };
      # Who Alertmanager tells when an alert fires (nixos/lib/alertmanager.nix): e-mail
      # through the relay above, with an account of its own (its password is the sops
      # secret alertmanager/smtp-password of the monitoring host).
      alerts = {
        to = ["oncall@comptoir.example"];
        from = "alertmanager@comptoir.example";
        username = "comptoir-prod-alerts";
      };
      # The ci host's binary cache, https://cache.<domain> (nixos/modules/ci.nix): the public
      # halves of the keys it signs with (`nix key convert-secret-to-public` of the secret
      # ci/cache-signing-key). Every host of the environment substitutes from it once a key is
      # here; two keys during a rotation (docs/runbooks/ci-host.md). Empty: no host uses it.
      binaryCacheKeys = [];
      # Deployed alone first, then health-checked, before the rest (deploy-rs/deploy).
      canary = "prod-agent-1";
      hosts = [
        {
          name = "prod-agent-1";
          address = "10.20.0.21";
          roles = ["k3s-agent"];
          size = "large";
        }
        {
          name = "prod-k3s-1";
          address = "10.20.0.11";
          roles = ["k3s-server"];
          size = "medium";
        }
        {
          name = "prod-k3s-2";
          address = "10.20.0.12";
          roles = ["k3s-server"];
          size = "medium";
        }
        {
          name = "prod-k3s-3";
          address = "10.20.0.13";
          roles = ["k3s-server"];
          size = "medium";
        }
        {
          name = "prod-agent-2";
          address = "10.20.0.22";
          roles = ["k3s-agent"];
          size = "large";
        }
        {
          name = "prod-agent-3";
          address = "10.20.0.23";
          roles = ["k3s-agent"];
          size = "large";
        }
        {
          name = "prod-pulsar-1";
          address = "10.20.0.31";
          roles = ["pulsar"];
          size = "large";
        }
        {
          name = "prod-pulsar-2";
          address = "10.20.0.32";
          roles = ["pulsar"];
          size = "large";
        }
        {
          name = "prod-pulsar-3";
          address = "10.20.0.33";
          roles = ["pulsar"];
          size = "large";
        }
        {
          name = "prod-pg-1";
          address = "10.20.0.41";
          roles = ["postgres"];
          size = "large";
        }
        {
          name = "prod-pg-2";
          address = "10.20.0.42";
          roles = ["postgres"];
          size = "large";
        }
        {
          name = "prod-pg-3";
          address = "10.20.0.43";
          roles = ["postgres"];
          size = "large";
        }
        {
          name = "prod-mon-1";
          address = "10.20.0.51";
          roles = ["monitoring"];
          size = "medium";
        }
        {
          name = "prod-ci-1";
          address = "10.20.0.61";
          roles = ["ci"];
          size = "large";
        }
      ];
    };

    # Production's shape at its smallest: one host per role, the same modules and manifests.
    staging = {
      domain = "staging.comptoir.example";
      subnet = "10.30.0.0/24";
      adminNetworks = ["10.20.250.0/24"];
      smtpRelay = {
        host = "smtp.staging.comptoir.example";
        address = "10.30.0.250";
        port = 587;
        tls = "starttls";
        username = "comptoir-staging";
        ca = null;
      };
      # Who Alertmanager tells when an alert fires (nixos/lib/alertmanager.nix): e-mail
      # through the relay above, with an account of its own (its password is the sops
      # secret alertmanager/smtp-password of the monitoring host).
      alerts = {
        to = ["oncall-staging@comptoir.example"];
        from = "alertmanager@staging.comptoir.example";
        username = "comptoir-staging-alerts";
      };
      canary = "staging-k3s-1";
      hosts = [
        {
          name = "staging-k3s-1";
          address = "10.30.0.11";
          roles = ["k3s-server"];
          size = "medium";
        }
        {
          name = "staging-agent-1";
          address = "10.30.0.21";
          roles = ["k3s-agent"];
          size = "medium";
        }
        {
          name = "staging-pulsar-1";
          address = "10.30.0.31";
          roles = ["pulsar"];
          size = "medium";
        }
        {
          name = "staging-pg-1";
          address = "10.30.0.41";
          roles = ["postgres"];
          size = "medium";
        }
        {
          name = "staging-mon-1";
          address = "10.30.0.51";
          roles = ["monitoring"];
          size = "small";
        }
      ];
    };

    # The fleet brought up on one machine in network namespaces (dev/lab, docs/fleet.md): the
    # stateful roles at production's redundancy (3 pulsar, 3 postgres), two application hosts.
    lab = {
      domain = "lab.comptoir.test";
      subnet = "10.77.0.0/24";
      adminNetworks = ["10.77.0.250/32"];
      # The lab's relay is Mailpit (dev/lab), STARTTLS required with a certificate of the
      # lab's platform CA for its address, and the account below.
      smtpRelay = {
        host = "10.77.0.60";
        address = "10.77.0.60";
        port = 1025;
        tls = "starttls";
        username = "comptoir-lab";
        ca = "platform";
      };
      # Who Alertmanager tells when an alert fires (nixos/lib/alertmanager.nix): e-mail
      # through the relay above, with an account of its own (its password is the sops
      # secret alertmanager/smtp-password of the monitoring host).
      alerts = {
        to = ["oncall@lab.comptoir.test"];
        from = "alertmanager@lab.comptoir.test";
        username = "comptoir-lab-alerts";
      };
      canary = "lab-app-2";
      hosts = [
        {
          name = "lab-app-2";
          address = "10.77.0.22";
          roles = ["k3s-agent"];
          size = "small";
        }
        {
          name = "lab-app-1";
          address = "10.77.0.21";
          roles = ["k3s-server"];
          size = "small";
        }
        {
          name = "lab-pulsar-1";
          address = "10.77.0.31";
          roles = ["pulsar"];
          size = "small";
        }
        {
          name = "lab-pulsar-2";
          address = "10.77.0.32";
          roles = ["pulsar"];
          size = "small";
        }
        {
          name = "lab-pulsar-3";
          address = "10.77.0.33";
          roles = ["pulsar"];
          size = "small";
        }
        {
          name = "lab-pg-1";
          address = "10.77.0.41";
          roles = ["postgres"];
          size = "small";
        }
        {
          name = "lab-pg-2";
          address = "10.77.0.42";
          roles = ["postgres"];
          size = "small";
        }
        {
          name = "lab-pg-3";
          address = "10.77.0.43";
          roles = ["postgres"];
          size = "small";
        }
        {
          name = "lab-mon-1";
          address = "10.77.0.51";
          roles = ["monitoring"];
          size = "small";
        }
      ];
    };
  };
}
