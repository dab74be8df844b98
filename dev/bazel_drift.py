#!/usr/bin/env python3
"""Drift check between the Cargo workspace (the source of truth) and its Bazel twin.

Fails, with one line per problem, when:
  - a workspace member has no BUILD.bazel beside its Cargo.toml;
  - MODULE.bazel's crate.from_cargo(manifests = [...]) does not list exactly the workspace's
    Cargo.toml files (crate_universe needs every member);
  - a Cargo library, binary ([[bin]], src/main.rs, src/bin/*.rs) or integration test
    ([[test]], tests/*.rs, tests/*/main.rs) has no Bazel twin: a rust_library / rust_binary /
    rust_test whose crate_root (or single source) is the same file;
  - a Bazel crate name differs from Cargo's (package or bin name, with - turned into _);
  - a Bazel Rust target names a crate_root that does not exist;
  - a service (services/<name>) has no alias in the root BUILD.bazel;
  - a test reads CARGO_BIN_EXE_<bin> without that binary in its `data` and the variable in its
    `rustc_env` (rules_rust defines it only so; the test would not compile);
  - a target that is not testonly depends on a testonly one (Bazel stops at analysis);
  - a test, or a testonly library, builds a run-time path from env!("CARGO_MANIFEST_DIR")
    without the `local` tag: rules_rust sets it to the compile sandbox, gone when the test runs
    (include_str!/include_bytes! at compile time are fine);
  - the nextest `hermetic` profile (.config/nextest.toml, what the Nix sandbox runs) and the
    Bazel integration tests without the `integration` tag name different test binaries;
  - .bazelignore does not keep //... out of a Cargo target/ inside the checkout.

Usage: dev/bazel_drift.py [--root DIR]   (default: the repository holding this script)
Exit 0 when in step, 1 with the list otherwise, 2 when a file cannot be read or parsed.
Standard library only (Python >= 3.11 for tomllib). BUILD files are Starlark, read here with
Python's ast (the subset our BUILD files use: calls, lists, dicts, +, names, glob()).
"""

from __future__ import annotations

import argparse
import ast
import glob as globlib
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

RUST_RULES = {"rust_library", "rust_proc_macro", "rust_binary", "rust_test"}
BUILD_NAMES = ("BUILD.bazel", "BUILD")


class Unreadable(Exception):
    """A file that exists but cannot be parsed."""


@dataclass
class BazelTarget:
    rule: str
    name: str
    crate_name: str | None
    crate_root: str | None  # package-relative
    srcs: list[str] = field(default_factory=list)  # package-relative
    has_crate_attr: bool = False
    crate: str | None = None  # the `crate` attribute (a label), for unit-test targets
    testonly: bool = False
    tags: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)  # labels: deps, proc_macro_deps, data, crate
    data: list[str] = field(default_factory=list)  # labels
    rustc_env: dict[str, str] = field(default_factory=dict)

    def effective_crate_name(self) -> str:
        return self.crate_name or self.name.replace("-", "_")

    def root_file(self) -> str | None:
        """The crate root as rules_rust picks it: crate_root, else the only source."""
        if self.crate_root:
            return self.crate_root
        if len(self.srcs) == 1:
            return self.srcs[0]
        return None


@dataclass
class CargoTarget:
    kind: str  # "lib", "proc-macro", "bin", "test"
    name: str  # Cargo target name
    path: str  # package-relative source path


# --------------------------------------------------------------------------- Starlark reading


