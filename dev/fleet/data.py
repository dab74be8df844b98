#!/usr/bin/env python3
"""Invariants of the stateful roles' settings (nixos/lib/pulsar.nix, nixos/lib/patroni.nix).

Reads one JSON document, the evaluation dev/fleet/check-data.sh makes:
    {"hosts": inventory.hostList, "environments": [...], "graph": graph,
     "pulsar": pulsar, "patroni": patroni}

    data.py check FILE          every invariant; exit 1 listing each broken one
    data.py self-test FILE      breaks the input in known ways; exit 1 unless each is caught
    data.py etcd-args FILE ENV HOST
                                the etcd command line of that member, one argument a line
                                (check-data.sh starts the real cluster from it)

Standard library only (Python 3.11).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from typing import Any

Data = dict[str, Any]

ZK_PEER, ZK_ELECTION, ZK_CLIENT = 2888, 3888, 2181
BROKER_TLS, WEB_TLS = 6651, 8443
PATRONI, POSTGRES, ETCD_CLIENT, ETCD_PEER = 8008, 5432, 2379, 2380
# Failover timings measured with Patroni 3.0.2 / etcd 3.4 (nixos/lib/patroni.nix).
DCS_TIMINGS = {"ttl": 6, "loop_wait": 1, "retry_timeout": 2}


def hosts_of(data: Data, env: str, *roles: str) -> list[dict]:
    return [h for h in data["hosts"] if h["env"] == env and any(r in h["roles"] for r in roles)]


def parse_properties(text: str) -> dict[str, str]:
    """Java properties as our renderer writes them: key=value lines, backslashes doubled."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"not a key=value line: {line!r}")
        out[key] = value.replace("\\\\", "\\")
    return out


def java_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(java_value(v) for v in value)
    return str(value)


# --- Pulsar ---------------------------------------------------------------------------------


