#!/usr/bin/env bash
# Checks the local platform's observability against live data (dev/up must be running):
#   1. drives traffic through the gateway: catalogue reads, a sign-in, then a whole purchase
#      whose checkout carries a W3C `traceparent` with a trace id chosen here;
#   2. dev/monitoring_check.py live: every Prometheus target up, every rule loaded and
#      healthy, Alertmanager ready and known to Prometheus, EVERY query of every dashboard of
#      nixos/monitoring/dashboards/ answered with series (polled: the recording rules need a
#      minute or two), and the purchase's trace ONE trace in Jaeger with spans of the gateway,
#      orders, inventory, payments, notifications and identity (the checkout crosses HTTP,
#      then the saga's commands and replies over Pulsar, then the confirmation mail, whose
#      recipient notifications asks identity for).
# Usage: dev/check-observability.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-observability"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

GW="http://127.0.0.1:${COMPTOIR_GATEWAY_PORT:-8000}"
PROMETHEUS="http://127.0.0.1:${COMPTOIR_PROMETHEUS_PORT:-9090}"
ALERTMANAGER="http://127.0.0.1:${COMPTOIR_ALERTMANAGER_PORT:-9093}"
JAEGER="http://127.0.0.1:${COMPTOIR_JAEGER_PORT:-16686}"
SECRETS="$COMPTOIR_CACHE/secrets"

json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

main() {
  [[ $# -eq 0 ]] || { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  curl -fs -o /dev/null "$GW/readyz" || die "the platform is not up: run dev/up"

  log "driving traffic through $GW"
  local product token trace_id order status i
  for i in $(seq 1 20); do
    curl -fs -o /dev/null "$GW/v1/products?limit=5&offset=$i"
    curl -fs -o /dev/null "$GW/v1/categories"
  done
  product="$(curl -fsS "$GW/v1/products?q=kenya&limit=1" | json_field '["items"][0]["id"]')"
  curl -fs -o /dev/null "$GW/v1/products/$product"
  token="$(curl -fsS -H 'content-type: application/json' "$GW/v1/sessions" \
    -d "{\"email\":\"demo@comptoir.example\",\"password\":\"$(head -n 1 "$SECRETS/demo-customer-password")\"}" \
    | json_field '["access_token"]')"
  curl -fs -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    "$GW/v1/cart/lines/$product" -d '{"quantity": 1}'
  trace_id="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  order="$(curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" \
    -H "traceparent: 00-$trace_id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')-01" \
    "$GW/v1/orders" -d '{"payment_token": "tok_success"}' | json_field '["id"]')"
  for _ in $(seq 1 150); do
    status="$(curl -fsS -H "Authorization: Bearer $token" "$GW/v1/orders/$order" | json_field '["status"]')"
    [[ "$status" == confirmed || "$status" == cancelled ]] && break
    sleep 0.2
  done
  [[ "$status" == confirmed ]] || die "order $order is $status, not confirmed"
  # The click stream: an anonymous storefront batch, a view then an addition to the cart (the
  # funnel's panels read analytics' counters per kind).
  now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  curl -fs -o /dev/null -H 'content-type: application/json' "$GW/v1/events" \
    -d "{\"session\": \"check-observability-session\", \"events\": [
          {\"type\": \"product-view\", \"at\": \"$now\", \"product_id\": \"$product\"},
          {\"type\": \"add-to-cart\", \"at\": \"$now\", \"product_id\": \"$product\", \"quantity\": 1}]}"
  log "order $order confirmed; its trace is $trace_id"

  python3 dev/monitoring_check.py live --prometheus "$PROMETHEUS" --alertmanager "$ALERTMANAGER" \
    --expect-rule-files 3 --jaeger "$JAEGER" --trace-id "$trace_id" \
    --services gateway,orders,inventory,payments,notifications,identity nixos/monitoring/dashboards \
    || die "the observability of the live platform is incomplete (above)"
}

main "$@"
