# The postgres role: PostgreSQL under Patroni, etcd as Patroni's DCS on the same hosts, a
# Prometheus exporter, WAL archiving and nightly base backups with pgBackRest, and the service
# databases, all from nixos/lib/patroni.nix (whose header says why etcd). The fleet lab starts
# Patroni from the same settings; dev/fleet/check-data.sh validates them with Patroni itself.
#
# Backups: pgBackRest, not a pg_basebackup cron job, because a restore is what matters. It
# checks every WAL segment it archives, keeps a retention of full backups and the WAL between
# them, restores to a point in time in one command (--type=time), can restore "delta" over a
# damaged data directory, and encrypts a remote repository. archive_command pushes each WAL
# segment from the primary; a timer takes a full backup every night on whichever member is
# primary. The restore procedure is docs/runbooks/postgres-restore.md.
#
# Secrets (sops-nix, decrypted to /run/secrets): the environment's CA, the host's certificate
# and key (IP SAN = the host's address; also used by etcd, installed again for the etcd user),
# the replication, rewind and REST API passwords, and one password per service database.
{
  config,
  lib,
  pkgs,
  fleetLib,
  host,
  comptoir,
  ...
}: let
  cfg = config.comptoir.postgres;
  ports = fleetLib.ports.postgres;

  # The generator's default major (its data directory) is this package's.
  postgresql = pkgs.postgresql_17;
  pgbackrest = "${pkgs.pgbackrest}/bin/pgbackrest";

  # The shared settings with this system's paths: bin_dir from the package (what
  # services.patroni itself sets), archive_command with pgBackRest's store path.
  generated = import ../lib/patroni.nix (fleetLib
    // {
      layout = _host: {binDir = "${postgresql}/bin";};
      archiveCommand = env: "${pgbackrest} --stanza=comptoir-${env} archive-push %p";
    });
  cluster = generated.${host.env};
  member = cluster.hosts.${host.name};
  inherit (member.settings.postgresql) data_dir;
  socketDir = member.settings.postgresql.parameters.unix_socket_directories;
  api = "http://${member.settings.restapi.connect_address}";

  # Exports each variable of an attrset (name → file) from its file, for unit scripts.
  exportFiles = files:
    lib.concatStrings (lib.mapAttrsToList (name: file: ''
        export ${name}="$(<${lib.escapeShellArg file})"
      '')
      files);

  # Exits 0 from the calling script unless this member is the primary: the primary provisions
  # and backs up, replication and the shared repository carry the result.
  onlyOnPrimary = ''
    for attempt in $(seq 1 60); do
      curl -fsS -o /dev/null --max-time 5 ${api}/health && break
      echo "waiting for Patroni at ${api} (attempt $attempt)"
      sleep 5
    done
    if ! curl -fsS -o /dev/null --max-time 5 ${api}/primary; then
      echo "this member is not the primary: nothing to do here"
      exit 0
    fi
  '';

  # Units that run as the Patroni user beside the database.
  helper = {
    Type = "oneshot";
    User = "patroni";
    Group = "patroni";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectControlGroups = true;
    RestrictAddressFamilies = ["AF_UNIX" "AF_INET" "AF_INET6"];
    CapabilityBoundingSet = "";
  };

  # The repository is on this host's disk unless cfg.backup.repository says otherwise.
  repositoryPath =
    if (cfg.backup.repository.repo1-type or "posix") == "posix"
    then cfg.backup.repository.repo1-path or null
    else null;
  stanzaCommand = "${pgbackrest} --stanza=${cluster.stanza}";
