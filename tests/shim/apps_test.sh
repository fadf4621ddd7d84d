#!/usr/bin/env bash
# Unmodified programs over libshake's stack, in a private namespace, in TUN and AF_PACKET modes:
#   - shake curl fetching 64 MiB from a kernel-side nginx (sha256 compared), exit code 0
#   - shake curl fetching 100 URLs over one keep-alive connection (%{num_connects} sums to 1,
#     100 x 200, every body right)
#   - a shake python3 urllib client fetching 16 MiB
#   - shake python3 -m http.server serving kernel-side curl, through the stack and on loopback
#   - shake nginx (master + 2 workers, daemon on) under ab -n 20000 -c 50: no failed request,
#     and under wrk -t2 -c50 -d10s (keep-alive): no socket error, no non-2xx response
#   - nginx -s reload keeps serving and nginx -s quit ends it, without a wrong RST: kernel clients
#     holding finished keep-alive connections and an idle one across the reload and the quit see
#     EOF, and a capture on the device shows no RST from the stack except to a refused SYN
#   - an idle shake'd server uses < 1% CPU over 5 s
#   - shake redis-server under kernel-side redis-benchmark -q -n 100000 (a subset of its tests,
#     $SHAKE_APPS_REDIS_TESTS; empty = its full default list, ~40-60 s per mode) with a BGSAVE
#     every second during the run: every test line completes, no connection error, every BGSAVE
#     child (which inherits all client sockets and _exits) succeeds, and one redis-cli
#     connection held open across the saves answers every PING
#   - both ends under the shim at once: shake nginx on one device, shake curl on the other, the
#     namespace's kernel forwarding between them (both ways round): 64 MiB byte-exact, small
#     files, 100 URLs over one connection
#
#   apps_test.sh SHAKE_LAUNCHER
#
# Topology (198.18.0.0/15 only; removed on exit, also on failure):
#   ns shkapps-PID: TUN shk0 with the kernel at 198.18.10.1/24 and the stack at .2 (TUN mode);
#   veth pa <-> pb inside the same namespace, the kernel at 198.18.11.1/24 on pb, the stack at
#   198.18.11.2/24 on pa (AF_PACKET mode; pa has no kernel address). For the both-ends part the
#   namespace forwards (ip_forward=1) between shk0 and pb, but not what arrives on pa (that is the
#   stack's traffic, not the kernel's to route), and each stack uses the kernel as its gateway.
# Skips (exit 77) with the reason without root or a needed program; fails instead when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
ns="shkapps-$$"
py=$(command -v python3)
py=$(readlink -f "$py")  # pyenv shims are shell scripts; preload the interpreter itself

me=apps_test
. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: the namespace and TUN device need CAP_NET_ADMIN"
for p in ip curl nginx ab wrk tcpdump redis-server redis-cli redis-benchmark; do command -v $p >/dev/null || skip "$p is not installed"; done
work=$(mktemp -d /tmp/shkapps.XXXXXX)  # after the skips: they exit before the cleanup trap

