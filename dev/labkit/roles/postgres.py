"""The postgres hosts: etcd, then PostgreSQL under Patroni, with the settings nixos/lib/patroni.nix
generates for the lab (what nixos/modules/postgres.nix installs), and the service databases
provisioned the way the module does it (`comptoir-xtask provision-db` on the primary), and on
every host the Prometheus PostgreSQL exporter (Debian's), as the module's
services.prometheus.exporters.postgres: on the host's address and the exporter port of
nixos/ports.nix, connected on the host's socket as role postgres_exporter (pg_monitor), which
peer authentication admits through the generated pg_ident map for the OS account that map names
(`postgres-exporter`, created here when missing). Lab changes, each forced by the machine, all
through the generator's `layout`: Debian's PostgreSQL binaries, every path under the host's
directory, and Debian's `postgres` account (the one PostgreSQL and Patroni run as here,
`patroni` on NixOS) as the local administrator. pgBackRest archives the WAL to a repository all
members share, as the module asks of a multi-host cluster.

Secrets: a lab CA and, per host, a certificate naming the host's address; the replication,
rewind and REST API passwords; one password per service database under
lab_dir()/secrets/postgres/db/<service>, for the apps role.
"""

from __future__ import annotations

import copy
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path
from secrets import token_urlsafe

from fleet.data import etcd_args  # dev/fleet/data.py: the flags check-data.sh starts etcd with

from .. import spec
from ..proc import apt_install, ensure_system_account, log, ns_run, pid_of, spawn, stop, wait_tcp

# Debian's accounts (packages postgresql and etcd-server): what reads each secret.
ADMIN_USER = "postgres"
ETCD_USER = "etcd"
# Binary → the Debian package that has it; PostgreSQL's server is looked up by directory.
PACKAGES = {
    "patroni": "patroni",
    "etcd": "etcd-server",
    "pgbackrest": "pgbackrest",
    "openssl": "openssl",
    "curl": "curl",
    "setfacl": "acl",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
}
# The exporter's role; the SQL creating it is the generator's (exporterRoleSql), which the
# module's provisioning unit runs too (nixos/modules/postgres.nix).
EXPORTER_ROLE = "postgres_exporter"
# etcd's copies of the host's TLS files (secret purpose → the purpose it copies), as the module's.
ETCD_COPIES = {"etcdCa": "ca", "etcdCert": "cert", "etcdKey": "key"}


def secrets_dir() -> Path:
    """The cluster's secrets as the lab keeps them; each host gets copies where its settings say."""
    return spec.lab_dir() / "secrets" / "postgres"


def ca_file() -> Path:
    """The lab CA's certificate: what clients verify the servers with (sslmode=verify-full)."""
    return secrets_dir() / "ca.crt"


def password_file(database: dict) -> Path:
    """A service's database password (`passwordSecret` of the generator: postgres/db/<service>)."""
    return spec.lab_dir() / "secrets" / database["passwordSecret"]


# --- Installation -----------------------------------------------------------------------------


def _pg_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries, the highest major installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _install() -> None:
    missing = [pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None]
    if _pg_bin_dir() is None:
        missing.append("postgresql")
    apt_install(missing, "postgres")


# --- Settings ---------------------------------------------------------------------------------


def _secrets_root(host: spec.Host) -> Path:
    return host.dir / "secrets"


def _layout(host: spec.Host, bin_dir: Path) -> dict[str, str]:
    """The generator's `layout` for a host: its paths under the host's directory."""
    d = host.dir
    return {
        "binDir": str(bin_dir),
        # The major in the name, as on NixOS: a major upgrade is a new directory.
        "dataDir": str(d / "postgresql" / bin_dir.parent.name),
        "socketDir": str(d / "postgresql" / "socket"),
        "patroniDir": str(d / "patroni"),
        "etcdDir": str(d / "etcd"),
        "secretsDir": str(_secrets_root(host)),
        "adminUser": ADMIN_USER,
    }