in {
  options.comptoir.postgres.backup = {
    repository = lib.mkOption {
      type = with lib.types; attrsOf (oneOf [str int bool]);
      default = {
        repo1-type = "posix";
        repo1-path = "/var/lib/pgbackrest";
      };
      example = {
        repo1-type = "s3";
        repo1-path = "/comptoir-prod";
        repo1-s3-bucket = "comptoir-backups";
        repo1-s3-endpoint = "s3.eu-west-1.amazonaws.com";
        repo1-s3-region = "eu-west-1";
        repo1-cipher-type = "aes-256-cbc";
      };
      description = ''
        pgBackRest's repository (`repo1-*` keys of its [global] section). Every member of the
        cluster must see the same repository: after a failover the new primary archives and
        backs up into it. The default, a directory on each host, is only whole with a single
        postgres host; with more, point this at object storage (the example) or a shared mount.
      '';
    };
    environmentFiles = lib.mkOption {
      type = with lib.types; attrsOf path;
      default = {};
      example = {
        PGBACKREST_REPO1_S3_KEY = "/run/secrets/postgres/backup-s3-key";
        PGBACKREST_REPO1_S3_KEY_SECRET = "/run/secrets/postgres/backup-s3-key-secret";
        PGBACKREST_REPO1_CIPHER_PASS = "/run/secrets/postgres/backup-cipher-pass";
      };
      description = "pgBackRest's secrets, variable → file (for archive-push, inside Patroni's PostgreSQL, and the backup units).";
    };
  };

  config = {
    assertions = [
      {
        assertion = data_dir == "/var/lib/postgresql/${postgresql.psqlSchema}";
        message = "postgres: nixos/lib/patroni.nix's data directory ${data_dir} is not the one of PostgreSQL ${postgresql.psqlSchema}";
      }
    ];
    warnings = lib.optional (lib.length cluster.hostNames > 1 && repositoryPath != null) ''
      postgres (${host.env}): the pgBackRest repository ${repositoryPath} is local to each host.
      After a failover the new primary starts a repository of its own, so no single repository
      holds the whole history. Set comptoir.postgres.backup.repository to object storage
      (docs/runbooks/postgres-restore.md).
    '';

    # sops-nix: the etcd copies of the CA, certificate and key are the same values as
    # PostgreSQL's (sops keys postgres/*), owned by etcd.
    sops.secrets =
      lib.mapAttrs' (purpose: path: let
        name = cluster.secretNames.${purpose};
        etcdOf = {
          etcdCa = "ca";
          etcdCert = "cert";
          etcdKey = "key";
        };
        isEtcd = etcdOf ? ${purpose};
      in
        lib.nameValuePair name {
          inherit path;
          key =
            if isEtcd
            then cluster.secretNames.${etcdOf.${purpose}}
            else name;
          owner =
            if isEtcd
            then "etcd"
            else "patroni";
          mode =
            if purpose == "ca" || purpose == "etcdCa"
            then "0444"
            else "0400";
          restartUnits = [
            (
              if isEtcd
              then "etcd.service"
              else "patroni.service"
            )
          ];
        })
      member.secrets
      # The services' passwords, read by provisioning (and by the services' pods).
      // lib.listToAttrs (map (db:
        lib.nameValuePair db.passwordSecret {
          owner = "patroni";
          mode = "0400";
        })
      cluster.databases);

    # --- etcd: the DCS, on the postgres hosts themselves ---
    services.etcd = member.etcd // {enable = true;};
    systemd.services.etcd = {
      wants = ["network-online.target"];
      after = ["network-online.target"];
      serviceConfig = {
        Restart = "always";
        RestartSec = 5;
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [member.etcd.dataDir];
        ProtectHome = true;
        PrivateTmp = true;
      };
    };

    # --- Patroni and PostgreSQL ---
    services.patroni = {
      enable = true;
      postgresqlPackage = postgresql;
      postgresqlDataDir = data_dir;
      postgresqlPort = ports.postgres;
      restApiPort = ports.patroni;
      inherit (member.settings) scope name namespace;
      nodeIp = member.address;
      otherNodesIps = map (name: cluster.hosts.${name}.address) (lib.filter (name: name != host.name) cluster.hostNames);
      # A hung Patroni must not leave a primary running unsupervised: the kernel's watchdog
      # reboots the host if Patroni stops feeding it.
      softwareWatchdog = true;
      inherit (member) settings;
      environmentFiles = member.environmentFiles // cfg.backup.environmentFiles;
    };
    systemd.services.patroni = {
      wants = ["network-online.target" "etcd.service"];
      after = ["network-online.target" "etcd.service"];
      serviceConfig = {
        # The socket directory (peer connections of Patroni, pgBackRest, the exporter).
        RuntimeDirectory = lib.removePrefix "/run/" socketDir;
        RuntimeDirectoryMode = "0755";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ReadWritePaths = [data_dir "/var/lib/patroni" "/run/pgbackrest"] ++ lib.optional (repositoryPath != null) repositoryPath;
        ProtectHome = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = ["AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK"];
      };
    };

    # --- Backups: pgBackRest ---
    environment.etc."pgbackrest/pgbackrest.conf".text = lib.generators.toINI {} (lib.recursiveUpdate member.backup {
      global =
        cfg.backup.repository
        // {
          # Shared by archive-push (inside PostgreSQL) and the backup units.
          lock-path = "/run/pgbackrest";
        };
    });
    environment.systemPackages = [pkgs.pgbackrest];
    systemd.tmpfiles.rules =
      ["d /run/pgbackrest 0750 patroni patroni - -"]
      ++ lib.optional (repositoryPath != null) "d ${repositoryPath} 0750 patroni patroni - -";

    # The stanza (the repository's record of this cluster) must exist before the primary can
    # archive; stanza-create is idempotent, so the primary ensures it every few minutes: after a
    # bootstrap or a failover, archiving resumes within minutes (PostgreSQL keeps the WAL it
    # could not archive meanwhile, it loses none).
    systemd.services.postgres-backup-stanza = {
      description = "pgBackRest stanza ${cluster.stanza} (on the primary)";
      after = ["patroni.service"];
      path = [pkgs.coreutils pkgs.curl];
      serviceConfig = helper // {ReadWritePaths = ["/run/pgbackrest"] ++ lib.optional (repositoryPath != null) repositoryPath;};
      script = ''
        ${onlyOnPrimary}
        ${exportFiles cfg.backup.environmentFiles}
        ${stanzaCommand} stanza-create
      '';
    };
    systemd.timers.postgres-backup-stanza = {
      wantedBy = ["timers.target"];
      timerConfig = {
        OnBootSec = "2min";
        OnUnitActiveSec = "5min";
      };
    };

    # A full backup every night on the primary, checked first (archiving works, the repository
    # matches the cluster); pgBackRest then expires what is beyond the retention.
    systemd.services.postgres-backup = {
      description = "pgBackRest full backup of ${cluster.stanza} (on the primary)";
      after = ["patroni.service"];
      path = [pkgs.coreutils pkgs.curl];
      serviceConfig =
        helper
        // {
          ReadWritePaths = ["/run/pgbackrest"] ++ lib.optional (repositoryPath != null) repositoryPath;
          TimeoutStartSec = "6h";
        };
      script = ''
        ${onlyOnPrimary}
        ${exportFiles cfg.backup.environmentFiles}
        ${stanzaCommand} stanza-create
        ${stanzaCommand} check
        ${stanzaCommand} --type=full backup
        ${stanzaCommand} info
      '';
    };
    systemd.timers.postgres-backup = {
      wantedBy = ["timers.target"];
      timerConfig = {
        OnCalendar = "*-*-* 02:30:00";
        # A host that was down at 02:30 backs up when it comes back.
        Persistent = true;
      };
    };

    # --- The service databases, on the primary ---
    # One role and database per service (comptoir-xtask provision-db: LOGIN only, owner of its
    # database, no one else may connect), and the exporter's monitoring role. Idempotent; it
    # runs again whenever the list of services changes this unit.
    systemd.services.postgres-provision = {
      description = "Service databases of ${cluster.scope} (on the primary)";
      wantedBy = ["multi-user.target"];
      wants = ["patroni.service"];
      after = ["patroni.service"];
      path = [pkgs.coreutils pkgs.curl postgresql];
      serviceConfig =
        helper
        // {
          RemainAfterExit = true;
          TimeoutStartSec = "10min";
        };
      script = ''
        ${onlyOnPrimary}
        psql -h ${socketDir} -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL'
        ${cluster.exporterRoleSql}
        SQL
        # Over the socket as postgres (peer): no administrator password exists to leak.
        export COMPTOIR_PG_ADMIN_URL="host=${socketDir} user=postgres dbname=postgres"
        ${lib.concatMapStrings (db: ''
            ${comptoir.xtask}/bin/comptoir-xtask provision-db - ${db.name} ${config.sops.secrets.${db.passwordSecret}.path}
          '')
          cluster.databases}
      '';
    };

    # --- Metrics ---
    services.prometheus.exporters.postgres = {
      enable = true;
      listenAddress = member.address;
      port = ports.exporter;
      # On the socket as postgres_exporter (pg_monitor), admitted by peer: no password.
      dataSourceName = "user=postgres_exporter database=postgres host=${socketDir} sslmode=disable";
    };
    systemd.services.prometheus-postgres-exporter = {
      wants = ["patroni.service"];
      after = ["patroni.service"];
    };
  };
}
