"""Tests of dev/slo_rules.py: the rules it writes for each kind of objective, and the SLO
files it refuses with a message (instead of rules that could never fire).

Run: python3 -m unittest dev/tests/test_slo_rules.py   (dev/check-monitoring.sh runs it)
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

slo_rules = load("slo_rules")

AVAILABILITY = {"name": "a", "what": "w", "kind": "availability", "service": "gateway", "objective": 0.999}
LATENCY = {
    "name": "reads",
    "what": "w",
    "kind": "latency",
    "service": "gateway",
    "method": "GET",
    "route": "/v1/x(/.*)?",
    "threshold_seconds": 0.25,
    "objective": 0.99,
}


class Render(unittest.TestCase):
    def test_availability_counts_server_errors_over_all_requests_of_the_service(self):
        text = slo_rules.render({"slo": [AVAILABILITY]})
        self.assertIn('sum(rate(http_requests_total{service="gateway", status=~"5.."}[5m]))', text)
        self.assertIn('/ sum(rate(http_requests_total{service="gateway"}[5m]))', text)
        for window in slo_rules.WINDOWS:
            self.assertIn(f"record: slo:error:ratio_rate{window}\n", text)

    def test_latency_counts_requests_over_the_threshold_bucket_of_the_matched_routes(self):
        text = slo_rules.render({"slo": [LATENCY]})
        self.assertIn(
            'http_request_duration_seconds_bucket{service="gateway", method="GET", route=~"/v1/x(/.*)?", le="0.25"}[1h]',
            text,
        )

    def test_each_objective_has_a_fast_and_a_slow_burn_alert_on_its_budget(self):
        text = slo_rules.render({"slo": [AVAILABILITY]})
        self.assertIn('slo:error:ratio_rate1h{slo="a"} > 14.4 * 0.001', text)
        self.assertIn('slo:error:ratio_rate5m{slo="a"} > 14.4 * 0.001', text)
        self.assertIn('slo:error:ratio_rate3d{slo="a"} > 1 * 0.001', text)
        self.assertEqual(text.count("alert: SLOBudgetBurnFast"), 1)
        self.assertEqual(text.count("alert: SLOBudgetBurnSlow"), 1)

    def test_whole_second_thresholds_are_written_as_the_exporter_writes_them(self):
        text = slo_rules.render({"slo": [LATENCY | {"threshold_seconds": 1.0}]})
        self.assertIn('le="1"', text)


class Refuse(unittest.TestCase):
    def assertRefused(self, doc, words):
        with self.assertRaises(slo_rules.SloError) as caught:
            slo_rules.render(doc)
        self.assertIn(words, str(caught.exception))

    def test_a_threshold_between_buckets(self):
        self.assertRefused({"slo": [LATENCY | {"threshold_seconds": 0.3}]}, "not a bucket bound")

    def test_an_objective_of_one_leaves_no_budget(self):
        self.assertRefused({"slo": [AVAILABILITY | {"objective": 1.0}]}, "objective")

    def test_a_name_twice(self):
        self.assertRefused({"slo": [AVAILABILITY, AVAILABILITY]}, "defined twice")

    def test_an_unknown_kind(self):
        self.assertRefused({"slo": [AVAILABILITY | {"kind": "throughput"}]}, "kind")

    def test_no_objective_at_all(self):
        self.assertRefused({}, "no [[slo]]")


if __name__ == "__main__":
    unittest.main()
