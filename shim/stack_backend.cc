// The stack-backed StackBackend: POSIX socket calls mapped onto shake::Stack calls.
//
// Design
// ------
// Memory. One MAP_SHARED arena (arena.h), created at load before the program can fork, holds the
// Stack (built on the arena's memory_resource), a record per stack socket and a slot per process.
// Everything in it is guarded by one process-shared robust mutex, which is also the io engine's
// lock. A forked child sees the same stack at the same address: a connection accepted by nginx's
// worker 2 is served by the same Stack that the master created the listener in.
//
// Engines. Every process that holds stack sockets runs its own io engine thread (its own
// io_uring ring) on the shared device fd; whichever process reads a frame processes it for every
// process. A child builds a new engine after fork (pthread_atfork); the parent's ring is never
// touched by the child. An application thread's send, connect, shutdown or close does not wait
// for the engine thread: still under the lock, it puts the frames the call produced on the
// device itself and handles what the device holds by then (io::Engine::ServeCaller), as the
// kernel does in the caller's context — a peer's immediate answer (an RST to data sent to a
// closed socket) is handled before send() returns, as on Linux, and output leaves without a
// thread switch.
//
// Fds. A stack socket owns a real fd — a placeholder eventfd dup2'd over the socket's number
// (founders' decision 1) — plus a hidden, close-on-exec duplicate per process (FdKind::kHidden,
// at a high number) through which any thread of the process can update it. A listener on
// INADDR_ANY is FdKind::kListener: its fd is an epoll instance over the kernel listener (hidden)
// and the stack listener's eventfd (hidden), so it is readable when either has a connection.
//
// Readiness that sleeps. The eventfd's counter is an image of the socket's readiness: 0 =
// writable only, 1 = readable and writable, 2^64-2 = readable only (a connection that is neither
// — connecting, or a full send buffer with nothing to read — shows as readable; an idle listener
// as writable, which nobody asks a listener). The kernel's own poll/select/epoll therefore sleep
// on stack fds and on kernel fds alike, EPOLLET and EPOLLONESHOT included; every readiness change
// rewrites the counter, which wakes ET waiters once per change as a TCP socket does per event.
// The shim's poll/select/epoll_wait then replace what the kernel reported for stack fds with the
// stack's exact mask (adding POLLRDHUP/HUP/ERR, dropping the approximation's extra bits); an
// epoll registration of a stack fd carries a tag to its record so events map back to fds.
// Blocking calls (recv, send, connect, accept) sleep on a futex word per socket in the arena,
// which the kernel restarts after a SA_RESTART handler and interrupts with a timeout set exactly
// as it treats a socket's own wait (SO_RCVTIMEO/SO_SNDTIMEO).
//
// Cross-process wakeups. Whoever changes a socket's readiness (any process's engine or
// application thread, under the lock) bumps its futex word and rewrites its eventfd through the
// hidden fd when this process holds one; otherwise it marks the socket dirty in the slot of a
// process that does and wakes that process's relay thread (a futex word in the slot), which
// rewrites the eventfd in its own process.
//
// Lifetime. refs[process][socket] counts fds; dup/close/fork adjust it; the socket is closed in
// the stack (FIN, or RST as the stack decides) only when the count over all processes is zero,
// so a child's close of an inherited socket sends nothing. A process that exits releases its
// references in a library destructor; references of a process that died without that (_exit,
// a signal) are reclaimed when another process notices it is gone (a relay thread checks every
// 2 s while other processes share sockets).
//
// Epoll. A registration of a stack fd lives in the kernel on the placeholder's open file, keyed
// on the fd number; we keep a Reg per registration (its tag). All of a process's fds of one
// socket are one open file, so closing one of several keeps its registrations, as the kernel
// does: they are moved onto the hidden fd, where we can still re-arm and finally delete them.
//
// Exec. A new image inherits the fds but not the arena mapping, the fd table or the threads.
//  - Placement. The arena is a memfd mapped at a random 4 GiB-aligned address in [16, 48) TiB,
//    which a fresh image leaves free (arena.h). It holds absolute pointers, also into code: the
//    stack's TcpHost and the arena resource's vtables, and the observer (a static object here).
//    So libshake.so is linked to ask the loader for a fixed place (SHAKE_LIB_BASE, a preference
//    ld.so passes to mmap): every image of the family then has libshake's code and static data
//    at the same addresses. An image where either place was not granted, or whose libshake.so
//    is another file than the arena's (Shared::lib_id), neither hands off nor attaches.
//  - Before exec (interpose.cc's exec family -> PrepareExec): under the lock we dup the memfd
//    and the device fd to exec-surviving (non-close-on-exec) hidden numbers and record in the
//    arena, for this process's slot, a Handoff: every stack fd number, its kind and socket, and
//    whether it is close-on-exec (the kernel closes those, so the new image drops their
//    references); a listener's hidden eventfd and kernel listener get exec-surviving copies too.
//    The environment entry SHAKE_HANDOFF=slot:token:memfd:devfd:base:size is added to the envp
//    the program passed (execv/execvp become execve/execvpe with `environ`); the process's own
//    environ is not touched. The lock is held across execve, so none of our threads is inside
//    the stack when the kernel ends them; the kernel then marks the robust lock owner-dead and
//    the next locker (the new image, or another process) takes it over. If execve returns, the
//    hand-off is cancelled (ExecFailed: copies closed, record dropped, lock released) and the
//    process carries on unchanged.
//  - The new image (Init -> Attach), before the program runs: removes SHAKE_HANDOFF from its
//    environment (its own children get one only if it hands them something), maps the memfd at
//    the recorded address (MAP_FIXED_NOREPLACE), checks libshake's identity and the token and
//    that the slot is its own (same pid), builds its device on the inherited fd, takes the slot,
//    marks the surviving numbers as stack fds, makes each socket a new hidden (close-on-exec)
//    fd from its placeholder, drops the references of the close-on-exec ones, and starts its
//    engine. If any step fails it says so once (SHAKE_LOG=warn), closes the inherited copies and
//    goes on as a program without a hand-off (the device is then usually busy: kernel sockets);
//    the references it was handed are released when it exits (or is seen dead).
//  - posix_spawn is fork + exec in a child that runs none of our code: PrepareSpawn reserves a
//    slot (pid -1) and copies our references into it, as the fork handlers do, and records the
//    hand-off for that slot; the child's image claims the slot with its pid (or SpawnDone writes
//    the pid if the image has not yet, or never will: a program without libshake). A failed
//    spawn releases the slot's references.
//  Not covered: posix_spawn with file actions (nothing is handed over: the child sees its stack
//  fds as bare eventfds, holds no references, and our close may end the connection under it);
//  exec and spawn from inside libc (system(), popen(): glibc calls its internal posix_spawn,
//  which interposition does not reach); an epoll instance carried across exec keeps the old
//  image's registrations, which the new one does not know; a new image without libshake or with
//  another environment that lacks SHAKE_DEVICE keeps the sockets alive but cannot use them; the
//  pcap writer stays with the process that opened it.
#include "shim/stack_backend.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>

#include "io/clock.h"
#include "io/device.h"
#include "io/engine.h"
#include "io/pcap.h"
#include "io/stack_host.h"
#include "shim/arena.h"
#include "shim/guard.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"
#include "stack/stack.h"

namespace shake::shim {
namespace {

constexpr size_t kArenaSize = size_t{2} << 30;
constexpr uint32_t kMaxSockets = 1 << 16;  // socket records, indexed by the stack's slot
constexpr int kMaxProcs = 64;
constexpr uint32_t kMaxRegs = 1 << 16;  // epoll registrations of stack fds, per process
constexpr uint64_t kImageReadOnly = 0xfffffffffffffffeULL;
constexpr uint32_t kIndexMask = (1u << 20) - 1;  // the stack's SocketId: generation << 20 | slot

// ---- Shared state (in the arena) --------------------------------------------------------------

struct SocketRec {
  SocketId id = kNoSocket;          // kNoSocket: free
  std::atomic<uint32_t> seq{0};     // bumped on every readiness change; futex of blocking calls
  std::atomic<uint32_t> waiters{0};
  uint64_t image = 0;               // the eventfd's counter
  bool listener = false;
  bool any_listener = false;        // also has a kernel listener (FdKind::kListener)
  int64_t rcvtimeo_ns = 0;          // SO_RCVTIMEO / SO_SNDTIMEO, 0 = none
  int64_t sndtimeo_ns = 0;
  bool connect_pending = false;     // a connect returned EINPROGRESS/EINTR: the next that finds
                                    // the connection established returns 0, as Linux does
  uint16_t refs[kMaxProcs] = {};    // fds per process slot
};

struct ProcSlot {
  int32_t pid = 0;  // 0 free, -1 reserved for a child that has not run yet
  std::atomic<uint32_t> wake{0};  // futex of the process's relay thread
  std::atomic<bool> engine{false};  // the process runs an engine (and a relay) on the stack
  uint64_t dirty[kMaxSockets / 64] = {};
};

// One descriptor of a stack socket, as an exec'ing process leaves it to its new image.
struct HandoffFd {
  int32_t fd = -1;
  SocketId socket = kNoSocket;
  FdKind kind = FdKind::kKernel;
  bool cloexec = false;  // the kernel closes it at exec: the new image drops its reference
  int32_t pfd = -1;      // kListener: exec-surviving copies of the hidden eventfd and of the
  int32_t kfd = -1;      // hidden kernel listener, which the new image keeps as its own
};

// The hand-off to the image that takes process slot `s` (SHAKE_HANDOFF names s and the token).
struct Handoff {
  uint64_t token = 0;  // non-zero while pending
  HandoffFd* fds = nullptr;  // arena memory
  uint32_t count = 0;
};

struct Shared {
  Stack* stack = nullptr;
  uint32_t high = 0;  // records [0, high) may be in use
  uint64_t lib_id[4] = {};  // the libshake.so file the arena's code pointers point into
  ProcSlot procs[kMaxProcs];
  Handoff handoff[kMaxProcs];
  SocketRec socks[kMaxSockets];
};

// ---- Per-process state (private memory; a child starts with a copy) ---------------------------

struct Reg {  // one epoll registration of a stack fd
  bool used = false;
  bool forced_et = false;  // LT registration made ET while the fd showed a spurious event
  int ep = -1;
  int fd = -1;   // the number the program registered, -1 once it is closed (see Release)
  int kfd = -1;  // the number the kernel's registration is keyed on, -1 if none we can name
  uint32_t index = 0;  // socket record
  uint32_t events = 0;
  uint64_t data = 0;
  uint32_t next_free = 0;
};

long Futex(std::atomic<uint32_t>* word, int op, uint32_t val, const timespec* ts) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, val, ts, nullptr, 0);
}

uint32_t IndexOf(SocketId id) { return (id & kIndexMask) - 1; }

short PollBits(uint32_t rd) {
  int e = 0;
  if (rd & ready::kReadable) e |= POLLIN | POLLRDNORM;
  if (rd & ready::kWritable) e |= POLLOUT | POLLWRNORM;
  if (rd & ready::kError) e |= POLLERR;
  if (rd & ready::kHangup) e |= POLLHUP;
  if (rd & ready::kReadHangup) e |= POLLRDHUP;
  return static_cast<short>(e);
}

uint64_t ImageOf(uint32_t rd, bool listener) {
  const bool in = (rd & (ready::kReadable | ready::kError | ready::kHangup)) != 0;
  const bool out = (rd & (ready::kWritable | ready::kError | ready::kHangup)) != 0;
  if (in && out) return 1;
  if (in) return kImageReadOnly;
  if (out) return 0;
  return listener ? 0 : kImageReadOnly;
}

Instant DeadlineAfter(int64_t ns) {
  return ns <= 0 ? Instant::Never() : io::MonotonicNow() + Duration::Nanos(ns);
}

