#!/usr/bin/env bash
# Checks the stateful roles' settings (nixos/lib/pulsar.nix, nixos/lib/patroni.nix) for every
# environment of the inventory, with the real tools where this machine has them:
#   1. invariants (dev/fleet/data.py check): ZooKeeper ensemble odd, ids unique and equal to
#      each host's myid and address; ledger quorums ensemble >= write >= ack >= 1, within the
#      bookies, a spare bookie from 3 on (measured); brokers TLS-only with tokens; every service
#      that needs PostgreSQL has its database and its pg_hba lines; no trust/md5; the measured
#      Patroni timings; etcd members that are the postgres hosts
#   2. the checker catches what it must (dev/fleet/data.py self-test breaks the data 14 ways)
#   3. per environment, in a throwaway network namespace that holds the postgres hosts'
#      addresses (dummy or in-namespace veth interface, loopback up, no route anywhere): the real etcd cluster
#      started from the generated member settings, with a throwaway CA, must become healthy;
#      then `patroni --validate-config` on every member's settings (written as JSON, which is
#      YAML), and `patronictl list` must reach etcd over TLS with the member's client
#      certificate. Patroni validates its listen addresses by binding/connecting, and etcd's
#      by connecting: that is why it runs in a namespace that has those addresses (outside,
#      this machine's default gateway accepts any TCP connection and Patroni sees "port in
#      use"). bin_dir points at Debian's PostgreSQL binaries (/usr/lib/postgresql/<major>/bin)
#      and data/secret paths at a temp dir, through the generator's `layout` parameter, since
#      NixOS's paths do not exist here; everything else is the generated settings.
# Installs what is missing (apt-get: patroni, etcd-server, postgresql, openssl, curl).
# Must run as root (network namespaces). Usage: dev/fleet/check-data.sh
set -euo pipefail

COMPTOIR_SCRIPT_NAME="check-data"
# shellcheck source=dev/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$COMPTOIR_DEV_DIR/.."

WORK=""
NETNS=""
ETCD_PIDS=()

cleanup() {
  local pid
  for pid in "${ETCD_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ETCD_PIDS=()
  if [[ -n "$NETNS" ]]; then
    ip netns delete "$NETNS" 2>/dev/null || true
    NETNS=""
  fi
  if [[ -n "$WORK" ]]; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

install_tools() {
  local -a missing=()
  command -v nix-instantiate >/dev/null || missing+=(nix-bin)
  command -v patroni >/dev/null || missing+=(patroni)
  command -v patronictl >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  pg_bin_dir >/dev/null || missing+=(postgresql)
  install_missing "${missing[@]}"
}

# Debian's PostgreSQL server binaries, highest major installed (15 on Debian 12).
pg_bin_dir() {
  local dir
  dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$dir" && -x "$dir/postgres" ]] || return 1
  printf '%s\n' "$dir"
}

nix_eval() {
  nix-instantiate --eval --strict --json "$@" 2>/dev/null \
    || nix-instantiate --eval --strict --json "$@" >/dev/null
}

# A CA and, per host, a certificate (serverAuth + clientAuth) laid out as the fleet's secrets:
# postgres/{ca.crt,host.crt,host.key} and etcd/{ca.crt,host.crt,host.key}. On the fleet each
# host's certificate names its own address. Here all members share one namespace, where a
# connection to a local address leaves from that same address, and etcd checks a peer's
# certificate against the connection's source: so each throwaway certificate names every
# member's address ($3, "IP:a,IP:b,..."). The settings under test are unchanged.
make_certificates() {
  local dir="$1" address="$2" sans="$3" ca="$WORK/ca"
  if [[ ! -f "$ca/ca.crt" ]]; then
    mkdir -p "$ca"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -subj "/CN=comptoir check-data CA" -keyout "$ca/ca.key" -out "$ca/ca.crt" 2>/dev/null
  fi
  mkdir -p "$dir/postgres" "$dir/etcd"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=$address" -keyout "$dir/postgres/host.key" -out "$dir/host.csr" 2>/dev/null
  openssl x509 -req -in "$dir/host.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial \
    -days 1 -out "$dir/postgres/host.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$sans") 2>/dev/null
  cp "$ca/ca.crt" "$dir/postgres/ca.crt"
  cp "$ca/ca.crt" "$dir/etcd/ca.crt"
  cp "$dir/postgres/host.crt" "$dir/etcd/host.crt"
  cp "$dir/postgres/host.key" "$dir/etcd/host.key"
  chmod 0600 "$dir/postgres/host.key" "$dir/etcd/host.key"
}

# One environment's PostgreSQL members in a namespace: etcd up from the generated settings,
# then every member's Patroni settings validated against it.
check_environment() {
  local env="$1" data="$2" bin="$3"
  local -a hosts
  mapfile -t hosts < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hostNames"]))' "$data" "$env")
  ((${#hosts[@]} > 0)) || return 0

  NETNS="comptoir-check-data-$$"
  ip netns add "$NETNS"
  ip -n "$NETNS" link set lo up
  # A dummy interface holds the addresses; where the kernel has no dummy driver (some
  # containers), a veth pair whose both ends stay inside the namespace does the same.
  if ! ip -n "$NETNS" link add hosts0 type dummy 2>/dev/null; then
    ip -n "$NETNS" link add hosts0 type veth peer name hosts1
    ip -n "$NETNS" link set hosts1 up
  fi
  ip -n "$NETNS" link set hosts0 up

  local host address sans
  sans="$(python3 -c 'import json,sys; print(",".join("IP:" + h["address"] for h in json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hosts"].values()))' "$data" "$env")"
  for host in "${hosts[@]}"; do
    address="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hosts"][sys.argv[3]]["address"])' "$data" "$env" "$host")"
    ip -n "$NETNS" addr add "$address/32" dev hosts0
    make_certificates "$WORK/$host/secrets" "$address" "$sans"
    mkdir -p "$WORK/$host/etcd"
    chmod 0700 "$WORK/$host/etcd"
  done

  log "$env: etcd of ${#hosts[@]} member(s) in namespace $NETNS"
  local -a args
  for host in "${hosts[@]}"; do
    mapfile -t args < <(python3 dev/fleet/data.py etcd-args "$data" "$env" "$host")
    ip netns exec "$NETNS" etcd "${args[@]}" >"$WORK/$host/etcd.log" 2>&1 &
    ETCD_PIDS+=("$!")
  done

  local endpoint secrets deadline
  for host in "${hosts[@]}"; do
    secrets="$WORK/$host/secrets"
    endpoint="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hosts"][sys.argv[3]]["etcd"]["advertiseClientUrls"][0])' "$data" "$env" "$host")"
    deadline=$((SECONDS + 60))
    until ip netns exec "$NETNS" curl -fsS --max-time 2 --cacert "$secrets/etcd/ca.crt" \
      --cert "$secrets/etcd/host.crt" --key "$secrets/etcd/host.key" "$endpoint/health" 2>/dev/null | grep -q '"health":"true"'; do
      if ((SECONDS > deadline)); then
        tail -n 20 "$WORK/$host/etcd.log" >&2
        die "$env: etcd member $host never became healthy at $endpoint"
      fi
      sleep 1
    done
  done
  log "$env: etcd healthy on every member (TLS, client certificates)"

  local file out key path
  local -a environment
  for host in "${hosts[@]}"; do
    file="$WORK/$host/patroni.yaml"
    # The passwords reach Patroni as the NixOS module passes them: each variable of
    # environmentFiles set to the contents of its (here throwaway) secret file.
    environment=()
    while IFS=$'\t' read -r key path; do
      mkdir -p "$(dirname "$path")"
      openssl rand -hex 16 >"$path"
      environment+=("$key=$(<"$path")")
    done < <(python3 -c 'import json,sys; [print(k, v, sep="\t") for k, v in json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hosts"][sys.argv[3]]["environmentFiles"].items()]' "$data" "$env" "$host")
    python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["patroni"][sys.argv[2]]["hosts"][sys.argv[3]]["settings"], open(sys.argv[4], "w"), indent=1)' \
      "$data" "$env" "$host" "$file"
    if ! out="$(ip netns exec "$NETNS" env "${environment[@]}" patroni --validate-config "$file" 2>&1)"; then
      printf '%s\n' "$out" >&2
      die "$env: patroni --validate-config rejects $host's settings"
    fi
    # The DCS client as Patroni configures it (etcd3, https, the member's certificate): the
    # cluster has no member yet, but etcd must answer.
    if ! out="$(ip netns exec "$NETNS" env "${environment[@]}" timeout 30 patronictl -c "$file" list 2>&1)"; then
      printf '%s\n' "$out" >&2
      die "$env: patronictl cannot reach etcd with $host's settings"
    fi
    log "$env: $host: patroni --validate-config ok, etcd reached over TLS (bin_dir $bin)"
  done
  cleanup_environment
}

