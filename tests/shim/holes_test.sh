#!/usr/bin/env bash
# Where code that libshake's interposition does not see meets a stack socket (issue 10, "no
# silently broken sockets"), in TUN and AF_PACKET modes. Each case is a server under shake
# (tests/shim/holes_probe.cc) and a kernel-side client that checks the bytes it gets back:
#   fdopen        fdopen(fd, "r+"), fgets, fprintf, fflush, then write() on fileno: the replies
#   fdopen-refused no fd left for the bridge (RLIMIT_NOFILE): fdopen fails with EMFILE, and
#                 with SHAKE_MAX_PROCS=2 (no process slots for the pump) with EAGAIN, each after
#                 one line on stderr; the socket still works (the reply goes out with write)
#   dup2-stdout   dup2(sock, 0) and dup2(sock, 1) in the process itself (0, 1 and sock must be
#                 one kernel socket), then fgets, printf, and getpeername(1): the TCP peer
#   accept-on-stdout  stdout closed, accept returns fd 1, then printf
#   inetd-c       accept, fork, dup2 onto 0 and 1, exec a C child using fgets and printf
#   inetd-py      ... exec python3 reading sys.stdin and printing, with the peer's address from
#                 socket.socket(fileno=0).getpeername() (the bridge answers for the stack socket)
#   inetd-noenv   ... exec the C child through env -i (no preload in the new image)
#   system        system("read line <&N; echo ... >&N"), then the caller writes: in that order
#   popen         popen() child reads and answers on the inherited socket, the caller after it
#   spawn         posix_spawn, file actions adddup2 onto 0 and 1, a preloaded child
#   spawn-noenv   ... a child without the preload (empty environment)
#   accept-signal a blocking accept on 0.0.0.0 with SIGUSR1 x3 (SA_RESTART): the accept
#                 restarts and takes the connection; also when SIGUSR1's handler comes from
#                 signal() and another handler lacks SA_RESTART; without SA_RESTART it fails
#                 with EINTR, as the kernel's (the same probe run without shake is the reference)
#   sockbuf       SO_SNDBUF/SO_RCVBUF set before connect (the decision): getsockopt after it
#                 gives what the kernel gives for the same calls
#   nginx-kill    (TUN) master + 2 workers under shake, 6 to 20 concurrent 4 MiB downloads
#                 (slow readers, until both workers serve two or more; X-Pid names the worker), SIGKILL
#                 of one worker: the master starts a new one, the other worker's downloads
#                 complete byte-exact, the killed worker's end early (reset or closed) within
#                 the timeout, and nginx serves afterwards
#
#   holes_test.sh SHAKE_LAUNCHER HOLES_PROBE
#
# Topology (198.18.68.0/24 only; removed on exit, also on failure): ns shkholes-PID with TUN
# hol0 (kernel 198.18.68.1/26, stack .2), TUN hol1 (kernel .65/26, stack .66; a stack of its own
# for the SHAKE_MAX_PROCS case) and veth ha <-> hb (kernel 198.18.68.129/26 on hb, stack .130 on
# ha, which has no kernel address). Skips (77) without root or a program; fails instead
# when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
probe=$(readlink -f "$2")
ns="shkholes-$$"
py=$(readlink -f "$(command -v python3)")
me=holes_test

. "$(dirname "$0")/../lib/netns.sh"
[[ $(id -u) -eq 0 ]] || skip "not root: the namespace and TUN device need CAP_NET_ADMIN"
for p in ip nginx curl; do command -v $p >/dev/null || skip "$p is not installed"; done
work=$(mktemp -d /tmp/shkholes.XXXXXX)

set -e
own_namespaces "$work" "$ns"
ip -n "$ns" tuntap add dev hol0 mode tun
ip -n "$ns" addr add 198.18.68.1/26 dev hol0
ip -n "$ns" link set hol0 up
ip -n "$ns" tuntap add dev hol1 mode tun
ip -n "$ns" addr add 198.18.68.65/26 dev hol1
ip -n "$ns" link set hol1 up
ip -n "$ns" link add ha type veth peer name hb
ip -n "$ns" addr add 198.18.68.129/26 dev hb
ip -n "$ns" link set ha up
ip -n "$ns" link set hb up
set +e
in_ns() { ip netns exec "$ns" "$@"; }
export SHAKE_KEEPER_IDLE=2

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "$me: ok: $what"; else echo "$me: FAIL: $what"; failures=$((failures + 1)); fi
}

