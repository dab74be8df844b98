"""The pulsar hosts: ZooKeeper on the ensemble's members, a BookKeeper bookie and a Pulsar
broker on each, started from the Maven jars (dev/bootstrap.sh) with the very properties files
nixos/lib/pulsar.nix renders for nixos/modules/pulsar.nix. Then, as the module does once per
cluster on its first host: the cluster metadata (guarded by ZooKeeper itself) and the topology
(`comptoir-xtask provision-topology` as `admin` over https).

Lab changes, each forced by the machine and made through the generator's parameters, never by
editing a setting: directories and secret paths point into the lab's directory (`layout`), and
the JVMs are sized as if each pulsar host had LAB_HOST_MEMORY_MIB (see there).

Secrets stand in for what sops-nix decrypts in production: a lab CA, each broker's certificate
with the names the generator lists (its address, the brokers' DNS name), an RS256 key pair whose public half verifies the tokens, and tokens for
`broker`, `admin` and every role of the topology. Each host gets the files the generator's
`secrets` name; clients (the apps role, the scenarios) read `client_dir()`: ca.crt and
tokens/<role>.jwt. The CA key and the token signing key stay in `_pki_dir()`, so a host added
later gets a certificate from the same CA and a role added to the topology a token that the
running brokers already accept."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from .. import spec
from ..proc import log, ns_argv, ns_run, pid_of, run, spawn, stop

CLASSPATH_FILE = spec.cache_dir() / "pulsar" / "classpath.txt"
LOG4J = spec.ROOT / "dev" / "pulsar" / "log4j2.xml"
TOPOLOGY = spec.ROOT / "libs" / "events" / "topology" / "comptoir.toml"

# The generator sizes the JVMs from the host's memory. The lab's pulsar hosts are `small`
# (4 GiB): 1.25 GiB of heap per host (ZooKeeper 256 MiB, bookie and broker 512 MiB each, fixed
# with Xms = Xmx, so all of it is touched in time) and up to 1.5 GiB of direct memory, i.e.
# 3.75 GiB of heap for the three hosts and up to 8.25 GiB with direct memory: the lab's whole
# budget (< 8 GB resident for 3 pulsar + 3 postgres + 2 app hosts + monitoring on one
# machine). The lab evaluates the same formula as if each pulsar host had 2 GiB, about its
# share of that budget: 256 MiB heaps, direct memory 256 MiB (bookie) and 512 MiB (broker).
# Measured: ~2.3 GiB resident for the nine JVMs once up (ZooKeeper ~190 MiB, bookie ~235 MiB,
# broker ~350 MiB each).
LAB_HOST_MEMORY_MIB = 2048

# The JVM options of the release's launch scripts (bin/pulsar, conf/pulsar_env.sh) on Java 17,
# which production's bookie and broker run through (nixos/modules/pulsar.nix), and the metadata
# drivers they set for BookKeeper.
RELEASE_JVM_FLAGS = [
    *("--add-opens", "java.base/java.io=ALL-UNNAMED"),
    *("--add-opens", "java.base/java.lang=ALL-UNNAMED"),
    *("--add-opens", "java.base/java.nio=ALL-UNNAMED"),
    *("--add-opens", "java.base/java.util.zip=ALL-UNNAMED"),
    *("--add-opens", "java.base/jdk.internal.misc=ALL-UNNAMED"),
    *("--add-opens", "java.base/sun.net=ALL-UNNAMED"),
    *("--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED"),
    *("--add-opens", "java.management/sun.management=ALL-UNNAMED"),
    *("--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED"),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djava.net.preferIPv4Stack=true",
    "-Djute.maxbuffer=10485760",
    "-Dzookeeper.clientTcpKeepAlive=true",
    "-Dpulsar.allocator.exit_on_oom=true",
    "-Dio.netty.recycler.maxCapacityPerThread=4096",
    "-Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver",
    "-Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver",
    "-Dlog4j2.formatMsgNoLookups=true",
]
# The lab's own: nine JVMs share two cores, so each collects with one thread (the release's
# default collector starts threads per core and more memory); logs go to stdout, which spawn()
# writes to the host's log directory.
LAB_JVM_FLAGS = ["-XX:+UseSerialGC", f"-Dlog4j.configurationFile={LOG4J}"]
# One-shot tools (ZooKeeper shell, metadata setup) need little and would otherwise reserve a
# quarter of the machine.
TOOL_MEMORY = "-Xmx256m"

# The JVMs run as root with no capability at all (empty bounding set, no_new_privs): they can
# neither change their host's network or firewall nor bypass file permissions. A dedicated
# account is not practical here: the jars (~/.m2) and the lab directory live under /root,
# which is 0700.
NO_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs", "--"]

MAINS = {
    "zookeeper": "org.apache.zookeeper.server.quorum.QuorumPeerMain",
    "bookie": "org.apache.bookkeeper.server.Main",
    "broker": "org.apache.pulsar.PulsarBrokerStarter",
}

# Longest wait for a start: ~2 min when the lab starts alone on two cores, but up to ~10 min
# was seen while the machine was shared with builds and other labs.
START_TIMEOUT = 900.0
STOP_TIMEOUT = {"broker": 60.0, "bookie": 30.0, "zookeeper": 30.0}


# --- the generator ---


def _nix_string(text: str) -> str:
    """A Nix string literal: JSON's escapes are Nix's, except that `${` must be escaped."""
    return json.dumps(text).replace("${", "\\${")


def settings(lab: spec.Lab) -> dict:
    """The cluster of the lab from nixos/lib/pulsar.nix, with the lab's layout and sizes."""
    dirs = {
        h.name: {
            "zookeeperDir": str(h.dir / "zookeeper"),
            "bookieDir": str(h.dir / "bookkeeper"),
            "secretsDir": str(h.dir / "secrets"),
        }
        for h in lab.of("pulsar")
    }
    return spec.nix_eval(
        f"""
        let
          lib = import ./nixos/lib {{}};
          dirs = builtins.fromJSON {_nix_string(json.dumps(dirs))};
          labSized = host: host // {{ spec = host.spec // {{ memoryMiB = {LAB_HOST_MEMORY_MIB}; }}; }};
          inventory = lib.inventory // {{ hostsOf = env: role: map labSized (lib.inventory.hostsOf env role); }};
        in (import ./nixos/lib/pulsar.nix (lib // {{ inherit inventory; layout = name: dirs.${{name}}; }})).pulsar.{spec.ENV}
        """
    )


