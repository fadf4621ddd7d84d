// Joining a stack: the first process on a device creates the stack and starts its keeper; every
// process (that one included) then attaches through the keeper (keeper_link.h).
//
// Creating: the creator opens the device (so a missing permission is its own error, reported
// once), builds the Shared tables and the Stack in a new arena at a fixed random address, and
// starts the keeper with the arena's memfd and the device inherited. It then lets go of both
// and attaches like any other process. Two creators racing on one device each start a keeper;
// the keeper that binds the name first wins, the other exits, and both creators attach to the
// winner.
//
// Attaching: Hello -> Welcome with the memfd and the device; the arena is mapped at the address
// recorded in it (MAP_FIXED_NOREPLACE). Its pointers — the stack's vtables, its observer —
// point into libshake.so, which is linked to load at one fixed address (SHAKE_LIB_BASE), and
// the keeper refuses a process whose libshake.so is another file.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sched.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "io/clock.h"
#include "io/trace_log.h"
#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"
#include "shim/keeper_link.h"
#include "shim/log.h"
#include "shim/real.h"
#include "shim/runtime.h"
#include "shim/sanitizer_runtime.h"

#ifndef SHAKE_LIB_BASE
#define SHAKE_LIB_BASE 0
#endif
#ifndef SHAKE_KEEPER_PATH
#define SHAKE_KEEPER_PATH "/usr/libexec/libshake/shake-keeper"
#endif

namespace shake::shim {

Backend* g_backend = nullptr;
Shared* g_shared = nullptr;
io::TraceLogWriter* g_trace = nullptr;

namespace {

constexpr size_t kArenaSize = size_t{16} << 30;  // reserved, not committed (MAP_NORESERVE)

// The stack's observer: one static object, at the same address in every image of libshake.
class ObserverRelay final : public StackObserver {
 public:
  void OnReadiness(SocketId id) override {
    if (g_shared != nullptr) NotifySocket(*g_shared, id);
  }
  void OnTrace(const TraceEvent& e) override {
    if (g_trace != nullptr) g_trace->Append(e);
  }
};
alignas(ObserverRelay) unsigned char g_observer_storage[sizeof(ObserverRelay)];

std::string DeviceSpec(const Config& c) {
  return std::string(c.device == DeviceKind::kTun ? "tun:" : "packet:") + c.ifname;
}

void* MapPrivate(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// Moves `fd` to a hidden number (close-on-exec); returns the new number (or fd if it cannot).
int Hide(int fd, int base) {
  const int h = real::fcntl(fd, F_DUPFD_CLOEXEC, static_cast<unsigned long>(base));
  if (h < 0) return fd;
  real::close(fd);
  Fds()->Set(h, FdEntry{FdKind::kHidden, 0});
  return h;
}

// The path of this libshake.so, and the keeper program beside it or where the package puts it.
bool LibPath(std::string* lib) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&LibPath), &info) == 0 || info.dli_fname == nullptr) {
    return false;
  }
  *lib = info.dli_fname;
  return true;
}

std::string KeeperPath(const std::string& lib) {
  const auto slash = lib.rfind('/');
  if (slash != std::string::npos) {
    std::string beside = lib.substr(0, slash + 1) + "shake-keeper";
    if (access(beside.c_str(), X_OK) == 0) return beside;
  }
  return SHAKE_KEEPER_PATH;
}

