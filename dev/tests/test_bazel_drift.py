"""Tests of dev/bazel_drift.py: a small repository in step, then each mistake the checker must
catch (the ones a first real `bazel test //...` and `nix flake check` would have hit).

Run: python3 -m unittest dev/tests/test_bazel_drift.py   (dev/check-bazel.sh runs it)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devscripts import load  # noqa: E402  (beside this file)

drift = load("bazel_drift")

# A workspace with a testonly kit (like libs/testkit) and a service with a binary, a test that
# spawns the binary and a hermetic test reading committed files.
FILES = {
    "Cargo.toml": """
        [workspace]
        members = ["libs/kit", "services/shop"]
    """,
    "MODULE.bazel": """
        crate = use_extension("@rules_rust//crate_universe:extension.bzl", "crate")
        crate.from_cargo(
            name = "crates",
            manifests = ["//:Cargo.toml", "//libs/kit:Cargo.toml", "//services/shop:Cargo.toml"],
        )
    """,
    "BUILD.bazel": """
        alias(
            name = "shop",
            actual = "//services/shop:shop",
        )
    """,
    ".bazelignore": "target\n",
    ".config/nextest.toml": '''
        [profile.hermetic]
        default-filter = """
        kind(lib) | kind(bin)
        | binary_id(shop::schemas)
        """
    ''',
    "libs/kit/Cargo.toml": """
        [package]
        name = "kit"
    """,
    "libs/kit/src/lib.rs": """
        pub fn root() -> std::path::PathBuf {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        }
    """,
    "libs/kit/BUILD.bazel": """
        rust_library(
            name = "kit",
            testonly = True,
            srcs = glob(["src/**/*.rs"]),
            crate_root = "src/lib.rs",
            tags = ["local"],
        )
    """,
    "services/shop/Cargo.toml": """
        [package]
        name = "shop"
    """,
    "services/shop/src/lib.rs": "pub fn shop() {}\n",
    "services/shop/src/main.rs": "fn main() {}\n",
    "services/shop/tests/api.rs": """
        // spawns env!("CARGO_BIN_EXE_other") in a comment only: not a use
        #[test]
        fn spawns() {
            let _ = std::process::Command::new(env!("CARGO_BIN_EXE_shop"));
        }
    """,
    "services/shop/tests/schemas.rs": """
        const TOPOLOGY: &str = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/topology.toml"
        ));
        #[test]
        fn reads() {
            let _ = std::path::PathBuf::from("docs/events");
        }
    """,
    "services/shop/BUILD.bazel": """
        _DEPS = ["//libs/kit"]

        rust_library(
            name = "lib",
            srcs = ["src/lib.rs"],
            crate_name = "shop",
            crate_root = "src/lib.rs",
        )

        rust_binary(
            name = "shop",
            srcs = ["src/main.rs"],
            crate_name = "shop",
            crate_root = "src/main.rs",
            deps = [":lib"],
        )

        rust_test(
            name = "api_test",
            srcs = ["tests/api.rs"],
            crate_root = "tests/api.rs",
            data = [":shop"],
            rustc_env = {
                "CARGO_BIN_EXE_shop": "$(rootpath :shop)",
            },
            tags = ["integration", "local"],
            deps = [":lib"] + _DEPS + all_crate_deps(normal = True),
        )

        rust_test(
            name = "schemas_test",
            srcs = ["tests/schemas.rs"],
            crate_root = "tests/schemas.rs",
            data = ["//:event_schemas"],
            deps = [":lib"],
        )
    """,
}


class DriftTest(unittest.TestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bazel-drift-test-"))
        self.addCleanup(shutil.rmtree, self.root)
        for rel, text in FILES.items():
            self.write(rel, text)

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text(encoding="utf-8")
        self.assertIn(old, text, f"fixture {rel} lacks {old!r}")
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def problems(self) -> list[str]:
        return drift.collect_problems(self.root)[0]

    def assert_problem(self, *fragments: str) -> None:
        problems = self.problems()
        matching = [p for p in problems if all(f in p for f in fragments)]
        self.assertTrue(matching, f"no problem with {fragments} among {problems}")

    def test_the_fixture_is_in_step(self) -> None:
        self.assertEqual(self.problems(), [])

    def test_binary_read_by_a_test_must_be_in_its_data(self) -> None:
        self.edit("services/shop/BUILD.bazel", 'data = [":shop"],', "")
        self.assert_problem("api_test", "CARGO_BIN_EXE_shop", "not in its data")

    def test_binary_read_by_a_test_must_be_in_its_rustc_env(self) -> None:
        self.edit("services/shop/BUILD.bazel", '"CARGO_BIN_EXE_shop": "$(rootpath :shop)",', "")
        self.assert_problem("api_test", "CARGO_BIN_EXE_shop", "rustc_env")

    def test_binary_read_through_a_shared_support_module_counts(self) -> None:
        self.write(
            "services/shop/tests/support/mod.rs",
            'pub fn bin() -> &\'static str { env!("CARGO_BIN_EXE_shop") }\n',
        )
        self.edit(
            "services/shop/BUILD.bazel",
            'srcs = ["tests/schemas.rs"],',
            'srcs = ["tests/schemas.rs", "tests/support/mod.rs"],',
        )
        self.assert_problem("schemas_test", "CARGO_BIN_EXE_shop", "not in its data")

    def test_a_non_testonly_target_may_not_depend_on_a_testonly_one(self) -> None:
        self.edit("services/shop/BUILD.bazel", 'crate_root = "src/lib.rs",\n', 'crate_root = "src/lib.rs",\n    deps = _DEPS,\n')
        self.assert_problem("//services/shop:lib", "testonly //libs/kit:kit")

    def test_a_testonly_library_depending_on_a_testonly_one_is_fine(self) -> None:
        self.edit(
            "services/shop/BUILD.bazel",
            'crate_root = "src/lib.rs",\n',
            'crate_root = "src/lib.rs",\n    testonly = True,\n    deps = _DEPS,\n',
        )
        # (the binary above it now is the one at fault: testonly spreads upwards)
        self.assertEqual([p for p in self.problems() if "//services/shop:lib depends" in p], [])
        self.assert_problem("//services/shop:shop depends on testonly //services/shop:lib")

    def test_a_run_time_path_from_the_compile_time_manifest_dir_is_refused(self) -> None:
        self.edit(
            "services/shop/tests/schemas.rs",
            'std::path::PathBuf::from("docs/events")',
            'std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events")',
        )
        self.assert_problem("services/shop/tests/schemas.rs:7", "schemas_test", "CARGO_MANIFEST_DIR")

    def test_the_manifest_dir_is_allowed_in_a_local_target(self) -> None:
        # libs/kit reads it at run time but is tagged `local` (compiled unsandboxed).
        self.assertEqual([p for p in self.problems() if "CARGO_MANIFEST_DIR" in p], [])
        self.edit("libs/kit/BUILD.bazel", 'tags = ["local"],', "")
        self.assert_problem("libs/kit/src/lib.rs:2", "//libs/kit:kit")

    def test_the_hermetic_profile_must_run_every_hermetic_bazel_test(self) -> None:
        self.edit(".config/nextest.toml", "| binary_id(shop::schemas)", "")
        self.assert_problem("profile.hermetic does not run shop::schemas")

    def test_the_hermetic_profile_must_not_run_an_integration_test(self) -> None:
        self.edit(".config/nextest.toml", "| binary_id(shop::schemas)", "| binary_id(shop::schemas) | binary_id(shop::api)")
        self.assert_problem("profile.hermetic runs shop::api")

    def test_the_hermetic_profile_must_exist(self) -> None:
        self.write(".config/nextest.toml", "[profile.default]\n")
        self.assert_problem("no [profile.hermetic]")

    def test_bazelignore_must_keep_out_cargo_target(self) -> None:
        (self.root / ".bazelignore").unlink()
        self.assert_problem(".bazelignore must list `target`")

    def test_a_test_without_a_bazel_twin_is_still_caught(self) -> None:
        self.write("services/shop/tests/orphan.rs", "#[test]\nfn t() {}\n")
        self.assert_problem("orphan", "has no Bazel twin")


if __name__ == "__main__":
    unittest.main()


# The same package written with the macros of bazel/comptoir.bzl, which the checker expands.
MACRO_SHOP = """
load("//bazel:comptoir.bzl", "comptoir_crate", "comptoir_integration_test")

