#!/usr/bin/env python3
"""Invariants of the hosts' firewalls and of Prometheus, for dev/fleet/check-hosts.sh.

    hosts.py prepare EVAL_DIR OUT_DIR   write the files the real tools check: OUT/nft/<host>.nft,
                                        OUT/prometheus/<env>.yml (+ its rule file), placeholder
                                        secret files under OUT/secrets
    hosts.py check EVAL_DIR OUT_DIR     compare; exit 1 with one line per broken invariant

EVAL_DIR holds JSON written by check-hosts.sh with nix-instantiate: the raw inventory, graph and
ports (fleet.json, graph.json, ports.json: the data files themselves, not the generators) and
the pod network and the services' namespace (workloads.json), and the generators' outputs (firewall.json, firewallRules.json, prometheus.json, ruleFiles.json,
prometheusSecrets.json). `check` also reads OUT/nft/<host>.json, the ruleset as nftables itself
lists it after loading the text into a throwaway network namespace.

The allowances are computed here a second time, independently of nixos/lib/firewall.nix, from
a table of edges written the other way round (who talks to whom, rather than what each role
opens), and compared three ways: this table = the generator's data = what nftables loaded.
Standard library only (Python 3.11).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

ANYWHERE = ["0.0.0.0/0", "::/0"]
SECRETS_PREFIX = "/run/secrets/"
# The rule files every environment loads (ruleFiles of nixos/lib/prometheus.nix).
RULES_DIR = Path(__file__).resolve().parents[2] / "nixos" / "monitoring" / "rules"

# Who may open a connection to whom, on which port (a dotted path into ports.nix):
# (client, server role, port, protocol). Clients: "admin" (the environment's admin networks),
# "anywhere", "pods" (the pod network, to its own node), or a role; "k3s" is either k3s role,
# "*" every host (of the server's environment, as a client).
EDGES = [
    ("admin", "*", "ssh", "tcp"),
    ("ci", "*", "ssh", "tcp"),  # the release gate's deploy-rs
    ("monitoring", "*", "nodeExporter", "tcp"),
    # k3s
    ("k3s", "k3s-server", "k3s.api", "tcp"),
    ("pods", "k3s-server", "k3s.api", "tcp"),
    ("admin", "k3s-server", "k3s.api", "tcp"),
    ("monitoring", "k3s-server", "k3s.api", "tcp"),  # kubernetes_sd and the pods' /metrics
    ("k3s-server", "k3s-server", "k3s.etcdClient", "tcp"),
    ("k3s-server", "k3s-server", "k3s.etcdPeer", "tcp"),
    ("k3s", "k3s", "k3s.kubelet", "tcp"),
    ("pods", "k3s", "k3s.kubelet", "tcp"),
    ("k3s", "k3s", "k3s.flannelVxlan", "udp"),
    ("anywhere", "k3s", "ingressHttp", "tcp"),
    ("anywhere", "k3s", "ingressHttps", "tcp"),
    # Pulsar
    ("pulsar", "pulsar", "pulsar.zookeeperClient", "tcp"),
    ("pulsar", "pulsar", "pulsar.zookeeperPeer", "tcp"),
    ("pulsar", "pulsar", "pulsar.zookeeperElection", "tcp"),
    ("pulsar", "pulsar", "pulsar.bookie", "tcp"),
    ("pulsar", "pulsar", "pulsar.brokerTls", "tcp"),
    ("pulsar", "pulsar", "pulsar.webTls", "tcp"),
    ("admin", "pulsar", "pulsar.webTls", "tcp"),
    ("monitoring", "pulsar", "pulsar.webTls", "tcp"),
    ("monitoring", "pulsar", "pulsar.zookeeperMetrics", "tcp"),
    ("monitoring", "pulsar", "pulsar.bookieHttp", "tcp"),
    # PostgreSQL under Patroni
    ("postgres", "postgres", "postgres.postgres", "tcp"),
    ("postgres", "postgres", "postgres.patroni", "tcp"),
    ("monitoring", "postgres", "postgres.patroni", "tcp"),
    ("postgres", "postgres", "postgres.etcdClient", "tcp"),
    ("postgres", "postgres", "postgres.etcdPeer", "tcp"),
    ("monitoring", "postgres", "postgres.exporter", "tcp"),
    # Monitoring
    ("admin", "monitoring", "monitoring.prometheus", "tcp"),
    ("ci", "monitoring", "monitoring.prometheus", "tcp"),  # the release gate's health check
    ("admin", "monitoring", "monitoring.alertmanager", "tcp"),
    ("monitoring", "monitoring", "monitoring.alertmanager", "tcp"),
    ("admin", "monitoring", "monitoring.grafana", "tcp"),
    ("k3s", "monitoring", "monitoring.otlpHttp", "tcp"),  # the services' spans to Jaeger
    ("admin", "monitoring", "monitoring.jaeger", "tcp"),
    ("monitoring", "monitoring", "monitoring.jaegerMetrics", "tcp"),
    # ci: nginx (forge and Hydra for operators, the binary cache for operators and every host of
    # the environment, its substituter) and Forgejo's git SSH. Hydra and Harmonia are loopback.
    ("admin", "ci", "ci.https", "tcp"),
    ("*", "ci", "ci.https", "tcp"),
    ("admin", "ci", "ci.gitSsh", "tcp"),
]

# What a service's `needs` entry in graph.nix opens from the k3s hosts (the pods leave their
# node SNATed to its address). smtp goes out to the relay: nothing to open on our hosts.
NEEDS = {
    "postgres": [("postgres", "postgres.postgres", "tcp")],
    "pulsar": [("pulsar", "pulsar.brokerTls", "tcp"), ("pulsar", "pulsar.webTls", "tcp")],
    "smtp": [],
}

# Prometheus jobs per role: job name → (role, port path, scheme).
ROLE_JOBS = {
    "pulsar-broker": ("pulsar", "pulsar.webTls", "https"),
    "pulsar-bookie": ("pulsar", "pulsar.bookieHttp", "http"),
    "zookeeper": ("pulsar", "pulsar.zookeeperMetrics", "http"),
    "patroni": ("postgres", "postgres.patroni", "http"),
    "postgres": ("postgres", "postgres.exporter", "http"),
    "alertmanager": ("monitoring", "monitoring.alertmanager", "http"),
    "jaeger": ("monitoring", "monitoring.jaegerMetrics", "http"),
}

ICMP_TYPES = {"echo-request", "destination-unreachable", "time-exceeded", "parameter-problem"}
ICMPV6_TYPES = {
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "nd-router-advert",
    "echo-request",
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "parameter-problem",
}

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def load(directory: Path, name: str):
    return json.loads((directory / f"{name}.json").read_text())


def port_of(ports: dict, path: str) -> int:
    value = ports
    for key in path.split("."):
        value = value[key]
    return value


def net(text: str) -> Net:
    return ipaddress.ip_network(text, strict=False)


def collapse(nets) -> tuple[Net, ...]:
    nets = list(nets)
    v4 = ipaddress.collapse_addresses(n for n in nets if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in nets if n.version == 6)
    return tuple(sorted(v4)) + tuple(sorted(v6))


def hosts_of(fleet: dict) -> dict[str, dict]:
    return {
        h["name"]: h | {"env": env}
        for env, spec in fleet["environments"].items()
        for h in spec["hosts"]
    }


def plays(host: dict, role: str) -> bool:
    if role == "*":
        return True
    if role == "k3s":
        return "k3s-server" in host["roles"] or "k3s-agent" in host["roles"]
    return role in host["roles"]


def client_networks(client: str, env: str, fleet: dict, hosts: dict, pods: str) -> list[str]:
    if client == "admin":
        return fleet["environments"][env]["adminNetworks"]
    if client == "anywhere":
        return ANYWHERE
    if client == "pods":
        # Pods that reach their own node arrive with their pod address (k3s' --cluster-cidr).
        return [pods]
    return [h["address"] for h in hosts.values() if h["env"] == env and plays(h, client)]


def expected_allowances(fleet: dict, graph: dict, ports: dict, pods: str) -> dict[str, set]:
    """host → {(proto, port, network)}, from EDGES and graph.nix's needs."""
    hosts = hosts_of(fleet)
    edges = list(EDGES)
    for need in sorted({n for needs in graph["needs"].values() for n in needs}):
        if need not in NEEDS:
            raise SystemExit(f"graph.nix: unknown need {need!r} (hosts.py knows {sorted(NEEDS)})")
        edges += [("k3s", role, port, proto) for role, port, proto in NEEDS[need]]
    out: dict[str, set] = {name: set() for name in hosts}
    for name, host in hosts.items():
        for client, server, port, proto in edges:
            if plays(host, server):
                for source in client_networks(client, host["env"], fleet, hosts, pods):
                    out[name].add((proto, port_of(ports, port), net(source)))
    return out


