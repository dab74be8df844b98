"""What the lab runs, evaluated from the pure-Nix generators under nixos/lib: the same data the
NixOS modules install, so production and the lab read one source. Nothing here decides a
setting; it only points paths (data, secrets, binaries) at the lab's directories through the
generators' `layout` parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = "lab"


def cache_dir() -> Path:
    base = os.environ.get("COMPTOIR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "comptoir"
    )
    return Path(base)


def lab_dir() -> Path:
    """Every file the lab writes lives under here (data, logs, pid files, secrets). Not under
    the cache in root's home: PostgreSQL, Prometheus and the exporters run as their own
    accounts, which cannot traverse /root (mode 0700)."""
    return Path(os.environ.get("COMPTOIR_LAB_DIR") or "/var/lib/comptoir-lab")


def target_dir() -> Path:
    """Cargo's target directory: CARGO_TARGET_DIR, else the cache's (where .ci/run builds)."""
    return Path(os.environ.get("CARGO_TARGET_DIR") or cache_dir() / "target")


def cargo_binary(binary: str, package: str) -> Path:
    """A debug binary of the workspace (PACKAGE's), built when missing with every other one, as
    the tests build them (`cargo build --locked --workspace --bins`: a build of one package
    resolves other features and would compile most dependencies again)."""
    path = target_dir() / "debug" / binary
    if not path.exists():
        print(f"lab: building {binary} of {package} (cargo build --locked --workspace --bins)", file=sys.stderr, flush=True)
        subprocess.run(
            ["cargo", "build", "--locked", "--workspace", "--bins"],
            cwd=ROOT,
            env={**os.environ, "CARGO_TARGET_DIR": str(target_dir())},
            check=True,
        )
    return path


def nix_eval(expr: str) -> object:
    """`nix-instantiate --eval --strict --json` of an expression, in the repository root."""
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        errors = "\n".join(l for l in out.stderr.splitlines() if "nixbld" not in l)
        raise SystemExit(f"lab: nix-instantiate failed:\n{errors}")
    return json.loads(out.stdout)


@dataclass
class Host:
    name: str
    address: str
    roles: list[str]

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def netns(self) -> str:
        return netns_name(self.name)

    @property
    def dir(self) -> Path:
        return lab_dir() / "hosts" / self.name


@dataclass
class Lab:
    subnet: str
    prefix_len: int
    domain: str
    admin_address: str
    smtp_relay: dict
    canary: str
    hosts: list[Host]
    firewall: dict[str, str]
    raw: dict = field(default_factory=dict)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def of(self, role: str) -> list[Host]:
        return [h for h in self.hosts if h.has(role)]


def netns_name(host: str) -> str:
    """A host's network namespace. COMPTOIR_LAB_NS_PREFIX lets two labs (e.g. two developers'
    checks) coexist: each has its own hub, so even equal addresses never meet."""
    return os.environ.get("COMPTOIR_LAB_NS_PREFIX", "") + host


def hub_name() -> str:
    return netns_name("lab-hub")


def admin_name() -> str:
    """The operators' station (the inventory's admin network): tests and load run from here."""
    return netns_name("lab-admin")


def load() -> Lab:
    data = nix_eval(
        """
        let lib = import ./nixos/lib {}; env = lib.fleet.environments.lab; in {
          inherit (env) subnet domain adminNetworks smtpRelay alerts canary hosts;
          firewall = builtins.listToAttrs (map (h: { name = h.name; value = lib.firewall.${h.name}; }) env.hosts);
        }
        """
    )
    subnet = data["subnet"]
    admin = data["adminNetworks"][0]
    if not admin.endswith("/32"):
        raise SystemExit(f"lab: the lab's admin network must be one address (/32), not {admin}")
    return Lab(
        subnet=subnet,
        prefix_len=int(subnet.split("/")[1]),
        domain=data["domain"],
        admin_address=admin.split("/")[0],
        smtp_relay=data["smtpRelay"],
        canary=data["canary"],
        hosts=[Host(h["name"], h["address"], list(h["roles"])) for h in data["hosts"]],
        firewall=data["firewall"],
        raw=data,
    )