@cache
def _generated() -> dict:
    """One evaluation (each re-reads the whole fleet): patroni.lab of nixos/lib/patroni.nix with
    the lab's layout (see the module docstring), and the exporter's port (nixos/ports.nix)."""
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("lab: no PostgreSQL server under /usr/lib/postgresql (dev/lab up installs it)")
    layouts = {h.name: _layout(h, bin_dir) for h in spec.load().of("postgres")}
    text = json.dumps(layouts)
    if "${" in text:
        raise SystemExit(f"lab: the lab's directory {spec.lab_dir()} cannot be passed to Nix")
    # json.dumps of the JSON text is a valid Nix string literal (same escapes) once `${` is ruled out.
    return spec.nix_eval(
        f"""
        let layouts = builtins.fromJSON {json.dumps(text)}; lib = import ./nixos/lib {{}}; in {{
          cluster = (import ./nixos/lib/patroni.nix (lib // {{
            layout = host: layouts.${{host}} or {{}};
          }})).{spec.ENV};
          exporterPort = lib.ports.postgres.exporter;
        }}
        """
    )


def cluster() -> dict:
    """patroni.lab of nixos/lib/patroni.nix with the lab's layout."""
    return _generated()["cluster"]


def exporter_port() -> int:
    """The exporter's port (ports.postgres.exporter): what the module listens on, the firewall
    lets Prometheus reach and Prometheus scrapes."""
    return _generated()["exporterPort"]


def _member(host: spec.Host) -> dict:
    return cluster()["hosts"][host.name]


def _paths(member: dict) -> dict[str, Path]:
    pg = member["settings"]["postgresql"]
    return {
        "data": Path(pg["data_dir"]),
        "socket": Path(pg["parameters"]["unix_socket_directories"]),
        "patroni": Path(pg["pgpass"]).parent,
        "etcd": Path(member["etcd"]["dataDir"]),
    }


def _exporter_account(member: dict) -> str:
    """The OS account the exporter runs as: the one the generated pg_ident map of the exporter's
    local (peer) pg_hba rule maps to its role (`dirs.exporterUser` of nixos/lib/patroni.nix)."""
    pg = member["settings"]["postgresql"]
    maps = [
        option.removeprefix("map=")
        for line in pg["pg_hba"]
        if line.split()[:1] == ["local"] and line.split()[2:3] == [EXPORTER_ROLE]
        for option in line.split()[4:]
        if option.startswith("map=")
    ]
    accounts = {
        fields[1] for line in pg["pg_ident"] if len(fields := line.split()) == 3 and fields[0] in maps and fields[2] == EXPORTER_ROLE
    }
    if len(accounts) != 1:
        raise SystemExit(f"lab: the generated pg_hba/pg_ident admit no single OS account as {EXPORTER_ROLE}: {sorted(accounts)}")
    return accounts.pop()


def _exporter_dsn(member: dict) -> str:
    """The module's dataSourceName with the host's socket directory."""
    socket = member["settings"]["postgresql"]["parameters"]["unix_socket_directories"]
    return f"user={EXPORTER_ROLE} database=postgres host={socket} sslmode=disable"


# --- Files, accounts and permissions --------------------------------------------------------------


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _mkdir(path: Path, owner: str, mode: int = 0o700) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, *_ids(owner))
    path.chmod(mode)


def _write(path: Path, data: bytes, owner: str = "root", mode: int = 0o600) -> None:
    """Writes `data` (atomically, with its owner and mode) unless the file already has it all."""
    uid, gid = _ids(owner)
    try:
        st = path.stat()
        if (st.st_uid, st.st_mode & 0o777) == (uid, mode) and path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _let_reach(user: str, directories: list[Path]) -> None:
    """When the lab's files live where an account cannot reach them (COMPTOIR_LAB_DIR under
    root's home, which Debian makes 0700), an account that runs a lab process gets search
    permission (an ACL entry of its own, x only: no listing, no reading) on each directory above
    its files that it cannot cross; under the default /var/lib/comptoir-lab nothing changes. Like the packages, this is a setting
    of the machine, kept after `down` (a lab of another prefix may be using it)."""
    every = {d for directory in directories for d in (directory, *directory.parents)}
    # Parents first: a directory is only reachable once every one above it is.
    for directory in sorted(every, key=lambda d: len(d.parts)):
        crossing = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "test", "-x", str(directory)]
        if subprocess.run(crossing, check=False).returncode != 0:
            subprocess.run(["setfacl", "-m", f"u:{user}:x", str(directory)], check=True)
            log(f"postgres: {user} may now cross {directory} (ACL entry, search only)")


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"lab: openssl {args[0]} failed: {out.stderr.strip()}")


