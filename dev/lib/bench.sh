# Helpers of the dev/bench-*.sh benchmarks (sourced after dev/lib/common.sh).
# shellcheck shell=bash

# wrk_run THREADS CONNECTIONS DURATION URL: wrk --latency; prints "requests_per_second p99_ms
# total_requests". Any non-2xx answer stops the benchmark.
wrk_run() {
  local out rps p99 total url="$4"
  out="$(wrk -t"$1" -c"$2" -d"$3" --latency "$url")"
  grep -q "Non-2xx" <<<"$out" && die "non-2xx answers from $url:\n$out"
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")"
  total="$(awk '/requests in/ {print $1}' <<<"$out")"
  printf '%s %s %s\n' "$rps" "$p99" "$total"
}

# wait_for_url URL PID LOG: until URL answers 200; stops with LOG's tail if PID exits first or
# after 60 s.
wait_for_url() {
  for _ in $(seq 1 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" == 200 ]] && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 30 "$3" >&2; die "process $2 exited"; }
    sleep 0.2
  done
  tail -n 30 "$3" >&2
  die "no answer from $1"
}
