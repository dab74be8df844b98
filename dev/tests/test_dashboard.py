"""Tests of dev/dashboard.py: a small repository with a matrix, a run's steps.tsv and a nextest
JUnit report; each check cited in the matrix mapped to its result, and a matrix that cannot be
parsed refused with a message instead of an empty page.

Run: python3 -m unittest dev/tests/test_dashboard.py   (dev/test runs it as a step)
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

dashboard = load("dashboard")

IDS = ["C1.1", "C1.2", "C1.3", "C2.1"]

MATRIX = """
    # Certification matrix

    | ID | criterion | evidence | check | status |
    |---|---|---|---|---|
    | C1.1 | the shop is tested | `services/shop/src/lib.rs`, `docs/shop.md` | `services/shop/tests/api.rs` (`refuses_bad_input`), `services/shop/src/lib.rs` unit tests, `dev/check-all.sh` | done |
    | C1.2 | the shop survives a crash | `services/shop/src/lib.rs` | `services/shop/tests/crash.rs`, `dev/check-fleet.sh` (via `dev/fleet/check-hosts.sh`) | partial |
    | C1.3 | the whole run passes | `.ci/run` | `.ci/run`, `pg_dump` after `services/shop/tests/api.rs` | partial |
    | C2.1 | a dashboard | — | none yet | not yet |

    ## Counts

    done 1 · partial 2 · not yet 1 (4 criteria).
"""

FILES = {
    "dev/check-matrix.sh": "ids=(\n  " + " ".join(IDS) + "\n)\n",
    "services/shop/Cargo.toml": '[package]\nname = "comptoir-shop"\n\n[[bin]]\nname = "shop"\n',
    "services/shop/src/lib.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {}\n}\n",
    "services/shop/src/api.rs": "#[cfg(test)]\nmod tests {}\n",
    "services/shop/tests/api.rs": "#[tokio::test]\nasync fn refuses_bad_input() {}\n\nfn pg_dump() {}\n",
    "services/shop/tests/crash.rs": "#[test]\nfn survives_kill() {}\n",
    "dev/check-all.sh": "#!/usr/bin/env bash\ndev/check-fleet.sh\n",
    "dev/check-fleet.sh": "#!/usr/bin/env bash\n# dev/fleet/check-nothing.sh is only a comment\nfor part in hosts; do\n  \"dev/fleet/check-$part.sh\"\ndone\n",
    "dev/fleet/check-hosts.sh": "#!/usr/bin/env bash\ntrue\n",
    "dev/fleet/check-nothing.sh": "#!/usr/bin/env bash\ntrue\n",
}

STEPS = """\
bootstrap\tdev/bootstrap.sh\tpassed\t3
all\tdev/check-all.sh\tpassed\t12
tests\tcargo nextest run --locked --workspace --profile ci\tfailed\t95
"""

JUNIT = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="5" failures="1" errors="0">
    <testsuite name="comptoir-shop" tests="2" disabled="0" errors="0" failures="0">
        <testcase name="tests::adds" classname="comptoir-shop" time="0.001"/>
        <testcase name="api::tests::routes" classname="comptoir-shop" time="0.001"/>
    </testsuite>
    <testsuite name="comptoir-shop::api" tests="2" disabled="0" errors="0" failures="0">
        <testcase name="refuses_bad_input" classname="comptoir-shop::api" time="0.2"/>
        <testcase name="lists_products" classname="comptoir-shop::api" time="0.3"/>
    </testsuite>
    <testsuite name="comptoir-shop::crash" tests="1" disabled="0" errors="0" failures="1">
        <testcase name="survives_kill" classname="comptoir-shop::crash" time="4.1">
            <failure type="test failure with exit code 101">thread 'survives_kill' panicked</failure>
            <system-err>applied twice</system-err>
        </testcase>
    </testsuite>
</testsuites>
"""


