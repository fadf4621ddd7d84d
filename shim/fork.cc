// Processes: fork, exit, and what is left when a process is gone.
//
// Fork (founders' decision 3): the parent holds the stack lock across the fork, so the child's
// references are copied atomically: a new process slot gets the parent's counts on every socket
// and epoll instance, and a keeper connection of its own (made by the parent before the fork,
// sent to the keeper with the child's slot), which tells the keeper when the child is gone. The
// child inherits the descriptors of the device and the doorbells of its epoll instances (the
// instance is shared with the parent, as the kernel's is); its thread's doorbell is its own.
//
// Exit: a process that exits normally releases its references in a library destructor, as the
// kernel closes its files: closed sockets keep their data and FIN in the stack, and the keeper
// goes on sending them, sends them again when lost, and holds TIME-WAIT. A process that ends
// without destructors (_exit, a signal, SIGKILL) is released by the keeper when its connection
// closes (keeper.cc): no unsent byte is lost because a program exited.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"
#include "shim/keeper_link.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"

namespace shake::shim {

void CloseSocketRecord(Shared& sh, std::pmr::memory_resource* mem, Instant now, uint32_t index) {
  SocketRec& r = sh.socks[index];
  if (r.id == kNoSocket) return;
  DropWatchesOfSocket(sh, index);
  for (uint32_t n = r.waits; n != 0; n = sh.waits[n - 1].next) {
    QueueRing(sh, sh.waits[n - 1].doorbell);  // a thread blocked on it finds it gone
  }
  const SocketId id = r.id;
  r.id = kNoSocket;
  r.refs.Reset(sh.limits.procs, mem);
  sh.stack->Close(now, id);
}

void ReleaseProcess(Shared& sh, std::pmr::memory_resource* mem, Instant now, int slot) {
  for (uint32_t i = 0; i < sh.high; ++i) {
    SocketRec& r = sh.socks[i];
    if (r.id == kNoSocket || r.refs.Clear(slot) == 0) continue;
    if (r.refs.total() == 0) CloseSocketRecord(sh, mem, now, i);
  }
  for (uint32_t e = 0; e < sh.epoll_high; ++e) {
    EpollRec& er = sh.epolls[e];
    if (!er.used || er.refs.Clear(slot) == 0) continue;
    if (er.refs.total() == 0) FreeEpollRecord(sh, mem, e + 1);
  }
  for (uint32_t d = 0; d < sh.doorbell_high; ++d) {
    if (sh.doorbells[d].owner == slot) sh.doorbells[d].owner = -1;
  }
  // Threads that died asleep on the device no longer read it.
  sh.device_sleepers.fetch_sub(__atomic_exchange_n(&sh.procs[slot].device_sleepers, 0u,
                                                   __ATOMIC_ACQ_REL),
                               std::memory_order_acq_rel);
  Handoff& h = sh.procs[slot].handoff;
  if (h.fds != nullptr) mem->deallocate(h.fds, h.count * sizeof(HandoffFd), alignof(HandoffFd));
  sh.procs[slot] = ProcSlot{};
}

void Backend::AtForkPrepare() {
  if (InsideShim() || !attached()) return;
  lock_->lock();  // held across fork: the child's references are copied atomically
  Shared& sh = *sh_;
  child_slot_ = ClaimSlotLocked(-1);
  if (child_slot_ < 0) {
    Log(LogLevel::kError,
        "more than %u processes share the stack (SHAKE_MAX_PROCS); the child's stack sockets "
        "are not its own",
        sh.limits.procs);
    return;
  }
  std::pmr::memory_resource* mem = arena_->resource();
  for (uint32_t i = 0; i < sh.high; ++i) {
    SocketRec& r = sh.socks[i];
    if (r.id == kNoSocket) continue;
    if (const uint16_t n = r.refs.Get(slot_)) r.refs.Add(child_slot_, n, sh.limits.procs, mem);
  }
  for (uint32_t e = 0; e < sh.epoll_high; ++e) {
    EpollRec& er = sh.epolls[e];
    if (!er.used) continue;
    if (const uint16_t n = er.refs.Get(slot_)) er.refs.Add(child_slot_, n, sh.limits.procs, mem);
  }
  // The child's liveness: a connection of its own, claimed for its slot now.
  ReentrancyGuard guard;
  child_conn_ = ConnectKeeper(KeeperName(sh.device));
  if (child_conn_ >= 0) {
    LinkClaim claim;
    claim.slot = child_slot_;
    claim.generation = sh.procs[child_slot_].generation;
    if (!SendLink(child_conn_, &claim, sizeof claim)) {
      real::close(child_conn_);
      child_conn_ = -1;
    }
  }
}

void Backend::AtForkParent() {
  if (InsideShim() || !attached()) return;
  if (child_conn_ >= 0) {
    real::close(child_conn_);  // the child holds its own copy
    child_conn_ = -1;
  }
  child_slot_ = -1;
  lock_->unlock();
}

void Backend::AtForkChild() {
  if (InsideShim() || !attached()) return;
  // The lock belongs to the parent's thread, which releases it.
  ArenaLock::ForgetHeldInChild();
  if (handoff_slot_ >= 0) {  // another thread's spawn was pending: its copies are not ours
    CloseTemps();
    handoff_slot_ = -1;
    exec_locked_ = false;
  }
  if (child_slot_ < 0) return;
  slot_ = child_slot_;
  child_slot_ = -1;
  __atomic_store_n(&sh_->procs[slot_].pid, static_cast<int32_t>(getpid()), __ATOMIC_RELEASE);
  ReentrancyGuard guard;
  if (child_conn_ >= 0) {
    const int hidden = real::fcntl(child_conn_, F_DUPFD_CLOEXEC,
                                   static_cast<unsigned long>(hidden_base_));
    if (hidden >= 0) {
      real::close(child_conn_);
      child_conn_ = hidden;
    }
    Fds()->Set(child_conn_, FdEntry{FdKind::kHidden, 0});
  }
  if (conn_ >= 0) {
    real::close(conn_);  // the parent's liveness, not ours
    Fds()->Take(conn_);
  }
  conn_ = child_conn_;
  child_conn_ = -1;
  ForgetThreadDoorbell();
  // The parent's own channel is the parent's to read; ours is opened before we first wait.
  if (channel_own_) channel_own_ = false;
  if (g_trace != nullptr) g_trace->AfterFork();
}

void Backend::AtExit() {
  if (InsideShim() || ArenaLock::HeldByThisThread() || !attached()) return;
  if (exited_.exchange(true)) return;
  {
    Session s(*this);
    ReleaseProcess(s.sh(), arena_->resource(), s.now(), slot_);
    s.Serve();  // the FINs leave now; the keeper sends them again if they are lost
  }
  ReentrancyGuard guard;
  if (conn_ >= 0) real::close(conn_);
  conn_ = -1;
}

namespace {
__attribute__((destructor)) void LibraryDestructor() {
  if (g_backend != nullptr) g_backend->AtExit();
}
}  // namespace

}  // namespace shake::shim
