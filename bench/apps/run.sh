#!/usr/bin/env bash
# bench/apps/run.sh — nginx served by the Linux kernel's TCP and by libshake's stack (shake
# nginx), side by side in one run, in the same topology, with the same client.
#
# Both servers are nginx with its default process model (master + 2 workers, daemon on) and the
# same configuration but for the listen address (and their own pid and log files). Only the TCP
# implementation under the server changes; the client (ab, wrk) always runs on the kernel's TCP in
# namespace C.
#
#   packet  S(kernel 198.18.12.1 on pa; libshake 198.18.12.2 on packet:pa) <-veth-> C(198.18.12.3)
#             kernel nginx listens on 198.18.12.1:80, shake nginx on 198.18.12.2:80: the same veth,
#             the same client path; the only difference is the TCP under nginx.
#   tun     C(198.18.14.3) <-veth-> S(198.18.14.1, ip_forward=1, tun0 198.18.13.1; libshake
#           198.18.13.2 on tun:tun0)
#             kernel nginx listens on 198.18.14.1:80 (delivered locally off the veth); shake nginx
#             on 198.18.13.2:80, which is one forwarding hop more: veth -> S's kernel routes ->
#             TUN -> the stack (and back). The ratio includes that hop.
#
# Per repetition, for each server in turn (kernel, then libshake):
#   ab -n N -c C            (HTTP/1.0, a new connection per request)
#   ab -k -n N -c C         (keep-alive)
#   wrk -tT -cC -dD         (HTTP/1.1 keep-alive, for D seconds)
# requests/s and mean latency are the tools' own figures (ab: "Requests per second", "Time per
# request (mean)"; wrk: "Requests/sec", the Latency "Avg" column). Failed = ab's "Failed
# requests" + non-2xx responses, or wrk's socket errors + non-2xx/3xx responses; a run that
# exits non-zero or times out is counted as failed and left out of the medians.
#
# Usage (as root):  bench/apps/run.sh
# Environment:
#   REPS=3          repetitions; the table shows medians
#   N=20000         ab requests per run          C=50   concurrency (ab -c, wrk -c)
#   WRK_THREADS=2   wrk -t                       WRK_SECONDS=10   wrk -d
#   SCENARIOS="packet tun"
#   BUILD_DIR=build where the launcher and libshake.so are built (targets shake shake_preload)
#   OUT=bench/apps/last-run.txt   where the table is written (besides stdout)
#   TIMEOUT=120     cap per ab/wrk run, seconds
#   KEEP_TMP=1      keep the work directory (every run's output)
#   SOURCE_REV      what to call the measured source in the table (default: git describe --dirty)
#
# Everything happens in namespaces named shkapps-bench-<pid>-*, with addresses in 198.18.0.0/15
# only; a trap removes them (and every process inside them) on exit, failure or signal.
set -euo pipefail

REPS=${REPS:-3}
N=${N:-20000}
C=${C:-50}
WRK_THREADS=${WRK_THREADS:-2}
WRK_SECONDS=${WRK_SECONDS:-10}
SCENARIOS=${SCENARIOS:-"packet tun"}
BUILD_DIR=${BUILD_DIR:-build}
TIMEOUT=${TIMEOUT:-120}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/apps/last-run.txt}

if [[ $(id -u) -ne 0 ]]; then
  echo "run.sh: needs root (network namespaces)" >&2
  exit 2
fi
for tool in ip nginx ab wrk curl timeout; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (scripts/install-deps.sh)" >&2; exit 2; }
done

echo "== building shake shake_preload in $BUILD_DIR"
cmake --build "$BUILD_DIR" -j2 --target shake shake_preload >/dev/null
SHAKE=$ROOT/$BUILD_DIR/shim/shake
[[ -x $SHAKE && -f $ROOT/$BUILD_DIR/shim/libshake.so ]] ||
  { echo "run.sh: $BUILD_DIR/shim/shake or libshake.so not found" >&2; exit 2; }

if [[ -z ${SOURCE_REV:-} ]]; then
  SOURCE_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
fi

# shellcheck source=bench/lib/netns.sh
source "$ROOT/bench/lib/netns.sh"
bench_init shkapps-bench

# One configuration for both servers; only the listen address and the files differ.
nginx_conf() {  # nginx_conf TAG IP -> $WORK/nginx-TAG/nginx.conf
  local d=$WORK/nginx-$1
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
daemon on;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $d;
  proxy_temp_path $d;
  fastcgi_temp_path $d;
  uwsgi_temp_path $d;
  scgi_temp_path $d;
  server { listen $2:80; root $WORK/www; }
}
EOF
}

