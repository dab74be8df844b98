"""Tests of the Jaeger invariants of dev/fleet/hosts.py (check_jaeger): a configuration as
nixos/lib/jaeger.nix writes it passes, and each way of losing spans (a service exporting
elsewhere), exposing a listener or keeping traces forever is caught.

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

MON = "10.0.0.51"
PORTS = {"otlpHttp": 4318, "jaeger": 16686, "jaegerGrpc": 16685, "jaegerHealth": 13133, "jaegerMetrics": 8888}
STATE = "/var/lib/jaeger"
ENDPOINT = "http://jaeger.comptoir.svc.cluster.local:4318/v1/traces"
WORKLOADS = {"cluster": {"namespace": "comptoir", "domain": "cluster.local"}}
FLEET = {"environments": {"prod": {"hosts": [
    {"name": "prod-mon-1", "address": MON, "roles": ["monitoring"]},
    {"name": "prod-k3s-1", "address": "10.0.0.21", "roles": ["k3s-server"]},
]}}}
CONFIG = {
    "service": {"telemetry": {"metrics": {"level": "normal", "readers": [
        {"pull": {"exporter": {"prometheus": {"host": MON, "port": 8888}}}}]}}},
    "extensions": {
        "healthcheckv2": {"use_v2": True, "http": {"endpoint": "127.0.0.1:13133"}},
        "jaeger_query": {"storage": {"traces": "badger"}, "http": {"endpoint": f"{MON}:16686"},
                         "grpc": {"endpoint": "127.0.0.1:16685"}},
        "jaeger_storage": {"backends": {"badger": {"badger": {
            "directories": {"keys": f"{STATE}/keys", "values": f"{STATE}/values"},
            "ephemeral": False, "ttl": {"spans": "168h"}}}}},
    },
    "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{MON}:4318"}}}},
}
SETTINGS = {"prod": {
    "orders": {"COMPTOIR_ORDERS__TELEMETRY__OTLP_ENDPOINT": ENDPOINT},
    "gateway": {"COMPTOIR_GATEWAY__TELEMETRY__OTLP_ENDPOINT": ENDPOINT},
}}


def problems_of(config: dict | None = CONFIG, endpoint: str | None = ENDPOINT, settings: dict = SETTINGS,
                fleet: dict = FLEET) -> list[str]:
    with tempfile.TemporaryDirectory() as directory:
        ev = Path(directory)
        files = {"fleet": fleet, "ports": {"monitoring": PORTS}, "jaeger": {"prod": config},
                 "otlpEndpoint": {"prod": endpoint}, "jaegerStateDir": STATE, "settings": settings,
                 "workloads": WORKLOADS}
        for name, value in files.items():
            (ev / f"{name}.json").write_text(json.dumps(value))
        problems: list[str] = []
        hosts.check_jaeger(ev, problems)
        return problems


def changed(edit) -> dict:
    config = copy.deepcopy(CONFIG)
    edit(config)
    return config


class CheckJaeger(unittest.TestCase):
    def test_the_generated_shape_passes(self):
        self.assertEqual(problems_of(), [])

    def test_a_service_exporting_elsewhere_or_not_at_all(self):
        for value in (None, "http://127.0.0.1:4318/v1/traces"):
            settings = copy.deepcopy(SETTINGS)
            settings["prod"]["orders"]["COMPTOIR_ORDERS__TELEMETRY__OTLP_ENDPOINT"] = value
            found = problems_of(settings=settings)
            self.assertTrue(any("settings.prod.orders" in p for p in found), (value, found))

    def test_an_endpoint_not_on_the_monitoring_host(self):
        self.assertTrue(any("otlpEndpoint.prod" in p for p in problems_of(endpoint=f"http://{MON}:4318/v1/traces")))

    def test_the_grpc_receiver_or_a_public_query_port(self):
        grpc = changed(lambda c: c["receivers"]["otlp"]["protocols"].update(grpc={"endpoint": f"{MON}:4317"}))
        self.assertTrue(any("OTLP receiver" in p for p in problems_of(grpc)))
        public = changed(lambda c: c["extensions"]["jaeger_query"]["grpc"].update(endpoint=f"{MON}:16685"))
        self.assertTrue(any("jaeger_query.grpc" in p for p in problems_of(public)))
        for edit in (lambda m: m.update(level="none"), lambda m: m.pop("readers"),
                     lambda m: m["readers"][0]["pull"]["exporter"]["prometheus"].update(host="0.0.0.0")):
            metrics = changed(lambda c: edit(c["service"]["telemetry"]["metrics"]))
            self.assertTrue(any("its metrics" in p for p in problems_of(metrics)), metrics)

    def test_storage_in_memory_elsewhere_or_forever(self):
        backend = ["extensions", "jaeger_storage", "backends", "badger", "badger"]

        def at(config):
            for key in backend:
                config = config[key]
            return config
        self.assertTrue(any("not Badger" in p for p in problems_of(changed(lambda c: at(c).update(ephemeral=True)))))
        self.assertTrue(any("outside" in p for p in problems_of(changed(lambda c: at(c)["directories"].update(keys="/tmp/k")))))
        self.assertTrue(any("forever" in p for p in problems_of(changed(lambda c: at(c).pop("ttl")))))

    def test_an_environment_without_monitoring_exports_nothing(self):
        fleet = {"environments": {"prod": {"hosts": [FLEET["environments"]["prod"]["hosts"][1]]}}}
        self.assertTrue(problems_of(fleet=fleet))
        self.assertEqual(problems_of(None, None, {"prod": {}}, fleet), [])


if __name__ == "__main__":
    unittest.main()
