// Sockets: the decision points (bind, connect, listen), accept, and the references that keep a
// socket alive across dup, fork and close.
//
// A stack socket is born from a kernel socket at a decision point (TakeOver: a placeholder
// eventfd takes the socket's number, its flags and the options set so far come along) or from a
// stack listener (accept: the eventfd is the new number). A listener on INADDR_ANY keeps the
// kernel socket as its fd — loopback and the kernel's own addresses reach it — and adds a stack
// listener on the same port (FdKind::kListener).
//
// Lifetime: SocketRec::refs counts descriptors per process. The last one anywhere closes the
// socket in the stack (FIN, or RST as the stack decides); a fork child's close of an inherited
// socket sends nothing.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstring>

#include "io/clock.h"
#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"

namespace shake::shim {
namespace {

bool IsInetStream(int fd) {
  int domain = 0, type = 0;
  socklen_t l = sizeof domain;
  if (real::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0 || domain != AF_INET) {
    return false;
  }
  l = sizeof type;
  return real::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM;
}

void FillAddr(const Endpoint& ep, sockaddr* addr, socklen_t* len) {
  if (addr == nullptr || len == nullptr) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(ep.port);
  a.sin_addr.s_addr = htonl(ep.addr.value());
  std::memcpy(addr, &a, std::min<size_t>(*len, sizeof a));
  *len = sizeof a;
}

// A close from a signal handler that interrupted this thread inside the lock is deferred to the
// end of the locked section (taking the lock again would deadlock).
struct Deferred {
  FdEntry e;
  int fd;
};
__attribute__((tls_model("initial-exec"))) thread_local Deferred t_deferred[16];
__attribute__((tls_model("initial-exec"))) thread_local int t_deferred_n = 0;

// What a kernel socket carries over when it becomes a stack socket besides its options (which
// NoteOption recorded): its flags and its bound port.
struct KernelState {
  bool nonblock = false;
  bool cloexec = false;
  sockaddr_in bound{};
};

KernelState ReadKernelState(int fd) {
  KernelState k;
  const int fl = real::fcntl(fd, F_GETFL, 0);
  k.nonblock = fl >= 0 && (fl & O_NONBLOCK);
  const int fdf = real::fcntl(fd, F_GETFD, 0);
  k.cloexec = fdf >= 0 && (fdf & FD_CLOEXEC);
  socklen_t l = sizeof k.bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&k.bound), &l);
  return k;
}

int Placeholder(bool nonblock, bool cloexec) {
  return static_cast<int>(syscall(SYS_eventfd2, 0, (nonblock ? EFD_NONBLOCK : 0) |
                                                       (cloexec ? EFD_CLOEXEC : 0)));
}

}  // namespace

// ---- Records and references -------------------------------------------------------------------

SocketRec* Backend::AdoptLocked(Session& s, SocketId id, bool nonblock) {
  const uint32_t i = IndexOf(id);
  Shared& sh = s.sh();
  if (i >= sh.limits.sockets) {
    s.st().Close(s.now(), id);
    errno = ENFILE;  // the stack's socket table is full (SHAKE_MAX_SOCKETS)
    return nullptr;
  }
  SocketRec& r = sh.socks[i];
  const uint32_t waits = r.waits;  // threads still unlinking from a previous socket's record
  r.refs.Reset(sh.limits.procs, arena_->resource());
  r = SocketRec{};
  r.waits = waits;
  r.id = id;
  r.nonblock = nonblock;
  r.refs.Add(slot_, 1, sh.limits.procs, arena_->resource());
  if (i + 1 > sh.high) sh.high = i + 1;
  return &r;
}

void Backend::DropRefLocked(Session& s, uint32_t index, int slot) {
  SocketRec& r = s.sh().socks[index];
  if (r.id == kNoSocket || !r.refs.Sub(slot) || r.refs.total() != 0) return;
  CloseSocketRecord(s.sh(), arena_->resource(), s.now(), index);
}

void Backend::Retain(FdEntry e, int) {
  if (!attached() || e.kind == FdKind::kBridge) return;
  Session s(*this);
  Shared& sh = s.sh();
  if (e.kind == FdKind::kEpoll) {
    if (e.socket != 0 && sh.epolls[e.socket - 1].used) {
      sh.epolls[e.socket - 1].refs.Add(slot_, 1, sh.limits.procs, arena_->resource());
    }
    return;
  }
  if (SocketRec* r = sh.Rec(e.socket)) r->refs.Add(slot_, 1, sh.limits.procs, arena_->resource());
}

