// The shared state of one stack: what every process using the stack, and its keeper, map.
//
// One stack serves one device and address (founders' decision 3b). Its state lives in an arena
// (arena.h): a memfd mapped MAP_SHARED at the same address in every process, so the Stack built
// in it and the plain pointers below are valid everywhere. The keeper (keeper.cc) holds the
// memfd and hands it to each process that attaches (attach.cc); nothing else names it.
//
// Everything here is guarded by the arena's robust process-shared mutex unless the field says
// it is atomic. Records refer to each other by index + 1 (0 = none), so a record can be checked
// against the table it claims to be in.
//
//   Shared            the root: configuration, limits, the Stack, the tables below
//   SocketRec         per stack socket, indexed like the stack's SocketId (IndexOf)
//   EpollRec, Watch   epoll instances that watch stack sockets, and their registrations
//   Doorbell          how a sleeping thread is woken from any process (doorbell.h)
//   WaitNode          a thread blocked on one socket (recv, accept, poll, ...)
//   ProcSlot          a process attached to the stack; Handoff: its pending exec/spawn
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory_resource>

#include "io/engine.h"
#include "shim/fd_table.h"
#include "stack/stack.h"

namespace shake::shim {

inline constexpr uint64_t kSharedMagic = 0x6b61687365686b73;  // "skhsehak"
inline constexpr uint32_t kSharedVersion = 2;
inline constexpr uint32_t kIndexBits = 20;  // the stack's SocketId: generation << 20 | slot+1
inline constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;

inline uint32_t IndexOf(SocketId id) { return (id & kIndexMask) - 1; }

// Sizes fixed when the stack is created (SHAKE_MAX_SOCKETS, SHAKE_MAX_PROCS; see config.h).
// Tables are reserved in the arena at these sizes and touched only as they are used.
struct Limits {
  uint32_t sockets = 1u << 18;  // stack sockets at once, connections in TIME-WAIT included
  uint32_t procs = 256;         // processes attached at once
  uint32_t epolls = 1u << 14;   // epoll instances that watch stack sockets
  uint32_t watches = 1u << 19;  // registrations of stack sockets in epoll instances
  uint32_t doorbells = 1u << 14;
  uint32_t waits = 1u << 16;    // (thread, socket) pairs blocked at one time
};

// How many descriptors each process holds on one object (a socket, an epoll instance). Four
// holders fit inline (most sockets have one); more spill into a per-slot array in the arena.
class RefSet {
 public:
  uint32_t total() const { return total_; }
  uint16_t Get(int slot) const;
  // False when the count would overflow or the spill array cannot be allocated.
  bool Add(int slot, int n, uint32_t procs, std::pmr::memory_resource* mem);
  // Drops one reference of `slot`; false when it had none.
  bool Sub(int slot);
  // Drops every reference of `slot`; returns how many there were.
  uint32_t Clear(int slot);
  void Reset(uint32_t procs, std::pmr::memory_resource* mem);  // frees the spill array
  template <typename F>  // fn(slot, count) for each holder
  void ForEach(uint32_t procs, F&& fn) const {
    if (spill_ != nullptr) {
      for (uint32_t p = 0; p < procs; ++p) {
        if (spill_[p] != 0) fn(static_cast<int>(p), spill_[p]);
      }
      return;
    }
    for (int i = 0; i < kInline; ++i) {
      if (slot_[i] != 0) fn(slot_[i] - 1, count_[i]);
    }
  }

