// Socket behaviour suite, part 3: data transfer, flags, half-close, errors, timeouts, signals.
#include <fcntl.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/uio.h>

#include <thread>

#include "tests/shim/suite_net.h"

namespace shake::suite {
namespace {

using namespace std::chrono_literals;
using Data = Net;

TEST_F(Data, EchoRoundTrip) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_TRUE(SendAll(s, "hello, world"));
  EXPECT_EQ(RecvFor(s, 12), "hello, world");
}

TEST_F(Data, ReadAndWriteAlsoWork) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_EQ(write(s, "abc", 3), 3);
  ASSERT_EQ(WaitFor(s, POLLIN, 5000), POLLIN);
  char buf[8];
  EXPECT_EQ(read(s, buf, sizeof buf), 3);
}

TEST_F(Data, ZeroLengthSendAndRecvReturnZero) {
  Fd s = ConnectTo(peer::kPortEcho);
  char c;
  EXPECT_EQ(send(s, &c, 0, 0), 0);
  EXPECT_EQ(recv(s, &c, 0, 0), 0);
  EXPECT_EQ(write(s, &c, 0), 0);
}

TEST_F(Data, OneMebibyteEchoesIntactThroughNonblockingIo) {
  Fd s = ConnectTo(peer::kPortEcho, SOCK_NONBLOCK);
  const std::string data = Pattern(1 << 20);
  std::string got;
  size_t sent = 0;
  auto start = Clock::now();
  while (got.size() < data.size() && MillisSince(start) < 20000) {
    short want = POLLIN;
    if (sent < data.size()) want |= POLLOUT;
    short r = WaitFor(s, want, 1000);
    if (r & POLLOUT) {
      ssize_t n = send(s, data.data() + sent, std::min<size_t>(data.size() - sent, 65536),
                       MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
    }
    if (r & POLLIN) {
      char buf[65536];
      ssize_t n = recv(s, buf, sizeof buf, 0);
      ASSERT_GT(n, 0) << ErrName(errno);
      got.append(buf, static_cast<size_t>(n));
    }
  }
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
}

TEST_F(Data, PeerStreamArrivesInOrder) {
  Fd s = Script("w:200000 close");
  std::string got = RecvUntilEof(s, 10000);
  ASSERT_EQ(got.size(), 200000u);
  EXPECT_TRUE(got == Pattern(200000));
}

TEST_F(Data, WritevAndReadvScatterAndGather) {
  Fd s = ConnectTo(peer::kPortEcho);
  char a[] = "abc", b[] = "defgh";
  iovec out[2] = {{a, 3}, {b, 5}};
  ASSERT_EQ(writev(s, out, 2), 8);
  ASSERT_EQ(WaitFor(s, POLLIN, 5000), POLLIN);
  char x[2], y[6];
  iovec in[2] = {{x, 2}, {y, 6}};
  size_t total = 0;
  for (int i = 0; i < 50 && total < 8; ++i) {
    int avail = 0;
    ioctl(s, FIONREAD, &avail);
    if (avail >= 8) break;
    std::this_thread::sleep_for(10ms);
  }
  ssize_t n = readv(s, in, 2);
  ASSERT_EQ(n, 8);
  EXPECT_EQ(std::string(x, 2), "ab");
  EXPECT_EQ(std::string(y, 6), "cdefgh");
}

TEST_F(Data, SendmsgAndRecvmsgWithIovecs) {
  Fd s = ConnectTo(peer::kPortEcho);
  char a[] = "12", b[] = "345";
  iovec out[2] = {{a, 2}, {b, 3}};
  msghdr m{};
  m.msg_iov = out;
  m.msg_iovlen = 2;
  ASSERT_EQ(sendmsg(s, &m, MSG_NOSIGNAL), 5);
  char buf[5];
  iovec in{buf, 5};
  msghdr r{};
  r.msg_iov = &in;
  r.msg_iovlen = 1;
  ASSERT_EQ(recvmsg(s, &r, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf, 5), "12345");
  EXPECT_EQ(r.msg_flags, 0);
}

TEST_F(Data, SendmmsgSendsEveryMessage) {
  Fd s = ConnectTo(peer::kPortEcho);
  char a[] = "one", b[] = "two";
  iovec ia{a, 3}, ib{b, 3};
  mmsghdr mm[2] = {};
  mm[0].msg_hdr.msg_iov = &ia;
  mm[0].msg_hdr.msg_iovlen = 1;
  mm[1].msg_hdr.msg_iov = &ib;
  mm[1].msg_hdr.msg_iovlen = 1;
  ASSERT_EQ(sendmmsg(s, mm, 2, MSG_NOSIGNAL), 2);
  EXPECT_EQ(mm[0].msg_len, 3u);
  EXPECT_EQ(RecvFor(s, 6), "onetwo");
}

TEST_F(Data, RecvfromOnAStreamLeavesTheAddressEmpty) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_EQ(sendto(s, "q", 1, MSG_NOSIGNAL, nullptr, 0), 1);
  ASSERT_EQ(WaitFor(s, POLLIN, 5000), POLLIN);
  sockaddr_in from{};
  socklen_t len = sizeof from;
  char c;
  ASSERT_EQ(recvfrom(s, &c, 1, 0, Sa(from), &len), 1);
  EXPECT_EQ(len, 0u);
}

