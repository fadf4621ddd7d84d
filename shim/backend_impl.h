// The stack-backed StackBackend, shared by the files that implement it. Internal to shim/.
//
// How a process uses the stack
// ----------------------------
// One stack serves every program on a device (shared.h). A process joins it the first time one
// of its sockets is routed through the device (attach.cc): it asks the keeper for the arena and
// the device, maps the arena where every process has it, claims a process slot, and from then on
// drives the stack itself, on its own threads: there is no engine thread in an application.
//
//  - A socket call takes the stack lock, does its work on the Stack, lets the stack run its due
//    timers and send what it queued (Stack::Poll), puts those frames on the device, and unlocks
//    (Session, below). A send, connect, shutdown or close also reads what the device holds by
//    then, as the kernel handles a peer's immediate answer in the caller's context.
//  - A thread with nothing to do sleeps in the kernel (readiness.cc) with the device in its
//    wait set, so the frame that ends its wait is read and handled by the thread that waits for
//    it: one wake-up, as with the kernel's own sockets. When a frame read by one thread makes
//    another's socket ready, the reader rings the other's doorbell (doorbell.h).
//  - The keeper (keeper.cc) runs timers and reads the device when no process is around to, and
//    closes the sockets of a process that dies.
//
// Files: attach.cc (joining a stack, creating one, the keeper's start), fork.cc (fork, exit),
// handoff.cc (exec, posix_spawn), socket.cc (bind, connect, listen, accept, references),
// data.cc (recv, send, sendfile), sockopt.cc (options, names, ioctl), readiness.cc (epoll,
// poll, select, blocking waits), keeper.cc (the keeper process).
#pragma once

#include <poll.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "io/device.h"
#include "io/pcap.h"
#include "io/pump.h"
#include "io/trace_log.h"
#include "io/stack_host.h"
#include "shim/arena.h"
#include "shim/backend.h"
#include "shim/config.h"
#include "shim/shared.h"
#include "stack/stack.h"

namespace shake::shim {

class Backend;
extern Backend* g_backend;
extern Shared* g_shared;              // the stack this process is attached to
extern io::TraceLogWriter* g_trace;   // SHAKE_TRACE of the stack, if any

// Shared by every file: how an errno outcome is written.
inline Outcome Fail(int err) {
  errno = err;
  return Outcome::Done(-1);
}

Instant DeadlineAfterNanos(int64_t ns);  // Never for ns <= 0
timespec RelativeTo(Instant deadline);

// One locked pass over the stack: constructed, it holds the stack lock; destroyed, it lets the
// stack run due timers and emit queued output, writes the frames to the device, publishes the
// next deadline for the keeper, unlocks, and sends the rings queued meanwhile.
class Session {
 public:
  explicit Session(Backend& b);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Stack& st();
  Shared& sh();
  Instant now();  // read once per session
  // Reads what the device holds now (bounded) and handles it.
  void Drain();
  // Puts the output produced so far on the device, then reads what came back meanwhile: the
  // work the kernel does in the caller's context on the way out of a send or close.
  void Serve();
  // Reads what is waiting on the device without sending first: before a close, so that a FIN
  // that has arrived is seen, as the kernel would have processed it on arrival (the close is
  // then a passive one, LAST-ACK, not the active one that leaves TIME-WAIT here).
  void Pull();

 private:
  Backend& b_;
  std::optional<Instant> now_;
};

// One thread's wait for stack sockets to change (recv, accept, connect, poll, select): the
// sockets' readiness changes ring this thread's doorbell.
class Waiter {
 public:
  explicit Waiter(Backend& b) : b_(b) {}
  ~Waiter();
  // Under a session: from now on, a change of `rec` rings this thread. False when no doorbell
  // or wait record is available (the caller then polls with a short timeout).
  bool Watch(Session& s, SocketRec& rec);
  // Without the lock: sleeps until a ring, frames on the device, one of `extra` (kernel fds,
  // their revents are filled in), the deadline or a signal (mask as ppoll's). Returns the
  // ppoll result: -1 with errno EINTR, 0 on timeout, > 0 otherwise.
  int Sleep(Instant deadline, const sigset_t* mask, pollfd* extra = nullptr, nfds_t n = 0);
  // Under the next session: stops watching and handles what woke us.
  void Done(Session& s);

 private:
  Backend& b_;
  uint32_t nodes_[64] = {};  // WaitNode + 1, per watched socket
  int nnodes_ = 0;
  uint32_t bell_ = 0;
  bool armed_ = false;
  bool device_ready_ = false;
  bool device_polled_ = false;
};

class Backend final : public StackBackend {
 public:
  explicit Backend(const Config& c) : config_(c) {}
  // At load: adopts an exec hand-off if there is one. Joining a stack otherwise waits for the
  // first socket routed through the device.
  bool Init();