void Backend::Release(FdEntry e, int fd) {
  if (e.kind == FdKind::kHidden || e.kind == FdKind::kBridge || !attached()) return;
  if (ArenaLock::HeldByThisThread()) {  // a signal handler inside our own locked section
    if (t_deferred_n < 16) t_deferred[t_deferred_n++] = Deferred{e, fd};
    return;
  }
  Session s(*this);
  if (e.kind == FdKind::kEpoll) {
    ReleaseEpollLocked(e.socket, slot_);
    return;
  }
  if (s.sh().Rec(e.socket) == nullptr) return;
  s.Pull();   // a FIN already waiting on the device is the peer's close, before ours
  DropRefLocked(s, IndexOf(e.socket), slot_);
  s.Serve();  // the FIN or RST leaves now, and an answer already there is handled
}

void Backend::RunDeferred() {
  while (t_deferred_n > 0 && !ArenaLock::HeldByThisThread()) {
    const Deferred d = t_deferred[--t_deferred_n];
    Release(d.e, d.fd);
  }
}

// ---- Decisions --------------------------------------------------------------------------------

void Backend::NoteEpoll(int ep) {
  if (ep >= 0 && static_cast<uint32_t>(ep) < kMaxEpollFds) {
    epolls_[ep / 64].fetch_or(uint64_t{1} << (ep % 64));
  }
}

int Backend::CollectRegistrations(int fd, Carried* out, int max) {
  int n = 0;
  for (uint32_t w = 0; w < kMaxEpollFds / 64; ++w) {
    uint64_t bits = epolls_[w].load(std::memory_order_relaxed);
    while (bits != 0 && n < max) {
      const int ep = static_cast<int>(w * 64 + static_cast<uint32_t>(std::countr_zero(bits)));
      bits &= bits - 1;
      if (ep == fd) continue;
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
      const int f = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
      if (f < 0) continue;
      char buf[8192];
      size_t len = 0;
      for (ssize_t r; len < sizeof buf - 1 && (r = real::read(f, buf + len, sizeof buf - 1 - len)) > 0;) {
        len += static_cast<size_t>(r);
      }
      real::close(f);
      buf[len] = '\0';
      for (char* line = buf; line != nullptr && *line != '\0' && n < max;) {
        char* next = strchr(line, '\n');
        if (next) *next++ = '\0';
        int tfd = -1;
        unsigned events = 0;
        unsigned long long data = 0;
        if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 &&
            tfd == fd) {
          out[n].ep = ep;
          out[n].ev.events = events;
          out[n].ev.data.u64 = data;
          ++n;
        }
        line = next;
      }
    }
  }
  return n;
}



int Backend::TakeOver(int fd, SocketId* out_id) {
  const KernelState k = ReadKernelState(fd);
  PendingOptions options;
  const bool has_options = TakeOptions(fd, &options);
  const int efd = Placeholder(k.nonblock, true);
  if (efd < 0) return -1;
  int err = 0;
  {
    Session s(*this);
    Result<SocketId> id = s.st().Open();
    if (!id.ok()) {
      err = id.error();
    } else if (AdoptLocked(s, *id, k.nonblock) == nullptr) {
      err = errno;
    } else {
      *out_id = *id;
    }
  }
  if (err != 0) {
    real::close(efd);
    errno = err;
    return -1;
  }
  Carried carried[8];
  const int nc = CollectRegistrations(fd, carried, 8);
  // The placeholder takes the socket's number; the kernel socket goes away with it (and the
  // kernel drops its epoll registrations, which are made again below on the stack socket).
  if (real::dup3(efd, fd, k.cloexec ? O_CLOEXEC : 0) < 0) {
    err = errno;
    real::close(efd);
    Release(FdEntry{FdKind::kStack, *out_id}, -1);
    errno = err;
    return -1;
  }
  real::close(efd);
  if (has_options) ApplyOptions(options, *out_id);
  Fds()->Set(fd, FdEntry{FdKind::kStack, *out_id});
  for (int i = 0; i < nc; ++i) {
    EpollCtl(carried[i].ep, EPOLL_CTL_ADD, fd, FdEntry{FdKind::kStack, *out_id}, &carried[i].ev);
  }
  return 0;
}

