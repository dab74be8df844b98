#!/usr/bin/env bash
# Run an Apache Pulsar standalone (broker + ZooKeeper + one bookie) as a detached child JVM,
# from the Maven classpath that dev/bootstrap.sh resolves. Several instances may run side by
# side when each has its own COMPTOIR_PULSAR_DIR and ports.
#
# Usage: dev/pulsar.sh start|stop|status|kill
#   start   start the instance and wait until it is healthy (no-op if it already is)
#   stop    SIGTERM, wait up to 60 s, then SIGKILL
#   status  print state; exit 0 if healthy, 1 if running but not healthy, 3 if stopped
#   kill    SIGKILL immediately (crash tests); data stays
#
# Environment:
#   COMPTOIR_PULSAR_DIR          instance dir (default $COMPTOIR_CACHE/pulsar/standalone)
#   COMPTOIR_PULSAR_PORT         broker binary protocol port (default 6650)
#   COMPTOIR_PULSAR_HTTP_PORT    admin/REST port (default 8080)
#   COMPTOIR_PULSAR_ZK_PORT      embedded ZooKeeper port (default 2181)
#   COMPTOIR_PULSAR_BOOKIE_PORT  embedded bookie port (default 3181)
#   COMPTOIR_PULSAR_START_TIMEOUT seconds to wait for health (default 240)
#   COMPTOIR_PULSAR_SECURE       1 = token auth + TLS (not implemented yet, see issue 3)
#   COMPTOIR_CACHE               default ${XDG_CACHE_HOME:-$HOME/.cache}/comptoir
#   JAVA                         java binary (default: java on PATH)
#
# Instance dir layout: conf/standalone.conf (rendered), data/{zookeeper,bookkeeper0},
# tmp/ (JVM temp dir), pulsar.pid, pulsar.log.
set -euo pipefail

COMPTOIR_SCRIPT_NAME="pulsar.sh"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PULSAR_DIR="${COMPTOIR_PULSAR_DIR:-$COMPTOIR_CACHE/pulsar/standalone}"
BROKER_PORT="${COMPTOIR_PULSAR_PORT:-6650}"
HTTP_PORT="${COMPTOIR_PULSAR_HTTP_PORT:-8080}"
ZK_PORT="${COMPTOIR_PULSAR_ZK_PORT:-2181}"
BOOKIE_PORT="${COMPTOIR_PULSAR_BOOKIE_PORT:-3181}"
START_TIMEOUT="${COMPTOIR_PULSAR_START_TIMEOUT:-240}"
STOP_TIMEOUT=60
CLASSPATH_FILE="$COMPTOIR_CACHE/pulsar/classpath.txt"
TEMPLATE="$COMPTOIR_DEV_DIR/pulsar/standalone.conf"
LOG4J_CONF="$COMPTOIR_DEV_DIR/pulsar/log4j2.xml"
PID_FILE="$PULSAR_DIR/pulsar.pid"
LOG_FILE="$PULSAR_DIR/pulsar.log"
CONF_FILE="$PULSAR_DIR/conf/standalone.conf"
ADMIN="http://127.0.0.1:$HTTP_PORT/admin/v2"

usage() {
  sed -n '5,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Pid of the running instance, or nothing. Only trusts the pid file if that process really is
# a PulsarStandaloneStarter (pids get reused).
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'PulsarStandaloneStarter'; then
    printf '%s\n' "$pid"
  fi
}

http_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true
}

is_healthy() {
  [[ "$(http_code "$ADMIN/brokers/health")" == 200 ]] || return 1
  curl -fs --max-time 5 "$ADMIN/namespaces/public" 2>/dev/null | grep -q '"public/default"'
}

show_log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last 60 lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2
  fi
}

