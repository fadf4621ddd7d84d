#!/usr/bin/env bash
# Fault suite (issue 10, tests/robust/), first part: unmodified programs under shake through
# shake-relay's impairment, and a process that exits right after close() through loss.
#
#   robust_test.sh SHAKE_LAUNCHER SHAKE_RELAY SYN_FLOOD   (PROFILE=short by default; PROFILE=long by hand)
#
# Cases (each prints "ROW | case | what was tried | figures | bytes lost"):
#   impair.curl   shake curl downloads a file from a kernel nginx; must be byte-exact, exit 0
#   impair.nginx  kernel curl downloads from shake nginx (master + 2 workers); byte-exact
#   impair.redis  kernel redis-cli SETs a value on shake redis-server and GETs it back; byte-exact
#     all three through 5% loss, 1% duplication, 2% reordering, 0.1% corruption, 50 ms jitter,
#     each direction, bounded by timeouts (a hang is a failure)
#   exit.orphan   shake python3: accept, sendall(1 MiB), close(), os._exit(0), through 5% loss;
#     the kernel client must receive every byte, in every run (20 in the long profile)
#   flood.syn     syn_flood (raw socket, spoofed sources in 198.18.51.0/24, which the stack reaches
#     through its gateway, the kernel, which drops them) at >= 50,000 SYN/s against shake nginx
#     while a kernel client makes fresh-connection requests: >= 99% of them succeed
#
# Topology (198.18.50.0/24; removed on exit, also on failure):
#   ns h10r-c-PID (kernel, c0 198.18.50.1/24) -- veth -- ns h10r-r-PID (shake-relay r0<->r1)
#   -- veth -- ns h10r-s-PID (s0, no kernel address; the stack is 198.18.50.2/24, AF_PACKET)
# Skips (exit 77) without root or a needed program; fails instead when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
relay=$(readlink -f "$2")
flood=$(readlink -f "$3")
profile=${PROFILE:-short}
pid=$$
nc="h10r-c-$pid" nr="h10r-r-$pid" ns="h10r-s-$pid"
kaddr=198.18.50.1 saddr=198.18.50.2

me=robust_test
. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: namespaces and veth need CAP_NET_ADMIN"
for p in ip curl nginx redis-server redis-cli python3 sha256sum; do
  command -v $p >/dev/null || skip "$p is not installed"
done
py=$(readlink -f "$(command -v python3)")
if [[ $profile == long ]]; then
  size_mib=16 orphan_runs=20 seed_count=3
else
  size_mib=1 orphan_runs=5 seed_count=1
fi
work=$(mktemp -d /tmp/h10r-robust.XXXXXX)

before_cleanup() { [[ -n "${relay_pid:-}" ]] && kill "$relay_pid" 2>/dev/null; }

set -e
own_namespaces "$work" "$ns" "$nr" "$nc"
ip link add h10rc0 netns "$nc" type veth peer name h10rr0 netns "$nr"
ip link add h10rs0 netns "$ns" type veth peer name h10rr1 netns "$nr"
ip -n "$nc" link set h10rc0 name c0
ip -n "$nr" link set h10rr0 name r0
ip -n "$nr" link set h10rr1 name r1
ip -n "$ns" link set h10rs0 name s0
ip -n "$nc" addr add $kaddr/24 dev c0
for l in "$nc c0" "$nr r0" "$nr r1" "$ns s0"; do set -- $l; ip -n "$1" link set "$2" up; done
set +e

failures=0
row() { echo "ROW | $1 | $2 | $3 | $4"; }
fail() { echo "robust_test: FAIL: $*"; failures=$((failures + 1)); }

