"""Elasticity: a third app host joins the running cluster and takes traffic, then leaves with a
drain, under a load of catalog reads through the shop's entry that must not fail once.

The host is an inventory entry as an operator would add it to nixos/fleet.nix (lab-app-3,
10.77.0.23, k3s-agent), added to the lab's spec in memory: the generators are evaluated again
with it (nixos/lib with a `fleet` argument). That changes what the other hosts admit: the
PostgreSQL, Pulsar and app hosts' firewalls, and the pg_hba Patroni installs. Both are applied
in place, as a deploy of the new inventory would: nft replaces each table in one transaction,
Patroni rewrites pg_hba.conf and reloads PostgreSQL on SIGHUP. Nothing that runs restarts
(checked: every other replica keeps its process).

Joined: its replicas are in every host's DNAT maps (read back from the kernel with nft) and
requests reach them (http_requests_total): its gateway's through the ingress, its catalog's
through the catalog's virtual address on new connections (the gateways' pooled keep-alive
connections stay with the replicas they were opened to, as with kube-proxy; that share is
reported). Leaving: out of every map first, confirmed by the controller, then stopped (each
service's graceful shutdown), then removed; then the inventory's rulesets and pg_hba again."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path

from .. import net, spec
from ..proc import log, namespace_pids, ns_run, pid_of
from ..roles import apps

NEW_HOST = {"name": "lab-app-3", "address": "10.77.0.23", "roles": ["k3s-agent"], "size": "small"}
# What the load reads, and what the fresh connections read (told apart in the counters).
LOAD_ROUTE = "/v1/categories"
FRESH_ROUTE = "/v1/products"
FRESH_CONNECTIONS = 30


def generated(extra_hosts: list[dict]) -> dict:
    """The lab's firewalls and pg_hba as the generators make them with `extra_hosts` added to
    the lab's inventory."""
    hosts = json.dumps(json.dumps(extra_hosts))
    return spec.nix_eval(
        f"""
        let
          base = import ./nixos/fleet.nix;
          env = base.environments.{spec.ENV};
          fleet = base // {{ environments = base.environments // {{
            {spec.ENV} = env // {{ hosts = env.hosts ++ builtins.fromJSON {hosts}; }};
          }}; }};
          lib = import ./nixos/lib {{ inherit fleet; }};
        in {{
          firewall = builtins.listToAttrs (map (h: {{ name = h.name; value = lib.firewall.${{h.name}}; }})
            fleet.environments.{spec.ENV}.hosts);
          pg_hba = builtins.mapAttrs (_: m: m.settings.postgresql.pg_hba) lib.patroni.{spec.ENV}.hosts;
        }}
        """
    )


def _patroni(host: spec.Host) -> tuple[int, Path]:
    """The Patroni of a postgres host and the configuration file it was started with."""
    for pid in namespace_pids(host.netns):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        except OSError:
            continue
        if any(Path(a).name == "patroni" for a in argv[:2]) and argv[-1].endswith((".yaml", ".yml")):
            return pid, Path(argv[-1])
    raise AssertionError(f"no Patroni runs on {host.name}")


def apply_pg_hba(lab: spec.Lab, hba: dict[str, list[str]]) -> int:
    """Each member's pg_hba as generated, into the configuration its Patroni reads (JSON, which
    is YAML), and a SIGHUP: Patroni rewrites pg_hba.conf and reloads PostgreSQL, which keeps
    every connection. Returns how many members changed."""
    changed = 0
    for host in lab.of("postgres"):
        pid, path = _patroni(host)
        settings = json.loads(path.read_text())
        if settings["postgresql"]["pg_hba"] != hba[host.name]:
            settings["postgresql"]["pg_hba"] = hba[host.name]
            path.write_text(json.dumps(settings, indent=1))  # in place: owner and mode stay
            os.kill(pid, signal.SIGHUP)
            changed += 1
    return changed


