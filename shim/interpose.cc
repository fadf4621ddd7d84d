// The interposed POSIX surface: every function here has libc's name and signature and is a
// short dispatch. Kernel fds (everything not in the FdTable) go to the real libc function; stack
// fds go to the installed StackBackend (see backend.h). With no backend installed, as now,
// libshake passes every call through unchanged.
//
// Rules for this file: no TCP logic; no allocation on the data path; every path that may run
// before initialisation or inside libshake itself (InsideShim()) goes straight to real::.
#undef _FORTIFY_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <alloca.h>
#include <mutex>
#include <vector>
#include <cstdarg>
#include <cstring>

#include "shim/backend.h"
#include "shim/bridge.h"
#include "shim/guard.h"
#include "shim/real.h"
#include "shim/runtime.h"
#include "shim/signals.h"

using shake::shim::CurrentBackend;
using shake::shim::FdEntry;
using shake::shim::FdKind;
using shake::shim::Outcome;
using shake::shim::StackBackend;
namespace real = shake::shim::real;

extern "C" [[noreturn]] void __chk_fail(void);

namespace {

// The backend serving `fd`, with its table entry, or null for a kernel fd (or when libshake
// must stay out).
StackBackend* StackFor(int fd, FdEntry& e) {
  if (shake::shim::InsideShim()) return nullptr;
  shake::shim::FdTable* t = shake::shim::Fds();
  if (t == nullptr || !t->any()) return nullptr;
  e = t->Get(fd);
  if (e.kind != FdKind::kStack && e.kind != FdKind::kListener) return nullptr;
  return CurrentBackend();
}

// The backend keeping references to `fd` (a stack socket or an epoll instance that watches
// stack sockets), with its table entry, or null.
StackBackend* TrackerOf(int fd, FdEntry& e) {
  if (shake::shim::InsideShim()) return nullptr;
  shake::shim::FdTable* t = shake::shim::Fds();
  if (t == nullptr || !t->any()) return nullptr;
  e = t->Get(fd);
  if (e.kind == FdKind::kKernel || e.kind == FdKind::kHidden) return nullptr;
  return CurrentBackend();
}

// For a bridge (bridge.h): the backend, with `e` made the entry of the stack socket behind it,
// whose address and options the fd answers with. Null for any other fd.
StackBackend* BridgeOf(int fd, FdEntry& e) {
  if (shake::shim::InsideShim()) return nullptr;
  shake::shim::FdTable* t = shake::shim::Fds();
  if (t == nullptr || !t->any()) return nullptr;
  e = t->Get(fd);
  if (e.kind != FdKind::kBridge) return nullptr;
  e.kind = FdKind::kStack;
  return CurrentBackend();
}

// True for libshake's own fds, which the program must not close from under it.
bool IsHidden(int fd) {
  if (shake::shim::InsideShim()) return false;
  shake::shim::FdTable* t = shake::shim::Fds();
  return t != nullptr && t->any() && t->Get(fd).kind == FdKind::kHidden;
}

// The backend for a decision point (socket not yet decided), or null.
StackBackend* Decider() {
  if (shake::shim::InsideShim() || shake::shim::StayOut()) return nullptr;
  return CurrentBackend();
}

bool AnyStackFd() {
  if (shake::shim::InsideShim()) return false;
  shake::shim::FdTable* t = shake::shim::Fds();
  return t != nullptr && t->any();
}

template <typename T>
T As(const Outcome& o) {
  return static_cast<T>(o.value);
}

msghdr OneBuffer(iovec& v) {
  msghdr m{};
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  return m;
}

// Drops the table entry of `fd` (it is being closed or replaced) and tells the backend.
void ReleaseFd(int fd) {
  if (!AnyStackFd()) return;
  if (shake::shim::Fds()->Get(fd).kind == FdKind::kHidden) return;
  FdEntry e = shake::shim::Fds()->Take(fd);
  if (e.kind == FdKind::kKernel) return;
  if (StackBackend* b = CurrentBackend()) b->Release(e, fd);
}

// `newfd` is a duplicate of `oldfd`: copy the entry and tell the backend.
void DuplicateFd(int oldfd, int newfd) {
  FdEntry e;
  if (newfd < 0) return;
  if (StackBackend* b = TrackerOf(oldfd, e)) {
    shake::shim::Fds()->Set(newfd, e);
    b->Retain(e, newfd);
  }
}

// A stack socket made fd 0, 1 or 2 (by dup2 or dup3, or by an accept or connect while that
// number was free) meets stdin, stdout and stderr, which glibc's stdio reads and writes through
// its internal calls: it becomes a bridge (bridge.h).
void BridgeIfStdio(int fd) {
  FdEntry e;
  if (fd <= 2 && StackFor(fd, e) != nullptr && e.kind == FdKind::kStack) {
    shake::shim::BridgeInPlace(fd);
  }
}

timespec MillisToTimespec(int ms) {
  return timespec{ms / 1000, static_cast<long>(ms % 1000) * 1000000L};
}

bool AnyStackIn(const pollfd* fds, nfds_t n) {
  if (!AnyStackFd()) return false;
  for (nfds_t i = 0; i < n; ++i) {
    if (shake::shim::Fds()->Get(fds[i].fd).kind != FdKind::kKernel) return true;
  }
  return false;
}

bool AnyStackIn(int n, const fd_set* r, const fd_set* w, const fd_set* x) {
  if (!AnyStackFd()) return false;
  for (int fd = 0; fd < n && fd < FD_SETSIZE; ++fd) {
    if ((r && FD_ISSET(fd, r)) || (w && FD_ISSET(fd, w)) || (x && FD_ISSET(fd, x))) {
      if (shake::shim::Fds()->Get(fd).kind != FdKind::kKernel) return true;
    }
  }
  return false;
}

}  // namespace

