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
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"

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