def data_allowances(rules: dict) -> dict[str, set]:
    return {
        host: {(r["proto"], r["port"], net(a)) for r in host_rules for a in r["from"]}
        for host, host_rules in rules.items()
    }


def by_port(allowances: set) -> dict[tuple[str, int], tuple[Net, ...]]:
    grouped: dict[tuple[str, int], list] = {}
    for proto, port, network in allowances:
        grouped.setdefault((proto, port), []).append(network)
    return {key: collapse(nets) for key, nets in grouped.items()}


def set_elements(elements) -> list[Net]:
    nets: list[Net] = []
    for element in elements or []:
        if isinstance(element, str):
            nets.append(net(element))
        elif "prefix" in element:
            nets.append(net(f"{element['prefix']['addr']}/{element['prefix']['len']}"))
        elif "range" in element:
            first, last = (ipaddress.ip_address(a) for a in element["range"])
            nets.extend(ipaddress.summarize_address_range(first, last))
        else:
            raise ValueError(f"unknown set element {element!r}")
    return nets


def loaded_ruleset(listing: dict, host: str, problems: list[str]) -> tuple[set, dict]:
    """Reads `nft -j list ruleset`: the allowances, and what else the table holds."""
    objects = listing["nftables"]
    tables = [o["table"] for o in objects if "table" in o]
    if [(t["family"], t["name"]) for t in tables] != [("inet", "comptoir_filter")]:
        problems.append(f"{host}: loaded tables are {tables}, expected inet comptoir_filter only")
    sets = {o["set"]["name"]: set_elements(o["set"].get("elem")) for o in objects if "set" in o}
    chains = {o["chain"]["name"]: o["chain"] for o in objects if "chain" in o}
    allowances: set = set()
    seen = {"lo": 0, "established": 0, "invalid": 0, "icmp": 0, "icmpv6": 0}
    for obj in objects:
        if "rule" not in obj:
            continue
        rule = obj["rule"]
        if rule["chain"] != "input":
            problems.append(f"{host}: unexpected rule in chain {rule['chain']}: {rule['expr']}")
            continue
        matches = [e["match"] for e in rule["expr"] if "match" in e]
        verdicts = [k for e in rule["expr"] for k in e if k in ("accept", "drop", "reject", "jump", "goto")]
        others = [e for e in rule["expr"] if "match" not in e and not set(e) & {"accept", "drop", "counter"}]
        if others:
            problems.append(f"{host}: unexpected statement in input: {rule['expr']}")
            continue
        if not matches and not verdicts:
            continue  # the final counter
        left = [json.dumps(m["left"], sort_keys=True) for m in matches]
        if left == ['{"meta": {"key": "iifname"}}'] and matches[0]["right"] == "lo" and verdicts == ["accept"]:
            seen["lo"] += 1
        elif left == ['{"ct": {"key": "state"}}'] and verdicts == ["accept"] and sorted(
            matches[0]["right"]
        ) == ["established", "related"]:
            seen["established"] += 1
        elif left == ['{"ct": {"key": "state"}}'] and verdicts == ["drop"] and matches[0]["right"] == "invalid":
            seen["invalid"] += 1
        elif len(matches) == 1 and matches[0]["left"].get("payload", {}).get("field") == "type" and verdicts == ["accept"]:
            protocol = matches[0]["left"]["payload"]["protocol"]
            types = set(matches[0]["right"]["set"])
            wanted = {"icmp": ICMP_TYPES, "icmpv6": ICMPV6_TYPES}.get(protocol)
            if types != wanted:
                problems.append(f"{host}: {protocol} types {sorted(types)}, expected {sorted(wanted or [])}")
            seen[protocol] = seen.get(protocol, 0) + 1
        elif verdicts == ["accept"]:
            proto, port, sources = None, None, ANYWHERE
            for m in matches:
                payload = m["left"].get("payload", {})
                if m["op"] != "==":
                    proto = None
                    break
                if payload.get("field") == "dport" and payload.get("protocol") in ("tcp", "udp"):
                    proto, port = payload["protocol"], m["right"]
                elif payload == {"protocol": "ip", "field": "saddr"} and str(m["right"]).startswith("@"):
                    sources = sets.get(m["right"][1:], [])
                else:
                    proto = None
                    break
            if proto is None or not isinstance(port, int):
                problems.append(f"{host}: input rule not understood (so not allowed): {rule['expr']}")
                continue
            allowances.update((proto, port, net(str(s))) for s in sources)
        else:
            problems.append(f"{host}: input rule not understood (so not allowed): {rule['expr']}")
    for what, count in seen.items():
        if count != 1:
            problems.append(f"{host}: {count} '{what}' rules in input, expected 1")
    return allowances, chains


