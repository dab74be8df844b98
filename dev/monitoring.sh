#!/usr/bin/env bash
# The local platform's observability, started by dev/up (stopped by dev/down with the rest):
#   Jaeger           query API http://127.0.0.1:16686 (/api/services, /api/traces), OTLP/HTTP
#                    in on :4318 (gRPC :4317) — the services export their spans there;
#   Prometheus       http://127.0.0.1:9090, scraping every service, the Pulsar broker, the
#                    PostgreSQL and node exporters, itself and Alertmanager every 5 s, with the
#                    rule files every environment loads (nixos/monitoring/rules/);
#   Alertmanager     http://127.0.0.1:9093, mailing the operators' alerts to dev/up's Mailpit
#                    (read them at http://127.0.0.1:8025), routed as every environment's are
#                    (nixos/lib/alertmanager.nix: Watchdog to a heartbeat receiver, never mailed);
#   node exporter :9100, PostgreSQL exporter :9187 (a `comptoir_monitor` role with pg_monitor).
# Prometheus, Alertmanager and the exporters are Debian's packages (dev/bootstrap.sh), Jaeger is
# built from the Go module proxy when missing (`dev/bootstrap.sh jaeger`). Everything listens
# on loopback only.
#
# Usage: dev/monitoring.sh start-jaeger|start|urls
#   start-jaeger  Jaeger alone (dev/up starts it before the services, so no span is lost)
#   start         the rest (dev/up, once the services' ports are known); restarts Prometheus
#                 so that it reads the current rules
#   urls          print where to look
# Environment: the services' COMPTOIR_<SERVICE>_PORT of dev/up, COMPTOIR_PULSAR_HTTP_PORT,
# COMPTOIR_PG_PORT, COMPTOIR_SMTP_PORT (Mailpit's, 1025), and COMPTOIR_PROMETHEUS_PORT (9090),
# COMPTOIR_ALERTMANAGER_PORT (9093),
# COMPTOIR_NODE_EXPORTER_PORT (9100), COMPTOIR_PG_EXPORTER_PORT (9187), COMPTOIR_JAEGER_PORT
# (16686), COMPTOIR_JAEGER_METRICS_PORT (8888, Jaeger's own metrics), COMPTOIR_OTLP_PORT (4318).
set -euo pipefail

COMPTOIR_SCRIPT_NAME="monitoring.sh"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

RUN_DIR="$COMPTOIR_CACHE/run"
DIR="$COMPTOIR_CACHE/monitoring"
SECRETS="$COMPTOIR_CACHE/secrets"
PROMETHEUS_PORT="${COMPTOIR_PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${COMPTOIR_ALERTMANAGER_PORT:-9093}"
SMTP_PORT="${COMPTOIR_SMTP_PORT:-1025}"
NODE_EXPORTER_PORT="${COMPTOIR_NODE_EXPORTER_PORT:-9100}"
PG_EXPORTER_PORT="${COMPTOIR_PG_EXPORTER_PORT:-9187}"
export COMPTOIR_JAEGER_PORT="${COMPTOIR_JAEGER_PORT:-16686}"
export COMPTOIR_JAEGER_GRPC_PORT="${COMPTOIR_JAEGER_GRPC_PORT:-16685}"
export COMPTOIR_JAEGER_HEALTH_PORT="${COMPTOIR_JAEGER_HEALTH_PORT:-13133}"
export COMPTOIR_JAEGER_METRICS_PORT="${COMPTOIR_JAEGER_METRICS_PORT:-8888}"
export COMPTOIR_OTLP_PORT="${COMPTOIR_OTLP_PORT:-4318}"
export COMPTOIR_OTLP_GRPC_PORT="${COMPTOIR_OTLP_GRPC_PORT:-4317}"
PG_PORT="${COMPTOIR_PG_PORT:-55432}"
PULSAR_HTTP_PORT="${COMPTOIR_PULSAR_HTTP_PORT:-8080}"
# The services and their ports, as dev/up starts them.
SERVICE_PORTS=(
  "gateway=${COMPTOIR_GATEWAY_PORT:-8000}"
  "catalog=${COMPTOIR_CATALOG_PORT:-8081}"
  "identity=${COMPTOIR_IDENTITY_PORT:-8082}"
  "orders=${COMPTOIR_ORDERS_PORT:-8083}"
  "inventory=${COMPTOIR_INVENTORY_PORT:-8084}"
  "payments=${COMPTOIR_PAYMENTS_PORT:-8085}"
  "notifications=${COMPTOIR_NOTIFICATIONS_PORT:-8086}"
  "analytics=${COMPTOIR_ANALYTICS_PORT:-8087}"
)