def client_dir() -> Path:
    """What clients of the cluster read: ca.crt and tokens/<role>.jwt."""
    return spec.lab_dir() / "secrets" / "pulsar"


def token_file(role: str) -> Path:
    return client_dir() / "tokens" / f"{role}.jwt"


def _pki_dir() -> Path:
    """The lab's signing keys (CA, tokens): never handed to a host or a client."""
    return spec.lab_dir() / "pki" / "pulsar"


# --- secrets ---


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    out = subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"lab: openssl {' '.join(args)} failed: {out.stderr.decode().strip()}")
    return out.stdout


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _install(path: Path, source: Path) -> None:
    """A copy of `source` at `path`, rewritten only when it differs."""
    data = source.read_bytes()
    if not path.exists() or path.read_bytes() != data:
        _write_private(path, data)


def _new_key(path: Path) -> None:
    # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), the format Pulsar's key loader reads.
    _write_private(path, _openssl("genpkey", "-quiet", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"))


def _ensure_ca() -> tuple[Path, Path]:
    pki = _pki_dir()
    key, cert = pki / "ca.key", pki / "ca.crt"
    if not (key.exists() and cert.exists()):
        log("pulsar: generating the lab's CA")
        _new_key(key)
        conf = pki / "ca.cnf"
        conf.write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = Comptoir lab Pulsar CA\n"
            "[ca]\nbasicConstraints = critical, CA:TRUE, pathlen:0\n"
            "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
        )
        ca = _openssl("req", "-x509", "-new", "-config", str(conf), "-extensions", "ca", "-key", str(key), "-sha256", "-days", "3650")
        conf.unlink()
        _write_private(cert, ca)
    return key, cert


def _ensure_broker_certificate(host: spec.Host, names: dict, ca_key: Path, ca_cert: Path, cert: Path, key: Path) -> None:
    """The broker's certificate with the names the generator lists (its address, the brokers'
    DNS name the services use). Kept while it verifies against the CA and carries them all."""
    if cert.exists() and key.exists():
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(ca_cert), str(cert)], capture_output=True, check=False).returncode == 0
        checks = [("-checkip", ip) for ip in names["ipAddresses"]] + [("-checkhost", dns) for dns in names["dnsNames"]]
        if verified and all("does match" in _openssl("x509", "-in", str(cert), "-noout", flag, name).decode() for flag, name in checks):
            return
    _new_key(key)
    sans = ", ".join([f"IP:{ip}" for ip in names["ipAddresses"]] + [f"DNS:{dns}" for dns in names["dnsNames"]])
    conf = cert.with_name("broker.cnf")
    conf.write_text(
        f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {host.name}\n"
        "[broker]\nbasicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
        f"subjectAltName = {sans}\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n"
    )
    csr = _openssl("req", "-new", "-config", str(conf), "-key", str(key))
    signed = _openssl(
        "x509", "-req", "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-set_serial", "0x" + os.urandom(16).hex(), "-sha256", "-days", "825",
        "-extfile", str(conf), "-extensions", "broker",
        input=csr,
    )
    conf.unlink()
    _write_private(cert, signed)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mint_token(private_key: Path, role: str) -> str:
    """An RS256 JWT with `sub` = role and no expiry (a lab; production's tokens expire)."""
    signed = _b64url(b'{"alg":"RS256","typ":"JWT"}') + "." + _b64url(json.dumps({"sub": role}).encode())
    signature = _openssl("dgst", "-sha256", "-sign", str(private_key), input=signed.encode())
    return f"{signed}.{_b64url(signature)}"


