#!/usr/bin/env bash
# The read path benchmark: GET /v1/products?limit=20 against the trivial route of the same
# binary (/livez), straight to the catalog with its pages in memory (src/pages.rs), straight
# to a second catalog on the same database with them off (read_cache.enabled=false: every
# request reads PostgreSQL), and through the gateway in front of the first (logging warnings
# only); then the cost of tracing: the same through two more gateways logging at `info` (the
# default: a span per request), one of which exports its spans over OTLP to Jaeger
# (dev/monitoring.sh start-jaeger). Same wrk settings, same run, alternating, so every ratio is
# taken within one run. Not a test: results go to docs/performance.md by hand.
#
# Starts its own release catalogs (database catalog_bench, demo catalogue) and gateway on
# their own ports against the running local PostgreSQL and Pulsar (dev/postgres.sh,
# dev/pulsar.sh), then stops them. The gateway's rate limits are raised out of the way (the
# limiter still runs on every request); no token is sent.
#
# Usage: dev/bench-gateway.sh [duration, default 20s] [rounds, default 2]
# Environment: BENCH_CATALOG_PORT (18081; the catalog without its pages in memory takes the
# next port), BENCH_GATEWAY_PORT (18000; the two logging at info take the next two),
# COMPTOIR_PROFILE (release; the cargo profile of the binaries),
# COMPTOIR_OTLP_PORT (Jaeger's OTLP/HTTP, 4318), WRK_THREADS (2), WRK_CONNECTIONS (64).
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
nocache_port="$((catalog_port + 1))"
gateway_port="${BENCH_GATEWAY_PORT:-18000}"
logged_port="$((gateway_port + 1))"
traced_port="$((gateway_port + 2))"
otlp="http://127.0.0.1:${COMPTOIR_OTLP_PORT:-4318}/v1/traces"
threads="${WRK_THREADS:-2}"
connections="${WRK_CONNECTIONS:-64}"
path="/v1/products?limit=20"
work="$COMPTOIR_CACHE/bench-gateway"
pulsar_http="http://127.0.0.1:${COMPTOIR_PULSAR_HTTP_PORT:-8080}"

command -v wrk >/dev/null || die "wrk not found (Debian package wrk)"
for port in "$catalog_port" "$nocache_port" "$gateway_port" "$logged_port" "$traced_port"; do
  port_in_use "$port" && die "port $port is taken"
done
dev/postgres.sh start
dev/pulsar.sh start
dev/monitoring.sh start-jaeger

# COMPTOIR_PROFILE=profiling (release with symbols) reuses what `COMPTOIR_PROFILE=profiling
# dev/up` built.
profile="${COMPTOIR_PROFILE:-release}"
log "building $profile binaries"
bin="$(build_binaries "$profile")"

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


# start_catalog PORT LOG VAR=VALUE...: a release catalog on the bench database.
start_catalog() {
  local port="$1" log_file="$2"
  shift 2
  log "starting a catalog on :$port (log: $log_file)"
  env "$@" COMPTOIR_CATALOG__HTTP__LISTEN="127.0.0.1:$port" \
    COMPTOIR_CATALOG__DATABASE__NAME=catalog_bench \
    COMPTOIR_CATALOG__DATABASE__USER=catalog_bench \
    COMPTOIR_CATALOG__DATABASE__PORT="${COMPTOIR_PG_PORT:-55432}" \
    COMPTOIR_CATALOG__DATABASE__PASSWORD_FILE="$work/db-password" \
    COMPTOIR_CATALOG__DATABASE__TLS=verify-full \
    COMPTOIR_CATALOG__DATABASE__CA_FILE="$(dev/postgres.sh ca-file)" \
    COMPTOIR_CATALOG__PULSAR__URL="pulsar://127.0.0.1:${COMPTOIR_PULSAR_PORT:-6650}" \
    COMPTOIR_CATALOG__ADMIN_TOKEN_FILE="$work/admin-token" \
    COMPTOIR_CATALOG__TELEMETRY__LOG_FILTER=warn \
    "$bin/comptoir-catalog" >"$log_file" 2>&1 &
  pids+=("$!")
  wait_for_url "http://127.0.0.1:$port/readyz" "$!" "$log_file"
}
start_catalog "$catalog_port" "$work/catalog.log" COMPTOIR_CATALOG__DEMO_DATA=true
start_catalog "$nocache_port" "$work/catalog-nocache.log" COMPTOIR_CATALOG__READ_CACHE__ENABLED=false

