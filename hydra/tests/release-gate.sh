#!/usr/bin/env bash
# Tests of Hydra's release gate (hydra/release-gate), without Hydra, Nix or a fleet:
#   - each case writes the build events Hydra's RunCommand would ($HYDRA_JSON: build id,
#     project, jobset, job, finished, buildStatus, outputs) and the release aggregate's
#     out/release.json, in a temporary directory;
#   - a stand-in deploy command records each call (start and end time, its arguments), and
#     fails (STANDIN_FAIL=STATUS) or sleeps (STANDIN_SLEEP=SECONDS) on request;
#   - the gate runs with its documented settings pointing there (COMPTOIR_RELEASE_DEPLOY,
#     COMPTOIR_RELEASE_STATE_DIR, COMPTOIR_RELEASE_TEXTFILE_DIR, ...), and each case checks what
#     the stand-in recorded, deploys.jsonl and the metrics; `promtool check metrics` reads the
#     textfile when promtool is installed.
# Needs: bash, jq, flock (util-linux; both installed with apt-get when missing, as root).
# Usage: hydra/tests/release-gate.sh          ONLY="test_a test_b" runs those cases alone
set -euo pipefail

COMPTOIR_SCRIPT_NAME="test-release-gate"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../dev/lib/common.sh"
ROOT="$(cd "$COMPTOIR_DEV_DIR/.." && pwd)"
GATE="$ROOT/hydra/release-gate"

missing=()
command -v jq >/dev/null || missing+=(jq)
command -v flock >/dev/null || missing+=(util-linux)
install_missing "${missing[@]}"

# promtool on PATH (the CI's), else the one dev/fleet/check-hosts.sh builds; none: not checked.
PROMTOOL="$(command -v promtool || true)"
if [[ -z "$PROMTOOL" ]]; then
  for candidate in "$COMPTOIR_CACHE"/bin/promtool-*; do
    [[ -x "$candidate" ]] && PROMTOOL="$candidate"
  done
fi
[[ -n "$PROMTOOL" ]] || log "promtool not found: the metrics file is checked by these tests only"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/bin"

# The stand-in deploy command: one line per call, "START END ARGS" (times with nanoseconds,
# arguments shell-quoted), written when it ends; STANDIN_STARTED names a file it creates as it
# starts, so that a test knows it runs.
cat >"$TMP/bin/deploy" <<'EOF'
#!/usr/bin/env bash
start="$(date +%s.%N)"
[[ -z "${STANDIN_STARTED:-}" ]] || : >"$STANDIN_STARTED"
sleep "${STANDIN_SLEEP:-0}"
line="$(printf '%q ' "$@")"
printf '%s %s %s\n' "$start" "$(date +%s.%N)" "${line% }" >>"$STANDIN_CALLS"
# The inventory the gate handed over, when it did (a deploy from the flake URL).
[[ -z "${COMPTOIR_FLEET_JSON:-}" ]] || cp "$COMPTOIR_FLEET_JSON" "$STANDIN_CALLS.fleet"
if [[ -n "${STANDIN_FAIL:-}" ]]; then
  echo "stand-in deploy: failing with status $STANDIN_FAIL as asked" >&2
  exit "$STANDIN_FAIL"
fi
EOF
chmod +x "$TMP/bin/deploy"

# Per case: a fresh state directory, textfile directory and call log.
reset() {
  CASE="$(mktemp -d "$TMP/case.XXXX")"
  STATE="$CASE/state"
  TEXT="$CASE/text"
  CALLS="$CASE/calls"
  : >"$CALLS"
  unset STANDIN_FAIL STANDIN_SLEEP STANDIN_STARTED
}

rev_of() { printf '%s' "build-$1" | sha1sum | cut -c1-40; }
flake_of() { printf 'git+https://forge.example.org/comptoir/comptoir.git?rev=%s' "$(rev_of "$1")"; }

