#!/usr/bin/env bash
# The OpenAPI documents as contracts: schemathesis (property-based, from the schemas) against
# every public route through the gateway of a running platform (dev/up), with every check it
# has (`--checks all`: no 5xx, every status and body and header declared and matching its
# schema, schema-valid requests accepted, schema-invalid ones refused, auth enforced on every
# secured operation, unsupported methods answered 405). Four runs, fixed seed:
#   1. as a customer (a fresh one, registered for the run): every route but the admin ones and
#      the erasure of one's own account
#   2. the erasure (DELETE /v1/me) alone, with another fresh customer, since it ends the account
#   3. as each service's admin: catalog, inventory, payments, notifications, analytics, their
#      admin routes with their own token
# What a schema cannot say (a password too easy to guess, ...) is said, with its reason, in
# dev/contracts/schemathesis.toml. The reports (JUnit per run, the run's summary with seeds and
# example counts) go to $COMPTOIR_RESULTS_DIR/contracts/ (default ~/.cache/comptoir/results).
# It changes the platform's data (it creates, edits and deletes products, stock, carts and
# orders): run it against a throwaway platform, as CI does.
# Environment: COMPTOIR_GATEWAY_PORT (8000), COMPTOIR_CONTRACT_EXAMPLES (examples per operation
# and phase, default 25), COMPTOIR_CONTRACT_SEED (default 20261202).
# Usage: dev/check-contracts.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-contracts"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

(($# == 0)) || { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

SCHEMATHESIS_VERSION=4.32.5
GATEWAY="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"
EXAMPLES="${COMPTOIR_CONTRACT_EXAMPLES:-25}"
SEED="${COMPTOIR_CONTRACT_SEED:-20261202}"
RESULTS="${COMPTOIR_RESULTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/comptoir/results}/contracts"
SECRETS="$COMPTOIR_CACHE/secrets"
VENV="$COMPTOIR_CACHE/venv-schemathesis"
CONFIG="$PWD/dev/contracts/schemathesis.toml"
CLI="$PWD/dev/contracts/schemathesis_cli.py"

install_schemathesis() {
  [[ -e "$VENV/.installed-$SCHEMATHESIS_VERSION" ]] && return 0
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI, into $VENV)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  touch "$VENV/.installed-$SCHEMATHESIS_VERSION"
}

# A new customer through the gateway; prints an access token. Registration is asynchronous
# (202): sign-in is retried until the account exists.
customer_token() {
  local email password attempt token
  email="contract-$(date +%s%N)@example.com"
  password="Contract-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
  curl -sf -o /dev/null -H 'content-type: application/json' "$GATEWAY/v1/customers" \
    -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Contract Run\"}" \
    || die "cannot register a customer through $GATEWAY (is the platform up? dev/up)"
  for attempt in $(seq 1 50); do
    token="$(curl -s -H 'content-type: application/json' "$GATEWAY/v1/sessions" \
      -d "{\"email\":\"$email\",\"password\":\"$password\"}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("access_token", ""))' 2>/dev/null || true)"
    [[ -n "$token" ]] && { printf '%s\n' "$token"; return 0; }
    sleep 0.2
  done
  die "the customer $email registered through $GATEWAY could not sign in ($attempt attempts)"
}

# run NAME ARGS...: one schemathesis run; its report and output kept under RESULTS. A run
# that stops on an error of schemathesis itself (a Python traceback, no failure of the API) is
# run again once: such errors come and go with the tool's caches. A failure of the API is
# never retried.
status=0
run() {
  local name="$1" attempt
  shift
  for attempt in 1 2; do
    log "run $name: seed $SEED, $EXAMPLES examples per operation and phase"
    # From the results directory: schemathesis keeps a cache in its working directory.
    # Through dev/contracts/schemathesis_cli.py: schemathesis with a workaround for a CPython
    # 3.11 bug that stops it on an error of its own (the file says which).
    if (cd "$RESULTS" && "$VENV/bin/python" "$CLI" --config-file "$CONFIG" run "$GATEWAY/openapi.json" --url "$GATEWAY" \
      --checks all --seed "$SEED" --max-examples "$EXAMPLES" --workers 2 --no-color --generation-database none \
      --report junit --report-junit-path "$RESULTS/$name.junit.xml" "$@" >"$RESULTS/$name.txt" 2>&1); then
      log "run $name: $(grep -E '^ *[0-9]+ generated' "$RESULTS/$name.txt" | xargs);$(grep -E '^=+ .* in [0-9.]+s =+$' "$RESULTS/$name.txt" | tr -d '=')"
      return 0
    fi
    if ((attempt == 1)) && grep -qE '^=+ ERRORS =+$' "$RESULTS/$name.txt" \
      && ! grep -qE '^=+ FAILURES =+$' "$RESULTS/$name.txt"; then
      log "run $name: schemathesis stopped on an error of its own, not of the API: once more"
      cp "$RESULTS/$name.txt" "$RESULTS/$name.tool-error.txt"
      continue
    fi
    break
  done
  status=1
  sed -n '/^=* \(FAILURES\|ERRORS\) =*$/,$p' "$RESULTS/$name.txt" | head -150 >&2
  log "run $name FAILED: $RESULTS/$name.txt"
}

main() {
  curl -sf -o /dev/null "$GATEWAY/readyz" || die "no platform at $GATEWAY: start it with dev/up"
  install_schemathesis
  mkdir -p "$RESULTS"
  rm -f "$RESULTS"/*.txt "$RESULTS"/*.xml

  run customer -H "Authorization: Bearer $(customer_token)" \
    --exclude-path-regex '^/v1/admin/' --exclude-name 'DELETE /v1/me'
  run erasure -H "Authorization: Bearer $(customer_token)" --include-name 'DELETE /v1/me'

  local service prefix
  for service in catalog:'^/v1/admin/(products|categories)' inventory:'^/v1/admin/stock/' \
    payments:'^/v1/admin/payments/' notifications:'^/v1/admin/deliveries' \
    analytics:'^/v1/admin/kpis/'; do
    prefix="${service#*:}"
    service="${service%%:*}"
    run "admin-$service" -H "Authorization: Bearer $(cat "$SECRETS/$service-admin-token")" \
      --include-path-regex "$prefix"
  done

  ((status == 0)) || die "the OpenAPI contracts do not hold (above; reports in $RESULTS)"
  log "every route through the gateway keeps its OpenAPI contract (reports in $RESULTS)"
}

main
