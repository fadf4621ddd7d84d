// Exec and posix_spawn: stack sockets survive into the new image.
//
// A new image inherits the fds but not the arena mapping, the fd table or libshake's state. So,
// before exec (interpose.cc's exec family -> PrepareExec), under the lock, the process records
// a Handoff in its slot: every stack fd number, its kind and socket, and whether it is
// close-on-exec (the kernel closes those, so the new image drops their references). Its keeper
// connection gets an exec-surviving copy, whose number goes into the new image's environment:
//   SHAKE_HANDOFF=<slot>:<token>:<connection fd>
// The lock is held across execve, so no thread of ours is inside the stack when the kernel ends
// them; exec releases the robust lock as owner-dead and the next locker carries on. If execve
// returns (it failed), ExecFailed cancels the hand-off.
//
// The new image (Init -> AdoptHandoff), before the program runs, asks the keeper over that
// connection for the arena and the device, maps the arena, checks the token, takes the slot
// over and marks the surviving numbers as stack fds. The connection stays the process's
// liveness: an image without libshake keeps it open, and the sockets live until that process
// ends, as kernel sockets held by it would.
//
// posix_spawn (without file actions) is fork + exec in a child that runs none of our code:
// PrepareSpawn claims a slot for the child (pid -1), copies our references into it as a fork
// does, opens a keeper connection claimed for that slot, and records the hand-off there;
// SpawnDone closes our copies and writes the child's pid.
//
// Not handed off: the stack sockets at 0..2 (the new image's stdio reaches them through libc's
// internal calls), every connection when the new image does not load libshake, and the stack
// sockets of posix_spawn with file actions, system() and popen() (glibc spawns through internal
// calls, and file actions renumber fds): those reach the new image as bridges (bridge.cc).
// Listeners are handed off only to a preloaded image. Epoll instances carried across exec are
// not (the new image does not know their stack registrations).
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "shim/backend_impl.h"
#include "shim/bridge.h"
#include "shim/guard.h"
#include "shim/keeper_link.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"

