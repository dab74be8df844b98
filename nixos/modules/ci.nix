# The ci role (docs/architecture.md §10, docs/fleet.md): Forgejo, the forge; Hydra, the CI, which
# evaluates the flake's hydraJobs on every push and, when `release` finishes on main, queues it
# for the release gate (hydra/release-gate), whose own service deploys production when it is
# green; Harmonia, the binary cache serving
# this host's store signed; all three behind one nginx. PostgreSQL on the host itself holds
# Forgejo's and Hydra's databases, dumped every night, and `forgejo dump` archives the forge.
# First setup, restores and key rotation: docs/runbooks/ci-host.md. Secrets: secrets/README.md.
#
# Choices, and why:
# - Hydra is nixpkgs' services.hydra, not the `hydra-dev` module of Hydra's own flake: nixpkgs'
#   module and hydra_unstable are released and tested together with the NixOS branch the fleet
#   pins (their NixOS test runs on that branch, security fixes arrive with the branch), and it
#   needs no extra flake input. hydra-dev follows Hydra's master and whatever nixpkgs that pins.
# - Forgejo Actions are off: Hydra is the CI. One system builds and gates, so there is one set
#   of results to trust and one runner with access to the deploy key (none here).
# - The binary cache is Harmonia, not nix-serve-ng: it is packaged with a NixOS module in
#   nixpkgs, talks to the Nix daemon (no Perl or libstore bindings to keep in step), signs at
#   request time with every key of signKeyPaths (a rotation is a secret change and a restart,
#   nothing to re-sign), and streams NARs with range requests.
# - The certificate comes from the secrets, not ACME: the host sits in the environment's
#   private subnet, reachable from the admin networks and the fleet only, so Let's Encrypt's
#   HTTP-01 check cannot reach it, and DNS-01 would put a DNS provider's credentials on the
#   host. The operators obtain the certificate (forge., hydra., cache.<domain>) where they
#   hold DNS access and put it in the secrets; renewing it is a sops edit and a deploy.
# - Pushes start evaluations twice over: every jobset polls (checkinterval, hydra/project.nix)
#   as the floor, and the forge's webhook calls Hydra's /api/push-gitea at once. Not /api/push:
#   Hydra requires a POST by a logged-in user with eval rights there, which a webhook is not;
#   push-gitea checks the webhook's HMAC against hydra/webhook-secrets instead.
{
  config,
  lib,
  pkgs,
  fleetLib,
  host,
  comptoir,
  ...
}: let
  inherit (fleetLib) ports;
  env = fleetLib.inventory.environment host.env;

  # The Hydra project (name, release job and environment, the forge it builds from).
  project = import ../../hydra/project.nix;
  # The jobset whose `release` job deploys: `<project>:<jobset>:<job>` in Hydra's RunCommand.
  releaseJobset = "main";

  # The names nginx serves; operators resolve them to this host (their DNS or /etc/hosts).
  names = {
    forge = "forge.${env.domain}";
    hydra = "hydra.${env.domain}";
    cache = "cache.${env.domain}";
  };

  # The release gate runs as its own user, outside Hydra: Hydra's hook (run by hydra-notify as
  # hydra-queue-runner, of the hydra group) only drops the finished build's event into the
  # queue, and the gate's service deploys from there. So Hydra's users never hold the deploy
  # key, and deploying this host (a production host: its Hydra units restart) cannot kill the
  # deploy in progress.
  releaseUser = "comptoir-release";
  # The gate's state (lock, last deployed build, deploys.jsonl, known_hosts), its queue, and
  # its metrics for the node exporter's textfile collector.
  releaseStateDir = "/var/lib/comptoir-release";
  releaseQueue = "${releaseStateDir}/queue";
  textfileDir = "/var/lib/prometheus-node-exporter-text";

  # Backups on this host's disk; docs/runbooks/ci-host.md says how to copy them off it.
  backupRoot = "/var/backup";
  pgBackupDir = "${backupRoot}/postgresql";
  forgejoDumpDir = "${backupRoot}/forgejo";
  keepDays = 14;
  databases = [config.services.forgejo.database.name "hydra"];

  secret = name: config.sops.secrets.${name}.path;

  # The role's secrets live in a file of their own, encrypted to the operators and the ci host
  # only (secrets/README.md): the deploy key opens every host, and no other host of the
  # environment has any business decrypting it. Missing: the host builds, activation fails.
  ciSopsFile = ../../secrets + "/${host.env}-ci.yaml";
  hasCiSopsFile = builtins.pathExists ciSopsFile;

  # The release gate: `--enqueue` in Hydra's RunCommand hook, `--drain` in its own service.
  releaseGate = pkgs.writeShellApplication {
    name = "comptoir-release-gate";
    runtimeInputs = [pkgs.jq pkgs.util-linux pkgs.coreutils pkgs.findutils pkgs.gnused comptoir.deploy];
    text = ''exec ${pkgs.bash}/bin/bash ${../../hydra/release-gate} "$@"'';
  };

  # nginx's access list for a name: these sources, then nobody. Loopback is this host itself:
  # Hydra fetching from the forge, the forge's webhook calling Hydra.
  loopback = ["127.0.0.1" "::1"];
  allowOnly = sources: lib.concatMapStrings (source: "allow ${source};\n") sources + "deny all;\n";
  fleetAddresses = map (h: h.address) (fleetLib.inventory.envHosts host.env);

  virtualHost = sources: upstream: extraConfig: {
    onlySSL = true;
    sslCertificate = secret "ci/tls-cert";
    sslCertificateKey = secret "ci/tls-key";
    extraConfig = allowOnly sources;
    locations."/" = {
      proxyPass = upstream;
      inherit extraConfig;
    };
  };
