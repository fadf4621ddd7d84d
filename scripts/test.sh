#!/usr/bin/env bash
# The test command: installs dependencies, builds from scratch, runs every test.
#   scripts/test.sh            # everything
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzzing pass
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${BUILD_DIR:-build}
rm -rf "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"
# A failing test ends the script here (pipefail); the fuzzing pass runs only after a green ctest.
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" 2>&1 | tee "$build/ctest.log"
summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$build/ctest.log" | tail -1)

# libFuzzer targets, built with clang, each run for FUZZ_SECONDS.
fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" != 0 ]; then
  fbuild="$build-fuzz"
  rm -rf "$fbuild"
  CC=clang CXX=clang++ cmake -S . -B "$fbuild" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
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
