// shake trace: ladder diagrams of TCP connections.
//
//   shake trace --pcap FILE [--log FILE] [DRAWING OPTIONS]
//   shake trace --log FILE [DRAWING OPTIONS]
//   shake trace [--pcap FILE] [--log FILE] [RUN OPTIONS] [DRAWING OPTIONS] -- COMMAND [ARGS...]
//
// The third form runs `shake [RUN OPTIONS] --trace LOG --pcap PCAP -- COMMAND` (temporary files
// unless given), waits for it, and draws from both: the capture gives the segments with their
// options, the log the libshake stack's own states. See shake-trace(1).
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "io/trace_log.h"
#include "shim/launcher/commands.h"
#include "shim/launcher/trace/capture.h"
#include "shim/launcher/trace/model.h"
#include "shim/launcher/trace/render.h"

namespace shake::launcher {
namespace {

const char kTraceHelp[] =
    "usage: shake trace --pcap FILE [--log FILE] [OPTIONS]\n"
    "       shake trace --log FILE [OPTIONS]\n"
    "       shake trace [--pcap FILE] [--log FILE] [RUN OPTIONS] [OPTIONS] -- COMMAND [ARGS...]\n"
    "Draw a ladder diagram of every TCP connection: both hosts as columns, the state of each\n"
    "after every segment, seq/ack, flags, options on SYNs, data bursts folded, retransmissions,\n"
    "duplicates, RSTs and challenge ACKs marked, TIME-WAIT with its duration.\n"
    "\n"
    "Sources:\n"
    "  --pcap FILE        a capture (pcap or pcapng; Ethernet, raw IPv4 or Linux cooked)\n"
    "  --log FILE         a libshake trace log (SHAKE_TRACE): that stack's own states\n"
    "  -- COMMAND         run COMMAND under shake, writing both (to temporary files unless\n"
    "                     --pcap/--log name them; named files are overwritten), then draw\n"
    "Drawing options:\n"
    "  -c, --connection SPEC  only connections matching SPEC: N (the N-th, from 1), ADDR,\n"
    "                     :PORT or ADDR:PORT (either end); may be repeated\n"
    "  --list             list the connections, one line each, instead of drawing\n"
    "  --ascii            ASCII instead of UTF-8 box and arrow characters\n"
    "  --absolute         absolute sequence numbers everywhere (default: relative to the ISN)\n"
    "  --no-fold          one row per segment (default: data bursts folded into one row)\n"
    "  --svg FILE         also write the ladders as SVG to FILE\n"
    "Run options (passed to shake, see shake --help):\n"
    "  --device DEV  --addr A/P  --gateway G  --log-level LEVEL  --fallback kernel\n"
    "\n"
    "States of a host that wrote the log come from its events; every other host's states are\n"
    "inferred from the segments (RFC 9293 3.3.2) and labeled \"inferred\".\n"
    "See shake-trace(1).\n";

[[noreturn]] void Usage(const std::string& line) {
  fprintf(stderr, "shake trace: %s; see shake trace --help\n", line.c_str());
  exit(kUsageError);
}

struct Spec {
  int index = 0;  // 1-based, 0: by address
  bool has_addr = false;
  Ipv4Addr addr;
  int port = -1;
};

Spec ParseSpec(const std::string& s) {
  Spec sp;
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
    sp.index = atoi(s.c_str());
    if (sp.index < 1) Usage("--connection " + s + ": connections count from 1");
    return sp;
  }
  std::string a = s;
  if (auto colon = s.rfind(':'); colon != std::string::npos) {
    const std::string p = s.substr(colon + 1);
    if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos || p.size() > 5 ||
        atoi(p.c_str()) > 65535) {
      Usage("--connection " + s + ": bad port; write N, ADDR, :PORT or ADDR:PORT");
    }
    sp.port = atoi(p.c_str());
    a = s.substr(0, colon);
  }
  if (!a.empty()) {
    auto ip = Ipv4Addr::Parse(a);
    if (!ip) Usage("--connection " + s + ": not an IPv4 address; write N, ADDR, :PORT or ADDR:PORT");
    sp.has_addr = true;
    sp.addr = *ip;
  }
  return sp;
}