extern "C" {

// ---- Creation and decision points ---------------------------------------------------------

int socket(int domain, int type, int protocol) noexcept {
  if (shake::shim::InsideShim() || shake::shim::StayOut()) {
    return real::socket(domain, type, protocol);
  }
  const shake::shim::Runtime* rt = shake::shim::EnsureInit();
  if (domain == AF_INET && (type & 0xf) == SOCK_STREAM && rt->error &&
      !rt->config.fallback_kernel) {
    errno = rt->error->err;  // the configuration error was reported once at load
    return -1;
  }
  // AF_INET stream sockets start as kernel sockets; the backend decides at bind/connect/listen.
  return real::socket(domain, type, protocol);
}

int socketpair(int domain, int type, int protocol, int sv[2]) noexcept {
  return real::socketpair(domain, type, protocol, sv);  // always kernel (AF_UNIX)
}

int bind(int fd, const sockaddr* addr, socklen_t len) noexcept {
  if (StackBackend* b = Decider()) {
    if (Outcome o = b->Bind(fd, addr, len); o.handled) return As<int>(o);
  }
  return real::bind(fd, addr, len);
}

int listen(int fd, int backlog) noexcept {
  if (StackBackend* b = Decider()) {
    if (Outcome o = b->Listen(fd, backlog); o.handled) return As<int>(o);
  }
  return real::listen(fd, backlog);
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (StackBackend* b = Decider()) {
    if (Outcome o = b->Connect(fd, addr, len); o.handled) {
      if (o.value == 0) BridgeIfStdio(fd);
      return As<int>(o);
    }
  }
  return real::connect(fd, addr, len);
}

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->Accept(e, fd, addr, len, flags); o.handled) {
      BridgeIfStdio(As<int>(o));
      return As<int>(o);
    }
  }
  return real::accept4(fd, addr, len, flags);
}

int accept(int fd, sockaddr* addr, socklen_t* len) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->Accept(e, fd, addr, len, 0); o.handled) {
      BridgeIfStdio(As<int>(o));
      return As<int>(o);
    }
  }
  return real::accept(fd, addr, len);
}

// ---- Data ----------------------------------------------------------------------------------

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->Recv(e, fd, msg, flags); o.handled) return As<ssize_t>(o);
  }
  return real::recvmsg(fd, msg, flags);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->Send(e, fd, msg, flags); o.handled) return As<ssize_t>(o);
  }
  return real::sendmsg(fd, msg, flags);
}

ssize_t read(int fd, void* buf, size_t n) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{buf, n};
    msghdr m = OneBuffer(v);
    if (Outcome o = b->Recv(e, fd, &m, 0); o.handled) return As<ssize_t>(o);
  }
  return real::read(fd, buf, n);
}

ssize_t write(int fd, const void* buf, size_t n) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{const_cast<void*>(buf), n};
    msghdr m = OneBuffer(v);
    if (Outcome o = b->Send(e, fd, &m, 0); o.handled) return As<ssize_t>(o);
  }
  return real::write(fd, buf, n);
}

ssize_t readv(int fd, const iovec* iov, int n) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<size_t>(n < 0 ? 0 : n);
    if (Outcome o = b->Recv(e, fd, &m, 0); o.handled) return As<ssize_t>(o);
  }
  return real::readv(fd, iov, n);
}

