"""The application hosts: what k3s does on the inventory's k3s servers and agents, emulated, since
k3s cannot run on this machine (docs/adr/0022-lab-service-addresses.md). Each host keeps the
nftables ruleset nixos/lib/firewall.nix generates for it; the rest is what k3s would add:

  pods       one replica of every service of nix/services.nix per host, each in a network
             namespace of its own attached to the bridge `cni0` of its host's namespace, at an
             address of the host's /24 of cluster.podCidr (nixos/workloads.nix), default route
             via the bridge. The host forwards, routes every other app host's /24 via that
             host's address (flannel's host-gw backend) and masquerades pod traffic leaving the
             pod network (table ip comptoir_lab_flannel): PostgreSQL, the brokers and the mail
             relay see the app host's address, which their firewalls admit.
  services   one virtual address per service from cluster.serviceCidr, DNATed in every app host
             (prerouting for the pods, output for the host) to the ready replicas, one picked at
             random per connection (kube-proxy's nftables mode: table ip comptoir_lab_proxy).
             The endpoints controller (`python3 -m labkit.roles.apps controller`, in the hub's
             namespace) probes every replica's /readyz from its own host each second and
             rewrites that table atomically on every host when readiness changes.
  names      /etc/netns/<pod>/hosts, which `ip netns exec` mounts over /etc/hosts: each
             <service>.comptoir.svc.cluster.local is its virtual address, and
             pulsar.comptoir.svc.cluster.local every broker (what the cluster DNS answers).
  ingress    port 80 of every app host → the gateway's replicas (Traefik's role; plain HTTP in
             the lab, which has no certificate for the shop).
  processes  the real binaries, copied into a release under the lab's directory, run as the
             unprivileged account `comptoir` with the environment of settings.lab.<service>
             (nixos/lib/settings.nix) as generated: only the paths under cluster.secretsDir and
             cluster.caDir are moved into the lab's directory, no setting is substituted and no
             pod has a sidecar. A replica starts once `--check-config` accepts it.
  secrets    each service's Secret (workloads.nix: secrets) as a directory of root's files
             readable by the account's group, and the CA ConfigMap (cluster.caFiles): what the
             postgres and pulsar roles provide, the platform CA and the certificates of the
             services that serve HTTPS (`tls`: identity's tls.crt/tls.key, for its in-cluster
             name) and the relay account's smtp-password (labkit/credentials.py, shared with
             the smtp role), the rest generated once (`_generated`).

Besides up/down/status and the scrape job, the scenarios use this module's operations on the
running lab: `join` and `leave` (a host beyond the inventory), `set_drained`, `replace` (a host's
replicas onto another release), `make_release`, and `Load` (requests from the operators' station).
"""

from __future__ import annotations

import base64
import concurrent.futures
import ctypes
import functools
import grp
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from .. import credentials, net, spec
from ..proc import ensure_system_account, kill_namespace, log, namespace_pids, ns_run, pid_of, rss_kib, run, spawn, stop

# A month's pseudonymisation key among a Secret's files (analytics, workloads.nix).
MONTHLY_KEY = re.compile(r"\d{4}-\d{2}\.key")
# The services' unprivileged account (the pods run as a numeric non-root user, manifests.nix).
ACCOUNT = "comptoir"
# flannel's bridge, and the tables that stand for flannel's and kube-proxy's: each its own, so
# the host's `inet comptoir_filter` stays exactly as generated.
BRIDGE = "cni0"
FLANNEL_TABLE = "comptoir_lab_flannel"
PROXY_TABLE = "comptoir_lab_proxy"
# kube-proxy's mark for a connection to masquerade: the ingress' connections from outside.
MASQUERADE_MARK = 0x4000
# The manifests probe readiness every 5 s with a 2 s timeout and take a pod out after 2
# failures; the lab probes every second (what the scenarios measure is bounded by it), with
# the same timeout (the services give each readiness check 2 s) and threshold.
PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 2.0
FAILURE_THRESHOLD = 2
# Each node's share of the pod network (flannel's default), where .1 is its bridge and the
# replicas take .10 on, in service order. Virtual addresses start at .100 of the service range:
# k3s keeps .1 for the API and .10 for its DNS.
NODE_PREFIX = 24
FIRST_POD = 10
FIRST_VIP = 100
# A replica gets this long to become ready (the first start migrates its database).
READY_TIMEOUT = 240.0


# --- what the generators say -------------------------------------------------------------------


@functools.cache
def cluster() -> dict:
    """The data the pods are made of, from the same sources as the k3s manifests."""
    return spec.nix_eval(
        f"""
        let lib = import ./nixos/lib {{}}; workloads = import ./nixos/workloads.nix; in {{
          inherit (workloads) cluster;
          secrets = builtins.mapAttrs (_: w: w.secrets) workloads.services;
          tls = builtins.mapAttrs (_: w: w.tls or false) workloads.services;
          inherit (lib) services ports;
          public = lib.graph.public;
          settings = lib.settings.{spec.ENV};
          brokers = map (h: h.address) (lib.inventory.hostsOf "{spec.ENV}" "pulsar");
          monitors = map (h: h.address) (lib.inventory.hostsOf "{spec.ENV}" "monitoring");
          scrape_job = (builtins.head (builtins.filter (j: j ? kubernetes_sd_configs)
            lib.prometheus.{spec.ENV}.scrape_configs)).job_name;
        }}
        """
    )


def services() -> list[str]:
    return sorted(cluster()["services"])


def k3s_hosts(lab: spec.Lab) -> list[spec.Host]:
    return [h for h in lab.hosts if h.has("k3s-server") or h.has("k3s-agent")]


def dns_name(name: str) -> str:
    c = cluster()["cluster"]
    return f"{name}.{c['namespace']}.svc.{c['domain']}"


