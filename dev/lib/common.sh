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