def _certificate(host: spec.Host) -> tuple[Path, Path]:
    """The host's certificate (IP SAN = its address; serverAuth and clientAuth: PostgreSQL,
    etcd's peers and clients, Patroni as etcd's client) and key, signed by the lab CA."""
    d = secrets_dir()
    ca_key, ca_crt = d / "ca.key", ca_file()
    if not ca_crt.exists():
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "3650", "-subj", "/CN=comptoir lab postgres CA", "-keyout", str(ca_key), "-out", str(ca_crt),
        )
        ca_crt.chmod(0o644)
    key, crt = d / "hosts" / f"{host.name}.key", d / "hosts" / f"{host.name}.crt"
    if not crt.exists():
        key.parent.mkdir(mode=0o700, exist_ok=True)
        csr, ext = d / "hosts" / f"{host.name}.csr", d / "hosts" / f"{host.name}.ext"
        ext.write_text(f"subjectAltName=IP:{host.address}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={host.name}", "-keyout", str(key), "-out", str(csr),
        )
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-CAserial", str(d / "ca.srl"), "-days", "825", "-out", str(crt), "-extfile", str(ext),
        )
        csr.unlink()
        ext.unlink()
    return crt, key


def _password(path: Path, owner: str = "root") -> bytes:
    """A password of the lab, created once."""
    if not path.exists():
        _write(path, token_urlsafe(24).encode() + b"\n", owner)
    return path.read_bytes()


def _install_secrets(host: spec.Host, member: dict) -> None:
    """Every secret the host's settings name, at the path they name, owned by the account that
    reads it (etcd's copies by etcd, as the module's sops-nix secrets), mode 0600."""
    crt, key = _certificate(host)
    content = {
        "ca": ca_file().read_bytes(),
        "cert": crt.read_bytes(),
        "key": key.read_bytes(),
        "replicationPassword": _password(secrets_dir() / "replication-password"),
        "rewindPassword": _password(secrets_dir() / "rewind-password"),
        "restapiPassword": _password(secrets_dir() / "restapi-password"),
    }
    _mkdir(_secrets_root(host), "root", 0o711)
    for purpose, path_text in member["secrets"].items():
        source = ETCD_COPIES.get(purpose, purpose)
        if source not in content:
            raise SystemExit(f"lab: the settings name a secret the lab does not make: {purpose}")
        path = Path(path_text)
        owner = ETCD_USER if purpose in ETCD_COPIES else ADMIN_USER
        _mkdir(path.parent, owner)
        _write(path, content[source], owner)


def _backup_config(host: spec.Host, member: dict) -> Path:
    """pgBackRest's configuration, the module's: the generated sections, the repository (one
    for all members, as the module requires with several hosts) and a lock directory."""
    directory = host.dir / "pgbackrest"
    _mkdir(directory / "lock", ADMIN_USER)
    sections = copy.deepcopy(member["backup"])
    sections["global"].update({"repo1-type": "posix", "repo1-path": str(_repository()), "lock-path": str(directory / "lock")})
    text = "".join(
        f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in sorted(values.items())) + "\n"
        for name, values in sorted(sections.items())
    )
    path = directory / "pgbackrest.conf"
    _write(path, text.encode(), ADMIN_USER)
    return path


def _repository() -> Path:
    return spec.lab_dir() / "postgres" / "backup"


def _prepare(host: spec.Host) -> dict[str, list[Path]]:
    """Directories, secrets and configuration files of a host (idempotent). Returns the
    directories each account works in."""
    member = _member(host)
    paths = _paths(member)
    exporter = _exporter_account(member)
    ensure_system_account(exporter, "postgres")  # on NixOS the exporter module declares it
    _install_secrets(host, member)
    _mkdir(paths["data"].parent, ADMIN_USER)
    _mkdir(paths["socket"], ADMIN_USER, 0o755)
    _mkdir(paths["patroni"], ADMIN_USER)
    _mkdir(paths["etcd"], ETCD_USER)
    _write(paths["patroni"] / "patroni.yaml", json.dumps(member["settings"], indent=1).encode(), ADMIN_USER)
    backup = _backup_config(host, member)
    secrets = {purpose: Path(path).parent for purpose, path in member["secrets"].items()}
    return {
        ADMIN_USER: [paths["data"].parent, paths["socket"], paths["patroni"], backup.parent, secrets["key"]],
        ETCD_USER: [paths["etcd"], secrets["etcdKey"]],
        exporter: [paths["socket"]],
    }


# --- Processes ------------------------------------------------------------------------------------


def _files(host: spec.Host, name: str) -> tuple[Path, Path]:
    return host.dir / "log" / f"{name}.log", host.dir / "run" / f"{name}.pid"