def pod_subnet(address: str) -> ipaddress.IPv4Network:
    """A host's /24 of the pod network, from its address's last octet: stable when hosts come
    and go (fleet.nix derives such ids from addresses, never from positions in the list)."""
    cidr = ipaddress.ip_network(cluster()["cluster"]["podCidr"])
    index = ipaddress.ip_address(address).packed[-1]
    return list(cidr.subnets(new_prefix=NODE_PREFIX))[index]


def vip(service: str) -> str:
    base = ipaddress.ip_network(cluster()["cluster"]["serviceCidr"]).network_address
    return str(base + FIRST_VIP + services().index(service))


def service_ports(service: str) -> list[int]:
    """The ports of the service's virtual address: its HTTP port, its HTTPS one when it serves
    HTTPS (workloads.nix: tls, on ports.service.https, as its k3s Service), and the ops port."""
    ports = [cluster()["services"][service]["port"], ops_port()]
    return ports + ([cluster()["ports"]["service"]["https"]] if cluster()["tls"][service] else [])


def ops_port() -> int:
    return cluster()["ports"]["service"]["ops"]


def public_service() -> str:
    (public,) = cluster()["public"]
    return public


@dataclass(frozen=True)
class Replica:
    """One service's pod on one host."""

    service: str
    host: str
    host_netns: str
    address: str

    @property
    def id(self) -> str:
        return f"{self.service}@{self.host}"

    @property
    def netns(self) -> str:
        return spec.netns_name(f"{self.host}-{self.service}")

    @property
    def veth(self) -> str:
        return f"v-{self.service}"[:15]

    @property
    def dir(self) -> Path:
        return spec.lab_dir() / "hosts" / self.host

    @property
    def pid_path(self) -> Path:
        return self.dir / "run" / f"{self.service}.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / "log" / f"{self.service}.log"


def replicas_of(host: spec.Host) -> list[Replica]:
    subnet = pod_subnet(host.address)
    return [Replica(s, host.name, host.netns, str(subnet[FIRST_POD + i])) for i, s in enumerate(services())]


# --- connections made inside the lab, from this process ----------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def ns_socket(ns: str) -> socket.socket:
    """A TCP socket of namespace `ns`. A socket belongs to the namespace it was created in, so
    the calling thread enters `ns` just for the call: what connects through it is a client
    inside the lab (never this machine's namespace), without a process per request."""
    with open(f"/run/netns/{ns}", "rb") as target, open("/proc/thread-self/ns/net", "rb") as home:
        _setns(target.fileno())
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(home.fileno())


def http_get(ns: str, address: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """One HTTP/1.1 GET from inside `ns` on a connection of its own: (status, body)."""
    return http_request(ns, address, port, "GET", path, timeout)


def http_request(ns: str, address: str, port: int, method: str, path: str, timeout: float,
                 payload: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request from inside `ns` on a connection of its own, with `payload` as its
    body when given: (status, body)."""
    request = f"{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n"
    request += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    if payload is not None:
        request += f"Content-Length: {len(payload)}\r\n"
    with ns_socket(ns) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(request.encode() + b"\r\n" + (payload or b""))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"not an HTTP answer: {head[:40]!r}") from None
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


def _answers_ready(ns: str, address: str, port: int) -> bool:
    try:
        return http_get(ns, address, port, "/readyz", PROBE_TIMEOUT)[0] == 200
    except OSError:
        return False


def ready(replica: Replica) -> bool:
    """Whether the replica's /readyz answers 200 to its own host (the kubelet's view)."""
    return _answers_ready(replica.host_netns, replica.address, ops_port())


def requests_served(replica: Replica, route: str | None = None) -> int:
    """The replica's http_requests_total of `route` (a route template), or of every route."""
    _, body = http_get(replica.host_netns, replica.address, ops_port(), "/metrics", 5.0)
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in body.decode().splitlines()
        if line.startswith("http_requests_total") and (route is None or f'route="{route}"' in line)
    )


# --- releases: the binaries a host runs ----------------------------------------------------------


def _releases_dir() -> Path:
    return spec.lab_dir() / "apps" / "releases"


def binary_name(service: str) -> str:
    return cluster()["services"][service]["binary"]


def release_path(release: str, service: str) -> Path:
    return _releases_dir() / release / binary_name(service)


def build_release() -> str:
    """The release of the workspace's debug build (built when a binary is missing), copied
    under the lab's directory: the service account cannot read root's cache, and a later
    `cargo build` must not change what runs. Named after its content."""
    debug = spec.target_dir() / "debug"
    binaries = {s: debug / binary_name(s) for s in services()}
    if any(not b.exists() for b in binaries.values()):
        crates = [arg for s in services() for arg in ("-p", cluster()["services"][s]["crate"])]
        log(f"apps: cargo build --locked --bins into {spec.target_dir()} (minutes when nothing is built)")
        built = subprocess.run(
            ["cargo", "build", "--locked", "--bins", *crates],
            cwd=spec.ROOT,
            env={**os.environ, "CARGO_TARGET_DIR": str(spec.target_dir())},
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise SystemExit(f"lab: cargo build failed:\n{built.stderr[-3000:]}")
    digest = hashlib.sha256()
    for service, path in binaries.items():
        with open(path, "rb") as f:
            digest.update(service.encode() + hashlib.file_digest(f, "sha256").digest())
    name = f"build-{digest.hexdigest()[:12]}"
    make_release(name, binaries, copy=True)
    return name


def make_release(name: str, files: dict[str, Path], copy: bool = False) -> str:
    """Release `name` from one executable per service (hard links, or copies), made complete
    or not at all."""
    final = _releases_dir() / name
    if final.exists():
        return name
    staging = _releases_dir() / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for service, source in files.items():
        target = staging / binary_name(service)
        if copy:
            shutil.copy2(source, target)
        else:
            os.link(source, target)
        target.chmod(0o555)
    staging.rename(final)
    return name


def installed(host: spec.Host) -> str | None:
    try:
        return (host.dir / "release").read_text().strip()
    except OSError:
        return None


def _install(host: spec.Host, release: str) -> None:
    host.dir.mkdir(parents=True, exist_ok=True)
    (host.dir / "release").write_text(release + "\n")


def running_release(replica: Replica) -> str | None:
    """The release the replica's process was started from (its executable's directory)."""
    pid = pid_of(replica.pid_path)
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).parent.name if pid else None
    except OSError:
        return None


