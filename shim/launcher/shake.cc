// shake: the launcher. `shake [OPTIONS] [--] COMMAND [ARGS...]` runs COMMAND over libshake
// (run.cc); `shake SUBCOMMAND ...` runs one of the sub-commands in kSubcommands below.
//
// The dispatch table is the one place that names the sub-commands: to add one, add a row. A row
// without a function is a name reserved for a command this build does not have; it is refused
// with one line instead of being taken for a program to run.
#include <cstdio>
#include <cstring>

#include "shim/launcher/commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*main)(int argc, char** argv);  // null: not in this build
};

constexpr Subcommand kSubcommands[] = {
    {"trace", shake::launcher::TraceMain},
    {"setup", shake::launcher::SetupMain},
    {"doctor", shake::launcher::DoctorMain},
    {"stat", shake::launcher::StatMain},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2) {
    for (const Subcommand& s : kSubcommands) {
      if (std::strcmp(argv[1], s.name) != 0) continue;
      if (s.main == nullptr) {
        fprintf(stderr,
                "shake: %s is not available in this build; to run a program named %s, use "
                "shake -- %s\n",
                s.name, s.name, s.name);
        return shake::launcher::kUsageError;
      }
      return s.main(argc - 1, argv + 1);
    }
  }
  return shake::launcher::RunMain(argc, argv);
}
