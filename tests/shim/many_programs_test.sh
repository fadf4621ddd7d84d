#!/usr/bin/env bash
# Many programs, one stack (issue 13's acceptance) and `shake stat` under load (issue 11), in TUN
# and AF_PACKET modes. Every program below is a separate `shake` command on the same device and
# address, so they all attach to one shared stack and its keeper.
#   1. shake nginx (master + 2 workers), shake redis-server, shake python3 -m http.server and
#      shake sockperf server --tcp at once; kernel-side ab, redis-benchmark, curl and sockperf
#      ping-pong run concurrently against them: every tool's error count is zero
#   2. a second program binding nginx's port gets EADDRINUSE (python under shake prints errno)
#   3. SIGKILL of each program in turn, with traffic running, leaves the others serving; a
#      kernel client holding an idle connection to the killed one sees EOF (FIN: nothing unread),
#      and a client whose data the killed server never read sees a reset (RST)
#   4. a server under shake that writes 1 MiB, closes and leaves through os._exit(0), behind 5%
#      loss both ways (nftables numgen on the kernel side): 20 of 20 downloads byte-exact, and
#      after the server exited `shake stat --json` shows its TIME-WAIT held as an orphan by the
#      keeper
#   5. an idle keeper takes 0 CPU ticks in 5 s, and ends by itself SHAKE_KEEPER_IDLE (seconds)
#      after its stack is empty
#   6. `shake stat` and `shake stat --json` during an ab run against shake nginx: nginx's port in
#      LISTEN, ESTABLISHED > 0, the master and both workers among the processes
#
#   many_programs_test.sh SHAKE_LAUNCHER
#
# Topology (198.18.40.0/24 and 198.18.41.0/24 only; removed on exit, also on failure): ns
# h13ss-PID with TUN shk0 (kernel 198.18.40.1, stack .2) and veth pa <-> pb (kernel 198.18.41.1 on
# pb, stack .2 on pa, which has no kernel address). Skips (77) without root or a program; fails
# instead when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
ns="h13ss-$$"
py=$(readlink -f "$(command -v python3)")
me=many_programs_test

. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: the namespace and TUN device need CAP_NET_ADMIN"
for p in ip curl nginx ab redis-server redis-cli redis-benchmark sockperf nft tcpdump; do
  command -v $p >/dev/null || skip "$p is not installed"
done
work=$(mktemp -d /tmp/h13ss.XXXXXX)

set -e
own_namespaces "$work" "$ns"
ip -n "$ns" tuntap add dev shk0 mode tun
ip -n "$ns" addr add 198.18.40.1/24 dev shk0
ip -n "$ns" link set shk0 up
ip -n "$ns" link add pa type veth peer name pb
ip -n "$ns" addr add 198.18.41.1/24 dev pb
ip -n "$ns" link set pa up
ip -n "$ns" link set pb up
set +e
# Not for a program whose pid is wanted from $!: a function in the background is a subshell.
in_ns() { ip netns exec "$ns" "$@"; }
export SHAKE_KEEPER_IDLE=2  # seconds (shim/config.cc)
export SHAKE_KEEPER_LOG="$work/keeper.log"  # its tail is shown when a download fails