def compare(host: str, left_name: str, left: set, right_name: str, right: set, problems: list[str]) -> None:
    """Per (proto, port), the networks of two sides (each collapsed) must be the same."""
    a, b = by_port(left), by_port(right)
    for key in sorted(set(a) | set(b)):
        if a.get(key, ()) != b.get(key, ()):
            proto, port = key
            only_a = sorted(map(str, set(a.get(key, ())) - set(b.get(key, ()))))
            only_b = sorted(map(str, set(b.get(key, ())) - set(a.get(key, ()))))
            problems.append(
                f"{host}: {proto}/{port}: {left_name} allows {[str(n) for n in a.get(key, ())]}, "
                f"{right_name} {[str(n) for n in b.get(key, ())]}"
                + (f" (only in {left_name}: {only_a})" if only_a else "")
                + (f" (only in {right_name}: {only_b})" if only_b else "")
            )


def check_firewalls(ev: Path, out: Path, problems: list[str]) -> int:
    fleet, graph, ports = load(ev, "fleet"), load(ev, "graph"), load(ev, "ports")
    rules, texts = load(ev, "firewallRules"), load(ev, "firewall")
    hosts = hosts_of(fleet)
    if set(rules) != set(hosts) or set(texts) != set(hosts):
        problems.append(f"firewall: hosts {sorted(set(rules) ^ set(hosts) | set(texts) ^ set(hosts))} missing or unknown")
    pods = load(ev, "workloads")["cluster"]["podCidr"]
    expected = expected_allowances(fleet, graph, ports, pods)
    data = data_allowances(rules)
    for name, host in sorted(hosts.items()):
        for rule in rules.get(name, []):
            if not rule.get("why") or not rule.get("from"):
                problems.append(f"{name}: rule {rule} has no `why` or no sources")
        compare(name, "expected (hosts.py)", expected[name], "firewallRules", data.get(name, set()), problems)
        listing_file = out / "nft" / f"{name}.json"
        if not listing_file.exists():
            problems.append(f"{name}: no loaded ruleset ({listing_file})")
            continue
        loaded, chains = loaded_ruleset(json.loads(listing_file.read_text()), name, problems)
        compare(name, "firewallRules", data.get(name, set()), "loaded nftables", loaded, problems)
        k3s = plays(host, "k3s")
        policies = {n: (c.get("hook"), c.get("policy")) for n, c in chains.items()}
        wanted = {"input": ("input", "drop"), "output": ("output", "accept")}
        if not k3s:
            wanted["forward"] = ("forward", "drop")
        if policies != wanted:
            problems.append(f"{name}: chains {policies}, expected {wanted}")
    return len(hosts)


