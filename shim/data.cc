// Data: recv and send in all their forms (read, readv, recvfrom, recvmsg arrive as one Recv;
// likewise Send), and sendfile/splice into a stack socket.
//
// A call moves what it can under one session; a blocking call that must wait watches its
// socket (Waiter) and sleeps in the kernel until the socket changes, a timeout set with
// SO_RCVTIMEO/SO_SNDTIMEO passes, or a signal arrives: after a handler with SA_RESTART the call
// goes on (unless a timeout is set, as the kernel does for sockets), otherwise it returns EINTR,
// or the bytes moved so far.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <linux/errqueue.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "io/clock.h"
#include "shim/backend_impl.h"
#include "shim/guard.h"
#include "shim/real.h"

namespace shake::shim {
namespace {

size_t Total(const msghdr* msg) {
  size_t want = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) want += msg->msg_iov[i].iov_len;
  return want;
}

// After a sleep: the call's outcome if the wait ends it, or nothing to go round again.
std::optional<Outcome> AfterSleep(const Backend& b, int w, int err, Instant deadline,
                                  size_t total) {
  // After a handler with SA_RESTART a wait without a timeout goes on, as the kernel's does.
  if (w < 0 && err == EINTR && !(deadline.is_never() && b.RestartAfterSignal())) {
    return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EINTR);
  }
  if (!deadline.is_never() && io::MonotonicNow() >= deadline) {
    return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EAGAIN);
  }
  return std::nullopt;
}

}  // namespace

// recvmsg(MSG_ERRQUEUE): the error queue of a stack socket holds MSG_ZEROCOPY completions
// only (ICMP errors reach SO_ERROR, as without IP_RECVERR). One comes back as Linux sends it:
// no data, MSG_ERRQUEUE in msg_flags, and an IP_RECVERR message whose sock_extended_err says
// SO_EE_ORIGIN_ZEROCOPY, with the range of completed sends in ee_info..ee_data; the stack
// always copies, hence SO_EE_CODE_ZEROCOPY_COPIED. Nothing queued: EAGAIN, never a wait.
Outcome Backend::RecvErrQueue(FdEntry e, msghdr* msg) {
  std::optional<ZerocopyDone> done;
  {
    Session s(*this);
    if (s.sh().Rec(e.socket) == nullptr) return Fail(EBADF);
    done = s.st().TakeZerocopyDone(e.socket);
  }
  if (!done) return Fail(EAGAIN);
  sock_extended_err ee{};
  ee.ee_errno = 0;
  ee.ee_origin = SO_EE_ORIGIN_ZEROCOPY;
  ee.ee_code = SO_EE_CODE_ZEROCOPY_COPIED;
  ee.ee_info = done->lo;
  ee.ee_data = done->hi;
  msg->msg_namelen = 0;
  msg->msg_flags = MSG_ERRQUEUE;
  if (msg->msg_control == nullptr || msg->msg_controllen < CMSG_SPACE(sizeof ee)) {
    msg->msg_flags |= MSG_CTRUNC;
    msg->msg_controllen = 0;
    return Outcome::Done(0);
  }
  cmsghdr* c = CMSG_FIRSTHDR(msg);
  c->cmsg_level = SOL_IP;
  c->cmsg_type = IP_RECVERR;
  c->cmsg_len = CMSG_LEN(sizeof ee);
  std::memcpy(CMSG_DATA(c), &ee, sizeof ee);
  msg->msg_controllen = CMSG_SPACE(sizeof ee);
  return Outcome::Done(0);
}

Outcome Backend::Recv(FdEntry e, int, msghdr* msg, int flags) {
  if (e.kind == FdKind::kListener) return Fail(ENOTCONN);
  if (flags & MSG_OOB) return Fail(EINVAL);
  if (flags & MSG_ERRQUEUE) return RecvErrQueue(e, msg);
  const bool peek = (flags & MSG_PEEK) != 0;
  const bool waitall = (flags & MSG_WAITALL) && !peek;
  const size_t want = Total(msg);
  msg->msg_flags = 0;
  msg->msg_namelen = 0;
  msg->msg_controllen = 0;
  Waiter waiter(*this);
  Instant deadline = Instant::Never();
  bool first = true;
  size_t total = 0;
  for (;;) {
    {
      Session s(*this);
      waiter.Done(s);
      SocketRec* r = s.sh().Rec(e.socket);
      if (r == nullptr) return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EBADF);
      if (first) {
        deadline = DeadlineAfterNanos(r->rcvtimeo_ns);
        first = false;
      }
      if (want == 0) return Outcome::Done(0);
      int err = 0;
      bool eof = false;
      // A peek reads from the start of the queue each time: it fills one buffer at a time.
      size_t skip = total;
      for (size_t i = 0; i < msg->msg_iovlen; ++i) {
        auto* base = static_cast<std::byte*>(msg->msg_iov[i].iov_base);
        size_t n = msg->msg_iov[i].iov_len;
        if (skip >= n) {
          skip -= n;
          continue;
        }
        base += skip;
        n -= skip;
        skip = 0;
        const Result<size_t> got = s.st().Recv(e.socket, {base, n}, peek);
        if (!got.ok()) {
          err = got.error();
          break;
        }
        if (*got == 0) {
          eof = true;
          break;
        }
        total += *got;
        if (peek || *got < n) break;
      }
      if (err != 0 && err != EAGAIN) {
        return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(err);
      }
      if (eof || total == want || (total > 0 && !waitall)) {
        return Outcome::Done(static_cast<long>(total));
      }
      if (r->nonblock || (flags & MSG_DONTWAIT)) {
        return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EAGAIN);
      }
      waiter.Watch(s, *r);
    }
    const int w = waiter.Sleep(deadline, nullptr);
    if (auto out = AfterSleep(*this, w, errno, deadline, total)) {
      Session s(*this);
      waiter.Done(s);
      return *out;
    }
  }
}

