// Socket behaviour suite, part 5: connected sockets across dup/dup2/close, fork, exec and
// posix_spawn — a socket lives until the last descriptor for it, in any process, is closed.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/shim/suite_net.h"

extern char** environ;

namespace shake::suite {
namespace {

using namespace std::chrono_literals;
using Fds = Net;

// Exit status of a child, or -1 if it did not exit normally within 10 s.
int WaitChild(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 1000; ++i) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(10ms);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

TEST_F(Fds, DupSharesTheConnection) {
  Fd s = ConnectTo(peer::kPortEcho);
  Fd d(dup(s));
  ASSERT_TRUE(SendAll(d, "via dup"));
  EXPECT_EQ(RecvFor(s, 7), "via dup");
}

TEST_F(Fds, ClosingOneDescriptorKeepsTheConnection) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " echo");
  Fd d(dup(s));
  s.reset();
  ASSERT_TRUE(SendAll(d, "alive"));
  EXPECT_EQ(RecvFor(d, 5), "alive");
  d.reset();
  EXPECT_EQ(Log(tag), "read=5 end=eof");
}

TEST_F(Fds, Dup2OverTheLastDescriptorClosesTheConnection) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  ASSERT_TRUE(SendAll(s, "12"));
  int p[2];
  ASSERT_OK(pipe(p));
  Fd r(p[0]), w(p[1]);
  ASSERT_EQ(dup2(r, s), s.get());
  EXPECT_EQ(Log(tag), "read=2 end=eof");
}

TEST_F(Fds, Dup2OfASocketOntoAnotherSocketKeepsTheSource) {
  Fd a = ConnectTo(peer::kPortEcho);
  std::string tag = NewTag();
  Fd b = Script("tag:" + tag + " drain");
  ASSERT_EQ(dup2(a, b), b.get());
  EXPECT_EQ(Log(tag), "read=0 end=eof");
  ASSERT_TRUE(SendAll(b, "same"));
  EXPECT_EQ(RecvFor(a, 4), "same");
}

TEST_F(Fds, ShutdownAffectsEveryDescriptor) {
  Fd s = ConnectTo(peer::kPortEcho);
  Fd d(dup(s));
  ASSERT_OK(shutdown(d, SHUT_WR));
  EXPECT_ERRNO(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
  EXPECT_EQ(RecvUntilEof(s), "");
}

TEST_F(Fds, FcntlDupfdSharesTheConnectionAndNonblock) {
  Fd s = ConnectTo(peer::kPortHold);
  Fd d(fcntl(s, F_DUPFD_CLOEXEC, 64));
  ASSERT_GE(d.get(), 64);
  ASSERT_OK(fcntl(d, F_SETFL, O_NONBLOCK));
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, 0), EAGAIN);
}

TEST_F(Fds, AcceptedSocketsSurviveTheListenersClose) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  ASSERT_EQ(PeerConnect(port, "echo"), "OK");
  Fd s(accept(l, nullptr, nullptr));
  ASSERT_GE(s.get(), 0);
  l.reset();
  ASSERT_TRUE(SendAll(s, "orphan"));
  EXPECT_EQ(RecvFor(s, 6), "orphan");
}

using Fork = Net;

TEST_F(Fork, ChildWritesOnAnInheritedSocket) {
  Fd s = ConnectTo(peer::kPortEcho);
  pid_t pid = fork();
  if (pid == 0) {
    _exit(send(s, "kid", 3, MSG_NOSIGNAL) == 3 ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitChild(pid), 0);
  EXPECT_EQ(RecvFor(s, 3), "kid");
}

TEST_F(Fork, ChildClosingItsCopyDoesNotCloseTheParents) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " echo");
  pid_t pid = fork();
  if (pid == 0) {
    close(s);
    _exit(0);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  ASSERT_TRUE(SendAll(s, "parent"));
  EXPECT_EQ(RecvFor(s, 6), "parent");
  s.reset();
  EXPECT_EQ(Log(tag), "read=6 end=eof");
}

TEST_F(Fork, ChildExitingWithoutCloseSendsNothing) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " echo");
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  EXPECT_EQ(WaitChild(pid), 0);
  ASSERT_TRUE(SendAll(s, "x"));
  EXPECT_EQ(RecvFor(s, 1), "x");
  s.reset();
  EXPECT_EQ(Log(tag), "read=1 end=eof");
}

TEST_F(Fork, ChildKeepsTheConnectionAfterTheParentCloses) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  int go[2];
  ASSERT_OK(pipe(go));
  pid_t pid = fork();
  if (pid == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);
    int ok = send(s, "abc", 3, MSG_NOSIGNAL) == 3;
    close(s);
    _exit(ok ? 0 : 1);
  }
  close(go[0]);
  s.reset();
  ASSERT_EQ(write(go[1], "g", 1), 1);
  close(go[1]);
  EXPECT_EQ(WaitChild(pid), 0);
  EXPECT_EQ(Log(tag), "read=3 end=eof");
}

TEST_F(Fork, ChildClosingAnInheritedListenerLeavesTheParentListening) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  pid_t pid = fork();
  if (pid == 0) {
    close(l);
    _exit(0);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  ASSERT_EQ(PeerConnect(port, "s:ok hold"), "OK");
  Fd s(accept(l, nullptr, nullptr));
  ASSERT_GE(s.get(), 0);
  EXPECT_EQ(RecvFor(s, 2), "ok");
}

