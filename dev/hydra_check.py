#!/usr/bin/env python3
"""Checks Comptoir's Hydra project as Hydra would read it (docs/delivery.md).

Hydra cannot run on CI machines, so dev/check-hydra.sh evaluates hydra/ with nix-instantiate
(pure Nix) and this script validates what came out:

  spec SPEC.json EVALUATED.json   the committed declarative spec (hydra/spec.json) is the one
                                  hydra/lib.nix generates, and a valid jobset spec
  jobsets PULLS.json OUT.json EXPECTED.json
                                  the jobsets hydra/jobsets.nix made from a sample pull request
                                  list are valid and exactly the expected ones, each pull
                                  request's jobset pinned to its head commit
  jobs JOBS.json                  the flake's hydraJobs (hydra/job-names.nix): every host has a
                                  job, and the release aggregate's constituents are exactly the
                                  shipped platform's packages and checks and the production hosts

The rules are Hydra's own: Hydra::Helper::AddBuilds (the keys a declarative jobset may carry)
and the Jobsets table of its schema (types, defaults and constraints).
"""

from __future__ import annotations

import json
import re
import sys

# validateDeclarativeJobset's allowed keys, plus `inputs`; anything else makes Hydra refuse
# the update ("invalid keys ... in declarative specification file").
ALLOWED_KEYS = {
    "enabled",
    "hidden",
    "type",
    "flake",
    "description",
    "nixexprinput",
    "nixexprpath",
    "checkinterval",
    "schedulingshares",
    "enableemail",
    "enable_dynamic_run_command",
    "emailoverride",
    "keepnr",
    "inputs",
}
# Jobsets.emailOverride is `text not null` without a default, so a spec must give it.
REQUIRED_KEYS = {"enabled", "type", "emailoverride", "inputs"}
# Jobset names as Hydra's routes accept them (Hydra::Helper::CatalystUtils, $jobsetNameRE).
JOBSET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Input types: Hydra's built-in ones and those of the plugins a stock Hydra loads.
INPUT_TYPES = {"string", "boolean", "nix", "build", "sysbuild", "eval", "git", "path", "hg", "svn", "svn-checkout",
               "bzr", "bzr-checkout", "darcs", "githubpulls", "gitlabpulls", "bitbucketpulls",
               "github_refs"}
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_flag(value) -> bool:
    """Hydra stores these as integers 0/1; JSON booleans are accepted as well."""
    return isinstance(value, bool) or value in (0, 1)


def jobset_problems(name: str, spec) -> list[str]:
    """Every reason Hydra would refuse (or mis-store) this jobset spec; empty when valid."""
    where = f"jobset {name!r}"
    if not JOBSET_NAME.match(name) and name != ".jobsets":
        return [f"{where}: not a valid Hydra jobset name"]
    if not isinstance(spec, dict):
        return [f"{where}: the spec is not a JSON object"]
    problems = []
    for key in sorted(set(spec) - ALLOWED_KEYS):
        problems.append(f"{where}: key {key!r} is not one Hydra accepts")
    for key in sorted(REQUIRED_KEYS - set(spec)):
        problems.append(f"{where}: key {key!r} is missing")
    if "enable_dynamic_run_command" in spec:
        # Hydra tests `defined`, so even false turns it on, and a jobset may then run its jobs'
        # hooks on the Hydra host.
        problems.append(f"{where}: enable_dynamic_run_command must be absent (Hydra enables it when present, even false)")

    def check(key, ok, what):
        if key in spec and not ok(spec[key]):
            problems.append(f"{where}: {key} must be {what}, not {spec[key]!r}")

    check("enabled", lambda v: is_int(v) and v in (0, 1, 2, 3), "0, 1, 2 or 3")
    check("hidden", is_flag, "a boolean")
    check("enableemail", is_flag, "a boolean")
    check("type", lambda v: is_int(v) and v in (0, 1), "0 (legacy) or 1 (flake)")
    for key in ("description", "emailoverride", "flake", "nixexprinput", "nixexprpath"):
        check(key, lambda v: isinstance(v, str), "a string")
    check("checkinterval", lambda v: is_int(v) and v >= 0, "an integer >= 0")
    check("schedulingshares", lambda v: is_int(v) and v > 0, "an integer > 0")
    check("keepnr", lambda v: is_int(v) and v >= 0, "an integer >= 0")

    # jobsets_legacy_paths_check and jobsets_flake_paths_check.
    kind = spec.get("type")
    if kind == 1:
        if not spec.get("flake"):
            problems.append(f"{where}: a flake jobset (type 1) needs `flake`")
        for key in ("nixexprinput", "nixexprpath"):
            if key in spec:
                problems.append(f"{where}: a flake jobset (type 1) must not have {key}")
    elif kind == 0:
        for key in ("nixexprinput", "nixexprpath"):
            if not spec.get(key):
                problems.append(f"{where}: a legacy jobset (type 0) needs {key}")
        if "flake" in spec:
            problems.append(f"{where}: a legacy jobset (type 0) must not have `flake`")

    inputs = spec.get("inputs")
    if "inputs" in spec and not isinstance(inputs, dict):
        problems.append(f"{where}: inputs must be an object")
    elif isinstance(inputs, dict):
        for input_name, data in sorted(inputs.items()):
            at = f"{where}: input {input_name!r}"
            if not isinstance(data, dict):
                problems.append(f"{at}: not an object")
                continue
            for key in sorted(set(data) - {"type", "value", "emailresponsible"}):
                problems.append(f"{at}: key {key!r} is not one Hydra reads")
            if data.get("type") not in INPUT_TYPES:
                problems.append(f"{at}: unknown input type {data.get('type')!r}")
            if not isinstance(data.get("value"), str) or not data.get("value"):
                problems.append(f"{at}: value must be a non-empty string")
            if "emailresponsible" in data and not is_flag(data["emailresponsible"]):
                problems.append(f"{at}: emailresponsible must be a boolean")
        if kind == 0 and spec.get("nixexprinput") not in inputs:
            problems.append(f"{where}: nixexprinput {spec.get('nixexprinput')!r} names no input")
    return problems


