#include "tests/conformance/posix_calls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace conformance {
namespace {

sockaddr_in Sockaddr(uint32_t addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(addr);
  return sa;
}

CallResult FromRet(int64_t ret) {
  CallResult r;
  r.ret = ret;
  if (ret < 0) {
    r.ret = -1;
    r.err = errno;
  }
  return r;
}

}  // namespace

CallResult ExecutePosix(const Call& c) {
  switch (c.op) {
    case Op::kSocket:
      return FromRet(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    case Op::kBind: {
      sockaddr_in sa = Sockaddr(c.addr, c.port);
      return FromRet(bind(c.handle, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
    }
    case Op::kListen: return FromRet(listen(c.handle, c.arg));
    case Op::kAccept:
      return FromRet(accept4(c.handle, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    case Op::kConnect: {
      sockaddr_in sa = Sockaddr(c.addr, c.port);
      return FromRet(connect(c.handle, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
    }
    case Op::kRead: {
      std::vector<char> buf(c.len);
      return FromRet(recv(c.handle, buf.data(), buf.size(), c.flags | MSG_DONTWAIT));
    }
    case Op::kWrite: {
      std::vector<char> buf(c.len, 'x');
      return FromRet(send(c.handle, buf.data(), buf.size(), c.flags | MSG_DONTWAIT | MSG_NOSIGNAL));
    }
    case Op::kClose: return FromRet(close(c.handle));
    case Op::kShutdown: return FromRet(shutdown(c.handle, c.arg));
    case Op::kSetsockopt: {
      if (c.arg == SOL_SOCKET && c.optname == SO_LINGER) {
        linger l{static_cast<int>(c.value), static_cast<int>(c.value2)};
        return FromRet(setsockopt(c.handle, c.arg, c.optname, &l, sizeof l));
      }
      int v = static_cast<int>(c.value);
      return FromRet(setsockopt(c.handle, c.arg, c.optname, &v, sizeof v));
    }
    case Op::kGetsockopt: {
      if (c.arg == SOL_SOCKET && c.optname == SO_LINGER) {
        linger l{};
        socklen_t len = sizeof l;
        CallResult r = FromRet(getsockopt(c.handle, c.arg, c.optname, &l, &len));
        r.value = l.l_onoff;
        r.value2 = l.l_linger;
        return r;
      }
      int v = 0;
      socklen_t len = sizeof v;
      CallResult r = FromRet(getsockopt(c.handle, c.arg, c.optname, &v, &len));
      r.value = v;
      return r;
    }
    case Op::kPoll: {
      std::vector<pollfd> fds;
      for (const PollEntry& e : c.poll) fds.push_back({e.handle, e.events, 0});
      CallResult r = FromRet(poll(fds.data(), fds.size(), 0));
      r.poll = c.poll;
      for (size_t i = 0; i < fds.size(); ++i) r.poll[i].revents = fds[i].revents;
      return r;
    }
  }
  CallResult r;
  r.ret = -1;
  r.err = ENOSYS;
  return r;
}

}  // namespace conformance