 private:
  static constexpr int kInline = 4;
  uint16_t slot_[kInline] = {};  // process slot + 1; 0 = empty
  uint16_t count_[kInline] = {};
  uint16_t* spill_ = nullptr;    // once set, every count lives here
  uint32_t total_ = 0;
};

struct SocketRec {
  SocketId id = kNoSocket;  // kNoSocket: free
  bool listener = false;    // listen() succeeded
  bool any_addr = false;    // an INADDR_ANY listener: the fd is the kernel's own listener, the
                            // stack listener joins it (FdKind::kListener)
  bool nonblock = false;    // O_NONBLOCK of the socket's open file (the placeholder has it too)
  bool connect_pending = false;  // a connect returned EINPROGRESS or EINTR: the next one that
                                 // finds the connection established returns 0, as Linux does
  int64_t rcvtimeo_ns = 0;  // SO_RCVTIMEO / SO_SNDTIMEO; 0 = none
  int64_t sndtimeo_ns = 0;
  RefSet refs;
  uint32_t watches = 0;     // first Watch of this socket
  uint32_t waits = 0;       // first WaitNode of this socket
};

// One registration of a stack socket in an epoll instance (EPOLL_CTL_ADD).
struct Watch {
  uint32_t epoll = 0;    // EpollRec + 1; 0 = free
  uint32_t sock = 0;     // SocketRec index
  int32_t fd = -1;       // the number it was added under: the key of MOD and DEL, as the kernel's
  uint32_t events = 0;   // EPOLL* bits as registered
  uint64_t data = 0;
  uint32_t next_in_sock = 0;
  uint32_t next_in_epoll = 0;
  uint32_t ready_next = 0;  // the instance's ready list
  uint32_t ready_prev = 0;
  bool queued = false;
  bool disarmed = false;  // EPOLLONESHOT delivered, until EPOLL_CTL_MOD
};

// An epoll instance that watches stack sockets. The kernel's instance (the program's fd) holds
// the kernel fds, the device and this record's doorbell; the stack sockets' registrations and
// ready list are here, so any process can queue an event for it.
struct EpollRec {
  bool used = false;
  uint32_t doorbell = 0;  // Doorbell + 1, registered in the kernel instance
  uint32_t watches = 0;   // first Watch
  uint32_t ready_head = 0;
  uint32_t ready_tail = 0;
  RefSet refs;            // descriptors of the instance, per process
};

// A wake-up channel to a sleeping thread, usable from any process (doorbell.h).
struct Doorbell {
  int32_t owner = -1;  // process slot; -1: free; -2: an epoll instance's or the keeper's
  std::atomic<uint32_t> sleepers{0};   // threads about to sleep or asleep on it
  std::atomic<uint32_t> rung{0};       // a ring is in flight and not yet drained
};

// A thread blocked on a socket: the socket's readiness changes ring `doorbell`.
struct WaitNode {
  uint32_t doorbell = 0;  // Doorbell + 1; 0 = free
  uint32_t sock = 0;
  uint32_t next = 0;      // next WaitNode of the same socket, or of the free list
};

// One descriptor of a stack socket, as an exec'ing process leaves it to its new image.
struct HandoffFd {
  int32_t fd = -1;
  SocketId socket = kNoSocket;
  FdKind kind = FdKind::kKernel;
  bool cloexec = false;  // the kernel closes it at exec: the new image drops its reference
};

// The hand-off to the image that takes a process slot (SHAKE_HANDOFF names the slot and token).
struct Handoff {
  uint64_t token = 0;        // non-zero while pending
  HandoffFd* fds = nullptr;  // arena memory
  uint32_t count = 0;
};

struct ProcSlot {
  int32_t pid = 0;  // 0: free; -1: reserved for a child that has not run yet
  uint32_t generation = 0;  // names this use of the slot (a keeper connection claims one)
  uint32_t device_sleepers = 0;  // this process's share of Shared::device_sleepers (atomic
                                 // builtins): taken back when the process dies asleep
  uint32_t reading = 0;  // the process's own channel is being read (by it or, as a backstop,
                         // by the keeper): taken with an atomic compare-and-swap
  Handoff handoff;
};

struct Shared {
  uint64_t magic = kSharedMagic;
  uint32_t version = kSharedVersion;
  uint64_t lib_id[4] = {};  // the libshake.so whose code the arena's pointers point into
  uint64_t id = 0;          // random; names the doorbells of this stack
  Limits limits;
  uint32_t uid = 0;         // the stack's owner: only it (or root) may attach
  // The stack's configuration, as its creator gave it; later processes must agree.
  char device[80] = {};     // "tun:IF" or "packet:IF"
  uint32_t addr = 0;
  int prefix_len = 0;
  uint32_t gateway = 0;
  bool has_gateway = false;
  // AF_PACKET: every process reads its own socket of this PACKET_FANOUT group, a flow always
  // reaching the same one (attach.cc, "channels").
  uint16_t fanout_group = 0;
  char pcap[256] = {};      // SHAKE_PCAP of the creator: every process appends to it
  char trace[256] = {};     // SHAKE_TRACE likewise

