#!/usr/bin/env bash
# The sanitizer pass of the test command (scripts/test.sh runs it after a green ctest):
# an AddressSanitizer + UndefinedBehaviorSanitizer build of the stack, io and shim unit tests,
# each binary run directly. Any report fails the run (-fno-sanitize-recover=all, and ASan's
# leak checker is on). Only the test targets are built, to keep CI's added time small.
#   scripts/sanitize.sh [BUILD_DIR]     # default build-asan
# Not covered here yet, and why: the shim suite through the launcher (libshake.so preloaded into
# a program needs libasan.so ahead of it in LD_PRELOAD, and every program the suite execs, sh,
# bash, cat, then runs with libasan too); TSan over the shim's threaded cases (same preload
# ordering problem with libtsan.so). See issue 10.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-asan}
jobs=$(nproc)
((jobs > 2)) && jobs=2
targets=(tcp_test wire_test scale_test fuzz_regression_test sim_bulk_test
         io_unit_test io_device_test shim_config_test shim_fd_table_test)
start=$SECONDS
if [[ ! -f "$build/build.ninja" ]]; then
  # -O1 with line tables: the sanitizers' usual level; it builds in 186 s where Release's -O3
  # took 441 s (2 jobs, same machine load), and reports name the lines.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSHAKE_WERROR=ON \
    -DSHAKE_SANITIZE=ON -DSHAKE_BENCH=OFF \
    -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_C_FLAGS_DEBUG="-O1 -g1" >/dev/null
fi
cmake --build "$build" -j"$jobs" --target "${targets[@]}"
echo "sanitize: built ${#targets[@]} test targets in $((SECONDS - start)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1}
# The simulation's 200 seeds with 1 MiB each way instead of 64 MiB: every seed's loss, recovery
# and close paths run, in about a minute under ASan instead of twenty.
export SHAKE_SIM_BYTES=${SHAKE_SIM_BYTES:-$((1 << 20))}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
failed=()
for t in "${targets[@]}"; do
  bin=$(find "$build/tests" -type f -name "$t" -perm -u+x | head -1)
  if [[ -z "$bin" ]]; then
    echo "sanitize: $t was not built" >&2
    status=1
    failed+=("$t")
    continue
  fi
  log="$build/$t.log"
  t0=$SECONDS
  # CI=true makes the namespace tests (io_device_test) fail instead of skipping without root.
  if timeout --kill-after=10 600 "$bin" --gtest_brief=1 >"$log" 2>&1 &&
     ! grep -qE '^(==[0-9]+==ERROR|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer)|runtime error:' "$log"; then
    echo "sanitize: $t passed ($(grep -oE '[0-9]+ tests? from [0-9]+ test suites? ran' "$log" | tail -1), $((SECONDS - t0)) s)"
  else
    echo "sanitize: $t FAILED ($((SECONDS - t0)) s); the end of its log:" >&2
    tail -60 "$log" >&2
    status=1
    failed+=("$t")
  fi
done
echo "sanitize: $((${#targets[@]} - ${#failed[@]})) of ${#targets[@]} binaries clean," \
     "${failed[*]:-none} failed, $((SECONDS - start)) s in all"
exit "$status"