ssize_t writev(int fd, const iovec* iov, int n) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<size_t>(n < 0 ? 0 : n);
    if (Outcome o = b->Send(e, fd, &m, 0); o.handled) return As<ssize_t>(o);
  }
  return real::writev(fd, iov, n);
}

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{buf, n};
    msghdr m = OneBuffer(v);
    if (Outcome o = b->Recv(e, fd, &m, flags); o.handled) return As<ssize_t>(o);
  }
  return real::recv(fd, buf, n, flags);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{const_cast<void*>(buf), n};
    msghdr m = OneBuffer(v);
    if (Outcome o = b->Send(e, fd, &m, flags); o.handled) return As<ssize_t>(o);
  }
  return real::send(fd, buf, n, flags);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* addr, socklen_t* len) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{buf, n};
    msghdr m = OneBuffer(v);
    m.msg_name = addr;
    m.msg_namelen = len ? *len : 0;
    Outcome o = b->Recv(e, fd, &m, flags);
    if (o.handled) {
      if (len && o.value >= 0) *len = m.msg_namelen;
      return As<ssize_t>(o);
    }
  }
  return real::recvfrom(fd, buf, n, flags, addr, len);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* addr,
               socklen_t len) {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    iovec v{const_cast<void*>(buf), n};
    msghdr m = OneBuffer(v);
    m.msg_name = const_cast<sockaddr*>(addr);
    m.msg_namelen = len;
    if (Outcome o = b->Send(e, fd, &m, flags); o.handled) return As<ssize_t>(o);
  }
  return real::sendto(fd, buf, n, flags, addr, len);
}

int recvmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags, timespec* timeout) {
  FdEntry e;
  if (StackFor(fd, e) != nullptr) {
    // A stream socket: the first message takes what is there, as the kernel does for TCP.
    if (n == 0) return 0;
    ssize_t r = recvmsg(fd, &msgs[0].msg_hdr, flags & ~MSG_WAITFORONE);
    if (r < 0) return -1;
    msgs[0].msg_len = static_cast<unsigned>(r);
    return 1;
  }
  return real::recvmmsg(fd, msgs, n, flags, timeout);
}

int sendmmsg(int fd, mmsghdr* msgs, unsigned int n, int flags) {
  FdEntry e;
  if (StackFor(fd, e) != nullptr) {
    unsigned i = 0;
    for (; i < n; ++i) {
      ssize_t r = sendmsg(fd, &msgs[i].msg_hdr, flags);
      if (r < 0) return i == 0 ? -1 : static_cast<int>(i);
      msgs[i].msg_len = static_cast<unsigned>(r);
    }
    return static_cast<int>(i);
  }
  return real::sendmmsg(fd, msgs, n, flags);
}

ssize_t sendfile64(int out_fd, int in_fd, off64_t* offset, size_t count) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(out_fd, e)) {
    if (Outcome o = b->SendFile(e, out_fd, in_fd, offset, count); o.handled) {
      return As<ssize_t>(o);
    }
  }
  return real::sendfile64(out_fd, in_fd, offset, count);
}

ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(out_fd, e)) {
    off64_t off = offset ? *offset : 0;
    Outcome o = b->SendFile(e, out_fd, in_fd, offset ? &off : nullptr, count);
    if (o.handled) {
      if (offset) *offset = off;
      return As<ssize_t>(o);
    }
  }
  return real::sendfile(out_fd, in_fd, offset, count);
}

ssize_t splice(int in_fd, loff_t* in_off, int out_fd, loff_t* out_off, size_t len,
               unsigned int flags) {
  FdEntry e;
  if (StackBackend* b = StackFor(out_fd, e)) {
    // file/pipe -> stack socket: the backend reads `in_fd` with the real libc.
    if (Outcome o = b->SendFile(e, out_fd, in_fd, in_off, len); o.handled) return As<ssize_t>(o);
  }
  if (StackFor(in_fd, e) != nullptr) {
    // stack socket -> pipe or file: read from the stack, write with the real libc.
    char buf[65536];
    size_t want = len < sizeof buf ? len : sizeof buf;
    ssize_t r = (flags & SPLICE_F_NONBLOCK) ? recv(in_fd, buf, want, MSG_DONTWAIT)
                                            : read(in_fd, buf, want);
    if (r <= 0) return r;
    shake::shim::ReentrancyGuard guard;
    if (out_off) {
      ssize_t w = pwrite(out_fd, buf, static_cast<size_t>(r), *out_off);
      if (w > 0) *out_off += w;
      return w;
    }
    return real::write(out_fd, buf, static_cast<size_t>(r));
  }
  return real::splice(in_fd, in_off, out_fd, out_off, len, flags);
}

// ---- Control -------------------------------------------------------------------------------

int shutdown(int fd, int how) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->Shutdown(e, fd, how); o.handled) return As<int>(o);
  }
  return real::shutdown(fd, how);
}

int close(int fd) {
  if (IsHidden(fd)) return 0;  // e.g. a program closing every fd after fork
  ReleaseFd(fd);
  return real::close(fd);
}

