#!/usr/bin/env bash
# The Nix checks CI can run without Nix builds (docs/architecture.md §11): this machine has no
# binary cache and no nixpkgs, so the flake is never built here; what can be checked is.
#   1. every *.nix file parses          (nix-instantiate --parse, Debian's nix-bin)
#   2. every *.nix file is formatted    (alejandra --check)
#   3. no dead bindings                 (deadnix --fail)
#   4. every service crate has a package and an image in the flake (dev/nix_services_check.py)
#   5. flake.lock: reported loudly while it is missing (it cannot be written without Nix and
#      network; the first `nix flake lock` on a Nix machine writes it: docs/nix.md)
# Installs what is missing first: nix-bin (apt-get; root or sudo), deadnix (cargo install),
# alejandra (see install_alejandra). Usage: dev/check-nix.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-nix"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

ALEJANDRA_VERSION=3.1.0
DEADNIX_VERSION=1.3.1
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$PATH:$CARGO_BIN"

as_root() {
  if is_root; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

install_nix_instantiate() {
  command -v nix-instantiate >/dev/null && return 0
  log "installing nix-bin (for nix-instantiate)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nix-bin \
    || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nix-bin; }
}

install_deadnix() {
  command -v deadnix >/dev/null && return 0
  log "installing deadnix $DEADNIX_VERSION (cargo install --locked --debug; about 15 s)"
  # A debug build: 14 s to compile instead of 28, and 0.6 s to read every .nix file of the
  # repository instead of 0.1.
  cargo install --locked --quiet --debug "deadnix@$DEADNIX_VERSION"
}

# crates.io has alejandra only as a library (its CLI crate, alejandra_cli, is not published),
# and nixpkgs' binary needs Nix. So, without Nix, we build a tiny CLI on the published library:
# same formatting engine and version, `alejandra [--check] PATH...` like the real one. In
# `nix develop` the real alejandra is on PATH and is used instead.
install_alejandra() {
  command -v alejandra >/dev/null && return 0
  log "building alejandra $ALEJANDRA_VERSION (CLI on the crates.io library; about a minute)"
  local dir
  dir="$(mktemp -d)"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "alejandra-cli-shim"
version = "$ALEJANDRA_VERSION"
edition = "2021"
publish = false

[[bin]]
name = "alejandra"
path = "src/main.rs"

[dependencies]
# The engine and the two parser crates it is built on, pinned to the 3.1.0 release.
alejandra = "=$ALEJANDRA_VERSION"
rnix = "=0.10.2"
rowan = "=0.12.6"

[workspace]
EOF
  cat >"$dir/src/main.rs" <<'EOF'
//! `alejandra [--check] PATH...`: formats (or with --check, lists) the *.nix files under PATHs.
use std::{env, fs, path::Path, process::ExitCode};

fn collect(path: &Path, out: &mut Vec<String>) {
    if path.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(path).expect("readable directory").flatten().collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') || name == "target" {
                continue;
            }
            collect(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "nix") {
        out.push(path.to_string_lossy().into_owned());
    }
}

fn main() -> ExitCode {
    let mut check = false;
    let mut files = Vec::new();
    for arg in env::args().skip(1) {
        match arg.as_str() {
            "--check" | "-c" => check = true,
            "--version" => {
                println!("alejandra {} (CLI shim on the library)", alejandra::version::VERSION);
                return ExitCode::SUCCESS;
            }
            _ => collect(Path::new(&arg), &mut files),
        }
    }
    let (mut changed, mut failed) = (0, 0);
    for file in &files {
        let before = fs::read_to_string(file).expect("readable UTF-8 file");
        match alejandra::format::in_memory(file.clone(), before) {
            (alejandra::format::Status::Error(e), _) => {
                eprintln!("error: {file}: {e}");
                failed += 1;
            }
            (alejandra::format::Status::Changed(true), after) => {
                changed += 1;
                if check {
                    eprintln!("requires formatting: {file}");
                } else {
                    fs::write(file, after).expect("writable file");
                    eprintln!("formatted: {file}");
                }
            }
            (alejandra::format::Status::Changed(false), _) => {}
        }
    }
    eprintln!("alejandra: {} file(s), {changed} to format, {failed} failed", files.len());
    if failed > 0 || (check && changed > 0) { ExitCode::from(2) } else { ExitCode::SUCCESS }
}
EOF
  cargo install --quiet --path "$dir" --root "${CARGO_HOME:-$HOME/.cargo}"
  rm -rf "$dir"
}

# Without flake.lock, nixpkgs, crane and the advisory database float, and the first
# `nix flake check` has to write the lock (it fails read-only or with --no-write-lock-file).
# It cannot be generated here (no Nix, no GitHub), so this is a warning, not a failure; it
# stays loud until someone commits the lock from a Nix machine.
report_flake_lock() {
  if [[ -f flake.lock ]]; then
    log "flake.lock present"
    return 0
  fi
  local line='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  log "$line"
  log "WARNING: flake.lock is MISSING: nixpkgs, crane and advisory-db are not pinned."
  log "On a machine with Nix, run 'nix flake lock' and commit flake.lock (docs/nix.md, step 1)."
  log "$line"
}

main() {
  [[ $# -eq 0 ]] || { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  install_nix_instantiate
  install_deadnix
  install_alejandra

  local -a nix_files
  mapfile -t nix_files < <(git ls-files --cached --others --exclude-standard -- '*.nix')
  ((${#nix_files[@]} > 0)) || die "no .nix files found"

  log "parse: ${#nix_files[@]} file(s)"
  local file
  for file in "${nix_files[@]}"; do
    nix-instantiate --parse "$file" >/dev/null || die "does not parse: $file"
  done
  log "format: alejandra --check"
  alejandra --check "${nix_files[@]}" || die "run: alejandra ${nix_files[*]}"
  log "dead code: deadnix --fail"
  deadnix --fail "${nix_files[@]}"
  log "flake covers every service crate"
  python3 dev/nix_services_check.py
  report_flake_lock
  log "all Nix checks passed"
}

main "$@"
