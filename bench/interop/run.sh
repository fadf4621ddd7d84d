#!/usr/bin/env bash
# bench/interop/run.sh — libshake's transfer times next to the Linux kernel's own, in the same
# topology, in one run.
#
# For each scenario both sides use the same client path (same namespace, same veth or the same
# relay) and the same kernel server; only the TCP implementation at one end changes:
#
#   packet  S(nginx 198.18.1.1) <-veth-> C(kernel 198.18.1.3, libshake 198.18.1.2 on packet:c0)
#             get:   curl in C  vs  shake-http get in C, both from nginx in S
#             serve: curl in S from nginx in C (198.18.1.3)  vs  curl in S from shake-http serve
#                    in C (198.18.1.2)
#   tun     S(nginx 198.18.2.1) <-veth-> M(198.18.2.2, ip_forward=1, tun0 198.18.3.1) ; libshake
#           198.18.3.2 on tun:tun0 in M
#             get:   curl in M over the veth  vs  shake-http get in M over the TUN (one forwarding
#                    hop more: TUN -> M's kernel -> veth)
#             serve: curl in S from nginx in M (198.18.2.2)  vs  curl in S from shake-http serve
#                    on the TUN (198.18.3.2, again one forwarding hop more)
#   relay   S(nginx 198.18.4.1) <-veth-> R(shake-relay r0<->r1, seeded impairments) <-veth->
#           C(kernel 198.18.4.3, libshake 198.18.4.2 on packet:c0); both directions as in packet.
#           The relay is restarted before every transfer with seed SEED+rep, so the kernel and
#           libshake see the same impairment stream in the same repetition.
#
# Times are the programs' own transfer clocks (curl's time_total; shake-http's "time=", measured
# from just before connect to the last byte), so neither includes process start-up. Every
# download is checked against the payload's sha256.
#
# Usage (as root):  bench/interop/run.sh
# Environment:
#   SIZE=64M       payload size (head -c syntax: 64M, 16M, 1G ...)
#   REPS=3         repetitions per measurement; the table shows medians
#   OUT=bench/interop/last-run.txt   where the table is written (besides stdout)
#   BUILD_DIR=build                  where shake-http and shake-relay are built
#   TIMEOUT=120    cap per transfer, seconds (reported as "timeout")
#   SEED=7         relay seed base
#   RELAY_ARGS="--loss 0.02 --dup 0.01 --reorder 0.01 --corrupt 0.001"
#   SCENARIOS="packet tun relay"
#   KEEP_TMP=1     keep the work directory (logs of every transfer)
#   SOURCE_REV     what to call the measured source in the table (default: git describe --dirty)
#
# Everything happens in namespaces named shkb-<pid>-*, with addresses in 198.18.0.0/15 only;
# a trap removes them (and every process inside them) on exit, failure or signal.
set -euo pipefail

SIZE=${SIZE:-64M}
REPS=${REPS:-3}
TIMEOUT=${TIMEOUT:-120}
SEED=${SEED:-7}
RELAY_ARGS=${RELAY_ARGS:-"--loss 0.02 --dup 0.01 --reorder 0.01 --corrupt 0.001"}
SCENARIOS=${SCENARIOS:-"packet tun relay"}
BUILD_DIR=${BUILD_DIR:-build}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-bench/interop/last-run.txt}

if [[ $(id -u) -ne 0 ]]; then
  echo "run.sh: needs root (network namespaces)" >&2
  exit 2
fi
for tool in ip nginx curl sha256sum timeout ss; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done

echo "== building shake-http shake-relay in $BUILD_DIR"
cmake --build "$BUILD_DIR" -j2 --target shake-http shake-relay >/dev/null
HTTP=$ROOT/$BUILD_DIR/io/shake-http
RELAY=$ROOT/$BUILD_DIR/io/shake-relay
[[ -x $HTTP && -x $RELAY ]] || { echo "run.sh: binaries not found under $BUILD_DIR/io" >&2; exit 2; }

