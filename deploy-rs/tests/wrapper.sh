#!/usr/bin/env bash
# Tests of the `deploy` wrapper (deploy-rs/deploy), without deploy-rs, SSH or a fleet:
#   - a stand-in deploy-rs records each call's arguments, one line per call (printf %q), and
#     fails on request;
#   - two tiny HTTP servers (Python stdlib, 127.0.0.1, random ports) stand in for the shop's
#     readiness URLs (200 or 503, as the test says) and for Prometheus's /api/v1/alerts (the
#     JSON the test writes), and log the paths they are asked for;
#   - the wrapper is pointed at them with its documented overrides (COMPTOIR_DEPLOY_RS_BIN,
#     COMPTOIR_DEPLOY_READY_URLS, COMPTOIR_DEPLOY_PROMETHEUS_URL, COMPTOIR_DEPLOY_SETTLE_SECONDS,
#     COMPTOIR_DEPLOY_ATTEMPTS, COMPTOIR_DEPLOY_INTERVAL_SECONDS) and reads the real inventory
#     (COMPTOIR_FLEET_JSON, evaluated here with nix-instantiate).
# The expected rollout order is computed from nixos/fleet.nix directly (canary, then the other
# hosts in inventory order), not through the generators under test.
# Needs: bash, jq, curl, python3, nix-instantiate. Usage: deploy-rs/tests/wrapper.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="test-deploy-wrapper"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../dev/lib/common.sh"
ROOT="$(cd "$COMPTOIR_DEV_DIR/.." && pwd)"
WRAPPER="$ROOT/deploy-rs/deploy"

for tool in jq curl python3 nix-instantiate; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

TMP="$(mktemp -d)"
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

STATE="$TMP/state"
CALLS="$TMP/calls"
mkdir -p "$STATE" "$TMP/bin"

# The stand-in deploy-rs.
cat >"$TMP/bin/deploy-rs" <<'EOF'
#!/usr/bin/env bash
# One line per call, each argument shell-quoted, so that the tests see argument boundaries.
line="$(printf '%q ' "$@")"
printf '%s\n' "${line% }" >>"$STANDIN_CALLS"
for arg in "$@"; do
  if [[ -n "${STANDIN_FAIL_ON:-}" && "$arg" == "$STANDIN_FAIL_ON" ]]; then
    echo "stand-in deploy-rs: failing on $arg as asked" >&2
    exit 7
  fi
done
EOF
chmod +x "$TMP/bin/deploy-rs"

# The stand-in endpoints: `server.py STATE ROLE` serves ROLE's paths and writes its port to
# STATE/ROLE.port. Status and bodies are read from STATE at each request.
cat >"$TMP/server.py" <<'EOF'
import http.server
import pathlib
import sys

state = pathlib.Path(sys.argv[1])
role = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(state / "requests", "a", encoding="utf-8") as log:
            log.write(f"{role} {self.path}\n")
        if role == "ready" and self.path in ("/readyz", "/v1/categories"):
            status, body = int((state / "ready.status").read_text()), b'{"status":"ready"}'
        elif role == "prometheus" and self.path == "/api/v1/alerts":
            status = int((state / "alerts.status").read_text())
            body = (state / "alerts.json").read_bytes()
        else:
            status, body = 404, b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
(state / f"{role}.port.tmp").write_text(str(server.server_address[1]))
(state / f"{role}.port.tmp").rename(state / f"{role}.port")
server.serve_forever()
EOF

start_server() {
  local role="$1" i
  python3 "$TMP/server.py" "$STATE" "$role" &
  SERVER_PIDS+=("$!")
  for ((i = 0; i < 100; i++)); do
    [[ -s "$STATE/$role.port" ]] && return 0
    sleep 0.1
  done
  die "the $role stand-in did not start"
}
start_server ready
start_server prometheus
READY_PORT="$(cat "$STATE/ready.port")"
PROM_PORT="$(cat "$STATE/prometheus.port")"

log "evaluating the inventory"
nix-instantiate --eval --strict --json -E "(import $ROOT/nixos/lib {}).deploy" >"$TMP/fleet.json" 2>/dev/null
# Expected order, straight from the inventory's data.
nix-instantiate --eval --strict --json -E "
  let f = import $ROOT/nixos/fleet.nix; in
  builtins.mapAttrs (env: e:
    [e.canary] ++ builtins.filter (n: n != e.canary) (map (h: h.name) e.hosts))
  f.environments" >"$TMP/expected.json" 2>/dev/null
