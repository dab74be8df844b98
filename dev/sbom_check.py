#!/usr/bin/env python3
"""Checks one service's CycloneDX SBOM against the workspace it was made from.

Usage: sbom_check.py [--no-schema] SBOM.json CRATE METADATA.json
  SBOM.json      cargo-cyclonedx's document for CRATE (the arguments the flake's SBOM
                 packages use: nix/packages.nix sbomArgs)
  METADATA.json  `cargo metadata --format-version 1 --locked --filter-platform <target>`

The document must be valid CycloneDX 1.5 (its JSON schema, through cyclonedx-python-lib when
it is importable; --no-schema skips that part, which takes seconds a document: the documents of
one run come from the same generator with the same arguments, so one validated stands for the
shape of all), describe CRATE, and list exactly the crates CRATE's binary is built from:
its normal and build dependencies, transitively, for the target, never a dev-dependency (a
test helper is not shipped). Every crate from a registry carries its version, a purl, a
licence and the SHA-256 Cargo.lock pins for it.
"""

from __future__ import annotations

import json
import sys


def schema_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("cyclonedx") is not None


def schema_errors(text: str) -> str | None:
    if not schema_available():
        return None
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    return str(error) if error else None


def shipped_closure(metadata: dict, crate: str) -> set[tuple[str, str]]:
    """(name, version) of every package CRATE's binary is built from, CRATE excluded."""
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    roots = [p["id"] for p in metadata["packages"] if p["name"] == crate and p["id"] in metadata["workspace_members"]]
    if len(roots) != 1:
        raise SystemExit(f"sbom: {crate} is not one workspace member of the metadata")
    seen, todo = set(), list(roots)
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            kinds = {k.get("kind") for k in dep["dep_kinds"]}
            if kinds <= {"dev"}:
                continue
            if dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    return {(packages[i]["name"], packages[i]["version"]) for i in seen}


def lock_checksums(metadata: dict) -> dict[tuple[str, str], str]:
    """Cargo.lock's checksum of every registry package (cargo metadata does not carry them)."""
    import tomllib
    from pathlib import Path

    lock = tomllib.loads((Path(metadata["workspace_root"]) / "Cargo.lock").read_text())
    return {(p["name"], p["version"]): p["checksum"] for p in lock["package"] if "checksum" in p}


def problems_of(sbom_text: str, crate: str, metadata: dict, schema: bool = True) -> list[str]:
    problems = []
    error = schema_errors(sbom_text) if schema else None
    if error:
        problems.append(f"not valid CycloneDX 1.5: {error.splitlines()[0]}")
    sbom = json.loads(sbom_text)
    if sbom.get("bomFormat") != "CycloneDX" or sbom.get("specVersion") != "1.5":
        problems.append(f"not a CycloneDX 1.5 document: {sbom.get('bomFormat')} {sbom.get('specVersion')}")
    subject = sbom.get("metadata", {}).get("component", {})
    if subject.get("name") != crate or subject.get("type") != "application":
        problems.append(f"describes {subject.get('name')!r} ({subject.get('type')}), not the application {crate!r}")

    components = sbom.get("components", [])
    listed = {(c.get("name"), c.get("version")) for c in components}
    expected = shipped_closure(metadata, crate)
    for name, version in sorted(expected - listed):
        problems.append(f"{name} {version} is built into {crate} but missing from its SBOM")
    for name, version in sorted(listed - expected):
        problems.append(f"{name} {version} is in the SBOM but not built into {crate} (a dev-dependency?)")

    checksums = lock_checksums(metadata)
    for c in components:
        ref = c.get("bom-ref", "")
        where = f"{c.get('name')} {c.get('version')}"
        if not c.get("purl", "").startswith("pkg:cargo/"):
            problems.append(f"{where}: no cargo purl")
        if not c.get("licenses"):
            problems.append(f"{where}: no licence")
        if ref.startswith("registry+"):
            hashes = {h.get("alg"): h.get("content") for h in c.get("hashes", [])}
            pinned = checksums.get((c.get("name"), c.get("version")))
            if hashes.get("SHA-256") != pinned:
                problems.append(f"{where}: SHA-256 {hashes.get('SHA-256')} is not Cargo.lock's {pinned}")
    return problems


def main(argv: list[str]) -> int:
    args = argv[1:]
    schema = "--no-schema" not in args
    args = [a for a in args if a != "--no-schema"]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sbom_path, crate, metadata_path = args
    with open(sbom_path, encoding="utf-8") as f:
        text = f.read()
    with open(metadata_path, encoding="utf-8") as f:
        metadata = json.load(f)
    problems = problems_of(text, crate, metadata, schema)
    for problem in problems:
        print(f"sbom: {crate}: {problem}", file=sys.stderr)
    if problems:
        return 1
    count = len(json.loads(text).get("components", []))
    valid = "valid CycloneDX 1.5 (schema)" if schema and schema_available() else "CycloneDX 1.5"
    print(f"sbom: {crate}: {valid}, {count} components, exactly what its binary is built from")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