int getsockopt(int fd, int level, int name, void* value, socklen_t* len) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->GetSockOpt(e, fd, level, name, value, len); o.handled) return As<int>(o);
  }
  if (StackBackend* b = BridgeOf(fd, e)) {
    Outcome o = b->GetSockOpt(e, -1, level, name, value, len);
    if (o.handled && !(o.value < 0 && errno == EBADF)) return As<int>(o);
  }
  return real::getsockopt(fd, level, name, value, len);
}

int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->SetSockOpt(e, fd, level, name, value, len); o.handled) return As<int>(o);
  }
  if (StackBackend* b = BridgeOf(fd, e)) {
    // Timeouts act where the program blocks: on the kernel end too.
    if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
      if (real::setsockopt(fd, level, name, value, len) != 0) return -1;
    }
    Outcome o = b->SetSockOpt(e, -1, level, name, value, len);
    if (o.handled && !(o.value < 0 && errno == EBADF)) return As<int>(o);
  }
  int r = real::setsockopt(fd, level, name, value, len);
  if (r == 0) {
    if (StackBackend* d = Decider()) d->NoteOption(fd, level, name, value, len);
  }
  return r;
}

int getsockname(int fd, sockaddr* addr, socklen_t* len) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->GetSockName(e, fd, addr, len); o.handled) return As<int>(o);
  }
  if (StackBackend* b = BridgeOf(fd, e)) {
    Outcome o = b->GetSockName(e, -1, addr, len);
    if (o.handled && !(o.value < 0 && errno == EBADF)) return As<int>(o);
  }
  return real::getsockname(fd, addr, len);
}

int getpeername(int fd, sockaddr* addr, socklen_t* len) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->GetPeerName(e, fd, addr, len); o.handled) return As<int>(o);
  }
  if (StackBackend* b = BridgeOf(fd, e)) {
    Outcome o = b->GetPeerName(e, -1, addr, len);
    if (o.handled && !(o.value < 0 && errno == EBADF)) return As<int>(o);
    if (o.handled) {  // the connection behind the bridge has ended
      errno = ENOTCONN;
      return -1;
    }
  }
  return real::getpeername(fd, addr, len);
}

static int FcntlDispatch(int fd, int cmd, unsigned long arg, bool is64) {
  int r = is64 ? real::fcntl64(fd, cmd, arg) : real::fcntl(fd, cmd, arg);
  // O_NONBLOCK and FD_CLOEXEC live on the placeholder itself; the backend caches O_NONBLOCK.
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) DuplicateFd(fd, r);
  if (r >= 0 && cmd == F_SETFL) {
    FdEntry e;
    if (StackBackend* b = StackFor(fd, e)) b->NoteFlags(e, fd);
  }
  return r;
}

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return FcntlDispatch(fd, cmd, arg, false);
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return FcntlDispatch(fd, cmd, arg, true);
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  FdEntry e;
  if (request != FIONBIO && request != FIOCLEX && request != FIONCLEX) {
    if (StackBackend* b = StackFor(fd, e)) {
      Outcome o = b->Ioctl(e, fd, request, reinterpret_cast<void*>(arg));
      if (o.handled) return As<int>(o);
    }
  }
  const int r = real::ioctl(fd, request, arg);
  if (r == 0 && request == FIONBIO) {
    if (StackBackend* b = StackFor(fd, e)) b->NoteFlags(e, fd);
  }
  return r;
}

// ---- Readiness -----------------------------------------------------------------------------

// glibc declares poll's array access(write_only), but poll reads fds[i].fd and .events; the
// warning that reading them here is "uninitialised" is that annotation's artefact.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

int ppoll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  if (AnyStackIn(fds, n)) {
    if (StackBackend* b = CurrentBackend()) {
      if (Outcome o = b->Poll(fds, n, timeout, mask); o.handled) return As<int>(o);
    }
  }
  return real::ppoll(fds, n, timeout, mask);
}

int poll(pollfd* fds, nfds_t n, int timeout_ms) {
  if (AnyStackIn(fds, n)) {
    if (StackBackend* b = CurrentBackend()) {
      timespec ts = MillisToTimespec(timeout_ms);
      Outcome o = b->Poll(fds, n, timeout_ms < 0 ? nullptr : &ts, nullptr);
      if (o.handled) return As<int>(o);
    }
  }
  return real::poll(fds, n, timeout_ms);
}

#pragma GCC diagnostic pop

