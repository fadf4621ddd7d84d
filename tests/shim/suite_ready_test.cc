// Socket behaviour suite, part 4: readiness of routed TCP sockets under epoll (level, EPOLLET,
// EPOLLONESHOT, EPOLLRDHUP), poll and select, alone and mixed with kernel fds.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/select.h>

#include <thread>

#include "tests/shim/suite_net.h"

namespace shake::suite {
namespace {

using namespace std::chrono_literals;
using Ready = Net;

Fd EpollWith(int fd, uint32_t events, uint64_t data = 1) {
  Fd ep(epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) ADD_FAILURE() << "epoll_ctl " << ErrName(errno);
  return ep;
}

// One epoll_wait; returns the events of the single ready entry or 0.
uint32_t WaitOne(int ep, int ms, uint64_t* data = nullptr) {
  epoll_event out[4];
  int n = epoll_wait(ep, out, 4, ms);
  if (n != 1) return 0;
  if (data) *data = out[0].data.u64;
  return out[0].events;
}

TEST_F(Ready, LevelTriggeredReportsUntilRead) {
  Fd s = Script("s:data hold");
  Fd ep = EpollWith(s, EPOLLIN);
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(WaitOne(ep, 0), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(RecvFor(s, 4), "data");
  EXPECT_EQ(WaitOne(ep, 50), 0u);
}

TEST_F(Ready, EdgeTriggeredReadableIsReportedOncePerArrival) {
  Fd s = Script("s:a sleep:300 s:b hold");
  Fd ep = EpollWith(s, EPOLLIN | EPOLLET);
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(WaitOne(ep, 50), 0u) << "no new edge without new data, though unread";
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN)) << "new data is a new edge";
  EXPECT_EQ(RecvFor(s, 2), "ab");
}

TEST_F(Ready, EdgeTriggeredWritableIsReportedOnce) {
  Fd s = ConnectTo(peer::kPortEcho, SOCK_NONBLOCK);
  Fd ep = EpollWith(s, EPOLLOUT | EPOLLET);
  EXPECT_EQ(WaitOne(ep, 1000), static_cast<uint32_t>(EPOLLOUT));
  EXPECT_EQ(WaitOne(ep, 50), 0u);
}

TEST_F(Ready, OneshotDisarmsUntilModified) {
  Fd s = Script("s:one hold");
  Fd ep = EpollWith(s, EPOLLIN | EPOLLONESHOT, 9);
  uint64_t data = 0;
  EXPECT_EQ(WaitOne(ep, 5000, &data), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(data, 9u);
  EXPECT_EQ(WaitOne(ep, 50), 0u);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.u64 = 10;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev));
  EXPECT_EQ(WaitOne(ep, 1000, &data), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(data, 10u);
  EXPECT_EQ(WaitOne(ep, 50), 0u);
}

TEST_F(Ready, OneshotEdgeTriggeredStillWorksAfterRearm) {
  Fd s = Script("s:x sleep:200 s:y hold");
  Fd ep = EpollWith(s, EPOLLIN | EPOLLET | EPOLLONESHOT);
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(RecvFor(s, 1), "x");
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET | EPOLLONESHOT;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev));
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(RecvFor(s, 1), "y");
}

TEST_F(Ready, RdhupIsReportedWhenThePeerShutsItsWriteSide) {
  Fd s = Script("s:last shut hold");
  Fd ep = EpollWith(s, EPOLLIN | EPOLLRDHUP | EPOLLET);
  uint32_t ev = 0;
  for (int i = 0; i < 50 && !(ev & EPOLLRDHUP); ++i) ev |= WaitOne(ep, 100);
  EXPECT_EQ(ev, static_cast<uint32_t>(EPOLLIN | EPOLLRDHUP));
  EXPECT_EQ(RecvUntilEof(s), "last");
}

TEST_F(Ready, RdhupIsNotReportedUnlessAsked) {
  Fd s = Script("shut hold");
  Fd ep = EpollWith(s, EPOLLIN);
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN));
}

TEST_F(Ready, PollRdhupOnPeerFin) {
  Fd s = Script("shut hold");
  short r = 0;
  for (int i = 0; i < 50 && !(r & POLLRDHUP); ++i) r = WaitFor(s, POLLIN | POLLRDHUP, 100);
  EXPECT_EQ(r, POLLIN | POLLRDHUP);
}