// Waits for `word` to move from `seq`. 0, EINTR (a signal whose handler lacks SA_RESTART, or any
// signal when a timeout is set — as the kernel treats sockets) or ETIMEDOUT.
int WaitWord(std::atomic<uint32_t>* word, uint32_t seq, Instant deadline) {
  timespec ts{};
  const timespec* tp = nullptr;
  if (!deadline.is_never()) {
    const int64_t left = (deadline - io::MonotonicNow()).nanos();
    if (left <= 0) return ETIMEDOUT;
    ts = {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
    tp = &ts;
  }
  if (Futex(word, FUTEX_WAIT, seq, tp) == 0) return 0;
  if (errno == EINTR) return EINTR;
  if (errno == ETIMEDOUT) return ETIMEDOUT;
  return 0;  // EAGAIN: the word already moved
}

timespec RelativeTo(Instant deadline) {
  int64_t left = (deadline - io::MonotonicNow()).nanos();
  if (left < 0) left = 0;
  return {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
}

bool IsInetStream(int fd) {
  int domain = 0, type = 0;
  socklen_t l = sizeof domain;
  if (real::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0 || domain != AF_INET) {
    return false;
  }
  l = sizeof type;
  return real::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM;
}

bool WantsNonBlocking(int fd, int flags) {
  if (flags & MSG_DONTWAIT) return true;
  const int fl = real::fcntl(fd, F_GETFL, 0);
  return fl >= 0 && (fl & O_NONBLOCK);
}

class Backend;
Backend* g_backend = nullptr;

class Backend final : public StackBackend, public StackObserver {
 public:
  explicit Backend(const Config& c) : config_(c) {}
  bool Init();
  bool busy() const { return busy_; }

  // ---- StackBackend -----------------------------------------------------------------------
  Outcome Bind(int fd, const sockaddr* addr, socklen_t len) override;
  Outcome Connect(int fd, const sockaddr* addr, socklen_t len) override;
  Outcome Listen(int fd, int backlog) override;
  void NoteOption(int, int, int, const void*, socklen_t) override {}
  void NoteEpoll(int ep) override {
    if (ep >= 0 && static_cast<uint32_t>(ep) < kMaxEpollFds) {
      epolls_[ep / 64].fetch_or(uint64_t{1} << (ep % 64));
    }
  }
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
  void Retain(FdEntry e, int newfd) override;
  void Release(FdEntry e, int fd) override;
  Outcome Poll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) override;
  Outcome Select(int n, fd_set* r, fd_set* w, fd_set* x, const timespec* timeout,
                 const sigset_t* mask) override;
  Outcome EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) override;
  Outcome EpollWait(int ep, epoll_event* events, int max, const timespec* timeout,
                    const sigset_t* mask) override;
  void PrepareFork() override {}  // see the pthread_atfork handlers
  void AfterForkParent() override {}
  void AfterForkChild() override {}
  const char* PrepareExec() override;
  void ExecFailed() override;
  const char* PrepareSpawn(bool has_file_actions) override;
  void SpawnDone(pid_t pid) override;

  // ---- StackObserver ----------------------------------------------------------------------
  void OnReadiness(SocketId id) override;

  void AtForkPrepare();
  void AtForkParent();
  void AtForkChild();
  void AtExit();

 private:
  // ---- Exec (see the design comment) --------------------------------------------------------
  bool Attach(const char* handoff);
  bool CanHandOff() const { return arena_ != nullptr && arena_->fixed() && lib_at_base_; }
  int FindFreeSlotLocked();
  // Under the lock: exec-surviving copies of the memfd and the device fd, and the hand-off for
  // slot `to`, recorded with `token`. False (nothing left behind) on failure.
  bool BuildHandoffLocked(int to);
  void DropHandoffLocked(int slot);
  void CloseTemps();
  const char* HandoffEntry(int to);

  // Runs fn(stack) under the arena lock and wakes this process's engine afterwards.
  template <typename F>
  decltype(auto) Locked(F&& fn) {
    EnsureEngine();
    struct After {
      Backend* b;
      ~After() { b->RunDeferred(); }
    } after{this};
    return engine_->WithLock([&]() -> decltype(auto) { return fn(*stack_); });
  }
  // Locked, and then this thread puts the call's output on the device itself and handles what
  // came back meanwhile (io::Engine::ServeCaller), as the kernel does in the caller's context.
  template <typename F>
  auto Served(F&& fn) {
    return Locked([&](Stack& st) {
      auto r = fn(st);
      ReentrancyGuard guard;
      engine_->ServeCaller();
      return r;
    });
  }
  void EnsureEngine();
  void StartThreads();
  void RelayLoop();
  SocketRec& Rec(SocketId id) { return sh_->socks[IndexOf(id)]; }
  SocketRec* RecOf(FdEntry e) {
    const uint32_t i = IndexOf(e.socket);
    if (i >= kMaxSockets || sh_->socks[i].id != e.socket) return nullptr;
    return &sh_->socks[i];
  }
  int HiddenDup(int fd);
  // Under the lock: a record and a hidden eventfd for stack socket `id`, referenced once by
  // this process. Returns the eventfd (hidden), or -1 with errno.
  int AdoptLocked(Stack& st, SocketId id, bool nonblock, bool listener);
  void UpdateImageLocked(Stack& st, SocketRec& r, bool pulse);
  void DropRefLocked(Stack& st, uint32_t index, int slot);
  void ReclaimDeadLocked(Stack& st);
  // The stack socket `fd` gets: placeholder `efd` dup'd over it (keeping the fd's flags).
  int TakeOver(int fd, SocketId* out_id);
  void Register(int fd, FdKind kind, SocketId id, int hidden1, int hidden2);
  bool Routed(uint32_t dst_host) const;
  Outcome Fail(int err) {
    errno = err;
    return Outcome::Done(-1);
  }
  Outcome WaitFailed(int err, int timeout_errno) {
    return Fail(err == EINTR ? EINTR : timeout_errno);
  }
  // The end of one pass of a blocking recv or send that has moved `total` bytes so far and
  // wants more: the call's outcome (non-blocking, timed out, interrupted), or nothing when the
  // socket changed and the caller should go round again. Drops the waiter count the pass took
  // (`waiting`) once the wait is over.
  std::optional<Outcome> AwaitMore(SocketRec& r, bool waiting, uint32_t seq, int fd, int flags,
                                   size_t total, Instant deadline);
  Outcome AcceptAny(SocketRec& r, int fd, sockaddr* addr, socklen_t* len, int flags);
  Reg* RegOf(uint64_t tag, int ep);
  void DropRegsOf(uint32_t index, int fd);
  void OrphanRegsOf(uint32_t index, int fd);
  void RunDeferred();

  Config config_;
  bool busy_ = false;  // the device is held by another process family
  Arena* arena_ = nullptr;
  std::unique_ptr<ArenaLock> lock_;
  Shared* sh_ = nullptr;
  Stack* stack_ = nullptr;
  std::unique_ptr<io::Device> dev_;
  std::unique_ptr<io::StackHandler> handler_;
  std::unique_ptr<io::PcapWriter> pcap_;
  io::Engine* engine_ = nullptr;
  std::atomic<bool> engine_running_{false};
  std::atomic<bool> exited_{false};  // AtExit ran
  std::atomic<bool> relay_running_{false};
  std::stop_source stop_;
  int slot_ = 0;
  int child_slot_ = -1;
  bool first_process_ = true;
  int hidden_base_ = 1024;
  int memfd_ = -1;  // the arena's memfd (hidden)
  bool lib_at_base_ = false;  // libshake.so sits at SHAKE_LIB_BASE in this image
  uint64_t lib_id_[4] = {};
  // A pending hand-off: its slot, token and the exec-surviving descriptors this process opened
  // for it (closed when the exec fails or the spawn returns).
  int handoff_slot_ = -1;
  bool exec_locked_ = false;  // the lock is held across the exec
  int temps_[2 + 2 * 64] = {};
  int ntemps_ = 0;
  char handoff_entry_[160] = {};
  int* pfd_ = nullptr;  // per socket record: this process's hidden eventfd, or -1
  int* kfd_ = nullptr;  // per socket record: this process's hidden kernel listener, or -1
  // Epoll instances the program created, whose registrations of a socket we take over must
  // follow it to its new file.
  static constexpr uint32_t kMaxEpollFds = 1 << 16;
  std::atomic<uint64_t> epolls_[kMaxEpollFds / 64] = {};
  struct Carried {
    int ep;
    epoll_event ev;
  };
  int CollectRegistrations(int fd, Carried* out, int max);
  SocketId Rebirth(SocketId old);
  Reg* regs_ = nullptr;
  uint32_t reg_free_ = 0;  // 1-based index of a free Reg, 0: take regs_high_
  uint32_t regs_high_ = 0;
  std::atomic<uint32_t> regs_live_{0};
};

// A close from a signal handler that interrupted this thread inside the lock is deferred to the
// end of the locked section (taking the lock again would deadlock).
struct Deferred {
  FdEntry e;
  int fd;
};
__attribute__((tls_model("initial-exec"))) thread_local Deferred t_deferred[16];
__attribute__((tls_model("initial-exec"))) thread_local int t_deferred_n = 0;

// ---- Set-up -----------------------------------------------------------------------------------

void* MapPrivate(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// libshake's own place and file, which the arena's code pointers need to be the same in an
// image that attaches to it.
#ifndef SHAKE_LIB_BASE
#define SHAKE_LIB_BASE 0
#endif
bool LibIdentity(bool* at_base, uint64_t id[4]) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&LibIdentity), &info) == 0 || info.dli_fname == nullptr) {
    return false;
  }
  *at_base = reinterpret_cast<uintptr_t>(info.dli_fbase) == uintptr_t{SHAKE_LIB_BASE};
  struct stat st {};
  if (stat(info.dli_fname, &st) != 0) return false;
  id[0] = st.st_dev;
  id[1] = st.st_ino;
  id[2] = static_cast<uint64_t>(st.st_size);
  id[3] = static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000u +
          static_cast<uint64_t>(st.st_mtim.tv_nsec);
  return true;
}

// The stack's observer: a static object, so at the same address in every image of the family.
class ObserverRelay final : public StackObserver {
 public:
  void OnReadiness(SocketId id) override;
};
alignas(ObserverRelay) unsigned char g_observer_storage[sizeof(ObserverRelay)];
StackObserver* TheObserver() {
  static StackObserver* o = new (g_observer_storage) ObserverRelay();  // never destroyed
  return o;
}

// Moves `fd` to a hidden number (close-on-exec); returns the new number (or fd if it cannot).
int Hide(int fd, int base) {
  const int h = real::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<unsigned long>(base));
  if (h < 0) return fd;
  real::close(fd);
  Fds()->Set(h, FdEntry{FdKind::kHidden, 0});
  return h;
}

bool Backend::Init() {
  ReentrancyGuard guard;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    hidden_base_ = static_cast<int>(std::min<rlim_t>(rl.rlim_cur / 2, 4096));
  }
  if (!LibIdentity(&lib_at_base_, lib_id_)) lib_at_base_ = false;
  // For this image only: its own children get their own.
  if (char handoff[160]; TakeHandoffEntry(handoff, sizeof handoff)) {
    if (Attach(handoff)) return true;
  }
  StackConfig sc;
  sc.addr = Ipv4Addr(config_.addr);
  sc.prefix_len = config_.prefix_len;
  if (config_.gateway) sc.gateway = Ipv4Addr(*config_.gateway);
  std::string spec =
      std::string(config_.device == DeviceKind::kTun ? "tun:" : "packet:") + config_.ifname;
  std::string error;
  dev_ = io::OpenDevice(spec, &error);
  if (!dev_) {
    if (error.find("busy") != std::string::npos) {
      // Another process family (typically our own parent, which exec'd a helper) holds the
      // device: this process keeps kernel sockets. Sharing a stack across exec is not done yet.
      Log(LogLevel::kInfo, "%s is in use by another program: sockets stay kernel sockets",
          spec.c_str());
      busy_ = true;
      return false;
    }
    LogLine(("shake: SHAKE_DEVICE=" + spec + ": " + error).c_str());
    return false;
  }
  sc.link = dev_->link();
  sc.mac = dev_->mac();
  sc.mtu = dev_->mtu();
  if (getrandom(sc.isn_secret.data(), sc.isn_secret.size(), 0) !=
      static_cast<ssize_t>(sc.isn_secret.size())) {
    return false;
  }
  if (getrandom(&sc.seed, sizeof sc.seed, 0) < 0) sc.seed = 1;

  arena_ = Arena::Create(kArenaSize, &memfd_);
  if (arena_ != nullptr) memfd_ = Hide(memfd_, hidden_base_);
  pfd_ = static_cast<int*>(MapPrivate(sizeof(int) * kMaxSockets * 2));
  regs_ = static_cast<Reg*>(MapPrivate(sizeof(Reg) * kMaxRegs));
  if (arena_ == nullptr || pfd_ == nullptr || regs_ == nullptr) {
    LogLine("shake: cannot map libshake's shared arena; sockets stay kernel sockets");
    return false;
  }
  kfd_ = pfd_ + kMaxSockets;
  std::fill(pfd_, pfd_ + 2 * kMaxSockets, -1);
  lock_ = std::make_unique<ArenaLock>(arena_->mutex());
  ArenaResource* mem = arena_->resource();
  sh_ = new (mem->allocate(sizeof(Shared), alignof(Shared))) Shared();
  stack_ = new (mem->allocate(sizeof(Stack), alignof(Stack))) Stack(sc, mem);
  stack_->SetObserver(TheObserver());
  sh_->stack = stack_;
  std::memcpy(sh_->lib_id, lib_id_, sizeof lib_id_);
  sh_->procs[0].pid = static_cast<int32_t>(getpid());
  arena_->set_root(sh_);
  slot_ = 0;
  handler_ = std::make_unique<io::StackHandler>(*stack_);
  if (!config_.pcap.empty()) {
    pcap_ = io::PcapWriter::Open(config_.pcap, io::LinktypeFor(sc.link), &error);
    if (!pcap_) LogLine(("shake: SHAKE_PCAP=" + config_.pcap + ": " + error).c_str());
  }
  pthread_atfork([] { g_backend->AtForkPrepare(); }, [] { g_backend->AtForkParent(); },
                 [] { g_backend->AtForkChild(); });
  Log(LogLevel::kInfo, "stack on %s, address %s/%d", spec.c_str(),
      FormatIpv4(config_.addr).c_str(), config_.prefix_len);
  return true;
}

void Backend::EnsureEngine() {
  if (engine_running_.load(std::memory_order_acquire)) return;
  static std::atomic<bool> starting{false};
  bool expected = false;
  if (!starting.compare_exchange_strong(expected, true)) {
    while (!engine_running_.load(std::memory_order_acquire)) sched_yield();  // microseconds
    return;
  }
  if (!engine_running_.load(std::memory_order_acquire)) StartThreads();
  starting.store(false);
}