def static_targets(job: dict) -> set[tuple[str, str]]:
    return {
        (target, group.get("labels", {}).get("host", ""))
        for group in job.get("static_configs", [])
        for target in group["targets"]
    }


def allowed_from(rules: dict, host: str, port: int, source: str) -> bool:
    address = ipaddress.ip_address(source)
    return any(
        r["proto"] == "tcp" and r["port"] == port and any(address in net(a) for a in r["from"])
        for r in rules.get(host, [])
    )


def check_prometheus(ev: Path, problems: list[str]) -> int:
    fleet, ports = load(ev, "fleet"), load(ev, "ports")
    configs, rules = load(ev, "prometheus"), load(ev, "firewallRules")
    secrets = load(ev, "prometheusSecrets")
    namespace = load(ev, "workloads")["cluster"]["namespace"]
    hosts = hosts_of(fleet)
    by_address = {h["address"]: name for name, h in hosts.items()}
    if set(configs) != set(fleet["environments"]):
        problems.append(f"prometheus: environments {sorted(configs)}, expected {sorted(fleet['environments'])}")
    for path in secrets.values():
        if not path.startswith(SECRETS_PREFIX):
            problems.append(f"prometheusSecrets: {path} is not under {SECRETS_PREFIX} (sops-nix)")
    for env, config in sorted(configs.items()):
        members = {n: h for n, h in hosts.items() if h["env"] == env}
        monitors = [h["address"] for h in members.values() if "monitoring" in h["roles"]]
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        if len(jobs) != len(config["scrape_configs"]):
            problems.append(f"prometheus.{env}: duplicate job names")
        if config.get("global", {}).get("external_labels", {}).get("env") != env:
            problems.append(f"prometheus.{env}: external label env is not {env!r}")

        def expect_job(job_name: str, role: str, port: int, scheme: str) -> None:
            job = jobs.get(job_name)
            want = {(f"{h['address']}:{port}", n) for n, h in members.items() if plays(h, role)}
            if job is None:
                if want:
                    problems.append(f"prometheus.{env}: no job {job_name}")
                return
            got = static_targets(job)
            for target, name in sorted(want - got):
                problems.append(f"prometheus.{env}: {name} ({target}) is not a target of {job_name}")
            for target, name in sorted(got - want):
                problems.append(f"prometheus.{env}: {job_name} has an unexpected target {target} (host={name!r})")
            if job.get("scheme", "http") != scheme:
                problems.append(f"prometheus.{env}: {job_name} scheme {job.get('scheme', 'http')}, expected {scheme}")

        expect_job("node", "*", ports["nodeExporter"], "http")
        for job_name, (role, port, scheme) in ROLE_JOBS.items():
            expect_job(job_name, role, port_of(ports, port), scheme)
        broker = jobs.get("pulsar-broker", {})
        if broker and broker.get("tls_config", {}).get("ca_file") != secrets["pulsarCa"]:
            problems.append(f"prometheus.{env}: pulsar-broker does not verify with the Pulsar CA")

        alertmanagers = {
            t for am in config.get("alerting", {}).get("alertmanagers", []) for g in am["static_configs"] for t in g["targets"]
        }
        wanted_am = {f"{a}:{ports['monitoring']['alertmanager']}" for a in monitors}
        if alertmanagers != wanted_am:
            problems.append(f"prometheus.{env}: alertmanagers {sorted(alertmanagers)}, expected {sorted(wanted_am)}")

        # The services, through the Kubernetes API of one of the environment's k3s servers.
        servers = [h["address"] for h in members.values() if "k3s-server" in h["roles"]]
        services = jobs.get("comptoir-services")
        api_targets: set[str] = set()
        if servers and services is None:
            problems.append(f"prometheus.{env}: no comptoir-services job although the environment runs k3s")
        if services is not None:
            sds = services.get("kubernetes_sd_configs", [])
            if len(sds) != 1 or sds[0].get("role") != "pod":
                problems.append(f"prometheus.{env}: comptoir-services needs one kubernetes_sd_config with role pod")
            if any(sd.get("namespaces", {}).get("names") != [namespace] for sd in sds):
                problems.append(f"prometheus.{env}: comptoir-services must discover the namespace {namespace!r} only")
            for sd in sds:
                api = sd.get("api_server", "")
                hostport = api.removeprefix("https://")
                api_targets.add(hostport)
                if not api.startswith("https://") or hostport not in {f"{s}:{ports['k3s']['api']}" for s in servers}:
                    problems.append(f"prometheus.{env}: api_server {api!r} is not https on a k3s server of {env}")
                for where in (sd, services):
                    if where.get("authorization", {}).get("credentials_file") != secrets["k3sToken"]:
                        problems.append(f"prometheus.{env}: comptoir-services without the k3s token file")
                    if where.get("tls_config", {}).get("ca_file") != secrets["k3sCa"]:
                        problems.append(f"prometheus.{env}: comptoir-services without the k3s CA")
            relabels = services.get("relabel_configs", [])
            if not any(
                r.get("action") == "keep"
                and r.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"]
                and r.get("regex") == "ops"
                for r in relabels
            ):
                problems.append(f"prometheus.{env}: comptoir-services scrapes more than the pods' `ops` ports")

        # Every target is a host of this environment, and its firewall lets every
        # monitoring host of the environment in on that port.
        reached = {t for job in jobs.values() for t, _ in static_targets(job)} | alertmanagers | api_targets
        for target in sorted(reached):
            address, _, port = target.rpartition(":")
            if address == "localhost":
                continue
            name = by_address.get(address)
            if name is None or hosts[name]["env"] != env:
                problems.append(f"prometheus.{env}: target {target} is not a host of {env}")
                continue
            for monitor in monitors:
                if monitor != address and not allowed_from(rules, name, int(port), monitor):
                    problems.append(f"prometheus.{env}: {name}'s firewall does not let {monitor} reach {target}")
    return len(configs)


