"""Tests of dev/monitoring_check.py's lint: a good dashboard passes, and each mistake it must
catch (another data source, a duplicate id, overlapping panels, a missing unit or query, an
undefined variable, a duplicate dashboard uid) is reported.

Run: python3 -m unittest dev/tests/test_monitoring_check.py   (dev/check-monitoring.sh runs it)
"""

from __future__ import annotations

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

check = load("monitoring_check")

DS = {"type": "prometheus", "uid": "prometheus"}


def panel(pid: int, x: int, expr: str = "up") -> dict:
    return {
        "id": pid,
        "type": "timeseries",
        "title": f"p{pid}",
        "datasource": DS,
        "gridPos": {"x": x, "y": 0, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": "short"}},
        "targets": [{"refId": "A", "datasource": DS, "expr": expr}],
    }


GOOD = {"uid": "d1", "title": "D", "templating": {"list": []}, "panels": [panel(1, 0), panel(2, 12)]}


def lint(*dashboards: dict) -> list[str]:
    return check.lint({Path(f"d{i}.json"): d for i, d in enumerate(dashboards)})


class Lint(unittest.TestCase):
    def broken(self, change) -> list[str]:
        dashboard = copy.deepcopy(GOOD)
        change(dashboard)
        return lint(dashboard)

    def test_a_good_dashboard_passes(self):
        self.assertEqual(lint(GOOD), [])

    def test_another_data_source(self):
        problems = self.broken(lambda d: d["panels"][0].update(datasource={"type": "prometheus", "uid": "other"}))
        self.assertTrue(any("data source" in p for p in problems), problems)

    def test_a_duplicate_panel_id(self):
        problems = self.broken(lambda d: d["panels"][1].update(id=1))
        self.assertTrue(any("used twice" in p for p in problems), problems)

    def test_overlapping_panels(self):
        problems = self.broken(lambda d: d["panels"][1]["gridPos"].update(x=6))
        self.assertTrue(any("overlaps" in p for p in problems), problems)

    def test_a_panel_wider_than_the_grid(self):
        problems = self.broken(lambda d: d["panels"][1]["gridPos"].update(w=13))
        self.assertTrue(any("grid" in p for p in problems), problems)

    def test_a_unit_grafana_does_not_know(self):
        problems = self.broken(lambda d: d["panels"][0]["fieldConfig"]["defaults"].update(unit="seconds"))
        self.assertTrue(any("unit" in p for p in problems), problems)

    def test_a_panel_without_query(self):
        problems = self.broken(lambda d: d["panels"][0].update(targets=[]))
        self.assertTrue(any("no query" in p for p in problems), problems)

    def test_an_undefined_variable(self):
        problems = self.broken(lambda d: d["panels"][0]["targets"][0].update(expr='up{job="$job"}'))
        self.assertTrue(any("$job" in p for p in problems), problems)

    def test_grafana_builtin_variables_are_allowed(self):
        problems = self.broken(lambda d: d["panels"][0]["targets"][0].update(expr="rate(x[$__rate_interval])"))
        self.assertEqual(problems, [])

    def test_two_dashboards_with_one_uid(self):
        problems = lint(GOOD, copy.deepcopy(GOOD))
        self.assertTrue(any("uid" in p for p in problems), problems)


class Queries(unittest.TestCase):
    def test_every_query_of_every_panel_is_listed(self):
        dashboard = copy.deepcopy(GOOD)
        dashboard["panels"][1]["targets"].append({"refId": "B", "datasource": DS, "expr": "vector(1)"})
        exprs = [e for _, _, e in check.queries({Path("d.json"): dashboard})]
        self.assertEqual(exprs, ["up", "up", "vector(1)"])


if __name__ == "__main__":
    unittest.main()
