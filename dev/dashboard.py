#!/usr/bin/env python3
"""The feature-progress dashboard (criterion C7.3): one static HTML page that puts the
certification matrix beside the results of the last `dev/test` run.

Reads:
  - docs/certification-matrix.md: one row per criterion (ID, criterion, evidence, check, status);
    the IDs it must hold are the ones dev/check-matrix.sh lists;
  - $RESULTS/steps.tsv, written by dev/test: `label<TAB>command<TAB>passed|failed<TAB>seconds`;
  - $RESULTS/junit.xml, nextest's JUnit report: one <testsuite> per test binary, named by its
    binary id (`comptoir-catalog::api` for services/catalog/tests/api.rs, `comptoir-catalog`
    for the library's unit tests), one <testcase> per test.
Writes $RESULTS/dashboard/index.html (inline CSS, no script, no external asset) and prints its path.

How a check cited in the matrix's check column is matched to the run:
  - `<crate>/tests/<name>.rs`: every test of the nextest binary `<package>::<name>`;
  - `<crate>/tests/<name>.rs::<test>`, or a backticked `<test>` right after the test file that
    defines `fn <test>`: that test case;
  - `<crate>/src/<module>.rs` holding `#[cfg(test)]`: the library's unit tests of that module
    (other source files cited there are evidence, not checks);
  - `dev/test` and `.ci/run`: every step of the run;
  - any other script (`dev/check-fleet.sh`, `dev/fleet/check-hosts.sh`, `deploy-rs/tests/wrapper.sh`
    ...): the dev/test step that runs it, directly or through the scripts that step runs (a
    script counts as run by another when that one names it); not run when no step reaches it.

Usage: dev/dashboard.py [--root DIR] [--matrix FILE] [--results DIR] [--out DIR]
  --results defaults to $COMPTOIR_RESULTS_DIR, else ${XDG_CACHE_HOME:-~/.cache}/comptoir/results;
  --out to RESULTS/dashboard. A missing steps.tsv or junit.xml shows everything as not run.
Exit 0 with the page written, 1 (and no page) when the matrix or the JUnit report cannot be read.
Standard library only (Python >= 3.11).
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import os
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("done", "partial", "not yet")
# The same rule as dev/check-matrix.sh: which backticked tokens are repository paths.
_EXT_RE = re.compile(r"\.(md|rs|toml|sh|nix|xml|yml|yaml|json|lock|bazel|bzl|conf|sql|txt|py|j2)$")
_PUNCT_RE = re.compile(r"[\]\[(){}<>$!#*?;|&=,'\"]")
_TEST_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*_[a-z0-9_]*$")
WHOLE_RUN = ("dev/test", ".ci/run")


class DashboardError(Exception):
    """An input that cannot be read: the page would be wrong, so none is written."""


def looks_like_path(token: str) -> bool:
    if not token or re.search(r"\s", token) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", token):
        return False
    if token.startswith("/") or _PUNCT_RE.search(token):
        return False
    return "/" in token or bool(_EXT_RE.search(token))


# ── the matrix ──────────────────────────────────────────────────────────────────────────────


@dataclass
class Criterion:
    id: str
    text: str
    status: str
    evidence: list[str]
    check_cell: str
    checks: list[Check] = field(default_factory=list)


def expected_ids(check_matrix_sh: Path) -> list[str]:
    """The criterion IDs dev/check-matrix.sh embeds (its `ids=( ... )` array)."""
    try:
        text = check_matrix_sh.read_text(encoding="utf-8")
    except OSError as e:
        raise DashboardError(f"cannot read the criterion IDs from {check_matrix_sh}: {e}") from e
    m = re.search(r"^ids=\((.*?)^\)", text, re.S | re.M)
    ids = re.findall(r"\bC\d+\.\d+\b", m.group(1)) if m else []
    if not ids:
        raise DashboardError(f"{check_matrix_sh} has no `ids=( ... )` list of criterion IDs")
    return ids


def parse_matrix(text: str, ids: list[str], name: str = "the matrix") -> tuple[list[Criterion], dict[str, int] | None]:
    """Criteria in the order of `ids`, and the matrix's own `## Counts` line if it has one."""
    rows: dict[str, Criterion] = {}
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not re.match(r"^\|\s*C\d+\.\d+\s*\|", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5:
            problems.append(f"line {lineno}: {len(cells)} cells, expected 5 (ID, criterion, evidence, check, status)")
            continue
        cid, crit, evidence, check, status = cells
        status = status.strip("* ")
        if status not in STATUSES:
            problems.append(f"line {lineno}: {cid} has status '{status}', expected done, partial or not yet")
        elif cid in rows:
            problems.append(f"line {lineno}: a second row for {cid}")
        elif cid not in ids:
            problems.append(f"line {lineno}: {cid} is not a criterion ID of dev/check-matrix.sh")
        else:
            paths = [t for t in re.findall(r"`([^`]*)`", evidence) if looks_like_path(t)]
            rows[cid] = Criterion(cid, crit, status, list(dict.fromkeys(paths)), check)
    missing = [i for i in ids if i not in rows]
    if missing:
        problems.append(f"no row for {len(missing)} criterion ID(s): {', '.join(missing)}")
    if problems:
        raise DashboardError(f"cannot parse {name}:\n  " + "\n  ".join(problems))
    counts = None
    m = re.search(r"done (\d+) · partial (\d+) · not yet (\d+)", text)
    if m:
        counts = dict(zip(STATUSES, map(int, m.groups())))
    return [rows[i] for i in ids], counts


# ── the run's results ───────────────────────────────────────────────────────────────────────


@dataclass
class Step:
    label: str
    command: str
    result: str  # passed | failed
    seconds: str


def read_steps(path: Path) -> list[Step]:
    if not path.is_file():
        return []
    steps = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 4 or parts[2] not in ("passed", "failed"):
            raise DashboardError(f"{path}:{lineno}: expected label<TAB>command<TAB>passed|failed<TAB>seconds")
        steps.append(Step(*parts))
    return steps


def read_junit(path: Path) -> dict[str, dict[str, str]]:
    """binary id → test name → passed | failed | skipped."""
    if not path.is_file():
        return {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DashboardError(f"cannot parse the JUnit report {path}: {e}") from e
    suites: dict[str, dict[str, str]] = {}
    for suite in root.iter("testsuite"):
        cases = suites.setdefault(suite.get("name", ""), {})
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                result = "failed"
            elif case.find("skipped") is not None:
                result = "skipped"
            else:
                result = "passed"  # flaky tests that passed on a retry count as passed
            cases[case.get("name", "")] = result
    return suites


# ── checks ──────────────────────────────────────────────────────────────────────────────────


@dataclass
class Check:
    label: str  # as cited in the matrix
    kind: str  # tests | testcase | unit | step | run
    target: str  # binary id, binary id + test, step label...
    result: str = "not run"  # passed | failed | not run
    passed: int = 0
    failed: int = 0
    note: str = ""


class Repo:
    """What the mapping needs to know about the repository: crates, unit tests, scripts."""

    def __init__(self, root: Path):
        self.root = root
        self._packages: dict[Path, str | None] = {}

    def package_of(self, rel: str) -> tuple[str, Path] | None:
        """(package name, crate dir relative to root) of the crate holding file `rel`."""
        d = (self.root / rel).parent
        while d != self.root and self.root in d.parents:
            if d not in self._packages:
                name = None
                manifest = d / "Cargo.toml"
                if manifest.is_file():
                    try:
                        name = tomllib.loads(manifest.read_text(encoding="utf-8")).get("package", {}).get("name")
                    except (OSError, tomllib.TOMLDecodeError):
                        name = None
                self._packages[d] = name
            if self._packages[d]:
                return self._packages[d], d.relative_to(self.root)
            d = d.parent
        return None

    def text(self, rel: str) -> str:
        try:
            return (self.root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def is_script(self, rel: str) -> bool:
        p = self.root / rel
        return p.is_file() and (os.access(p, os.X_OK) or p.suffix in (".sh", ".py") or ".test." in p.name)

    def is_shell(self, rel: str) -> bool:
        first = self.text(rel).split("\n", 1)[0]
        return rel.endswith(".sh") or (first.startswith("#!") and first.rstrip().endswith(("bash", "sh")))

    def run_files(self, rel: str) -> set[str]:
        """Repository files the shell script `rel` names outside its comments (relative to the root
        or to its folder; `dev/fleet/check-$part.sh` stands for dev/fleet/check-*.sh), and the
        test_*.py files of a folder it runs with `unittest discover -s DIR`."""
        code = "\n".join(line for line in self.text(rel).splitlines() if not line.lstrip().startswith("#"))
        here = (self.root / rel).parent
        found = set()
        for token in set(re.findall(r"[\w.${}-]+(?:/[\w.${}-]+)+|[\w.${}-]+\.(?:sh|py)\b", code)):
            pattern = re.sub(r"\$\{?\w+\}?", "*", token)
            if pattern.startswith("/") or "*" in pattern.split("/"):
                continue  # absolute, or a whole component unknown ($tmp/x, ./$name): not a script we can tell
            for base in (self.root, here):
                for p in base.glob(pattern):
                    p = p.resolve()
                    if p.is_file() and self.root in p.parents and self.is_script(p.relative_to(self.root).as_posix()):
                        found.add(p.relative_to(self.root).as_posix())
        for d in re.findall(r"unittest discover\b[^\n]*?-s\s+(\S+)", code):
            found.update(p.relative_to(self.root).as_posix() for p in (self.root / d).glob("test_*.py"))
        found.discard(rel)
        return found


def is_test_fn(source: str, name: str) -> bool:
    """True when `source` defines `name` as a test (`#[test]`, `#[tokio::test]`...), not a helper."""
    attrs = r"(?:#\[[^\]]*\]\s*)*"
    return re.search(rf"#\[[\w:]*test\b[^\]]*\]\s*{attrs}(?:pub\s+)?(?:async\s+)?fn {re.escape(name)}\s*\(", source) is not None


def cited_checks(criterion: Criterion, repo: Repo) -> list[Check]:
    checks: list[Check] = []
    last_test_file: tuple[str, str] | None = None  # (path, binary id) of the last test file cited
    for token in re.findall(r"`([^`]*)`", criterion.check_cell):
        test_name = None
        if "::" in token and looks_like_path(token.split("::")[0]):
            token, test_name = token.split("::", 1)
        if not looks_like_path(token):
            if last_test_file and _TEST_NAME_RE.match(token) and is_test_fn(repo.text(last_test_file[0]), token):
                checks.append(Check(token, "testcase", f"{last_test_file[1]}::{token}"))
            continue
        if token in WHOLE_RUN:
            checks.append(Check(token, "run", "every step of dev/test"))
            continue
        pkg = repo.package_of(token) if token.endswith(".rs") else None
        if pkg:
            name, crate_dir = pkg
            inner = Path(token).relative_to(crate_dir).parts
            if inner[0] == "tests" and (len(inner) == 2 or inner[2:] == ("main.rs",)):
                binary = f"{name}::{Path(inner[1]).stem}"
                last_test_file = (token, binary)
                if test_name:
                    checks.append(Check(f"{token}::{test_name}", "testcase", f"{binary}::{test_name}"))
                else:
                    checks.append(Check(token, "tests", binary))
            elif inner[0] == "src" and "#[cfg(test)]" in repo.text(token):
                module = [p for p in inner[1:-1]] + ([] if inner[-1] in ("lib.rs", "mod.rs") else [Path(inner[-1]).stem])
                checks.append(Check(token, "unit", f"{name}::" + "::".join(module) if module else name))
            continue
        if repo.is_script(token):
            checks.append(Check(token, "step", token))
    # One line per check, in the order cited.
    seen: dict[tuple[str, str], Check] = {}
    for c in checks:
        seen.setdefault((c.kind, c.target), c)
    return list(seen.values())


def evaluate(check: Check, steps: list[Step], junit: dict[str, dict[str, str]], reach: dict[str, set[str]], repo: Repo) -> None:
    results: list[str] = []
    if check.kind == "run":
        results = [s.result for s in steps]
        check.note = f"{len(steps)} step(s)"
    elif check.kind == "step":
        ran = [s for s in steps if check.target in reach.get(s.label, set())]
        results = [s.result for s in ran]
        check.note = ", ".join(f"step {s.label}" for s in ran) or "no recorded step ran it"
    elif check.kind == "tests":
        results = list(junit.get(check.target, {}).values())
        check.note = check.target
    elif check.kind == "testcase":
        binary, _, test = check.target.rpartition("::")
        cases = junit.get(binary, {})
        results = [r for n, r in cases.items() if n == test or n.endswith("::" + test)]
        check.note = f"{binary}, {test}"
    elif check.kind == "unit":
        crate, _, module = check.target.partition("::")
        cases = junit.get(crate, {})
        if module:
            results = [r for n, r in cases.items() if n.startswith(module + "::")]
        else:  # lib.rs: the tests of no module file of the crate
            src = repo.package_of(check.label)
            src_dir = repo.root / src[1] / "src" if src else repo.root
            results = [r for n, r in cases.items() if not _module_file(src_dir, n.split("::")[0])]
        check.note = f"{crate} unit tests" + (f" in {module}" if module else "")
    check.passed = results.count("passed")
    check.failed = results.count("failed")
    if check.failed:
        check.result = "failed"
    elif check.passed:
        check.result = "passed"


def _module_file(src_dir: Path, first: str) -> bool:
    return (src_dir / f"{first}.rs").is_file() or (src_dir / first).is_dir()


def step_reach(steps: list[Step], repo: Repo) -> dict[str, set[str]]:
    """step label → the repository scripts it runs: the one its command starts (`X`, `python3 X`,
    `bash X`) and, transitively, the scripts each shell script among them names in its code."""
    reach: dict[str, set[str]] = {}
    for step in steps:
        words = step.command.split()
        if words and words[0] in ("python3", "python", "bash", "sh") and len(words) > 1:
            words = words[1:]
        start = words[0] if words and (repo.root / words[0]).is_file() else None
        todo, seen = ([start] if start else []), set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            if repo.is_shell(f):
                todo.extend(repo.run_files(f) - seen)
        reach[step.label] = seen
    return reach


def summarize(checks: list[Check]) -> str:
    if not checks:
        return "none"
    results = {c.result for c in checks}
    if "failed" in results:
        return "failed"
    if results == {"passed"}:
        return "passed"
    return "incomplete" if "passed" in results else "not run"


# ── the page ────────────────────────────────────────────────────────────────────────────────

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #556; margin-bottom: 16px; }
.meta code { font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #d5d9e0; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
.warn { background: #fff4d6; border: 1px solid #e5c46b; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e3e6eb; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; position: sticky; top: 0; }
td.id { font-weight: 600; white-space: nowrap; }
code { font: 12px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; }
ul { margin: 0; padding-left: 0; list-style: none; }
li { margin: 1px 0; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.done, .passed { background: #d8f3dc; color: #1b5e20; }
.partial, .incomplete { background: #ffe9b3; color: #7a4b00; }
.not-yet, .not-run, .none { background: #e8eaee; color: #4a5160; }
.failed { background: #fbd5d5; color: #9b1c1c; }
.muted { color: #6b7280; font-size: 12px; }
details summary { cursor: pointer; color: #3b5b9a; font-size: 12px; }
"""


def css_class(value: str) -> str:
    return value.replace(" ", "-")


def badge(value: str, text: str | None = None) -> str:
    return f'<span class="badge {css_class(value)}">{html.escape(text or value)}</span>'


def path_list(paths: list[str], shown: int = 4) -> str:
    items = [f"<li><code>{html.escape(p)}</code></li>" for p in paths]
    if not items:
        return '<span class="muted">—</span>'
    head = "<ul>" + "".join(items[:shown]) + "</ul>"
    if len(items) > shown:
        head += f"<details><summary>{len(items) - shown} more</summary><ul>{''.join(items[shown:])}</ul></details>"
    return head


def check_list(checks: list[Check]) -> str:
    if not checks:
        return '<span class="muted">no automated check cited</span>'
    lines = []
    for c in checks:
        if c.kind == "step":
            counts = f" {c.note}"
        elif c.kind == "run":
            counts = f" {c.passed}/{c.passed + c.failed} steps passed"
        else:
            counts = " ".join(f" {n} {what}" for n, what in ((c.passed, "passed"), (c.failed, "failed")) if n)
        title = html.escape(c.note, quote=True)
        lines.append(
            f'<li data-check="{html.escape(c.label, quote=True)}" data-result="{c.result}">{badge(c.result)} '
            f'<code title="{title}">{html.escape(c.label)}</code><span class="muted">{html.escape(counts)}</span></li>'
        )
    return "<ul>" + "".join(lines) + "</ul>"


def render(criteria: list[Criterion], steps: list[Step], junit: dict[str, dict[str, str]], matrix_counts: dict[str, int] | None,
           commit: str, run_date: str, matrix_name: str) -> str:
    by_status = Counter(c.status for c in criteria)
    unique: dict[tuple[str, str], Check] = {}
    for crit in criteria:
        for chk in crit.checks:
            unique.setdefault((chk.kind, chk.target), chk)
    check_results = Counter(c.result for c in unique.values())
    case_results = Counter(r for cases in junit.values() for r in cases.values())
    step_results = Counter(s.result for s in steps)
    criteria_checks = Counter(summarize(c.checks) for c in criteria)

    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>Comptoir: feature progress ({html.escape(commit[:12])})</title>",
           f"<style>{CSS}</style></head><body>",
           "<h1>Comptoir: feature progress</h1>",
           f'<p class="meta">Commit <code id="commit">{html.escape(commit)}</code> · run <span id="run-date">{html.escape(run_date)}</span>'
           f" · from <code>{html.escape(matrix_name)}</code>, the steps and nextest's JUnit report of the last <code>dev/test</code></p>"]

    out.append('<section id="summary"><div class="cards">')
    out.append(f'<div class="card" data-criteria="{len(criteria)}"><b>{len(criteria)}</b>criteria</div>')
    for s in STATUSES:
        out.append(f'<div class="card" data-count-status="{s}"><b>{by_status[s]}</b>{badge(s)}</div>')
    out.append(f'<div class="card" data-count-checks="passed"><b>{check_results["passed"]}</b>checks passed</div>')
    out.append(f'<div class="card" data-count-checks="failed"><b>{check_results["failed"]}</b>checks failed</div>')
    out.append(f'<div class="card" data-count-checks="not run"><b>{check_results["not run"]}</b>checks not run</div>')
    for what, results in (("tests", case_results), ("steps", step_results)):
        total = sum(results.values())
        failed = f", {results['failed']} failed" if results["failed"] else ""
        out.append(f'<div class="card" data-count-{what}="{total}"><b>{results["passed"]}/{total}</b>{what} passed{failed}</div>')
    out.append("</div>")
    out.append('<p class="muted">Criteria by their checks: ' + " · ".join(
        f"{badge(k)} {criteria_checks[k]}" for k in ("passed", "incomplete", "failed", "not run", "none") if criteria_checks[k]) + "</p>")
    if not steps:
        out.append('<p class="warn">No steps.tsv: no dev/test run recorded, every check shows as not run.</p>')
    if not junit:
        out.append('<p class="warn">No junit.xml: the nextest run did not happen (or wrote no report), every test shows as not run.</p>')
    if matrix_counts and matrix_counts != {s: by_status[s] for s in STATUSES}:
        said = " · ".join(f"{s} {matrix_counts[s]}" for s in STATUSES)
        out.append(f'<p class="warn" id="stale-counts">The matrix\'s own Counts line says {html.escape(said)}; its rows say '
                   + html.escape(" · ".join(f"{s} {by_status[s]}" for s in STATUSES)) + " (the counts here are the rows').</p>")
    out.append("</section>")

    out.append('<h2>Criteria</h2><table id="criteria"><thead><tr><th>ID</th><th>criterion</th><th>status</th>'
               "<th>evidence</th><th>checks (last run)</th></tr></thead><tbody>")
    for c in criteria:
        agg = summarize(c.checks)
        out.append(
            f'<tr id="{c.id}" data-status="{c.status}" data-checks="{agg}" data-checks-passed="{sum(x.result == "passed" for x in c.checks)}"'
            f' data-checks-failed="{sum(x.result == "failed" for x in c.checks)}" data-checks-not-run="{sum(x.result == "not run" for x in c.checks)}">'
            f'<td class="id">{c.id}</td><td>{html.escape(c.text)}</td><td>{badge(c.status)}</td>'
            f"<td>{path_list(c.evidence)}</td><td>{check_list(c.checks)}</td></tr>")
    out.append("</tbody></table>")

    out.append('<h2>Steps of the run</h2>')
    if steps:
        out.append('<table id="steps"><thead><tr><th>step</th><th>result</th><th>seconds</th><th>command</th></tr></thead><tbody>')
        for s in steps:
            out.append(f'<tr data-step="{html.escape(s.label, quote=True)}" data-result="{s.result}"><td>{html.escape(s.label)}</td>'
                       f"<td>{badge(s.result)}</td><td>{html.escape(s.seconds)}</td><td><code>{html.escape(_short(s.command))}</code></td></tr>")
        out.append("</tbody></table>")
    else:
        out.append('<p class="muted">none recorded</p>')
    failed_cases = sorted(f"{b} {n}" for b, cases in junit.items() for n, r in cases.items() if r == "failed")
    if failed_cases:
        out.append('<h2>Failed tests</h2><ul id="failed-tests">' + "".join(f"<li><code>{html.escape(f)}</code></li>" for f in failed_cases) + "</ul>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _short(command: str, limit: int = 140) -> str:
    return command if len(command) <= limit else command[: limit - 1] + "…"


# ── main ────────────────────────────────────────────────────────────────────────────────────


def default_results() -> Path:
    if os.environ.get("COMPTOIR_RESULTS_DIR"):
        return Path(os.environ["COMPTOIR_RESULTS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "comptoir" / "results"


def git_commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build(root: Path, matrix: Path, results: Path, out: Path) -> Path:
    try:
        matrix_text = matrix.read_text(encoding="utf-8")
    except OSError as e:
        raise DashboardError(f"cannot read the matrix {matrix}: {e}") from e
    name = matrix.relative_to(root).as_posix() if root in matrix.resolve().parents else str(matrix)
    criteria, matrix_counts = parse_matrix(matrix_text, expected_ids(root / "dev" / "check-matrix.sh"), name)
    steps = read_steps(results / "steps.tsv")
    junit = read_junit(results / "junit.xml")
    repo = Repo(root)
    reach = step_reach(steps, repo)
    for c in criteria:
        c.checks = cited_checks(c, repo)
        for chk in c.checks:
            evaluate(chk, steps, junit, reach, repo)
    stamp = (results / "steps.tsv").stat().st_mtime if (results / "steps.tsv").is_file() else dt.datetime.now().timestamp()
    run_date = dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = render(criteria, steps, junit, matrix_counts, git_commit(root), run_date, name)
    out.mkdir(parents=True, exist_ok=True)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--matrix", type=Path)
    parser.add_argument("--results", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    results = args.results or default_results()
    try:
        index = build(root, args.matrix or root / "docs" / "certification-matrix.md", results, args.out or results / "dashboard")
    except DashboardError as e:
        print(f"dashboard: error: {e}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