int select(int n, fd_set* r, fd_set* w, fd_set* x, timeval* timeout) {
  if (AnyStackIn(n, r, w, x)) {
    if (StackBackend* b = CurrentBackend()) {
      timespec ts{};
      if (timeout) ts = timespec{timeout->tv_sec, timeout->tv_usec * 1000L};
      Outcome o = b->Select(n, r, w, x, timeout ? &ts : nullptr, nullptr);
      if (o.handled) {
        // Linux writes the time left back into the timeval.
        if (timeout) *timeout = timeval{ts.tv_sec, ts.tv_nsec / 1000L};
        return As<int>(o);
      }
    }
  }
  return real::select(n, r, w, x, timeout);
}

int pselect(int n, fd_set* r, fd_set* w, fd_set* x, const timespec* timeout,
            const sigset_t* mask) {
  if (AnyStackIn(n, r, w, x)) {
    if (StackBackend* b = CurrentBackend()) {
      if (Outcome o = b->Select(n, r, w, x, timeout, mask); o.handled) return As<int>(o);
    }
  }
  return real::pselect(n, r, w, x, timeout, mask);
}

int epoll_create(int size) noexcept {
  int ep = real::epoll_create(size);
  if (StackBackend* b = ep >= 0 ? Decider() : nullptr) b->NoteEpoll(ep);
  return ep;
}

int epoll_create1(int flags) noexcept {
  int ep = real::epoll_create1(flags);
  if (StackBackend* b = ep >= 0 ? Decider() : nullptr) b->NoteEpoll(ep);
  return ep;
}

int epoll_ctl(int ep, int op, int fd, epoll_event* ev) noexcept {
  FdEntry e;
  if (StackBackend* b = StackFor(fd, e)) {
    if (Outcome o = b->EpollCtl(ep, op, fd, e, ev); o.handled) return As<int>(o);
  }
  return real::epoll_ctl(ep, op, fd, ev);
}

int epoll_pwait2(int ep, epoll_event* events, int max, const timespec* timeout,
                 const sigset_t* mask) {
  if (AnyStackFd()) {
    if (StackBackend* b = CurrentBackend()) {
      if (Outcome o = b->EpollWait(ep, events, max, timeout, mask); o.handled) return As<int>(o);
    }
  }
  return real::epoll_pwait2(ep, events, max, timeout, mask);
}

int epoll_pwait(int ep, epoll_event* events, int max, int timeout_ms, const sigset_t* mask) {
  if (AnyStackFd()) {
    if (StackBackend* b = CurrentBackend()) {
      timespec ts = MillisToTimespec(timeout_ms);
      Outcome o = b->EpollWait(ep, events, max, timeout_ms < 0 ? nullptr : &ts, mask);
      if (o.handled) return As<int>(o);
    }
  }
  return real::epoll_pwait(ep, events, max, timeout_ms, mask);
}

int epoll_wait(int ep, epoll_event* events, int max, int timeout_ms) {
  if (AnyStackFd()) {
    if (StackBackend* b = CurrentBackend()) {
      timespec ts = MillisToTimespec(timeout_ms);
      Outcome o = b->EpollWait(ep, events, max, timeout_ms < 0 ? nullptr : &ts, nullptr);
      if (o.handled) return As<int>(o);
    }
  }
  return real::epoll_wait(ep, events, max, timeout_ms);
}

// ---- Descriptors ---------------------------------------------------------------------------

int dup(int fd) noexcept {
  int r = real::dup(fd);
  DuplicateFd(fd, r);
  return r;
}

int dup2(int oldfd, int newfd) noexcept {
  if (oldfd == newfd) return real::dup2(oldfd, newfd);
  // The kernel closes newfd atomically; we drop its entry only once that has happened.
  FdEntry replaced;
  bool had = TrackerOf(newfd, replaced) != nullptr;
  int r = real::dup2(oldfd, newfd);
  if (r >= 0) {
    if (had) ReleaseFd(newfd);
    DuplicateFd(oldfd, r);
    BridgeIfStdio(r);
  }
  return r;
}

int dup3(int oldfd, int newfd, int flags) noexcept {
  FdEntry replaced;
  bool had = oldfd != newfd && TrackerOf(newfd, replaced) != nullptr;
  int r = real::dup3(oldfd, newfd, flags);
  if (r >= 0) {
    if (had) ReleaseFd(newfd);
    DuplicateFd(oldfd, r);
    BridgeIfStdio(r);
  }
  return r;
}

int close_range(unsigned int first, unsigned int last, int flags) noexcept {
  if (!AnyStackFd()) return real::close_range(first, last, flags);
  if (!(flags & CLOSE_RANGE_CLOEXEC)) {
    shake::shim::Fds()->ForEach(first, last, [](int fd, FdEntry) { ReleaseFd(fd); });
  }
  // libshake's own fds stay open: close the ranges between them.
  unsigned lo = first;
  int rc = 0;
  shake::shim::Fds()->ForEach(first, last, [&](int fd, FdEntry e) {
    if (e.kind != FdKind::kHidden) return;
    const auto u = static_cast<unsigned>(fd);
    if (u > lo && real::close_range(lo, u - 1, flags) != 0) rc = -1;
    lo = u + 1;
  });
  if (lo <= last && lo >= first && real::close_range(lo, last, flags) != 0) rc = -1;
  return rc;
}

