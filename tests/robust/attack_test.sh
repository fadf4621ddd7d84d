#!/usr/bin/env bash
# Fault suite (issue 10, tests/robust/), the attack cases: forged segments against live
# connections, optimistic ACKs, and resource attacks against servers under shake.
#
#   attack_test.sh SHAKE_LAUNCHER TCP_ATTACK SYN_FLOOD   (PROFILE=short by default; PROFILE=long by hand)
#
# Cases (each prints "ROW | case | what was tried | figures | bytes lost" and fails the test when
# its condition does not hold):
#   attack.inject   a kernel client uploads a file to a shake python3 server and downloads one
#     back (paced, seconds long) while tcp_attack, beside it in the client's namespace, forges
#     RST, SYN, data and ACK segments with the connection's 4-tuple: half at random sequence and
#     acknowledgment numbers, half in the receive window learnt from the server's segments
#     (RFC 5961 3.2, 4.2, 5.2). Must hold: no reset, both directions sha256-exact, and the stack's
#     challenge-ACK counters move.
#   attack.optack   tcp_attack GETs a large file from shake nginx honestly, then again with ACKs
#     above SND.NXT (data the server cannot have sent: beyond what arrived plus the whole
#     window), alone for a second and then after each real ACK. Must hold: no new byte is sent in
#     answer to those ACKs alone (compared with the honest run's same second), the body is
#     sha256-exact, every such ACK is dropped (drops.ack_unsent_data) and some are answered by an ACK
#     (RFC 9293 3.10.7.4, RFC 5961 5.2, rate-limited).
#   attack.hoard    one connection sends out-of-order segments each leaving a hole;
#   attack.zerowin  many connections GET a large file with a zero window and never open it;
#   attack.halfopen 60,000 spoofed SYNs (198.18.61.0/24), each a half-open connection;
#     during each of the three, a kernel client makes fresh-connection requests to the same
#     shake nginx. Must hold: >= 99% of them succeed; the stack's memory (shake stat's
#     memory_bytes) and the server's proportional RSS (Pss of nginx and the keeper, /proc) stay
#     within the cap stated in the row; the stack's own caps hold (the 32 out-of-order ranges,
#     tcp_ooo_dropped; the SYN queue at the listener's backlog, with SYN cookies beyond it).
#   attack.memcap   the hoard (several at once) and the zero-window attack together against a
#     shake nginx whose stack has SHAKE_MEM_MAX=8M: see the case.
#
# Topology (198.18.60.0/24; removed on exit, also on failure):
#   ns h10a-c-PID (kernel c0 198.18.60.1/24: clients and tcp_attack) -- veth --
#   ns h10a-s-PID (s0, no kernel address; the stack is 198.18.60.2/24, AF_PACKET, its gateway
#   the kernel, which drops what the stack sends to the spoofed 198.18.61.0/24)
# tcp_attack's own connections use source ports 40000-49999, whose RSTs from the client
# namespace's kernel nftables drops; the kernel's own ports are 50000-60999 there.
# Skips (exit 77) without root or a needed program; fails instead when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
attack=$(readlink -f "$2")
flood=$(readlink -f "$3")
profile=${PROFILE:-short}
here=$(cd "$(dirname "$0")" && pwd)
pid=$$
nc="h10a-c-$pid" ns="h10a-s-$pid"
kaddr=198.18.60.1 saddr=198.18.60.2

me=attack_test
. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: namespaces, veth and raw sockets need CAP_NET_ADMIN"
for p in ip nft nginx python3 sha256sum; do
  command -v $p >/dev/null || skip "$p is not installed"
done
py=$(readlink -f "$(command -v python3)")
if [[ $profile == long ]]; then
  xfer_mib=16 inject_s=20 inject_rate=2000 big_mib=16 hoard_segs=20000 zw_conns=1000 zw_s=30
  half_open=60000 half_rate=20000 attack_s=20
else
  xfer_mib=4 inject_s=6 inject_rate=1500 big_mib=4 hoard_segs=4000 zw_conns=500 zw_s=12
  half_open=60000 half_rate=20000 attack_s=6
