# The Pulsar cluster of each environment, derived from the inventory: ZooKeeper ensemble,
# bookies, brokers, their configuration files as Java properties, and the URLs services and
# comptoir-xtask use. nixos/modules/pulsar.nix installs exactly these settings on the pulsar
# hosts; the fleet lab (dev/lab) starts the real jars from them; dev/fleet/check-data.sh checks
# their invariants. Builtins only:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).pulsar'
#
# Every pulsar host runs a bookie and a broker; the first odd number of them (in inventory
# order) also run ZooKeeper. Secrets are never in these settings, only the paths of the files
# sops-nix decrypts them to.
#
# The fleet lab runs several hosts on one machine, so it imports this file with its own
# `layout` (where each host keeps data and finds its secrets):
#   import ./nixos/lib/pulsar.nix (lib // {layout = host: {bookieDir = "..."; ...};})
{
  inventory,
  ports,
  workloads ? import ../workloads.nix,
  # host name → the keys of defaultLayout (below) to change: the lab's own directories.
  layout ? _host: {},
  ...
}: let
  inherit
    (builtins)
    all
    attrNames
    concatStringsSep
    elem
    elemAt
    filter
    genList
    head
    isBool
    isInt
    isList
    isString
    length
    listToAttrs
    lessThan
    map
    match
    replaceStrings
    sort
    toJSON
    ;

  p = ports.pulsar;

  # The DNS name of the `pulsar` headless Service in the k3s cluster (nixos/lib/manifests.nix),
  # which every service's pulsar.url names (dnsName in nixos/lib/settings.nix).
  brokersDnsName = "pulsar.${workloads.cluster.namespace}.svc.${workloads.cluster.domain}";

  # Where a host keeps its data and finds its secrets on NixOS.
  defaultLayout = {
    zookeeperDir = "/var/lib/zookeeper";
    bookieDir = "/var/lib/bookkeeper";
    secretsDir = "/run/secrets";
  };

  # A Java properties file (zoo.cfg, bookkeeper.conf, broker.conf) from an attrset, keys
  # sorted. Booleans and integers as Java reads them, lists comma-separated (superUserRoles),
  # "" for a deliberately empty value (a disabled plaintext port). Java reads these files as
  # ISO-8859-1 with backslash escapes, so values are printable ASCII, backslashes doubled.
  toProperties = attrs: let
    value = key: v:
      if isBool v
      then
        (
          if v
          then "true"
          else "false"
        )
      else if isInt v
      then toString v
      else if isList v
      then concatStringsSep "," (map (value key) v)
      else if isString v && match "[ -~]*" v != null
      then replaceStrings ["\\"] ["\\\\"] v
      else throw "pulsar: ${key}: not a string, integer, boolean or list of printable ASCII: ${toJSON v}";
    line = key:
      if match "[A-Za-z0-9._-]+" key == null
      then throw "pulsar: property key ${toJSON key} needs escaping; use a plain key"
      else "${key}=${value key attrs.${key}}\n";
  in
    concatStringsSep "" (map line (attrNames attrs));

  # The secrets of a pulsar host, by purpose → name under the secrets dir (the sops-nix secret
  # name, so /run/secrets/<name> on NixOS). The broker's certificate must carry the names of
  # its host's `certificate` (below).
  secretNames = {
    ca = "pulsar/ca.crt"; # the CA clients and brokers trust
    cert = "pulsar/broker.crt"; # this broker's certificate
    key = "pulsar/broker.key.pem"; # its key, PKCS#8 PEM (what Pulsar's loader reads)
    tokenPublicKey = "pulsar/token-public.key"; # RS256 public key that verifies every token
    brokerToken = "pulsar/broker.jwt"; # role `broker`: brokers' own client
    adminToken = "pulsar/admin.jwt"; # role `admin`: the topology, first host only
  };

  # Memory per JVM from the host's size: the three JVMs take about 70 % of RAM and leave the
  # rest to the page cache the bookie's ledgers read through. Direct memory is where Netty and
  # the bookie's DbLedgerStorage caches live.
  jvmFor = host: let
    mem = host.spec.memoryMiB;
    mib = n: "${toString n}m";
    atLeast = floor: n:
      if n < floor
      then floor
      else n;
  in {
    zookeeper = "-Xms${mib (atLeast 256 (mem / 16))} -Xmx${mib (atLeast 256 (mem / 16))}";
    bookie = "-Xms${mib (mem / 8)} -Xmx${mib (mem / 8)} -XX:MaxDirectMemorySize=${mib (mem / 8)}";
    broker = "-Xms${mib (mem / 8)} -Xmx${mib (mem / 8)} -XX:MaxDirectMemorySize=${mib (mem / 4)}";
  };

  clusterFor = env: let
    pulsarHosts = inventory.hostsOf env "pulsar";
    count = length pulsarHosts;

    # ZooKeeper needs a majority of its ensemble, so an even member adds load and no
    # tolerance: the ensemble is the largest odd number of pulsar hosts, the first ones in
    # inventory order. Adding a fourth pulsar host adds a bookie and a broker and leaves the
    # ensemble alone; a fifth grows it to five.
    ensembleSize =
      if count / 2 * 2 == count
      then count - 1
      else count;
    ensemble = genList (elemAt pulsarHosts) ensembleSize;

    # Server ids are the last octet of the address: unique in the environment's /24 subnet,
    # and unchanged when hosts are added or removed (a position in the list would shift).
    myidOf = host: inventory.lastOctet host.address;
    ids = map myidOf ensemble;
    servers =
      sort (a: b: lessThan a.id b.id)
      (map (host: {
          id = myidOf host;
          host = host.name;
          inherit (host) address;
          line = "server.${toString (myidOf host)}=${host.address}:${toString p.zookeeperPeer}:${toString p.zookeeperElection}";
        })
        ensemble);
    isMember = host: elem (myidOf host) ids;

    zkConnect = concatStringsSep "," (map (s: "${s.address}:${toString p.zookeeperClient}") servers);
    # zk: for Pulsar's metadata store; BookKeeper separates hosts with ';' and names the
    # ledgers' root.
    metadataStoreUrl = "zk:${zkConnect}";
    bookkeeperMetadataServiceUri = "zk+null://${concatStringsSep ";" (map (s: "${s.address}:${toString p.zookeeperClient}") servers)}/ledgers";

    # Ledger replication, measured with the real bookies on this kind of machine (three pulsar
    # hosts in network namespaces, one bookie killed under load):
    # with exactly 3 bookies, ensemble 3 / write 3 / ack 2 does not survive losing one: a
    # ledger that must be re-formed finds no spare bookie and writes stop. 2/2/2 on 3 bookies
    # keeps two copies of every entry, both acknowledged, and leaves a spare, so the loss of a
    # bookie costs nothing but re-replication (autorecovery). From 4 bookies, 3/3/2 keeps three
    # copies and still a spare. A single bookie (staging) can only be 1/1/1; two bookies keep
    # two copies and stop writing while one is down (no configuration avoids that with two).
    quorum =
      if count >= 4
      then {
        ensemble = 3;
        write = 3;
        ack = 2;
      }
      else if count >= 2
      then {
        ensemble = 2;
        write = 2;
        ack = 2;
      }
      else {
        ensemble = 1;
        write = 1;
        ack = 1;
      };

    cluster = "comptoir-${env}";
    # What services (pulsar.url) and brokers' clients connect to: every broker, TLS only. The
    # client takes the first that answers and is redirected to the topic's owner by lookup.
    serviceUrl = "pulsar+ssl://${concatStringsSep "," (map (h: "${h.address}:${toString p.brokerTls}") pulsarHosts)}";
    # The admin API of the first broker: comptoir-xtask's HTTP client takes one URL, and any
    # broker answers for the whole cluster (the topology runs on that host, next to it).
    initHost = head pulsarHosts;
    adminUrl = "https://${initHost.address}:${toString p.webTls}";

    hostSettings = host: let
      dirs = defaultLayout // layout host.name;
      secret = name: "${dirs.secretsDir}/${secretNames.${name}}";
      myid = myidOf host;

      zookeeper =
        if isMember host
        then {
          inherit myid;
          conf =
            {
              tickTime = 2000;
              # Followers get 20 s to sync at start and 10 s of silence before they are dropped.
              # Sessions may last 2 to 20 ticks (4-40 s): the brokers ask for 6 s (below).
              initLimit = 10;
              syncLimit = 5;
              dataDir = dirs.zookeeperDir;
              clientPort = p.zookeeperClient;
              clientPortAddress = host.address;
              # The Jetty admin server would listen on 8080 on every interface.
              "admin.enableServer" = false;
              # Health checks (`echo ruok | nc`) and monitoring; nothing that changes state.
              "4lw.commands.whitelist" = "ruok,srvr,mntr";
              "metricsProvider.className" = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";
              "metricsProvider.httpHost" = host.address;
              "metricsProvider.httpPort" = p.zookeeperMetrics;
              "autopurge.snapRetainCount" = 3;
              "autopurge.purgeInterval" = 1;
            }
            // listToAttrs (map (s: {
                name = "server.${toString s.id}";
                value = "${s.address}:${toString p.zookeeperPeer}:${toString p.zookeeperElection}";
              })
              servers);
        }
        else null;

      bookkeeper = {
        bookiePort = p.bookie;
        # The bookie's id is address:port (not the host name): stable, and what the brokers'
        # placement and autorecovery record in ledger metadata.
        advertisedAddress = host.address;
        useHostNameAsBookieID = false;
        metadataServiceUri = bookkeeperMetadataServiceUri;
        journalDirectories = "${dirs.bookieDir}/journal";
        ledgerDirectories = "${dirs.bookieDir}/ledgers";
        ledgerStorageClass = "org.apache.bookkeeper.bookie.storage.ldb.DbLedgerStorage";
        # Every bookie also re-replicates the ledgers of a lost one (no separate daemon).
        autoRecoveryDaemonEnabled = true;
        # Metrics come from the Prometheus provider on its own port. The bookie's HTTP admin
        # API (unauthenticated: it can decommission a bookie) stays off; both default to 8000
        # in Pulsar's shipped bookkeeper.conf, so only one may be on anyway.
        httpServerEnabled = false;
        statsProviderClass = "org.apache.bookkeeper.stats.prometheus.PrometheusMetricsProvider";
        prometheusStatsHttpAddress = host.address;
        prometheusStatsHttpPort = p.bookieHttp;
      };

      broker = {
        inherit metadataStoreUrl;
        clusterName = cluster;
        configurationMetadataStoreUrl = metadataStoreUrl;
        # How long a dead broker keeps its topics: its session must expire before another
        # broker takes them. The target is a lost pulsar host's topics served again within
        # 15 s. Measured (the fleet lab): ~50 s with the 30 s default; with 10 s, ~13 s, but
        # 16.4 to 17.6 s when the lost host also led ZooKeeper (an election first). 6 s (3 of
        # ZooKeeper's 2 s ticks, its minimum is 2) leaves room for that election. The price: a
        # broker paused longer than 6 s (a long GC) loses its session and its topics move.
        metadataStoreSessionTimeoutMillis = 6000;
        advertisedAddress = host.address;
        bindAddress = host.address;

        managedLedgerDefaultEnsembleSize = quorum.ensemble;
        managedLedgerDefaultWriteQuorum = quorum.write;
        managedLedgerDefaultAckQuorum = quorum.ack;

        functionsWorkerEnabled = false;
        webSocketServiceEnabled = false;

        # TLS only (ADR 0010): the plaintext ports are off. Java 17 already refuses TLS < 1.2.
        brokerServicePort = "";
        webServicePort = "";
        brokerServicePortTls = p.brokerTls;
        webServicePortTls = p.webTls;
        tlsCertificateFilePath = secret "cert";
        tlsKeyFilePath = secret "key";
        tlsTrustCertsFilePath = secret "ca";
        tlsAllowInsecureConnection = false;
        # Clients authenticate with tokens, not certificates (pulsar-rs has no mTLS).
        tlsRequireTrustedClientCertOnConnect = false;

        # Who you are: RS256 JWTs whose `sub` is the role; the broker holds only the public
        # key, tokens are minted where the private key is kept (ADR 0010's production path).
        authenticationEnabled = true;
        authenticationProviders = "org.apache.pulsar.broker.authentication.AuthenticationProviderToken";
        tokenPublicKey = "file://${secret "tokenPublicKey"}";

        # What you may do: the topology's per-namespace grants. `admin` is the operators' and
        # the topology's role; `broker` is the brokers' own, so revoking an operator token
        # never cuts broker-to-broker traffic.
        authorizationEnabled = true;
        superUserRoles = ["admin" "broker"];
        # Prometheus scrapes /metrics over TLS without a token (the firewall admits only the
        # monitoring hosts to this port); metrics carry no message data.
        authenticateMetricsEndpoint = false;

        # The brokers' own client (lookups between brokers, system topics, health checks):
        # TLS, as role `broker`.
        brokerClientTlsEnabled = true;
        brokerClientTrustCertsFilePath = secret "ca";
        brokerClientAuthenticationPlugin = "org.apache.pulsar.client.impl.auth.AuthenticationToken";
        brokerClientAuthenticationParameters = "file://${secret "brokerToken"}";
      };
    in {
      inherit (host) name address;
      inherit zookeeper bookkeeper broker;
      jvm = jvmFor host;
      # The subjectAltNames of this broker's certificate: the services connect by the brokers'
      # DNS name and verify it; brokers and topic lookups connect to each broker by address.
      certificate = {
        ipAddresses = [host.address];
        dnsNames = [brokersDnsName];
      };
      # Paths of this host's secret files (the admin token only on the first host, which
      # applies the topology).
      secrets = listToAttrs (map (name: {
          inherit name;
          value = secret name;
        })
        (filter (name: name != "adminToken" || host.name == initHost.name) (attrNames secretNames)));
      # The files the services read, rendered: what the NixOS module and the lab write.
      files =
        {
          "bookkeeper.conf" = toProperties bookkeeper;
          "broker.conf" = toProperties broker;
        }
        // (
          if zookeeper == null
          then {}
          else {
            "zoo.cfg" = toProperties zookeeper.conf;
            myid = "${toString myid}\n";
          }
        );
    };
  in
    if count == 0
    then throw "pulsar: environment ${env} has no pulsar host"
    else if !all (id: length (filter (other: other == id) ids) == 1) ids
    then throw "pulsar: ${env}: ZooKeeper ids are not unique"
    else {
      inherit cluster quorum serviceUrl adminUrl metadataStoreUrl bookkeeperMetadataServiceUri;
      bookies = count;
      initHost = initHost.name;
      zookeeper = {
        inherit servers;
        connect = zkConnect;
      };
      hosts = listToAttrs (map (host: {
          inherit (host) name;
          value = hostSettings host;
        })
        pulsarHosts);
      # Arguments of org.apache.pulsar.PulsarClusterMetadataSetup (`pulsar
      # initialize-cluster-metadata`), run once per cluster on initHost: registers the
      # cluster with its TLS URLs and formats BookKeeper's ledger metadata if absent.
      initializeMetadataArgs = [
        "--cluster"
        cluster
        "--metadata-store"
        metadataStoreUrl
        "--configuration-metadata-store"
        metadataStoreUrl
        "--web-service-url"
        adminUrl
        "--web-service-url-tls"
        adminUrl
        "--broker-service-url-tls"
        serviceUrl
        "--tls-enable"
      ];
      inherit secretNames;
    };

  envsWithPulsar = filter (env: inventory.hostsOf env "pulsar" != []) inventory.environments;
in {
  pulsar = listToAttrs (map (env: {
      name = env;
      value = clusterFor env;
    })
    envsWithPulsar);
  inherit toProperties;
}
