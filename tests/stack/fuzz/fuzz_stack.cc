// libFuzzer entry point: arbitrary frames, and sequences of frames, socket calls and time steps,
// against a stack holding a listener and established connections (see fuzz_harness.h).
//
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSHAKE_FUZZ=ON -DSHAKE_BENCH=OFF
//   cmake --build build-fuzz --target fuzz_stack
//   build-fuzz/tests/stack/fuzz/fuzz_stack -max_total_time=60 corpus-dir tests/stack/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <span>

#include "tests/stack/fuzz/fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shake::fuzz::Harness h;
  h.Run(std::span<const uint8_t>(data, size));
  return 0;
}