fi
work=$(mktemp -d /tmp/h10a-attack.XXXXXX)

# veth_pair N KADDR: cN (KADDR/24, kernel) in the client namespace -- sN (no address) in the
# server's
veth_pair() {
  ip link add h10ac$1 netns "$nc" type veth peer name h10as$1 netns "$ns" &&
    ip -n "$nc" link set h10ac$1 name c$1 && ip -n "$ns" link set h10as$1 name s$1 &&
    ip -n "$nc" addr add $2/24 dev c$1 && ip -n "$nc" link set c$1 up && ip -n "$ns" link set s$1 up
}
set -e
own_namespaces "$work" "$nc" "$ns"
veth_pair 0 $kaddr
ip netns exec "$nc" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
ip netns exec "$nc" nft -f - <<'NFT'
table ip h10a {
  chain out {
    type filter hook output priority 0; policy accept;
    tcp sport 40000-49999 tcp flags & rst == rst counter drop
  }
}
NFT
set +e

failures=0
row() { echo "ROW | $1 | $2 | $3 | $4"; }
fail() { echo "attack_test: FAIL: $*"; failures=$((failures + 1)); }
sh_s=("$shake" --device packet:s0 --addr "$saddr/24" --gateway $kaddr --)
stat_json() { ip netns exec "$ns" timeout 10 "$shake" stat --json 2>/dev/null; }
# jget JSON EXPR: a value of shake stat's JSON (the first stack), by a Python expression over s
jget() { "$py" -c 'import json,sys; s=json.load(sys.stdin)["stacks"][0]; print(eval(sys.argv[1]))' "$2" <<<"$1" 2>/dev/null || echo 0; }
counter() { jget "$1" "s['counters'].get('$2', s['counters']['drops'].get('$2', 0))"; }

mkdir -p "$work/www"
echo hello >"$work/www/index.html"
head -c $((big_mib << 20)) /dev/urandom >"$work/www/big"

# --- attack.inject: forged segments into a live connection to a shake python3 server
cat >"$work/inject_server.py" <<'PY'
import hashlib, socket, sys
up, down = int(sys.argv[1]), open(sys.argv[2], "rb").read()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", int(sys.argv[3]))); l.listen(1)
print("listening", flush=True)
c, _ = l.accept()
h, got, end = hashlib.sha256(), 0, "ok"
try:
    while got < up:
        d = c.recv(65536)
        if not d: end = "eof"; break
        h.update(d); got += len(d)
    if end == "ok":
        c.sendall(down)
    c.close()
except OSError as e:
    end = type(e).__name__
print(f"server {end} {got} {h.hexdigest()}", flush=True)
PY
cat >"$work/inject_client.py" <<'PY'
# Uploads UP bytes then reads the download, both paced to last about SECONDS in all.
import hashlib, socket, sys, time
host, port, sport, upfile, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
data = open(upfile, "rb").read()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", sport)); s.settimeout(30)
deadline = time.time() + 20
while True:
    try:
        s.connect((host, port)); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.2)
print("connected", flush=True)
chunk, pause = 32768, (seconds / 2) / (len(data) / 32768)
h, got, end = hashlib.sha256(), 0, "eof"
try:
    for i in range(0, len(data), chunk):
        s.sendall(data[i:i + chunk]); time.sleep(pause)
    while True:
        d = s.recv(chunk)
        if not d: break
        h.update(d); got += len(d); time.sleep(pause)
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "timeout"
print(f"client {end} {got} {h.hexdigest()}", flush=True)
PY
head -c $((xfer_mib << 20)) /dev/urandom >"$work/up"
head -c $((xfer_mib << 20)) /dev/urandom >"$work/down"
want_up=$(sha256sum <"$work/up" | cut -d' ' -f1)
want_down=$(sha256sum <"$work/down" | cut -d' ' -f1)
xbytes=$((xfer_mib << 20))
ip netns exec "$ns" timeout $((inject_s + 90)) "${sh_s[@]}" "$py" "$work/inject_server.py" \
  $xbytes "$work/down" 9100 >"$work/is.log" 2>&1 &