def _collect_releases(keep: set[str]) -> None:
    """Removes the releases no host runs or will run."""
    if not _releases_dir().is_dir():
        return
    for entry in _releases_dir().iterdir():
        if entry.name.lstrip(".").removesuffix(".partial") not in keep:
            shutil.rmtree(entry, ignore_errors=True)


# --- the account, the secrets and the environment -----------------------------------------------


def _secrets_dir() -> Path:
    return spec.lab_dir() / "secrets" / "apps"


def _ca_dir() -> Path:
    return _secrets_dir() / "ca"


def secret_file(service: str, name: str) -> Path:
    """A file of the service's Secret, where its pods read it."""
    return _secrets_dir() / service / name


def _provided(service: str) -> dict[str, Path]:
    """A service's secret files the postgres and pulsar roles provide, by the name its pod
    reads them under."""
    secrets = spec.lab_dir() / "secrets"
    return {
        "database-password": secrets / "postgres" / "db" / service,
        "pulsar-token": secrets / "pulsar" / "tokens" / f"{service}.jwt",
    }


def _provided_ca(kind: str) -> Path:
    """The CA certificate of a kind of cluster.caFiles: the postgres or the pulsar role's, or
    the platform CA (made on first use, credentials.py)."""
    if kind == credentials.PLATFORM:
        return credentials.platform_ca()
    return spec.lab_dir() / "secrets" / kind / "ca.crt"


def _generated(service: str, name: str) -> Path:
    """The secrets the postgres and pulsar roles do not provide, made once and kept with the
    lab's data (the data identity encrypted under its KEK must stay readable from one `up` to
    the next)."""
    if name in ("tls.crt", "tls.key"):
        # A service serving HTTPS (workloads.nix: tls): a certificate of the platform CA for
        # the name its callers use (the host of their https:// settings).
        cert, key = credentials.server_certificate(service, dns=(dns_name(service),))
        return cert if name == "tls.crt" else key
    if name == "smtp-password":
        # Its account on the relay, whose password the smtp role gives Mailpit.
        return credentials.smtp_password()
    base = _secrets_dir() / "generated"
    if not base.is_dir():
        base.mkdir(parents=True)
        base.chmod(0o700)
    if service == "identity" or name == "identity-token":
        # kek-<id>, blind-index, token-signing.pem, notifications-token: the development keys'
        # script, the same formats; notifications presents identity's notifications-token.
        keys = base / "identity"
        kek = cluster()["settings"]["identity"]["COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__ID"]
        if not (keys / "notifications-token").exists():
            run([str(spec.ROOT / "dev" / "identity-keys.sh"), str(keys), kek])
        return keys / ("notifications-token" if name == "identity-token" else name)
    if name == "admin-token" or MONTHLY_KEY.fullmatch(name):
        # An admin token, or a month's pseudonymisation key (analytics: 32 random bytes,
        # base64, as services/analytics/README.md says).
        path = base / service / name
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            secret = os.urandom(24).hex() if name == "admin-token" else base64.b64encode(os.urandom(32)).decode()
            path.write_text(secret + "\n")
            path.chmod(0o600)
        return path
    raise SystemExit(f"lab: apps has no source for {service}'s secret {name}: teach apps._generated")


def _place(source: Path, target: Path, mode: int) -> None:
    """Copies a secret where its pod reads it: root's, readable by the service account's group
    (the Secret volume's 0440 and fsGroup)."""
    if not source.is_file():
        raise SystemExit(f"lab: {source} is missing: the role that provides it must be up first")
    data = source.read_bytes()
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)
    os.chown(target, 0, grp.getgrnam(ACCOUNT).gr_gid)
    target.chmod(mode)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, grp.getgrnam(ACCOUNT).gr_gid)
    path.chmod(0o750)
    return path


def _provision_secrets() -> None:
    """Each service's Secret as a directory of its own, and the CA ConfigMap."""
    ca = _ca_dir()
    ca.mkdir(parents=True, exist_ok=True)
    ca.chmod(0o755)
    for kind, name in cluster()["cluster"]["caFiles"].items():
        _place(_provided_ca(kind), ca / name, 0o444)
    for service in services():
        files = cluster()["secrets"][service]
        if not files:
            continue
        target = _private_dir(_secrets_dir() / service)
        sources = _provided(service)
        for name in files:
            _place(sources[name] if name in sources else _generated(service, name), target / name, 0o440)


def environment(service: str) -> dict[str, str]:
    """The environment a replica of `service` runs with: settings.lab.<service> as generated,
    with the files of the pod's mounts moved into the lab's directory."""
    c = cluster()["cluster"]
    mounts = {c["secretsDir"]: _secrets_dir() / service, c["caDir"]: _ca_dir()}
    env = {}
    for key, value in cluster()["settings"][service].items():
        for mount, there in mounts.items():
            # A file under a mount, or the mount itself (analytics' pseudonym_keys_dir).
            if value == mount or value.startswith(mount + "/"):
                value = str(there) + value[len(mount) :]
        env[key] = value
    return env


# --- the network: bridges, pods, routes, names ---------------------------------------------------


