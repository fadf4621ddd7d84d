// Socket behaviour suite, part 1: calls that need no peer (socket creation, options, fd
// operations, argument errors, readiness of unconnected sockets, mixes of kernel fds).
// These must give the same results natively and under libshake.
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "tests/shim/suite_util.h"

namespace shake::suite {
namespace {

Fd Tcp(int flags = 0) { return Fd(socket(AF_INET, SOCK_STREAM | flags, 0)); }

in_addr Loopback() {
  in_addr a{};
  a.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

uint16_t LocalPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, Sa(a), &len);
  return ntohs(a.sin_port);
}

int IntOpt(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, level, name, &v, &len) != 0) return -1000 - errno;
  return v;
}

TEST(Socket, CreatesStreamSocketWithItsTypeDomainAndProtocol) {
  Fd s = Tcp();
  ASSERT_GE(s.get(), 0);
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_DOMAIN), AF_INET);
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_PROTOCOL), IPPROTO_TCP);
}

TEST(Socket, SockNonblockSetsONonblock) {
  Fd s = Tcp(SOCK_NONBLOCK);
  EXPECT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
  Fd b = Tcp();
  EXPECT_FALSE(fcntl(b, F_GETFL) & O_NONBLOCK);
}

TEST(Socket, SockCloexecSetsFdCloexec) {
  Fd s = Tcp(SOCK_CLOEXEC);
  EXPECT_EQ(fcntl(s, F_GETFD), FD_CLOEXEC);
  Fd b = Tcp();
  EXPECT_EQ(fcntl(b, F_GETFD), 0);
}

TEST(Socket, UnknownFamilyIsEafnosupport) {
  EXPECT_ERRNO(socket(12345, SOCK_STREAM, 0), EAFNOSUPPORT);
}

TEST(Socket, UnknownTypeIsEinval) { EXPECT_ERRNO(socket(AF_INET, 12345, 0), EINVAL); }

TEST(Socket, UdpProtocolOnStreamIsEprotonosupport) {
  EXPECT_ERRNO(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), EPROTONOSUPPORT);
}

TEST(Socket, NewSocketTakesTheLowestFreeFd) {
  Fd a = Tcp();
  Fd b = Tcp();
  int freed = a.get();
  a.reset();
  Fd c = Tcp();
  EXPECT_EQ(c.get(), freed);
  EXPECT_LT(c.get(), b.get());
}

TEST(Socket, SocketpairStaysAKernelSocketAndWorks) {
  int sv[2];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  Fd a(sv[0]), b(sv[1]);
  ASSERT_EQ(write(a, "ping", 4), 4);
  EXPECT_EQ(RecvFor(b, 4), "ping");
  EXPECT_ERRNO(socketpair(AF_INET, SOCK_STREAM, 0, sv), EOPNOTSUPP);
}

TEST(Socket, CloseOfABadFdIsEbadf) {
  Fd s = Tcp();
  int fd = s.release();
  ASSERT_EQ(close(fd), 0);
  EXPECT_ERRNO(close(fd), EBADF);
}

TEST(Socket, SendAndRecvOnABadFdAreEbadf) {
  char c = 0;
  EXPECT_ERRNO(send(-1, &c, 1, 0), EBADF);
  EXPECT_ERRNO(recv(-1, &c, 1, 0), EBADF);
  EXPECT_ERRNO(shutdown(-1, SHUT_RDWR), EBADF);
  EXPECT_ERRNO(listen(-1, 1), EBADF);
}

TEST(Socket, SocketCallsOnAPipeAreEnotsock) {
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  char c = 0;
  EXPECT_ERRNO(send(w, &c, 1, 0), ENOTSOCK);
  EXPECT_ERRNO(recv(r, &c, 1, MSG_DONTWAIT), ENOTSOCK);
  EXPECT_ERRNO(shutdown(r, SHUT_RD), ENOTSOCK);
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_ERRNO(getsockname(r, Sa(a), &len), ENOTSOCK);
}

TEST(Unconnected, GetpeernameIsEnotconn) {
  Fd s = Tcp();
  sockaddr_in a{};
  socklen_t len = sizeof a;
  EXPECT_ERRNO(getpeername(s, Sa(a), &len), ENOTCONN);
}

