"""Tests of dev/build_reuse_check.py: a crate the tests resolve with other features is reported,
with every crate above it; the profile's name alone (`test` for `dev`) is no difference.

Run: python3 -m unittest dev/tests/test_build_reuse.py   (dev/test runs it)
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

reuse = load("build_reuse_check")


def unit(pkg: str, deps: list[int], features: list[str], kind: str = "lib", profile: str = "dev") -> dict:
    return {
        "pkg_id": f"registry+https://example#{pkg}@1.0.0",
        "target": {"kind": [kind], "name": pkg},
        "mode": "build",
        "features": features,
        "platform": None,
        "profile": {"name": profile, "opt_level": "0", "debuginfo": 0},
        "dependencies": [{"index": i} for i in deps],
    }


def graph(tokio_features: list[str], profile: str = "dev") -> dict:
    """bytes ← tokio ← hyper ← ours (a binary on top), and an unrelated leaf."""
    return {
        "units": [
            unit("bytes", [], ["std"], profile=profile),
            unit("tokio", [0], tokio_features, profile=profile),
            unit("hyper", [1], [], profile=profile),
            unit("ours", [2], [], profile=profile),
            unit("ours", [3], [], kind="bin", profile=profile),
            unit("leaf", [], [], profile=profile),
        ]
    }


class NotReused(unittest.TestCase):
    def test_the_same_resolution_under_the_test_profile_is_reused(self):
        self.assertEqual(reuse.not_reused(graph(["rt"]), graph(["rt"], profile="test")), [])

    def test_a_test_only_feature_reports_the_crate_and_all_above_it(self):
        self.assertEqual(
            reuse.not_reused(graph(["rt"]), graph(["rt", "test-util"], profile="test")),
            ["hyper@1.0.0", "ours@1.0.0", "tokio@1.0.0"],
        )

    def test_other_profile_settings_are_a_difference(self):
        tested = graph(["rt"])
        for u in tested["units"]:
            u["profile"]["debuginfo"] = 2
        self.assertEqual(len(reuse.not_reused(graph(["rt"]), tested)), 5)


if __name__ == "__main__":
    unittest.main()