render_conf() {
  mkdir -p "$PULSAR_DIR/conf" "$PULSAR_DIR/data"
  sed -e "s/@BROKER_PORT@/$BROKER_PORT/g" \
      -e "s/@HTTP_PORT@/$HTTP_PORT/g" \
      -e "s/@ZK_PORT@/$ZK_PORT/g" \
      -e "s/@BOOKIE_PORT@/$BOOKIE_PORT/g" \
      "$TEMPLATE" >"$CONF_FILE.tmp"
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

wait_healthy() {
  local pid="$1" start=$SECONDS
  log "waiting up to ${START_TIMEOUT}s for broker health and public/default on :$HTTP_PORT"
  while ! is_healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "error: Pulsar (pid $pid) exited during startup"
      show_log_tail
      rm -f "$PID_FILE"
      exit 1
    fi
    if ((SECONDS - start >= START_TIMEOUT)); then
      log "error: Pulsar (pid $pid) not healthy after ${START_TIMEOUT}s; it is left running (dev/pulsar.sh stop)"
      show_log_tail
      exit 1
    fi
    sleep 1
  done
  log "Pulsar healthy after $((SECONDS - start))s: pulsar://127.0.0.1:$BROKER_PORT  http://127.0.0.1:$HTTP_PORT (pid $pid)"
}

cmd_start() {
  local pid port
  if [[ "${COMPTOIR_PULSAR_SECURE:-0}" == 1 ]]; then
    # TODO(issue 3): token auth + TLS. Render authenticationEnabled=true,
    # AuthenticationProviderToken with tokenSecretKey, superUserRoles,
    # brokerClientAuthenticationPlugin/Parameters, brokerServicePortTls/webServicePortTls with a
    # generated CA, certificate and PKCS#8 key. Not built yet: this flag is ignored for now.
    log "warning: COMPTOIR_PULSAR_SECURE=1 is not implemented yet (issue 3); starting without auth/TLS"
  fi
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    if is_healthy; then
      log "already running and healthy (pid $pid, http :$HTTP_PORT)"
      return 0
    fi
    log "already running (pid $pid) but not healthy yet"
    wait_healthy "$pid"
    return 0
  fi

  [[ -s "$CLASSPATH_FILE" ]] || die "no Pulsar classpath at $CLASSPATH_FILE; run dev/bootstrap.sh first"
  if [[ "$COMPTOIR_DEV_DIR/pulsar/pom.xml" -nt "$CLASSPATH_FILE" ]]; then
    log "warning: dev/pulsar/pom.xml is newer than $CLASSPATH_FILE; run dev/bootstrap.sh to refresh it"
  fi
  command -v "${JAVA:-java}" >/dev/null || die "java not found (Java 17 needed)"
  for port in "$BROKER_PORT" "$HTTP_PORT" "$ZK_PORT" "$BOOKIE_PORT"; do
    if port_in_use "$port"; then
      die "port $port is already in use by another process (set COMPTOIR_PULSAR_*PORT); ss -ltnp 'sport = :$port' shows it"
    fi
  done

  render_conf
  rm -f "$PID_FILE"
  rm -rf "$PULSAR_DIR/tmp"
  mkdir -p "$PULSAR_DIR/tmp"
  log "starting Pulsar standalone in $PULSAR_DIR (log: $LOG_FILE)"
  printf '\n===== %s start (broker %s, http %s, zk %s, bookie %s) =====\n' \
    "$(date -Is)" "$BROKER_PORT" "$HTTP_PORT" "$ZK_PORT" "$BOOKIE_PORT" >>"$LOG_FILE"

  local -a jvm_opts=(
    -Xms256m -Xmx768m -XX:MaxDirectMemorySize=512m
    -XX:+UseSerialGC -XX:ActiveProcessorCount=2
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.util.zip=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens java.base/sun.net=ALL-UNNAMED
    --add-opens java.management/sun.management=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Djava.net.preferIPv4Stack=true
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver
    # ZooKeeper's AdminServer would bind 8080 in every instance.
    -Dzookeeper.admin.enableServer=false
    -Dlog4j.configurationFile="$LOG4J_CONF"
    -Dlog4j2.formatMsgNoLookups=true
    # RocksDB and netty unpack native libraries here on every start; emptied before each start.
    -Djava.io.tmpdir="$PULSAR_DIR/tmp"
  )
  local -a args=(
    --config "$CONF_FILE"
    -nfw -nss
    -a 127.0.0.1
    --zookeeper-port "$ZK_PORT"
    --bookkeeper-port "$BOOKIE_PORT"
    --zookeeper-dir "$PULSAR_DIR/data/zookeeper"
    --bookkeeper-dir "$PULSAR_DIR/data/bookkeeper"
    --metadata-dir "$PULSAR_DIR/data/metadata"
  )
  # The classpath goes in a JVM @argfile: it is too long to show nicely in ps.
  printf -- '-cp "%s"\n' "$(<"$CLASSPATH_FILE")" >"$PULSAR_DIR/conf/classpath.args"

  # setsid: own session, so the terminal's Ctrl-C or the caller's exit does not reach it.
  # In a non-interactive shell the background job is not a group leader, so setsid and nohup
  # exec in place and $! is the JVM's pid.
  (
    cd "$PULSAR_DIR"
    PULSAR_STANDALONE_USE_ZOOKEEPER=1 exec setsid nohup "${JAVA:-java}" "${jvm_opts[@]}" \
      "@$PULSAR_DIR/conf/classpath.args" \
      org.apache.pulsar.PulsarStandaloneStarter "${args[@]}" \
      >>"$LOG_FILE" 2>&1 </dev/null
  ) &
  pid=$!
  printf '%s\n' "$pid" >"$PID_FILE"
  wait_healthy "$pid"
}

wait_exit() {
  local pid="$1" timeout="$2" start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS - start < timeout)) || return 1
    sleep 0.5
  done
}

cmd_stop() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    log "not running ($PULSAR_DIR)"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping Pulsar (pid $pid, SIGTERM, up to ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
    log "still alive after ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_kill() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    log "not running ($PULSAR_DIR)"
    rm -f "$PID_FILE"
    return 0
  fi
  log "killing Pulsar (pid $pid, SIGKILL)"
  kill -KILL "$pid" 2>/dev/null || true
  wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    echo "stopped (dir $PULSAR_DIR)"
    return 3
  fi
  if is_healthy; then
    echo "healthy pid=$pid broker=pulsar://127.0.0.1:$BROKER_PORT http=http://127.0.0.1:$HTTP_PORT dir=$PULSAR_DIR"
    return 0
  fi
  echo "running but not healthy pid=$pid http=http://127.0.0.1:$HTTP_PORT dir=$PULSAR_DIR"
  return 1
}

[[ $# -eq 1 ]] || usage
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill) cmd_kill ;;
  *) usage ;;
esac
