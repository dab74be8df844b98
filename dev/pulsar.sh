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
#   COMPTOIR_PULSAR_PORT         broker binary protocol port (default 6650; plain mode only)
#   COMPTOIR_PULSAR_HTTP_PORT    admin/REST port (default 8080; plain mode only)
#   COMPTOIR_PULSAR_ZK_PORT      embedded ZooKeeper port (default 2181)
#   COMPTOIR_PULSAR_BOOKIE_PORT  embedded bookie port (default 3181)
#   COMPTOIR_PULSAR_START_TIMEOUT seconds to wait for health (default 240)
#   COMPTOIR_PULSAR_SECURE       1 = secure mode (below); 0 = plain, the default
#   COMPTOIR_PULSAR_TLS_PORT     pulsar+ssl:// port in secure mode (default 6651)
#   COMPTOIR_PULSAR_HTTPS_PORT   https admin/REST port in secure mode (default 8443)
#   COMPTOIR_CACHE               default ${XDG_CACHE_HOME:-$HOME/.cache}/comptoir
#   JAVA                         java binary (default: java on PATH)
#
# Secure mode (COMPTOIR_PULSAR_SECURE=1 at start): TLS listeners only, the plaintext ports are
# off as in production; token authentication; authorization by the per-namespace grants of
# libs/events/topology/comptoir.toml (applied by `comptoir-xtask provision-topology`), with
# `admin` as superuser. The first secure start generates, in <instance dir>/secure/ (dir 0700,
# files 0600), whatever is missing of:
#   ca.crt                 local CA that clients trust (ca_file)
#   broker.crt, broker.key.pem  broker certificate for 127.0.0.1 and localhost, PKCS#8 key
#   token-secret.key       HS256 secret the broker verifies tokens with
#   tokens/<role>.jwt      a token (`sub` = role) for `admin`, each role named in the topology
#                          and `outsider` (granted nothing, for tests)
#   admin.header           "Authorization: Bearer <admin token>" for curl -H @file
# An instance keeps the mode it was started in: status/stop/kill read it from its conf, and
# starting a running instance in the other mode is an error.
#
# Instance dir layout: conf/standalone.conf (rendered), data/{zookeeper,bookkeeper0},
# tmp/ (JVM temp dir), pulsar.pid, pulsar.log, secure/ (secure mode).
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
SECURE="${COMPTOIR_PULSAR_SECURE:-0}"
TLS_PORT="${COMPTOIR_PULSAR_TLS_PORT:-6651}"
HTTPS_PORT="${COMPTOIR_PULSAR_HTTPS_PORT:-8443}"
STOP_TIMEOUT=60
CLASSPATH_FILE="$COMPTOIR_CACHE/pulsar/classpath.txt"
TEMPLATE="$COMPTOIR_DEV_DIR/pulsar/standalone.conf"
SECURE_TEMPLATE="$COMPTOIR_DEV_DIR/pulsar/secure.conf"
# The roles that get a token: those the topology grants something to.
TOPOLOGY_FILE="$COMPTOIR_DEV_DIR/../libs/events/topology/comptoir.toml"
LOG4J_CONF="$COMPTOIR_DEV_DIR/pulsar/log4j2.xml"
PID_FILE="$PULSAR_DIR/pulsar.pid"
LOG_FILE="$PULSAR_DIR/pulsar.log"
CONF_FILE="$PULSAR_DIR/conf/standalone.conf"
SECURE_DIR="$PULSAR_DIR/secure"

usage() {
  sed -n '6,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "$SECURE" in
  0 | 1) ;;
  *) die "COMPTOIR_PULSAR_SECURE must be 0 or 1, got '$SECURE'" ;;
esac

# Mode of this instance: the one its rendered conf was made for (so status/stop/kill need no
# flag), or the requested one before the first start.
conf_mode() {
  if [[ -f "$CONF_FILE" ]]; then
    if grep -qx 'authenticationEnabled=true' "$CONF_FILE"; then echo secure; else echo plain; fi
  elif [[ "$SECURE" == 1 ]]; then
    echo secure
  else
    echo plain
  fi
}

# Sets what the health checks and messages use for mode $1: the admin base URL, curl's
# options (CA and admin token in secure mode) and the client URLs.
ADMIN="" BROKER_URL="" WEB_URL=""
CURL_OPTS=()
use_mode() {
  if [[ "$1" == secure ]]; then
    BROKER_URL="pulsar+ssl://127.0.0.1:$TLS_PORT"
    WEB_URL="https://127.0.0.1:$HTTPS_PORT"
    # The token goes in a header file, not on the command line where ps shows it.
    CURL_OPTS=(--cacert "$SECURE_DIR/ca.crt" -H "@$SECURE_DIR/admin.header")
  else
    BROKER_URL="pulsar://127.0.0.1:$BROKER_PORT"
    WEB_URL="http://127.0.0.1:$HTTP_PORT"
    CURL_OPTS=()
  fi
  ADMIN="$WEB_URL/admin/v2"
}
use_mode "$(conf_mode)"

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
  curl -s "${CURL_OPTS[@]}" -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true
}