// Starts the keeper detached from this process (a grandchild in its own session, reparented to
// init), with the arena and the device as descriptors 3 and 4. Everything between fork and exec
// is async-signal-safe. False when it could not be started.
bool SpawnKeeper(int memfd, int devfd, const Arena& arena, const Config& c, std::string* error) {
  std::string lib;
  if (!LibPath(&lib)) {
    *error = "cannot find libshake.so's own path";
    return false;
  }
  const std::string keeper = KeeperPath(lib);
  if (access(keeper.c_str(), X_OK) != 0) {
    *error = "cannot run the keeper " + keeper + " (" + strerrorname_np(errno) +
             "); reinstall libshake";
    return false;
  }
  char arena_env[96];
  snprintf(arena_env, sizeof arena_env, "SHAKE_KEEPER_ARENA=%llx:%llx",
           static_cast<unsigned long long>(arena.base()),
           static_cast<unsigned long long>(arena.size()));
  // A sanitizer build's keeper needs the sanitizer's runtime (ASan's first, TSan's after
  // libshake: shim/CMakeLists.txt), and its options: the keeper's stderr is /dev/null, so its
  // ASan, LSan and TSan reports reach only the log_path they name.
  const std::string runtime = SHAKE_SANITIZER_RUNTIME;
  const std::string preload =
      "LD_PRELOAD=" + (runtime.empty()                   ? lib
                       : SHAKE_SANITIZER_RUNTIME_FIRST ? runtime + " " + lib
                                                       : lib + " " + runtime);
  // UBSan writes to stderr whatever its log_path: SHAKE_KEEPER_STDERR names a file (appended to)
  // for the keeper's stderr instead.
  std::vector<std::string> sanitizer_env;
  int err_fd = -1;
  if (!runtime.empty()) {
    for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"}) {
      if (const char* v = getenv(name)) sanitizer_env.push_back(std::string(name) + "=" + v);
    }
    if (const char* path = getenv("SHAKE_KEEPER_STDERR"); path != nullptr && *path != '\0') {
      err_fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path,
                                        O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    }
  }
  std::string idle = "SHAKE_KEEPER_IDLE=";
  if (c.keeper_idle_s >= 0) idle += std::to_string(c.keeper_idle_s);
  const std::string log = std::string("SHAKE_LOG=") + LogLevelName(c.log);
  const char* keeper_log = getenv("SHAKE_KEEPER_LOG");
  const std::string klog = std::string("SHAKE_KEEPER_LOG=") + (keeper_log ? keeper_log : "");
  std::vector<char*> envp = {const_cast<char*>(preload.c_str()), const_cast<char*>(arena_env),
                             const_cast<char*>(idle.c_str()),    const_cast<char*>(log.c_str()),
                             const_cast<char*>(klog.c_str()),
                             const_cast<char*>("SHAKE_KEEPER=1")};
  for (std::string& v : sanitizer_env) envp.push_back(v.data());
  envp.push_back(nullptr);
  char* const argv[] = {const_cast<char*>("shake-keeper"), nullptr};
  const int null_fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR));
  const pid_t child = real::fork();
  if (child < 0) {
    *error = std::string("fork: ") + strerrorname_np(errno);
    if (null_fd >= 0) real::close(null_fd);
    if (err_fd >= 0) real::close(err_fd);
    return false;
  }
  if (child == 0) {
    syscall(SYS_setsid);
    if (real::fork() != 0) _exit(0);
    // The grandchild: a clean signal state, stdio on /dev/null (a keeper must not hold the
    // program's pipes open), the arena and the device as 3 and 4, nothing else.
    sigset_t none;
    sigemptyset(&none);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof(uint64_t));
    for (int s = 1; s < 65; ++s) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, nullptr);
    }
    const int m = real::fcntl(memfd, F_DUPFD, 10);
    const int d = real::fcntl(devfd, F_DUPFD, 10);
    if (m < 0 || d < 0 || null_fd < 0) _exit(126);
    real::dup2(null_fd, 0);
    real::dup2(null_fd, 1);
    real::dup2(err_fd >= 0 ? err_fd : null_fd, 2);
    real::dup2(m, 3);
    real::dup2(d, 4);
    real::close_range(5, ~0u, 0);
    real::execve(keeper.c_str(), argv, envp.data());
    _exit(127);
  }
  if (null_fd >= 0) real::close(null_fd);
  if (err_fd >= 0) real::close(err_fd);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return true;
}

}  // namespace

StackObserver* TheObserver() {
  static StackObserver* o = new (g_observer_storage) ObserverRelay();  // never destroyed
  return o;
}

// libshake's own identity: the arena's code pointers need the same file at the same place.
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

Instant DeadlineAfterNanos(int64_t ns) {
  return ns <= 0 ? Instant::Never() : io::MonotonicNow() + Duration::Nanos(ns);
}

