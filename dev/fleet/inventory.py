#!/usr/bin/env python3
"""Invariants of the fleet inventory that every generator relies on (dev/check-fleet.sh).

Reads one JSON document on stdin, evaluated from nixos/lib by dev/check-fleet.sh:
{"fleet": ..., "services": ..., "graph": ..., "rollout": {env: [host, ...]}, "clusterInit": {env: host}}
and prints every broken invariant (exit 1) or a one-line summary (exit 0).
"""

import ipaddress
import json
import sys

ROLES = {"k3s-server", "k3s-agent", "pulsar", "postgres", "monitoring", "ci"}
# Roles an environment cannot run without (the ci host is production's only).
REQUIRED = {"k3s-server", "pulsar", "postgres", "monitoring"}


def check(doc):
    fleet, services, graph = doc["fleet"], doc["services"], doc["graph"]
    problems = []
    names, addresses = {}, {}
    subnets = {}
    for env, spec in sorted(fleet["environments"].items()):
        subnet = ipaddress.ip_network(spec["subnet"])
        for other, net in subnets.items():
            if subnet.overlaps(net):
                problems.append(f"{env}: subnet {subnet} overlaps {other}'s {net}")
        subnets[env] = subnet
        hosts = spec["hosts"]
        if not hosts:
            problems.append(f"{env}: no hosts")
            continue
        for host in hosts:
            name, address = host["name"], host["address"]
            if name in names:
                problems.append(f"{env}: host name {name} also in {names[name]}")
            names[name] = env
            if address in addresses:
                problems.append(f"{env}: {name} has {address}, already {addresses[address]}'s")
            addresses[address] = name
            if ipaddress.ip_address(address) not in subnet:
                problems.append(f"{env}: {name}'s {address} is outside {subnet}")
            if ipaddress.ip_address(address) in (subnet.network_address, subnet.broadcast_address):
                problems.append(f"{env}: {name}'s {address} is the subnet's network or broadcast address")
            if host["size"] not in fleet["sizes"]:
                problems.append(f"{env}: {name} has unknown size {host['size']!r}")
            if not host["roles"]:
                problems.append(f"{env}: {name} has no role")
            for role in host["roles"]:
                if role not in ROLES:
                    problems.append(f"{env}: {name} has unknown role {role!r}")
            if "k3s-server" in host["roles"] and "k3s-agent" in host["roles"]:
                problems.append(f"{env}: {name} is both k3s server and agent")
        present = {role for host in hosts for role in host["roles"]}
        for role in sorted(REQUIRED - present):
            problems.append(f"{env}: no host has the {role} role")
        env_names = [host["name"] for host in hosts]
        if spec["canary"] not in env_names:
            problems.append(f"{env}: canary {spec['canary']} is not one of its hosts")
        rollout = doc["rollout"][env]
        if rollout[:1] != [spec["canary"]]:
            problems.append(f"{env}: rollout does not start with the canary: {rollout}")
        if sorted(rollout) != sorted(env_names):
            problems.append(f"{env}: rollout {rollout} is not every host once ({env_names})")
        servers = [host["name"] for host in hosts if "k3s-server" in host["roles"]]
        if len(servers) % 2 == 0:
            # The embedded etcd needs a majority: an even count adds load and no tolerance.
            problems.append(f"{env}: {len(servers)} k3s servers; etcd needs an odd number")
        if servers and doc["clusterInit"][env] != servers[0]:
            problems.append(f"{env}: clusterInit {doc['clusterInit'][env]} is not the first server {servers[0]}")
        for network in spec["adminNetworks"]:
            ipaddress.ip_network(network)  # raises on a malformed range
        relay = spec["smtpRelay"]["address"]
        if relay in addresses:
            problems.append(f"{env}: the mail relay {relay} is a fleet host's address")
    if sorted(fleet["admins"]) == []:
        problems.append("no admins: nobody could log in")
    for admin, spec in fleet["admins"].items():
        for key in spec["sshKeys"]:
            if not key.startswith(("ssh-ed25519 ", "ecdsa-sha2-", "sk-ssh-ed25519@openssh.com ")):
                problems.append(f"admin {admin}: not an Ed25519/ECDSA public key: {key[:30]}...")

    # The service graph names exactly the services the flake ships.
    service_names = set(services)
    if set(graph["needs"]) != service_names:
        problems.append(
            f"graph.needs covers {sorted(graph['needs'])}, the services are {sorted(service_names)}"
        )
    for caller, callees in graph["calls"].items():
        for name in [caller, *callees]:
            if name not in service_names:
                problems.append(f"graph.calls names unknown service {name!r}")
    for name in graph["public"]:
        if name not in service_names:
            problems.append(f"graph.public names unknown service {name!r}")
    for name, needs in graph["needs"].items():
        for need in needs:
            if need not in {"postgres", "pulsar", "smtp"}:
                problems.append(f"graph.needs.{name} has unknown need {need!r}")
    return problems, len(names)


def main():
    doc = json.load(sys.stdin)
    problems, hosts = check(doc)
    if problems:
        for problem in problems:
            print(f"inventory: {problem}", file=sys.stderr)
        return 1
    print(f"inventory: {hosts} hosts in {len(doc['fleet']['environments'])} environments, invariants hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