void Backend::StartThreads() {
  ReentrancyGuard guard;
  io::EngineOptions opts;
  opts.quiet = !LogEnabled(LogLevel::kWarn);
  engine_ = new io::Engine(*dev_, *handler_, opts, lock_.get());
  if (pcap_ && first_process_) engine_->AddFilter(pcap_.get());
  // Our threads take no signals: the program's handlers run on its own threads.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  stop_ = std::stop_source();
  pthread_t t;
  pthread_create(
      &t, nullptr,
      [](void*) -> void* {
        ReentrancyGuard g;
        g_backend->engine_->Run(g_backend->stop_.get_token());
        return nullptr;
      },
      nullptr);
  pthread_detach(t);
  pthread_create(
      &t, nullptr,
      [](void*) -> void* {
        ReentrancyGuard g;
        g_backend->RelayLoop();
        return nullptr;
      },
      nullptr);
  pthread_detach(t);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  engine_running_.store(true, std::memory_order_release);
  sh_->procs[slot_].engine.store(true);
}

// The relay: rewrites the eventfds of sockets whose readiness another process changed, and
// reclaims the references of processes that died without closing.
void Backend::RelayLoop() {
  ProcSlot& me = sh_->procs[slot_];
  uint32_t seen = me.wake.load();
  for (;;) {
    bool shared = false;
    for (int p = 0; p < kMaxProcs; ++p) {
      if (p != slot_ && sh_->procs[p].pid != 0) shared = true;
    }
    const timespec two_seconds{2, 0};
    Futex(&me.wake, FUTEX_WAIT, seen, shared ? &two_seconds : nullptr);
    seen = me.wake.load();
    engine_->WithLock([&] {
      for (uint32_t w = 0; w < (sh_->high + 63) / 64; ++w) {
        uint64_t bits = me.dirty[w];
        me.dirty[w] = 0;
        while (bits != 0) {
          const uint32_t i = w * 64 + static_cast<uint32_t>(std::countr_zero(bits));
          bits &= bits - 1;
          if (sh_->socks[i].id != kNoSocket && pfd_[i] >= 0) {
            UpdateImageLocked(*stack_, sh_->socks[i], true);
          }
        }
      }
      if (shared) ReclaimDeadLocked(*stack_);
    });
    // Whoever woke us may have left the stack with new timers (a process that exited after
    // closing: its orphaned connections are ours to drive now; a dead one's, just reclaimed),
    // so the engine re-reads them.
    engine_->Wake();
  }
}

bool ProcessGone(int32_t pid) {
  if (pid <= 0) return false;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return errno == ENOENT;
  char buf[256];
  const ssize_t n = real::read(fd, buf, sizeof buf - 1);
  real::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  return p != nullptr && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

void Backend::ReclaimDeadLocked(Stack& st) {
  for (int p = 0; p < kMaxProcs; ++p) {
    if (p == slot_ || !ProcessGone(sh_->procs[p].pid)) continue;
    for (uint32_t i = 0; i < sh_->high; ++i) {
      if (sh_->socks[i].id != kNoSocket && sh_->socks[i].refs[p] != 0) {
        sh_->socks[i].refs[p] = 1;
        DropRefLocked(st, i, p);
      }
    }
    std::memset(sh_->procs[p].dirty, 0, sizeof sh_->procs[p].dirty);
    DropHandoffLocked(p);
    sh_->procs[p].pid = 0;
  }
}

// ---- Fork and exit ----------------------------------------------------------------------------

void Backend::AtForkPrepare() {
  if (InsideShim()) return;
  lock_->lock();  // held across fork: the child's references are copied atomically
  child_slot_ = FindFreeSlotLocked();
  if (child_slot_ < 0) {
    Log(LogLevel::kError, "more than %d processes share stack sockets; the child's are lost",
        kMaxProcs);
    return;
  }
  ProcSlot& c = sh_->procs[child_slot_];
  c.pid = -1;
  c.engine.store(false);
  std::memset(c.dirty, 0, sizeof c.dirty);
  for (uint32_t i = 0; i < sh_->high; ++i) {
    sh_->socks[i].refs[child_slot_] = sh_->socks[i].refs[slot_];
  }
}

int Backend::FindFreeSlotLocked() {
  for (int round = 0; round < 2; ++round) {
    for (int p = 0; p < kMaxProcs; ++p) {
      if (sh_->procs[p].pid == 0) return p;
    }
    if (round == 0) ReclaimDeadLocked(*stack_);
  }
  return -1;
}

void Backend::AtForkParent() {
  if (InsideShim()) return;
  lock_->unlock();
}

void Backend::AtForkChild() {
  if (InsideShim()) return;
  // The lock belongs to the parent's thread, which releases it; our engine and relay threads
  // did not survive the fork. Build our own.
  ArenaLock::ForgetHeldInChild();
  if (child_slot_ >= 0) {
    slot_ = child_slot_;
    sh_->procs[slot_].pid = static_cast<int32_t>(getpid());
    sh_->procs[slot_].wake.store(0);
  }
  first_process_ = false;
  if (handoff_slot_ >= 0) {  // another thread's spawn was pending: its copies are not ours
    CloseTemps();
    handoff_slot_ = -1;
    exec_locked_ = false;
  }
  if (engine_running_.load()) {
    ReentrancyGuard guard;
    delete engine_;  // unmaps and closes only this process's references to the parent's ring
    engine_ = nullptr;
    engine_running_.store(false);
  }
  bool holds = false;
  for (uint32_t i = 0; i < kMaxSockets && !holds; ++i) holds = pfd_[i] >= 0;
  if (holds) EnsureEngine();
}

// A process that exits leaves its connections to the stack, as Linux leaves a closed socket's
// data and FIN to the kernel: the closes below queue FINs behind unsent data, and these orphans
// still have to be sent, sent again if lost, and acknowledged. When another process with an engine
// shares the stack, it takes them over (its relay wakes its engine, which re-reads the timers).
// When this is the last one, exit waits while orphans are still sending (the stack's
// ClosesInProgress) and the peers keep answering: up to kExitQuiet without a segment from any
// peer, kExitMost in all. Connections whose FIN is already acknowledged are not waited for.
constexpr Duration kExitQuiet = Duration::Seconds(3);
constexpr Duration kExitMost = Duration::Seconds(30);

void Backend::AtExit() {
  if (InsideShim() || ArenaLock::HeldByThisThread() || !engine_running_.load()) return;
  if (exited_.exchange(true)) return;
  bool others = false;
  Locked([&](Stack& st) {
    for (uint32_t i = 0; i < sh_->high; ++i) {
      if (sh_->socks[i].id != kNoSocket && sh_->socks[i].refs[slot_] != 0) {
        sh_->socks[i].refs[slot_] = 1;
        DropRefLocked(st, i, slot_);
      }
    }
    sh_->procs[slot_].pid = 0;
    sh_->procs[slot_].engine.store(false);
    for (int p = 0; p < kMaxProcs; ++p) {
      ProcSlot& o = sh_->procs[p];
      if (p == slot_ || o.pid <= 0 || !o.engine.load() || ProcessGone(o.pid)) continue;
      others = true;
      o.wake.fetch_add(1);
      Futex(&o.wake, FUTEX_WAKE, 1, nullptr);
    }
    return 0;
  });
  if (others) return;
  const Instant start = io::MonotonicNow();
  Instant heard = start;
  uint64_t segments_in = 0;
  size_t sending = 0;
  for (;;) {
    engine_->WithLock([&] {
      sending = stack_->ClosesInProgress();
      if (stack_->counters().tcp_segments_in != segments_in) {
        segments_in = stack_->counters().tcp_segments_in;
        heard = io::MonotonicNow();
      }
    });
    const Instant now = io::MonotonicNow();
    if (sending == 0) return;
    if (now - heard > kExitQuiet || now - start > kExitMost) break;
    timespec ts{0, 2000000};
    nanosleep(&ts, nullptr);
  }
  Log(LogLevel::kWarn, "exit: %zu closed connection(s) still unacknowledged after %.1f s; "
      "giving up on them", sending, static_cast<double>((io::MonotonicNow() - start).nanos()) / 1e9);
}

__attribute__((destructor)) void LibraryDestructor() {
  if (g_backend != nullptr) g_backend->AtExit();
}

// ---- Exec and posix_spawn -----------------------------------------------------------------------

void Backend::CloseTemps() {
  for (int i = 0; i < ntemps_; ++i) {
    Fds()->Take(temps_[i]);
    real::close(temps_[i]);
  }
  ntemps_ = 0;
}

void Backend::DropHandoffLocked(int slot) {
  Handoff& h = sh_->handoff[slot];
  if (h.fds != nullptr) {
    arena_->resource()->deallocate(h.fds, h.count * sizeof(HandoffFd), alignof(HandoffFd));
  }
  h = Handoff{};
}

bool Backend::BuildHandoffLocked(int to) {
  ReentrancyGuard guard;
  ntemps_ = 0;
  // An exec-surviving copy, at a hidden number (the program's close() leaves it alone).
  auto temp = [&](int fd) {
    if (ntemps_ == static_cast<int>(std::size(temps_))) return -1;
    const int t = real::fcntl(fd, F_DUPFD, static_cast<unsigned long>(hidden_base_));
    if (t >= 0) {
      temps_[ntemps_++] = t;
      Fds()->Set(t, FdEntry{FdKind::kHidden, 0});
    }
    return t;
  };
  const int memfd = temp(memfd_);
  const int devfd = temp(dev_->fd());
  uint64_t token = 0;
  if (memfd < 0 || devfd < 0 || getrandom(&token, sizeof token, 0) != sizeof token) {
    CloseTemps();
    return false;
  }
  token |= 1;
  uint32_t n = 0;
  Fds()->ForEach(0, ~0u, [&](int, FdEntry e) {
    if (e.kind == FdKind::kStack || e.kind == FdKind::kListener) ++n;
  });
  HandoffFd* fds = nullptr;
  if (n != 0) {
    try {
      fds = static_cast<HandoffFd*>(
          arena_->resource()->allocate(n * sizeof(HandoffFd), alignof(HandoffFd)));
    } catch (...) {
      CloseTemps();
      return false;
    }
  }
  uint32_t k = 0;
  Fds()->ForEach(0, ~0u, [&](int fd, FdEntry e) {
    if ((e.kind != FdKind::kStack && e.kind != FdKind::kListener) || k == n) return;
    const uint32_t i = IndexOf(e.socket);
    const int fl = real::fcntl(fd, F_GETFD, 0);
    if (i >= kMaxSockets || sh_->socks[i].id != e.socket || fl < 0) return;
    HandoffFd h;
    h.fd = fd;
    h.socket = e.socket;
    h.kind = e.kind;
    h.cloexec = (fl & FD_CLOEXEC) != 0;
    if (e.kind == FdKind::kListener && !h.cloexec) {
      // The listener's epoll instance survives, but its hidden members are close-on-exec.
      h.pfd = temp(pfd_[i]);
      h.kfd = temp(kfd_[i]);
    }
    new (&fds[k++]) HandoffFd(h);
  });
  DropHandoffLocked(to);
  sh_->handoff[to] = Handoff{token, fds, n};
  sh_->handoff[to].count = n;
  // Entries not filled (an fd that went away meanwhile) are marked unused.
  for (uint32_t j = k; j < n; ++j) new (&fds[j]) HandoffFd();
  handoff_slot_ = to;
  snprintf(handoff_entry_, sizeof handoff_entry_, "SHAKE_HANDOFF=%x:%llx:%d:%d:%llx:%llx",
           static_cast<unsigned>(to), static_cast<unsigned long long>(token), memfd, devfd,
           static_cast<unsigned long long>(arena_->base()),
           static_cast<unsigned long long>(arena_->size()));
  return true;
}

const char* Backend::PrepareExec() {
  if (!CanHandOff() || InsideShim() || ArenaLock::HeldByThisThread()) return nullptr;
  // The lock is held across the exec: no thread of ours is inside the stack when exec ends
  // them, and the kernel hands the robust lock on (EOWNERDEAD) to the next locker — the new
  // image, or another process of the family.
  lock_->lock();
  // One hand-off at a time per process (a spawn on another thread may be pending).
  if (handoff_slot_ >= 0 || !BuildHandoffLocked(slot_)) {
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
  const char* entry = Locked([&](Stack&) -> const char* {
    if (handoff_slot_ >= 0) return nullptr;  // one hand-off at a time per process
    const int c = FindFreeSlotLocked();
    if (c < 0) return nullptr;
    // As for fork: the child holds every descriptor we hold until its exec closes some.
    for (uint32_t i = 0; i < sh_->high; ++i) sh_->socks[i].refs[c] = sh_->socks[i].refs[slot_];
    ProcSlot& ps = sh_->procs[c];
    ps.pid = -1;
    ps.wake.store(0);
    std::memset(ps.dirty, 0, sizeof ps.dirty);
    if (!BuildHandoffLocked(c)) {
      for (uint32_t i = 0; i < sh_->high; ++i) sh_->socks[i].refs[c] = 0;
      ps.pid = 0;
      return nullptr;
    }
    return handoff_entry_;
  });
  return entry;
}

void Backend::SpawnDone(pid_t pid) {
  Locked([&](Stack& st) {
    CloseTemps();  // the child has its own copies
    const int c = handoff_slot_;
    handoff_slot_ = -1;
    if (c < 0) return 0;
    if (pid < 0) {
      for (uint32_t i = 0; i < sh_->high; ++i) {
        if (sh_->socks[i].id != kNoSocket && sh_->socks[i].refs[c] != 0) {
          sh_->socks[i].refs[c] = 1;
          DropRefLocked(st, i, c);
        }
      }
      DropHandoffLocked(c);
      sh_->procs[c].pid = 0;
    } else if (sh_->procs[c].pid == -1) {
      sh_->procs[c].pid = pid;  // unless the child's image has claimed the slot already
    }
    return 0;
  });
}

// The new image's side: map the arena where the old image had it, adopt the device, rebuild the
// fd table and take over the process slot. False (and nothing changed) if any step fails.
bool Backend::Attach(const char* entry) {
  unsigned slot = 0;
  unsigned long long token = 0, base = 0, size = 0;
  int memfd = -1, devfd = -1;
  if (sscanf(entry, "%x:%llx:%d:%d:%llx:%llx", &slot, &token, &memfd, &devfd, &base, &size) !=
          6 ||
      slot >= kMaxProcs) {
    return false;
  }
  auto give_up = [&](const char* why) {
    Log(LogLevel::kWarn, "cannot take over the stack sockets inherited across exec (%s)", why);
    real::close(memfd);
    real::close(devfd);
    return false;
  };
  if (!lib_at_base_) return give_up("libshake.so is not at its usual place");
  // The stack's observer pointer names our static object: construct this image's before any
  // stack call (same address as in the image that set it, with this image's vtable pointer).
  (void)TheObserver();
  Arena* a = Arena::Attach(static_cast<uintptr_t>(base), static_cast<size_t>(size), memfd);
  if (a == nullptr) return give_up("the arena's address is taken");
  auto* sh = static_cast<Shared*>(a->root());
  if (sh == nullptr || std::memcmp(sh->lib_id, lib_id_, sizeof lib_id_) != 0) {
    munmap(a, static_cast<size_t>(size));
    return give_up("another libshake.so");
  }
  pfd_ = static_cast<int*>(MapPrivate(sizeof(int) * kMaxSockets * 2));
  regs_ = static_cast<Reg*>(MapPrivate(sizeof(Reg) * kMaxRegs));
  if (pfd_ == nullptr || regs_ == nullptr) {
    munmap(a, static_cast<size_t>(size));
    return give_up("out of memory");
  }
  kfd_ = pfd_ + kMaxSockets;
  std::fill(pfd_, pfd_ + 2 * kMaxSockets, -1);
  auto lock = std::make_unique<ArenaLock>(a->mutex());
  lock->lock();
  Handoff& ho = sh->handoff[slot];
  const int32_t owner = sh->procs[slot].pid;
  if (ho.token != token || (owner != -1 && owner != static_cast<int32_t>(getpid()))) {
    lock->unlock();
    munmap(a, static_cast<size_t>(size));
    return give_up("stale hand-off");
  }
  std::string spec =
      std::string(config_.device == DeviceKind::kTun ? "tun:" : "packet:") + config_.ifname;
  std::string error;
  dev_ = io::OpenDevice(spec, &error, devfd);
  if (!dev_) {
    // Release what was handed to us, so the sockets are not held open by nobody.
    arena_ = a;
    sh_ = sh;
    stack_ = sh->stack;
    slot_ = -1;
    for (uint32_t i = 0; i < sh->high; ++i) {
      if (sh->socks[i].id != kNoSocket && sh->socks[i].refs[slot] != 0) {
        sh->socks[i].refs[slot] = 1;
        DropRefLocked(*sh->stack, i, static_cast<int>(slot));
      }
    }
    DropHandoffLocked(static_cast<int>(slot));
    sh->procs[slot].pid = 0;
    lock->unlock();
    arena_ = nullptr;
    sh_ = nullptr;
    stack_ = nullptr;
    slot_ = 0;
    munmap(a, static_cast<size_t>(size));
    real::close(memfd);
    Log(LogLevel::kWarn, "cannot take over the stack sockets inherited across exec (%s)",
        error.c_str());
    return false;  // the device fd went with the failed attempt
  }
  arena_ = a;
  lock_ = std::move(lock);
  sh_ = sh;
  stack_ = sh->stack;
  slot_ = static_cast<int>(slot);
  first_process_ = false;
  sh->procs[slot].pid = static_cast<int32_t>(getpid());
  sh->procs[slot].wake.store(0);
  real::fcntl(memfd, F_SETFD, FD_CLOEXEC);
  real::fcntl(devfd, F_SETFD, FD_CLOEXEC);
  memfd_ = memfd;
  Fds()->Set(memfd, FdEntry{FdKind::kHidden, 0});
  // The descriptors that survived: the program's numbers are stack fds again, each socket gets
  // a hidden descriptor of its own file (a listener: the copies made for the exec).
  bool any = false;
  for (uint32_t j = 0; j < ho.count; ++j) {
    const HandoffFd& h = ho.fds[j];
    const uint32_t i = IndexOf(h.socket);
    if (h.fd < 0 || i >= kMaxSockets || sh->socks[i].id != h.socket || h.cloexec) continue;
    Fds()->Set(h.fd, FdEntry{h.kind, h.socket});
    any = true;
    if (h.kind == FdKind::kListener) {
      for (int t : {h.pfd, h.kfd}) {
        if (t >= 0) real::fcntl(t, F_SETFD, FD_CLOEXEC);
      }
      if (pfd_[i] < 0 && h.pfd >= 0 && h.kfd >= 0) {
        pfd_[i] = h.pfd;
        kfd_[i] = h.kfd;
        Fds()->Set(h.pfd, FdEntry{FdKind::kHidden, h.socket});
        Fds()->Set(h.kfd, FdEntry{FdKind::kHidden, h.socket});
      } else {
        if (h.pfd >= 0) real::close(h.pfd);
        if (h.kfd >= 0) real::close(h.kfd);
      }
    } else if (pfd_[i] < 0) {
      const int hidden = HiddenDup(h.fd);
      if (hidden >= 0) {
        pfd_[i] = hidden;
        Fds()->Set(hidden, FdEntry{FdKind::kHidden, h.socket});
      }
    }
  }
  // The kernel closed the close-on-exec ones: their references go (the last closes the socket).
  for (uint32_t j = 0; j < ho.count; ++j) {
    const HandoffFd& h = ho.fds[j];
    const uint32_t i = IndexOf(h.socket);
    if (h.fd < 0 || i >= kMaxSockets || sh->socks[i].id != h.socket || !h.cloexec) continue;
    DropRefLocked(*stack_, i, slot_);
  }
  DropHandoffLocked(slot_);
  for (uint32_t i = 0; i < sh->high; ++i) {
    if (sh->socks[i].id != kNoSocket && pfd_[i] >= 0) {
      UpdateImageLocked(*stack_, sh->socks[i], false);
    }
  }
  lock_->unlock();
  handler_ = std::make_unique<io::StackHandler>(*stack_);
  pthread_atfork([] { g_backend->AtForkPrepare(); }, [] { g_backend->AtForkParent(); },
                 [] { g_backend->AtForkChild(); });
  Log(LogLevel::kInfo, "took over the stack on %s from the image before exec", spec.c_str());
  if (any) EnsureEngine();
  return true;
}

// ---- Records, images, references ---------------------------------------------------------------

void Backend::UpdateImageLocked(Stack& st, SocketRec& r, bool pulse) {
  const uint32_t i = IndexOf(r.id);
  const int fd = pfd_[i];
  if (fd < 0) return;
  const uint64_t target = ImageOf(st.Readiness(r.id), r.listener);
  const uint64_t cur = r.image;
  if (target == cur && !(pulse && target != 0)) return;
  uint64_t v = 0;
  if (target < cur) {
    (void)!real::read(fd, &v, sizeof v);  // the counter is cur > 0: never blocks
    v = target;
  } else {
    v = target - cur;  // may be 0: a pulse, waking ET waiters as new data does on a socket
  }
  if (v != 0 || target == cur) (void)!real::write(fd, &v, sizeof v);
  r.image = target;
}

void Backend::OnReadiness(SocketId id) {
  const uint32_t i = IndexOf(id);
  if (i >= kMaxSockets) return;
  SocketRec& r = sh_->socks[i];
  if (r.id != id) return;
  r.seq.fetch_add(1, std::memory_order_release);
  if (r.waiters.load(std::memory_order_acquire) != 0) Futex(&r.seq, FUTEX_WAKE, INT_MAX, nullptr);
  if (pfd_[i] >= 0) {
    UpdateImageLocked(*stack_, r, true);
    return;
  }
  for (int p = 0; p < kMaxProcs; ++p) {
    if (p == slot_ || r.refs[p] == 0) continue;
    ProcSlot& ps = sh_->procs[p];
    ps.dirty[i / 64] |= uint64_t{1} << (i % 64);
    ps.wake.fetch_add(1, std::memory_order_release);
    Futex(&ps.wake, FUTEX_WAKE, 1, nullptr);
    return;  // one holder rewrites the shared eventfd for all
  }
}

void ObserverRelay::OnReadiness(SocketId id) {
  if (g_backend != nullptr) g_backend->OnReadiness(id);
}

int Backend::HiddenDup(int fd) {
  return real::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<unsigned long>(hidden_base_));
}

int Backend::AdoptLocked(Stack& st, SocketId id, bool nonblock, bool listener) {
  const uint32_t i = IndexOf(id);
  if (i >= kMaxSockets) {
    st.Close(io::MonotonicNow(), id);
    errno = EMFILE;
    return -1;
  }
  SocketRec& r = sh_->socks[i];
  r.id = id;
  r.listener = listener;
  r.any_listener = false;
  r.rcvtimeo_ns = r.sndtimeo_ns = 0;
  r.connect_pending = false;
  std::memset(r.refs, 0, sizeof r.refs);
  r.refs[slot_] = 1;
  r.image = ImageOf(st.Readiness(id), listener);
  sh_->high = std::max(sh_->high, i + 1);
  const int efd = static_cast<int>(syscall(SYS_eventfd2, 0, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0)));
  if (efd < 0) {
    const int err = errno;
    r.id = kNoSocket;
    st.Close(io::MonotonicNow(), id);
    errno = err;
    return -1;
  }
  if (r.image != 0) {
    const uint64_t v = r.image;
    (void)!real::write(efd, &v, sizeof v);
  }
  const int hidden = HiddenDup(efd);
  real::close(efd);
  if (hidden < 0) {
    const int err = errno;
    r.id = kNoSocket;
    st.Close(io::MonotonicNow(), id);
    errno = err;
    return -1;
  }
  pfd_[i] = hidden;
  Fds()->Set(hidden, FdEntry{FdKind::kHidden, id});
  return hidden;
}