CREDENTIALS = "/run/credentials/alertmanager.service/"


def check_alertmanager(ev: Path, problems: list[str]) -> None:
    """Every environment's alerts reach its operators by e-mail through its own relay, with
    Alertmanager's own account and TLS as the relay requires; the heartbeat never mails."""
    fleet, configs = load(ev, "fleet"), load(ev, "alertmanager")
    secrets = load(ev, "alertmanagerSecrets")
    if set(configs) != set(fleet["environments"]):
        problems.append(f"alertmanager: environments {sorted(configs)}, expected {sorted(fleet['environments'])}")
    for name, path in secrets.items():
        if not path.startswith(CREDENTIALS):
            problems.append(f"alertmanagerSecrets.{name}: {path} is not a credential of alertmanager.service")
    for env, config in sorted(configs.items()):
        spec = fleet["environments"][env]
        relay, alerts = spec["smtpRelay"], spec["alerts"]
        receivers = {r["name"]: r for r in config["receivers"]}
        top = config["route"]["receiver"]
        mails = receivers.get(top, {}).get("email_configs", [])
        if len(mails) != 1:
            problems.append(f"alertmanager.{env}: the default receiver {top!r} has {len(mails)} e-mail configurations, expected 1")
            continue
        mail = mails[0]
        expected = {
            "to": ", ".join(alerts["to"]),
            "from": alerts["from"],
            "smarthost": f"{relay['host']}:{relay['port']}",
            "auth_username": alerts["username"],
            "auth_password_file": secrets["smtpPassword"],
        }
        for key, value in expected.items():
            if mail.get(key) != value:
                problems.append(f"alertmanager.{env}: {key} is {mail.get(key)!r}, expected {value!r}")
        if alerts["username"] == relay["username"]:
            problems.append(f"alertmanager.{env}: alerts.username is notifications' relay account")
        if not alerts["to"]:
            problems.append(f"alertmanager.{env}: alerts.to names nobody")
        if relay["tls"] != "none" and mail.get("tls_config", {}).get("server_name") != relay["host"]:
            problems.append(f"alertmanager.{env}: the relay's certificate is not verified for {relay['host']}")
        if relay["tls"] == "starttls" and mail.get("require_tls") is not True:
            problems.append(f"alertmanager.{env}: the relay requires STARTTLS but require_tls is not set")
        ca = mail.get("tls_config", {}).get("ca_file")
        if (relay["ca"] is None) != (ca is None) or (ca is not None and ca != secrets["relayCa"]):
            problems.append(f"alertmanager.{env}: ca_file {ca!r} does not follow smtpRelay.ca {relay['ca']!r}")
        watchdog = [r for r in config["route"].get("routes", []) if 'alertname="Watchdog"' in r.get("matchers", [])]
        if len(watchdog) != 1 or receivers.get(watchdog[0]["receiver"], {}).get("email_configs"):
            problems.append(f"alertmanager.{env}: Watchdog must have one route, to a receiver that mails nobody")