bool Matches(const Spec& sp, const ladder::Connection& c, size_t index) {
  if (sp.index > 0) return static_cast<size_t>(sp.index) == index;
  for (const Endpoint& e : c.end) {
    if ((!sp.has_addr || e.addr == sp.addr) && (sp.port < 0 || e.port == sp.port)) return true;
  }
  return false;
}

bool NonEmptyFile(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

bool Truncate(const std::string& path, std::string* error) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = path + ": " + strerror(errno);
    return false;
  }
  close(fd);
  return true;
}

// Runs `shake ARGS...` (this binary) and returns its exit status in the shell's terms.
int RunSelf(const std::vector<std::string>& args) {
  const std::string self = SelfPath();
  if (self.empty()) {
    fprintf(stderr, "shake trace: cannot find the shake binary (/proc/self/exe)\n");
    return 1;
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>("shake"));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // While COMMAND runs, a ^C is for it; the ladder is drawn afterwards.
  struct sigaction ign{}, old_int{}, old_quit{};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  const pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "shake trace: fork: %s\n", strerror(errno));
    return 1;
  }
  if (pid == 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    execv(self.c_str(), argv.data());
    fprintf(stderr, "shake trace: cannot run %s: %s\n", self.c_str(), strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int TraceMain(int argc, char** argv) {
  std::string pcap, log, svg;
  std::vector<Spec> specs;
  bool list = false;
  ladder::RenderOptions ropt;
  ladder::BuildOptions bopt;
  std::vector<std::string> run_args;
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) command.push_back(argv[i]);
      if (command.empty()) Usage("-- needs a COMMAND after it");
      break;
    }
    std::string name = a, value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
    }
    auto need = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) Usage(name + " needs a value");
      return argv[++i];
    };
    if (name == "-h" || name == "--help") {
      fputs(kTraceHelp, stdout);
      return 0;
    } else if (name == "--pcap") {
      pcap = need();
    } else if (name == "--log") {
      log = need();
    } else if (name == "--svg") {
      svg = need();
    } else if (name == "-c" || name == "--connection") {
      specs.push_back(ParseSpec(need()));
    } else if (name == "--list") {
      list = true;
    } else if (name == "--ascii") {
      ropt.ascii = true;
    } else if (name == "--absolute") {
      ropt.absolute = true;
    } else if (name == "--no-fold") {
      bopt.fold = false;
    } else if (name == "--device" || name == "--addr" || name == "--gateway" ||
               name == "--fallback") {
      run_args.push_back(name);
      run_args.push_back(need());
    } else if (name == "--log-level") {
      run_args.push_back("--log");
      run_args.push_back(need());
    } else {
      Usage("unknown option " + name + (a[0] == '-' ? "" : " (a COMMAND goes after --)"));
    }
  }
  if (!run_args.empty() && command.empty()) {
    Usage("run options (--device, --addr, ...) need a COMMAND after --");
  }
  int command_status = 0;
  std::string tmpdir;
  const bool running = !command.empty();
  if (running) {
    const bool keep_log = !log.empty(), keep_pcap = !pcap.empty();
    if (!keep_log || !keep_pcap) {
      const char* t = getenv("TMPDIR");
      std::string templ = std::string(t && *t ? t : "/tmp") + "/shake-trace.XXXXXX";
      std::vector<char> buf(templ.begin(), templ.end());
      buf.push_back('\0');
      if (mkdtemp(buf.data()) == nullptr) {
        fprintf(stderr, "shake trace: cannot make a temporary directory %s: %s\n", templ.c_str(),
                strerror(errno));
        return 1;
      }
      tmpdir = buf.data();
      if (!keep_log) log = tmpdir + "/trace.log";
      if (!keep_pcap) pcap = tmpdir + "/capture.pcap";
    }
    std::string err;
    if (!Truncate(log, &err) || !Truncate(pcap, &err)) {
      fprintf(stderr, "shake trace: %s\n", err.c_str());
      return 1;
    }
    std::vector<std::string> args = run_args;
    args.insert(args.end(), {"--trace", log, "--pcap", pcap, "--"});
    args.insert(args.end(), command.begin(), command.end());
    command_status = RunSelf(args);
  } else if (pcap.empty() && log.empty()) {
    Usage("nothing to draw: give --pcap FILE, --log FILE, or -- COMMAND");
  }
  auto cleanup = [&] {
    if (tmpdir.empty()) return;
    unlink((tmpdir + "/trace.log").c_str());
    unlink((tmpdir + "/capture.pcap").c_str());
    rmdir(tmpdir.c_str());
  };

  ladder::Capture cap;
  io::TraceLog tlog;
  bool have_cap = false, have_log = false;
  std::string error;
  std::vector<std::string> sources;
  if (!pcap.empty() && (!running || NonEmptyFile(pcap))) {
    if (!ladder::ReadCapture(pcap, &cap, &error)) {
      fprintf(stderr, "shake trace: %s\n", error.c_str());
      cleanup();
      return running ? command_status : 1;
    }
    have_cap = true;
    for (const auto& w : cap.warnings) fprintf(stderr, "shake trace: %s: %s\n", pcap.c_str(), w.c_str());
    if (!running) sources.push_back("capture " + pcap);
  }
  if (!log.empty() && (!running || NonEmptyFile(log))) {
    if (!io::ReadTraceLog(log, &tlog, &error)) {
      fprintf(stderr, "shake trace: %s\n", error.c_str());
      cleanup();
      return running ? command_status : 1;
    }
    have_log = true;
    for (const auto& w : tlog.warnings) fprintf(stderr, "shake trace: %s: %s\n", log.c_str(), w.c_str());
    if (!running) sources.push_back("log " + log);
  }
  if (running) {
    sources.push_back("a run of " + command[0]);
    if (!have_log) {
      fprintf(stderr,
              "shake trace: %s wrote no trace log (SHAKE_TRACE): every state shown is inferred "
              "from the capture\n",
              command[0].c_str());
    }
  }
  std::vector<std::string> warnings;
  ladder::Sources src{have_cap ? &cap : nullptr, have_log ? &tlog : nullptr};
  std::vector<ladder::Connection> conns = ladder::Build(src, bopt, &warnings);
  for (const auto& w : warnings) fprintf(stderr, "shake trace: %s\n", w.c_str());
  cleanup();
  for (const auto& s : sources) ropt.source += (ropt.source.empty() ? "from " : ", ") + s;

  std::vector<size_t> chosen;
  for (size_t i = 0; i < conns.size(); ++i) {
    bool want = specs.empty();
    for (const Spec& sp : specs) want = want || Matches(sp, conns[i], i + 1);
    if (want) chosen.push_back(i);
  }
  if (conns.empty()) {
    std::string why = "no TCP/IPv4 segments";
    if (have_cap) {
      why += " in " + std::to_string(cap.frames) + " frames (" +
             std::to_string(cap.skipped_not_ipv4) + " not IPv4, " +
             std::to_string(cap.skipped_not_tcp) + " not TCP, " +
             std::to_string(cap.skipped_malformed) + " malformed or of an unknown link type)";
    }
    fprintf(stderr, "shake trace: %s\n", why.c_str());
    if (running && command_status == 0) {
      fprintf(stderr,
              "shake trace: %s's stack captured nothing; a stack already running on the device "
              "(another program, or the keeper of one that ended) keeps the capture it began "
              "with: rerun once it is gone\n",
              command[0].c_str());
    }
    return running ? command_status : 1;
  }
  if (chosen.empty()) {
    fprintf(stderr, "shake trace: no connection matches; there are %zu (see --list)\n",
            conns.size());
    return running ? command_status : 1;
  }
  if (list) {
    for (size_t i : chosen) printf("%s\n", ladder::SummaryLine(conns[i], i + 1).c_str());
    return running ? command_status : 0;
  }
  std::string text;
  for (size_t k = 0; k < chosen.size(); ++k) {
    if (k != 0) text += "\n";
    text += ladder::RenderText(conns[chosen[k]], chosen[k] + 1, conns.size(), ropt);
  }
  fputs(text.c_str(), stdout);
  if (!svg.empty()) {
    std::vector<const ladder::Connection*> sel;
    std::vector<size_t> idx;
    for (size_t i : chosen) {
      sel.push_back(&conns[i]);
      idx.push_back(i + 1);
    }
    const std::string doc = ladder::RenderSvg(sel, idx, conns.size(), ropt);
    std::ofstream out(svg, std::ios::binary | std::ios::trunc);
    out << doc;
    out.close();
    if (!out) {
      fprintf(stderr, "shake trace: cannot write %s\n", svg.c_str());
      return running ? command_status : 1;
    }
  }
  return running ? command_status : 0;
}

}  // namespace shake::launcher