Outcome Backend::Send(FdEntry e, int, const msghdr* msg, int flags) {
  if (e.kind == FdKind::kListener) {
    if (!(flags & MSG_NOSIGNAL)) raise(SIGPIPE);
    return Fail(EPIPE);
  }
  const size_t want = Total(msg);
  Waiter waiter(*this);
  Instant deadline = Instant::Never();
  bool first = true;
  size_t total = 0;
  // MSG_ZEROCOPY: one completion number per call, as Linux gives each sendmsg one (the stack
  // numbers the first piece that queues bytes).
  bool zc_numbered = false;
  for (;;) {
    int err = 0;
    {
      Session s(*this);
      waiter.Done(s);
      SocketRec* r = s.sh().Rec(e.socket);
      if (r == nullptr) return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EBADF);
      if (first) {
        deadline = DeadlineAfterNanos(r->sndtimeo_ns);
        first = false;
      }
      size_t skip = total;
      for (size_t i = 0; i < msg->msg_iovlen; ++i) {
        const auto* base = static_cast<const std::byte*>(msg->msg_iov[i].iov_base);
        size_t n = msg->msg_iov[i].iov_len;
        if (skip >= n) {
          skip -= n;
          continue;
        }
        base += skip;
        n -= skip;
        skip = 0;
        const bool last = i + 1 == msg->msg_iovlen;
        const Result<size_t> put = s.st().Send(
            e.socket, {base, n},
            Stack::SendFlags{(flags & MSG_MORE) != 0 || !last, false,
                             (flags & MSG_ZEROCOPY) != 0 && !zc_numbered});
        if (!put.ok()) {
          err = put.error();
          break;
        }
        if (*put > 0) zc_numbered = true;
        total += *put;
        if (*put < n) {
          err = EAGAIN;
          break;
        }
      }
      if (want == 0 && err == 0) {
        const Result<size_t> put = s.st().Send(e.socket, {}, (flags & MSG_MORE) != 0);
        if (!put.ok()) err = put.error();
      }
      if (err != 0 && err != EAGAIN) {
        if (total > 0) return Outcome::Done(static_cast<long>(total));
        if (err == EPIPE && !(flags & MSG_NOSIGNAL)) raise(SIGPIPE);
        return Fail(err);
      }
      if (total == want) return Outcome::Done(static_cast<long>(total));
      if (r->nonblock || (flags & MSG_DONTWAIT)) {
        return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EAGAIN);
      }
      waiter.Watch(s, *r);
    }
    const int w = waiter.Sleep(deadline, nullptr);
    if (auto out = AfterSleep(*this, w, errno, deadline, total)) {
      Session s(*this);
      waiter.Done(s);
      return *out;
    }
  }
}

Outcome Backend::SendFile(FdEntry e, int fd, int in_fd, off64_t* offset, size_t count) {
  if (e.kind == FdKind::kListener) return Fail(EINVAL);
  std::byte buf[65536];
  size_t total = 0;
  while (total < count) {
    // Read no more than the socket takes now, so nothing read is ever left unsent.
    size_t space = 0;
    {
      Session s(*this);
      if (s.sh().Rec(e.socket) == nullptr) return Fail(EBADF);
      const Result<SocketInfo> info = s.st().Info(e.socket);
      space = info.ok() ? (*info).send_space : size_t{0};
    }
    const size_t chunk = std::min({count - total, sizeof buf, std::max<size_t>(space, 1)});
    ssize_t n;
    {
      ReentrancyGuard guard;
      n = offset ? pread64(in_fd, buf, chunk, *offset) : real::read(in_fd, buf, chunk);
    }
    if (n < 0) return total > 0 ? Outcome::Done(static_cast<long>(total)) : Outcome::Done(-1);
    if (n == 0) break;
    iovec v{buf, static_cast<size_t>(n)};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    const Outcome o = Send(e, fd, &m, total > 0 ? MSG_NOSIGNAL : 0);
    const long sent = o.value;
    if (sent > 0) {
      total += static_cast<size_t>(sent);
      if (offset) *offset += sent;
    }
    if (sent < n) {
      if (!offset) {
        ReentrancyGuard guard;
        lseek64(in_fd, -(n - std::max<long>(sent, 0)), SEEK_CUR);
      }
      if (total > 0) break;
      return o;
    }
  }
  return Outcome::Done(static_cast<long>(total));
}

}  // namespace shake::shim