  // ---- StackBackend ------------------------------------------------------------------------
  Outcome Bind(int fd, const sockaddr* addr, socklen_t len) override;
  Outcome Connect(int fd, const sockaddr* addr, socklen_t len) override;
  Outcome Listen(int fd, int backlog) override;
  void NoteOption(int fd, int level, int name, const void* value, socklen_t len) override;
  void NoteEpoll(int ep) override;
  Outcome Accept(FdEntry e, int fd, sockaddr* addr, socklen_t* len, int flags) override;
  Outcome Recv(FdEntry e, int fd, msghdr* msg, int flags) override;
  Outcome Send(FdEntry e, int fd, const msghdr* msg, int flags) override;
  Outcome SendFile(FdEntry e, int fd, int in_fd, off64_t* offset, size_t count) override;
  Outcome Shutdown(FdEntry e, int fd, int how) override;
  Outcome GetSockOpt(FdEntry e, int fd, int level, int name, void* v, socklen_t* l) override;
  Outcome SetSockOpt(FdEntry e, int fd, int level, int name, const void* v,
                     socklen_t l) override;
  Outcome GetSockName(FdEntry e, int fd, sockaddr* addr, socklen_t* len) override;
  Outcome GetPeerName(FdEntry e, int fd, sockaddr* addr, socklen_t* len) override;
  Outcome Ioctl(FdEntry e, int fd, unsigned long request, void* arg) override;
  void NoteFlags(FdEntry e, int fd) override;
  void Retain(FdEntry e, int newfd) override;
  void Release(FdEntry e, int fd) override;
  Outcome Poll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) override;
  Outcome Select(int n, fd_set* r, fd_set* w, fd_set* x, const timespec* timeout,
                 const sigset_t* mask) override;
  Outcome EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) override;
  Outcome EpollWait(int ep, epoll_event* events, int max, const timespec* timeout,
                    const sigset_t* mask) override;
  void PrepareFork() override {}  // the pthread_atfork handlers below do the work
  void AfterForkParent() override {}
  void AfterForkChild() override {}
  const char* PrepareExec() override;
  void ExecFailed() override;
  const char* PrepareSpawn(bool has_file_actions) override;
  void SpawnDone(pid_t pid) override;

  // ---- fork.cc -----------------------------------------------------------------------------
  void AtForkPrepare();
  void AtForkParent();
  void AtForkChild();
  void AtExit();

  bool attached() const { return attached_.load(std::memory_order_acquire); }
  // True when a blocking call interrupted by a signal should restart (SA_RESTART).
  bool RestartAfterSignal() const;
  // ---- bridge.cc ---------------------------------------------------------------------------
  // True for a stack socket a bridge can carry (a connection, not a listener).
  bool Bridgeable(FdEntry e);
  // The end of a helper process forked by libshake (a bridge's pump): releases its references
  // as an exit would, without the program's exit handlers.
  void EndForkedHelper();
  // True when `n` process slots are free (a bridge's two forks take two).
  bool FreeSlots(uint32_t n);
  Shared& sh() { return *sh_; }
  Stack& stack() { return *stack_; }
  int slot() const { return slot_; }

 private:
  friend class Session;
  friend class Waiter;

  // ---- data.cc -----------------------------------------------------------------------------
  // recvmsg(MSG_ERRQUEUE): the MSG_ZEROCOPY completions the stack holds for the socket.
  Outcome RecvErrQueue(FdEntry e, msghdr* msg);

  // ---- attach.cc ---------------------------------------------------------------------------
  // Joins (or creates) the stack of config_'s device, once. False when the stack cannot be
  // joined: the reason was logged once, and decision points pass the socket to the kernel
  // (fallback) or fail with attach_errno_.
  bool EnsureAttached();
  bool AttachLocked(int conn, const char* resume);
  bool CreateStack(std::string* error);
  bool MapFromKeeper(int conn, std::string* error, int* status);
  void SetUpProcess();
  // Channels. A process reads a channel of the device of its own when the device can share
  // its flows (an AF_PACKET fanout socket, a queue of a multi-queue TUN): the flows it reads are
  // then its own, and it reads them outside the stack lock. Otherwise every process reads the
  // keeper's one descriptor, under the lock. A fork child starts on its parent's channel, which
  // it may write but not read, and opens its own before it first waits for the stack.
  bool OpenOwnChannel();
  // The device's frames this process may read now, opening its own channel first if it is due.
  bool MayRead();
  // Own channel: reads one batch outside the lock, for the next session's Drain to handle.
  void ReadOwn();
  int ClaimSlotLocked(int pid);
  void WireDevice(int devfd);
  // True when `dst` (host order) is routed through the stack's device.
  bool Routed(uint32_t dst) const;

  // ---- handoff.cc --------------------------------------------------------------------------
  bool AdoptHandoff(const char* entry);
  bool AdoptHandoffChannel();
  bool BuildHandoffLocked(int to, int conn);
  void DropHandoffLocked(int slot);
  void CloseTemps();
  bool CanHandOff() const;

  // ---- socket.cc ---------------------------------------------------------------------------
  // A record for stack socket `id`, referenced once by this process. Under the session.
  SocketRec* AdoptLocked(Session& s, SocketId id, bool nonblock);
  // Drops one reference of process `slot` to record `index`; the last reference anywhere
  // closes the socket in the stack. Under the session.
  void DropRefLocked(Session& s, uint32_t index, int slot);
  // Replaces kernel socket `fd` by a new stack socket (same number, flags and options).
  int TakeOver(int fd, SocketId* out_id);
  SocketId Rebirth(Session& s, SocketId old);
  // The program's epoll registrations of kernel fd `fd` (read from /proc/self/fdinfo of each
  // epoll instance it created), to be made again once the fd is a stack socket.
  struct Carried {
    int ep;
    epoll_event ev;
  };
  int CollectRegistrations(int fd, Carried* out, int max);
  Outcome AcceptOnce(Session& s, SocketRec& r, FdEntry e, int flags, sockaddr* addr,
                     socklen_t* len, bool* again);
  void RunDeferred();

  // ---- sockopt.cc --------------------------------------------------------------------------
  // The options a program set on kernel socket `fd` before it became a stack socket (NoteOption
  // recorded them), taken out of the record; false when there are none.
  struct PendingOptions {
    struct Option {
      int level;
      int name;
      socklen_t len;
      unsigned char value[16];
    };
    int n = 0;
    Option opts[24];
  };
  bool TakeOptions(int fd, PendingOptions* out);
  void ApplyOptions(const PendingOptions& p, SocketId id);

  // ---- readiness.cc ------------------------------------------------------------------------
  // The doorbell of this thread (index + 1), created on first use; 0 when none can be made.
  uint32_t ThreadDoorbell(int* fd);
  void ForgetThreadDoorbell();
  // The EpollRec of epoll fd `ep` (index + 1), made when `create`; 0 if none.
  uint32_t EpollOf(Session& s, int ep, bool create);
  void ReleaseEpollLocked(uint32_t e, int slot);

  Config config_;
  std::mutex attach_mu_;
  std::atomic<bool> attached_{false};
  bool attach_failed_ = false;
  int attach_errno_ = 0;
  Arena* arena_ = nullptr;
  std::unique_ptr<ArenaLock> lock_;
  Shared* sh_ = nullptr;
  Stack* stack_ = nullptr;
  int slot_ = -1;
  int conn_ = -1;   // the keeper connection (hidden): this process's liveness
  int memfd_ = -1;  // the arena (hidden), to restart a keeper that died
  std::unique_ptr<io::Device> dev_;
  bool channel_own_ = false;       // dev_ is this process's own channel
  bool channel_want_own_ = false;  // the device shares flows: processes read their own
  bool channel_failed_ = false;    // the keeper could not give one: this process reads nothing
  std::mutex channel_mu_;
  std::unique_ptr<io::Pump> pump_;
  std::unique_ptr<TxOrder> tx_order_;
  std::unique_ptr<io::StackHandler> handler_;
  std::unique_ptr<io::PcapWriter> pcap_;
  std::unique_ptr<io::TraceLogWriter> trace_;
  int hidden_base_ = 1024;
  bool lib_at_base_ = false;
  uint64_t lib_id_[4] = {};
  // Per EpollRec: this process's descriptor of the instance's doorbell, or -1 (private memory:
  // a fork child's copy matches its copy of the descriptors), and the device descriptor this
  // process registered in the instance (its channel may have changed since).
  int* epoll_bell_fd_ = nullptr;
  int* epoll_dev_fd_ = nullptr;
  std::atomic<bool> exited_{false};
  // Epoll instances the program created (a bit per fd number), whose registrations of a socket
  // we take over must follow it.
  static constexpr uint32_t kMaxEpollFds = 1 << 16;
  std::atomic<uint64_t> epolls_[kMaxEpollFds / 64] = {};
  // A pending hand-off: its slot, the exec-surviving descriptors opened for it.
  int handoff_slot_ = -1;
  bool exec_locked_ = false;
  int temps_[4] = {};
  int ntemps_ = 0;
  char handoff_entry_[96] = {};
  // Fork: the slot and keeper connection made for the child before the fork.
  int child_slot_ = -1;
  int child_conn_ = -1;
};

// Kept by the stack as its observer: a static object, so at the same address in every image.
StackObserver* TheObserver();

// The socket's readiness changed: queue its watches on their epoll instances and ring whoever
// sleeps on it. Any process, under the lock (readiness.cc).
void NotifySocket(Shared& sh, SocketId id);

}  // namespace shake::shim