void Backend::Register(int fd, FdKind kind, SocketId id, int, int) {
  Fds()->Set(fd, FdEntry{kind, id});
}

// One reference of process `slot` to record `index` goes. Under the lock.
void Backend::DropRefLocked(Stack& st, uint32_t index, int slot) {
  SocketRec& r = sh_->socks[index];
  if (r.refs[slot] == 0) return;
  if (--r.refs[slot] == 0 && slot == slot_) {
    DropRegsOf(index, -1);
    if (pfd_[index] >= 0) {
      Fds()->Take(pfd_[index]);
      real::close(pfd_[index]);
      pfd_[index] = -1;
    }
    if (kfd_[index] >= 0) {
      Fds()->Take(kfd_[index]);
      real::close(kfd_[index]);
      kfd_[index] = -1;
    }
  }
  for (uint16_t n : r.refs) {
    if (n != 0) return;
  }
  st.Close(io::MonotonicNow(), r.id);
  r.id = kNoSocket;
  r.seq.fetch_add(1);
  if (r.waiters.load() != 0) Futex(&r.seq, FUTEX_WAKE, INT_MAX, nullptr);
}

void Backend::Retain(FdEntry e, int) {
  Locked([&](Stack&) {
    if (SocketRec* r = RecOf(e)) ++r->refs[slot_];
    return 0;
  });
}

void Backend::Release(FdEntry e, int fd) {
  if (e.kind == FdKind::kHidden) return;
  if (ArenaLock::HeldByThisThread()) {  // a signal handler inside our own locked section
    if (t_deferred_n < 16) t_deferred[t_deferred_n++] = Deferred{e, fd};
    return;
  }
  Served([&](Stack& st) {
    SocketRec* r = RecOf(e);
    // The kernel keeps an epoll registration while its open file lives: closing one of several
    // descriptors of the socket leaves the registrations made through it in place.
    if (r != nullptr && r->refs[slot_] > 1) {
      OrphanRegsOf(IndexOf(e.socket), fd);
    } else {
      DropRegsOf(IndexOf(e.socket), fd);
    }
    if (r != nullptr) DropRefLocked(st, IndexOf(e.socket), slot_);
    return 0;
  });
}

void Backend::RunDeferred() {
  while (t_deferred_n > 0 && !ArenaLock::HeldByThisThread()) {
    const Deferred d = t_deferred[--t_deferred_n];
    Release(d.e, d.fd);
  }
}

// ---- Decisions ----------------------------------------------------------------------------------