def topology_roles() -> list[str]:
    """The roles the topology grants producing or consuming to."""
    topology = tomllib.loads(TOPOLOGY.read_text())
    roles = {r for ns in topology["namespaces"] for r in ns.get("producers", []) + ns.get("consumers", [])}
    return sorted(roles)


def _ensure_tokens() -> Path:
    """The signing key pair and a token per role; returns the public key (DER, as Pulsar's
    `tokens create-key-pair` writes it)."""
    pki = _pki_dir()
    private, public = pki / "token-private.pem", pki / "token-public.key"
    if not private.exists():
        # A new key invalidates every token signed with the old one.
        shutil.rmtree(client_dir() / "tokens", ignore_errors=True)
        _new_key(private)
        public.unlink(missing_ok=True)
    if not public.exists():
        _write_private(public, _openssl("pkey", "-in", str(private), "-pubout", "-outform", "DER"))
    for role in ["admin", "broker", *topology_roles()]:
        if not re.fullmatch(r"[a-z0-9-]+", role):
            raise SystemExit(f"lab: role {role!r} in {TOPOLOGY} is not lowercase letters, digits, '-'")
        if not token_file(role).exists():
            _write_private(token_file(role), _mint_token(private, role).encode())
    return public


def _ensure_secrets(lab: spec.Lab, cluster: dict) -> None:
    ca_key, ca_cert = _ensure_ca()
    public_key = _ensure_tokens()
    _install(client_dir() / "ca.crt", ca_cert)
    sources = {
        "ca": ca_cert,
        "tokenPublicKey": public_key,
        "brokerToken": token_file("broker"),
        "adminToken": token_file("admin"),
    }
    for host in lab.of("pulsar"):
        own = cluster["hosts"][host.name]
        secrets = own["secrets"]
        unknown = set(secrets) - set(sources) - {"cert", "key"}
        if unknown:
            raise SystemExit(f"lab: nixos/lib/pulsar.nix names secrets the lab cannot make: {sorted(unknown)}")
        _ensure_broker_certificate(host, own["certificate"], ca_key, ca_cert, Path(secrets["cert"]), Path(secrets["key"]))
        for purpose, path in secrets.items():
            if purpose in sources:
                _install(Path(path), sources[purpose])


# --- processes ---