class _Evaluator:
    """Evaluates the constant parts of a BUILD file: enough to find names, roots and srcs."""

    def __init__(self, package_dir: Path, variables: dict[str, object]):
        self.package_dir = package_dir
        self.variables = variables

    def eval(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values) if k}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.eval(node.left), self.eval(node.right)
            if isinstance(left, list) and isinstance(right, list):
                return left + right
            # `[labels] + all_crate_deps(...)`: the macro's part is third-party crates, never a
            # workspace target, so the known labels are what the checks need.
            if isinstance(left, list) and right is None:
                return left
            if left is None and isinstance(right, list):
                return right
            if isinstance(left, str) and isinstance(right, str):
                return left + right
            return None
        if isinstance(node, ast.Name):
            return self.variables.get(node.id)
        if isinstance(node, ast.Call) and _call_name(node) == "glob":
            return self._glob(node)
        return None  # macros such as all_crate_deps(): irrelevant here

    def _glob(self, node: ast.Call) -> list[str]:
        include = self.eval(node.args[0]) if node.args else None
        exclude: object = []
        for kw in node.keywords:
            if kw.arg == "include":
                include = self.eval(kw.value)
            elif kw.arg == "exclude":
                exclude = self.eval(kw.value)
        found: set[str] = set()
        for pattern in include if isinstance(include, list) else []:
            for hit in globlib.glob(str(self.package_dir / pattern), recursive=True):
                if Path(hit).is_file():
                    found.add(Path(hit).relative_to(self.package_dir).as_posix())
        for pattern in exclude if isinstance(exclude, list) else []:
            for hit in globlib.glob(str(self.package_dir / pattern), recursive=True):
                found.discard(Path(hit).relative_to(self.package_dir).as_posix())
        return sorted(found)


def _call_name(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else None


def _label_to_package_path(label: str) -> str:
    """':x' or 'x' → 'x' (package-relative); other packages are not sources of this crate."""
    return label[1:] if label.startswith(":") else label


def read_build_file(path: Path) -> tuple[list[BazelTarget], list[ast.Call]]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError) as err:
        raise Unreadable(f"{path}: cannot parse ({err})") from err
    evaluator = _Evaluator(path.parent, {})
    targets: list[BazelTarget] = []
    calls: list[ast.Call] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                evaluator.variables[target.id] = evaluator.eval(stmt.value)
            continue
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            continue
        call = stmt.value
        calls.append(call)
        rule = _call_name(call)
        kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg}

        def attr(key: str, kwargs=kwargs) -> object:
            return evaluator.eval(kwargs[key]) if key in kwargs else None

        def labels(*keys: str) -> list[str]:
            out: list[str] = []
            for key in keys:
                value = attr(key)
                if isinstance(value, list):
                    out += [v for v in value if isinstance(v, str)]
                elif isinstance(value, str):
                    out.append(value)
            return out

        name = attr("name")
        if rule in MACROS:
            if not isinstance(name, str):
                raise Unreadable(f"{path}: a {rule} without a literal name")
            targets.extend(expand_macro(rule, name, attr, evaluator))
            continue
        if rule not in RUST_RULES:
            # Other rules matter only for testonly (a filegroup or macro can be testonly too).
            if isinstance(name, str) and rule is not None:
                targets.append(
                    BazelTarget(
                        rule=rule,
                        name=name,
                        crate_name=None,
                        crate_root=None,
                        testonly=attr("testonly") is True,
                        deps=labels("deps", "srcs", "data", "actual"),
                    )
                )
            continue
        if not isinstance(name, str):
            raise Unreadable(f"{path}: a {rule} without a literal name")
        crate_name, crate_root, srcs = attr("crate_name"), attr("crate_root"), attr("srcs") or []
        tags, rustc_env, crate = attr("tags"), attr("rustc_env"), attr("crate")
        targets.append(
            BazelTarget(
                rule=rule,
                name=name,
                crate_name=crate_name if isinstance(crate_name, str) else None,
                crate_root=_label_to_package_path(crate_root)
                if isinstance(crate_root, str)
                else None,
                srcs=[_label_to_package_path(s) for s in srcs if isinstance(s, str)]
                if isinstance(srcs, list)
                else [],
                has_crate_attr="crate" in kwargs,
                crate=crate if isinstance(crate, str) else None,
                testonly=rule == "rust_test" or attr("testonly") is True,
                tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
                deps=labels("deps", "proc_macro_deps", "data", "crate"),
                data=labels("data"),
                rustc_env={k: v for k, v in rustc_env.items() if isinstance(v, str)}
                if isinstance(rustc_env, dict)
                else {},
            )
        )
    return targets, calls


