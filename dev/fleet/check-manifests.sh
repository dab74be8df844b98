#!/usr/bin/env bash
# Checks the k3s manifests (nixos/lib/manifests.nix) and the services' settings
# (nixos/lib/settings.nix) of every environment, with the real tools:
#   1. invariants (dev/fleet/manifests.py check), computed again from nix/services.nix,
#      nixos/graph.nix, nixos/workloads.nix, nixos/ports.nix and nixos/fleet.nix: one
#      Deployment, Service, ServiceAccount, ConfigMap, HPA, PDB and NetworkPolicy per service
#      and workloads.services = nix/services.nix; a default-deny NetworkPolicy (both
#      directions); per service, the policies together let in only its callers (graph.calls)
#      and, for the public service, Traefik, and let out only to its callees, the cluster DNS
#      and the hosts of what it needs (PostgreSQL, the brokers' TLS port, the mail relay);
#      Prometheus needs no rule (its scrapes come through the API server's pod proxy, tunnelled
#      to the pod's own node: --egress-selector-mode=pod in nixos/modules/k3s.nix, checked);
#      in `full` sizing HPA minReplicas >= PDB minAvailable + 1 and the numbers of workloads.nix,
#      in `single` sizing 1 pod and a PDB that never blocks a drain; containers non-root,
#      read-only root filesystem, no privilege escalation, all capabilities dropped, seccomp
#      RuntimeDefault, CPU and memory requests and limits; identity's memory limit 96 MiB
#      above its Argon2 budget; the sum of maxReplicas x (pool_size + 1) within
#      postgresConnectionBudget, itself within Patroni's max_connections; each ConfigMap =
#      settings.<env>.<service>, the pods rolled by its hash; no secret as a value (no
#      *_TOKEN/_PASSWORD/_KEY variable, only *_FILE paths under cluster.secretsDir naming files
#      the pod mounts from its Secret, exactly workloads.nix's); in-cluster URLs only to callees
#   2. the checker itself (manifests.py selftest): a good input broken in known ways (an extra
#      egress, a missing PDB, a literal secret, a wrong ConfigMap, ...) must be reported
#   3. every object against the Kubernetes 1.34 JSON schemas (k3s of NixOS 25.11), strict
#      (unknown fields refused), with kubernetes-validate (PyPI, schemas bundled, offline) in a
#      venv under $COMPTOIR_CACHE
#   4. kube-score on each environment's objects; any CRITICAL fails (the tests that do not
#      apply are disabled below, each with its reason)
#   5. each service's own `comptoir-<service> --check-config` on each environment's
#      ConfigMap, run with that environment only (env -i, plus PATH), the files its pod mounts
#      (its Secret's items, the CA ConfigMap's items) laid out under a temporary directory
#      with throwaway content of the right kind (tokens, base64 32-byte keys, an Ed25519
#      PKCS#8 key, a CA certificate and a server certificate of it from openssl) and the
#      paths moved there; and a map with a stray key, which every service must refuse
#      (deny_unknown_fields)
# Tools: kubernetes-validate 1.37.0 (pip, once) and kube-score 1.20.0 (built once from the Go
# module proxy into $COMPTOIR_CACHE/bin, about 3 minutes on 2 cores); the service binaries
# from ${CARGO_TARGET_DIR:-target}/debug, brought up to date with `cargo build --locked --bins`
# (nothing to do when the tests built them).
# Installs nix-bin, openssl and python3-venv with apt-get when missing (as root).
# Usage: dev/fleet/check-manifests.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-manifests"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

# NixOS 25.11's k3s is 1.34: the schemas and kube-score's API deprecations of that release.
KUBERNETES_VERSION=1.34.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBE_SCORE_VERSION=1.20.0
VENV="$COMPTOIR_CACHE/venv-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
KUBE_SCORE="$COMPTOIR_CACHE/bin/kube-score-$KUBE_SCORE_VERSION"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

# kube-score tests that do not apply here, each disabled for a reason:
KUBE_SCORE_IGNORED=(
  # It wants imagePullPolicy Always (re-checking pull secrets). Our images are preloaded on
  # every node by services.k3s.images and pulled from nowhere: `Never` is deliberate
  # (nixos/lib/manifests.nix), so a node without the image fails instead of pulling a
  # stranger's `comptoir/<service>` from Docker Hub.
  container-image-pull-policy
  # It wants a podAntiAffinity on the hostname. The pods are spread with a
  # topologySpreadConstraint on kubernetes.io/hostname instead (soft on purpose: a node down
  # must not stop a rollout), which kube-score's pod-topology-spread-constraints checks.
  deployment-has-host-podantiaffinity
)
# Optional tests that do apply: the seccomp profile, and the containers' ports.
KUBE_SCORE_OPTIONAL=(container-seccomp-profile container-ports-check)