is_healthy() {
  [[ "$(http_code "$ADMIN/brokers/health")" == 200 ]] || return 1
  curl -fs "${CURL_OPTS[@]}" --max-time 5 "$ADMIN/namespaces/public" 2>/dev/null |
    grep -q '"public/default"'
}

show_log_tail() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last 60 lines of $LOG_FILE:"
    tail -n 60 "$LOG_FILE" >&2
  fi
}

# Escapes $1 for the replacement side of a sed s|...|...| command.
sed_escape() {
  printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'
}

render_conf() {
  mkdir -p "$PULSAR_DIR/conf" "$PULSAR_DIR/data"
  local -a subst=(
    -e "s/@BROKER_PORT@/$BROKER_PORT/g"
    -e "s/@HTTP_PORT@/$HTTP_PORT/g"
    -e "s/@ZK_PORT@/$ZK_PORT/g"
    -e "s/@BOOKIE_PORT@/$BOOKIE_PORT/g"
    -e "s/@TLS_PORT@/$TLS_PORT/g"
    -e "s/@HTTPS_PORT@/$HTTPS_PORT/g"
    -e "s|@SECURE_DIR@|$(sed_escape "$SECURE_DIR")|g"
  )
  if [[ "$SECURE" == 1 ]]; then
    # The overlay's keys replace the template's: one value per key, easier to read than a
    # later duplicate silently winning.
    awk -F= 'NR == FNR { if ($0 ~ /^[A-Za-z]/) overlay[$1] = 1; next } !($1 in overlay)' \
      "$SECURE_TEMPLATE" "$TEMPLATE" | sed "${subst[@]}" >"$CONF_FILE.tmp"
    sed "${subst[@]}" "$SECURE_TEMPLATE" >>"$CONF_FILE.tmp"
  else
    sed "${subst[@]}" "$TEMPLATE" >"$CONF_FILE.tmp"
  fi
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

# Roles the topology grants produce or consume to (arrays may span lines).
topology_roles() {
  awk '
    /^[[:space:]]*(producers|consumers)[[:space:]]*=/ { open = 1 }
    open {
      line = $0
      sub(/#.*/, "", line)
      rest = line
      while (match(rest, /"[^"]*"/)) {
        print substr(rest, RSTART + 1, RLENGTH - 2)
        rest = substr(rest, RSTART + RLENGTH)
      }
      if (line ~ /\]/) open = 0
    }
  ' "$TOPOLOGY_FILE" | sort -u
}

b64url() {
  openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# An HS256 JWT with `sub` = $1, signed with the instance's token secret, without expiry (a
# local instance; production tokens come from the secret store and do expire).
mint_token() {
  local header payload key_hex signature
  header="$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)"
  payload="$(printf '{"sub":"%s"}' "$1" | b64url)"
  # openssl takes the raw key only as an argument; it shows in ps for a few milliseconds, on a
  # development machine, for a key that only guards this local instance.
  key_hex="$(od -An -v -tx1 "$SECURE_DIR/token-secret.key" | tr -d ' \n')"
  signature="$(printf '%s.%s' "$header" "$payload" |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | b64url)"
  printf '%s.%s.%s' "$header" "$payload" "$signature"
}

# A local CA and a broker certificate for 127.0.0.1 and localhost (rustls checks the IP SAN
# of pulsar+ssl://127.0.0.1), made together so they always match.
generate_certificates() {
  local work
  work="$(mktemp -d "$SECURE_DIR/.generate.XXXXXX")"
  cat >"$work/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Comptoir local Pulsar CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
  cat >"$work/broker.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
[broker]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
  # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), the format Pulsar's key loader reads.
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/ca.key"
  openssl req -x509 -new -config "$work/ca.cnf" -extensions ca -key "$work/ca.key" \
    -sha256 -days 3650 -out "$work/ca.crt"
  openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/broker.key.pem"
  openssl req -new -config "$work/broker.cnf" -key "$work/broker.key.pem" -out "$work/broker.csr"
  openssl x509 -req -in "$work/broker.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 \
    -extfile "$work/broker.cnf" -extensions broker -out "$work/broker.crt" 2>/dev/null
  # The CA key is not kept: nothing else is ever signed with it, and a new pair is made if
  # the certificate goes missing.
  mv "$work/ca.crt" "$work/broker.key.pem" "$work/broker.crt" "$SECURE_DIR/"
  rm -rf "$work"
}

# Creates what is missing in $SECURE_DIR; existing files are kept, so tokens handed out stay
# valid across restarts and a role added to the topology gets its token on the next start.
ensure_secrets() {
  local role token
  command -v openssl >/dev/null || die "openssl not found (needed for COMPTOIR_PULSAR_SECURE=1)"
  [[ -f "$TOPOLOGY_FILE" ]] || die "no topology at $TOPOLOGY_FILE"
  mkdir -p "$SECURE_DIR/tokens"
  chmod 700 "$SECURE_DIR" "$SECURE_DIR/tokens"
  (
    umask 077
    if [[ ! -s "$SECURE_DIR/ca.crt" || ! -s "$SECURE_DIR/broker.crt" || ! -s "$SECURE_DIR/broker.key.pem" ]]; then
      log "generating a local CA and broker certificate in $SECURE_DIR"
      generate_certificates
    fi
    if [[ ! -s "$SECURE_DIR/token-secret.key" ]]; then
      # A new secret invalidates every token signed with the old one.
      rm -f "$SECURE_DIR"/tokens/*.jwt
      openssl rand -out "$SECURE_DIR/token-secret.key" 32
    fi
    for role in admin outsider $(topology_roles); do
      [[ "$role" =~ ^[a-z0-9-]+$ ]] || die "role '$role' in $TOPOLOGY_FILE is not lowercase letters, digits, '-'"
      token="$SECURE_DIR/tokens/$role.jwt"
      if [[ ! -s "$token" ]]; then
        mint_token "$role" >"$token.tmp"
        mv "$token.tmp" "$token"
      fi
    done
    printf 'Authorization: Bearer %s\n' "$(<"$SECURE_DIR/tokens/admin.jwt")" >"$SECURE_DIR/admin.header"
  )
  chmod 600 "$SECURE_DIR"/*.crt "$SECURE_DIR"/*.pem "$SECURE_DIR"/*.key "$SECURE_DIR"/admin.header \
    "$SECURE_DIR"/tokens/*.jwt
}

wait_healthy() {
  local pid="$1" start=$SECONDS
  log "waiting up to ${START_TIMEOUT}s for broker health and public/default on $WEB_URL"
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
  log "Pulsar healthy after $((SECONDS - start))s: $BROKER_URL  $WEB_URL (pid $pid)"
  if [[ "$(conf_mode)" == secure ]]; then
    log "secure mode: CA $SECURE_DIR/ca.crt, tokens in $SECURE_DIR/tokens/"
  fi
}

cmd_start() {
  local pid port wanted
  wanted="$([[ "$SECURE" == 1 ]] && echo secure || echo plain)"
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    if [[ "$(conf_mode)" != "$wanted" ]]; then
      die "already running in $(conf_mode) mode (pid $pid); stop it first to start it in $wanted mode"
    fi
    if is_healthy; then
      log "already running and healthy (pid $pid, $WEB_URL)"
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
  local -a ports=("$BROKER_PORT" "$HTTP_PORT" "$ZK_PORT" "$BOOKIE_PORT")
  if [[ "$wanted" == secure ]]; then
    ports=("$TLS_PORT" "$HTTPS_PORT" "$ZK_PORT" "$BOOKIE_PORT")
  fi
  for port in "${ports[@]}"; do
    if port_in_use "$port"; then
      die "port $port is already in use by another process (set COMPTOIR_PULSAR_*PORT); ss -ltnp 'sport = :$port' shows it"
    fi
  done

  if [[ "$wanted" == secure ]]; then
    ensure_secrets
  fi
  render_conf
  use_mode "$wanted"
  rm -f "$PID_FILE"
  rm -rf "$PULSAR_DIR/tmp"
  mkdir -p "$PULSAR_DIR/tmp"
  log "starting Pulsar standalone in $PULSAR_DIR (log: $LOG_FILE)"
  printf '\n===== %s start (%s mode, broker %s, web %s, zk %s, bookie %s) =====\n' \
    "$(date -Is)" "$wanted" "$BROKER_URL" "$WEB_URL" "$ZK_PORT" "$BOOKIE_PORT" >>"$LOG_FILE"

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
    echo "healthy pid=$pid mode=$(conf_mode) broker=$BROKER_URL web=$WEB_URL dir=$PULSAR_DIR"
    return 0
  fi
  echo "running but not healthy pid=$pid mode=$(conf_mode) web=$WEB_URL dir=$PULSAR_DIR"
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
