// shake's run mode: runs a program over libshake.
//
//   shake [--device tun:IF|packet:IF] [--addr A/P] [--gateway G] [--pcap FILE] [--trace FILE]
//         [--log LEVEL] [--] COMMAND [ARGS...]
//
// Sets the SHAKE_* variables from the options (options win over the environment), checks the
// whole configuration the way libshake will — one line naming the fix and exit status 2 on any
// problem — prepends libshake.so to LD_PRELOAD, warns once when COMMAND bypasses libc (static or
// Go), and execs COMMAND. Exit status 127: command not found; 126: found but not executable.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shim/config.h"
#include "shim/launcher/commands.h"
#include "shim/launcher/elf_probe.h"
#include "shim/sanitizer_runtime.h"


#ifndef SHAKE_INSTALL_LIBDIR
#define SHAKE_INSTALL_LIBDIR "/usr/lib/x86_64-linux-gnu"
#endif
#ifndef SHAKE_RELATIVE_LIBDIR
#define SHAKE_RELATIVE_LIBDIR "lib/x86_64-linux-gnu"
#endif
#ifndef SHAKE_VERSION
#define SHAKE_VERSION "0"
#endif

namespace shake::launcher {
namespace {

using shake::shim::Config;
using shake::shim::ConfigError;

const char kHelp[] =
    "usage: shake [OPTIONS] [--] COMMAND [ARGS...]\n"
    "       shake trace|setup|doctor|stat [ARGS...]   (shake SUBCOMMAND --help)\n"
    "Run COMMAND with its TCP/IPv4 sockets served by libshake's userspace stack.\n"
    "\n"
    "Options (each sets the variable in brackets; the environment is used otherwise):\n"
    "  --device tun:IF|packet:IF  the device the stack sends on [SHAKE_DEVICE]\n"
    "                             tun:IF     an existing TUN device the kernel routes to\n"
    "                             packet:IF  an Ethernet interface, via AF_PACKET\n"
    "  --addr A/P                 the stack's own IPv4 address and prefix, e.g.\n"
    "                             198.18.0.2/24 [SHAKE_ADDR]\n"
    "  --gateway G                next hop for destinations off the subnet [SHAKE_GATEWAY]\n"
    "  --pcap FILE                write the stack's packets to FILE [SHAKE_PCAP]\n"
    "  --trace FILE               write connection events to FILE [SHAKE_TRACE]\n"
    "  --log LEVEL                error, warn (default), info or debug [SHAKE_LOG]\n"
    "  --fallback kernel          sockets the stack cannot serve stay kernel sockets instead\n"
    "                             of failing [SHAKE_FALLBACK]\n"
    "  -h, --help                 show this help\n"
    "  --version                  show the version\n"
    "\n"
    "Sockets the stack does not serve (AF_UNIX, UDP, IPv6, loopback destinations) stay kernel\n"
    "sockets. Static and Go programs bypass libc and cannot be served.\n"
    "\n"
    "Example:\n"
    "  ip tuntap add dev shk0 mode tun && ip addr add 198.18.0.1/24 dev shk0 && ip link set shk0 up\n"
    "  shake --device tun:shk0 --addr 198.18.0.2/24 -- curl http://198.18.0.1/\n"
    "\n"
    "Sub-commands:\n"
    "  trace    draw ladder diagrams of TCP connections (a pcap, a trace log, or a run)\n"
    "  setup    create a TUN device that a user can run shake on without root\n"
    "  doctor   check what a run needs, and say how to fix what is missing\n"
    "  stat     sockets and counters of running stacks\n"
    "A program named like a sub-command runs as shake -- NAME.\n"
    "\n"
    "See shake(1), shake-trace(1), shake-setup(1), shake-doctor(1), libshake(7).\n";

struct Flag {
  const char* name;
  const char* variable;
};
constexpr Flag kFlags[] = {
    {"--device", "SHAKE_DEVICE"}, {"--addr", "SHAKE_ADDR"},   {"--gateway", "SHAKE_GATEWAY"},
    {"--pcap", "SHAKE_PCAP"},     {"--trace", "SHAKE_TRACE"}, {"--log", "SHAKE_LOG"},
    {"--fallback", "SHAKE_FALLBACK"},
};

[[noreturn]] void Fail(const std::string& line, int status = kUsageError) {
  fprintf(stderr, "%s\n", line.c_str());
  exit(status);
}

std::string Dirname(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

std::string SelfPath() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = '\0';
  return self;
}

// libshake.so next to this binary (a build tree), else PREFIX/lib/ARCH beside PREFIX/bin (any
// install prefix), else the packaged location.
std::string FindLibrary() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::vector<std::string> candidates;
  if (n > 0) {
    self[n] = '\0';
    candidates.push_back(Dirname(self) + "/libshake.so");
    candidates.push_back(Dirname(Dirname(self)) + "/" SHAKE_RELATIVE_LIBDIR "/libshake.so");
  }
  candidates.push_back(std::string(SHAKE_INSTALL_LIBDIR) + "/libshake.so");
  for (const auto& c : candidates) {
    if (access(c.c_str(), R_OK) == 0) return c;
  }
  return "";
}

int RunMain(int argc, char** argv) {
  std::vector<std::string> given;  // variables set from flags, to name the flag in errors
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      fputs(kHelp, stdout);
      return 0;
    }
    if (a == "--version") {
      printf("shake %s\n", SHAKE_VERSION);
      return 0;
    }
    if (a.empty() || a[0] != '-') break;  // COMMAND
    std::string name = a, value;
    bool inline_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : kFlags) {
      if (name == f.name) flag = &f;
    }
    if (!flag) Fail("shake: unknown option " + name + "; see shake --help");
    if (!inline_value) {
      if (i + 1 >= argc) Fail("shake: " + name + " needs a value; see shake --help");
      value = argv[++i];
    }
    setenv(flag->variable, value.c_str(), 1);
    given.push_back(flag->variable);
  }
  if (i >= argc) Fail("shake: no command given; usage: shake [OPTIONS] [--] COMMAND [ARGS...]");

  auto alias_for = [&](const std::string& var) -> std::string {
    for (const Flag& f : kFlags) {
      if (var == f.variable) {
        for (const auto& g : given) {
          if (g == var) return f.name;
        }
      }
    }
    return "";
  };
  Config config;
  std::optional<ConfigError> err = shake::shim::ParseConfig(&getenv, config);
  if (!err && !config.configured()) {
    Fail("shake: no device: pass --device tun:IFNAME or --device packet:IFNAME (or set "
         "SHAKE_DEVICE), and --addr ADDRESS/PREFIX");
  }
  if (!err) err = shake::shim::CheckHost(config);
  if (err) Fail(err->Line(alias_for(err->variable)));

  std::string lib = FindLibrary();
  if (lib.empty()) {
    Fail("shake: libshake.so not found next to shake or in " SHAKE_INSTALL_LIBDIR
         "; reinstall the shake package");
  }
  std::string preload = lib;
  if (const char* old = getenv("LD_PRELOAD"); old && *old) {
    if (strstr(old, lib.c_str()) != nullptr) preload = old;
    else preload += std::string(" ") + old;
  }
  // A sanitizer build's libshake needs the sanitizer's runtime in every program it is preloaded
  // into: ASan's as the first library, TSan's after libshake (shim/CMakeLists.txt says why).
  // Empty in other builds.
  if (const std::string runtime = SHAKE_SANITIZER_RUNTIME; !runtime.empty()) {
    if (SHAKE_SANITIZER_RUNTIME_FIRST && preload.compare(0, runtime.size(), runtime) != 0) {
      preload = runtime + " " + preload;
    } else if (!SHAKE_SANITIZER_RUNTIME_FIRST && preload.find(runtime) == std::string::npos) {
      preload += " " + runtime;
    }
  }
  setenv("LD_PRELOAD", preload.c_str(), 1);

  std::string command = argv[i];
  std::string path = shake::launcher::ResolveCommand(command);
  if (path.empty()) Fail("shake: " + command + ": command not found", 127);
  switch (shake::launcher::ProbeProgram(path)) {
    case shake::launcher::ProgramKind::kStatic:
      fprintf(stderr,
              "shake: warning: %s is statically linked: it makes system calls without libc, "
              "so libshake cannot serve its sockets (they stay kernel sockets)\n",
              path.c_str());
      break;
    case shake::launcher::ProgramKind::kGo:
      fprintf(stderr,
              "shake: warning: %s is a Go program: Go makes socket system calls itself, "
              "bypassing libc, so libshake cannot serve its sockets (they stay kernel "
              "sockets)\n",
              path.c_str());
      break;
    default:
      break;
  }
  execv(path.c_str(), argv + i);
  int e = errno;
  Fail("shake: cannot run " + path + ": " + strerror(e), e == ENOENT ? 127 : 126);
}

}  // namespace shake::launcher
