#!/usr/bin/env bash
# Chaos under load: while the load generator's `load` profile runs against the local platform,
# kill -9 each service in turn and start it again, kill the Pulsar broker and start it again,
# stop PostgreSQL for a few seconds and start it again. Then, once the platform has settled,
# judge it from its databases and the broker, not from the generator's view
# (dev/chaos_check.py):
#   - every order accepted during the run ended, confirmed or cancelled;
#   - inventory and payments agree with orders: a confirmed order's stock committed and its
#     payment captured for its total, a cancelled one's neither; stock's reserved counters are
#     the sum of the live reservations; no order captured twice;
#   - every outbox is empty; no dead letter appeared (any that did is listed);
#   - no server error (5xx, or no answer) outside a fault's window (its start to its recovery
#     plus a 10 s grace).
# Prints the run as a table: fault, down time, time to recover, requests failed during it,
# then the invariants; exits 1 when one does not hold. docs/performance.md has a full run.
#
# Usage: dev/chaos.sh [--short]
#   --short  the CI version: 2 s outages, 5 s of calm between faults, 30 visitors
# The platform is restarted first with the load-test limits (dev/loadtest.sh); the next plain
# dev/up restores them. Results: ~/.cache/comptoir/chaos/TIME/ (chaos.md, the load run).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="chaos"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

case "${1:-}" in
  --short) outage=2 calm=5 users=30 rate=60 ;;
  "") outage=5 calm=20 users=80 rate=150 ;;
  *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
SERVICES=(catalog identity orders inventory payments notifications analytics gateway)
RUN_DIR="$COMPTOIR_CACHE/run"
out="$COMPTOIR_CACHE/chaos/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
faults="$out/faults.tsv"
printf 'fault\tstart_ms\trestored_ms\trecovered_ms\n' >"$faults"
now_ms() { date +%s%3N; }
PULSAR_HTTP="http://127.0.0.1:${COMPTOIR_PULSAR_HTTP_PORT:-8080}"

# listen_port NAME: the port a running service listens on, from its environment.
listen_port() {
  tr '\0' '\n' <"/proc/$(<"$RUN_DIR/$1.pid")/environ" \
    | sed -n "s/^COMPTOIR_$(tr '[:lower:]' '[:upper:]' <<<"$1")__HTTP__LISTEN=.*:\([0-9]*\)$/\1/p"
}
declare -A PORT
ready() { [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:${PORT[$1]}/readyz")" == 200 ]]; }
# wait_all_ready: until every service answers /readyz 200 (at most 180 s).
wait_all_ready() {
  local service
  for _ in $(seq 1 900); do
    for service in "${SERVICES[@]}"; do ready "$service" || continue 2; done
    return 0
  done
  die "the platform did not recover within 180 s"
}
# record FAULT START RESTORED: appends the fault once every service is ready again.
record() {
  wait_all_ready
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(now_ms)" >>"$faults"
  log "$1: recovered"
}

# kill_and_restart NAME: SIGKILL, the outage, then the same binary with the same environment.
kill_and_restart() {
  local name="$1" pid bin start restored
  pid="$(<"$RUN_DIR/$name.pid")"
  bin="$(readlink "/proc/$pid/exe")"
  local -a environment
  mapfile -d '' environment <"/proc/$pid/environ"
  start="$(now_ms)"
  log "kill -9 $name (pid $pid)"
  kill -KILL "$pid"
  sleep "$outage"
  env -i "${environment[@]}" setsid nohup "$bin" </dev/null >>"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  restored="$(now_ms)"
  record "kill -9 $name" "$start" "$restored"
}

# Dead letters before the run, to count only the run's.
namespaces=()
for service in "${SERVICES[@]}"; do [[ "$service" == gateway ]] || namespaces+=("comptoir/$service"); done
xtask="$(build_binaries dev)/comptoir-xtask"
dlq_list() {
  "$xtask" dlq list "$PULSAR_HTTP" "${namespaces[@]}"
}

# The load: long enough for every fault, stopped (SIGINT: goose writes its reports) once they
# are over. The generator restarts the platform with the load-test limits first.
log "starting the load (dev/loadtest.sh load: $users visitors, at most $rate requests/s; log: $out/load.log)"
COMPTOIR_LOADTEST_BUILD="${COMPTOIR_LOADTEST_BUILD:-dev}" setsid dev/loadtest.sh load --users "$users" \
  --rate "$rate" --hold 1h --out "$out/load" >"$out/load.log" 2>&1 &
load=$!
trap 'kill -INT "$load" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [[ -s "$out/load/requests.json" ]] && break
  kill -0 "$load" 2>/dev/null || { tail -n 30 "$out/load.log" >&2; die "the load generator exited"; }
  sleep 1
done
[[ -s "$out/load/requests.json" ]] || die "the load did not start within 10 minutes"
for service in "${SERVICES[@]}"; do PORT[$service]="$(listen_port "$service")"; done
dlq_list >"$out/dlq-before.txt"
COMPTOIR_PG_ADMIN_URL="$(dev/postgres.sh admin-url)"
run_started="$(date +%s)"
log "load running; $calm s of calm first"
sleep "$calm"

for service in "${SERVICES[@]}"; do
  kill_and_restart "$service"
  sleep "$calm"
done

start="$(now_ms)"
log "kill -9 the Pulsar broker"
dev/pulsar.sh kill >/dev/null
sleep "$outage"
dev/pulsar.sh start >/dev/null
record "kill -9 Pulsar, start it" "$start" "$(now_ms)"
sleep "$calm"

start="$(now_ms)"
log "stop PostgreSQL for $((outage + 3)) s"
dev/postgres.sh stop >/dev/null
sleep $((outage + 3))
dev/postgres.sh start >/dev/null
record "stop PostgreSQL $((outage + 3)) s" "$start" "$(now_ms)"
sleep "$calm"

log "stopping the load"
kill -INT "$load"
trap - EXIT
wait "$load" || true # its own verdict is not this one's: faults break its SLOs on purpose
[[ -s "$out/load/summary.json" ]] || { tail -n 30 "$out/load.log" >&2; die "the load generator left no summary"; }

dlq_list >"$out/dlq-after.txt"
python3 dev/chaos_check.py --run "$out" --admin-url "$COMPTOIR_PG_ADMIN_URL" --since "$run_started" \
  | tee "$out/chaos.md"
