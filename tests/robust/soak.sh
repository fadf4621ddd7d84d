#!/usr/bin/env bash
# Soak (issue 10): shake nginx (master + 2 workers) and shake redis-server under rounds of wrk,
# ab and redis-benchmark with connection churn, for a long time; each sample records the
# servers' open descriptors and the stack's memory, and the run fails on any client error, on
# descriptors that do not come back, or on memory that stays above its starting level once
# the load stops and TIME-WAIT has run out.
#
#   tests/robust/soak.sh SHAKE_LAUNCHER            # PROFILE=long by default: 30 min, a sample a minute
#   PROFILE=short tests/robust/soak.sh build/shim/shake   # 3 min, a sample every 20 s
#   SOAK_SECONDS=600 SAMPLE_SECONDS=30 tests/robust/soak.sh build/shim/shake
#
# A round, repeated until the time is up: wrk -t2 -c50 for 10 s with keep-alive, then with
# "Connection: close" (a connection per request), ab -n 5000 -c 20 (HTTP/1.0), redis-benchmark
# -n 20000 -c 20 -t get,set (new connections each run). A sample is taken between rounds, with
# no client running.
# Each sample prints "SAMPLE | elapsed s | nginx fds | redis fds | stack memory bytes |
# arena live bytes | connections | requests so far | errors so far".
# The first quarter is a warm-up, after which the load stops until TIME-WAIT (60 s) has run out;
# that drained sample is the baseline. At the end the same: no connection may be left, the
# descriptors must equal the baseline's and the arena must be within 256 KiB of it.
#
# Topology (198.18.56.0/24; removed on exit, also on failure):
#   ns soak-c-PID (kernel clients, c0 198.18.56.1/24) -- veth -- ns soak-s-PID (s0; the stack
#   is 198.18.56.2/24 on packet:s0)
# Not part of ctest (its length is the point); skips (77) without root or a needed program.
set -uo pipefail
shake=$(readlink -f "$1")
profile=${PROFILE:-long}
if [[ $profile == short ]]; then
  total=${SOAK_SECONDS:-180} every=${SAMPLE_SECONDS:-20}
else
  total=${SOAK_SECONDS:-1800} every=${SAMPLE_SECONDS:-60}
fi
pid=$$
nc="soak-c-$pid" ns="soak-s-$pid"
kaddr=198.18.56.1 saddr=198.18.56.2

me=soak
. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: namespaces and veth need CAP_NET_ADMIN"
for p in ip nginx redis-server redis-cli redis-benchmark wrk ab python3; do
  command -v $p >/dev/null || skip "$p is not installed"
done
work=$(mktemp -d /tmp/soak.XXXXXX)
set -e
own_namespaces "$work" "$nc" "$ns"
ip link add soakc0 netns "$nc" type veth peer name soaks0 netns "$ns"
ip -n "$nc" link set soakc0 name c0
ip -n "$ns" link set soaks0 name s0
ip -n "$nc" addr add $kaddr/24 dev c0
ip -n "$nc" link set c0 up
ip -n "$ns" link set s0 up
# The clients make tens of thousands of connections: let their ports be reused.
ip netns exec "$nc" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
set +e

sh_s=("$shake" --device packet:s0 --addr "$saddr/24" --)
mkdir -p "$work/www"
head -c 4096 /dev/urandom >"$work/www/index.html"
. "$(dirname "$0")/../lib/nginx.sh"
nginx_conf soak 8080 2
ip netns exec "$ns" timeout $((total + 600)) "${sh_s[@]}" nginx -c "$work/soak.conf" -p "$work" ||
  { echo "soak: FAIL: shake nginx did not start"; exit 1; }
ip netns exec "$ns" timeout $((total + 600)) "${sh_s[@]}" redis-server --port 6379 --bind $saddr \
  --protected-mode no --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
  ip netns exec "$nc" curl -s -o /dev/null -m 1 "http://$saddr:8080/" &&
    [[ $(ip netns exec "$nc" timeout 2 redis-cli -h $saddr PING 2>/dev/null) == PONG ]] && break
  sleep 0.2
done

in_c() { ip netns exec "$nc" "$@"; }
stat_json() { ip netns exec "$ns" "$shake" stat --json --device packet:s0 2>/dev/null; }
# stat_field NAME: a number from the stack's object in `shake stat --json`.
stat_field() {
  stat_json | python3 -c "
import json, sys
d = json.load(sys.stdin)
s = d['stacks'][0] if isinstance(d, dict) and 'stacks' in d else (d[0] if isinstance(d, list) else d)
print(s.get('$1', -1))" 2>/dev/null || echo -1
}
nginx_pids() { local m; m=$(cat "$work/soak.pid" 2>/dev/null) || return; echo "$m $(pgrep -P "$m")"; }
fds_of() { local n=0 p; for p in "$@"; do n=$((n + $(ls /proc/"$p"/fd 2>/dev/null | wc -l))); done; echo $n; }
redis_server_pid() { pgrep -f "^redis-server $saddr:6379" | head -1; }