start_relay() {  # relay args...: (re)start shake-relay in the middle namespace
  [[ -n "${relay_pid:-}" ]] && { kill "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null; }
  ip netns exec "$nr" timeout 900 "$relay" --a r0 --b r1 "$@" >"$work/relay.log" 2>&1 &
  relay_pid=$!
  for _ in $(seq 50); do grep -q "shake-relay:" "$work/relay.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "robust_test: relay did not start: $(cat "$work/relay.log")"; return 1
}
stop_relay() {  # prints the relay's counters
  kill "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null; relay_pid=
  tr '\n' ' ' <"$work/relay.log" | sed 's/  */ /g'
}
sh_s=("$shake" --device packet:s0 --addr "$saddr/24" --gateway $kaddr --)

mkdir -p "$work/www"
head -c $((size_mib << 20)) /dev/urandom >"$work/www/file"
want=$(sha256sum <"$work/www/file" | cut -d' ' -f1)
bytes=$((size_mib << 20))

. "$(dirname "$0")/../lib/nginx.sh"
nginx_conf kernel 80 1
ip netns exec "$nc" nginx -c "$work/kernel.conf" -p "$work" || { echo "robust_test: kernel nginx did not start"; exit 1; }

impair=(--loss 0.05 --dup 0.01 --reorder 0.02 --corrupt 0.001 --jitter-ms 50)
tried="5% loss, 1% dup, 2% reorder, 0.1% corrupt, 50 ms jitter each way"
got_bytes() { [[ -f "$1" ]] && stat -c %s "$1" || echo 0; }
lost() { local g=$1; (( g >= bytes )) && echo 0 || echo $((bytes - g)); }

for seed in $(seq 7 $((6 + seed_count))); do
  # --- impair.curl: shake curl <- kernel nginx
  start_relay --seed "$seed" "${impair[@]}" || { fail "relay"; break; }
  rm -f "$work/out"; t0=$SECONDS
  ip netns exec "$ns" timeout 240 "${sh_s[@]}" curl -sS -o "$work/out" "http://$kaddr/file"; rc=$?
  sum=$(sha256sum <"$work/out" 2>/dev/null | cut -d' ' -f1); g=$(got_bytes "$work/out")
  counters=$(stop_relay)
  row impair.curl "shake curl GET ${size_mib} MiB from kernel nginx, $tried, seed $seed" \
    "exit $rc, $g bytes in $((SECONDS - t0)) s, sha256 $([[ $sum == "$want" ]] && echo equal || echo DIFFERS); relay: $counters" "$(lost "$g")"
  [[ $rc -eq 0 && $sum == "$want" ]] || fail "impair.curl seed $seed: exit $rc, $g bytes"

  # --- impair.nginx: kernel curl <- shake nginx (2 workers)
  nginx_conf shaked 8080 2
  start_relay --seed 1 || { fail relay; break; }  # a plain bridge while the server starts
  ip netns exec "$ns" timeout 20 "${sh_s[@]}" nginx -c "$work/shaked.conf" -p "$work"
  up=0
  for _ in $(seq 50); do ip netns exec "$nc" curl -s -o /dev/null -m 1 "http://$saddr:8080/" && { up=1; break; }; sleep 0.2; done
  if [[ $up -ne 1 ]]; then fail "impair.nginx: shake nginx did not answer"; else
    start_relay --seed "$((seed + 100))" "${impair[@]}" || { fail relay; break; }
    rm -f "$work/out"; t0=$SECONDS
    ip netns exec "$nc" timeout 240 curl -sS -o "$work/out" "http://$saddr:8080/file"; rc=$?
    sum=$(sha256sum <"$work/out" 2>/dev/null | cut -d' ' -f1); g=$(got_bytes "$work/out")
    counters=$(stop_relay)
    row impair.nginx "kernel curl GET ${size_mib} MiB from shake nginx (2 workers), $tried, seed $((seed + 100))" \
      "exit $rc, $g bytes in $((SECONDS - t0)) s, sha256 $([[ $sum == "$want" ]] && echo equal || echo DIFFERS); relay: $counters" "$(lost "$g")"
    [[ $rc -eq 0 && $sum == "$want" ]] || fail "impair.nginx seed $seed: exit $rc, $g bytes"
  fi
  [[ -f "$work/shaked.pid" ]] && { kill -QUIT "$(cat "$work/shaked.pid")" 2>/dev/null; sleep 1; }

  # --- impair.redis: kernel redis-cli SET/GET against shake redis-server
  ip netns exec "$ns" timeout 300 "${sh_s[@]}" redis-server --port 6379 --bind 0.0.0.0 \
    --protected-mode no --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  start_relay --seed 1 || { fail relay; break; }
  up=0
  for _ in $(seq 50); do [[ $(ip netns exec "$nc" timeout 2 redis-cli -h $saddr PING 2>/dev/null) == PONG ]] && { up=1; break; }; sleep 0.2; done
  if [[ $up -ne 1 ]]; then fail "impair.redis: shake redis-server did not answer"; else
    base64 -w0 <"$work/www/file" >"$work/val"
    vbytes=$(stat -c %s "$work/val")
    start_relay --seed "$((seed + 200))" "${impair[@]}" || { fail relay; break; }
    t0=$SECONDS
    setr=$(ip netns exec "$nc" timeout 240 redis-cli -h $saddr -x SET k <"$work/val" 2>&1)
    ip netns exec "$nc" timeout 240 redis-cli -h $saddr --raw GET k 2>/dev/null | head -c "$vbytes" >"$work/got"
    counters=$(stop_relay)
    g=$(got_bytes "$work/got")
    same=$(cmp -s "$work/val" "$work/got" && echo equal || echo DIFFERS)
    row impair.redis "kernel redis-cli SET+GET a $vbytes-byte value on shake redis-server, $tried, seed $((seed + 200))" \
      "SET: $setr, GET $g bytes in $((SECONDS - t0)) s, $same; relay: $counters" \
      "$( (( g >= vbytes )) && echo 0 || echo $((vbytes - g)))"
    [[ $setr == OK && $same == equal ]] || fail "impair.redis seed $seed: SET '$setr', $g bytes, $same"
  fi
  kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null
done

# --- exit.orphan: sendall(1 MiB); close(); os._exit(0) under shake, through 5% loss
cat >"$work/orphan_server.py" <<'PY'
import os, socket, sys
data = open(sys.argv[1], "rb").read()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(1)
print("listening", flush=True)
c, _ = l.accept()
c.sendall(data); c.close()
os._exit(0)
PY
cat >"$work/orphan_client.py" <<'PY'
import hashlib, socket, sys, time
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
deadline = time.time() + 20
while True:
    try:
        s = socket.create_connection((host, port), timeout=5); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.1)