// A socket whose connection failed may connect again (Linux allows it; the stack's socket is
// spent): a fresh stack socket takes over the record and the fds.
SocketId Backend::Rebirth(Session& s, SocketId old) {
  Shared& sh = s.sh();
  Result<SocketId> fresh = s.st().Open();
  if (!fresh.ok()) return kNoSocket;
  const uint32_t ni = IndexOf(*fresh);
  SocketRec* from = sh.Rec(old);
  if (ni >= sh.limits.sockets || from == nullptr) {
    s.st().Close(s.now(), *fresh);
    return kNoSocket;
  }
  (void)s.st().SetOptions(*fresh, *s.st().GetOptions(old));
  SocketRec& to = sh.socks[ni];
  const uint32_t waits = to.waits;
  to = *from;  // the RefSet moves with it (spill array included)
  to.id = *fresh;
  to.waits = waits;
  to.listener = to.any_addr = to.connect_pending = false;
  // Registrations of the old record follow it.
  for (uint32_t w = from->watches; w != 0; w = sh.watches[w - 1].next_in_sock) {
    sh.watches[w - 1].sock = ni;
  }
  const uint32_t old_waits = from->waits;
  *from = SocketRec{};
  from->waits = old_waits;
  if (ni + 1 > sh.high) sh.high = ni + 1;
  s.st().Close(s.now(), old);
  Fds()->ForEach(0, ~0u, [&](int f, FdEntry e) {
    if (e.socket == old && e.kind == FdKind::kStack) Fds()->Set(f, FdEntry{e.kind, *fresh});
  });
  return *fresh;
}

Outcome Backend::Bind(int fd, const sockaddr* addr, socklen_t len) {
  if (addr == nullptr || len < sizeof(sockaddr_in) || addr->sa_family != AF_INET) {
    return Outcome::Pass();
  }
  sockaddr_in a;
  std::memcpy(&a, addr, sizeof a);
  if (ntohl(a.sin_addr.s_addr) != config_.addr || !IsInetStream(fd)) return Outcome::Pass();
  if (!EnsureAttached()) return config_.fallback_kernel ? Outcome::Pass() : Fail(attach_errno_);
  SocketId id = kNoSocket;
  if (TakeOver(fd, &id) != 0) return Outcome::Done(-1);
  Session s(*this);
  const Result0 r = s.st().Bind(id, Endpoint{Ipv4Addr(config_.addr), ntohs(a.sin_port)});
  return r.ok() ? Outcome::Done(0) : Fail(r.error());
}

