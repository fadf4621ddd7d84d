// The keeper: the one process that outlives every program on a stack (founders' decision 3b).
//
// Started by the process that creates the stack (attach.cc), detached in a session of its own,
// with the arena as fd 3 and the device as fd 4. It
//  - answers attaching processes (keeper_link.h): the arena and the device for each, after
//    checking that it runs as the stack's user (or root), with the same libshake.so and the
//    same address;
//  - notices a process's end when its connection closes, and closes that process's sockets as
//    the kernel closes a dead process's files (FIN, or RST when unread data is left);
//  - runs the stack's timers when no program is inside the stack to run them: retransmission,
//    persist, keepalive, and the orphans' FIN-WAIT and TIME-WAIT;
//  - reads the device when no program does: at once when no process is attached (the stack then
//    holds only orphans), otherwise as a backstop, every 50 ms while the device was busy in the
//    last second and no program thread waits on it (an idle stack costs it no wake-up);
//  - ends when its stack has had no process and no connection for SHAKE_KEEPER_IDLE seconds
//    (5 by default).
// It takes the stack lock only in its own loop, never to answer a process, so a process may
// talk to it while holding the lock (a fork does).
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <memory>
#include <string>
#include <unordered_map>

#include "io/clock.h"
#include "io/device.h"
#include "io/pcap.h"
#include "io/pump.h"
#include "io/stack_host.h"
#include "shim/arena.h"
#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"
#include "shim/keeper_link.h"
#include "shim/real.h"
#include "shim/stat_snapshot.h"

