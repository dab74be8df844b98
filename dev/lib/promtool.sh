# promtool of the Prometheus release the fleet runs, for dev/fleet/check-hosts.sh (the
# configurations) and dev/check-monitoring.sh (the rules and their unit tests). Sourced after
# dev/lib/common.sh; sets PROMTOOL and defines install_promtool.
# shellcheck shell=bash

# The 3.x release current when NixOS 25.11 branched; move it with the flake.lock's nixpkgs.
PROMETHEUS_VERSION=3.7.3
PROMETHEUS_MODULE="github.com/prometheus/prometheus@v0.307.3"
PROMTOOL="$COMPTOIR_CACHE/bin/promtool-$PROMETHEUS_VERSION"

# promtool from the release's Go module, with only the Kubernetes service discovery
# registered (plugins/plugins.go, which nixpkgs regenerates the same way to choose plugins);
# the configuration loader, rule checker and test runner are the release's own.
install_promtool() {
  [[ -x "$PROMTOOL" ]] && return 0
  command -v go >/dev/null || die "promtool $PROMETHEUS_VERSION must be built and Go is missing (install Go >= 1.24)"
  log "building promtool $PROMETHEUS_VERSION with Kubernetes discovery (once; about 5 minutes on 2 cores)"
  local build src
  build="$(mktemp -d)"
  src="$(cd "$build" && go mod download -json "$PROMETHEUS_MODULE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  cp -r "$src" "$build/src"
  chmod -R u+w "$build/src"
  cat >"$build/src/plugins/plugins.go" <<'EOF'
// Written by dev/lib/promtool.sh: the service discovery the fleet's Prometheus uses.
package plugins

import (
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)
EOF
  mkdir -p "$(dirname "$PROMTOOL")"
  (cd "$build/src" && GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    -o "$PROMTOOL.partial" ./cmd/promtool) || { rm -rf "$build"; die "building promtool failed"; }
  mv "$PROMTOOL.partial" "$PROMTOOL"
  rm -rf "$build"
}
