#!/usr/bin/env bash
# The Hydra project's checks (docs/delivery.md). Hydra cannot run on CI machines; what it reads
# is pure Nix, so it is evaluated here with nix-instantiate and checked as Hydra would read it
# (dev/hydra_check.py, whose own tests are dev/tests/test_hydra_check.py):
#   1. hydra/spec.json (the project's declarative spec) is what hydra/lib.nix generates, with
#      only keys Hydra accepts, of the types it expects, and the inputs hydra/jobsets.nix takes;
#      its nixpkgs branch is flake.nix's
#   2. hydra/jobsets.nix evaluated with each sample pull request list of hydra/tests/pulls/
#      (a stand-in nixpkgs writes the file): valid jobsets, exactly the expected ones, each
#      pull request pinned to its head commit; a list that is not an array fails evaluation
#   3. the flake's hydraJobs (hydra/jobs.nix through hydra/job-names.nix): a job per host, and
#      the release's constituents are exactly production's packages, checks and hosts
#   4. docs/diagrams/build-workflow.svg is hydra/diagram.nix rendered by Graphviz
# Usage: dev/check-hydra.sh [--write]   (--write regenerates hydra/spec.json and the diagram)
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-hydra"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

write=false
case "${1:-}" in
  "") ;;
  --write) write=true ;;
  *) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check_spec() {
  nix_eval_json -E '(import ./hydra/lib.nix {}).spec' | python3 -m json.tool --indent 2 >"$tmp/spec.json"
  if $write; then
    cp "$tmp/spec.json" hydra/spec.json
    log "wrote hydra/spec.json"
  fi
  python3 dev/hydra_check.py spec hydra/spec.json "$tmp/spec.json"

  local flake_nixpkgs spec_nixpkgs
  flake_nixpkgs="$(nix_eval_json -E '(import ./flake.nix).inputs.nixpkgs.url' | json_text)"
  spec_nixpkgs="$(nix_eval_json -E '(import ./hydra/project.nix).nixpkgsBranch' | json_text)"
  [[ "$flake_nixpkgs" == */"$spec_nixpkgs" ]] \
    || die "hydra/project.nix's nixpkgsBranch ($spec_nixpkgs) is not flake.nix's nixpkgs ($flake_nixpkgs)"
  log "the .jobsets evaluation imports the flake's nixpkgs branch ($spec_nixpkgs)"
}

# hydra/jobsets.nix itself, as Hydra calls it, with a stand-in nixpkgs.
eval_jobsets() {
  nix_eval_json -E "import ./hydra/jobsets.nix {
    nixpkgs = ./hydra/tests/stub-nixpkgs;
    pulls = $1;
    declInput = {};
    projectName = \"comptoir\";
  }"
}

check_jobsets() {
  local pulls name expected
  for pulls in hydra/tests/pulls/*.json; do
    name="$(basename "$pulls" .json)"
    expected="hydra/tests/pulls/$name.expected"
    if [[ ! -f "$expected" ]]; then
      # No expectation: this list must be refused with a clear message.
      if eval_jobsets "./$pulls" >"$tmp/$name.out" 2>"$tmp/$name.err"; then
        die "hydra/jobsets.nix accepted $pulls, which is not a pull request list"
      fi
      grep -q "not a JSON array" "$tmp/$name.err" \
        || { cat "$tmp/$name.err" >&2; die "hydra/jobsets.nix refused $pulls without saying why"; }
      log "$pulls: refused (not a JSON array), as it must be"
      continue
    fi
    eval_jobsets "./$pulls" | python3 -c '
import json, sys
out = json.load(sys.stdin)["jobsets"]
assert out["name"].endswith(".json"), out["name"]
sys.stdout.write(out["text"])' >"$tmp/$name.jobsets.json"
    python3 dev/hydra_check.py jobsets "$pulls" "$tmp/$name.jobsets.json" "$expected"
  done
}

check_jobs() {
  nix_eval_json -E 'import ./hydra/job-names.nix {}' >"$tmp/jobs.json"
  python3 dev/hydra_check.py jobs "$tmp/jobs.json"
}

check_diagram() {
  nix_eval_json -E 'import ./hydra/diagram.nix {}' | json_text >"$tmp/build-workflow.dot"
  check_drawing "$tmp/build-workflow.dot" docs/diagrams/build-workflow.svg "$write" "dev/check-hydra.sh --write"
  $write || log "the build-workflow diagram matches hydra/ and the flake"
}

main() {
  install_nix_and_graphviz
  python3 -m unittest -q dev/tests/test_hydra_check.py
  check_spec
  check_jobsets
  check_jobs
  check_diagram
  log "all Hydra checks passed"
}

main