in {
  assertions = [
    {
      assertion = project.forge.url == "https://${names.forge}";
      message = "ci: hydra/project.nix builds from ${project.forge.url}, but ${host.name}'s forge is https://${names.forge}";
    }
  ];
  warnings =
    lib.optional (config.comptoir.network.gateway == null || config.comptoir.network.nameservers == []) ''
      ${host.name} (ci) has no default gateway or no name servers (comptoir.network): Hydra cannot
      fetch the flake's inputs nor substitute from cache.nixos.org, so every evaluation fails. Give
      the ci host a way out (docs/runbooks/ci-host.md, "Network").
    ''
    ++ lib.optional (!hasCiSopsFile) ''
      ${host.name} (ci): secrets/${host.env}-ci.yaml does not exist, so the role's secrets cannot be
      installed and activation will fail. Create it: secrets/README.md.
    '';

  sops.secrets = lib.mapAttrs (_: spec:
    spec
    // {
      sopsFile =
        if hasCiSopsFile
        then ciSopsFile
        else "/var/empty/secrets-${host.env}-ci.yaml-is-not-in-the-repository";
    }) {
    # One certificate (chain) for the three names, and its key; nginx reads them.
    "ci/tls-cert" = {
      owner = config.services.nginx.user;
      reloadUnits = ["nginx.service"];
    };
    "ci/tls-key" = {
      owner = config.services.nginx.user;
      reloadUnits = ["nginx.service"];
    };
    # Harmonia loads it through systemd's LoadCredential, so root keeps it.
    "ci/cache-signing-key".restartUnits = ["harmonia.service"];
    # The key the release gate's deploy-rs logs in with as `deploy` on every host; its public
    # half is an entry of `admins` in nixos/fleet.nix. The gate's user alone reads it.
    "ci/deploy-ssh-key".owner = releaseUser;
    # Forgejo's SECRET_KEY encrypts what the database keeps secret (two-factor seeds, tokens):
    # from the secrets, so a restore on a new host reads the restored database.
    "forgejo/secret-key" = {
      owner = config.services.forgejo.user;
      restartUnits = ["forgejo.service"];
    };
    # `<gitea> secret = ... </gitea>`, included by hydra.conf: the HMAC of the forge's webhook.
    # Every Hydra daemon reads hydra.conf, so the hydra group does.
    "hydra/webhook-secrets" = {
      owner = "hydra-www";
      group = "hydra";
      mode = "0440";
      restartUnits = ["hydra-server.service"];
    };
  };

  ## The names, on this host too: Hydra fetches from the forge and the forge's webhook calls
  ## Hydra through nginx, on loopback.
  networking.hosts."127.0.0.1" = lib.attrValues names;

  ## nginx: HTTPS only, one certificate, each name open to whom it serves (the firewall,
  ## nixos/lib/firewall.nix, admits the admin networks and the environment's hosts on the port).
  services.nginx = {
    enable = true;
    defaultSSLListenPort = ports.ci.https;
    recommendedTlsSettings = true;
    recommendedProxySettings = true;
    recommendedOptimisation = true;
    recommendedGzipSettings = true;
    virtualHosts = {
      ${names.forge} =
        virtualHost (env.adminNetworks ++ loopback)
        "http://unix:${config.services.forgejo.settings.server.HTTP_ADDR}"
        # Pushes over HTTPS and release attachments.
        "client_max_body_size 512m;";
      ${names.hydra} = virtualHost (env.adminNetworks ++ loopback) "http://127.0.0.1:${toString ports.ci.hydra}" "";
      # The substituter of every host of the environment (nixos/modules/common.nix).
      ${names.cache} =
        virtualHost (env.adminNetworks ++ fleetAddresses ++ loopback)
        "http://127.0.0.1:${toString ports.ci.cache}"
        # NARs are streamed as Harmonia sends them; a large one takes a while.
        ''
          proxy_buffering off;
          proxy_read_timeout 300s;
        '';
    };
  };

  ## Forgejo, on a unix socket behind nginx; git over its own SSH server.
  services.forgejo = {
    enable = true;
    database = {
      type = "postgres";
      # Its own database and role on the local PostgreSQL, over the socket (peer
      # authentication, no password). NixOS 25.11 no longer creates it by default.
      createDatabase = true;
    };
    secrets.security.SECRET_KEY = lib.mkForce (secret "forgejo/secret-key");
    dump = {
      enable = true;
      interval = "*-*-* 03:30:00";
      backupDir = forgejoDumpDir;
      type = "tar.zst";
    };
    settings = {
      DEFAULT.APP_NAME = "Comptoir forge";
      server = {
        DOMAIN = names.forge;
        ROOT_URL = "https://${names.forge}/";
        PROTOCOL = "http+unix";
        # Forgejo's built-in SSH server, beside the host's sshd on ports.ssh: clone URLs read
        # ssh://git@forge.<domain>:2222/<owner>/<repo>.git.
        START_SSH_SERVER = true;
        SSH_DOMAIN = names.forge;
        SSH_PORT = ports.ci.gitSsh;
        SSH_LISTEN_PORT = ports.ci.gitSsh;
        BUILTIN_SSH_SERVER_USER = "git";
      };
      # Accounts are made by an administrator (docs/runbooks/ci-host.md), nobody signs up.
      service.DISABLE_REGISTRATION = true;
      # Hydra is the CI (see the header): no Actions, no runners.
      actions.ENABLED = false;
      session.COOKIE_SECURE = true;
      repository.DEFAULT_BRANCH = "main";
      # Webhooks may call this host only (Hydra, through nginx on loopback).
      webhook.ALLOWED_HOST_LIST = "loopback";
      "cron.update_checker".ENABLED = false;
    };
  };
  # For the runbook's commands: `forgejo admin ...` (as the forgejo user), zstd for the dumps.
  environment.systemPackages = [config.services.forgejo.package pkgs.zstd];

  ## Hydra: builds on this host only, its database created by the module on the local
  ## PostgreSQL, the release gate on comptoir:main:release.
  services.hydra = {
    enable = true;
    hydraURL = "https://${names.hydra}";
    listenHost = "127.0.0.1";
    port = ports.ci.hydra;
    notificationSender = "hydra@${env.domain}";
    # Download what cache.nixos.org has rather than rebuild nixpkgs. This Hydra then serves
    # those paths through the cache with its own signature: cache.nixos.org is the one
    # substituter configured, and the hosts already trust it.
    useSubstitutes = true;
    # No build machines: the queue runner builds on this host (the fleet's hosts are
    # x86_64-linux, like this one).
    buildMachinesFiles = [];
    # GiB: the queue runner and the evaluator stop before the store's disk is full.
    minimumDiskFree = 20;
    minimumDiskFreeEvaluator = 10;
    extraConfig = ''
      <runcommand>
        job = ${project.name}:${releaseJobset}:${project.releaseJob}
        command = ${lib.getExe releaseGate} --enqueue ${releaseQueue}
      </runcommand>
      <webhooks>
        Include ${secret "hydra/webhook-secrets"}
      </webhooks>
    '';
  };
  # deploy-rs (and its `nix copy`) log in as `deploy` with the release key when run by
  # the gate's user. The fleet's host keys are not in the inventory: the first connection
  # to a host records its key (accept-new) and a changed key stops the deploy; the runbook
  # seeds the file and checks the fingerprints.
  programs.ssh.extraConfig = ''
    Match localuser ${releaseUser}
      IdentityFile ${secret "ci/deploy-ssh-key"}
      IdentitiesOnly yes
      StrictHostKeyChecking accept-new
      UserKnownHostsFile ${releaseStateDir}/known_hosts
  '';

  nix.settings = {
    # deploy-rs evaluates and builds the flake with the new CLI.
    experimental-features = ["nix-command" "flakes"];
    # common.nix lets only wheel use the daemon: Hydra's evaluator and web server use it too
    # (the queue runner is a trusted user; Harmonia's module admits Harmonia).
    # The gate's deploy-rs evaluates and copies the release's systems through it too.
    allowed-users = ["hydra" "hydra-www" releaseUser];
  };

  ## The binary cache: this host's store, signed, on loopback behind nginx. (Later nixpkgs
  ## move these options under services.harmonia.cache and keep these names as aliases.)
  services.harmonia = {
    enable = true;
    signKeyPaths = [(secret "ci/cache-signing-key")];
    settings.bind = "127.0.0.1:${toString ports.ci.cache}";
  };

  ## PostgreSQL for Forgejo and Hydra (each module creates its database and role), dumped
  ## every night. The module keeps the last two dumps of each database (<db>.sql.zstd and
  ## <db>.prev.sql.zstd); a dated copy in daily/ keeps keepDays of them.
  services.postgresql = {
    enable = true;
    # The fleet's PostgreSQL major (nixos/modules/postgres.nix). Moving it is a dump and
    # restore (docs/runbooks/ci-host.md), never an edit here alone.
    package = pkgs.postgresql_17;
  };
  services.postgresqlBackup = {
    enable = true;
    inherit databases;
    location = pgBackupDir;
    compression = "zstd";
    startAt = "*-*-* 02:15:00";
  };

  systemd.services =
    lib.listToAttrs (map (db:
      lib.nameValuePair "postgresqlBackup-${db}" {
        path = [pkgs.findutils];
        postStart = ''
          cp ${pgBackupDir}/${db}.sql.zstd ${pgBackupDir}/daily/${db}-$(date -u +%F).sql.zstd
          find ${pgBackupDir}/daily -name '${db}-*.sql.zstd' -mtime +${toString (keepDays - 1)} -delete
        '';
      })
    databases)
    // {
      # The release gate (hydra/release-gate --drain): every event Hydra queued, oldest build
      # first; started by comptoir-release-gate.path whenever the queue holds one.
      comptoir-release-gate = {
        description = "Comptoir's release gate: deploys the green release builds Hydra queued";
        after = ["network-online.target" "nix-daemon.service"];
        wants = ["network-online.target"];
        # Deploying this host switches its configuration: the deploy in progress must not be
        # stopped or restarted by it (it confirms this host's activation to deploy-rs).
        restartIfChanged = false;
        stopIfChanged = false;
        environment = {
          COMPTOIR_RELEASE_PROJECT = project.name;
          COMPTOIR_RELEASE_JOBSET = releaseJobset;
          COMPTOIR_RELEASE_JOB = project.releaseJob;
          COMPTOIR_RELEASE_ENV = project.releaseEnvironment;
          COMPTOIR_RELEASE_STATE_DIR = releaseStateDir;
          COMPTOIR_RELEASE_TEXTFILE_DIR = textfileDir;
          COMPTOIR_RELEASE_DEPLOY = lib.getExe comptoir.deploy;
        };
        serviceConfig = {
          Type = "oneshot";
          User = releaseUser;
          Group = releaseUser;
          ExecStart = "${lib.getExe releaseGate} --drain ${releaseQueue}";
          # A whole environment, canary and health gate included, takes minutes; a deploy
          # hanging for hours is stopped (and recorded as failed by the next run's state).
          TimeoutStartSec = "2h";
          NoNewPrivileges = true;
          PrivateTmp = true;
          ProtectSystem = "strict";
          ReadWritePaths = [releaseStateDir textfileDir];
        };
      };
      # Forgejo's dump (repositories, attachments, its custom/ and data/ directories, and its
      # database as SQL), kept keepDays.
      forgejo-dump = {
        path = [pkgs.findutils];
        postStart = ''
          find ${forgejoDumpDir} -maxdepth 1 -type f -name 'forgejo-dump-*' -mtime +${toString (keepDays - 1)} -delete
        '';
      };
    };

  systemd.paths.comptoir-release-gate = {
    wantedBy = ["multi-user.target"];
    pathConfig.PathExistsGlob = "${releaseQueue}/*.json";
  };

  users.users.${releaseUser} = {
    isSystemUser = true;
    group = releaseUser;
    home = releaseStateDir;
    description = "Comptoir's release gate (deploys production)";
  };
  users.groups.${releaseUser} = {};

  systemd.tmpfiles.rules = [
    "d ${pgBackupDir}/daily 0700 postgres postgres - -"
    "d ${releaseStateDir} 0750 ${releaseUser} ${releaseUser} - -"
    # Hydra's hook writes into the queue (the hydra group), the gate reads and empties it.
    "d ${releaseQueue} 0770 ${releaseUser} hydra - -"
    # Read by the node exporter (its own user): the directory and the gate's files are public.
    "d ${textfileDir} 0755 ${releaseUser} ${releaseUser} - -"
  ];

  ## The release gate's metrics (last deployed build, last result): the node exporter of the
  ## baseline (common.nix) reads them with its textfile collector.
  services.prometheus.exporters.node = {
    enabledCollectors = ["textfile"];
    extraFlags = ["--collector.textfile.directory=${textfileDir}"];
  };
}
