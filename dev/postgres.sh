#!/usr/bin/env bash
# A PostgreSQL cluster owned by the project: its own data dir and port (default 55432),
# listening on 127.0.0.1 only. It never touches the system cluster (Debian's, on 5432).
#
# Usage: dev/postgres.sh start|stop|status|admin-url|ca-file
#   start      initialise on first use, then start and wait for pg_isready (no-op if running)
#   stop       fast shutdown (no-op if stopped)
#   status     exit 0 if running, 3 if stopped
#   admin-url  print postgres://comptoir_admin:<pw>@127.0.0.1:<port>/postgres
#   ca-file    print the path of the CA that signed the server's TLS certificate
#
# Environment:
#   COMPTOIR_PG_PORT  TCP port (default 55432)
#   COMPTOIR_PG_DIR   cluster dir (default $COMPTOIR_CACHE/postgres; as root
#                     /var/lib/comptoir-dev/postgres, owned by the postgres user because
#                     initdb/postgres refuse to run as root)
#   COMPTOIR_CACHE    default ${XDG_CACHE_HOME:-$HOME/.cache}/comptoir
#
# Layout of COMPTOIR_PG_DIR: data/ (PGDATA), admin-password (mode 600), postgres.log, and the
# unix socket (.s.PGSQL.<port>).
#
# Access (pg_hba.conf, rewritten and reloaded by every `start`): comptoir_admin (superuser) may
# reach every database; comptoir_monitor (the metrics exporter) the postgres database; any
# other role only the database named like the role; everything else is rejected.
set -euo pipefail

COMPTOIR_SCRIPT_NAME="postgres.sh"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ADMIN_USER=comptoir_admin
PG_PORT="${COMPTOIR_PG_PORT:-55432}"
if is_root; then
  PG_DIR="${COMPTOIR_PG_DIR:-/var/lib/comptoir-dev/postgres}"
else
  PG_DIR="${COMPTOIR_PG_DIR:-$COMPTOIR_CACHE/postgres}"
fi
PGDATA_DIR="$PG_DIR/data"
PW_FILE="$PG_DIR/admin-password"
LOG_FILE="$PG_DIR/postgres.log"
START_TIMEOUT=60

