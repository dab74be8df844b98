"""The lab's network: one namespace per host on a bridge that lives in a hub namespace of its
own. Nothing is routed to or from the machine: the hub has no address and no route, the host
namespaces no default route, and while the lab is up the machine's own namespace gets an
`unreachable` route for the lab's range, so a client mistakenly run outside the lab fails at
once instead of reaching this machine's default gateway (which accepts any TCP connection)."""

from __future__ import annotations

import ipaddress
import json
import subprocess

from . import spec
from .proc import kill_namespace, log, run

BRIDGE = "br0"
HOST_IF = "eth0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], check=check)


def namespaces() -> set[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    return {entry["name"] for entry in json.loads(out or "[]")}


def _extra_stations(lab: spec.Lab) -> list[tuple[str, str]]:
    """Namespaces that are not inventory hosts: the operators' station (the admin network) and
    the mail relay the environment names (Mailpit stands in for it)."""
    return [
        (spec.admin_name(), lab.admin_address),
        (spec.netns_name("lab-smtp"), lab.smtp_relay["address"]),
    ]


def stations(lab: spec.Lab) -> list[tuple[str, str]]:
    """Every namespace of the lab but the hub, with its address."""
    return [(h.netns, h.address) for h in lab.hosts] + _extra_stations(lab)


def check_range_is_free(lab: spec.Lab) -> None:
    """Refuses to start when the lab's range overlaps a route or an address of the machine
    (other than the default route and our own unreachable route)."""
    net = ipaddress.ip_network(lab.subnet)
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") == "unreachable" and dst == lab.subnet:
            continue
        if route.get("table") == "local" and route.get("type") in ("local", "broadcast"):
            # The machine's own addresses: checked below.
            continue
        try:
            other = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.overlaps(other):
            raise SystemExit(f"lab: the lab's range {net} overlaps the machine's route {dst}: refusing to start")
    addrs = json.loads(run(["ip", "-j", "-4", "addr"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if ipaddress.ip_address(a["local"]) in net:
                raise SystemExit(f"lab: the machine has {a['local']} ({link['ifname']}) inside the lab's range {net}")


def up(lab: spec.Lab) -> None:
    existing = namespaces()
    hub = spec.hub_name()
    if hub not in existing:
        check_range_is_free(lab)
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", hub, "link", "set", BRIDGE, "up")
    for ns, address in stations(lab):
        if ns in existing:
            continue
        add_station(lab, ns, address)
    # While the lab is up, nothing in the machine's own namespace can reach its range.
    _ip("route", "replace", "unreachable", lab.subnet)
    for host in lab.hosts:
        apply_firewall(lab, host)


def add_station(lab: spec.Lab, ns: str, address: str) -> None:
    hub = spec.hub_name()
    peer = f"vh{ipaddress.ip_address(address).packed[-1]}"
    _ip("netns", "add", ns)
    _ip("-n", hub, "link", "add", peer, "type", "veth", "peer", "name", HOST_IF, "netns", ns)
    _ip("-n", hub, "link", "set", peer, "master", BRIDGE, "up")
    _ip("-n", ns, "addr", "add", f"{address}/{lab.prefix_len}", "dev", HOST_IF)
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "link", "set", HOST_IF, "up")


def apply_firewall(lab: spec.Lab, host: spec.Host) -> None:
    """The host's nftables ruleset: the very text nixos/modules/common.nix installs."""
    run(["ip", "netns", "exec", host.netns, "nft", "-f", "-"], input=lab.firewall[host.name])


def remove_station(ns: str, address: str) -> None:
    kill_namespace(ns)
    _ip("netns", "delete", ns, check=False)
    peer = f"vh{ipaddress.ip_address(address).packed[-1]}"
    # Deleting the namespace deletes its end of the veth, and with it the hub's end.
    _ip("-n", spec.hub_name(), "link", "delete", peer, check=False)


def down(lab: spec.Lab) -> None:
    existing = namespaces()
    for ns, address in stations(lab):
        if ns in existing:
            remove_station(ns, address)
    hub = spec.hub_name()
    if hub in existing:
        kill_namespace(hub)
        _ip("netns", "delete", hub, check=False)
    # The safety route is the machine's, shared by every lab on this range (another prefix's
    # may still be up): it goes with the last hub.
    if not any(ns.endswith("lab-hub") for ns in namespaces()):
        _ip("route", "del", "unreachable", lab.subnet, check=False)
    log("network removed")