requests=0 errors=0
declare -a samples
sample() {
  local nfd rfd mem live conns
  nfd=$(fds_of $(nginx_pids)); rfd=$(fds_of "$(redis_server_pid)")
  mem=$(stat_field memory_bytes); live=$(stat_field arena_live_bytes); conns=$(stat_field connections)
  echo "SAMPLE | $((SECONDS - t0)) | $nfd | $rfd | $mem | $live | $conns | $requests | $errors"
  samples+=("$nfd $rfd $live $conns")
}
note_error() { errors=$((errors + 1)); echo "soak: client error: $*"; }

wrk_round() {  # extra wrk args
  local out
  out=$(in_c timeout 30 wrk -t2 -c50 -d10s "$@" "http://$saddr:8080/index.html" 2>&1)
  local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
  requests=$((requests + ${n:-0}))
  grep -qE "Socket errors|Non-2xx" <<<"$out" && note_error "wrk $*: $(grep -E 'Socket errors|Non-2xx' <<<"$out")"
  [[ -n "$n" ]] || note_error "wrk $*: no result: $out"
}
ab_round() {
  local out; out=$(in_c timeout 60 ab -q -n 5000 -c 20 "http://$saddr:8080/index.html" 2>&1)
  local done_n failed
  done_n=$(awk '/^Complete requests/ {print $3}' <<<"$out"); failed=$(awk '/^Failed requests/ {print $3}' <<<"$out")
  requests=$((requests + ${done_n:-0}))
  [[ ${done_n:-0} -eq 5000 && ${failed:-1} -eq 0 ]] || note_error "ab: complete ${done_n:-?}, failed ${failed:-?}"
}
redis_round() {
  local out rc
  out=$(in_c timeout 60 redis-benchmark -h $saddr -q -n 20000 -c 20 -t get,set 2>&1); rc=$?
  requests=$((requests + 40000))
  [[ $rc -eq 0 ]] && [[ $(grep -c "requests per second" <<<"$out") -eq 2 ]] ||
    note_error "redis-benchmark: exit $rc: $(tail -2 <<<"$out")"
}

# load_until T: rounds until T seconds have passed since t0, a sample every `every` seconds.
load_until() {
  local next=$((SECONDS + every))
  while ((SECONDS - t0 < $1)); do
    wrk_round
    wrk_round -H "Connection: close"
    ab_round
    redis_round
    if ((SECONDS >= next)); then sample; next=$((SECONDS + every)); fi
  done
}
# drain: no load until TIME-WAIT (60 s) has run out and only the listeners remain; then a sample.
drain() {
  local conns
  echo "soak: load stopped at $((SECONDS - t0)) s, $requests requests, $errors errors; waiting for TIME-WAIT"
  for _ in $(seq 90); do
    conns=$(stat_field connections)
    ((conns == 0)) && break
    sleep 1
  done
  sample
}

# The first quarter warms up: the stack's tables grow to the load's high-water mark (the
# connection table and the timer heap keep their capacity), and the baseline is taken after it
# has drained. The rest must then leave everything as the baseline had it.
t0=$SECONDS
warm=$((total / 4 > every ? total / 4 : every))
echo "soak: $profile profile, $total s (the first $warm s warm up), a sample every $every s"
echo "SAMPLE | elapsed s | nginx fds | redis fds | stack memory bytes | arena live bytes | connections | requests | errors"
sample
load_until "$warm"
drain
base=${#samples[@]}
load_until "$total"
drain
read -r nfd0 rfd0 live0 _ <<<"${samples[base - 1]}"
read -r nfd1 rfd1 live1 conns1 <<<"${samples[-1]}"
status=0
((errors == 0)) || { echo "soak: FAIL: $errors client errors"; status=1; }
[[ $nfd1 -eq $nfd0 && $rfd1 -eq $rfd0 ]] ||
  { echo "soak: FAIL: descriptors nginx $nfd0 -> $nfd1, redis $rfd0 -> $rfd1"; status=1; }
((conns1 == 0)) || { echo "soak: FAIL: $conns1 connections left after TIME-WAIT"; status=1; }
((live1 >= 0 && live1 <= live0 + (256 << 10))) ||
  { echo "soak: FAIL: arena live bytes $live0 after the warm-up, $live1 at the end"; status=1; }
echo "soak: $([[ $status -eq 0 ]] && echo PASS || echo FAIL): $requests requests, $errors errors," \
  "fds nginx $nfd0 -> $nfd1, redis $rfd0 -> $rfd1, arena $live0 -> $live1 bytes after the warm-up's drain and the end's"
exit $status
