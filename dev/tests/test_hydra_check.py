"""Tests of dev/hydra_check.py: valid specs pass, and each mistake Hydra would refuse (or that
would let a pull request reach production) is caught.

Run: python3 -m unittest dev/tests/test_hydra_check.py   (dev/check-hydra.sh runs it)
"""

from __future__ import annotations

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

hydra = load("hydra_check")

SHA = "3f9c2a7e4b1d6058c9a0e2f4b6d8a1c3e5f70912"
REV = "0123456789abcdef0123456789abcdef01234567"

FLAKE = {
    "enabled": 1,
    "hidden": False,
    "type": 1,
    "flake": "git+https://forge.example/o/r.git?ref=main",
    "description": "main",
    "checkinterval": 300,
    "schedulingshares": 100,
    "enableemail": False,
    "emailoverride": "",
    "keepnr": 3,
    "inputs": {},
}

LEGACY = {
    "enabled": 1,
    "hidden": True,
    "type": 0,
    "description": "jobsets",
    "nixexprinput": "src",
    "nixexprpath": "hydra/jobsets.nix",
    "checkinterval": 60,
    "schedulingshares": 100,
    "enableemail": False,
    "emailoverride": "",
    "keepnr": 3,
    "inputs": {
        "src": {"type": "git", "value": "https://forge.example/o/r.git main", "emailresponsible": False},
        "nixpkgs": {"type": "git", "value": "https://github.com/NixOS/nixpkgs.git nixos-25.11", "emailresponsible": False},
        "pulls": {"type": "path", "value": "https://forge.example/api/v1/repos/o/r/pulls 60", "emailresponsible": False},
    },
}


def pull(number, sha=SHA):
    return {"number": number, "state": "open", "base": {"ref": "main"}, "head": {"sha": sha}}


def with_(base, **changes):
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


class JobsetSpec(unittest.TestCase):
    def problems(self, spec, name="main"):
        return "\n".join(hydra.jobset_problems(name, spec))

    def test_valid_flake_and_legacy_jobsets_pass(self):
        self.assertEqual(hydra.jobset_problems("main", FLAKE), [])
        self.assertEqual(hydra.jobset_problems(".jobsets", LEGACY), [])

    def test_a_key_hydra_does_not_accept_is_refused(self):
        self.assertIn("'branch' is not one Hydra accepts", self.problems(with_(FLAKE, branch="main")))

    def test_dynamic_run_command_is_refused_even_false(self):
        self.assertIn("enable_dynamic_run_command must be absent",
                      self.problems(with_(FLAKE, enable_dynamic_run_command=False)))

    def test_emailoverride_is_required(self):
        self.assertIn("'emailoverride' is missing", self.problems(with_(FLAKE, emailoverride=None)))

    def test_types_are_checked(self):
        self.assertIn("keepnr must be an integer", self.problems(with_(FLAKE, keepnr="3")))
        self.assertIn("schedulingshares must be an integer > 0", self.problems(with_(FLAKE, schedulingshares=0)))
        self.assertIn("enabled must be 0, 1, 2 or 3", self.problems(with_(FLAKE, enabled=True)))
        self.assertIn("hidden must be a boolean", self.problems(with_(FLAKE, hidden="no")))

    def test_flake_and_legacy_fields_do_not_mix(self):
        self.assertIn("needs `flake`", self.problems(with_(FLAKE, flake=None)))
        self.assertIn("must not have nixexprpath", self.problems(with_(FLAKE, nixexprpath="x.nix")))
        self.assertIn("must not have `flake`", self.problems(with_(LEGACY, flake="git+x"), ".jobsets"))
        self.assertIn("nixexprinput 'source' names no input",
                      self.problems(with_(LEGACY, nixexprinput="source"), ".jobsets"))

    def test_inputs_are_checked(self):
        spec = with_(LEGACY, inputs={"src": {"type": "gitea_pulls", "value": ""}})
        text = self.problems(spec, ".jobsets")
        self.assertIn("unknown input type 'gitea_pulls'", text)
        self.assertIn("value must be a non-empty string", text)

    def test_a_jobset_name_hydra_cannot_route_is_refused(self):
        self.assertIn("not a valid Hydra jobset name", self.problems(FLAKE, "pr 12"))