# build ID [JQ-FILTER]: writes $CASE/ID/hydra.json, a finished successful comptoir:main:release
# build unless the filter changes it, and its out/release.json, whose source directory exists.
# Prints the event's path.
build() {
  local id="$1" filter="${2:-.}" dir="$CASE/$1" rev
  mkdir -p "$dir/out" "$dir/source"
  rev="$(rev_of "$id")"
  printf '{"rev": "%s", "source": "%s", "flake": "%s"}\n' "$rev" "$dir/source" \
    "git+https://forge.example.org/comptoir/comptoir.git?rev=$rev" >"$dir/out/release.json"
  cat >"$dir/hydra.json" <<EOF
{"event": "buildFinished", "build": $id, "finished": true, "timestamp": 1767225600,
 "project": "comptoir", "jobset": "main", "job": "release",
 "drvPath": "/nix/store/00000000000000000000000000000000-release.drv",
 "startTime": 1767225600, "stopTime": 1767225660, "buildStatus": 0,
 "nixName": "release", "system": "x86_64-linux", "homepage": null, "description": null,
 "license": null, "outputs": [{"name": "out", "path": "$dir/out"}], "products": [], "metrics": []}
EOF
  if [[ "$filter" != . ]]; then
    jq "$filter" "$dir/hydra.json" >"$dir/hydra.json.new" && mv "$dir/hydra.json.new" "$dir/hydra.json"
  fi
  printf '%s\n' "$dir/hydra.json"
}

# gate EVENT [VAR=VALUE...]: runs the gate on EVENT (none when empty: HYDRA_JSON unset); its
# output goes to $CASE/out (appended), its exit status to $STATUS.
gate() {
  local -a event=(HYDRA_JSON="$1")
  [[ -n "$1" ]] || event=(-u HYDRA_JSON)
  shift
  STATUS=0
  env "${event[@]}" \
    COMPTOIR_RELEASE_DEPLOY="$TMP/bin/deploy" \
    COMPTOIR_RELEASE_STATE_DIR="$STATE" \
    COMPTOIR_RELEASE_TEXTFILE_DIR="$TEXT" \
    STANDIN_CALLS="$CALLS" \
    "$@" "$GATE" >>"$CASE/out" 2>&1 || STATUS=$?
}

# Assertions: each ends the case (a subshell) on failure, saying why.
fail() {
  log "  FAIL: $*"
  sed 's/^/    | /' "$CASE/out" >&2 2>/dev/null || true
  exit 1
}
expect_status() { # expect_status WANT
  [[ "$STATUS" == "$1" ]] || fail "exit status $STATUS, expected $1"
}
expect_calls() { # expect_calls ARGS...: the stand-in's calls (arguments only), one per line, exactly
  local want got
  want="$(printf '%s\n' "$@")"
  got="$(cut -d' ' -f3- "$CALLS")"
  [[ "$got" == "$want" ]] || fail "deploy calls:
$got
expected:
$want"
}
expect_no_calls() {
  [[ ! -s "$CALLS" ]] || fail "the deploy command was called: $(cat "$CALLS")"
}
expect_output() { # expect_output TEXT: the gate's output contains TEXT
  grep -qF -- "$1" "$CASE/out" || fail "output lacks: $1"
}
metric() { # metric SERIES: its value in the textfile, or "absent"
  awk -v s="$1" '$1 == s { v = $2 } END { print (v == "" ? "absent" : v) }' "$TEXT/comptoir_release.prom" 2>/dev/null \
    || echo absent
}
expect_metric() { # expect_metric SERIES VALUE
  local got
  got="$(metric "$1")"
  [[ "$got" == "$2" ]] || fail "$1 is $got, expected $2"
}
# The textfile as Prometheus reads it: promtool's lint, no temporary file left beside it.
expect_valid_textfile() {
  [[ -s "$TEXT/comptoir_release.prom" ]] || fail "no $TEXT/comptoir_release.prom"
  local leftovers
  leftovers="$(find "$TEXT" -mindepth 1 ! -name comptoir_release.prom)"
  [[ -z "$leftovers" ]] || fail "files left in the textfile directory: $leftovers"
  if [[ -n "$PROMTOOL" ]]; then
    "$PROMTOOL" check metrics <"$TEXT/comptoir_release.prom" >"$CASE/promtool.out" 2>&1 \
      || fail "promtool check metrics: $(cat "$CASE/promtool.out")"
  fi
}
expect_deploys() { # expect_deploys JQ-ARRAY: deploys.jsonl, fields build, result, exit_code, env, target
  local got
  got="$(jq -cs 'map({build, result, exit_code, env, target})' "$STATE/deploys.jsonl" 2>/dev/null || echo '[]')"
  [[ "$(jq -c . <<<"$1")" == "$got" ]] || fail "deploys.jsonl: $got, expected $(jq -c . <<<"$1")"
}
deployed() { # deployed SERIES-LABEL: the metric name with the default environment's label
  printf '%s{target_env="prod"%s}' "$1" "${2:+,$2}"
}

