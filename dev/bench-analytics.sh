#!/usr/bin/env bash
# Click-stream ingestion through the gateway, end to end, next to the broker's own ceiling:
#   1. wrk posts batches of CLICKS product views to POST /v1/events (anonymous sessions) for
#      SECONDS over CONNECTIONS connections; one marker batch a second measures the
#      event-to-aggregate latency (posted → counted in the KPI series); then the processor is
#      waited for until every accepted click is counted (dev/bench_analytics.py);
#   2. right after, on the same broker, Apache Pulsar's pulsar-perf produces messages of the
#      same size as one batch for the same time (random bytes, uncompressed; ours are LZ4).
# The ratio compared: our accepted batches per second (one Pulsar message each) over
# pulsar-perf's messages per second. Restarts the platform first with the load-test limits
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
log "pulsar-perf: $seconds s of $bytes-byte messages"
java -Xmx1g -XX:+UseSerialGC -cp "$(<"$classpath")" \
  org.apache.pulsar.testclient.PulsarPerfTestTool "$out/client.conf" produce \
  -u "$broker" -r 100000000 -s "$bytes" -time "$seconds" -o 10000 -bm 1000 -b 1 \
  "persistent://comptoir/analytics/bench-perf-$$" >"$out/perf.txt" 2>&1 \
  || { tail -n 20 "$out/perf.txt" >&2; die "pulsar-perf failed"; }
perf_rate="$(awk '/Aggregated throughput stats/ { for (i = 1; i <= NF; i++) if ($(i+1) == "msg/s") rate = $i } END { printf "%.0f", rate }' "$out/perf.txt")"
curl -s -X DELETE "$http/admin/v2/persistent/comptoir/analytics/bench-perf-$$?force=true" >/dev/null || true

python3 - "$out/ours.json" "$perf_rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
perf = float(sys.argv[2])
print(r["wrk"])
print(f"POST /v1/events through the gateway, {r['connections']} connections, {r['seconds']} s, "
      f"{r['clicks_per_batch']} clicks ({r['batch_bytes']} bytes) per batch:")
print(f"  accepted      {r['accepted_clicks']} clicks, {r['ingested_per_s']:.0f} clicks/s "
      f"({r['batches_per_s']:.0f} batches/s), {r['non_2xx']} non-2xx")
print(f"  counted       {r['counted_per_s']:.0f} clicks/s end to end (all counted {r['drained_after_s']:.1f} s after the start)")
print(f"  event to aggregate over {r['markers']} markers: p50 {r['event_to_aggregate_p50_ms']:.0f} ms, "
      f"p99 {r['event_to_aggregate_p99_ms']:.0f} ms")
print(f"  pulsar-perf   {perf:.0f} messages/s of {r['batch_bytes']} bytes")
print(f"  ours / pulsar-perf (messages/s): {r['batches_per_s'] / perf:.2f}")
PY