# --------------------------------------------------------------------------- //bazel:comptoir.bzl

# The macros of bazel/comptoir.bzl, expanded here into the rust_* targets they declare (keep
# the two in step: the tests in dev/tests/ exercise this expansion).
MACROS = {"comptoir_crate", "comptoir_integration_test"}
_PLATFORM_TAGS = ["external", "integration", "local", "requires-network"]


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def expand_macro(rule: str, name: str, attr, evaluator: _Evaluator) -> list[BazelTarget]:
    """The targets `comptoir_crate` / `comptoir_integration_test` create, as Bazel would."""
    deps = _strings(attr("deps"))
    data = _strings(attr("data"))
    if rule == "comptoir_crate":
        crate_name = attr("crate_name")
        crate_name = crate_name if isinstance(crate_name, str) else None
        srcs = [
            src
            for src in evaluator.eval(ast.parse('glob(["src/**/*.rs"])', mode="eval").body) or []
            if src != "src/main.rs"
        ]
        testonly = attr("testonly") is True
        targets = [
            BazelTarget(
                rule="rust_library",
                name=name,
                crate_name=crate_name,
                crate_root="src/lib.rs",
                srcs=srcs,
                testonly=testonly,
                tags=_strings(attr("tags")),
                deps=deps + data,
                data=data,
            ),
            BazelTarget(
                rule="rust_test",
                name="unit_test",
                crate_name=None,
                crate_root=None,
                has_crate_attr=True,
                crate=f":{name}",
                testonly=True,
                tags=_strings(attr("unit_test_tags")),
                deps=[f":{name}"],
            ),
        ]
        binary = attr("binary")
        if isinstance(binary, str):
            targets += [
                BazelTarget(
                    rule="rust_binary",
                    name=binary,
                    crate_name=crate_name,
                    crate_root="src/main.rs",
                    srcs=["src/main.rs"],
                    testonly=testonly,
                    deps=[f":{name}"] + deps,
                ),
                BazelTarget(
                    rule="rust_test",
                    name="bin_unit_test",
                    crate_name=None,
                    crate_root=None,
                    has_crate_attr=True,
                    crate=f":{binary}",
                    testonly=True,
                    deps=[f":{binary}"],
                ),
            ]
        return targets
    crate = attr("crate")
    binaries = _strings(attr("binaries"))
    tags = (_PLATFORM_TAGS if attr("platform") is True else []) + (
        ["exclusive"] if attr("exclusive") is True else []
    )
    root = f"tests/{name}.rs"
    return [
        BazelTarget(
            rule="rust_test",
            name=f"{name}_test",
            crate_name=None,
            crate_root=root,
            srcs=[root] + _strings(attr("support")),
            testonly=True,
            tags=tags,
            deps=([crate] if isinstance(crate, str) else []) + deps + data + binaries,
            data=data + binaries,
            rustc_env={f"CARGO_BIN_EXE_{b.lstrip(':')}": f"$(rootpath {b})" for b in binaries},
        )
    ]


# --------------------------------------------------------------------------- Cargo reading


def read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise Unreadable(f"{path}: cannot parse ({err})") from err


def workspace_members(root: Path, manifest: dict) -> list[str]:
    workspace = manifest.get("workspace", {})
    excluded = {Path(e).as_posix() for e in workspace.get("exclude", [])}
    members: list[str] = []
    for pattern in workspace.get("members", []):
        hits = sorted(globlib.glob(str(root / pattern))) if any(c in pattern for c in "*?[") else [
            str(root / pattern)
        ]
        for hit in hits:
            rel = Path(hit).relative_to(root).as_posix()
            if rel not in excluded and rel not in members:
                members.append(rel)
    if "package" in manifest and "." not in members:
        members.insert(0, ".")
    return members