comptoir_crate(
    name = "lib",
    binary = "shop",
    crate_name = "shop",
)

comptoir_integration_test(
    name = "api",
    binaries = [":shop"],
    crate = ":lib",
    platform = True,
    deps = ["//libs/kit"],
)

comptoir_integration_test(
    name = "schemas",
    crate = ":lib",
    data = ["//:event_schemas"],
)
"""


class MacroDriftTest(DriftTest):
    """Every check again, through the macros (the expansion must see what Bazel creates)."""

    def setUp(self) -> None:
        super().setUp()
        self.write("services/shop/BUILD.bazel", MACRO_SHOP)

    def test_binary_read_by_a_test_must_be_in_its_data(self) -> None:
        self.edit("services/shop/BUILD.bazel", 'binaries = [":shop"],', "")
        self.assert_problem("api_test", "CARGO_BIN_EXE_shop", "not in its data")

    def test_binary_read_by_a_test_must_be_in_its_rustc_env(self) -> None:
        # The macro sets rustc_env from `binaries`: naming another binary leaves it unset.
        self.edit("services/shop/BUILD.bazel", 'binaries = [":shop"],', 'binaries = [":other"],')
        self.assert_problem("api_test", "CARGO_BIN_EXE_shop", "rustc_env")

    def test_binary_read_through_a_shared_support_module_counts(self) -> None:
        self.write(
            "services/shop/tests/support/mod.rs",
            'pub fn bin() -> &\'static str { env!("CARGO_BIN_EXE_shop") }\n',
        )
        self.edit(
            "services/shop/BUILD.bazel",
            'data = ["//:event_schemas"],',
            'data = ["//:event_schemas"],\n    support = ["tests/support/mod.rs"],',
        )
        self.assert_problem("schemas_test", "CARGO_BIN_EXE_shop", "not in its data")

    def test_a_non_testonly_target_may_not_depend_on_a_testonly_one(self) -> None:
        self.edit("services/shop/BUILD.bazel", 'crate_name = "shop",\n)', 'crate_name = "shop",\n    deps = ["//libs/kit"],\n)')
        self.assert_problem("//services/shop:lib", "testonly //libs/kit:kit")

    def test_a_testonly_library_depending_on_a_testonly_one_is_fine(self) -> None:
        self.edit(
            "services/shop/BUILD.bazel",
            'crate_name = "shop",\n)',
            'crate_name = "shop",\n    testonly = True,\n    deps = ["//libs/kit"],\n)',
        )
        self.assertEqual([p for p in self.problems() if "//services/shop:lib depends" in p], [])
        # The binary is testonly with its library, as the macro makes it (the alias above
        # them in the root package is what would now need testonly).
        self.assertEqual(
            [p for p in self.problems() if p.startswith("services/shop/BUILD.bazel") and "testonly" in p],
            [],
        )
        self.assert_problem("//:shop depends on testonly //services/shop:shop")

    def test_a_macro_test_without_platform_is_hermetic(self) -> None:
        # A macro test that loses `platform = True` becomes hermetic: nextest must run it too.
        self.edit("services/shop/BUILD.bazel", "platform = True,", "")
        self.assert_problem("profile.hermetic does not run shop::api")