// ---- Processes -----------------------------------------------------------------------------

pid_t fork(void) noexcept {
  StackBackend* b = shake::shim::InsideShim() ? nullptr : CurrentBackend();
  if (b) b->PrepareFork();
  pid_t pid = real::fork();
  if (b) {
    if (pid == 0) b->AfterForkChild();
    else b->AfterForkParent();
  }
  return pid;
}

// vfork cannot be wrapped: the child would return through this function's frame and corrupt
// the parent's stack. POSIX allows vfork to be fork, and fork runs our fork handling.
pid_t vfork(void) noexcept { return fork(); }

}  // extern "C"

namespace {

// Stack sockets survive exec and posix_spawn through a hand-off (handoff.cc) that
// the new image finds in its environment: `envp` plus that entry, replacing any older one.
// The array is mmap'd (this may run in a fork child) and freed by FreeEnv when the exec failed.
class HandoffEnv {
 public:
  HandoffEnv(char* const* envp, const char* entry) {
    size_t n = 0;
    while (envp != nullptr && envp[n] != nullptr && n < (size_t{1} << 24)) ++n;
    bytes_ = (n + 2) * sizeof(char*);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    env_ = static_cast<char**>(p);
    size_t k = 0;
    for (size_t i = 0; i < n; ++i) {
      if (std::strncmp(envp[i], kName, sizeof kName - 1) != 0) env_[k++] = envp[i];
    }
    env_[k++] = const_cast<char*>(entry);
    env_[k] = nullptr;
  }
  ~HandoffEnv() {
    if (env_ != nullptr) munmap(env_, bytes_);
  }
  HandoffEnv(const HandoffEnv&) = delete;
  HandoffEnv& operator=(const HandoffEnv&) = delete;
  // The environment to exec with: ours, or `fallback` if it could not be built.
  char* const* get(char* const* fallback) const { return env_ != nullptr ? env_ : fallback; }

 private:
  static constexpr char kName[] = "SHAKE_HANDOFF=";
  char** env_ = nullptr;
  size_t bytes_ = 0;
};

// The stack fds that posix_spawn_file_actions_adddup2 named as sources, per actions object:
// they reach the child even when close-on-exec here.
struct Dup2Source {
  const void* actions;
  int fd;
};
std::mutex g_dup2_mu;
std::vector<Dup2Source>* g_dup2 = nullptr;  // never freed: used until the last spawn

std::vector<int> Dup2Sources(const posix_spawn_file_actions_t* actions) {
  std::vector<int> out;
  std::lock_guard<std::mutex> l(g_dup2_mu);
  if (g_dup2 == nullptr) return out;
  for (const Dup2Source& d : *g_dup2) {
    if (d.actions == actions) out.push_back(d.fd);
  }
  return out;
}

StackBackend* ExecBackend() {
  if (!AnyStackFd()) return nullptr;
  return CurrentBackend();
}

// Runs exec_fn(env) with the hand-off added to `envp`; cancels the hand-off if exec returns.
template <typename F>
int ExecWithHandoff(char* const* envp, F&& exec_fn) {
  StackBackend* b = ExecBackend();
  if (b != nullptr) shake::shim::BridgeForExec(shake::shim::EnvPreloadsShake(envp));
  const char* entry = b != nullptr ? b->PrepareExec() : nullptr;
  if (entry == nullptr) return exec_fn(envp);
  int r;
  {
    HandoffEnv env(envp, entry);
    r = exec_fn(env.get(envp));
  }
  const int err = errno;
  b->ExecFailed();
  errno = err;
  return r;
}

template <typename F>
int SpawnWithHandoff(pid_t* pid, const posix_spawn_file_actions_t* actions, char* const* envp,
                     F&& spawn_fn) {
  StackBackend* b = ExecBackend();
  if (b == nullptr) return spawn_fn(pid, envp);
  // File actions renumber fds where no hand-off can follow, and a child without libshake
  // cannot take one: their stack sockets reach the child as bridges. A preloaded child without
  // file actions takes its stack sockets over, except 0..2, which its stdio reaches.
  const bool handoff = actions == nullptr && shake::shim::EnvPreloadsShake(envp);
  using shake::shim::SpawnSwap;
  SpawnSwap swap(handoff ? SpawnSwap::Scope::kStdio : SpawnSwap::Scope::kInherited,
                 actions != nullptr ? Dup2Sources(actions) : std::vector<int>{});
  const char* entry = handoff ? b->PrepareSpawn(false) : nullptr;
  if (entry == nullptr) return spawn_fn(pid, envp);
  pid_t child = -1;
  int r;
  {
    HandoffEnv env(envp, entry);
    r = spawn_fn(&child, env.get(envp));
  }
  b->SpawnDone(r == 0 ? child : -1);
  if (r == 0 && pid != nullptr) *pid = child;
  return r;
}

}  // namespace

