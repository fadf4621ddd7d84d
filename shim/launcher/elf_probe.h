// Tells whether a program can be served by libshake at all: a static binary (no PT_INTERP) or a
// Go binary (a "Go" build-id note; Go makes socket system calls itself) bypasses libc, so
// LD_PRELOAD cannot reach its sockets.
#pragma once

#include <string>

namespace shake::launcher {

enum class ProgramKind {
  kDynamic,     // dynamically linked ELF: libshake applies
  kStatic,      // ELF without an interpreter
  kGo,          // ELF with a Go build-id note (static or not)
  kNotElf,      // a script or other file: its interpreter is what runs
  kUnreadable,  // could not open or parse; exec will tell
};

ProgramKind ProbeProgram(const std::string& path);

// The path execvp would run for `command` (searching PATH when it has no '/'), or "".
std::string ResolveCommand(const std::string& command);

}  // namespace shake::launcher