def cargo_targets(package_dir: Path, manifest: dict) -> list[CargoTarget]:
    """The library, binaries and integration tests Cargo builds, with Cargo's auto-discovery."""
    package = manifest.get("package", {})
    package_name = package["name"]
    targets: list[CargoTarget] = []

    lib = manifest.get("lib")
    lib_path = (lib or {}).get("path", "src/lib.rs")
    if lib is not None or (package_dir / "src/lib.rs").is_file():
        kind = "proc-macro" if (lib or {}).get("proc-macro") else "lib"
        targets.append(CargoTarget(kind, (lib or {}).get("name", package_name), lib_path))

    bins = manifest.get("bin", [])
    listed_bin_paths: set[str] = set()
    for entry in bins:
        path = entry.get("path") or (
            "src/main.rs" if entry["name"] == package_name and (package_dir / "src/main.rs").is_file()
            else f"src/bin/{entry['name']}.rs"
        )
        listed_bin_paths.add(path)
        targets.append(CargoTarget("bin", entry["name"], path))
    if package.get("autobins", True):
        if (package_dir / "src/main.rs").is_file() and "src/main.rs" not in listed_bin_paths:
            targets.append(CargoTarget("bin", package_name, "src/main.rs"))
        for path in sorted((package_dir / "src/bin").glob("*.rs")):
            rel = path.relative_to(package_dir).as_posix()
            if rel not in listed_bin_paths:
                targets.append(CargoTarget("bin", path.stem, rel))
        for path in sorted((package_dir / "src/bin").glob("*/main.rs")):
            rel = path.relative_to(package_dir).as_posix()
            if rel not in listed_bin_paths:
                targets.append(CargoTarget("bin", path.parent.name, rel))

    listed_test_paths: set[str] = set()
    for entry in manifest.get("test", []):
        path = entry.get("path", f"tests/{entry['name']}.rs")
        listed_test_paths.add(path)
        targets.append(CargoTarget("test", entry["name"], path))
    if package.get("autotests", True):
        for path in sorted((package_dir / "tests").glob("*.rs")):
            rel = path.relative_to(package_dir).as_posix()
            if rel not in listed_test_paths:
                targets.append(CargoTarget("test", path.stem, rel))
        for path in sorted((package_dir / "tests").glob("*/main.rs")):
            rel = path.relative_to(package_dir).as_posix()
            if rel not in listed_test_paths:
                targets.append(CargoTarget("test", path.parent.name, rel))
    return targets


# --------------------------------------------------------------------------- checks

RULE_FOR_KIND = {
    "lib": {"rust_library"},
    "proc-macro": {"rust_proc_macro"},
    "bin": {"rust_binary"},
    "test": {"rust_test"},
}


def check_member(root: Path, member: str, problems: list[str]) -> list[BazelTarget]:
    package_dir = root / member
    label = "//" if member == "." else f"//{member}"
    manifest = read_toml(package_dir / "Cargo.toml")
    if "package" not in manifest:
        return []  # a virtual manifest: nothing to build
    build = next((package_dir / n for n in BUILD_NAMES if (package_dir / n).is_file()), None)
    if build is None:
        problems.append(f"{member}: workspace member has no BUILD.bazel beside its Cargo.toml")
        return []
    targets, _ = read_build_file(build)
    rel_build = build.relative_to(root).as_posix()

    for bazel in targets:
        root_file = bazel.crate_root
        if root_file and not (package_dir / root_file).is_file():
            problems.append(
                f"{rel_build}: {bazel.rule} {label}:{bazel.name} has crate_root "
                f"{root_file!r}, which does not exist"
            )

    for cargo in cargo_targets(package_dir, manifest):
        if not (package_dir / cargo.path).is_file():
            problems.append(f"{member}/Cargo.toml: {cargo.kind} {cargo.name!r} names missing {cargo.path}")
            continue
        twins = [
            b
            for b in targets
            if b.rule in RULE_FOR_KIND[cargo.kind]
            and not b.has_crate_attr
            and b.root_file() == cargo.path
        ]
        if not twins:
            rule = "/".join(sorted(RULE_FOR_KIND[cargo.kind]))
            problems.append(
                f"{rel_build}: Cargo {cargo.kind} {cargo.name!r} ({member}/{cargo.path}) "
                f"has no Bazel twin (a {rule} with crate_root = {cargo.path!r})"
            )
            continue
        if cargo.kind == "test":
            continue  # Cargo names test crates after the file; nothing depends on the name
        expected = cargo.name.replace("-", "_")
        for twin in twins:
            if twin.effective_crate_name() != expected:
                problems.append(
                    f"{rel_build}: {twin.rule} {label}:{twin.name} builds crate "
                    f"{twin.effective_crate_name()!r}, Cargo builds {expected!r} "
                    f"({cargo.kind} {cargo.name!r})"
                )
    return targets