# The kernel-side client: connects (retrying while the server starts), then for each step
# sends a line and/or reads until a line count or EOF; prints what it received, repr'd.
cat >"$work/client.py" <<'PY'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
steps = sys.argv[3:]   # "send:TEXT" (a line), "lines:N" (read until N lines in total), "eof"
deadline = time.time() + 8
while True:
    try:
        s = socket.create_connection((host, port), timeout=1); break
    except OSError:
        if time.time() > deadline: print("connect failed"); sys.exit(1)
        time.sleep(0.05)
s.settimeout(8)
got = b""
try:
    for st in steps:
        if st.startswith("send:"):
            s.sendall(st[5:].encode() + b"\n")
        elif st.startswith("lines:"):
            n = int(st[6:])
            while got.count(b"\n") < n:
                d = s.recv(65536)
                if not d: break
                got += d
        elif st == "eof":
            while True:
                d = s.recv(65536)
                if not d: break
                got += d
except Exception as e:
    print("error", type(e).__name__, repr(got)); sys.exit(1)
print(repr(got.decode()))
PY

# serve MODE EXPECT CLIENT-STEPS... : the probe under shake, the client in the namespace; the
# client's repr must equal EXPECT, and the probe must exit 0.
run_case() {  # tag device addr mode expect probe-args -- client-steps
  local tag=$1 dev=$2 a=$3 mode=$4 want=$5; shift 5
  local pargs=() csteps=()
  while [[ $# -gt 0 && $1 != -- ]]; do pargs+=("$1"); shift; done
  shift
  csteps=("$@")
  local port=$((7000 + RANDOM % 2000))
  ip netns exec "$ns" timeout 20 "$shake" --device "$dev" --addr "$a/26" -- \
    "$probe" "$mode" "$a" $port "${pargs[@]}" >"$work/$mode.out" 2>"$work/$mode.err" &
  local pp=$!
  local got
  got=$(in_ns timeout 15 "$py" "$work/client.py" "$a" $port "${csteps[@]}")
  wait $pp; local rc=$?
  if [[ "$got" != "$want" || $rc -ne 0 ]]; then
    echo "$me:   $mode: got $got, probe exit $rc; probe stderr:"
    sed "s/^/$me:     /" "$work/$mode.err" | head -8
  fi
  check "$tag: $mode: client got $want, probe exit 0" test "$got" = "$want" -a $rc -eq 0
}

# No process slot for a bridge's pump: SHAKE_MAX_PROCS is the stack's, fixed when it is made,
# so this runs on a device (hol1) whose stack nothing else uses.
no_slot() {  # tag device addr
  local t=$1 d=$2 a=$3
  SHAKE_MAX_PROCS=2 run_case "$t" "$d" "$a" fdopen-refused "'fdopen:null:EAGAIN\n'" noslot -- eof
  check "$t: fdopen-refused (no process slot): one line on stderr says why" \
    test "$(grep -c 'libshake.*cannot bridge.*SHAKE_MAX_PROCS' "$work/fdopen-refused.err")" -eq 1
}

cases() {  # tag device addr
  local t=$1 d=$2 a=$3 peer=${3%.*}.$((${3##*.} - 1))  # the kernel side: one below
  run_case "$t" "$d" "$a" fdopen "'fdopen:one\nwrite:two\n'" -- send:one lines:1 send:two eof
  run_case "$t" "$d" "$a" fdopen-refused "'fdopen:null:EMFILE\n'" emfile -- eof
  check "$t: fdopen-refused (no fd): one line on stderr says why" \
    test "$(grep -c 'libshake.*cannot bridge.*Too many open files' "$work/fdopen-refused.err")" -eq 1
  run_case "$t" "$d" "$a" dup2-stdout "'stdout:hello:$peer\n'" -- send:hello eof
  run_case "$t" "$d" "$a" accept-on-stdout "'accepted-on:1\n'" -- eof
  run_case "$t" "$d" "$a" inetd "'child:c-line\n'" "$probe" stdio-child -- send:c-line eof
  # socket.socket(fileno=0) asks SO_DOMAIN, SO_TYPE and SO_PROTOCOL, then getpeername.
  run_case "$t" "$d" "$a" inetd "'py:py-line:$peer\n'" "$py" -c "
import socket, sys
s = socket.socket(fileno=0); p = s.getpeername()[0]; s.detach()
print('py:' + sys.stdin.readline().strip() + ':' + p)" -- send:py-line eof
  run_case "$t" "$d" "$a" inetd "'child:noenv\n'" env -i "$probe" stdio-child -- send:noenv eof
  run_case "$t" "$d" "$a" system "'system:sys-line\nafter-system\n'" -- send:sys-line eof
  run_case "$t" "$d" "$a" popen "'popen:pop-line\nparent-read:pop-line\n'" -- send:pop-line eof
  run_case "$t" "$d" "$a" spawn "'child:sp-line\n'" "$probe" stdio-child -- send:sp-line eof
  run_case "$t" "$d" "$a" spawn "'child:sp-noenv\n'" noenv "$probe" stdio-child -- send:sp-noenv eof
}

# A blocking accept on 0.0.0.0 interrupted by 3 SIGUSR1: with SA_RESTART it restarts, without
# it fails with EINTR; the kernel (the same probe without shake) is the reference for both.
accept_signal() {  # tag device addr
  local t=$1 d=$2 a=$3 how port pp got
  for how in restart mixed interrupt; do
    for leg in kernel shake; do
      port=$((9000 + RANDOM % 900))
      local pre=()
      [[ $leg == shake ]] && pre=("$shake" --device "$d" --addr "$a/26" --)
      local bind=0.0.0.0
      # Not under timeout: $! must be the probe (ip netns exec and shake exec it).
      ip netns exec "$ns" "${pre[@]}" "$probe" accept-signal $bind $port $how \
        >"$work/acc-$leg.out" 2>"$work/acc-$leg.err" &
      pp=$!
      for _ in $(seq 100); do grep -q listening "$work/acc-$leg.err" 2>/dev/null && break; sleep 0.05; done
      for _ in 1 2 3; do sleep 0.15; kill -USR1 $pp 2>/dev/null; done
      sleep 0.2
      local target=$a; [[ $leg == kernel ]] && target=127.0.0.1
      [[ $how != interrupt ]] && in_ns timeout 5 "$py" "$work/client.py" $target $port eof >/dev/null 2>&1
      for _ in $(seq 50); do kill -0 $pp 2>/dev/null || break; sleep 0.1; done
      kill -9 $pp 2>/dev/null
      wait $pp
      got=$(cat "$work/acc-$leg.out")
      echo "$me:   accept-signal $how, $leg: $got"
      eval "res_$leg=\"\$got\""
    done
    if [[ $how == restart ]]; then
      check "$t: blocking accept on 0.0.0.0, 3 signals with SA_RESTART: restarts and accepts (kernel: same)" \
        test "$res_shake" = "accepted after 3 signals" -a "$res_kernel" = "$res_shake"
    elif [[ $how == mixed ]]; then
      check "$t: ... handler by signal() beside a SIGTERM handler without SA_RESTART: restarts (kernel: same)" \
        test "$res_shake" = "accepted after 3 signals" -a "$res_kernel" = "$res_shake"
    else
      check "$t: blocking accept on 0.0.0.0, a signal without SA_RESTART: EINTR, as the kernel" \
        test "$res_shake" = "accept: EINTR after 1 signals" -a "$res_kernel" = "$res_shake"
    fi
  done
}

# SO_SNDBUF/SO_RCVBUF set before connect; the kernel leg connects to a kernel listener.
sockbuf() {  # tag device addr peer
  local t=$1 d=$2 a=$3 peer=$4 port=$((6000 + RANDOM % 900))
  in_ns timeout 10 "$py" -c "
import socket
l = socket.create_server(('0.0.0.0', $port)); l.settimeout(8)
print('ready', flush=True)
for _ in range(2):
    c, _ = l.accept(); print(c.recv(100).decode().strip(), flush=True); c.close()" >"$work/sockbuf.srv" &
  local sp=$!
  for _ in $(seq 100); do grep -q ready "$work/sockbuf.srv" 2>/dev/null && break; sleep 0.05; done
  local k s
  k=$(in_ns timeout 5 "$probe" sockbuf 127.0.0.1 $port)
  s=$(in_ns timeout 5 "$shake" --device "$d" --addr "$a/26" -- "$probe" sockbuf "$peer" $port)
  wait $sp
  echo "$me:   sockbuf: kernel $k, shake $s; the server read: $(sed 1d "$work/sockbuf.srv" | tr '\n' ';')"
  check "$t: SO_SNDBUF 65536 / SO_RCVBUF 8192 before connect: getsockopt as the kernel's ($k)" \
    test -n "$k" -a "$k" = "$s" -a "$(sed -n 3p "$work/sockbuf.srv")" = "$s"
}

# SIGKILL of one nginx worker in the middle of downloads.
nginx_kill() {  # tag device addr
  local t=$1 d=$2 a=$3
  mkdir -p "$work/www"
  head -c $((4 << 20)) /dev/urandom >"$work/www/big"
  echo hello >"$work/www/index.html"
  . "$(dirname "$0")/../lib/nginx.sh"
  nginx_conf nginx 8080 2
  # Each response names the worker that serves it.
  sed -i -e 's|server { listen 8080;|server { listen 8080; add_header X-Pid $pid;|' \
    -e 's|worker_connections 1024;|worker_connections 16; accept_mutex on; accept_mutex_delay 20ms;|' \
    "$work/nginx.conf"
  # With 16 connections a worker stops accepting when about 12 are busy (nginx's
  # ngx_accept_disabled), so the other one takes the next downloads: both serve some.
  # Slow readers (16 KiB per 20 ms), so that the downloads are mid-transfer at the kill.
  in_ns "$shake" --device "$d" --addr "$a/26" -- nginx -c "$work/nginx.conf" -p "$work"
  local m; for _ in $(seq 50); do m=$(cat "$work/nginx.pid" 2>/dev/null) && break; sleep 0.1; done
  sleep 0.5
  local before; before=$(pgrep -P "$m" | sort -n | tr '\n' ' ')
  cat >"$work/dl.py" <<'PY'
import socket, sys, time, hashlib
a, out = sys.argv[1], sys.argv[2]
s = socket.create_connection((a, 8080), timeout=5)
s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
s.settimeout(10)
data = b""; r = "eof"; said = False
try:
    while True:
        d = s.recv(16384)
        if not d: break
        data += d
        if not said and b"\r\n\r\n" in data:
            pid = [l.split(b":")[1].strip() for l in data.split(b"\r\n") if l.lower().startswith(b"x-pid:")]
            open(out + ".pid", "w").write((pid[0] if pid else b"?").decode() + "\n"); said = True
        time.sleep(0.02)
except ConnectionResetError: r = "reset"
except socket.timeout: r = "hang"
body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
open(out, "w").write("%s %d %s\n" % (r, len(body), hashlib.sha256(body).hexdigest()))
PY
  # Downloads one at a time (each names its worker as its headers arrive) until both workers
  # serve at least two and 6 run, at most 20.
  local i n=0 pids=() seen
  for i in $(seq 20); do
    in_ns timeout 40 "$py" "$work/dl.py" "$a" "$work/dl.$i" &
    pids+=($!); n=$i
    for _ in $(seq 40); do [[ -s "$work/dl.$i.pid" ]] && break; sleep 0.05; done
    # The fewest downloads either worker serves (0 while only one serves any).
    seen=$(cat "$work"/dl.*.pid 2>/dev/null | sort | uniq -c | awk 'NR == 1 || $1 < m {m = $1} END {print (NR < 2) ? 0 : m}')
    [[ $seen -ge 2 && $i -ge 6 ]] && break
  done
  sleep 0.5
  # The victim: the worker serving the first download (its X-Pid).
  local victim; victim=$(cat "$work/dl.1.pid" 2>/dev/null)
  [[ -n "$victim" ]] && kill -9 "$victim"
  for p in "${pids[@]}"; do wait $p; done
  local want; want=$(sha256sum <"$work/www/big" | cut -d' ' -f1)
  # Downloads of the killed worker must end (reset, or closed short); the other worker's must
  # be whole and byte-exact; none may hang.
  local mine_cut=0 mine_whole=0 mine_other=0 away=0 theirs_full=0 theirs_other=0 line w
  for i in $(seq $n); do
    line=$(cat "$work/dl.$i" 2>/dev/null || echo "missing 0 x")
    w=$(cat "$work/dl.$i.pid" 2>/dev/null)
    read -r how len sum <<<"$line"
    if [[ -z $w && $how != hang && $how != missing && $len -eq 0 ]]; then
      away=$((away + 1))  # closed before any header: nginx had no connection left for it
    elif [[ $w == "$victim" ]]; then
      # Ended early (reset, or closed short), or whole if the rest was sent before the kill
      # (the kernel too sends what a killed process left in the send buffer).
      if [[ ($how == reset || $how == eof) && $len -lt $((4 << 20)) ]]; then mine_cut=$((mine_cut + 1))
      elif [[ $how == eof && $len -eq $((4 << 20)) && $sum == "$want" ]]; then mine_whole=$((mine_whole + 1))
      else mine_other=$((mine_other + 1)); echo "$me:   killed worker's download $i: $line"; fi
    else
      if [[ $how == eof && $len -eq $((4 << 20)) && $sum == "$want" ]]; then theirs_full=$((theirs_full + 1))
      else theirs_other=$((theirs_other + 1)); echo "$me:   other worker's download $i: $line"; fi
    fi
  done
  sleep 0.5
  local after; after=$(pgrep -P "$m" | sort -n | tr '\n' ' ')
  local hello; hello=$(in_ns curl -sS -m 5 "http://$a:8080/index.html")
  echo "$me:   nginx-kill: $n downloads, per worker: $(cat "$work"/dl.*.pid | sort | uniq -c | tr -s ' \n' ' ')"
  echo "$me:   nginx-kill: workers before [$before] killed $victim after [$after]; killed worker's downloads: $mine_cut ended early, $mine_whole whole (sent before the kill), $mine_other otherwise; other worker's: $theirs_full whole and byte-exact, $theirs_other otherwise; $away turned away by a full worker (closed before headers)"
  check "$t: nginx worker SIGKILL mid-transfer: master restarts it, its downloads end (no hang), the other worker's are byte-exact" \
    bash -c "[[ -n '$victim' && $mine_cut -ge 1 && $mine_other -eq 0 && $theirs_full -ge 1 && $theirs_other -eq 0 ]] &&
      [[ \$(echo $after | wc -w) -eq 2 ]] && ! echo ' $after ' | grep -q ' $victim ' && [[ '$hello' == hello ]]"
  kill "$m" 2>/dev/null
  sleep 0.5
}

[[ -n "${HOLES_ONLY:-}" ]] && { $HOLES_ONLY; echo "$me: $failures failure(s)"; exit $failures; }
cases tun tun:hol0 198.18.68.2
accept_signal tun tun:hol0 198.18.68.2
no_slot tun tun:hol1 198.18.68.66
sockbuf tun tun:hol0 198.18.68.2 198.18.68.1
nginx_kill tun tun:hol0 198.18.68.2
cases packet packet:ha 198.18.68.130
accept_signal packet packet:ha 198.18.68.130

echo "$me: $failures failure(s)"
[[ $failures -eq 0 ]]