bool Backend::Routed(uint32_t d) const {
  if ((d >> 24) == 127 || d == 0 || d >= 0xe0000000u) return false;
  const uint32_t mask =
      config_.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - config_.prefix_len);
  if ((d & mask) == (config_.addr & mask)) return true;
  return config_.gateway.has_value();
}

struct KernelState {
  bool nonblock = false;
  bool cloexec = false;
  sockaddr_in bound{};
  SocketOptions opts;
  int64_t rcvtimeo_ns = 0;
  int64_t sndtimeo_ns = 0;
};

int GetInt(int fd, int level, int name) {
  int v = 0;
  socklen_t l = sizeof v;
  return real::getsockopt(fd, level, name, &v, &l) == 0 ? v : 0;
}

int64_t GetTimeo(int fd, int name) {
  timeval tv{};
  socklen_t l = sizeof tv;
  if (real::getsockopt(fd, SOL_SOCKET, name, &tv, &l) != 0) return 0;
  return int64_t{tv.tv_sec} * 1000000000 + int64_t{tv.tv_usec} * 1000;
}

// What a kernel socket carries over when it becomes a stack socket: its flags, its bound port
// and the options set so far (read back from the kernel, which validated them).
KernelState ReadKernelState(int fd) {
  KernelState k;
  const int fl = real::fcntl(fd, F_GETFL, 0);
  k.nonblock = fl >= 0 && (fl & O_NONBLOCK);
  const int fdf = real::fcntl(fd, F_GETFD, 0);
  k.cloexec = fdf >= 0 && (fdf & FD_CLOEXEC);
  socklen_t l = sizeof k.bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&k.bound), &l);
  SocketOptions& o = k.opts;
  o.reuse_addr = GetInt(fd, SOL_SOCKET, SO_REUSEADDR) != 0;
  o.reuse_port = GetInt(fd, SOL_SOCKET, SO_REUSEPORT) != 0;
  o.keepalive = GetInt(fd, SOL_SOCKET, SO_KEEPALIVE) != 0;
  o.no_delay = GetInt(fd, IPPROTO_TCP, TCP_NODELAY) != 0;
  o.cork = GetInt(fd, IPPROTO_TCP, TCP_CORK) != 0;
  linger lg{};
  l = sizeof lg;
  if (real::getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 && lg.l_onoff) {
    o.linger = true;
    o.linger_time = Duration::Seconds(lg.l_linger);
  }
  o.keepalive_time = Duration::Seconds(GetInt(fd, IPPROTO_TCP, TCP_KEEPIDLE));
  o.keepalive_interval = Duration::Seconds(GetInt(fd, IPPROTO_TCP, TCP_KEEPINTVL));
  o.keepalive_probes = GetInt(fd, IPPROTO_TCP, TCP_KEEPCNT);
  o.user_timeout = Duration::Millis(GetInt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT));
  k.rcvtimeo_ns = GetTimeo(fd, SO_RCVTIMEO);
  k.sndtimeo_ns = GetTimeo(fd, SO_SNDTIMEO);
  return k;
}

// Replaces kernel socket `fd` by a new stack socket (same number, flags and options).
int Backend::TakeOver(int fd, SocketId* out_id) {
  const KernelState k = ReadKernelState(fd);
  int err = 0;
  const int hidden = Locked([&](Stack& st) -> int {
    Result<SocketId> id = st.Open();
    if (!id.ok()) {
      err = id.error();
      return -1;
    }
    SocketOptions o = *st.GetOptions(*id);
    SocketOptions w = k.opts;
    w.keepalive_time = k.opts.keepalive_time == Duration::Seconds(7200) ? o.keepalive_time
                                                                        : k.opts.keepalive_time;
    w.keepalive_interval = k.opts.keepalive_interval == Duration::Seconds(75)
                               ? o.keepalive_interval
                               : k.opts.keepalive_interval;
    w.keepalive_probes = k.opts.keepalive_probes == 9 ? o.keepalive_probes : k.opts.keepalive_probes;
    w.send_buffer = o.send_buffer;
    w.recv_buffer = o.recv_buffer;
    w.max_segment = o.max_segment;
    (void)st.SetOptions(*id, w);
    const int h = AdoptLocked(st, *id, k.nonblock, false);
    if (h < 0) {
      err = errno;
      return -1;
    }
    SocketRec& r = Rec(*id);
    r.rcvtimeo_ns = k.rcvtimeo_ns;
    r.sndtimeo_ns = k.sndtimeo_ns;
    *out_id = *id;
    return h;
  });
  if (hidden < 0) {
    errno = err;
    return -1;
  }
  Carried carried[8];
  const int nc = CollectRegistrations(fd, carried, 8);
  // The placeholder takes the socket's number; the kernel socket goes away with it.
  if (real::dup3(hidden, fd, k.cloexec ? O_CLOEXEC : 0) < 0) {
    err = errno;
    Release(FdEntry{FdKind::kStack, *out_id}, -1);
    errno = err;
    return -1;
  }
  Register(fd, FdKind::kStack, *out_id, hidden, -1);
  for (int i = 0; i < nc; ++i) {
    EpollCtl(carried[i].ep, EPOLL_CTL_ADD, fd, FdEntry{FdKind::kStack, *out_id}, &carried[i].ev);
  }
  return 0;
}

// The program's epoll registrations of `fd` (read from /proc/self/fdinfo of each epoll instance
// it created), so they can be made again once the fd is a different file.
int Backend::CollectRegistrations(int fd, Carried* out, int max) {
  int n = 0;
  for (uint32_t w = 0; w < kMaxEpollFds / 64; ++w) {
    uint64_t bits = epolls_[w].load(std::memory_order_relaxed);
    while (bits != 0 && n < max) {
      const int ep = static_cast<int>(w * 64 + static_cast<uint32_t>(std::countr_zero(bits)));
      bits &= bits - 1;
      if (ep == fd) continue;
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
      const int f = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
      if (f < 0) continue;
      char buf[8192];
      size_t len = 0;
      for (ssize_t r; len < sizeof buf - 1 && (r = real::read(f, buf + len, sizeof buf - 1 - len)) > 0;) {
        len += static_cast<size_t>(r);
      }
      real::close(f);
      buf[len] = '\0';
      for (char* line = buf; line != nullptr && *line != '\0' && n < max;) {
        char* next = strchr(line, '\n');
        if (next) *next++ = '\0';
        int tfd = -1;
        unsigned events = 0;
        unsigned long long data = 0;
        if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 &&
            tfd == fd) {
          out[n].ep = ep;
          out[n].ev.events = events;
          out[n].ev.data.u64 = data;
          ++n;
        }
        line = next;
      }
    }
  }
  return n;
}

// A socket whose connection failed may connect again (Linux allows it; the stack's socket is
// spent): a fresh stack socket takes over the record, the eventfd and the fds.
SocketId Backend::Rebirth(SocketId old) {
  SocketId fresh = Locked([&](Stack& st) -> SocketId {
    Result<SocketId> s = st.Open();
    const uint32_t ni = s.ok() ? IndexOf(*s) : kMaxSockets;
    if (ni >= kMaxSockets) {
      if (s.ok()) st.Close(io::MonotonicNow(), *s);
      return kNoSocket;
    }
    (void)st.SetOptions(*s, *st.GetOptions(old));
    SocketRec& from = Rec(old);
    SocketRec& to = sh_->socks[ni];
    const uint32_t oi = IndexOf(old);
    to.id = *s;
    to.image = from.image;
    to.listener = false;
    to.any_listener = false;
    to.rcvtimeo_ns = from.rcvtimeo_ns;
    to.sndtimeo_ns = from.sndtimeo_ns;
    to.connect_pending = false;
    std::memcpy(to.refs, from.refs, sizeof to.refs);
    pfd_[ni] = pfd_[oi];
    pfd_[oi] = -1;
    from.id = kNoSocket;
    sh_->high = std::max(sh_->high, ni + 1);
    st.Close(io::MonotonicNow(), old);
    return *s;
  });
  if (fresh != kNoSocket) {
    Fds()->ForEach(0, ~0u, [&](int f, FdEntry e) {
      if (e.socket == old) Fds()->Set(f, FdEntry{e.kind, fresh});
    });
  }
  return fresh;
}

Outcome Backend::Bind(int fd, const sockaddr* addr, socklen_t len) {
  if (addr == nullptr || len < sizeof(sockaddr_in) || addr->sa_family != AF_INET) {
    return Outcome::Pass();
  }
  sockaddr_in a;
  std::memcpy(&a, addr, sizeof a);
  if (ntohl(a.sin_addr.s_addr) != config_.addr || !IsInetStream(fd)) return Outcome::Pass();
  SocketId id = kNoSocket;
  if (TakeOver(fd, &id) != 0) return Outcome::Done(-1);
  const Result0 r = Locked([&](Stack& st) {
    return st.Bind(id, Endpoint{Ipv4Addr(config_.addr), ntohs(a.sin_port)});
  });
  if (!r.ok()) return Fail(r.error());
  return Outcome::Done(0);
}

Outcome Backend::Connect(int fd, const sockaddr* addr, socklen_t len) {
  FdEntry e = Fds()->Get(fd);
  SocketId id = e.socket;
  if (e.kind == FdKind::kListener) return Fail(EISCONN);
  if (addr == nullptr || len < sizeof(sockaddr_in) || addr->sa_family != AF_INET) {
    if (e.kind == FdKind::kStack) return Fail(addr == nullptr ? EFAULT : EAFNOSUPPORT);
    return Outcome::Pass();
  }
  sockaddr_in a;
  std::memcpy(&a, addr, sizeof a);
  if (e.kind == FdKind::kKernel) {
    if (!Routed(ntohl(a.sin_addr.s_addr)) || !IsInetStream(fd)) return Outcome::Pass();
    sockaddr_in bound{};
    socklen_t bl = sizeof bound;
    real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
    if (bound.sin_addr.s_addr != 0) return Outcome::Pass();  // bound to a kernel address
    if (TakeOver(fd, &id) != 0) return Outcome::Done(-1);
    if (bound.sin_port != 0) {
      const Result0 r = Locked([&](Stack& st) {
        return st.Bind(id, Endpoint{Ipv4Addr(config_.addr), ntohs(bound.sin_port)});
      });
      if (!r.ok()) return Fail(r.error());
    }
  }
  {
    bool spent = false;
    Locked([&](Stack& st) {
      const Result<SocketInfo> info = st.Info(id);
      spent = info.ok() && (*info).ended;
      return 0;
    });
    if (spent) {
      id = Rebirth(id);
      if (id == kNoSocket) return Fail(ENOBUFS);
    }
  }
  SocketRec& r = Rec(id);
  uint32_t seq = 0;
  const Result0 c = Served([&](Stack& st) {
    seq = r.seq.load();
    const Result0 x = st.Connect(io::MonotonicNow(), id,
                                 Endpoint{Ipv4Addr(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port)});
    UpdateImageLocked(st, r, false);
    return x;
  });
  if (c.ok()) return Outcome::Done(0);
  if (c.error() == EISCONN && r.connect_pending) {
    r.connect_pending = false;
    return Outcome::Done(0);
  }
  if (c.error() != EINPROGRESS) return Fail(c.error());
  r.connect_pending = true;
  if (WantsNonBlocking(fd, 0)) return Fail(EINPROGRESS);
  const Instant deadline = DeadlineAfter(r.sndtimeo_ns);
  for (;;) {
    int result = 0;
    bool done = Locked([&](Stack& st) {
      const Result<SocketInfo> info = st.Info(id);
      if (info.ok() && (*info).connecting) {
        seq = r.seq.load();
        r.waiters.fetch_add(1);
        return false;
      }
      // The handshake completed and a reset followed before this thread ran (the SYN-ACK and
      // the RST in one batch): connect() succeeds and the reset is left for the next call, as
      // on Linux whenever the woken thread runs before the reset is processed. (Linux can also
      // report the reset here, when it loses that race; both are kernel behaviours, and the
      // first is the one a program sees in practice.) A reset during the handshake is
      // ECONNREFUSED and is reported now.
      const int pending = info.ok() ? (*info).pending_error : 0;
      if (pending == ECONNRESET || pending == EPIPE) {
        result = 0;
        return true;
      }
      result = st.TakeError(id);
      if (result == 0 && !info.ok()) result = ECONNREFUSED;
      return true;
    });
    if (done) {
      r.connect_pending = false;
      return result == 0 ? Outcome::Done(0) : Fail(result);
    }
    const int w = WaitWord(&r.seq, seq, deadline);
    r.waiters.fetch_sub(1);
    if (w == EINTR) return Fail(EINTR);
    if (w == ETIMEDOUT) return Fail(EINPROGRESS);
  }
}