def check_module_manifests(root: Path, members: list[str], problems: list[str]) -> None:
    module = root / "MODULE.bazel"
    if not module.is_file():
        problems.append("MODULE.bazel is missing")
        return
    try:
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
    except SyntaxError as err:
        raise Unreadable(f"{module}: cannot parse ({err})") from err
    listed: set[str] | None = None
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_cargo"
        ):
            for kw in node.keywords:
                if kw.arg == "manifests" and isinstance(kw.value, ast.List):
                    listed = {
                        e.value for e in kw.value.elts if isinstance(e, ast.Constant)
                    }
    if listed is None:
        problems.append("MODULE.bazel: no crate.from_cargo(manifests = [...]) found")
        return
    wanted = {"//:Cargo.toml"} | {
        "//:Cargo.toml" if m == "." else f"//{m}:Cargo.toml" for m in members
    }
    for missing in sorted(wanted - listed):
        problems.append(f"MODULE.bazel: crate.from_cargo manifests lacks {missing!r}")
    for extra in sorted(listed - wanted):
        problems.append(f"MODULE.bazel: crate.from_cargo manifests lists {extra!r}, not a workspace manifest")


def check_service_aliases(
    root: Path, members: list[str], binaries: dict[str, list[str]], problems: list[str]
) -> None:
    build = root / "BUILD.bazel"
    if not build.is_file():
        problems.append("BUILD.bazel is missing at the repository root")
        return
    _, calls = read_build_file(build)
    actuals: set[str] = set()
    for call in calls:
        if _call_name(call) == "alias":
            for kw in call.keywords:
                if kw.arg == "actual" and isinstance(kw.value, ast.Constant):
                    actuals.add(kw.value.value)
    for member in members:
        if not re.fullmatch(r"services/[^/]+", member):
            continue
        wanted = {f"//{member}:{name}" for name in binaries.get(member, [])}
        if not wanted:
            problems.append(f"{member}: a service without a rust_binary in its BUILD.bazel")
        elif not wanted & actuals:
            problems.append(
                f"BUILD.bazel: no alias for service {member} (expected actual = one of {sorted(wanted)})"
            )


# --------------------------------------------------------------------------- rules_rust pitfalls

_SKIP_DIRS = {".git", "target", "node_modules", ".dev"}
_BIN_EXE = re.compile(r'env!\(\s*"CARGO_BIN_EXE_([^"]+)"')
_MANIFEST_DIR = re.compile(r'env!\(\s*"CARGO_MANIFEST_DIR"\s*\)')
# Compile-time readers of files (fine under Bazel with compile_data) on the same or the
# previous lines: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), ...)).
_COMPILE_TIME_READERS = ("include_str!", "include_bytes!", "embed_migrations!")


def build_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(part in _SKIP_DIRS or part.startswith("bazel-") for part in rel[:-1]):
            continue
        if path.name in BUILD_NAMES and path.is_file():
            found.append(path)
    return found