class DashboardTest(unittest.TestCase):
    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.root = Path(self._tmp.name) / "repo"
        self.results = Path(self._tmp.name) / "results"
        self.results.mkdir()
        for rel, text in FILES.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if rel.endswith(".sh"):
                path.chmod(0o755)
        self.write_matrix(textwrap.dedent(MATRIX))
        (self.results / "steps.tsv").write_text(STEPS)
        (self.results / "junit.xml").write_text(JUNIT)

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def write_matrix(self, text: str) -> None:
        path = self.root / "docs" / "certification-matrix.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def build(self) -> str:
        index = dashboard.build(self.root, self.root / "docs/certification-matrix.md", self.results, self.results / "dashboard")
        return index.read_text()

    def checks(self, cid: str) -> dict[str, tuple[str, str]]:
        """check label → (kind, result) of one criterion, as build() evaluates them."""
        criteria, _ = dashboard.parse_matrix((self.root / "docs/certification-matrix.md").read_text(), IDS)
        crit = next(c for c in criteria if c.id == cid)
        repo = dashboard.Repo(self.root)
        steps = dashboard.read_steps(self.results / "steps.tsv")
        junit = dashboard.read_junit(self.results / "junit.xml")
        reach = dashboard.step_reach(steps, repo)
        out = {}
        for chk in dashboard.cited_checks(crit, repo):
            dashboard.evaluate(chk, steps, junit, reach, repo)
            out[chk.label] = (chk.kind, chk.result, chk.passed, chk.failed)
        return out

    def test_checks_are_mapped_to_binaries_testcases_unit_tests_and_steps(self) -> None:
        self.assertEqual(
            self.checks("C1.1"),
            {
                "services/shop/tests/api.rs": ("tests", "passed", 2, 0),  # binary comptoir-shop::api
                "refuses_bad_input": ("testcase", "passed", 1, 0),  # the test file defines it
                "services/shop/src/lib.rs": ("unit", "passed", 1, 0),  # tests::adds, not api::tests::*
                "dev/check-all.sh": ("step", "passed", 1, 0),
            },
        )

    def test_scripts_run_through_other_scripts_and_helpers_that_are_not_tests(self) -> None:
        checks = self.checks("C1.2")
        # check-all.sh runs check-fleet.sh, whose "dev/fleet/check-$part.sh" reaches check-hosts.sh.
        self.assertEqual(checks["dev/check-fleet.sh"][:2], ("step", "passed"))
        self.assertEqual(checks["dev/fleet/check-hosts.sh"][:2], ("step", "passed"))
        # `pg_dump` is a helper of api.rs, not a test: no check; `.ci/run` is the whole run.
        self.assertEqual(self.checks("C1.3"), {".ci/run": ("run", "failed", 2, 1), "services/shop/tests/api.rs": ("tests", "passed", 2, 0)})

    def test_a_failed_testcase_shows_failed(self) -> None:
        self.assertEqual(self.checks("C1.2")["services/shop/tests/crash.rs"], ("tests", "failed", 0, 1))
        page = self.build()
        self.assertIn('<tr id="C1.2" data-status="partial" data-checks="failed"', page)
        self.assertIn("comptoir-shop::crash survives_kill", page)  # in the failed tests' list

    def test_rows_summary_and_statuses(self) -> None:
        page = self.build()
        rows = dict(re.findall(r'<tr id="(C[\d.]+)" data-status="([^"]+)"', page))
        self.assertEqual(rows, {"C1.1": "done", "C1.2": "partial", "C1.3": "partial", "C2.1": "not yet"})
        self.assertIn('<tr id="C1.1" data-status="done" data-checks="passed"', page)
        self.assertIn('<tr id="C2.1" data-status="not yet" data-checks="none"', page)
        self.assertIn('data-count-status="partial"><b>2</b>', page)
        self.assertIn('data-count-checks="failed"><b>2</b>', page)  # crash.rs and .ci/run
        self.assertIn('data-count-tests="5"><b>4/5</b>', page)
        self.assertNotIn("stale-counts", page)  # the Counts line agrees with the rows
        self.assertNotIn("<script", page)
        self.assertNotRegex(page, r"(src|href)=\"(https?:)?//")

    def test_without_results_everything_is_not_run(self) -> None:
        (self.results / "steps.tsv").unlink()
        (self.results / "junit.xml").unlink()
        page = self.build()
        self.assertIn('<tr id="C1.1" data-status="done" data-checks="not run"', page)
        self.assertIn("No junit.xml", page)

    def test_a_missing_row_is_an_error_not_an_empty_page(self) -> None:
        text = (self.root / "docs/certification-matrix.md").read_text()
        self.write_matrix("\n".join(line for line in text.splitlines() if not line.startswith("| C1.3 ")))
        with self.assertRaisesRegex(dashboard.DashboardError, r"no row for 1 criterion ID\(s\): C1.3"):
            self.build()
        self.assertFalse((self.results / "dashboard" / "index.html").exists())

    def test_a_bad_status_or_a_broken_row_is_an_error(self) -> None:
        text = (self.root / "docs/certification-matrix.md").read_text()
        self.write_matrix(text.replace("| not yet |", "| soon |").replace("| the whole run passes |", "| the whole | run |"))
        with self.assertRaises(dashboard.DashboardError) as caught:
            self.build()
        self.assertIn("C2.1 has status 'soon'", str(caught.exception))
        self.assertIn("6 cells, expected 5", str(caught.exception))

    def test_main_reports_the_error_and_exits_1(self) -> None:
        self.write_matrix("# Certification matrix\n\nnothing here\n")
        argv = ["--root", str(self.root), "--results", str(self.results)]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            self.assertEqual(dashboard.main(argv), 1)
        self.assertIn("dashboard: error: cannot parse docs/certification-matrix.md", err.getvalue())
        self.assertIn("C1.1, C1.2, C1.3, C2.1", err.getvalue())


if __name__ == "__main__":
    unittest.main()
