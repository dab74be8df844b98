# The pulsar role: a BookKeeper bookie and a Pulsar broker on every pulsar host, ZooKeeper on
# the ensemble's hosts, all configured from nixos/lib/pulsar.nix (the settings the fleet lab
# starts the same jars with). The bookie and the broker run the release's own launch script
# (`bin/pulsar bookie|broker`, from nix/pulsar.nix) with our rendered properties files.
#
# Once per cluster, on its first host: the cluster metadata (guarded), then the topology of
# libs/events/topology/comptoir.toml, applied by comptoir-xtask as `admin` over https.
#
# Secrets (sops-nix, decrypted to /run/secrets/pulsar/*): the CA, this broker's certificate and
# PKCS#8 key (SANs: fleetLib.pulsar.<env>.hosts.<host>.certificate), the RS256 public key that verifies tokens, the
# brokers' token (role `broker`) and, on the first host only, the operators' token (`admin`).
# ZooKeeper and the bookies speak plaintext to each other and to the brokers: only the pulsar
# hosts reach those ports (the role's firewall); services reach the brokers' TLS ports only.
{
  lib,
  pkgs,
  fleetLib,
  host,
  comptoir,
  ...
}: let
  cluster = fleetLib.pulsar.${host.env};
  own = cluster.hosts.${host.name};
  zk = own.zookeeper;
  isInitHost = cluster.initHost == host.name;

  confFile = name: pkgs.writeText "comptoir-${cluster.cluster}-${name}" own.files.${name};
  pulsarBin = "${comptoir.pulsar}/bin/pulsar";

  # What every unit of this role gets: the shared sandbox (nixos/modules/hardening.nix) and
  # netlink sockets, as these units always had. (No MemoryDenyWriteExecute: the JVM's JIT
  # writes code.)
  hardening =
    import ./hardening.nix
    // {RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK"];};

  # A long-running JVM of this role.
  daemon = {
    user,
    state,
    environment,
    command,
  }: {
    wantedBy = ["multi-user.target"];
    wants = ["network-online.target"];
    inherit environment;
    serviceConfig =
      hardening
      // {
        ExecStart = "${pulsarBin} ${command}";
        User = user;
        Group = user;
        StateDirectory = state;
        StateDirectoryMode = "0700";
        WorkingDirectory = "/var/lib/${state}";
        # The release's scripts write GC logs under PULSAR_LOG_DIR; the logs go to the journal.
        LogsDirectory = state;
        # The other hosts' ZooKeeper and bookies may come up later: retry, never give up.
        Restart = "always";
        RestartSec = 10;
        LimitNOFILE = 65536;
        TimeoutStopSec = 90;
      };
    unitConfig.StartLimitIntervalSec = 0;
  };

  # The release's ZooKeeper CLI, against the ensemble.
  zkShell = "${pulsarBin} zookeeper-shell -server ${cluster.zookeeper.connect}";