class Spec(unittest.TestCase):
    def test_the_committed_spec_must_be_the_generated_one(self):
        self.assertEqual(hydra.check_spec(LEGACY, copy.deepcopy(LEGACY)), [])
        drifted = with_(LEGACY, keepnr=4)
        self.assertIn("is not what hydra/lib.nix generates", "\n".join(hydra.check_spec(drifted, LEGACY)))

    def test_the_spec_must_pass_the_pull_list_to_the_jobsets(self):
        no_pulls = with_(LEGACY, inputs={k: v for k, v in LEGACY["inputs"].items() if k != "pulls"})
        self.assertIn("no 'pulls' input", "\n".join(hydra.check_spec(no_pulls, no_pulls)))


class Jobsets(unittest.TestCase):
    def pr_jobset(self, rev=SHA):
        return with_(FLAKE, flake=f"git+https://forge.example/o/r.git?ref=refs/pull/12/head&rev={rev}")

    def test_expected_jobsets_pass(self):
        jobsets = {"main": FLAKE, "pr-12": self.pr_jobset()}
        self.assertEqual(hydra.check_jobsets([pull(12)], jobsets, ["main", "pr-12"]), [])

    def test_a_missing_or_extra_jobset_is_reported(self):
        text = "\n".join(hydra.check_jobsets([pull(12)], {"main": FLAKE}, ["main", "pr-12"]))
        self.assertIn("expected ['main', 'pr-12']", text)

    def test_a_pull_request_must_be_pinned_to_its_head(self):
        other = "f" * 40
        text = "\n".join(hydra.check_jobsets([pull(12)], {"pr-12": self.pr_jobset(other)}, ["pr-12"]))
        self.assertIn("not pinned to its pull request's head commit", text)

    def test_a_branch_jobset_must_follow_its_branch(self):
        pinned = with_(FLAKE, flake=f"git+https://forge.example/o/r.git?rev={SHA}")
        text = "\n".join(hydra.check_jobsets([], {"main": pinned}, ["main"]))
        self.assertIn("must not pin a commit", text)


def jobs(**release_changes):
    names = (["packages.x86_64-linux.svc", "packages.x86_64-linux.svc-image",
              "checks.x86_64-linux.clippy", "hosts.prod-1"])
    info = {"rev": REV, "source": "/nix/store/x-source", "flake": f"git+https://f/r.git?rev={REV}",
            "environment": "prod", "constituents": names,
            "fleet": {"nodes": {"prod-1": {}, "staging-1": {}}}}
    info.update(release_changes)
    return {
        "packages": {"x86_64-linux": ["svc", "svc-image"], "aarch64-linux": ["svc"]},
        "checks": {"x86_64-linux": ["clippy"], "aarch64-linux": ["clippy"]},
        "hosts": ["prod-1", "staging-1"],
        "hostsByEnv": {"prod-1": "prod", "staging-1": "staging"},
        "release": {"constituents": ["a"] * len(info["constituents"]), "passAsFile": ["releaseJson"],
                    "releaseJson": info},
        "releaseEnvironment": "prod",
        "rev": REV,
        "source": "/nix/store/x-source",
    }


class Jobs(unittest.TestCase):
    def test_the_release_of_production_passes(self):
        self.assertEqual(hydra.check_jobs(jobs()), [])

    def test_a_release_without_a_production_host_is_caught(self):
        names = ["packages.x86_64-linux.svc", "packages.x86_64-linux.svc-image", "checks.x86_64-linux.clippy"]
        text = "\n".join(hydra.check_jobs(jobs(constituents=names)))
        self.assertIn("missing ['hosts.prod-1']", text)

    def test_a_staging_host_or_an_arm_package_does_not_gate_production(self):
        names = jobs()["release"]["releaseJson"]["constituents"] + ["hosts.staging-1", "packages.aarch64-linux.svc"]
        text = "\n".join(hydra.check_jobs(jobs(constituents=names)))
        self.assertIn("extra ['hosts.staging-1', 'packages.aarch64-linux.svc']", text)

    def test_the_release_must_carry_the_inventory_for_a_deploy_from_its_url(self):
        text = "\n".join(hydra.check_jobs(jobs(fleet={"nodes": {"staging-1": {}}})))
        self.assertIn("lacks ['prod-1']", text)

    def test_the_release_must_record_the_commit_it_was_built_from(self):
        text = "\n".join(hydra.check_jobs(jobs(rev="dirty", flake="git+https://f/r.git?ref=main")))
        self.assertIn("is not the commit built", text)
        self.assertIn("does not pin the commit", text)


if __name__ == "__main__":
    unittest.main()