timespec RelativeTo(Instant deadline) {
  int64_t left = (deadline - io::MonotonicNow()).nanos();
  if (left < 0) left = 0;
  return {static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
}

bool Backend::Init() {
  ReentrancyGuard guard;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    hidden_base_ = static_cast<int>(std::min<rlim_t>(rl.rlim_cur / 2, 4096));
  }
  if (!LibIdentity(&lib_at_base_, lib_id_)) lib_at_base_ = false;
  (void)TheObserver();  // before any stack call: the arena names this object
  pthread_atfork([] { g_backend->AtForkPrepare(); }, [] { g_backend->AtForkParent(); },
                 [] { g_backend->AtForkChild(); });
  // For this image only: its own children get their own.
  if (char handoff[160]; TakeHandoffEntry(handoff, sizeof handoff) && AdoptHandoff(handoff)) {
    AdoptHandoffChannel();
  }
  return true;
}

bool Backend::OpenOwnChannel() {
  if (channel_own_ || !channel_want_own_ || channel_failed_) return channel_own_;
  if (ArenaLock::HeldByThisThread()) return false;  // it takes the lock itself
  std::lock_guard<std::mutex> one(channel_mu_);
  if (channel_own_ || !channel_want_own_) return channel_own_;
  ReentrancyGuard guard;
  // The keeper opens it: it holds the privilege the device needs, which a process that dropped
  // its own (nginx's workers run as nobody) no longer has.
  LinkChannel ask;
  LinkChannelReply reply;
  int fd = -1;
  int nfd = 1;
  if (!SendLink(conn_, &ask, sizeof ask) || !RecvLink(conn_, &reply, sizeof reply, &fd, &nfd, 5000) ||
      reply.status != 0 || nfd != 1) {
    if (nfd == 1 && fd >= 0) real::close(fd);
    // Nothing to read, then: the other processes and the keeper read the device.
    Log(LogLevel::kWarn, "no channel of its own on %s (%s): frames reach it through others",
        sh_->device, reply.status != 0 ? strerrorname_np(reply.status) : "the keeper did not answer");
    channel_failed_ = true;
    return false;
  }
  const int hidden = Hide(fd, hidden_base_);
  std::string err;
  std::unique_ptr<io::Device> mine = io::OpenDevice(
      sh_->device, &err, {.inherited_fd = hidden, .fanout_group = sh_->fanout_group});
  if (mine) mine->set_coalesce(true);  // the stack takes super-frames whole
  if (!mine) {
    channel_failed_ = true;
    return false;
  }
  {
    // Under the stack lock no thread of this process can seal a new batch; once the batches
    // already sealed are written (bounded wait: a write takes microseconds), the old pump and
    // device can go. Our copy of the old descriptor is closed with it: a fanout socket left open
    // in the group would get its share of flows and nobody would read them.
    Session s(*this);
    s.Drain();
    pump_->Flush();
    for (int i = 0; i < 100000 && !pump_->idle(); ++i) sched_yield();
    Fds()->Take(dev_->fd());
    auto pump = std::make_unique<io::Pump>(*mine);
    pump->SetOrderLock(tx_order_.get());
    if (pcap_) pump->AddFilter(pcap_.get());
    pump_ = std::move(pump);
    dev_ = std::move(mine);
    channel_own_ = true;
  }
  Log(LogLevel::kDebug, "reading a channel of its own on %s", sh_->device);
  return true;
}

bool Backend::MayRead() {
  if (channel_own_ || !channel_want_own_) return true;
  if (channel_failed_) return false;
  return OpenOwnChannel();
}

bool Backend::Routed(uint32_t d) const {
  if ((d >> 24) == 127 || d == 0 || d >= 0xe0000000u) return false;
  const uint32_t mask =
      config_.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - config_.prefix_len);
  if ((d & mask) == (config_.addr & mask)) return true;
  return config_.gateway.has_value();
}

