// libshake's process-wide state: load-time initialisation, the configuration, the fd table.
//
// Init runs once: from the library constructor, or earlier from the first interposed call that
// needs it (another library's constructor may create sockets before ours runs). A setuid or
// file-capability program (getauxval(AT_SECURE)) gets nothing: libshake reads no variable,
// writes nothing and passes every call through.
#pragma once

#include <optional>

#include "shim/config.h"
#include "shim/fd_table.h"

namespace shake::shim {

struct Runtime {
  bool secure = false;  // AT_SECURE: stay out of the way
  Config config;
  std::optional<ConfigError> error;  // a configuration problem, reported once at init
};

// Initialises if needed and returns the runtime, or null while initialisation is in progress on
// this thread (re-entry) — callers then pass the call through.
const Runtime* EnsureInit();
// True when libshake must not interfere at all (AT_SECURE, or init not reachable now).
bool StayOut();
// The fd table; null only while libshake itself is being initialised (treat as "no stack fds").
FdTable* Fds();
// Copies the value of SHAKE_HANDOFF into `out` (n bytes, NUL-terminated) and removes every
// SHAKE_HANDOFF entry from `environ`; false when there is none. It walks `environ` itself
// rather than calling getenv/unsetenv, which the program may define for itself: bash does, over
// its shell variables, and before bash's main runs its unsetenv removes nothing, so the entry
// went on to every child bash started.
bool TakeHandoffEntry(char* out, size_t n);

// The body of the keeper program (keeper.cc), which shake-keeper reaches through the exported
// shake_keeper_main (interpose.cc).
int KeeperMain(int argc, char** argv);

}  // namespace shake::shim