def normalize_label(label: str, package: str) -> str | None:
    """A label as //package:name, or None for another repository (@crates//...)."""
    if label.startswith("@"):
        return None
    if label.startswith(":"):
        return f"//{package}:{label[1:]}"
    if label.startswith("//"):
        pkg, _, name = label[2:].partition(":")
        return f"//{pkg}:{name or pkg.rsplit('/', 1)[-1]}"
    return f"//{package}:{label}"


def _code_lines(path: Path) -> list[str]:
    """The file's lines with // comments removed (doc comments may name what code must not)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line.split("//", 1)[0] if not line.lstrip().startswith("//") else "" for line in lines]


def runtime_manifest_dir_uses(path: Path) -> list[int]:
    """1-based lines building a run-time path from the compile-time CARGO_MANIFEST_DIR."""
    lines = _code_lines(path)
    hits: list[int] = []
    for index, line in enumerate(lines):
        if not _MANIFEST_DIR.search(line):
            continue
        context = " ".join(lines[max(0, index - 2) : index + 1])
        if not any(reader in context for reader in _COMPILE_TIME_READERS):
            hits.append(index + 1)
    return hits


def check_rules_rust_pitfalls(root: Path, problems: list[str]) -> dict[str, BazelTarget]:
    """testonly, CARGO_BIN_EXE_* and CARGO_MANIFEST_DIR over every BUILD file; returns the
    targets by label for the other checks."""
    by_label: dict[str, BazelTarget] = {}
    package_of: dict[str, str] = {}
    for build in build_files(root):
        package = build.parent.relative_to(root).as_posix()
        package = "" if package == "." else package
        targets, _ = read_build_file(build)
        for target in targets:
            label = f"//{package}:{target.name}"
            by_label[label] = target
            package_of[label] = package

    for label, target in sorted(by_label.items()):
        package = package_of[label]
        package_dir = root / package
        rel_build = (Path(package) / "BUILD.bazel").as_posix() if package else "BUILD.bazel"

        if not target.testonly:
            for dep in target.deps:
                dep_label = normalize_label(dep, package)
                if dep_label in by_label and by_label[dep_label].testonly:
                    problems.append(
                        f"{rel_build}: {label} depends on testonly {dep_label} but is not "
                        f"testonly (Bazel refuses it at analysis): add testonly = True"
                    )

        if target.rule not in RUST_RULES:
            continue
        sources = list(target.srcs)
        if target.crate_root and target.crate_root not in sources:
            sources.append(target.crate_root)
        crate_target = by_label.get(normalize_label(target.crate, package) or "") if target.crate else None
        crate_package = package
        if crate_target is not None:
            crate_label = normalize_label(target.crate or "", package) or ""
            crate_package = package_of[crate_label]
        source_paths = [package_dir / src for src in sources] + (
            [root / crate_package / src for src in crate_target.srcs] if crate_target else []
        )

        if target.rule == "rust_test":
            wanted_bins: set[str] = set()
            for path in source_paths:
                for line in _code_lines(path):
                    wanted_bins.update(_BIN_EXE.findall(line))
            data_labels = {normalize_label(d, package) for d in target.data}
            for binary in sorted(wanted_bins):
                if f"CARGO_BIN_EXE_{binary}" not in target.rustc_env:
                    problems.append(
                        f"{rel_build}: {label} reads CARGO_BIN_EXE_{binary} but its rustc_env "
                        f"does not set it (rules_rust defines it only for binaries in `data`): "
                        f'add rustc_env = {{"CARGO_BIN_EXE_{binary}": "$(rootpath :{binary})"}}'
                    )
                if not any(
                    d in by_label and by_label[d].rule == "rust_binary" and by_label[d].name == binary
                    for d in data_labels
                ):
                    problems.append(
                        f"{rel_build}: {label} reads CARGO_BIN_EXE_{binary} but the binary "
                        f"{binary!r} is not in its data"
                    )

        if target.testonly and "local" not in target.tags:
            for path in source_paths:
                for line_no in runtime_manifest_dir_uses(path):
                    problems.append(
                        f"{path.relative_to(root).as_posix()}:{line_no}: {label} builds a run-time "
                        f'path from env!("CARGO_MANIFEST_DIR"), which under Bazel names the '
                        f"compile sandbox; read the file from runfiles (a `data` dependency) "
                        f"or tag the target `local`"
                    )
    return by_label


def check_hermetic_profile(
    root: Path, members: list[str], by_label: dict[str, BazelTarget], problems: list[str]
) -> None:
    """The Nix sandbox's nextest profile runs exactly Bazel's hermetic integration tests."""
    config = root / ".config" / "nextest.toml"
    if not config.is_file():
        problems.append(".config/nextest.toml is missing (it holds the `hermetic` profile)")
        return
    profile = read_toml(config).get("profile", {}).get("hermetic")
    if not isinstance(profile, dict) or not isinstance(profile.get("default-filter"), str):
        problems.append(".config/nextest.toml: no [profile.hermetic] with a default-filter")
        return
    in_nextest = set(re.findall(r"binary_id\(\s*([^)\s]+)\s*\)", profile["default-filter"]))
    in_bazel: set[str] = set()
    for member in members:
        manifest_path = root / member / "Cargo.toml"
        if not manifest_path.is_file():
            continue
        package_name = read_toml(manifest_path).get("package", {}).get("name")
        prefix = "//" if member == "." else f"//{member}:"
        for label, target in by_label.items():
            if not label.startswith(prefix) or label[len(prefix) :].count("/"):
                continue
            if target.rule != "rust_test" or target.has_crate_attr or not target.crate_root:
                continue
            root_file = Path(target.crate_root)
            if root_file.parts[0] != "tests" or "integration" in target.tags:
                continue
            test_name = root_file.parent.name if root_file.name == "main.rs" else root_file.stem
            in_bazel.add(f"{package_name}::{test_name}")
    for missing in sorted(in_bazel - in_nextest):
        problems.append(
            f".config/nextest.toml: profile.hermetic does not run {missing}, a Bazel test "
            f"without the `integration` tag: add binary_id({missing}) to its default-filter"
        )
    for extra in sorted(in_nextest - in_bazel):
        problems.append(
            f".config/nextest.toml: profile.hermetic runs {extra}, which Bazel tags "
            f"`integration` (or which does not exist): the Nix sandbox has no platform for it"
        )


def check_bazelignore(root: Path, problems: list[str]) -> None:
    path = root / ".bazelignore"
    entries = set()
    if path.is_file():
        entries = {
            line.strip().rstrip("/")
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        }
    if "target" not in entries:
        problems.append(
            ".bazelignore must list `target`: //... would otherwise walk into a Cargo build "
            "directory inside the checkout"
        )


def collect_problems(root: Path) -> tuple[list[str], list[str]]:
    """Every drift problem of the repository at `root`, and its workspace members."""
    problems: list[str] = []
    manifest = read_toml(root / "Cargo.toml")
    members = workspace_members(root, manifest)
    if not members:
        problems.append("Cargo.toml: no workspace members")
    binaries: dict[str, list[str]] = {}
    for member in members:
        if not (root / member / "Cargo.toml").is_file():
            problems.append(f"{member}: listed as a workspace member but has no Cargo.toml")
            continue
        targets = check_member(root, member, problems)
        binaries[member] = [t.name for t in targets if t.rule == "rust_binary"]
    check_module_manifests(root, members, problems)
    check_service_aliases(root, members, binaries, problems)
    by_label = check_rules_rust_pitfalls(root, problems)
    check_hermetic_profile(root, members, by_label, problems)
    check_bazelignore(root, problems)
    return problems, members


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="repository root (default: the one holding this script)",
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()

    try:
        problems, members = collect_problems(root)
    except Unreadable as err:
        print(f"bazel-drift: {err}", file=sys.stderr)
        return 2

    if problems:
        print(f"bazel-drift: {len(problems)} problem(s) between Cargo and Bazel:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"bazel-drift: {len(members)} workspace members, Cargo and Bazel in step")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
