#!/usr/bin/env bash
# Unmodified programs over libshake's stack, in a private namespace, in TUN and AF_PACKET modes:
#   - shake curl fetching 16 MiB from a kernel-side HTTP server (sha256 compared), exit code 0
#   - a shake python3 urllib client fetching the same file
#   - shake python3 -m http.server serving kernel-side curl, through the stack and on loopback
#   - shake nginx (master + 2 workers, daemon on) under ab -n 5000 -c 50: no failed request;
#     nginx -s reload keeps serving; nginx -s quit ends it
#   - an idle shake'd server uses < 1% CPU over 5 s
#   - shake redis-server under kernel-side redis-benchmark -q -n 100000 (a subset of its tests,
#     $SHAKE_APPS_REDIS_TESTS; empty = its full default list, ~40-60 s per mode) with a BGSAVE
#     every second during the run: every test line completes, no connection error, every BGSAVE
#     child (which inherits all client sockets and _exits) succeeds, and one redis-cli
#     connection held open across the saves answers every PING
#
#   apps_test.sh SHAKE_LAUNCHER
#
# Topology (198.18.0.0/15 only; removed on exit, also on failure):
#   ns shkapps-PID: TUN shk0 with the kernel at 198.18.10.1/24 and the stack at .2 (TUN mode);
#   veth pa <-> pb inside the same namespace, the kernel at 198.18.11.1/24 on pb, the stack at
#   198.18.11.2/24 on pa (AF_PACKET mode; pa has no kernel address).
# Skips (exit 77) with the reason without root or a needed program; fails instead when CI=true.
set -uo pipefail
shake=$(readlink -f "$1")
ns="shkapps-$$"
py=$(command -v python3)
py=$(readlink -f "$py")  # pyenv shims are shell scripts; preload the interpreter itself

skip() {
  echo "apps_test: SKIP: $1"
  [[ "${CI:-}" == true ]] && { echo "apps_test: CI=true: not skipping" >&2; exit 1; }
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "not root: the namespace and TUN device need CAP_NET_ADMIN"
for p in ip curl nginx ab redis-server redis-cli redis-benchmark; do command -v $p >/dev/null || skip "$p is not installed"; done
work=$(mktemp -d /tmp/shkapps.XXXXXX)  # after the skips: they exit before the cleanup trap

cleanup() {
  for pidf in "$work"/*.pid; do [[ -f "$pidf" ]] && kill "$(cat "$pidf")" 2>/dev/null; done
  sleep 0.2
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for old in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  if [[ "$old" =~ ^shkapps-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
    ip netns del "$old" 2>/dev/null
  fi
done
set -e
ip netns add "$ns"
ip -n "$ns" link set lo up
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
echo hello >"$work/www/index.html"
want=$(sha256sum <"$work/www/16M" | cut -d' ' -f1)

nginx_conf() {  # name listen workers
  cat >"$work/$1.conf" <<CONF
daemon on;
worker_processes $3;
pid $work/$1.pid;
error_log $work/$1.error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen $2; root $work/www; }
}
CONF
}
# The kernel-side server both modes fetch from.
nginx_conf kernel 80 1
in_ns nginx -c "$work/kernel.conf" -p "$work" || { echo "apps_test: kernel nginx did not start"; exit 1; }

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then echo "apps_test: ok: $what"; else echo "apps_test: FAIL: $what"; failures=$((failures + 1)); fi
}

run_mode() {  # device kernel-address stack-address
  local dev=$1 kaddr=$2 saddr=$3
  local sh=("$shake" --device "$dev" --addr "$saddr/24" --)
  echo "=== mode $dev"
  check "$dev: shake curl 16M byte-exact" bash -c "
    ip netns exec $ns timeout 60 ${sh[*]} curl -sS -o $work/out http://$kaddr/16M &&
    [[ \$(sha256sum <$work/out | cut -d' ' -f1) == $want ]]"
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
  local ab_out
  ab_out=$(in_ns timeout 120 ab -q -n 5000 -c 50 "http://$saddr:8080/index.html" 2>&1)
  echo "$ab_out" | grep -E "Complete requests|Failed requests|Requests per second"
  check "$dev: ab -n 5000 -c 50 against shake nginx: all complete, none failed" bash -c "
    grep -q 'Complete requests: *5000' <<<'$ab_out' && grep -q 'Failed requests: *0' <<<'$ab_out'"
  in_ns nginx -c "$work/shaked.conf" -p "$work" -s reload; sleep 1
  check "$dev: nginx -s reload keeps serving" bash -c "
    [[ \$(ip netns exec $ns curl -sS -m 10 http://$saddr:8080/index.html) == hello ]]"
  in_ns nginx -c "$work/shaked.conf" -p "$work" -s quit
  local gone=0
  for _ in $(seq 50); do
    [[ -e "$work/shaked.pid" ]] || { gone=1; break; }
    sleep 0.1
  done
  check "$dev: nginx -s quit ends nginx" test $gone -eq 1
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

run_mode tun:shk0 198.18.10.1 198.18.10.2
run_mode packet:pa 198.18.11.1 198.18.11.2
echo "apps_test: $failures failure(s)"
exit $((failures > 0))