Outcome Backend::Listen(int fd, int backlog) {
  const FdEntry e = Fds()->Get(fd);
  if (e.kind == FdKind::kStack || e.kind == FdKind::kListener) {
    SocketRec* r = RecOf(e);
    if (r == nullptr) return Fail(EBADF);
    if (e.kind == FdKind::kListener) real::listen(kfd_[IndexOf(e.socket)], backlog);
    const Result0 res = Locked([&](Stack& st) {
      Result0 x = st.Listen(e.socket, backlog);
      if (x.ok()) {
        r->listener = true;
        UpdateImageLocked(st, *r, false);
      }
      return x;
    });
    return res.ok() ? Outcome::Done(0) : Fail(res.error());
  }
  if (!IsInetStream(fd)) return Outcome::Pass();
  sockaddr_in bound{};
  socklen_t bl = sizeof bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  if (bound.sin_addr.s_addr != 0) return Outcome::Pass();  // loopback or a kernel address
  // INADDR_ANY: the kernel listener stays (loopback and the kernel's addresses reach it) and a
  // stack listener on the same port joins it behind one epoll fd.
  if (real::listen(fd, backlog) != 0) return Outcome::Done(-1);
  bl = sizeof bound;
  real::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl);
  const KernelState k = ReadKernelState(fd);
  const int kfd = HiddenDup(fd);
  if (kfd < 0) return Outcome::Done(0);  // kernel-only listener
  real::fcntl(kfd, F_SETFL, static_cast<unsigned long>(O_RDWR | O_NONBLOCK));
  SocketId id = kNoSocket;
  const int pfd = Locked([&](Stack& st) -> int {
    Result<SocketId> s = st.Open();
    if (!s.ok()) return -1;
    SocketOptions o = *st.GetOptions(*s);
    o.reuse_addr = k.opts.reuse_addr;
    o.reuse_port = k.opts.reuse_port;
    (void)st.SetOptions(*s, o);
    if (!st.Bind(*s, Endpoint{Ipv4Addr(config_.addr), ntohs(bound.sin_port)}).ok() ||
        !st.Listen(*s, backlog).ok()) {
      st.Close(io::MonotonicNow(), *s);
      return -1;
    }
    const int h = AdoptLocked(st, *s, true, true);
    if (h < 0) return -1;
    SocketRec& r = Rec(*s);
    r.any_listener = true;
    r.rcvtimeo_ns = k.rcvtimeo_ns;
    kfd_[IndexOf(*s)] = kfd;
    Fds()->Set(kfd, FdEntry{FdKind::kHidden, *s});
    id = *s;
    return h;
  });
  if (pfd < 0) {
    Log(LogLevel::kWarn, "listener on port %u stays a kernel-only listener",
        ntohs(bound.sin_port));
    real::close(kfd);
    return Outcome::Done(0);
  }
  const int ep = real::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = kfd;
  real::epoll_ctl(ep, EPOLL_CTL_ADD, kfd, &ev);
  ev.data.fd = pfd;
  real::epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev);
  if (k.nonblock) real::fcntl(ep, F_SETFL, static_cast<unsigned long>(O_NONBLOCK));
  Carried carried[8];
  const int nc = CollectRegistrations(fd, carried, 8);
  real::dup3(ep, fd, k.cloexec ? O_CLOEXEC : 0);
  real::close(ep);
  Register(fd, FdKind::kListener, id, pfd, kfd);
  for (int i = 0; i < nc; ++i) real::epoll_ctl(carried[i].ep, EPOLL_CTL_ADD, fd, &carried[i].ev);
  return Outcome::Done(0);
}

// ---- Accept -------------------------------------------------------------------------------------

void FillAddr(const Endpoint& ep, sockaddr* addr, socklen_t* len) {
  if (addr == nullptr || len == nullptr) return;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(ep.port);
  a.sin_addr.s_addr = htonl(ep.addr.value());
  std::memcpy(addr, &a, std::min<size_t>(*len, sizeof a));
  *len = sizeof a;
}

Outcome Backend::Accept(FdEntry e, int fd, sockaddr* addr, socklen_t* len, int flags) {
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return Fail(EINVAL);
  const Instant deadline = DeadlineAfter(r->rcvtimeo_ns);
  for (;;) {
    Endpoint peer;
    int err = 0;
    uint32_t seq = 0;
    SocketId id = kNoSocket;
    const int hidden = Locked([&](Stack& st) -> int {
      seq = r->seq.load();
      Result<SocketId> c = st.Accept(e.socket);
      UpdateImageLocked(st, *r, false);
      if (!c.ok()) {
        err = c.error();
        if (err == EAGAIN && e.kind != FdKind::kListener) r->waiters.fetch_add(1);
        return -1;
      }
      peer = (*st.Info(*c)).remote;
      id = *c;
      const int h = AdoptLocked(st, *c, (flags & SOCK_NONBLOCK) != 0, false);
      if (h < 0) err = errno;
      return h;
    });
    if (hidden >= 0) {
      const int nfd = real::fcntl(hidden, (flags & SOCK_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
      if (nfd < 0) {
        err = errno;
        Release(FdEntry{FdKind::kStack, id}, -1);
        return Fail(err);
      }
      Register(nfd, FdKind::kStack, id, hidden, -1);
      FillAddr(peer, addr, len);
      return Outcome::Done(nfd);
    }
    if (err != EAGAIN) return Fail(err);
    if (e.kind == FdKind::kListener) {
      const int k = real::accept4(kfd_[IndexOf(e.socket)], addr, len, flags);
      if (k >= 0 || errno != EAGAIN) return Outcome::Done(k);
      if (WantsNonBlocking(fd, 0)) return Fail(EAGAIN);
      pollfd p{fd, POLLIN, 0};
      timespec ts = RelativeTo(deadline);
      const int n = real::ppoll(&p, 1, deadline.is_never() ? nullptr : &ts, nullptr);
      if (n < 0) return Outcome::Done(-1);
      if (n == 0) return Fail(EAGAIN);
      continue;
    }
    if (WantsNonBlocking(fd, 0)) {
      r->waiters.fetch_sub(1);
      return Fail(EAGAIN);
    }
    const int w = WaitWord(&r->seq, seq, deadline);
    r->waiters.fetch_sub(1);
    if (w != 0) return WaitFailed(w, EAGAIN);
  }
}

// ---- Data ---------------------------------------------------------------------------------------

std::optional<Outcome> Backend::AwaitMore(SocketRec& r, bool waiting, uint32_t seq, int fd,
                                          int flags, size_t total, Instant deadline) {
  struct Unwait {
    SocketRec& r;
    bool on;
    ~Unwait() {
      if (on) r.waiters.fetch_sub(1);
    }
  } unwait{r, waiting};
  if (WantsNonBlocking(fd, flags)) {
    return total > 0 ? Outcome::Done(static_cast<long>(total)) : Fail(EAGAIN);
  }
  const int w = WaitWord(&r.seq, seq, deadline);
  if (w != 0) return total > 0 ? Outcome::Done(static_cast<long>(total)) : WaitFailed(w, EAGAIN);
  return std::nullopt;
}

Outcome Backend::Recv(FdEntry e, int fd, msghdr* msg, int flags) {
  if (e.kind == FdKind::kListener) return Fail(ENOTCONN);
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  if (flags & MSG_OOB) return Fail(EINVAL);
  if (flags & MSG_ERRQUEUE) return Fail(EAGAIN);
  const bool peek = (flags & MSG_PEEK) != 0;
  size_t want = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) want += msg->msg_iov[i].iov_len;
  msg->msg_flags = 0;
  msg->msg_namelen = 0;
  msg->msg_controllen = 0;
  if (want == 0) return Outcome::Done(0);
  const Instant deadline = DeadlineAfter(r->rcvtimeo_ns);
  size_t total = 0;
  for (;;) {
    int err = 0;
    bool eof = false;
    uint32_t seq = 0;
    Locked([&](Stack& st) {
      seq = r->seq.load();
      // A peek reads from the start of the queue each time: fill one buffer at a time.
      size_t skip = total;
      for (size_t i = 0; i < msg->msg_iovlen; ++i) {
        auto* base = static_cast<std::byte*>(msg->msg_iov[i].iov_base);
        size_t n = msg->msg_iov[i].iov_len;
        if (skip >= n) {
          skip -= n;
          continue;
        }
        base += skip;
        n -= skip;
        skip = 0;
        // A short read is followed by another, which tells end of stream (0) from EAGAIN.
        const Result<size_t> got = st.Recv(e.socket, {base, n}, peek);
        if (!got.ok()) {
          err = got.error();
          break;
        }
        if (*got == 0) {
          eof = true;
          break;
        }
        total += *got;
        if (peek) break;
        if (*got < n) {
          skip = 0;
          i = static_cast<size_t>(-1);  // restart the walk at `total`
          skip = total;
        }
      }
      UpdateImageLocked(st, *r, false);
      r->waiters.fetch_add(1);  // before the unlock: a change after it wakes the wait below
      return 0;
    });
    const bool waited = true;
    auto unwait = [&] {
      if (waited) r->waiters.fetch_sub(1);
    };
    if (err != 0 && err != EAGAIN) {
      unwait();
      if (total > 0) return Outcome::Done(static_cast<long>(total));
      return Fail(err);
    }
    const bool waitall = (flags & MSG_WAITALL) && !peek;
    if (eof || total == want || (total > 0 && !waitall)) {
      unwait();
      return Outcome::Done(static_cast<long>(total));
    }
    if (auto out = AwaitMore(*r, waited, seq, fd, flags, total, deadline)) return *out;
  }
}

Outcome Backend::Send(FdEntry e, int fd, const msghdr* msg, int flags) {
  if (e.kind == FdKind::kListener) {
    if (!(flags & MSG_NOSIGNAL)) raise(SIGPIPE);
    return Fail(EPIPE);
  }
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  size_t want = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) want += msg->msg_iov[i].iov_len;
  const Instant deadline = DeadlineAfter(r->sndtimeo_ns);
  size_t total = 0;
  for (;;) {
    int err = 0;
    uint32_t seq = 0;
    Served([&](Stack& st) {
      seq = r->seq.load();
      size_t skip = total;
      for (size_t i = 0; i < msg->msg_iovlen; ++i) {
        const auto* base = static_cast<const std::byte*>(msg->msg_iov[i].iov_base);
        size_t n = msg->msg_iov[i].iov_len;
        if (skip >= n) {
          skip -= n;
          continue;
        }
        base += skip;
        n -= skip;
        skip = 0;
        const bool last = i + 1 == msg->msg_iovlen;
        const Result<size_t> put =
            st.Send(e.socket, {base, n}, (flags & MSG_MORE) != 0 || !last);
        if (!put.ok()) {
          err = put.error();
          break;
        }
        total += *put;
        if (*put < n) {
          err = EAGAIN;
          break;
        }
      }
      if (want == 0 && err == 0) {
        const Result<size_t> put = st.Send(e.socket, {}, (flags & MSG_MORE) != 0);
        if (!put.ok()) err = put.error();
      }
      UpdateImageLocked(st, *r, false);
      if (err == EAGAIN) r->waiters.fetch_add(1);
      return 0;
    });
    const bool waited = err == EAGAIN;
    auto unwait = [&] {
      if (waited) r->waiters.fetch_sub(1);
    };
    if (err != 0 && err != EAGAIN) {
      if (total > 0) return Outcome::Done(static_cast<long>(total));
      if (err == EPIPE && !(flags & MSG_NOSIGNAL)) raise(SIGPIPE);
      return Fail(err);
    }
    if (total == want) {
      unwait();
      return Outcome::Done(static_cast<long>(total));
    }
    if (auto out = AwaitMore(*r, waited, seq, fd, flags, total, deadline)) return *out;
  }
}

Outcome Backend::SendFile(FdEntry e, int fd, int in_fd, off64_t* offset, size_t count) {
  if (e.kind == FdKind::kListener) return Fail(EINVAL);
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  std::byte buf[65536];
  size_t total = 0;
  while (total < count) {
    // Read no more than the socket takes now, so nothing read is ever left unsent.
    const size_t space = Locked([&](Stack& st) {
      const Result<SocketInfo> info = st.Info(e.socket);
      return info.ok() ? (*info).send_space : size_t{0};
    });
    size_t chunk = std::min({count - total, sizeof buf, std::max<size_t>(space, 1)});
    ssize_t n;
    {
      ReentrancyGuard guard;
      n = offset ? pread64(in_fd, buf, chunk, *offset) : real::read(in_fd, buf, chunk);
    }
    if (n < 0) return total > 0 ? Outcome::Done(static_cast<long>(total)) : Outcome::Done(-1);
    if (n == 0) break;
    iovec v{buf, static_cast<size_t>(n)};
    msghdr m{};
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    const Outcome o = Send(e, fd, &m, total > 0 ? MSG_NOSIGNAL : 0);
    const long sent = o.value;
    if (sent > 0) {
      total += static_cast<size_t>(sent);
      if (offset) *offset += sent;
    }
    if (sent < n) {
      if (!offset && sent < n) {
        ReentrancyGuard guard;
        lseek64(in_fd, -(n - std::max<long>(sent, 0)), SEEK_CUR);
      }
      if (total > 0) break;
      return o;
    }
  }
  return Outcome::Done(static_cast<long>(total));
}

// ---- Control ------------------------------------------------------------------------------------

Outcome Backend::Shutdown(FdEntry e, int, int how) {
  if (how < SHUT_RD || how > SHUT_RDWR) return Fail(EINVAL);
  if (e.kind == FdKind::kListener) {
    return Outcome::Done(real::shutdown(kfd_[IndexOf(e.socket)], how));
  }
  const Result0 res = Served([&](Stack& st) {
    const Result0 x = st.Shutdown(io::MonotonicNow(), e.socket, how != SHUT_WR, how != SHUT_RD);
    if (SocketRec* r = RecOf(e)) UpdateImageLocked(st, *r, false);
    return x;
  });
  return res.ok() ? Outcome::Done(0) : Fail(res.error());
}

