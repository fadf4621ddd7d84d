#!/usr/bin/env bash
# Runs the socket behaviour suite (shim_suite) in its own network topology, natively, and again
# through the shim when asked, and checks that every leg gives the same per-test results.
#
#   run_suite.sh --suite BIN --peer BIN [--launcher SHAKE] [--preload LIBSHAKE] [-- GTEST_ARGS]
#
# Environment:
#   SHAKE_SUITE_PRELOAD=PATH   also run under LD_PRELOAD=PATH (same as --preload)
#   SHAKE_SUITE_LAUNCHER=PATH  also run under `PATH --device tun:shk0 --addr ... --` (--launcher)
#   SHAKE_SUITE_SHIM_SELF=IP   the address B uses to reach the suite in the shim legs. Defaults
#                              to A's kernel address, which is right while libshake passes
#                              sockets through; once the stack serves them, set it to the stack's
#                              address (198.18.7.2 in TUN mode).
#   SHAKE_SUITE_PRELOAD_SELF=IP  the same for the preload leg alone (default SHAKE_SUITE_SHIM_SELF):
#                              one run can then have a passing-through preload leg and a
#                              launcher leg on the stack (scripts/sanitize.sh does)
#   CI=true                    a missing privilege is a failure, not a skip
#
# Topology (addresses from 198.18.0.0/15 only; nothing leaves the two namespaces):
#   ns A (the suite)  va 198.18.5.1/24  <-- veth -->  vb 198.18.5.2/24  ns B (shim_peer)
#   ns A also has a TUN device shk0 routed to 198.18.7.0/24 (the stack's subnet in TUN mode;
#   A forwards between it and va, B routes 198.18.7.0/24 via A), and routes 198.18.6.0/24 via B,
#   where B has a blackhole route: connects there never complete.
# Namespaces are named shksuite-PID-{a,b}; ones left by dead runs are removed first; everything
# this run creates is removed on exit, also on failure or interruption.
set -uo pipefail

suite= peer= launcher=${SHAKE_SUITE_LAUNCHER:-} preload=${SHAKE_SUITE_PRELOAD:-}
gtest_args=()
while (($#)); do
  case "$1" in
    --suite) suite=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --launcher) launcher=$2; shift 2 ;;
    --preload) preload=$2; shift 2 ;;
    --) shift; gtest_args=("$@"); break ;;
    *) echo "run_suite: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$suite" || -z "$peer" ]]; then
  echo "usage: run_suite.sh --suite BIN --peer BIN [--launcher SHAKE] [--preload LIB] [-- ARGS]" >&2
  exit 2
fi

A_ADDR=198.18.5.1 B_ADDR=198.18.5.2 BLACKHOLE=198.18.6.1 STACK_NET=198.18.7.0/24
work=$(mktemp -d /tmp/shksuite.XXXXXX)
ns_a="shksuite-$$-a" ns_b="shksuite-$$-b"
peer_pid=

cleanup() {
  if [[ -n "$peer_pid" ]]; then
    kill "$peer_pid" 2>/dev/null
    wait "$peer_pid" 2>/dev/null
  fi
  # Every process left in the namespaces, the stacks' keepers (own sessions) included.
  ip netns pids "$ns_a" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns pids "$ns_b" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$ns_a" 2>/dev/null
  ip netns del "$ns_b" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

remove_stale() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if [[ "$ns" =~ ^shksuite-([0-9]+)-[ab]$ ]]; then
      pid=${BASH_REMATCH[1]}
      if ! kill -0 "$pid" 2>/dev/null; then
        ip netns del "$ns" 2>/dev/null && echo "run_suite: removed stale namespace $ns"
      fi
    fi
  done
}

setup_topology() {
  set -e
  ip netns add "$ns_a"
  ip netns add "$ns_b"
  ip -n "$ns_a" link add va type veth peer name vb netns "$ns_b"
  ip -n "$ns_a" link set lo up
  ip -n "$ns_b" link set lo up
  ip -n "$ns_a" addr add "$A_ADDR/24" dev va
  ip -n "$ns_b" addr add "$B_ADDR/24" dev vb
  ip -n "$ns_a" link set va up
  ip -n "$ns_b" link set vb up
  # Connects to the blackhole subnet go to B, which neither forwards nor answers.
  ip netns exec "$ns_b" sysctl -qw net.ipv4.ip_forward=0
  ip -n "$ns_b" route add blackhole 198.18.6.0/24
  ip -n "$ns_a" route add 198.18.6.0/24 via "$B_ADDR"
  # The stack's subnet for TUN mode: A routes it into shk0 and forwards; B reaches it via A.
  ip -n "$ns_a" tuntap add dev shk0 mode tun
  ip -n "$ns_a" addr add 198.18.7.1/24 dev shk0
  ip -n "$ns_a" link set shk0 up
  ip netns exec "$ns_a" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$ns_b" route add "$STACK_NET" via "$A_ADDR"
  set +e
}