Outcome Backend::Connect(int fd, const sockaddr* addr, socklen_t len) {
  FdEntry e = Fds()->Get(fd);
  SocketId id = e.socket;
  if (e.kind == FdKind::kListener) return Fail(EISCONN);
  if (addr == nullptr || len < sizeof(sockaddr_in) || addr->sa_family != AF_INET) {
    if (e.kind == FdKind::kStack) return Fail(addr == nullptr ? EFAULT : EAFNOSUPPORT);
    return Outcome::Pass();
  }
  sockaddr_in a;
  std::memcpy(&a, addr, sizeof a);
  if (e.kind == FdKind::kKernel) {
    if (!Routed(ntohl(a.sin_addr.s_addr)) || !IsInetStream(fd)) return Outcome::Pass();
    sockaddr_in bound{};
    socklen_t bl = sizeof bound;
    real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
    if (bound.sin_addr.s_addr != 0) return Outcome::Pass();  // bound to a kernel address
    if (!EnsureAttached()) return config_.fallback_kernel ? Outcome::Pass() : Fail(attach_errno_);
    if (TakeOver(fd, &id) != 0) return Outcome::Done(-1);
    if (bound.sin_port != 0) {
      Session s(*this);
      const Result0 r =
          s.st().Bind(id, Endpoint{Ipv4Addr(config_.addr), ntohs(bound.sin_port)});
      if (!r.ok()) return Fail(r.error());
    }
  }
  const Endpoint remote{Ipv4Addr(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port)};
  bool nonblock = false;
  int64_t timeo = 0;
  {
    Session s(*this);
    SocketRec* r = s.sh().Rec(id);
    if (r == nullptr) return Fail(EBADF);
    const Result<SocketInfo> info = s.st().Info(id);
    if (info.ok() && (*info).ended) {
      id = Rebirth(s, id);
      if (id == kNoSocket) return Fail(ENOBUFS);
      r = s.sh().Rec(id);
    }
    const Result0 c = s.st().Connect(s.now(), id, remote);
    s.Serve();
    if (c.ok()) return Outcome::Done(0);
    if (c.error() == EISCONN && r->connect_pending) {
      r->connect_pending = false;
      return Outcome::Done(0);
    }
    if (c.error() != EINPROGRESS) return Fail(c.error());
    r->connect_pending = true;
    nonblock = r->nonblock;
    timeo = r->sndtimeo_ns;
  }
  if (nonblock) return Fail(EINPROGRESS);
  const Instant deadline = DeadlineAfterNanos(timeo);
  Waiter waiter(*this);
  for (;;) {
    {
      Session s(*this);
      waiter.Done(s);
      SocketRec* r = s.sh().Rec(id);
      if (r == nullptr) return Fail(EBADF);
      const Result<SocketInfo> info = s.st().Info(id);
      if (!(info.ok() && (*info).connecting)) {
        r->connect_pending = false;
        // The handshake completed and a reset followed before this thread ran (the SYN-ACK
        // and the RST in one batch): connect() succeeds and the reset is left for the next
        // call, as on Linux whenever the woken thread runs before the reset is processed. A
        // reset during the handshake is ECONNREFUSED and is reported now.
        const int pending = info.ok() ? (*info).pending_error : 0;
        if (pending == ECONNRESET || pending == EPIPE) return Outcome::Done(0);
        int result = s.st().TakeError(id);
        if (result == 0 && !info.ok()) result = ECONNREFUSED;
        return result == 0 ? Outcome::Done(0) : Fail(result);
      }
      waiter.Watch(s, *r);
    }
    const int w = waiter.Sleep(deadline, nullptr);
    if (w < 0 && errno == EINTR) {
      Session s(*this);
      waiter.Done(s);
      return Fail(EINTR);  // connect is never restarted: the handshake goes on (EALREADY)
    }
    if (w == 0 && !deadline.is_never() && io::MonotonicNow() >= deadline) {
      Session s(*this);
      waiter.Done(s);
      return Fail(EINPROGRESS);
    }
  }
}

Outcome Backend::Listen(int fd, int backlog) {
  const FdEntry e = Fds()->Get(fd);
  if (e.kind == FdKind::kStack || e.kind == FdKind::kListener) {
    if (e.kind == FdKind::kListener && real::listen(fd, backlog) != 0) return Outcome::Done(-1);
    Session s(*this);
    SocketRec* r = s.sh().Rec(e.socket);
    if (r == nullptr) return Fail(EBADF);
    const Result0 res = s.st().Listen(e.socket, backlog);
    if (res.ok()) r->listener = true;
    return res.ok() ? Outcome::Done(0) : Fail(res.error());
  }
  if (!IsInetStream(fd)) return Outcome::Pass();
  sockaddr_in bound{};
  socklen_t bl = sizeof bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  if (bound.sin_addr.s_addr != 0) return Outcome::Pass();  // loopback or a kernel address
  // INADDR_ANY: the kernel listener stays (loopback and the kernel's addresses reach it) and a
  // stack listener on the same port joins it.
  if (real::listen(fd, backlog) != 0) return Outcome::Done(-1);
  if (!EnsureAttached()) {
    Log(LogLevel::kWarn, "listener on port %u stays a kernel-only listener",
        ntohs(bound.sin_port));
    return Outcome::Done(0);
  }
  bl = sizeof bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  const KernelState k = ReadKernelState(fd);
  PendingOptions options;
  const bool has_options = TakeOptions(fd, &options);
  SocketId id = kNoSocket;
  {
    Session s(*this);
    Result<SocketId> sid = s.st().Open();
    if (sid.ok()) {
      id = *sid;
      SocketRec* r = AdoptLocked(s, id, k.nonblock);
      if (r == nullptr) {
        id = kNoSocket;
      } else {
        r->any_addr = true;
        r->listener = true;
      }
    }
  }
  if (id == kNoSocket) {
    Log(LogLevel::kWarn, "listener on port %u stays a kernel-only listener",
        ntohs(bound.sin_port));
    return Outcome::Done(0);
  }
  if (has_options) ApplyOptions(options, id);
  Session s(*this);
  if (!s.st().Bind(id, Endpoint{Ipv4Addr(config_.addr), ntohs(bound.sin_port)}).ok() ||
      !s.st().Listen(id, backlog).ok()) {
    DropRefLocked(s, IndexOf(id), slot_);
    Log(LogLevel::kWarn, "listener on port %u stays a kernel-only listener (the port is taken "
        "on the stack)", ntohs(bound.sin_port));
    return Outcome::Done(0);
  }
  Fds()->Set(fd, FdEntry{FdKind::kListener, id});
  return Outcome::Done(0);
}

