#!/usr/bin/env bash
# The load generator's own cost: goose (comptoir-loadtest's `trivial` profile) against wrk on
# the same route, the gateway's /livez, same connections, same run. Each tool's throughput and
# the CPU time it used itself (user + system, from /usr/bin/time), so the figure that compares
# them is requests per CPU-second of the generator. Not a test: the numbers go to
# docs/performance.md by hand. (k6, the usual anchor here, is AGPL-licensed: not used.)
#
# Usage (a running platform: dev/up, or COMPTOIR_PROFILE=release dev/up for the figures):
#   dev/bench-generator.sh [SECONDS, default 20] [CONNECTIONS, default 32]
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-generator"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

seconds="${1:-20}"
connections="${2:-32}"
gateway="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"
require_ready "the gateway" "$gateway"
command -v wrk >/dev/null || install_missing wrk
[[ -x /usr/bin/time ]] || install_missing time
cargo build --locked --quiet --release -p comptoir-loadtest
loadtest="$(cargo_target_dir)/release/comptoir-loadtest"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

log "wrk -t1 -c$connections -d${seconds}s $gateway/livez"
/usr/bin/time -f '%U %S' -o "$out/wrk.time" wrk -t1 -c"$connections" -d"${seconds}s" "$gateway/livez" >"$out/wrk.txt"
grep -q "Non-2xx" "$out/wrk.txt" && die "non-2xx answers: $(cat "$out/wrk.txt")"
wrk_rps="$(awk '/^Requests\/sec:/ {print $2}' "$out/wrk.txt")"
wrk_cpu="$(awk '{print $1 + $2}' "$out/wrk.time")"

log "comptoir-loadtest --profile trivial --users $connections --hold ${seconds}s"
/usr/bin/time -f '%U %S' -o "$out/goose.time" "$loadtest" --profile trivial --host "$gateway" \
  --users "$connections" --hold "${seconds}s" --out "$out/goose" >"$out/goose.txt" 2>&1 \
  || { tail -n 30 "$out/goose.txt" >&2; die "the load generator failed"; }
# The hold's throughput and failures; goose's CPU covers its whole run (ramp, hold, reports),
# so its efficiency counts every request of the run.
read -r goose_rps goose_failed goose_all < <(python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["analysis"]
print(a["steps"][0]["requests_per_s"], a["steps"][0]["failed"], a["overall"]["requests"])' "$out/goose/summary.json")
goose_cpu="$(awk '{print $1 + $2}' "$out/goose.time")"

awk -v wr="$wrk_rps" -v wc="$wrk_cpu" -v s="$seconds" -v gr="$goose_rps" -v gc="$goose_cpu" \
  -v ga="$goose_all" -v gf="$goose_failed" -v c="$connections" 'BEGIN {
  we = wr * s / wc; ge = ga / gc
  printf "\nGET /livez through nothing but the gateway, %d connections, %d s each\n", c, s
  printf "  wrk    %9.0f requests/s  %6.1f CPU-s  %8.0f requests per CPU-second\n", wr, wc, we
  printf "  goose  %9.0f requests/s  %6.1f CPU-s  %8.0f requests per CPU-second  (%d failed)\n", gr, gc, ge, gf
  printf "  goose / wrk: throughput %.2f, efficiency %.2f\n", gr / wr, ge / we
}'