bool Backend::EnsureAttached() {
  if (attached()) return true;
  std::lock_guard<std::mutex> once(attach_mu_);
  if (attached()) return true;
  if (attach_failed_) return false;
  ReentrancyGuard guard;
  const std::string spec = DeviceSpec(config_);
  const std::string name = KeeperName(spec);
  std::string error;
  // Bounded: a keeper that is starting, or one that ends as we arrive, costs a round or two.
  for (int attempt = 0; attempt < 50; ++attempt) {
    const int conn = ConnectKeeper(name);
    if (conn >= 0) {
      if (AttachLocked(conn, nullptr)) return true;
      if (attach_failed_) return false;  // refused: the keeper said why
    } else if (errno == ECONNREFUSED || errno == ENOENT) {
      if (attempt == 0 || attempt % 10 == 9) {
        if (!CreateStack(&error)) break;
      }
    } else {
      error = std::string("cannot reach the stack's keeper: ") + strerrorname_np(errno);
      break;
    }
    timespec ts{0, 20000000};  // the new keeper binds its name within milliseconds
    nanosleep(&ts, nullptr);
  }
  if (error.empty()) error = "the stack's keeper did not answer";
  LogLine(("shake: SHAKE_DEVICE=" + spec + ": " + error).c_str());
  attach_failed_ = true;
  attach_errno_ = ENODEV;
  return false;
}

// Creates the stack for config_'s device and starts its keeper. The caller attaches afterwards.
bool Backend::CreateStack(std::string* error) {
  const std::string spec = DeviceSpec(config_);
  if (!lib_at_base_) {
    *error = "libshake.so is not at its fixed address, so no stack can be shared";
    return false;
  }
  std::string derr;
  // AF_PACKET: the keeper's socket is the first of the stack's fanout group (channels).
  uint16_t fanout = 0;
  if (getrandom(&fanout, sizeof fanout, 0) < 0) fanout = static_cast<uint16_t>(getpid());
  std::unique_ptr<io::Device> dev =
      io::OpenDevice(spec, &derr,
                     {.fanout_group = config_.device == DeviceKind::kPacket ? int{fanout} : -1,
                      .only_ipv4 = config_.addr,
                      .offload = true});
  if (!dev) {
    *error = derr;
    return false;
  }
  StackConfig sc;
  sc.addr = Ipv4Addr(config_.addr);
  sc.prefix_len = config_.prefix_len;
  if (config_.gateway) sc.gateway = Ipv4Addr(*config_.gateway);
  sc.link = dev->link();
  sc.mac = dev->mac();
  sc.mtu = dev->mtu();
  if (getrandom(sc.isn_secret.data(), sc.isn_secret.size(), 0) !=
      static_cast<ssize_t>(sc.isn_secret.size())) {
    *error = "no randomness for the ISN secret";
    return false;
  }
  if (getrandom(&sc.seed, sizeof sc.seed, 0) < 0) sc.seed = 1;
  sc.tcp.memory_limit = static_cast<size_t>(config_.mem_max);  // pressure and low: tcp_mem's ratios
  int memfd = -1;
  Arena* a = Arena::Create(kArenaSize, &memfd);
  if (a == nullptr || !a->fixed()) {
    if (a != nullptr) {
      munmap(a, a->size());
      real::close(memfd);
    }
    *error = "cannot map the stack's shared arena at a fixed address";
    return false;
  }
  ArenaResource* mem = a->resource();
  auto* sh = new (mem->allocate(sizeof(Shared), alignof(Shared))) Shared();
  if (config_.max_sockets != 0) sh->limits.sockets = config_.max_sockets;
  if (config_.max_procs != 0) sh->limits.procs = config_.max_procs;
  bool ok = AllocateTables(*sh, mem);
  sh->tables_bytes = mem->live();
  if (ok) {
    try {
      sh->stack = new (mem->allocate(sizeof(Stack), alignof(Stack))) Stack(sc, mem);
    } catch (...) {
      ok = false;
    }
  }
  if (!ok) {
    munmap(a, a->size());
    real::close(memfd);
    *error = "the shared arena is too small for SHAKE_MAX_SOCKETS/SHAKE_MAX_PROCS";
    return false;
  }
  sh->stack->SetObserver(TheObserver());
  sh->stack->SetTracing(!config_.trace.empty());
  std::memcpy(sh->lib_id, lib_id_, sizeof lib_id_);
  if (getrandom(&sh->id, sizeof sh->id, 0) < 0) sh->id = static_cast<uint64_t>(getpid());
  sh->uid = geteuid();
  snprintf(sh->device, sizeof sh->device, "%s", spec.c_str());
  sh->addr = config_.addr;
  sh->prefix_len = config_.prefix_len;
  sh->fanout_group = fanout;
  sh->has_gateway = config_.gateway.has_value();
  sh->gateway = config_.gateway.value_or(0);
  snprintf(sh->pcap, sizeof sh->pcap, "%s", config_.pcap.c_str());
  snprintf(sh->trace, sizeof sh->trace, "%s", config_.trace.c_str());
  ArenaLock::InitMutex(&sh->keeper_alive);
  sh->keeper_doorbell = NewDoorbell(*sh, -2);
  if (sh->pcap[0] != '\0') {
    std::string perr;
    if (!io::PcapWriter::OpenShared(sh->pcap, io::LinktypeFor(sc.link), true, &perr)) {
      LogLine(("shake: SHAKE_PCAP=" + config_.pcap + ": " + perr).c_str());
      sh->pcap[0] = '\0';
    }
  }
  a->set_root(sh);
  const bool spawned = SpawnKeeper(memfd, dev->fd(), *a, config_, error);
  munmap(a, a->size());
  real::close(memfd);
  Log(LogLevel::kInfo, "created the stack on %s (%s/%d)%s", spec.c_str(),
      FormatIpv4(config_.addr).c_str(), config_.prefix_len,
      spawned ? "" : "; its keeper did not start");
  return spawned;
}