TEST(Unconnected, RecvIsEnotconn) {
  Fd s = Tcp();
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), ENOTCONN);
  EXPECT_ERRNO(read(s, &c, 1), ENOTCONN);
}

TEST(Unconnected, SendIsEpipe) {
  Fd s = Tcp();
  EXPECT_ERRNO(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
}

TEST(Unconnected, ShutdownIsEnotconn) {
  Fd s = Tcp();
  EXPECT_ERRNO(shutdown(s, SHUT_RDWR), ENOTCONN);
}

TEST(Unconnected, GetsocknameOfAnUnboundSocketIsAnyZero) {
  Fd s = Tcp();
  sockaddr_in a{};
  a.sin_port = 1;
  socklen_t len = sizeof a;
  ASSERT_OK(getsockname(s, Sa(a), &len));
  EXPECT_EQ(len, sizeof a);
  EXPECT_EQ(a.sin_family, AF_INET);
  EXPECT_EQ(a.sin_addr.s_addr, htonl(INADDR_ANY));
  EXPECT_EQ(a.sin_port, 0);
}

TEST(Unconnected, SoErrorIsZero) {
  Fd s = Tcp();
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_ERROR), 0);
}

TEST(Unconnected, PollReportsOutAndHup) {
  Fd s = Tcp();
  EXPECT_EQ(WaitFor(s, POLLIN | POLLOUT, 0), POLLOUT | POLLHUP);
}

TEST(Bind, PortZeroPicksAPort) {
  Fd s = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  ASSERT_OK(bind(s, Sa(a), sizeof a));
  EXPECT_NE(LocalPort(s), 0);
}

TEST(Bind, SecondBindIsEinval) {
  Fd s = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  ASSERT_OK(bind(s, Sa(a), sizeof a));
  EXPECT_ERRNO(bind(s, Sa(a), sizeof a), EINVAL);
}

TEST(Bind, PortInUseIsEaddrinuse) {
  Fd s = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  ASSERT_OK(bind(s, Sa(a), sizeof a));
  ASSERT_OK(listen(s, 1));
  a.sin_port = htons(LocalPort(s));
  Fd t = Tcp();
  EXPECT_ERRNO(bind(t, Sa(a), sizeof a), EADDRINUSE);
}

TEST(Bind, ShortAddressIsEinval) {
  Fd s = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  EXPECT_ERRNO(bind(s, Sa(a), 4), EINVAL);
}

TEST(Listen, WithoutBindPicksAnEphemeralPort) {
  Fd s = Tcp();
  ASSERT_OK(listen(s, 4));
  EXPECT_NE(LocalPort(s), 0);
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_ACCEPTCONN), 1);
  Fd t = Tcp();
  EXPECT_EQ(IntOpt(t, SOL_SOCKET, SO_ACCEPTCONN), 0);
}

TEST(Listen, AcceptOnANonListeningSocketIsEinval) {
  Fd s = Tcp();
  EXPECT_ERRNO(accept(s, nullptr, nullptr), EINVAL);
}

TEST(Listen, NonblockingAcceptWithNothingPendingIsEagain) {
  Fd s = Tcp(SOCK_NONBLOCK);
  ASSERT_OK(listen(s, 4));
  EXPECT_ERRNO(accept(s, nullptr, nullptr), EAGAIN);
  EXPECT_ERRNO(accept4(s, nullptr, nullptr, SOCK_CLOEXEC), EAGAIN);
}

TEST(Listen, Accept4WithBadFlagsIsEinval) {
  Fd s = Tcp(SOCK_NONBLOCK);
  ASSERT_OK(listen(s, 4));
  EXPECT_ERRNO(accept4(s, nullptr, nullptr, 0x7fff0000), EINVAL);
}

TEST(Listen, ConnectOnAListenerIsEisconn) {
  Fd s = Tcp();
  ASSERT_OK(listen(s, 4));
  sockaddr_in a = Addr(Loopback(), LocalPort(s));
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EISCONN);
}

TEST(Listen, IdleListenerPollsNothing) {
  Fd s = Tcp();
  ASSERT_OK(listen(s, 4));
  EXPECT_EQ(WaitFor(s, POLLIN | POLLOUT, 0), 0);
}

