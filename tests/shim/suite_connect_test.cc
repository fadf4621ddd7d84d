// Socket behaviour suite, part 2: active and passive opens over the routed path to namespace B.
#include <fcntl.h>
#include <sys/epoll.h>

#include <thread>

#include "tests/shim/suite_net.h"

namespace shake::suite {
namespace {

using namespace std::chrono_literals;

int SoError(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &len) != 0) return -1;
  return v;
}

using Connect = Net;

TEST_F(Connect, BlockingConnectSucceedsAndNamesBothEnds) {
  Fd s = Tcp();
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  ASSERT_OK(connect(s, Sa(a), sizeof a));
  sockaddr_in got{};
  socklen_t len = sizeof got;
  ASSERT_OK(getpeername(s, Sa(got), &len));
  EXPECT_EQ(ToString(got), ToString(a));
  len = sizeof got;
  ASSERT_OK(getsockname(s, Sa(got), &len));
  EXPECT_EQ(got.sin_addr.s_addr, GetTopology().self.s_addr);
  EXPECT_NE(got.sin_port, 0);
}

TEST_F(Connect, BlockingConnectToAClosedPortIsEconnrefused) {
  Fd s = Tcp();
  sockaddr_in a = PeerAddr(peer::kPortClosed);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), ECONNREFUSED);
  EXPECT_EQ(SoError(s), 0);
}

TEST_F(Connect, RefusedSocketCanConnectAgain) {
  Fd s = Tcp();
  sockaddr_in a = PeerAddr(peer::kPortClosed);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), ECONNREFUSED);
  sockaddr_in b = PeerAddr(peer::kPortEcho);
  ASSERT_OK(connect(s, Sa(b), sizeof b));
  ASSERT_TRUE(SendAll(s, "again"));
  EXPECT_EQ(RecvFor(s, 5), "again");
}

TEST_F(Connect, NonblockingConnectIsEinprogressThenWritableWithNoError) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  EXPECT_EQ(WaitFor(s, POLLOUT, 5000), POLLOUT);
  EXPECT_EQ(SoError(s), 0);
}

TEST_F(Connect, NonblockingConnectRefusedReportsErrorThroughSoError) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = PeerAddr(peer::kPortClosed);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  short r = WaitFor(s, POLLIN | POLLOUT, 5000);
  EXPECT_EQ(r, POLLIN | POLLOUT | POLLERR | POLLHUP);
  EXPECT_EQ(SoError(s), ECONNREFUSED);
  EXPECT_EQ(SoError(s), 0) << "SO_ERROR is cleared by reading it";
}

TEST_F(Connect, SecondConnectWhilePendingIsEalready) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = Addr(GetTopology().blackhole, 80);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EALREADY);
  EXPECT_EQ(WaitFor(s, POLLOUT, 200), 0);
}

TEST_F(Connect, ConnectAfterNonblockingCompletionReturnsZeroThenEisconn) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  ASSERT_EQ(WaitFor(s, POLLOUT, 5000), POLLOUT);
  EXPECT_EQ(connect(s, Sa(a), sizeof a), 0);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EISCONN);
}

TEST_F(Connect, ConnectOnAConnectedSocketIsEisconn) {
  Fd s = ConnectTo(peer::kPortEcho);
  sockaddr_in a = PeerAddr(peer::kPortDiscard);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EISCONN);
}

TEST_F(Connect, BlockingConnectWithSndtimeoTimesOutAsEinprogress) {
  Fd s = Tcp();
  timeval tv{0, 200000};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
  sockaddr_in a = Addr(GetTopology().blackhole, 80);
  auto start = Clock::now();
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  EXPECT_GE(MillisSince(start), 150);
  EXPECT_LT(MillisSince(start), 3000);
}

TEST_F(Connect, PendingConnectIsNeitherReadableNorWritable) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = Addr(GetTopology().blackhole, 80);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  EXPECT_EQ(WaitFor(s, POLLIN | POLLOUT | POLLRDHUP, 100), 0);
  fd_set w;
  FD_ZERO(&w);
  FD_SET(s, &w);
  timeval tv{0, 100000};
  EXPECT_EQ(select(s + 1, nullptr, &w, nullptr, &tv), 0);
}