spid=$!
for _ in $(seq 100); do grep -q listening "$work/is.log" && break; sleep 0.1; done
before=$(stat_json)
ip netns exec "$nc" timeout $((inject_s + 60)) "$py" "$work/inject_client.py" $saddr 9100 39000 \
  "$work/up" "$inject_s" >"$work/ic.log" 2>&1 &
cpid=$!
for _ in $(seq 100); do grep -q connected "$work/ic.log" && break; sleep 0.1; done
ip netns exec "$nc" timeout $((inject_s + 10)) "$attack" inject $kaddr 39000 $saddr 9100 \
  "$inject_s" "$inject_rate" $((inject_s * inject_rate)) >"$work/inj.out" 2>&1
wait "$cpid"; wait "$spid"
after=$(stat_json)
read -r _ cend cgot csum < <(grep '^client' "$work/ic.log" || echo "client none 0 -")
read -r _ send_ sgot ssum < <(grep '^server' "$work/is.log" || echo "server none 0 -")
d() { echo $(( $(counter "$after" "$1") - $(counter "$before" "$1") )); }
ch=$(d tcp_challenge_acks) chl=$(d tcp_challenge_acks_limited) rin=$(d tcp_resets_in)
rig=$(d rst_ignored) bad=$(d bad_ack) una=$(d ack_unsent_data) oow=$(d out_of_window)
lost_up=$(( sgot >= xbytes ? 0 : xbytes - sgot )) lost_down=$(( cgot >= xbytes ? 0 : xbytes - cgot ))
row attack.inject "kernel client up+down ${xfer_mib}+${xfer_mib} MiB with shake python3 over ${inject_s} s; tcp_attack forges ${inject_rate}/s with the 4-tuple" \
  "$(cat "$work/inj.out"); client $cend, down $cgot B sha256 $([[ $csum == "$want_down" ]] && echo equal || echo DIFFERS); server $send_, up $sgot B sha256 $([[ $ssum == "$want_up" ]] && echo equal || echo DIFFERS); stack: challenge_acks +$ch, challenge_acks_limited +$chl, resets_in +$rin, rst_ignored +$rig, bad_ack +$bad, ack_unsent_data +$una, out_of_window +$oow" \
  "$((lost_up + lost_down))"
[[ $cend == eof && $send_ == ok && $csum == "$want_down" && $ssum == "$want_up" ]] ||
  fail "attack.inject: client $cend $cgot, server $send_ $sgot"
grep -q 'sent=[1-9]' "$work/inj.out" || fail "attack.inject: nothing forged"
[[ $((ch + chl)) -gt 0 ]] || fail "attack.inject: the challenge-ACK counters did not move"

# --- the shake nginx for the other cases
. "$here/../lib/nginx.sh"
nginx_conf shaked 8080 2
ip netns exec "$ns" timeout 20 "${sh_s[@]}" nginx -c "$work/shaked.conf" -p "$work"
up=0
for _ in $(seq 50); do
  ip netns exec "$nc" timeout 2 "$py" -c "import urllib.request as u; u.urlopen('http://$saddr:8080/index.html', timeout=1)" 2>/dev/null && { up=1; break; }
  sleep 0.2
done
[[ $up -eq 1 ]] || { fail "shake nginx did not answer"; echo "attack_test: profile $profile, $failures failure(s)"; exit 1; }
s0=$(stat_json)
server_pids=$(jget "$s0" "' '.join(str(p['pid']) for p in s['processes'])+' '+str(s['keeper_pid'])")