cleanup_environment() {
  local pid
  for pid in "${ETCD_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  ETCD_PIDS=()
  ip netns delete "$NETNS"
  NETNS=""
}

main() {
  [[ $# -eq 0 ]] || { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
  is_root || die "needs root (network namespaces)"
  install_tools
  local bin
  bin="$(pg_bin_dir)" || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  WORK="$(mktemp -d /tmp/comptoir-check-data.XXXXXX)"

  log "evaluating the generators (nixos/lib/pulsar.nix, nixos/lib/patroni.nix)"
  nix_eval -E 'let l = import ./nixos/lib {}; in {
      hosts = l.inventory.hostList;
      environments = l.inventory.environments;
      inherit (l) graph pulsar patroni;
    }' >"$WORK/delivered.json"
  python3 dev/fleet/data.py check "$WORK/delivered.json"
  python3 dev/fleet/data.py self-test "$WORK/delivered.json" >/dev/null 2>"$WORK/self-test.log" \
    || { cat "$WORK/self-test.log" >&2; die "the invariant checker misses a broken input"; }
  log "self-test: every broken input is caught ($(grep -c '^self-test: caught' "$WORK/self-test.log") ways)"

  # The same generator with this machine's paths (see the header). ${...} is Nix's.
  # shellcheck disable=SC2016
  nix_eval --argstr work "$WORK" --argstr bin "$bin" -E '{work, bin}: let
      l = import ./nixos/lib {};
    in {
      environments = l.inventory.environments;
      patroni = import ./nixos/lib/patroni.nix (l // {
        layout = host: {
          binDir = bin;
          dataDir = "${work}/${host}/data";
          patroniDir = "${work}/${host}";
          socketDir = "${work}/${host}";
          etcdDir = "${work}/${host}/etcd";
          secretsDir = "${work}/${host}/secrets";
        };
      });
    }' >"$WORK/here.json"

  local env
  local -a envs
  mapfile -t envs < <(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1]))["patroni"])))' "$WORK/here.json")
  for env in "${envs[@]}"; do
    check_environment "$env" "$WORK/here.json" "$bin"
  done
  log "all stateful-role settings checks passed (${envs[*]})"
}

main "$@"
