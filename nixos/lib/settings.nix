# What configures each service in each environment: the COMPTOIR_<SERVICE>__<SECTION>__<KEY>
# variables its binary reads over its defaults (libs/platform/src/config.rs). The k3s
# ConfigMaps carry exactly these maps (nixos/lib/manifests.nix) and the fleet lab starts the
# services with them, so a setting has one source. Evaluate with:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).settings.prod.catalog'
#
# Only keys that must differ from the defaults in a cluster are set, and only keys that exist:
# every settings struct is `deny_unknown_fields`, so a stray key stops the service at start.
# dev/fleet/check-manifests.sh runs each binary's `--check-config` against each map, with the
# secret files replaced by temporary ones. Secrets are never values here, only the paths of
# files mounted from the service's Secret (workloads.nix: cluster.secretsDir).
{
  services,
  graph,
  ports,
  inventory,
  workloads ? import ../workloads.nix,
  ...
}: let
  inherit
    (builtins)
    attrNames
    concatLists
    concatStringsSep
    elem
    genList
    isAttrs
    isBool
    isInt
    isList
    listToAttrs
    map
    replaceStrings
    stringLength
    substring
    toJSON
    ;

  inherit (workloads) cluster;
  inherit (import ./jaeger.nix {inherit inventory ports workloads;}) otlpEndpoint;
  optionalAttrs = cond: attrs:
    if cond
    then attrs
    else {};

  chars = s: genList (i: substring i 1 s) (stringLength s);
  toUpper = replaceStrings (chars "abcdefghijklmnopqrstuvwxyz-") (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");

  # { database = { host = "x"; port = 5432; }; } → { COMPTOIR_CATALOG__DATABASE__HOST = "x"; ... }:
  # the nested form reads like the service's TOML; the variables are what figment splits on
  # `__` back into it. Values are strings (ConfigMap data), parsed by figment as TOML values:
  # integers and booleans as such, lists as `["a","b"]`.
  toEnv = service: tree: let
    render = value:
      if isBool value
      then
        (
          if value
          then "true"
          else "false"
        )
      else if isInt value
      then toString value
      else if isList value
      then toJSON value
      else value;
    walk = path: value:
      if isAttrs value
      then concatLists (map (key: walk (path ++ [key]) value.${key}) (attrNames value))
      else [
        {
          name = concatStringsSep "__" (map toUpper (["comptoir_${service}"] ++ path));
          value = render value;
        }
      ];
  in
    listToAttrs (walk [] tree);

  # In-cluster names: <service>.<namespace>.svc.<cluster domain>.
  dnsName = name: "${name}.${cluster.namespace}.svc.${cluster.domain}";
  serviceUrl = name: "http://${dnsName name}:${toString services.${name}.port}";
  # A service whose workload sets `tls`, over HTTPS, its certificate checked against the
  # platform CA (what the clients' ca_file names).
  tlsUrl = name:
    if workloads.services.${name}.tls or false
    then "https://${dnsName name}:${toString ports.service.https}"
    else throw "settings.nix: ${name} serves no HTTPS (workloads.nix: tls)";

  secret = file: "${cluster.secretsDir}/${file}";
  ca = kind: "${cluster.caDir}/${cluster.caFiles.${kind}}";

  # Identity's JWKS route (services/identity/src/api.rs), over HTTPS: a verifier refuses a
  # plain http:// JWKS off loopback (libs/auth/src/cache.rs).
  jwksUrl = "${tlsUrl "identity"}/.well-known/jwks.json";
  auth = {
    url = jwksUrl;
    ca_file = ca "platform";
  };

  forEnv = env: let
    environment = inventory.environment env;
    addresses = role: map (host: host.address) (inventory.hostsOf env role);

    # What every service of the cluster sets.
    common = {
      http = {
        # Every interface of the pod, the public port and the internal one the probes and
        # Prometheus use (ops_listen is required when listen is not loopback).
        listen = "0.0.0.0:${toString ports.service.http}";
        ops_listen = "0.0.0.0:${toString ports.service.ops}";
      };
      telemetry =
        {
          # One JSON object per line, what the cluster's log collection reads (the default,
          # set so that it stays so).
          log_format = "json";
        }
        # Every span to the environment's Jaeger (nixos/lib/jaeger.nix), when it has one.
        // optionalAttrs (otlpEndpoint.${env} != null) {otlp_endpoint = otlpEndpoint.${env};};
    };

    # Its own database on the Patroni cluster: every member, each connection keeping the
    # one that accepts writes, so a failover needs no change here. TLS with the server's
    # name (its address: the certificates carry IP SANs) checked against the fleet's CA.
    database = name: {
      host = concatStringsSep "," (addresses "postgres");
      port = ports.postgres.postgres;
      inherit name;
      user = name;
      password_file = secret "database-password";
      tls = "verify-full";
      ca_file = ca "postgres";
      pool_size = workloads.services.${name}.poolSize;
    };

    # The brokers, TLS and a token of the service's own role (ADR 0010). pulsar.url is one
    # URL (url::Url, pulsar-rs' service URL: a comma-separated list of hosts does not parse),
    # so it names the `pulsar` headless Service of the manifests, whose DNS answer is every
    # broker of the environment: the client tries them in turn and a lost broker does not
    # stop new connections. The brokers' certificates must carry that DNS name besides
    # their IP SAN (topic lookups then connect to each broker by its address).
    pulsar = name: {
      url = "pulsar+ssl://${dnsName "pulsar"}:${toString ports.pulsar.brokerTls}";
      namespace = "comptoir/${name}";
      token_file = secret "pulsar-token";
      ca_file = ca "pulsar";
    };

    needs = name: what: elem what graph.needs.${name};
    hasSecret = name: file: elem file workloads.services.${name}.secrets;

    # The usual parts of a service, from the graph and its secrets.
    base = name:
      common
      // (
        if workloads.services.${name}.tls or false
        then {
          http =
            common.http
            // {
              tls = {
                listen = "0.0.0.0:${toString ports.service.https}";
                cert_file = secret "tls.crt";
                key_file = secret "tls.key";
              };
            };
        }
        else {}
      )
      // (
        if needs name "postgres"
        then {database = database name;}
        else {}
      )
      // (
        if needs name "pulsar"
        then {pulsar = pulsar name;}
        else {}
      )
      // (
        if hasSecret name "admin-token"
        then {admin_token_file = secret "admin-token";}
        else {}
      );

    # Each service's own keys, over its base.
    own = {
      analytics = {
        inherit auth;
        # Its <YYYY-MM>.key files are among the Secret's (workloads.nix); the rest is ignored.
        pseudonym_keys_dir = cluster.secretsDir;
      };

      catalog = {};

      gateway = {
        # Every service the gateway calls (graph.nix), by the names of its `upstreams` map
        # (services/gateway/src/settings.rs), at its in-cluster address.
        upstreams = listToAttrs (map (name: {
            inherit name;
            value.url = serviceUrl name;
          })
          graph.calls.gateway);
        inherit auth;
        # Browsers may call the API from the shop's own origin, nothing else.
        cors.allowed_origins = ["https://shop.${environment.domain}"];
      };

      identity = let
        w = workloads.services.identity;
      in {
        keys = {
          active_kek = {
            id = w.activeKekId;
            file = secret "kek-${w.activeKekId}";
          };
          blind_index_key_file = secret "blind-index";
        };
        tokens.signing_key_file = secret "token-signing.pem";
        # Requests reach identity from the gateway's pods, which may be anywhere in the pod
        # network: their X-Forwarded-For is believed, so the per-address sign-in limits count
        # the shopper's address rather than the gateway's.
        login.trusted_proxies = [cluster.podCidr];
        # Notifications resolves a customer's address through /internal, for one purpose and
        # the two fields a transactional message needs (services/notifications/src/identity.rs).
        internal_clients.notifications = {
          token_file = secret "notifications-token";
          purposes.transactional = ["email" "name"];
        };
        # What the hashes running together may hold: well under the pod's memory limit
        # (workloads.nix, checked).
        argon2.memory_budget_mib = w.argon2MemoryBudgetMiB;
      };

      inventory = {};

      notifications = {
        identity = {
          url = tlsUrl "identity";
          token_file = secret "identity-token";
          ca_file = ca "platform";
        };
        smtp = let
          relay = environment.smtpRelay;
        in
          {
            inherit (relay) host;
            inherit (relay) port tls username;
            password_file = secret "smtp-password";
            from = "Comptoir <orders@${environment.domain}>";
          }
          // (
            if relay.ca == null
            then {}
            else {ca_file = ca relay.ca;}
          );
      };

      orders = {
        inherit auth;
      };

      payments = {};
    };

    # A shallow merge is enough: `own` never sets a section `base` has.
    forService = name: toEnv name (base name // own.${name} or (throw "settings.nix: add an entry for ${name} to `own`"));
  in
    listToAttrs (map (name: {
      inherit name;
      value = forService name;
    }) (attrNames services));
in
  listToAttrs (map (env: {
      name = env;
      value = forEnv env;
    })
    inventory.environments)