# start_gateway PORT LOG_FILTER LOG VAR=VALUE...: a release gateway in front of the first catalog.
start_gateway() {
  local port="$1" filter="$2" log_file="$3"
  shift 3
  log "starting a gateway on :$port, logging at $filter (log: $log_file)"
  env "$@" COMPTOIR_GATEWAY__HTTP__LISTEN="127.0.0.1:$port" \
    COMPTOIR_GATEWAY__UPSTREAMS__CATALOG__URL="http://127.0.0.1:$catalog_port" \
    COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
    COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000 \
    COMPTOIR_GATEWAY__TELEMETRY__LOG_FILTER="$filter" \
    "$bin/comptoir-gateway" >"$log_file" 2>&1 &
  pids+=("$!")
  # Alive is enough: readiness waits for identity's keys, and no token is sent here.
  wait_for_url "http://127.0.0.1:$port/livez" "$!" "$log_file"
}
start_gateway "$gateway_port" warn "$work/gateway.log"
# The spans exist only where the filter lets them (info): the pair compared for tracing.
start_gateway "$logged_port" info "$work/gateway-logged.log"
start_gateway "$traced_port" info "$work/gateway-traced.log" COMPTOIR_GATEWAY__TELEMETRY__OTLP_ENDPOINT="$otlp"


baseline="http://127.0.0.1:$catalog_port/livez"
direct="http://127.0.0.1:$catalog_port$path"
nocache="http://127.0.0.1:$nocache_port$path"
through="http://127.0.0.1:$gateway_port$path"
logged="http://127.0.0.1:$logged_port$path"
traced="http://127.0.0.1:$traced_port$path"
log "wrk -t$threads -c$connections -d$duration, $rounds round(s), warming each up for 3 s first"
for url in "$baseline" "$direct" "$nocache" "$through" "$logged" "$traced"; do
  wrk -t"$threads" -c"$connections" -d3s "$url" >/dev/null
done
printf '| round | path | requests/s | p99 (ms) |\n|---|---|---:|---:|\n'
declare -A sum=([baseline]=0 [direct]=0 [nocache]=0 [through]=0 [logged]=0 [traced]=0)
declare -A label=(
  [baseline]="GET /livez, the trivial route (baseline)"
  [direct]="listing, pages in memory"
  [nocache]="listing, pages off (PostgreSQL per request)"
  [through]="listing through the gateway, pages in memory"
  [logged]="the same through a gateway logging at info (spans, no export)"
  [traced]="the same through a gateway logging at info and exporting its spans (OTLP to Jaeger)"
)
for round in $(seq 1 "$rounds"); do
  for name in baseline direct nocache through logged traced; do
    read -r rps p99 _ < <(wrk_run "$threads" "$connections" "$duration" "${!name}")
    printf '| %s | %s | %s | %s |\n' "$round" "${label[$name]}" "$rps" "$p99"
    sum[$name]="$(awk -v a="${sum[$name]}" -v b="$rps" 'BEGIN { print a + b }')"
  done
done
awk -v b="${sum[baseline]}" -v d="${sum[direct]}" -v n="${sum[nocache]}" -v g="${sum[through]}" -v l="${sum[logged]}" -v t="${sum[traced]}" 'BEGIN {
  printf "\nlisting in memory / baseline: %.3f (target 0.5)\n", d / b
  printf "listing off memory / baseline: %.3f\n", n / b
  printf "listing through the gateway / baseline: %.3f (target 0.4)\n", g / b
  printf "gateway / direct: %.3f\n", g / d
  printf "gateway at info / at warn: %.3f (the cost of its spans and request logs)\n", l / g
  printf "gateway exporting its spans / not: %.3f (the cost of tracing: target close to 1)\n", t / l
}'