# What was measured: the commit, and whether the working tree differed from it.
if [[ -z ${SOURCE_REV:-} ]]; then
  SOURCE_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
fi

# shellcheck source=bench/lib/netns.sh
source "$ROOT/bench/lib/netns.sh"
bench_init shkb

# Starts a background process in a namespace; its pid goes to BG_PIDS and to $LAST_PID.
spawn() {  # spawn NS LOG CMD...
  local ns=$1 logf=$2
  shift 2
  ip netns exec "$ns" "$@" >"$logf" 2>&1 &
  LAST_PID=$!
  BG_PIDS+=("$LAST_PID")
}

stop() {  # stop PID: TERM, then KILL after 3 s
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 30); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

wait_for() {  # wait_for FILE TEXT SECONDS
  for _ in $(seq $(($3 * 20))); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

wait_listen() {  # wait_listen NS IP:PORT
  for _ in $(seq 100); do
    nsx "$1" ss -ltnH 2>/dev/null | grep -qF "$2 " && return 0
    sleep 0.05
  done
  return 1
}

start_nginx() {  # start_nginx NS IP TAG
  local ns=$1 ip=$2 d=$WORK/nginx-$3
  mkdir -p "$d"
  cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
error_log $d/error.log;
pid $d/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $d;
  proxy_temp_path $d;
  fastcgi_temp_path $d;
  uwsgi_temp_path $d;
  scgi_temp_path $d;
  server { listen $ip:80; root $WORK/www; }
}
EOF
  spawn "$ns" "$d/stdout.log" nginx -c "$d/nginx.conf" -p "$d"
  wait_listen "$ns" "$ip:80" || { cat "$d/error.log" "$d/stdout.log" >&2; echo "nginx did not start in $ns" >&2; exit 1; }
}

# ---- measurements. Each prints "SECONDS" or "timeout"/"fail" and records sha status. --------

RESULTS=$WORK/results  # lines: scenario direction impl rep seconds|timeout|fail sha_ok(0/1)
: >"$RESULTS"

check_sha() {  # check_sha FILE -> 1 if it matches the payload
  if [[ -f $1 ]] && [[ $(sha256sum "$1" | cut -c1-64) == "$PAYLOAD_SHA" ]]; then echo 1; else echo 0; fi
}

record() {  # record SCENARIO DIRECTION IMPL REP VALUE SHA
  echo "$*" >>"$RESULTS"
  log "  $1 $2 $3 rep=$4 -> $5 s sha256=$([[ $6 == 1 ]] && echo ok || echo BAD)"
}

# curl_get NS URL TAG: kernel curl download; echoes "seconds sha_ok".
curl_get() {
  local ns=$1 url=$2 tag=$3 out=$WORK/$3.out t rc=0
  rm -f "$out"
  t=$(timeout -k 5 "$TIMEOUT" ip netns exec "$ns" curl -sS --max-time "$TIMEOUT" \
        -o "$out" -w '%{time_total}' "$url" 2>"$WORK/$tag.err") || rc=$?
  local sha
  sha=$(check_sha "$out")
  rm -f "$out"
  if [[ $rc -eq 124 || $rc -eq 137 || $rc -eq 28 ]]; then echo "timeout $sha"
  elif [[ $rc -ne 0 ]]; then echo "fail $sha"; cat "$WORK/$tag.err" >>"$WORK/details.log"
  else echo "$t $sha"; fi
}