def _check_brokers(host: spec.Host) -> None:
    """Each broker, from an app host, as the services' Pulsar client will see it: a TLS
    handshake verified against the CA they get and the host name of their pulsar.url. A
    certificate that does not name it fails every service at start (rustls: NotValidForName),
    which is said here once rather than as replicas that never become ready."""
    urls = {v for s in services() for k, v in environment(s).items() if k.endswith("__PULSAR__URL")}
    context = ssl.create_default_context(cafile=str(_ca_dir() / cluster()["cluster"]["caFiles"]["pulsar"]))
    for url in map(urllib.parse.urlsplit, urls):
        if url.scheme != "pulsar+ssl":
            continue
        for broker in cluster()["brokers"]:
            try:
                with ns_socket(host.netns) as raw:
                    raw.settimeout(10)
                    raw.connect((broker, url.port))
                    context.wrap_socket(raw, server_hostname=url.hostname).close()
            except ssl.SSLCertVerificationError as error:
                raise SystemExit(
                    f"lab: the broker at {broker}:{url.port} has a certificate the services refuse for "
                    f"{url.hostname}, the host of their pulsar.url ({error.verify_message}). settings.nix "
                    f"names the brokers by that name: their certificates must carry it besides their address."
                ) from None
            except OSError as error:
                raise SystemExit(f"lab: cannot reach the broker {broker}:{url.port} from {host.name}: {error}") from None


def _flannel_ruleset() -> str:
    pods = cluster()["cluster"]["podCidr"]
    return f"""table ip {FLANNEL_TABLE}
delete table ip {FLANNEL_TABLE}
table ip {FLANNEL_TABLE} {{
  # flannel's masquerade: pod traffic leaving the pod network leaves with the host's address.
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {pods} ip daddr != {pods} masquerade
  }}
}}
"""


def _host_network_up(host: spec.Host) -> None:
    """The host's side of the pod network (what flannel sets up on a node), once."""
    ns = host.netns
    if run(["ip", "-n", ns, "link", "show", BRIDGE], check=False).returncode == 0:
        return
    # Forwarding, and bridged frames through the host's netfilter hooks (br_netfilter, which
    # Kubernetes requires): the reply of a pod to a pod of the same bridge must meet the
    # conntrack entry of the DNAT that chose it, or the client gets it from the wrong address.
    ns_run(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"])
    subnet = pod_subnet(host.address)
    run(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "-n", ns, "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", BRIDGE])
    run(["ip", "-n", ns, "link", "set", BRIDGE, "up"])
    # The host's own connections to a virtual address must pass the routing lookup that comes
    # before the output hook's DNAT, and the host namespaces have no default route (net.py).
    run(["ip", "-n", ns, "route", "replace", cluster()["cluster"]["serviceCidr"], "dev", BRIDGE, "src", host.address])
    ns_run(ns, ["nft", "-f", "-"], input=_flannel_ruleset())


def _host_network_down(host: spec.Host) -> None:
    ns = host.netns
    for table in (PROXY_TABLE, FLANNEL_TABLE):
        ns_run(ns, ["nft", "delete", "table", "ip", table], check=False)
    # The bridge's address and the service range's route go with it.
    run(["ip", "-n", ns, "link", "delete", BRIDGE], check=False)
    ns_run(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=0"], check=False)


def _route_pods(stations: list[spec.Host], app_hosts: list[spec.Host]) -> None:
    """flannel's host-gw backend: on each station, every app host's /24 via that host. The
    monitoring hosts get the routes too: they scrape the pods directly, where Prometheus goes
    through the API server's pod proxy in k3s (nixos/lib/prometheus.nix), which reaches a pod
    from its node as these routes do."""
    for station in stations:
        for host in app_hosts:
            if host.name != station.name:
                run(["ip", "-n", station.netns, "route", "replace", str(pod_subnet(host.address)), "via", host.address])


def _unroute_pods(stations: list[spec.Host], host: spec.Host) -> None:
    for station in stations:
        if station.name != host.name:
            run(["ip", "-n", station.netns, "route", "del", str(pod_subnet(host.address))], check=False)


def _etc(replica: Replica) -> Path:
    """What `ip netns exec` mounts over /etc for the pod's processes."""
    return Path("/etc/netns") / replica.netns


def _hosts_file() -> str:
    lines = [
        "# Written by dev/labkit/roles/apps.py: what the cluster DNS (CoreDNS) answers in k3s.",
        "127.0.0.1 localhost",
        "::1 localhost ip6-localhost ip6-loopback",
    ]
    lines += [f"{vip(s)} {dns_name(s)}" for s in services()]
    # The `pulsar` headless Service: every broker (glibc returns every line of a name).
    lines += [f"{broker} {dns_name('pulsar')}" for broker in cluster()["brokers"]]
    # The `jaeger` headless Service: the monitoring host (the services' OTLP endpoint).
    lines += [f"{monitor} {dns_name('jaeger')}" for monitor in cluster()["monitors"]]
    return "\n".join(lines) + "\n"


def _pod_up(replica: Replica, existing: set[str]) -> None:
    etc = _etc(replica)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(_hosts_file())
    (etc / "hosts").chmod(0o644)
    if replica.netns in existing:
        return
    host_ns, pod_ns = replica.host_netns, replica.netns
    subnet = ipaddress.ip_network(f"{replica.address}/{NODE_PREFIX}", strict=False)
    run(["ip", "netns", "add", pod_ns])
    run(["ip", "-n", host_ns, "link", "add", replica.veth, "type", "veth", "peer", "name", "eth0", "netns", pod_ns])
    run(["ip", "-n", host_ns, "link", "set", replica.veth, "master", BRIDGE, "up"])
    run(["ip", "-n", pod_ns, "addr", "add", f"{replica.address}/{subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", pod_ns, "link", "set", "lo", "up"])
    run(["ip", "-n", pod_ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", pod_ns, "route", "add", "default", "via", str(subnet[1])])


def _pod_down(replica: Replica) -> None:
    stop(replica.pid_path)
    kill_namespace(replica.netns)
    # Its veth goes with it, and so does the bridge's end.
    run(["ip", "netns", "delete", replica.netns], check=False)
    shutil.rmtree(_etc(replica), ignore_errors=True)


# --- the replicas' processes ---------------------------------------------------------------------


class StartFailed(Exception):
    """A replica refused its settings, exited or did not become ready in time."""


# (release, service) pairs whose --check-config passed in this process.
_checked: set[tuple[str, str]] = set()


def _base_env() -> dict[str, str]:
    """What proc.spawn gives every process besides its own environment."""
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}


def check_config(replica: Replica, release: str) -> None:
    """The binary's own validation of the replica's environment (secret files read), as the
    service account in the pod's namespace, before anything is started from it."""
    if (release, replica.service) in _checked:
        return
    binary = release_path(release, replica.service)
    out = ns_run(replica.netns, [str(binary), "--check-config"], user=ACCOUNT, check=False,
                 env=_base_env() | environment(replica.service))
    if out.returncode != 0:
        raise StartFailed(
            f"{binary.name} --check-config (release {release}) refuses the lab's settings of "
            f"{replica.service} (exit {out.returncode}):\n{(out.stdout + out.stderr).strip()}"
        )
    _checked.add((release, replica.service))


def _tail(path: Path, lines: int = 4) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(replica: Replica, release: str) -> None:
    """Starts the replica from `release`, after --check-config."""
    check_config(replica, release)
    spawn(replica.netns, [str(release_path(release, replica.service))], replica.log_path, replica.pid_path,
          env=environment(replica.service), user=ACCOUNT, cwd=replica.dir)


def wait_ready(replica: Replica, timeout: float) -> None:
    """Until the replica answers /readyz with 200; StartFailed as soon as its process is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_of(replica.pid_path) is None:
            raise StartFailed(f"{replica.id} exited at start:\n{_tail(replica.log_path)}")
        if ready(replica):
            return
        time.sleep(0.2)
    raise StartFailed(f"{replica.id} not ready after {timeout:.0f} s:\n{_tail(replica.log_path)}")


# --- the endpoints controller -------------------------------------------------------------------


def _apps_dir() -> Path:
    return spec.lab_dir() / "apps"


def _state_path() -> Path:
    return _apps_dir() / "state.json"


def _endpoints_path() -> Path:
    return _apps_dir() / "endpoints.json"


def _controller_pid() -> Path:
    return _apps_dir() / "controller.pid"


def _write_json(path: Path, data: dict) -> None:
    """Replaces `path` atomically: the controller and the scenarios never read half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1))
    partial.rename(path)