extern "C" {

int execve(const char* path, char* const argv[], char* const envp[]) noexcept {
  return ExecWithHandoff(envp, [&](char* const* e) { return real::execve(path, argv, e); });
}

// execv and execvp use `environ`: they become execve and execvpe with it, so that the hand-off
// is added without touching the process's own environment.
int execv(const char* path, char* const argv[]) noexcept {
  if (ExecBackend() == nullptr) return real::execv(path, argv);
  return execve(path, argv, environ);
}

int execvp(const char* file, char* const argv[]) noexcept {
  if (ExecBackend() == nullptr) return real::execvp(file, argv);
  return execvpe(file, argv, environ);
}

int execvpe(const char* file, char* const argv[], char* const envp[]) noexcept {
  return ExecWithHandoff(envp, [&](char* const* e) { return real::execvpe(file, argv, e); });
}

int fexecve(int fd, char* const argv[], char* const envp[]) noexcept {
  return ExecWithHandoff(envp, [&](char* const* e) { return real::fexecve(fd, argv, e); });
}

// execl, execlp, execle: glibc implements them with its internal execve, which interposition
// does not reach, so they are rebuilt here on the wrappers above.
#define SHAKE_COLLECT_ARGS(first, ap, argv, extra)                             \
  size_t argc_ = 1;                                                            \
  {                                                                            \
    va_list count_;                                                            \
    va_copy(count_, ap);                                                       \
    while (va_arg(count_, char*) != nullptr) {                                 \
      if (++argc_ > 65536) {                                                   \
        va_end(count_);                                                        \
        va_end(ap);                                                            \
        errno = E2BIG;                                                         \
        return -1;                                                             \
      }                                                                        \
    }                                                                          \
    va_end(count_);                                                            \
  }                                                                            \
  char** argv = static_cast<char**>(alloca((argc_ + 1) * sizeof(char*)));      \
  argv[0] = const_cast<char*>(first);                                          \
  for (size_t i_ = 1; i_ <= argc_; ++i_) argv[i_] = va_arg(ap, char*);         \
  extra;                                                                       \
  va_end(ap)

int execl(const char* path, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  SHAKE_COLLECT_ARGS(arg, ap, argv, (void)0);
  return execv(path, argv);
}

int execlp(const char* file, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  SHAKE_COLLECT_ARGS(arg, ap, argv, (void)0);
  return execvp(file, argv);
}

int execle(const char* path, const char* arg, ...) noexcept {
  va_list ap;
  va_start(ap, arg);
  char* const* envp = nullptr;
  SHAKE_COLLECT_ARGS(arg, ap, argv, envp = va_arg(ap, char* const*));
  return execve(path, argv, envp);
}
#undef SHAKE_COLLECT_ARGS

int posix_spawn(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  return SpawnWithHandoff(pid, actions, envp, [&](pid_t* p, char* const* e) {
    return real::posix_spawn(p, path, actions, attr, argv, e);
  });
}

int posix_spawnp(pid_t* pid, const char* file, const posix_spawn_file_actions_t* actions,
                 const posix_spawnattr_t* attr, char* const argv[], char* const envp[]) {
  return SpawnWithHandoff(pid, actions, envp, [&](pid_t* p, char* const* e) {
    return real::posix_spawnp(p, file, actions, attr, argv, e);
  });
}

int posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t* actions, int fd, int newfd) {
  const int r = real::posix_spawn_file_actions_adddup2(actions, fd, newfd);
  FdEntry e;
  if (r == 0 && StackFor(fd, e) != nullptr) {
    std::lock_guard<std::mutex> l(g_dup2_mu);
    if (g_dup2 == nullptr) g_dup2 = new std::vector<Dup2Source>();
    g_dup2->push_back(Dup2Source{actions, fd});
  }
  return r;
}

int posix_spawn_file_actions_destroy(posix_spawn_file_actions_t* actions) {
  {
    std::lock_guard<std::mutex> l(g_dup2_mu);
    if (g_dup2 != nullptr) {
      std::erase_if(*g_dup2, [&](const Dup2Source& d) { return d.actions == actions; });
    }
  }
  return real::posix_spawn_file_actions_destroy(actions);
}

// ---- stdio and the shell: code that libshake does not see ----------------------------------

