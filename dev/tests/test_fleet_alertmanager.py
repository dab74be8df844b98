"""Tests of the Alertmanager invariants of dev/fleet/hosts.py (check_alertmanager): a
configuration as nixos/lib/alertmanager.nix writes it passes, and each way of not reaching the
operators (or of mailing them the heartbeat) is caught.

Run: python3 -m unittest discover -s dev/tests
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

hosts = load("fleet/hosts")

CREDENTIALS = "/run/credentials/alertmanager.service"
SECRETS = {"smtpPassword": f"{CREDENTIALS}/smtp-password", "relayCa": f"{CREDENTIALS}/relay-ca"}
RELAY = {"host": "smtp.example", "address": "10.0.0.250", "port": 587, "tls": "starttls",
         "username": "shop", "ca": None}
ALERTS = {"to": ["oncall@example.org"], "from": "alertmanager@example.org", "username": "shop-alerts"}
CONFIG = {
    "route": {
        "receiver": "operators",
        "routes": [{"receiver": "heartbeat", "matchers": ['alertname="Watchdog"']}],
    },
    "receivers": [
        {"name": "operators", "email_configs": [{
            "to": "oncall@example.org", "from": "alertmanager@example.org", "smarthost": "smtp.example:587",
            "auth_username": "shop-alerts", "auth_password_file": SECRETS["smtpPassword"],
            "require_tls": True, "tls_config": {"server_name": "smtp.example"},
        }]},
        {"name": "heartbeat"},
    ],
}


def problems_of(config: dict, relay: dict = RELAY, alerts: dict = ALERTS) -> list[str]:
    with tempfile.TemporaryDirectory() as directory:
        ev = Path(directory)
        fleet = {"environments": {"prod": {"smtpRelay": relay, "alerts": alerts}}}
        for name, value in [("fleet", fleet), ("alertmanager", {"prod": config}), ("alertmanagerSecrets", SECRETS)]:
            (ev / f"{name}.json").write_text(json.dumps(value))
        problems: list[str] = []
        hosts.check_alertmanager(ev, problems)
        return problems


def mail(config: dict) -> dict:
    return config["receivers"][0]["email_configs"][0]


class CheckAlertmanager(unittest.TestCase):
    def test_the_generated_shape_passes(self):
        self.assertEqual(problems_of(CONFIG), [])

    def test_each_way_of_missing_the_operators_is_caught(self):
        cases = {
            "to": lambda c: mail(c).update(to="someone@else.org"),
            "smarthost": lambda c: mail(c).update(smarthost="10.0.0.250:25"),
            "auth_username": lambda c: mail(c).update(auth_username="shop"),
            "auth_password_file": lambda c: mail(c).update(auth_password_file="/etc/password"),
            "require_tls": lambda c: mail(c).pop("require_tls"),
            "not verified": lambda c: mail(c).pop("tls_config"),
            "ca_file": lambda c: mail(c)["tls_config"].update(ca_file=SECRETS["relayCa"]),
            "e-mail configurations": lambda c: c["receivers"][0].pop("email_configs"),
            "Watchdog": lambda c: c["route"]["routes"][0].update(receiver="operators"),
        }
        for expected, breaks in cases.items():
            with self.subTest(expected):
                config = copy.deepcopy(CONFIG)
                breaks(config)
                found = problems_of(config)
                self.assertTrue(any(expected in p for p in found), found)

    def test_the_alerts_account_is_not_notifications(self):
        found = problems_of(CONFIG, alerts=ALERTS | {"username": "shop"})
        self.assertTrue(any("notifications' relay account" in p for p in found), found)

    def test_a_private_ca_must_be_given(self):
        found = problems_of(CONFIG, relay=RELAY | {"ca": "platform"})
        self.assertTrue(any("ca_file" in p for p in found), found)


if __name__ == "__main__":
    unittest.main()