def check_jaeger(ev: Path, problems: list[str]) -> None:
    """Every environment with a monitoring host runs one Jaeger there: OTLP/HTTP and the web UI
    on the host's address (the firewall admits them, EDGES), every other listener on loopback,
    its traces kept for a bounded time under its state directory, and every service of the
    environment exporting to exactly that receiver."""
    fleet, ports = load(ev, "fleet"), load(ev, "ports")["monitoring"]
    configs, endpoints, state = load(ev, "jaeger"), load(ev, "otlpEndpoint"), load(ev, "jaegerStateDir")
    settings, cluster = load(ev, "settings"), load(ev, "workloads")["cluster"]
    # The pods reach it by the in-cluster name of a headless Service whose endpoint is the
    # monitoring host (nixos/lib/manifests.nix; dev/fleet/manifests.py checks that Service).
    wanted = f"http://jaeger.{cluster['namespace']}.svc.{cluster['domain']}:{ports['otlpHttp']}/v1/traces"
    for env, spec in sorted(fleet["environments"].items()):
        monitors = [h["address"] for h in spec["hosts"] if "monitoring" in h["roles"]]
        config, endpoint = configs.get(env), endpoints.get(env)
        if not monitors:
            if config is not None or endpoint is not None:
                problems.append(f"jaeger.{env}: no monitoring host, yet a Jaeger or an OTLP endpoint")
            continue
        if len(monitors) != 1 or config is None:
            problems.append(f"jaeger.{env}: expected one Jaeger on one monitoring host, hosts {monitors}")
            continue
        address = monitors[0]
        if endpoint != wanted:
            problems.append(f"otlpEndpoint.{env} is {endpoint!r}, expected {wanted!r}")
        protocols = config["receivers"]["otlp"]["protocols"]
        if protocols != {"http": {"endpoint": f"{address}:{ports['otlpHttp']}"}}:
            problems.append(f"jaeger.{env}: the OTLP receiver is {protocols}, expected HTTP on {address}:{ports['otlpHttp']} only")
        extensions = config["extensions"]
        listeners = {
            "jaeger_query.http": (extensions["jaeger_query"]["http"]["endpoint"], f"{address}:{ports['jaeger']}"),
            "jaeger_query.grpc": (extensions["jaeger_query"]["grpc"]["endpoint"], f"127.0.0.1:{ports['jaegerGrpc']}"),
            "healthcheckv2.http": (extensions["healthcheckv2"]["http"]["endpoint"], f"127.0.0.1:{ports['jaegerHealth']}"),
        }
        for name, (got, expected) in listeners.items():
            if got != expected:
                problems.append(f"jaeger.{env}: {name} listens on {got}, expected {expected}")
        # Its own metrics on the port Prometheus's `jaeger` job scrapes (ROLE_JOBS).
        metrics = config["service"]["telemetry"]["metrics"]
        exporters = [r.get("pull", {}).get("exporter", {}).get("prometheus") for r in metrics.get("readers", [])]
        wanted_metrics = [{"host": address, "port": ports["jaegerMetrics"]}]
        if metrics.get("level") in (None, "none") or exporters != wanted_metrics:
            problems.append(f"jaeger.{env}: its metrics are {metrics}, expected a Prometheus reader on {address}:{ports['jaegerMetrics']}")
        backends = extensions["jaeger_storage"]["backends"]
        for name, backend in backends.items():
            badger = backend.get("badger")
            if badger is None or badger.get("ephemeral") is not False:
                problems.append(f"jaeger.{env}: storage {name} is not Badger on disk")
                continue
            for kind, directory in badger["directories"].items():
                if not directory.startswith(state + "/"):
                    problems.append(f"jaeger.{env}: Badger's {kind} in {directory}, outside {state}")
            if not badger.get("ttl", {}).get("spans"):
                problems.append(f"jaeger.{env}: spans kept forever (no ttl.spans)")
        for service, variables in sorted(settings[env].items()):
            key = f"COMPTOIR_{service.upper().replace('-', '_')}__TELEMETRY__OTLP_ENDPOINT"
            if variables.get(key) != wanted:
                problems.append(f"settings.{env}.{service}: {key} is {variables.get(key)!r}, expected {wanted!r}")