// fdopen: stdio reads and writes the fd through libc's internal calls, so a stack socket
// becomes a bridge first (bridge.h); when that is impossible the call fails as the kernel's
// would for want of a resource, after one line on stderr.
FILE* fdopen(int fd, const char* mode) noexcept {
  FdEntry e;
  if (StackFor(fd, e) != nullptr && e.kind == FdKind::kStack) {
    if (!shake::shim::BridgeInPlace(fd) && StackFor(fd, e) != nullptr) {
      if (errno == 0) errno = ENOMEM;
      return nullptr;
    }
  }
  return real::fdopen(fd, mode);
}

// system and popen spawn through glibc's internal posix_spawn: the child gets bridges at the
// numbers of the stack sockets it inherits. system waits for the bridge to have moved what the
// child wrote before it returns, so that the caller's next write follows it, as with a kernel
// socket.
int system(const char* command) {
  if (command == nullptr || ExecBackend() == nullptr) return real::system(command);
  shake::shim::SpawnSwap swap(shake::shim::SpawnSwap::Scope::kInherited);
  const int r = real::system(command);
  const int err = errno;
  swap.Restore();
  swap.WaitDrained(2000);
  errno = err;
  return r;
}

namespace {
struct PopenDone {
  FILE* f;
  int done;
};
std::mutex g_popen_mu;
std::vector<PopenDone>* g_popen = nullptr;
}  // namespace

FILE* popen(const char* command, const char* mode) {
  if (ExecBackend() == nullptr) return real::popen(command, mode);
  shake::shim::SpawnSwap swap(shake::shim::SpawnSwap::Scope::kInherited);
  FILE* f = real::popen(command, mode);
  const int err = errno;
  swap.Restore();
  const int done = swap.TakeDone();
  if (f != nullptr && done >= 0) {
    std::lock_guard<std::mutex> l(g_popen_mu);
    if (g_popen == nullptr) g_popen = new std::vector<PopenDone>();
    g_popen->push_back(PopenDone{f, done});
  } else if (done >= 0) {
    real::close(done);
  }
  errno = err;
  return f;
}

// pclose: as system, waits for the bridge of the child's inherited stack sockets.
int pclose(FILE* f) {
  int done = -1;
  {
    std::lock_guard<std::mutex> l(g_popen_mu);
    if (g_popen != nullptr) {
      for (auto it = g_popen->begin(); it != g_popen->end(); ++it) {
        if (it->f == f) {
          done = it->done;
          g_popen->erase(it);
          break;
        }
      }
    }
  }
  const int r = real::pclose(f);
  if (done >= 0) {
    const int err = errno;
    pollfd q{done, POLLIN, 0};
    char c;
    while (real::poll(&q, 1, 2000) == 1 && real::read(done, &c, 1) > 0) {
    }
    real::close(done);
    errno = err;
  }
  return r;
}

// ---- Signals -------------------------------------------------------------------------------

// sigaction: the program's handlers go in behind a trampoline that notes which signal ended a
// blocking call's wait, so that it restarts as the kernel's would (shim/signals.cc).
int sigaction(int sig, const struct sigaction* act, struct sigaction* old) noexcept {
  return shake::shim::Sigaction(sig, act, old);
}

// glibc's signal (BSD semantics: SA_RESTART, the signal blocked in its handler) calls its
// internal sigaction, which interposition does not reach; it is rebuilt on the one above.
sighandler_t signal(int sig, sighandler_t handler) noexcept {
  struct sigaction a {}, o {};
  a.sa_handler = handler;
  sigemptyset(&a.sa_mask);
  if (sigaddset(&a.sa_mask, sig) < 0) return SIG_ERR;
  a.sa_flags = SA_RESTART;
  if (sigaction(sig, &a, &o) != 0) return SIG_ERR;
  return o.sa_handler;
}

sighandler_t bsd_signal(int sig, sighandler_t handler) noexcept { return signal(sig, handler); }

// ---- glibc's fortified (_FORTIFY_SOURCE) entry points --------------------------------------

ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return read(fd, buf, n);
}

ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return recv(fd, buf, n, flags);
}

ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, sockaddr* addr,
                       socklen_t* len) {
  if (n > buflen) __chk_fail();
  return recvfrom(fd, buf, n, flags, addr, len);
}

int __poll_chk(pollfd* fds, nfds_t n, int timeout, size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return poll(fds, n, timeout);
}

int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask,
                size_t fdslen) {
  if (fdslen / sizeof(*fds) < n) __chk_fail();
  return ppoll(fds, n, timeout, mask);
}

// The keeper program (shim/keeper_main.cc) runs with libshake.so preloaded and calls this.
int shake_keeper_main(int argc, char** argv) { return shake::shim::KeeperMain(argc, argv); }

}  // extern "C"