def read_state() -> dict:
    """What the controller serves: the app hosts, their replicas, the drained ones."""
    try:
        return json.loads(_state_path().read_text())
    except OSError:
        return {"revision": 0, "hosts": [], "drained": []}


def _as_host(entry: dict) -> spec.Host:
    return spec.Host(entry["name"], entry["address"], entry["roles"])


def managed_hosts() -> list[spec.Host]:
    return [_as_host(e) for e in read_state()["hosts"]]


def _write_state(hosts: list[spec.Host], extra: set[str], drained: set[str]) -> int:
    """Writes the controller's input; returns its revision, which endpoints.json names once the
    controller has applied it on every host."""
    replicas = [r for h in hosts for r in replicas_of(h)]
    revision = read_state()["revision"] + 1
    _apps_dir().mkdir(parents=True, exist_ok=True)
    _write_json(
        _state_path(),
        {
            "revision": revision,
            "hosts": [{"name": h.name, "address": h.address, "roles": h.roles, "netns": h.netns,
                       "extra": h.name in extra} for h in hosts],
            "services": {s: {"vip": vip(s), "ports": service_ports(s)} for s in services()},
            "ingress": {"port": cluster()["ports"]["ingressHttp"], "service": public_service(),
                        "target": cluster()["services"][public_service()]["port"]},
            "ops_port": ops_port(),
            "replicas": [{"id": r.id, "service": r.service, "host_netns": r.host_netns, "address": r.address}
                         for r in replicas],
            "drained": sorted(drained & {r.id for r in replicas}),
        },
    )
    return revision


def _dnat(addresses: list[str], port: int | None = None) -> str:
    """kube-proxy's choice of an endpoint: one at random per new connection."""
    target = (lambda a: f"{a} . {port}") if port else (lambda a: a)
    items = ", ".join(f"{i} : {target(a)}" for i, a in enumerate(addresses))
    return f"dnat {'ip ' if port else ''}to numgen random mod {len(addresses)} map {{ {items} }}"


def render_proxy(state: dict, endpoints: dict[str, list[str]]) -> str:
    """The table every app host gets: each virtual address to its service's endpoints, the
    ingress port to the public service's; a virtual address without endpoints refuses at once
    (kube-proxy's reject) rather than leaving the connection to time out."""
    services_rules, empty = [], []
    for name, service in sorted(state["services"].items()):
        if endpoints[name]:
            ports = ", ".join(map(str, service["ports"]))
            services_rules.append(
                f'    ip daddr {service["vip"]} tcp dport {{ {ports} }} {_dnat(endpoints[name])} comment "{name}"'
            )
        else:
            empty.append(service["vip"])
    ingress = state["ingress"]
    gateways = endpoints[ingress["service"]]
    ingress_rule = (
        f"    meta l4proto tcp meta mark set meta mark | {MASQUERADE_MARK:#x} {_dnat(gateways, ingress['target'])}"
        if gateways
        else ""
    )
    reject = f"    ip daddr {{ {', '.join(empty)} }} meta l4proto tcp reject with tcp reset" if empty else ""
    return f"""table ip {PROXY_TABLE}
delete table ip {PROXY_TABLE}
table ip {PROXY_TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
    fib daddr type local tcp dport {ingress["port"]} jump ingress
  }}
  # -100 is dstnat, a name nft 1.0.6 accepts for prerouting only.
  chain output {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
  # A connection through the ingress may be sent to another host's pod, whose reply must come
  # back here to be translated: it leaves with this host's address (kube-proxy's masquerade).
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & {MASQUERADE_MARK:#x} == {MASQUERADE_MARK:#x} masquerade
  }}
  chain services {{
{chr(10).join(services_rules)}
  }}
  chain ingress {{
{ingress_rule}
  }}
  chain reject_forward {{
    type filter hook forward priority filter; policy accept;
{reject}
  }}
  chain reject_output {{
    type filter hook output priority filter; policy accept;
{reject}
  }}
}}
"""