def start_host(lab: spec.Lab, host: spec.Host) -> None:
    """Starts the host's etcd, then its Patroni (which starts PostgreSQL), then the PostgreSQL
    exporter (which connects at each scrape), unless running."""
    member = _member(host)
    paths = _paths(member)
    log_path, pid_path = _files(host, "etcd")
    if pid_of(pid_path) is None:
        args = etcd_args({"patroni": {spec.ENV: cluster()}}, spec.ENV, host.name)
        spawn(host.netns, ["etcd", *args], log_path, pid_path, user=ETCD_USER, cwd=paths["etcd"])
    log_path, pid_path = _files(host, "patroni")
    if pid_of(pid_path) is None:
        # The passwords as the module passes them: each variable of environmentFiles set to the
        # contents of its file. Nothing else is inherited (an exported PGPASSWORD would break
        # replication and pg_rewind).
        env = {name: Path(path).read_text().strip() for name, path in member["environmentFiles"].items()}
        env["PGBACKREST_CONFIG"] = str(host.dir / "pgbackrest" / "pgbackrest.conf")
        spawn(
            host.netns,
            ["patroni", str(paths["patroni"] / "patroni.yaml")],
            log_path,
            pid_path,
            env=env,
            user=ADMIN_USER,
            # initdb and pg_ctl fail where the account cannot read its working directory.
            cwd=paths["patroni"],
        )
    log_path, pid_path = _files(host, "postgres-exporter")
    if pid_of(pid_path) is None:
        # The module's ExecStart and environment (services.prometheus.exporters.postgres).
        spawn(
            host.netns,
            ["prometheus-postgres-exporter", f"--web.listen-address={host.address}:{exporter_port()}", "--web.telemetry-path=/metrics"],
            log_path,
            pid_path,
            env={"DATA_SOURCE_NAME": _exporter_dsn(member)},
            user=_exporter_account(member),
            cwd=Path("/"),
        )


def view(lab: spec.Lab) -> dict | None:
    """Patroni's view of the cluster (GET /cluster), asked from inside a postgres host, of its
    own REST API; None when no member answers."""
    for host in lab.of("postgres"):
        address = _member(host)["settings"]["restapi"]["connect_address"]
        out = ns_run(host.netns, ["curl", "-sf", "--max-time", "2", f"http://{address}/cluster"], check=False)
        if out.returncode == 0:
            return json.loads(out.stdout)
    return None


def etcd_leader(lab: spec.Lab) -> str | None:
    """The postgres host whose etcd leads the raft group, asked of each etcd from inside its host
    with the host's client certificate. A failover is slower when this host is lost with the
    primary: a new etcd leader renews every lease, Patroni's leader key included, to its full
    ttl."""
    for host in lab.of("postgres"):
        etcd = _member(host)["etcd"]
        tls = ["--cacert", etcd["trustedCaFile"], "--cert", etcd["certFile"], "--key", etcd["keyFile"]]
        url = f"{etcd['advertiseClientUrls'][0]}/v3/maintenance/status"
        out = ns_run(host.netns, ["curl", "-sf", "--max-time", "2", *tls, "-X", "POST", "-d", "{}", url], check=False)
        if out.returncode == 0:
            found = json.loads(out.stdout)
            if found["header"]["member_id"] == found.get("leader"):
                return host.name
    return None


def members(lab: spec.Lab) -> dict[str, dict]:
    """The members Patroni knows, by name (empty when none answers)."""
    found = view(lab)
    return {m["name"]: m for m in (found or {}).get("members", [])}


def leader(found: dict[str, dict]) -> str | None:
    return next((name for name, m in found.items() if m["role"] == "leader" and m["state"] == "running"), None)


def healthy(lab: spec.Lab, found: dict[str, dict]) -> bool:
    """A running leader, a synchronous standby, and every postgres host replicating."""
    replicating = ("running", "streaming")
    return (
        leader(found) is not None
        and any(m["role"] == "sync_standby" and m["state"] in replicating for m in found.values())
        and all(h.name in found and found[h.name]["state"] in replicating for h in lab.of("postgres"))
    )


