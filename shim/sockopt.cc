// Options, names and ioctls of stack sockets, shutdown, and the options a program set on a
// socket before it became a stack socket.
//
// Values come from the stack (Stack::EffectiveOptions, Stack::Info): the TCP defaults a
// getsockopt reports (keepalive 7200/75/9, the 536-byte MSS of an unconnected socket) are the
// stack's, not the shim's. An INADDR_ANY listener's fd is the kernel's own listener: the kernel
// answers for it, and options set on it go to both halves.
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "shim/backend_impl.h"
#include "shim/guard.h"
#include "shim/real.h"
#include "shim/runtime.h"

namespace shake::shim {
namespace {

Outcome PutInt(void* v, socklen_t* l, int value) {
  if (v == nullptr || l == nullptr) return Fail(EFAULT);
  if (*l >= sizeof(int)) {
    std::memcpy(v, &value, sizeof value);
    *l = sizeof value;
  } else if (*l > 0) {
    auto b = static_cast<unsigned char>(value);
    std::memcpy(v, &b, 1);
    *l = 1;
  }
  return Outcome::Done(0);
}

int Seconds(Duration d) { return static_cast<int>(d.nanos() / 1000000000); }

// Options set on kernel sockets that may still become stack sockets, by fd, with the socket's
// inode so that a number reused by another socket does not inherit them. Bounded.
struct Pending {
  struct Option {
    int level;
    int name;
    socklen_t len;
    unsigned char value[16];
  };
  ino_t ino = 0;
  int n = 0;
  Option opts[24];
};
std::mutex g_pending_mu;
std::unordered_map<int, Pending>* g_pending = nullptr;
constexpr size_t kMaxPending = 4096;

ino_t InodeOf(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

void Backend::NoteOption(int fd, int level, int name, const void* value, socklen_t len) {
  if ((level != SOL_SOCKET && level != IPPROTO_TCP) || value == nullptr || len == 0 ||
      len > sizeof(Pending::Option::value)) {
    return;
  }
  ReentrancyGuard guard;
  const ino_t ino = InodeOf(fd);
  std::lock_guard<std::mutex> hold(g_pending_mu);
  if (g_pending == nullptr) g_pending = new std::unordered_map<int, Pending>();  // never freed
  auto it = g_pending->find(fd);
  if (it != g_pending->end() && it->second.ino != ino) {
    g_pending->erase(it);
    it = g_pending->end();
  }
  if (it == g_pending->end()) {
    if (g_pending->size() >= kMaxPending) g_pending->clear();  // stale numbers, mostly
    it = g_pending->emplace(fd, Pending{}).first;
    it->second.ino = ino;
  }
  Pending& p = it->second;
  int i = 0;
  while (i < p.n && !(p.opts[i].level == level && p.opts[i].name == name)) ++i;
  if (i == p.n) {
    if (p.n == static_cast<int>(std::size(p.opts))) return;
    ++p.n;
  }
  p.opts[i].level = level;
  p.opts[i].name = name;
  p.opts[i].len = len;
  std::memcpy(p.opts[i].value, value, len);
}

bool Backend::TakeOptions(int fd, PendingOptions* out) {
  ReentrancyGuard guard;
  const ino_t ino = InodeOf(fd);
  std::lock_guard<std::mutex> hold(g_pending_mu);
  if (g_pending == nullptr) return false;
  auto it = g_pending->find(fd);
  if (it == g_pending->end()) return false;
  const bool mine = it->second.ino == ino;
  if (mine) {
    out->n = std::min(it->second.n, static_cast<int>(std::size(out->opts)));
    for (int i = 0; i < out->n; ++i) {
      out->opts[i] = {it->second.opts[i].level, it->second.opts[i].name, it->second.opts[i].len,
                      {}};
      std::memcpy(out->opts[i].value, it->second.opts[i].value, it->second.opts[i].len);
    }
  }
  g_pending->erase(it);
  return mine;
}

void Backend::ApplyOptions(const PendingOptions& p, SocketId id) {
  for (int i = 0; i < p.n; ++i) {
    (void)SetSockOpt(FdEntry{FdKind::kStack, id}, -1, p.opts[i].level, p.opts[i].name,
                     p.opts[i].value, p.opts[i].len);
  }
}

void Backend::NoteFlags(FdEntry e, int fd) {
  if (!attached()) return;
  const int fl = real::fcntl(fd, F_GETFL, 0);
  if (fl < 0) return;
  Session s(*this);
  if (SocketRec* r = s.sh().Rec(e.socket)) r->nonblock = (fl & O_NONBLOCK) != 0;
}

Outcome Backend::Shutdown(FdEntry e, int fd, int how) {
  if (how < SHUT_RD || how > SHUT_RDWR) return Fail(EINVAL);
  if (e.kind == FdKind::kListener) return Outcome::Done(real::shutdown(fd, how));
  Session s(*this);
  if (s.sh().Rec(e.socket) == nullptr) return Fail(EBADF);
  const Result0 res = s.st().Shutdown(s.now(), e.socket, how != SHUT_WR, how != SHUT_RD);
  s.Serve();
  return res.ok() ? Outcome::Done(0) : Fail(res.error());
}

Outcome Backend::GetSockOpt(FdEntry e, int fd, int level, int name, void* v, socklen_t* l) {
  if (e.kind == FdKind::kListener && !(level == SOL_SOCKET && name == SO_ERROR)) {
    return Outcome::Done(real::getsockopt(fd, level, name, v, l));  // the kernel half answers
  }
  if (l == nullptr || v == nullptr) return Fail(EFAULT);
  SocketOptions o;
  SocketInfo info;
  int64_t rcvtimeo = 0, sndtimeo = 0;
  int err = 0;
  {
    Session s(*this);
    SocketRec* r = s.sh().Rec(e.socket);
    if (r == nullptr) return Fail(EBADF);
    if (level == SOL_SOCKET && name == SO_ERROR) {
      err = s.st().TakeError(e.socket);
      if (err == 0 && e.kind == FdKind::kListener) {
        int k = 0;
        socklen_t kl = sizeof k;
        if (real::getsockopt(fd, SOL_SOCKET, SO_ERROR, &k, &kl) == 0) err = k;
      }
      return PutInt(v, l, err);
    }
    o = *s.st().EffectiveOptions(e.socket);
    info = *s.st().Info(e.socket);
    rcvtimeo = r->rcvtimeo_ns;
    sndtimeo = r->sndtimeo_ns;
  }
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_TYPE: return PutInt(v, l, SOCK_STREAM);
      case SO_DOMAIN: return PutInt(v, l, AF_INET);
      case SO_PROTOCOL: return PutInt(v, l, IPPROTO_TCP);
      case SO_ACCEPTCONN: return PutInt(v, l, info.listening ? 1 : 0);
      case SO_REUSEADDR: return PutInt(v, l, o.reuse_addr);
      case SO_REUSEPORT: return PutInt(v, l, o.reuse_port);
      case SO_KEEPALIVE: return PutInt(v, l, o.keepalive);
      case SO_ZEROCOPY: return PutInt(v, l, o.zerocopy);
      // Linux reports twice what was asked (the bookkeeping overhead it reserves).
      case SO_SNDBUF: return PutInt(v, l, static_cast<int>(std::min<size_t>(o.send_buffer * 2, INT_MAX)));
      case SO_RCVBUF: return PutInt(v, l, static_cast<int>(std::min<size_t>(o.recv_buffer * 2, INT_MAX)));
      case SO_RCVLOWAT:
      case SO_SNDLOWAT: return PutInt(v, l, 1);
      case SO_OOBINLINE:
      case SO_BROADCAST:
      case SO_DEBUG:
      case SO_DONTROUTE:
      case SO_PRIORITY: return PutInt(v, l, 0);
      case SO_LINGER: {
        linger lg{o.linger ? 1 : 0, Seconds(o.linger_time)};
        if (*l < sizeof lg) return Fail(EINVAL);
        std::memcpy(v, &lg, sizeof lg);
        *l = sizeof lg;
        return Outcome::Done(0);
      }
      case SO_RCVTIMEO:
      case SO_SNDTIMEO: {
        const int64_t ns = name == SO_RCVTIMEO ? rcvtimeo : sndtimeo;
        timeval tv{static_cast<time_t>(ns / 1000000000),
                   static_cast<suseconds_t>(ns % 1000000000 / 1000)};
        if (*l < sizeof tv) return Fail(EINVAL);
        std::memcpy(v, &tv, sizeof tv);
        *l = sizeof tv;
        return Outcome::Done(0);
      }
      default: return Fail(ENOPROTOOPT);
    }
  }
  if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_NODELAY: return PutInt(v, l, o.no_delay);
      case TCP_CORK: return PutInt(v, l, o.cork);
      case TCP_QUICKACK: return PutInt(v, l, 1);
      case TCP_KEEPIDLE: return PutInt(v, l, Seconds(o.keepalive_time));
      case TCP_KEEPINTVL: return PutInt(v, l, Seconds(o.keepalive_interval));
      case TCP_KEEPCNT: return PutInt(v, l, o.keepalive_probes);
      case TCP_USER_TIMEOUT: return PutInt(v, l, static_cast<int>(o.user_timeout.nanos() / 1000000));
      case TCP_SYNCNT: return PutInt(v, l, o.syn_count);
      case TCP_MAXSEG:  // before the handshake, what was asked for, else the stack's default
        return PutInt(v, l, !info.connected && o.max_segment ? o.max_segment : info.mss);
      case TCP_INFO: {
        tcp_info ti{};
        ti.tcpi_state = LinuxStateNumber(info.state);
        ti.tcpi_snd_mss = info.mss;
        ti.tcpi_rtt = static_cast<uint32_t>(info.srtt.nanos() / 1000);
        ti.tcpi_rttvar = static_cast<uint32_t>(info.rttvar.nanos() / 1000);
        ti.tcpi_rto = static_cast<uint32_t>(info.rto.nanos() / 1000);
        ti.tcpi_snd_cwnd = info.mss ? info.cwnd / info.mss : 0;
        ti.tcpi_snd_ssthresh = info.mss ? info.ssthresh / info.mss : 0;
        ti.tcpi_snd_wscale = info.snd_wscale & 0xf;
        ti.tcpi_rcv_wscale = info.rcv_wscale & 0xf;
        ti.tcpi_options = static_cast<uint8_t>(
            (info.sack_enabled ? TCPI_OPT_SACK : 0) |
            (info.timestamps_enabled ? TCPI_OPT_TIMESTAMPS : 0) |
            (info.snd_wscale || info.rcv_wscale ? TCPI_OPT_WSCALE : 0));
        ti.tcpi_total_retrans = static_cast<uint32_t>(info.retransmits);
        const socklen_t n = std::min<socklen_t>(*l, sizeof ti);
        std::memcpy(v, &ti, n);
        *l = n;
        return Outcome::Done(0);
      }
      default: return Fail(ENOPROTOOPT);
    }
  }
  if (level == IPPROTO_IP) {
    switch (name) {
      case IP_TTL: return PutInt(v, l, 64);
      case IP_TOS: return PutInt(v, l, o.tos);
      case IP_MTU_DISCOVER: return PutInt(v, l, static_cast<int>(o.pmtu_discovery));
      default: return PutInt(v, l, 0);
    }
  }
  return Fail(ENOPROTOOPT);
}