@functools.cache
def _classpath_args() -> Path:
    """A JVM @argfile with the Maven classpath, plus ZooKeeper's Prometheus metrics provider:
    production's ZooKeeper (its release's lib/) has it and zoo.cfg names it, but the broker's
    dependencies do not bring it, so it is resolved into the Maven repository beside them."""
    if not CLASSPATH_FILE.exists() or not all(Path(j).exists() for j in CLASSPATH_FILE.read_text().strip().split(":")):
        log("pulsar: no Pulsar classpath, or jars missing from it: running dev/bootstrap.sh")
        subprocess.run([str(spec.ROOT / "dev" / "bootstrap.sh")], check=True)
    jars = CLASSPATH_FILE.read_text().strip().split(":")
    zookeeper = next((j for j in jars if re.search(r"/org/apache/zookeeper/zookeeper/[^/]+/zookeeper-[^/]+\.jar$", j)), None)
    if zookeeper is None:
        raise SystemExit(f"lab: no ZooKeeper jar in {CLASSPATH_FILE}")
    version = Path(zookeeper).parent.name
    metrics = Path(zookeeper).parents[1].with_name("zookeeper-prometheus-metrics") / version / f"zookeeper-prometheus-metrics-{version}.jar"
    if not metrics.exists():
        log(f"pulsar: resolving org.apache.zookeeper:zookeeper-prometheus-metrics:{version} with Maven")
        run(
            [
                "mvn", "-B", "-q", "-s", str(spec.ROOT / "dev" / "pulsar" / "settings.xml"), "dependency:get",
                f"-Dartifact=org.apache.zookeeper:zookeeper-prometheus-metrics:{version}", "-Dtransitive=false",
            ]
        )
    args = spec.lab_dir() / "pulsar" / "classpath.args"
    args.parent.mkdir(parents=True, exist_ok=True)
    args.write_text(f'-cp "{":".join([*jars, str(metrics)])}"\n')
    return args


def _java(classpath: Path, memory: str, tmp: Path, main: str, *args: str) -> list[str]:
    return [*NO_CAPABILITIES, "java", f"@{classpath}", *memory.split(), *RELEASE_JVM_FLAGS, *LAB_JVM_FLAGS, f"-Djava.io.tmpdir={tmp}", main, *args]


def _pid_path(host: spec.Host, name: str) -> Path:
    return host.dir / "run" / f"{name}.pid"


def _conf(host: spec.Host, name: str) -> Path:
    return host.dir / "conf" / name


def _write_files(host: spec.Host, own: dict) -> None:
    """The rendered files of the host, and the directories the module's tmpfiles create."""
    for name, text in own["files"].items():
        path = Path(own["zookeeper"]["conf"]["dataDir"]) / "myid" if name == "myid" else _conf(host, name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)
    for key in ("journalDirectories", "ledgerDirectories"):
        Path(own["bookkeeper"][key]).mkdir(parents=True, exist_ok=True, mode=0o700)


def _start(host: spec.Host, name: str, classpath: Path, memory: str, *args: str) -> None:
    pid = _pid_path(host, name)
    if pid_of(pid) is not None:
        return
    # RocksDB and Netty unpack native libraries here on every start.
    tmp = host.dir / "tmp" / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    spawn(host.netns, _java(classpath, memory, tmp, MAINS[name], *args), host.dir / "log" / f"{name}.log", pid, cwd=host.dir)


def _start_zookeeper(host: spec.Host, own: dict, classpath: Path) -> None:
    if own["zookeeper"] is not None:
        _start(host, "zookeeper", classpath, own["jvm"]["zookeeper"], str(_conf(host, "zoo.cfg")))


def start_host(host: spec.Host, own: dict, classpath: Path) -> None:
    """Starts what of the host's ZooKeeper, bookie and broker is not running."""
    _start_zookeeper(host, own, classpath)
    _start(host, "bookie", classpath, own["jvm"]["bookie"], "--conf", str(_conf(host, "bookkeeper.conf")))
    _start(host, "broker", classpath, own["jvm"]["broker"], "--broker-conf", str(_conf(host, "broker.conf")))


def restart_host(lab: spec.Lab, host: spec.Host) -> None:
    """Starts a pulsar host's processes again (after a crash): no secret or metadata step."""
    start_host(host, settings(lab)["hosts"][host.name], _classpath_args())


