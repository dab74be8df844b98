#!/usr/bin/env python3
"""Checks Comptoir's dashboards and its monitoring, statically and against a live platform.

Usage:
  dev/monitoring_check.py lint [--promtool PATH] DASHBOARD_DIR
      Lints every *.json dashboard: the Prometheus data source by uid (`prometheus`, as
      nixos/modules/monitoring.nix provisions it) on every panel and query, unique dashboard
      uids, unique panel ids, panels inside the 24-column grid and not overlapping, a unit on
      every panel, a refId and an expression on every query, no template variable that the
      dashboard does not define; with --promtool, every expression parsed by promtool.
  dev/monitoring_check.py live --prometheus URL --alertmanager URL DASHBOARD_DIR
                               [--jaeger URL --trace-id HEX --services a,b,...]
                               [--expect-rule-files N] [--timeout SECONDS]
      Against a running Prometheus: every target up, every rule group of the rule files
      loaded and every rule healthy, the Alertmanager known to Prometheus and ready, then
      EVERY panel query of every dashboard answered without error and with at least one
      series (polled until the timeout: recording rules need a minute or two after start).
      With --jaeger: the trace --trace-id is one trace in Jaeger's query API holding spans of
      every service of --services.
Exits 1 on the first kind of failure with every problem of that kind listed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_COLUMNS = 24
# Grafana's unit ids the dashboards use; a typo would silently show raw numbers.
UNITS = {
    "short", "none", "percentunit", "percent", "s", "ms", "bytes", "reqps", "ops",
    "currencyEUR", "dateTimeAsIso",
}
VARIABLE = re.compile(r"\$(?:\{)?([A-Za-z_][A-Za-z0-9_]*)")


def load_dashboards(directory: Path) -> dict[Path, dict]:
    dashboards = {}
    for path in sorted(directory.glob("*.json")):
        dashboards[path] = json.loads(path.read_text())
    return dashboards


def panels_of(dashboard: dict) -> list[dict]:
    """Every panel, those inside rows included."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def queries(dashboards: dict[Path, dict]) -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) of every query."""
    return [
        (path.name, panel.get("title", "?"), target["expr"])
        for path, dashboard in dashboards.items()
        for panel in panels_of(dashboard)
        if panel.get("type") != "row"
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def lint(dashboards: dict[Path, dict]) -> list[str]:
    problems: list[str] = []
    uids: dict[str, str] = {}
    if not dashboards:
        problems.append("no dashboards found")
    for path, dashboard in dashboards.items():
        name = path.name
        uid = dashboard.get("uid")
        if not uid or not dashboard.get("title"):
            problems.append(f"{name}: a dashboard needs a uid and a title")
        elif uid in uids:
            problems.append(f"{name}: uid {uid!r} is also {uids[uid]}'s")
        else:
            uids[uid] = name
        variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
        ids: set[int] = set()
        cells: dict[tuple[int, int], str] = {}
        for panel in panels_of(dashboard):
            title = panel.get("title") or "?"
            where = f"{name}: panel {title!r}"
            pid = panel.get("id")
            if not isinstance(pid, int):
                problems.append(f"{where}: no integer id")
            elif pid in ids:
                problems.append(f"{where}: id {pid} is used twice")
            else:
                ids.add(pid)
            grid = panel.get("gridPos", {})
            x, y, w, h = (grid.get(k) for k in ("x", "y", "w", "h"))
            if not all(isinstance(v, int) for v in (x, y, w, h)) or w <= 0 or h <= 0:
                problems.append(f"{where}: gridPos needs integer x, y, w, h")
            elif x < 0 or x + w > GRID_COLUMNS:
                problems.append(f"{where}: outside the {GRID_COLUMNS}-column grid")
            else:
                for cx in range(x, x + w):
                    for cy in range(y, y + h):
                        other = cells.setdefault((cx, cy), title)
                        if other != title:
                            problems.append(f"{where}: overlaps panel {other!r}")
                            break
                    else:
                        continue
                    break
            if panel.get("type") == "row":
                continue
            if panel.get("datasource") != DATASOURCE:
                problems.append(f"{where}: the data source must be {DATASOURCE}")
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
            if unit not in UNITS:
                problems.append(f"{where}: unit {unit!r} is not one of {sorted(UNITS)}")
            targets = panel.get("targets") or []
            if not targets:
                problems.append(f"{where}: no query")
            refs = set()
            for target in targets:
                ref = target.get("refId")
                if not ref or ref in refs:
                    problems.append(f"{where}: every query needs its own refId")
                refs.add(ref)
                if target.get("datasource", DATASOURCE) != DATASOURCE:
                    problems.append(f"{where}: query {ref} names another data source")
                expr = target.get("expr", "")
                if not expr.strip():
                    problems.append(f"{where}: query {ref} has no expression")
                for var in VARIABLE.findall(expr):
                    if not var.startswith("__") and var not in variables:
                        problems.append(f"{where}: query {ref} uses ${var}, not a variable of the dashboard")
    return problems


def parse_with_promtool(promtool: str, exprs: list[tuple[str, str, str]]) -> list[str]:
    """promtool check rules on one recording rule per expression: its PromQL parser."""
    problems = []
    for name, title, expr in exprs:
        rules = {"groups": [{"name": "panel", "rules": [{"record": "panel:check", "expr": expr}]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            json.dump(rules, f)
            f.flush()
            run = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        if run.returncode != 0:
            message = (run.stdout + run.stderr).strip().splitlines()
            problems.append(f"{name}: panel {title!r}: {expr!r} does not parse: {message[-1] if message else '?'}")
    return problems


def get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 — our own URLs
        return json.load(response)


def prometheus_state(prom: str, expect_rule_files: int | None) -> list[str]:
    problems = []
    targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
    if not targets:
        problems.append("Prometheus has no active target")
    for target in targets:
        if target.get("health") != "up":
            labels = target.get("labels", {})
            problems.append(
                f"target {labels.get('job')} {labels.get('instance')} is {target.get('health')}: {target.get('lastError')}"
            )
    groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    files = {g["file"] for g in groups}
    if expect_rule_files is not None and len(files) != expect_rule_files:
        problems.append(f"{len(files)} rule files loaded, expected {expect_rule_files}: {sorted(files)}")
    for group in groups:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                problems.append(
                    f"rule {rule.get('name')} of group {group['name']}: {rule.get('health')} {rule.get('lastError', '')}"
                )
    managers = get_json(f"{prom}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
    if not managers:
        problems.append("Prometheus knows no Alertmanager")
    return problems


def query_problems(prom: str, exprs: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for name, title, expr in exprs:
        url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = get_json(url)
        except urllib.error.HTTPError as error:
            problems.append(f"{name}: panel {title!r}: {expr!r} fails: {error.read().decode(errors='replace')}")
            continue
        result = body.get("data", {}).get("result")
        if body.get("status") != "success":
            problems.append(f"{name}: panel {title!r}: {expr!r} fails: {body.get('error')}")
        elif not result:
            problems.append(f"{name}: panel {title!r}: {expr!r} returns no series")
    return problems


def trace_problems(jaeger: str, trace_id: str, services: list[str]) -> list[str]:
    try:
        body = get_json(f"{jaeger}/api/traces/{trace_id}")
    except urllib.error.HTTPError as error:
        return [f"Jaeger has no trace {trace_id} yet ({error.code})"]
    return trace_body_problems(body, trace_id, services)


def trace_body_problems(body: dict, trace_id: str, services: list[str]) -> list[str]:
    """What Jaeger's answer to /api/traces/<trace_id> lacks: one trace, with a span of each of
    `services` (the fleet lab reads the same answer from inside its namespaces)."""
    traces = body.get("data") or []
    if len(traces) != 1:
        return [f"Jaeger returns {len(traces)} traces for {trace_id}, expected one"]
    processes = traces[0].get("processes", {})
    spans = traces[0].get("spans", [])
    seen = {processes[s["processID"]]["serviceName"] for s in spans if s.get("processID") in processes}
    missing = [s for s in services if s not in seen]
    if missing:
        return [f"trace {trace_id} ({len(spans)} spans) has no span of {', '.join(missing)}; it has {sorted(seen)}"]
    return []


def poll(what: str, check, timeout: float) -> list[str]:
    """Runs check() until it returns no problem or the timeout passes; the last problems."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            problems = check()
        except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
            problems = [f"{what}: {error}"]
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(5)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_lint = sub.add_parser("lint")
    p_lint.add_argument("--promtool")
    p_lint.add_argument("directory", type=Path)
    p_live = sub.add_parser("live")
    p_live.add_argument("--prometheus", required=True)
    p_live.add_argument("--alertmanager", required=True)
    p_live.add_argument("--jaeger")
    p_live.add_argument("--trace-id")
    p_live.add_argument("--services", default="")
    p_live.add_argument("--expect-rule-files", type=int)
    p_live.add_argument("--timeout", type=float, default=240)
    p_live.add_argument("directory", type=Path)
    args = parser.parse_args(argv[1:])

    try:
        dashboards = load_dashboards(args.directory)
    except (OSError, json.JSONDecodeError) as error:
        print(f"monitoring_check: {error}", file=sys.stderr)
        return 1
    exprs = queries(dashboards)
    if args.command == "lint":
        problems = lint(dashboards)
        if not problems and args.promtool:
            problems = parse_with_promtool(args.promtool, exprs)
        for problem in problems:
            print(f"monitoring_check: {problem}", file=sys.stderr)
        if not problems:
            print(f"monitoring_check: {len(dashboards)} dashboards, {len(exprs)} queries: lint passes")
        return 1 if problems else 0

    prom, am = args.prometheus.rstrip("/"), args.alertmanager.rstrip("/")
    steps = [
        ("Prometheus", lambda: prometheus_state(prom, args.expect_rule_files)),
        ("Alertmanager", lambda: [] if get_json(f"{am}/api/v2/status")["cluster"]["status"] else ["not ready"]),
        ("panel queries", lambda: query_problems(prom, exprs)),
    ]
    if args.jaeger:
        if not args.trace_id:
            parser.error("--jaeger needs --trace-id")
        services = [s for s in args.services.split(",") if s]
        steps.append(("trace", lambda: trace_problems(args.jaeger.rstrip("/"), args.trace_id, services)))
    for what, check in steps:
        problems = poll(what, check, args.timeout)
        for problem in problems:
            print(f"monitoring_check: {what}: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"monitoring_check: {what}: ok")
    targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
    rules = sum(len(g["rules"]) for g in get_json(f"{prom}/api/v1/rules")["data"]["groups"])
    print(
        f"monitoring_check: {len(targets)} targets up, {rules} rules loaded and healthy, "
        f"{len(exprs)} panel queries of {len(dashboards)} dashboards return series"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