s.settimeout(30)
buf = bytearray()
try:
    while True:
        d = s.recv(65536)
        if not d: break
        buf += d
    end = "eof"
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "timeout"
open(out, "wb").write(buf)
print(end)
PY
head -c $((1 << 20)) /dev/urandom >"$work/mib"
wantm=$(sha256sum <"$work/mib" | cut -d' ' -f1)
ok=0 lostsum=0 ends=""
start_relay --seed 11 --loss 0.05 || fail relay
for run in $(seq "$orphan_runs"); do
  port=$((9000 + run))
  ip netns exec "$ns" timeout 120 "${sh_s[@]}" "$py" "$work/orphan_server.py" "$work/mib" $port >"$work/os.log" 2>&1 &
  spid=$!
  for _ in $(seq 50); do grep -q listening "$work/os.log" && break; sleep 0.1; done
  end=$(ip netns exec "$nc" timeout 120 "$py" "$work/orphan_client.py" $saddr $port "$work/om" 2>&1 | tail -1)
  wait "$spid"; src=$?
  g=$(got_bytes "$work/om"); sum=$(sha256sum <"$work/om" 2>/dev/null | cut -d' ' -f1)
  ends+="$end "
  if [[ $end == eof && $sum == "$wantm" && $src -eq 0 ]]; then ok=$((ok + 1)); else
    echo "robust_test:   exit.orphan run $run: server exit $src, client $end, $g bytes"
    (( g < (1 << 20) )) && lostsum=$((lostsum + (1 << 20) - g))
  fi
done
counters=$(stop_relay)
row exit.orphan "shake python3 sendall(1 MiB); close(); os._exit(0), 5% loss each way, $orphan_runs runs" \
  "$ok of $orphan_runs byte-exact with EOF; relay: $counters" "$lostsum"
[[ $ok -eq $orphan_runs ]] || fail "exit.orphan: $ok of $orphan_runs"

# --- flood.syn: spoofed SYNs at >= 50,000/s against shake nginx, legitimate clients meanwhile
echo hello >"$work/www/index.html"
if [[ $profile == long ]]; then flood_s=20; else flood_s=5; fi
start_relay --seed 1 || fail relay
nginx_conf flood 8080 2
ip netns exec "$ns" timeout 20 "${sh_s[@]}" nginx -c "$work/flood.conf" -p "$work"
sleep 1
ip netns exec "$nc" timeout $((flood_s + 10)) "$flood" $saddr 8080 198.18.51.0 60000 "$flood_s" $((60000 * flood_s)) >"$work/flood.out" 2>&1 &
fpid=$!
sleep 0.3
legit=$(ip netns exec "$nc" timeout $((flood_s + 30)) "$py" "$(dirname "$0")/legit_client.py" $saddr 8080 "$((flood_s - 1))")
wait "$fpid"
stat_json=$(ip netns exec "$ns" timeout 10 "$shake" stat --json 2>&1)
counters=$(stop_relay)
[[ -f "$work/flood.pid" ]] && kill -QUIT "$(cat "$work/flood.pid")" 2>/dev/null
read -r lok ltried <<<"${legit:-0 0}"
frate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' "$work/flood.out")
cookies=$(grep -oE '"tcp_syncookies_(sent|recv|failed)": *[0-9]+' <<<"$stat_json" | tr -d '" ' | tr '\n' ' ')
row flood.syn "syn_flood at 60,000/s for ${flood_s} s (spoofed 198.18.51.0/24) against shake nginx, kernel client requests meanwhile" \
  "$(cat "$work/flood.out"); legitimate $lok of $ltried; $cookies; relay: $counters" 0
[[ ${frate:-0} -ge 50000 ]] || fail "flood.syn: generator reached ${frate:-0}/s, below 50,000"
[[ $ltried -gt 0 && $((lok * 100)) -ge $((ltried * 99)) ]] || fail "flood.syn: $lok of $ltried legitimate requests"

echo "robust_test: profile $profile, $failures failure(s), ${SECONDS}s"
[[ $failures -eq 0 ]]
