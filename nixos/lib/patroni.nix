# The PostgreSQL cluster of each environment, derived from the inventory and the service graph:
# one Patroni member per postgres host, etcd beside it on the same hosts, one database and role
# per service that needs PostgreSQL, the pg_hba rules that let exactly those services in, and
# the pgBackRest settings that archive WAL and keep base backups. nixos/modules/postgres.nix
# installs these settings, the fleet lab (dev/lab) starts Patroni from them, and
# dev/fleet/check-data.sh runs `patroni --validate-config` on every member. Builtins only:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).patroni'
#
# Why etcd, not the ZooKeeper the Pulsar hosts run: failover must not depend on another
# system's health or maintenance window. etcd lives on the postgres hosts themselves, so the
# quorum that elects a primary is made of the machines that hold the data; it is Patroni's
# most used DCS (its Raft mode is deprecated upstream, and NixOS removed the option), and it
# is the one the failover timings below were measured with.
#
# Patroni settings are YAML; a Nix attrset renders to JSON, which is YAML. Secrets are never
# here, only the paths of the files sops-nix decrypts them to; passwords reach Patroni as
# environment variables read from those files (`environmentFiles`).
#
# Paths are NixOS's unless a caller passes `layout` (host name → the keys to change), as the
# NixOS module does for bin_dir (its PostgreSQL package) and the lab does for everything:
#   import ./nixos/lib/patroni.nix (lib // {layout = host: {binDir = "..."; dataDir = "...";};})
{
  inventory,
  graph,
  ports,
  layout ? _host: {},
  # env → the archive_command (runs in the primary's postgres, %p the WAL segment).
  archiveCommand ? env: "pgbackrest --stanza=comptoir-${env} archive-push %p",
  ...
}: let
  inherit (builtins) attrNames concatLists concatStringsSep elem filter length listToAttrs map sort lessThan;

  p = ports.postgres;

  # PostgreSQL's major version on NixOS (pkgs.postgresql_17, as the dev shell's); the data
  # directory carries it so a major upgrade is a new directory, never an overwrite.
  postgresMajor = "17";

  defaultLayout = {
    # On NixOS the module replaces this with its package's bin (services.patroni sets bin_dir);
    # /run/current-system/sw/bin has the same binaries and keeps this file pure.
    binDir = "/run/current-system/sw/bin";
    dataDir = "/var/lib/postgresql/${postgresMajor}";
    # Patroni's own state (pgpass), services.patroni.dataDir.
    patroniDir = "/var/lib/patroni";
    socketDir = "/run/postgresql";
    etcdDir = "/var/lib/etcd";
    secretsDir = "/run/secrets";
    # The Unix users the local (socket) rules admit, by peer authentication with a map: the
    # one Patroni, pgBackRest and provisioning run as (→ role postgres), and the exporter's
    # (→ role postgres_exporter, member of pg_monitor).
    adminUser = "patroni";
    exporterUser = "postgres-exporter";
  };

  # The secrets of a postgres host, by purpose → name under the secrets dir (the sops-nix
  # secret name). One host certificate (IP SAN = the host's address, serverAuth and
  # clientAuth) serves PostgreSQL, etcd's peers and clients, and Patroni as etcd client; it is
  # installed twice because the key must belong to the user that reads it.
  secretNames = {
    ca = "postgres/ca.crt";
    cert = "postgres/host.crt";
    key = "postgres/host.key";
    etcdCa = "etcd/ca.crt";
    etcdCert = "etcd/host.crt";
    etcdKey = "etcd/host.key";
    replicationPassword = "postgres/replication-password";
    rewindPassword = "postgres/rewind-password";
    restapiPassword = "postgres/restapi-password";
  };

  # One database and one role per service that needs PostgreSQL, both named after it (what
  # `comptoir-xtask provision-db` creates); its password is a secret the service's pod gets
  # too.
  databases = map (service: {
    name = service;
    role = service;
    passwordSecret = "postgres/db/${service}";
  }) (sort lessThan (filter (service: elem "postgres" graph.needs.${service}) (attrNames graph.needs)));

  clusterFor = env: let
    pgHosts = inventory.hostsOf env "postgres";
    scope = "comptoir-${env}";
    stanza = scope;
    addressPort = port: host: "${host.address}:${toString port}";
    cidr = host: "${host.address}/32";

    # Who may connect, first match wins, nothing else gets in. Over TCP only hostssl with
    # scram-sha-256: the services from the k3s hosts (pods leave the cluster masqueraded as
    # their node's address), each to its own database as its own role; replication and
    # pg_rewind between the postgres hosts. On the socket, peer with a map: the kernel vouches
    # for the Unix user, and only the two mapped users get in.
    hba =
      [
        "local all postgres peer map=local-admin"
        "local postgres postgres_exporter peer map=monitoring"
      ]
      ++ concatLists (map (peer: [
          "hostssl replication replicator ${cidr peer} scram-sha-256"
          "hostssl postgres rewind ${cidr peer} scram-sha-256"
        ])
        pgHosts)
      ++ concatLists (map (db:
        map (k3s: "hostssl ${db.name} ${db.role} ${cidr k3s} scram-sha-256") (inventory.k3sHosts env))
      databases);
    ident = dirs: [
      "local-admin ${dirs.adminUser} postgres"
      "monitoring ${dirs.exporterUser} postgres_exporter"
    ];

    etcdFor = host: dirs: let
      secret = name: "${dirs.secretsDir}/${secretNames.${name}}";
      client = ["https://${addressPort p.etcdClient host}"];
      peer = ["https://${addressPort p.etcdPeer host}"];
    in {
      # The names of the NixOS services.etcd options, so the module passes them through.
      inherit (host) name;
      dataDir = dirs.etcdDir;
      listenClientUrls = client;
      advertiseClientUrls = client;
      listenPeerUrls = peer;
      initialAdvertisePeerUrls = peer;
      initialCluster = map (member: "${member.name}=https://${addressPort p.etcdPeer member}") pgHosts;
      initialClusterState = "new";
      initialClusterToken = "${scope}-etcd";
      # TLS both ways, and only certificates of the environment's CA get in.
      certFile = secret "etcdCert";
      keyFile = secret "etcdKey";
      trustedCaFile = secret "etcdCa";
      clientCertAuth = true;
      peerCertFile = secret "etcdCert";
      peerKeyFile = secret "etcdKey";
      peerTrustedCaFile = secret "etcdCa";
      peerClientCertAuth = true;
    };

    memberFor = host: let
      dirs = defaultLayout // layout host.name;
      secret = name: "${dirs.secretsDir}/${secretNames.${name}}";
      # Patroni's connections to its peers verify their certificates against the CA.
      verified = {
        sslmode = "verify-full";
        sslrootcert = secret "ca";
      };
    in {
      inherit (host) name address;
      settings = {
        inherit scope;
        inherit (host) name;
        # services.patroni's default; where the cluster's keys live in etcd.
        namespace = "/service";

        restapi = {
          listen = addressPort p.patroni host;
          connect_address = addressPort p.patroni host;
          # Switchover, restart, reinitialise and config changes need this user; its password
          # comes from PATRONI_RESTAPI_PASSWORD. Health endpoints (/primary, /replica,
          # /health) stay open for load balancers and Prometheus.
          authentication.username = "patroni";
        };

        etcd3 = {
          hosts = map (addressPort p.etcdClient) pgHosts;
          protocol = "https";
          cacert = secret "ca";
          cert = secret "cert";
          key = secret "key";
        };

        bootstrap = {
          # Written to etcd when the cluster is first bootstrapped; afterwards change them with
          # `patronictl edit-config` (editing them here changes nothing in a running cluster).
          dcs = {
            # The target is a failover within 10 s. The leader key outlives a dead primary by up
            # to ttl, a standby notices within loop_wait and promotes (~0.7 s), the clients'
            # next attempt connects (~1 s). Measured (Patroni 3.0.2, etcd 3.4, the primary's
            # host killed under load, the fleet lab): 24 s with the defaults (30/10/10), 8.8 to
            # 11.2 s with ttl 10 / loop_wait 2 / retry_timeout 3, hence 6 / 1 / 2 (Patroni
            # needs loop_wait + 2 × retry_timeout ≤ ttl). The price: a primary that cannot
            # reach etcd for 2 s retries, and after 6 s demotes itself; etcd runs on these same
            # three hosts, on the same network, so only a real partition does that.
            ttl = 6;
            loop_wait = 1;
            retry_timeout = 2;
            maximum_lag_on_failover = 1048576;
            # A commit returns once a standby has it too, and only that standby may be
            # promoted: no acknowledged write is lost in a failover. With one host (staging)
            # Patroni runs the primary alone.
            synchronous_mode = true;
            postgresql = {
              # A former primary rejoins by rewinding rather than a full copy.
              use_pg_rewind = true;
              use_slots = true;
              parameters = {
                wal_level = "replica";
                # pg_rewind needs it (data checksums at initdb would too; both are on).
                wal_log_hints = "on";
                hot_standby = "on";
                max_wal_senders = 10;
                max_replication_slots = 10;
                wal_keep_size = "1GB";
                # Every WAL segment goes to the backup repository (pgBackRest), at least every
                # minute: base backup + WAL = point-in-time restore (docs/runbooks/postgres-restore.md).
                archive_mode = "on";
                archive_command = archiveCommand env;
                archive_timeout = 60;
                password_encryption = "scram-sha-256";
                # The services' connection budget (workloads.nix: postgresConnectionBudget, the
                # sum of maxReplicas × (pool_size + 1) over the services, checked), plus the
                # reserved superuser slots, replication, Patroni, backups and the exporter
                # (dev/fleet/manifests.py checks the room left).
                max_connections = 300;
              };
            };
          };
          initdb = [
            {encoding = "UTF8";}
            {locale = "C.UTF-8";}
            "data-checksums"
          ];
          pg_hba = hba;
        };

        postgresql = {
          listen = addressPort p.postgres host;
          connect_address = addressPort p.postgres host;
          data_dir = dirs.dataDir;
          bin_dir = dirs.binDir;
          pgpass = "${dirs.patroniDir}/pgpass";
          # Patroni talks to its own server on the socket (peer, no superuser password).
          use_unix_socket = true;
          authentication = {
            superuser.username = "postgres";
            # Passwords: PATRONI_REPLICATION_PASSWORD, PATRONI_REWIND_PASSWORD.
            replication = {username = "replicator";} // verified;
            rewind = {username = "rewind";} // verified;
          };
          parameters = {
            unix_socket_directories = dirs.socketDir;
            ssl = "on";
            ssl_cert_file = secret "cert";
            ssl_key_file = secret "key";
            ssl_min_protocol_version = "TLSv1.2";
          };
          pg_hba = hba;
          pg_ident = ident dirs;
          # New replicas copy the primary with pg_basebackup (Patroni's default method).
          basebackup = [{checkpoint = "fast";}];
        };

        tags = {
          nofailover = false;
          noloadbalance = false;
          clonefrom = false;
          nosync = false;
        };
      };

      # Environment variable → file holding its value (services.patroni.environmentFiles).
      environmentFiles = {
        PATRONI_REPLICATION_PASSWORD = secret "replicationPassword";
        PATRONI_REWIND_PASSWORD = secret "rewindPassword";
        PATRONI_RESTAPI_PASSWORD = secret "restapiPassword";
      };

      etcd = etcdFor host dirs;

      secrets = listToAttrs (map (name: {
        inherit name;
        value = secret name;
      }) (attrNames secretNames));

      # pgBackRest's configuration (INI sections) for this host; the repository (repo1-*) is
      # the module's to set: it must be shared by all members (docs/runbooks/postgres-restore.md).
      backup = {
        global = {
          compress-type = "zst";
          process-max = 2;
          start-fast = "y";
          # Full backups every night, seven kept: a week of point-in-time restore.
          repo1-retention-full = 7;
          log-level-console = "info";
          log-level-file = "off";
        };
        ${stanza} = {
          pg1-path = dirs.dataDir;
          pg1-socket-path = dirs.socketDir;
          pg1-user = "postgres";
        };
      };
    };
  in {
    inherit scope stanza databases secretNames;
    # The exporter's monitoring role (admitted on the socket by the `monitoring` map above),
    # created idempotently on the primary by the module's provisioning unit, and by the lab.
    exporterRoleSql = ''
      DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'postgres_exporter') THEN
          CREATE ROLE postgres_exporter LOGIN;
        END IF;
      END $$;
      GRANT pg_monitor TO postgres_exporter;
    '';
    hostNames = map (host: host.name) pgHosts;
    # What services put in their database settings: every member, the client keeps the one
    # that accepts writes (libs/store: host list, target_session_attrs=read-write).
    clientHosts = concatStringsSep "," (map (host: host.address) pgHosts);
    port = p.postgres;
    etcdEndpoints = map (host: "https://${addressPort p.etcdClient host}") pgHosts;
    hosts = listToAttrs (map (host: {
        inherit (host) name;
        value = memberFor host;
      })
      pgHosts);
  };

  envsWithPostgres = filter (env: length (inventory.hostsOf env "postgres") > 0) inventory.environments;
in
  listToAttrs (map (env: {
      name = env;
      value = clusterFor env;
    })
    envsWithPostgres)
