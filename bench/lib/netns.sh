# bench/lib/netns.sh — the namespace bookkeeping of the side-by-side benchmarks, sourced by
# bench/*/run.sh (bash, set -euo pipefail).
#
#   bench_init NAME   namespaces are then NAME-<pid>-*, made with add_ns; the work directory is
#                     $WORK (/tmp/NAME-XXXXXX). On exit, failure or signal a trap stops the
#                     background processes (BG_PIDS, MEASURE_PID), kills everything left in the
#                     namespaces (twice, a moment apart: a server that dies can leave a
#                     shake-keeper behind, which must not outlive the run), deletes them and the
#                     work directory (KEEP_TMP=1 keeps it). Namespaces of an earlier run whose
#                     process is gone are removed first, with whatever still runs in them.
#                     If BENCH_EXIT_HOOK names a function, the trap calls it first with the exit
#                     status (compare.sh writes the table measured so far).
#   log LINE...       prints and appends to $WORK/details.log
#   add_ns NAME       a fresh namespace with lo up and IPv6 off (no stray traffic)
#   drop_ns NAME      kills what runs in NAME and deletes it (before the exit, to free it early)
#   veth NS1 IF1 NS2 IF2
#   nsx NS CMD...     CMD in namespace NS

bench_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM HUP
  [[ -n ${BENCH_EXIT_HOOK:-} ]] && "$BENCH_EXIT_HOOK" "$rc"
  [[ -n ${MEASURE_PID:-} ]] && kill -TERM "$MEASURE_PID" 2>/dev/null
  for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  kill_in_namespaces
  for p in "${BG_PIDS[@]}" ${MEASURE_PID:-}; do wait "$p" 2>/dev/null; done
  sleep 0.2
  kill_in_namespaces
  for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [[ -n ${KEEP_TMP:-} ]]; then
    echo "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

kill_in_namespaces() {  # every process in our namespaces, shake-keeper included
  local ns p
  for ns in "${NAMESPACES[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
}

bench_init() {
  local name=$1 ns pid p
  PREFIX=$name-$$
  WORK=$(mktemp -d "/tmp/$name-XXXXXX")
  chmod 755 "$WORK"
  NAMESPACES=()
  BG_PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$name-[0-9]*-" || true); do
    pid=${ns#"$name"-}
    pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

log() { printf '%s\n' "$*" | tee -a "$WORK/details.log"; }

add_ns() {
  ip netns add "$1"
  NAMESPACES+=("$1")
  ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

drop_ns() {
  local p i
  for p in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  sleep 0.1
  for p in $(ip netns pids "$1" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del "$1" 2>/dev/null || true
  for i in "${!NAMESPACES[@]}"; do [[ ${NAMESPACES[$i]} == "$1" ]] && unset 'NAMESPACES[i]'; done
  return 0
}

veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