# bin DEBIAN_NAME UPSTREAM_NAME: the path of a tool, under Debian's name or the upstream one
# (nixpkgs, `nix develop`).
bin() {
  command -v "$1" 2>/dev/null || command -v "$2" 2>/dev/null || die "$1 not found: run dev/bootstrap.sh"
}

running() { [[ -f "$RUN_DIR/$1.pid" ]] && kill -0 "$(<"$RUN_DIR/$1.pid")" 2>/dev/null; }

stop_one() {
  running "$1" || return 0
  local pid
  pid="$(<"$RUN_DIR/$1.pid")"
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$RUN_DIR/$1.pid"
}

# launch NAME PORT READY_URL COMMAND...: starts NAME unless it runs, waits for READY_URL.
launch() {
  local name="$1" port="$2" ready="$3"
  shift 3
  if running "$name"; then
    log "$name already running"
    return 0
  fi
  port_in_use "$port" && die "port $port is taken (for $name); see the environment in dev/monitoring.sh"
  log "starting $name on :$port (log: $RUN_DIR/$name.log)"
  setsid nohup "$@" </dev/null >>"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$ready" && return 0
    running "$name" || { tail -n 20 "$RUN_DIR/$name.log" >&2; die "$name exited"; }
    sleep 0.2
  done
  tail -n 20 "$RUN_DIR/$name.log" >&2
  die "$name did not become ready on :$port"
}

start_jaeger() {
  mkdir -p "$RUN_DIR"
  local jaeger="$COMPTOIR_CACHE/bin/jaeger"
  if [[ ! -x "$jaeger" ]] && ! jaeger="$(command -v jaeger)"; then
    dev/bootstrap.sh jaeger
    jaeger="$COMPTOIR_CACHE/bin/jaeger"
  fi
  launch jaeger "$COMPTOIR_JAEGER_PORT" "http://127.0.0.1:$COMPTOIR_JAEGER_HEALTH_PORT/status" \
    "$jaeger" --config "$PWD/dev/monitoring/jaeger.yaml"
}

