"""The one shape of a Comptoir crate under Bazel: the twin of a Cargo package.

`comptoir_crate` declares what Cargo builds from one `Cargo.toml`: the lints, the library, the
binary (a thin `src/main.rs`) and their unit tests. `comptoir_integration_test` declares one
`tests/<name>.rs` crate the way Cargo gives it: the library, the normal and dev dependencies,
and the binaries it spawns through `CARGO_BIN_EXE_<bin>`, which rules_rust defines only for
binaries in the test's `data`: the macro puts them there and sets the variable, so a test
cannot read it without the binary. Tests that need the running local platform (PostgreSQL,
Pulsar) say `platform = True` and get the tags of docs/bazel.md.

`dev/bazel_drift.py` expands both macros the way Bazel does, so its checks (Cargo twins,
testonly, CARGO_BIN_EXE, CARGO_MANIFEST_DIR, the hermetic nextest profile) see the targets.
"""

load("@crates//:defs.bzl", "aliases", "all_crate_deps")
load("@rules_rust//cargo:defs.bzl", "extract_cargo_lints")
load("@rules_rust//rust:defs.bzl", "rust_binary", "rust_library", "rust_test")

# Tests that need the running local platform: left out of a plain `bazel test //...`, never
# sandboxed or cached remotely (docs/bazel.md).
PLATFORM_TAGS = [
    "external",
    "integration",
    "local",
    "requires-network",
]

def comptoir_crate(
        name,
        crate_name,
        deps = [],
        compile_data = [],
        data = [],
        binary = None,
        testonly = False,
        tags = [],
        unit_test_compile_data = [],
        unit_test_tags = [],
        version = "0.1.0"):
    """A Cargo package: lints, library, optional binary, unit tests.

    Args:
      name: the library target (the package directory's name).
      crate_name: Cargo's crate name with `-` turned into `_` (`comptoir_catalog`).
      deps: workspace crates the library depends on (`//libs/store`); crates.io ones come
        from `all_crate_deps`.
      compile_data: files read at compile time (refinery's `migrations/*.sql`, include_str!).
      data: files the library needs at run time.
      binary: the `[[bin]]` name built from `src/main.rs`, or None for a library.
      testonly: for test support libraries (their users must be testonly too).
      tags: the library's tags (`local` when it reads CARGO_MANIFEST_DIR at run time).
      unit_test_compile_data: compile-time files of the unit tests.
      unit_test_tags: tags of the unit tests.
      version: the package version.
    """
    extract_cargo_lints(
        name = "lints",
        manifest = "Cargo.toml",
        workspace = "//:Cargo.toml",
    )
    rust_library(
        name = name,
        testonly = testonly,
        srcs = native.glob(
            ["src/**/*.rs"],
            exclude = ["src/main.rs"],
        ),
        aliases = aliases(),
        compile_data = compile_data,
        crate_name = crate_name,
        crate_root = "src/lib.rs",
        data = data,
        lint_config = ":lints",
        proc_macro_deps = all_crate_deps(proc_macro = True),
        tags = tags,
        version = version,
        deps = deps + all_crate_deps(normal = True),
    )
    rust_test(
        name = "unit_test",
        aliases = aliases(
            normal_dev = True,
            proc_macro_dev = True,
        ),
        compile_data = unit_test_compile_data,
        crate = ":" + name,
        lint_config = ":lints",
        proc_macro_deps = all_crate_deps(proc_macro_dev = True),
        tags = unit_test_tags,
        deps = all_crate_deps(normal_dev = True),
    )
    if binary:
        rust_binary(
            name = binary,
            srcs = ["src/main.rs"],
            aliases = aliases(),
            crate_name = crate_name,
            crate_root = "src/main.rs",
            lint_config = ":lints",
            proc_macro_deps = all_crate_deps(proc_macro = True),
            version = version,
            deps = [":" + name] + deps + all_crate_deps(normal = True),
        )
        rust_test(
            name = "bin_unit_test",
            aliases = aliases(
                normal_dev = True,
                proc_macro_dev = True,
            ),
            crate = ":" + binary,
            lint_config = ":lints",
            proc_macro_deps = all_crate_deps(proc_macro_dev = True),
            deps = all_crate_deps(normal_dev = True),
        )

def comptoir_integration_test(
        name,
        crate,
        deps = [],
        support = [],
        binaries = [],
        platform = False,
        exclusive = False,
        compile_data = [],
        data = [],
        size = None):
    """One `tests/<name>.rs` crate, as Cargo builds it: target `<name>_test`.

    Args:
      name: the file's stem (`api` for tests/api.rs).
      crate: the package's library (`:catalog`).
      deps: workspace crates beyond the library (`//libs/testkit`, the package's own deps).
      support: shared modules the test declares (`tests/support/mod.rs`).
      binaries: binaries of this package the test spawns through CARGO_BIN_EXE_<name>: put
        in `data`, the variable set to their runfiles path.
      platform: needs the running local platform (PostgreSQL, Pulsar).
      exclusive: runs alone (it starts a JVM of its own).
      compile_data: files read at compile time.
      data: files read at run time (from the runfiles root, its working directory).
      size: the test size, when not the default.
    """
    tags = (PLATFORM_TAGS if platform else []) + (["exclusive"] if exclusive else [])
    rust_test(
        name = name + "_test",
        size = size,
        srcs = ["tests/%s.rs" % name] + support,
        aliases = aliases(
            normal = True,
            normal_dev = True,
            proc_macro = True,
            proc_macro_dev = True,
        ),
        compile_data = compile_data,
        crate_root = "tests/%s.rs" % name,
        data = data + binaries,
        lint_config = ":lints",
        proc_macro_deps = all_crate_deps(
            proc_macro = True,
            proc_macro_dev = True,
        ),
        rustc_env = {
            "CARGO_BIN_EXE_" + b.lstrip(":"): "$(rootpath %s)" % b
            for b in binaries
        },
        tags = tags,
        deps = [crate] + deps + all_crate_deps(
            normal = True,
            normal_dev = True,
        ),
    )