def check_spec(committed: dict, evaluated: dict) -> list[str]:
    problems = []
    if committed != evaluated:
        problems.append("hydra/spec.json is not what hydra/lib.nix generates: run dev/check-hydra.sh --write")
    problems += jobset_problems(".jobsets", committed)
    if committed.get("type") != 0 or committed.get("nixexprpath") != "hydra/jobsets.nix":
        problems.append("the declarative spec must evaluate hydra/jobsets.nix (a legacy, type 0 jobset)")
    for needed in ("src", "nixpkgs", "pulls"):
        if needed not in committed.get("inputs", {}):
            problems.append(f"the declarative spec has no {needed!r} input, which hydra/jobsets.nix takes")
    return problems


def check_jobsets(pulls: list, jobsets: dict, expected: list[str]) -> list[str]:
    problems = []
    if not isinstance(jobsets, dict):
        return ["hydra/jobsets.nix did not produce a JSON object of jobsets"]
    for name, spec in sorted(jobsets.items()):
        problems += jobset_problems(name, spec)
        if name == ".jobsets":
            problems.append("the generated jobsets must not redefine .jobsets")
    if sorted(jobsets) != sorted(expected):
        problems.append(f"jobsets {sorted(jobsets)}, expected {sorted(expected)}")
    heads = {f"pr-{p['number']}": p["head"]["sha"] for p in pulls
             if isinstance(p, dict) and isinstance(p.get("number"), int)
             and isinstance(p.get("head"), dict) and isinstance(p["head"].get("sha"), str)}
    for name, spec in jobsets.items():
        flake = spec.get("flake", "") if isinstance(spec, dict) else ""
        if name.startswith("pr-"):
            sha = heads.get(name, "")
            if not COMMIT.match(sha) or not flake.endswith(f"&rev={sha}"):
                problems.append(f"jobset {name!r} is not pinned to its pull request's head commit: {flake}")
        elif "rev=" in flake:
            problems.append(f"jobset {name!r} follows a branch and must not pin a commit: {flake}")
    return problems


def check_jobs(jobs: dict) -> list[str]:
    problems = []
    shipped = "x86_64-linux"
    release = jobs["release"]
    env = jobs["releaseEnvironment"]
    hosts = jobs["hostsByEnv"]

    if sorted(jobs["hosts"]) != sorted(hosts):
        problems.append(f"hydraJobs.hosts {sorted(jobs['hosts'])} are not the inventory's hosts {sorted(hosts)}")
    for system in jobs["packages"]:
        if not jobs["checks"].get(system):
            problems.append(f"no checks for {system}")

    expected = (
        [f"packages.{shipped}.{name}" for name in jobs["packages"][shipped]]
        + [f"checks.{shipped}.{name}" for name in jobs["checks"][shipped]]
        + [f"hosts.{host}" for host, host_env in hosts.items() if host_env == env]
    )
    recorded = release["releaseJson"]["constituents"]
    if sorted(recorded) != sorted(expected):
        missing = sorted(set(expected) - set(recorded))
        extra = sorted(set(recorded) - set(expected))
        problems.append(f"the release's constituents differ from what production needs: missing {missing}, extra {extra}")
    if len(release["constituents"]) != len(recorded):
        problems.append("the release aggregate's derivations and its recorded names disagree")
    if not any(name.startswith(f"checks.{shipped}.") for name in recorded):
        problems.append("the release gates on no check")
    if not any(f"hosts.{host}" in recorded for host, host_env in hosts.items() if host_env == env):
        problems.append(f"the release gates on no {env} host")

    info = release["releaseJson"]
    if info.get("rev") != jobs["rev"]:
        problems.append(f"release.json rev {info.get('rev')!r} is not the commit built ({jobs['rev']})")
    if info.get("source") != jobs["source"]:
        problems.append("release.json source is not the flake's source")
    if not str(info.get("flake", "")).endswith(f"?rev={jobs['rev']}"):
        problems.append(f"release.json flake {info.get('flake')!r} does not pin the commit")
    if info.get("environment") != env:
        problems.append(f"release.json environment {info.get('environment')!r}, expected {env!r}")
    nodes = (info.get("fleet") or {}).get("nodes", {})
    missing_nodes = sorted(h for h, e in hosts.items() if e == env and h not in nodes)
    if missing_nodes:
        problems.append(f"release.json's fleet (the deploy wrapper's inventory) lacks {missing_nodes}")
    if "releaseJson" not in release["passAsFile"]:
        problems.append("the release does not write release.json (passAsFile)")
    return problems


def load(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("spec", "jobsets", "jobs"):
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if command == "spec" and len(args) == 2:
        problems = check_spec(load(args[0]), load(args[1]))
        what = "the declarative spec"
    elif command == "jobsets" and len(args) == 3:
        problems = check_jobsets(load(args[0]), load(args[1]), load(args[2]))
        what = f"the jobsets of {args[0]}"
    elif command == "jobs" and len(args) == 1:
        problems = check_jobs(load(args[0]))
        what = "the flake's hydraJobs"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"hydra: {problem}", file=sys.stderr)
    if problems:
        print(f"hydra: {what}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"hydra: {what}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