before_cleanup() {  # nginx and the servers first, by their pid files
  for pidf in "$work"/*.pid; do [[ -f "$pidf" ]] && kill "$(cat "$pidf")" 2>/dev/null; done
}
set -e
own_namespaces "$work" "$ns"
ip -n "$ns" tuntap add dev shk0 mode tun
ip -n "$ns" addr add 198.18.10.1/24 dev shk0
ip -n "$ns" link set shk0 up
ip -n "$ns" link add pa type veth peer name pb
ip -n "$ns" addr add 198.18.11.1/24 dev pb
ip -n "$ns" link set pa up
ip -n "$ns" link set pb up
set +e
in_ns() { ip netns exec "$ns" "$@"; }

mkdir -p "$work/www"
head -c $((16 << 20)) /dev/urandom >"$work/www/16M"
head -c $((64 << 20)) /dev/urandom >"$work/www/64M"
echo hello >"$work/www/index.html"
head -c 1024 /dev/urandom >"$work/www/1K"
want=$(sha256sum <"$work/www/16M" | cut -d' ' -f1)
want64=$(sha256sum <"$work/www/64M" | cut -d' ' -f1)

. "$(dirname "$0")/../lib/nginx.sh"
# The kernel-side server both modes fetch from.
nginx_conf kernel 80 1
in_ns nginx -c "$work/kernel.conf" -p "$work" || { echo "apps_test: kernel nginx did not start"; exit 1; }

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "apps_test: ok: $what"; else echo "apps_test: FAIL: $what"; failures=$((failures + 1)); fi
}

fetch64() {  # url [launcher args...]: a 64 MiB download, exit code 0 and byte-exact
  local url=$1; shift
  rm -f "$work/out64"
  in_ns timeout 90 "$@" curl -sS -o "$work/out64" "$url" || { echo "apps_test:   curl exit $?"; return 1; }
  [[ $(sha256sum <"$work/out64" | cut -d' ' -f1) == "$want64" ]] ||
    { echo "apps_test:   64M: $(stat -c %s "$work/out64") bytes, sha256 differs"; return 1; }
  rm -f "$work/out64"
}

keepalive100() {  # base-url [launcher args...]: one curl, 100 URLs, one connection
  local base=$1; shift
  local d="$work/ka"
  rm -rf "$d"; mkdir -p "$d"
  in_ns timeout 60 "$@" curl -sS -o "$d/#1" -w '%{http_code} %{num_connects}\n' \
    "$base/index.html?[1-100]" >"$d/w.out"
  local rc=$? codes conns bodies=0 i
  codes=$(grep -c '^200 ' "$d/w.out")
  conns=$(awk '{n += $2} END {print n + 0}' "$d/w.out")
  for i in $(seq 100); do [[ -f "$d/$i" && $(cat "$d/$i") == hello ]] && bodies=$((bodies + 1)); done
  echo "apps_test:   100 URLs: exit $rc, $(wc -l <"$d/w.out") transfers, $codes x 200, $conns connection(s) opened, $bodies bodies right"
  [[ $rc -eq 0 && $(wc -l <"$d/w.out") -eq 100 && $codes -eq 100 && $conns -eq 1 && $bodies -eq 100 ]]
}

ab_run() {  # url requests concurrency: all complete, none failed, every response 2xx
  local out rc
  out=$(in_ns timeout 120 ab -q -n "$2" -c "$3" "$1" 2>&1); rc=$?
  grep -E "Complete requests|Failed requests|Non-2xx|Requests per second|Time per request.*\(mean\)$" <<<"$out" |
    sed 's/^/apps_test:   ab: /'
  [[ $rc -eq 0 ]] || echo "apps_test:   ab exit $rc: $(tail -3 <<<"$out")"
  [[ $rc -eq 0 ]] && grep -qE "^Complete requests: +$2\$" <<<"$out" &&
    grep -qE '^Failed requests: +0$' <<<"$out" && ! grep -q 'Non-2xx' <<<"$out"
}

wrk_run() {  # url: wrk -t2 -c50 -d10s (keep-alive); no socket error, no non-2xx, requests done
  local out rc n
  out=$(in_ns timeout 40 wrk -t2 -c50 -d10s "$1" 2>&1); rc=$?
  grep -E "Latency|requests in|Socket errors|Non-2xx|Requests/sec" <<<"$out" | sed 's/^ */apps_test:   wrk: /'
  n=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' <<<"$out")
  [[ $rc -eq 0 ]] || echo "apps_test:   wrk exit $rc: $(tail -3 <<<"$out")"
  # wrk prints the two lines only when the count is not zero.
  [[ $rc -eq 0 && ${n:-0} -ge 1000 ]] && ! grep -qE 'Socket errors|Non-2xx' <<<"$out"
}

# A kernel-side client that holds N finished keep-alive connections (3 requests each, every
# response read) and one idle connection (no request) to the server, writes its local ports to
# READY, and waits for the server to end them: each keep-alive connection must end in EOF (a FIN,
# not a RST) and is closed at once after it, so our FIN reaches a server whose process may have
# exited meanwhile. The idle one is half-closed by us once RELEASE exists (nginx keeps a connection
# that has not sent a request until client_header_timeout) and must then see EOF too.
cat >"$work/hold.py" <<'PY'
import os, select, socket, sys, time
host, port, n, ready, release, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6])
def response(s, buf):
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d: raise EOFError("closed mid-response")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(buf) < length:
        d = s.recv(65536)
        if not d: raise EOFError("closed mid-body")
        buf += d
    assert buf[:length] == b"hello\n", buf[:length]
    return buf[length:]
kept = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    buf = b""
    for r in range(3):
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n")
        buf = response(s, buf)
    assert buf == b""
    kept.append(s)
