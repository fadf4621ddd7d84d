// The `shake` launcher's commands. shake.cc dispatches on argv[1]: a sub-command name from its
// table (kSubcommands) runs that command with argv[1..]; anything else is the run mode
// `shake [OPTIONS] [--] COMMAND [ARGS...]`, exactly as before sub-commands existed. A program
// that happens to be named like a sub-command runs as `shake -- NAME` or `shake [OPTIONS] NAME`.
//
// Each *Main takes the sub-command's own argv (argv[0] is the sub-command's name) and returns the
// process exit status: 0 success, 1 a failed check or operation, 2 a usage or configuration
// error (one line naming the fix on stderr).
#pragma once

#include <string>

namespace shake::launcher {

inline constexpr int kUsageError = 2;

// shake [OPTIONS] [--] COMMAND: sets SHAKE_*, checks them, preloads libshake.so, execs COMMAND.
int RunMain(int argc, char** argv);
// shake trace: ladder diagrams from a capture, a trace log, or a run of COMMAND (trace_main.cc).
int TraceMain(int argc, char** argv);
// shake setup: a persistent multi-queue TUN device for a user, with address, route, up.
int SetupMain(int argc, char** argv);
// shake doctor: what a run needs, one line per problem with its fix.
int DoctorMain(int argc, char** argv);
// shake stat: sockets, processes and counters of the stacks in this namespace (stat.cc).
int StatMain(int argc, char** argv);

// The path of the running shake binary (for re-running itself), or "".
std::string SelfPath();
// libshake.so next to this binary (a build tree), else PREFIX/lib/ARCH beside PREFIX/bin, else
// the packaged location; "" when none is readable.
std::string FindLibrary();

}  // namespace shake::launcher