WORK=""

cleanup() {
  if [[ -n "$WORK" ]]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

install_tools() {
  local -a missing=()
  command -v nix-instantiate >/dev/null || missing+=(nix-bin)
  command -v openssl >/dev/null || missing+=(openssl)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  install_missing "${missing[@]}"
  install_kubernetes_validate
  install_kube_score
}

# A venv of its own, complete once its marker is written (a half-made one is made again).
install_kubernetes_validate() {
  [[ -f "$VENV/.complete" ]] && return 0
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV (once)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || { rm -rf "$VENV"; die "pip could not install kubernetes-validate $KUBERNETES_VALIDATE_VERSION"; }
  touch "$VENV/.complete"
}

install_kube_score() {
  [[ -x "$KUBE_SCORE" ]] && return 0
  command -v go >/dev/null || die "kube-score $KUBE_SCORE_VERSION must be built and Go is missing (install Go >= 1.22)"
  log "building kube-score $KUBE_SCORE_VERSION (once; about 3 minutes on 2 cores)"
  local gobin
  gobin="$(mktemp -d)"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -X main.version=$KUBE_SCORE_VERSION" \
    "github.com/zegl/kube-score/cmd/kube-score@v$KUBE_SCORE_VERSION" \
    || { rm -rf "$gobin"; die "building kube-score failed"; }
  mkdir -p "$(dirname "$KUBE_SCORE")"
  mv "$gobin/kube-score" "$KUBE_SCORE"
  rm -rf "$gobin"
}

# The generators' outputs and the data files they read, for manifests.py.
evaluate() {
  nix_eval_json -E 'let lib = import ./nixos/lib {}; in {
      inherit (lib) manifests settings patroni;
      fleet = import ./nixos/fleet.nix;
      services = import ./nix/services.nix;
      graph = import ./nixos/graph.nix;
      ports = import ./nixos/ports.nix;
      workloads = import ./nixos/workloads.nix;
    }' >"$1" || die "nixos/lib: the manifests or the settings do not evaluate"
}

check_schemas() {
  local file="$1" env="$2" expected out passed
  expected="$(grep -c '^---$' "$file")"
  if ! out="$("$VENV/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" "$file" 2>&1)"; then
    grep -v '^INFO' <<<"$out" >&2
    die "$env: objects do not validate against the Kubernetes $KUBERNETES_VERSION schemas (strict)"
  fi
  passed="$(grep -c '^INFO .* passed for resource' <<<"$out" || true)"
  ((passed == expected)) || { printf '%s\n' "$out" >&2; die "$env: $passed of $expected objects validated"; }
  log "$env: $expected objects valid against the Kubernetes $KUBERNETES_VERSION schemas (strict)"
}

check_kube_score() {
  local file="$1" env="$2" sizing="$3" out test
  local -a flags=(--kubernetes-version "v${KUBERNETES_VERSION%.*}" --output-format ci --color never)
  for test in "${KUBE_SCORE_IGNORED[@]}"; do flags+=(--ignore-test "$test"); done
  for test in "${KUBE_SCORE_OPTIONAL[@]}"; do flags+=(--enable-optional-test "$test"); done
  # `single` sizing runs one pod of each service on purpose (nixos/workloads.nix).
  [[ "$sizing" == full ]] || flags+=(--min-replicas-hpa 1)
  out="$("$KUBE_SCORE" score "${flags[@]}" "$file" 2>&1)" || true
  if grep -q '^\[CRITICAL\]' <<<"$out"; then
    grep '^\[CRITICAL\]\|^\[WARNING\]' <<<"$out" >&2
    die "$env: kube-score reports CRITICAL findings"
  fi
  grep '^\[WARNING\]' <<<"$out" >&2 || true
  grep -q '^\[OK\]' <<<"$out" || { printf '%s\n' "$out" >&2; die "$env: kube-score scored nothing"; }
  log "$env: kube-score $KUBE_SCORE_VERSION: no CRITICAL ($(grep -c '^\[OK\]' <<<"$out") checks OK, $(grep -c '^\[WARNING\]' <<<"$out" || true) warnings)"
}