Outcome PutInt(void* v, socklen_t* l, int value) {
  if (v == nullptr || l == nullptr) {
    errno = EFAULT;
    return Outcome::Done(-1);
  }
  if (*l >= sizeof(int)) {
    std::memcpy(v, &value, sizeof value);
    *l = sizeof value;
  } else if (*l > 0) {
    auto b = static_cast<unsigned char>(value);
    std::memcpy(v, &b, 1);
    *l = 1;
  }
  return Outcome::Done(0);
}

Outcome Backend::GetSockOpt(FdEntry e, int, int level, int name, void* v, socklen_t* l) {
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  if (e.kind == FdKind::kListener && !(level == SOL_SOCKET && name == SO_ERROR)) {
    // The kernel listener answers for the pair (options were set on both).
    const int rc = real::getsockopt(kfd_[IndexOf(e.socket)], level, name, v, l);
    return Outcome::Done(rc);
  }
  if (l == nullptr || v == nullptr) return Fail(EFAULT);
  SocketOptions o;
  SocketInfo info;
  int err = 0;
  Locked([&](Stack& st) {
    if (level == SOL_SOCKET && name == SO_ERROR) {
      err = st.TakeError(e.socket);
      UpdateImageLocked(st, *r, false);
      return 0;
    }
    o = *st.GetOptions(e.socket);
    info = *st.Info(e.socket);
    return 0;
  });
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_ERROR: return PutInt(v, l, err);
      case SO_TYPE: return PutInt(v, l, SOCK_STREAM);
      case SO_DOMAIN: return PutInt(v, l, AF_INET);
      case SO_PROTOCOL: return PutInt(v, l, IPPROTO_TCP);
      case SO_ACCEPTCONN: return PutInt(v, l, info.listening ? 1 : 0);
      case SO_REUSEADDR: return PutInt(v, l, o.reuse_addr);
      case SO_REUSEPORT: return PutInt(v, l, o.reuse_port);
      case SO_KEEPALIVE: return PutInt(v, l, o.keepalive);
      case SO_SNDBUF:
        return PutInt(v, l, static_cast<int>(o.send_buffer ? o.send_buffer * 2 : 1 << 20));
      case SO_RCVBUF:
        return PutInt(v, l, static_cast<int>(o.recv_buffer ? o.recv_buffer * 2 : 1 << 20));
      case SO_RCVLOWAT:
      case SO_SNDLOWAT: return PutInt(v, l, 1);
      case SO_OOBINLINE:
      case SO_BROADCAST:
      case SO_DEBUG:
      case SO_DONTROUTE:
      case SO_PRIORITY: return PutInt(v, l, 0);
      case SO_LINGER: {
        linger lg{o.linger ? 1 : 0, static_cast<int>(o.linger_time.nanos() / 1000000000)};
        if (*l < sizeof lg) return Fail(EINVAL);
        std::memcpy(v, &lg, sizeof lg);
        *l = sizeof lg;
        return Outcome::Done(0);
      }
      case SO_RCVTIMEO:
      case SO_SNDTIMEO: {
        const int64_t ns = name == SO_RCVTIMEO ? r->rcvtimeo_ns : r->sndtimeo_ns;
        timeval tv{static_cast<time_t>(ns / 1000000000),
                   static_cast<suseconds_t>(ns % 1000000000 / 1000)};
        if (*l < sizeof tv) return Fail(EINVAL);
        std::memcpy(v, &tv, sizeof tv);
        *l = sizeof tv;
        return Outcome::Done(0);
      }
      default: return Fail(ENOPROTOOPT);
    }
  }
  if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_NODELAY: return PutInt(v, l, o.no_delay);
      case TCP_CORK: return PutInt(v, l, o.cork);
      case TCP_QUICKACK: return PutInt(v, l, 1);
      case TCP_KEEPIDLE:
        return PutInt(v, l, o.keepalive_time.nanos() ? static_cast<int>(o.keepalive_time.nanos() / 1000000000) : 7200);
      case TCP_KEEPINTVL:
        return PutInt(v, l, o.keepalive_interval.nanos() ? static_cast<int>(o.keepalive_interval.nanos() / 1000000000) : 75);
      case TCP_KEEPCNT: return PutInt(v, l, o.keepalive_probes ? o.keepalive_probes : 9);
      case TCP_USER_TIMEOUT: return PutInt(v, l, static_cast<int>(o.user_timeout.nanos() / 1000000));
      case TCP_SYNCNT: return PutInt(v, l, o.syn_count ? o.syn_count : 6);
      case TCP_MAXSEG: return PutInt(v, l, info.mss ? info.mss : (o.max_segment ? o.max_segment : 536));
      case TCP_INFO: {
        tcp_info ti{};
        ti.tcpi_state = LinuxStateNumber(info.state);
        ti.tcpi_snd_mss = info.mss;
        ti.tcpi_rtt = static_cast<uint32_t>(info.srtt.nanos() / 1000);
        ti.tcpi_rttvar = static_cast<uint32_t>(info.rttvar.nanos() / 1000);
        ti.tcpi_rto = static_cast<uint32_t>(info.rto.nanos() / 1000);
        ti.tcpi_snd_cwnd = info.mss ? info.cwnd / info.mss : 0;
        ti.tcpi_snd_ssthresh = info.mss ? info.ssthresh / info.mss : 0;
        ti.tcpi_snd_wscale = info.snd_wscale & 0xf;
        ti.tcpi_rcv_wscale = info.rcv_wscale & 0xf;
        ti.tcpi_options = static_cast<uint8_t>((info.sack_enabled ? TCPI_OPT_SACK : 0) |
                                               (info.timestamps_enabled ? TCPI_OPT_TIMESTAMPS : 0) |
                                               (info.snd_wscale || info.rcv_wscale ? TCPI_OPT_WSCALE : 0));
        ti.tcpi_total_retrans = static_cast<uint32_t>(info.retransmits);
        const socklen_t n = std::min<socklen_t>(*l, sizeof ti);
        std::memcpy(v, &ti, n);
        *l = n;
        return Outcome::Done(0);
      }
      default: return Fail(ENOPROTOOPT);
    }
  }
  if (level == IPPROTO_IP) return PutInt(v, l, name == IP_TTL ? 64 : 0);
  return Fail(ENOPROTOOPT);
}

Outcome Backend::SetSockOpt(FdEntry e, int, int level, int name, const void* v, socklen_t l) {
  SocketRec* r = RecOf(e);
  if (r == nullptr) return Fail(EBADF);
  if (v == nullptr) return Fail(EFAULT);
  if (e.kind == FdKind::kListener) {  // both halves: the kernel validates
    if (real::setsockopt(kfd_[IndexOf(e.socket)], level, name, v, l) != 0) {
      return Outcome::Done(-1);
    }
  }
  if (level == SOL_SOCKET && (name == SO_RCVTIMEO || name == SO_SNDTIMEO)) {
    timeval tv{};
    if (l < sizeof tv) return Fail(EINVAL);
    std::memcpy(&tv, v, sizeof tv);
    if (tv.tv_usec < 0 || tv.tv_usec >= 1000000) return Fail(EDOM);
    const int64_t ns = tv.tv_sec < 0 ? 0 : int64_t{tv.tv_sec} * 1000000000 + tv.tv_usec * 1000;
    (name == SO_RCVTIMEO ? r->rcvtimeo_ns : r->sndtimeo_ns) = ns;
    return Outcome::Done(0);
  }
  int iv = 0;
  if (level == SOL_SOCKET && name == SO_LINGER) {
    if (l < sizeof(linger)) return Fail(EINVAL);
  } else if (level == SOL_SOCKET || level == IPPROTO_TCP) {
    if (l < sizeof(int)) return Fail(EINVAL);
    std::memcpy(&iv, v, sizeof iv);
  }
  const Result0 res = Locked([&](Stack& st) -> Result0 {
    Result<SocketOptions> got = st.GetOptions(e.socket);
    if (!got.ok()) return Error(got.error());
    SocketOptions o = *got;
    if (level == SOL_SOCKET) {
      switch (name) {
        case SO_REUSEADDR: o.reuse_addr = iv != 0; break;
        case SO_REUSEPORT: o.reuse_port = iv != 0; break;
        case SO_KEEPALIVE: o.keepalive = iv != 0; break;
        case SO_SNDBUF: o.send_buffer = static_cast<size_t>(std::clamp(iv, 2304, 1 << 26)); break;
        case SO_RCVBUF: o.recv_buffer = static_cast<size_t>(std::clamp(iv, 1152, 1 << 26)); break;
        case SO_LINGER: {
          linger lg{};
          std::memcpy(&lg, v, sizeof lg);
          o.linger = lg.l_onoff != 0;
          o.linger_time = Duration::Seconds(lg.l_linger);
          break;
        }
        default: return Ok();  // accepted and without effect on the stack
      }
    } else if (level == IPPROTO_TCP) {
      switch (name) {
        case TCP_NODELAY: o.no_delay = iv != 0; break;
        case TCP_CORK: o.cork = iv != 0; break;
        case TCP_QUICKACK: o.quick_ack = iv != 0; break;
        case TCP_KEEPIDLE:
          if (iv < 1 || iv > 32767) return Error(EINVAL);
          o.keepalive_time = Duration::Seconds(iv);
          break;
        case TCP_KEEPINTVL:
          if (iv < 1 || iv > 32767) return Error(EINVAL);
          o.keepalive_interval = Duration::Seconds(iv);
          break;
        case TCP_KEEPCNT:
          if (iv < 1 || iv > 127) return Error(EINVAL);
          o.keepalive_probes = iv;
          break;
        case TCP_USER_TIMEOUT:
          if (iv < 0) return Error(EINVAL);
          o.user_timeout = Duration::Millis(iv);
          break;
        case TCP_SYNCNT:
          if (iv < 1 || iv > 127) return Error(EINVAL);
          o.syn_count = iv;
          break;
        case TCP_MAXSEG:
          if (iv < 0 || iv > 65535) return Error(EINVAL);
          o.max_segment = static_cast<uint16_t>(iv);
          break;
        case TCP_LINGER2: o.linger2 = Duration::Seconds(iv); break;
        default: return Ok();
      }
    } else {
      return Ok();
    }
    return st.SetOptions(e.socket, o);
  });
  return res.ok() ? Outcome::Done(0) : Fail(res.error());
}

Outcome Backend::GetSockName(FdEntry e, int, sockaddr* addr, socklen_t* len) {
  if (e.kind == FdKind::kListener) {
    return Outcome::Done(real::getsockname(kfd_[IndexOf(e.socket)], addr, len));
  }
  if (addr == nullptr || len == nullptr) return Fail(EFAULT);
  const Result<SocketInfo> info = Locked([&](Stack& st) { return st.Info(e.socket); });
  if (!info.ok()) return Fail(info.error());
  Endpoint local = (*info).local;
  FillAddr(local, addr, len);
  return Outcome::Done(0);
}

Outcome Backend::GetPeerName(FdEntry e, int, sockaddr* addr, socklen_t* len) {
  if (e.kind == FdKind::kListener) return Fail(ENOTCONN);
  if (addr == nullptr || len == nullptr) return Fail(EFAULT);
  const Result<SocketInfo> info = Locked([&](Stack& st) { return st.Info(e.socket); });
  if (!info.ok()) return Fail(info.error());
  if (!(*info).connected || (*info).remote.port == 0) {
    return Fail(ENOTCONN);
  }
  FillAddr((*info).remote, addr, len);
  return Outcome::Done(0);
}

Outcome Backend::Ioctl(FdEntry e, int, unsigned long request, void* arg) {
  if (request != FIONREAD && request != SIOCOUTQ && request != SIOCOUTQNSD) {
    return Outcome::Pass();
  }
  if (e.kind == FdKind::kListener) {
    return Outcome::Done(real::ioctl(kfd_[IndexOf(e.socket)], request,
                                     reinterpret_cast<unsigned long>(arg)));
  }
  const Result<SocketInfo> info = Locked([&](Stack& st) { return st.Info(e.socket); });
  if (!info.ok()) return Fail(info.error());
  if ((*info).listening) return Fail(EINVAL);
  const size_t n = request == FIONREAD ? (*info).readable_bytes : (*info).unsent_bytes;
  const int v = static_cast<int>(std::min<size_t>(n, INT_MAX));
  std::memcpy(arg, &v, sizeof v);
  return Outcome::Done(0);
}

// ---- Readiness ----------------------------------------------------------------------------------

// Waits until one of `fds` shows a change: kernel fds level-triggered with their own events,
// stack fds edge-triggered on their eventfd, so a stack fd whose image shows a bit the stack
// does not (a connection that is neither readable nor writable) wakes us only when it changes.
// Returns -1 (errno) on a signal, 0 otherwise.
int WaitEdges(const pollfd* fds, nfds_t n, FdTable* t, Instant deadline, const sigset_t* mask,
              const std::function<bool()>& ready_now) {
  const int ep = real::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return -1;
  for (nfds_t i = 0; i < n; ++i) {
    if (fds[i].fd < 0) continue;
    epoll_event ev{};
    if (t->Get(fds[i].fd).kind == FdKind::kStack) {
      ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
    } else {
      ev.events = static_cast<uint32_t>(static_cast<uint16_t>(fds[i].events));
    }
    real::epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev);
  }
  epoll_event evs[16];
  const timespec zero{0, 0};
  int r = real::epoll_pwait2(ep, evs, 16, &zero, nullptr);  // consumes the edges of the ADDs
  if (r == 0 && !ready_now()) {
    const timespec left = RelativeTo(deadline);
    r = real::epoll_pwait2(ep, evs, 16, deadline.is_never() ? nullptr : &left, mask);
  }
  const int err = errno;
  real::close(ep);
  errno = err;
  return r < 0 ? -1 : 0;
}

