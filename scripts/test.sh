#!/usr/bin/env bash
# The test command: installs dependencies, builds from scratch, runs every test.
#   scripts/test.sh            # everything
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzzing pass
#   SANITIZE=0 scripts/test.sh       # skip the sanitizer passes (scripts/sanitize.sh asan, tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
# Root is needed (apt-get, network namespaces, TUN devices): a user with sudo is asked for it
# here, so the same command works in a root shell without sudo and for such a user.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$PWD/scripts/$(basename "$0")" "$@"; fi
  echo "test: needs root to install packages and make network namespaces; run it as root (no sudo on this machine)" >&2
  exit 1
fi
scripts/install-deps.sh
build=${BUILD_DIR:-build}
rm -rf "$build"
# Release, as a packager builds it, with the project's warnings as errors: the tests, the
# benchmarks and the .deb all come from this one build.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHAKE_WERROR=ON
cmake --build "$build" -j"$(nproc)"
status=0
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" 2>&1 | tee "$build/ctest.log" || status=$?
summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$build/ctest.log" | tail -1)
if [ "$status" != 0 ]; then
  # With -j the failing tests' output is buried mid-log; repeat the end of each one last, where
  # a reader of the log's tail (or CI's excerpt) sees it.
  echo "==== output of the failed tests (last 60 lines each) ===="
  awk '/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: .*\*\*\*/ { if (n) flush(); name = $0; n = 0; grab = 1; next }
       /^ *Start +[0-9]+: |^ *[0-9]+\/[0-9]+ Test +#/ { if (grab) flush(); grab = 0; next }
       grab { lines[n++] = $0 }
       function flush(  i) { print "---- " name; for (i = (n > 60 ? n - 60 : 0); i < n; i++) print lines[i]; n = 0 }
       END { if (grab) flush() }' "$build/ctest.log"
  [[ $summary =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]] &&
    echo "ctest: $((BASH_REMATCH[2] - BASH_REMATCH[1])) passed, ${BASH_REMATCH[1]} failed"
  exit "$status"  # the fuzzing pass runs only after a green ctest
fi

# The stack, io and shim unit tests and the shim suite through libshake again under
# AddressSanitizer and UndefinedBehaviorSanitizer, then the shim's threaded cases under
# ThreadSanitizer. Both passes run, and either failing fails the run.
if [ "${SANITIZE:-1}" != 0 ]; then
  rm -rf "$build-asan" "$build-tsan"
  sanitize_status=0
  scripts/sanitize.sh asan "$build-asan" || sanitize_status=1
  scripts/sanitize.sh tsan "$build-tsan" || sanitize_status=1
  if [ "$sanitize_status" != 0 ]; then exit 1; fi
fi

# libFuzzer targets, built with clang, each run for FUZZ_SECONDS.
fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" != 0 ]; then
  fbuild="$build-fuzz"
  rm -rf "$fbuild"
  CC=clang CXX=clang++ cmake -S . -B "$fbuild" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHAKE_WERROR=ON \
    -DSHAKE_FUZZ=ON -DSHAKE_BENCH=OFF
  cmake --build "$fbuild" -j"$(nproc)" --target fuzz_stack
  mkdir -p "$fbuild/corpus"
  "$fbuild/tests/stack/fuzz/fuzz_stack" -max_total_time="$fuzz_seconds" -print_final_stats=1 \
    "$fbuild/corpus" tests/stack/fuzz/corpus
fi

# The closing line: ctest's counts, after the fuzzing pass's output.
if [[ $summary =~ ([0-9]+)\ tests\ failed\ out\ of\ ([0-9]+) ]]; then
  failed=${BASH_REMATCH[1]}
  total=${BASH_REMATCH[2]}
  echo "ctest: $((total - failed)) passed, $failed failed"
fi