def check_pulsar(data: Data, env: str, problems: list[str]) -> None:
    def bad(msg: str) -> None:
        problems.append(f"pulsar.{env}: {msg}")

    inventory = hosts_of(data, env, "pulsar")
    cluster = data["pulsar"].get(env)
    if not inventory:
        if cluster is not None:
            bad("settings for an environment without pulsar hosts")
        return
    if cluster is None:
        bad("missing (the environment has pulsar hosts)")
        return
    by_name = {h["name"]: h for h in inventory}
    if sorted(cluster["hosts"]) != sorted(by_name):
        bad(f"hosts {sorted(cluster['hosts'])} are not the inventory's {sorted(by_name)}")
        return
    if cluster["cluster"] != f"comptoir-{env}":
        bad(f"cluster name {cluster['cluster']!r} is not comptoir-{env}")

    # ZooKeeper: an odd ensemble of at least one, ids unique, each line naming its host.
    servers = cluster["zookeeper"]["servers"]
    if len(servers) < 1 or len(servers) % 2 == 0:
        bad(f"ZooKeeper ensemble of {len(servers)}: must be odd and at least 1")
    ids = [s["id"] for s in servers]
    if len(set(ids)) != len(ids):
        bad(f"ZooKeeper ids not unique: {ids}")
    lines = {}
    for s in servers:
        host = by_name.get(s["host"])
        if host is None:
            bad(f"ZooKeeper server {s['host']} is not a pulsar host")
            continue
        if s["address"] != host["address"]:
            bad(f"ZooKeeper server {s['host']} at {s['address']}, inventory says {host['address']}")
        expected = f"server.{s['id']}={host['address']}:{ZK_PEER}:{ZK_ELECTION}"
        if s["line"] != expected:
            bad(f"ZooKeeper line {s['line']!r}, expected {expected!r}")
        lines[f"server.{s['id']}"] = f"{host['address']}:{ZK_PEER}:{ZK_ELECTION}"
        zk = cluster["hosts"][s["host"]]["zookeeper"]
        if zk is None:
            bad(f"{s['host']} is in the ensemble but runs no ZooKeeper")
            continue
        if zk["myid"] != s["id"]:
            bad(f"{s['host']}: myid {zk['myid']} but its server line says {s['id']}")
        if zk["myid"] != int(host["address"].rsplit(".", 1)[1]):
            bad(f"{s['host']}: myid {zk['myid']} is not the last octet of {host['address']}")
    members = {s["host"] for s in servers}
    connect = ",".join(f"{s['address']}:{ZK_CLIENT}" for s in servers)
    if cluster["zookeeper"]["connect"] != connect:
        bad(f"ZooKeeper connect string {cluster['zookeeper']['connect']!r}, expected {connect!r}")

    # Ledger quorums (the measured rule, nixos/lib/pulsar.nix).
    q = cluster["quorum"]
    bookies = len(inventory)
    if cluster["bookies"] != bookies:
        bad(f"{cluster['bookies']} bookies, but {bookies} pulsar hosts run one each")
    if not (q["ensemble"] >= q["write"] >= q["ack"] >= 1):
        bad(f"quorum {q}: needs ensemble >= write >= ack >= 1")
    if q["ensemble"] > bookies:
        bad(f"quorum {q}: ensemble larger than the {bookies} bookies")
    if bookies >= 3 and not (q["ensemble"] < bookies or q["ensemble"] == q["write"] == q["ack"]):
        bad(f"quorum {q} on {bookies} bookies: no spare bookie, and losing one stops writes")

    service_url = "pulsar+ssl://" + ",".join(f"{h['address']}:{BROKER_TLS}" for h in inventory)
    if cluster["serviceUrl"] != service_url:
        bad(f"serviceUrl {cluster['serviceUrl']!r}, expected {service_url!r}")
    if not cluster["adminUrl"].startswith("https://"):
        bad(f"adminUrl {cluster['adminUrl']!r} is not https")

    for name, settings in cluster["hosts"].items():
        host = by_name[name]
        where = f"{name}:"
        zk = settings["zookeeper"]
        if (zk is not None) != (name in members):
            bad(f"{where} runs ZooKeeper {'but is not' if zk else 'not, but is'} in the ensemble")
        if zk is not None:
            conf = zk["conf"]
            have = {k: v for k, v in conf.items() if k.startswith("server.")}
            if have != lines:
                bad(f"{where} zoo.cfg server lines {have} differ from the ensemble {lines}")
            if conf.get("clientPort") != ZK_CLIENT or conf.get("admin.enableServer") is not False:
                bad(f"{where} zoo.cfg: clientPort {ZK_CLIENT} and admin.enableServer=false expected")
            if settings["files"].get("myid") != f"{zk['myid']}\n":
                bad(f"{where} myid file {settings['files'].get('myid')!r} is not {zk['myid']}")
        broker = settings["broker"]
        expect = {
            "clusterName": cluster["cluster"],
            "advertisedAddress": host["address"],
            "metadataStoreUrl": f"zk:{connect}",
            "configurationMetadataStoreUrl": f"zk:{connect}",
            "managedLedgerDefaultEnsembleSize": q["ensemble"],
            "managedLedgerDefaultWriteQuorum": q["write"],
            "managedLedgerDefaultAckQuorum": q["ack"],
            "brokerServicePort": "",
            "webServicePort": "",
            "brokerServicePortTls": BROKER_TLS,
            "webServicePortTls": WEB_TLS,
            "authenticationEnabled": True,
            "authenticationProviders": "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
            "authorizationEnabled": True,
            "brokerClientTlsEnabled": True,
            "tlsAllowInsecureConnection": False,
        }
        for key, value in expect.items():
            if broker.get(key) != value:
                bad(f"{where} broker {key}={broker.get(key)!r}, expected {value!r}")
        for key in ("tlsCertificateFilePath", "tlsKeyFilePath", "tlsTrustCertsFilePath"):
            if not str(broker.get(key, "")).startswith("/"):
                bad(f"{where} broker {key} is not a file path: {broker.get(key)!r}")
        for key in ("tokenPublicKey", "brokerClientAuthenticationParameters"):
            if not str(broker.get(key, "")).startswith("file:///"):
                bad(f"{where} broker {key} must name a file (file:///...): {broker.get(key)!r}")
        bk = settings["bookkeeper"]
        if bk.get("metadataServiceUri") != cluster["bookkeeperMetadataServiceUri"]:
            bad(f"{where} bookie metadataServiceUri differs from the cluster's")
        if bk.get("advertisedAddress") != host["address"]:
            bad(f"{where} bookie advertisedAddress {bk.get('advertisedAddress')!r}")
        # The rendered files say what the attrsets say.
        for fname, attrs in (("broker.conf", broker), ("bookkeeper.conf", bk)) + (
            (("zoo.cfg", zk["conf"]),) if zk else ()
        ):
            try:
                parsed = parse_properties(settings["files"][fname])
            except (KeyError, ValueError) as e:
                bad(f"{where} {fname}: {e}")
                continue
            want = {k: java_value(v) for k, v in attrs.items()}
            if parsed != want:
                bad(f"{where} {fname} does not render its settings")


