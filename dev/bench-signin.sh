#!/usr/bin/env bash
# Sign-in at saturation: wrk keeps WRK_CONNECTIONS sign-ins of the demo customer in flight
# against identity directly, and this prints the latency percentiles, the throughput, the
# answers that were not 200 (503: shed because every argon2 slot stayed busy for
# argon2.queue_ms) and identity's peak resident memory, sampled every 100 ms. Not a test: the
# numbers go to services/identity/README.md by hand, with the settings they were taken with.
#
# Usage (identity's limits raised so that none answers 429; compare argon2.max_concurrent):
#   export COMPTOIR_IDENTITY__LOGIN__PER_IP_PER_MINUTE=100000000 \
#          COMPTOIR_IDENTITY__LOGIN__PER_EMAIL_PER_MINUTE=100000000
#   COMPTOIR_PROFILE=release dev/up && dev/bench-signin.sh [duration, default 20s]
# Environment: COMPTOIR_IDENTITY_PORT (8082), WRK_THREADS (2), WRK_CONNECTIONS (64).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="bench-signin"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

port="${COMPTOIR_IDENTITY_PORT:-8082}"
base="http://127.0.0.1:$port"
duration="${1:-20s}"
command -v wrk >/dev/null || die "wrk not found (Debian package wrk)"
require_ready "identity" "$base"
pid="$(<"$COMPTOIR_CACHE/run/identity.pid")"
password="$(<"$COMPTOIR_CACHE/secrets/demo-customer-password")"

script="$(mktemp --suffix=.lua)"
trap 'rm -f "$script"' EXIT
cat >"$script" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"demo@comptoir.example","password":"$password"}'
LUA

peak=0
sample() {
  local rss
  while kill -0 "$pid" 2>/dev/null; do
    rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    ((rss > peak)) && peak="$rss" && echo "$peak" >"$script.peak"
    sleep 0.1
  done
}
echo 0 >"$script.peak"
sample &
sampler=$!
idle_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
log "wrk -t${WRK_THREADS:-2} -c${WRK_CONNECTIONS:-64} -d$duration POST $base/v1/sessions"
out="$(wrk -t"${WRK_THREADS:-2}" -c"${WRK_CONNECTIONS:-64}" -d"$duration" --timeout 10s --latency \
  -s "$script" "$base/v1/sessions")"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
printf '%s\n' "$out"
printf '\nidentity resident memory: idle %s MiB, peak under load %s MiB\n' \
  "$((idle_kib / 1024))" "$(($(<"$script.peak") / 1024))"
rm -f "$script.peak"
