#include "shim/keeper_link.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "shim/guard.h"
#include "shim/real.h"

namespace shake::shim {
namespace {

socklen_t Address(const std::string& name, sockaddr_un* a) {
  *a = sockaddr_un{};
  a->sun_family = AF_UNIX;
  const size_t n = std::min(name.size(), sizeof a->sun_path);
  std::memcpy(a->sun_path, name.data(), n);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
}

}  // namespace

int ConnectKeeper(const std::string& name) {
  ReentrancyGuard guard;
  const int s = real::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_un a;
  const socklen_t len = Address(name, &a);
  if (real::connect(s, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    const int err = errno;
    real::close(s);
    errno = err;
    return -1;
  }
  return s;
}

int ListenKeeper(const std::string& name) {
  ReentrancyGuard guard;
  const int s = real::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return -1;
  sockaddr_un a;
  const socklen_t len = Address(name, &a);
  if (real::bind(s, reinterpret_cast<sockaddr*>(&a), len) != 0 || real::listen(s, 4096) != 0) {
    const int err = errno;
    real::close(s);
    errno = err;
    return -1;
  }
  return s;
}

bool SendLink(int fd, const void* msg, size_t len, const int* fds, int nfds) {
  ReentrancyGuard guard;
  iovec v{const_cast<void*>(msg), len};
  msghdr m{};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (nfds > 0) {
    if (nfds > 4) nfds = 4;
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * static_cast<size_t>(nfds));
  }
  for (;;) {
    const ssize_t n = real::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(len)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

bool RecvLink(int fd, void* msg, size_t len, int* fds, int* nfds, int timeout_ms) {
  ReentrancyGuard guard;
  const int room = nfds != nullptr ? *nfds : 0;
  if (nfds != nullptr) *nfds = 0;
  pollfd p{fd, POLLIN, 0};
  int r;
  do {
    r = real::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) {
    if (r == 0) errno = ETIMEDOUT;
    return false;
  }
  iovec v{msg, len};
  msghdr m{};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = real::recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  int got = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      if (got < room) {
        fds[got++] = f;
      } else {
        real::close(f);
      }
    }
  }
  if (nfds != nullptr) *nfds = got;
  if (n != static_cast<ssize_t>(len) || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
    for (int i = 0; i < got; ++i) real::close(fds[i]);
    if (nfds != nullptr) *nfds = 0;
    if (n >= 0) errno = EPROTO;
    return false;
  }
  return true;
}

}  // namespace shake::shim