usage() {
  sed -n '5,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Highest installed PostgreSQL major's bin dir (Debian: /usr/lib/postgresql/<major>/bin),
# unless COMPTOIR_PG_BIN names one (the Nix dev shell sets it to its PostgreSQL).
pg_bin_dir() {
  if [[ -n "${COMPTOIR_PG_BIN:-}" ]]; then
    [[ -x "$COMPTOIR_PG_BIN/initdb" ]] || die "COMPTOIR_PG_BIN=$COMPTOIR_PG_BIN has no initdb"
    printf '%s\n' "$COMPTOIR_PG_BIN"
    return 0
  fi
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/initdb" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql (run dev/bootstrap.sh)"
  printf '%s\n' "$dir"
}
PG_BIN="$(pg_bin_dir)"

# Run a server binary as the cluster owner: the postgres user when we are root, else ourselves.
as_owner() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

is_running() {
  [[ -f "$PGDATA_DIR/PG_VERSION" ]] && as_owner "$PG_BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

prepare_dir() {
  if is_root; then
    id postgres >/dev/null 2>&1 || die "user 'postgres' missing (install the postgresql package)"
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    chmod 700 "$PG_DIR"
    # The postgres user must be able to reach the dir through every parent.
    runuser -u postgres -- test -w "$PG_DIR" \
      || die "user postgres cannot write $PG_DIR (a parent dir is not traversable); choose another COMPTOIR_PG_DIR"
  else
    mkdir -p "$PG_DIR"
    chmod 700 "$PG_DIR"
  fi
  # Created by the owner so that both initdb's output and the server can append to it.
  [[ -e "$LOG_FILE" ]] || as_owner touch "$LOG_FILE"
}

generate_password() {
  # 32 alphanumeric characters: safe inside a URL without escaping.
  local pw=""
  while ((${#pw} < 32)); do
    pw+="$(head -c 48 /dev/urandom | base64 -w0 | tr -d '/+=')"
  done
  printf '%s' "${pw:0:32}"
}

init_cluster() {
  [[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
  if [[ -e "$PGDATA_DIR" ]] && [[ -n "$(ls -A "$PGDATA_DIR" 2>/dev/null)" ]]; then
    die "$PGDATA_DIR exists, is not empty and is no cluster; remove it"
  fi
  if [[ ! -s "$PW_FILE" ]]; then
    log "generating admin password into $PW_FILE"
    (umask 077 && generate_password >"$PW_FILE")
  fi
  chmod 600 "$PW_FILE"
  if is_root; then chown postgres:postgres "$PW_FILE"; fi
  log "initdb $PGDATA_DIR (superuser $ADMIN_USER, scram-sha-256)"
  as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$ADMIN_USER" --pwfile="$PW_FILE" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >>"$LOG_FILE" 2>&1 \
    || { tail -n 20 "$LOG_FILE" >&2; die "initdb failed"; }
  # Include our settings from the end of postgresql.conf (later settings win).
  printf "\ninclude_if_exists = 'comptoir.conf'\n" | as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
}

# A local CA and a server certificate for 127.0.0.1/localhost, made once, so the TLS path of
# the services (rustls, verify-full) is exercised locally and in CI. `ca-file` prints the CA.
TLS_DIR="$PG_DIR/tls"
ensure_tls() {
  [[ -s "$TLS_DIR/server.crt" && -s "$TLS_DIR/ca.crt" ]] && return 0
  command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
  log "creating a local CA and server certificate in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Comptoir dev CA" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext
    chmod 644 ca.crt server.crt
  )
  if is_root; then chown -R postgres:postgres "$TLS_DIR"; fi
}

# Rewritten on every start, so a changed COMPTOIR_PG_PORT or an edit here takes effect.
write_config() {
  as_owner tee "$PGDATA_DIR/comptoir.conf" >/dev/null <<EOF
# Written by dev/postgres.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
password_encryption = 'scram-sha-256'
max_connections = 300
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  write_hba
}

write_hba() {
  as_owner tee "$PGDATA_DIR/pg_hba.conf" >/dev/null <<EOF
# Written by dev/postgres.sh on every start; edits are lost. First matching line wins.
# TYPE  DATABASE  USER            ADDRESS        METHOD
local   all       $ADMIN_USER                    scram-sha-256
host    all       $ADMIN_USER     127.0.0.1/32   scram-sha-256
# The metrics exporter's role (pg_monitor, made by dev/monitoring.sh) reads the statistics from
# the postgres database only.
host    postgres  comptoir_monitor 127.0.0.1/32  scram-sha-256
# Every other role only reaches the database that has its own name.
host    sameuser  all             127.0.0.1/32   scram-sha-256
# Deny the rest (including replication).
local   all       all                            reject
host    all       all             0.0.0.0/0      reject
host    all       all             ::/0           reject
local   replication all                          reject
host    replication all           0.0.0.0/0      reject
EOF
}

wait_ready() {
  local start=$SECONDS
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; do
    if ((SECONDS - start >= START_TIMEOUT)); then
      tail -n 30 "$LOG_FILE" >&2 || true
      die "PostgreSQL not ready on 127.0.0.1:$PG_PORT after ${START_TIMEOUT}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
}

cmd_start() {
  prepare_dir
  if is_running; then
    # The access rules of this version of the script, without a restart.
    write_hba
    as_owner "$PG_BIN/pg_ctl" reload -D "$PGDATA_DIR" -s >/dev/null
    log "already running on 127.0.0.1:$(port_of_running) ($PG_DIR)"
    return 0
  fi
  if port_in_use "$PG_PORT"; then
    die "port $PG_PORT is taken by another process; set COMPTOIR_PG_PORT"
  fi
  init_cluster
  ensure_tls
  write_config
  log "starting PostgreSQL $(basename "$(dirname "$PG_BIN")") on 127.0.0.1:$PG_PORT ($PG_DIR)"
  as_owner "$PG_BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$LOG_FILE" -W -s \
    || { tail -n 30 "$LOG_FILE" >&2; die "pg_ctl start failed"; }
  wait_ready
  log "ready: $(cmd_admin_url | sed 's/:[^:@]*@/:***@/')"
}

# Port the running server listens on (from postmaster.pid, line 4).
port_of_running() {
  sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || printf '%s' "$PG_PORT"
}

cmd_stop() {
  if ! is_running; then
    log "not running ($PG_DIR)"
    return 0
  fi
  log "stopping PostgreSQL ($PG_DIR)"
  as_owner "$PG_BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 -s
  log "stopped"
}

cmd_status() {
  if is_running; then
    echo "running port=$(port_of_running) dir=$PG_DIR"
    return 0
  fi
  echo "stopped dir=$PG_DIR"
  return 3
}

cmd_admin_url() {
  [[ -s "$PW_FILE" ]] || die "no admin password at $PW_FILE; run dev/postgres.sh start first"
  local port="$PG_PORT"
  is_running && port="$(port_of_running)"
  printf 'postgres://%s:%s@127.0.0.1:%s/postgres\n' "$ADMIN_USER" "$(<"$PW_FILE")" "$port"
}

[[ $# -eq 1 ]] || usage
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  admin-url) cmd_admin_url ;;
  ca-file) [[ -s "$TLS_DIR/ca.crt" ]] || die "no CA yet; run dev/postgres.sh start first"
    printf '%s\n' "$TLS_DIR/ca.crt" ;;
  *) usage ;;
esac