# --- PostgreSQL -------------------------------------------------------------------------------


def check_hba(where: str, lines: list[str], bad: Callable[[str], None]) -> None:
    for line in lines:
        fields = line.split()
        kind = fields[0]
        method = fields[4] if kind.startswith("host") else fields[3]
        if method in ("trust", "md5", "password", "ident"):
            bad(f"{where} pg_hba {line!r}: {method} is not allowed")
        elif kind.startswith("host") and (kind != "hostssl" or method != "scram-sha-256"):
            bad(f"{where} pg_hba {line!r}: TCP needs hostssl with scram-sha-256")
        elif kind == "local" and not (method == "peer" and any(f.startswith("map=") for f in fields)):
            bad(f"{where} pg_hba {line!r}: the socket admits only peer with a map")


def check_patroni(data: Data, env: str, problems: list[str]) -> None:
    def bad(msg: str) -> None:
        problems.append(f"patroni.{env}: {msg}")

    inventory = hosts_of(data, env, "postgres")
    cluster = data["patroni"].get(env)
    if not inventory:
        if cluster is not None:
            bad("settings for an environment without postgres hosts")
        return
    if cluster is None:
        bad("missing (the environment has postgres hosts)")
        return
    by_name = {h["name"]: h for h in inventory}
    if sorted(cluster["hosts"]) != sorted(by_name):
        bad(f"hosts {sorted(cluster['hosts'])} are not the inventory's {sorted(by_name)}")
        return
    k3s = [h["address"] for h in hosts_of(data, env, "k3s-server", "k3s-agent")]
    needing = sorted(s for s, needs in data["graph"]["needs"].items() if "postgres" in needs)
    dbs = {db["name"]: db for db in cluster["databases"]}
    for service in needing:
        if service not in dbs:
            bad(f"service {service} needs postgres but has no database")
        elif dbs[service]["role"] != service:
            bad(f"database {service} is owned by {dbs[service]['role']!r}, not its service")
    for extra in sorted(set(dbs) - set(needing)):
        bad(f"database {extra} belongs to no service that needs postgres")

    etcd_hosts = [f"{h['address']}:{ETCD_CLIENT}" for h in inventory]
    initial = sorted(f"{h['name']}=https://{h['address']}:{ETCD_PEER}" for h in inventory)
    for name, member in cluster["hosts"].items():
        host = by_name[name]
        addr = host["address"]
        where = f"{name}:"
        s = member["settings"]
        if s["scope"] != f"comptoir-{env}" or s["name"] != name:
            bad(f"{where} scope/name {s['scope']!r}/{s['name']!r}")
        for section, port in (("restapi", PATRONI), ("postgresql", POSTGRES)):
            for key in ("listen", "connect_address"):
                if s[section][key] != f"{addr}:{port}":
                    bad(f"{where} {section}.{key}={s[section][key]!r}, expected {addr}:{port}")
        if s["etcd3"]["hosts"] != etcd_hosts:
            bad(f"{where} etcd3.hosts {s['etcd3']['hosts']} are not the postgres hosts {etcd_hosts}")
        dcs = s["bootstrap"]["dcs"]
        for key, value in DCS_TIMINGS.items():
            if dcs.get(key) != value:
                bad(f"{where} bootstrap.dcs.{key}={dcs.get(key)!r}, measured value is {value}")
        if dcs["loop_wait"] + 2 * dcs["retry_timeout"] > dcs["ttl"]:
            bad(f"{where} loop_wait + 2 x retry_timeout exceeds ttl")
        if dcs.get("synchronous_mode") is not True:
            bad(f"{where} synchronous_mode must be true")
        pg = dcs["postgresql"]
        params = pg["parameters"]
        if pg.get("use_pg_rewind") is not True or params.get("wal_log_hints") != "on":
            bad(f"{where} pg_rewind needs use_pg_rewind and wal_log_hints on")
        if params.get("wal_level") != "replica" or params.get("archive_mode") != "on" or not params.get(
            "archive_command"
        ):
            bad(f"{where} WAL archiving: wal_level replica, archive_mode on, an archive_command")
        hba = s["postgresql"]["pg_hba"]
        if s["bootstrap"]["pg_hba"] != hba:
            bad(f"{where} bootstrap.pg_hba and postgresql.pg_hba differ")
        check_hba(where, hba, bad)
        for db in dbs.values():
            for ip in k3s:
                line = f"hostssl {db['name']} {db['role']} {ip}/32 scram-sha-256"
                if line not in hba:
                    bad(f"{where} pg_hba lacks {line!r}")
        for peer in inventory:
            line = f"hostssl replication replicator {peer['address']}/32 scram-sha-256"
            if line not in hba:
                bad(f"{where} pg_hba lacks {line!r}")
        if s["postgresql"]["parameters"].get("ssl") != "on":
            bad(f"{where} ssl must be on")
        etcd = member["etcd"]
        if etcd["name"] != name or sorted(etcd["initialCluster"]) != initial:
            bad(f"{where} etcd member {etcd['name']!r} / initial cluster {etcd['initialCluster']}")
        if etcd["listenClientUrls"] != [f"https://{addr}:{ETCD_CLIENT}"]:
            bad(f"{where} etcd client URLs {etcd['listenClientUrls']}")
        if etcd["listenPeerUrls"] != [f"https://{addr}:{ETCD_PEER}"]:
            bad(f"{where} etcd peer URLs {etcd['listenPeerUrls']}")
        if not (etcd["clientCertAuth"] and etcd["peerClientCertAuth"]):
            bad(f"{where} etcd must require client certificates")