TEST_F(Data, SendtoWithAnAddressOnAConnectedSocketIgnoresIt) {
  Fd s = ConnectTo(peer::kPortEcho);
  sockaddr_in other = PeerAddr(peer::kPortDiscard);
  EXPECT_EQ(sendto(s, "q", 1, MSG_NOSIGNAL, Sa(other), sizeof other), 1);
  EXPECT_EQ(RecvFor(s, 1), "q");
}

TEST_F(Data, PeekDoesNotConsume) {
  Fd s = Script("s:peekaboo hold");
  ASSERT_EQ(WaitFor(s, POLLIN, 5000), POLLIN);
  char buf[16];
  for (int i = 0; i < 50; ++i) {
    int avail = 0;
    ioctl(s, FIONREAD, &avail);
    if (avail == 8) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(recv(s, buf, 4, MSG_PEEK), 4);
  EXPECT_EQ(std::string(buf, 4), "peek");
  ASSERT_EQ(recv(s, buf, sizeof buf, MSG_PEEK), 8);
  ASSERT_EQ(recv(s, buf, sizeof buf, 0), 8);
  EXPECT_EQ(std::string(buf, 8), "peekaboo");
  EXPECT_ERRNO(recv(s, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT), EAGAIN);
}

TEST_F(Data, WaitallWaitsForTheWholeAmount) {
  Fd s = Script("s:abc sleep:150 s:def hold");
  char buf[6];
  auto start = Clock::now();
  ASSERT_EQ(recv(s, buf, 6, MSG_WAITALL), 6);
  EXPECT_EQ(std::string(buf, 6), "abcdef");
  EXPECT_GE(MillisSince(start), 100);
}

TEST_F(Data, WaitallReturnsShortAtEndOfStream) {
  Fd s = Script("s:abc close");
  char buf[10];
  EXPECT_EQ(recv(s, buf, 10, MSG_WAITALL), 3);
  EXPECT_EQ(recv(s, buf, 10, MSG_WAITALL), 0);
}

TEST_F(Data, DontwaitOnABlockingSocketIsEagain) {
  Fd s = ConnectTo(peer::kPortHold);
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, MSG_DONTWAIT), EAGAIN);
  EXPECT_FALSE(fcntl(s, F_GETFL) & O_NONBLOCK);
}

TEST_F(Data, NonblockingRecvWithNothingQueuedIsEagain) {
  Fd s = ConnectTo(peer::kPortHold, SOCK_NONBLOCK);
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), EAGAIN);
  EXPECT_ERRNO(read(s, &c, 1), EAGAIN);
}

