# Sourced by the test scripts that build network namespaces of their own (tests/shim/apps_test.sh,
# many_programs_test.sh, holes_test.sh; tests/robust/*.sh). Needs $me, the script's name for
# its messages.
#
# skip REASON: prints the reason and exits 77 (ctest's skip), or fails under CI=true, where
# nothing may skip.
skip() {
  echo "$me: SKIP: $1"
  [[ "${CI:-}" == true ]] && { echo "$me: CI=true: not skipping" >&2; exit 1; }
  exit 77
}

# own_namespaces WORK NS...: removes the namespaces an earlier run left behind (each NS's name
# but for its -PID suffix, whose process is gone), creates each NS with lo up, and on exit (also
# on a failure or a signal) kills what runs in them, deletes them and removes the directory
# WORK. A function `before_cleanup`, if the script defines one, runs first.
own_namespaces() {
  _own_work=$1
  shift
  _own_ns=("$@")
  trap _own_cleanup EXIT
  trap 'exit 130' INT TERM
  local n old
  for n in "${_own_ns[@]}"; do
    for old in $(ip netns list 2>/dev/null | awk '{print $1}'); do
      if [[ "$old" =~ ^${n%-*}-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
        ip netns pids "$old" | xargs -r kill -9; ip netns del "$old" 2>/dev/null
      fi
    done
    ip netns add "$n" && ip -n "$n" link set lo up
  done
}
_own_cleanup() {
  local n
  declare -F before_cleanup >/dev/null && before_cleanup
  for n in "${_own_ns[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
  sleep 0.2
  for n in "${_own_ns[@]}"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$_own_work"
}
