"""Tests of dev/sbom_check.py on a small workspace: a document listing exactly what the binary
is built from passes; each way an SBOM can lie or fall short is caught.

Run: python3 -m unittest dev/tests/test_sbom_check.py   (dev/check-supply-chain.sh runs it)
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

sbom_check = load("sbom_check")

SVC = "path+file:///w/services/shop#comptoir-shop@0.1.0"
LIB = "path+file:///w/libs/kit#comptoir-kit@0.1.0"
TOKIO = "registry+https://github.com/rust-lang/crates.io-index#tokio@1.0.0"
CC = "registry+https://github.com/rust-lang/crates.io-index#cc@1.2.0"
MOCK = "registry+https://github.com/rust-lang/crates.io-index#mockall@0.13.0"
SUM = {"tokio": "a" * 64, "cc": "b" * 64, "mockall": "c" * 64}


def package(pid):
    name, version = pid.split("#")[1].split("@")
    return {"id": pid, "name": name, "version": version}


def dep(pid, kind=None):
    return {"pkg": pid, "dep_kinds": [{"kind": kind, "target": None}]}


def component(pid, **changes):
    name, version = pid.split("#")[1].split("@")
    c = {"type": "library", "bom-ref": pid, "name": name, "version": version,
         "purl": f"pkg:cargo/{name}@{version}", "licenses": [{"expression": "MIT"}]}
    if pid.startswith("registry+"):
        c["hashes"] = [{"alg": "SHA-256", "content": SUM[name]}]
    c.update(changes)
    return c


class SbomCheck(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        lock = "".join(f'[[package]]\nname = "{n}"\nversion = "{v}"\nchecksum = "{SUM[n]}"\n\n'
                       for n, v in (("tokio", "1.0.0"), ("cc", "1.2.0"), ("mockall", "0.13.0")))
        Path(self.root, "Cargo.lock").write_text(lock)
        # shop -> kit (normal) -> tokio; kit -> cc (build); shop -> mockall (dev only)
        self.metadata = {
            "workspace_root": self.root,
            "workspace_members": [SVC, LIB],
            "packages": [package(p) for p in (SVC, LIB, TOKIO, CC, MOCK)],
            "resolve": {"nodes": [
                {"id": SVC, "deps": [dep(LIB), dep(MOCK, "dev")]},
                {"id": LIB, "deps": [dep(TOKIO), dep(CC, "build")]},
                {"id": TOKIO, "deps": []},
                {"id": CC, "deps": []},
                {"id": MOCK, "deps": []},
            ]},
        }
        self.sbom = {
            "bomFormat": "CycloneDX", "specVersion": "1.5",
            "metadata": {"component": {"type": "application", "name": "comptoir-shop"}},
            "components": [component(LIB), component(TOKIO), component(CC)],
        }

    def problems(self, sbom=None):
        text = json.dumps(sbom or self.sbom)
        return "\n".join(sbom_check.problems_of(text, "comptoir-shop", self.metadata, schema=False))

    def test_exactly_the_shipped_crates_pass(self):
        self.assertEqual(self.problems(), "")

    def test_a_crate_built_in_but_missing_is_caught(self):
        sbom = copy.deepcopy(self.sbom)
        sbom["components"] = [c for c in sbom["components"] if c["name"] != "cc"]
        self.assertIn("cc 1.2.0 is built into comptoir-shop but missing", self.problems(sbom))

    def test_a_dev_dependency_listed_is_caught(self):
        sbom = copy.deepcopy(self.sbom)
        sbom["components"].append(component(MOCK))
        self.assertIn("mockall 0.13.0 is in the SBOM but not built into", self.problems(sbom))

    def test_a_checksum_other_than_the_lock_is_caught(self):
        sbom = copy.deepcopy(self.sbom)
        sbom["components"][1] = component(TOKIO, hashes=[{"alg": "SHA-256", "content": "f" * 64}])
        self.assertIn("tokio 1.0.0: SHA-256", self.problems(sbom))

    def test_a_crate_without_licence_or_purl_is_caught(self):
        sbom = copy.deepcopy(self.sbom)
        sbom["components"][0] = component(LIB, licenses=[], purl="")
        text = self.problems(sbom)
        self.assertIn("comptoir-kit 0.1.0: no licence", text)
        self.assertIn("comptoir-kit 0.1.0: no cargo purl", text)

    def test_a_document_about_something_else_is_caught(self):
        sbom = copy.deepcopy(self.sbom)
        sbom["metadata"]["component"]["name"] = "comptoir-kit"
        sbom["specVersion"] = "1.4"
        text = self.problems(sbom)
        self.assertIn("not the application 'comptoir-shop'", text)
        self.assertIn("not a CycloneDX 1.5 document", text)


if __name__ == "__main__":
    unittest.main()
