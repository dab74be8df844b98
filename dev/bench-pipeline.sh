#!/usr/bin/env bash
# The outbox pipeline benchmark (docs/performance.md), ROUNDS times, each round twice: as the
# services run (pulsar-rs without TCP_NODELAY), then with dev/bench/nodelay.c preloaded, which
# sets TCP_NODELAY on every connection, to measure what Nagle's algorithm costs the client.
#
# Usage: dev/bench-pipeline.sh [ROUNDS] [-- bench-pipeline flags]   (default 2 rounds;
#        flags default to --backlog 20000 --burst 10000 --rate 1000 --seconds 10)
# Needs the local platform (dev/postgres.sh, dev/pulsar.sh started), gcc, a release build.
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-pipeline"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

rounds="${1:-2}"
shift || true
[[ "${1:-}" == "--" ]] && shift
flags=("$@")
((${#flags[@]} > 0)) || flags=(--backlog 20000 --burst 10000 --rate 1000 --seconds 10)

xtask="$(build_binaries release)/comptoir-xtask"
shim="$(mktemp -d)/nodelay.so"
gcc -shared -fPIC -O2 -o "$shim" dev/bench/nodelay.c -ldl

COMPTOIR_PG_ADMIN_URL="$(dev/postgres.sh admin-url)"
export COMPTOIR_PG_ADMIN_URL
echo "| round | client sockets | phase | events | result |"
echo "|---|---|---|---:|---|"
for round in $(seq 1 "$rounds"); do
  for variant in as-shipped tcp-nodelay; do
    preload=""
    [[ "$variant" == tcp-nodelay ]] && preload="$shim"
    log "round $round, $variant (load $(cut -d' ' -f1 /proc/loadavg))"
    LD_PRELOAD="$preload" "$xtask" bench-pipeline "${flags[@]}" 2>/dev/null \
      | grep -E '^\| (drain|burst|steady)' | sed "s/^| /| $round | $variant | /"
  done
done
