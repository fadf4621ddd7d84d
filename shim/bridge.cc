// Bridges: stack sockets for code that no preload library sees.
//
// A stack socket's fd is a placeholder (an eventfd). Calls that reach it without passing through
// libshake's interposed functions break on it: glibc's stdio reads and writes through its
// internal __read and __write (fdopen, and printf on fds 0..2 after a dup2), and a child that
// runs without libshake (an image whose environment drops LD_PRELOAD, the children of system()
// and popen(), which glibc spawns through internal calls, the file actions of posix_spawn, which
// renumber fds where no hand-off can follow) sees a bare eventfd.
//
// For those, the socket is bridged: a kernel AF_UNIX socketpair takes the place of the
// placeholder, and a pump process moves bytes between its other end and the stack socket. The
// pump is a fork of the process (so it holds its own references to the socket, like any process
// of the family), detached in a session of its own, with every other fd closed. It keeps the
// socket as long as any holder of the kernel end does: when the last one closes (POLLHUP on its
// end), it moves what is left and closes its stack fd; a shutdown(SHUT_WR) by a holder (EOF
// without hang-up) becomes a shutdown of the stack socket; the peer's FIN becomes EOF for the
// holders; an error of the stack socket (a reset) closes the kernel end.
//
// What the holders see is a kernel stream socket. In a process with libshake its fd is a
// kBridge entry: getsockname, getpeername and the socket options answer for the stack socket
// (an exec'd image that loads libshake takes the entries over); in one without, it is an
// AF_UNIX socket. Bytes cost one more copy through the kernel each way.
#include "shim/bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "shim/backend_impl.h"
#include "shim/guard.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"