// Hello, Welcome, the arena mapped, the device adopted. `resume`: an exec hand-off's slot is
// taken over (handoff.cc) instead of claiming a new one. Consumes `conn`.
bool Backend::AttachLocked(int conn, const char* resume) {
  LinkHello hello;
  std::memcpy(hello.lib_id, lib_id_, sizeof lib_id_);
  snprintf(hello.device, sizeof hello.device, "%s", DeviceSpec(config_).c_str());
  hello.addr = config_.addr;
  hello.prefix_len = config_.prefix_len;
  hello.has_gateway = config_.gateway.has_value() ? 1 : 0;
  hello.gateway = config_.gateway.value_or(0);
  LinkWelcome w;
  int fds[2] = {-1, -1};
  int nfds = 2;
  if (!SendLink(conn, &hello, sizeof hello) ||
      !RecvLink(conn, &w, sizeof w, fds, &nfds, 10000)) {
    real::close(conn);
    return false;  // the keeper went away meanwhile: try again
  }
  auto give_up = [&](const char* why) {
    for (int i = 0; i < nfds; ++i) real::close(fds[i]);
    real::close(conn);
    if (why != nullptr) {
      LogLine((std::string("shake: SHAKE_DEVICE=") + DeviceSpec(config_) + ": " + why).c_str());
      attach_failed_ = true;
      attach_errno_ = ENODEV;
    }
    return false;
  };
  if (w.status != 0) {
    w.message[sizeof w.message - 1] = '\0';
    LogLine(w.message);
    attach_failed_ = true;
    attach_errno_ = w.status;
    return give_up(nullptr);
  }
  if (nfds != 2) return give_up("the keeper sent no arena");
  if (!lib_at_base_) return give_up("libshake.so is not at its fixed address in this program");
  Arena* a = Arena::Attach(static_cast<uintptr_t>(w.base), static_cast<size_t>(w.size), fds[0]);
  if (a == nullptr) return give_up("the stack's arena address is taken in this program");
  memfd_ = Hide(fds[0], hidden_base_);  // kept: a keeper that died is restarted with it
  fds[0] = -1;
  auto* sh = static_cast<Shared*>(a->root());
  if (sh == nullptr || sh->magic != kSharedMagic || sh->version != kSharedVersion ||
      std::memcmp(sh->lib_id, lib_id_, sizeof lib_id_) != 0) {
    munmap(a, a->size());
    return give_up("the stack was made by another libshake.so");
  }
  std::string derr;
  // The device at a hidden number, so that the program cannot close it.
  const int devfd = Hide(fds[1], hidden_base_);
  fds[1] = -1;
  dev_ = io::OpenDevice(sh->device, &derr, {.inherited_fd = devfd});
  if (dev_) dev_->set_coalesce(true);  // the stack takes super-frames whole
  if (!dev_) {
    munmap(a, a->size());
    real::close(conn);
    LogLine(("shake: SHAKE_DEVICE=" + DeviceSpec(config_) + ": " + derr).c_str());
    attach_failed_ = true;
    attach_errno_ = ENODEV;
    return false;
  }
  arena_ = a;
  sh_ = sh;
  g_shared = sh;
  stack_ = sh->stack;
  lock_ = std::make_unique<ArenaLock>(a->mutex());
  conn_ = Hide(conn, hidden_base_);
  SetUpProcess();
  if (config_.gateway && !sh->has_gateway) {  // a route the stack did not have yet
    lock_->lock();
    if (!sh->has_gateway) {
      sh->gateway = *config_.gateway;
      sh->has_gateway = true;
      stack_->SetGateway(Ipv4Addr(*config_.gateway));
    }
    lock_->unlock();
  }
  if (resume == nullptr) {
    int slot;
    {
      lock_->lock();
      slot = ClaimSlotLocked(static_cast<int32_t>(getpid()));
      lock_->unlock();
    }
    if (slot < 0) {
      LogLine(("shake: SHAKE_MAX_PROCS: more than " + std::to_string(sh->limits.procs) +
               " processes share the stack on " + DeviceSpec(config_) +
               "; this one keeps kernel sockets (start the first program with a larger "
               "SHAKE_MAX_PROCS)")
                  .c_str());
      attach_failed_ = true;
      attach_errno_ = EMFILE;
      return false;
    }
    slot_ = slot;
    LinkClaim claim;
    claim.slot = slot;
    claim.generation = sh->procs[slot].generation;
    SendLink(conn_, &claim, sizeof claim);
    attached_.store(true, std::memory_order_release);  // a hand-off's image: AdoptHandoff
    Log(LogLevel::kInfo, "joined the stack on %s as process slot %d", sh->device, slot_);
  }
  return true;
}

