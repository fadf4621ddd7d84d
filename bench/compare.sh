#!/usr/bin/env bash
# bench/compare.sh — issue 9's table: every workload on the Linux kernel's TCP and on libshake,
# side by side in one run, and one table of raw figures, libshake/kernel ratios, each row's goal
# and floor, and the host's load. bench/README.md says how to read it.
#
#   sudo bench/compare.sh                                   # everything: about 40 minutes
#   sudo ROWS=sockperf SCENARIOS=packet REPS=1 SOCKPERF_SECONDS=2 bench/compare.sh
#   sudo SMOKE=1 bench/compare.sh                           # every row, tiny sizes (the CI smoke)
#
# For each scenario (packet, tun), repetition and server, the kernel's round and libshake's round
# run one after the other (kernel first in odd repetitions, libshake first in even ones), each
# with a freshly started server: the same program, the same configuration but for the listen
# address, the same client in the same namespace. Only one server runs at a time. The figures are
# the client tools' own; the table shows the medians over the repetitions.
#
# Rows (ROWS selects them by these names; default: all):
#   ab-c32-w1 ab-c50-w1 ab-c32-w2 ab-c50-w2   nginx (1 or 2 workers), ab -n AB_N -c32/-c50,
#                                            HTTP/1.0: a new connection per request
#   wrk-t1-c32 wrk-t2-c50                    nginx (2 workers), wrk -d WRK_SECONDS, keep-alive
#   sockperf                                 sockperf ping-pong --tcp against sockperf server
#                                            --tcp, unloaded: p50 and p99 (its percentiles)
#   iperf3-up iperf3-down                    iperf3, one stream, client -> server and -R
#   redis                                    redis-benchmark -q -n REDIS_N -c50 -t get,set
#   scaling                                  ab -c50: 2 workers / 1 worker, per implementation
#                                            (measures ab-c50-w1 and ab-c50-w2)
#   idle                                     nginx (2 workers) holding IDLE_CONNS idle
#                                            connections: CPU ticks over IDLE_SECONDS of its
#                                            processes and of any shake-keeper in our namespaces
#   conns                                    CONNS concurrent connections from CONN_SRCS source
#                                            addresses to tools/hold_server.py (as many processes
#                                            as the open-files limit needs): how many are held,
#                                            the stack's memory per connection (`shake stat
#                                            --json`), and the server's PSS growth per connection
#
# Topologies (addresses in 198.18.0.0/15 only; namespaces shkcmp-<pid>-*):
#   packet  S: veth pa, kernel 198.18.12.1/24, libshake 198.18.12.2/24 on packet:pa
#           C: veth pb 198.18.12.3/24 (+ .10 ... for the conns/idle sources); every client
#           Both servers sit on the same veth end; only the TCP under the server differs.
#   tun     T: tun0 198.18.13.1/24 (+ .10 ...), libshake 198.18.13.2/24 on tun:tun0; every client;
#              veth t0 198.18.14.3/24 (+ .10 ...)
#           K: veth k0 198.18.14.1/24, the kernel's server
#           The client reaches libshake directly over tun0 and the kernel's server directly over
#           one veth: both are one virtual link from the same client, none forwards.
#
# Environment (knobs):
#   REPS=3  ROWS=all  SCENARIOS="packet tun"  BUILD_DIR=build  OUT=bench/compare-last-run.txt
#   AB_N=20000  WRK_SECONDS=10  SOCKPERF_SECONDS=10  IPERF_SECONDS=10
#   REDIS_N=100000  IDLE_CONNS=10000  IDLE_SECONDS=10  CONNS=100000  CONN_SRCS=8
#   CONNECT_SECONDS=180 (bound on opening the CONNS connections)  TIMEOUT=120 (cap per client run)
#   SOCKPERF_SPIN_US=0  libshake's sockperf server spins this long before sleeping
#           (SHAKE_SPIN_US; the kernel's round is not affected, its busy_poll stays off)
#   PERF=1  also perf record -a -g -e cpu-clock during the first ab-c50-w2 round of each side
#           and print the top 15 symbols (perf report --no-children --sort sym)
#   SMOKE=1 tiny defaults for every size and duration (REPS=1, STOP_ON_FAIL=1; an explicit knob
#           still wins)
#   STOP_ON_FAIL=1 end the run after the first round in which something failed (the table of
#           what was measured is still written)
#   IMPLS="kernel libshake"  one side only, for trying the script out (no ratios then)
#   KEEP_TMP=1 keep the work directory (every run's raw output)   SOURCE_REV (default: git describe)
#
# Exit status: 0 if every run produced its figure with no failed request, refused, reset or
# dropped connection; 1 otherwise (the table is printed either way); 2 on a bad configuration.
# No speed is asserted: a row that misses its floor is marked in the table, not in the status.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ME=compare.sh
die() { echo "$ME: $*" >&2; exit 2; }
(($# == 0)) || die "takes no arguments (the knobs are environment variables: see the header of bench/compare.sh)"

ALL_ROWS="ab-c32-w1 ab-c50-w1 ab-c32-w2 ab-c50-w2 wrk-t1-c32 wrk-t2-c50 sockperf iperf3-up iperf3-down redis scaling idle conns"
if [[ ${SMOKE:-0} == 1 ]]; then
  : "${REPS:=1}" "${AB_N:=200}" "${WRK_SECONDS:=1}" "${SOCKPERF_SECONDS:=1}" "${IPERF_SECONDS:=1}"
  : "${REDIS_N:=2000}" "${IDLE_CONNS:=100}" "${IDLE_SECONDS:=1}" "${CONNS:=500}" "${CONN_SRCS:=2}"
  : "${CONNECT_SECONDS:=30}" "${TIMEOUT:=30}" "${STOP_ON_FAIL:=1}"
fi
REPS=${REPS:-3}
SOCKPERF_SPIN_US=${SOCKPERF_SPIN_US:-0}
ROWS=${ROWS:-$ALL_ROWS}
SCENARIOS=${SCENARIOS:-"packet tun"}
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-bench/compare-last-run.txt}
AB_N=${AB_N:-20000}
WRK_SECONDS=${WRK_SECONDS:-10}
SOCKPERF_SECONDS=${SOCKPERF_SECONDS:-10}
IPERF_SECONDS=${IPERF_SECONDS:-10}
REDIS_N=${REDIS_N:-100000}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_SECONDS=${IDLE_SECONDS:-10}
CONNS=${CONNS:-100000}
CONN_SRCS=${CONN_SRCS:-8}
CONNECT_SECONDS=${CONNECT_SECONDS:-180}
TIMEOUT=${TIMEOUT:-120}
PERF=${PERF:-0}
STOP_ON_FAIL=${STOP_ON_FAIL:-0}
IMPLS=${IMPLS:-"kernel libshake"}

# ---- configuration checks: one line naming the fix ------------------------------------------
for knob in REPS AB_N WRK_SECONDS SOCKPERF_SECONDS IPERF_SECONDS REDIS_N IDLE_CONNS \
            IDLE_SECONDS CONNS CONN_SRCS CONNECT_SECONDS TIMEOUT; do
  [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob=${!knob} must be a positive integer, e.g. $knob=3"
done
[[ $SOCKPERF_SPIN_US =~ ^[0-9]+$ ]] && ((SOCKPERF_SPIN_US <= 1000000)) ||
  die "SOCKPERF_SPIN_US=$SOCKPERF_SPIN_US must be microseconds from 0 to 1000000, e.g. SOCKPERF_SPIN_US=50"
((CONN_SRCS <= 32)) || die "CONN_SRCS=$CONN_SRCS: at most 32 source addresses"
for r in $ROWS; do
  [[ " $ALL_ROWS " == *" $r "* ]] || die "ROWS: no row '$r'; choose from: $ALL_ROWS"
done
for s in $IMPLS; do
  [[ $s == kernel || $s == libshake ]] || die "IMPLS: no implementation '$s'; choose from: kernel libshake"
done
for s in $SCENARIOS; do
  [[ $s == packet || $s == tun ]] || die "SCENARIOS: no scenario '$s'; choose from: packet tun"
done
want() { [[ " $ROWS " == *" $1 "* ]]; }
if want scaling; then  # scaling is ab -c50 with 2 workers over 1 worker
  want ab-c50-w1 || ROWS="$ROWS ab-c50-w1"
  want ab-c50-w2 || ROWS="$ROWS ab-c50-w2"
fi
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth, TUN): run it with sudo"
[[ $BUILD_DIR == /* ]] || BUILD_DIR=$ROOT/$BUILD_DIR
[[ -f $BUILD_DIR/CMakeCache.txt ]] ||
  die "BUILD_DIR=$BUILD_DIR is not a configured build: cmake -S $ROOT -B $BUILD_DIR -G Ninja -DCMAKE_BUILD_TYPE=Release"

need=(ip timeout python3 curl nginx)
{ want ab-c32-w1 || want ab-c50-w1 || want ab-c32-w2 || want ab-c50-w2; } && need+=(ab)
{ want wrk-t1-c32 || want wrk-t2-c50; } && need+=(wrk)
want sockperf && need+=(sockperf)
{ want iperf3-up || want iperf3-down; } && need+=(iperf3)
want redis && need+=(redis-server redis-cli redis-benchmark)
[[ $PERF == 1 ]] && need+=(perf)
for tool in "${need[@]}"; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

# Every process (servers, holders) may open as many files as the hard limit allows; a server
# worker keeps 256 for itself.
ulimit -Sn "$(ulimit -Hn)"
PER_PROC=$(( $(ulimit -Hn) - 256 ))
((PER_PROC <= 60000)) || PER_PROC=60000
((PER_PROC >= 1024)) || die "the hard limit on open files, $(ulimit -Hn), is too low: ulimit -Hn 65536 (as root)"

# ---- build ------------------------------------------------------------------------------------
# shake-keeper (the stack's keeper process) is built when the tree has it; the first build
# re-runs cmake if CMakeLists changed, so the target list is read after it.
targets=(shake shake_preload)
build() {  # in the background, so that a signal ends the build too instead of orphaning it
  echo "== building $* in $BUILD_DIR"
  local rc=0
  cmake --build "$BUILD_DIR" -j2 --target "$@" >"$BUILD_DIR/compare-build.log" 2>&1 &
  BUILD_PID=$!
  trap 'kill -TERM "$BUILD_PID" 2>/dev/null; wait "$BUILD_PID" 2>/dev/null; exit 143' TERM INT HUP
  wait "$BUILD_PID" || rc=$?
  trap - TERM INT HUP
  if ((rc != 0)); then
    tail -n 20 "$BUILD_DIR/compare-build.log" >&2
    echo "$ME: the build failed: cmake --build $BUILD_DIR --target $*" >&2
    exit 2
  fi
}
build "${targets[@]}"
# (The list is read whole: grep -q would close the pipe early, and with pipefail the SIGPIPE
# cmake gets would read as "no such target".)
if [[ $(cmake --build "$BUILD_DIR" --target help 2>/dev/null) == *$'\n'shake-keeper:* ]]; then
  targets+=(shake-keeper)
  build shake-keeper
fi
SHAKE=$BUILD_DIR/shim/shake
[[ -x $SHAKE && -f $BUILD_DIR/shim/libshake.so ]] || die "$SHAKE or libshake.so missing after the build"
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt")
SOURCE_REV=${SOURCE_REV:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
PY=$(python3 -c 'import sys; print(sys.executable)')  # the interpreter, not a pyenv shim script
TOOLS=$ROOT/bench/tools

# shellcheck source=bench/lib/netns.sh
source "$ROOT/bench/lib/netns.sh"
bench_init shkcmp
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
mkdir -p "$WORK/runs" "$WORK/www"
RESULTS=$WORK/results   # SCENARIO ROW IMPL REP METRIC VALUE FAILED (compare_table.py reads it)
: >"$RESULTS"
{
  echo "<!DOCTYPE html><html><head><title>libshake bench</title></head><body>"
  for _ in $(seq 9); do echo "<p>libshake serves this page from its own userspace TCP/IPv4 stack.</p>"; done
  echo "</body></html>"
} >"$WORK/www/index.html"
PAGE=$(cat "$WORK/www/index.html")

record() {  # record SC ROW IMPL REP METRIC VALUE FAILED
  echo "$*" >>"$RESULTS"
  log "    -> $5=$6 failed=$7"
}

# A client command in the client's namespace, capped by TIMEOUT, its output kept. Run in the
# background so that a signal reaches the cleanup trap at once (bash defers traps while a
# foreground command runs). Sets RUN_RC; the output is in $RUN_OUT.
run_client() {  # run_client TAG CMD...
  RUN_OUT=$WORK/runs/$1.out
  shift
  RUN_RC=0
  timeout -k 5 "$TIMEOUT" ip netns exec "$CLIENT_NS" "$@" >"$RUN_OUT" 2>&1 &
  MEASURE_PID=$!
  wait "$MEASURE_PID" || RUN_RC=$?
  MEASURE_PID=
  { echo "---- $* (exit $RUN_RC)"; cat "$RUN_OUT"; } >>"$WORK/details.log"
  ((RUN_RC != 124)) || log "    timed out after ${TIMEOUT}s"
}

# ---- servers ----------------------------------------------------------------------------------
# The same program and configuration for both implementations; libshake's is started under
# `shake` with the scenario's device and address. SRV_PIDS are the server's processes.
SRV_PIDS=()
SRV_KIND=
launcher() {  # launcher IMPL: the words that go before the server's command
  LAUNCH=()
  if [[ $1 == libshake ]]; then LAUNCH=("$SHAKE" "${SHAKE_ARGS[@]}" --); fi
  return 0
}

# No worker_rlimit_nofile: the workers inherit the open-files limit, raised to the hard limit
# at the top (and libshake's nginx stops accepting, EINVAL, with that directive).
nginx_conf() {  # nginx_conf DIR IP WORKERS CONNECTIONS ACCEPT_MUTEX
  local d=$1
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
daemon on;
worker_processes $3;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections $4; accept_mutex $5; }
http {
  access_log off;
  client_header_timeout 600s;
  client_body_temp_path $d;
  proxy_temp_path $d;
  fastcgi_temp_path $d;
  uwsgi_temp_path $d;
  scgi_temp_path $d;
  server {
    listen $2:80 backlog=4096;
    root $WORK/www;
    location = /shkcmp-status { stub_status; }
  }
}
EOF
}

start_nginx() {  # start_nginx IMPL WORKERS CONNECTIONS [ACCEPT_MUTEX]
  local impl=$1 ns=${SRV_NS[$1]} ip=${SRV_IP[$1]} d=$WORK/nginx-$1-$2-$3 body=""
  nginx_conf "$d" "$ip" "$2" "$3" "${4:-off}"
  rm -f "$d/nginx.pid"
  launcher "$impl"
  if ! timeout 20 ip netns exec "$ns" "${LAUNCH[@]}" nginx -c "$d/nginx.conf" -p "$d" >"$d/start.log" 2>&1; then
    log "    nginx ($impl) did not start: $(tail -n 3 "$d/start.log" "$d/error.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  fi
  SRV_KIND=nginx SRV_DIR=$d SRV_NSNAME=$ns
  local until=$(( $(date +%s) + 20 ))
  while (( $(date +%s) < until )); do
    [[ -s $d/nginx.pid ]] &&
      body=$(timeout 3 ip netns exec "$CLIENT_NS" curl -s -m 2 "http://$ip/index.html" || true)
    [[ $body == "$PAGE" ]] && break
    sleep 0.1
  done
  local master
  master=$(cat "$d/nginx.pid" 2>/dev/null || true)
  if [[ -n $master ]]; then
    mapfile -t SRV_PIDS < <(echo "$master"; pgrep -P "$master" || true)
  fi
  if [[ $body != "$PAGE" ]]; then
    log "    nginx ($impl) does not serve http://$ip/: $(tail -n 3 "$d/error.log" 2>/dev/null | tr '\n' ' ')"
    return 1
  fi
  log "    nginx ($impl, $2 workers) on $ip:80: pids ${SRV_PIDS[*]}"
}

start_bg() {  # start_bg IMPL NAME PROBE-FUNCTION CMD...: a server that stays in the foreground
  local impl=$1 name=$2 probe=$3 ns=${SRV_NS[$1]}
  shift 3
  launcher "$impl"
  SRV_LOG=$WORK/runs/server-$name-$impl.log
  : >"$SRV_LOG"
  ip netns exec "$ns" "${LAUNCH[@]}" "$@" >>"$SRV_LOG" 2>&1 &
  local pid=$!
  BG_PIDS+=("$pid")
  SRV_KIND=bg SRV_PIDS=("$pid")
  local until=$(( $(date +%s) + 20 ))
  while (( $(date +%s) < until )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "    $name ($impl) exited at start: $(tail -n 3 "$SRV_LOG" | tr '\n' ' ')"
      return 1
    fi
    if "$probe" "${SRV_IP[$impl]}"; then
      mapfile -t SRV_PIDS < <(echo "$pid"; pgrep -P "$pid" || true)
      log "    $name ($impl) on ${SRV_IP[$impl]}: pids ${SRV_PIDS[*]}"
      return 0
    fi
    sleep 0.2
  done
  log "    $name ($impl) does not answer on ${SRV_IP[$impl]} after 20 s: $(tail -n 3 "$SRV_LOG" | tr '\n' ' ')"
  return 1
}

# Readiness probes, each bounded to a few seconds. The port must accept a connection first (a
# bare connect and close); iperf3 is only probed once it says it listens, because a probe that
# dies half-way leaves the iperf3 server waiting in its one test.
probe_port() {  # probe_port IP PORT
  timeout 2 ip netns exec "$CLIENT_NS" bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}
probe_sockperf() { probe_port "$1" 11111; }
probe_iperf3() {
  grep -q "Server listening on 5201" "$SRV_LOG" &&
    timeout 8 ip netns exec "$CLIENT_NS" iperf3 -c "$1" -p 5201 -n 64K --connect-timeout 2000 >/dev/null 2>&1
}
probe_tcp80() { probe_port "$1" 80; }
probe_redis() {
  probe_port "$1" 6379 &&
    [[ $(timeout 3 ip netns exec "$CLIENT_NS" redis-cli -h "$1" -p 6379 ping 2>/dev/null) == PONG ]]
}

stop_server() {  # stop_server IMPL: quit (nginx) or TERM, KILL after 15 s
  local impl=$1 p alive
  if [[ $SRV_KIND == nginx ]]; then
    timeout 10 ip netns exec "$SRV_NSNAME" nginx -c "$SRV_DIR/nginx.conf" -p "$SRV_DIR" -s quit 2>/dev/null || true
  else
    for p in "${SRV_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  fi
  for _ in $(seq 150); do
    alive=0
    for p in "${SRV_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  if ((alive)); then
    log "    server ($impl) still running 15 s after the stop; killed"
    for p in "${SRV_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  for p in "${SRV_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  SRV_PIDS=() SRV_KIND=
  stop_keepers
}

# The keeper outlives the programs on its stack (TIME-WAIT, orphans) and, in packet mode, reads
# the veth while it is busy, so one left from libshake's round would work during the kernel's
# next round. Every round ends with none: each is ended (TERM, KILL after 5 s) and logged.
stop_keepers() {
  local ks p t
  ks=$(keeper_pids)
  [[ -n $ks ]] || return 0
  for p in $ks; do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
    log "    shake-keeper $p still running after the server (${t:-?} ticks in its life): ended"
    kill -TERM "$p" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    [[ -n $(keeper_pids) ]] || return 0
    sleep 0.1
  done
  for p in $(keeper_pids); do kill -KILL "$p" 2>/dev/null || true; done
  log "    shake-keeper did not end on TERM within 5 s: killed"
}

keeper_pids() {  # any shake-keeper in our namespaces
  local ns p out=""
  for ns in "${NAMESPACES[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do
      [[ $(cat "/proc/$p/comm" 2>/dev/null) == shake-keeper ]] && out+="$p "
    done
  done
  echo "$out"
}

# The server's memory: the summed proportional anonymous and shared-memory (the libshake arena is
# a memfd) resident size of its processes and keepers, KiB. File pages are left out: their share
# changes whenever another process maps the same binary (the holder is Python too).
pss_kib() {
  local p total=0 v
  for p in "${SRV_PIDS[@]}" $(keeper_pids); do
    v=$(awk '$1 == "Pss_Anon:" || $1 == "Pss_Shmem:" { s += $2 } END { print s + 0 }' \
      "/proc/$p/smaps_rollup" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# `shake stat --json` in the server's namespace: "MEMORY_BYTES CONNECTIONS" of the first stack,
# or nothing when this build has no such sub-command (then the figure is "n/a").
stack_stat() {
  local out
  out=$(timeout 10 ip netns exec "${SRV_NS[libshake]}" env "${STAT_ENV[@]}" "$SHAKE" stat --json 2>/dev/null) || return 0
  "$PY" -c 'import json, sys
try:
    s = json.loads(sys.stdin.read())["stacks"][0]
    print(int(s["memory_bytes"]), int(s["connections"]))
except Exception:
    pass' <<<"$out"
}

# ---- measurements -----------------------------------------------------------------------------
measure_ab() {  # measure_ab SC ROW IMPL REP CONCURRENCY
  local url="http://${SRV_IP[$3]}/index.html" perf_data=""
  if [[ $PERF == 1 && $2 == ab-c50-w2 && $4 == 1 ]]; then
    perf_data=$WORK/perf-$1-$3.data
    perf record -a -g -e cpu-clock -o "$perf_data" >"$WORK/runs/perf-$1-$3.log" 2>&1 &
    PERF_PID=$!
    BG_PIDS+=("$PERF_PID")
    sleep 0.5
  fi
  run_client "$1-$2-$3-$4" ab -q -n "$AB_N" -c "$5" "$url"
  if [[ -n $perf_data ]]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    perf report -i "$perf_data" --no-children --sort sym --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9.]+%' | head -15 >"$WORK/perf-$1-$3.txt" || true
    log "    perf: top symbols in $WORK/perf-$1-$3.txt"
  fi
  local f=$RUN_OUT rps complete failed non2xx
  rps=$(sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p' "$f")
  complete=$(sed -n 's/^Complete requests: *\([0-9]*\)$/\1/p' "$f")
  failed=$(sed -n 's/^Failed requests: *\([0-9]*\)$/\1/p' "$f")
  non2xx=$(sed -n 's/^Non-2xx responses: *\([0-9]*\)$/\1/p' "$f")
  local nfail=$(( ${failed:-0} + ${non2xx:-0} + AB_N - ${complete:-0} ))
  if [[ $RUN_RC -ne 0 || -z $rps || ${complete:-0} -ne $AB_N ]]; then rps=fail; fi
  record "$1" "$2" "$3" "$4" main "$rps" "$nfail"
}

measure_wrk() {  # measure_wrk SC ROW IMPL REP THREADS CONNECTIONS
  run_client "$1-$2-$3-$4" wrk -t"$5" -c"$6" -d"${WRK_SECONDS}s" "http://${SRV_IP[$3]}/index.html"
  local f=$RUN_OUT rps errors non2xx
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$f")
  # Both lines appear only when their counts are not zero.
  errors=$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\)$/\1 \2 \3 \4/p' \
    "$f" | awk '{ print $1 + $2 + $3 + $4 }')
  non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)$/\1/p' "$f")
  [[ $RUN_RC -eq 0 && -n $rps ]] || rps=fail
  record "$1" "$2" "$3" "$4" main "$rps" "$(( ${errors:-0} + ${non2xx:-0} ))"
}

measure_sockperf() {  # p50 and p99 from sockperf's own percentile lines, in usec
  run_client "$1-$2-$3-$4" sockperf ping-pong --tcp -i "${SRV_IP[$3]}" -p 11111 -t "$SOCKPERF_SECONDS"
  local f=$RUN_OUT p50 p99 lost
  p50=$(sed -n 's/.*---> percentile 50\.000 = *\([0-9.]*\).*/\1/p' "$f")
  p99=$(sed -n 's/.*---> percentile 99\.000 = *\([0-9.]*\).*/\1/p' "$f")
  lost=$(sed -n 's/.*# dropped messages = \([0-9]*\); # duplicated messages = \([0-9]*\); # out-of-order messages = \([0-9]*\).*/\1 \2 \3/p' "$f" |
    awk '{ s += $1 + $2 + $3 } END { print s + 0 }')
  if [[ $RUN_RC -ne 0 || -z $p50 || -z $p99 ]]; then p50=fail p99=fail; fi
  record "$1" "$2" "$3" "$4" main "$p50" "$lost"
  record "$1" "$2" "$3" "$4" p99 "$p99" 0
}

measure_iperf3() {  # measure_iperf3 SC ROW IMPL REP [-R]: the receiver's bits/s, in Gbit/s
  local extra=()
  [[ -z ${5:-} ]] || extra=("$5")
  run_client "$1-$2-$3-$4" iperf3 -c "${SRV_IP[$3]}" -p 5201 -t "$IPERF_SECONDS" -J "${extra[@]}"
  local gbps
  gbps=$("$PY" -c 'import json, sys
try:
    d = json.load(open(sys.argv[1]))
    if "error" in d:
        raise ValueError(d["error"])
    print("%.4f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception as e:
    print("fail")' "$RUN_OUT") || gbps=fail
  [[ $RUN_RC -eq 0 ]] || gbps=fail
  record "$1" "$2" "$3" "$4" main "$gbps" "$([[ $gbps == fail ]] && echo 1 || echo 0)"
}

measure_redis() {  # GET and SET requests/s as redis-benchmark -q prints them
  run_client "$1-$2-$3-$4" redis-benchmark -h "${SRV_IP[$3]}" -p 6379 -q -n "$REDIS_N" -c 50 -t get,set
  local get set
  get=$(tr '\r' '\n' <"$RUN_OUT" | sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  set=$(tr '\r' '\n' <"$RUN_OUT" | sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  local nfail=0
  if [[ $RUN_RC -ne 0 || -z $get || -z $set ]] || grep -qi 'error' "$RUN_OUT"; then
    get=fail set=fail nfail=1
  fi
  record "$1" "$2" "$3" "$4" main "$get" "$nfail"
  record "$1" "$2" "$3" "$4" set "$set" 0
}

# idle and conns: hold_conns.py opens COUNT connections from the scenario's source addresses and
# holds them; once they are open, the row measures, then the holder is told to stop.
hold_start() {  # hold_start TAG IMPL COUNT -> HOLD_PID; waits until the connect phase is over
  local ready=$WORK/runs/$1.ready
  HOLD_JSON=$WORK/runs/$1.json HOLD_ERR=$WORK/runs/$1.err
  rm -f "$ready"
  # -k 120: closing 100,000 sockets after the summary takes a while, and timeout's KILL also
  # follows our own TERM after that long.
  timeout -k 120 $((CONNECT_SECONDS + 600)) ip netns exec "$CLIENT_NS" "$PY" "$TOOLS/hold_conns.py" \
    --dst "${SRV_IP[$2]}:80" --src "${SRCS[$2]}" --count "$3" --ready "$ready" \
    --deadline "$CONNECT_SECONDS" --give-up 2048 --hold 600 >"$HOLD_JSON" 2>"$HOLD_ERR" &
  HOLD_PID=$!
  BG_PIDS+=("$HOLD_PID")
  for _ in $(seq $(( (CONNECT_SECONDS + 30) * 5 ))); do
    [[ -f $ready ]] && break
    kill -0 "$HOLD_PID" 2>/dev/null || break
    sleep 0.2
  done
  HOLD_READY=$(cat "$ready" 2>/dev/null || echo "no ready line")
  log "    holder: $HOLD_READY"
  sleep 1  # the server's accept burst is over before anything is measured
}

hold_stop() {  # hold_stop -> HOLD_SUMMARY "OPEN_AT_END FAILED" (failed = not held + dropped)
  kill -TERM "$HOLD_PID" 2>/dev/null || true
  wait "$HOLD_PID" 2>/dev/null || true
  { echo "---- hold_conns"; cat "$HOLD_ERR" "$HOLD_JSON"; } >>"$WORK/details.log"
  HOLD_SUMMARY=$("$PY" -c 'import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    print(d["open_at_end"], d["attempted"] - d["established"] + d["dropped"], json.dumps(d["errors"]))
except Exception:
    print("fail", sys.argv[2], "{}")' "$HOLD_JSON" "$1") || HOLD_SUMMARY="fail $1 {}"
  log "    holder summary: $(tail -n 1 "$HOLD_JSON" 2>/dev/null)"
}

# The kernel's listen-queue and reset counters in a namespace (nstat), for the log: they say why
# a kernel server loses connections that the client saw established.
kernel_counters() {  # kernel_counters NS
  ip netns exec "$1" nstat -az 2>/dev/null | awk '$1 ~ /^(TcpExtListenOverflows|TcpExtListenDrops|TcpExtTCPReqQFullDrop|TcpExtSyncookiesSent|TcpExtTCPAbortOnData|TcpExtTCPAbortOnMemory|TcpEstabResets|TcpOutRsts|TcpAttemptFails)$/ { printf "%s=%s ", $1, $2 }'
}

nginx_active() {  # nginx's own count of open client connections (less the status request)
  local a
  a=$(timeout 5 ip netns exec "$CLIENT_NS" curl -s -m 3 "http://${SRV_IP[$1]}/shkcmp-status" |
    sed -n 's/^Active connections: *\([0-9]*\).*/\1/p')
  [[ -n $a ]] && echo $((a - 1)) || echo "-"
}

measure_idle() {  # measure_idle SC ROW IMPL REP
  hold_start "$1-$2-$3-$4" "$3" "$IDLE_CONNS"
  log "    nginx's active connections: $(nginx_active "$3")"
  local ticks rc=0
  ticks=$("$PY" "$TOOLS/cputicks.py" --seconds "$IDLE_SECONDS" --pids "$(IFS=,; echo "${SRV_PIDS[*]}")" \
    --ns "$(IFS=,; echo "${NAMESPACES[*]}")" --comm shake-keeper) || rc=$?
  log "    ticks: $ticks$( ((rc == 0)) || echo " (cputicks.py exited $rc)")"
  hold_stop "$IDLE_CONNS"
  local t=fail p=fail
  read -r t p < <("$PY" -c 'import json, sys
try:
    d = json.loads(sys.argv[1])
    print(d["ticks"], d["percent_of_core"])
except Exception:
    print("fail fail")' "$ticks" || echo "fail fail") || true
  local nfail
  read -r _ nfail _ <<<"$HOLD_SUMMARY"
  if [[ $HOLD_SUMMARY == fail* ]]; then t=fail p=fail; fi
  record "$1" "$2" "$3" "$4" main "$t" "$nfail"
  record "$1" "$2" "$3" "$4" pct "$p" 0
}

held_count() {  # hold_server.py's own count of held connections (its workers' status files)
  local d=$WORK/hs-$1
  sleep 0.5  # a worker rewrites its count at most every 0.2 s
  cat "$d"/held.* 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

measure_conns() {  # measure_conns SC ROW IMPL REP
  local base_pss base_stat="" hold_stat="" mem=na
  sleep 1  # the server's processes have finished starting
  base_pss=$(pss_kib)
  [[ $3 == libshake ]] && base_stat=$(stack_stat)
  hold_start "$1-$2-$3-$4" "$3" "$CONNS"
  local held_pss active
  held_pss=$(pss_kib)
  active=$(held_count "$3")
  [[ $3 == libshake ]] && hold_stat=$(stack_stat)
  log "    the server holds $active ($HS_PROCS processes, at most $HS_QUOTA each; accept errors:" \
      "$(cat "$WORK/hs-$3"/errors.* 2>/dev/null | tr '\n' ' '));" \
      "server PSS ${base_pss} -> ${held_pss} KiB; shake stat: '${base_stat:-unavailable}' -> '${hold_stat:-unavailable}'"
  [[ $3 == kernel ]] && log "    kernel counters in the server's namespace: $(kernel_counters "${SRV_NS[kernel]}")"
  log "    kernel counters in the client's namespace: $(kernel_counters "$CLIENT_NS")"
  hold_stop "$CONNS"
  local open nfail errs
  read -r open nfail errs <<<"$HOLD_SUMMARY"
  log "    held $open of $CONNS; failures by reason: $errs"
  if [[ -n $base_stat && -n $hold_stat ]]; then
    mem=$(awk -v b="$base_stat" -v h="$hold_stat" 'BEGIN {
      split(b, x, " "); split(h, y, " ")
      if (y[2] > x[2]) printf "%.0f", (y[1] - x[1]) / (y[2] - x[2]); else print "fail" }')
  fi
  local pss=fail
  if [[ $open != fail && $open -gt 0 ]]; then
    pss=$(( (held_pss - base_pss) * 1024 / open ))
  fi
  # A connection counts as held only if the client still had it at the end and the server
  # counted it too: the lesser of the two.
  if [[ $open != fail && $active =~ ^[0-9]+$ ]] && ((active < open)); then
    log "    the server counts fewer than the client: $active < $open"
    nfail=$((nfail + open - active))
    open=$active
  fi
  record "$1" "$2" "$3" "$4" main "$open" "$nfail"
  [[ $3 == libshake ]] && record "$1" "$2" "$3" "$4" mem "$mem" 0
  record "$1" "$2" "$3" "$4" pss "$pss" 0
}

# The idle server: RLIMIT_NOFILE is per process, and every connection costs the server's process
# one descriptor on the kernel and two under libshake (the program's fd and the stack socket's
# eventfd), so COUNT connections need 2 COUNT / (hard limit) workers at least, on both sides
# alike. accept_mutex on makes a worker that is 7/8 full leave new connections to the others
# (nginx's ngx_accept_disabled), but not reliably in a burst: each worker is planned for 60%.
PER_CONN_FDS=$((PER_PROC / 2))
hold_workers() {  # hold_workers COUNT
  local w=$(( ($1 * 10 + PER_CONN_FDS * 6 - 1) / (PER_CONN_FDS * 6) ))
  echo $(( w < 2 ? 2 : w ))
}
# The conns server is hold_server.py: HS_PROCS processes that each stop accepting at HS_QUOTA
# (room for 10% more than CONNS in all), so the connections spread evenly.
HS_PROCS=$(( (CONNS * 11 + PER_CONN_FDS * 10 - 1) / (PER_CONN_FDS * 10) ))
((HS_PROCS >= 2)) || HS_PROCS=2
HS_QUOTA=$(( (CONNS * 11 + HS_PROCS * 10 - 1) / (HS_PROCS * 10) ))
((HS_QUOTA <= PER_CONN_FDS)) || HS_QUOTA=$PER_CONN_FDS
((HS_PROCS <= 60)) || die "CONNS=$CONNS needs $HS_PROCS server processes, more than libshake's 64: raise the hard limit on open files (ulimit -Hn)"

# ---- rounds -------------------------------------------------------------------------------------
# A group is one server configuration and the rows measured against it.
GROUPS_ALL="nginx1 nginx2 sockperf iperf3 redis idle conns"
group_rows() {
  case $1 in
    nginx1) echo "ab-c32-w1 ab-c50-w1" ;;
    nginx2) echo "ab-c32-w2 ab-c50-w2 wrk-t1-c32 wrk-t2-c50" ;;
    iperf3) echo "iperf3-up iperf3-down" ;;
    *) echo "$1" ;;
  esac
}

start_group() {  # start_group GROUP IMPL
  case $1 in
    nginx1) start_nginx "$2" 1 1024 ;;
    nginx2) start_nginx "$2" 2 1024 ;;
    sockperf) SHAKE_SPIN_US=$SOCKPERF_SPIN_US \
                start_bg "$2" sockperf probe_sockperf sockperf server --tcp -i "${SRV_IP[$2]}" -p 11111 ;;
    iperf3) start_bg "$2" iperf3 probe_iperf3 iperf3 -s -B "${SRV_IP[$2]}" -p 5201 --forceflush ;;
    redis) start_bg "$2" redis probe_redis redis-server --bind "${SRV_IP[$2]}" --port 6379 \
             --save "" --appendonly no --protected-mode no --daemonize no --dir "$WORK" ;;
    idle) start_nginx "$2" "$(hold_workers "$IDLE_CONNS")" "$PER_PROC" on ;;
    conns) rm -rf "$WORK/hs-$2"
           start_bg "$2" hold_server probe_tcp80 "$PY" "$TOOLS/hold_server.py" --listen "${SRV_IP[$2]}:80" \
             --procs "$HS_PROCS" --quota "$HS_QUOTA" --status "$WORK/hs-$2" ;;
  esac
}

