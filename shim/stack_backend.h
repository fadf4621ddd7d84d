// The stack-backed StackBackend: see the design note at the top of stack_backend.cc.
#pragma once

#include "shim/backend.h"
#include "shim/config.h"

namespace shake::shim {

// Builds the shared arena, the stack and the device for `config` and installs the backend.
// False (after logging one line) when the device cannot be opened; sockets then stay kernel
// sockets. Called once, from libshake's initialisation, before the program can fork.
bool InstallStackBackend(const Config& config);

}  // namespace shake::shim