# --- attack.optack: ACKs above SND.NXT against shake nginx sending a large body
want_big=$(sha256sum <"$work/www/big" | cut -d' ' -f1)
bbytes=$((big_mib << 20))
opt_ok=1 opt_fig=""
for mode in honest optimistic; do
  b=$(stat_json)
  port=$([[ $mode == honest ]] && echo 40001 || echo 40002)
  ip netns exec "$nc" timeout 120 "$attack" optack $kaddr $port $saddr 8080 /big $mode "$work/opt.$mode" 100 \
    >"$work/opt.$mode.out" 2>&1
  a=$(stat_json)
  sum=$(sha256sum <"$work/opt.$mode" | cut -d' ' -f1)
  g=$(stat -c %s "$work/opt.$mode")
  bad=$(( $(counter "$a" ack_unsent_data) - $(counter "$b" ack_unsent_data) ))
  chd=$(( $(counter "$a" tcp_challenge_acks) + $(counter "$a" tcp_challenge_acks_limited) - $(counter "$b" tcp_challenge_acks) - $(counter "$b" tcp_challenge_acks_limited) ))
  out=$(cat "$work/opt.$mode.out")
  eval "$(sed -n 's/.*seconds=\([0-9.]*\).*optimistic_acks=\([0-9]*\) answered_while_withheld=\([0-9]*\) new_bytes_while_withheld=\([0-9]*\).*/secs_'$mode'=\1 opts_'$mode'=\2 ans_'$mode'=\3 new_'$mode'=\4/p' <<<"$out")"
  opt_fig+="$mode: $out, sha256 $([[ $sum == "$want_big" ]] && echo equal || echo DIFFERS), ack_unsent_data +$bad, challenge ACKs (sent+limited) +$chd; "
  [[ $sum == "$want_big" ]] || { opt_ok=0; fail "attack.optack $mode: $g bytes, sha256 differs"; }
  [[ $mode == optimistic ]] && opt_lost=$(( g >= bbytes ? 0 : bbytes - g ))
  if [[ $mode == optimistic ]]; then
    [[ ${opts_optimistic:-0} -gt 0 && $bad -ge ${opts_optimistic:-1} ]] ||
      fail "attack.optack: ${opts_optimistic:-0} ACKs above SND.NXT sent, ack_unsent_data +$bad (each must be dropped and counted)"
    [[ ${new_optimistic:-1} -le ${new_honest:-0} ]] ||
      fail "attack.optack: ${new_optimistic:-?} new bytes sent in answer to ACKs above SND.NXT alone, ${new_honest:-?} with no ACK"
    [[ ${ans_optimistic:-0} -gt 0 ]] || fail "attack.optack: no ACK answered the ACKs above SND.NXT"
  fi
done
row attack.optack "tcp_attack GET ${big_mib} MiB from shake nginx, window 64 KiB: honest, then with ACKs above SND.NXT (alone for 1 s, then 2 after each real ACK)" \
  "${opt_fig}time optimistic/honest $(awk -v a="${secs_optimistic:-0}" -v b="${secs_honest:-1}" 'BEGIN{printf "%.2f", a/b}')" "${opt_lost:-$bbytes}"