def controller(state_path: Path, endpoints_path: Path) -> None:
    """The endpoints controller: every PROBE_INTERVAL, each replica's /readyz from its host;
    when the endpoints change, the proxy table rewritten on every app host (one nft
    transaction each); then endpoints.json, which says which revision of the state is in force
    everywhere. Runs until SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    failures: dict[str, int] = {}
    ready_ids: set[str] = set()
    applied: dict[str, str] = {}  # host namespace → the ruleset it has
    refusals: dict[str, str] = {}  # host namespace → nft's last error, said once
    published = {"revision": 0, "changed_at": time.monotonic(), "endpoints": {}}

    def say(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            tick = time.monotonic()
            state = json.loads(state_path.read_text())
            replicas = state["replicas"]
            answers = pool.map(lambda r: _answers_ready(r["host_netns"], r["address"], state["ops_port"]), replicas)
            for replica, ok in zip(replicas, answers):
                rid = replica["id"]
                failures[rid] = 0 if ok else failures.get(rid, 0) + 1
                if ok and rid not in ready_ids:
                    ready_ids.add(rid)
                    say(f"{rid} ready")
                elif not ok and rid in ready_ids and failures[rid] >= FAILURE_THRESHOLD:
                    ready_ids.discard(rid)
                    say(f"{rid} not ready")
            known = {r["id"] for r in replicas}
            ready_ids &= known
            failures = {k: v for k, v in failures.items() if k in known}
            serving = ready_ids - set(state["drained"])
            chosen = {
                name: [r for r in replicas if r["service"] == name and r["id"] in serving] for name in state["services"]
            }
            ruleset = render_proxy(state, {name: sorted(r["address"] for r in rs) for name, rs in chosen.items()})
            hosts = {h["netns"]: h["name"] for h in state["hosts"]}
            applied = {ns: text for ns, text in applied.items() if ns in hosts}
            for ns, name in hosts.items():
                if applied.get(ns) == ruleset:
                    continue
                out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset,
                                     capture_output=True, text=True, check=False)
                if out.returncode == 0:
                    applied[ns] = ruleset
                    refusals.pop(ns, None)
                    published["changed_at"] = time.monotonic()
                elif refusals.get(ns) != out.stderr:
                    refusals[ns] = out.stderr
                    say(f"{name}: nft refused the proxy table:\n{out.stderr.strip()}")
            # Published only once in force on every host: what the scenarios wait for.
            if all(applied.get(ns) == ruleset for ns in hosts):
                published["revision"] = state["revision"]
                published["endpoints"] = {name: sorted(r["id"] for r in rs) for name, rs in chosen.items()}
            # time.monotonic() is the machine's CLOCK_MONOTONIC: comparable across processes.
            _write_json(endpoints_path, published | {"ready": sorted(ready_ids)})
            time.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - tick)))


def _ensure_controller() -> None:
    if pid_of(_controller_pid()) is not None:
        return
    spawn(
        spec.hub_name(),
        [sys.executable, "-m", "labkit.roles.apps", "controller", str(_state_path()), str(_endpoints_path())],
        _apps_dir() / "controller.log",
        _controller_pid(),
        env={"PYTHONPATH": str(spec.ROOT / "dev"), "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=spec.ROOT,
    )


def endpoints() -> dict:
    try:
        return json.loads(_endpoints_path().read_text())
    except (OSError, ValueError):
        return {"revision": 0, "changed_at": 0.0, "ready": [], "endpoints": {}}


def in_maps(replica_id: str, current: dict | None = None) -> bool:
    """Whether the replica is an endpoint of its service on every app host."""
    current = current or endpoints()
    return replica_id in current["endpoints"].get(replica_id.split("@")[0], [])


def wait_endpoints(predicate, timeout: float, revision: int = 0, what: str = "the endpoints") -> dict:
    """Polls endpoints.json until it covers state `revision` and `predicate` holds of it."""
    deadline = time.monotonic() + timeout
    while True:
        current = endpoints()
        if current["revision"] >= revision and predicate(current):
            return current
        if pid_of(_controller_pid()) is None:
            raise SystemExit(f"lab: the endpoints controller is not running (see {_apps_dir() / 'controller.log'})")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s (endpoints: {current['endpoints']})")
        time.sleep(0.1)


def set_drained(replica_ids: set[str], drained: bool) -> int:
    """Takes replicas out of (or back into) their services' endpoints, whatever their
    readiness; returns the state revision to wait for."""
    state = read_state()
    current = set(state["drained"])
    current = current | replica_ids if drained else current - replica_ids
    extra = {e["name"] for e in state["hosts"] if e["extra"]}
    return _write_state(managed_hosts(), extra, current)


# --- the role -------------------------------------------------------------------------------------


def up(lab: spec.Lab) -> None:
    """Every k3s host of the inventory with its pods and replicas, and the controller. What runs
    stays; a host a scenario added beyond the inventory and left behind is removed."""
    wanted = {h.name for h in k3s_hosts(lab)}
    for entry in read_state()["hosts"]:
        if entry["name"] not in wanted:
            _remove_host(lab, _as_host(entry), entry["extra"])
    _converge(lab, k3s_hosts(lab), set())


def _converge(lab: spec.Lab, hosts: list[spec.Host], extra: set[str]) -> None:
    """Makes `hosts` the app hosts, each with its pods, its replicas running and serving. A host
    where nothing runs gets the release the others run or, when none runs, the workspace's build."""
    started = time.monotonic()
    ensure_system_account(ACCOUNT, "apps")
    build = build_release()
    _provision_secrets()
    running = [h for h in hosts if any(pid_of(r.pid_path) for r in replicas_of(h))]
    current = installed(running[0]) if running else build
    existing = net.namespaces()
    for host in hosts:
        if host not in running:
            _install(host, current)
        _host_network_up(host)
        for replica in replicas_of(host):
            _pod_up(replica, existing)
    _route_pods(hosts + lab.of("monitoring"), hosts)
    _check_brokers(hosts[0])
    revision = _write_state(hosts, extra, set(read_state()["drained"]))
    _ensure_controller()
    # One host at a time, as a rollout does: the migrations are serialised by an advisory lock
    # (libs/store::migrate), but a replica that fails for another reason would be restarted by
    # the kubelet and is not by the lab (a killed host must stay down until brought back), so
    # the first host's replicas are ready before the next host's start.
    for host in hosts:
        try:
            for replica in replicas_of(host):
                if pid_of(replica.pid_path) is None:
                    start(replica, installed(host))
        except StartFailed as error:
            raise SystemExit(f"lab: {error}") from None
        _wait_serving(replicas_of(host), revision)
    _collect_releases({build} | {installed(h) for h in hosts})
    entry = " ".join(f"http://{h.address}/" for h in hosts)
    log(f"apps: {len(hosts) * len(services())} replicas on {len(hosts)} hosts serving in "
        f"{time.monotonic() - started:.1f} s; the shop at {entry} (plain HTTP)")


