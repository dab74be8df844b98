#!/usr/bin/env bash
# Click-stream ingestion through the gateway, end to end, next to the broker's own ceiling:
#   1. wrk posts batches of CLICKS product views to POST /v1/events (anonymous sessions) for
#      SECONDS over CONNECTIONS connections; one marker batch a second measures the
#      event-to-aggregate latency (posted → counted in the KPI series); then the processor is
#      waited for until every accepted click is counted (dev/bench_analytics.py);
#   2. right after, on the same broker, Apache Pulsar's pulsar-perf produces for the same time
#      messages the size of one click (a batch's bytes over its clicks), then messages the size
#      of one batch (random bytes, uncompressed; ours are LZ4).
# The ratios: our clicks per second over pulsar-perf's click-sized messages per second (an
# event each way), and our batches per second (one Pulsar message each) over its batch-sized
# messages per second. Restarts the platform first with the load-test limits
# (as dev/loadtest.sh does) on COMPTOIR_PROFILE's build (default release). Not a test: the
# numbers go to docs/performance.md by hand.
#
# Usage: dev/bench-analytics.sh [SECONDS, default 30] [CLICKS per batch, default 100]
#        [CONNECTIONS, default 32]
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-analytics"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

seconds="${1:-30}"
clicks="${2:-100}"
connections="${3:-32}"
gateway="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"
analytics="http://127.0.0.1:${COMPTOIR_ANALYTICS_PORT:-8087}"
http="http://127.0.0.1:${COMPTOIR_PULSAR_HTTP_PORT:-8080}"
broker="pulsar://127.0.0.1:${COMPTOIR_PULSAR_PORT:-6650}"
command -v wrk >/dev/null || install_missing wrk

export COMPTOIR_PROFILE="${COMPTOIR_PROFILE:-release}" \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
  COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000
log "restarting the platform ($COMPTOIR_PROFILE build, load-test limits; log: $COMPTOIR_CACHE/run/bench-up.log)"
mkdir -p "$COMPTOIR_CACHE/run"
dev/up >"$COMPTOIR_CACHE/run/bench-up.log" 2>&1 \
  || { tail -n 30 "$COMPTOIR_CACHE/run/bench-up.log" >&2; die "dev/up failed"; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
log "wrk: $seconds s, $clicks clicks per batch, $connections connections"
python3 dev/bench_analytics.py "$gateway" "$analytics" "$COMPTOIR_CACHE/secrets/analytics-admin-token" \
  "$seconds" "$clicks" "$connections" >"$out/ours.json"
bytes="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["batch_bytes"])' "$out/ours.json")"

classpath="$COMPTOIR_CACHE/pulsar/classpath.txt"
[[ -s "$classpath" ]] || die "no Pulsar classpath; run dev/bootstrap.sh"
printf 'webServiceUrl=%s/\nbrokerServiceUrl=%s/\n' "$http" "$broker" >"$out/client.conf"
# perf SIZE → messages/s of pulsar-perf producing SIZE-byte messages for $seconds s.
perf() {
  local topic="persistent://comptoir/analytics/bench-perf-$1-$$"
  log "pulsar-perf: $seconds s of $1-byte messages"
  java -Xmx1g -XX:+UseSerialGC -cp "$(<"$classpath")" \
    org.apache.pulsar.testclient.PulsarPerfTestTool "$out/client.conf" produce \
    -u "$broker" -r 100000000 -s "$1" -time "$seconds" -o 10000 -bm 1000 -b 1 "$topic" \
    >"$out/perf-$1.txt" 2>&1 || { tail -n 20 "$out/perf-$1.txt" >&2; die "pulsar-perf failed"; }
  curl -s -X DELETE "$http/admin/v2/persistent/${topic#persistent://}?force=true" >/dev/null || true
  awk '/Aggregated throughput stats/ { for (i = 1; i <= NF; i++) if ($(i+1) == "msg/s") rate = $i } END { printf "%.0f", rate }' "$out/perf-$1.txt"
}
perf_click="$(perf $((bytes / clicks)))"
perf_batch="$(perf "$bytes")"

python3 - "$out/ours.json" "$perf_click" "$perf_batch" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
perf_click, perf = float(sys.argv[2]), float(sys.argv[3])
click_bytes = r["batch_bytes"] // r["clicks_per_batch"]
print(r["wrk"])
print(f"POST /v1/events through the gateway, {r['connections']} connections, {r['seconds']} s, "
      f"{r['clicks_per_batch']} clicks ({r['batch_bytes']} bytes) per batch:")
print(f"  accepted      {r['accepted_clicks']} clicks, {r['ingested_per_s']:.0f} clicks/s "
      f"({r['batches_per_s']:.0f} batches/s), {r['non_2xx']} non-2xx")
print(f"  counted       {r['counted_per_s']:.0f} clicks/s end to end (all counted {r['drained_after_s']:.1f} s after the start)")
print(f"  event to aggregate over {r['markers']} markers: p50 {r['event_to_aggregate_p50_ms']:.0f} ms, "
      f"p99 {r['event_to_aggregate_p99_ms']:.0f} ms")
print(f"  pulsar-perf   {perf_click:.0f} messages/s of {click_bytes} bytes (one click), "
      f"{perf:.0f} messages/s of {r['batch_bytes']} bytes (one batch)")
print(f"  ours / pulsar-perf: clicks/s over click-sized messages/s {r['ingested_per_s'] / perf_click:.2f}, "
      f"batches/s over batch-sized messages/s {r['batches_per_s'] / perf:.2f}")
PY