def problems_of(data: Data) -> list[str]:
    problems: list[str] = []
    for env in data["environments"]:
        check_pulsar(data, env, problems)
        check_patroni(data, env, problems)
    return problems


# --- Self-test: each way of breaking the data must be caught ----------------------------------


def multi(data: Data, section: str) -> str:
    """An environment with 3 or more hosts in that section."""
    return next(env for env, c in data[section].items() if len(c["hosts"]) >= 3)


def _even_ensemble(d: Data) -> None:
    d["pulsar"][multi(d, "pulsar")]["zookeeper"]["servers"].pop()


def _myid_mismatch(d: Data) -> None:
    c = d["pulsar"][multi(d, "pulsar")]
    c["hosts"][c["zookeeper"]["servers"][0]["host"]]["zookeeper"]["myid"] += 1


def _duplicate_id(d: Data) -> None:
    s = d["pulsar"][multi(d, "pulsar")]["zookeeper"]["servers"]
    s[1]["id"] = s[0]["id"]


def _wrong_address(d: Data) -> None:
    s = d["pulsar"][multi(d, "pulsar")]["zookeeper"]["servers"][0]
    s["line"] = s["line"].replace(s["address"], "10.99.99.99")


def _ack_over_write(d: Data) -> None:
    d["pulsar"][multi(d, "pulsar")]["quorum"].update(ensemble=2, write=1, ack=2)


def _no_spare_bookie(d: Data) -> None:
    d["pulsar"][multi(d, "pulsar")]["quorum"].update(ensemble=3, write=3, ack=2)


def _plaintext_port(d: Data) -> None:
    c = d["pulsar"][multi(d, "pulsar")]
    next(iter(c["hosts"].values()))["broker"]["brokerServicePort"] = 6650


def _stale_rendering(d: Data) -> None:
    c = d["pulsar"][multi(d, "pulsar")]
    h = next(iter(c["hosts"].values()))
    h["files"]["broker.conf"] = h["files"]["broker.conf"].replace("authorizationEnabled=true", "authorizationEnabled=false")


def _missing_database(d: Data) -> None:
    c = d["patroni"][multi(d, "patroni")]
    c["databases"] = [db for db in c["databases"] if db["name"] != "orders"]


def _missing_hba(d: Data) -> None:
    m = next(iter(d["patroni"][multi(d, "patroni")]["hosts"].values()))["settings"]
    m["postgresql"]["pg_hba"] = [line for line in m["postgresql"]["pg_hba"] if not line.startswith("hostssl payments")]
    m["bootstrap"]["pg_hba"] = m["postgresql"]["pg_hba"]


def _trust(d: Data) -> None:
    m = next(iter(d["patroni"][multi(d, "patroni")]["hosts"].values()))["settings"]
    m["postgresql"]["pg_hba"] = [*m["postgresql"]["pg_hba"], "host all all 0.0.0.0/0 trust"]
    m["bootstrap"]["pg_hba"] = m["postgresql"]["pg_hba"]