TEST_F(Ready, EpollHupAndErrOnReset) {
  Fd s = ConnectTo(peer::kPortReset);
  Fd ep = EpollWith(s, EPOLLIN | EPOLLRDHUP | EPOLLET);
  EXPECT_EQ(WaitOne(ep, 5000), static_cast<uint32_t>(EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev));
  EXPECT_EQ(WaitOne(ep, 0), static_cast<uint32_t>(EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP));
}

TEST_F(Ready, BothSidesClosedIsHup) {
  Fd s = ConnectTo(peer::kPortClose);
  ASSERT_NE(WaitFor(s, POLLIN, 5000) & POLLIN, 0);
  ASSERT_OK(shutdown(s, SHUT_WR));
  short r = 0;
  for (int i = 0; i < 50 && !(r & POLLHUP); ++i) r = WaitFor(s, POLLIN | POLLOUT | POLLRDHUP, 100);
  EXPECT_EQ(r & (POLLIN | POLLHUP | POLLRDHUP), POLLIN | POLLHUP | POLLRDHUP);
}

TEST_F(Ready, EpollPwaitWithASignalMask) {
  Fd s = Script("s:z hold");
  Fd ep = EpollWith(s, EPOLLIN);
  sigset_t mask;
  sigemptyset(&mask);
  epoll_event out[2];
  EXPECT_EQ(epoll_pwait(ep, out, 2, 5000, &mask), 1);
}

TEST_F(Ready, EpollWaitTimesOutOnAnIdleConnection) {
  Fd s = ConnectTo(peer::kPortHold);
  Fd ep = EpollWith(s, EPOLLIN);
  auto start = Clock::now();
  EXPECT_EQ(WaitOne(ep, 100), 0u);
  EXPECT_GE(MillisSince(start), 90);
}

TEST_F(Ready, RegistrationFollowsTheOpenFileNotTheFdNumber) {
  Fd s = Script("sleep:100 s:k hold");
  Fd ep = EpollWith(s, EPOLLIN, 42);
  Fd d(dup(s));
  s.reset();  // the registration lives on through the duplicate
  uint64_t data = 0;
  EXPECT_EQ(WaitOne(ep, 5000, &data), static_cast<uint32_t>(EPOLLIN));
  EXPECT_EQ(data, 42u);
  d.reset();
  EXPECT_EQ(WaitOne(ep, 50), 0u);
}

TEST_F(Ready, EpollOverAMixOfKernelAndTcpFds) {
  Fd s = Script("sleep:100 s:t hold");
  Fd idle = ConnectTo(peer::kPortHold);
  Fd ev(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  Fd ep(epoll_create1(0));
  auto add = [&](int fd, uint64_t tag) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = tag;
    ASSERT_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
  };
  add(s, 1);
  add(idle, 2);
  add(ev, 3);
  add(r, 4);
  uint64_t one = 1;
  ASSERT_EQ(write(ev, &one, 8), 8);
  epoll_event out[8];
  int n = epoll_wait(ep, out, 8, 5000);
  ASSERT_EQ(n, 1);
  EXPECT_EQ(out[0].data.u64, 3u);
  ASSERT_EQ(read(ev, &one, 8), 8);
  n = epoll_wait(ep, out, 8, 5000);
  ASSERT_EQ(n, 1);
  EXPECT_EQ(out[0].data.u64, 1u);
}

TEST_F(Ready, PollOverAMixOfKernelAndTcpFds) {
  Fd s = Script("s:t hold");
  Fd idle = ConnectTo(peer::kPortHold);
  Fd ev(eventfd(0, EFD_CLOEXEC));
  int sv[2];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
  Fd u0(sv[0]), u1(sv[1]);
  ASSERT_EQ(write(u1, "u", 1), 1);
  ASSERT_NE(WaitFor(s, POLLIN, 5000), 0);
  pollfd fds[4] = {{s, POLLIN, 0}, {idle, POLLIN, 0}, {ev, POLLIN, 0}, {u0, POLLIN, 0}};
  EXPECT_EQ(poll(fds, 4, 1000), 2);
  EXPECT_EQ(fds[0].revents, POLLIN);
  EXPECT_EQ(fds[1].revents, 0);
  EXPECT_EQ(fds[2].revents, 0);
  EXPECT_EQ(fds[3].revents, POLLIN);
}

