#!/usr/bin/env bash
# Supply-chain checks of the workspace (docs/supply-chain.md):
#   1. cargo deny: licences, bans and sources (deny.toml)
#   2. cargo audit: Cargo.lock against the RustSec advisory database, when one is at hand:
#      COMPTOIR_ADVISORY_DB (a checkout of github.com/rustsec/advisory-db), else the database
#      fetched from GitHub when GitHub answers. Neither: said loudly and skipped; the flake's
#      `audit` check, a constituent of Hydra's release, runs it against the pinned copy.
#   3. an SBOM per service: cargo-cyclonedx with the flake's arguments (nix/packages.nix
#      sbomArgs), each checked by dev/sbom_check.py (exactly the crates the service's binary is
#      built from, licences, Cargo.lock's checksums; the first also against the CycloneDX 1.5
#      JSON schema, which takes seconds a document; the checker's tests are
#      dev/tests/test_sbom_check.py), and kept in
#      $COMPTOIR_RESULTS_DIR/sbom/<crate>.cdx.json (default ~/.cache/comptoir/results)
# Installs what is missing: cargo-cyclonedx (cargo install, pinned), cyclonedx-python-lib (a
# virtualenv under the cache); cargo-deny and cargo-audit come from dev/bootstrap.sh.
# Usage: dev/check-supply-chain.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-supply-chain"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

CYCLONEDX_VERSION=0.5.9
CYCLONEDX_LIB="cyclonedx-python-lib[json-validation]==11.12.0"
ADVISORY_DB_URL="https://github.com/rustsec/advisory-db"
TARGET=x86_64-unknown-linux-gnu
RESULTS="${COMPTOIR_RESULTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/comptoir/results}"

(($# == 0)) || { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

install_tools() {
  # In `nix develop` the flake's cargo-cyclonedx is the one (nixpkgs' version).
  if [[ "${COMPTOIR_TOOLS_FROM_NIX:-}" == 1 ]]; then
    command -v cargo-cyclonedx >/dev/null || die "cargo-cyclonedx is missing from the dev shell"
  elif ! cargo cyclonedx --version 2>/dev/null | grep -qF " $CYCLONEDX_VERSION"; then
    log "installing cargo-cyclonedx $CYCLONEDX_VERSION (cargo install --locked --debug; about a minute, once)"
    # Its own temporary target directory, not the workspace's cached one. A debug build: it
    # compiles in 77 s where its release profile (thin LTO) takes 141 s on 2 cores, and writes
    # the SBOMs in 2.8 s instead of 1.1 (docs/performance.md, "CI from a fresh machine").
    env -u CARGO_TARGET_DIR cargo install --locked --quiet --debug --root "$COMPTOIR_CACHE/cargo-tools" \
      "cargo-cyclonedx@$CYCLONEDX_VERSION"
    mkdir -p "$COMPTOIR_CACHE/bin"
    ln -sf "$COMPTOIR_CACHE/cargo-tools/bin/cargo-cyclonedx" "$COMPTOIR_CACHE/bin/cargo-cyclonedx"
  fi
  SBOM_PYTHON="$COMPTOIR_CACHE/sbom-venv/bin/python"
  if [[ ! -e "$COMPTOIR_CACHE/sbom-venv/.installed-$CYCLONEDX_LIB" ]]; then
    log "installing $CYCLONEDX_LIB (PyPI, into $COMPTOIR_CACHE/sbom-venv)"
    python3 -m venv "$COMPTOIR_CACHE/sbom-venv"
    "$COMPTOIR_CACHE/sbom-venv/bin/pip" install --quiet --disable-pip-version-check "$CYCLONEDX_LIB"
    touch "$COMPTOIR_CACHE/sbom-venv/.installed-$CYCLONEDX_LIB"
  fi
}

deny() {
  log "cargo deny: bans, licences, sources (deny.toml)"
  cargo deny --locked check --hide-inclusion-graph bans licenses sources
}

audit() {
  local db="${COMPTOIR_ADVISORY_DB:-}"
  if [[ -n "$db" ]]; then
    [[ -d "$db/crates" ]] || die "COMPTOIR_ADVISORY_DB=$db is not a checkout of the RustSec advisory database"
    log "cargo audit against $db ($(git -C "$db" log -1 --format='%h, %cs' 2>/dev/null || echo 'not a git checkout'))"
    # --stale: an old checkout is still checked, its age is printed above.
    cargo audit --db "$db" --no-fetch --stale
  # A reachable GitHub answers in a second or two; a network that swallows the connection would
  # hold every run for the whole timeout.
  elif timeout 8 git ls-remote --exit-code "$ADVISORY_DB_URL" HEAD >/dev/null 2>&1; then
    log "cargo audit against $ADVISORY_DB_URL (fetched)"
    cargo audit
  else
    local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    log "$line"
    log "advisories NOT checked here: $ADVISORY_DB_URL does not answer from this machine and"
    log "COMPTOIR_ADVISORY_DB is not set. The flake's audit check (a constituent of Hydra's release)"
    log "checks them against its pinned advisory-db; locally, point COMPTOIR_ADVISORY_DB at a checkout."
    log "$line"
  fi
}

sboms() {
  local args metadata crate name out="$RESULTS/sbom" generated
  # The arguments and the services, as the flake has them (pure Nix: only names are read).
  args="$(nix_eval_json -E '(import ./nix/packages.nix { pkgs = {}; craneLib = {}; advisory-db = null;
    services = import ./nix/services.nix; }).sbomArgs' | json_text)"
  metadata="$(mktemp)"
  generated="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now
  trap "rm -rf '$metadata' '$generated'" RETURN
  cargo metadata --format-version 1 --locked --filter-platform "$TARGET" >"$metadata"
  mkdir -p "$out"
  rm -f "$out"/*.cdx.json
  # cargo-cyclonedx writes every workspace member's document beside its Cargo.toml: they are
  # moved out at once, so the working tree is left as it was.
  # shellcheck disable=SC2086 # args is a list of options
  cargo cyclonedx --quiet --manifest-path services/catalog/Cargo.toml $args
  while IFS= read -r -d '' file; do
    mv "$file" "$generated/"
  done < <(find . -path ./target -prune -o -name '*.cdx.json' -print0)
  local schema=""
  for name in $(nix_eval_json -E 'builtins.attrNames (import ./nix/services.nix)' | json_words); do
    crate="comptoir-$name"
    [[ -f "$generated/$crate.cdx.json" ]] || die "cargo cyclonedx made no SBOM for $crate"
    "$SBOM_PYTHON" dev/sbom_check.py $schema "$generated/$crate.cdx.json" "$crate" "$metadata"
    schema=--no-schema
    cp "$generated/$crate.cdx.json" "$out/"
  done
  log "SBOMs: $out"
}

install_tools
# The SBOM checker's own tests first: each way an SBOM can fall short must be caught.
python3 -m unittest -q dev/tests/test_sbom_check.py
deny
audit
sboms
log "supply-chain checks passed"
