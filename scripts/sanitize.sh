#!/usr/bin/env bash
# The sanitizer passes of the test command (scripts/test.sh runs both after a green ctest).
#   scripts/sanitize.sh [asan] [BUILD_DIR]   # default build-asan
#   scripts/sanitize.sh tsan [BUILD_DIR]     # default build-tsan
# asan: an AddressSanitizer + UndefinedBehaviorSanitizer build (-fno-sanitize-recover=all, leak
#   checking on) of the stack, io and shim unit tests, each binary run directly, and of libshake.so,
#   shake-keeper, the launcher and the socket behaviour suite: the suite runs natively, under
#   LD_PRELOAD (passing through) and through the launcher on the stack (run_suite.sh's three legs).
# tsan: a ThreadSanitizer build of the shim's threaded cases: shim_tx_turn_test, and the suite's
#   cases with threads (blocking accept, shutdown and signals against a blocked recv, poll woken
#   from another thread, connect/close from many threads) natively and through the launcher.
# In the preloaded programs the sanitizer's runtime is in LD_PRELOAD, ASan's first (ASan must be
# the first library; its interceptors then forward into libshake's), TSan's after libshake (TSan
# ignores what happens inside the blocking calls it intercepts, libshake's lock and atomics
# included): the launcher and libshake's keeper spawn of a sanitizer build put it there
# themselves (shim/CMakeLists.txt), and every program the suite execs (sh, bash, true) runs with
# the runtime too. ASan, LSan and TSan reports of the preloaded programs and the keeper go to
# files (log_path); UBSan's go to stderr, the suite's log, or for the keeper the file
# SHAKE_KEEPER_STDERR names (its stderr is otherwise /dev/null). Any report anywhere fails the
# pass; no suppression is in use (scripts/lsan.supp or scripts/tsan.supp would be read, each
# entry with its reason). Only the targets a pass needs are built. Each pass ends with one line:
#   sanitize: <pass>: N of M clean, S s
# Not covered: TSan cannot see races between the processes of a family (the arena is shared
# memory across fork; TSan models one process), nor the non-threaded suite cases (left to ASan).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=asan
if [[ "${1:-}" == asan || "${1:-}" == tsan ]]; then
  mode=$1
  shift
fi
build=${1:-build-$mode}
jobs=$(nproc)
((jobs > 2)) && jobs=2
start=$SECONDS

# The suite's cases that run threads (tests/shim/suite_*_test.cc: std::thread), for TSan.
threaded_cases='Accept.BlockingAcceptWakesWhenTheConnectionArrives'
threaded_cases+=':HalfClose.ShutdownFromAnotherThreadWakesABlockedRecv'
threaded_cases+=':Signals.BlockedRecv*:Signals.RecvWithATimeoutIsEintrEvenWithSaRestart'
threaded_cases+=':Ready.PollWakesForAKernelFdWhileWatchingTcp'
threaded_cases+=':Threads.*'
suite_targets=(shake_preload shake-keeper shake shim_suite shim_peer)
if [[ $mode == asan ]]; then
  unit_targets=(tcp_test wire_test scale_test fuzz_regression_test sim_bulk_test
                io_unit_test io_device_test shim_config_test shim_fd_table_test
                shim_tx_turn_test shim_elf_probe_test)
  flags=(-DSHAKE_SANITIZE=ON)
  runtime_name=libasan.so
  pass="ASan+UBSan"
else
  unit_targets=(shim_tx_turn_test)
  flags=(-DSHAKE_TSAN=ON)
  runtime_name=libtsan.so
  pass="TSan"
fi
if [[ ! -f "$build/build.ninja" ]]; then
  # -O1 with line tables: the sanitizers' usual level; it builds in 186 s where Release's -O3
  # took 441 s (2 jobs, same machine load), and reports name the lines.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHAKE_WERROR=ON "${flags[@]}" \
    -DSHAKE_BENCH=OFF -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_C_FLAGS_DEBUG="-O1 -g1" >/dev/null
fi
cmake --build "$build" -j"$jobs" --target "${unit_targets[@]}" "${suite_targets[@]}"
echo "sanitize: $mode: built ${#unit_targets[@]} test targets and the suite's" \
     "${#suite_targets[@]} in $((SECONDS - start)) s"

logs="$build/sanitize-logs"
rm -rf "$logs"
mkdir -p "$logs"
report_re='^(==[0-9]+==ERROR|SUMMARY: (Address|UndefinedBehavior|Leak|Thread)Sanitizer)|runtime error:|^WARNING: ThreadSanitizer'
# Narrow suppressions, each with its reason: scripts/lsan.supp, scripts/tsan.supp.
lsan_supp=$PWD/scripts/lsan.supp tsan_supp=$PWD/scripts/tsan.supp
if [[ $mode == asan ]]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  if [[ -f $lsan_supp ]]; then export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$lsan_supp}; fi
  # The simulation's 200 seeds with 1 MiB each way instead of 64 MiB: every seed's loss, recovery
  # and close paths run, in about a minute under ASan instead of twenty.
  export SHAKE_SIM_BYTES=${SHAKE_SIM_BYTES:-$((1 << 20))}
