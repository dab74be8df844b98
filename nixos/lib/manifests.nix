# The Kubernetes objects of each environment's k3s cluster, derived from the services
# (nix/services.nix), how they run (nixos/workloads.nix), what configures them (settings.nix)
# and who may talk to whom (nixos/graph.nix). nixos/modules/k3s.nix hands them to k3s as
# auto-deployed manifests on the servers; dev/fleet/check-manifests.sh validates them against
# the Kubernetes schemas, kube-score and the service graph. Evaluate with:
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib {}).manifests.prod'
#
# Per environment, in apply order:
#   Namespace `comptoir` (Pod Security Admission: restricted)
#   RBAC: ClusterRoles comptoir:read-only, comptoir:developer, comptoir:operator, bound in the
#     namespace only to the groups comptoir:read-only, comptoir:developers, comptoir:operators;
#     the `prometheus` ServiceAccount (pods: list, watch; pods/proxy: get) and its token
#   NetworkPolicies: default-deny (every pod, both directions), allow-dns, then one per service
#     allowing exactly its edges of graph.nix
#   The `pulsar` headless Service (the brokers, for pulsar.url)
#   Per service: ServiceAccount, ConfigMap (its settings), Deployment, Service, HPA, PDB
#   The Ingress of the public service (Traefik, TLS)
# Secrets are referenced by name only (`<service>-secrets`, `shop-tls`, and the `comptoir-ca`
# ConfigMap); their content never passes through Nix (nixos/modules/k3s.nix).
{
  services,
  graph,
  ports,
  inventory,
  workloads ? import ../workloads.nix,
  ...
} @ args: let
  inherit
    (builtins)
    attrNames
    attrValues
    concatLists
    concatMap
    elem
    filter
    fromTOML
    hashString
    head
    length
    listToAttrs
    map
    readFile
    stringLength
    substring
    toJSON
    ;

  inherit (workloads) cluster;
  ns = cluster.namespace;
  settings = import ./settings.nix (args // {inherit workloads;});

  # The images are tagged with the workspace version (nix/images.nix: tag = the package's
  # version), which every service crate inherits from the workspace.
  version = (fromTOML (readFile ../../Cargo.toml)).workspace.package.version;

  serviceNames = attrNames services;

  # Whether a service serves HTTPS too (workloads.nix: tls), on ports.service.https.
  servesTls = name: workloads.services.${name}.tls or false;
  # The ports a caller may reach a service on: its HTTP port, and its HTTPS one if it has it.
  servicePorts = name:
    [services.${name}.port]
    ++ (
      if servesTls name
      then [ports.service.https]
      else []
    );

  # A pod's ports and its Service's, by name: the public one, the operational one (`ops`, by
  # which Prometheus' service discovery finds /metrics), and HTTPS for a service serving it.
  namedPorts = name:
    [
      {
        name = "http";
        port = services.${name}.port;
      }
      {
        name = "ops";
        port = ports.service.ops;
      }
    ]
    ++ (
      if servesTls name
      then [
        {
          name = "https";
          port = ports.service.https;
        }
      ]
      else []
    );

  hasSuffix = suffix: s: let
    n = stringLength s;
    m = stringLength suffix;
  in
    n >= m && substring (n - m) m s == suffix;
  publicServices = graph.public;

  # The image's user (nix/images.nix): numeric, not root.
  uid = 65532;

  selector = name: {"app.kubernetes.io/name" = name;};
  labels = name:
    selector name
    // {
      "app.kubernetes.io/part-of" = "comptoir";
      "app.kubernetes.io/version" = version;
      "app.kubernetes.io/managed-by" = "nixos";
    };
  meta = name: extra:
    {
      inherit name;
      namespace = ns;
    }
    // extra;

  forEnv = env: let
    size = cluster.sizing.${env} or (throw "workloads.nix: cluster.sizing has no entry for environment ${env}");
    full = size == "full";
    hostsOf = inventory.hostsOf env;
    cidrs = role: map (host: "${host.address}/32") (hostsOf role);
    # Jaeger runs on the monitoring host (nixos/lib/jaeger.nix); none without one.
    jaegerHosts = hostsOf "monitoring";
    environment = inventory.environment env;

    # ---- Namespace and RBAC -------------------------------------------------------------

    namespace = {
      apiVersion = "v1";
      kind = "Namespace";
      metadata = {
        name = ns;
        # Pod Security Admission refuses any pod of the namespace that is not `restricted`
        # (non-root, no privilege escalation, capabilities dropped, seccomp): a mistake in
        # a manifest is refused at admission, not discovered in a running pod.
        labels = {
          "pod-security.kubernetes.io/enforce" = "restricted";
          "pod-security.kubernetes.io/enforce-version" = "latest";
          "pod-security.kubernetes.io/audit" = "restricted";
          "pod-security.kubernetes.io/warn" = "restricted";
        };
      };
    };

    # What a person may do in the namespace, by group. The groups come from the client
    # certificate's O= (k3s' `kubectl` certificates) or the OIDC groups claim; nobody gets
    # Secrets or `exec`.
    readRules = [
      {
        apiGroups = [""];
        resources = ["pods" "services" "endpoints" "configmaps" "events" "serviceaccounts"];
        verbs = ["get" "list" "watch"];
      }
      {
        apiGroups = ["apps"];
        resources = ["deployments" "replicasets"];
        verbs = ["get" "list" "watch"];
      }
      {
        apiGroups = ["autoscaling"];
        resources = ["horizontalpodautoscalers"];
        verbs = ["get" "list" "watch"];
      }
      {
        apiGroups = ["policy"];
        resources = ["poddisruptionbudgets"];
        verbs = ["get" "list" "watch"];
      }
      {
        apiGroups = ["networking.k8s.io"];
        resources = ["networkpolicies" "ingresses"];
        verbs = ["get" "list" "watch"];
      }
      {
        apiGroups = ["discovery.k8s.io"];
        resources = ["endpointslices"];
        verbs = ["get" "list" "watch"];
      }
    ];
    # Logs hold no personal data by design (docs/architecture.md §7), but are still more than
    # a dashboard needs: developers and operators only.
    logRules = [
      {
        apiGroups = [""];
        resources = ["pods/log"];
        verbs = ["get" "list"];
      }
    ];
    # `kubectl rollout restart|undo` patch the Deployment; `kubectl scale` writes the scale
    # subresource (the autoscaler takes over again at its next look).
    operateRules = [
      {
        apiGroups = ["apps"];
        resources = ["deployments"];
        verbs = ["patch"];
      }
      {
        apiGroups = ["apps"];
        resources = ["deployments/scale"];
        verbs = ["get" "update" "patch"];
      }
    ];
    roles = {
      read-only = {
        group = "comptoir:read-only";
        rules = readRules;
      };
      developer = {
        group = "comptoir:developers";
        rules = readRules ++ logRules;
      };
      operator = {
        group = "comptoir:operators";
        rules = readRules ++ logRules ++ operateRules;
      };
    };
    rbac = concatMap (role: let
      name = "comptoir:${role}";
    in [
      {
        apiVersion = "rbac.authorization.k8s.io/v1";
        kind = "ClusterRole";
        metadata = {inherit name;};
        inherit (roles.${role}) rules;
      }
      # A RoleBinding to a ClusterRole grants its rules in this namespace only.
      {
        apiVersion = "rbac.authorization.k8s.io/v1";
        kind = "RoleBinding";
        metadata = meta name {};
        roleRef = {
          apiGroup = "rbac.authorization.k8s.io";
          kind = "ClusterRole";
          inherit name;
        };
        subjects = [
          {
            apiGroup = "rbac.authorization.k8s.io";
            kind = "Group";
            name = roles.${role}.group;
          }
        ];
      }
    ]) (attrNames roles);

    # The environment's Prometheus (nixos/lib/prometheus.nix) discovers the pods and scrapes
    # them through the API server's pod proxy with the token of this ServiceAccount: it may
    # list and watch the pods of this namespace and open their proxy, nothing else. Its
    # token is a long-lived Secret the token controller fills in; an operator copies it into
    # secrets/<env>.yaml as prometheus/k3s-token (secrets/README.md).
    scraper = let
      name = "prometheus";
    in [
      {
        apiVersion = "v1";
        kind = "ServiceAccount";
        metadata = meta name {};
        automountServiceAccountToken = false;
      }
      {
        apiVersion = "v1";
        kind = "Secret";
        metadata = meta "${name}-token" {
          annotations."kubernetes.io/service-account.name" = name;
        };
        type = "kubernetes.io/service-account-token";
      }
      {
        apiVersion = "rbac.authorization.k8s.io/v1";
        kind = "Role";
        metadata = meta "comptoir:${name}" {};
        rules = [
          {
            apiGroups = [""];
            resources = ["pods"];
            verbs = ["get" "list" "watch"];
          }
          {
            apiGroups = [""];
            resources = ["pods/proxy"];
            verbs = ["get"];
          }
        ];
      }
      {
        apiVersion = "rbac.authorization.k8s.io/v1";
        kind = "RoleBinding";
        metadata = meta "comptoir:${name}" {};
        roleRef = {
          apiGroup = "rbac.authorization.k8s.io";
          kind = "Role";
          name = "comptoir:${name}";
        };
        subjects = [
          {
            kind = "ServiceAccount";
            inherit name;
            namespace = ns;
          }
        ];
      }
    ];

    # ---- NetworkPolicies ----------------------------------------------------------------
    #
    # k3s enforces NetworkPolicy with its embedded kube-router controller (with flannel).
    # Probes need no rule: kube-router accepts any packet to a pod whose source is an
    # address of the pod's own node ("rule to permit the traffic to pods when source is the
    # pod's local node", `--src-type LOCAL`), which is where the kubelet probes from. A rule
    # for the nodes' addresses would instead let every host process of every node in.
    #
    # Traffic to a Service's ClusterIP is translated to a pod address before the policies
    # see it, so pod-to-pod rules name pods (podSelector), never Services. Traffic leaving
    # the cluster (PostgreSQL, Pulsar, the mail relay) is matched on the pod's side, before
    # flannel masquerades it to the node's address.

    tcp = port: {
      protocol = "TCP";
      inherit port;
    };
    pods = name: {podSelector.matchLabels = selector name;};
    inKubeSystem = podLabels: {
      namespaceSelector.matchLabels."kubernetes.io/metadata.name" = "kube-system";
      podSelector.matchLabels = podLabels;
    };
    ipBlocks = map (cidr: {ipBlock = {inherit cidr;};});

    callersOf = name: filter (caller: elem name (graph.calls.${caller} or [])) serviceNames;
    needs = name: what: elem what graph.needs.${name};

    defaultDeny = {
      apiVersion = "networking.k8s.io/v1";
      kind = "NetworkPolicy";
      metadata = meta "default-deny" {};
      # Every pod of the namespace, both directions, nothing allowed: what the policies
      # below allow is all there is.
      spec = {
        podSelector = {};
        policyTypes = ["Ingress" "Egress"];
      };
    };

    # Every pod resolves names (the in-cluster Services, the `pulsar` brokers) through the
    # cluster DNS, CoreDNS in kube-system.
    allowDns = {
      apiVersion = "networking.k8s.io/v1";
      kind = "NetworkPolicy";
      metadata = meta "allow-dns" {};
      spec = {
        podSelector = {};
        policyTypes = ["Egress"];
        egress = [
          {
            to = [(inKubeSystem {"k8s-app" = "kube-dns";})];
            ports = [
              {
                protocol = "UDP";
                port = 53;
              }
              (tcp 53)
            ];
          }
        ];
      };
    };

    networkPolicy = name: let
      port = services.${name}.port;
      callers = callersOf name;
      callees = graph.calls.${name} or [];
      relay = environment.smtpRelay;
    in {
      apiVersion = "networking.k8s.io/v1";
      kind = "NetworkPolicy";
      metadata = meta name {labels = labels name;};
      spec = {
        podSelector.matchLabels = selector name;
        policyTypes = ["Ingress" "Egress"];
        ingress =
          # Its callers of graph.nix, on its service port (and its HTTPS port, if it has one).
          (map (caller: {
              from = [(pods caller)];
              ports = map tcp (servicePorts name);
            })
            callers)
          # The public service: the ingress controller, k3s' Traefik.
          ++ (
            if elem name publicServices
            then [
              {
                from = [(inKubeSystem {"app.kubernetes.io/name" = "traefik";})];
                ports = [(tcp port)];
              }
            ]
            else []
          )
          # No rule for /metrics on the ops port: Prometheus scrapes through the API server's
          # pod proxy (nixos/lib/prometheus.nix), and k3s tunnels that connection to the
          # agent of the pod's own node (--egress-selector-mode=pod, nixos/modules/k3s.nix),
          # which dials the pod from the node: the node-local rule above admits it, like the
          # probes. A rule for the monitoring hosts would admit nothing (they have no route
          # into the pod network) and an ipBlock for the nodes would admit every process of
          # every node.
          ;
        egress =
          (map (callee: {
              to = [(pods callee)];
              ports = map tcp (servicePorts callee);
            })
            callees)
          ++ (
            if needs name "postgres"
            then [
              {
                to = ipBlocks (cidrs "postgres");
                ports = [(tcp ports.postgres.postgres)];
              }
            ]
            else []
          )
          # The brokers' TLS port only: nothing uses the admin API (8443) at run time.
          ++ (
            if needs name "pulsar"
            then [
              {
                to = ipBlocks (cidrs "pulsar");
                ports = [(tcp ports.pulsar.brokerTls)];
              }
            ]
            else []
          )
          # Every service's spans, to the environment's Jaeger (jaegerObjects).
          ++ (
            if jaegerHosts != []
            then [
              {
                to = ipBlocks (cidrs "monitoring");
                ports = [(tcp ports.monitoring.otlpHttp)];
              }
            ]
            else []
          )
          ++ (
            if needs name "smtp"
            then [
              {
                to = ipBlocks ["${relay.address}/32"];
                ports = [(tcp relay.port)];
              }
            ]
            else []
          );
      };
    };

    # ---- Hosts outside the cluster, by name --------------------------------------------
    #
    # A headless Service without a selector and its EndpointSlice listing hosts of the
    # inventory: the cluster DNS answers <name>.comptoir.svc.<domain> with all their addresses.
    # The pods connect to the addresses themselves, so the policies' ipBlocks apply.
    outsideService = {
      name,
      sliceName,
      portName,
      port,
      hosts,
    }: [
      {
        apiVersion = "v1";
        kind = "Service";
        metadata = meta name {labels."app.kubernetes.io/part-of" = "comptoir";};
        spec = {
          clusterIP = "None";
          ports = [
            {
              name = portName;
              protocol = "TCP";
              inherit port;
              targetPort = port;
            }
          ];
        };
      }
      {
        apiVersion = "discovery.k8s.io/v1";
        kind = "EndpointSlice";
        metadata = meta sliceName {
          labels = {
            "kubernetes.io/service-name" = name;
            # Managed here, not by the EndpointSlice controller (which would delete it).
            "endpointslice.kubernetes.io/managed-by" = "nixos.comptoir.dev";
          };
        };
        addressType = "IPv4";
        endpoints =
          map (host: {
            addresses = [host.address];
            conditions.ready = true;
          })
          hosts;
        ports = [
          {
            name = portName;
            protocol = "TCP";
            inherit port;
          }
        ];
      }
    ];
    # The brokers, for pulsar.url (settings.nix).
    pulsarObjects = outsideService {
      name = "pulsar";
      sliceName = "pulsar-brokers";
      portName = "pulsar-tls";
      port = ports.pulsar.brokerTls;
      hosts = hostsOf "pulsar";
    };
    # The environment's Jaeger, for telemetry.otlp_endpoint (settings.nix, nixos/lib/jaeger.nix):
    # its OTLP/HTTP receiver on the monitoring host.
    jaegerObjects =
      if jaegerHosts == []
      then []
      else
        outsideService {
          name = "jaeger";
          sliceName = "jaeger-monitoring";
          portName = "otlp-http";
          port = ports.monitoring.otlpHttp;
          hosts = jaegerHosts;
        };

    # ---- Per service --------------------------------------------------------------------

    workloadFor = name: let
      w = workloads.services.${name};
    in
      w
      // (
        if full
        then {}
        else {
          replicas = 1;
          maxReplicas = 2;
          pdbMinAvailable = 0;
        }
      );

    serviceAccount = name: {
      apiVersion = "v1";
      kind = "ServiceAccount";
      metadata = meta name {labels = labels name;};
      # No service calls the Kubernetes API: no token in any pod.
      automountServiceAccountToken = false;
    };

    configMap = name: {
      apiVersion = "v1";
      kind = "ConfigMap";
      metadata = meta "${name}-settings" {labels = labels name;};
      data = settings.${env}.${name};
    };

    deployment = name: let
      w = workloadFor name;
      hasSecrets = w.secrets != [];
      # The CA files its settings name (every *_CA_FILE is under cluster.caDir, checked):
      # exactly those are mounted from the comptoir-ca ConfigMap.
      own = settings.${env}.${name};
      caFiles = filter (file:
        elem "${cluster.caDir}/${file}"
        (map (key: own.${key}) (filter (hasSuffix "CA_FILE") (attrNames own))))
      (attrValues cluster.caFiles);
      usesCa = caFiles != [];
      probe = path: extra:
        {
          httpGet = {
            inherit path;
            port = "ops";
          };
          timeoutSeconds = 2;
        }
        // extra;
      securityContext = {
        runAsNonRoot = true;
        runAsUser = uid;
        runAsGroup = uid;
        seccompProfile.type = "RuntimeDefault";
      };
    in {
      apiVersion = "apps/v1";
      kind = "Deployment";
      metadata = meta name {labels = labels name;};
      spec = {
        # No `replicas`: the HorizontalPodAutoscaler owns it. A re-applied manifest (every k3s
        # start re-applies its manifests) would otherwise scale back to a fixed number.
        selector.matchLabels = selector name;
        revisionHistoryLimit = 5;
        # One new pod up and ready before an old one goes: no capacity lost in a rollout.
        strategy = {
          type = "RollingUpdate";
          rollingUpdate = {
            maxSurge = 1;
            maxUnavailable = 0;
          };
        };
        template = {
          metadata = {
            labels = labels name;
            # Environment variables are read at start only: a changed settings map must
            # replace the pods, and a changed annotation is what makes the Deployment roll.
            annotations."comptoir.dev/settings-sha256" = hashString "sha256" (toJSON settings.${env}.${name});
          };
          spec = {
            serviceAccountName = name;
            automountServiceAccountToken = false;
            # No <SERVICE>_PORT=tcp://... variables for every Service of the namespace.
            enableServiceLinks = false;
            # Above the 5 s preStop pause plus the service's own shutdown grace
            # (http.shutdown_grace_ms, 20 s by default).
            terminationGracePeriodSeconds = 30;
            securityContext =
              securityContext
              // {
                # The mounted Secret's files belong to this group, mode 0440.
                fsGroup = uid;
              };
            # Spread a service's pods over the nodes, so one node lost is at most one pod
            # of each. Soft: a node down must not stop a rollout or a scale-up.
            topologySpreadConstraints = [
              {
                maxSkew = 1;
                topologyKey = "kubernetes.io/hostname";
                whenUnsatisfiable = "ScheduleAnyway";
                labelSelector.matchLabels = selector name;
              }
            ];
            containers = [
              {
                inherit name;
                image = "comptoir/${name}:${version}";
                # Never: the images are preloaded on every node by services.k3s.images
                # (nixos/modules/k3s.nix); `comptoir/<service>` on Docker Hub is nobody's
                # we know, and a node missing our image must fail (ErrImageNeverPull), not
                # pull a stranger's.
                imagePullPolicy = "Never";
                envFrom = [{configMapRef.name = "${name}-settings";}];
                ports =
                  map (p: {
                    inherit (p) name;
                    containerPort = p.port;
                    protocol = "TCP";
                  })
                  (namedPorts name);
                resources = {
                  requests = w.resources.requests // {ephemeral-storage = "16Mi";};
                  limits = w.resources.limits // {ephemeral-storage = "128Mi";};
                };
                # Up to 2 minutes to start (the migrations run before the listeners open),
                # then the liveness probe takes over.
                startupProbe = probe "/livez" {
                  periodSeconds = 2;
                  failureThreshold = 60;
                };
                livenessProbe = probe "/livez" {
                  periodSeconds = 10;
                  failureThreshold = 3;
                };
                # Not ready while its database or broker is unreachable: out of the
                # Service's endpoints, not restarted.
                readinessProbe = probe "/readyz" {
                  periodSeconds = 5;
                  failureThreshold = 2;
                };
                # The endpoints controller and every node's proxy need a moment to stop
                # sending new requests; the image has no shell, hence the built-in sleep.
                lifecycle.preStop.sleep.seconds = 5;
                securityContext =
                  securityContext
                  // {
                    allowPrivilegeEscalation = false;
                    privileged = false;
                    readOnlyRootFilesystem = true;
                    capabilities.drop = ["ALL"];
                  };
                volumeMounts =
                  [
                    {
                      name = "tmp";
                      mountPath = "/tmp";
                    }
                  ]
                  ++ (
                    if hasSecrets
                    then [
                      {
                        name = "secrets";
                        mountPath = cluster.secretsDir;
                        readOnly = true;
                      }
                    ]
                    else []
                  )
                  ++ (
                    if usesCa
                    then [
                      {
                        name = "ca";
                        mountPath = cluster.caDir;
                        readOnly = true;
                      }
                    ]
                    else []
                  );
              }
            ];
            volumes =
              [
                {
                  name = "tmp";
                  emptyDir.sizeLimit = "64Mi";
                }
              ]
              ++ (
                if hasSecrets
                then [
                  {
                    name = "secrets";
                    secret = {
                      secretName = "${name}-secrets";
                      defaultMode = 288; # 0440: the owner (root) and the pod's fsGroup
                      # Exactly the files of workloads.nix: a Secret missing one stops the
                      # pod at creation, naming the key, instead of at the service's start.
                      items =
                        map (file: {
                          key = file;
                          path = file;
                        })
                        w.secrets;
                    };
                  }
                ]
                else []
              )
              ++ (
                if usesCa
                then [
                  {
                    name = "ca";
                    configMap = {
                      name = "comptoir-ca";
                      items =
                        map (file: {
                          key = file;
                          path = file;
                        })
                        caFiles;
                    };
                  }
                ]
                else []
              );
          };
        };
      };
    };

    kubeService = name: {
      apiVersion = "v1";
      kind = "Service";
      metadata = meta name {labels = labels name;};
      spec = {
        type = "ClusterIP";
        selector = selector name;
        ports =
          map (p: {
            inherit (p) name port;
            protocol = "TCP";
            targetPort = p.name;
          })
          (namedPorts name);
      };
    };

    autoscaler = name: let
      w = workloadFor name;
    in {
      apiVersion = "autoscaling/v2";
      kind = "HorizontalPodAutoscaler";
      metadata = meta name {labels = labels name;};
      spec = {
        scaleTargetRef = {
          apiVersion = "apps/v1";
          kind = "Deployment";
          inherit name;
        };
        minReplicas = w.replicas;
        inherit (w) maxReplicas;
        metrics =
          [
            {
              type = "Resource";
              resource = {
                name = "cpu";
                target = {
                  type = "Utilization";
                  averageUtilization = w.cpuTarget;
                };
              };
            }
          ]
          # See workloads.nix (gateway): served by prometheus-adapter, which the manifests do
          # not install; only where cluster.customMetrics says it is, since an autoscaler
          # missing one of its metrics never scales down.
          ++ (
            if w ? requestsPerSecond && cluster.customMetrics.${env}
            then [
              {
                type = "Pods";
                pods = {
                  metric.name = "http_requests_per_second";
                  target = {
                    type = "AverageValue";
                    averageValue = toString w.requestsPerSecond;
                  };
                };
              }
            ]
            else []
          );
        # Up at once, down slowly: a burst that comes back finds its pods still there.
        behavior.scaleDown.stabilizationWindowSeconds = 300;
      };
    };

    disruptionBudget = name: let
      w = workloadFor name;
    in {
      apiVersion = "policy/v1";
      kind = "PodDisruptionBudget";
      metadata = meta name {labels = labels name;};
      spec = {
        minAvailable = w.pdbMinAvailable;
        selector.matchLabels = selector name;
        # A pod that is not ready counts for nothing: a drain may evict it.
        unhealthyPodEvictionPolicy = "AlwaysAllow";
      };
    };

    perService = name: [
      (serviceAccount name)
      (configMap name)
      (deployment name)
      (kubeService name)
      (autoscaler name)
      (disruptionBudget name)
      (networkPolicy name)
    ];

    # ---- The way in ---------------------------------------------------------------------
    #
    # k3s' bundled Traefik serves https://shop.<domain> with the certificate of the `shop-tls`
    # Secret and forwards to the public service. Only the `websecure` (443) entry point: plain
    # HTTP gets nothing (redirecting it is Traefik's configuration, not this Ingress').
    ingress = let
      public =
        if length publicServices == 1
        then head publicServices
        else throw "manifests.nix: one public service expected (graph.nix `public`), found ${toJSON publicServices}";
      host = "shop.${environment.domain}";
    in {
      apiVersion = "networking.k8s.io/v1";
      kind = "Ingress";
      metadata = meta "shop" {
        labels."app.kubernetes.io/part-of" = "comptoir";
        annotations = {
          "traefik.ingress.kubernetes.io/router.entrypoints" = "websecure";
          "traefik.ingress.kubernetes.io/router.tls" = "true";
        };
      };
      spec = {
        ingressClassName = "traefik";
        tls = [
          {
            hosts = [host];
            secretName = "shop-tls";
          }
        ];
        rules = [
          {
            inherit host;
            http.paths = [
              {
                path = "/";
                pathType = "Prefix";
                backend.service = {
                  name = public;
                  port.name = "http";
                };
              }
            ];
          }
        ];
      };
    };
  in
    [namespace]
    ++ rbac
    ++ scraper
    ++ [defaultDeny allowDns]
    ++ pulsarObjects
    ++ jaegerObjects
    ++ concatLists (map perService serviceNames)
    ++ [ingress];
in
  listToAttrs (map (env: {
      name = env;
      value = forEnv env;
    })
    inventory.environments)