void Backend::SetUpProcess() {
  epoll_bell_fd_ = static_cast<int*>(MapPrivate(sizeof(int) * sh_->limits.epolls * 2));
  if (epoll_bell_fd_ != nullptr) {
    std::fill(epoll_bell_fd_, epoll_bell_fd_ + 2 * sh_->limits.epolls, -1);
    epoll_dev_fd_ = epoll_bell_fd_ + sh_->limits.epolls;
  }
  tx_order_ = std::make_unique<TxOrder>(*sh_);
  handler_ = std::make_unique<io::StackHandler>(*stack_);
  if (sh_->pcap[0] != '\0') {
    std::string perr;
    pcap_ = io::PcapWriter::OpenShared(sh_->pcap, io::LinktypeFor(dev_->link()), false, &perr);
  }
  pump_ = std::make_unique<io::Pump>(*dev_);
  pump_->SetOrderLock(tx_order_.get());
  if (pcap_) pump_->AddFilter(pcap_.get());
  // AF_PACKET: a fanout socket of its own, opened when the process first waits for the stack
  // (MayRead), so that a process that never waits (nginx's master) gets no flows to read.
  // TUN devices are read through the one shared descriptor (even a multi-queue one: its queues
  // cannot send without receiving, and the kernel's flow steering follows the queue that sent).
  channel_want_own_ = dev_->link() == LinkMode::kEthernet;
  channel_own_ = false;
  if (sh_->trace[0] != '\0') {
    std::string terr;
    trace_ = io::TraceLogWriter::Open(sh_->trace, stack_->config(), &terr);
    if (!trace_) LogLine(("shake: SHAKE_TRACE=" + std::string(sh_->trace) + ": " + terr).c_str());
    g_trace = trace_.get();
  }
}

int Backend::ClaimSlotLocked(int pid) {
  for (uint32_t p = 0; p < sh_->limits.procs; ++p) {
    if (sh_->procs[p].pid == 0) {
      sh_->procs[p] = ProcSlot{};
      sh_->procs[p].pid = pid;
      sh_->procs[p].generation = ++sh_->next_generation;
      return static_cast<int>(p);
    }
  }
  return -1;
}

bool InstallStackBackend(const Config& config) {
  auto* b = new Backend(config);  // never destroyed: calls may arrive during exit
  g_backend = b;
  if (!b->Init()) {
    g_backend = nullptr;
    return false;
  }
  InstallBackend(GuardBackend(b));
  return true;
}

}  // namespace shake::shim