Outcome Backend::SetSockOpt(FdEntry e, int fd, int level, int name, const void* v,
                            socklen_t l) {
  if (v == nullptr) return Fail(EFAULT);
  if (e.kind == FdKind::kListener && fd >= 0) {  // both halves: the kernel validates
    if (real::setsockopt(fd, level, name, v, l) != 0) return Outcome::Done(-1);
  }
  int iv = 0;
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    timeval tv{};
    if (l < sizeof tv) return Fail(EINVAL);
    std::memcpy(&tv, v, sizeof tv);
    if (tv.tv_usec < 0 || tv.tv_usec >= 1000000) return Fail(EDOM);
  } else if (level == SOL_SOCKET && name == SO_LINGER) {
    if (l < sizeof(linger)) return Fail(EINVAL);
  } else if (level == SOL_SOCKET || level == IPPROTO_TCP) {
    if (l < sizeof(int)) return Fail(EINVAL);
    std::memcpy(&iv, v, sizeof iv);
  } else if (level == IPPROTO_IP && (name == IP_TOS || name == IP_MTU_DISCOVER)) {
    // Linux do_ip_setsockopt: an int, or a single byte when optlen is shorter.
    if (l >= sizeof(int)) {
      std::memcpy(&iv, v, sizeof iv);
    } else if (l >= 1) {
      iv = *static_cast<const unsigned char*>(v);
    }
    if (name == IP_MTU_DISCOVER && (iv < IP_PMTUDISC_DONT || iv > IP_PMTUDISC_OMIT)) {
      return Fail(EINVAL);
    }
  }
  Session s(*this);
  SocketRec* r = s.sh().Rec(e.socket);
  if (r == nullptr) return Fail(EBADF);
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    timeval tv{};
    std::memcpy(&tv, v, sizeof tv);
    const int64_t ns = tv.tv_sec < 0 ? 0 : int64_t{tv.tv_sec} * 1000000000 + tv.tv_usec * 1000;
    (name == SO_RCVTIMEO ? r->rcvtimeo_ns : r->sndtimeo_ns) = ns;
    return Outcome::Done(0);
  }
  Result<SocketOptions> got = s.st().GetOptions(e.socket);
  if (!got.ok()) return Fail(got.error());
  SocketOptions o = *got;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_REUSEADDR: o.reuse_addr = iv != 0; break;
      case SO_REUSEPORT: o.reuse_port = iv != 0; break;
      case SO_KEEPALIVE: o.keepalive = iv != 0; break;
      // MSG_ZEROCOPY sends are then numbered and their completions come on the error queue
      // (data.cc, RecvErrQueue).
      case SO_ZEROCOPY: o.zerocopy = iv != 0; break;
      // Linux's clamps (net.core.[rw]mem_max aside): at least 2304 and 1152 bytes.
      case SO_SNDBUF: o.send_buffer = static_cast<size_t>(std::clamp(iv, 2304, 1 << 26)); break;
      case SO_RCVBUF: o.recv_buffer = static_cast<size_t>(std::clamp(iv, 1152, 1 << 26)); break;
      case SO_LINGER: {
        linger lg{};
        std::memcpy(&lg, v, sizeof lg);
        o.linger = lg.l_onoff != 0;
        o.linger_time = Duration::Seconds(lg.l_linger);
        break;
      }
      default: return Outcome::Done(0);  // accepted and without effect on the stack
    }
  } else if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_NODELAY: o.no_delay = iv != 0; break;
      case TCP_CORK: o.cork = iv != 0; break;
      case TCP_QUICKACK: o.quick_ack = iv != 0; break;
      case TCP_KEEPIDLE:
        if (iv < 1 || iv > 32767) return Fail(EINVAL);
        o.keepalive_time = Duration::Seconds(iv);
        break;
      case TCP_KEEPINTVL:
        if (iv < 1 || iv > 32767) return Fail(EINVAL);
        o.keepalive_interval = Duration::Seconds(iv);
        break;
      case TCP_KEEPCNT:
        if (iv < 1 || iv > 127) return Fail(EINVAL);
        o.keepalive_probes = iv;
        break;
      case TCP_USER_TIMEOUT:
        if (iv < 0) return Fail(EINVAL);
        o.user_timeout = Duration::Millis(iv);
        break;
      case TCP_SYNCNT:
        if (iv < 1 || iv > 127) return Fail(EINVAL);
        o.syn_count = iv;
        break;
      case TCP_MAXSEG:
        if (iv < 0 || iv > 65535) return Fail(EINVAL);
        o.max_segment = static_cast<uint16_t>(iv);
        break;
      case TCP_LINGER2: o.linger2 = Duration::Seconds(iv); break;
      default: return Outcome::Done(0);
    }
  } else if (level == IPPROTO_IP && name == IP_TOS) {
    o.tos = static_cast<uint8_t>(iv & 0xfc);  // Linux keeps a TCP socket's ECN bits its own
  } else if (level == IPPROTO_IP && name == IP_MTU_DISCOVER) {
    o.pmtu_discovery = static_cast<PmtuDiscovery>(iv);
  } else {
    return Outcome::Done(0);
  }
  const Result0 res = s.st().SetOptions(e.socket, o);
  return res.ok() ? Outcome::Done(0) : Fail(res.error());
}

