#!/usr/bin/env bash
# HTTP baseline benchmark: the catalog's product listing against a trivial route of the same
# binary (/livez), same wrk settings, same run, so the ratio says what the listing costs on
# top of the HTTP stack. Not a test: results go to docs/performance.md by hand.
#
# Usage: COMPTOIR_PROFILE=release dev/up && dev/bench-http.sh [duration, default 20s]
# Environment: COMPTOIR_CATALOG_PORT (default 8081), WRK_THREADS (2), WRK_CONNECTIONS (64).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-http"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=dev/lib/bench.sh
source "$COMPTOIR_DEV_DIR/lib/bench.sh"

base="http://127.0.0.1:${COMPTOIR_CATALOG_PORT:-8081}"
duration="${1:-20s}"
threads="${WRK_THREADS:-2}"
connections="${WRK_CONNECTIONS:-64}"
command -v wrk >/dev/null || die "wrk not found (Debian package wrk)"
require_ready "the catalog" "$base"


log "wrk -t$threads -c$connections -d$duration on $base (warming up 3 s first)"
wrk -t"$threads" -c"$connections" -d3s "$base/v1/products?limit=20" >/dev/null
read -r base_rps base_p99 _ < <(wrk_run "$threads" "$connections" "$duration" "$base/livez")
read -r list_rps list_p99 _ < <(wrk_run "$threads" "$connections" "$duration" "$base/v1/products?limit=20")
printf '| route | requests/s | p99 (ms) |\n|---|---:|---:|\n'
printf '| GET /livez (baseline) | %s | %s |\n' "$base_rps" "$base_p99"
printf '| GET /v1/products?limit=20 | %s | %s |\n' "$list_rps" "$list_p99"
awk -v a="$list_rps" -v b="$base_rps" 'BEGIN { printf "\nlisting / baseline throughput ratio: %.3f\n", a / b }'