Outcome Backend::Poll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  const Instant deadline =
      timeout == nullptr
          ? Instant::Never()
          : io::MonotonicNow() +
                Duration::Nanos(int64_t{timeout->tv_sec} * 1000000000 + timeout->tv_nsec);
  // The kernel's copy of the set: a stack fd asks its eventfd for POLLIN/POLLOUT.
  pollfd small[64];
  std::unique_ptr<pollfd[]> big;
  pollfd* k = small;
  if (n > 64) {
    big.reset(new pollfd[n]);
    k = big.get();
  }
  FdTable* t = Fds();
  // Fills in the stack fds' exact masks; true when any is ready.
  auto stack_masks = [&]() {
    bool any = false;
    Locked([&](Stack& st) {
      for (nfds_t i = 0; i < n; ++i) {
        const FdEntry e = t->Get(fds[i].fd);
        if (fds[i].fd < 0 || e.kind != FdKind::kStack) continue;
        const short m = static_cast<short>(PollBits(st.Readiness(e.socket)) &
                                           (fds[i].events | POLLERR | POLLHUP));
        fds[i].revents = m;
        if (m != 0) any = true;
      }
      return 0;
    });
    return any;
  };
  bool edges = false;  // the image misled the kernel once: wait for changes instead
  for (;;) {
    for (nfds_t i = 0; i < n; ++i) {
      k[i] = fds[i];
      fds[i].revents = 0;
      if (fds[i].fd >= 0 && t->Get(fds[i].fd).kind == FdKind::kStack) {
        short want = 0;
        if (fds[i].events & (POLLIN | POLLRDNORM | POLLRDHUP)) want |= POLLIN;
        if (fds[i].events & (POLLOUT | POLLWRNORM)) want |= POLLOUT;
        k[i].events = want;
      }
    }
    const bool stack_ready = stack_masks();
    const timespec zero{0, 0};
    const timespec left = RelativeTo(deadline);
    const timespec* tp =
        stack_ready || edges ? &zero : (deadline.is_never() ? nullptr : &left);
    const int r = real::ppoll(k, n, tp, stack_ready || edges ? nullptr : mask);
    if (r < 0) return Outcome::Done(-1);
    bool kernel_woke_stack = false;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].fd >= 0 && t->Get(fds[i].fd).kind == FdKind::kStack) {
        if (k[i].revents != 0) kernel_woke_stack = true;
        continue;
      }
      fds[i].revents = k[i].revents;
    }
    if (kernel_woke_stack && !stack_ready) stack_masks();
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents != 0) ++ready;
    }
    if (ready > 0) return Outcome::Done(ready);
    if (!deadline.is_never() && io::MonotonicNow() >= deadline) return Outcome::Done(0);
    if (!edges && !kernel_woke_stack) continue;  // nothing woke us: the wait was cut short
    edges = true;
    if (WaitEdges(fds, n, t, deadline, mask, stack_masks) < 0) return Outcome::Done(-1);
  }
}

Outcome Backend::Select(int n, fd_set* rs, fd_set* ws, fd_set* xs, const timespec* timeout,
                        const sigset_t* mask) {
  if (n < 0) return Fail(EINVAL);
  if (n > FD_SETSIZE) n = FD_SETSIZE;
  pollfd p[FD_SETSIZE];
  nfds_t count = 0;
  for (int fd = 0; fd < n; ++fd) {
    short ev = 0;
    if (rs && FD_ISSET(fd, rs)) ev |= POLLIN;
    if (ws && FD_ISSET(fd, ws)) ev |= POLLOUT;
    if (xs && FD_ISSET(fd, xs)) ev |= POLLPRI;
    if (ev) p[count++] = pollfd{fd, ev, 0};
  }
  const Outcome o = Poll(p, count, timeout, mask);
  if (o.value < 0) return o;
  for (nfds_t i = 0; i < count; ++i) {
    if (p[i].revents & POLLNVAL) return Fail(EBADF);
  }
  if (rs) FD_ZERO(rs);
  if (ws) FD_ZERO(ws);
  if (xs) FD_ZERO(xs);
  int bits = 0;
  for (nfds_t i = 0; i < count; ++i) {
    const short re = p[i].revents;
    const short ev = p[i].events;
    if ((ev & POLLIN) && (re & (POLLIN | POLLHUP | POLLERR))) {
      FD_SET(p[i].fd, rs);
      ++bits;
    }
    if ((ev & POLLOUT) && (re & (POLLOUT | POLLERR))) {
      FD_SET(p[i].fd, ws);
      ++bits;
    }
    if ((ev & POLLPRI) && (re & POLLPRI)) {
      FD_SET(p[i].fd, xs);
      ++bits;
    }
  }
  return Outcome::Done(bits);
}

Reg* Backend::RegOf(uint64_t tag, int ep) {
  const auto base = reinterpret_cast<uintptr_t>(regs_);
  if (tag < base || tag >= base + sizeof(Reg) * kMaxRegs || (tag - base) % sizeof(Reg) != 0) {
    return nullptr;
  }
  Reg* g = reinterpret_cast<Reg*>(tag);
  return g->used && g->ep == ep ? g : nullptr;
}

// Drops this process's registrations of record `index` (of fd `fd`, or all when fd < 0).
void Backend::DropRegsOf(uint32_t index, int fd) {
  if (regs_live_.load() == 0) return;
  for (uint32_t i = 0; i < regs_high_; ++i) {
    Reg& g = regs_[i];
    if (!g.used || g.index != index || (fd >= 0 && g.fd != fd)) continue;
    epoll_event ev{};
    if (g.kfd >= 0) real::epoll_ctl(g.ep, EPOLL_CTL_DEL, g.kfd, &ev);
    g.used = false;
    g.next_free = reg_free_;
    reg_free_ = i + 1;
    regs_live_.fetch_sub(1);
  }
}

// Fd `fd` of record `index` is being closed while other descriptors of the same open file stay
// in this process: its registrations live on, as the kernel's do. Each is moved onto this
// process's hidden descriptor of the socket, so that we can still modify and finally delete it;
// the program can no longer name it (fd = -1), as with the kernel. A registration whose number
// already refers to another file (dup2 over it) stays keyed on the number we cannot name any
// more: it still reports events, but can be neither re-armed nor deleted by us.
void Backend::OrphanRegsOf(uint32_t index, int fd) {
  if (regs_live_.load() == 0) return;
  for (uint32_t i = 0; i < regs_high_; ++i) {
    Reg& g = regs_[i];
    if (!g.used || g.index != index || g.fd != fd) continue;
    g.fd = -1;
    epoll_event ev{};
    if (g.kfd < 0 || real::epoll_ctl(g.ep, EPOLL_CTL_DEL, g.kfd, &ev) != 0) {
      g.kfd = -1;
      continue;
    }
    ev.events = g.forced_et ? g.events | EPOLLET : g.events;
    ev.data.u64 = reinterpret_cast<uintptr_t>(&g);
    const int hidden = pfd_[index];
    if (hidden >= 0 && real::epoll_ctl(g.ep, EPOLL_CTL_ADD, hidden, &ev) == 0) {
      g.kfd = hidden;
      continue;
    }
    g.used = false;  // a second registration in the same instance: it cannot be kept
    g.next_free = reg_free_;
    reg_free_ = i + 1;
    regs_live_.fetch_sub(1);
  }
}

Outcome Backend::EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) {
  if (e.kind == FdKind::kListener) {
    // The listener's fd is an epoll instance, exact for EPOLLIN; the kernel refuses
    // EPOLLEXCLUSIVE on one, so every waiter wakes and all but one find EAGAIN.
    if (ev == nullptr || !(ev->events & EPOLLEXCLUSIVE)) return Outcome::Pass();
    epoll_event copy = *ev;
    copy.events &= ~static_cast<uint32_t>(EPOLLEXCLUSIVE);
    return Outcome::Done(real::epoll_ctl(ep, op, fd, &copy));
  }
  if (e.kind != FdKind::kStack) return Outcome::Pass();
  if (op != EPOLL_CTL_DEL && ev == nullptr) return Fail(EFAULT);
  return Locked([&](Stack&) -> Outcome {
    const uint32_t index = IndexOf(e.socket);
    Reg* found = nullptr;
    for (uint32_t i = 0; i < regs_high_ && regs_live_.load() != 0; ++i) {
      Reg& g = regs_[i];
      if (g.used && g.ep == ep && g.fd == fd) {
        found = &g;
        break;
      }
    }
    epoll_event kev{};
    switch (op) {
      case EPOLL_CTL_ADD: {
        if (found) return Fail(EEXIST);
        uint32_t slot;
        if (reg_free_ != 0) {
          slot = reg_free_ - 1;
          reg_free_ = regs_[slot].next_free;
        } else if (regs_high_ < kMaxRegs) {
          slot = regs_high_++;
        } else {
          return Fail(ENOSPC);
        }
        Reg& g = regs_[slot];
        g = Reg{true, false, ep, fd, fd, index, ev->events, ev->data.u64, 0};
        kev.events = ev->events;
        kev.data.u64 = reinterpret_cast<uintptr_t>(&g);
        if (real::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &kev) != 0) {
          const int err = errno;
          g.used = false;
          g.next_free = reg_free_;
          reg_free_ = slot + 1;
          return Fail(err);
        }
        regs_live_.fetch_add(1);
        return Outcome::Done(0);
      }
      case EPOLL_CTL_MOD: {
        if (!found) return Fail(ENOENT);
        kev.events = ev->events;
        kev.data.u64 = reinterpret_cast<uintptr_t>(found);
        if (real::epoll_ctl(ep, EPOLL_CTL_MOD, found->kfd, &kev) != 0) return Outcome::Done(-1);
        found->events = ev->events;
        found->data = ev->data.u64;
        found->forced_et = false;
        return Outcome::Done(0);
      }
      case EPOLL_CTL_DEL: {
        if (!found) return Fail(ENOENT);
        real::epoll_ctl(ep, EPOLL_CTL_DEL, found->kfd, &kev);
        found->used = false;
        const auto slot = static_cast<uint32_t>(found - regs_);
        found->next_free = reg_free_;
        reg_free_ = slot + 1;
        regs_live_.fetch_sub(1);
        return Outcome::Done(0);
      }
      default: return Fail(EINVAL);
    }
  });
}

Outcome Backend::EpollWait(int ep, epoll_event* events, int max, const timespec* timeout,
                           const sigset_t* mask) {
  if (regs_live_.load() == 0) return Outcome::Pass();
  const Instant deadline =
      timeout == nullptr ? Instant::Never()
                         : io::MonotonicNow() + Duration::Nanos(int64_t{timeout->tv_sec} * 1000000000 + timeout->tv_nsec);
  for (;;) {
    timespec left = RelativeTo(deadline);
    const int n = real::epoll_pwait2(ep, events, max, deadline.is_never() ? nullptr : &left, mask);
    if (n <= 0) return Outcome::Done(n);
    int out = 0;
    Locked([&](Stack& st) {
      for (int i = 0; i < n; ++i) {
        Reg* g = RegOf(events[i].data.u64, ep);
        if (g == nullptr) {
          events[out++] = events[i];
          continue;
        }
        const SocketRec& r = sh_->socks[g->index];
        const uint32_t rd = r.id != kNoSocket ? st.Readiness(r.id) : ready::kHangup;
        const auto m = static_cast<uint32_t>(PollBits(rd)) & (g->events | EPOLLERR | EPOLLHUP);
        epoll_event kev{};
        kev.data.u64 = reinterpret_cast<uintptr_t>(g);
        if (m == 0) {
          // The image's approximation: nothing the app asked for. Re-arm a one-shot; make a
          // level-triggered registration edge-triggered until the socket changes.
          if (g->kfd < 0) continue;
          if (g->events & EPOLLONESHOT) {
            kev.events = g->events;
            real::epoll_ctl(ep, EPOLL_CTL_MOD, g->kfd, &kev);
          } else if (!(g->events & EPOLLET) && !g->forced_et) {
            kev.events = g->events | EPOLLET;
            real::epoll_ctl(ep, EPOLL_CTL_MOD, g->kfd, &kev);
            g->forced_et = true;
          }
          continue;
        }
        if (g->forced_et && g->kfd >= 0) {
          kev.events = g->events;
          real::epoll_ctl(ep, EPOLL_CTL_MOD, g->kfd, &kev);
          g->forced_et = false;
        }
        events[out].events = m;
        events[out].data.u64 = g->data;
        ++out;
      }
      return 0;
    });
    if (out > 0) return Outcome::Done(out);
    if (!deadline.is_never() && io::MonotonicNow() >= deadline) return Outcome::Done(0);
  }
}

}  // namespace

bool InstallStackBackend(const Config& config) {
  auto* b = new Backend(config);
  g_backend = b;
  if (!b->Init()) {
    g_backend = nullptr;
    return b->busy();  // a busy device is not a configuration error: pass through
  }
  InstallBackend(b);
  return true;
}

}  // namespace shake::shim
