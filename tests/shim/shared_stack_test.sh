#!/usr/bin/env bash
# Many programs, one stack (issue 13), in TUN and AF_PACKET modes: four unrelated programs
# started by four separate `shake` launches on one device and one address share one stack, as
# processes share the kernel's:
#   - shake nginx (master + 2 workers), shake redis-server, shake python3 -m http.server and a
#     shake sockperf server run at once; kernel-side ab, redis-benchmark, curl and sockperf
#     ping-pong run against them concurrently: every request answered, none failed
#   - a fifth program binding nginx's port gets EADDRINUSE
#   - SIGKILL of the sockperf server, then of the http.server, in the middle of traffic: the
#     others keep serving (a second concurrent round after each kill), and the killed server's
#     ping-pong client sees its connection end (FIN or RST, as Linux sends for a killed process)
#   - a server that writes 1 MiB, closes and exits through os._exit(0) behind 5% loss: the client
#     gets every byte in 20 runs of 20, and the keeper holds TIME-WAIT after the process is gone
#
#   shared_stack_test.sh SHAKE_LAUNCHER
#
# Topology (198.18.16.0/24 and 198.18.17.0/24 only; removed on exit, also on failure):
#   ns shkshare-PID: TUN tsh0 with the kernel at 198.18.16.1 and the stack at .2; veth sa <-> sb,
#   the kernel at 198.18.17.1 on sb, the stack at 198.18.17.2 on packet:sa.
# Skips (exit 77) with the reason without root or a needed program; fails instead when CI=true.
set -u
me=shared_stack_test
[[ $# -eq 1 ]] || { echo "usage: $me SHAKE_LAUNCHER" >&2; exit 2; }
shake=$(readlink -f "$1")
ns="shkshare-$$"
py=$(readlink -f "$(command -v python3)")  # pyenv shims are scripts: preload the interpreter

skip() {
  echo "$me: SKIP: $1"
  [[ "${CI:-}" == true ]] && { echo "$me: CI=true: not skipping" >&2; exit 1; }
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "not root: the namespace and TUN device need CAP_NET_ADMIN"
for p in ip curl nginx ab redis-server redis-cli redis-benchmark sockperf; do
  command -v $p >/dev/null || skip "$p is not installed"
done
work=$(mktemp -d /tmp/shkshare.XXXXXX)

cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  sleep 0.2
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

set -e
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev tsh0 mode tun
ip -n "$ns" addr add 198.18.16.1/24 dev tsh0
ip -n "$ns" link set tsh0 up
ip -n "$ns" link add sa type veth peer name sb
ip -n "$ns" addr add 198.18.17.1/24 dev sb
ip -n "$ns" link set sa up
ip -n "$ns" link set sb up
set +e
in_ns() { ip netns exec "$ns" "$@"; }
mkdir -p "$work/www"
echo hello >"$work/www/index.html"

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "$me: ok: $what"; else echo "$me: FAIL: $what"; failures=$((failures + 1)); fi
}
wait_port() {  # addr port: the port answers within 10 s
  local i
  for i in $(seq 50); do
    in_ns timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# One concurrent round against all four servers; each client's verdict in $work/round-N.*.
round() {  # addr tag
  local a=$1 t=$2
  in_ns timeout 60 ab -q -n 3000 -c 20 "http://$a:8080/" >"$work/$t.ab" 2>&1 &
  local ab=$!
  in_ns timeout 60 redis-benchmark -h "$a" -p 6379 -q -n 5000 -c 10 -t get,set \
    >"$work/$t.redis" 2>&1 &
  local rb=$!
  (for i in $(seq 30); do
     in_ns timeout 5 curl -sS -o /dev/null -w '%{http_code}\n' "http://$a:8099/index.html"
   done) >"$work/$t.curl" 2>&1 &
  local cu=$!
  if [[ -z ${no_sockperf:-} ]]; then
    in_ns timeout 20 sockperf ping-pong --tcp -i "$a" -p 11117 -t 3 >"$work/$t.sockperf" 2>&1
    echo "rc=$?" >>"$work/$t.sockperf"
  fi
  wait $ab $rb $cu
}
ab_ok() {  # file: 3000 complete, none failed
  grep -q '^Complete requests: *3000$' "$1" && grep -q '^Failed requests: *0$' "$1" ||
    { echo "$me:   ab: $(grep -E 'Complete|Failed|apr_' "$1" | tr '\n' ' ')"; return 1; }
}
redis_ok() {  # file: both tests report a rate, no error
  local n
  n=$(tr '\r' '\n' <"$1" | grep -cE '^(GET|SET): .* requests per second')
  [[ $n -eq 2 ]] && ! grep -qi 'error' "$1" ||
    { echo "$me:   redis-benchmark: $(tr '\r' '\n' <"$1" | grep -v '^$' | tail -3 | tr '\n' ' ')"; return 1; }
}
curl_ok() {  # file: 30 x 200
  [[ $(grep -c '^200$' "$1") -eq 30 ]] || { echo "$me:   curl: $(sort "$1" | uniq -c | tr '\n' ' ')"; return 1; }
}
sockperf_ok() {  # file: exit 0 and a median
  grep -q '^rc=0$' "$1" && grep -q 'percentile 50' "$1" ||
    { echo "$me:   sockperf: $(tail -3 "$1" | tr '\n' ' ')"; return 1; }
}

# A server under shake that writes 1 MiB, closes and leaves through os._exit(0) at once, behind
# 5% loss each way (nftables on the kernel side): its unsent bytes and its FIN are the keeper's
# to deliver. RUNS runs; in each the kernel-side client must get every byte, and after the last
# the keeper holds the connection's TIME-WAIT (shake stat) though no process of it is left.
exit_after_write() {  # device stack-address mode
  local dev=$1 a=$2 m=$3 runs=${SHAKE_SHARED_EXIT_RUNS:-20} good=0 i
  in_ns nft -f - <<NFT
table ip shkloss {
  chain in { type filter hook input priority 0; ip saddr $a tcp sport 9000 numgen random mod 100 < 5 counter drop; }
  chain out { type filter hook output priority 0; ip daddr $a tcp dport 9000 numgen random mod 100 < 5 counter drop; }
}
NFT
  for i in $(seq "$runs"); do
    in_ns timeout 30 "$shake" --device "$dev" --addr "$a/24" -- "$py" -c "
import os, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$a', 9000)); s.listen(1)
c, _ = s.accept(); c.sendall(bytes(range(256)) * 4096); c.close(); os._exit(0)" \
      >"$work/exit-server.out" 2>&1 &
    local srv=$!
    in_ns timeout 30 "$py" -c "
import hashlib, socket, time
end = time.time() + 10
while True:
    try:
        c = socket.create_connection(('$a', 9000), timeout=5); break
    except OSError:
        if time.time() > end: raise
        time.sleep(0.05)
c.settimeout(20)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
ok = n == 1 << 20 and h.digest() == hashlib.sha256(bytes(range(256)) * 4096).digest()
print(n, 'ok' if ok else 'differs')" >"$work/exit-client.out" 2>&1
    wait "$srv"
    grep -q '^1048576 ok$' "$work/exit-client.out" && good=$((good + 1)) ||
      echo "$me:   run $i: client: $(tail -1 "$work/exit-client.out"); server: $(tail -1 "$work/exit-server.out")"
  done
  local dropped
  dropped=$(in_ns nft list table ip shkloss | awk '/counter packets/ {for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1)} END {print n + 0}')
  check "$m: 1 MiB written, closed and os._exit(0) behind 5% loss: $good of $runs runs byte-exact ($dropped segments dropped)" \
    [ "$good" -eq "$runs" -a "$dropped" -gt 0 ]
  in_ns env SHAKE_DEVICE="$dev" "$shake" stat --device "$dev" >"$work/exit-stat.out" 2>&1
  check "$m: the keeper holds the exited server's TIME-WAIT ($(grep -cE "$a:9000 .*TIME-WAIT|TIME-WAIT.*$a:9000" "$work/exit-stat.out") on port 9000)" \
    grep -qE "$a:9000 .*TIME-WAIT|TIME-WAIT.*$a:9000" "$work/exit-stat.out"
  in_ns nft delete table ip shkloss
}

run_mode() {  # device stack-address
  local dev=$1 a=$2 m=${1%%:*}
  local launch=("$shake" --device "$dev" --addr "$a/24" --)
  cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen $a:8080; root $work/www; }
}
CONF
  # Four launches, no parent in common: each finds the stack the first one made.
  in_ns "${launch[@]}" nginx -c "$work/nginx.conf" -p "$work" >"$work/nginx.out" 2>&1 &
  local ng=$!
  wait_port "$a" 8080 || echo "$me:   nginx did not come up: $(tail -3 "$work/nginx.out")"
  in_ns "${launch[@]}" redis-server --bind "$a" --port 6379 --save "" --appendonly no \
    --protected-mode no --dir "$work" >"$work/redis.out" 2>&1 &
  local rs=$!
  (cd "$work/www" && exec ip netns exec "$ns" "${launch[@]}" "$py" -m http.server 8099 \
     --bind "$a") >"$work/http.out" 2>&1 &
  local hs=$!
  in_ns "${launch[@]}" sockperf server --tcp -i "$a" -p 11117 >"$work/sockperf.out" 2>&1 &
  local sp=$!
  check "$m: nginx, redis-server, http.server and sockperf server up on one stack" \
    bash -c "$(declare -f wait_port in_ns); ns=$ns; wait_port $a 6379 && wait_port $a 8099 && wait_port $a 11117"

  round "$a" "$m-1"
  check "$m: ab against shake nginx beside the others: 3000 requests, none failed" ab_ok "$work/$m-1.ab"
  check "$m: redis-benchmark GET and SET against shake redis-server, no error" redis_ok "$work/$m-1.redis"
  check "$m: 30 curl requests to shake python3 http.server, all 200" curl_ok "$work/$m-1.curl"
  check "$m: sockperf ping-pong against shake sockperf server" sockperf_ok "$work/$m-1.sockperf"

  # The port is the stack's, whoever holds it: another program is refused as by the kernel.
  in_ns "${launch[@]}" "$py" -c "
import errno, socket, sys
s = socket.socket()
try:
    s.bind(('$a', 8080))
except OSError as e:
    print('bind:', errno.errorcode.get(e.errno, e.errno)); sys.exit(0 if e.errno == errno.EADDRINUSE else 1)
print('bind: succeeded'); sys.exit(1)" >"$work/bind.out" 2>&1
  local brc=$?
  check "$m: a fifth program binding nginx's port gets EADDRINUSE ($(tail -1 "$work/bind.out"))" \
    [ "$brc" -eq 0 ]

  # SIGKILL of the sockperf server while a ping-pong client is connected to it.
  in_ns timeout 20 sockperf ping-pong --tcp -i "$a" -p 11117 -t 8 >"$work/$m-kill.sockperf" 2>&1 &
  local cl=$!
  sleep 1.5
  kill -9 "$(pgrep -P "$sp" -x sockperf || echo "$sp")" "$sp" 2>/dev/null
  local t0=$SECONDS
  wait $cl
  local crc=$? took=$((SECONDS - t0))
  check "$m: the killed sockperf server's client saw its connection end (exit $crc after ${took}s, not at its 8 s end)" \
    [ "$took" -lt 6 ]
  no_sockperf=1 round "$a" "$m-2"
  check "$m: after SIGKILL of sockperf: ab still served" ab_ok "$work/$m-2.ab"
  check "$m: after SIGKILL of sockperf: redis still served" redis_ok "$work/$m-2.redis"
  check "$m: after SIGKILL of sockperf: http.server still served" curl_ok "$work/$m-2.curl"

  # SIGKILL of the http.server in the middle of a round.
  no_sockperf=1 round "$a" "$m-3" &
  local r3=$!
  sleep 0.5
  pkill -9 -f "http.server 8099 --bind $a"
  wait $r3
  check "$m: ab served while http.server was killed beside it" ab_ok "$work/$m-3.ab"
  check "$m: redis served while http.server was killed beside it" redis_ok "$work/$m-3.redis"
  check "$m: redis-cli PING after both kills" bash -c "[ \"\$(ip netns exec $ns timeout 5 redis-cli -h $a -p 6379 ping)\" = PONG ]"

  exit_after_write "$dev" "$a" "$m"

  kill "$ng" "$rs" "$hs" 2>/dev/null
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  wait "$ng" "$rs" "$hs" 2>/dev/null
  # The stack's keeper outlives the programs (TIME-WAIT); the next mode uses another device.
  sleep 0.5
}

run_mode tun:tsh0 198.18.16.2
run_mode packet:sa 198.18.17.2
echo "$me: $failures failure(s) in ${SECONDS}s"
[[ $failures -eq 0 ]]
