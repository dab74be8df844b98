#!/usr/bin/env python3
"""Invariants of the k3s manifests and the services' settings, for dev/fleet/check-manifests.sh.

Reads one JSON document, the evaluation check-manifests.sh makes with nix-instantiate:
    {"manifests": lib.manifests, "settings": lib.settings, "patroni": lib.patroni,
     "fleet": nixos/fleet.nix, "services": nix/services.nix, "graph": nixos/graph.nix,
     "ports": nixos/ports.nix, "workloads": nixos/workloads.nix}
The generators' outputs (manifests, settings, patroni) are checked against what is computed
here again from the data files (fleet, services, graph, ports, workloads), never through the
generators' code.

    manifests.py check FILE                 every invariant; exit 1 listing each broken one
    manifests.py selftest FILE              breaks a good input in known ways; exit 1 unless
                                            each is reported (and the input itself passes)
    manifests.py split FILE OUT_DIR         OUT_DIR/<env>.yaml: the environment's objects as a
                                            YAML stream (one JSON document each), for
                                            kubernetes-validate and kube-score; prints the
                                            environments and their sizing, one per line
    manifests.py pod-files FILE ENV SERVICE ROOT CA_PEM SIGNING_PEM [EXTRA_KEY=VALUE]
                                            lays out under ROOT the files the service's pod
                                            sees (its Secret's items, the CA ConfigMap's
                                            items), each with throwaway content of the kind
                                            its setting reads (a TLS certificate and key:
                                            server.crt and server.key beside CA_PEM), and
                                            writes ROOT.env: the
                                            ConfigMap's variables (plus EXTRA) with those paths
                                            moved under ROOT, NUL-separated KEY=VALUE

Standard library only (Python 3.11).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Data = dict[str, Any]

NAME_LABEL = "app.kubernetes.io/name"
NS_LABEL = "kubernetes.io/metadata.name"
# k3s' bundled components, in kube-system: CoreDNS and Traefik, by the labels their charts set.
KUBE_DNS = ("ns", ((NS_LABEL, "kube-system"),), (("k8s-app", "kube-dns"),))
TRAEFIK = ("ns", ((NS_LABEL, "kube-system"),), ((NAME_LABEL, "traefik"),))
# Objects that live outside any namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
PER_SERVICE_KINDS = [
    "Deployment",
    "Service",
    "ServiceAccount",
    "ConfigMap",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
]
# What identity's process holds besides its Argon2 budget (it idles at 16-18 MiB, plus
# buffers): workloads.nix promises the limit stays at least this far above the budget.
ARGON2_HEADROOM_MIB = 96
# Per pod, the outbox relay's dedicated LISTEN connection besides the pool.
RELAY_CONNECTIONS = 1
# Defaults of the Rust settings, where a map may leave them out: database.pool_size
# (libs/store/src/lib.rs) and argon2.memory_budget_mib (services/identity/src/password.rs).
DEFAULT_POOL_SIZE = 16
DEFAULT_ARGON2_BUDGET_MIB = 256
# PostgreSQL's own connections above the services' budget: superuser_reserved_connections
# (its default, 3, unless Patroni sets it) plus Patroni, the exporter, pgBackRest and an
# operator's psql.
POSTGRES_OWN_CONNECTIONS = 5
# The last word of a variable that would carry a secret as its value.
SECRET_WORDS = ("TOKEN", "PASSWORD", "KEY", "SECRET", "CREDENTIALS", "PASSPHRASE")


# --- reading the data ------------------------------------------------------------------------


def env_prefix(service: str) -> str:
    return f"COMPTOIR_{service.upper().replace('-', '_')}__"


def hosts_of(data: Data, env: str, role: str) -> list[dict]:
    return [h for h in data["fleet"]["environments"][env]["hosts"] if role in h["roles"]]


def callers_of(data: Data, service: str) -> list[str]:
    return sorted(c for c, callees in data["graph"]["calls"].items() if service in callees)


def needs(data: Data, service: str, what: str) -> bool:
    return what in data["graph"]["needs"].get(service, [])


def serves_tls(data: Data, service: str) -> bool:
    """Whether the service serves HTTPS too (workloads.nix: tls), on ports.service.https."""
    return bool(data["workloads"]["services"].get(service, {}).get("tls", False))


def service_ports(data: Data, service: str) -> list[int]:
    """The ports a caller reaches the service on: HTTP, and HTTPS if it serves it."""
    https = [data["ports"]["service"]["https"]] if serves_tls(data, service) else []
    return [data["services"][service]["port"], *https]


def quantity(text: Any, what: str) -> float:
    """A Kubernetes quantity: CPU in cores, memory in MiB."""
    text = str(text)
    units = {
        "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024,
        "k": 1000 / 1024 / 1024, "M": 1000 * 1000 / 1024 / 1024, "G": 1000**3 / 1024 / 1024,
    }
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G)?", text)
    if not match:
        raise ValueError(f"{what}: {text!r} is not a quantity")
    number, unit = float(match[1]), match[2]
    if what == "cpu":
        return number / 1000 if unit == "m" else number
    if unit is None:
        return number / 1024 / 1024
    if unit == "m":
        raise ValueError(f"{what}: {text!r} is not a memory quantity")
    return number * units[unit]


def selects(selector: dict | None, labels: dict) -> bool | None:
    """Whether a label selector matches; None when it uses what this file does not read."""
    selector = selector or {}
    if set(selector) - {"matchLabels"}:
        return None
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


class Env:
    """One environment's objects, indexed."""

    def __init__(self, data: Data, env: str, problems: list[str]):
        self.data, self.env, self.problems = data, env, problems
        self.objects: list[dict] = data["manifests"][env]
        self.cluster = data["workloads"]["cluster"]
        self.ns = self.cluster["namespace"]
        self.services = sorted(data["services"])
        self.full = self.cluster["sizing"].get(env) == "full"
        self.by_kind: dict[str, list[dict]] = {}
        for obj in self.objects:
            self.by_kind.setdefault(obj.get("kind", "?"), []).append(obj)

    def problem(self, text: str) -> None:
        self.problems.append(f"{self.env}: {text}")

    def named(self, kind: str, name: str) -> list[dict]:
        return [o for o in self.by_kind.get(kind, []) if o.get("metadata", {}).get("name") == name]

    def one(self, kind: str, name: str) -> dict | None:
        found = self.named(kind, name)
        if len(found) != 1:
            self.problem(f"{len(found)} {kind} named {name!r}, expected exactly one")
            return None
        return found[0]

    def pod_labels(self, service: str) -> dict:
        deployment = self.named("Deployment", service)
        if len(deployment) != 1:
            return {}
        return deployment[0].get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}

    def selected_services(self, selector: dict | None) -> set[str] | None:
        result = set()
        for service in self.services:
            matched = selects(selector, self.pod_labels(service))
            if matched is None:
                return None
            if matched:
                result.add(service)
        return result