start_nginx() {  # start_nginx NS TAG IP [LAUNCHER ARGS...]: master + 2 workers, daemonized
  local ns=$1 tag=$2 ip=$3 d=$WORK/nginx-$2
  shift 3
  nginx_conf "$tag" "$ip"
  timeout 20 ip netns exec "$ns" "$@" nginx -c "$d/nginx.conf" -p "$d" >"$d/start.log" 2>&1 ||
    { cat "$d/start.log" "$d/error.log" >&2; echo "run.sh: nginx ($tag) did not start" >&2; exit 1; }
  NGINX_NS[$tag]=$ns
  local body=""
  for _ in $(seq 50); do
    body=$(timeout 5 ip netns exec "$CLIENT_NS" curl -s -m 2 "http://$ip/index.html" || true)
    [[ $body == "$(cat "$WORK/www/index.html")" ]] && break
    sleep 0.1
  done
  [[ $body == "$(cat "$WORK/www/index.html")" ]] ||
    { cat "$d/error.log" >&2; echo "run.sh: nginx ($tag) does not serve $ip" >&2; exit 1; }
  log "  nginx ($tag) serving on $ip:80: master $(cat "$d/nginx.pid"), workers $(pgrep -P "$(cat "$d/nginx.pid")" | tr '\n' ' ')"
}

stop_nginx() {  # stop_nginx TAG: nginx -s quit, then KILL after 10 s
  local tag=$1 d=$WORK/nginx-$1
  [[ -f $d/nginx.pid ]] || return 0
  local master
  master=$(cat "$d/nginx.pid")
  timeout 10 ip netns exec "${NGINX_NS[$tag]}" nginx -c "$d/nginx.conf" -p "$d" -s quit 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$master" 2>/dev/null || return 0
    sleep 0.1
  done
  log "  nginx ($tag) still running 10 s after quit; killed"
  for p in $(pgrep -P "$master" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  kill -KILL "$master" 2>/dev/null || true
}
declare -A NGINX_NS

# ---- measurements -----------------------------------------------------------------------------
RESULTS=$WORK/results  # lines: scenario test impl rep rps|fail latency_ms failed
: >"$RESULTS"

record() {  # record SCENARIO TEST IMPL REP RPS LAT FAILED
  echo "$*" >>"$RESULTS"
  log "  $1 $2 $3 rep=$4 -> $5 req/s, mean latency $6 ms, failed $7"
}

to_ms() {  # wrk's "850.12us" / "1.41ms" / "1.02s" -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) printf "%.3f", substr(v, 1, length(v) - 2) / 1000
    else if (v ~ /ms$/) printf "%.3f", substr(v, 1, length(v) - 2)
    else if (v ~ /s$/) printf "%.3f", substr(v, 1, length(v) - 1) * 1000
    else print "-" }'
}

run_ab() {  # run_ab URL TAG [-k]: prints "RPS LAT_MS FAILED"
  local url=$1 tag=$2 rc=0
  shift 2
  timeout -k 5 "$TIMEOUT" ip netns exec "$CLIENT_NS" ab -q "$@" -n "$N" -c "$C" "$url" \
    >"$WORK/$tag.out" 2>&1 || rc=$?
  cat "$WORK/$tag.out" >>"$WORK/details.log"
  local rps lat failed non2xx complete
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$WORK/$tag.out")
  lat=$(sed -n 's/^Time per request: *\([0-9.]*\) \[ms\] (mean)$/\1/p' "$WORK/$tag.out")
  complete=$(sed -n 's/^Complete requests: *\([0-9]*\)$/\1/p' "$WORK/$tag.out")
  failed=$(sed -n 's/^Failed requests: *\([0-9]*\)$/\1/p' "$WORK/$tag.out")
  non2xx=$(sed -n 's/^Non-2xx responses: *\([0-9]*\)$/\1/p' "$WORK/$tag.out")
  if [[ $rc -ne 0 || -z $rps || ${complete:-0} -ne $N ]]; then
    echo "fail - $(( ${failed:-0} + ${non2xx:-0} + N - ${complete:-0} ))"
  else
    echo "$rps $lat $(( ${failed:-0} + ${non2xx:-0} ))"
  fi
}