TEST(Listen, FionreadOnAListenerIsEinval) {
  Fd s = Tcp();
  ASSERT_OK(listen(s, 4));
  int n = 0;
  EXPECT_ERRNO(ioctl(s, FIONREAD, &n), EINVAL);
}

TEST(Options, BooleanOptionsRoundTrip) {
  Fd s = Tcp();
  int one = 1;
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
  ASSERT_OK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_REUSEADDR), 1);
  EXPECT_EQ(IntOpt(s, SOL_SOCKET, SO_KEEPALIVE), 1);
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_NODELAY), 1);
  int zero = 0;
  ASSERT_OK(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero));
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_NODELAY), 0);
}

TEST(Options, KeepaliveTimesRoundTrip) {
  Fd s = Tcp();
  int idle = 30, intvl = 5, cnt = 4;
  ASSERT_OK(setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle));
  ASSERT_OK(setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl));
  ASSERT_OK(setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt));
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_KEEPIDLE), 30);
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_KEEPINTVL), 5);
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_KEEPCNT), 4);
}

TEST(Options, LingerRoundTrips) {
  Fd s = Tcp();
  linger l{1, 7};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l));
  linger got{};
  socklen_t len = sizeof got;
  ASSERT_OK(getsockopt(s, SOL_SOCKET, SO_LINGER, &got, &len));
  EXPECT_EQ(got.l_onoff, 1);
  EXPECT_EQ(got.l_linger, 7);
}

TEST(Options, RcvtimeoRoundTrips) {
  Fd s = Tcp();
  timeval tv{2, 500000};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  timeval got{};
  socklen_t len = sizeof got;
  ASSERT_OK(getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &len));
  EXPECT_EQ(got.tv_sec, 2);
  EXPECT_EQ(got.tv_usec, 500000);
}

TEST(Options, UnknownLevelOrNameIsEnoprotoopt) {
  Fd s = Tcp();
  int v = 0;
  socklen_t len = sizeof v;
  EXPECT_ERRNO(getsockopt(s, SOL_SOCKET, 12345, &v, &len), ENOPROTOOPT);
  EXPECT_ERRNO(getsockopt(s, IPPROTO_TCP, 12345, &v, &len), ENOPROTOOPT);
}

TEST(Options, ShortOptlenIsEinval) {
  Fd s = Tcp();
  char c = 1;
  EXPECT_ERRNO(setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &c, 1), EINVAL);
}