# The binaries, brought up to date: a no-op after the tests built the workspace (the whole
# workspace, as they do: building some packages only would unify features differently and
# rebuild the dependencies).
build_services() {
  if command -v cargo >/dev/null; then
    log "cargo build --locked --bins (target: $TARGET_DIR)"
    cargo build --locked --bins >"$WORK/cargo.log" 2>&1 \
      || { tail -n 30 "$WORK/cargo.log" >&2; die "cargo build failed"; }
  else
    log "no cargo: using the binaries already under $TARGET_DIR/debug"
  fi
}

# One run of a binary on one environment's map: prints its output, returns its exit code.
run_check_config() {
  local eval_json="$1" env="$2" service="$3" binary="$4" root="$5"
  shift 5
  local -a vars
  python3 dev/fleet/manifests.py pod-files "$eval_json" "$env" "$service" "$root" \
    "$WORK/pki/ca.pem" "$WORK/pki/signing.pem" "$@" || return 3
  mapfile -d '' -t vars <"$root.env" || return 3
  env -i PATH="$PATH" "${vars[@]}" "$binary" --check-config 2>&1
}

check_configs() {
  local eval_json="$1" env service binary out rc upper
  local -a failures=() envs
  mkdir -p "$WORK/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=comptoir check-manifests CA" -keyout "$WORK/pki/ca.key" -out "$WORK/pki/ca.pem" 2>/dev/null
  openssl genpkey -algorithm ed25519 -out "$WORK/pki/signing.pem" 2>/dev/null
  # A server certificate of that CA, for a service's http.tls (manifests.py pod-files).
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=comptoir check-manifests server" -CA "$WORK/pki/ca.pem" -CAkey "$WORK/pki/ca.key" \
    -keyout "$WORK/pki/server.key" -out "$WORK/pki/server.crt" 2>/dev/null
  mapfile -t envs < <(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1]))["settings"])))' "$eval_json")
  while read -r service binary; do
    [[ -x "$TARGET_DIR/debug/$binary" ]] || die "no $TARGET_DIR/debug/$binary (cargo build --locked --bins)"
    for env in "${envs[@]}"; do
      rc=0
      out="$(run_check_config "$eval_json" "$env" "$service" "$TARGET_DIR/debug/$binary" "$WORK/pods/$env/$service")" || rc=$?
      if ((rc != 0)) || [[ "$out" != *"$binary: configuration is valid"* ]]; then
        failures+=("$env/$service (exit $rc): $out")
      fi
    done
    # A stray key must stop the service: deny_unknown_fields at every level.
    rc=0
    upper="${service^^}"
    out="$(run_check_config "$eval_json" "${envs[0]}" "$service" "$TARGET_DIR/debug/$binary" \
      "$WORK/pods/stray/$service" "COMPTOIR_${upper//-/_}__STRAY_KEY=1")" || rc=$?
    if ((rc == 0)) || [[ "${out,,}" != *stray_key* ]]; then
      failures+=("${envs[0]}/$service with a stray key: exit $rc, expected a refusal naming it: $out")
    fi
  done < <(python3 -c 'import json,sys; [print(n, s["binary"]) for n, s in sorted(json.load(open(sys.argv[1]))["services"].items())]' "$eval_json")
  if ((${#failures[@]} > 0)); then
    printf '  %s\n' "${failures[@]}" >&2
    die "--check-config: ${#failures[@]} failure(s) above"
  fi
  log "--check-config: every service accepts its map in ${envs[*]} and refuses a stray key"
}

main() {
  [[ $# -eq 0 ]] || { sed -n '2,40p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  install_tools

  WORK="$(mktemp -d /tmp/comptoir-check-manifests.XXXXXX)"
  local eval_json="$WORK/eval.json"
  log "evaluating the manifests, the settings and the data they come from"
  evaluate "$eval_json"

  python3 dev/fleet/manifests.py check "$eval_json" || die "the manifests break an invariant (above)"
  python3 dev/fleet/manifests.py selftest "$eval_json" 2>"$WORK/selftest.log" \
    || { cat "$WORK/selftest.log" >&2; die "the invariant checker misses a broken input"; }
  log "self-test: every broken input is caught ($(grep -c '^self-test: caught' "$WORK/selftest.log") ways)"

  local env sizing
  python3 dev/fleet/manifests.py split "$eval_json" "$WORK/objects" >"$WORK/environments"
  while read -r env sizing; do
    check_schemas "$WORK/objects/$env.yaml" "$env"
    check_kube_score "$WORK/objects/$env.yaml" "$env" "$sizing"
  done <"$WORK/environments"

  build_services
  check_configs "$eval_json"
  log "all manifest checks passed"
}

main "$@"