def _wait_serving(replicas: list[Replica], revision: int) -> None:
    """Until every replica not drained is an endpoint on every host; a replica that exits or a
    deadline missed ends it with the replica's log."""
    deadline = time.monotonic() + READY_TIMEOUT
    drained = set(read_state()["drained"])
    while True:
        current = endpoints()
        missing = [r for r in replicas if r.id not in drained and not in_maps(r.id, current)]
        if current["revision"] >= revision and not missing:
            return
        for replica in missing:
            if pid_of(replica.pid_path) is None:
                raise SystemExit(f"lab: {replica.id} exited (log {replica.log_path}):\n{_tail(replica.log_path)}")
        if pid_of(_controller_pid()) is None:
            raise SystemExit(f"lab: the endpoints controller stopped:\n{_tail(_apps_dir() / 'controller.log')}")
        if time.monotonic() > deadline:
            last = "\n".join(f"  {r.id} ({r.log_path}): {_tail(r.log_path, 1)}" for r in missing)
            raise SystemExit(f"lab: not ready within {READY_TIMEOUT:.0f} s:\n{last}")
        time.sleep(0.2)


def _signal_all(replicas: list[Replica]) -> None:
    """SIGTERM to every replica at once, so that their graceful shutdowns overlap."""
    for replica in replicas:
        pid = pid_of(replica.pid_path)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _remove_host(lab: spec.Lab, host: spec.Host, extra: bool) -> None:
    """Takes `host` out of the controller's state, stops its replicas, removes its pods, its
    side of the pod network, the routes to its pods and, for a host beyond the inventory, its
    station."""
    state = read_state()
    remaining = [h for h in managed_hosts() if h.name != host.name]
    extras = {e["name"] for e in state["hosts"] if e["extra"]} - {host.name}
    revision = _write_state(remaining, extras, set(state["drained"]))
    if pid_of(_controller_pid()) is not None:
        wait_endpoints(lambda _: True, 30, revision, f"the controller letting go of {host.name}")
    replicas = replicas_of(host)
    _signal_all(replicas)
    for replica in replicas:
        _pod_down(replica)
    present = net.namespaces()
    if host.netns in present:
        _host_network_down(host)
    _unroute_pods([s for s in lab.of("monitoring") + remaining if s.netns in present], host)
    if extra:
        net.remove_station(host.netns, host.address)


def down(lab: spec.Lab) -> None:
    stop(_controller_pid())
    state = read_state()
    hosts = {h.name: h for h in k3s_hosts(lab)} | {e["name"]: _as_host(e) for e in state["hosts"]}
    replicas = [r for h in hosts.values() for r in replicas_of(h)]
    _signal_all(replicas)
    present = net.namespaces()
    for replica in replicas:
        if replica.netns in present or _etc(replica).exists() or pid_of(replica.pid_path) is not None:
            _pod_down(replica)
    stations = [s for s in lab.of("monitoring") + list(hosts.values()) if s.netns in present]
    for host in hosts.values():
        if host.netns in present:
            _host_network_down(host)
        _unroute_pods(stations, host)
    for entry in state["hosts"]:
        if entry["extra"]:
            net.remove_station(entry["netns"], entry["address"])
    for path in (_state_path(), _endpoints_path()):
        path.unlink(missing_ok=True)
    try:
        Path("/etc/netns").rmdir()
    except OSError:
        pass  # not empty: another lab's pods, or the machine's own
    log("apps: replicas stopped; pods, bridges, proxy tables and routes removed")


def status(lab: spec.Lab) -> list[str]:
    state = read_state()
    if not state["hosts"]:
        return ["apps: down"]
    current = endpoints()
    controller_pid = pid_of(_controller_pid())
    lines = [
        f"apps: endpoints controller {'running' if controller_pid else 'NOT RUNNING'}, state revision "
        f"{state['revision']} applied {current['revision']}, maps changed "
        f"{time.monotonic() - current['changed_at']:.0f} s ago"
    ]
    drained = set(state["drained"])
    for host in managed_hosts():
        kib, marks = 0, []
        for replica in replicas_of(host):
            kib += sum(rss_kib(p) for p in namespace_pids(replica.netns))
            if in_maps(replica.id, current):
                mark = "serving"
            elif replica.id in drained:
                mark = "drained"
            elif replica.id in current["ready"]:
                mark = "ready"
            else:
                mark = "running" if pid_of(replica.pid_path) else "STOPPED"
            marks.append(f"{replica.service}:{mark}")
        lines.append(f"apps: {host.name} pods {pod_subnet(host.address)} release {installed(host)} "
                     f"{kib / 1024:.0f} MiB: {' '.join(marks)}")
    lines.append("apps: virtual addresses: " + ", ".join(
        f"{s} {vip(s)}×{len(current['endpoints'].get(s, []))}" for s in services()))
    return lines