TEST(Fcntl, SetflTogglesNonblock) {
  Fd s = Tcp();
  int fl = fcntl(s, F_GETFL);
  ASSERT_OK(fcntl(s, F_SETFL, fl | O_NONBLOCK));
  EXPECT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
  ASSERT_OK(fcntl(s, F_SETFL, fl & ~O_NONBLOCK));
  EXPECT_FALSE(fcntl(s, F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(fcntl(s, F_GETFL) & O_ACCMODE, O_RDWR);
}

TEST(Fcntl, FionbioTogglesNonblock) {
  Fd s = Tcp();
  int on = 1;
  ASSERT_OK(ioctl(s, FIONBIO, &on));
  EXPECT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
  on = 0;
  ASSERT_OK(ioctl(s, FIONBIO, &on));
  EXPECT_FALSE(fcntl(s, F_GETFL) & O_NONBLOCK);
}

TEST(Fcntl, DupfdCloexecReturnsAtLeastTheArgument) {
  Fd s = Tcp();
  Fd d(fcntl(s, F_DUPFD_CLOEXEC, 100));
  EXPECT_GE(d.get(), 100);
  EXPECT_EQ(fcntl(d, F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(fcntl(s, F_GETFD), 0);
  Fd e(fcntl(s, F_DUPFD, 50));
  EXPECT_GE(e.get(), 50);
  EXPECT_EQ(fcntl(e, F_GETFD), 0);
}

TEST(Fcntl, SetfdCloexecIsPerDescriptor) {
  Fd s = Tcp();
  Fd d(dup(s));
  ASSERT_OK(fcntl(s, F_SETFD, FD_CLOEXEC));
  EXPECT_EQ(fcntl(s, F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(fcntl(d, F_GETFD), 0);
}

TEST(Dup, SharesFileStatusFlags) {
  Fd s = Tcp();
  Fd d(dup(s));
  ASSERT_GE(d.get(), 0);
  ASSERT_OK(fcntl(d, F_SETFL, O_NONBLOCK));
  EXPECT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(IntOpt(d, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
}

TEST(Dup, SharesSocketOptions) {
  Fd s = Tcp();
  Fd d(dup(s));
  int one = 1;
  ASSERT_OK(setsockopt(d, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  EXPECT_EQ(IntOpt(s, IPPROTO_TCP, TCP_NODELAY), 1);
}

TEST(Dup, Dup2OntoItselfReturnsTheFd) {
  Fd s = Tcp();
  EXPECT_EQ(dup2(s, s), s.get());
  EXPECT_ERRNO(dup3(s, s, 0), EINVAL);
}

TEST(Dup, Dup2ReplacesTheTarget) {
  Fd s = Tcp();
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  ASSERT_EQ(dup2(s, r), r.get());
  EXPECT_EQ(IntOpt(r, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
}

TEST(Dup, Dup2OfAClosedSourceIsEbadfAndLeavesTheTarget) {
  Fd s = Tcp();
  Fd t = Tcp();
  int fd = s.release();
  close(fd);
  EXPECT_ERRNO(dup2(fd, t), EBADF);
  EXPECT_EQ(IntOpt(t, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
  EXPECT_ERRNO(dup(fd), EBADF);
}

TEST(Dup, Dup3CloexecSetsTheFlagOnTheNewFdOnly) {
  Fd s = Tcp();
  Fd t = Tcp();
  ASSERT_EQ(dup3(s, t, O_CLOEXEC), t.get());
  EXPECT_EQ(fcntl(t, F_GETFD), FD_CLOEXEC);
  EXPECT_EQ(fcntl(s, F_GETFD), 0);
}

TEST(Dup, CloseRangeClosesSocketsInTheRange) {
  Fd a(fcntl(Tcp().release(), F_DUPFD, 200));
  Fd b(fcntl(Tcp().release(), F_DUPFD, 201));
  ASSERT_GE(a.get(), 200);
  ASSERT_GT(b.get(), a.get());
  ASSERT_OK(static_cast<int>(syscall(SYS_close_range, a.get(), b.get(), 0)));
  EXPECT_ERRNO(fcntl(a.release(), F_GETFD), EBADF);
  EXPECT_ERRNO(fcntl(b.release(), F_GETFD), EBADF);
}

TEST(Poll, NegativeFdIsIgnoredAndClosedFdIsPollnval) {
  Fd s = Tcp();
  int closed = s.release();
  close(closed);
  pollfd p[2] = {{-1, POLLIN, 0}, {closed, POLLIN, 0}};
  EXPECT_EQ(poll(p, 2, 0), 1);
  EXPECT_EQ(p[0].revents, 0);
  EXPECT_EQ(p[1].revents, POLLNVAL);
}

TEST(Poll, SelectOnAClosedFdIsEbadf) {
  Fd s = Tcp();
  int closed = s.release();
  close(closed);
  fd_set r;
  FD_ZERO(&r);
  FD_SET(closed, &r);
  timeval tv{0, 0};
  EXPECT_ERRNO(select(closed + 1, &r, nullptr, nullptr, &tv), EBADF);
}

TEST(Poll, TimeoutElapsesOnIdleKernelFds) {
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  Fd l = Tcp();
  ASSERT_OK(listen(l, 1));
  pollfd fds[2] = {{r, POLLIN, 0}, {l, POLLIN, 0}};
  auto start = Clock::now();
  EXPECT_EQ(poll(fds, 2, 100), 0);
  EXPECT_GE(MillisSince(start), 90);
}

TEST(Epoll, CtlErrorsMatchTheKernel) {
  Fd ep(epoll_create1(EPOLL_CLOEXEC));
  Fd s = Tcp();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), EEXIST);
  Fd t = Tcp();
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_MOD, t, &ev), ENOENT);
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_DEL, t, &ev), ENOENT);
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), EINVAL);
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, -1, &ev), EBADF);
}

TEST(Epoll, RegularFileIsEperm) {
  Fd ep(epoll_create1(0));
  Fd f(open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev), EPERM);
}

TEST(Epoll, CreateAndWaitArgumentErrors) {
  EXPECT_ERRNO(epoll_create1(0x1234), EINVAL);
  EXPECT_ERRNO(epoll_create(0), EINVAL);
  Fd ep(epoll_create1(0));
  epoll_event ev[1];
  EXPECT_ERRNO(epoll_wait(ep, ev, 0, 0), EINVAL);
  Fd s = Tcp();
  EXPECT_ERRNO(epoll_wait(s, ev, 1, 0), EINVAL);
}

TEST(Epoll, UnconnectedSocketReportsOutAndHup) {
  Fd ep(epoll_create1(0));
  Fd s = Tcp();
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = 77;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
  epoll_event out[4];
  ASSERT_EQ(epoll_wait(ep, out, 4, 0), 1);
  EXPECT_EQ(out[0].data.u64, 77u);
  EXPECT_EQ(out[0].events, static_cast<uint32_t>(EPOLLOUT | EPOLLHUP));
}

TEST(Epoll, CloseOfTheOnlyFdRemovesTheRegistration) {
  Fd ep(epoll_create1(0));
  Fd s = Tcp();
  epoll_event ev{};
  ev.events = EPOLLOUT;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
  int fd = s.release();
  close(fd);
  epoll_event out[4];
  EXPECT_EQ(epoll_wait(ep, out, 4, 0), 0);
  Fd again = Tcp();  // reuses the number
  ASSERT_EQ(again.get(), fd);
  EXPECT_ERRNO(epoll_ctl(ep, EPOLL_CTL_DEL, again, &ev), ENOENT);
}

TEST(Mixed, PollAndSelectOverKernelFdsSeeOnlyTheReadyOnes) {
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  Fd ev(eventfd(0, EFD_CLOEXEC));
  int sv[2];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  Fd u0(sv[0]), u1(sv[1]);
  uint64_t one = 1;
  ASSERT_EQ(write(ev, &one, sizeof one), 8);
  ASSERT_EQ(write(u1, "z", 1), 1);
  pollfd fds[3] = {{r, POLLIN, 0}, {ev, POLLIN, 0}, {u0, POLLIN, 0}};
  EXPECT_EQ(poll(fds, 3, 1000), 2);
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLIN);
  EXPECT_EQ(fds[2].revents, POLLIN);
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(r, &rs);
  FD_SET(ev, &rs);
  FD_SET(u0, &rs);
  int maxfd = std::max({r.get(), ev.get(), u0.get()});
  timeval tv{1, 0};
  EXPECT_EQ(select(maxfd + 1, &rs, nullptr, nullptr, &tv), 2);
  EXPECT_FALSE(FD_ISSET(r, &rs));
  EXPECT_TRUE(FD_ISSET(ev, &rs));
  EXPECT_TRUE(FD_ISSET(u0, &rs));
}

// A TCP connection over loopback stays a kernel socket under the shim; it must still work.
TEST(Loopback, ConnectAcceptAndEcho) {
  Fd l = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  ASSERT_OK(bind(l, Sa(a), sizeof a));
  ASSERT_OK(listen(l, 4));
  a.sin_port = htons(LocalPort(l));
  Fd c = Tcp();
  ASSERT_OK(connect(c, Sa(a), sizeof a));
  Fd s(accept(l, nullptr, nullptr));
  ASSERT_GE(s.get(), 0);
  ASSERT_TRUE(SendAll(c, "loop"));
  EXPECT_EQ(RecvFor(s, 4), "loop");
  ASSERT_OK(shutdown(c, SHUT_WR));
  EXPECT_EQ(RecvUntilEof(s), "");
}

TEST(Loopback, RefusedIsEconnrefused) {
  Fd l = Tcp();
  sockaddr_in a = Addr(Loopback(), 0);
  ASSERT_OK(bind(l, Sa(a), sizeof a));
  a.sin_port = htons(LocalPort(l));
  l.reset();  // bound, never listened, now closed: the port refuses
  Fd c = Tcp();
  EXPECT_ERRNO(connect(c, Sa(a), sizeof a), ECONNREFUSED);
}

}  // namespace
}  // namespace shake::suite