TEST_F(Fork, ChildAcceptsOnAnInheritedListener) {
  uint16_t port = 0;
  Fd l = ListenAny(port);
  pid_t pid = fork();
  if (pid == 0) {
    int c = accept(l, nullptr, nullptr);
    if (c < 0) _exit(1);
    _exit(send(c, "from child", 10, MSG_NOSIGNAL) == 10 ? 0 : 1);
  }
  std::string tag = NewTag();
  ASSERT_EQ(PeerConnect(port, "tag:" + tag + " r:10 drain"), "OK");
  EXPECT_EQ(WaitChild(pid), 0);
  EXPECT_EQ(Log(tag), "read=10 end=eof");
}

TEST_F(Fork, ParentAndChildBothWriteOneStream) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  pid_t pid = fork();
  if (pid == 0) _exit(SendAll(s, std::string(1000, 'c')) ? 0 : 1);
  ASSERT_TRUE(SendAll(s, std::string(1000, 'p')));
  EXPECT_EQ(WaitChild(pid), 0);
  s.reset();
  EXPECT_EQ(Log(tag), "read=2000 end=eof");
}

TEST_F(Fork, ExecKeepsSocketsWithoutCloexecAndDropsTheOthers) {
  Fd keep = ConnectTo(peer::kPortHold);
  Fd drop(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = PeerAddr(peer::kPortHold);
  ASSERT_OK(connect(drop, Sa(a), sizeof a));
  std::string cmd = "[ -e /proc/self/fd/" + std::to_string(keep.get()) + " ] && ! [ -e /proc/self/fd/" +
                    std::to_string(drop.get()) + " ]";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(WaitChild(pid), 0);
}

TEST_F(Fork, PosixSpawnedShellWritesToAnInheritedSocket) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  std::string cmd = "printf spawned >&" + std::to_string(s.get());
  const char* argv[] = {"sh", "-c", cmd.c_str(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ),
            0);
  EXPECT_EQ(WaitChild(pid), 0);
  s.reset();
  EXPECT_EQ(Log(tag), "read=7 end=eof");
}

TEST_F(Fork, ExecedProgramReadsFromAnInheritedSocket) {
  Fd s = Script("s:line_from_peer shut hold");
  std::string cmd = "read -r x <&" + std::to_string(s.get()) + "; [ \"$x\" = \"line from peer\" ]";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(WaitChild(pid), 0);
}

TEST_F(Fork, ExecedShellHandsTheSocketOnToItsOwnChild) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  // "; true" keeps the outer shell alive, so the inner one is forked and exec'd in turn.
  std::string cmd = "sh -c 'printf nested >&" + std::to_string(s.get()) + "'; true";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  s.reset();
  EXPECT_EQ(Log(tag), "read=6 end=eof");
}

TEST_F(Fork, BashExecedByBashHandsTheSocketToEveryChild) {
  // bash defines its own getenv/unsetenv and builds its children's environment from its shell
  // variables, so whatever a preload library leaves there reaches every child it starts.
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  const std::string fd = std::to_string(s.get());
  // cat writes with write(2); stdio's writes (printf(1)) bypass any preloaded library.
  std::string cmd = "exec /bin/bash -c 'echo one | /bin/cat >&" + fd + "; echo two | /bin/cat >&" +
                    fd + "'";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/bash", "bash", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  s.reset();
  EXPECT_EQ(Log(tag), "read=8 end=eof");
}

TEST_F(Fork, AFailedExecLeavesTheSocketUsable) {
  Fd s = ConnectTo(peer::kPortEcho);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/nonexistent/program", "program", static_cast<char*>(nullptr));
    _exit(errno == ENOENT && send(s, "ok", 2, MSG_NOSIGNAL) == 2 ? 0 : 1);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  EXPECT_EQ(RecvFor(s, 2), "ok");
}

TEST_F(Fork, AFailedPosixSpawnLeavesTheSocketToTheParentAlone) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " echo");
  const char* argv[] = {"program", nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, "/nonexistent/program", nullptr, nullptr,
                        const_cast<char**>(argv), environ),
            ENOENT);
  ASSERT_TRUE(SendAll(s, "still"));
  EXPECT_EQ(RecvFor(s, 5), "still");
  s.reset();  // the last descriptor: the child that never ran held none
  EXPECT_EQ(Log(tag), "read=5 end=eof");
}

TEST_F(Fork, VforkChildCanExec) {
  Fd s = ConnectTo(peer::kPortHold);
  pid_t pid = vfork();
  if (pid == 0) {
    execl("/bin/true", "true", static_cast<char*>(nullptr));
    _exit(127);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  char c;
  EXPECT_ERRNO(recv(s, &c, 1, MSG_DONTWAIT), EAGAIN);
}

}  // namespace
}  // namespace shake::suite

namespace shake::suite {
namespace {

using Threads = Net;

TEST_F(Threads, SocketConnectAndCloseFromManyThreadsAtOnce) {
  constexpr int kThreads = 4, kRounds = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&ok] {
      for (int i = 0; i < kRounds; ++i) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = Addr(GetTopology().peer, peer::kPortEcho);
        if (s >= 0 && connect(s, Sa(a), sizeof a) == 0 && SendAll(s, "t") && RecvFor(s, 1) == "t") {
          ok++;
        }
        close(s);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kRounds);
}

int g_close_target = -1;
void CloseInHandler(int) { close(g_close_target); }

TEST_F(Threads, CloseFromASignalHandler) {
  std::string tag = NewTag();
  Fd s = Script("tag:" + tag + " drain");
  ASSERT_TRUE(SendAll(s, "sig"));
  g_close_target = s.release();
  struct sigaction sa {}, old{};
  sa.sa_handler = CloseInHandler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, &old);
  raise(SIGUSR2);
  sigaction(SIGUSR2, &old, nullptr);
  EXPECT_ERRNO(fcntl(g_close_target, F_GETFD), EBADF);
  EXPECT_EQ(Log(tag), "read=3 end=eof");
}

}  // namespace
}  // namespace shake::suite