mkdir -p "$work/www"
echo hello >"$work/www/index.html"
head -c $((1 << 20)) /dev/urandom >"$work/1M"
want1m=$(sha256sum <"$work/1M" | cut -d' ' -f1)

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "$me: ok: $what"; else echo "$me: FAIL: $what"; failures=$((failures + 1)); fi
}
up() {  # port address: a kernel-side connect succeeds within 5 s
  for _ in $(seq 50); do
    in_ns "$py" -c "import socket; socket.create_connection(('$2', $1), 0.5).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
stat_json() { in_ns "$shake" stat --json --device "$1"; }
# A python expression over `shake stat --json` (one stack): j is the stack object.
jq_py() {  # device expression
  stat_json "$1" | "$py" -c "
import json, sys
d = json.load(sys.stdin); j = d['stacks'][0] if 'stacks' in d else d
print($2)"
}

# A kernel-side client that holds one connection to port, sends `send` bytes (not read by an
# idle server), writes READY, then reports how the connection ended: eof, reset or open.
cat >"$work/hold.py" <<'PY'
import select, socket, sys, os
host, port, send, ready, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
s = socket.create_connection((host, port), timeout=5)
if send: s.sendall(b"x" * send)
open(ready, "w").close()
r = "open"
if select.select([s], [], [], wait)[0]:
    try:
        while True:
            d = s.recv(65536)
            if not d: r = "eof"; break
    except ConnectionResetError: r = "reset"
print(r)
PY

. "$(dirname "$0")/../lib/nginx.sh"

# nginx's master (from its pid file) and its workers; pgrep by name would also find other
# nginx processes on the machine, since the namespace shares the pid namespace.
nginx_pids() {
  local m; m=$(cat "$work/nginx.pid" 2>/dev/null) || return 0
  { echo "$m"; pgrep -P "$m"; } | sort -n
}

start_apps() {  # device address
  local sh=("$shake" --device "$1" --addr "$2/24" --)
  nginx_conf nginx 8080 2
  in_ns "${sh[@]}" nginx -c "$work/nginx.conf" -p "$work"
  mkdir -p "$work/redis"
  ip netns exec "$ns" "${sh[@]}" redis-server --port 6379 --bind 0.0.0.0 --dir "$work/redis" --save "" \
    --daemonize no --protected-mode no --logfile "$work/redis/log" &
  echo $! >"$work/redis.pid"
  (cd "$work/www" && exec ip netns exec "$ns" "${sh[@]}" "$py" -m http.server 8000 >"$work/http.log" 2>&1) &
  echo $! >"$work/http.pid"
  ip netns exec "$ns" "${sh[@]}" sockperf server --tcp -i "$2" -p 11111 >"$work/sockperf-srv.log" 2>&1 &
  echo $! >"$work/sockperf.pid"
  local p
  for p in 8080 6379 8000 11111; do up $p "$2" || echo "$me:   port $p does not answer"; done
}

# The four kernel-side loads at once; each one's errors are checked.
loads() {  # address tag
  local a=$1 t=$2 d="$work/load-$2"
  mkdir -p "$d"
  in_ns timeout 60 ab -q -n 5000 -c 20 "http://$a:8080/index.html" >"$d/ab" 2>&1 &
  local p1=$!
  in_ns timeout 60 redis-benchmark -h "$a" -q -n 5000 -c 20 -t ping,set,get >"$d/redis" 2>&1 &
  local p2=$!
  (for i in $(seq 200); do
     in_ns timeout 5 curl -sS "http://$a:8000/index.html" || echo "curl error $?"
   done) >"$d/curl" 2>&1 &
  local p3=$!
  in_ns timeout 30 sockperf ping-pong --tcp -i "$a" -p 11111 -t 3 >"$d/sockperf" 2>&1 &
  local p4=$!
  wait $p1; local r1=$?; wait $p2; local r2=$?; wait $p3; wait $p4; local r4=$?
  grep -E "Complete requests|Failed requests|Non-2xx" "$d/ab" | sed "s/^/$me:   ab: /"
  tr '\r' '\n' <"$d/redis" | grep 'requests per second' | sed "s/^/$me:   redis-benchmark: /"
  echo "$me:   curl: $(grep -cx hello "$d/curl") of 200 right, $(grep -vcx hello "$d/curl") other lines"
  grep -E "sockperf: (Summary|---> |SentMessages|ReceivedMessages|.*[Ee]rror)" "$d/sockperf" | head -4 | sed "s/^/$me:   /"
  check "$t: ab -n 5000 -c 20: 5000 complete, 0 failed, all 2xx" bash -c "
    [[ $r1 -eq 0 ]] && grep -qE '^Complete requests: +5000\$' $d/ab &&
    grep -qE '^Failed requests: +0\$' $d/ab && ! grep -q Non-2xx $d/ab"
  check "$t: redis-benchmark -n 5000 (ping, set, get): 4 tests complete, no error" bash -c "
    [[ $r2 -eq 0 ]] && [[ \$(tr '\r' '\n' <$d/redis | grep -c 'requests per second') -eq 4 ]] &&
    ! grep -qiE 'error|reset|refused|closed' $d/redis"
  check "$t: 200 kernel curls to http.server: all right" bash -c "
    [[ \$(grep -cx hello $d/curl) -eq 200 && \$(grep -vcx hello $d/curl) -eq 0 ]]"
  check "$t: sockperf ping-pong --tcp 3 s: exit 0, messages answered, no error" bash -c "
    [[ $r4 -eq 0 ]] && grep -q 'ReceivedMessages=[1-9]' $d/sockperf && ! grep -qiE 'error|refused' $d/sockperf"
}

# Issue 11: shake stat while ab loads nginx.
stat_under_load() {  # device address tag
  local dev=$1 a=$2 t=$3
  in_ns timeout 60 ab -q -n 200000 -c 20 -t 6 "http://$a:8080/index.html" >"$work/ab-stat" 2>&1 &
  local abp=$!
  sleep 1.5
  # Short connections are ESTABLISHED for microseconds among thousands in TIME-WAIT: a snapshot
  # may catch none, so each view is taken again (up to 5 times, bounded by ab's 6 s) until one
  # shows an ESTABLISHED connection on 8080 or the tries run out.
  local i
  for i in 1 2 3 4 5; do
    in_ns "$shake" stat --device "$dev" >"$work/stat.txt" 2>&1
    grep -qE "^ESTABLISHED .* $a:8080 " "$work/stat.txt" && break
    sleep 0.2
  done
  for i in 1 2 3 4 5; do
    stat_json "$dev" >"$work/stat.json" 2>&1
    grep -qE '"state":"ESTABLISHED","local":"'"$a"':8080"' "$work/stat.json" && break
    sleep 0.2
  done
  kill -INT $abp 2>/dev/null; wait $abp
  sed -n '1,3p' "$work/stat.txt" | sed "s/^/$me:   stat: /"
  local nginx_pids
  nginx_pids=$(nginx_pids | tr '\n' ' ')
  echo "$me:   nginx pids: $nginx_pids"
  check "$t: shake stat (text): LISTEN on :8080, :6379, :8000, :11111; ESTABLISHED on :8080" bash -c "
    for p in 8080 6379 8000 11111; do grep -qE '^LISTEN .* $a:'\$p' ' $work/stat.txt || exit 1; done
    grep -qE '^ESTABLISHED .* $a:8080 ' $work/stat.txt"
  check "$t: shake stat (text): processes list nginx's master and both workers" bash -c "
    n=0; for p in $nginx_pids; do grep -q \"^processes:.* \$p(nginx)\" $work/stat.txt && n=\$((n+1)); done
    [[ \$n -eq 3 ]]"
  check "$t: shake stat --json: listeners, ESTABLISHED > 0 on 8080, 3 nginx processes" "$py" -c "
import json, sys
d = json.load(open('$work/stat.json')); j = d['stacks'][0] if 'stacks' in d else d
socks = j['sockets']
for p in (8080, 6379, 8000, 11111):
    assert any(s['state'] == 'LISTEN' and s['local'] == '$a:%d' % p for s in socks), p
est = [s for s in socks if s['state'] == 'ESTABLISHED' and s['local'] == '$a:8080']
assert est and j['states']['ESTABLISHED'] >= len(est), (len(est), j['states'])
ng = sorted(p['pid'] for p in j['processes'] if p['comm'] == 'nginx')
assert ng == sorted(int(x) for x in '$nginx_pids'.split()), ng
print('$me:   json: %d sockets, %d ESTABLISHED on 8080, states %s' % (len(socks), len(est),
      {k: v for k, v in j['states'].items() if v}))"
}

# Kill each program with SIGKILL while the others carry traffic; held idle connections see FIN.
kill_each() {  # address tag
  local a=$1 t=$2 name port pids r
  for name in sockperf http redis nginx; do
    case $name in
      sockperf) port=11111; pids=$(cat "$work/sockperf.pid") ;;
      http) port=8000; pids=$(cat "$work/http.pid") ;;
      redis) port=6379; pids=$(cat "$work/redis.pid") ;;
      nginx) port=8080; pids=$(nginx_pids) ;;
    esac
    # The launcher execs, so the recorded pid is the program's.
    rm -f "$work/hold.ready"
    in_ns timeout 20 "$py" "$work/hold.py" "$a" $port 0 "$work/hold.ready" 10 >"$work/hold.out" 2>&1 &
    local hp=$!
    for _ in $(seq 50); do [[ -e "$work/hold.ready" ]] && break; sleep 0.1; done
    sleep 0.3  # the server has accepted it
    in_ns timeout 30 ab -q -n 3000 -c 10 "http://$a:8080/index.html" >"$work/ab-kill" 2>&1 &
    local abp=$!
    sleep 0.3
    kill -9 $pids
    wait $hp; r=$(cat "$work/hold.out")
    wait $abp
    check "$t: SIGKILL of $name: its idle client sees EOF (a FIN), got: $r" test "$r" = eof
    local ok=1 p
    for p in 8080 6379 8000 11111; do
      [[ $p == "$port" ]] && continue
      [[ -e "$work/dead-$p" ]] && continue
      case $p in
        8080) [[ $(in_ns curl -sS -m 5 "http://$a:8080/index.html") == hello ]] || { ok=0; echo "$me:   nginx not serving"; } ;;
        8000) [[ $(in_ns curl -sS -m 5 "http://$a:8000/index.html") == hello ]] || { ok=0; echo "$me:   http.server not serving"; } ;;
        6379) [[ $(in_ns timeout 5 redis-cli -h "$a" PING) == PONG ]] || { ok=0; echo "$me:   redis not serving"; } ;;
        11111) in_ns timeout 10 sockperf ping-pong --tcp -i "$a" -p 11111 -t 1 >"$work/sp1" 2>&1 &&
                 grep -q 'ReceivedMessages=[1-9]' "$work/sp1" || { ok=0; echo "$me:   sockperf not serving"; } ;;
      esac
    done
    if [[ $name != nginx ]]; then
      check "$t: after SIGKILL of $name the others serve (and ab during the kill: 0 failed)" bash -c "
        [[ $ok -eq 1 ]] && grep -qE '^Failed requests: +0\$' $work/ab-kill"
    else
      check "$t: after SIGKILL of nginx the others serve" test $ok -eq 1
    fi
    touch "$work/dead-$port"
  done
  rm -f "$work"/dead-*
}