namespace shake::shim {

bool LibIdentity(bool* at_base, uint64_t id[4]);

namespace {

constexpr int kMemFd = 3;
constexpr int kDevFd = 4;
constexpr int64_t kBackstopNs = 50'000'000;   // the device check while programs are attached
constexpr int64_t kBusyWindowNs = 1'000'000'000;
constexpr int64_t kSlackNs = 1'000'000;       // timers are run this late at most (a jiffy)
constexpr int64_t kSweepNs = 5'000'000'000;   // slots without a connection: is the pid alive?
constexpr int64_t kFirstHelloNs = 10'000'000'000;  // a keeper nobody attaches to ends
// The data of the keeper's epoll registrations: fixed tags, a process connection (kTagConn |
// fd), or a Channel*.
constexpr uint64_t kTagListen = 1, kTagBell = 2;
constexpr uint64_t kTagConn = uint64_t{1} << 62;

FILE* g_log = nullptr;
void KLog(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void KLog(const char* fmt, ...) {
  if (g_log == nullptr) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(g_log, "shake-keeper[%d]: ", getpid());
  vfprintf(g_log, fmt, ap);
  fputc('\n', g_log);
  fflush(g_log);
  va_end(ap);
}

bool ProcessAlive(int32_t pid) {
  if (pid <= 0) return pid == -1;  // a child not yet run
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return errno != ENOENT;
  char buf[256];
  const size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  return !(p != nullptr && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

// A descriptor of the device the keeper holds, with its own pump.
struct Channel {
  std::unique_ptr<io::Device> dev;
  std::unique_ptr<io::Pump> pump;
  int slot = -1;          // the live process that reads it; -1: the keeper's own, or an orphan
  bool watched = false;   // in the keeper's epoll: read as frames come
};

class Keeper {
 public:
  int Run();

 private:
  struct Conn {
    int slot = -1;
    uint32_t generation = 0;
    bool welcomed = false;
    std::unique_ptr<Channel> chan;  // the process's own channel (kChannel), when it has one
  };

  bool Map(std::string* why);
  std::unique_ptr<Channel> MakeChannel(int fd, int fanout);
  void Watch(Channel& c, bool on);
  void Accept();
  void Serve(int fd);
  void Drop(int fd);
  void Welcome(int fd, const LinkHello& h);
  void Stat(int fd, bool json);
  void Adopt(int fd, int chan_fd);
  void GiveChannel(int fd);
  // Reads `c` (all it holds, bounded), runs due timers and writes the output. `c` null: timers
  // and output only.
  void Pass(Channel* c);
  // The channel the keeper writes on: its own while it receives, else any it holds.
  Channel* Tx();
  bool LiveMembers() const;
  // After the set of live members changed: the keeper's own channel and the orphans are read
  // by the keeper only while no live process reads a channel of its own.
  void Rebalance();
  bool Empty();

  Arena* arena_ = nullptr;
  Shared* sh_ = nullptr;
  std::unique_ptr<ArenaLock> lock_;
  std::unique_ptr<TxOrder> tx_order_;
  std::unique_ptr<io::StackHandler> handler_;
  std::unique_ptr<io::PcapWriter> pcap_;
  std::unique_ptr<io::TraceLogWriter> trace_;
  // The device as the creator opened it: the one descriptor of a device that shares nothing
  // (every process reads it, under the lock), or the first fanout socket / TUN queue, which
  // stops receiving once a process reads a channel of its own.
  std::unique_ptr<Channel> own_;
  bool own_receiving_ = true;
  std::unique_ptr<Channel> send_only_;  // AF_PACKET: receives nothing; handed to processes
  bool shared_ = true;  // processes read own_ (the device cannot share flows)
  // Channels of processes that are gone, read by the keeper until a live process reads one of
  // its own (their flows then move to it).
  std::vector<std::unique_ptr<Channel>> orphans_;
  int listen_ = -1;
  int ep_ = -1;
  int bell_ = -1;
  std::unordered_map<int, Conn> conns_;
  int64_t idle_ns_ = 5'000'000'000;
  bool served_ = false;  // a process has attached since we started
};

std::unique_ptr<Channel> Keeper::MakeChannel(int fd, int fanout) {
  std::string err;
  auto c = std::make_unique<Channel>();
  c->dev = io::OpenDevice(sh_->device, &err, {.inherited_fd = fd, .fanout_group = fanout});
  if (c->dev) c->dev->set_coalesce(true);  // the stack takes super-frames whole
  if (!c->dev) {
    KLog("a channel of %s: %s", sh_->device, err.c_str());
    return nullptr;
  }
  c->pump = std::make_unique<io::Pump>(*c->dev);
  c->pump->SetOrderLock(tx_order_.get());
  if (pcap_) c->pump->AddFilter(pcap_.get());
  return c;
}

void Keeper::Watch(Channel& c, bool on) {
  if (c.watched == on) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &c;
  epoll_ctl(ep_, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, c.dev->fd(), &ev);
  c.watched = on;
}

bool Keeper::Map(std::string* why) {
  const char* a = getenv("SHAKE_KEEPER_ARENA");
  unsigned long long base = 0, size = 0;
  if (a == nullptr || sscanf(a, "%llx:%llx", &base, &size) != 2) {
    *why = "started without SHAKE_KEEPER_ARENA (libshake starts its keeper itself)";
    return false;
  }
  arena_ = Arena::Attach(static_cast<uintptr_t>(base), static_cast<size_t>(size), kMemFd);
  if (arena_ == nullptr) {
    *why = "cannot map the arena at its address";
    return false;
  }
  sh_ = static_cast<Shared*>(arena_->root());
  bool at_base = false;
  uint64_t id[4] = {};
  if (sh_ == nullptr || sh_->magic != kSharedMagic || !LibIdentity(&at_base, id) || !at_base ||
      std::memcmp(id, sh_->lib_id, sizeof id) != 0) {
    *why = "the arena was made by another libshake.so";
    return false;
  }
  g_shared = sh_;
  lock_ = std::make_unique<ArenaLock>(arena_->mutex());
  tx_order_ = std::make_unique<TxOrder>(*sh_);
  handler_ = std::make_unique<io::StackHandler>(*sh_->stack);
  std::string err;
  if (sh_->pcap[0] != '\0') {
    pcap_ = io::PcapWriter::OpenShared(sh_->pcap, io::LinktypeFor(sh_->stack->config().link),
                                       false, &err);
  }
  const bool packet = sh_->stack->config().link == LinkMode::kEthernet;
  own_ = MakeChannel(real::fcntl(kDevFd, F_DUPFD_CLOEXEC, 10), packet ? sh_->fanout_group : -1);
  real::close(kDevFd);
  if (!own_) {
    *why = "cannot use the device the stack was made with";
    return false;
  }
  shared_ = !own_->dev->shares_flows();
  if (packet) {
    // What the keeper and a process that has no channel of its own yet send on: a socket that
    // receives nothing, so that it can be handed to anyone.
    std::string terr;
    std::unique_ptr<io::Device> d = io::OpenDevice(sh_->device, &terr, {.send_only = true});
    if (d) {
      send_only_ = MakeChannel(real::fcntl(d->fd(), F_DUPFD_CLOEXEC, 10), -1);
    } else {
      KLog("no send-only socket on %s: %s", sh_->device, terr.c_str());
    }
  }
  if (sh_->trace[0] != '\0') {
    trace_ = io::TraceLogWriter::Open(sh_->trace, sh_->stack->config(), &err);
    g_trace = trace_.get();
  }
  return true;
}

bool Keeper::LiveMembers() const {
  for (const auto& [fd, c] : conns_) {
    if (c.chan) return true;
  }
  return false;
}

Channel* Keeper::Tx() {
  if (send_only_) return send_only_.get();
  if (own_ && own_receiving_) return own_.get();
  for (auto& [fd, c] : conns_) {
    if (c.chan) return c.chan.get();
  }
  if (!orphans_.empty()) return orphans_.front().get();
  return own_.get();  // a fanout socket that no longer receives still sends
}

void Keeper::Rebalance() {
  if (shared_) {
    // One descriptor for all: the keeper reads it as frames come only while no process has
    // claimed a slot (the backstop covers attached ones). `shake stat` connections claim none.
    bool claimed = false;
    for (const auto& [fd, c] : conns_) claimed |= c.slot >= 0;
    Watch(*own_, !claimed);
    return;
  }
  if (LiveMembers()) {
    if (own_ && own_receiving_) {
      Pass(own_.get());  // what it holds still
      Watch(*own_, false);
      if (own_->dev->link() == LinkMode::kEthernet) {
        own_.reset();  // a fanout socket cannot leave its group but by closing
      } else {
        own_->dev->SetReceiving(false);  // a TUN queue can stop receiving and stay
      }
      own_receiving_ = false;
    }
    for (auto& o : orphans_) {  // their flows move to the live members once they are closed
      Pass(o.get());
      Watch(*o, false);
    }
    orphans_.clear();
    return;
  }
  for (auto& o : orphans_) Watch(*o, true);
  if (orphans_.empty() && !own_receiving_) {
    // Nothing receives: the keeper's own channel again.
    if (own_) {
      own_receiving_ = own_->dev->SetReceiving(true);
    } else {
      std::string err;
      std::unique_ptr<io::Device> d =
          io::OpenDevice(sh_->device, &err,
                         {.fanout_group = sh_->fanout_group, .only_ipv4 = sh_->addr});
      if (d) {
        own_ = MakeChannel(real::fcntl(d->fd(), F_DUPFD_CLOEXEC, 10), sh_->fanout_group);
        own_receiving_ = own_ != nullptr;
      } else {
        KLog("cannot read %s again: %s", sh_->device, err.c_str());
      }
    }
  }
  if (own_ && own_receiving_) Watch(*own_, true);
}

bool Keeper::Empty() {
  lock_->lock();
  const auto states = sh_->stack->ConnectionsByState();
  lock_->unlock();
  for (size_t n : states) {
    if (n != 0) return false;
  }
  return true;
}

void Keeper::Pass(Channel* c) {
  lock_->lock();
  const Instant now = io::MonotonicNow();
  Channel* tx = Tx();
  io::Pump* out = tx != nullptr ? tx->pump.get() : nullptr;
  Instant next = Instant::Never();
  try {
    if (c != nullptr) {
      c->pump->Drain(now, *handler_, 256);
      sh_->last_drain.store(now.nanos(), std::memory_order_relaxed);
    }
    if (out != nullptr) next = sh_->stack->Poll(now, out->sink(now));
  } catch (const std::bad_alloc&) {
    // The shared arena is exhausted: the frame being handled is lost, as a kernel out of
    // memory drops one, and the keeper tries again shortly instead of dying.
    next = now + Duration::Millis(10);
  }
  if (trace_) trace_->Flush();
  sh_->deadline.store(next.nanos(), std::memory_order_relaxed);
  // What the stack answered while `c` was drained (ACKs, and the data and FINs those ACKs let
  // out) sits in c's own batch: it leaves first, then what Poll made. It used to wait until the
  // batch filled, so a dead process's connection stalled once its peer's ACKs came to the keeper.
  io::Pump* drained = c != nullptr && c->pump.get() != out ? c->pump.get() : nullptr;
  io::Pump::TxBatch* answers = drained != nullptr ? drained->Seal() : nullptr;
  io::Pump::TxBatch* batch = out != nullptr ? out->Seal() : nullptr;
  const bool writes = answers != nullptr || batch != nullptr;
  TxTurn turn;
  if (writes) turn.Take(*sh_, io::Pump::Flows(answers) | io::Pump::Flows(batch));
  lock_->unlock();
  if (writes) {
    turn.Await(*sh_);
    if (answers != nullptr) drained->Send(answers);
    if (batch != nullptr) out->Send(batch);
    turn.End(*sh_);
  }
  FlushRings(*sh_);
}

int Keeper::Run() {
  ReentrancyGuard guard;  // every call below goes straight to the kernel
  signal(SIGPIPE, SIG_IGN);
  if (const char* path = getenv("SHAKE_KEEPER_LOG"); path != nullptr && *path != '\0') {
    g_log = fopen(path, "ae");
  }
  if (const char* idle = getenv("SHAKE_KEEPER_IDLE"); idle != nullptr && *idle != '\0') {
    idle_ns_ = static_cast<int64_t>(strtol(idle, nullptr, 10)) * 1'000'000'000;
  }
  (void)TheObserver();  // the stack's observer in this image, before any stack call
  std::string why;
  if (!Map(&why)) {
    KLog("%s", why.c_str());
    return 2;
  }
  listen_ = ListenKeeper(KeeperName(sh_->device));
  if (listen_ < 0) {
    KLog("another keeper serves %s (%s)", sh_->device, strerror(errno));
    return 3;
  }
  // Held for life: a process whose trylock succeeds knows this keeper is gone.
  if (pthread_mutex_lock(&sh_->keeper_alive) == EOWNERDEAD) {
    pthread_mutex_consistent(&sh_->keeper_alive);
  }
  sh_->keeper_pid = getpid();
  bell_ = CreateDoorbellSocket(sh_->id, sh_->keeper_doorbell - 1);
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagListen;
  epoll_ctl(ep_, EPOLL_CTL_ADD, listen_, &ev);
  if (bell_ >= 0) {
    ev.data.u64 = kTagBell;
    epoll_ctl(ep_, EPOLL_CTL_ADD, bell_, &ev);
    sh_->doorbells[sh_->keeper_doorbell - 1].sleepers.store(1);  // always "asleep": ring me
  }
  Rebalance();
  KLog("serving %s (pid %d)%s", sh_->device, getpid(),
       shared_ ? "" : "; each process reads a channel of its own");

  const int64_t started = io::MonotonicNow().nanos();
  int64_t empty_since = 0;
  int64_t next_sweep = started + kSweepNs;
  for (;;) {
    const int64_t now = io::MonotonicNow().nanos();
    int64_t wake = std::min(sh_->deadline.load(std::memory_order_relaxed),
                            sh_->rung_deadline.exchange(INT64_MAX, std::memory_order_relaxed));
    if (wake < INT64_MAX - kSlackNs) wake += kSlackNs;
    const bool busy = now - sh_->last_drain.load(std::memory_order_relaxed) < kBusyWindowNs;
    if (!conns_.empty() && busy) wake = std::min(wake, now + kBackstopNs);
    if (empty_since != 0) wake = std::min(wake, empty_since + idle_ns_);
    wake = std::min(wake, next_sweep);
    sh_->keeper_wake.store(wake, std::memory_order_relaxed);
    const int64_t wait_ms =
        wake <= now ? 0 : std::min<int64_t>((wake - now + 999'999) / 1'000'000, 3'600'000);
    epoll_event events[64];
    const int n = epoll_wait(ep_, events, 64, static_cast<int>(wait_ms));
    bool timers_done = false;
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTagListen) {
        Accept();
      } else if (tag == kTagBell) {
        char buf[64];
        while (recv(bell_, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        sh_->doorbells[sh_->keeper_doorbell - 1].rung.store(0);
      } else if (tag & kTagConn) {
        Serve(static_cast<int>(tag & ~kTagConn));
      } else {
        Pass(static_cast<Channel*>(events[i].data.ptr));  // own_ or an orphan, as frames come
        timers_done = true;
      }
    }
    const int64_t t = io::MonotonicNow().nanos();
    // The backstop: a channel nobody asleep waits on, whose frames nobody has read for a while.
    if (!conns_.empty() && t - sh_->last_drain.load(std::memory_order_relaxed) > kBackstopNs / 2) {
      if (shared_) {
        pollfd p{own_->dev->fd(), POLLIN, 0};
        if (sh_->device_sleepers.load() == 0 && poll(&p, 1, 0) > 0) {
          Pass(own_.get());
          timers_done = true;
        }
      } else {
        for (auto& [fd, c] : conns_) {
          if (!c.chan || c.slot < 0) continue;
          if (__atomic_load_n(&sh_->procs[c.slot].device_sleepers, __ATOMIC_ACQUIRE) != 0) {
            continue;
          }
          pollfd p{c.chan->dev->fd(), POLLIN, 0};
          if (poll(&p, 1, 0) <= 0 || !TakeRead(*sh_, c.slot)) continue;
          Pass(c.chan.get());
          ReleaseRead(*sh_, c.slot);
          timers_done = true;
        }
      }
    }
    if (!timers_done && t >= sh_->deadline.load(std::memory_order_relaxed)) Pass(nullptr);
    if (t >= next_sweep) {
      next_sweep = t + kSweepNs;
      // Slots of processes that vanished without a connection (killed between claiming a
      // slot and telling us): released as if their connection had closed.
      lock_->lock();
      for (uint32_t p = 0; p < sh_->limits.procs; ++p) {
        const int32_t pid = sh_->procs[p].pid;
        if (pid == 0) continue;
        bool claimed = false;
        for (const auto& [fd, c] : conns_) claimed |= c.slot == static_cast<int>(p);
        if (!claimed && !ProcessAlive(pid)) {
          KLog("process slot %u (pid %d) has no connection and is gone: released", p, pid);
          ReleaseProcess(*sh_, arena_->resource(), io::MonotonicNow(), static_cast<int>(p));
        }
      }
      lock_->unlock();
      FlushRings(*sh_);
    }
    if (!conns_.empty() || !Empty() || (!served_ && t - started < kFirstHelloNs)) {
      empty_since = 0;  // the creator attaches within milliseconds of our start
    } else if (empty_since == 0) {
      empty_since = t;
    } else if (t - empty_since >= idle_ns_) {
      break;
    }
  }
  // Idle: no process, no connection. New processes now find no keeper and make a new stack.
  close(listen_);
  KLog("stack on %s empty for %.1f s: exiting", sh_->device, static_cast<double>(idle_ns_) / 1e9);
  return 0;
}

void Keeper::Accept() {
  for (int i = 0; i < 64; ++i) {  // bounded per pass; the rest wait in the backlog
    const int fd = accept4(listen_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    conns_[fd] = Conn{};
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = kTagConn | static_cast<uint64_t>(fd);
    epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void Keeper::Serve(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  for (int i = 0; i < 16; ++i) {  // bounded: a process sends at most two messages
    union {
      LinkType type;
      LinkHello hello;
      LinkClaim claim;
      LinkStat stat;
      LinkChannel channel;
    } m{};
    iovec v{&m, sizeof m};
    msghdr h{};
    h.msg_iov = &v;
    h.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    h.msg_control = control;
    h.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(fd, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      Drop(fd);
      return;
    }
    if (n < 0) return;
    int passed = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        std::memcpy(&passed, CMSG_DATA(c), sizeof passed);
      }
    }
    if (passed >= 0) close(passed);  // nothing a process sends carries a descriptor
    if (m.type == LinkType::kChannel && n == sizeof(LinkChannel)) {
      GiveChannel(fd);
      continue;
    }
    if (m.type == LinkType::kHello && n == sizeof(LinkHello)) {
      Welcome(fd, m.hello);
    } else if (m.type == LinkType::kClaim && n == sizeof(LinkClaim) && m.claim.slot >= 0 &&
               static_cast<uint32_t>(m.claim.slot) < sh_->limits.procs) {
      it->second.slot = m.claim.slot;
      it->second.generation = m.claim.generation;
      Rebalance();  // a process now reads the shared descriptor: the keeper stops
    } else if (m.type == LinkType::kStat && n == sizeof(LinkStat)) {
      Stat(fd, m.stat.json != 0);
    }
  }
}

void Keeper::Welcome(int fd, const LinkHello& h) {
  LinkWelcome w;
  ucred cred{};
  socklen_t len = sizeof cred;
  getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
  const std::string dev = sh_->device;
  char mine[32];
  snprintf(mine, sizeof mine, "%u.%u.%u.%u/%d", sh_->addr >> 24, (sh_->addr >> 16) & 255,
           (sh_->addr >> 8) & 255, sh_->addr & 255, sh_->prefix_len);
  if (cred.uid != sh_->uid && cred.uid != 0) {
    w.status = EACCES;
    snprintf(w.message, sizeof w.message,
             "shake: SHAKE_DEVICE=%s: served by another user's stack (uid %u); run as that "
             "user, or give this program a device of its own",
             dev.c_str(), sh_->uid);
  } else if (std::memcmp(h.lib_id, sh_->lib_id, sizeof h.lib_id) != 0) {
    w.status = EPROTO;
    snprintf(w.message, sizeof w.message,
             "shake: SHAKE_DEVICE=%s: served by a stack of another libshake.so; run every "
             "program on this device with the same libshake, or wait for that stack to end",
             dev.c_str());
  } else if (h.addr != sh_->addr || h.prefix_len != sh_->prefix_len) {
    w.status = EADDRNOTAVAIL;
    snprintf(w.message, sizeof w.message,
             "shake: SHAKE_ADDR: the stack on %s has address %s; give the same address, or "
             "use another device",
             dev.c_str(), mine);
  } else if (h.has_gateway && sh_->has_gateway && h.gateway != sh_->gateway) {
    // A gateway is the stack's route, common to its programs: the first one given is kept
    // (the process that brings one to a stack without sets it, attach.cc).
    w.status = ENETUNREACH;
    snprintf(w.message, sizeof w.message,
             "shake: SHAKE_GATEWAY: the stack on %s routes through %u.%u.%u.%u; give the same "
             "gateway, or none",
             dev.c_str(), sh_->gateway >> 24, (sh_->gateway >> 16) & 255,
             (sh_->gateway >> 8) & 255, sh_->gateway & 255);
  } else {
    w.base = arena_->base();
    w.size = arena_->size();
    Channel* tx = Tx();
    if (tx == nullptr) {
      w.status = ENODEV;
      snprintf(w.message, sizeof w.message, "shake: SHAKE_DEVICE=%s: its keeper lost the device",
               dev.c_str());
      SendLink(fd, &w, sizeof w);
      return;
    }
    const int fds[2] = {kMemFd, tx->dev->fd()};
    if (SendLink(fd, &w, sizeof w, fds, 2)) {
      conns_[fd].welcomed = true;
      served_ = true;
    }
    return;
  }
  KLog("refused pid %d: %s", cred.pid, w.message);
  SendLink(fd, &w, sizeof w);
}

void Keeper::Stat(int fd, bool json) {
  LinkStatReply r;
  ucred cred{};
  socklen_t len = sizeof cred;
  getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
  if (cred.uid != sh_->uid && cred.uid != 0) {
    r.status = EACCES;
    SendLink(fd, &r, sizeof r);
    return;
  }
  lock_->lock();
  const std::string text = StatSnapshot(*sh_, arena_->resource()->live(), json);
  lock_->unlock();
  const int mfd = memfd_create("libshake-stat", MFD_CLOEXEC);
  if (mfd < 0 || write(mfd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    r.status = errno != 0 ? errno : EIO;
    if (mfd >= 0) close(mfd);
    SendLink(fd, &r, sizeof r);
    return;
  }
  r.size = text.size();
  SendLink(fd, &r, sizeof r, &mfd, 1);
  close(mfd);
}

void Keeper::GiveChannel(int fd) {
  LinkChannelReply r;
  std::string err;
  std::unique_ptr<io::Device> d;
  if (!shared_) {
    d = io::OpenDevice(sh_->device, &err,
                       {.fanout_group = sh_->fanout_group, .only_ipv4 = sh_->addr});
  }
  const int mine = d ? real::fcntl(d->fd(), F_DUPFD_CLOEXEC, 10) : -1;
  d.reset();
  if (mine < 0) {
    r.status = shared_ ? EOPNOTSUPP : ENODEV;
    KLog("no channel of its own for a process: %s", shared_ ? "shared device" : err.c_str());
    SendLink(fd, &r, sizeof r);
    return;
  }
  SendLink(fd, &r, sizeof r, &mine, 1);
  Adopt(fd, mine);  // the keeper's copy
}

void Keeper::Adopt(int fd, int chan_fd) {
  auto it = conns_.find(fd);
  const bool packet = sh_->stack->config().link == LinkMode::kEthernet;
  std::unique_ptr<Channel> c = MakeChannel(chan_fd, packet ? sh_->fanout_group : -1);
  if (it == conns_.end() || !c) return;
  c->slot = it->second.slot;
  if (it->second.chan) {  // an exec'd image's channel replaces its old image's
    Pass(it->second.chan.get());
    it->second.chan.reset();
  }
  it->second.chan = std::move(c);
  Rebalance();
}

void Keeper::Drop(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn c = std::move(it->second);
  conns_.erase(it);
  epoll_ctl(ep_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  // What already came for the process is read before its sockets are closed, as the kernel
  // would have on arrival: a FIN waiting there makes the close a passive one (LAST-ACK), not
  // an active one that holds TIME-WAIT for a minute.
  if (c.chan) {
    Pass(c.chan.get());
    // The channel may hold more frames of its flows; until another process reads a channel of
    // its own, the keeper reads this one.
    c.chan->slot = -1;
    orphans_.push_back(std::move(c.chan));
  } else if (shared_ && own_) {
    Pass(own_.get());
  }
  bool ours = false;
  if (c.slot >= 0) {
    lock_->lock();
    ProcSlot& p = sh_->procs[c.slot];
    ours = p.pid != 0 && p.generation == c.generation;
    if (ours) {
      KLog("process slot %d (pid %d) ended: its descriptors are closed", c.slot, p.pid);
      ReleaseProcess(*sh_, arena_->resource(), io::MonotonicNow(), c.slot);
    }
    lock_->unlock();
  }
  Rebalance();
  if (ours) Pass(nullptr);  // the FINs and RSTs of the dead process's sockets leave now
}

}  // namespace
}  // namespace shake::shim

namespace shake::shim {
int KeeperMain(int, char**) {
  Keeper keeper;
  return keeper.Run();
}
}  // namespace shake::shim
