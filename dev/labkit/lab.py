"""dev/lab: the fleet lab (docs/lab.md).

  dev/lab up        bring the inventory's `lab` environment up (idempotent: what runs stays)
  dev/lab down      stop everything and leave nothing behind (namespaces, links, processes,
                    routes, SysV shared memory); data stays under /var/lib/comptoir-lab unless
                    --purge
  dev/lab status    what runs where, with resident memory
  dev/lab test [--short] [SCENARIO...]
                    the scenarios (all, or those named; --short: the CI subset), with the lab up
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import time

from . import net, spec
from .proc import log, namespace_pids, rss_kib, run

# Roles in start order (stopped in reverse). Each module has up(lab), down(lab) and
# status(lab) -> list[str]; a role whose module is absent is not part of the lab yet.
ROLES = ["postgres", "pulsar", "smtp", "apps", "monitoring"]

# Scenarios of `dev/lab test` in order; SHORT is what CI runs.
SCENARIOS = ["firewall", "purchase", "alerts", "broker_loss", "db_failover", "app_loss", "elasticity", "rollout"]
SHORT = ["firewall", "alerts", "broker_loss"]


def roles() -> list:
    found = []
    for name in ROLES:
        try:
            found.append(importlib.import_module(f"labkit.roles.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"labkit.roles.{name}":
                raise
    return found


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("lab: run as root (network namespaces, nftables)")
    for tool in ("ip", "nft", "nix-instantiate", "setpriv"):
        if shutil.which(tool) is None:
            raise SystemExit(f"lab: {tool} is needed (dev/bootstrap.sh installs it)")


def cmd_up(_args) -> int:
    started = time.monotonic()
    lab = spec.load()
    net.up(lab)
    log(f"network: {len(net.stations(lab))} namespaces on {lab.subnet}, firewalls applied")
    for role in roles():
        role.up(lab)
    log(f"up in {time.monotonic() - started:.1f} s, {total_rss_mib():.0f} MiB resident")
    return 0


def cmd_down(args) -> int:
    lab = spec.load()
    for role in reversed(roles()):
        try:
            role.down(lab)
        except SystemExit as error:
            log(f"{role.__name__}: {error}")
    net.down(lab)
    remove_orphan_shared_memory()
    if args.purge:
        shutil.rmtree(spec.lab_dir(), ignore_errors=True)
        log(f"removed {spec.lab_dir()}")
    return 0


def remove_orphan_shared_memory() -> None:
    """A PostgreSQL killed with SIGKILL can leave its SysV segment behind; remove the segments
    nobody is attached to that belong to the lab's database account."""
    # `ipcs -m` columns: key shmid owner perms bytes nattch [status]
    for line in run(["ipcs", "-m"], check=False).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit() and parts[2] == "postgres" and parts[5] == "0":
            subprocess.run(["ipcrm", "-m", parts[1]], check=False)


def lab_namespaces() -> list[str]:
    """Every namespace of this lab: the hub, the hosts, the stations and the pods (all named
    after the `lab-` hosts, under COMPTOIR_LAB_NS_PREFIX)."""
    prefix = spec.netns_name("lab-")
    return sorted(ns for ns in net.namespaces() if ns.startswith(prefix))


def total_rss_mib() -> float:
    """Resident memory of every process of the lab, the pods' included."""
    return sum(rss_kib(pid) for ns in lab_namespaces() for pid in namespace_pids(ns)) / 1024


def cmd_status(_args) -> int:
    lab = spec.load()
    present = net.namespaces()
    if spec.hub_name() not in present:
        print("lab: down")
        return 3
    for ns, address in net.stations(lab):
        if ns not in present:
            print(f"{ns:16} {address:15} (absent)")
            continue
        pids = namespace_pids(ns)
        names = sorted({_comm(p) for p in pids})
        mib = sum(rss_kib(p) for p in pids) / 1024
        print(f"{ns:16} {address:15} {len(pids):3} processes {mib:7.0f} MiB  {' '.join(names)}")
    stations = {ns for ns, _ in net.stations(lab)} | {spec.hub_name()}
    pods = [ns for ns in lab_namespaces() if ns not in stations]
    pids = [pid for ns in pods for pid in namespace_pids(ns)]
    print(f"{'pods':16} {len(pods):3} namespaces    {len(pids):3} processes {sum(rss_kib(p) for p in pids) / 1024:7.0f} MiB")
    for role in roles():
        for line in role.status(lab):
            print(line)
    print(f"total: {total_rss_mib():.0f} MiB resident (every namespace of the lab)")
    return 0


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def cmd_test(args) -> int:
    lab = spec.load()
    if spec.hub_name() not in net.namespaces():
        raise SystemExit("lab: the lab is down: dev/lab up first")
    names = args.scenarios or (SHORT if args.short else SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"lab: unknown scenario(s) {unknown}; known: {SCENARIOS}")
    results = []
    for name in names:
        module = importlib.import_module(f"labkit.scenarios.{name}")
        log(f"── scenario {name} ──")
        started = time.monotonic()
        try:
            rows = module.run(lab)
            ok = True
        except AssertionError as error:
            rows = [(name, f"FAILED: {error}")]
            ok = False
        results.append((name, ok, time.monotonic() - started, rows))
    print()
    print("| scenario | result | seconds | measured |")
    print("|---|---|---|---|")
    for name, ok, seconds, rows in results:
        measured = "; ".join(f"{k}: {v}" for k, v in rows)
        print(f"| {name} | {'pass' if ok else 'FAIL'} | {seconds:.0f} | {measured} |")
    return 0 if all(ok for _, ok, _, _ in results) else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dev/lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up").set_defaults(func=cmd_up)
    down = sub.add_parser("down")
    down.add_argument("--purge", action="store_true", help="also remove the lab's data")
    down.set_defaults(func=cmd_down)
    sub.add_parser("status").set_defaults(func=cmd_status)
    test = sub.add_parser("test")
    test.add_argument("--short", action="store_true", help=f"the CI subset: {' '.join(SHORT)}")
    test.add_argument("scenarios", nargs="*")
    test.set_defaults(func=cmd_test)
    args = parser.parse_args(argv)
    require_root()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