# --- the cases --------------------------------------------------------------------------------

test_green_release_deploys_its_source() {
  reset
  gate "$(build 10)"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/10/source#prod")"
  expect_deploys "[{\"build\":10,\"result\":\"success\",\"exit_code\":0,\"env\":\"prod\",\"target\":\"$CASE/10/source#prod\"}]"
  jq -e --arg rev "$(rev_of 10)" 'select(.rev == $rev and .finished >= .started and .started > 0)' \
    "$STATE/deploys.jsonl" >/dev/null || fail "deploys.jsonl lacks the rev or the times: $(cat "$STATE/deploys.jsonl")"
  expect_metric "$(deployed comptoir_release_deploys_total 'result="success"')" 1
  expect_metric "$(deployed comptoir_release_deploys_total 'result="failure"')" 0
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 10
  expect_metric "$(deployed comptoir_release_last_deploy_failed)" 0
  expect_metric comptoir_release_last_build 10
  expect_metric comptoir_release_last_build_failed 0
  [[ "$(metric "$(deployed comptoir_release_last_deploy_timestamp_seconds 'result="success"')")" =~ ^[0-9]+$ ]] \
    || fail "no timestamp of the last successful deploy"
  expect_valid_textfile
}

test_failed_release_build_deploys_nothing_and_turns_red() {
  reset
  gate "$(build 10 '.buildStatus = 1')"
  expect_status 0
  expect_no_calls
  expect_output "skipped (build_failed)"
  [[ ! -e "$STATE/deploys.jsonl" ]] || fail "a deploy was recorded"
  expect_metric 'comptoir_release_skipped_total{reason="build_failed"}' 1
  expect_metric comptoir_release_last_build 10
  expect_metric comptoir_release_last_build_failed 1
  expect_metric "$(deployed comptoir_release_deploys_total 'result="success"')" 0
  expect_valid_textfile
  # An unfinished build (buildStatus null) is no release either.
  gate "$(build 11 '.finished = false | .buildStatus = null')"
  expect_status 0
  expect_no_calls
  expect_metric 'comptoir_release_skipped_total{reason="unfinished"}' 1
  # A green build clears the red gate.
  gate "$(build 12)"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/12/source#prod")"
  expect_metric comptoir_release_last_build_failed 0
  # A failed build older than the newest one leaves the gate as it is.
  gate "$(build 9 '.buildStatus = 2')"
  expect_metric comptoir_release_last_build_failed 0
  expect_metric comptoir_release_last_build 12
  expect_valid_textfile
}

test_other_jobsets_are_skipped() {
  reset
  gate "$(build 10 '.jobset = "staging"')"
  expect_status 0
  gate "$(build 11 '.jobset = "pr-42"')"
  expect_status 0
  expect_no_calls
  expect_output "comptoir:pr-42:release is not the release job comptoir:main:release"
  # Counters add up across runs.
  expect_metric 'comptoir_release_skipped_total{reason="other_job"}' 2
  expect_metric comptoir_release_last_build 0
  expect_valid_textfile
}

test_other_jobs_and_projects_are_skipped() {
  reset
  gate "$(build 10 '.job = "packages.x86_64-linux.catalog"')"
  expect_status 0
  gate "$(build 11 '.project = "nixpkgs"')"
  expect_status 0
  gate "$(build 12 '.job = "release" | .event = "buildStarted"')"
  expect_status 0
  expect_no_calls
  expect_metric 'comptoir_release_skipped_total{reason="other_job"}' 2
  expect_metric 'comptoir_release_skipped_total{reason="other_event"}' 1
  expect_valid_textfile
}

