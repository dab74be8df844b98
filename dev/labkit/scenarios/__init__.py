"""The scenarios of `dev/lab test` (docs/lab.md), and what they share."""

from __future__ import annotations

from .. import spec


def restore_node_exporters(lab: spec.Lab) -> None:
    """After a host came back from a kill: the monitoring role's node exporter on it (an
    idempotent `up` that starts what is not running), when the lab has that role, so the
    scenario leaves every Prometheus target up as it found it."""
    try:
        from ..roles import monitoring  # noqa: PLC0415 — the monitoring role is optional in a partial lab
    except ImportError:
        return
    monitoring.up(lab)