measure_row() {  # measure_row SC ROW IMPL REP
  log "  $1 rep $4: $2 on $3 (t=$(( $(date +%s) - START ))s, load $(cut -d' ' -f1 /proc/loadavg))"
  case $2 in
    ab-c32-w*) measure_ab "$@" 32 ;;
    ab-c50-w*) measure_ab "$@" 50 ;;
    wrk-t1-c32) measure_wrk "$@" 1 32 ;;
    wrk-t2-c50) measure_wrk "$@" 2 50 ;;
    sockperf) measure_sockperf "$@" ;;
    iperf3-up) measure_iperf3 "$@" ;;
    iperf3-down) measure_iperf3 "$@" -R ;;
    redis) measure_redis "$@" ;;
    idle) measure_idle "$@" ;;
    conns) measure_conns "$@" ;;
  esac
}

round() {  # round SC GROUP IMPL REP: start the group's server, measure its selected rows, stop it
  local sc=$1 group=$2 impl=$3 rep=$4 row
  log "  $sc rep $rep: starting $group on $impl (t=$(( $(date +%s) - START ))s)"
  if ! start_group "$group" "$impl"; then
    for row in $(group_rows "$group"); do
      want "$row" || continue
      record "$sc" "$row" "$impl" "$rep" main fail 1
    done
    [[ ${#SRV_PIDS[@]} -gt 0 || -n $SRV_KIND ]] && stop_server "$impl"
    SRV_PIDS=() SRV_KIND=
    return 0
  fi
  for row in $(group_rows "$group"); do
    want "$row" && measure_row "$sc" "$row" "$impl" "$rep"
  done
  stop_server "$impl"
}

# ---- topologies -------------------------------------------------------------------------------
declare -A SRV_NS SRV_IP SRCS
sources() {  # sources PREFIX NS IF: CONN_SRCS addresses PREFIX.10 ... on IF, comma-separated
  local i list=""
  for ((i = 0; i < CONN_SRCS; i++)); do
    ip -n "$2" addr add "$1.$((10 + i))/24" dev "$3"
    list+="${list:+,}$1.$((10 + i))"
  done
  echo "$list"
}

client_sysctls() {  # room for CONNS connections from each source address
  nsx "$1" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
}

setup_packet() {
  local s=$PREFIX-pS c=$PREFIX-pC
  add_ns "$s"; add_ns "$c"
  veth "$s" pa "$c" pb
  ip -n "$s" addr add 198.18.12.1/24 dev pa
  ip -n "$c" addr add 198.18.12.3/24 dev pb
  client_sysctls "$c"
  CLIENT_NS=$c
  SRV_NS[kernel]=$s SRV_NS[libshake]=$s
  SRV_IP[kernel]=198.18.12.1 SRV_IP[libshake]=198.18.12.2
  SRCS[kernel]=$(sources 198.18.12 "$c" pb)
  SRCS[libshake]=${SRCS[kernel]}
  SHAKE_ARGS=(--device packet:pa --addr 198.18.12.2/24)
  STAT_ENV=(SHAKE_DEVICE=packet:pa SHAKE_ADDR=198.18.12.2/24)
  log "== packet: S(kernel 198.18.12.1, libshake 198.18.12.2 on packet:pa) <-veth-> C(198.18.12.3, sources ${SRCS[kernel]})"
}

setup_tun() {
  local t=$PREFIX-tT k=$PREFIX-tK
  add_ns "$t"; add_ns "$k"
  veth "$t" t0 "$k" k0
  ip -n "$t" addr add 198.18.14.3/24 dev t0
  ip -n "$k" addr add 198.18.14.1/24 dev k0
  ip -n "$t" tuntap add dev tun0 mode tun
  ip -n "$t" link set tun0 up
  ip -n "$t" addr add 198.18.13.1/24 dev tun0
  client_sysctls "$t"
  CLIENT_NS=$t
  SRV_NS[kernel]=$k SRV_NS[libshake]=$t
  SRV_IP[kernel]=198.18.14.1 SRV_IP[libshake]=198.18.13.2
  SRCS[kernel]=$(sources 198.18.14 "$t" t0)
  SRCS[libshake]=$(sources 198.18.13 "$t" tun0)
  SHAKE_ARGS=(--device tun:tun0 --addr 198.18.13.2/24)
  STAT_ENV=(SHAKE_DEVICE=tun:tun0 SHAKE_ADDR=198.18.13.2/24)
  log "== tun: T(client; tun0 198.18.13.1, libshake 198.18.13.2 on tun:tun0; t0 198.18.14.3) <-veth-> K(kernel 198.18.14.1)"
}

# ---- table --------------------------------------------------------------------------------------
# write_table STATUS: the table from what RESULTS holds so far. The normal end calls it, and so
# does the exit trap (netns.sh's BENCH_EXIT_HOOK) when a run ends early, on a failure or a
# signal, so that the figures measured until then are not lost; the table then says so.
TABLE_WRITTEN=0
write_table() {
  local status=$1
  TABLE_WRITTEN=1
  ELAPSED=$(( $(date +%s) - START ))
  LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
  want scaling || export SCALING=0
  {
    [[ $status == complete ]] || echo "INCOMPLETE RUN ($status): only the rounds measured before it ended"
    echo "libshake / Linux kernel TCP, side by side: medians of $REPS, kernel and libshake rounds alternating"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores; source $SOURCE_REV;" \
         "$(basename "$BUILD_DIR") ($BUILD_TYPE); targets ${targets[*]}"
    echo "host load average (1/5/15 min): at start $LOAD_START, at end $LOAD_END; run took ${ELAPSED}s"
    ((SOCKPERF_SPIN_US == 0)) || echo "sockperf: libshake's server spins ${SOCKPERF_SPIN_US} us before sleeping (SHAKE_SPIN_US); the kernel's does not"
    echo "packet: both servers on one veth end (kernel .12.1, libshake .12.2 on packet:pa), client across the veth"
    echo "tun:    client in the namespace of tun0; libshake at the far end of tun0 (.13.2),"
    echo "        the kernel's server one veth away (.14.1); no forwarding hop on either path"
    echo
    "$PY" "$TOOLS/compare_table.py" "$RESULTS" || echo "(compare_table.py failed)"
    echo
    echo "ratio = libshake / kernel (medians); goal and floor from issue 9; verdict: ok = goal holds,"
    echo "floor ok = only the floor holds. fail = failed requests or connections summed over the runs,"
    echo "\"(n runs)\" = runs with no figure (non-zero exit, timeout), left out of the medians."
    if want idle; then
      echo "idle ticks: utime+stime of the server's processes and any shake-keeper, over ${IDLE_SECONDS}s"
      echo "(% of one core). The kernel's own TCP work runs in softirq and is not in any process's ticks."
    fi
    if want conns; then
      echo "conns: held = still open when the hold ended; stack memory = growth of shake stat's memory_bytes"
      echo "over the growth of its connections; PSS = growth of the server processes' proportional anonymous +"
      echo "shared-memory resident size per held connection (hold_server.py, the shim and the arena pages it"
      echo "touched; not the stack's own count, and nothing of the kernel's socket memory)."
    fi
    echo "The clients share the $(nproc) cores with the servers: these are ratios on this machine, not capacities."
  } >"$WORK/table.txt"
  if [[ $PERF == 1 ]]; then
    local f name
    for f in "$WORK"/perf-*.txt; do
      [[ -f $f ]] || continue
      name=${f##*/perf-}; name=${name%.txt}
      { echo; echo "perf top 15 symbols, ab -n $AB_N -c50 against nginx 2 workers, $name"
        echo "(perf record -a -g -e cpu-clock: every process on the host; perf report --no-children --sort sym)"
        cat "$f"; } >>"$WORK/table.txt"
    done
  fi
  echo
  cat "$WORK/table.txt"
  mkdir -p "$(dirname "$OUT")"
  { cat "$WORK/table.txt"; echo; echo "---- per run"; grep -E '^  |^==' "$WORK/details.log"
    echo; echo "---- raw results (SCENARIO ROW IMPL REP METRIC VALUE FAILED; bench/tools/compare_table.py reads them)"
    cat "$RESULTS"; } >"$OUT"
  echo
  echo "table and per-run figures written to $OUT"
}
on_early_exit() {  # BENCH_EXIT_HOOK: called by the trap with the exit status
  ((TABLE_WRITTEN == 0)) || return 0
  [[ -s ${RESULTS:-} ]] || return 0
  local why="exit status $1"
  (($1 == 130)) && why="interrupted"
  (($1 == 143)) && why="terminated"
  write_table "$why" || true
}
BENCH_EXIT_HOOK=on_early_exit

# ---- the run ------------------------------------------------------------------------------------
export AB_N WRK_SECONDS REDIS_N IDLE_CONNS IDLE_SECONDS CONNS
log "== compare.sh: REPS=$REPS ROWS='$ROWS' SCENARIOS='$SCENARIOS' work $WORK"
for sc in $SCENARIOS; do
  "setup_$sc"
  for rep in $(seq "$REPS"); do
    order=$IMPLS
    ((rep % 2)) || order=$(echo "$IMPLS" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
    for group in $GROUPS_ALL; do
      any=0
      for row in $(group_rows "$group"); do want "$row" && any=1; done
      ((any)) || continue
      for impl in $order; do
        round "$sc" "$group" "$impl" "$rep"
        if [[ $STOP_ON_FAIL == 1 ]] && awk '$6 == "fail" || $7 != 0 { bad = 1 } END { exit !bad }' "$RESULTS"; then
          log "== STOP_ON_FAIL=1: $sc $group on $impl failed; the run ends here"
          exit 1
        fi
      done
    done
  done
  for ns in "${NAMESPACES[@]}"; do drop_ns "$ns"; done
done

write_table complete
BAD=$(awk '$6 == "fail" || $7 != 0' "$RESULTS" | wc -l)
if ((BAD)); then
  echo "$ME: $BAD figure(s) came from runs that failed or lost requests/connections (see $OUT)" >&2
  exit 1
fi