test_settings_choose_the_job_and_the_environment() {
  reset
  gate "$(build 10 '.project = "shop" | .jobset = "stable" | .job = "ship"')" \
    COMPTOIR_RELEASE_PROJECT=shop COMPTOIR_RELEASE_JOBSET=stable COMPTOIR_RELEASE_JOB=ship \
    COMPTOIR_RELEASE_ENV=staging
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/10/source#staging")"
  expect_metric 'comptoir_release_last_deployed_build{target_env="staging"}' 10
  expect_valid_textfile
  # The default job is no release under these settings.
  gate "$(build 11)" COMPTOIR_RELEASE_PROJECT=shop COMPTOIR_RELEASE_JOBSET=stable COMPTOIR_RELEASE_JOB=ship \
    COMPTOIR_RELEASE_ENV=staging
  expect_calls "$(printf '%q' "$CASE/10/source#staging")"
  # An environment name the deploy wrapper would not read as one is refused.
  gate "$(build 12)" COMPTOIR_RELEASE_ENV='prod#x'
  expect_status 2
  expect_calls "$(printf '%q' "$CASE/10/source#staging")"
}

test_older_build_after_newer_is_skipped() {
  reset
  gate "$(build 11)"
  expect_status 0
  gate "$(build 10)"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/11/source#prod")"
  expect_output "skipped (already_deployed)"
  expect_metric 'comptoir_release_skipped_total{reason="already_deployed"}' 1
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 11
  expect_valid_textfile
}

test_same_build_twice_deploys_once() {
  reset
  local event
  event="$(build 12)"
  gate "$event"
  expect_status 0
  gate "$event"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/12/source#prod")"
  expect_metric "$(deployed comptoir_release_deploys_total 'result="success"')" 1
  expect_metric 'comptoir_release_skipped_total{reason="already_deployed"}' 1
}

# The recorded deploy intervals, in start order, never overlap.
expect_no_overlap() {
  sort -n "$CALLS" | awk '
    NR > 1 && $1 < end { printf "deploy started at %s before the previous one ended at %s\n", $1, end; bad = 1 }
    { end = $2 }
    END { exit bad }' >"$CASE/overlap" || fail "$(cat "$CASE/overlap")"
}

test_concurrent_gates_never_overlap() {
  reset
  export STANDIN_SLEEP=1
  local ten eleven pid10 pid11 status10=0 status11=0
  ten="$(build 10)"
  eleven="$(build 11)"
  # Two gates at once: whichever takes the lock first deploys; the other waits.
  (gate "$ten" && exit "$STATUS") &
  pid10=$!
  (gate "$eleven" && exit "$STATUS") &
  pid11=$!
  wait "$pid10" || status10=$?
  wait "$pid11" || status11=$?
  STATUS="$status10"
  expect_status 0
  STATUS="$status11"
  expect_status 0
  expect_no_overlap
  local first
  first="$(sort -n "$CALLS" | head -1 | cut -d' ' -f3-)"
  if [[ "$first" == "$(printf '%q' "$CASE/11/source#prod")" ]]; then
    # 11 first: 10 is older than what is deployed once it holds the lock.
    expect_calls "$(printf '%q' "$CASE/11/source#prod")"
    expect_metric 'comptoir_release_skipped_total{reason="already_deployed"}' 1
  else
    expect_calls "$(printf '%q' "$CASE/10/source#prod")" "$(printf '%q' "$CASE/11/source#prod")"
  fi
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 11
  expect_valid_textfile
}

# start_holding EVENT: a gate whose deploy is running (the stand-in has started) when it returns.
start_holding() {
  rm -f "$CASE/started"
  (STANDIN_STARTED="$CASE/started" gate "$1" && exit "$STATUS") &
  HOLDER=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -e "$CASE/started" ]] && return 0
    sleep 0.05
  done
  fail "the first gate's deploy did not start"
}