  // The TX order (TxTurn). A section that has frames to write takes a ticket while it still
  // holds the stack lock, and writes them after releasing it, once the earlier batches that
  // share a flow bucket with its own have left: each flow's frames leave in the order the stack
  // made them, and neither the system call (with the peer's receive processing the kernel does
  // inside it) nor the wait for an earlier writer holds up other processes' stack work, nor
  // other flows' writes. (A mutex taken before the release did all of that: with nginx's two
  // workers, half of a section's time under the stack lock went to waiting for it.)
  static constexpr uint32_t kTxRing = 1024;
  std::atomic<uint32_t> tx_next{0};          // the next ticket; under the stack lock
  uint32_t tx_last[64] = {};                 // per flow bucket: its last writer's ticket + 1
  std::atomic<uint32_t> tx_done[kTxRing] = {};  // ticket t's slot holds t + 1 once it wrote
  std::atomic<uint32_t> tx_waiters{0};       // threads asleep on a tx_done word
  // Held by the keeper while it lives (robust): a trylock that succeeds means it has died.
  pthread_mutex_t keeper_alive;
  int32_t keeper_pid = 0;
  uint32_t keeper_doorbell = 0;
  // The stack's next deadline after the last locked section, and when the keeper plans to look
  // next (nanoseconds of CLOCK_MONOTONIC): a section that moves the deadline well before the
  // keeper's wake rings the keeper.
  std::atomic<int64_t> deadline{INT64_MAX};
  std::atomic<int64_t> keeper_wake{INT64_MAX};
  // The earliest deadline a section rang the keeper for since it last looked. The keeper wakes
  // for it even when the stack's deadline has moved later by then: a request arms a delayed
  // ACK and the reply cancels it, request after request, and each would ring again if the
  // keeper went back to its 50 ms backstop (1,100 rings a second under sockperf).
  std::atomic<int64_t> rung_deadline{INT64_MAX};
  // Threads asleep with the device in their wait set: they will read frames as they come, so
  // the keeper need not.
  std::atomic<uint32_t> device_sleepers{0};
  std::atomic<int64_t> last_drain{0};  // when a process last read the device

  Stack* stack = nullptr;
  uint32_t high = 0;  // socket records [0, high) may be in use
  SocketRec* socks = nullptr;
  ProcSlot* procs = nullptr;
  EpollRec* epolls = nullptr;
  Watch* watches = nullptr;
  Doorbell* doorbells = nullptr;
  WaitNode* waits = nullptr;
  uint32_t watch_free = 0;  // free lists (index + 1) and high-water marks of the pools
  uint32_t watch_high = 0;
  uint32_t wait_free = 0;
  uint32_t wait_high = 0;
  uint32_t epoll_high = 0;
  uint32_t doorbell_high = 0;
  uint32_t next_generation = 0;
  size_t tables_bytes = 0;  // the arena's allocation once the tables above were made: what the
                            // stack allocates since is its memory (shake stat's memory_bytes)