def wait_healthy(lab: spec.Lab, timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = members(lab)
        if healthy(lab, found):
            return found
        if time.monotonic() > deadline:
            summary = ", ".join(f"{n} {m['role']} {m['state']}" for n, m in sorted(found.items())) or "no member answers"
            logs = " ".join(str(_files(h, "patroni")[0]) for h in lab.of("postgres"))
            raise SystemExit(f"lab: the PostgreSQL cluster is not healthy after {timeout:.0f} s ({summary}); see {logs}")
        time.sleep(0.5)


def _provision(primary: spec.Host) -> None:
    """What the module's postgres-backup-stanza and postgres-provision units do on the primary:
    the backup stanza, the exporter's role, one role and database per service."""
    c = cluster()
    paths = _paths(_member(primary))
    bin_dir = Path(_member(primary)["settings"]["postgresql"]["bin_dir"])
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    as_admin = {"user": ADMIN_USER, "cwd": paths["patroni"]}
    backup = {**base, "PGBACKREST_CONFIG": str(primary.dir / "pgbackrest" / "pgbackrest.conf")}
    ns_run(primary.netns, ["pgbackrest", f"--stanza={c['stanza']}", "stanza-create"], env=backup, **as_admin)
    psql = [str(bin_dir / "psql"), "-X", "-q", "-h", str(paths["socket"]), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1"]
    ns_run(primary.netns, psql, input=c["exporterRoleSql"], env=base, **as_admin)
    # Over the socket as postgres (peer): no administrator password exists.
    admin = {**base, "COMPTOIR_PG_ADMIN_URL": f"host={paths['socket']} user=postgres dbname=postgres"}
    xtask = spec.cargo_binary("comptoir-xtask", "comptoir-xtask")
    _let_reach(ADMIN_USER, [xtask.parent])
    for database in c["databases"]:
        ns_run(primary.netns, [str(xtask), "provision-db", "-", database["name"], str(password_file(database))], env=admin, **as_admin)


def _service_passwords() -> Path:
    """One password per service database, read by provisioning (as the administrator account)
    and later by the apps role. Returns their directory."""
    directories = {password_file(database).parent for database in cluster()["databases"]}
    for directory in directories:
        _mkdir(directory, ADMIN_USER)
    for database in cluster()["databases"]:
        _password(password_file(database), ADMIN_USER)
    (directory,) = directories
    return directory


def up(lab: spec.Lab) -> None:
    started = time.monotonic()
    _install()
    hosts = lab.of("postgres")
    _mkdir(secrets_dir(), "root", 0o711)
    _mkdir(_repository(), ADMIN_USER, 0o750)
    reach = {ADMIN_USER: [_service_passwords(), _repository()], ETCD_USER: []}
    for host in hosts:
        for user, directories in _prepare(host).items():
            reach.setdefault(user, []).extend(directories)
    for user, directories in reach.items():
        _let_reach(user, directories)
    for host in hosts:
        start_host(lab, host)
    found = wait_healthy(lab, 180)
    primary = lab.host(leader(found))
    _provision(primary)
    for host in hosts:
        if not wait_tcp(host.netns, host.address, exporter_port(), 30):
            raise SystemExit(f"lab: the PostgreSQL exporter of {host.name} does not listen (see {_files(host, 'postgres-exporter')[0]})")
    log(
        f"postgres: {len(hosts)} members healthy in {time.monotonic() - started:.1f} s, primary {primary.name}, "
        f"{len(cluster()['databases'])} service databases, {len(hosts)} exporters on port {exporter_port()}"
    )


def down(lab: spec.Lab) -> None:
    """Stops the exporters, then Patroni (which stops PostgreSQL) on the replicas first, then on
    the primary (so no replica takes over meanwhile), then etcd."""
    hosts = lab.of("postgres")
    for host in hosts:
        stop(_files(host, "postgres-exporter")[1])
    primary = leader(members(lab))
    for host in sorted(hosts, key=lambda h: h.name == primary):
        stop(_files(host, "patroni")[1], timeout=60)
    for host in hosts:
        stop(_files(host, "etcd")[1])


def status(lab: spec.Lab) -> list[str]:
    found = members(lab)
    if not found:
        return ["postgres: no Patroni answers"]
    etcd = etcd_leader(lab)
    lines = []
    for host in lab.of("postgres"):
        m = found.get(host.name)
        if m is None:
            lines.append(f"postgres: {host.name:10} not a running member")
            continue
        lag = m.get("lag")
        lag_text = "" if lag is None else f"  lag {lag} B" if isinstance(lag, int) else f"  lag {lag}"
        etcd_text = "  (etcd leader)" if host.name == etcd else ""
        lines.append(f"postgres: {host.name:10} {m['role']:12} {m['state']:9} timeline {m.get('timeline', '?')}{lag_text}{etcd_text}")
    return lines
