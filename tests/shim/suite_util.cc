#include "tests/shim/suite_util.h"

#include <sys/un.h>

#include <cerrno>
#include <cstdlib>

#include "tests/shim/peer_protocol.h"

namespace shake::suite {

const Topology& GetTopology() {
  static const Topology topo = [] {
    Topology t;
    const char* peer = getenv("SHAKE_SUITE_PEER");
    const char* self = getenv("SHAKE_SUITE_SELF");
    const char* hole = getenv("SHAKE_SUITE_BLACKHOLE");
    const char* control = getenv("SHAKE_SUITE_CONTROL");
    if (!peer || !self || !hole || !control) {
      const char* why = getenv("SHAKE_SUITE_SKIP_REASON");
      t.reason = std::string("no test topology: ") +
                 (why ? why : "run through tests/shim/run_suite.sh (ctest -R shim_suite)");
      return t;
    }
    if (inet_pton(AF_INET, peer, &t.peer) != 1 || inet_pton(AF_INET, self, &t.self) != 1 ||
        inet_pton(AF_INET, hole, &t.blackhole) != 1) {
      t.reason = "SHAKE_SUITE_PEER/SELF/BLACKHOLE are not IPv4 addresses";
      return t;
    }
    t.control = control;
    t.ok = true;
    return t;
  }();
  return topo;
}

sockaddr_in Addr(in_addr ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr = ip;
  a.sin_port = htons(port);
  return a;
}

std::string ToString(const sockaddr_in& a) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
}

std::string Control(const std::string& line) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "ERR socket";
  sockaddr_un su{};
  su.sun_family = AF_UNIX;
  snprintf(su.sun_path, sizeof su.sun_path, "%s", GetTopology().control.c_str());
  timeval tv{15, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&su), sizeof su) != 0) {
    close(fd);
    return "ERR control connect";
  }
  std::string req = line + "\n";
  SendAll(fd, req);
  std::string reply;
  char c;
  while (reply.size() < 4096 && recv(fd, &c, 1, 0) == 1 && c != '\n') reply.push_back(c);
  close(fd);
  return reply;
}

short WaitFor(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  int n = poll(&p, 1, ms);
  return n == 1 ? p.revents : 0;
}

std::string RecvFor(int fd, size_t n, int ms) {
  std::string out;
  auto start = Clock::now();
  while (out.size() < n && MillisSince(start) < ms) {
    int left = ms - static_cast<int>(MillisSince(start));
    if (WaitFor(fd, POLLIN, left > 0 ? left : 0) == 0) break;
    char buf[65536];
    size_t want = std::min(sizeof buf, n - out.size());
    ssize_t got = recv(fd, buf, want, MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

std::string RecvUntilEof(int fd, int ms) { return RecvFor(fd, SIZE_MAX, ms); }

bool SendAll(int fd, std::string_view data) {
  int guard = 0;
  while (!data.empty() && ++guard < 100000) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      WaitFor(fd, POLLOUT, 1000);
      continue;
    }
    if (n < 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return data.empty();
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(peer::PatternByte(i));
  return s;
}

}  // namespace shake::suite
