#!/usr/bin/env python3
"""Fail when the Nix flake does not package and ship every service crate of the workspace.

The flake derives each service's package (`<name>`), layered image (`<name>-image`) and
streamed image (`<name>-image-stream`) from one pure-Nix data file, nix/services.nix. This
check evaluates that file with `nix-instantiate --eval --strict --json` (no nixpkgs needed)
and compares it with the Cargo workspace:

  * every workspace member under services/ has an entry, and no entry lacks a crate;
  * each entry names the member's crate (`comptoir-<folder>`) and a binary the crate declares;
  * each entry has a valid TCP port;
  * flake.nix imports nix/services.nix and builds packages and images from it.

Usage: dev/nix_services_check.py [REPO_ROOT]   (exit 0 ok, 1 mismatch, 2 tool error)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path


def workspace_services(root: Path) -> dict[str, dict]:
    """Service crates of the Cargo workspace, by folder name under services/."""
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    found = {}
    for member in manifest["workspace"]["members"]:
        parts = Path(member).parts
        if len(parts) != 2 or parts[0] != "services":
            continue
        crate_toml = tomllib.loads((root / member / "Cargo.toml").read_text())
        package = crate_toml["package"]["name"]
        bins = {b["name"] for b in crate_toml.get("bin", [])}
        if (root / member / "src" / "main.rs").exists():
            bins.add(package)  # Cargo's implicit binary
        found[parts[1]] = {"crate": package, "bins": bins}
    # A folder under services/ that is not a workspace member is a mistake too.
    for folder in sorted((root / "services").iterdir()) if (root / "services").is_dir() else []:
        if (folder / "Cargo.toml").exists() and folder.name not in found:
            found[folder.name] = {"crate": None, "bins": set(), "not_member": True}
    return found


def nix_services(root: Path) -> dict[str, dict]:
    cmd = ["nix-instantiate", "--eval", "--strict", "--json", str(root / "nix" / "services.nix")]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        print("nix_services_check: nix-instantiate not found (Debian package nix-bin)", file=sys.stderr)
        sys.exit(2)
    except subprocess.CalledProcessError as err:
        print(f"nix_services_check: evaluating nix/services.nix failed:\n{err.stderr}", file=sys.stderr)
        sys.exit(2)
    return json.loads(out)


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    cargo = workspace_services(root)
    nix = nix_services(root)
    problems = []

    for name, crate in sorted(cargo.items()):
        if crate.get("not_member"):
            problems.append(f"services/{name} has a Cargo.toml but is not a workspace member")
            continue
        expected = f"comptoir-{name}"
        if crate["crate"] != expected:
            problems.append(f"services/{name}: crate is {crate['crate']!r}, the convention says {expected!r}")
        entry = nix.get(name)
        if entry is None:
            problems.append(
                f"services/{name} ({crate['crate']}) has no entry in nix/services.nix, "
                f"so the flake builds no package {name!r} and no image {name + '-image'!r}"
            )
            continue
        if entry.get("crate") != crate["crate"]:
            problems.append(f"nix/services.nix {name}.crate = {entry.get('crate')!r}, Cargo says {crate['crate']!r}")
        if entry.get("binary") not in crate["bins"]:
            problems.append(
                f"nix/services.nix {name}.binary = {entry.get('binary')!r}, "
                f"not a binary of {crate['crate']} ({', '.join(sorted(crate['bins'])) or 'none'})"
            )
        port = entry.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            problems.append(f"nix/services.nix {name}.port = {port!r} is not a TCP port")

    for name in sorted(set(nix) - set(cargo)):
        problems.append(f"nix/services.nix has {name!r}, but the workspace has no services/{name} crate")

    # The wiring: the flake must build its per-service outputs from this file.
    flake = (root / "flake.nix").read_text()
    wiring = {
        "flake.nix imports ./nix/services.nix": "import ./nix/services.nix" in flake,
        "flake.nix builds packages with nix/packages.nix": "./nix/packages.nix" in flake,
        "flake.nix builds images with nix/images.nix": "./nix/images.nix" in flake,
        "nix/packages.nix maps over services": "builtins.mapAttrs mkService services"
        in (root / "nix" / "packages.nix").read_text(),
        "nix/images.nix maps over services": "mkImages name service) {} services"
        in (root / "nix" / "images.nix").read_text(),
    }
    problems += [f"wiring: expected {what}" for what, ok in wiring.items() if not ok]

    if problems:
        print("nix_services_check: the flake and the workspace disagree:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    names = ", ".join(sorted(nix))
    print(f"nix_services_check: {len(nix)} service(s) packaged and imaged by the flake: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
