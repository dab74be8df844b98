#!/usr/bin/env bash
# Gateway overhead benchmark: GET /v1/products?limit=20 straight to the catalog and through
# the gateway, same wrk settings, same run, alternating, so the ratio says what the extra hop
# costs (routing, edge checks, one more pooled HTTP exchange). Not a test: results go to
# docs/performance.md by hand.
#
# Starts its own release catalog (database catalog_bench, demo catalogue) and gateway on
# their own ports against the running local PostgreSQL and Pulsar (dev/postgres.sh,
# dev/pulsar.sh), then stops them. The gateway's rate limits are raised out of the way (the
# limiter still runs on every request); no token is sent.
#
# Usage: dev/bench-gateway.sh [duration, default 20s] [rounds, default 2]
# Environment: BENCH_CATALOG_PORT (18081), BENCH_GATEWAY_PORT (18000), WRK_THREADS (2),
# WRK_CONNECTIONS (64).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-gateway"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=dev/lib/bench.sh
source "$COMPTOIR_DEV_DIR/lib/bench.sh"
cd "$COMPTOIR_DEV_DIR/.."

duration="${1:-20s}"
rounds="${2:-2}"
catalog_port="${BENCH_CATALOG_PORT:-18081}"
gateway_port="${BENCH_GATEWAY_PORT:-18000}"
threads="${WRK_THREADS:-2}"
connections="${WRK_CONNECTIONS:-64}"
path="/v1/products?limit=20"
work="$COMPTOIR_CACHE/bench-gateway"
pulsar_http="http://127.0.0.1:${COMPTOIR_PULSAR_HTTP_PORT:-8080}"

command -v wrk >/dev/null || die "wrk not found (Debian package wrk)"
for port in "$catalog_port" "$gateway_port"; do
  port_in_use "$port" && die "port $port is taken"
done
dev/postgres.sh start
dev/pulsar.sh start

log "building release binaries"
cargo build --locked --release -p comptoir-catalog -p comptoir-gateway -p comptoir-xtask
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target_dir/release"

mkdir -p "$work"
chmod 700 "$work"
for secret in db-password admin-token; do
  [[ -s "$work/$secret" ]] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$work/$secret")
done
COMPTOIR_PG_ADMIN_URL="$(dev/postgres.sh admin-url)"
export COMPTOIR_PG_ADMIN_URL
"$bin/comptoir-xtask" provision-db - catalog_bench "$work/db-password"
"$bin/comptoir-xtask" provision-topology "$pulsar_http"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT


log "starting the catalog on :$catalog_port (log: $work/catalog.log)"
COMPTOIR_CATALOG__HTTP__LISTEN="127.0.0.1:$catalog_port" \
  COMPTOIR_CATALOG__DATABASE__NAME=catalog_bench \
  COMPTOIR_CATALOG__DATABASE__USER=catalog_bench \
  COMPTOIR_CATALOG__DATABASE__PORT="${COMPTOIR_PG_PORT:-55432}" \
  COMPTOIR_CATALOG__DATABASE__PASSWORD_FILE="$work/db-password" \
  COMPTOIR_CATALOG__DATABASE__TLS=verify-full \
  COMPTOIR_CATALOG__DATABASE__CA_FILE="$(dev/postgres.sh ca-file)" \
  COMPTOIR_CATALOG__PULSAR__URL="pulsar://127.0.0.1:${COMPTOIR_PULSAR_PORT:-6650}" \
  COMPTOIR_CATALOG__ADMIN_TOKEN_FILE="$work/admin-token" \
  COMPTOIR_CATALOG__DEMO_DATA=true \
  COMPTOIR_CATALOG__TELEMETRY__LOG_FILTER=warn \
  "$bin/comptoir-catalog" >"$work/catalog.log" 2>&1 &
pids+=("$!")
wait_for_url "http://127.0.0.1:$catalog_port/readyz" "$!" "$work/catalog.log"

log "starting the gateway on :$gateway_port (log: $work/gateway.log)"
COMPTOIR_GATEWAY__HTTP__LISTEN="127.0.0.1:$gateway_port" \
  COMPTOIR_GATEWAY__UPSTREAMS__CATALOG__URL="http://127.0.0.1:$catalog_port" \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000 \
  COMPTOIR_GATEWAY__TELEMETRY__LOG_FILTER=warn \
  "$bin/comptoir-gateway" >"$work/gateway.log" 2>&1 &
pids+=("$!")
# Alive is enough: readiness waits for identity's keys, and no token is sent here.
wait_for_url "http://127.0.0.1:$gateway_port/livez" "$!" "$work/gateway.log"


direct="http://127.0.0.1:$catalog_port$path"
through="http://127.0.0.1:$gateway_port$path"
log "wrk -t$threads -c$connections -d$duration, $rounds round(s), warming both up for 3 s first"
wrk -t"$threads" -c"$connections" -d3s "$direct" >/dev/null
wrk -t"$threads" -c"$connections" -d3s "$through" >/dev/null
printf '| round | path | requests/s | p99 (ms) |\n|---|---|---:|---:|\n'
sum_direct=0
sum_through=0
for round in $(seq 1 "$rounds"); do
  read -r d_rps d_p99 _ < <(wrk_run "$threads" "$connections" "$duration" "$direct")
  read -r g_rps g_p99 _ < <(wrk_run "$threads" "$connections" "$duration" "$through")
  printf '| %s | direct to catalog | %s | %s |\n' "$round" "$d_rps" "$d_p99"
  printf '| %s | through the gateway | %s | %s |\n' "$round" "$g_rps" "$g_p99"
  sum_direct="$(awk -v a="$sum_direct" -v b="$d_rps" 'BEGIN { print a + b }')"
  sum_through="$(awk -v a="$sum_through" -v b="$g_rps" 'BEGIN { print a + b }')"
done
awk -v g="$sum_through" -v d="$sum_direct" \
  'BEGIN { printf "\ngateway / direct throughput ratio: %.3f\n", g / d }'
