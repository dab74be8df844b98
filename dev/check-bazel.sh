#!/usr/bin/env bash
# Checks the Bazel build files without Bazel (CI has no Bazel >= 7, docs/architecture.md §11):
#   1. buildifier (pinned, installed from the Go module proxy when missing): formatting in
#      check mode and lint warnings, over every BUILD.bazel, MODULE.bazel, WORKSPACE, *.bzl;
#   2. .bazelversion is a Bazel 8 release; WORKSPACE holds comments only (bzlmod);
#   3. dev/bazel_drift.py: every Cargo member, binary and test has its Bazel twin, and the
#      rules_rust pitfalls (testonly, CARGO_BIN_EXE_* in data, CARGO_MANIFEST_DIR at run time,
#      the hermetic nextest profile, .bazelignore) are caught; its tests in dev/tests/.
#
# Usage: dev/check-bazel.sh            Exit 0 when all good, non-zero with the reasons.
# Needs: go (to install buildifier once), python3 >= 3.11.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# buildtools publishes no Go-module-compatible tags (its v8 tags lack a /v8 module path), so
# the pin is a pseudo-version of the main branch, resolved through the Go module proxy.
BUILDIFIER_VERSION="v0.0.0-20260904073137-eaa4d125b423"

log() { printf 'check-bazel: %s\n' "$*" >&2; }

find_buildifier() {
  if [[ -n "${BUILDIFIER:-}" && -x "$BUILDIFIER" ]]; then
    printf '%s\n' "$BUILDIFIER"
    return 0
  fi
  if command -v buildifier >/dev/null 2>&1; then
    command -v buildifier
    return 0
  fi
  if command -v go >/dev/null 2>&1; then
    local gobin
    gobin="$(go env GOBIN)"
    [[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
    if [[ -x "$gobin/buildifier" ]]; then
      printf '%s\n' "$gobin/buildifier"
      return 0
    fi
  fi
  return 1
}

if ! buildifier="$(find_buildifier)"; then
  command -v go >/dev/null 2>&1 || { log "error: buildifier is missing and go is not installed"; exit 1; }
  log "installing buildifier $BUILDIFIER_VERSION with go install"
  go install "github.com/bazelbuild/buildtools/buildifier@$BUILDIFIER_VERSION"
  buildifier="$(find_buildifier)" || { log "error: buildifier not found after go install"; exit 1; }
fi
log "buildifier: $buildifier"

# Every Starlark file of the repository (not build outputs, caches or Bazel's convenience links).
mapfile -t starlark_files < <(
  find . \( -path ./.git -o -path ./target -o -path ./.dev -o -name 'bazel-*' -o -name node_modules \) -prune -o \
    -type f \( -name BUILD.bazel -o -name BUILD -o -name MODULE.bazel -o -name WORKSPACE \
    -o -name WORKSPACE.bazel -o -name '*.bzl' \) -print | LC_ALL=C sort
)
if [[ ${#starlark_files[@]} -eq 0 ]]; then
  log "error: no Bazel files found"
  exit 1
fi

status=0

log "buildifier format + lint over ${#starlark_files[@]} files"
if ! "$buildifier" -mode=check -lint=warn "${starlark_files[@]}"; then
  log "error: buildifier found files to reformat or lint warnings; the formatting diff:"
  "$buildifier" -mode=diff "${starlark_files[@]}" >&2 || true
  log "fix with: $buildifier -lint=fix ${starlark_files[*]}"
  status=1
fi

log ".bazelversion and WORKSPACE"
if [[ ! -f .bazelversion ]] || ! grep -Eqx '8\.[0-9]+\.[0-9]+' .bazelversion; then
  log "error: .bazelversion must hold one Bazel 8.x.y release"
  status=1
fi
if [[ ! -f WORKSPACE ]] || grep -Ev '^[[:space:]]*(#.*)?$' WORKSPACE >/dev/null; then
  log "error: WORKSPACE must exist and hold comments only (the build is bzlmod: MODULE.bazel)"
  status=1
fi

log "Cargo/Bazel drift"
python3 dev/bazel_drift.py --root "$root" || status=1
log "the drift checker's own tests (each mistake it must catch)"
python3 -m unittest -q dev/tests/test_bazel_drift.py || status=1

if [[ $status -eq 0 ]]; then
  log "all Bazel checks passed"
fi
exit "$status"