else
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  if [[ -f $tsan_supp ]]; then TSAN_OPTIONS+=:suppressions=$tsan_supp; fi
fi
status=0
clean=0
runs=0
failed=()
for t in "${unit_targets[@]}"; do
  runs=$((runs + 1))
  bin=$(find "$build/tests" -type f -name "$t" -perm -u+x | head -1)
  if [[ -z "$bin" ]]; then
    echo "sanitize: $t was not built" >&2
    status=1
    failed+=("$t")
    continue
  fi
  log="$logs/$t.log"
  t0=$SECONDS
  # CI=true makes the namespace tests (io_device_test) fail instead of skipping without root.
  if timeout --kill-after=10 600 "$bin" --gtest_brief=1 >"$log" 2>&1 &&
     ! grep -qE "$report_re" "$log"; then
    echo "sanitize: $t passed ($(grep -oE '[0-9]+ tests? from [0-9]+ test suites? ran' "$log" | tail -1), $((SECONDS - t0)) s)"
    clean=$((clean + 1))
  else
    echo "sanitize: $t FAILED ($((SECONDS - t0)) s); the end of its log:" >&2
    tail -60 "$log" >&2
    status=1
    failed+=("$t")
  fi
done

# The suite through libshake. Every process's reports go to files in $logs/suite (the keeper's
# stderr is /dev/null); the suite's own output to its log.
runtime=$(realpath "$(${CXX:-g++} -print-file-name=$runtime_name)")
lib=$(realpath "$build/shim/libshake.so")
shake=$(realpath "$build/shim/shake")
mkdir -p "$logs/suite"
suite_opts=log_path=$PWD/$logs/suite/report
if [[ $mode == asan ]]; then
  suite_env=(ASAN_OPTIONS="$ASAN_OPTIONS:$suite_opts" UBSAN_OPTIONS="$UBSAN_OPTIONS:$suite_opts")
  legs=(native preload launcher)
  suite_args=(--preload "$runtime $lib" --launcher "$shake")
  gtest=()
else
  suite_env=(TSAN_OPTIONS="$TSAN_OPTIONS:$suite_opts")
  legs=(native launcher)
  suite_args=(--launcher "$shake")  # a preload leg passes the sockets to the kernel: no threads of ours
  gtest=(-- --gtest_filter="$threaded_cases")
fi
t0=$SECONDS
suite_log="$logs/suite.log"
set +e
env "${suite_env[@]}" SHAKE_KEEPER_STDERR="$PWD/$logs/suite/keeper.stderr" SHAKE_SUITE_SHIM_SELF=198.18.7.2 SHAKE_SUITE_PRELOAD_SELF=198.18.5.1 \
  timeout --kill-after=10 900 tests/shim/run_suite.sh --suite "$build/tests/shim/shim_suite" \
  --peer "$build/tests/shim/shim_peer" "${suite_args[@]}" "${gtest[@]}" >"$suite_log" 2>&1
suite_rc=$?
set -e
suite_clean=0
for leg in "${legs[@]}"; do
  runs=$((runs + 1))
  line=$(grep -E "^=== shim_suite: $leg leg exit" "$suite_log" | tail -1)
  if [[ $line =~ exit\ 0,\ ([0-9]+)\ passed,\ 0\ failed ]] && ((BASH_REMATCH[1] > 0)); then
    counts=${line#=== shim_suite: $leg leg exit 0, }
    echo "sanitize: shim_suite $leg leg passed (${counts% ===})"
    suite_clean=$((suite_clean + 1))
  else
    echo "sanitize: shim_suite $leg leg FAILED (${line:-no result line})" >&2
    failed+=("shim_suite/$leg")
  fi
done
reports=$(grep -lE "$report_re" "$logs"/suite/* "$suite_log" 2>/dev/null || true)
if [[ -n "$reports" ]]; then
  for r in $reports; do
    echo "sanitize: a report in $r:" >&2
    head -80 "$r" >&2
  done
  suite_clean=0  # a report of the suite's processes cannot be told apart by leg
  failed+=("reports")
fi
clean=$((clean + suite_clean))
if ((suite_rc != 0)) || [[ -n "$reports" ]] || ((${#failed[@]} > 0)); then
  status=1
  if ((suite_rc != 0)); then
    echo "sanitize: run_suite.sh exited $suite_rc ($((SECONDS - t0)) s); the end of its log:" >&2
    tail -60 "$suite_log" >&2
  fi
fi
echo "sanitize: shim_suite under $pass: $((SECONDS - t0)) s"
echo "sanitize: $mode: $clean of $runs clean, $((SECONDS - start)) s" \
     "(${failed[*]:-nothing} failed)"
exit "$status"
