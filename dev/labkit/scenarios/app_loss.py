"""App host loss: under a load of catalog reads through the shop's entry from the operators'
station, every process of one app host is killed at once (the host's own and its pods'), as
when the machine dies. The other host keeps serving: the endpoints controller takes the dead
host's replicas out of every host's maps after two failed probes (the manifests' readiness
failureThreshold; one second apart here, five in the manifests), and the requests that reach
those replicas meanwhile fail. Measured: requests failed, when after the kill the last one
failed, when the maps changed; then the host is brought back (its roles' `up`) and must serve
again.

The load enters through the surviving host only: an outside balancer drops a dead machine by
its own health checks, and what is measured here is the cluster's reaction. The killed host is
an agent: in k3s, losing the only server also stops every endpoint update (the lab's
controller runs outside the hosts)."""

from __future__ import annotations

import time

from .. import spec
from ..proc import kill_namespace, log
from ..roles import apps
from . import restore_node_exporters

# How long the load must run without a failure for the cluster to count as recovered.
QUIET_SECONDS = 10.0
RECOVERY_DEADLINE = 60.0


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    hosts = apps.k3s_hosts(lab)
    assert len(hosts) >= 2, f"app_loss needs two app hosts, the lab has {len(hosts)}"
    victim = next((h for h in hosts if h.has("k3s-agent")), hosts[-1])
    survivors = [h for h in hosts if h.name != victim.name]
    victim_ids = {r.id for r in apps.replicas_of(victim)}

    with apps.Load([h.address for h in survivors]) as load:
        warm = time.monotonic()
        load.wait_for(int(load.rate * 5), warm, 60)
        assert not load.failures(warm), f"requests failed before the fault: {apps.Load.describe(load.failures(warm))}"

        killed_at = time.monotonic()
        killed = kill_namespace(victim.netns) + sum(kill_namespace(r.netns) for r in apps.replicas_of(victim))
        log(f"app_loss: {killed} processes of {victim.name} killed")
        changed = apps.wait_endpoints(lambda e: not any(apps.in_maps(i, e) for i in victim_ids), 30,
                                      what=f"{victim.name}'s replicas out of the maps")
        maps_at = changed["changed_at"]  # when the controller's last nft transaction succeeded

        # Recovered once the load has run QUIET_SECONDS past both the maps' change and the
        # last failure.
        while True:
            failed = load.failures(killed_at)
            quiet_from = max([maps_at] + [o.at + o.seconds for o in failed])
            if len(load.since(quiet_from)) >= load.rate * QUIET_SECONDS:
                break
            assert time.monotonic() - killed_at < RECOVERY_DEADLINE, (
                f"still failing {RECOVERY_DEADLINE:.0f} s after the kill: {apps.Load.describe(failed)}"
            )
            time.sleep(0.2)
        during = load.since(killed_at)

    last_failure = max((o.at + o.seconds - killed_at for o in failed), default=0.0)
    log(f"app_loss: {len(failed)} of {len(during)} requests failed; bringing {victim.name} back")

    # The host comes back: what runs on an app host is the apps role's (and the monitoring
    # role's node exporter), both idempotent `up`s that start what is not running.
    back = time.monotonic()
    try:
        apps.up(lab)
    except SystemExit as error:
        raise AssertionError(f"{victim.name} did not come back: {error}") from None
    restore_node_exporters(lab)
    serving = apps.endpoints()
    assert all(apps.in_maps(i, serving) for i in victim_ids), f"{victim.name}'s replicas are not serving again"
    restored = time.monotonic() - back

    return [
        ("host killed", f"{victim.name} ({killed} processes)"),
        ("requests after the kill", str(len(during))),
        ("failed", f"{len(failed)} ({apps.Load.describe(failed)})"),
        ("last failure", f"{last_failure:.1f} s after the kill"),
        ("maps without it", f"{maps_at - killed_at:.1f} s after the kill"),
        ("back in service", f"{restored:.1f} s after its restart began"),
    ]