idle = socket.create_connection((host, port), timeout=10)
with open(ready + ".tmp", "w") as f: f.write(" ".join(str(s.getsockname()[1]) for s in kept + [idle]) + "\n")
os.rename(ready + ".tmp", ready)
state = {s: "open" for s in kept + [idle]}
deadline, released = time.time() + wait, False
while time.time() < deadline:
    if not released and os.path.exists(release) and all(state[s] != "open" for s in kept):
        idle.shutdown(socket.SHUT_WR); released = True
    pending = [s for s in state if state[s] == "open"]
    if not pending: break
    for s in select.select(pending, [], [], 0.1)[0]:
        try: state[s] = "eof" if s.recv(4096) == b"" else "data"
        except ConnectionResetError: state[s] = "reset"
        s.close()
print("keep-alive: " + " ".join(f"{k}={[state[s] for s in kept].count(k)}" for k in ("eof", "reset", "data", "open")) +
      f"; idle: {state[idle]}" + ("" if released else " (not released)"))
sys.exit(0 if all(v == "eof" for v in state.values()) else 1)
PY

# RSTs from the stack's server port in a capture that would be wrong. Legitimate is a RST that
# answers a SYN no listener took (a connection attempt after the quit closed the listeners): a
# RST to a client port that sent a SYN in the capture which the stack never answered with a
# SYN-ACK is not counted. Every other one is: the clients in the capture window end their
# connections cleanly (nothing left unread, no data after a FIN), so a RST means a connection was
# aborted (e.g. when a process holding it exited) or forgotten (a later segment of it answered
# with RST), which the kernel would not do.
wrong_rsts() {  # pcap stack-address port -> the RST lines, then "wrong=N fins=M"
  # tcpdump -nn lines: "TIME IP SRC > DST: Flags [FLAGS], ..."
  tcpdump -nn -r "$1" 2>/dev/null | awk -v me="$2.$3" '
    $5 == me ":" && $7 == "[S]," { syn[$3 ":"] = 1 }
    $3 == me && $7 == "[S.]," { acked[$5] = 1 }
    $3 == me && $7 ~ /^\[[^]]*F/ { fins++ }
    $3 == me && $7 ~ /^\[R/ {
      if (($5 in syn) && !($5 in acked)) print "apps_test:   RST to a refused SYN (not counted): " $0
      else { wrong++; print "apps_test:   wrong RST: " $0 }
    }
    END { printf "wrong=%d fins=%d\n", wrong, fins }'
}

run_mode() {  # device kernel-address stack-address
  local dev=$1 kaddr=$2 saddr=$3
  local sh=("$shake" --device "$dev" --addr "$saddr/24" --)
  echo "=== mode $dev (at ${SECONDS}s)"
  check "$dev: shake curl 64M from kernel nginx: exit 0, byte-exact" fetch64 "http://$kaddr/64M" "${sh[@]}"
  check "$dev: shake curl 100 URLs over one keep-alive connection" keepalive100 "http://$kaddr" "${sh[@]}"
  check "$dev: shake curl exit code on a refused port is 7, as without the shim" bash -c "
    ip netns exec $ns timeout 20 ${sh[*]} curl -sS -o /dev/null http://$kaddr:9/ 2>/dev/null; [[ \$? -eq 7 ]]"
  check "$dev: shake python3 urllib client" bash -c "
    ip netns exec $ns timeout 60 ${sh[*]} $py -c '
import hashlib, urllib.request
d = urllib.request.urlopen(\"http://$kaddr/16M\", timeout=20).read()
assert hashlib.sha256(d).hexdigest() == \"$want\", len(d)'"

  (cd "$work/www" && in_ns "${sh[@]}" "$py" -m http.server 8000 >"$work/http.log" 2>&1 &
   echo $! >"$work/http.pid")
  local up=0
  for _ in $(seq 50); do
    in_ns curl -s -o /dev/null -m 1 "http://127.0.0.1:8000/index.html" && { up=1; break; }
    sleep 0.1
  done
  check "$dev: shake python3 -m http.server starts" test $up -eq 1
  check "$dev: http.server serves kernel curl through the stack" bash -c "
    ip netns exec $ns timeout 30 curl -sS -o $work/out2 http://$saddr:8000/16M &&
    [[ \$(sha256sum <$work/out2 | cut -d' ' -f1) == $want ]]"
  check "$dev: http.server serves kernel curl on loopback" bash -c "
    [[ \$(ip netns exec $ns curl -sS -m 10 http://127.0.0.1:8000/index.html) == hello ]]"
  local hpid
  hpid=$(pgrep -f "http.server 8000" | head -1)
  if [[ -n "$hpid" ]]; then
    # http.server wakes itself every 0.5 s (serve_forever's poll interval): that is its own.
    local a b
    a=$(awk '{print $14 + $15}' "/proc/$hpid/stat"); sleep 5
    b=$(awk '{print $14 + $15}' "/proc/$hpid/stat")
    echo "apps_test: idle http.server: $((b - a)) ticks of CPU in 5 s"
    check "$dev: idle server under 1% CPU" test $((b - a)) -lt 5
  fi
  kill "$(cat "$work/http.pid")" 2>/dev/null; pkill -f "http.server 8000"; sleep 0.3

  nginx_conf shaked 8080 2
  check "$dev: shake nginx starts (master + 2 workers)" in_ns "${sh[@]}" nginx -c "$work/shaked.conf" -p "$work"
  sleep 0.5
  check "$dev: ab -n 20000 -c 50 against shake nginx: all complete, none failed" \
    ab_run "http://$saddr:8080/index.html" 20000 50
  check "$dev: wrk -t2 -c50 -d10s (keep-alive) against shake nginx: no socket error, all 2xx" \
    wrk_run "http://$saddr:8080/index.html"
  sleep 1  # let wrk's last connections finish closing before the capture starts

  # Reload and quit with clients around, captured on the device the stack's packets cross.
  local cap=shk0; [[ $dev == packet:* ]] && cap=pb
  local pcap="$work/quit-${dev%%:*}.pcap"
  # Not through in_ns: a function in the background would be a subshell, and its pid not tcpdump's.
  ip netns exec "$ns" tcpdump -i "$cap" -nn -U -w "$pcap" "tcp port 8080" 2>"$work/tcpdump.err" &
  echo $! >"$work/tcpdump.pid"
  for _ in $(seq 50); do grep -q 'listening on' "$work/tcpdump.err" && break; sleep 0.1; done
  rm -f "$work"/hold-*
  # Batch A is served by the workers the reload retires, batch B by the new ones the quit ends;
  # both idle connections stay until after the quit (keeping a retired worker alive meanwhile).
  in_ns "$py" "$work/hold.py" "$saddr" 8080 4 "$work/hold-a.ready" "$work/hold-quit" 30 \
    >"$work/hold-a.out" 2>&1 &
  local hold_a=$!
  for _ in $(seq 100); do [[ -e "$work/hold-a.ready" ]] && break; sleep 0.1; done
  in_ns nginx -c "$work/shaked.conf" -p "$work" -s reload; sleep 1
  check "$dev: nginx -s reload keeps serving" bash -c "
    [[ \$(ip netns exec $ns curl -sS -m 10 http://$saddr:8080/index.html) == hello ]]"
  in_ns "$py" "$work/hold.py" "$saddr" 8080 4 "$work/hold-b.ready" "$work/hold-quit" 30 \
    >"$work/hold-b.out" 2>&1 &
  local hold_b=$!
  for _ in $(seq 100); do [[ -e "$work/hold-b.ready" ]] && break; sleep 0.1; done
  in_ns nginx -c "$work/shaked.conf" -p "$work" -s quit
  sleep 0.5; touch "$work/hold-quit"  # now the idle connections may go, and with them nginx
  local gone=0
  for _ in $(seq 100); do
    [[ -e "$work/shaked.pid" ]] || { gone=1; break; }
    sleep 0.1
  done
  check "$dev: nginx -s quit ends nginx" test $gone -eq 1
  wait "$hold_a"; local rc_a=$?
  wait "$hold_b"; local rc_b=$?
  echo "apps_test:   clients across the reload: $(cat "$work/hold-a.out")"
  echo "apps_test:   clients across the quit:   $(cat "$work/hold-b.out")"
  # "idle: open" here means the worker read the client's FIN, closed and exited, and its own FIN
  # never reached the wire (the process exited before the stack sent it; the kernel would have).
  check "$dev: keep-alive and idle clients across reload and quit see EOF, not a reset" \
    test $((rc_a + rc_b)) -eq 0
  sleep 1
  # TERM: background jobs of a non-interactive shell ignore SIGINT. -U wrote every packet already.
  kill -TERM "$(cat "$work/tcpdump.pid")" 2>/dev/null; wait "$(cat "$work/tcpdump.pid")" 2>/dev/null
  rm -f "$work/tcpdump.pid"
  local rsts
  rsts=$(wrong_rsts "$pcap" "$saddr" 8080)
  grep -v '^wrong=' <<<"$rsts"
  echo "apps_test:   capture on $cap during reload + quit: $(tail -1 <<<"$rsts")"
  # 2 x (4 keep-alive + 1 idle) connections the stack closes, and the reload check's curl.
  local wrong fins
  read -r wrong fins < <(tail -1 <<<"$rsts" | sed -n 's/^wrong=\([0-9]*\) fins=\([0-9]*\)$/\1 \2/p')
  check "$dev: no wrong RST from the stack during reload + quit (and the capture saw >= 10 FINs)" \
    test "${wrong:-1}" -eq 0 -a "${fins:-0}" -ge 10
  if ((!gone)); then kill "$(cat "$work/shaked.pid")" 2>/dev/null; fi
  rm -f "$work/shaked.pid"

  run_redis "$dev" "$saddr"
}

# redis-benchmark's default list takes ~40-60 s per mode here (LRANGE_300..600 are most of it);
# this subset keeps both modes near 30 s together. Each test runs 100000 requests over 50
# connections that stay open for the whole test, so a BGSAVE fork inside a test exercises the
# shim's fork handling on 50 live sockets.
redis_tests=${SHAKE_APPS_REDIS_TESTS-ping,set,get,incr,lpush,lpop,lrange_100,mset}
run_redis() {  # device stack-address
  local dev=$1 saddr=$2 rdir="$work/redis-${1%%:*}"
  mkdir -p "$rdir"
  # Default configuration but for running unprivileged in a temp dir; the client comes from the
  # kernel side, so protected mode (loopback only without a password) is off.
  in_ns "$shake" --device "$dev" --addr "$saddr/24" -- redis-server --port 6379 --bind 0.0.0.0 \
    --dir "$rdir" --save "" --daemonize no --protected-mode no --logfile "$rdir/redis.log" &
  echo $! >"$work/redis.pid"
  local up=0
  for _ in $(seq 50); do
    [[ $(in_ns redis-cli -h "$saddr" PING 2>/dev/null) == PONG ]] && { up=1; break; }
    sleep 0.1
  done
  check "$dev: shake redis-server starts and answers on the stack address" test $up -eq 1
  if ((up)); then
    # One connection held across the saves: 50 PINGs 0.2 s apart.
    in_ns timeout 30 redis-cli -h "$saddr" -r 50 -i 0.2 PING >"$rdir/held.out" 2>&1 &
    local held=$!
    (for _ in $(seq 60); do
       sleep 1
       [[ -e "$rdir/bench.done" ]] && break
       in_ns redis-cli -h "$saddr" BGSAVE
     done) >"$rdir/bgsave.out" 2>&1 &
    local saver=$!
    local targs=(); [[ -n "$redis_tests" ]] && targs=(-t "$redis_tests")
    in_ns timeout 100 redis-benchmark -h "$saddr" -q -n 100000 "${targs[@]}" >"$rdir/bench.raw" 2>&1
    local brc=$?
    touch "$rdir/bench.done"
    wait "$saver" "$held"
    # -q rewrites a progress line with \r; the final line of each test ends with \n.
    tr '\r' '\n' <"$rdir/bench.raw" | grep -v 'rps=' | grep -v '^ *$' >"$rdir/bench.out"
    sed 's/^/apps_test:   /' "$rdir/bench.out"
    local want_lines=20  # the default list's lines
    [[ -n "$redis_tests" ]] && want_lines=$(redis_lines "$redis_tests")
    local saves
    saves=$(grep -c 'Background saving started' "$rdir/bgsave.out")
    echo "apps_test: $dev: $saves BGSAVE(s) during the benchmark"
    check "$dev: redis-benchmark -n 100000: exit 0, $want_lines tests complete, no error" bash -c "
      [[ $brc -eq 0 ]] && [[ \$(grep -c 'requests per second' $rdir/bench.out) -eq $want_lines ]] &&
      ! grep -qiE 'error|reset|refused|closed' $rdir/bench.raw"
    check "$dev: BGSAVEs during the benchmark all succeed (>= 3)" bash -c "
      [[ $saves -ge 3 ]] && ! grep -qvE 'Background saving started|already in progress' $rdir/bgsave.out &&
      [[ \$(grep -c 'Background saving terminated with success' $rdir/redis.log) -eq \
         \$(grep -c 'Background saving started by pid' $rdir/redis.log) ]] &&
      ! grep -qE 'Background saving (error|terminated by signal)' $rdir/redis.log"
    check "$dev: a redis-cli connection held across the BGSAVEs answers all 50 PINGs" bash -c "
      [[ \$(grep -cx PONG $rdir/held.out) -eq 50 ]] && [[ \$(grep -cvx PONG $rdir/held.out) -eq 0 ]]"
    in_ns redis-cli -h "$saddr" SHUTDOWN NOSAVE >/dev/null 2>&1
  fi
  local gone=0
  for _ in $(seq 50); do
    kill -0 "$(cat "$work/redis.pid")" 2>/dev/null || { gone=1; break; }
    sleep 0.1
  done
  check "$dev: redis SHUTDOWN ends redis-server" test $gone -eq 1
  ((gone)) || kill -9 "$(cat "$work/redis.pid")" 2>/dev/null
  wait "$(cat "$work/redis.pid")" 2>/dev/null
  rm -f "$work/redis.pid"
}
redis_lines() {  # -t list -> how many result lines redis-benchmark -q prints for it
  local n=0 lrange=0 t
  for t in ${1//,/ }; do
    case $t in
      ping) n=$((n + 2)) ;;  # PING_INLINE, PING_MBULK
      lrange*) n=$((n + 1)); lrange=1 ;;
      *) n=$((n + 1)) ;;
    esac
  done
  echo $((n + lrange))  # "LPUSH (needed to benchmark LRANGE)" once
}

# Both ends on libshake's stacks, each on its own device, the namespace's kernel routing between
# the two subnets.
run_both() {  # server-device server-address server-gateway client-device client-address client-gateway
  local srv=("$shake" --device "$1" --addr "$2/24" --gateway "$3" --)
  local cli=("$shake" --device "$4" --addr "$5/24" --gateway "$6" --)
  local what="both ends: shake nginx on $1 $2, shake curl on $4 $5"
  echo "=== $what (at ${SECONDS}s)"
  nginx_conf shaked 8080 2
  check "$what: nginx starts" in_ns "${srv[@]}" nginx -c "$work/shaked.conf" -p "$work"
  sleep 0.5
  check "$what: 64M exit 0, byte-exact" fetch64 "http://$2:8080/64M" "${cli[@]}"
  check "$what: small file" bash -c "
    [[ \$(ip netns exec $ns timeout 20 ${cli[*]} curl -sS http://$2:8080/index.html) == hello ]]"
  check "$what: 1 KiB file byte-exact" bash -c "
    ip netns exec $ns timeout 20 ${cli[*]} curl -sS -o $work/out1k http://$2:8080/1K &&
    cmp -s $work/out1k $work/www/1K"
  check "$what: 100 URLs over one keep-alive connection" keepalive100 "http://$2:8080" "${cli[@]}"
  in_ns nginx -c "$work/shaked.conf" -p "$work" -s quit
  local gone=0
  for _ in $(seq 50); do
    [[ -e "$work/shaked.pid" ]] || { gone=1; break; }
    sleep 0.1
  done
  check "$what: nginx -s quit ends nginx" test $gone -eq 1
  if ((!gone)); then kill "$(cat "$work/shaked.pid")" 2>/dev/null; fi
  rm -f "$work/shaked.pid"
}

run_mode tun:shk0 198.18.10.1 198.18.10.2
run_mode packet:pa 198.18.11.1 198.18.11.2
# Forward between shk0 and pb; what arrives on pa is addressed to the stack there, not to be routed.
in_ns sysctl -qw net.ipv4.ip_forward=1 && in_ns sysctl -qw net.ipv4.conf.pa.forwarding=0 ||
  { echo "apps_test: FAIL: cannot enable forwarding in the namespace"; failures=$((failures + 1)); }
run_both tun:shk0 198.18.10.2 198.18.10.1 packet:pa 198.18.11.2 198.18.11.1
run_both packet:pa 198.18.11.2 198.18.11.1 tun:shk0 198.18.10.2 198.18.10.1
echo "apps_test: $failures failure(s) in ${SECONDS}s"
exit $((failures > 0))