run_wrk() {  # run_wrk URL TAG: prints "RPS LAT_MS FAILED"
  local url=$1 tag=$2 rc=0
  timeout -k 5 "$TIMEOUT" ip netns exec "$CLIENT_NS" wrk -t"$WRK_THREADS" -c"$C" -d"${WRK_SECONDS}s" "$url" \
    >"$WORK/$tag.out" 2>&1 || rc=$?
  cat "$WORK/$tag.out" >>"$WORK/details.log"
  local rps lat errors non2xx
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$WORK/$tag.out")
  lat=$(awk '$1 == "Latency" { print $2; exit }' "$WORK/$tag.out")
  # Both lines appear only when their counts are not zero.
  errors=$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\)$/\1 \2 \3 \4/p' \
    "$WORK/$tag.out" | awk '{ print $1 + $2 + $3 + $4 }')
  non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)$/\1/p' "$WORK/$tag.out")
  if [[ $rc -ne 0 || -z $rps ]]; then
    echo "fail - $(( ${errors:-0} + ${non2xx:-0} ))"
  else
    echo "$rps $(to_ms "$lat") $(( ${errors:-0} + ${non2xx:-0} ))"
  fi
}

measure() {  # measure SCENARIO TEST IMPL REP CMD...
  local sc=$1 test=$2 impl=$3 rep=$4
  shift 4
  # In the background, so that a signal runs the cleanup trap at once instead of after the run
  # (bash defers traps while a foreground command runs).
  "$@" >"$WORK/measure.res" &
  MEASURE_PID=$!
  wait "$MEASURE_PID" || true
  MEASURE_PID=
  local res
  res=$(cat "$WORK/measure.res")
  # shellcheck disable=SC2086
  record "$sc" "$test" "$impl" "$rep" $res
}

bench_pair() {  # bench_pair SCENARIO KERNEL_IP LIBSHAKE_IP
  local sc=$1 kip=$2 sip=$3 rep impl ip
  for rep in $(seq "$REPS"); do
    for impl in kernel libshake; do
      ip=$kip; [[ $impl == libshake ]] && ip=$sip
      measure "$sc" ab "$impl" "$rep" run_ab "http://$ip/index.html" "$sc-$impl-ab-$rep"
      measure "$sc" ab-k "$impl" "$rep" run_ab "http://$ip/index.html" "$sc-$impl-abk-$rep" -k
      measure "$sc" wrk "$impl" "$rep" run_wrk "http://$ip/index.html" "$sc-$impl-wrk-$rep"
    done
  done
}

# ---- payload: a page the size of nginx's default index.html ---------------------------------
mkdir -p "$WORK/www"
{
  echo "<!DOCTYPE html><html><head><title>libshake bench</title></head><body>"
  for _ in $(seq 9); do echo "<p>libshake serves this page from its own userspace TCP/IPv4 stack.</p>"; done
  echo "</body></html>"
} >"$WORK/www/index.html"
log "== nginx (master + 2 workers) under ab -n $N -c $C, ab -k, wrk -t$WRK_THREADS -c$C -d${WRK_SECONDS}s;" \
    "page $(stat -c %s "$WORK/www/index.html") bytes; REPS=$REPS; work $WORK"
START=$(date +%s)

# ---- 1. AF_PACKET: both servers on the same veth end --------------------------------------------
if [[ " $SCENARIOS " == *" packet "* ]]; then
  log "== packet: S(kernel 198.18.12.1, libshake 198.18.12.2 on packet:pa) <-veth-> C(198.18.12.3)"
  S=$PREFIX-pS CLIENT_NS=$PREFIX-pC
  add_ns "$S"; add_ns "$CLIENT_NS"
  veth "$S" pa "$CLIENT_NS" pb
  ip -n "$S" addr add 198.18.12.1/24 dev pa
  ip -n "$CLIENT_NS" addr add 198.18.12.3/24 dev pb
  start_nginx "$S" pk 198.18.12.1
  start_nginx "$S" ps 198.18.12.2 "$SHAKE" --device packet:pa --addr 198.18.12.2/24 --
  bench_pair packet 198.18.12.1 198.18.12.2
  stop_nginx pk
  stop_nginx ps
fi