TEST_F(Data, FionreadCountsQueuedBytes) {
  Fd s = Script("s:hello_world hold");
  int avail = 0;
  ASSERT_OK(ioctl(s, FIONREAD, &avail));
  ASSERT_EQ(WaitFor(s, POLLIN, 5000), POLLIN);
  for (int i = 0; i < 100 && avail < 11; ++i) {
    ASSERT_OK(ioctl(s, FIONREAD, &avail));
    if (avail < 11) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(avail, 11);
  char buf[4];
  ASSERT_EQ(recv(s, buf, 4, 0), 4);
  ASSERT_OK(ioctl(s, FIONREAD, &avail));
  EXPECT_EQ(avail, 7);
}

TEST_F(Data, SiocoutqDrainsToZeroOnceAcknowledged) {
  Fd s = ConnectTo(peer::kPortDiscard);
  ASSERT_TRUE(SendAll(s, Pattern(10000)));
  int queued = -1;
  for (int i = 0; i < 200; ++i) {
    ASSERT_OK(ioctl(s, SIOCOUTQ, &queued));
    if (queued == 0) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(queued, 0);
}

TEST_F(Data, RcvtimeoMakesRecvFailWithEagain) {
  Fd s = ConnectTo(peer::kPortHold);
  timeval tv{0, 200000};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  char c;
  auto start = Clock::now();
  EXPECT_ERRNO(recv(s, &c, 1, 0), EAGAIN);
  EXPECT_GE(MillisSince(start), 150);
  EXPECT_LT(MillisSince(start), 3000);
}

TEST_F(Data, RcvtimeoDoesNotStopDataThatArrivesInTime) {
  Fd s = Script("sleep:50 s:x hold");
  timeval tv{2, 0};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  char c;
  EXPECT_EQ(recv(s, &c, 1, 0), 1);
}

TEST_F(Data, SndtimeoMakesAFullSendFailWithEagain) {
  Fd s = ConnectTo(peer::kPortHold);
  int small = 4096;
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &small, sizeof small));
  timeval tv{0, 100000};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
  std::string chunk = Pattern(1 << 20);
  int err = 0;
  for (int i = 0; i < 100 && err == 0; ++i) {
    if (send(s, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) err = errno;
  }
  EXPECT_STREQ(ErrName(err), "EAGAIN");
}

TEST_F(Data, NonblockingSendFillsUpToEagainAndThenIsNotWritable) {
  Fd s = ConnectTo(peer::kPortHold, SOCK_NONBLOCK);
  std::string chunk = Pattern(65536);
  size_t total = 0;
  // Fill until EAGAIN, then again whenever ACKs free space, until the peer's window is full.
  bool full = false;
  for (int round = 0; round < 50 && !full; ++round) {
    int err = 0;
    for (int i = 0; i < 2000 && err == 0; ++i) {
      ssize_t n = send(s, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n < 0) err = errno;
      else total += static_cast<size_t>(n);
    }
    ASSERT_STREQ(ErrName(err), "EAGAIN");
    full = (WaitFor(s, POLLOUT, 200) & POLLOUT) == 0;
  }
  EXPECT_TRUE(full);
  EXPECT_GT(total, 0u);
}

TEST_F(Data, BlockingRecvWakesWhenDataArrives) {
  Fd s = Script("sleep:100 s:late hold");
  char buf[8];
  auto start = Clock::now();
  EXPECT_EQ(recv(s, buf, sizeof buf, 0), 4);
  EXPECT_GE(MillisSince(start), 50);
}

TEST_F(Data, BlockingSendOfMoreThanTheBufferCompletes) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  std::string big = Pattern(4 << 20);
  ASSERT_EQ(send(s, big.data(), big.size(), MSG_NOSIGNAL), static_cast<ssize_t>(big.size()));
  s.reset();
  EXPECT_EQ(Log(tag), "read=" + std::to_string(big.size()) + " end=eof");
}

