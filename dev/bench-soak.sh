#!/usr/bin/env bash
# Soak benchmark: does a service's resident memory stay flat over millions of requests when
# nothing scrapes /metrics? (A Prometheus outage must not grow every service until it is
# killed: the recorder's upkeep, libs/platform/src/metrics.rs, drains histogram samples without a
# scrape. Before it ran, the gateway grew by ~18 bytes a request: 9 MB → 186 MB over 9.8
# million requests.) Not a timed test: it reports resident memory against requests served and
# fails when memory still grows after the warm-up.
#
# Starts its own release gateway on its own port, with no upstream and nothing scraping it, and
# sends GET /livez (a route of the RED metrics middleware: one histogram sample and counters
# per request) with wrk, round after round, reading VmRSS from /proc after each round. The
# growth per request is measured between the end of round 2 (allocator and pools warm) and
# the end of the last round; above MAX_BYTES_PER_REQUEST it fails (exit 1).
#
# Usage: dev/bench-soak.sh [rounds, default 8] [seconds per round, default 20]
# Environment: BENCH_SOAK_PORT (18200), WRK_THREADS (1), WRK_CONNECTIONS (32),
# MAX_BYTES_PER_REQUEST (0.5).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-soak"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=dev/lib/bench.sh
source "$COMPTOIR_DEV_DIR/lib/bench.sh"
cd "$COMPTOIR_DEV_DIR/.."

rounds="${1:-8}"
seconds="${2:-20}"
port="${BENCH_SOAK_PORT:-18200}"
threads="${WRK_THREADS:-1}"
connections="${WRK_CONNECTIONS:-32}"
limit="${MAX_BYTES_PER_REQUEST:-0.5}"
work="$COMPTOIR_CACHE/bench-soak"
((rounds >= 3)) || die "at least 3 rounds: the first two are the warm-up"
command -v wrk >/dev/null || die "wrk not found (Debian package wrk)"
port_in_use "$port" && die "port $port is taken"

log "building the release binaries"
bin_dir="$(build_binaries release)"
mkdir -p "$work"

pid=""
cleanup() { [[ -z "$pid" ]] || { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; }
trap cleanup EXIT
COMPTOIR_GATEWAY__HTTP__LISTEN="127.0.0.1:$port" \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000 \
  COMPTOIR_GATEWAY__TELEMETRY__LOG_FILTER=warn \
  "$bin_dir/comptoir-gateway" >"$work/gateway.log" 2>&1 &
pid="$!"
wait_for_url "http://127.0.0.1:$port/livez" "$pid" "$work/gateway.log"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

log "$rounds rounds of ${seconds}s, wrk -t$threads -c$connections on /livez, nothing scraping"
printf '| round | requests (total) | requests/s | resident (MiB) |\n|---:|---:|---:|---:|\n'
printf '| 0 | 0 | | %.1f |\n' "$(awk -v k="$(rss_kib)" 'BEGIN { print k / 1024 }')"
served=0
for round in $(seq 1 "$rounds"); do
  read -r rps _ total < <(wrk_run "$threads" "$connections" "${seconds}s" "http://127.0.0.1:$port/livez")
  served=$((served + total))
  rss="$(rss_kib)"
  printf '| %s | %s | %s | %.1f |\n' "$round" "$served" "$rps" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
  if ((round == 2)); then
    warm_rss="$rss"
    warm_served="$served"
  fi
done
awk -v r0="$warm_rss" -v r1="$rss" -v n0="$warm_served" -v n1="$served" -v limit="$limit" 'BEGIN {
  per = (r1 - r0) * 1024 / (n1 - n0)
  printf "\nafter the warm-up: %+.1f MiB over %d requests, %.3f bytes a request (limit %s)\n", (r1 - r0) / 1024, n1 - n0, per, limit
  exit (per > limit) ? 1 : 0
}' || die "resident memory grows with requests while nothing scrapes /metrics"
log "flat: resident memory does not grow with requests"