namespace shake::shim {

bool Backend::CanHandOff() const { return attached() && lib_at_base_; }

namespace {
// The entries the new image takes over: stack sockets, and bridges (for getpeername and the
// socket options of the stack socket behind them).
bool Handed(FdKind k) {
  return k == FdKind::kStack || k == FdKind::kListener || k == FdKind::kBridge;
}
}  // namespace

void Backend::CloseTemps() {
  for (int i = 0; i < ntemps_; ++i) {
    Fds()->Take(temps_[i]);
    real::close(temps_[i]);
  }
  ntemps_ = 0;
}

void Backend::DropHandoffLocked(int slot) {
  Handoff& h = sh_->procs[slot].handoff;
  if (h.fds != nullptr) {
    arena_->resource()->deallocate(h.fds, h.count * sizeof(HandoffFd), alignof(HandoffFd));
  }
  h = Handoff{};
}

// Records the hand-off to the image that takes slot `to`, whose keeper connection is `conn`
// (exec-surviving, listed in temps_). Under the lock.
bool Backend::BuildHandoffLocked(int to, int conn) {
  ReentrancyGuard guard;
  uint64_t token = 0;
  if (getrandom(&token, sizeof token, 0) != sizeof token) return false;
  token |= 1;
  uint32_t n = 0;
  Fds()->ForEach(0, ~0u, [&](int fd, FdEntry e) {
    if (Handed(e.kind) && !SwappedNow(fd)) ++n;
  });
  HandoffFd* fds = nullptr;
  if (n != 0) {
    try {
      fds = static_cast<HandoffFd*>(
          arena_->resource()->allocate(n * sizeof(HandoffFd), alignof(HandoffFd)));
    } catch (...) {
      return false;
    }
  }
  uint32_t k = 0;
  Fds()->ForEach(0, ~0u, [&](int fd, FdEntry e) {
    if (!Handed(e.kind) || k == n) return;
    if (SwappedNow(fd)) return;  // a bridge now: a kernel socket in the new image
    const int fl = real::fcntl(fd, F_GETFD, 0);
    if (sh_->Rec(e.socket) == nullptr || fl < 0) return;
    HandoffFd h;
    h.fd = fd;
    h.socket = e.socket;
    h.kind = e.kind;
    h.cloexec = (fl & FD_CLOEXEC) != 0;
    new (&fds[k++]) HandoffFd(h);
  });
  for (uint32_t j = k; j < n; ++j) new (&fds[j]) HandoffFd();  // an fd that went meanwhile
  DropHandoffLocked(to);
  sh_->procs[to].handoff = Handoff{token, fds, n};
  handoff_slot_ = to;
  snprintf(handoff_entry_, sizeof handoff_entry_, "SHAKE_HANDOFF=%x:%llx:%d",
           static_cast<unsigned>(to), static_cast<unsigned long long>(token), conn);
  return true;
}

const char* Backend::PrepareExec() {
  if (!CanHandOff() || InsideShim() || ArenaLock::HeldByThisThread()) return nullptr;
  lock_->lock();
  ReentrancyGuard guard;
  // One hand-off at a time per process (a spawn on another thread may be pending).
  const int conn =
      handoff_slot_ < 0 ? real::fcntl(conn_, F_DUPFD, static_cast<unsigned long>(hidden_base_))
                        : -1;
  if (conn < 0) {
    lock_->unlock();
    return nullptr;
  }
  Fds()->Set(conn, FdEntry{FdKind::kHidden, 0});
  temps_[0] = conn;
  ntemps_ = 1;
  if (!BuildHandoffLocked(slot_, conn)) {
    CloseTemps();
    lock_->unlock();
    return nullptr;
  }
  exec_locked_ = true;
  return handoff_entry_;
}

void Backend::ExecFailed() {
  if (!exec_locked_) return;
  exec_locked_ = false;
  CloseTemps();
  DropHandoffLocked(handoff_slot_);
  handoff_slot_ = -1;
  lock_->unlock();
}

const char* Backend::PrepareSpawn(bool has_file_actions) {
  if (has_file_actions || !CanHandOff() || InsideShim() || ArenaLock::HeldByThisThread()) {
    return nullptr;
  }
  Session s(*this);
  Shared& sh = s.sh();
  if (handoff_slot_ >= 0) return nullptr;  // one hand-off at a time per process
  const int c = ClaimSlotLocked(-1);
  if (c < 0) return nullptr;
  std::pmr::memory_resource* mem = arena_->resource();
  // As for fork: the child holds every descriptor we hold until its exec closes some.
  for (uint32_t i = 0; i < sh.high; ++i) {
    SocketRec& r = sh.socks[i];
    if (r.id == kNoSocket) continue;
    if (const uint16_t n = r.refs.Get(slot_)) r.refs.Add(c, n, sh.limits.procs, mem);
  }
  ReentrancyGuard guard;
  int conn = ConnectKeeper(KeeperName(sh.device));
  LinkClaim claim;
  claim.slot = c;
  claim.generation = sh.procs[c].generation;
  if (conn >= 0 && SendLink(conn, &claim, sizeof claim)) {
    const int surviving = real::fcntl(conn, F_DUPFD, static_cast<unsigned long>(hidden_base_));
    real::close(conn);
    conn = surviving;
  } else if (conn >= 0) {
    real::close(conn);
    conn = -1;
  }
  if (conn >= 0) {
    Fds()->Set(conn, FdEntry{FdKind::kHidden, 0});
    temps_[0] = conn;
    ntemps_ = 1;
  }
  if (conn < 0 || !BuildHandoffLocked(c, conn)) {
    CloseTemps();
    ReleaseProcess(sh, mem, s.now(), c);
    return nullptr;
  }
  return handoff_entry_;
}

void Backend::SpawnDone(pid_t pid) {
  if (!attached()) return;
  Session s(*this);
  CloseTemps();  // the child has its own copy of the connection
  const int c = handoff_slot_;
  handoff_slot_ = -1;
  if (c < 0) return;
  if (pid < 0) {
    ReleaseProcess(s.sh(), arena_->resource(), s.now(), c);
  } else if (s.sh().procs[c].pid == -1) {
    s.sh().procs[c].pid = pid;  // unless the child's image has claimed the slot already
  }
}

// The new image's side. False (and the hand-off's sockets released by the keeper when the
// connection closes) if any step fails.
bool Backend::AdoptHandoff(const char* entry) {
  unsigned slot = 0;
  unsigned long long token = 0;
  int conn = -1;
  if (sscanf(entry, "%x:%llx:%d", &slot, &token, &conn) != 3 || conn < 0) return false;
  real::fcntl(conn, F_SETFD, FD_CLOEXEC);
  std::lock_guard<std::mutex> once(attach_mu_);
  if (!AttachLocked(conn, entry)) {
    Log(LogLevel::kWarn, "cannot take over the stack sockets inherited across exec");
    return false;
  }
  bool ok = false;
  {
    lock_->lock();
    if (slot < sh_->limits.procs) {
      ProcSlot& ps = sh_->procs[slot];
      const int32_t me = static_cast<int32_t>(getpid());
      if (ps.handoff.token == token && (ps.pid == -1 || ps.pid == me)) {
        ps.pid = me;
        slot_ = static_cast<int>(slot);
        ok = true;
      }
    }
    lock_->unlock();
  }
  if (!ok) {
    Log(LogLevel::kWarn, "a stale stack hand-off was found and ignored");
    attach_failed_ = true;
    attach_errno_ = ENODEV;
    return false;
  }
  attached_.store(true, std::memory_order_release);
  Session s(*this);
  Handoff& ho = sh_->procs[slot_].handoff;
  for (uint32_t j = 0; j < ho.count; ++j) {
    const HandoffFd& h = ho.fds[j];
    if (h.fd < 0 || sh_->Rec(h.socket) == nullptr) continue;
    if (h.cloexec) {  // the kernel closed it at exec
      if (h.kind != FdKind::kBridge) DropRefLocked(s, IndexOf(h.socket), slot_);
    } else {
      Fds()->Set(h.fd, FdEntry{h.kind, h.socket});
    }
  }
  DropHandoffLocked(slot_);
  Log(LogLevel::kInfo, "took over the stack sockets of the image before exec (slot %d)", slot_);
  return true;
}

// After the hand-off: like any process, the new image opens a channel of its own when it first
// waits for the stack; its old image's channel is the keeper's to finish reading.
bool Backend::AdoptHandoffChannel() {
  return true;
}

}  // namespace shake::shim