def zk_shell(host: spec.Host, cluster: dict, *command: str, server: str | None = None) -> str:
    """The ZooKeeper CLI (`pulsar zookeeper-shell`) from `host`, against the ensemble or one
    `server`: its output, errors included (it prints both, and exits 1 for a missing node and
    for no quorum alike)."""
    tmp = host.dir / "tmp" / "zk-shell"
    tmp.mkdir(parents=True, exist_ok=True)
    connect = server or cluster["zookeeper"]["connect"]
    argv = _java(_classpath_args(), TOOL_MEMORY, tmp, "org.apache.zookeeper.ZooKeeperMain", "-timeout", "5000", "-server", connect, *command)
    try:
        out = ns_run(host.netns, argv, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    return out.stdout + out.stderr


# ZooKeeper's `srvr` four-letter word (allowed by zoo.cfg), sent from inside a lab namespace.
_SRVR = (
    "import socket, sys\n"
    "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as s:\n"
    "    s.sendall(b'srvr')\n"
    "    print(s.makefile(encoding='latin-1').read())\n"
)


def zookeeper_mode(host: spec.Host, own: dict) -> str | None:
    """`leader`, `follower` (serving, in the quorum), or None (not a member, down, or outside
    the quorum), asked from the host itself."""
    if own["zookeeper"] is None:
        return None
    port = str(own["zookeeper"]["conf"]["clientPort"])
    out = ns_run(host.netns, [sys.executable, "-c", _SRVR, host.address, port], check=False)
    mode = re.search(r"^Mode: (\w+)", out.stdout, re.M)
    return mode.group(1) if mode else None


def _init_cluster(lab: spec.Lab, cluster: dict, classpath: Path) -> None:
    """The module's pulsar-init-cluster, guarded by ZooKeeper itself (a registered cluster is
    left alone). The module adds a stamp file so that a boot asks nothing; the lab asks every
    time, which is also how it waits for the ensemble's quorum before starting the bookies."""
    host = lab.host(cluster["initHost"])
    path = f"/admin/clusters/{cluster['cluster']}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        answer = zk_shell(host, cluster, "stat", path)
        if re.search(r"^cZxid", answer, re.M):
            return
        if "Node does not exist" in answer:
            log(f"pulsar: initialising the metadata of {cluster['cluster']}")
            tmp = host.dir / "tmp" / "init"
            tmp.mkdir(parents=True, exist_ok=True)
            argv = _java(classpath, TOOL_MEMORY, tmp, "org.apache.pulsar.PulsarClusterMetadataSetup", *cluster["initializeMetadataArgs"])
            out = ns_run(host.netns, argv, check=False)
            with open(host.dir / "log" / "pulsar-init.log", "a") as f:
                f.write(out.stdout + out.stderr)
            if out.returncode != 0:
                raise SystemExit(f"lab: the cluster metadata setup failed (see {host.dir / 'log' / 'pulsar-init.log'})")
            continue
        time.sleep(1)
    raise SystemExit(f"lab: no ZooKeeper quorum at {cluster['zookeeper']['connect']} after {START_TIMEOUT:.0f} s (see {host.dir / 'log' / 'zookeeper.log'})")


# --- the admin API, from the operators' station ---


@functools.cache
def web_port() -> int:
    """The brokers' https port (admin API and health check)."""
    return int(spec.nix_eval("(import ./nixos/ports.nix).pulsar.webTls"))


def admin_api(address: str, path: str, method: str = "GET", timeout: float = 30) -> tuple[int, str]:
    """A call to the admin API of the broker at `address` as `admin`, from the operators'
    station (the admin network, which the firewall lets in): the HTTP status (0 if none) and
    the body. A broker redirects what another one owns; the token follows the redirect (to a
    broker of the same cluster) and goes to curl on stdin, never on a command line."""
    header = f"Authorization: Bearer {token_file('admin').read_text().strip()}\n"
    url = f"https://{address}:{web_port()}{path}"
    argv = ["curl", "-sS", "--location-trusted", "-X", method, "--max-time", str(timeout), "--cacert", str(client_dir() / "ca.crt"), "-H", "@-", "-w", "\n%{http_code}", url]
    out = ns_run(spec.admin_name(), argv, input=header, check=False)
    body, _, code = out.stdout.rpartition("\n")
    return (int(code) if code.isdigit() else 0), body


def broker_healthy(host: spec.Host) -> bool:
    """The broker's own health check: a produce and consume through it."""
    code, _ = admin_api(host.address, "/admin/v2/brokers/health", timeout=10)
    return code == 200


def wait_healthy(hosts: list[spec.Host], timeout: float = START_TIMEOUT) -> float:
    """Waits until every broker of `hosts` passes its health check; returns the seconds it
    took. Fails at once if one of their JVMs exits."""
    started = time.monotonic()
    pending = list(hosts)
    while pending:
        for host in list(pending):
            dead = [name for name in ("bookie", "broker") if pid_of(_pid_path(host, name)) is None]
            if dead:
                raise SystemExit(f"lab: {host.name}: {' and '.join(dead)} exited (see {host.dir / 'log'})")
            if broker_healthy(host):
                pending.remove(host)
        if pending and time.monotonic() - started > timeout:
            raise SystemExit(f"lab: brokers not healthy after {timeout:.0f} s: {' '.join(h.name for h in pending)}")
        if pending:
            time.sleep(1)
    return time.monotonic() - started


def _apply_topology(lab: spec.Lab, cluster: dict) -> None:
    """The module's pulsar-topology: on the first host, as `admin`, with its secrets."""
    host = lab.host(cluster["initHost"])
    secrets = cluster["hosts"][host.name]["secrets"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "COMPTOIR_PULSAR_ADMIN_TOKEN_FILE": secrets["adminToken"],
        "COMPTOIR_PULSAR_CA_FILE": secrets["ca"],
    }
    argv = ns_argv(host.netns, [*NO_CAPABILITIES, str(spec.cargo_binary("comptoir-xtask", "comptoir-xtask")), "provision-topology", cluster["adminUrl"]])
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    with open(host.dir / "log" / "pulsar-topology.log", "a") as f:
        f.write(out.stdout + out.stderr)
    if out.returncode != 0:
        raise SystemExit(f"lab: comptoir-xtask provision-topology failed:\n{out.stderr.strip()}")


# --- the role ---


def up(lab: spec.Lab) -> None:
    hosts = lab.of("pulsar")
    if not hosts:
        return
    started = time.monotonic()
    cluster = settings(lab)
    _ensure_secrets(lab, cluster)
    classpath = _classpath_args()
    for host in hosts:
        _write_files(host, cluster["hosts"][host.name])
    for host in hosts:
        _start_zookeeper(host, cluster["hosts"][host.name], classpath)
    _init_cluster(lab, cluster, classpath)
    for host in hosts:
        start_host(host, cluster["hosts"][host.name], classpath)
    wait_healthy(hosts)
    _apply_topology(lab, cluster)
    log(f"pulsar: {len(hosts)} brokers healthy, topology applied ({cluster['serviceUrl']}) in {time.monotonic() - started:.0f} s")


def down(lab: spec.Lab) -> None:
    """Brokers first (they hand their topics over and close their ledgers), then bookies, then
    ZooKeeper; each kind stopped on every host at once."""
    hosts = lab.of("pulsar")
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        for name in ("broker", "bookie", "zookeeper"):
            list(pool.map(lambda h: stop(_pid_path(h, name), timeout=STOP_TIMEOUT[name]), hosts))


def status(lab: spec.Lab) -> list[str]:
    hosts = lab.of("pulsar")
    cluster = settings(lab) if hosts else {}
    lines = []
    for host in hosts:
        own = cluster["hosts"][host.name]
        running = [name for name in MAINS if pid_of(_pid_path(host, name)) is not None]
        if "zookeeper" in running:
            running[0] = f"zookeeper ({zookeeper_mode(host, own) or 'not serving'})"
        health = "healthy" if "broker" in running and broker_healthy(host) else "not healthy"
        lines.append(f"pulsar: {host.name}: {', '.join(running) or 'nothing'} running; broker {health}")
    return lines