TEST_F(Connect, SendAndRecvWhileConnectingAreEagain) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = Addr(GetTopology().blackhole, 80);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  char c = 'x';
  EXPECT_ERRNO(send(s, &c, 1, MSG_NOSIGNAL), EAGAIN);
  EXPECT_ERRNO(recv(s, &c, 1, 0), EAGAIN);
}

TEST_F(Connect, GetpeernameWhileConnectingIsEnotconn) {
  Fd s = Tcp(SOCK_NONBLOCK);
  sockaddr_in a = Addr(GetTopology().blackhole, 80);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  sockaddr_in got{};
  socklen_t len = sizeof got;
  EXPECT_ERRNO(getpeername(s, Sa(got), &len), ENOTCONN);
}

TEST_F(Connect, ExplicitBindToTheLocalAddressIsKept) {
  Fd s = Tcp();
  sockaddr_in local = SelfAddr(0);
  ASSERT_OK(bind(s, Sa(local), sizeof local));
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  ASSERT_OK(connect(s, Sa(a), sizeof a));
  sockaddr_in got{};
  socklen_t len = sizeof got;
  ASSERT_OK(getsockname(s, Sa(got), &len));
  EXPECT_EQ(got.sin_addr.s_addr, GetTopology().self.s_addr);
}

TEST_F(Connect, BindToANonLocalAddressIsEaddrnotavail) {
  Fd s = Tcp();
  in_addr other{};
  inet_pton(AF_INET, "198.18.9.9", &other);
  sockaddr_in a = Addr(other, 0);
  EXPECT_ERRNO(bind(s, Sa(a), sizeof a), EADDRNOTAVAIL);
}

TEST_F(Connect, ShortAddressIsEinvalAndWrongFamilyIsEafnosupport) {
  Fd s = Tcp();
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  EXPECT_ERRNO(connect(s, Sa(a), 8), EINVAL);
  a.sin_family = AF_INET6;
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EAFNOSUPPORT);
}

TEST_F(Connect, EpollReportsCompletionOfANonblockingConnect) {
  Fd ep(epoll_create1(0));
  Fd s = Tcp(SOCK_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLOUT | EPOLLET;
  ev.data.u64 = 5;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
  sockaddr_in a = PeerAddr(peer::kPortEcho);
  EXPECT_ERRNO(connect(s, Sa(a), sizeof a), EINPROGRESS);
  epoll_event out[2];
  ASSERT_EQ(epoll_wait(ep, out, 2, 5000), 1);
  EXPECT_EQ(out[0].events, static_cast<uint32_t>(EPOLLOUT));
  EXPECT_EQ(epoll_wait(ep, out, 2, 100), 0) << "the edge is reported once";
}

using Accept = Net;

TEST_F(Accept, AcceptsAConnectionFromThePeerAndNamesBothEnds) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  ASSERT_EQ(PeerConnect(port, "s:hi hold"), "OK");
  sockaddr_in from{};
  socklen_t len = sizeof from;
  Fd s(accept(l, Sa(from), &len));
  ASSERT_GE(s.get(), 0);
  EXPECT_EQ(len, sizeof from);
  EXPECT_EQ(from.sin_addr.s_addr, GetTopology().peer.s_addr);
  sockaddr_in local{};
  len = sizeof local;
  ASSERT_OK(getsockname(s, Sa(local), &len));
  EXPECT_EQ(ToString(local), ToString(SelfAddr(port)));
  EXPECT_EQ(RecvFor(s, 2), "hi");
}

TEST_F(Accept, NonblockingListenerIsEagainThenReadable) {
  uint16_t port = 0;
  Fd l = ListenAny(port, SOCK_NONBLOCK);
  EXPECT_ERRNO(accept(l, nullptr, nullptr), EAGAIN);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  EXPECT_EQ(WaitFor(l, POLLIN | POLLOUT, 5000), POLLIN);
  Fd s(accept(l, nullptr, nullptr));
  EXPECT_GE(s.get(), 0);
  EXPECT_ERRNO(accept(l, nullptr, nullptr), EAGAIN);
}

