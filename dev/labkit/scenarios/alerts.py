"""Alerts: the path from a rule to the operators' mailbox, on the configuration
nixos/lib/alertmanager.nix generates for the lab (the monitoring role runs it as it is).

1. Rules to Alertmanager: `Watchdog` (always firing, nixos/monitoring/rules/services.yaml) must
   reach the lab's Alertmanager from the lab's Prometheus, with the environment's label, and be
   routed to the `heartbeat` receiver, never mailed.
2. Alertmanager to the operators: an alert sent to Alertmanager's API from the operators'
   station (a drill, as `amtool alert add` does) must arrive as a mail to every address of
   `alerts.to` in the relay's mailbox (Mailpit standing in for the relay: STARTTLS required, a
   certificate of the platform CA), handed over by Alertmanager's own account
   (`alerts.username`, not notifications'). The drill is then expired.
Measured: Watchdog's arrival, and the drill from its sending to the mailbox (Alertmanager's
group_wait of 30 s included)."""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from datetime import datetime, timedelta, timezone

from .. import spec
from ..proc import log
from ..roles import apps, monitoring, smtp

TIMEOUT = 10.0
# group_wait (30 s) plus a scrape and an evaluation, with room for a loaded machine.
DEADLINE = 120.0
# Watchdog right after `dev/lab up`: Prometheus's first evaluations after its start or reload
# (every 30 s) and its resend delay (1 min); 80 s seen on an idle machine.
WATCHDOG_DEADLINE = 240.0


def _alertmanager(lab: spec.Lab, method: str, path: str, body: object | None = None) -> tuple[int, object]:
    mon = monitoring.monitoring_host(lab)
    payload = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    status, raw = apps.http_request(spec.admin_name(), mon.address, monitoring.ALERTMANAGER_PORT, method, path,
                                    TIMEOUT, payload, headers)
    return status, json.loads(raw) if raw else None


def _mails(relay: dict, query: str) -> list[dict]:
    status, body = apps.http_get(spec.admin_name(), relay["address"], smtp.UI_PORT,
                                 f"/api/v1/search?query={urllib.parse.quote(query)}", TIMEOUT)
    assert status == 200, f"Mailpit's API: HTTP {status}"
    return json.loads(body)["messages"]


def _until(what: str, probe, seconds: float = DEADLINE):
    """Calls `probe` until it returns something true, for `seconds` at most."""
    deadline = time.monotonic() + seconds
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(1)
    return found


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    relay, alerts = lab.smtp_relay, lab.raw["alerts"]
    started = time.monotonic()

    def watchdog():
        status, found = _alertmanager(lab, "GET", "/api/v2/alerts?filter=" + urllib.parse.quote('alertname="Watchdog"'))
        assert status == 200, f"Alertmanager's API: HTTP {status}"
        return [a for a in found if a["labels"].get("env") == "lab" and a["status"]["state"] == "active"]

    found = _until("Watchdog from the lab's Prometheus in Alertmanager", watchdog, WATCHDOG_DEADLINE)
    receivers = {r["name"] for a in found for r in a["receivers"]}
    assert receivers == {"heartbeat"}, f"Watchdog routed to {receivers}, expected the heartbeat receiver only"
    arrived = time.monotonic() - started
    log(f"alerts: Watchdog in Alertmanager after {arrived:.1f} s, routed to the heartbeat receiver")

    drill = f"LabAlertDrill{uuid.uuid4().hex[:8]}"
    labels = {"alertname": drill, "env": "lab", "host": monitoring.monitoring_host(lab).name, "severity": "warning"}
    now = datetime.now(timezone.utc)
    alert = {"labels": labels, "annotations": {"summary": "A drill of the operators' notification channel"},
             "startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=10)).isoformat()}
    sent = time.monotonic()
    status, _ = _alertmanager(lab, "POST", "/api/v2/alerts", [alert])
    assert status == 200, f"posting the drill: HTTP {status}"
    try:
        mails = _until(f"the drill {drill} in the relay's mailbox",
                       lambda: [m for m in _mails(relay, f"subject:{drill}") if "FIRING" in m["Subject"]])
        delivered = time.monotonic() - sent
        mail = mails[-1]
        to = sorted(a["Address"] for a in mail["To"])
        assert to == sorted(alerts["to"]), f"the drill went to {to}, expected {alerts['to']}"
        assert mail["From"]["Address"] == alerts["from"], f"the drill came from {mail['From']}"
        assert mail.get("Username") == alerts["username"], (
            f"the drill was not handed over by {alerts['username']}: account {mail.get('Username')!r}"
        )
        leaked = _mails(relay, "subject:Watchdog")
        assert not leaked, f"Watchdog was mailed: {[m['Subject'] for m in leaked]}"
    finally:
        alert["endsAt"] = datetime.now(timezone.utc).isoformat()
        _alertmanager(lab, "POST", "/api/v2/alerts", [alert])
    log(f"alerts: the drill in the operators' mailbox {delivered:.1f} s after it was sent, "
        f"handed over by {alerts['username']}")
    return [
        ("rules → Alertmanager", f"Watchdog from the lab's Prometheus after {arrived:.1f} s, to the heartbeat receiver"),
        ("Alertmanager → operators", f"a firing alert mailed to {', '.join(alerts['to'])} in {delivered:.1f} s "
                                     f"(group_wait 30 s) through the relay with STARTTLS, account {alerts['username']}"),
    ]
