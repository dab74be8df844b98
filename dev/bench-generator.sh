#!/usr/bin/env bash
# The load generator's own cost: goose (comptoir-loadtest's `trivial` profile) against vegeta
# (Go, MIT: the generator of k6's kind, k6 itself being AGPL-licensed and kept out) and wrk (C,
# the floor of what a generator can cost) on the same route, the gateway's /livez, same
# connections, same run. Each tool's throughput and the CPU time it used itself (user +
# system, from /usr/bin/time), so the figure that compares them is requests per CPU-second of
# the generator. Not a test: the numbers go to docs/performance.md by hand.
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
vegeta="$COMPTOIR_CACHE/bin/vegeta"
if [[ ! -x "$vegeta" ]]; then
  log "building vegeta v12.13.0 from the Go module proxy into $COMPTOIR_CACHE/bin"
  GOBIN="$COMPTOIR_CACHE/bin" go install github.com/tsenart/vegeta/v12@v12.13.0
fi
loadtest="$(build_binaries release)/comptoir-loadtest"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

log "wrk -t1 -c$connections -d${seconds}s $gateway/livez"
/usr/bin/time -f '%U %S' -o "$out/wrk.time" wrk -t1 -c"$connections" -d"${seconds}s" "$gateway/livez" >"$out/wrk.txt"
grep -q "Non-2xx" "$out/wrk.txt" && die "non-2xx answers: $(cat "$out/wrk.txt")"
wrk_rps="$(awk '/^Requests\/sec:/ {print $2}' "$out/wrk.txt")"
wrk_cpu="$(awk '{print $1 + $2}' "$out/wrk.time")"

log "vegeta attack -rate=0 -max-workers=$connections -duration=${seconds}s $gateway/livez"
# Unthrottled (-rate=0) with as many workers as connections; the results are written to a file
# and reported afterwards, so the report's CPU is not counted as the attack's.
echo "GET $gateway/livez" | /usr/bin/time -f '%U %S' -o "$out/vegeta.time" \
  "$vegeta" attack -rate=0 -workers="$connections" -max-workers="$connections" -duration="${seconds}s" \
  -keepalive=true >"$out/vegeta.bin"
"$vegeta" report -type=json "$out/vegeta.bin" >"$out/vegeta.json"
read -r vegeta_rps vegeta_ok vegeta_all < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["throughput"], r["success"], r["requests"])' "$out/vegeta.json")
vegeta_cpu="$(awk '{print $1 + $2}' "$out/vegeta.time")"

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
  -v ga="$goose_all" -v gf="$goose_failed" -v c="$connections" \
  -v vr="$vegeta_rps" -v vc="$vegeta_cpu" -v va="$vegeta_all" -v vs="$vegeta_ok" 'BEGIN {
  we = wr * s / wc; ge = ga / gc; ve = va / vc
  printf "\nGET /livez through nothing but the gateway, %d connections, %d s each\n", c, s
  printf "  wrk    %9.0f requests/s  %6.1f CPU-s  %8.0f requests per CPU-second\n", wr, wc, we
  printf "  vegeta %9.0f requests/s  %6.1f CPU-s  %8.0f requests per CPU-second  (success ratio %.4f)\n", vr, vc, ve, vs
  printf "  goose  %9.0f requests/s  %6.1f CPU-s  %8.0f requests per CPU-second  (%d failed)\n", gr, gc, ge, gf
  printf "  goose / vegeta: throughput %.2f, efficiency %.2f (target 1.0)\n", gr / vr, ge / ve
  printf "  goose / wrk: throughput %.2f, efficiency %.2f\n", gr / wr, ge / we
}'