# Prints one "STATUS Suite.Test" line per test, sorted, from a gtest log.
outcomes() {
  sed -n -E 's/^\[ +(OK|FAILED|SKIPPED) +\] ([A-Za-z0-9_]+\.[A-Za-z0-9_/]+)( \(.*)?$/\1 \2/p' "$1" |
    sort -u
}

run_leg() {  # name, then the command prefix to run the suite under
  local name=$1; shift
  local log="$work/$name.log"
  echo "=== shim_suite: $name leg ==="
  timeout --kill-after=10 600 "$@" "$suite" "${gtest_args[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  outcomes "$log" >"$work/$name.outcomes"
  echo "=== shim_suite: $name leg exit $rc, $(grep -c '^OK ' "$work/$name.outcomes") passed," \
       "$(grep -c '^FAILED ' "$work/$name.outcomes") failed," \
       "$(grep -c '^SKIPPED ' "$work/$name.outcomes") skipped ==="
  return "$rc"
}

status=0
topology=0
if [[ $(id -u) -ne 0 ]]; then
  reason="not root: the suite's namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN"
elif ! command -v ip >/dev/null; then
  reason="iproute2 (ip) is not installed"
else
  remove_stale
  if (setup_topology) 2>"$work/setup.err"; then
    topology=1
  else
    reason="cannot build the namespaces: $(tr '\n' ' ' <"$work/setup.err")"
  fi
fi

if ((topology)); then
  ip netns exec "$ns_b" "$peer" --addr "$B_ADDR" --control "$work/control.sock" \
    --ready "$work/ready" &
  peer_pid=$!
  for _ in $(seq 100); do
    [[ -e "$work/ready" ]] && break
    sleep 0.05
  done
  if [[ ! -e "$work/ready" ]]; then
    echo "run_suite: shim_peer did not start" >&2
    exit 1
  fi
  common=(SHAKE_SUITE_PEER="$B_ADDR" SHAKE_SUITE_BLACKHOLE="$BLACKHOLE"
          SHAKE_SUITE_CONTROL="$work/control.sock")
  native=(ip netns exec "$ns_a" env "${common[@]}" SHAKE_SUITE_SELF="$A_ADDR")
  shim_env=(ip netns exec "$ns_a" env "${common[@]}"
            SHAKE_SUITE_SELF="${SHAKE_SUITE_SHIM_SELF:-$A_ADDR}")
  preload_env=(ip netns exec "$ns_a" env "${common[@]}"
               SHAKE_SUITE_SELF="${SHAKE_SUITE_PRELOAD_SELF:-${SHAKE_SUITE_SHIM_SELF:-$A_ADDR}}")
else
  echo "run_suite: no test topology ($reason); tests that need it will skip (fail if CI=true)"
  native=(env SHAKE_SUITE_SKIP_REASON="$reason")
  shim_env=("${native[@]}")
  preload_env=("${native[@]}")
fi

run_leg native "${native[@]}" || status=1

compare() {
  if ! diff -u "$work/native.outcomes" "$work/$1.outcomes"; then
    echo "run_suite: the $1 leg's results differ from the native run's (diff above)" >&2
    status=1
  fi
}
if [[ -n "$preload" ]]; then
  run_leg preload "${preload_env[@]}" LD_PRELOAD="$preload" || status=1
  compare preload
fi
if [[ -n "$launcher" && $topology -eq 0 ]]; then
  echo "run_suite: launcher leg skipped: it needs the topology's TUN device ($reason)"
  [[ "${CI:-}" == true ]] && status=1
elif [[ -n "$launcher" ]]; then
  run_leg launcher "${shim_env[@]}" "$launcher" --device tun:shk0 --addr 198.18.7.2/24 \
    --gateway 198.18.7.1 -- || status=1
  compare launcher
fi
exit "$status"