def prepare(ev: Path, out: Path) -> None:
    (out / "nft").mkdir(parents=True, exist_ok=True)
    for host, text in load(ev, "firewall").items():
        (out / "nft" / f"{host}.nft").write_text(text)
    # Prometheus configurations as the monitoring module writes them, with the secret files
    # under OUT/secrets instead of /run/secrets so that promtool finds them.
    secrets_root = out / "secrets"
    for path in load(ev, "prometheusSecrets").values():
        local = secrets_root / path.removeprefix(SECRETS_PREFIX)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("placeholder: the real file comes from sops-nix on the host\n")
    alertmanager = out / "alertmanager"
    alertmanager.mkdir(parents=True, exist_ok=True)
    for env, config in load(ev, "alertmanager").items():
        (alertmanager / f"{env}.yml").write_text(json.dumps(config, indent=2))
    prom = out / "prometheus"
    prom.mkdir(parents=True, exist_ok=True)
    rule_files = [str(RULES_DIR / name) for name in load(ev, "ruleFiles")]
    for env, config in load(ev, "prometheus").items():
        text = json.dumps(config | {"rule_files": rule_files}, indent=2)
        (prom / f"{env}.yml").write_text(text.replace(SECRETS_PREFIX, f"{secrets_root}/"))


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] not in ("prepare", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    ev, out = Path(argv[2]), Path(argv[3])
    if argv[1] == "prepare":
        prepare(ev, out)
        return 0
    problems: list[str] = []
    host_count = check_firewalls(ev, out, problems)
    env_count = check_prometheus(ev, problems)
    check_alertmanager(ev, problems)
    check_jaeger(ev, problems)
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        print(f"hosts.py: {len(problems)} broken invariant(s)", file=sys.stderr)
        return 1
    print(f"hosts.py: {host_count} firewalls = the edges of graph.nix and the roles; {env_count} Prometheus configurations cover every host and role", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