# --- objects and wiring -------------------------------------------------------------------


def check_objects(e: Env) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in e.objects:
        kind, meta = obj.get("kind"), obj.get("metadata", {})
        name = meta.get("name")
        if not obj.get("apiVersion") or not kind or not name:
            e.problem(f"an object lacks apiVersion, kind or metadata.name: {json.dumps(obj)[:200]}")
            continue
        key = (obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "", kind, name)
        if key in seen:
            e.problem(f"{kind} {name} appears twice")
        seen.add(key)
        if kind in CLUSTER_SCOPED:
            if "namespace" in meta:
                e.problem(f"{kind} {name} is cluster-scoped but names namespace {meta['namespace']}")
        elif meta.get("namespace") != e.ns:
            e.problem(f"{kind} {name} is in namespace {meta.get('namespace')!r}, not {e.ns!r}")
        if kind == "Secret" and (obj.get("data") or obj.get("stringData")):
            e.problem(f"Secret {name} carries data: secrets never pass through Nix")
    namespaces = e.by_kind.get("Namespace", [])
    if [n["metadata"]["name"] for n in namespaces] != [e.ns]:
        e.problem(f"Namespaces {[n['metadata']['name'] for n in namespaces]}, expected [{e.ns!r}]")
    elif namespaces[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        e.problem(f"namespace {e.ns} does not enforce the restricted Pod Security Standard")


def check_per_service(e: Env) -> None:
    data = e.data
    if sorted(data["workloads"]["services"]) != e.services:
        e.problem(
            f"workloads.services has {sorted(data['workloads']['services'])}, "
            f"nix/services.nix {e.services}"
        )
    if sorted(data["graph"]["needs"]) != e.services:
        e.problem(f"graph.needs has {sorted(data['graph']['needs'])}, nix/services.nix {e.services}")
    for caller, callees in data["graph"]["calls"].items():
        for name in [caller, *callees]:
            if name not in data["services"]:
                e.problem(f"graph.calls names {name!r}, not a service of nix/services.nix")
    for name in data["graph"]["public"]:
        if name not in data["services"]:
            e.problem(f"graph.public names {name!r}, not a service of nix/services.nix")

    # Exactly one of each per service, found by the service's name label; nothing per service
    # for anything else (the Deployments, autoscalers and budgets are the services').
    for kind in PER_SERVICE_KINDS:
        labelled: dict[str, int] = {}
        for obj in e.by_kind.get(kind, []):
            owner = obj.get("metadata", {}).get("labels", {}).get(NAME_LABEL)
            if owner is not None:
                labelled[owner] = labelled.get(owner, 0) + 1
        for service in e.services:
            if labelled.get(service, 0) != 1:
                e.problem(f"{labelled.get(service, 0)} {kind} labelled {NAME_LABEL}={service}, expected 1")
        for owner in sorted(set(labelled) - set(e.services)):
            e.problem(f"{kind} labelled {NAME_LABEL}={owner}, which is not a service")
    for kind in ("Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        names = sorted(o["metadata"]["name"] for o in e.by_kind.get(kind, []))
        if names != e.services:
            e.problem(f"{kind} objects {names}, expected one per service {e.services}")

    ports = data["ports"]["service"]
    for service in e.services:
        port = data["services"][service]["port"]
        deployment = e.one("Deployment", service)
        svc = e.one("Service", service)
        account = e.one("ServiceAccount", service)
        hpa = e.one("HorizontalPodAutoscaler", service)
        pdb = e.one("PodDisruptionBudget", service)
        if deployment is None:
            continue
        spec = deployment["spec"]
        template = spec["template"]
        pod = template["spec"]
        labels = template.get("metadata", {}).get("labels", {})
        if labels.get(NAME_LABEL) != service:
            e.problem(f"Deployment {service}: its pods are not labelled {NAME_LABEL}={service}")
        if not selects(spec.get("selector"), labels):
            e.problem(f"Deployment {service}: its selector does not match its own pods")
        if "replicas" in spec:
            e.problem(f"Deployment {service} sets replicas: the autoscaler owns it")
        for other in e.services:
            if other != service and selects(spec.get("selector"), e.pod_labels(other)):
                e.problem(f"Deployment {service}: its selector also matches {other}'s pods")
        if account is not None and pod.get("serviceAccountName") != service:
            e.problem(f"Deployment {service} runs as {pod.get('serviceAccountName')!r}, not its ServiceAccount")
        if account is not None and account.get("automountServiceAccountToken") is not False:
            e.problem(f"ServiceAccount {service} mounts its token (no service calls the API)")
        containers = pod.get("containers", [])
        named_ports = {p.get("name"): p for c in containers for p in c.get("ports", [])}
        if named_ports.get("http", {}).get("containerPort") != port:
            e.problem(f"Deployment {service}: container port `http` is not {port} (nix/services.nix)")
        if named_ports.get("ops", {}).get("containerPort") != ports["ops"]:
            e.problem(f"Deployment {service}: container port `ops` is not {ports['ops']} (ports.nix)")
        want_https = ports["https"] if serves_tls(data, service) else None
        if named_ports.get("https", {}).get("containerPort") != want_https:
            e.problem(f"Deployment {service}: container port `https` is {named_ports.get('https', {}).get('containerPort')}, expected {want_https} (workloads.nix: tls)")
        if svc is not None:
            selector = {"matchLabels": svc["spec"].get("selector") or {}}
            if not svc["spec"].get("selector") or e.selected_services(selector) != {service}:
                e.problem(f"Service {service} does not select exactly {service}'s pods")
            for p in svc["spec"].get("ports", []):
                target = p.get("targetPort", p.get("port"))
                if isinstance(target, str) and target not in named_ports:
                    e.problem(f"Service {service}: targetPort {target!r} is no container port")
            by_name = {p.get("name"): p for p in svc["spec"].get("ports", [])}
            if by_name.get("http", {}).get("port") != port:
                e.problem(f"Service {service}: port `http` is not {port}")
            if by_name.get("ops", {}).get("port") != ports["ops"]:
                e.problem(f"Service {service}: port `ops` is not {ports['ops']} (Prometheus finds /metrics by it)")
            if by_name.get("https", {}).get("port") != want_https:
                e.problem(f"Service {service}: port `https` is {by_name.get('https', {}).get('port')}, expected {want_https}")
        if hpa is not None:
            custom = [m.get("type") for m in hpa["spec"].get("metrics", []) if m.get("type") != "Resource"]
            if custom and not data["workloads"]["cluster"].get("customMetrics", {}).get(e.env, False):
                e.problem(f"HorizontalPodAutoscaler {service} uses {custom} metrics, but cluster.customMetrics.{e.env} says nothing serves them: it would never scale down")
            target = hpa["spec"].get("scaleTargetRef", {})
            if (target.get("kind"), target.get("name")) != ("Deployment", service):
                e.problem(f"HorizontalPodAutoscaler {service} scales {target}, not Deployment {service}")
        if pdb is not None:
            if e.selected_services(pdb["spec"].get("selector")) != {service}:
                e.problem(f"PodDisruptionBudget {service} does not select exactly {service}'s pods")
    check_ingress(e)
    check_pulsar_service(e)
    check_jaeger_service(e)


def check_ingress(e: Env) -> None:
    public = e.data["graph"]["public"]
    ingresses = e.by_kind.get("Ingress", [])
    backends = set()
    for ingress in ingresses:
        spec = ingress["spec"]
        tls_hosts = {h for t in spec.get("tls", []) for h in t.get("hosts", []) if t.get("secretName")}
        for rule in spec.get("rules", []):
            if rule.get("host") not in tls_hosts:
                e.problem(f"Ingress {ingress['metadata']['name']}: host {rule.get('host')!r} has no TLS certificate")
            for path in rule.get("http", {}).get("paths", []):
                backend = path.get("backend", {}).get("service", {})
                backends.add(backend.get("name"))
                svc = e.named("Service", backend.get("name"))
                names = {p.get("name") for s in svc for p in s["spec"].get("ports", [])}
                if backend.get("port", {}).get("name") not in names:
                    e.problem(f"Ingress {ingress['metadata']['name']}: backend port {backend.get('port')} is not a port of Service {backend.get('name')}")
    if sorted(backends) != sorted(public):
        e.problem(f"the Ingress forwards to {sorted(backends)}, graph.public is {sorted(public)}")
    domain = e.data["fleet"]["environments"][e.env]["domain"]
    hosts = {r.get("host") for i in ingresses for r in i["spec"].get("rules", [])}
    if hosts != {f"shop.{domain}"}:
        e.problem(f"the Ingress serves {sorted(map(str, hosts))}, expected shop.{domain}")


def check_pulsar_service(e: Env) -> None:
    """The `pulsar` headless Service answers with every broker, on the brokers' TLS port."""
    if any(needs(e.data, s, "pulsar") for s in e.services):
        check_outside_service(e, "pulsar", "pulsar", e.data["ports"]["pulsar"]["brokerTls"])


def check_jaeger_service(e: Env) -> None:
    """The `jaeger` headless Service answers with the monitoring host, on Jaeger's OTLP/HTTP
    port (every service's telemetry.otlp_endpoint); none without a monitoring host."""
    if hosts_of(e.data, e.env, "monitoring"):
        check_outside_service(e, "jaeger", "monitoring", e.data["ports"]["monitoring"]["otlpHttp"])
    elif e.named("Service", "jaeger"):
        e.problem("Service jaeger exists, but the environment has no monitoring host to run Jaeger")


def check_outside_service(e: Env, name: str, role: str, port: int) -> None:
    """A headless Service without a selector whose EndpointSlices list the hosts of `role`."""
    wanted = sorted(h["address"] for h in hosts_of(e.data, e.env, role))
    svc = e.one("Service", name)
    if svc is not None and (svc["spec"].get("clusterIP") != "None" or svc["spec"].get("selector")):
        e.problem(f"Service {name} must be headless and without a selector (its endpoints are the {role} hosts)")
    slices = [
        s for s in e.by_kind.get("EndpointSlice", [])
        if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == name
    ]
    addresses = sorted(a for s in slices for ep in s.get("endpoints", []) for a in ep.get("addresses", []))
    slice_ports = {p.get("port") for s in slices for p in s.get("ports", [])}
    if addresses != wanted or slice_ports != {port}:
        e.problem(f"the {name} EndpointSlices list {addresses} on {sorted(map(str, slice_ports))}, expected the {role} hosts {wanted} on {port}")


# --- NetworkPolicies --------------------------------------------------------------------------


def peer_keys(e: Env, policy: str, peers: list | None) -> list[tuple]:
    """Who a rule's peers are: ("service", name) for the namespace's pods, ("ns", nsLabels,
    podLabels) for another namespace's, ("ip", cidr), or what this file cannot read."""
    if not peers:
        return [("anyone",)]
    out: list[tuple] = []
    for peer in peers:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            if block.get("except") or set(peer) != {"ipBlock"}:
                out.append(("unread", json.dumps(peer, sort_keys=True)))
                continue
            out.append(("ip", str(ipaddress.ip_network(block["cidr"], strict=False))))
        elif "namespaceSelector" in peer:
            ns_sel, pod_sel = peer["namespaceSelector"], peer.get("podSelector", {})
            if set(ns_sel) - {"matchLabels"} or set(pod_sel) - {"matchLabels"} or not ns_sel.get("matchLabels"):
                out.append(("unread", json.dumps(peer, sort_keys=True)))
                continue
            out.append((
                "ns",
                tuple(sorted(ns_sel["matchLabels"].items())),
                tuple(sorted((pod_sel.get("matchLabels") or {}).items())),
            ))
        elif "podSelector" in peer:
            chosen = e.selected_services(peer["podSelector"])
            if chosen is None:
                out.append(("unread", json.dumps(peer, sort_keys=True)))
            elif not chosen:
                e.problem(f"NetworkPolicy {policy}: peer {json.dumps(peer)} selects no service's pods")
            else:
                out.extend(("service", s) for s in sorted(chosen))
        else:
            out.append(("unread", json.dumps(peer, sort_keys=True)))
    return out


def port_keys(ports: list | None) -> list[tuple]:
    if not ports:
        return [("any", "all ports")]
    out = []
    for p in ports:
        if "endPort" in p:
            out.append((p.get("protocol", "TCP"), f"{p.get('port')}-{p['endPort']}"))
        else:
            out.append((p.get("protocol", "TCP"), p.get("port", "all ports")))
    return out


def policy_types(policy: dict) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def allowed(e: Env, service: str, direction: str) -> set[tuple]:
    """What reaches (Ingress) or leaves (Egress) the service's pods: the union of every policy
    that selects them, as (peer, protocol, port)."""
    labels = e.pod_labels(service)
    field, peer_field = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    result: set[tuple] = set()
    for policy in e.by_kind.get("NetworkPolicy", []):
        if policy["metadata"].get("namespace") != e.ns or direction not in policy_types(policy):
            continue
        if not selects(policy["spec"].get("podSelector"), labels):
            continue
        for rule in policy["spec"].get(field) or []:
            for peer in peer_keys(e, policy["metadata"]["name"], rule.get(peer_field)):
                for proto, port in port_keys(rule.get("ports")):
                    result.add((peer, proto, port))
    return result


def expected_ingress(e: Env, service: str) -> set[tuple]:
    port = e.data["services"][service]["port"]
    out = {(("service", caller), "TCP", p) for caller in callers_of(e.data, service) for p in service_ports(e.data, service)}
    if service in e.data["graph"]["public"]:
        out.add((TRAEFIK, "TCP", port))
    # Nothing for Prometheus: it scrapes the ops port through the API server's pod proxy,
    # which k3s (--egress-selector-mode=pod, checked below) tunnels to the agent of the pod's
    # own node, and kube-router admits traffic from the pod's own node without a rule (as it
    # does the kubelet's probes).
    return out


def expected_egress(e: Env, service: str) -> set[tuple]:
    data, env = e.data, e.env
    out = {(KUBE_DNS, "UDP", 53), (KUBE_DNS, "TCP", 53)}
    for callee in data["graph"]["calls"].get(service, []):
        out |= {(("service", callee), "TCP", p) for p in service_ports(data, callee)}
    if needs(data, service, "postgres"):
        port = data["ports"]["postgres"]["postgres"]
        out |= {(("ip", f"{h['address']}/32"), "TCP", port) for h in hosts_of(data, env, "postgres")}
    if needs(data, service, "pulsar"):
        port = data["ports"]["pulsar"]["brokerTls"]
        out |= {(("ip", f"{h['address']}/32"), "TCP", port) for h in hosts_of(data, env, "pulsar")}
    # Every service's spans to Jaeger on the monitoring host (check_jaeger_service).
    port = data["ports"]["monitoring"]["otlpHttp"]
    out |= {(("ip", f"{h['address']}/32"), "TCP", port) for h in hosts_of(data, env, "monitoring")}
    if needs(data, service, "smtp"):
        relay = data["fleet"]["environments"][env]["smtpRelay"]
        out.add((("ip", f"{relay['address']}/32"), "TCP", relay["port"]))
    return out


def show(rules: set[tuple]) -> str:
    def one(rule: tuple) -> str:
        peer, proto, port = rule
        if peer[0] == "service":
            who = f"pods of {peer[1]}"
        elif peer[0] == "ns":
            who = f"{dict(peer[1]).get(NS_LABEL, dict(peer[1]))} pods {dict(peer[2])}"
        elif peer[0] == "ip":
            who = peer[1]
        else:
            who = " ".join(map(str, peer))
        return f"{who} {proto}/{port}"

    return ", ".join(sorted(one(r) for r in rules))


def check_network_policies(e: Env) -> None:
    policies = e.by_kind.get("NetworkPolicy", [])
    deny = [
        p for p in policies
        if p["spec"].get("podSelector") in ({}, {"matchLabels": {}})
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", []))
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    if len(deny) != 1:
        e.problem(f"{len(deny)} default-deny NetworkPolicies (every pod, Ingress and Egress, no rule), expected 1")
    for policy in policies:
        chosen = e.selected_services(policy["spec"].get("podSelector"))
        if chosen is None:
            e.problem(f"NetworkPolicy {policy['metadata']['name']}: a pod selector this check cannot read")
        elif not chosen:
            e.problem(f"NetworkPolicy {policy['metadata']['name']} selects no pod")
    for service in e.services:
        own = [
            p for p in policies
            if p["metadata"].get("labels", {}).get(NAME_LABEL) == service
        ]
        for p in own:
            if e.selected_services(p["spec"].get("podSelector")) != {service}:
                e.problem(f"NetworkPolicy {p['metadata']['name']} is {service}'s but does not select exactly its pods")
        for direction, expected in (
            ("Ingress", expected_ingress(e, service)),
            ("Egress", expected_egress(e, service)),
        ):
            actual = allowed(e, service, direction)
            if actual != expected:
                extra, missing = actual - expected, expected - actual
                e.problem(
                    f"{service}: {direction} allows "
                    + (f"more than graph.nix says: {show(extra)}" if extra else "")
                    + ("; " if extra and missing else "")
                    + (f"less than graph.nix needs: {show(missing)}" if missing else "")
                )


def check_scrape_path(repo: Path | None, problems: list[str]) -> None:
    """The policies admit no scrape because k3s tunnels the API server's pod proxy through
    the pod's own node: that rests on one flag of nixos/modules/k3s.nix."""
    if repo is None:
        return
    module = repo / "nixos/modules/k3s.nix"
    if module.exists() and "--egress-selector-mode=pod" not in module.read_text():
        problems.append(
            "nixos/modules/k3s.nix no longer passes --egress-selector-mode=pod: Prometheus' scrapes "
            "through the API server would then come from the server, which no NetworkPolicy admits"
        )


# --- pods ---------------------------------------------------------------------------------------


def check_pods(e: Env) -> None:
    data = e.data
    for service in e.services:
        deployments = e.named("Deployment", service)
        if len(deployments) != 1:
            continue
        pod = deployments[0]["spec"]["template"]["spec"]
        pod_ctx = pod.get("securityContext", {})
        w = data["workloads"]["services"].get(service, {})
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(flag):
                e.problem(f"{service}: {flag} is set")
        if pod.get("automountServiceAccountToken") is not False:
            e.problem(f"{service}: the pod mounts a ServiceAccount token")
        for volume in pod.get("volumes", []):
            if "hostPath" in volume:
                e.problem(f"{service}: volume {volume['name']} is a hostPath")
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        if not containers:
            e.problem(f"{service}: no container")
        for c in containers:
            ctx = c.get("securityContext", {})
            where = f"{service}/{c.get('name')}"

            def effective(key: str) -> Any:
                return ctx[key] if key in ctx else pod_ctx.get(key)

            if effective("runAsNonRoot") is not True:
                e.problem(f"{where}: runAsNonRoot is not true")
            if effective("runAsUser") in (None, 0):
                e.problem(f"{where}: runAsUser is unset or root")
            if effective("runAsGroup") == 0:
                e.problem(f"{where}: runAsGroup is root")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                e.problem(f"{where}: seccomp profile is not RuntimeDefault")
            if ctx.get("allowPrivilegeEscalation") is not False:
                e.problem(f"{where}: allowPrivilegeEscalation is not false")
            if ctx.get("privileged"):
                e.problem(f"{where}: privileged")
            if ctx.get("readOnlyRootFilesystem") is not True:
                e.problem(f"{where}: readOnlyRootFilesystem is not true")
            caps = ctx.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                e.problem(f"{where}: capabilities are not all dropped (drop {caps.get('drop')}, add {caps.get('add')})")
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        e.problem(f"{where}: no {resource} {kind[:-1]}")
            for resource in ("cpu", "memory"):
                try:
                    req = quantity(resources["requests"][resource], resource)
                    lim = quantity(resources["limits"][resource], resource)
                except (KeyError, ValueError):
                    continue
                if req > lim:
                    e.problem(f"{where}: {resource} request above its limit")
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    want = w.get("resources", {}).get(kind, {}).get(resource)
                    if want is not None and resources.get(kind, {}).get(resource) != want:
                        e.problem(f"{where}: {resource} {kind[:-1]} {resources.get(kind, {}).get(resource)} is not workloads.nix's {want}")


def check_sizing(e: Env) -> None:
    data = e.data
    connections = 0
    for service in e.services:
        hpa, pdb = e.named("HorizontalPodAutoscaler", service), e.named("PodDisruptionBudget", service)
        w = data["workloads"]["services"].get(service, {})
        if len(hpa) != 1 or len(pdb) != 1:
            continue
        low, high = hpa[0]["spec"].get("minReplicas", 1), hpa[0]["spec"]["maxReplicas"]
        pdb_spec = pdb[0]["spec"]
        if "minAvailable" not in pdb_spec or "maxUnavailable" in pdb_spec or not isinstance(pdb_spec["minAvailable"], int):
            e.problem(f"PodDisruptionBudget {service}: expected an integer minAvailable and no maxUnavailable")
            continue
        keep = pdb_spec["minAvailable"]
        if high < low:
            e.problem(f"{service}: HPA maxReplicas {high} below minReplicas {low}")
        # A drain must always be able to evict one pod of the service at rest.
        if low < keep + 1:
            e.problem(
                f"{service}: HPA minReplicas {low} < PDB minAvailable {keep} + 1: "
                + ("a node drain would wait forever" if e.full else "the single-pod budget blocks every drain")
            )
        if e.full:
            wanted = (w.get("replicas"), w.get("maxReplicas"), w.get("pdbMinAvailable"))
            if (low, high, keep) != wanted:
                e.problem(f"{service}: HPA {low}..{high}, PDB {keep}, workloads.nix says {wanted}")
        elif keep != 0 or low != 1:
            e.problem(f"{service}: single sizing runs 1 pod with minAvailable 0, found HPA min {low}, PDB {keep}")
        if pdb_spec.get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
            e.problem(f"{service}: PDB lets unready pods block a drain (unhealthyPodEvictionPolicy)")
        settings = data["settings"][e.env].get(service, {})
        prefix = env_prefix(service)
        if needs(data, service, "postgres") or f"{prefix}DATABASE__HOST" in settings:
            pool = int(settings.get(f"{prefix}DATABASE__POOL_SIZE", DEFAULT_POOL_SIZE))
            if w.get("poolSize") is not None and pool != w["poolSize"]:
                e.problem(f"{service}: database.pool_size {pool}, workloads.nix poolSize {w['poolSize']}")
            connections += high * (pool + RELAY_CONNECTIONS)
    budget = data["workloads"]["cluster"]["postgresConnectionBudget"]
    if connections > budget:
        e.problem(f"the services may open {connections} PostgreSQL connections at their maximum, over the budget of {budget}")
    for host, member in sorted(data.get("patroni", {}).get(e.env, {}).get("hosts", {}).items()):
        params = member["settings"]["bootstrap"]["dcs"]["postgresql"]["parameters"]
        reserved = int(params.get("superuser_reserved_connections", 3))
        room = int(params.get("max_connections", 100)) - reserved - POSTGRES_OWN_CONNECTIONS
        if room < budget:
            e.problem(f"{host}: max_connections {params.get('max_connections')} leaves {room} for the services, below the budget of {budget}")

    # Identity: the Argon2 budget well under the pod's memory limit.
    if "identity" in e.services:
        prefix = env_prefix("identity")
        budget_mib = int(data["settings"][e.env]["identity"].get(f"{prefix}ARGON2__MEMORY_BUDGET_MIB", DEFAULT_ARGON2_BUDGET_MIB))
        deployments = e.named("Deployment", "identity")
        if deployments:
            limits = [c.get("resources", {}).get("limits", {}).get("memory") for c in deployments[0]["spec"]["template"]["spec"]["containers"]]
            try:
                limit = min(quantity(m, "memory") for m in limits if m is not None)
            except ValueError:
                limit = 0
            if limit - budget_mib < ARGON2_HEADROOM_MIB:
                e.problem(
                    f"identity: memory limit {limit:g} MiB is not {ARGON2_HEADROOM_MIB} MiB above "
                    f"argon2.memory_budget_mib {budget_mib}"
                )
        wanted = data["workloads"]["services"].get("identity", {}).get("argon2MemoryBudgetMiB")
        if wanted is not None and wanted != budget_mib:
            e.problem(f"identity: argon2.memory_budget_mib {budget_mib}, workloads.nix {wanted}")


# --- settings -------------------------------------------------------------------------------


def nix_json(value: Any) -> str:
    """builtins.toJSON: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def mounted_files(e: Env, service: str) -> dict[str, str]:
    """Path in the container → "secret" or "ca", from the Deployment's volumes."""
    deployments = e.named("Deployment", service)
    if len(deployments) != 1:
        return {}
    pod = deployments[0]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out: dict[str, str] = {}
    for c in pod.get("containers", []):
        for mount in c.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            source = volume.get("secret") or volume.get("configMap")
            if source is None:
                continue
            kind = "secret" if "secret" in volume else "ca"
            if not mount.get("readOnly"):
                e.problem(f"{service}: volume {mount['name']} is mounted writable")
            if "items" not in source:
                e.problem(f"{service}: volume {mount['name']} mounts every key (list the items)")
            for item in source.get("items", []):
                out[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = kind
    return out


def secret_like(key: str) -> bool:
    last = key.rsplit("__", 1)[-1]
    return any(last == w or last.endswith("_" + w) for w in SECRET_WORDS)


def check_settings(e: Env) -> None:
    data, cluster = e.data, e.cluster
    settings = data["settings"][e.env]
    if sorted(settings) != e.services:
        e.problem(f"settings has {sorted(settings)}, nix/services.nix {e.services}")
    secrets_dir, ca_dir = cluster["secretsDir"].rstrip("/"), cluster["caDir"].rstrip("/")
    domain, ns = cluster["domain"], e.ns
    for service in e.services:
        env = settings.get(service, {})
        prefix = env_prefix(service)
        config_map = [
            c for c in e.by_kind.get("ConfigMap", [])
            if c["metadata"].get("labels", {}).get(NAME_LABEL) == service
        ]
        deployments = e.named("Deployment", service)
        if len(config_map) == 1:
            if config_map[0].get("data") != env:
                diff = sorted(set(config_map[0].get("data", {}).items()) ^ set(env.items()))
                e.problem(f"ConfigMap {config_map[0]['metadata']['name']} is not settings.{e.env}.{service}: {diff[:4]}")
            if deployments:
                template = deployments[0]["spec"]["template"]
                sources = [s for c in template["spec"].get("containers", []) for s in c.get("envFrom", [])]
                if sources != [{"configMapRef": {"name": config_map[0]["metadata"]["name"]}}]:
                    e.problem(f"{service}: the container's envFrom is {sources}, expected its ConfigMap only")
                digest = hashlib.sha256(nix_json(env).encode()).hexdigest()
                annotations = template.get("metadata", {}).get("annotations", {})
                if digest not in annotations.values():
                    e.problem(f"{service}: no pod annotation carries the settings' sha256: a changed map would not roll the pods")
        for c in (deployments[0]["spec"]["template"]["spec"].get("containers", []) if deployments else []):
            for var in c.get("env", []):
                if "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
                    e.problem(f"{service}: {var['name']} comes from a Secret as a value, not a file")
                elif secret_like(var["name"]):
                    e.problem(f"{service}: env {var['name']} holds a literal secret")
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    e.problem(f"{service}: envFrom a Secret: secrets are files, never variables")

        mounted = mounted_files(e, service)
        referenced: set[str] = set()
        calls_tls = False
        for key, value in sorted(env.items()):
            if not key.startswith(prefix):
                e.problem(f"{service}: {key} is not one of its variables ({prefix}*)")
            if not isinstance(value, str):
                e.problem(f"{service}: {key} is not a string (ConfigMap data)")
                continue
            if "-----BEGIN" in value:
                e.problem(f"{service}: {key} holds PEM text")
            if secret_like(key):
                e.problem(f"{service}: {key} holds a literal secret: only *_FILE paths under {secrets_dir}")
            if key.endswith("_FILE"):
                in_secrets = value.startswith(secrets_dir + "/")
                in_ca = value.startswith(ca_dir + "/")
                if key.endswith("CA_FILE"):
                    if not in_ca:
                        e.problem(f"{service}: {key}={value} is not under the CA directory {ca_dir}")
                elif not in_secrets:
                    e.problem(f"{service}: {key}={value} is not under the secrets directory {secrets_dir}")
                if value not in mounted:
                    e.problem(f"{service}: {key}={value} is no file the pod mounts")
                referenced.add(value)
            if key.endswith("_KEYS_DIR"):
                # A directory of keys, one <YYYY-MM>.key per month (analytics' pseudonymisation
                # keys): the Secret's own directory, naming each such file it mounts.
                if value != secrets_dir:
                    e.problem(f"{service}: {key}={value} is not the secrets directory {secrets_dir}")
                monthly = [p for p in mounted if re.fullmatch(re.escape(value) + r"/\d{4}-\d{2}\.key", p)]
                if not monthly:
                    e.problem(f"{service}: {key} names a directory without any <YYYY-MM>.key")
                referenced.update(monthly)
            # In-cluster URLs: only to the services it calls, at their port (what the
            # NetworkPolicies let through). Browser origins are no destination.
            urls = [] if key.endswith("ALLOWED_ORIGINS") else re.findall(r"([a-z+]+)://([^/\"',\]]+)", value)
            for scheme, url in urls:
                host, _, port = url.rpartition(":")
                host = host or url
                suffix = f".{ns}.svc.{domain}"
                if not host.endswith(suffix):
                    e.problem(f"{service}: {key} reaches {host}, not an in-cluster name (*{suffix})")
                    continue
                target = host[: -len(suffix)]
                if target == "pulsar":
                    if not needs(data, service, "pulsar") or port != str(data["ports"]["pulsar"]["brokerTls"]):
                        e.problem(f"{service}: {key} reaches the brokers at {url} without needing pulsar on the TLS port")
                elif target == "jaeger":
                    otlp = data["ports"]["monitoring"]["otlpHttp"]
                    if not key.endswith("__TELEMETRY__OTLP_ENDPOINT") or scheme != "http" or port != str(otlp):
                        e.problem(f"{service}: {key} reaches Jaeger at {scheme}://{url}: only the OTLP endpoint, over http on {otlp}")
                elif target not in data["graph"]["calls"].get(service, []):
                    e.problem(f"{service}: {key} calls {target}, which graph.nix does not let it call")
                else:
                    # https:// only to a service serving it, on its HTTPS port; http:// on its
                    # service port.
                    want = data["ports"]["service"]["https"] if scheme == "https" else data["services"][target]["port"]
                    if scheme == "https" and not serves_tls(data, target):
                        e.problem(f"{service}: {key} calls {target} over https://, which it does not serve (workloads.nix: tls)")
                    elif port != str(want):
                        e.problem(f"{service}: {key} calls {target} on port {port or '(default)'}, not {want}")
                    if scheme == "https":
                        calls_tls = True
        for path, kind in sorted(mounted.items()):
            if path not in referenced:
                e.problem(f"{service}: mounted {kind} file {path} is named by no setting")
        w = data["workloads"]["services"].get(service, {})
        mounted_secrets = sorted(p.rsplit("/", 1)[-1] for p, k in mounted.items() if k == "secret")
        if mounted_secrets != sorted(w.get("secrets", [])):
            e.problem(f"{service}: the pod mounts secrets {mounted_secrets}, workloads.nix lists {sorted(w.get('secrets', []))}")
        mounted_cas = sorted(p.rsplit("/", 1)[-1] for p, k in mounted.items() if k == "ca")
        # The brokers' and the database's CAs by its needs, the platform CA when it calls a
        # service over https://, and the relay's CA when the inventory names one.
        relay_ca = data["fleet"]["environments"][e.env]["smtpRelay"].get("ca") if needs(data, service, "smtp") else None
        wanted_kinds = {k for k in ("postgres", "pulsar") if needs(data, service, k)}
        wanted_kinds |= {"platform"} if calls_tls else set()
        wanted_kinds |= {relay_ca} if relay_ca else set()
        wanted_cas = sorted(cluster["caFiles"][k] for k in wanted_kinds)
        if mounted_cas != wanted_cas:
            e.problem(f"{service}: the pod mounts CA files {mounted_cas}, its needs call for {wanted_cas}")
        # Outside the cluster: its own database on the Patroni hosts, the relay.
        if needs(data, service, "postgres"):
            hosts = ",".join(h["address"] for h in hosts_of(data, e.env, "postgres"))
            got = (env.get(f"{prefix}DATABASE__HOST"), env.get(f"{prefix}DATABASE__PORT"), env.get(f"{prefix}DATABASE__TLS"))
            want = (hosts, str(data["ports"]["postgres"]["postgres"]), "verify-full")
            if got != want:
                e.problem(f"{service}: database host, port, tls {got}, expected {want}")
        elif any(k.startswith(f"{prefix}DATABASE__") for k in env):
            e.problem(f"{service}: database settings without needing postgres (graph.nix)")
        if needs(data, service, "smtp"):
            relay = data["fleet"]["environments"][e.env]["smtpRelay"]
            got = (env.get(f"{prefix}SMTP__HOST"), env.get(f"{prefix}SMTP__PORT"), env.get(f"{prefix}SMTP__TLS"), env.get(f"{prefix}SMTP__USERNAME"))
            want = (relay["host"], str(relay["port"]), relay["tls"], relay["username"])
            if got != want:
                e.problem(f"{service}: smtp host, port, tls, username {got}, the relay is {want}")
            if relay["tls"] not in ("starttls", "tls"):
                e.problem(f"{e.env}: the mail relay is reached with tls = {relay['tls']!r}: mail and the relay password would cross the network in clear")


# --- driver ------------------------------------------------------------------------------------


def check(data: Data, repo: Path | None = None) -> list[str]:
    problems: list[str] = []
    envs = sorted(data["manifests"])
    if sorted(data["settings"]) != envs or sorted(data["fleet"]["environments"]) != envs:
        problems.append(f"environments: manifests {envs}, settings {sorted(data['settings'])}, fleet {sorted(data['fleet']['environments'])}")
    for env in envs:
        if env not in data["workloads"]["cluster"]["sizing"]:
            problems.append(f"{env}: no sizing in workloads.nix")
            continue
        e = Env(data, env, problems)
        for step in (check_objects, check_per_service, check_network_policies, check_pods, check_sizing, check_settings):
            try:
                step(e)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
                e.problem(f"{step.__name__} could not read the objects: {type(error).__name__}: {error}")
    check_scrape_path(repo, problems)
    return problems


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objs: list[dict], service: str) -> dict:
    return find(objs, "Deployment", service)["spec"]["template"]["spec"]["containers"][0]


def mutations(data: Data) -> list[tuple[str, str, Callable[[Data], None]]]:
    """(what, a word the report must contain, how to break a good input)."""
    env = "prod" if "prod" in data["manifests"] else sorted(data["manifests"])[0]
    single = next((x for x in sorted(data["manifests"]) if data["workloads"]["cluster"]["sizing"].get(x) != "full"), None)
    services = sorted(data["services"])
    first = services[0]
    with_db = next(s for s in services if needs(data, s, "postgres"))
    prefix = env_prefix(first)

    def objs(d: Data, e: str = env) -> list[dict]:
        return d["manifests"][e]

    def extra_egress(d: Data) -> None:
        find(objs(d), "NetworkPolicy", first)["spec"]["egress"].append(
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        )

    def extra_ingress(d: Data) -> None:
        find(objs(d), "NetworkPolicy", with_db)["spec"].setdefault("ingress", []).append(
            {"from": [{"podSelector": {"matchLabels": {NAME_LABEL: other}}} for other in services]}
        )

    def open_dns(d: Data) -> None:
        find(objs(d), "NetworkPolicy", "allow-dns")["spec"]["egress"][0].pop("to")

    def no_default_deny(d: Data) -> None:
        d["manifests"][env] = [o for o in objs(d) if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")]

    def missing_pdb(d: Data) -> None:
        d["manifests"][env] = [o for o in objs(d) if not (o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == first)]

    def blocking_pdb(d: Data) -> None:
        hpa = find(objs(d), "HorizontalPodAutoscaler", first)["spec"]["minReplicas"]
        find(objs(d), "PodDisruptionBudget", first)["spec"]["minAvailable"] = hpa

    def single_blocking_pdb(d: Data) -> None:
        find(objs(d, single), "PodDisruptionBudget", first)["spec"]["minAvailable"] = 1

    def literal_secret(d: Data) -> None:
        find(objs(d), "ConfigMap", f"{first}-settings")["data"][f"{prefix}ADMIN_TOKEN"] = "s3cr3t-s3cr3t-s3cr3t"
        d["settings"][env][first][f"{prefix}ADMIN_TOKEN"] = "s3cr3t-s3cr3t-s3cr3t"

    def literal_env_secret(d: Data) -> None:
        container(objs(d), first).setdefault("env", []).append({"name": f"{prefix}DATABASE__PASSWORD", "value": "hunter2"})

    def secret_outside(d: Data) -> None:
        key = f"{env_prefix(with_db)}DATABASE__PASSWORD_FILE"
        d["settings"][env][with_db][key] = "/etc/password"
        find(objs(d), "ConfigMap", f"{with_db}-settings")["data"][key] = "/etc/password"

    def wrong_config_map(d: Data) -> None:
        find(objs(d), "ConfigMap", f"{first}-settings")["data"][f"{prefix}HTTP__LISTEN"] = "0.0.0.0:1"

    def duplicate_deployment(d: Data) -> None:
        objs(d).append(copy.deepcopy(find(objs(d), "Deployment", first)))

    def unknown_workload(d: Data) -> None:
        d["workloads"]["services"]["ghost"] = copy.deepcopy(d["workloads"]["services"][first])

    def root(d: Data) -> None:
        ctx = container(objs(d), first)["securityContext"]
        ctx["runAsUser"] = 0
        ctx["runAsNonRoot"] = False

    def writable(d: Data) -> None:
        container(objs(d), first)["securityContext"]["readOnlyRootFilesystem"] = False

    def escalation(d: Data) -> None:
        container(objs(d), first)["securityContext"].pop("allowPrivilegeEscalation")

    def capability(d: Data) -> None:
        container(objs(d), first)["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_ADMIN"]}

    def unconfined(d: Data) -> None:
        find(objs(d), "Deployment", first)["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
        container(objs(d), first)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}

    def no_limits(d: Data) -> None:
        container(objs(d), first)["resources"].pop("limits")

    def argon2(d: Data) -> None:
        key = f"{env_prefix('identity')}ARGON2__MEMORY_BUDGET_MIB"
        d["settings"][env]["identity"][key] = "350"
        find(objs(d), "ConfigMap", "identity-settings")["data"][key] = "350"

    def connections(d: Data) -> None:
        for s in services:
            hpa = [o for o in objs(d) if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == s]
            for h in hpa:
                h["spec"]["maxReplicas"] = 40

    def stray_call(d: Data) -> None:
        callee = next(s for s in services if s not in d["graph"]["calls"].get(with_db, []) and s != with_db)
        key = f"{env_prefix(with_db)}EXTRA__URL"
        url = f"http://{callee}.{d['workloads']['cluster']['namespace']}.svc.{d['workloads']['cluster']['domain']}:8080"
        d["settings"][env][with_db][key] = url
        find(objs(d), "ConfigMap", f"{with_db}-settings")["data"][key] = url

    def plain_jwks(d: Data) -> None:
        # The gateway fetching identity's JWKS over plain HTTP at its HTTPS port.
        key = f"{env_prefix('gateway')}AUTH__URL"
        url = d["settings"][env]["gateway"][key].replace("https://", "http://")
        d["settings"][env]["gateway"][key] = url
        find(objs(d), "ConfigMap", "gateway-settings")["data"][key] = url

    def unserved_metric(d: Data) -> None:
        hpa = find(objs(d), "HorizontalPodAutoscaler", "gateway")
        hpa["spec"]["metrics"].append({"type": "Pods", "pods": {"metric": {"name": "http_requests_per_second"}, "target": {"type": "AverageValue", "averageValue": "400"}}})

    def plaintext_relay(d: Data) -> None:
        d["fleet"]["environments"][env]["smtpRelay"]["tls"] = "none"

    out = [
        ("an extra NetworkPolicy egress", "Egress allows more", extra_egress),
        ("a JWKS over http:// to identity's HTTPS port", "calls identity on port 8443, not 8080", plain_jwks),
        ("a mail relay reached in plaintext", "would cross the network in clear", plaintext_relay),
        ("an autoscaler on a metric nothing serves", "would never scale down", unserved_metric),
        ("an ingress from every service", "Ingress allows more", extra_ingress),
        ("DNS open to anyone", "Egress allows more", open_dns),
        ("no default-deny", "default-deny", no_default_deny),
        ("a missing PodDisruptionBudget", "PodDisruptionBudget", missing_pdb),
        ("a PDB as high as the HPA minimum", "minAvailable", blocking_pdb),
        ("a literal secret in the settings", "literal secret", literal_secret),
        ("a literal secret in the container's env", "literal secret", literal_env_secret),
        ("a secret file outside the secrets directory", "not under the secrets directory", secret_outside),
        ("a ConfigMap that is not the settings", "is not settings", wrong_config_map),
        ("a second Deployment of a service", "2 Deployment", duplicate_deployment),
        ("a workload with no service", "workloads.services", unknown_workload),
        ("a container running as root", "runAsNonRoot", root),
        ("a writable root filesystem", "readOnlyRootFilesystem", writable),
        ("privilege escalation allowed", "allowPrivilegeEscalation", escalation),
        ("an added capability", "capabilities", capability),
        ("seccomp unconfined", "seccomp", unconfined),
        ("no resource limits", "no cpu limit", no_limits),
        ("an Argon2 budget near identity's memory limit", "argon2.memory_budget_mib", argon2),
        ("more PostgreSQL connections than the budget", "over the budget", connections),
        ("a URL to a service it does not call", "does not let it call", stray_call),
    ]
    if single is not None:
        out.append(("a single-pod PDB that blocks drains", "blocks every drain", single_blocking_pdb))
    return out


def selftest(data: Data) -> int:
    baseline = check(data)
    if baseline:
        print("self-test: the unbroken input already fails:", *baseline, sep="\n  ", file=sys.stderr)
        return 1
    failed = 0
    for what, needle, breaker in mutations(data):
        broken = copy.deepcopy(data)
        breaker(broken)
        found = check(broken)
        if any(needle in p for p in found):
            print(f"self-test: caught {what}", file=sys.stderr)
        else:
            failed += 1
            print(f"self-test: MISSED {what} (looked for {needle!r} in {found})", file=sys.stderr)
    return 1 if failed else 0


# --- files for the real tools ---------------------------------------------------------------------


def split(data: Data, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for env, objects in sorted(data["manifests"].items()):
        with open(out / f"{env}.yaml", "w") as f:
            for obj in objects:
                f.write("---\n" + json.dumps(obj, sort_keys=True) + "\n")
        print(env, data["workloads"]["cluster"]["sizing"].get(env, "?"))


def file_kind(key: str | None, path: str, mount_kind: str) -> str:
    """What a file holds, from the setting that names it (else its mount)."""
    if mount_kind == "ca" or (key and key.endswith("CA_FILE")):
        return "ca"
    if key is None:
        # A monthly key of a *_KEYS_DIR (analytics' pseudonymisation keys), else a token.
        return "key32" if re.search(r"/\d{4}-\d{2}\.key$", path) else "token"
    if key.endswith("TLS__CERT_FILE"):
        return "tls-cert"
    if key.endswith("TLS__KEY_FILE"):
        return "tls-key"
    if key.endswith("SIGNING_KEY_FILE"):
        return "ed25519"
    if key.endswith("PUBLIC_KEY_FILE"):
        return "ed25519-public"
    if re.search(r"(KEK__FILE|KEKS|KEY_FILE)$", key):
        return "key32"
    if key.endswith("TOKEN_FILE"):
        return "token"
    if key.endswith("PASSWORD_FILE"):
        return "password"
    raise SystemExit(f"manifests.py pod-files: no throwaway content known for {key} ({path}); teach file_kind")


def pod_files(data: Data, env: str, service: str, root: Path, ca_pem: Path, signing_pem: Path, extra: list[str]) -> None:
    problems: list[str] = []
    e = Env(data, env, problems)
    mounted = mounted_files(e, service)
    settings = dict(data["settings"][env][service])
    by_path = {v: k for k, v in settings.items() if isinstance(v, str) and v in mounted}
    for path, mount_kind in sorted(mounted.items()):
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        kind = file_kind(by_path.get(path), path, mount_kind)
        if kind == "ca":
            target.write_bytes(ca_pem.read_bytes())
        elif kind == "ed25519":
            target.write_bytes(signing_pem.read_bytes())
        elif kind in ("tls-cert", "tls-key"):
            # A server certificate of the throwaway CA and its key, beside the CA's file.
            target.write_bytes(ca_pem.with_name("server.crt" if kind == "tls-cert" else "server.key").read_bytes())
        elif kind == "ed25519-public":
            raise SystemExit("manifests.py pod-files: retired signing keys are not laid out yet")
        elif kind == "key32":
            target.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        else:
            target.write_text(secrets.token_hex(24) + "\n")
    mounts = sorted({p.rsplit("/", 1)[0] for p in mounted}, key=len, reverse=True)
    lines = []
    for key, value in sorted(settings.items()):
        for mount in mounts:
            # A file under a mount, or the mount itself (a *_KEYS_DIR).
            if isinstance(value, str) and (value == mount or value.startswith(mount + "/")):
                value = str(root) + value
                break
        lines.append(f"{key}={value}")
    lines += extra
    Path(f"{root}.env").write_bytes(b"".join(line.encode() + b"\0" for line in lines))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in ("check", "selftest", "split", "pod-files"):
        print(__doc__, file=sys.stderr)
        return 2
    data = json.loads(Path(argv[2]).read_text())
    if argv[1] == "check":
        problems = check(data, Path.cwd())
        for problem in problems:
            print(f"manifests.py: {problem}", file=sys.stderr)
        if not problems:
            envs = sorted(data["manifests"])
            print(f"manifests.py: {sum(len(data['manifests'][e]) for e in envs)} objects of {', '.join(envs)}: every invariant holds", file=sys.stderr)
        return 1 if problems else 0
    if argv[1] == "selftest":
        return selftest(data)
    if argv[1] == "split" and len(argv) == 4:
        split(data, Path(argv[3]))
        return 0
    if argv[1] == "pod-files" and len(argv) >= 8:
        env, service, root, ca, signing = argv[3:8]
        pod_files(data, env, service, Path(root), Path(ca), Path(signing), argv[8:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