# --- the resource attacks: a legitimate client, a sampler of memory, and the attack
# pss_kib PIDS: the proportional set size of the server's processes, summed (shared arena pages
# counted once across them)
pss_kib() {
  local t=0 p v
  for p in $1; do
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo $t
}
# sampler SECONDS OUT: the largest Pss sum and stack memory_bytes, and the most SYN-RECEIVED
# connections seen, every 0.5 s until $work/stop exists
sampler() {
  local end=$((SECONDS + $1)) maxp=0 maxm=0 maxsr=0 p j m sr
  while (( SECONDS < end )); do
    [[ -e "$work/stop" ]] && break
    p=$(pss_kib "$server_pids"); (( p > maxp )) && maxp=$p
    j=$(stat_json)
    m=$(jget "$j" "s['memory_bytes']"); (( m > maxm )) && maxm=$m
    sr=$(jget "$j" "s['states'].get('SYN-RECEIVED', 0)"); (( sr > maxsr )) && maxsr=$sr
    sleep 0.5
  done
  echo "$maxp $maxm $maxsr" >"$2"
}
# resource NAME SECONDS CMD...: runs the attack CMD (at most SECONDS) in the client namespace
# with the legitimate client and the sampler beside it; sets lok ltried peak_pss peak_mem
# peak_sr base_pss base_mem and the stat JSON before (rb) and after (ra)
resource() {
  local name=$1 secs=$2; shift 2
  rb=$(stat_json)
  base_pss=$(pss_kib "$server_pids") base_mem=$(jget "$rb" "s['memory_bytes']")
  rm -f "$work/stop"
  sampler $((secs + 1)) "$work/$name.peak" &
  local smp=$!
  ip netns exec "$nc" timeout $((secs + 30)) "$@" >"$work/$name.out" 2>&1 &
  local apid=$!
  sleep 0.5
  # the legitimate client runs while the attack does (at most SECONDS)
  ip netns exec "$nc" timeout $((secs + 30)) "$py" "$here/legit_client.py" $saddr 8080 "$secs" \
    "$work/stop" >"$work/$name.legit" &
  local lpid=$!
  wait "$apid"; touch "$work/stop"; wait "$lpid"; wait "$smp"
  ra=$(stat_json)
  read -r lok ltried <"$work/$name.legit" || { lok=0 ltried=0; }
  read -r peak_pss peak_mem peak_sr <"$work/$name.peak"
}
# Each legitimate request leaves a TIME-WAIT connection in the stack (nginx closes first): the
# caps allow tw_allow bytes for each, besides the attack's own.
tw_allow=4096
check_resource() {  # NAME MEM_CAP PSS_CAP_KIB
  [[ $ltried -gt 0 && $((lok * 100)) -ge $((ltried * 99)) ]] || fail "$1: $lok of $ltried legitimate requests"
  (( peak_mem - base_mem <= $2 )) || fail "$1: stack memory grew $((peak_mem - base_mem)) bytes, cap $2"
  (( peak_pss - base_pss <= $3 )) || fail "$1: server Pss grew $((peak_pss - base_pss)) KiB, cap $3 KiB"
}
mem_fig() {
  echo "legitimate $lok of $ltried; stack memory $base_mem -> peak $peak_mem B (+$(( (peak_mem - base_mem) >> 10 )) KiB, cap $(( $1 >> 10 )) KiB); server Pss $base_pss -> peak $peak_pss KiB (cap +$2 KiB)"
}

# attack.hoard: caps: the receive buffer (1 MiB) holds what a window admits, in at most 32
# ranges; the stack's memory may grow by that and its range table, no more
resource attack.hoard "$attack_s" "$attack" hoard $kaddr 40010 $saddr 8080 "$hoard_segs" "$attack_s"
hoard_cap=$(( (1 << 20) + (64 << 10) + ltried * tw_allow ))
ood=$(( $(counter "$ra" tcp_ooo_dropped) - $(counter "$rb" tcp_ooo_dropped) ))
ooi=$(( $(counter "$ra" tcp_ooo_segments_in) - $(counter "$rb" tcp_ooo_segments_in) ))
row attack.hoard "one connection: $hoard_segs out-of-order 1000-byte segments, each after a hole, over ${attack_s} s, against shake nginx" \
  "$(cat "$work/attack.hoard.out"); tcp_ooo_segments_in +$ooi, tcp_ooo_dropped +$ood; $(mem_fig $hoard_cap $(( (hoard_cap >> 10) + 16384 )))" 0
check_resource attack.hoard $hoard_cap $(( (hoard_cap >> 10) + 16384 ))
[[ $ood -gt 0 && $ooi -le 32 ]] || fail "attack.hoard: out-of-order kept +$ooi (cap 32 ranges), dropped +$ood: the range cap did not hold"

# attack.zerowin: cap: without SO_SNDBUF, a connection's send buffer starts at the initial
# window's worth, 2 * 10 * (bit_ceil(MSS + 512) + 256) = 46,080 bytes for MSS 1460 (Linux's
# tcp_sndbuf_expand), and grows only with cwnd, which a shut window keeps where it is; with its
# TCB and buffer rounding, 61 KiB a connection. The Pss cap adds nginx's own buffers for a
# response it reads from the file (output_buffers, 2 x 32 KiB by default) for each connection
resource attack.zerowin "$zw_s" "$attack" zerowin $kaddr 41000 $saddr 8080 "$zw_conns" /big "$zw_s"
zw_cap=$(( zw_conns * (46080 + (16 << 10)) + ltried * tw_allow ))
zw_pss_cap=$(( (zw_cap >> 10) + zw_conns * 64 + 16384 ))
zwp=$(( $(counter "$ra" tcp_zero_window_probes) - $(counter "$rb" tcp_zero_window_probes) ))
row attack.zerowin "$zw_conns connections GET a ${big_mib} MiB file from shake nginx with a zero window and answer every probe with zero for ${zw_s} s" \
  "$(cat "$work/attack.zerowin.out"); tcp_zero_window_probes +$zwp; $(mem_fig $zw_cap $zw_pss_cap)" 0