ENVS=()
mapfile -t ENVS < <(jq -r 'keys[]' "$TMP/expected.json")
((${#ENVS[@]} > 0)) || die "no environment in the inventory"

alerts_json() { # alerts_json '[{...alert...}, ...]'
  jq -n --argjson alerts "$1" '{status: "success", data: {alerts: $alerts}}' >"$STATE/alerts.json"
}
alert() { # alert STATE LABELS-JSON
  jq -cn --arg state "$1" --argjson labels "$2" \
    '{labels: $labels, annotations: {}, state: $state, activeAt: "2026-01-01T00:00:00Z", value: "1e+00"}'
}

reset() {
  : >"$CALLS"
  : >"$STATE/requests"
  echo 200 >"$STATE/ready.status"
  echo 200 >"$STATE/alerts.status"
  alerts_json '[]'
  unset STANDIN_FAIL_ON
}

# Runs the wrapper with the stand-ins; its output goes to $TMP/out.
run_wrapper() {
  env \
    COMPTOIR_DEPLOY_RS_BIN="$TMP/bin/deploy-rs" \
    COMPTOIR_FLEET_JSON="$TMP/fleet.json" \
    COMPTOIR_DEPLOY_READY_URLS="http://127.0.0.1:$READY_PORT/readyz http://127.0.0.1:$READY_PORT/v1/categories" \
    COMPTOIR_DEPLOY_PROMETHEUS_URL="http://127.0.0.1:$PROM_PORT" \
    COMPTOIR_DEPLOY_SETTLE_SECONDS=0 \
    COMPTOIR_DEPLOY_ATTEMPTS=2 \
    COMPTOIR_DEPLOY_INTERVAL_SECONDS=0 \
    STANDIN_CALLS="$CALLS" \
    "$WRAPPER" "$@" >"$TMP/out" 2>&1
}

# Assertions: each ends the test (a subshell) on failure, saying why.
fail() {
  log "  FAIL: $*"
  sed 's/^/    | /' "$TMP/out" >&2 2>/dev/null || true
  exit 1
}
expect_status() { # expect_status WANT GOT
  [[ "$2" == "$1" ]] || fail "exit status $2, expected $1"
}
expect_nonzero() {
  [[ "$1" != 0 ]] || fail "exit status 0, expected a failure"
}
expect_calls() { # expect_calls LINE... : the recorded deploy-rs calls, exactly
  local want got
  want="$(printf '%s\n' "$@")"
  got="$(cat "$CALLS")"
  [[ "$got" == "$want" ]] || fail "deploy-rs calls:
$got
expected:
$want"
}
expect_no_calls() {
  [[ ! -s "$CALLS" ]] || fail "deploy-rs was called: $(cat "$CALLS")"
}
expect_output() { # expect_output TEXT: the wrapper's output contains TEXT
  grep -qF -- "$1" "$TMP/out" || fail "output lacks: $1"
}
expect_requests() { # expect_requests N: the stand-in endpoints were asked N times
  local n
  n="$(wc -l <"$STATE/requests")"
  [[ "$n" == "$1" ]] || fail "$n HTTP request(s), expected $1: $(tr '\n' ' ' <"$STATE/requests")"
}
q() { # q ARG...: the line the stand-in records for these arguments
  local line
  line="$(printf '%q ' "$@")"
  printf '%s' "${line% }"
}
targets() { # targets FLAKE ENV first|rest: the expected --targets list
  jq -r --arg e "$2" --arg f "$1" --arg which "$3" \
    '.[$e] | (if $which == "first" then .[:1] else .[1:] end) | .[] | "\($f)#\(.)"' "$TMP/expected.json"
}

# --- the tests ------------------------------------------------------------------------------

test_expansion_order() {
  local env
  for env in "${ENVS[@]}"; do
    reset
    local status=0
    run_wrapper "$env" || status=$?
    expect_status 0 "$status"
    local -a first rest
    mapfile -t first < <(targets . "$env" first)
    mapfile -t rest < <(targets . "$env" rest)
    ((${#rest[@]} > 0)) || fail "$env has one host; this test wants more"
    expect_calls "$(q --targets "${first[@]}")" "$(q --targets "${rest[@]}")"
    # Both readiness URLs, then the alerts, once each (all healthy at the first attempt).
    expect_requests 3
  done
}

test_flake_forms() {
  reset
  local status=0 env="${ENVS[0]}"
  run_wrapper ".#$env" || status=$?
  expect_status 0 "$status"
  local -a first rest
  mapfile -t first < <(targets . "$env" first)
  mapfile -t rest < <(targets . "$env" rest)
  expect_calls "$(q --targets "${first[@]}")" "$(q --targets "${rest[@]}")"

  reset
  status=0
  run_wrapper "/srv/comptoir#$env" || status=$?
  expect_status 0 "$status"
  mapfile -t first < <(targets /srv/comptoir "$env" first)
  mapfile -t rest < <(targets /srv/comptoir "$env" rest)
  expect_calls "$(q --targets "${first[@]}")" "$(q --targets "${rest[@]}")"
}

test_passthrough_args() {
  reset
  local status=0
  run_wrapper lab --skip-checks --ssh-opts "-p 2222" --rollback-succeeded false -- --option cores 2 || status=$?
  expect_status 0 "$status"
  local -a first rest
  mapfile -t first < <(targets . lab first)
  mapfile -t rest < <(targets . lab rest)
  # deploy-rs's own arguments before --targets, the nix build arguments (after --) last.
  expect_calls \
    "$(q --skip-checks --ssh-opts "-p 2222" --rollback-succeeded false --targets "${first[@]}" -- --option cores 2)" \
    "$(q --skip-checks --ssh-opts "-p 2222" --rollback-succeeded false --targets "${rest[@]}" -- --option cores 2)"
}

test_non_environment_arguments_unchanged() {
  local -a args
  local case status
  for case in ".#prod-k3s-1" "--help" "--targets .#prod-pg-1 .#prod-pg-2" "-s .#staging-pg-1" \
    "not-an-environment" ".#prod-k3s-1.system" "."; do
    reset
    read -r -a args <<<"$case"
    status=0
    run_wrapper "${args[@]}" || status=$?
    expect_status 0 "$status"
    expect_calls "$(q "${args[@]}")"
    expect_requests 0
  done
}

test_stops_on_unready_canary() {
  reset
  echo 503 >"$STATE/ready.status"
  local status=0
  run_wrapper prod || status=$?
  expect_nonzero "$status"
  expect_calls "$(q --targets "$(targets . prod first)")"
  # Retried as configured (2 attempts), no alert query after a failed readiness check.
  expect_requests 2
  expect_output "did not answer 200"
  # The operator is told what runs where and what to type.
  expect_output "nix-env --profile /nix/var/nix/profiles/system --rollback"
  expect_output "deploy@10.20.0.21"
}

test_stops_on_firing_critical_alert_for_canary() {
  reset
  alerts_json "[$(alert firing '{"alertname":"NodeDown","severity":"critical","instance":"10.20.0.21:9100"}')]"
  local status=0
  run_wrapper prod || status=$?
  expect_nonzero "$status"
  expect_calls "$(q --targets "$(targets . prod first)")"
  expect_output "NodeDown"
}

test_stops_on_service_wide_page() {
  # No host label, or a pod's address: possibly the canary's doing, so it stops the rollout.
  local labels
  for labels in '{"alertname":"CheckoutErrors","severity":"page"}' \
    '{"alertname":"ServiceNotReady","severity":"critical","instance":"10.42.3.7:9000"}'; do
    reset
    alerts_json "[$(alert firing "$labels")]"
    local status=0
    run_wrapper staging || status=$?
    expect_nonzero "$status"
    expect_calls "$(q --targets "$(targets . staging first)")"
  done
}

test_ignores_other_hosts_warnings_pending_and_other_envs() {
  reset
  alerts_json "[
    $(alert firing '{"alertname":"DiskFull","severity":"critical","instance":"10.20.0.42:9100"}'),
    $(alert firing '{"alertname":"PatroniLag","severity":"critical","host":"prod-pg-3"}'),
    $(alert firing '{"alertname":"CanaryWarn","severity":"warning","instance":"10.20.0.21:9100"}'),
    $(alert pending '{"alertname":"NodeDown","severity":"critical","instance":"10.20.0.21:9100"}'),
    $(alert firing '{"alertname":"StagingDown","severity":"critical","env":"staging"}')
  ]"
  local status=0
  run_wrapper prod || status=$?
  expect_status 0 "$status"
  local -a rest
  mapfile -t rest < <(targets . prod rest)
  expect_calls "$(q --targets "$(targets . prod first)")" "$(q --targets "${rest[@]}")"
  expect_output "pending"
}

test_fails_closed_without_prometheus() {
  reset
  echo 500 >"$STATE/alerts.status"
  local status=0
  run_wrapper lab || status=$?
  expect_nonzero "$status"
  expect_calls "$(q --targets "$(targets . lab first)")"
  expect_output "cannot read"

  reset
  echo '{"status":"error"}' >"$STATE/alerts.json"
  status=0
  run_wrapper lab || status=$?
  expect_nonzero "$status"
  expect_calls "$(q --targets "$(targets . lab first)")"
}

test_failed_canary_deploy_stops_before_gate() {
  reset
  export STANDIN_FAIL_ON
  STANDIN_FAIL_ON="$(targets . prod first)"
  local status=0
  run_wrapper prod || status=$?
  expect_nonzero "$status"
  expect_calls "$(q --targets "$(targets . prod first)")"
  expect_requests 0
}

test_failed_rest_exits_nonzero() {
  reset
  export STANDIN_FAIL_ON
  STANDIN_FAIL_ON="$(targets . staging rest | tail -1)"
  local status=0
  run_wrapper staging || status=$?
  expect_nonzero "$status"
  local -a rest
  mapfile -t rest < <(targets . staging rest)
  expect_calls "$(q --targets "$(targets . staging first)")" "$(q --targets "${rest[@]}")"
  expect_output "keeps the new system"
}

test_dry_run_prints_the_plan_only() {
  reset
  local status=0
  run_wrapper prod --dry-run --skip-checks || status=$?
  expect_status 0 "$status"
  expect_no_calls
  expect_requests 0
  local -a rest
  mapfile -t rest < <(targets . prod rest)
  expect_output "$(q "$TMP/bin/deploy-rs" --skip-checks --targets "$(targets . prod first)")"
  expect_output "$(q "$TMP/bin/deploy-rs" --skip-checks --targets "${rest[@]}")"
  expect_output "health gate on prod-agent-1"
}

test_refuses_arguments_that_bypass_the_gate() {
  local arg
  for arg in --groups --targets --hostname --boot --dry-activate; do
    reset
    local status=0
    run_wrapper prod "$arg" x || status=$?
    expect_nonzero "$status"
    expect_no_calls
  done
}

test_evaluates_the_checkout_without_fleet_json() {
  reset
  local status=0
  (cd "$ROOT" && env -u COMPTOIR_FLEET_JSON COMPTOIR_DEPLOY_RS_BIN="$TMP/bin/deploy-rs" \
    STANDIN_CALLS="$CALLS" "$WRAPPER" lab --dry-run) >"$TMP/out" 2>&1 || status=$?
  expect_status 0 "$status"
  expect_no_calls
  expect_output "--targets $(targets . lab first)"
}

test_finds_the_real_deploy_rs_not_itself() {
  reset
  mkdir -p "$TMP/path-wrapper" "$TMP/path-real"
  ln -sf "$WRAPPER" "$TMP/path-wrapper/deploy"
  ln -sf "$TMP/bin/deploy-rs" "$TMP/path-real/deploy"
  local status=0
  env -u COMPTOIR_DEPLOY_RS_BIN PATH="$TMP/path-wrapper:$TMP/path-real:$PATH" STANDIN_CALLS="$CALLS" \
    COMPTOIR_FLEET_JSON="$TMP/fleet.json" deploy .#lab-pg-1 >"$TMP/out" 2>&1 || status=$?
  expect_status 0 "$status"
  expect_calls "$(q .#lab-pg-1)"
}

# --- runner -----------------------------------------------------------------------------------

run_test_cases wrapper
