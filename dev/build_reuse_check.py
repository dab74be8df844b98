#!/usr/bin/env python3
"""Checks that `cargo test` reuses what `cargo build` compiled (STYLE.md, "One build for tests
and binaries").

Cargo resolves features once per build. A feature that only the tests turn on (a
dev-dependency's `features = [...]`) gives a crate two resolutions, one for the binaries and one
for the tests, and each is compiled, with everything that depends on it: with tokio's
`test-util`, most of the dependency tree and all of our crates, twice in every fresh CI run.

This compares the unit graphs of `cargo build --workspace --bins` and `cargo test --workspace
--no-run` (what dev/up and the scripts build, and what the tests build). Every library, proc
macro and build script the first compiles must be one the second compiles too: same package,
target, features, profile settings and, recursively, the same dependencies. Binaries are left
out (the tests build only those their integration tests run). The unit graph is an unstable
cargo output, read with RUSTC_BOOTSTRAP=1 on the stable toolchain; it resolves, it builds nothing.

Usage: dev/build_reuse_check.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ["build", "--locked", "--workspace", "--bins"]
TEST = ["test", "--locked", "--workspace", "--no-run"]


def unit_graph(args: list[str]) -> dict:
    """Cargo's unit graph of `cargo ARGS` (resolved, not built)."""
    out = subprocess.run(
        ["cargo", *args, "-Z", "unstable-options", "--unit-graph"],
        cwd=ROOT,
        env={**os.environ, "RUSTC_BOOTSTRAP": "1"},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def signatures(graph: dict) -> dict[str, dict]:
    """Each unit by a signature of what cargo hashes into its artefact's name: package, target,
    mode, features, platform, profile settings (not the profile's name: `test` builds its
    dependencies with the dev profile's settings) and, recursively, its dependencies."""
    units = graph["units"]
    memo: dict[int, str] = {}

    def signature(index: int) -> str:
        if index not in memo:
            unit = units[index]
            profile = {k: v for k, v in unit["profile"].items() if k != "name"}
            memo[index] = hashlib.sha256(
                json.dumps(
                    [
                        unit["pkg_id"],
                        unit["target"]["kind"],
                        unit["target"]["name"],
                        unit["mode"],
                        unit["features"],
                        unit["platform"],
                        profile,
                        sorted(signature(dep["index"]) for dep in unit["dependencies"]),
                    ],
                    sort_keys=True,
                ).encode()
            ).hexdigest()
        return memo[index]

    return {signature(i): unit for i, unit in enumerate(units)}


def not_reused(build: dict, test: dict) -> list[str]:
    """Packages of the non-binary units of `build` that `test` does not have, sorted."""
    tested = signatures(test)
    missing = {
        unit["pkg_id"].rsplit("#", 1)[-1]
        for sig, unit in signatures(build).items()
        if "bin" not in unit["target"]["kind"] and sig not in tested
    }
    return sorted(missing)


def main() -> int:
    if len(sys.argv) > 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    missing = not_reused(unit_graph(BUILD), unit_graph(TEST))
    if missing:
        print(
            f"build_reuse_check: `cargo {' '.join(TEST)}` would compile {len(missing)} crate(s) "
            f"again that `cargo {' '.join(BUILD)}` compiled differently (a feature only the tests "
            "turn on, or what depends on one; STYLE.md):",
            file=sys.stderr,
        )
        for package in missing:
            print(f"  {package}", file=sys.stderr)
        return 1
    print("build_reuse_check: the tests reuse every crate the binaries' build compiles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