# The scrape configuration: the same rule files as every environment, local targets.
write_prometheus_config() {
  local entry name port rules file
  rules="$PWD/nixos/monitoring/rules"
  {
    cat <<YAML
# Written by dev/monitoring.sh; production's is generated by nixos/lib/prometheus.nix.
global:
  scrape_interval: 5s
  scrape_timeout: 4s
  evaluation_interval: 5s
  external_labels:
    env: dev
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$ALERTMANAGER_PORT"]
rule_files:
YAML
    for file in "$rules"/*.yaml; do
      [[ "$file" == *.test.yaml ]] || printf '  - %s\n' "$file"
    done
    cat <<YAML
scrape_configs:
  - job_name: comptoir-services
    static_configs:
YAML
    for entry in "${SERVICE_PORTS[@]}"; do
      name="${entry%%=*}" port="${entry#*=}"
      printf '      - targets: ["127.0.0.1:%s"]\n        labels: {service: %s, host: dev}\n' "$port" "$name"
    done
    cat <<YAML
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:$NODE_EXPORTER_PORT"]
        labels: {host: dev, role: dev}
  - job_name: postgres
    static_configs:
      - targets: ["127.0.0.1:$PG_EXPORTER_PORT"]
        labels: {host: dev}
  - job_name: pulsar-broker
    static_configs:
      - targets: ["127.0.0.1:$PULSAR_HTTP_PORT"]
        labels: {host: dev}
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROMETHEUS_PORT"]
  - job_name: alertmanager
    static_configs:
      - targets: ["127.0.0.1:$ALERTMANAGER_PORT"]
  - job_name: jaeger
    static_configs:
      - targets: ["127.0.0.1:$COMPTOIR_JAEGER_METRICS_PORT"]
YAML
  } >"$DIR/prometheus.yml"
}

# A role that may read the statistics (pg_monitor) and nothing else, for the exporter.
monitor_role() {
  local password_file="$SECRETS/postgres-exporter-password" admin_url
  mkdir -p "$SECRETS"
  [[ -s "$password_file" ]] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$password_file")
  admin_url="$(dev/postgres.sh admin-url)"
  PGPASSWORD="" psql -q -v ON_ERROR_STOP=1 -v password="$(<"$password_file")" "$admin_url" <<'SQL' >/dev/null
SELECT format('CREATE ROLE comptoir_monitor LOGIN PASSWORD %L IN ROLE pg_monitor', :'password')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'comptoir_monitor') \gexec
SELECT format('ALTER ROLE comptoir_monitor PASSWORD %L', :'password') \gexec
SQL
  printf 'postgresql://comptoir_monitor:%s@127.0.0.1:%s/postgres?sslmode=verify-full&sslrootcert=%s' \
    "$(<"$password_file")" "$PG_PORT" "$(dev/postgres.sh ca-file)"
}

start() {
  mkdir -p "$RUN_DIR" "$DIR/prometheus" "$DIR/alertmanager"
  start_jaeger
  launch node-exporter "$NODE_EXPORTER_PORT" "http://127.0.0.1:$NODE_EXPORTER_PORT/metrics" \
    "$(bin prometheus-node-exporter node_exporter)" --web.listen-address="127.0.0.1:$NODE_EXPORTER_PORT" \
    --no-collector.systemd
  local dsn
  dsn="$(monitor_role)"
  launch postgres-exporter "$PG_EXPORTER_PORT" \
    "http://127.0.0.1:$PG_EXPORTER_PORT/metrics" \
    env DATA_SOURCE_NAME="$dsn" "$(bin prometheus-postgres-exporter postgres_exporter)" \
    --web.listen-address="127.0.0.1:$PG_EXPORTER_PORT"
  cat >"$DIR/alertmanager.yml" <<YAML
# Written by dev/monitoring.sh: production's route and receivers (nixos/lib/alertmanager.nix)
# with dev/up's Mailpit as the relay (plaintext, no account: it is on loopback).
route:
  receiver: operators
  group_by: [alertname, env, host]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - receiver: heartbeat
      matchers: ['alertname="Watchdog"']
receivers:
  - name: operators
    email_configs:
      - to: operators@comptoir.localhost
        from: alertmanager@comptoir.localhost
        smarthost: 127.0.0.1:$SMTP_PORT
        require_tls: false
        send_resolved: true
  - name: heartbeat
YAML
  # Restarted, as Prometheus is below, so that it reads the file just written (its silences
  # and notification log persist in --storage.path).
  stop_one alertmanager
  launch alertmanager "$ALERTMANAGER_PORT" "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready" \
    "$(bin prometheus-alertmanager alertmanager)" --config.file="$DIR/alertmanager.yml" \
    --storage.path="$DIR/alertmanager" --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
    --cluster.listen-address=
  write_prometheus_config
  stop_one prometheus
  launch prometheus "$PROMETHEUS_PORT" "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" \
    "$(bin prometheus prometheus)" --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prometheus" \
    --storage.tsdb.retention.time=2d --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
}

urls() {
  cat <<MSG
  prometheus  http://127.0.0.1:$PROMETHEUS_PORT   (targets: /targets, alerts: /alerts, rules: /rules)
  alertmanager http://127.0.0.1:$ALERTMANAGER_PORT   (firing alerts are mailed to operators@comptoir.localhost in Mailpit)
  jaeger      http://127.0.0.1:$COMPTOIR_JAEGER_PORT/api/services   (traces: /api/traces?service=gateway)
MSG
}

case "${1:-}" in
  start-jaeger) start_jaeger ;;
  start) start ;;
  urls) urls ;;
  *) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