check_resource attack.zerowin $zw_cap $zw_pss_cap
grep -q "opened=$zw_conns " "$work/attack.zerowin.out" || fail "attack.zerowin: not all $zw_conns connections opened"
[[ $zwp -gt 0 ]] || fail "attack.zerowin: no zero-window probe counted"
grep -q "data_bytes=0 " "$work/attack.zerowin.out" || fail "attack.zerowin: data sent into a zero window"

# attack.halfopen: 60,000 spoofed SYNs; cap: the SYN queue is the listener's backlog (nginx's
# 511), SYN cookies answer beyond it and keep no state
half_s=$(( 2 * half_open / half_rate + 6 ))  # the generator stops at the count; time to spare on a loaded machine
resource attack.halfopen "$half_s" "$flood" $saddr 8080 198.18.61.0 "$half_rate" "$half_s" "$half_open"
half_cap=$(( 512 * 4096 + ltried * tw_allow ))  # at most backlog + 1 SYN-RECEIVED TCBs
cs=$(( $(counter "$ra" tcp_syncookies_sent) - $(counter "$rb" tcp_syncookies_sent) ))
po=$(( $(counter "$ra" tcp_passive_opens) - $(counter "$rb" tcp_passive_opens) ))
row attack.halfopen "$(sed -n 's/.*sent=\([0-9]*\).*/\1/p' "$work/attack.halfopen.out") spoofed SYNs (198.18.61.0/24) at $half_rate/s against shake nginx (backlog 511)" \
  "$(cat "$work/attack.halfopen.out"); SYN-RECEIVED at most $peak_sr; tcp_syncookies_sent +$cs; $(mem_fig $half_cap $(( (half_cap >> 10) + 16384 )))" 0
check_resource attack.halfopen $half_cap $(( (half_cap >> 10) + 16384 ))
grep -q "sent=$half_open " "$work/attack.halfopen.out" || fail "attack.halfopen: the generator did not send $half_open SYNs"
(( peak_sr <= 512 )) || fail "attack.halfopen: $peak_sr connections in SYN-RECEIVED, above the backlog + 1 (Linux's reqsk_queue_is_full)"
[[ $cs -gt 0 ]] || fail "attack.halfopen: no SYN cookie sent"

# attack.memcap: the hoard and the zero-window attack at once against a second shake nginx
# whose stack has a small memory limit (SHAKE_MEM_MAX=8M; it would need ~30 MB for them:
# ~1.1 MB a hoard, ~46 KB a zero-window connection), while a kernel client fetches a 256 KiB
# file and the legitimate client makes its requests; then nginx's fast shutdown. Must hold: a
# bad SHAKE_MEM_MAX is one line; the stack's buffers stay within the limit and the progress
# guarantee (a connection holding no send memory may always queue 2 KiB, as Linux's
# tcp_wmem[0]), its memory within that and the control blocks; the limit drops segments
# (tcp_ofo_mem_drops) and holds sends (tcp_send_mem_limited); >= 99% of the legitimate requests
# succeed; the download is sha256-exact; nginx is alive (nothing aborted); and after its
# shutdown the limit is no longer reached: the hoards' out-of-order data goes back as they are
# closed, and a connection closed at the limit with much unsent is reset (tcp_abort_on_memory,
# 0 to 81 in the runs so far, as the closes fall before or after the account drops below the
# limit). (The rest go as their timers
# say, as on Linux; the recovery from pressure itself is tests/stack's memory_test and
# stack.sim.memory.) Its own veth pair, in 198.18.84.0/24.
if [[ $profile == long ]]; then mc_hoards=24 mc_zw=1000; else mc_hoards=12 mc_zw=500; fi
mc_cap=$((8 << 20)) kaddr2=198.18.84.1 saddr2=198.18.84.2
veth_pair 1 $kaddr2 || fail "attack.memcap: no second veth pair"
sh_m=("$shake" --device packet:s1 --addr "$saddr2/24" --gateway $kaddr2 --)
# A bad value is one line naming the variable and the fix, and the program does not run.
bad=$(SHAKE_MEM_MAX=lots ip netns exec "$ns" timeout 10 "${sh_m[@]}" true 2>&1); brc=$?
[[ $brc -ne 0 && $(wc -l <<<"$bad") -eq 1 && $bad == *SHAKE_MEM_MAX=lots*1M*8G* ]] ||
  fail "attack.memcap: SHAKE_MEM_MAX=lots gave exit $brc and: $bad"