# ---- 2. TUN: the stack behind S's kernel -------------------------------------------------------
if [[ " $SCENARIOS " == *" tun "* ]]; then
  log "== tun: C(198.18.14.3) <-veth-> S(198.18.14.1, fwd, tun0 198.18.13.1; libshake 198.18.13.2 on tun:tun0)"
  S=$PREFIX-tS CLIENT_NS=$PREFIX-tC
  add_ns "$S"; add_ns "$CLIENT_NS"
  veth "$S" s0 "$CLIENT_NS" c0
  ip -n "$S" addr add 198.18.14.1/24 dev s0
  ip -n "$CLIENT_NS" addr add 198.18.14.3/24 dev c0
  ip -n "$CLIENT_NS" route add 198.18.13.0/24 via 198.18.14.1
  nsx "$S" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$S" tuntap add dev tun0 mode tun
  ip -n "$S" link set tun0 up
  ip -n "$S" addr add 198.18.13.1/24 dev tun0
  start_nginx "$S" tk 198.18.14.1
  start_nginx "$S" ts 198.18.13.2 "$SHAKE" --device tun:tun0 --addr 198.18.13.2/24 --gateway 198.18.13.1 --
  bench_pair tun 198.18.14.1 198.18.13.2
  stop_nginx tk
  stop_nginx ts
fi

# ---- table -----------------------------------------------------------------------------------
ELAPSED=$(( $(date +%s) - START ))
mkdir -p "$(dirname "$OUT")"
{
  echo "nginx (master + 2 workers) on the Linux kernel's TCP vs on libshake (shake nginx), median of $REPS,"
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "source $SOURCE_REV, $BUILD_DIR ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null))"
  echo "ab: -n $N -c $C (ab-k: with -k); wrk: -t$WRK_THREADS -c$C -d${WRK_SECONDS}s; one $(stat -c %s "$WORK/www/index.html")-byte page"
  awk '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      if (n == 0) return "-"
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
      key = $1 " " $2; k = key " " $3
      if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
      if ($5 ~ /^[0-9.]+$/) { rps[k] = rps[k] " " $5; lat[k] = lat[k] " " $6 } else runs_failed[k]++
      failed[k] += $7
    }
    END {
      printf "%-8s %-6s %12s %12s %7s %10s %10s %9s %9s\n", "scenario", "test", "kernel r/s", "libshake r/s",
             "ratio", "kernel ms", "libshake ms", "failed k", "failed l"
      for (i = 1; i <= nk; i++) {
        split(order[i], kk, " ")
        kr = median(rps[order[i] " kernel"]); lr = median(rps[order[i] " libshake"])
        kl = median(lat[order[i] " kernel"]); ll = median(lat[order[i] " libshake"])
        ratio = (kr != "-" && lr != "-" && kr > 0) ? sprintf("%.2f", lr / kr) : "-"
        fk = failed[order[i] " kernel"] + 0; fl = failed[order[i] " libshake"] + 0
        if (runs_failed[order[i] " kernel"]) fk = fk " (" runs_failed[order[i] " kernel"] " runs)"
        if (runs_failed[order[i] " libshake"]) fl = fl " (" runs_failed[order[i] " libshake"] " runs)"
        printf "%-8s %-6s %12s %12s %7s %10s %10s %9s %9s\n", kk[1], kk[2],
               (kr == "-" ? "-" : sprintf("%.0f", kr)), (lr == "-" ? "-" : sprintf("%.0f", lr)), ratio,
               (kl == "-" ? "-" : sprintf("%.3f", kl)), (ll == "-" ? "-" : sprintf("%.3f", ll)), fk, fl
      }
    }' "$RESULTS"
  echo "r/s = requests per second; ms = mean latency per request (ab: Time per request (mean);"
  echo "wrk: Latency Avg); ratio = libshake r/s / kernel r/s; failed = summed over the repetitions"
  echo "(ab: failed + non-2xx + incomplete; wrk: socket errors + non-2xx/3xx), \"(n runs)\" = runs"
  echo "that exited non-zero or timed out and are left out of the medians."
  echo "packet: both servers on the same veth end in S (the kernel at .1, libshake at .2 on pa); the"
  echo "        client path is identical."
  echo "tun:    libshake's path has one forwarding hop more (C -> veth -> S's kernel routes -> TUN ->"
  echo "        the stack) than the kernel's (C -> veth -> S's kernel); the ratio includes that hop."
  echo "The client (ab, wrk) shares the machine's cores with the servers."
  echo "total run time ${ELAPSED}s"
} >"$WORK/table.txt"
echo
cat "$WORK/table.txt"
cp "$WORK/table.txt" "$OUT"
{ echo; echo "---- per run"; grep -E '^  (packet|tun|nginx)|^==' "$WORK/details.log"; } >>"$OUT"
echo
echo "table and per-run figures written to $OUT"
FAILED=$(awk '$5 !~ /^[0-9.]+$/ || $7 != 0' "$RESULTS" | wc -l)
[[ $FAILED -eq 0 ]]
