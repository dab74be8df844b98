#!/usr/bin/env bash
# Runs the README's shopper commands against the running platform (`dev/up`), as a reader would
# paste them: the "Quick start" examples (which sign the demo customer in: $token), then "Buy
# something" (cart, checkout, the waiting read until the saga ends, the mail in Mailpit). Fails
# when a block fails, hangs (60 s), or the purchase does not end `confirmed` with its mail.
# The demo stock is finite and only seeded when a product is created: the coffee the README buys
# is first topped up to 10 bags through inventory's admin API, as an operator would, so that
# the check holds on a local platform that has sold it out.
# Usage: dev/check-readme.sh   (the platform up; .ci/run runs it right after dev/up)
set -euo pipefail
COMPTOIR_SCRIPT_NAME="check-readme"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

# block HEADING N: the Nth ```sh block after the heading line HEADING of README.md.
block() {
  python3 - "$1" "$2" <<'PY'
import re, sys
heading, n = sys.argv[1], int(sys.argv[2])
text = open("README.md").read()
start = text.index("\n" + heading + "\n")
blocks = re.findall(r"```sh\n(.*?)```", text[start:], re.S)
sys.stdout.write(blocks[n])
PY
}

# The product the README buys, and enough of it in stock.
gw=http://127.0.0.1:8000
product="$(curl -fsS "$gw/v1/products?q=kenya&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')" \
  || die "the README's product is not in the catalogue (is the platform up? dev/up)"
available="$(curl -fsS "$gw/v1/stock/$product" | python3 -c 'import json,sys; print(json.load(sys.stdin)["available"])')"
if ((available < 10)); then
  curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $(cat "$COMPTOIR_CACHE/secrets/inventory-admin-token")" \
    -H 'content-type: application/json' "$gw/v1/admin/stock/$product/adjustments" \
    -d "{\"delta\": $((10 - available)), \"reason\": \"dev/check-readme.sh: restocked for the README's purchase\"}" \
    || die "could not restock $product through inventory's admin API"
  log "restocked $product: $available → 10 available"
fi

script="$(mktemp)"
trap 'rm -f "$script"' EXIT
{
  echo 'set -euo pipefail'
  block "## Quick start" 1
  block "### Buy something" 0
} >"$script"
out="$(timeout 60 bash "$script" 2>&1)" || { printf '%s\n' "$out" >&2; die "the README's commands fail or hang (above)"; }
grep -q '"status":"confirmed"' <<<"$out" || { printf '%s\n' "$out" >&2; die "the README's purchase did not end confirmed"; }
grep -Eq '"Subject": ?"[^"]*confirmed' <<<"$out" || { printf '%s\n' "$out" >&2; die "no confirmation mail in Mailpit after the README's purchase"; }
log "the README's quick start and purchase run as written: order confirmed, its mail in Mailpit"