def in_kernel_maps(host: spec.Host, addresses: set[str]) -> bool:
    """Whether every one of `addresses` is in the proxy table the host's kernel holds."""
    out = ns_run(host.netns, ["nft", "list", "table", "ip", apps.PROXY_TABLE], check=False).stdout
    return all(re.search(rf"(?<![\d.]){re.escape(a)}(?!\d)", out) for a in addresses)


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    assert NEW_HOST["name"] not in {h.name for h in lab.hosts}, f"{NEW_HOST['name']} is in the inventory already"
    grown = generated([NEW_HOST])
    new = spec.Host(NEW_HOST["name"], NEW_HOST["address"], NEW_HOST["roles"])
    big = dataclasses.replace(lab, hosts=lab.hosts + [new], firewall=grown["firewall"])
    inventory_hba = generated([])["pg_hba"]
    first = apps.managed_hosts()[0]
    others = [r for h in apps.managed_hosts() for r in apps.replicas_of(h)]
    pids_before = {r: pid_of(r.pid_path) for r in others}
    replicas = apps.replicas_of(new)
    gateway = next(r for r in replicas if r.service == apps.public_service())
    catalog = next(r for r in replicas if r.service == "catalog")
    catalog_port = apps.cluster()["services"]["catalog"]["port"]

    with apps.Load([h.address for h in apps.k3s_hosts(lab)], path=LOAD_ROUTE) as load:
        started = time.monotonic()
        load.wait_for(int(load.rate * 3), started, 60)
        join_at = time.monotonic()
        reloaded = apply_pg_hba(lab, grown["pg_hba"])
        try:
            try:
                apps.join(big, new)
            except SystemExit as error:
                raise AssertionError(f"{new.name} did not join: {error}") from None
            joined = time.monotonic() - join_at
            assert all(in_kernel_maps(h, {r.address for r in replicas}) for h in apps.managed_hosts()), (
                f"{new.name}'s replicas are not in every host's DNAT maps"
            )
            before = {r: apps.requests_served(r, LOAD_ROUTE) for r in (gateway, catalog)}
            measured_from = time.monotonic()
            load.wait_for(int(load.rate * 10), measured_from, 60)
            window = len(load.since(measured_from))
            ingress, pooled = (apps.requests_served(r, LOAD_ROUTE) - before[r] for r in (gateway, catalog))
            assert ingress > 0, f"{gateway.id} took none of {window} requests through the ingress"
            # The gateways call the catalog on keep-alive connections opened before the host
            # joined, and DNAT balances connections: fresh ones must reach the new replica.
            base = apps.requests_served(catalog, FRESH_ROUTE)
            for _ in range(FRESH_CONNECTIONS):
                apps.http_get(first.netns, apps.vip("catalog"), catalog_port, FRESH_ROUTE, 10.0)
            fresh = apps.requests_served(catalog, FRESH_ROUTE) - base
            assert fresh > 0, f"none of {FRESH_CONNECTIONS} new connections to the catalog reached {catalog.id}"
        finally:
            leave_at = time.monotonic()
            steps = apps.leave(lab, new)
            apply_pg_hba(lab, inventory_hba)
            left = time.monotonic() - leave_at
        assert not any(in_kernel_maps(h, {r.address}) for h in apps.managed_hosts() for r in replicas), (
            f"{new.name}'s replicas are still in a host's DNAT maps"
        )
        assert new.netns not in net.namespaces(), f"{new.name}'s namespace is still there"
        after = time.monotonic()
        load.wait_for(int(load.rate * 3), after, 60)

    restarted = [r.id for r, pid in pids_before.items() if pid_of(r.pid_path) != pid]
    assert not restarted, f"replicas restarted while {new.name} came and went: {restarted}"
    failed = load.failures(started)
    total = len(load.since(started))
    log(f"elasticity: {total} requests, {len(failed)} failed")
    assert not failed, f"{len(failed)} of {total} requests failed: {apps.Load.describe(failed)}"
    return [
        ("host", f"{new.name} {new.address} (an inventory entry added in memory, generators evaluated again)"),
        ("joined", f"{joined:.1f} s until in every host's maps (pg_hba reloaded on {reloaded} members)"),
        ("traffic", f"{gateway.id} {ingress} of {window} requests through the ingress; {catalog.id} {pooled} "
                    f"through the gateways' pooled connections, {fresh} of {FRESH_CONNECTIONS} new connections"),
        ("left", f"{left:.1f} s (drain {steps['drain']:.1f} s, stop and removal {steps['removal']:.1f} s)"),
        ("requests", f"{total}, failed 0"),
    ]
