# The baseline every host of the fleet imports (nixos/default.nix), whatever its roles: who may
# log in and how, the host's name and address from the inventory, its firewall
# (nixos/lib/firewall.nix), the node exporter, bounded logs and store, time, and sops-nix.
{
  config,
  lib,
  fleetLib,
  host,
  ...
}: let
  inherit (fleetLib) fleet ports;
  env = fleetLib.inventory.environment host.env;
  cfg = config.comptoir.network;

  # "10.20.0.0/24" → 24: every host's address is inside its environment's subnet.
  prefixLength = lib.toInt (lib.last (lib.splitString "/" env.subnet));

  # Every operator's keys, for the deploy account.
  adminKeys = lib.concatMap (admin: admin.sshKeys) (lib.attrValues fleet.admins);

  # The environment's encrypted secrets (secrets/README.md). The repository ships none: each
  # installation encrypts its own to its hosts' keys and commits the file.
  sopsFile = ../../secrets + "/${host.env}.yaml";
  hasSopsFile = builtins.pathExists sopsFile;

  # The environment's binary cache (the ci role, nixos/modules/ci.nix), once nixos/fleet.nix
  # holds its public key: deploy-rs copies closures with --substitute-on-destination, so a
  # host fetches what the cache has from it. The name resolves here, without DNS.
  ciHosts = fleetLib.inventory.hostsOf host.env "ci";
  cacheKeys = env.binaryCacheKeys or [];
  useCache = ciHosts != [] && cacheKeys != [];
  cacheName = "cache.${env.domain}";
