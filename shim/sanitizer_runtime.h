// The sanitizer runtime a sanitizer build of libshake preloads into the programs it starts
// (CMake defines both for SHAKE_SANITIZE and SHAKE_TSAN builds): its path, and whether it goes
// ahead of libshake.so in LD_PRELOAD (ASan's must be first; TSan's comes after, see
// scripts/sanitize.sh). A Release build has none.
#pragma once

#ifndef SHAKE_SANITIZER_RUNTIME
#define SHAKE_SANITIZER_RUNTIME ""
#endif
#ifndef SHAKE_SANITIZER_RUNTIME_FIRST
#define SHAKE_SANITIZER_RUNTIME_FIRST 1
#endif