# A killed server with unread data: its peer gets a RST, as from Linux.
kill_unread() {  # device address tag
  local sh=("$shake" --device "$1" --addr "$2/24" --)
  ip netns exec "$ns" "${sh[@]}" "$py" -c "
import socket, time
l = socket.create_server(('0.0.0.0', 9100)); c, _ = l.accept(); time.sleep(60)" &
  local sp=$!
  up 9100 "$2"  # this probe connection is accepted (and then ignored)
  rm -f "$work/hold.ready"
  in_ns timeout 20 "$py" "$work/hold.py" "$2" 9100 1000 "$work/hold.ready" 10 >"$work/hold.out" 2>&1 &
  local hp=$!
  for _ in $(seq 50); do [[ -e "$work/hold.ready" ]] && break; sleep 0.1; done
  sleep 0.3
  kill -9 $sp; wait $hp
  # The probe connection was accepted and then left (nothing unread): FIN; the held one has
  # 1000 unread bytes in the listener's queue or an accepted socket: RST.
  check "$3: SIGKILL of a server with 1000 bytes unread: its client sees a reset, got: $(cat "$work/hold.out")" \
    test "$(cat "$work/hold.out")" = reset
}

# 5% loss both ways on the kernel's side of the device.
loss() {  # on|off kernel-device
  if [[ $1 == on ]]; then
    in_ns nft -f - <<NFT
table inet h13loss {
  chain in { type filter hook input priority 0; iifname "$2" numgen random mod 100 < 5 drop; }
  chain out { type filter hook output priority 0; oifname "$2" numgen random mod 100 < 5 drop; }
}
NFT
  else
    in_ns nft delete table inet h13loss
  fi
}

