// shake stat: the sockets, processes and counters of every libshake stack in this network
// namespace, from another shell while the programs run — what `ss -tanpi` and `nstat` show for
// the kernel's sockets.
//
//   shake stat [--json] [--watch [SECONDS]] [--device tun:IF|packet:IF]
//
// Each stack's keeper listens on an abstract AF_UNIX name "libshake/DEVICE" (shim/keeper_link.h);
// the stacks are found in /proc/net/unix, and each keeper answers a LinkStat with a snapshot it
// takes under the stack lock (shim/stat_snapshot.h). Nothing here maps a stack's memory, so a
// shake of another build can still read it. Only the stack's user (or root) is answered.
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "shim/keeper_link.h"
#include "shim/launcher/commands.h"

namespace shake::launcher {
namespace {

using shim::LinkStat;
using shim::LinkStatReply;
using shim::LinkType;

constexpr char kPrefix[] = "@libshake/";

const char kUsage[] =
    "usage: shake stat [--json] [--watch [SECONDS]] [--device tun:IF|packet:IF]\n"
    "Show the sockets, processes and counters of the libshake stacks in this network namespace.\n"
    "  --json          one JSON object: {\"stacks\": [...]} (see shake-stat(1))\n"
    "  --watch [S]     redraw every S seconds (default 1) until interrupted\n"
    "  --device D      only the stack on D\n";

// The devices of the stacks whose keepers listen in this namespace.
std::vector<std::string> Stacks() {
  std::set<std::string> found;
  std::ifstream f("/proc/net/unix");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    const auto at = line.find(kPrefix);
    if (at == std::string::npos) continue;
    std::string name = line.substr(at + sizeof kPrefix - 1);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\n')) name.pop_back();
    if (!name.empty()) found.insert(name);
  }
  return {found.begin(), found.end()};
}

// One stack's snapshot, or "" with a reason in *why.
std::string Ask(const std::string& device, bool json, std::string* why) {
  const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *why = strerror(errno);
    return "";
  }
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string name = shim::KeeperName(device);
  std::memcpy(a.sun_path, name.data(), std::min(name.size(), sizeof a.sun_path));
  const auto alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  LinkStat req;
  req.json = json ? 1 : 0;
  if (connect(s, reinterpret_cast<sockaddr*>(&a), alen) != 0 ||
      send(s, &req, sizeof req, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof req)) {
    *why = std::string("its keeper does not answer (") + strerror(errno) + ")";
    close(s);
    return "";
  }
  pollfd p{s, POLLIN, 0};
  if (poll(&p, 1, 5000) <= 0) {
    *why = "its keeper did not answer within 5 s";
    close(s);
    return "";
  }
  LinkStatReply r;
  iovec v{&r, sizeof r};
  msghdr m{};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
  close(s);
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
  }
  if (n != static_cast<ssize_t>(sizeof r) || r.type != LinkType::kStatReply) {
    *why = "its keeper sent something else (another libshake version?)";
    if (fd >= 0) close(fd);
    return "";
  }
  if (r.status != 0) {
    *why = r.status == EACCES ? "it belongs to another user; run as that user or as root"
                              : std::string("its keeper failed: ") + strerror(r.status);
    if (fd >= 0) close(fd);
    return "";
  }
  std::string out(r.size, '\0');
  size_t got = 0;
  while (fd >= 0 && got < out.size()) {
    const ssize_t k = pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (k <= 0) break;
    got += static_cast<size_t>(k);
  }
  if (fd >= 0) close(fd);
  out.resize(got);
  return out;
}

}  // namespace

int StatMain(int argc, char** argv) {
  bool json = false;
  double watch = 0;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--watch") {
      watch = 1;
      if (i + 1 < argc && argv[i + 1][0] != '-') {
        char* end = nullptr;
        watch = strtod(argv[++i], &end);
        if (end == argv[i] || *end != '\0' || watch <= 0 || watch > 3600) {
          fprintf(stderr, "shake stat: --watch %s: give the interval in seconds, e.g. "
                          "--watch 2\n", argv[i]);
          return kUsageError;
        }
      }
    } else if (a == "--device" && i + 1 < argc) {
      only = argv[++i];
    } else if (a == "-h" || a == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fprintf(stderr, "shake stat: unknown argument %s\n%s", a.c_str(), kUsage);
      return kUsageError;
    }
  }
  // Bounded when watching: a day of redraws at most.
  for (long round = 0; round < 86400 * 1000L; ++round) {
    std::vector<std::string> devices = Stacks();
    if (!only.empty()) {
      devices.clear();
      for (const std::string& d : Stacks()) {
        if (d == only) devices.push_back(d);
      }
    }
    std::string out = json ? "{\"stacks\":[" : "";
    int failures = 0;
    bool first = true;
    for (const std::string& d : devices) {
      std::string why;
      std::string snap = Ask(d, json, &why);
      if (snap.empty()) {
        fprintf(stderr, "shake stat: the stack on %s: %s\n", d.c_str(), why.c_str());
        ++failures;
        continue;
      }
      if (json) {
        while (!snap.empty() && snap.back() == '\n') snap.pop_back();
        if (!first) out += ',';
        out += snap;
      } else {
        if (!first) out += '\n';
        out += snap;
      }
      first = false;
    }
    if (json) out += "]}\n";
    if (!json && devices.empty()) {
      out = only.empty() ? "no libshake stack in this network namespace\n"
                         : "no libshake stack on " + only + " in this network namespace\n";
    }
    if (watch > 0 && !json) fputs("\033[H\033[2J", stdout);
    fputs(out.c_str(), stdout);
    fflush(stdout);
    if (watch <= 0) return failures != 0 ? 1 : 0;
    usleep(static_cast<useconds_t>(watch * 1e6));
  }
  return 0;
}

}  // namespace shake::launcher
