#!/usr/bin/env bash
# Checkouts through the gateway, from the request to the order's `confirmed`, next to pgbench
# in the same run: pgbench runs a script of as many write transactions as one checkout costs
# PostgreSQL (counted by comptoir-xtask bench-checkout from transaction ids), so the ratio
# says how close the platform comes to what the database alone could do. Also prints the
# resident memory of the commerce services, idle and at peak. Not a test: the numbers go to
# docs/performance.md by hand, with the settings they were taken with.
#
# Usage (identity's sign-in limits and the gateway's rate limits raised: the run signs in one
# customer per shopper, and every request comes from this one address):
#   export COMPTOIR_IDENTITY__LOGIN__PER_IP_PER_MINUTE=100000000 \
#          COMPTOIR_IDENTITY__LOGIN__PER_EMAIL_PER_MINUTE=100000000 \
#          COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
#          COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000 \
#          COMPTOIR_GATEWAY__RATE_LIMIT__PER_SUBJECT_PER_SECOND=1000000 \
#          COMPTOIR_GATEWAY__RATE_LIMIT__PER_SUBJECT_BURST=1000000
#   COMPTOIR_PROFILE=release dev/up && dev/bench-checkout.sh [SECONDS, default 30] [SHOPPERS, default 16]
#
# Three runs of SECONDS each: saturation (SHOPPERS shoppers in a closed loop), then a fixed
# arrival rate of half that saturation rate (latency without coordinated omission), then
# pgbench with SHOPPERS clients.
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-checkout"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

seconds="${1:-30}"
shoppers="${2:-16}"
gateway="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"
run_dir="$COMPTOIR_CACHE/run"
require_ready "the gateway" "$gateway"
pgbench="$(find /usr/lib/postgresql -name pgbench -type f 2>/dev/null | sort | tail -n 1)"
[[ -x "$pgbench" ]] || die "pgbench not found (Debian package postgresql)"

log "building the release binaries"
xtask="$(build_binaries release)/comptoir-xtask"
COMPTOIR_PG_ADMIN_URL="$(dev/postgres.sh admin-url)"
export COMPTOIR_PG_ADMIN_URL

services=(orders inventory payments notifications)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$(<"$run_dir/$1.pid")/status"; }
declare -A idle peak
for service in "${services[@]}"; do idle[$service]="$(rss_kib "$service")"; peak[$service]=0; done
peaks="$(mktemp)"
trap 'rm -f "$peaks"; [[ -n "${sampler:-}" ]] && kill "$sampler" 2>/dev/null || true' EXIT
(
  while sleep 0.2; do
    for service in "${services[@]}"; do echo "$service $(rss_kib "$service")"; done
  done >"$peaks"
) &
sampler=$!

bench() {
  "$xtask" bench-checkout --gateway "$gateway" \
    --inventory-token-file "$COMPTOIR_CACHE/secrets/inventory-admin-token" \
    --shoppers "$shoppers" --seconds "$seconds" "$@"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

log "saturation: $shoppers shoppers in a closed loop for ${seconds}s"
saturation="$(bench)"
echo "$saturation"
rate="$(field checkouts_per_s "$saturation")"
half="$(awk -v r="$rate" 'BEGIN { printf "%.1f", r / 2 }')"
log "half the saturation rate: $half checkouts/s, open loop, for ${seconds}s"
steady="$(bench --rate "$half")"
echo "$steady"
kill "$sampler" 2>/dev/null || true
sampler=""
for service in "${services[@]}"; do
  peak[$service]="$(awk -v s="$service" '$1 == s && $2 > m { m = $2 } END { print m + 0 }' "$peaks")"
done

writes="$(field write_tx_per_checkout "$saturation")"
statements="$(awk -v w="$writes" 'BEGIN { n = int(w + 0.5); print (n < 1 ? 1 : n) }')"
log "pgbench: $statements write transactions per script (one checkout's worth), $shoppers clients"
admin_db_url() { sed "s#/postgres\$#/$1#; s#/postgres?#/$1?#" <<<"$COMPTOIR_PG_ADMIN_URL"; }
psql -q "$COMPTOIR_PG_ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = 'bench_checkout'" | grep -q 1 \
  || psql -q "$COMPTOIR_PG_ADMIN_URL" -c "CREATE DATABASE bench_checkout"
"$pgbench" -q -i -s 10 "$(admin_db_url bench_checkout)" >/dev/null 2>&1
script="$(mktemp --suffix=.sql)"
{
  for i in $(seq 1 "$statements"); do
    echo "\\set aid$i random(1, 1000000)"
    echo "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid$i;"
  done
} >"$script"
pgbench_out="$("$pgbench" -n -c "$shoppers" -j 2 -T "$seconds" -f "$script" "$(admin_db_url bench_checkout)" 2>&1)"
rm -f "$script"
pg_tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$pgbench_out" | head -n 1)"

cat <<REPORT

checkout through the gateway (request → confirmed), $shoppers shoppers, ${seconds}s per run
  saturation      $(field checkouts_per_s "$saturation") checkouts/s  p50 $(field p50_ms "$saturation") ms  p99 $(field p99_ms "$saturation") ms  ($(field confirmed "$saturation") confirmed, $(field cancelled "$saturation") cancelled, $(field failed "$saturation") failed)
  at $half/s      $(field checkouts_per_s "$steady") checkouts/s  p50 $(field p50_ms "$steady") ms  p99 $(field p99_ms "$steady") ms
  write transactions per checkout: $writes (idle platform: $(field idle_write_tx_per_s "$saturation")/s, subtracted)
pgbench, $statements single-row UPDATE transactions per script, $shoppers clients: $pg_tps scripts/s
  ratio (checkouts/s ÷ pgbench scripts/s): $(awk -v a="$rate" -v b="$pg_tps" 'BEGIN { printf "%.2f", a / b }')
resident memory (MiB): service idle → peak under load
$(for service in "${services[@]}"; do
    awk -v s="$service" -v i="${idle[$service]}" -v p="${peak[$service]}" 'BEGIN { printf "  %-14s %6.1f → %6.1f\n", s, i / 1024, p / 1024 }'
  done)
REPORT