nginx_conf memcap 8081 2
head -c $((256 << 10)) /dev/urandom >"$work/www/mid"
want_mid=$(sha256sum <"$work/www/mid" | cut -d' ' -f1)
SHAKE_MEM_MAX=8M ip netns exec "$ns" timeout 20 "${sh_m[@]}" nginx -c "$work/memcap.conf" -p "$work"
up=0
for _ in $(seq 50); do
  ip netns exec "$nc" timeout 2 "$py" -c "import urllib.request as u; u.urlopen('http://$saddr2:8081/index.html', timeout=1)" 2>/dev/null && { up=1; break; }
  sleep 0.2
done
# mget JSON EXPR: as jget, for the stack on s1
mget() { "$py" -c 'import json,sys; s=[x for x in json.load(sys.stdin)["stacks"] if x["device"]=="packet:s1"][0]; print(eval(sys.argv[1]))' "$2" <<<"$1" 2>/dev/null || echo 0; }
mcounter() { mget "$1" "s['counters'].get('$2', 0)"; }
if [[ $up -eq 1 ]]; then
  mb=$(stat_json)
  mc_base=$(mget "$mb" "s['memory_bytes']")
  mc_limit=$(mget "$mb" "s['buffer_limit_bytes']")
  [[ $mc_limit -eq $mc_cap ]] || fail "attack.memcap: the stack's limit is $mc_limit, not SHAKE_MEM_MAX's $mc_cap"
  rm -f "$work/stop"
  # a sampler of the stack's memory: the largest total seen, every 0.3 s
  ( maxm=0; while [[ ! -e "$work/stop" ]] && (( SECONDS < 400 )); do
      m=$(mget "$(stat_json)" "s['memory_bytes']"); (( m > maxm )) && maxm=$m; sleep 0.3
    done; echo $maxm >"$work/memcap.peak" ) &
  msp=$!
  pids=()
  for i in $(seq $mc_hoards); do
    ip netns exec "$nc" timeout $((attack_s + 30)) "$attack" hoard $kaddr2 $((40100 + i)) $saddr2 8081 \
      500 "$attack_s" >"$work/memcap.hoard.$i" 2>&1 &
    pids+=($!)
  done
  ip netns exec "$nc" timeout $((attack_s + 30)) "$attack" zerowin $kaddr2 42000 $saddr2 8081 \
    $mc_zw /big $((attack_s * 2)) >"$work/memcap.zerowin" 2>&1 &
  pids+=($!)
  sleep 1
  ip netns exec "$nc" timeout $((attack_s + 30)) "$py" "$here/legit_client.py" $saddr2 8081 \
    $((attack_s * 2)) >"$work/memcap.legit" &
  lpid=$!
  ip netns exec "$nc" timeout $((attack_s + 40)) "$py" "$here/memcap_get.py" $saddr2 8081 /mid \
    $((attack_s + 30)) >"$work/memcap.big" 2>"$work/memcap.big.progress" &
  bpid=$!
  sleep 2
  mm=$(stat_json)  # under attack
  wait "$bpid"; wait "$lpid"
  for p in "${pids[@]}"; do wait "$p"; done
  touch "$work/stop"; wait "$msp"
  alive=0
  kill -0 "$(cat "$work/memcap.pid" 2>/dev/null)" 2>/dev/null && alive=1
  mz=$(stat_json)
  # The attackers vanish without a word (nftables drops their resets), so their connections
  # live on as the kernel's would; nginx's fast shutdown closes them, and closed at the limit
  # with data unsent they are reset (tcp_abort_on_memory): the account falls back below the
  # pressure level.
  kill -TERM "$(cat "$work/memcap.pid")" 2>/dev/null
  sleep 0.5
  ma=$(stat_json)
  for _ in $(seq 10); do (( $(mget "$ma" "s['buffer_bytes']") < mc_cap )) && break; sleep 0.5; ma=$(stat_json); done
  read -r lok ltried <"$work/memcap.legit" || { lok=0 ltried=0; }
  mc_peak_total=$(cat "$work/memcap.peak" 2>/dev/null || echo 0)
  bpeak=$(mget "$ma" "s['buffer_peak_bytes']") bnow=$(mget "$ma" "s['buffer_bytes']")
  bpress=$(mget "$ma" "s['buffer_pressure_bytes']") press_end=$(mget "$ma" "s['memory_pressure']")
  mconns=$(mget "$mm" "s['connections']")
  ofo=$(mcounter "$ma" tcp_ofo_mem_drops) rq=$(mcounter "$ma" tcp_rcvq_drops)
  sl=$(mcounter "$ma" tcp_send_mem_limited) mp=$(mcounter "$ma" tcp_mem_pressures)
  big_sum=$(head -c 80 "$work/memcap.big")
  guarantee=$(( (mc_zw + mc_hoards + 64) * 2048 + (64 << 10) ))
  bcap=$(( mc_cap + guarantee ))
  tcap=$(( bcap + (mc_zw + mc_hoards + ltried) * tw_allow ))
  row attack.memcap "$mc_hoards hoards (500 out-of-order segments each) and $mc_zw zero-window GETs of ${big_mib} MiB at once against shake nginx with SHAKE_MEM_MAX=8M, a kernel client downloading 256 KiB and fresh requests beside them; then nginx's fast shutdown" \
    "$(cat "$work/memcap.zerowin"); $mconns connections under attack; buffers peak $bpeak B (limit $mc_cap, + guarantee $guarantee), $(mget "$mz" "s['buffer_bytes']") B when the attackers stopped, $bnow B after nginx's shutdown, pressure $press_end then (level $bpress), tcp_abort_on_memory $(mcounter "$ma" tcp_abort_on_memory); stack memory $mc_base -> peak $mc_peak_total B (cap $tcap); tcp_ofo_mem_drops $ofo, tcp_rcvq_drops $rq, tcp_send_mem_limited $sl, tcp_mem_pressures $mp; legitimate $lok of $ltried; download sha256 $([[ $big_sum == "$want_mid" ]] && echo equal || echo "DIFFERS ($big_sum)"); nginx master alive $alive" 0
  (( bpeak <= bcap )) || fail "attack.memcap: buffers peaked at $bpeak, cap $bcap"
  (( mc_peak_total - mc_base <= tcap )) || fail "attack.memcap: stack memory grew $((mc_peak_total - mc_base)), cap $tcap"
  [[ $ofo -gt 0 && $sl -gt 0 ]] || fail "attack.memcap: the limit was not reached (ofo drops $ofo, sends limited $sl)"
  [[ $ltried -gt 0 && $((lok * 100)) -ge $((ltried * 99)) ]] || fail "attack.memcap: $lok of $ltried legitimate requests"
  [[ $big_sum == "$want_mid" ]] || fail "attack.memcap: the download's sha256 differs: $big_sum"
  (( bnow < mc_cap )) || fail "attack.memcap: $bnow B held after nginx's shutdown, at the limit $mc_cap"
  [[ $alive -eq 1 ]] || fail "attack.memcap: the nginx master is gone"
else
  fail "attack.memcap: shake nginx with SHAKE_MEM_MAX=8M did not answer"
fi

[[ -f "$work/shaked.pid" ]] && kill -QUIT "$(cat "$work/shaked.pid")" 2>/dev/null
echo "attack_test: profile $profile, $failures failure(s), ${SECONDS}s"
[[ $failures -eq 0 ]]
