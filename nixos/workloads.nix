# How each service runs in k3s: pure data, read by the settings (nixos/lib/settings.nix) and
# the manifests (nixos/lib/manifests.nix) generators; dev/fleet/check-manifests.sh checks that
# `services` has exactly the keys of nix/services.nix and that the numbers below hold together
# (HPA minimum above the PDB, identity's memory limit above its Argon2 budget, the database
# connections of every pod at its maximum under PostgreSQL's limit).
let
  # What a service without special needs reserves and may use: see `resources` below.
  standardResources = {
    requests = {
      cpu = "50m";
      memory = "64Mi";
    };
    limits = {
      cpu = "500m";
      memory = "256Mi";
    };
  };
in {
  # The cluster every environment's services share: names and paths the settings and the
  # manifests must agree on.
  cluster = {
    namespace = "comptoir";
    # k3s' defaults, passed explicitly by nixos/modules/k3s.nix (--cluster-domain,
    # --cluster-cidr, --service-cidr) so that nothing here silently drifts from the cluster.
    domain = "cluster.local";
    podCidr = "10.42.0.0/16";
    serviceCidr = "10.43.0.0/16";
    # Each service's Secret (`<service>-secrets`, the files of `secrets` below) is mounted
    # here read-only; settings point at files in it, never at values.
    secretsDir = "/run/secrets/comptoir";
    # The `comptoir-ca` ConfigMap: the CA certificates of the environment's PostgreSQL and
    # Pulsar hosts, and the platform CA that signs the certificates of the services serving
    # HTTPS (`tls` below) (public, but provisioned with the Secrets: nixos/modules/k3s.nix).
    caDir = "/etc/comptoir/ca";
    caFiles = {
      postgres = "postgres-ca.pem";
      pulsar = "pulsar-ca.pem";
      platform = "platform-ca.pem";
    };
    # How many pods an environment runs: `full` takes the numbers below; `single` runs one
    # pod of each service (autoscaling up to 2) with a PodDisruptionBudget that never blocks a
    # node drain: with one replica, `minAvailable = 1` would stop every node upgrade.
    sizing = {
      prod = "full";
      staging = "single";
      lab = "single";
    };
    # PostgreSQL connections the services may open together: the sum over services of
    # maxReplicas × (poolSize + 1, the outbox relay's dedicated LISTEN connection) must stay
    # within it (checked). PostgreSQL's max_connections (nixos/lib/patroni.nix: 300) must be
    # at least this plus its own (superuser_reserved_connections, replication, Patroni, the
    # exporter, an operator's psql).
    postgresConnectionBudget = 250;
    # Whether the environment's cluster serves the custom metrics API (prometheus-adapter,
    # see the gateway below); until then the autoscalers use CPU only.
    customMetrics = {
      prod = false;
      staging = false;
      lab = false;
    };
  };

  # One entry per service of nix/services.nix (checked). Every number is production's
  # (`sizing = "full"`).
  #   replicas         pods at rest: the HorizontalPodAutoscaler's minimum (the Deployment
  #                    leaves `replicas` to the autoscaler, so a re-applied manifest never
  #                    scales it back)
  #   maxReplicas      the autoscaler's maximum
  #   cpuTarget        average CPU use, in percent of the request, the autoscaler aims at
  #   pdbMinAvailable  pods a voluntary disruption (node drain) must leave running
  #   poolSize         PostgreSQL connections per pod (database.pool_size); null: no database
  #   resources        requests and limits. Measured: every service idles at 16–18 MiB
  #                    resident (docs/performance.md, 2026-12-01) and peaked at 21.4 MiB
  #                    during the checkout benchmark; requests are what the scheduler
  #                    reserves, limits what stops a leak from taking the node.
  #   secrets          files of the service's Secret, mounted under cluster.secretsDir
  #   tls              true: it serves HTTPS too (ports.service.https), with tls.crt and
  #                    tls.key of its Secret; absent: plain HTTP only
  services = {
    # The click stream: the highest message rate of the platform, so it scales on CPU like the
    # gateway. Its pseudonymisation keys are files of its Secret named <YYYY-MM>.key, one per
    # month (services/analytics/README.md): this month's and the next are listed; a month's
    # key is removed once the click stream's retention (a day) has passed its end, after
    # which its pseudonyms can no longer be linked to anyone.
    analytics = {
      replicas = 2;
      maxReplicas = 6;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      # Ingestion reads the consent projection only for signed-in shoppers; the processor
      # holds one connection per consumer: 4 keeps the fleet under its connection budget.
      poolSize = 4;
      resources = standardResources;
      secrets = ["database-password" "pulsar-token" "admin-token" "2026-12.key" "2027-01.key"];
    };

    catalog = {
      replicas = 2;
      maxReplicas = 6;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      poolSize = 6;
      resources = standardResources;
      secrets = ["database-password" "pulsar-token" "admin-token"];
    };

    # The public entry: every request of the shop passes here, so it starts with more pods,
    # more CPU and scales furthest. No database, no broker.
    gateway = {
      replicas = 3;
      maxReplicas = 10;
      cpuTarget = 70;
      # Also scale on requests per second per pod, the gateway's real load (CPU lags behind
      # it when upstreams are slow and requests wait). Measured capacity: ~2,800 requests/s
      # through the gateway on two cores shared with everything else (docs/performance.md);
      # 400 per pod keeps a wide margin. The metric is a `pods` metric of the custom metrics
      # API, which only prometheus-adapter serves: the manifests do NOT install it nor ship
      # its configuration. Install it (pointing at the monitoring host's Prometheus) with the
      # rule
      #   seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
      #   name: {matches: "http_requests_total", as: "http_requests_per_second"}
      #   metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
      # then set cluster.customMetrics.<env> = true. The autoscaler asks for this metric only
      # there: missing one of its metrics, it would report FailedGetPodsMetric and scale the
      # gateway up on CPU but never down.
      requestsPerSecond = 400;
      pdbMinAvailable = 2;
      poolSize = null;
      resources = {
        requests = {
          cpu = "100m";
          memory = "64Mi";
        };
        limits = {
          cpu = "1";
          memory = "256Mi";
        };
      };
      secrets = [];
    };

    # Argon2 hashing at every sign-in and registration: 19 MiB and tens of milliseconds of
    # CPU per hash (services/identity/src/password.rs), so more CPU and a memory limit well
    # above the budget the hashes may hold together (argon2MemoryBudgetMiB, set in
    # argon2.memory_budget_mib: checked to stay at least 96 MiB under the limit, for the
    # 16–18 MiB the process idles at and its buffers).
    identity = {
      replicas = 2;
      maxReplicas = 6;
      cpuTarget = 60;
      pdbMinAvailable = 1;
      poolSize = 6;
      argon2MemoryBudgetMiB = 256;
      resources = {
        requests = {
          cpu = "250m";
          memory = "128Mi";
        };
        limits = {
          cpu = "2";
          memory = "384Mi";
        };
      };
      # HTTPS on ports.service.https besides plain HTTP (http.tls, libs/platform/src/tls.rs),
      # with `tls.crt`/`tls.key` of its Secret (a certificate of the platform CA for
      # identity.<namespace>.svc.<domain>): its JWKS and /internal clients refuse plain
      # http:// (docs/adr/0015-tls-between-services.md).
      tls = true;
      # The key-encryption key in use, as keys.active_kek.id; its file is `kek-<id>`. A
      # rotation adds the new KEK, lists the old one in keys.retired_keks and changes this.
      activeKekId = "k1";
      secrets = [
        "database-password"
        "pulsar-token"
        "kek-k1"
        "blind-index"
        "token-signing.pem"
        # The bearer token notifications presents on /internal (the same value as
        # notifications' `identity-token`).
        "notifications-token"
        "tls.crt"
        "tls.key"
      ];
    };

    inventory = {
      replicas = 2;
      maxReplicas = 6;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      poolSize = 6;
      resources = standardResources;
      secrets = ["database-password" "pulsar-token" "admin-token"];
    };

    # Mail goes out at the pace of orders, one batch at a time: two pods are plenty.
    notifications = {
      replicas = 2;
      maxReplicas = 3;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      poolSize = 4;
      resources = standardResources;
      # smtp-password: its account on the environment's mail relay (fleet.nix, smtpRelay).
      secrets = ["database-password" "pulsar-token" "admin-token" "identity-token" "smtp-password"];
    };

    orders = {
      replicas = 2;
      maxReplicas = 6;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      poolSize = 6;
      resources = standardResources;
      secrets = ["database-password" "pulsar-token"];
    };

    payments = {
      replicas = 2;
      maxReplicas = 4;
      cpuTarget = 70;
      pdbMinAvailable = 1;
      poolSize = 6;
      resources = standardResources;
      secrets = ["database-password" "pulsar-token" "admin-token"];
    };
  };
}