# 1 MiB, close, os._exit(0), behind 5% loss: 20 runs.
megabyte() {  # device address kernel-device tag
  local sh=("$shake" --device "$1" --addr "$2/24" --)
  local ok=0 i got
  loss on "$3" || { echo "$me:   nft failed"; }
  for i in $(seq 20); do
    ip netns exec "$ns" timeout 40 "${sh[@]}" "$py" -c "
import os, socket
l = socket.create_server(('0.0.0.0', 9200)); c, _ = l.accept()
c.sendall(open('$work/1M', 'rb').read()); c.close(); os._exit(0)" &
    local sp=$!
    # On failure the client says how far it got and when: connect attempts, bytes, seconds.
    got=$(in_ns timeout 40 "$py" -c "
import hashlib, socket, time
t0 = time.monotonic(); h = hashlib.sha256(); n = 0; tries = 0; s = None
try:
    while s is None and tries < 50:
        tries += 1
        try: s = socket.create_connection(('$2', 9200), 2)
        except OSError: time.sleep(0.1)
    s.settimeout(20)  # RTO backoff behind 5% loss can leave seconds between segments
    while time.monotonic() - t0 < 35:
        d = s.recv(65536)
        if not d: break
        h.update(d); n += len(d)
    print(n, h.hexdigest())
except Exception as e:
    print(n, 'after %.1f s and %d connect attempts: %r' % (time.monotonic() - t0, tries, e))")
    wait $sp
    local srv=$?
    if [[ $got == "$((1 << 20)) $want1m" ]]; then
      ok=$((ok + 1))
    else
      echo "$me:   run $i: server exit $srv, client got: $got"
      in_ns "$shake" stat --device "$1" 2>&1 | grep -vE 'TIME-WAIT' | head -20 | sed "s/^/$me:     /"
      tail -n 15 "$work/keeper.log" | sed "s/^/$me:     /"
    fi
  done
  loss off "$3"
  check "$4: 1 MiB then close and os._exit(0) behind 5% loss both ways: $ok of 20 byte-exact" test $ok -eq 20
  jq_py "$1" "'%d %s' % (sum(1 for s in j['sockets'] if s['state'] == 'TIME-WAIT' and s['local'].endswith(':9200') and s['orphan'] and not s['pids']), [p['comm'] for p in j['processes']])" >"$work/tw" 2>&1
  echo "$me:   after the servers exited: TIME-WAIT orphans on :9200 and processes: $(cat "$work/tw")"
  check "$4: the keeper holds the exited servers' TIME-WAITs (stat --json: >= 1 orphan TIME-WAIT, no process)" bash -c "
    read -r n procs <$work/tw; [[ \$n -ge 1 && \$procs == '[]' ]]"
}

# An idle keeper: 0 ticks in 5 s, and gone SHAKE_KEEPER_IDLE after its stack is empty.
idle_keeper() {  # device address tag
  local sh=("$shake" --device "$1" --addr "$2/24" --)
  ip netns exec "$ns" "${sh[@]}" "$py" -c "import socket, time; l = socket.create_server(('0.0.0.0', 9300)); time.sleep(30)" &
  local sp=$!
  up 9300 "$2" || echo "$me:   the probe server on :9300 does not answer"
  local kp="" a b
  for _ in $(seq 50); do
    kp=$(jq_py "$1" "j['keeper_pid']" 2>/dev/null)
    [[ $kp =~ ^[0-9]+$ ]] && break
    sleep 0.1
  done
  if ! [[ $kp =~ ^[0-9]+$ && -r /proc/$kp/stat ]]; then
    check "$3: shake stat --json names the keeper of the stack on $1 (got '$kp')" false
    kill -9 $sp; wait $sp
    return
  fi
  sleep 1  # the probe connection's close and its TIME-WAIT timer are set
  a=$(awk '{print $14 + $15}' "/proc/$kp/stat"); sleep 5; b=$(awk '{print $14 + $15}' "/proc/$kp/stat")
  echo "$me:   keeper $kp: $((b - a)) ticks in 5 s"
  check "$3: an idle keeper uses no CPU (0 ticks in 5 s)" test $((b - a)) -eq 0
  kill -9 $sp; wait $sp
  # The probe connection was closed by its kernel client first, so its TIME-WAIT is the
  # kernel's: the stack is empty once the killed process's listener is closed.
  local gone=0 t0=$SECONDS
  for _ in $(seq 100); do kill -0 "$kp" 2>/dev/null || { gone=1; break; }; sleep 0.1; done
  echo "$me:   keeper $kp ended $((SECONDS - t0)) s after the last process was killed"
  check "$3: the keeper ends by itself once its stack is empty for SHAKE_KEEPER_IDLE=2 s (within 10 s)" test $gone -eq 1
}

run_mode() {  # device kernel-device address
  local dev=$1 kdev=$2 a=$3 t=${1%%:*}
  echo "=== $dev (at ${SECONDS}s)"
  idle_keeper "$dev" "$a" "$t"
  start_apps "$dev" "$a"
  local k
  k=$(jq_py "$dev" "len(j['processes'])")
  check "$t: the four programs share one stack (shake stat lists one stack on $dev, with >= 6 processes)" bash -c "
    [[ \$(ip netns exec $ns $shake stat --json | $py -c 'import json,sys; print(sum(1 for x in json.load(sys.stdin)[\"stacks\"] if x[\"device\"] == \"$dev\"))') -eq 1 && ${k:-0} -ge 6 ]]"
  loads "$a" "$t"
  local e
  e=$(in_ns "$shake" --device "$dev" --addr "$a/24" -- "$py" -c "
import socket
s = socket.socket()
try: s.bind(('0.0.0.0', 8080)); print('bound')
except OSError as x: print(x.errno)" 2>&1)
  check "$t: a second program binding nginx's port gets EADDRINUSE (errno 98), got: $e" test "$e" = 98
  stat_under_load "$dev" "$a" "$t"
  kill_each "$a" "$t"
  kill_unread "$dev" "$a" "$t"
  megabyte "$dev" "$a" "$kdev" "$t"
}

run_mode tun:shk0 shk0 198.18.40.2
run_mode packet:pa pb 198.18.41.2
echo "$me: $failures failure(s) in ${SECONDS}s"
exit $((failures > 0))
