#!/usr/bin/env bash
# Checks the monitoring as code of nixos/monitoring/, without running anything:
#   1. nixos/monitoring/rules/slo.yaml is what dev/slo_rules.py writes from
#      nixos/monitoring/slo.toml (and the generator's own tests pass);
#   2. every rule file with `promtool check rules` of the fleet's Prometheus (3.7.3, built
#      once by dev/lib/promtool.sh) and of Debian's (2.42, the one dev/up and the fleet lab
#      run), then `promtool test rules` on each *.test.yaml: every alert fires where it
#      should and stays quiet where it should, every KPI and growth rule has its value;
#   3. the Grafana dashboards of nixos/monitoring/dashboards/ linted (dev/monitoring_check.py
#      lint: the data source by uid, unique panel ids and positions, a unit and a query on
#      every panel, each query parsed by promtool), with the checker's own tests.
# Whether each panel's query returns series from a live platform is dev/check-observability.sh.
# Usage: dev/check-monitoring.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-monitoring"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."
# shellcheck source=dev/lib/promtool.sh
source "$COMPTOIR_DEV_DIR/lib/promtool.sh"

RULES=nixos/monitoring/rules

main() {
  [[ $# -eq 0 ]] || { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  install_promtool
  command -v /usr/bin/promtool >/dev/null || install_missing prometheus

  python3 dev/slo_rules.py --check || die "regenerate the SLO rules: python3 dev/slo_rules.py"
  python3 -m unittest -q dev/tests/test_slo_rules.py dev/tests/test_monitoring_check.py \
    || die "the monitoring scripts' own tests fail"

  local file count=0
  for file in "$RULES"/*.yaml; do
    [[ "$file" == *.test.yaml ]] && continue
    "$PROMTOOL" check rules "$file" >/dev/null || die "$file: promtool $PROMETHEUS_VERSION check rules fails"
    /usr/bin/promtool check rules "$file" >/dev/null || die "$file: Debian's promtool (dev/up, the lab) check rules fails"
    [[ -f "${file%.yaml}.test.yaml" ]] || die "$file has no unit tests (${file%.yaml}.test.yaml)"
    (cd "$RULES" && "$PROMTOOL" test rules "$(basename "${file%.yaml}.test.yaml")") \
      || die "${file%.yaml}.test.yaml: promtool test rules fails"
    count=$((count + 1))
  done
  log "rules: $count files checked by promtool $PROMETHEUS_VERSION and $(/usr/bin/promtool --version 2>&1 | sed -n 's/^promtool, version \([^ ]*\).*/\1/p'), their unit tests pass"

  python3 dev/monitoring_check.py lint --promtool "$PROMTOOL" nixos/monitoring/dashboards \
    || die "the dashboards do not pass the lint (above)"
}

main "$@"
