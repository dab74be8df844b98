"""Rollout: a new release of the services' binaries, host by host, the canary (the inventory's
`canary`) first, then the others in inventory order (deploy-rs/deploy's order), each host gated
on its health before the next is touched: /readyz of every replica on it and each back in
every host's maps, and no failed request of a load of catalog reads through the shop's entry
that runs throughout. On a host the replicas are replaced one at a time, each drained first
(apps.replace): the other hosts' replicas carry the traffic meanwhile, as a rolling update
with maxUnavailable 0 does. A host that fails its gate is rolled back to its previous release
at once, and nothing after it is touched.

First a deliberately broken build: the catalog's binary replaced by one that passes its
--check-config (the real binary's) and exits 1 at start, a crash at start with valid settings.
It must be rolled back at the canary, automatically, the other hosts' processes untouched.
Then a good release (the running binaries as a new release: what is tested is the procedure,
not a code change), which must fail no request."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from .. import spec
from ..proc import log, pid_of
from ..roles import apps

BROKEN_SERVICE = "catalog"
# Load a gate sees after a host's last replica is back, before it may pass.
GATE_SECONDS = 3.0


class GateFailed(Exception):
    """A host's replicas are not all serving, or requests failed during its rollout."""


@dataclass
class Deployment:
    hosts: list[tuple[str, float]] = field(default_factory=list)  # (host, seconds) passed
    rolled_back: str | None = None  # the host that failed its gate
    why: str = ""
    detected: float = 0.0  # seconds from its start to the failure
    restored: float = 0.0  # seconds the rollback took


def order(lab: spec.Lab) -> list[spec.Host]:
    hosts = apps.k3s_hosts(lab)
    return sorted(hosts, key=lambda h: h.name != lab.canary)


def gate(host: spec.Host, load: apps.Load, since: float) -> None:
    settled = time.monotonic()
    load.wait_for(int(load.rate * GATE_SECONDS), settled, 60)
    current = apps.endpoints()
    unhealthy = [r.id for r in apps.replicas_of(host) if not (apps.ready(r) and apps.in_maps(r.id, current))]
    failed = load.failures(since)
    if unhealthy or failed:
        when = " ".join(f"+{o.at - since:.1f}s" for o in failed[:10])
        raise GateFailed(f"not serving: {unhealthy}; requests failed: {apps.Load.describe(failed)} (sent at {when})")


def deploy(lab: spec.Lab, release: str, load: apps.Load) -> Deployment:
    """`release` onto every app host, canary first, each gated; the first host that fails is
    rolled back and the deployment stops there."""
    result = Deployment()
    for host in order(lab):
        previous = apps.installed(host)
        began = time.monotonic()
        try:
            apps.replace(host, release)
            gate(host, load, began)
        except (apps.StartFailed, GateFailed) as error:
            # The failure's first line, and the last of the replica's log when one follows.
            lines = str(error).splitlines()
            result.rolled_back, result.why = host.name, " ".join(dict.fromkeys([lines[0], lines[-1]]))
            result.detected = time.monotonic() - began
            log(f"rollout: {host.name} failed ({result.why}); rolling back to {previous}")
            rollback = time.monotonic()
            try:
                apps.replace(host, previous)
                gate(host, load, rollback)
            except (apps.StartFailed, GateFailed) as failure:
                raise AssertionError(f"{host.name} failed ({result.why}) and its rollback too: {failure}") from None
            result.restored = time.monotonic() - rollback
            return result
        result.hosts.append((host.name, time.monotonic() - began))
        log(f"rollout: {host.name} on {release} in {result.hosts[-1][1]:.1f} s")
    return result


def broken_release(base: str) -> str:
    """`base` with BROKEN_SERVICE's binary a script that runs the real one for --check-config
    and exits 1 otherwise."""
    name = f"{base}-broken-{BROKEN_SERVICE}"
    real = apps.release_path(base, BROKEN_SERVICE)
    script = spec.lab_dir() / "apps" / f".{name}"
    script.write_text(
        "#!/bin/sh\n"
        "# A deliberately broken build (dev/labkit/scenarios/rollout.py).\n"
        f'[ "$1" = --check-config ] && exec {real} "$@"\n'
        f"echo '{real.name}: deliberately broken build, exiting' >&2\n"
        "exit 1\n"
    )
    files = {s: apps.release_path(base, s) for s in apps.services()} | {BROKEN_SERVICE: script}
    apps.make_release(name, files)
    script.unlink()
    return name


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    hosts = order(lab)
    running = {apps.installed(h) for h in hosts}
    assert len(running) == 1, f"the app hosts run different releases: {running}"
    (base,) = running
    broken = broken_release(base)
    fresh = apps.make_release(f"rollout-{time.strftime('%Y%m%d-%H%M%S')}",
                              {s: apps.release_path(base, s) for s in apps.services()})
    try:
        with apps.Load([h.address for h in hosts]) as load:
            started = time.monotonic()
            load.wait_for(int(load.rate * 3), started, 60)

            others = {r: pid_of(r.pid_path) for h in hosts[1:] for r in apps.replicas_of(h)}
            bad = deploy(lab, broken, load)
            assert bad.rolled_back == lab.canary, f"the broken build was not stopped at the canary: {bad}"
            touched = [r.id for r, pid in others.items() if pid_of(r.pid_path) != pid]
            assert not touched and all(apps.installed(h) == base for h in hosts), (
                f"hosts after the canary were touched: {touched}"
            )
            canary = apps.replicas_of(hosts[0])
            assert all(apps.running_release(r) == base for r in canary), "the canary is not back on its release"

            good = deploy(lab, fresh, load)
            assert good.rolled_back is None, f"the good release was rolled back at {good.rolled_back}: {good.why}"
            stale = [r.id for h in hosts for r in apps.replicas_of(h) if apps.running_release(r) != fresh]
            assert not stale, f"replicas not on {fresh}: {stale}"
        failed = load.failures(started)
        total = len(load.since(started))
    finally:
        shutil.rmtree(apps.release_path(broken, BROKEN_SERVICE).parent, ignore_errors=True)
    assert not failed, f"{len(failed)} of {total} requests failed: {apps.Load.describe(failed)}"
    per_host = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in good.hosts)
    return [
        ("broken build", f"{bad.why} at {bad.rolled_back} after {bad.detected:.1f} s; rolled back in "
                         f"{bad.restored:.1f} s; {', '.join(h.name for h in hosts[1:])} untouched"),
        ("good release", f"{fresh}: {per_host} ({sum(s for _, s in good.hosts):.0f} s, "
                         f"{len(hosts) * len(apps.services())} replicas)"),
        ("requests", f"{total}, failed 0"),
    ]