TEST_F(Data, SendfileFromAFile) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  char path[] = "/tmp/shksuite-sendfile-XXXXXX";
  Fd f(mkstemp(path));
  ASSERT_GE(f.get(), 0);
  unlink(path);
  std::string body = Pattern(100000);
  ASSERT_EQ(write(f, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  off_t off = 0;
  size_t sent = 0;
  for (int i = 0; i < 1000 && sent < body.size(); ++i) {
    ssize_t n = sendfile(s, f, &off, body.size() - sent);
    ASSERT_GT(n, 0) << ErrName(errno);
    sent += static_cast<size_t>(n);
  }
  EXPECT_EQ(off, static_cast<off_t>(body.size()));
  s.reset();
  EXPECT_EQ(Log(tag), "read=100000 end=eof");
}

using Close = Net;

TEST_F(Close, PeerCloseReadsAsEndOfStreamRepeatedly) {
  Fd s = ConnectTo(peer::kPortClose);
  char c;
  ASSERT_EQ(WaitFor(s, POLLIN, 5000) & POLLIN, POLLIN);
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
  EXPECT_EQ(read(s, &c, 1), 0);
}

TEST_F(Close, PeerResetIsEconnresetOnceThenEndOfStream) {
  Fd s = ConnectTo(peer::kPortReset);
  ASSERT_NE(WaitFor(s, POLLIN, 5000) & POLLIN, 0);
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), ECONNRESET);
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
}

TEST_F(Close, PeerResetSetsPollErrAndHup) {
  Fd s = ConnectTo(peer::kPortReset);
  ASSERT_NE(WaitFor(s, POLLIN, 5000), 0);
  EXPECT_EQ(WaitFor(s, POLLIN | POLLOUT, 0), POLLIN | POLLOUT | POLLERR | POLLHUP);
}

TEST_F(Close, WriteAfterThePeerResetIsEpipeWithMsgNosignal) {
  Fd s = ConnectTo(peer::kPortClose);
  ASSERT_NE(WaitFor(s, POLLIN, 5000) & POLLIN, 0);
  // Our data reaches a closed socket: the peer answers RST.
  ASSERT_EQ(send(s, "x", 1, MSG_NOSIGNAL), 1);
  short r = 0;
  for (int i = 0; i < 50 && !(r & POLLHUP); ++i) r = WaitFor(s, POLLIN, 100);
  ASSERT_TRUE(r & POLLHUP) << r;
  EXPECT_ERRNO(send(s, "y", 1, MSG_NOSIGNAL), EPIPE);
  EXPECT_ERRNO(send(s, "y", 1, MSG_NOSIGNAL), EPIPE);
}

TEST_F(Close, WriteToAShutSocketRaisesSigpipeWithoutMsgNosignal) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_OK(shutdown(s, SHUT_WR));
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_set, &old), 0);
  EXPECT_ERRNO(send(s, "x", 1, 0), EPIPE);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_TRUE(sigismember(&pending, SIGPIPE));
  timespec zero{0, 0};
  sigtimedwait(&pipe_set, nullptr, &zero);
  EXPECT_ERRNO(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST_F(Close, CloseSendsFinAfterTheData) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  ASSERT_TRUE(SendAll(s, "0123456789"));
  s.reset();
  EXPECT_EQ(Log(tag), "read=10 end=eof");
}

TEST_F(Close, LingerZeroCloseSendsRst) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  ASSERT_TRUE(SendAll(s, "abc"));
  std::this_thread::sleep_for(50ms);
  linger l{1, 0};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l));
  s.reset();
  EXPECT_EQ(Log(tag), "read=3 end=rst");
}

TEST_F(Close, CloseWithUnreadDataSendsRst) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " s:unread drain");
  ASSERT_NE(WaitFor(s, POLLIN, 5000) & POLLIN, 0);
  s.reset();
  EXPECT_EQ(Log(tag), "read=0 end=rst");
}

using HalfClose = Net;

