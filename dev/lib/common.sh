# shellcheck shell=bash
# Shared helpers for the dev/*.sh scripts. Source it; do not execute it.

# Repository's dev/ folder, whatever the caller's working directory.
COMPTOIR_DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export COMPTOIR_DEV_DIR
# Per-user cache for generated files (classpath, Pulsar data, non-root Postgres).
COMPTOIR_CACHE="${COMPTOIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/comptoir}"
export COMPTOIR_CACHE
# Prebuilt tools dev/bootstrap.sh installs (cargo-nextest, cargo-deny, taplo) come first.
case ":$PATH:" in
  *":$COMPTOIR_CACHE/bin:"*) ;;
  *) PATH="$COMPTOIR_CACHE/bin:$PATH" ;;
esac
export PATH

log() { printf '%s: %s\n' "${COMPTOIR_SCRIPT_NAME:-${0##*/}}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# True when something listens on 127.0.0.1/0.0.0.0/[::] TCP port $1.
port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# apt-get install of Debian packages, with one `apt-get update` first when the lists are stale
# (a fresh machine has none). Needs root.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
    || { DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; }
}

# install_missing PACKAGE...: the Debian packages a script found missing (none: nothing to do),
# installed with apt_install; without root it stops, naming them.
install_missing() {
  (($# > 0)) || return 0
  is_root || die "missing ${*}: install them, or run as root"
  log "installing ${*} (apt-get)"
  apt_install "$@" >/dev/null
}

# nix-instantiate --eval --strict --json ARGS..., the JSON on stdout, without Debian's nix-bin
# warning about the missing nixbld group (it runs evaluations only, no builds).
nix_eval_json() {
  nix-instantiate --eval --strict --json "$@" 2> >(grep -v "group 'nixbld'" >&2)
}

# JSON on stdin written out plainly: a string as its text (json_text), a list as its items
# separated by spaces (json_words), e.g. nix_eval_json -E '...' | json_words
json_text() { python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin))'; }
json_words() { python3 -c 'import json,sys; print(*json.load(sys.stdin))'; }

# The tools of the checks that evaluate pure Nix and draw with Graphviz, installed if missing.
install_nix_and_graphviz() {
  local missing=()
  command -v nix-instantiate >/dev/null || missing+=(nix-bin)
  command -v dot >/dev/null || missing+=(graphviz)
  install_missing "${missing[@]}"
}

# check_drawing DOT SVG WRITE REGENERATE: Graphviz's SVG of the file DOT must be the committed
# SVG; WRITE=true writes it there instead. A difference fails, saying to run REGENERATE.
check_drawing() {
  local dot_file="$1" committed="$2" write="$3" regenerate="$4" drawn
  drawn="$(mktemp)"
  dot -Tsvg "$dot_file" >"$drawn"
  if [[ "$write" == true ]]; then
    cp "$drawn" "$committed"
    rm -f "$drawn"
    log "wrote $committed"
  elif ! cmp -s "$drawn" "$committed"; then
    diff -u "$committed" "$drawn" | head -20 >&2 || true
    rm -f "$drawn"
    die "$committed is not the drawing of the code: run $regenerate and commit it"
  fi
  rm -f "$drawn"
}

# run_test_cases NAME: runs every function test_* defined so far (or those ONLY names), each in
# a subshell that exits non-zero to fail; prints "NAME: P passed, F failed" and fails on any.
run_test_cases() {
  local test passed=0 failed=0
  for test in ${ONLY:-$(declare -F | awk '$3 ~ /^test_/ {print $3}')}; do
    if ("$test"); then
      log "ok: $test"
      passed=$((passed + 1))
    else
      log "FAILED: $test"
      failed=$((failed + 1))
    fi
  done
  echo "$1: $passed passed, $failed failed"
  ((failed == 0))
}

# The workspace's cargo target directory (CARGO_TARGET_DIR or Cargo's default), where the
# scripts find the binaries they built.
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# build_binaries PROFILE: every binary of the workspace in PROFILE (dev, release, …), built as the
# tests build them, the whole workspace at once; prints the directory holding them. Cargo
# resolves features per build: a build of one package (`-p`) resolves its own, different
# ones, and compiles tokio and everything above it again beside what `cargo test` built
# (STYLE.md, "One build for tests and binaries"). Cargo's progress goes to stderr.
build_binaries() {
  local profile="$1"
  cargo build --locked --workspace --bins --profile "$profile" >&2
  echo "$(cargo_target_dir)/$([[ "$profile" == dev ]] && echo debug || echo "$profile")"
}

# require_ready WHAT URL: stops unless the running platform's WHAT answers URL/readyz with 200.
require_ready() {
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "$2/readyz")" == 200 ]] \
    || die "$1 is not ready at $2; run dev/up first"
}