  SocketRec* Rec(SocketId sid) {
    const uint32_t i = IndexOf(sid);
    return i < limits.sockets && socks[i].id == sid && sid != kNoSocket ? &socks[i] : nullptr;
  }
};

// Builds the tables of a new stack's Shared in `mem` (under the arena lock or before anyone
// else can see the arena). False when the arena is too small.
bool AllocateTables(Shared& sh, std::pmr::memory_resource* mem);

// ---- Pools (under the lock) --------------------------------------------------------------------
uint32_t NewWatch(Shared& sh);        // index + 1, or 0 when the pool is exhausted
void FreeWatch(Shared& sh, uint32_t w);
uint32_t NewWaitNode(Shared& sh);
void FreeWaitNode(Shared& sh, uint32_t n);
uint32_t NewEpoll(Shared& sh);        // index + 1, or 0
uint32_t NewDoorbell(Shared& sh, int owner);  // index + 1, or 0

// A batch's place in the TX order (Shared::tx_next). A writer that does not finish within
// kTxStallNs is taken to have died between its ticket and its write, and is passed over (a
// batch passed over so leaves late, out of order, which TCP survives); so is one more than
// kTxRing tickets old.
constexpr int64_t kTxStallNs = 50'000'000;
class TxTurn {
 public:
  // Under the stack lock: a ticket after every earlier batch with a flow bucket of `flows`
  // (io::Pump::Flows; ~0 for all of them).
  void Take(Shared& sh, uint64_t flows);
  // Without it: returns when those batches have left.
  void Await(Shared& sh) const;
  // This batch has left.
  void End(Shared& sh) const;

 private:
  uint32_t ticket_ = 0;
  int n_ = 0;
  uint32_t after_[64] = {};  // tickets + 1 to wait for
};

// The TX order for io::Pump::SetOrderLock: a batch that fills inside a section, or a flush
// under the stack lock, leaves after every earlier batch, while the section goes on.
class TxOrder final : public io::EngineLock {
 public:
  explicit TxOrder(Shared& sh) : sh_(sh) {}
  void lock() override {
    turn_.Take(sh_, ~uint64_t{0});
    turn_.Await(sh_);
  }
  void unlock() override { turn_.End(sh_); }

 private:
  Shared& sh_;
  TxTurn turn_;
};

// A thread of process `slot` is about to sleep with the device in its wait set, or has woken.
// Returns the count before (DeviceSleep) so that a poll sleeper can tell it is the first: of
// the process's sleepers when it reads a channel of its own, of all otherwise.
uint32_t DeviceSleep(Shared& sh, int slot, bool own_channel);
void DeviceWake(Shared& sh, int slot);

// The reading flag of process `slot`'s own channel (ProcSlot::reading).
inline bool TakeRead(Shared& sh, int slot) {
  uint32_t expected = 0;
  return __atomic_compare_exchange_n(&sh.procs[slot].reading, &expected, 1u, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}
inline void ReleaseRead(Shared& sh, int slot) {
  __atomic_store_n(&sh.procs[slot].reading, 0u, __ATOMIC_RELEASE);
}

// ---- Lifetimes (under the lock; any process, or the keeper) -----------------------------------
// Socket record `index` has no descriptor left anywhere: its epoll registrations go, threads
// blocked on it are rung, and the stack closes it (FIN, or RST as RFC 9293 and Linux decide).
void CloseSocketRecord(Shared& sh, std::pmr::memory_resource* mem, Instant now, uint32_t index);
// Removes every registration epoll instance `e` holds, and frees it (readiness.cc).
void FreeEpollRecord(Shared& sh, std::pmr::memory_resource* mem, uint32_t e);
// Removes every registration of socket record `index` (readiness.cc).
void DropWatchesOfSocket(Shared& sh, uint32_t index);
// Process `slot` is gone (its exit, or its death seen by the keeper): its descriptors are
// closed as the kernel closes a dead process's files, its doorbells and hand-off freed.
void ReleaseProcess(Shared& sh, std::pmr::memory_resource* mem, Instant now, int slot);

}  // namespace shake::shim