// ---- Accept -----------------------------------------------------------------------------------

// One try at the stack listener's queue. Returns the new fd, or -1 with errno (EAGAIN: empty).
Outcome Backend::AcceptOnce(Session& s, SocketRec& r, FdEntry e, int flags, sockaddr* addr,
                            socklen_t* len, bool* again) {
  *again = false;
  Result<SocketId> c = s.st().Accept(e.socket);
  if (!c.ok()) {
    *again = c.error() == EAGAIN;
    return Fail(c.error());
  }
  (void)r;
  const Endpoint peer = (*s.st().Info(*c)).remote;
  const bool nonblock = (flags & SOCK_NONBLOCK) != 0;
  const int nfd = Placeholder(nonblock, (flags & SOCK_CLOEXEC) != 0);
  if (nfd < 0) {
    const int err = errno;
    s.st().Close(s.now(), *c);  // as the kernel's accept when no fd is left: the peer is reset
    return Fail(err);
  }
  if (AdoptLocked(s, *c, nonblock) == nullptr) {
    const int err = errno;
    real::close(nfd);
    return Fail(err);
  }
  Fds()->Set(nfd, FdEntry{FdKind::kStack, *c});
  FillAddr(peer, addr, len);
  return Outcome::Done(nfd);
}

Outcome Backend::Accept(FdEntry e, int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return Fail(EINVAL);
  Waiter waiter(*this);
  Instant deadline = Instant::Never();
  bool first = true;
  for (;;) {
    bool nonblock = false;
    {
      Session s(*this);
      waiter.Done(s);
      SocketRec* r = s.sh().Rec(e.socket);
      if (r == nullptr) return Fail(EBADF);
      if (first) {
        deadline = DeadlineAfterNanos(r->rcvtimeo_ns);
        first = false;
      }
      bool again = false;
      const Outcome o = AcceptOnce(s, *r, e, flags, addr, len, &again);
      if (!again) return o;
      nonblock = r->nonblock;
      if (!r->listener) return Fail(EINVAL);
      if (!nonblock) waiter.Watch(s, *r);
    }
    if (e.kind == FdKind::kListener) {
      // The kernel's half. A non-blocking listener answers at once; a blocking one is asked
      // only once poll says it holds a connection.
      if (nonblock) return Outcome::Done(real::accept4(fd, addr, len, flags));
      pollfd kp{fd, POLLIN, 0};
      const int w = waiter.Sleep(deadline, nullptr, &kp, 1);
      if (w > 0 && (kp.revents & POLLIN)) {
        {
          Session s(*this);
          waiter.Done(s);
        }
        const int k = real::accept4(fd, addr, len, flags);
        if (k >= 0 || errno != EAGAIN) return Outcome::Done(k);
        continue;
      }
      if (w < 0 && errno == EINTR && !(deadline.is_never() && RestartAfterSignal())) {
        Session s(*this);
        waiter.Done(s);
        return Fail(EINTR);
      }
    } else {
      if (nonblock) return Fail(EAGAIN);
      const int w = waiter.Sleep(deadline, nullptr);
      if (w < 0 && errno == EINTR && !(deadline.is_never() && RestartAfterSignal())) {
        Session s(*this);
        waiter.Done(s);
        return Fail(EINTR);
      }
    }
    if (!deadline.is_never() && io::MonotonicNow() >= deadline) {
      Session s(*this);
      waiter.Done(s);
      return Fail(EAGAIN);
    }
  }
}

}  // namespace shake::shim
