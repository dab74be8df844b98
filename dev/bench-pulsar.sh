#!/usr/bin/env bash
# Producer benchmark on the local standalone: Apache Pulsar's own pulsar-perf against our
# producer (comptoir-xtask bench-producer, the relay's publishing pattern), 1 KiB messages,
# 10,000 messages in flight for both,
# batching on, no rate limit, interleaved rounds in one run so both see the same broker state.
# Not a test: results go to docs/performance.md by hand.
#
# Usage: dev/bench-pulsar.sh [messages per round, default 200000] [rounds, default 2]
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-pulsar"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

messages="${1:-200000}"
rounds="${2:-2}"
http="http://127.0.0.1:${COMPTOIR_PULSAR_HTTP_PORT:-8080}"
broker="pulsar://127.0.0.1:${COMPTOIR_PULSAR_PORT:-6650}"
classpath="$COMPTOIR_CACHE/pulsar/classpath.txt"
[[ -s "$classpath" ]] || die "no Pulsar classpath; run dev/bootstrap.sh"
dev/pulsar.sh status >/dev/null || die "Pulsar is not healthy; run dev/pulsar.sh start"

xtask="$(build_binaries release)/comptoir-xtask"
"$xtask" provision-pulsar "$http" comptoir-bench/producers

client_conf="$(mktemp)"
trap 'rm -f "$client_conf"' EXIT
printf 'webServiceUrl=%s/\nbrokerServiceUrl=%s/\n' "$http" "$broker" >"$client_conf"

# java_perf TOPIC → "msgs_per_s p50_ms p99_ms"
java_perf() {
  java -Xmx1g -XX:+UseSerialGC -cp "$(<"$classpath")" \
    org.apache.pulsar.testclient.PulsarPerfTestTool "$client_conf" produce \
    -u "$broker" -r 100000000 -s 1024 -m "$messages" -o 10000 -bm 1000 -b 1 "$1" 2>&1 \
    | awk '/Aggregated throughput stats/ { for (i = 1; i <= NF; i++) if ($(i+1) == "msg/s") rate = $i }
           /Aggregated latency stats/ { for (i = 1; i <= NF; i++) { if ($i == "med:") p50 = $(i+1); if ($i == "99pct:") p99 = $(i+1) } }
           END { printf "%.0f %s %s\n", rate, p50, p99 }'
}

rust_perf() {
  "$xtask" bench-producer --url "$broker" --topic "$1" --messages "$messages" --size 1024 \
    --in-flight 10000 --batch 1000 | awk '{ print $2, $3, $4 }'
}

printf '| round | client | msgs/s | p50 (ms) | p99 (ms) |\n|---|---|---:|---:|---:|\n'
java_total=0
rust_total=0
for round in $(seq 1 "$rounds"); do
  read -r rate p50 p99 < <(java_perf "persistent://comptoir-bench/producers/java-$round-$$")
  printf '| %s | pulsar-perf 4.0.8 | %s | %s | %s |\n' "$round" "$rate" "$p50" "$p99"
  java_total=$((java_total + rate))
  read -r rate p50 p99 < <(rust_perf "persistent://comptoir-bench/producers/rust-$round-$$")
  printf '| %s | comptoir (pulsar-rs) | %s | %s | %s |\n' "$round" "$rate" "$p50" "$p99"
  rust_total=$((rust_total + rate))
done
awk -v r="$rust_total" -v j="$java_total" 'BEGIN { printf "\nours / pulsar-perf throughput ratio (mean of rounds): %.2f\n", r / j }'