in {
  options.comptoir.network = {
    # The name of the NIC that carries the host's address. A QEMU/KVM guest on the i440fx
    # machine type with a virtio NIC in slot 3 calls it ens3; q35 guests often say enp1s0 and
    # bare metal anything: set it in the host's own nixos/hosts/<name>.nix when it differs.
    interface = lib.mkOption {
      type = lib.types.str;
      default = "ens3";
      description = "Network interface that carries the host's inventory address.";
    };
    # The inventory has no gateway, name servers or time servers yet (an environment's
    # `gateway`, `nameservers` and `ntpServers` are read when they appear): without a
    # gateway the host reaches its subnet only, which is all the fleet itself needs
    # (deploy-rs pushes closures; nothing is downloaded on the hosts), but chrony then needs
    # a time server inside the subnet.
    gateway = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = env.gateway or null;
      description = "IPv4 default gateway, or null for none.";
    };
    nameservers = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = env.nameservers or [];
      description = "DNS resolvers.";
    };
  };

  config = {
    # The NixOS release the hosts were first installed with: it selects defaults for stateful
    # services (PostgreSQL's data layout, for instance). Never change it on an installed host.
    system.stateVersion = lib.mkDefault "25.11";

    assertions = [
      {
        assertion = !(fleet.admins ? deploy || fleet.admins ? root);
        message = "nixos/fleet.nix: `deploy` and `root` are reserved account names, not admins.";
      }
    ];

    ## Network: the static address of the inventory, no DHCP.
    networking = {
      hostName = host.name;
      useDHCP = false;
      interfaces.${cfg.interface}.ipv4.addresses = [
        {
          inherit (host) address;
          inherit prefixLength;
        }
      ];
      defaultGateway = lib.mkIf (cfg.gateway != null) {
        address = cfg.gateway;
        inherit (cfg) interface;
      };
      inherit (cfg) nameservers;
      timeServers = lib.mkIf (env ? ntpServers) env.ntpServers;

      # The firewall is ours (nixos/lib/firewall.nix), not NixOS's: the NixOS firewall would
      # add its own table and open ports for any service with openFirewall.
      firewall.enable = false;
      nftables = {
        enable = true;
        ruleset = fleetLib.firewall.${host.name};
        # With a `ruleset`, NixOS defaults to `flush ruleset` on every start and reload, which
        # would also wipe k3s' tables (kube-proxy, flannel and kube-router write theirs with
        # iptables-nft) until they resync. Ours replaces only its own table; stopping the
        # service removes it (extraDeletions also runs on stop).
        flushRuleset = false;
        extraDeletions = ''
          table inet comptoir_filter
          delete table inet comptoir_filter
        '';
      };
    };

    ## Logins: SSH keys only, no passwords anywhere.
    services.openssh = {
      enable = true;
      # One host key, ed25519: sops-nix derives the host's age key from it.
      hostKeys = [
        {
          path = "/etc/ssh/ssh_host_ed25519_key";
          type = "ed25519";
        }
      ];
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "no";
        X11Forwarding = false;
      };
    };

    # Accounts come from nixos/fleet.nix only; nobody adds one by hand on a host.
    users.mutableUsers = false;
    users.users =
      lib.mapAttrs (_: admin: {
        isNormalUser = true;
        # systemd-journal: read every unit's logs without sudo.
        extraGroups = ["wheel" "systemd-journal"];
        openssh.authorizedKeys.keys = admin.sshKeys;
      })
      fleet.admins
      // {
        # deploy-rs logs in as `deploy` (sshUser) and activates as root (user) through sudo.
        # Why not a `deploy` account allowed to run only the activation:
        #  - deploy-rs copies the closure with `nix copy` as that account, which must then be a
        #    Nix trusted user to import unsigned paths, and a trusted user is root-equivalent
        #    (the Nix manual says so: it can import any path, set any build option);
        #  - the commands it runs through sudo (`<closure>/activate-rs activate ...`, `... wait
        #    ...`, `rm /tmp/deploy-rs-canary-...`) name a new store path on every deploy, so a
        #    sudoers rule would need /nix/store/*/activate-rs, and any local user can put an
        #    `activate-rs` of their own into the store.
        # A restriction that holds nothing back would only make deploys fragile. So: `deploy` is
        # a wheel account like the admins, holds every admin's key (sshd's log names the key
        # that logged in), and wheel runs sudo without a password (there are none to type).
        deploy = {
          isNormalUser = true;
          description = "deploy-rs (sshUser); keys: every admin's";
          extraGroups = ["wheel"];
          openssh.authorizedKeys.keys = adminKeys;
        };
        root.hashedPassword = "!";
      };

    security.sudo = {
      enable = true;
      wheelNeedsPassword = false;
      # Only wheel may even execute sudo: one less setuid binary for everyone else.
      execWheelOnly = true;
    };

    nix.settings = {
      # deploy-rs imports its closures as `deploy` (see above).
      trusted-users = ["root" "deploy"];
      # The services' own accounts have no business with the Nix daemon.
      allowed-users = ["@wheel"];
      extra-substituters = lib.mkIf useCache ["https://${cacheName}"];
      extra-trusted-public-keys = lib.mkIf useCache cacheKeys;
    };
    networking.hosts = lib.mkIf useCache {${(lib.head ciHosts).address} = [cacheName];};

    ## Metrics: the node exporter on every host, scraped by the environment's Prometheus
    ## (nixos/lib/prometheus.nix); the firewall admits only the monitoring hosts.
    services.prometheus.exporters.node = {
      enable = true;
      port = ports.nodeExporter;
      # systemd: failed units (the SystemdUnitFailed alert). timex and filesystem, which the
      # other host alerts read, are on by default.
      enabledCollectors = ["systemd"];
    };

    ## Bounded disks: logs, the Nix store, boot entries.
    services.journald.extraConfig = ''
      SystemMaxUse=2G
      SystemKeepFree=4G
      MaxRetentionSec=1month
    '';
    nix.gc = {
      automatic = true;
      dates = "weekly";
      randomizedDelaySec = "1h";
      # Generations younger than this stay, so a rollback has somewhere to go.
      options = "--delete-older-than 30d";
    };
    nix.optimise = {
      automatic = true;
      dates = ["weekly"];
    };
    # Each generation's kernel and initrd live on the small /boot (FilesystemAlmostFull).
    boot.loader.systemd-boot.configurationLimit = lib.mkDefault 20;
    boot.tmp.cleanOnBoot = true;

    ## Time: etcd, ZooKeeper, TLS and the services' tokens all assume synchronised clocks.
    ## chrony rather than timesyncd: it slews instead of stepping, serves as an NTP client of
    ## several servers, and reports its state (ClockNotSynchronised reads it via timex).
    services.chrony.enable = true;
    time.timeZone = "UTC";

    ## Secrets: sops-nix, decrypted at activation with the host's age key, which is derived
    ## from its SSH host key (docs/adr/0018-secrets-with-sops-nix.md, secrets/README.md).
    sops = {
      # Without the environment's file the hosts still build (CI evaluates them), but a host
      # that declares a secret fails to activate, and deploy-rs rolls it back.
      defaultSopsFile =
        if hasSopsFile
        then sopsFile
        else "/var/empty/secrets-${host.env}.yaml-is-not-in-the-repository";
      validateSopsFiles = hasSopsFile;
      age.sshKeyPaths = ["/etc/ssh/ssh_host_ed25519_key"];
      # No RSA host key, so no GnuPG import of one.
      gnupg.sshKeyPaths = [];
    };
    warnings = lib.optional (!hasSopsFile && config.sops.secrets != {}) ''
      ${host.name}: secrets/${host.env}.yaml does not exist, so its secrets (${lib.concatStringsSep ", " (lib.attrNames config.sops.secrets)}) cannot be installed and activation will fail. Create it: secrets/README.md.
    '';
  };
}