in {
  # sops-nix: every secret of this host where the generated settings expect it.
  sops.secrets = lib.mapAttrs' (purpose: path:
    lib.nameValuePair cluster.secretNames.${purpose} {
      inherit path;
      owner = "pulsar";
      group = "pulsar";
      mode =
        if purpose == "ca"
        then "0444"
        else "0400";
      # Pulsar reloads certificates by itself (tlsCertRefreshCheckDurationSec); a new public
      # key or token needs a restart.
      restartUnits = lib.optional (purpose == "tokenPublicKey" || purpose == "brokerToken") "pulsar-broker.service";
    })
  own.secrets;

  users.users.pulsar = {
    isSystemUser = true;
    group = "pulsar";
    description = "Pulsar broker";
  };
  users.groups.pulsar = {};
  users.users.bookkeeper = {
    isSystemUser = true;
    group = "bookkeeper";
    description = "BookKeeper bookie";
  };
  users.groups.bookkeeper = {};

  # The operators' CLI (pulsar-admin, bookkeeper shell) against this cluster.
  environment.systemPackages = [comptoir.pulsar];

  # --- ZooKeeper (ensemble members only): nixpkgs' module, our zoo.cfg keys ---
  services.zookeeper = lib.mkIf (zk != null) {
    enable = true;
    id = zk.myid;
    port = zk.conf.clientPort;
    inherit (zk.conf) dataDir;
    purgeInterval = zk.conf."autopurge.purgeInterval";
    servers = lib.concatMapStrings (server: server.line + "\n") cluster.zookeeper.servers;
    # Every other key, rendered by the same function as the lab's files; the module writes
    # dataDir, clientPort, the purge interval and the server lines itself.
    extraConf = fleetLib.toProperties (lib.filterAttrs (key: _:
      !(lib.elem key ["dataDir" "clientPort" "autopurge.purgeInterval"])
      && !(lib.hasPrefix "server." key))
    zk.conf);
    # Heap sized from the host (nixos/lib/pulsar.nix); no remote JMX.
    extraCmdLineOptions = lib.splitString " " own.jvm.zookeeper;
  };
  systemd.services.zookeeper = lib.mkIf (zk != null) {
    wants = ["network-online.target"];
    after = ["network-online.target"];
    serviceConfig =
      hardening
      // {
        ReadWritePaths = [zk.conf.dataDir];
        Restart = "always";
        RestartSec = 5;
      };
  };

  # --- BookKeeper bookie ---
  systemd.tmpfiles.rules = [
    "d ${own.bookkeeper.journalDirectories} 0700 bookkeeper bookkeeper - -"
    "d ${own.bookkeeper.ledgerDirectories} 0700 bookkeeper bookkeeper - -"
  ];
  systemd.services.pulsar-bookie =
    daemon {
      user = "bookkeeper";
      state = "bookkeeper";
      command = "bookie";
      environment = {
        PULSAR_BOOKKEEPER_CONF = confFile "bookkeeper.conf";
        BOOKIE_MEM = own.jvm.bookie;
        PULSAR_LOG_DIR = "/var/log/bookkeeper";
      };
    }
    // {
      description = "BookKeeper bookie of ${cluster.cluster}";
      after = ["network-online.target"] ++ lib.optional (zk != null) "zookeeper.service";
    };

  # --- Pulsar broker ---
  systemd.services.pulsar-broker =
    daemon {
      user = "pulsar";
      state = "pulsar";
      command = "broker";
      environment = {
        PULSAR_BROKER_CONF = confFile "broker.conf";
        PULSAR_MEM = own.jvm.broker;
        PULSAR_LOG_DIR = "/var/log/pulsar";
      };
    }
    // {
      description = "Pulsar broker of ${cluster.cluster}";
      after =
        ["network-online.target" "pulsar-bookie.service"]
        ++ lib.optional (zk != null) "zookeeper.service"
        ++ lib.optional isInitHost "pulsar-init-cluster.service";
    };

  # --- Once per cluster, on its first host ---

  # Registers the cluster and formats BookKeeper's metadata. Guarded twice: a stamp file (so a
  # normal boot does nothing), and ZooKeeper itself (a rebuilt first host finds the cluster
  # registered and only writes the stamp). Running the setup again would be harmless too
  # (Pulsar 4.0 skips what exists), but it is not what a boot should do.
  systemd.services.pulsar-init-cluster = lib.mkIf isInitHost {
    description = "Pulsar cluster metadata of ${cluster.cluster} (once)";
    wantedBy = ["multi-user.target"];
    wants = ["network-online.target"];
    after = ["network-online.target"] ++ lib.optional (zk != null) "zookeeper.service";
    unitConfig.ConditionPathExists = "!/var/lib/pulsar-init/${cluster.cluster}.done";
    environment.PULSAR_LOG_DIR = "/var/log/pulsar-init";
    path = [pkgs.coreutils pkgs.gnugrep];
    serviceConfig =
      hardening
      // {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "pulsar";
        Group = "pulsar";
        StateDirectory = "pulsar-init";
        LogsDirectory = "pulsar-init";
        WorkingDirectory = "/var/lib/pulsar-init";
        # The other ZooKeeper members may still be booting.
        TimeoutStartSec = "20min";
      };
    script = ''
      set -euo pipefail
      # `stat` exits 1 both for a missing node and for no quorum: read what it says.
      for attempt in $(seq 1 120); do
        answer="$(${zkShell} stat /admin/clusters/${cluster.cluster} 2>&1 || true)"
        if grep -q '^cZxid' <<<"$answer"; then
          echo "cluster ${cluster.cluster} is already registered"
          break
        elif grep -q 'Node does not exist' <<<"$answer"; then
          ${pulsarBin} initialize-cluster-metadata ${lib.escapeShellArgs cluster.initializeMetadataArgs}
          break
        fi
        echo "waiting for a ZooKeeper quorum (attempt $attempt)"
        sleep 10
      done
      grep -q '^cZxid' <<<"$(${zkShell} stat /admin/clusters/${cluster.cluster} 2>&1 || true)" \
        || { echo "cluster ${cluster.cluster} is not registered" >&2; exit 1; }
      touch /var/lib/pulsar-init/${cluster.cluster}.done
    '';
  };

  # The topology (tenant, namespaces, policies, grants, partitioned topics) as `admin`, once the
  # broker answers; idempotent, so it runs again on every deploy that changes it (the binary, and
  # with it the embedded comptoir.toml, is part of this unit).
  systemd.services.pulsar-topology = lib.mkIf isInitHost {
    description = "Pulsar topology of Comptoir on ${cluster.cluster}";
    wantedBy = ["multi-user.target"];
    wants = ["pulsar-broker.service"];
    after = ["pulsar-broker.service"];
    path = [pkgs.coreutils pkgs.curl];
    environment = {
      COMPTOIR_PULSAR_ADMIN_TOKEN_FILE = own.secrets.adminToken;
      COMPTOIR_PULSAR_CA_FILE = own.secrets.ca;
    };
    serviceConfig =
      hardening
      // {
        Type = "oneshot";
        RemainAfterExit = true;
        User = "pulsar";
        Group = "pulsar";
        TimeoutStartSec = "20min";
      };
    script = ''
      set -euo pipefail
      # The broker is ready when its own health check (a produce and consume through it)
      # passes. The token goes to curl on stdin, never on a command line.
      for attempt in $(seq 1 120); do
        if printf 'Authorization: Bearer %s\n' "$(<"$COMPTOIR_PULSAR_ADMIN_TOKEN_FILE")" \
          | curl -fsS -o /dev/null --max-time 30 --cacert "$COMPTOIR_PULSAR_CA_FILE" -H @- \
            ${cluster.adminUrl}/admin/v2/brokers/health; then
          break
        fi
        echo "waiting for the broker at ${cluster.adminUrl} (attempt $attempt)"
        sleep 10
      done
      exec ${comptoir.xtask}/bin/comptoir-xtask provision-topology ${cluster.adminUrl}
    '';
  };
}
