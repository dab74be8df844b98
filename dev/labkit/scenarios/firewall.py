"""Firewall: from every station of the lab (each host, the operators' station, the mail relay),
every TCP port that listens on every other host is tried once. A port the host's ruleset allows
from that source must accept the connection; every other one must be dropped (the input policy:
the attempt times out). The allowances are the generator's data (`firewallRules`, which
dev/fleet/check-hosts.sh recomputes from the service graph); what is tested here is what the
kernel does with the very ruleset text the NixOS module installs. Ports are enumerated with `ss`
inside each host, not sampled."""

from __future__ import annotations

import ipaddress
import sys

from .. import net, spec
from ..proc import PROBE, log, ns_run


def listening(host: spec.Host) -> list[int]:
    """TCP ports that listen on the host's address or on every address."""
    out = ns_run(host.netns, ["ss", "-Htln"]).stdout
    ports = set()
    for line in out.splitlines():
        local = line.split()[3]
        address, _, port = local.rpartition(":")
        address = address.strip("[]")
        if address in ("*", "0.0.0.0", "::", host.address):
            ports.add(int(port))
    return sorted(ports)


def allowed(rules: list[dict], port: int, source: str) -> bool:
    src = ipaddress.ip_address(source)
    return any(
        r["proto"] == "tcp"
        and r["port"] == port
        and any(src in ipaddress.ip_network(a if "/" in a else f"{a}/32") for a in r["from"])
        for r in rules
    )


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    rules = spec.nix_eval("(import ./nixos/lib {}).firewallRules")
    targets = {h.name: listening(h) for h in lab.hosts}
    checked = opened = dropped = 0
    problems = []
    for source_ns, source_address in net.stations(lab):
        for host in lab.hosts:
            if host.netns == source_ns or not targets[host.name]:
                continue
            out = ns_run(source_ns, [sys.executable, str(PROBE), "scan", host.address, *map(str, targets[host.name])]).stdout
            for line in out.splitlines():
                port_text, state = line.split()
                port = int(port_text)
                checked += 1
                expected = "open" if allowed(rules[host.name], port, source_address) else "timeout"
                if state != expected:
                    problems.append(f"{source_ns} → {host.name}:{port} {state}, expected {expected}")
                elif state == "open":
                    opened += 1
                else:
                    dropped += 1
    log(f"firewall: {checked} (source, host, port) tried: {opened} open as allowed, {dropped} dropped as required")
    assert not problems, "; ".join(problems[:20]) + (f" (and {len(problems) - 20} more)" if len(problems) > 20 else "")
    listening_total = sum(len(p) for p in targets.values())
    return [("listening ports", str(listening_total)), ("tried", str(checked)), ("open as allowed", str(opened)), ("dropped", str(dropped))]