def _md5(d: Data) -> None:
    m = next(iter(d["patroni"][multi(d, "patroni")]["hosts"].values()))["settings"]
    m["bootstrap"]["pg_hba"] = [*m["bootstrap"]["pg_hba"], "hostssl all all 0.0.0.0/0 md5"]
    m["postgresql"]["pg_hba"] = m["bootstrap"]["pg_hba"]


def _slow_failover(d: Data) -> None:
    m = next(iter(d["patroni"][multi(d, "patroni")]["hosts"].values()))["settings"]
    m["bootstrap"]["dcs"]["ttl"] = 30


def _etcd_stranger(d: Data) -> None:
    m = next(iter(d["patroni"][multi(d, "patroni")]["hosts"].values()))
    m["etcd"]["initialCluster"][0] = "stranger=https://10.99.99.99:2380"


# What breaks → (how, words the complaint must contain: caught for the right reason).
BREAKAGES: dict[str, tuple[Callable[[Data], None], str]] = {
    "ZooKeeper ensemble of even size": (_even_ensemble, "must be odd"),
    "myid differs from its server line": (_myid_mismatch, "but its server line says"),
    "duplicate ZooKeeper id": (_duplicate_id, "ids not unique"),
    "server line with an address not in the inventory": (_wrong_address, "ZooKeeper line"),
    "ack quorum above write quorum": (_ack_over_write, "ensemble >= write >= ack"),
    "3/3/2 on three bookies": (_no_spare_bookie, "no spare bookie"),
    "plaintext broker port": (_plaintext_port, "brokerServicePort"),
    "rendered broker.conf out of step": (_stale_rendering, "does not render"),
    "service without a database": (_missing_database, "has no database"),
    "service without a pg_hba line": (_missing_hba, "pg_hba lacks 'hostssl payments"),
    "trust in pg_hba": (_trust, "trust is not allowed"),
    "md5 in pg_hba": (_md5, "md5 is not allowed"),
    "unmeasured failover timings": (_slow_failover, "measured value is 6"),
    "etcd initial cluster with a stranger": (_etcd_stranger, "initial cluster"),
}


def self_test(data: Data) -> int:
    failed = 0
    if problems_of(data):
        print("self-test: the delivered data already fails; run `check` first", file=sys.stderr)
        return 1
    for what, (breakage, words) in BREAKAGES.items():
        broken = copy.deepcopy(data)
        breakage(broken)
        found = [p for p in problems_of(broken) if words in p]
        if found:
            print(f"self-test: caught {what}: {found[0]}", file=sys.stderr)
        else:
            print(f"self-test: NOT caught: {what} (no complaint with {words!r})", file=sys.stderr)
            failed += 1
    print(f"{len(BREAKAGES) - failed} passed, {failed} failed")
    return 1 if failed else 0


def etcd_args(data: Data, env: str, host: str) -> list[str]:
    m = data["patroni"][env]["hosts"][host]["etcd"]
    flags = {
        "name": "--name",
        "dataDir": "--data-dir",
        "listenClientUrls": "--listen-client-urls",
        "advertiseClientUrls": "--advertise-client-urls",
        "listenPeerUrls": "--listen-peer-urls",
        "initialAdvertisePeerUrls": "--initial-advertise-peer-urls",
        "initialCluster": "--initial-cluster",
        "initialClusterState": "--initial-cluster-state",
        "initialClusterToken": "--initial-cluster-token",
        "certFile": "--cert-file",
        "keyFile": "--key-file",
        "trustedCaFile": "--trusted-ca-file",
        "clientCertAuth": "--client-cert-auth",
        "peerCertFile": "--peer-cert-file",
        "peerKeyFile": "--peer-key-file",
        "peerTrustedCaFile": "--peer-trusted-ca-file",
        "peerClientCertAuth": "--peer-client-cert-auth",
    }
    unknown = set(m) - set(flags)
    if unknown:
        raise SystemExit(f"etcd-args: no flag known for {sorted(unknown)}")
    return [f"{flags[k]}={java_value(v)}" for k, v in sorted(m.items())]


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("check", "self-test", "etcd-args"):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        data = json.load(f)
    if argv[0] == "check":
        problems = problems_of(data)
        for p in problems:
            print(f"data: {p}", file=sys.stderr)
        envs = ", ".join(data["environments"])
        print(f"data: {'FAILED' if problems else 'ok'}: pulsar and patroni settings of {envs}", file=sys.stderr)
        return 1 if problems else 0
    if argv[0] == "self-test":
        return self_test(data)
    print("\n".join(etcd_args(data, argv[2], argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