test_newer_deploying_then_older_waits_and_is_skipped() {
  reset
  export STANDIN_SLEEP=0.5
  start_holding "$(build 11)"
  gate "$(build 10)"
  expect_status 0
  wait "$HOLDER" || fail "the gate of build 11 failed"
  expect_calls "$(printf '%q' "$CASE/11/source#prod")"
  expect_output "waiting up to 3600s"
  expect_output "skipped (already_deployed)"
}

test_older_deploying_then_newer_waits_and_deploys() {
  reset
  export STANDIN_SLEEP=0.5
  start_holding "$(build 10)"
  gate "$(build 11)"
  expect_status 0
  wait "$HOLDER" || fail "the gate of build 10 failed"
  expect_no_overlap
  expect_calls "$(printf '%q' "$CASE/10/source#prod")" "$(printf '%q' "$CASE/11/source#prod")"
}

test_lock_timeout_deploys_nothing() {
  reset
  export STANDIN_SLEEP=0.6
  start_holding "$(build 10)"
  gate "$(build 11)" COMPTOIR_RELEASE_LOCK_TIMEOUT=0.2
  expect_status 1
  expect_output "the deploy lock did not come in 0.2s"
  wait "$HOLDER" || fail "the gate of build 10 failed"
  expect_calls "$(printf '%q' "$CASE/10/source#prod")"
  expect_metric 'comptoir_release_errors_total{reason="lock_timeout"}' 1
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 10
}