def scrape_config(lab: spec.Lab) -> dict:
    """Prometheus' job for the services: the static stand-in for its discovery of the pods
    through the k3s API (nixos/lib/prometheus.nix), with that job's name and labels, scraping
    each replica's ops port directly (the monitoring hosts have routes to the pods)."""
    namespace = cluster()["cluster"]["namespace"]
    return {
        "job_name": cluster()["scrape_job"],
        "metrics_path": "/metrics",
        "static_configs": [
            {
                "targets": [f"{r.address}:{ops_port()}"],
                "labels": {"instance": f"{r.service}-{r.host}", "namespace": namespace, "service": r.service,
                           "node": r.host},
            }
            for host in k3s_hosts(lab)
            for r in replicas_of(host)
        ],
    }


# --- operations the scenarios use -----------------------------------------------------------------


def join(lab: spec.Lab, host: spec.Host) -> None:
    """Adds `host`, an app host `lab` has beyond the inventory, to the running cluster without
    restarting anything: its station, every host's ruleset as `lab` generates it (the others
    now admit it: the new inventory deployed), its pods and replicas on the release the
    others run, the routes to its pods; returns once its replicas are endpoints everywhere."""
    if host.netns not in net.namespaces():
        net.add_station(lab, host.netns, host.address)
    for h in lab.hosts:
        net.apply_firewall(lab, h)
    state = read_state()
    extra = {e["name"] for e in state["hosts"] if e["extra"]} | {host.name}
    _converge(lab, managed_hosts() + [host], extra)


def leave(lab: spec.Lab, host: spec.Host) -> dict[str, float]:
    """Removes `host` with a drain: its replicas out of every host's maps first (confirmed by
    the controller), then stopped (each service's graceful shutdown finishes what it serves),
    then its pods, routes and station; every host's ruleset as `lab`, without it, generates
    it. Returns the seconds the drain and the removal took."""
    started = time.monotonic()
    ids = {r.id for r in replicas_of(host)}
    revision = set_drained(ids, True)
    wait_endpoints(lambda e: not any(in_maps(i, e) for i in ids), 30, revision, f"{host.name} drained")
    drained = time.monotonic()
    _remove_host(lab, host, extra=True)
    for h in lab.hosts:
        net.apply_firewall(lab, h)
    return {"drain": drained - started, "removal": time.monotonic() - drained}


def replace(host: spec.Host, release: str, timeout: float = 120.0) -> list[tuple[str, float]]:
    """Moves the host's replicas onto `release` one at a time: each drained (out of every map,
    confirmed), stopped (graceful), started from the release and put back once ready; those
    already on it are left alone. A replica that fails raises StartFailed and stays out of the
    maps. The host's release is recorded once all are on it. Returns (replica, seconds) per
    replica moved."""
    moved = []
    for replica in replicas_of(host):
        if running_release(replica) == release:
            continue
        started = time.monotonic()
        check_config(replica, release)
        revision = set_drained({replica.id}, True)
        wait_endpoints(lambda e: not in_maps(replica.id, e), 30, revision, f"{replica.id} drained")
        stop(replica.pid_path)
        start(replica, release)
        wait_ready(replica, timeout)
        revision = set_drained({replica.id}, False)
        wait_endpoints(lambda e: in_maps(replica.id, e), 30, revision, f"{replica.id} back in the maps")
        moved.append((replica.id, time.monotonic() - started))
    _install(host, release)
    return moved


@dataclass
class Outcome:
    at: float  # when it was sent, time.monotonic()
    seconds: float
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


class Load:
    """GETs of `path` at `rate` per second from the operators' station to port 80 of
    `addresses` in turn (the shop's entry), each on a new connection, while the block runs.
    A request fails on any answer but 200, a refused or reset connection, or no answer within
    `timeout`. The gateway limits each client address to 50 requests/s (its default): the
    rate stays under that even when one replica gets everything."""

    def __init__(self, addresses: list[str], path: str = "/v1/categories", rate: float = 10.0, timeout: float = 10.0):
        self.addresses, self.path, self.rate, self.timeout = list(addresses), path, rate, timeout
        self.port = cluster()["ports"]["ingressHttp"]
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self._pacer = threading.Thread(target=self._pace, daemon=True)

    def __enter__(self) -> Load:
        self._pacer.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._pacer.join()
        self._pool.shutdown(wait=True)

    def _pace(self) -> None:
        sent, next_at = 0, time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self._pool.submit(self._one, self.addresses[sent % len(self.addresses)])
            sent += 1
            next_at += 1.0 / self.rate

    def _one(self, address: str) -> None:
        at = time.monotonic()
        try:
            status, _ = http_get(spec.admin_name(), address, self.port, self.path, self.timeout)
            outcome = Outcome(at, time.monotonic() - at, status)
        except OSError as error:
            outcome = Outcome(at, time.monotonic() - at, None, f"{type(error).__name__}: {error}")
        with self._lock:
            self.outcomes.append(outcome)

    def since(self, at: float = 0.0) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.at >= at]

    def failures(self, since: float = 0.0) -> list[Outcome]:
        return [o for o in self.since(since) if not o.ok]

    def wait_for(self, count: int, since: float, timeout: float) -> None:
        """Until `count` requests sent after `since` have an outcome."""
        deadline = time.monotonic() + timeout
        while len(self.since(since)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"load: {len(self.since(since))} of {count} requests answered in {timeout:.0f} s")
            time.sleep(0.1)

    @staticmethod
    def describe(outcomes: list[Outcome]) -> str:
        kinds: dict[str, int] = {}
        for o in outcomes:
            key = o.error.split(":")[0] if o.error else f"HTTP {o.status}"
            kinds[key] = kinds.get(key, 0) + 1
        return ", ".join(f"{n}× {k}" for k, n in sorted(kinds.items())) or "none"


if __name__ == "__main__":
    command, *arguments = sys.argv[1:] or [""]
    if command == "controller" and len(arguments) == 2:
        controller(Path(arguments[0]), Path(arguments[1]))
    else:
        raise SystemExit("usage: python3 -m labkit.roles.apps controller STATE ENDPOINTS")