namespace shake::shim {

bool Backend::Bridgeable(FdEntry e) {
  if (e.kind != FdKind::kStack || !attached()) return false;
  Session s(*this);
  const SocketRec* r = s.sh().Rec(e.socket);
  return r != nullptr && !r->listener;
}

void Backend::EndForkedHelper() { AtExit(); }

bool Backend::FreeSlots(uint32_t n) {
  if (!attached()) return false;
  Session s(*this);
  uint32_t free = 0;
  for (uint32_t p = 0; p < s.sh().limits.procs && free < n; ++p) {
    if (s.sh().procs[p].pid == 0) ++free;
  }
  return free >= n;
}

namespace {

constexpr size_t kChunk = 64 * 1024;

struct Pair {
  int s = -1;  // the stack socket (an fd of this pump)
  int b = -1;  // the pump's end of the socketpair
  std::unique_ptr<char[]> to_b{new char[kChunk]};  // from the stack, for the holders
  size_t to_b_off = 0, to_b_len = 0;
  std::unique_ptr<char[]> to_s{new char[kChunk]};  // from the holders, for the stack
  size_t to_s_off = 0, to_s_len = 0;
  bool s_eof = false;     // the peer's FIN was read
  bool b_shut = false;    // ... and passed on to the holders
  bool b_eof = false;     // the holders shut down their writing, or all closed
  bool b_hup = false;     // all holders closed
  bool s_shut = false;    // a holder's shutdown passed on to the stack
  bool done = false;
};

bool Again(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

void EndPair(Pair& p) {
  if (p.done) return;
  ::close(p.b);
  ::close(p.s);  // our reference; the last one closes the connection (FIN, data first)
  p.done = true;
}

// One round of moving bytes without blocking; true if anything moved.
bool Move(Pair& p) {
  bool moved = false;
  if (p.to_b_len == 0 && !p.s_eof) {
    const ssize_t r = ::recv(p.s, p.to_b.get(), kChunk, MSG_DONTWAIT);
    if (r > 0) {
      p.to_b_off = 0;
      p.to_b_len = static_cast<size_t>(r);
      moved = true;
    } else if (r == 0) {
      p.s_eof = true;
      moved = true;
    } else if (!Again(errno)) {
      EndPair(p);  // reset or timed out: the holders see the kernel end close
      return true;
    }
  }
  if (p.to_b_len != 0) {
    const ssize_t w =
        real::send(p.b, p.to_b.get() + p.to_b_off, p.to_b_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      p.to_b_off += static_cast<size_t>(w);
      p.to_b_len -= static_cast<size_t>(w);
      moved = true;
    } else if (w < 0 && !Again(errno)) {
      p.to_b_len = 0;  // no holder left to read it
      p.b_hup = true;
    }
  }
  if (p.s_eof && p.to_b_len == 0 && !p.b_shut) {
    real::shutdown(p.b, SHUT_WR);
    p.b_shut = true;
  }
  if (p.to_s_len == 0 && !p.b_eof) {
    const ssize_t r = real::recv(p.b, p.to_s.get(), kChunk, MSG_DONTWAIT);
    if (r > 0) {
      p.to_s_off = 0;
      p.to_s_len = static_cast<size_t>(r);
      moved = true;
    } else if (r == 0 || !Again(errno)) {
      p.b_eof = true;
      pollfd q{p.b, POLLIN, 0};
      if (real::poll(&q, 1, 0) == 1 && (q.revents & (POLLHUP | POLLERR))) p.b_hup = true;
      moved = true;
    }
  }
  if (p.to_s_len != 0) {
    const ssize_t w =
        ::send(p.s, p.to_s.get() + p.to_s_off, p.to_s_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      p.to_s_off += static_cast<size_t>(w);
      p.to_s_len -= static_cast<size_t>(w);
      moved = true;
    } else if (w < 0 && !Again(errno)) {
      EndPair(p);
      return true;
    }
  }
  if (p.b_eof && p.to_s_len == 0) {
    if (p.b_hup) {
      EndPair(p);
      return true;
    }
    if (!p.s_shut) {
      ::shutdown(p.s, SHUT_WR);
      p.s_shut = true;
    }
  }
  return moved;
}

[[noreturn]] void PumpMain(std::vector<Pair>& pairs, int done_w) {
  setsid();
  prctl(PR_SET_NAME, "shake-bridge", 0, 0, 0);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);  // the pump ends with its holders, not by a signal
  // Nothing of the program's but the sockets we pump: a pipe's write end or a listener held
  // here would change what the program's peers see.
  std::vector<int> keep;
  for (const Pair& p : pairs) {
    keep.push_back(p.s);
    keep.push_back(p.b);
  }
  keep.push_back(done_w);
  std::sort(keep.begin(), keep.end());
  unsigned lo = 0;
  for (const int k : keep) {
    if (static_cast<unsigned>(k) > lo) ::close_range(lo, static_cast<unsigned>(k) - 1, 0);
    lo = static_cast<unsigned>(k) + 1;
  }
  ::close_range(lo, ~0u, 0);
  for (Pair& p : pairs) real::fcntl(p.b, F_SETFL, O_NONBLOCK);
  std::vector<pollfd> q(pairs.size() * 2);
  for (;;) {
    bool live = false;
    for (Pair& p : pairs) {
      for (int round = 0; round < 64 && !p.done && Move(p); ++round) {
      }
      live = live || !p.done;
    }
    if (!live) break;
    size_t n = 0;
    for (Pair& p : pairs) {
      if (p.done) continue;
      short se = 0, be = 0;
      if (p.to_b_len == 0 && !p.s_eof) se |= POLLIN;
      if (p.to_s_len != 0) se |= POLLOUT;
      if (p.to_s_len == 0 && !p.b_eof) be |= POLLIN;
      if (p.to_b_len != 0) be |= POLLOUT;
      q[n++] = pollfd{p.s, se, 0};
      q[n++] = pollfd{p.b, be, 0};  // POLLHUP comes regardless
    }
    ::poll(q.data(), n, -1);
  }
  if (g_backend != nullptr) g_backend->EndForkedHelper();
  real::close(done_w);
  _exit(0);
}

// Bridges the stack sockets of `fds` (one fd per socket). On success a[i] is the kernel end
// for fds[i] (close-on-exec), and *done the read end of a pipe that reaches EOF when the pump
// has ended.
bool MakeBridge(const std::vector<int>& fds, std::vector<int>* a, int* done) {
  // The pump is a process of the stack like any other: its forks need slots of their own.
  if (g_backend == nullptr || !g_backend->FreeSlots(2)) {
    errno = EAGAIN;  // fork's errno at a process limit
    return false;
  }
  std::vector<Pair> pairs(fds.size());
  a->assign(fds.size(), -1);
  int dp[2] = {-1, -1};
  auto undo = [&] {
    const int err = errno;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((*a)[i] >= 0) real::close((*a)[i]);
      if (pairs[i].b >= 0) real::close(pairs[i].b);
    }
    if (dp[0] >= 0) real::close(dp[0]);
    if (dp[1] >= 0) real::close(dp[1]);
    a->clear();
    errno = err;
    return false;
  };
  for (size_t i = 0; i < fds.size(); ++i) {
    int sv[2];
    if (real::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return undo();
    (*a)[i] = sv[0];
    pairs[i].b = sv[1];
    pairs[i].s = fds[i];
  }
  if (pipe2(dp, O_CLOEXEC) != 0) return undo();
  // Twice forked, so that the pump is nobody's child to wait for; the first child is ours.
  const pid_t mid = ::fork();
  if (mid < 0) return undo();
  if (mid == 0) {
    const pid_t pump = ::fork();
    if (pump == 0) PumpMain(pairs, dp[1]);
    if (g_backend != nullptr) g_backend->EndForkedHelper();
    _exit(pump < 0 ? 1 : 0);
  }
  int status = 0;
  while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
  for (Pair& p : pairs) real::close(p.b);
  real::close(dp[1]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    for (int& k : *a) real::close(k);
    a->clear();
    real::close(dp[0]);
    errno = EAGAIN;  // fork's errno for a process that could not be made
    return false;
  }
  *done = dp[0];
  return true;
}

Backend* Attached() {
  Backend* b = g_backend;
  return b != nullptr && b->attached() ? b : nullptr;
}

// One fd per stack socket among `fds`, in their order.
std::vector<int> OnePerSocket(const std::vector<int>& fds) {
  std::vector<int> out;
  std::vector<uint32_t> seen;
  for (const int fd : fds) {
    const uint32_t id = Fds()->Get(fd).socket;
    if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
    seen.push_back(id);
    out.push_back(fd);
  }
  return out;
}

// The kernel end of the bridge of `fd`'s socket.
int EndFor(const std::vector<int>& one, const std::vector<int>& a, int fd) {
  const uint32_t id = Fds()->Get(fd).socket;
  for (size_t i = 0; i < one.size(); ++i) {
    if (Fds()->Get(one[i]).socket == id) return a[i];
  }
  return -1;
}

// The placeholder's O_NONBLOCK (its open file's), carried to the kernel end.
void CarryStatusFlags(int placeholder, int end) {
  const int fl = real::fcntl(placeholder, F_GETFL, 0);
  if (fl >= 0 && (fl & O_NONBLOCK)) real::fcntl(end, F_SETFL, O_NONBLOCK);
}

// Replaces the stack fds `fds` by their bridges for good, and drops their table entries.
bool ConvertAll(Backend& b, const std::vector<int>& fds) {
  if (fds.empty()) return true;
  const std::vector<int> one = OnePerSocket(fds);
  std::vector<int> a;
  int done = -1;
  if (!MakeBridge(one, &a, &done)) {
    Log(LogLevel::kError, "cannot bridge a stack socket for code libshake does not see: %s%s",
        strerror(errno), errno == EAGAIN ? " (SHAKE_MAX_PROCS processes share the stack)" : "");
    return false;
  }
  real::close(done);
  for (size_t i = 0; i < one.size(); ++i) CarryStatusFlags(one[i], a[i]);
  // The ends first: the loop below empties the table entries EndFor looks at.
  std::vector<int> ends;
  for (const int fd : fds) ends.push_back(EndFor(one, a, fd));
  for (size_t i = 0; i < fds.size(); ++i) {
    const int fd = fds[i];
    const int end = ends[i];
    const int fl = real::fcntl(fd, F_GETFD, 0);
    if (real::dup3(end, fd, (fl >= 0 && (fl & FD_CLOEXEC)) ? O_CLOEXEC : 0) < 0) continue;
    const FdEntry e = Fds()->Take(fd);
    b.Release(e, fd);  // the pump holds the socket now
    Fds()->Set(fd, FdEntry{FdKind::kBridge, e.socket});
  }
  for (const int k : a) real::close(k);
  return true;
}

}  // namespace

// The swap in place on this thread, whose fds the hand-off of its spawn leaves out.
thread_local const SpawnSwap* t_active_swap = nullptr;

bool BridgeInPlace(int fd) {
  Backend* b = Attached();
  if (b == nullptr || InsideShim()) return false;
  const FdEntry e = Fds()->Get(fd);
  if (!b->Bridgeable(e)) return false;
  std::vector<int> fds;
  Fds()->ForEach(0, ~0u, [&](int f, FdEntry x) {
    if (x == e) fds.push_back(f);
  });
  return ConvertAll(*b, fds);
}

void BridgeForExec(bool preloaded) {
  Backend* b = Attached();
  if (b == nullptr || InsideShim()) return;
  std::vector<int> fds;
  Fds()->ForEach(0, preloaded ? 2u : ~0u, [&](int f, FdEntry x) {
    const int fl = real::fcntl(f, F_GETFD, 0);
    if (fl < 0 || (fl & FD_CLOEXEC)) return;
    if (b->Bridgeable(x)) fds.push_back(f);
  });
  ConvertAll(*b, fds);
}

bool EnvPreloadsShake(char* const* envp) {
  for (size_t i = 0; envp != nullptr && envp[i] != nullptr; ++i) {
    if (std::strncmp(envp[i], "LD_PRELOAD=", 11) == 0) {
      return std::strstr(envp[i] + 11, "libshake") != nullptr;
    }
  }
  return false;
}

SpawnSwap::SpawnSwap(Scope scope, const std::vector<int>& extra) {
  Backend* b = Attached();
  if (b == nullptr || InsideShim()) return;
  std::vector<int> fds;
  Fds()->ForEach(0, scope == Scope::kStdio ? 2u : ~0u, [&](int f, FdEntry x) {
    const int fl = real::fcntl(f, F_GETFD, 0);
    if (fl < 0) return;
    const bool wanted = !(fl & FD_CLOEXEC) || std::find(extra.begin(), extra.end(), f) != extra.end();
    if (wanted && b->Bridgeable(x)) fds.push_back(f);
  });
  if (fds.empty()) return;
  const std::vector<int> one = OnePerSocket(fds);
  std::vector<int> a;
  if (!MakeBridge(one, &a, &done_)) {
    Log(LogLevel::kError, "cannot bridge a stack socket for a child libshake does not see: %s%s",
        strerror(errno), errno == EAGAIN ? " (SHAKE_MAX_PROCS processes share the stack)" : "");
    return;
  }
  for (size_t i = 0; i < one.size(); ++i) CarryStatusFlags(one[i], a[i]);
  for (const int fd : fds) {
    const int fl = real::fcntl(fd, F_GETFD, 0);
    const int cloexec = (fl >= 0 && (fl & FD_CLOEXEC)) ? O_CLOEXEC : 0;
    const int saved = real::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (saved < 0) continue;
    if (real::dup3(EndFor(one, a, fd), fd, cloexec) < 0) {
      real::close(saved);
      continue;
    }
    items_.push_back(Item{fd, saved, cloexec});
  }
  for (const int k : a) real::close(k);
  if (!items_.empty()) t_active_swap = this;
}

SpawnSwap::~SpawnSwap() {
  Restore();
  if (done_ >= 0) real::close(done_);
}

bool SwappedNow(int fd) {
  if (t_active_swap == nullptr) return false;
  for (const auto& it : t_active_swap->items_) {
    if (it.fd == fd) return true;
  }
  return false;
}

void SpawnSwap::Restore() {
  if (t_active_swap == this) t_active_swap = nullptr;
  if (restored_) return;
  restored_ = true;
  for (const Item& it : items_) {
    real::dup3(it.saved, it.fd, it.cloexec);
    real::close(it.saved);
  }
  items_.clear();
}

void SpawnSwap::WaitDrained(int ms) {
  if (done_ < 0) return;
  pollfd q{done_, POLLIN, 0};
  char c;
  while (real::poll(&q, 1, ms) == 1 && real::read(done_, &c, 1) > 0) {
  }
  real::close(done_);
  done_ = -1;
}

int SpawnSwap::TakeDone() {
  const int d = done_;
  done_ = -1;
  return d;
}

}  // namespace shake::shim