# shake_get NS DEVICE ADDR URL TAG [--gateway G]: libshake download; echoes "seconds sha_ok".
shake_get() {
  local ns=$1 dev=$2 addr=$3 url=$4 tag=$5
  shift 5
  local out=$WORK/$tag.out logf=$WORK/$tag.log rc=0
  rm -f "$out"
  timeout -k 5 "$TIMEOUT" ip netns exec "$ns" "$HTTP" get --device "$dev" --addr "$addr" "$@" \
    "$url" -o "$out" --timeout $((TIMEOUT - 10)) --drain 0 >"$logf" 2>&1 || rc=$?
  cat "$logf" >>"$WORK/details.log"
  local sha t
  sha=$(check_sha "$out")
  rm -f "$out"
  t=$(sed -n 's/^get: connections ok=1 failed=0 time=\([0-9.]*\)s$/\1/p' "$logf")
  if [[ $rc -eq 124 || $rc -eq 137 ]] || grep -q 'timed out' "$logf"; then echo "timeout $sha"
  elif [[ $rc -ne 0 || -z $t ]]; then echo "fail $sha"
  else echo "$t $sha"; fi
}

# shake_serve_curl SNS DEVICE ADDR CNS TAG [--gateway G]: shake-http serve in SNS, kernel curl
# in CNS downloads from it; echoes "seconds sha_ok".
shake_serve_curl() {
  local sns=$1 dev=$2 addr=$3 cns=$4 tag=$5
  shift 5
  local logf=$WORK/$tag.log ip=${addr%/*}
  spawn "$sns" "$logf" "$HTTP" serve --device "$dev" --addr "$addr" "$@" --root "$WORK/www" \
    --port 80 --connections 1 --drain 5 --timeout $((TIMEOUT - 10))
  local pid=$LAST_PID
  if ! wait_for "$logf" "listening" 5; then
    stop "$pid"
    cat "$logf" >>"$WORK/details.log"
    echo "fail 0"
    return
  fi
  local res
  res=$(curl_get "$cns" "http://$ip/payload" "$tag-curl")
  # serve exits after its one connection (bounded by --drain and its own timeout).
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  stop "$pid"
  cat "$logf" >>"$WORK/details.log"
  echo "$res"
}

relay_start() {  # relay_start REP
  RELAY_LOG=$WORK/relay-$1-$RANDOM.log
  # shellcheck disable=SC2086
  spawn "$NS_R" "$RELAY_LOG" "$RELAY" --a r0 --b r1 --seed $((SEED + $1)) $RELAY_ARGS
  RELAY_PID=$LAST_PID
  wait_for "$RELAY_LOG" "shake-relay:" 5 || { cat "$RELAY_LOG" >&2; echo "relay did not start" >&2; exit 1; }
}

relay_stop() {
  stop "$RELAY_PID"
  grep 'frames=' "$RELAY_LOG" | sed 's/^/    /' >>"$WORK/details.log" || true
}

measure() {  # measure SCENARIO DIRECTION IMPL REP CMD...
  local sc=$1 dir=$2 impl=$3 rep=$4
  shift 4
  # In the background, so that a signal runs the cleanup trap at once instead of after the
  # transfer (bash defers traps while a foreground command runs).
  "$@" >"$WORK/measure.res" &
  MEASURE_PID=$!
  wait "$MEASURE_PID" || true
  MEASURE_PID=
  local res
  res=$(cat "$WORK/measure.res")
  record "$sc" "$dir" "$impl" "$rep" "${res% *}" "${res#* }"
}

# ---- payload ----------------------------------------------------------------------------------
mkdir -p "$WORK/www"
head -c "$SIZE" /dev/urandom >"$WORK/www/payload"
PAYLOAD_SHA=$(sha256sum "$WORK/www/payload" | cut -c1-64)
BYTES=$(stat -c %s "$WORK/www/payload")
log "== payload $SIZE ($BYTES bytes) sha256 $PAYLOAD_SHA; REPS=$REPS; TIMEOUT=${TIMEOUT}s; work $WORK"
START=$(date +%s)

# ---- 1. AF_PACKET on a plain veth ---------------------------------------------------------------
if [[ " $SCENARIOS " == *" packet "* ]]; then
  log "== packet: S(nginx 198.18.1.1) <-veth-> C(kernel 198.18.1.3, libshake 198.18.1.2 packet:c0)"
  S=$PREFIX-pS C=$PREFIX-pC
  add_ns "$S"; add_ns "$C"
  veth "$S" s0 "$C" c0
  ip -n "$S" addr add 198.18.1.1/24 dev s0
  ip -n "$C" addr add 198.18.1.3/24 dev c0
  start_nginx "$S" 198.18.1.1 pS
  start_nginx "$C" 198.18.1.3 pC
  for rep in $(seq "$REPS"); do
    measure packet get kernel "$rep" curl_get "$C" http://198.18.1.1/payload p-k-get-$rep
    measure packet get libshake "$rep" shake_get "$C" packet:c0 198.18.1.2/24 \
      http://198.18.1.1/payload p-s-get-$rep
    measure packet serve kernel "$rep" curl_get "$S" http://198.18.1.3/payload p-k-serve-$rep
    measure packet serve libshake "$rep" shake_serve_curl "$C" packet:c0 198.18.1.2/24 "$S" \
      p-s-serve-$rep
  done
fi

# ---- 2. TUN in a middle namespace --------------------------------------------------------------
if [[ " $SCENARIOS " == *" tun "* ]]; then
  log "== tun: S(nginx 198.18.2.1) <-veth-> M(198.18.2.2, fwd, tun0 198.18.3.1; libshake 198.18.3.2 tun:tun0)"
  S=$PREFIX-tS M=$PREFIX-tM
  add_ns "$S"; add_ns "$M"
  veth "$S" s0 "$M" m0
  ip -n "$S" addr add 198.18.2.1/24 dev s0
  ip -n "$S" route add 198.18.3.0/24 via 198.18.2.2
  ip -n "$M" addr add 198.18.2.2/24 dev m0
  nsx "$M" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$M" tuntap add dev tun0 mode tun
  ip -n "$M" link set tun0 up
  ip -n "$M" addr add 198.18.3.1/24 dev tun0
  start_nginx "$S" 198.18.2.1 tS
  start_nginx "$M" 198.18.2.2 tM
  for rep in $(seq "$REPS"); do
    measure tun get kernel "$rep" curl_get "$M" http://198.18.2.1/payload t-k-get-$rep
    measure tun get libshake "$rep" shake_get "$M" tun:tun0 198.18.3.2/24 \
      http://198.18.2.1/payload t-s-get-$rep --gateway 198.18.3.1
    measure tun serve kernel "$rep" curl_get "$S" http://198.18.2.2/payload t-k-serve-$rep
    measure tun serve libshake "$rep" shake_serve_curl "$M" tun:tun0 198.18.3.2/24 "$S" \
      t-s-serve-$rep --gateway 198.18.3.1
  done
fi

# ---- 3. AF_PACKET through the impairment relay --------------------------------------------------
if [[ " $SCENARIOS " == *" relay "* ]]; then
  log "== relay: S(nginx 198.18.4.1) <-veth-> R(shake-relay $RELAY_ARGS) <-veth-> C(kernel 198.18.4.3, libshake 198.18.4.2 packet:c0)"
  S=$PREFIX-rS NS_R=$PREFIX-rR C=$PREFIX-rC
  add_ns "$S"; add_ns "$NS_R"; add_ns "$C"
  veth "$S" s0 "$NS_R" r0
  veth "$NS_R" r1 "$C" c0
  ip -n "$S" addr add 198.18.4.1/24 dev s0
  ip -n "$C" addr add 198.18.4.3/24 dev c0
  start_nginx "$S" 198.18.4.1 rS
  start_nginx "$C" 198.18.4.3 rC
  for rep in $(seq "$REPS"); do
    relay_start "$rep"
    measure relay get kernel "$rep" curl_get "$C" http://198.18.4.1/payload r-k-get-$rep
    relay_stop; relay_start "$rep"
    measure relay get libshake "$rep" shake_get "$C" packet:c0 198.18.4.2/24 \
      http://198.18.4.1/payload r-s-get-$rep
    relay_stop; relay_start "$rep"
    measure relay serve kernel "$rep" curl_get "$S" http://198.18.4.3/payload r-k-serve-$rep
    relay_stop; relay_start "$rep"
    measure relay serve libshake "$rep" shake_serve_curl "$C" packet:c0 198.18.4.2/24 "$S" \
      r-s-serve-$rep
    relay_stop
  done
fi

# ---- table -----------------------------------------------------------------------------------
ELAPSED=$(( $(date +%s) - START ))
mkdir -p "$(dirname "$OUT")"
{
  echo "libshake vs Linux kernel TCP, $SIZE payload, median of $REPS, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores"
  echo "source $SOURCE_REV, $BUILD_DIR ($(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null))"
  echo "seconds = transfer time by the client's own clock (curl time_total / shake-http time=)"
  awk -v reps="$REPS" '
    function median(list,   n, a, i, j, t) {
      n = split(list, a, " ")
      if (n == 0) return "-"
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
      key = $1 " " $2
      if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
      k = key " " $3
      total[key]++
      if ($6 == 1) shaok[key]++
      if ($5 ~ /^[0-9.]+$/) ok[k] = ok[k] " " $5
      else if ($5 == "timeout") to[k]++
      else bad[k]++
    }
    END {
      dirname["get"] = "download to C (client)"
      dirname["serve"] = "download from C (server)"
      printf "%-8s %-26s %10s %12s %8s  %s\n", "scenario", "direction", "kernel s", "libshake s", "ratio", "sha256"
      for (i = 1; i <= nk; i++) {
        split(order[i], kk, " ")
        km = median(ok[order[i] " kernel"]); lm = median(ok[order[i] " libshake"])
        ratio = (km != "-" && lm != "-" && km > 0) ? sprintf("%.2f", lm / km) : "-"
        st = (shaok[order[i]] + 0) "/" total[order[i]] " ok"
        note = ""
        if (to[order[i] " kernel"]) note = note " kernel:" to[order[i] " kernel"] " timeout"
        if (bad[order[i] " kernel"]) note = note " kernel:" bad[order[i] " kernel"] " failed"
        if (to[order[i] " libshake"]) note = note " libshake:" to[order[i] " libshake"] " timeout"
        if (bad[order[i] " libshake"]) note = note " libshake:" bad[order[i] " libshake"] " failed"
        d = dirname[kk[2]]
        if (kk[1] == "tun") d = (kk[2] == "get") ? "download to M (client)" : "download from M (server)"
        printf "%-8s %-26s %10s %12s %8s  %s%s\n", kk[1], d,
               (km == "-" ? "-" : sprintf("%.3f", km)), (lm == "-" ? "-" : sprintf("%.3f", lm)), ratio, st, note
      }
    }' "$RESULTS"
  echo "packet: same veth, same namespace for both; the kernel has 198.18.1.3, libshake 198.18.1.2 on c0."
  echo "tun:    libshake's path has one forwarding hop more (TUN -> M's kernel -> veth) than the"
  echo "        kernel's (veth only); the ratio includes that hop."
  echo "relay:  shake-relay $RELAY_ARGS, seed $SEED+rep, restarted for every transfer."
  echo "total run time ${ELAPSED}s"
} >"$WORK/table.txt"
echo
cat "$WORK/table.txt"
cp "$WORK/table.txt" "$OUT"
{ echo; echo "---- per transfer"; cat "$WORK/details.log"; } >>"$OUT"
echo
echo "table and per-transfer log written to $OUT"
FAILED=$(awk '$5 !~ /^[0-9.]+$/ || $6 != 1' "$RESULTS" | wc -l)
[[ $FAILED -eq 0 ]]