test_failing_deploy_is_recorded_and_retried() {
  reset
  gate "$(build 10)"
  export STANDIN_FAIL=3
  gate "$(build 11)"
  expect_status 1
  expect_output "FAILED (exit status 3)"
  expect_deploys "[
    {\"build\":10,\"result\":\"success\",\"exit_code\":0,\"env\":\"prod\",\"target\":\"$CASE/10/source#prod\"},
    {\"build\":11,\"result\":\"failure\",\"exit_code\":3,\"env\":\"prod\",\"target\":\"$CASE/11/source#prod\"}]"
  expect_metric "$(deployed comptoir_release_deploys_total 'result="failure"')" 1
  expect_metric "$(deployed comptoir_release_last_deploy_failed)" 1
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 10
  [[ "$(metric "$(deployed comptoir_release_last_deploy_timestamp_seconds 'result="failure"')")" =~ ^[0-9]+$ ]] \
    || fail "no timestamp of the last failed deploy"
  # The release build itself was green: the gate is not red, the deploy is what failed.
  expect_metric comptoir_release_last_build_failed 0
  expect_valid_textfile
  # The same build again (Hydra's restart keeps its id) deploys: the failure did not advance.
  unset STANDIN_FAIL
  gate "$CASE/11/hydra.json"
  expect_status 0
  # And the next build deploys too.
  gate "$(build 12)"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/10/source#prod")" "$(printf '%q' "$CASE/11/source#prod")" \
    "$(printf '%q' "$CASE/11/source#prod")" "$(printf '%q' "$CASE/12/source#prod")"
  expect_metric "$(deployed comptoir_release_deploys_total 'result="success"')" 3
  expect_metric "$(deployed comptoir_release_last_deploy_failed)" 0
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 12
  expect_valid_textfile
}

test_missing_deploy_command_is_a_failed_deploy() {
  reset
  gate "$(build 10)" COMPTOIR_RELEASE_DEPLOY="$TMP/bin/no-such-deploy"
  expect_status 1
  expect_deploys "[{\"build\":10,\"result\":\"failure\",\"exit_code\":127,\"env\":\"prod\",\"target\":\"$CASE/10/source#prod\"}]"
  expect_metric "$(deployed comptoir_release_last_deploy_failed)" 1
}

test_missing_source_uses_the_flake() {
  reset
  local event
  event="$(build 10)"
  rmdir "$CASE/10/source"
  gate "$event"
  expect_status 0
  expect_calls "$(printf '%q' "$(flake_of 10)#prod")"
  expect_output "is not on this host"
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 10
}

# The ci host's queue: Hydra's hook only queues, the gate's service drains.
queue_gate() { # queue_gate --enqueue|--drain [EVENT]: like gate, with the mode and $CASE/queue
  local mode="$1" event="${2:-}"
  mkdir -p "$CASE/queue"
  local -a env_event=(HYDRA_JSON="$event")
  [[ -n "$event" ]] || env_event=(-u HYDRA_JSON)
  STATUS=0
  env "${env_event[@]}" \
    COMPTOIR_RELEASE_DEPLOY="$TMP/bin/deploy" \
    COMPTOIR_RELEASE_STATE_DIR="$STATE" \
    COMPTOIR_RELEASE_TEXTFILE_DIR="$TEXT" \
    STANDIN_CALLS="$CALLS" \
    "$GATE" "$mode" "$CASE/queue" >>"$CASE/out" 2>&1 || STATUS=$?
}
expect_queue() { # expect_queue FILE...: the queue holds exactly these files (none: empty)
  local got want
  got="$(find "$CASE/queue" -mindepth 1 -printf '%f\n' | sort)"
  want="$(printf '%s\n' "$@" | sed '/^$/d' | sort)"
  [[ "$got" == "$want" ]] || fail "queue: [$got], expected [$want]"
}

test_queued_events_deploy_in_build_order_when_drained() {
  reset
  queue_gate --enqueue "$(build 11)"
  expect_status 0
  queue_gate --enqueue "$(build 10)"
  expect_status 0
  expect_queue 10.json 11.json
  expect_no_calls
  queue_gate --drain
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/10/source#prod")" "$(printf '%q' "$CASE/11/source#prod")"
  expect_queue
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 11
}

test_drain_reports_a_failed_deploy_and_empties_the_queue() {
  reset
  queue_gate --enqueue "$(build 10)"
  queue_gate --enqueue "$(build 12 '.jobset = "staging"')"
  STANDIN_FAIL=3 queue_gate --drain
  expect_status 1
  expect_queue
  expect_deploys "[{\"build\":10,\"result\":\"failure\",\"exit_code\":3,\"env\":\"prod\",\"target\":\"$CASE/10/source#prod\"}]"
  expect_metric 'comptoir_release_skipped_total{reason="other_job"}' 1
  # The same build restarted in Hydra and queued again deploys.
  queue_gate --enqueue "$CASE/10/hydra.json"
  queue_gate --drain
  expect_status 0
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 10
}

test_enqueue_refuses_what_it_cannot_queue() {
  reset
  queue_gate --enqueue ""
  expect_status 2
  expect_output "HYDRA_JSON= is not a readable file"
  queue_gate --enqueue "$(build 10 'del(.build)')"
  expect_status 2
  expect_output "has no build id"
  expect_queue
  STATUS=0
  HYDRA_JSON="$(build 11)" "$GATE" --enqueue "$CASE/no-such-queue" >>"$CASE/out" 2>&1 || STATUS=$?
  expect_status 2
  expect_output "is not a writable directory"
  expect_no_calls
}

test_flake_deploy_gets_the_inventory_from_the_release() {
  reset
  local event
  event="$(build 10)"
  rmdir "$CASE/10/source"
  jq '.fleet = {"nodes": {"prod-k3s-1": {"hostname": "10.20.0.11"}}}' "$CASE/10/out/release.json" >"$CASE/r.json"
  mv "$CASE/r.json" "$CASE/10/out/release.json"
  gate "$event"
  expect_status 0
  expect_calls "$(printf '%q' "$(flake_of 10)#prod")"
  [[ "$(jq -c . "$CALLS.fleet" 2>/dev/null)" == '{"nodes":{"prod-k3s-1":{"hostname":"10.20.0.11"}}}' ]] \
    || fail "the deploy did not get release.json's fleet as COMPTOIR_FLEET_JSON"
  [[ -z "$(find "$STATE" -name 'fleet-*')" ]] || fail "the inventory file was left in the state directory"
  # Not an object: refused before any deploy.
  reset
  event="$(build 11)"
  jq '.fleet = "prod"' "$CASE/11/out/release.json" >"$CASE/r.json"
  mv "$CASE/r.json" "$CASE/11/out/release.json"
  gate "$event"
  expect_status 2
  expect_output "fleet is not the inventory's deploy data"
  expect_no_calls
}

test_malformed_events_are_refused() {
  reset
  local event
  event="$(build 10)"
  local -a cases=(
    'not json at all {'
    '[1, 2]'
    "$(jq -c 'del(.build)' "$event")"
    "$(jq -c '.build = "ten"' "$event")"
    "$(jq -c '.build = -1' "$event")"
    "$(jq -c 'del(.project)' "$event")"
    "$(jq -c '.jobset = 7' "$event")"
    "$(jq -c 'del(.finished)' "$event")"
    "$(jq -c '.finished = "yes"' "$event")"
    "$(jq -c '.buildStatus = "ok"' "$event")"
    "$(jq -c 'del(.outputs)' "$event")"
  )
  local i body
  for i in "${!cases[@]}"; do
    body="${cases[$i]}"
    printf '%s\n' "$body" >"$CASE/bad-$i.json"
    gate "$CASE/bad-$i.json"
    [[ "$STATUS" == 2 ]] || fail "exit status $STATUS, expected 2, for: $body"
  done
  gate "$CASE/no-such-file.json"
  expect_status 2
  expect_output "is not a readable file"
  # HYDRA_JSON unset.
  gate ""
  expect_status 2
  expect_output "HYDRA_JSON is not set"
  expect_output 'no "build" field'
  expect_output 'parse error'
  expect_no_calls
  expect_metric 'comptoir_release_errors_total{reason="invalid_event"}' $((${#cases[@]} + 2))
  expect_valid_textfile
  # Hydra's numbers as strings (DBI column values) are read as numbers.
  gate "$(build 11 '.build = "11" | .buildStatus = "0"')"
  expect_status 0
  expect_calls "$(printf '%q' "$CASE/11/source#prod")"
}

test_missing_release_json_is_refused() {
  reset
  local event
  event="$(build 10)"
  rm "$CASE/10/out/release.json"
  gate "$event"
  expect_status 2
  expect_output "release.json is missing"
  gate "$(build 11 '.outputs = [{name: "doc", path: "/nix/store/x-doc"}]')"
  expect_status 2
  expect_output "no \`out\` output"
  expect_no_calls
  expect_metric 'comptoir_release_errors_total{reason="invalid_release"}' 2
  expect_metric comptoir_release_last_build_failed 1
  expect_metric "$(deployed comptoir_release_last_deployed_build)" 0
  expect_valid_textfile
}

test_bad_release_json_is_refused() {
  reset
  local event id=10 release
  for release in \
    '{"rev": "abc", "source": "/nix/store/x-source", "flake": "git+https://f/c.git?rev=abc"}' \
    "{\"rev\": \"$(rev_of 1 | tr a-f A-F)\", \"source\": \"/x\", \"flake\": \"git+https://f/c.git?rev=$(rev_of 1 | tr a-f A-F)\"}" \
    "{\"source\": \"/x\", \"flake\": \"git+https://f/c.git\"}" \
    "{\"rev\": \"$(rev_of 1)\", \"source\": \"/x\", \"flake\": \"git+https://f/c.git?ref=main\"}" \
    "{\"rev\": \"$(rev_of 1)\", \"source\": \"relative\", \"flake\": \"git+https://f/c.git?rev=$(rev_of 1)\"}" \
    "{\"rev\": \"$(rev_of 1)\", \"source\": \"/x\", \"flake\": \"git+https://f/c.git?rev=$(rev_of 1)#prod\"}" \
    'not json'; do
    event="$(build "$id")"
    printf '%s\n' "$release" >"$CASE/$id/out/release.json"
    gate "$event"
    [[ "$STATUS" == 2 ]] || fail "exit status $STATUS, expected 2, for release.json: $release"
    id=$((id + 1))
  done
  expect_output 'rev "abc" is not a 40-hex commit'
  expect_output "does not name rev"
  expect_no_calls
  expect_metric 'comptoir_release_errors_total{reason="invalid_release"}' 7
  expect_metric comptoir_release_last_build_failed 1
}

# --- runner -----------------------------------------------------------------------------------

run_test_cases release-gate