TEST_F(Accept, Accept4AppliesItsFlagsToTheNewSocket) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  Fd s(accept4(l, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_GE(s.get(), 0);
  EXPECT_TRUE(fcntl(s, F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(fcntl(s, F_GETFD), FD_CLOEXEC);
}

TEST_F(Accept, AcceptedSocketDoesNotInheritNonblock) {
  uint16_t port = 0;
  Fd l = ListenAny(port, SOCK_NONBLOCK);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  ASSERT_EQ(WaitFor(l, POLLIN, 5000), POLLIN);
  Fd s(accept(l, nullptr, nullptr));
  ASSERT_GE(s.get(), 0);
  EXPECT_FALSE(fcntl(s, F_GETFL) & O_NONBLOCK);
  EXPECT_EQ(fcntl(s, F_GETFD), 0);
}

TEST_F(Accept, ShortAddressBufferIsTruncatedAndTheFullLengthReturned) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  sockaddr_in from{};
  socklen_t len = 4;
  Fd s(accept(l, Sa(from), &len));
  ASSERT_GE(s.get(), 0);
  EXPECT_EQ(len, sizeof from);
  EXPECT_EQ(from.sin_family, AF_INET);
  EXPECT_EQ(from.sin_addr.s_addr, 0u) << "only 4 bytes were written";
}

TEST_F(Accept, SeveralPendingConnectionsAreAllAccepted) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(PeerConnect(port, "s:" + std::to_string(i) + " hold"), "OK");
  std::string seen;
  for (int i = 0; i < 3; ++i) {
    Fd s(accept(l, nullptr, nullptr));
    ASSERT_GE(s.get(), 0);
    seen += RecvFor(s, 1);
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, "012");
}

TEST_F(Accept, BlockingAcceptWakesWhenTheConnectionArrives) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  std::string reply;
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    reply = PeerConnect(port, "hold");
  });
  auto start = Clock::now();
  Fd s(accept(l, nullptr, nullptr));
  t.join();
  EXPECT_GE(s.get(), 0);
  EXPECT_EQ(reply, "OK");
  EXPECT_GE(MillisSince(start), 50);
}

TEST_F(Accept, RcvtimeoBoundsABlockingAccept) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  timeval tv{0, 150000};
  ASSERT_OK(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  auto start = Clock::now();
  EXPECT_ERRNO(accept(l, nullptr, nullptr), EAGAIN);
  EXPECT_GE(MillisSince(start), 100);
}

TEST_F(Accept, ListenOnAConnectedSocketIsEinval) {
  Fd s = ConnectTo(peer::kPortEcho);
  EXPECT_ERRNO(listen(s, 4), EINVAL);
}

TEST_F(Accept, EdgeTriggeredListenerReportsEachNewConnection) {
  uint16_t port = 0;
  Fd l = ListenAny(port, SOCK_NONBLOCK);
  Fd ep(epoll_create1(0));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev));
  epoll_event out[2];
  EXPECT_EQ(epoll_wait(ep, out, 2, 0), 0);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  ASSERT_EQ(epoll_wait(ep, out, 2, 5000), 1);
  EXPECT_EQ(epoll_wait(ep, out, 2, 50), 0);
  ASSERT_EQ(PeerConnect(port, "hold"), "OK");
  ASSERT_EQ(epoll_wait(ep, out, 2, 5000), 1);
  Fd a(accept(l, nullptr, nullptr)), b(accept(l, nullptr, nullptr));
  EXPECT_GE(a.get(), 0);
  EXPECT_GE(b.get(), 0);
}

TEST_F(Accept, ClosingAListenerResetsUnacceptedConnections) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  std::string tag = NewTag();
  ASSERT_EQ(PeerConnect(port, "tag:" + tag + " drain"), "OK");
  std::this_thread::sleep_for(50ms);
  l.reset();
  EXPECT_EQ(Log(tag), "read=0 end=rst");
}

}  // namespace
}  // namespace shake::suite