TEST_F(Ready, PollWakesForTcpDataWhileWatchingKernelFds) {
  Fd s = Script("sleep:150 s:w hold");
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  pollfd fds[2] = {{r, POLLIN, 0}, {s, POLLIN, 0}};
  auto start = Clock::now();
  EXPECT_EQ(poll(fds, 2, 5000), 1);
  EXPECT_EQ(fds[1].revents, POLLIN);
  EXPECT_GE(MillisSince(start), 100);
}

TEST_F(Ready, PollWakesForAKernelFdWhileWatchingTcp) {
  Fd s = ConnectTo(peer::kPortHold);
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  std::thread t([wfd = w.get()] {
    std::this_thread::sleep_for(100ms);
    (void)!write(wfd, "p", 1);
  });
  pollfd fds[2] = {{s, POLLIN, 0}, {r, POLLIN, 0}};
  EXPECT_EQ(poll(fds, 2, 5000), 1);
  t.join();
  EXPECT_EQ(fds[0].revents, 0);
  EXPECT_EQ(fds[1].revents, POLLIN);
}

TEST_F(Ready, PpollWithATimeoutReturnsZero) {
  Fd s = ConnectTo(peer::kPortHold);
  pollfd p{s, POLLIN, 0};
  timespec ts{0, 100000000};
  auto start = Clock::now();
  EXPECT_EQ(ppoll(&p, 1, &ts, nullptr), 0);
  EXPECT_GE(MillisSince(start), 90);
}

TEST_F(Ready, SelectOverAMixOfKernelAndTcpFds) {
  Fd s = Script("s:sel hold");
  Fd idle = ConnectTo(peer::kPortHold);
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  ASSERT_NE(WaitFor(s, POLLIN, 5000), 0);
  fd_set rs, ws;
  FD_ZERO(&rs);
  FD_ZERO(&ws);
  for (int fd : {s.get(), idle.get(), r.get()}) FD_SET(fd, &rs);
  FD_SET(idle, &ws);
  FD_SET(w, &ws);
  int maxfd = std::max({s.get(), idle.get(), r.get(), w.get()});
  timeval tv{1, 0};
  EXPECT_EQ(select(maxfd + 1, &rs, &ws, nullptr, &tv), 3);
  EXPECT_TRUE(FD_ISSET(s, &rs));
  EXPECT_FALSE(FD_ISSET(idle, &rs));
  EXPECT_FALSE(FD_ISSET(r, &rs));
  EXPECT_TRUE(FD_ISSET(idle, &ws));
  EXPECT_TRUE(FD_ISSET(w, &ws));
}

TEST_F(Ready, PselectTimesOutOnIdleSockets) {
  Fd s = ConnectTo(peer::kPortHold);
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(s, &rs);
  timespec ts{0, 100000000};
  auto start = Clock::now();
  EXPECT_EQ(pselect(s + 1, &rs, nullptr, nullptr, &ts, nullptr), 0);
  EXPECT_FALSE(FD_ISSET(s, &rs));
  EXPECT_GE(MillisSince(start), 90);
}

TEST_F(Ready, SelectReportsEndOfStreamAsReadable) {
  Fd s = ConnectTo(peer::kPortClose);
  fd_set rs;
  FD_ZERO(&rs);
  FD_SET(s, &rs);
  timeval tv{5, 0};
  EXPECT_EQ(select(s + 1, &rs, nullptr, nullptr, &tv), 1);
  char c;
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
}

TEST_F(Ready, SelectExceptfdsStayEmptyWithoutUrgentData) {
  Fd s = Script("s:x hold");
  ASSERT_NE(WaitFor(s, POLLIN, 5000), 0);
  fd_set es;
  FD_ZERO(&es);
  FD_SET(s, &es);
  timeval tv{0, 50000};
  EXPECT_EQ(select(s + 1, nullptr, nullptr, &es, &tv), 0);
}

}  // namespace
}  // namespace shake::suite