TEST_F(HalfClose, ShutWrStillReceivesTheEcho) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_TRUE(SendAll(s, "half"));
  ASSERT_OK(shutdown(s, SHUT_WR));
  EXPECT_EQ(RecvUntilEof(s), "half");
}

TEST_F(HalfClose, SendAfterShutWrIsEpipe) {
  Fd s = ConnectTo(peer::kPortEcho);
  ASSERT_OK(shutdown(s, SHUT_WR));
  EXPECT_ERRNO(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
}

TEST_F(HalfClose, AfterThePeersFinWeCanStillSend) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " s:bye shut drain");
  EXPECT_EQ(RecvUntilEof(s), "bye");
  ASSERT_TRUE(SendAll(s, "still here"));
  ASSERT_OK(shutdown(s, SHUT_WR));
  EXPECT_EQ(Log(tag), "read=10 end=eof");
}

TEST_F(HalfClose, ShutRdMakesRecvReturnZero) {
  Fd s = ConnectTo(peer::kPortHold);
  ASSERT_OK(shutdown(s, SHUT_RD));
  char c;
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
  EXPECT_EQ(WaitFor(s, POLLIN | POLLRDHUP, 0), POLLIN | POLLRDHUP);
}

TEST_F(HalfClose, ShutRdwrPollsHup) {
  Fd s = ConnectTo(peer::kPortHold);
  ASSERT_OK(shutdown(s, SHUT_RDWR));
  EXPECT_EQ(WaitFor(s, POLLIN | POLLOUT, 0) & (POLLIN | POLLHUP), POLLIN | POLLHUP);
}

TEST_F(HalfClose, ShutdownWithABadHowIsEinval) {
  Fd s = ConnectTo(peer::kPortHold);
  EXPECT_ERRNO(shutdown(s, 7), EINVAL);
}

TEST_F(HalfClose, ShutdownFromAnotherThreadWakesABlockedRecv) {
  Fd s = ConnectTo(peer::kPortHold);
  std::thread t([fd = s.get()] {
    std::this_thread::sleep_for(100ms);
    shutdown(fd, SHUT_RD);
  });
  char c;
  EXPECT_EQ(recv(s, &c, 1, 0), 0);
  t.join();
}

using Signals = Net;

std::atomic<int> g_signals{0};
void CountSignal(int) { g_signals++; }

class SignalScope {
 public:
  explicit SignalScope(bool restart) {
    struct sigaction sa {};
    sa.sa_handler = CountSignal;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &old_);
  }
  ~SignalScope() { sigaction(SIGUSR1, &old_, nullptr); }

 private:
  struct sigaction old_ {};
};

TEST_F(Signals, BlockedRecvWithoutSaRestartFailsWithEintr) {
  Fd s = ConnectTo(peer::kPortHold);
  SignalScope scope(false);
  pthread_t self = pthread_self();
  std::thread t([self] {
    std::this_thread::sleep_for(100ms);
    pthread_kill(self, SIGUSR1);
  });
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), EINTR);
  t.join();
}

TEST_F(Signals, BlockedRecvWithSaRestartResumes) {
  Fd s = Script("sleep:400 s:x hold");
  SignalScope scope(true);
  int before = g_signals.load();
  pthread_t self = pthread_self();
  std::thread t([self] {
    std::this_thread::sleep_for(100ms);
    pthread_kill(self, SIGUSR1);
  });
  char c;
  EXPECT_EQ(recv(s, &c, 1, 0), 1);
  t.join();
  EXPECT_EQ(g_signals.load(), before + 1);
}

TEST_F(Signals, RecvWithATimeoutIsEintrEvenWithSaRestart) {
  Fd s = ConnectTo(peer::kPortHold);
  timeval tv{5, 0};
  ASSERT_OK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  SignalScope scope(true);
  pthread_t self = pthread_self();
  std::thread t([self] {
    std::this_thread::sleep_for(100ms);
    pthread_kill(self, SIGUSR1);
  });
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), EINTR);
  t.join();
}

}  // namespace
}  // namespace shake::suite