Outcome Backend::GetSockName(FdEntry e, int fd, sockaddr* addr, socklen_t* len) {
  if (e.kind == FdKind::kListener) return Outcome::Done(real::getsockname(fd, addr, len));
  if (addr == nullptr || len == nullptr) return Fail(EFAULT);
  Result<SocketInfo> info = Error(EBADF);
  {
    Session s(*this);
    info = s.st().Info(e.socket);
  }
  if (!info.ok()) return Fail(info.error());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((*info).local.port);
  a.sin_addr.s_addr = htonl((*info).local.addr.value());
  std::memcpy(addr, &a, std::min<size_t>(*len, sizeof a));
  *len = sizeof a;
  return Outcome::Done(0);
}

Outcome Backend::GetPeerName(FdEntry e, int, sockaddr* addr, socklen_t* len) {
  if (e.kind == FdKind::kListener) return Fail(ENOTCONN);
  if (addr == nullptr || len == nullptr) return Fail(EFAULT);
  Result<SocketInfo> info = Error(EBADF);
  {
    Session s(*this);
    info = s.st().Info(e.socket);
  }
  if (!info.ok()) return Fail(info.error());
  if (!(*info).connected || (*info).remote.port == 0) return Fail(ENOTCONN);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((*info).remote.port);
  a.sin_addr.s_addr = htonl((*info).remote.addr.value());
  std::memcpy(addr, &a, std::min<size_t>(*len, sizeof a));
  *len = sizeof a;
  return Outcome::Done(0);
}

Outcome Backend::Ioctl(FdEntry e, int fd, unsigned long request, void* arg) {
  if (request != FIONREAD && request != SIOCOUTQ && request != SIOCOUTQNSD) {
    return Outcome::Pass();
  }
  if (e.kind == FdKind::kListener) {
    return Outcome::Done(real::ioctl(fd, request, reinterpret_cast<unsigned long>(arg)));
  }
  Result<SocketInfo> info = Error(EBADF);
  {
    Session s(*this);
    info = s.st().Info(e.socket);
  }
  if (!info.ok()) return Fail(info.error());
  if ((*info).listening) return Fail(EINVAL);
  const size_t n = request == FIONREAD ? (*info).readable_bytes : (*info).unsent_bytes;
  const int v = static_cast<int>(std::min<size_t>(n, INT_MAX));
  std::memcpy(arg, &v, sizeof v);
  return Outcome::Done(0);
}

}  // namespace shake::shim
