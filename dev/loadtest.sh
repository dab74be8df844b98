#!/usr/bin/env bash
# The load generator (loadtest/, on goose) against the local platform's gateway: simulated
# browsers, shoppers (sign-in, cart, checkout followed to the order's end) and rare GDPR
# visitors, judged by the SLOs of nixos/monitoring/slo.toml (loadtest/README.md).
#
# Usage: dev/loadtest.sh PROFILE [comptoir-loadtest options] [-- goose options]
#   smoke   against the platform as dev/up started it: 9 visitors for 40 s under 40 requests
#           a second (the gateway allows 50 a second per client address, and every simulated
#           visitor is this one address). Fails on any failed request or journey, or on an
#           SLO breach. CI runs it after the contracts.
#   load | stress | spike | soak
#           first restart the platform (dev/up) with the per-address and sign-in limits
#           raised, then run the profile with a release build of the generator. The next plain
#           dev/up restores the limits. For figures worth keeping, run
#           COMPTOIR_PROFILE=release dev/loadtest.sh PROFILE (the services built release too).
#   trivial the generator's own ceiling: /livez without think time (not rate-limited), no
#           restart; compare with wrk on the same route (docs/performance.md).
# Environment: COMPTOIR_LOADTEST_BUILD (dev|release) overrides the generator's build profile.
# Results: ~/.cache/comptoir/loadtest/PROFILE-TIME/ — summary.md (printed at the end),
# summary.json, goose's report.html and report.json, the request log, the plots (SVG).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="loadtest"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

profile="${1:-}"
case "$profile" in
  smoke | load | stress | spike | soak | trivial) shift ;;
  *) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
gateway="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"

if [[ "$profile" == smoke || "$profile" == trivial ]]; then
  require_ready "the gateway" "$gateway"
  build=$([[ "$profile" == smoke ]] && echo dev || echo release)
else
  export COMPTOIR_IDENTITY__LOGIN__PER_IP_PER_MINUTE=100000000 \
    COMPTOIR_IDENTITY__LOGIN__PER_EMAIL_PER_MINUTE=100000000 \
    COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_PER_SECOND=1000000 \
    COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP_BURST=1000000
  log "restarting the platform with the load-test limits (dev/up; log: $COMPTOIR_CACHE/run/loadtest-up.log)"
  mkdir -p "$COMPTOIR_CACHE/run"
  dev/up >"$COMPTOIR_CACHE/run/loadtest-up.log" 2>&1 \
    || { tail -n 30 "$COMPTOIR_CACHE/run/loadtest-up.log" >&2; die "dev/up failed"; }
  build=release
fi

build="${COMPTOIR_LOADTEST_BUILD:-$build}"
log "building the workspace's binaries, comptoir-loadtest among them (profile $build)"
bin="$(build_binaries "$build")/comptoir-loadtest"
exec "$bin" --profile "$profile" --host "$gateway" --slo nixos/monitoring/slo.toml \
  --inventory-token-file "$COMPTOIR_CACHE/secrets/inventory-admin-token" "$@"
