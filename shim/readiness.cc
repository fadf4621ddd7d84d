// Readiness that sleeps (founders' decision 2), for any mix of stack and kernel fds.
//
// Stack sockets are never shown to the kernel's poll or epoll; their readiness lives here, and
// the kernel only ever waits on kernel fds plus two of ours:
//  - the device: a thread that sleeps for the stack has it in its wait set, so the frame that
//    ends its wait wakes it and it handles the frame itself (epoll instances hold it with
//    EPOLLEXCLUSIVE, so one sleeper wakes per frame; of the threads blocked in poll or a
//    blocking call, one at a time holds it);
//  - a doorbell (doorbell.h): per epoll instance, or per thread for poll and blocking calls,
//    rung by whichever process changed a socket the sleeper waits for.
//
// Epoll, as the kernel does it (fs/eventpoll.c): a registration of a stack socket is a Watch;
// when the stack reports a readiness event on the socket (NotifySocket), each matching Watch is
// put on its instance's ready list and the instance's sleepers are rung; EPOLLEXCLUSIVE
// registrations are offered in turn until one instance with a sleeper takes it. epoll_wait takes
// the ready list: level-triggered entries stay on it while they are ready, edge-triggered ones
// leave it when reported, one-shot ones are disarmed until EPOLL_CTL_MOD. The kernel's half of
// the instance (its kernel fds) is asked with the same call, and both answers are merged.
//
// A signal ends a wait: poll, select and epoll_wait return EINTR as the kernel's do; a blocking
// socket call restarts after a handler installed with SA_RESTART unless a timeout is set
// (RestartAfterSignal), as a kernel socket's wait does.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "io/clock.h"
#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"
#include "shim/real.h"
#include "shim/runtime.h"
#include "shim/signals.h"

namespace shake::shim {
namespace {

// The data of our own registrations in a program's epoll instance: not canonical user-space
// addresses, so no pointer or small number a program stores can be mistaken for them.
constexpr uint64_t kTagBell = 0xb0e11b0e11b0e11bULL;
constexpr uint64_t kTagDevice = 0xde71cede71cede71ULL;

uint32_t PollMask(uint32_t rd) {
  uint32_t e = 0;
  if (rd & ready::kReadable) e |= POLLIN | POLLRDNORM;
  if (rd & ready::kWritable) e |= POLLOUT | POLLWRNORM;
  if (rd & ready::kError) e |= POLLERR;
  if (rd & ready::kHangup) e |= POLLHUP;
  if (rd & ready::kReadHangup) e |= POLLRDHUP;
  return e;
}

// Marks the stack half of an INADDR_ANY listener's event (see FoldHalves): an input-only bit.
constexpr uint32_t kAnyHalfMark = EPOLLEXCLUSIVE;

// What a Watch or a pollfd asking for `events` sees of socket `id` now.
uint32_t Seen(Stack& st, SocketId id, uint32_t events) {
  return PollMask(st.Readiness(id)) & (events | POLLERR | POLLHUP);
}

void Enqueue(Shared& sh, EpollRec& e, uint32_t w) {
  Watch& x = sh.watches[w - 1];
  if (x.queued) return;
  x.queued = true;
  x.ready_next = 0;
  x.ready_prev = e.ready_tail;
  if (e.ready_tail != 0) {
    sh.watches[e.ready_tail - 1].ready_next = w;
  } else {
    e.ready_head = w;
  }
  e.ready_tail = w;
}

void Dequeue(Shared& sh, EpollRec& e, uint32_t w) {
  Watch& x = sh.watches[w - 1];
  if (!x.queued) return;
  if (x.ready_prev != 0) {
    sh.watches[x.ready_prev - 1].ready_next = x.ready_next;
  } else {
    e.ready_head = x.ready_next;
  }
  if (x.ready_next != 0) {
    sh.watches[x.ready_next - 1].ready_prev = x.ready_prev;
  } else {
    e.ready_tail = x.ready_prev;
  }
  x.queued = false;
  x.ready_next = x.ready_prev = 0;
}

// Takes up to `max` events from instance `e`'s ready list into `out`.
int Harvest(Shared& sh, EpollRec& e, epoll_event* out, int max) {
  uint32_t w = e.ready_head;
  e.ready_head = e.ready_tail = 0;
  uint32_t kept_head = 0, kept_tail = 0;  // level-triggered entries that stay
  int n = 0;
  auto keep = [&](uint32_t k) {
    Watch& x = sh.watches[k - 1];
    x.ready_next = 0;
    x.ready_prev = kept_tail;
    if (kept_tail != 0) {
      sh.watches[kept_tail - 1].ready_next = k;
    } else {
      kept_head = k;
    }
    kept_tail = k;
  };
  while (w != 0) {
    Watch& x = sh.watches[w - 1];
    const uint32_t next = x.ready_next;
    if (n == max) {  // no room: this and the rest stay, in order, ahead of the kept ones
      keep(w);
      w = next;
      continue;
    }
    const SocketRec& r = sh.socks[x.sock];
    const uint32_t m = r.id != kNoSocket && !x.disarmed ? Seen(*sh.stack, r.id, x.events) : 0;
    if (m == 0) {
      x.queued = false;
    } else {
      out[n].events = r.any_addr ? m | kAnyHalfMark : m;
      out[n].data.u64 = x.data;
      ++n;
      if (x.events & EPOLLONESHOT) {
        x.disarmed = true;
        x.queued = false;
      } else if (x.events & EPOLLET) {
        x.queued = false;
      } else {
        keep(w);
      }
    }
    w = next;
  }
  e.ready_head = kept_head;
  e.ready_tail = kept_tail;
  return n;
}

// The events an epoll_ctl may carry, as the kernel checks them.
bool ValidEpollEvents(int op, uint32_t events) {
  if (!(events & EPOLLEXCLUSIVE)) return true;
  if (op == EPOLL_CTL_MOD) return false;
  return (events & ~static_cast<uint32_t>(EPOLLIN | EPOLLOUT | EPOLLWAKEUP | EPOLLET |
                                           EPOLLEXCLUSIVE)) == 0;
}

// The thread's doorbell, and the thread-exit destructor that returns it.
struct ThreadBell {
  uint32_t bell = 0;
  int fd = -1;
  int slot = -1;  // the process slot that made it (a fork child's copy is not its own)
};
__attribute__((tls_model("initial-exec"))) thread_local ThreadBell t_bell;
pthread_key_t g_bell_key;
pthread_once_t g_bell_once = PTHREAD_ONCE_INIT;

void ReturnBell(void*) {
  if (g_backend == nullptr || !g_backend->attached() || t_bell.bell == 0) return;
  if (t_bell.slot == g_backend->slot()) {
    Session s(*g_backend);
    s.sh().doorbells[t_bell.bell - 1].owner = -1;
  }
  ReentrancyGuard guard;
  real::close(t_bell.fd);
  Fds()->Take(t_bell.fd);
  t_bell = ThreadBell{};
}

}  // namespace

// ---- Notification (any process, under the lock) -------------------------------------------------

void NotifySocket(Shared& sh, SocketId id) {
  SocketRec* r = sh.Rec(id);
  if (r == nullptr) return;
  if (r->watches != 0) {
    const uint32_t mask = PollMask(sh.stack->Readiness(id));
    bool exclusive_taken = false;
    for (uint32_t w = r->watches; w != 0; w = sh.watches[w - 1].next_in_sock) {
      Watch& x = sh.watches[w - 1];
      if (x.disarmed || !(mask & (x.events | POLLERR | POLLHUP))) continue;
      const bool exclusive = (x.events & EPOLLEXCLUSIVE) != 0;
      if (exclusive && exclusive_taken) continue;
      EpollRec& e = sh.epolls[x.epoll - 1];
      Enqueue(sh, e, w);
      if (exclusive) {
        // Offered to the next instance only while none with a sleeper has taken it.
        if (sh.doorbells[e.doorbell - 1].sleepers.load(std::memory_order_acquire) == 0) continue;
        exclusive_taken = true;
      }
      QueueRing(sh, e.doorbell);
    }
  }
  for (uint32_t n = r->waits; n != 0; n = sh.waits[n - 1].next) {
    QueueRing(sh, sh.waits[n - 1].doorbell);
  }
}

// ---- Thread doorbells ---------------------------------------------------------------------------

uint32_t Backend::ThreadDoorbell(int* fd) {
  if (t_bell.bell != 0 && t_bell.slot == slot_) {
    *fd = t_bell.fd;
    return t_bell.bell;
  }
  ForgetThreadDoorbell();
  pthread_once(&g_bell_once, [] { pthread_key_create(&g_bell_key, ReturnBell); });
  const uint32_t d = NewDoorbell(*sh_, slot_);
  if (d == 0) return 0;
  const int s = CreateDoorbellSocket(sh_->id, d - 1);
  if (s < 0) {
    sh_->doorbells[d - 1].owner = -1;
    return 0;
  }
  const int h = real::fcntl(s, F_DUPFD_CLOEXEC, static_cast<unsigned long>(hidden_base_));
  const int bell_fd = h >= 0 ? h : s;
  if (h >= 0) real::close(s);
  Fds()->Set(bell_fd, FdEntry{FdKind::kHidden, 0});
  t_bell = ThreadBell{d, bell_fd, slot_};
  pthread_setspecific(g_bell_key, &t_bell);
  *fd = bell_fd;
  return d;
}

// A fork child's thread holds its parent thread's doorbell: the socket is the parent's (ours is
// a copy of its descriptor) and so is the record.
void Backend::ForgetThreadDoorbell() {
  if (t_bell.bell == 0) return;
  if (t_bell.slot != slot_) {
    ReentrancyGuard guard;
    real::close(t_bell.fd);
    Fds()->Take(t_bell.fd);
  }
  t_bell = ThreadBell{};
}

// ---- Waiter -------------------------------------------------------------------------------------

Waiter::~Waiter() {
  if (nnodes_ != 0 || armed_) {  // an exit path that skipped Done (an exception cannot happen)
    Session s(b_);
    Done(s);
  }
}

bool Waiter::Watch(Session& s, SocketRec& rec) {
  Shared& sh = s.sh();
  if (bell_ == 0) {
    int fd = -1;
    bell_ = b_.ThreadDoorbell(&fd);
    if (bell_ == 0) return false;
  }
  if (nnodes_ == static_cast<int>(std::size(nodes_))) return false;
  const uint32_t n = NewWaitNode(sh);
  if (n == 0) return false;
  WaitNode& node = sh.waits[n - 1];
  node.doorbell = bell_;
  node.sock = static_cast<uint32_t>(&rec - sh.socks);
  node.next = rec.waits;
  rec.waits = n;
  nodes_[nnodes_++] = n;
  if (!armed_) {
    sh.doorbells[bell_ - 1].sleepers.fetch_add(1, std::memory_order_acq_rel);
    armed_ = true;
  }
  return true;
}

int Waiter::Sleep(Instant deadline, const sigset_t* mask, pollfd* extra, nfds_t n) {
  Shared& sh = *b_.sh_;
  SignalsBeforeWait();  // RestartAfterSignal asks which signals came during this sleep
  pollfd small[66];
  std::unique_ptr<pollfd[]> big;
  pollfd* p = small;
  if (n + 2 > std::size(small)) {
    big.reset(new pollfd[n + 2]);
    p = big.get();
  }
  for (nfds_t i = 0; i < n; ++i) p[i] = extra[i];
  nfds_t k = n;
  int bell_fd = -1;
  if (bell_ != 0) b_.ThreadDoorbell(&bell_fd);
  if (bell_fd >= 0) p[k++] = pollfd{bell_fd, POLLIN, 0};
  // One thread at a time sleeps in poll on the device (poll would wake them all for a frame);
  // the others are rung by it. A fork child still on its parent's channel reads nothing.
  device_polled_ = b_.MayRead() && DeviceSleep(sh, b_.slot_, b_.channel_own_) == 0;
  if (device_polled_) {
    p[k++] = pollfd{b_.dev_->fd(), POLLIN, 0};
  } else if (b_.MayRead()) {
    DeviceWake(sh, b_.slot_);
  }
  const timespec left = RelativeTo(deadline);
  int r;
  {
    ReentrancyGuard guard;
    r = real::ppoll(p, k, deadline.is_never() ? nullptr : &left, mask);
  }
  const int err = errno;
  if (device_polled_) {
    DeviceWake(sh, b_.slot_);
    device_ready_ = r > 0 && (p[k - 1].revents & POLLIN) != 0;
    if (device_ready_) b_.ReadOwn();  // outside the lock; Done hands it to the stack
  }
  for (nfds_t i = 0; i < n; ++i) extra[i].revents = p[i].revents;
  errno = err;
  return r;
}

void Waiter::Done(Session& s) {
  const int saved = errno;  // a caller may have its outcome's errno set already
  struct Restore {
    int e;
    ~Restore() { errno = e; }
  } restore{saved};
  Shared& sh = s.sh();
  for (int i = 0; i < nnodes_; ++i) {
    const uint32_t n = nodes_[i];
    SocketRec& rec = sh.socks[sh.waits[n - 1].sock];
    for (uint32_t* link = &rec.waits; *link != 0; link = &sh.waits[*link - 1].next) {
      if (*link == n) {
        *link = sh.waits[n - 1].next;
        break;
      }
    }
    FreeWaitNode(sh, n);
  }
  nnodes_ = 0;
  if (armed_) {
    sh.doorbells[bell_ - 1].sleepers.fetch_sub(1, std::memory_order_acq_rel);
    armed_ = false;
    int fd = -1;
    if (b_.ThreadDoorbell(&fd) == bell_) DrainDoorbell(sh, bell_, fd);
  }
  if (device_ready_) s.Drain();
  device_ready_ = false;
}

bool Backend::RestartAfterSignal() const {
  const int saved = errno;
  struct Restore {
    int e;
    ~Restore() { errno = e; }
  } restore{saved};
  // The signals delivered during the wait, when their handlers went through sigaction
  // (signals.cc): restart if each of them has SA_RESTART, as the kernel does.
  bool known = false;
  const bool all = DeliveredAllRestart(&known);
  if (known) return all;
  // Not known (a handler installed around libshake): restart only if every handler the
  // program installed asks for it.
  for (int sig = 1; sig < 65; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction sa {};
    if (sigaction(sig, nullptr, &sa) != 0) continue;
    if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN) continue;
    if (!(sa.sa_flags & SA_RESTART)) return false;
  }
  return true;
}

// ---- poll and select ----------------------------------------------------------------------------

Outcome Backend::Poll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) {
  if (!attached()) return Outcome::Pass();
  const bool zero = timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
  const Instant deadline =
      timeout == nullptr
          ? Instant::Never()
          : io::MonotonicNow() +
                Duration::Nanos(int64_t{timeout->tv_sec} * 1000000000 + timeout->tv_nsec);
  FdTable* t = Fds();
  // The kernel's copy of the set: stack sockets are left out (fd -1 is ignored by poll).
  // One more entry, after the program's: the device, asked whenever the call does not sleep,
  // so that a program polling sockets that are ready still gets the frames that arrive.
  pollfd small[65];
  std::unique_ptr<pollfd[]> big;
  pollfd* k = small;
  if (n + 1 > std::size(small)) {
    big.reset(new pollfd[n + 1]);
    k = big.get();
  }
  // The stack's half of each entry; true when any is ready.
  auto stack_half = [&](Session& s) {
    bool any = false;
    for (nfds_t i = 0; i < n; ++i) {
      fds[i].revents = 0;
      const FdEntry e = fds[i].fd >= 0 ? t->Get(fds[i].fd) : FdEntry{};
      if (e.kind != FdKind::kStack && e.kind != FdKind::kListener) continue;
      const SocketRec* r = s.sh().Rec(e.socket);
      const uint32_t m = r != nullptr
                             ? Seen(s.st(), e.socket, static_cast<uint16_t>(fds[i].events))
                             : static_cast<uint32_t>(POLLNVAL);
      fds[i].revents = static_cast<short>(m);
      if (m != 0) any = true;
    }
    return any;
  };
  for (nfds_t i = 0; i < n; ++i) {
    k[i] = fds[i];
    k[i].revents = 0;
    if (fds[i].fd >= 0 && t->Get(fds[i].fd).kind == FdKind::kStack) k[i].fd = -1;
  }
  Waiter waiter(*this);
  for (;;) {
    bool any;
    bool watched = true;
    {
      Session s(*this);
      any = stack_half(s);
      if (!any && !zero) {
        for (nfds_t i = 0; i < n; ++i) {
          const FdEntry e = fds[i].fd >= 0 ? t->Get(fds[i].fd) : FdEntry{};
          if (e.kind != FdKind::kStack && e.kind != FdKind::kListener) continue;
          if (SocketRec* r = s.sh().Rec(e.socket)) watched = waiter.Watch(s, *r) && watched;
        }
      }
    }
    int r;
    if (any || zero) {
      const timespec z{0, 0};
      k[n] = pollfd{MayRead() ? dev_->fd() : -1, POLLIN, 0};
      {
        ReentrancyGuard guard;
        r = real::ppoll(k, n + 1, &z, nullptr);
      }
      if (r > 0 && (k[n].revents & POLLIN)) {
        --r;
        ReadOwn();
        Session s(*this);
        s.Drain();
        stack_half(s);
      }
    } else {
      // Without a doorbell for every socket (the tables are full), look again every 10 ms.
      const Instant until =
          watched ? deadline : Min(deadline, io::MonotonicNow() + Duration::Millis(10));
      r = waiter.Sleep(until, mask, k, n);
      const int err = errno;
      Session s(*this);
      waiter.Done(s);
      stack_half(s);
      errno = err;
    }
    if (r < 0) return Outcome::Done(-1);  // EINTR, EFAULT, as the kernel reports them
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
      if (k[i].fd >= 0) fds[i].revents = static_cast<short>(fds[i].revents | k[i].revents);
      if (fds[i].revents != 0) ++ready;
    }
    if (ready > 0 || zero) return Outcome::Done(ready);
    if (!deadline.is_never() && io::MonotonicNow() >= deadline) return Outcome::Done(0);
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
  if (!o.handled || o.value < 0) return o;
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

// ---- epoll --------------------------------------------------------------------------------------

uint32_t Backend::EpollOf(Session& s, int ep, bool create) {
  const FdEntry e = Fds()->Get(ep);
  if (e.kind == FdKind::kEpoll) return e.socket;
  if (!create || epoll_bell_fd_ == nullptr) return 0;
  Shared& sh = s.sh();
  const uint32_t rec = NewEpoll(sh);
  if (rec == 0) {
    errno = ENOSPC;
    return 0;
  }
  const uint32_t d = NewDoorbell(sh, -2);  // belongs to the instance, not to a process
  int bell = d != 0 ? CreateDoorbellSocket(sh.id, d - 1) : -1;
  if (bell >= 0) {
    const int h = real::fcntl(bell, F_DUPFD_CLOEXEC, static_cast<unsigned long>(hidden_base_));
    if (h >= 0) {
      real::close(bell);
      bell = h;
    }
  }
  epoll_event bev{};
  bev.events = EPOLLIN;
  bev.data.u64 = kTagBell;
  epoll_event dev{};
  dev.events = EPOLLIN | EPOLLEXCLUSIVE;
  dev.data.u64 = kTagDevice;
  ReentrancyGuard guard;
  if (bell < 0 || real::epoll_ctl(ep, EPOLL_CTL_ADD, bell, &bev) != 0) {
    const int err = bell < 0 ? ENOMEM : errno;  // EBADF, EINVAL: not an epoll instance
    if (bell >= 0) real::close(bell);
    if (d != 0) sh.doorbells[d - 1].owner = -1;
    sh.epolls[rec - 1].used = false;
    errno = err;
    return 0;
  }
  if (channel_own_ || !channel_want_own_) {  // a channel this process reads (EpollCtl opened
    real::epoll_ctl(ep, EPOLL_CTL_ADD, dev_->fd(), &dev);  // its own before the session)
    epoll_dev_fd_[rec - 1] = dev_->fd();
  }
  Fds()->Set(bell, FdEntry{FdKind::kHidden, 0});
  EpollRec& er = sh.epolls[rec - 1];
  er.doorbell = d;
  er.refs.Add(slot_, 1, sh.limits.procs, arena_->resource());
  epoll_bell_fd_[rec - 1] = bell;
  Fds()->Set(ep, FdEntry{FdKind::kEpoll, rec});
  return rec;
}

void DropWatchesOfSocket(Shared& sh, uint32_t index) {
  SocketRec& r = sh.socks[index];
  while (r.watches != 0) {
    const uint32_t w = r.watches;
    Watch& x = sh.watches[w - 1];
    r.watches = x.next_in_sock;
    EpollRec& e = sh.epolls[x.epoll - 1];
    Dequeue(sh, e, w);
    for (uint32_t* link = &e.watches; *link != 0; link = &sh.watches[*link - 1].next_in_epoll) {
      if (*link == w) {
        *link = x.next_in_epoll;
        break;
      }
    }
    FreeWatch(sh, w);
  }
}

void FreeEpollRecord(Shared& sh, std::pmr::memory_resource* mem, uint32_t e) {
  EpollRec& er = sh.epolls[e - 1];
  while (er.watches != 0) {
    const uint32_t w = er.watches;
    Watch& x = sh.watches[w - 1];
    er.watches = x.next_in_epoll;
    SocketRec& r = sh.socks[x.sock];
    for (uint32_t* link = &r.watches; *link != 0; link = &sh.watches[*link - 1].next_in_sock) {
      if (*link == w) {
        *link = x.next_in_sock;
        break;
      }
    }
    FreeWatch(sh, w);
  }
  if (er.doorbell != 0) sh.doorbells[er.doorbell - 1].owner = -1;
  er.refs.Reset(sh.limits.procs, mem);
  er = EpollRec{};
}

// One descriptor of epoll instance `e` held by process `slot` went away; the last one anywhere
// ends the instance's registrations of stack sockets.
void Backend::ReleaseEpollLocked(uint32_t e, int slot) {
  Shared& sh = *sh_;
  EpollRec& er = sh.epolls[e - 1];
  if (!er.used || !er.refs.Sub(slot)) return;
  if (slot == slot_ && er.refs.Get(slot_) == 0 && epoll_bell_fd_[e - 1] >= 0) {
    ReentrancyGuard guard;
    Fds()->Take(epoll_bell_fd_[e - 1]);
    real::close(epoll_bell_fd_[e - 1]);
    epoll_bell_fd_[e - 1] = -1;
  }
  if (er.refs.total() == 0) FreeEpollRecord(sh, arena_->resource(), e);
}

Outcome Backend::EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) {
  if (e.kind != FdKind::kStack && e.kind != FdKind::kListener) return Outcome::Pass();
  if (op != EPOLL_CTL_DEL && ev == nullptr) return Fail(EFAULT);
  if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) return Fail(EINVAL);
  if (ep == fd) return Fail(EINVAL);
  if (ev != nullptr && op != EPOLL_CTL_DEL && !ValidEpollEvents(op, ev->events)) {
    return Fail(EINVAL);
  }
  // Its own channel first, outside the session: the instance will wait on it.
  if (op == EPOLL_CTL_ADD) (void)MayRead();
  Session s(*this);
  Shared& sh = s.sh();
  SocketRec* r = sh.Rec(e.socket);
  if (r == nullptr) return Fail(EBADF);
  const uint32_t er = EpollOf(s, ep, op == EPOLL_CTL_ADD);
  if (er == 0) return op == EPOLL_CTL_ADD ? Fail(errno) : Fail(ENOENT);
  EpollRec& rec = sh.epolls[er - 1];
  uint32_t found = 0;
  for (uint32_t w = r->watches; w != 0; w = sh.watches[w - 1].next_in_sock) {
    if (sh.watches[w - 1].epoll == er && sh.watches[w - 1].fd == fd) {
      found = w;
      break;
    }
  }
  if (e.kind == FdKind::kListener) {
    // The kernel's own listener is the fd: the kernel keeps its half of the registration.
    ReentrancyGuard guard;
    if (real::epoll_ctl(ep, op, fd, ev) != 0 && !(op == EPOLL_CTL_DEL && errno == ENOENT)) {
      return Outcome::Done(-1);
    }
  }
  switch (op) {
    case EPOLL_CTL_ADD: {
      if (found != 0) return Fail(EEXIST);
      const uint32_t w = NewWatch(sh);
      if (w == 0) return Fail(ENOSPC);
      Watch& x = sh.watches[w - 1];
      x.epoll = er;
      x.sock = IndexOf(e.socket);
      x.fd = fd;
      x.events = ev->events;
      x.data = ev->data.u64;
      x.next_in_sock = r->watches;
      r->watches = w;
      x.next_in_epoll = rec.watches;
      rec.watches = w;
      if (Seen(s.st(), e.socket, x.events) != 0) {  // ready already: reported at once
        Enqueue(sh, rec, w);
        QueueRing(sh, rec.doorbell);
      }
      return Outcome::Done(0);
    }
    case EPOLL_CTL_MOD: {
      if (found == 0) return Fail(ENOENT);
      Watch& x = sh.watches[found - 1];
      if (x.events & EPOLLEXCLUSIVE) return Fail(EINVAL);
      x.events = ev->events;
      x.data = ev->data.u64;
      x.disarmed = false;
      if (Seen(s.st(), e.socket, x.events) != 0) {
        Enqueue(sh, rec, found);
        QueueRing(sh, rec.doorbell);
      }
      return Outcome::Done(0);
    }
    default: {
      if (found == 0) return Fail(ENOENT);
      Watch& x = sh.watches[found - 1];
      Dequeue(sh, rec, found);
      for (uint32_t* link = &r->watches; *link != 0;
           link = &sh.watches[*link - 1].next_in_sock) {
        if (*link == found) {
          *link = x.next_in_sock;
          break;
        }
      }
      for (uint32_t* link = &rec.watches; *link != 0;
           link = &sh.watches[*link - 1].next_in_epoll) {
        if (*link == found) {
          *link = x.next_in_epoll;
          break;
        }
      }
      FreeWatch(sh, found);
      return Outcome::Done(0);
    }
  }
}

// Stack events of an INADDR_ANY listener carry this input-only bit until they are folded into
// the kernel's event for the same registration (the listener's two halves, one event).
constexpr uint32_t kAnyHalf = kAnyHalfMark;

// Folds the stack half of INADDR_ANY listeners into the kernel's event with the same data, and
// clears the marks. Returns the new count.
int FoldHalves(epoll_event* ev, int n) {
  for (int i = 0; i < n; ++i) {
    if (!(ev[i].events & kAnyHalf)) continue;
    ev[i].events &= ~kAnyHalf;
    for (int j = 0; j < n; ++j) {
      if (j != i && !(ev[j].events & kAnyHalf) && ev[j].data.u64 == ev[i].data.u64) {
        ev[j].events |= ev[i].events;
        std::copy(ev + i + 1, ev + n, ev + i);
        --n;
        --i;
        break;
      }
    }
  }
  return n;
}

Outcome Backend::EpollWait(int ep, epoll_event* events, int max, const timespec* timeout,
                           const sigset_t* mask) {
  const FdEntry ee = Fds()->Get(ep);
  if (ee.kind != FdKind::kEpoll || !attached()) return Outcome::Pass();
  if (max <= 0 || events == nullptr) return Fail(EINVAL);
  const uint32_t er = ee.socket;
  const bool zero = timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
  const Instant deadline =
      timeout == nullptr ? Instant::Never()
                         : io::MonotonicNow() + Duration::Nanos(int64_t{timeout->tv_sec} *
                                                                    1000000000 +
                                                                timeout->tv_nsec);
  bool device = false, bell = false;
  // Takes our own registrations out of the kernel's events [at, at + k), noting what woke us;
  // returns how many of the program's remain there.
  auto sift = [&](int at, int k) {
    int kept = at;
    for (int i = at; i < at + k; ++i) {
      if (events[i].data.u64 == kTagDevice) {
        device = true;
      } else if (events[i].data.u64 == kTagBell) {
        bell = true;
      } else {
        events[kept++] = events[i];
      }
    }
    return kept - at;
  };
  // Handles what woke us and appends the stack's events after the first `n`.
  const bool reads = MayRead();
  // The channel this process reads now is the one registered in the instance (a fork child
  // that opened its own since the instance was made registers it on its first wait).
  if (reads && epoll_dev_fd_[er - 1] != dev_->fd()) {
    epoll_event dev{};
    dev.events = EPOLLIN | EPOLLEXCLUSIVE;
    dev.data.u64 = kTagDevice;
    ReentrancyGuard guard;
    if (epoll_dev_fd_[er - 1] >= 0) real::epoll_ctl(ep, EPOLL_CTL_DEL, epoll_dev_fd_[er - 1], &dev);
    real::epoll_ctl(ep, EPOLL_CTL_ADD, dev_->fd(), &dev);
    epoll_dev_fd_[er - 1] = dev_->fd();
  }
  auto harvest = [&](Session& s, int n) {
    Shared& sh = s.sh();
    if (bell) DrainDoorbell(sh, sh.epolls[er - 1].doorbell, epoll_bell_fd_[er - 1]);
    if (device) s.Drain();
    bell = device = false;
    return n + Harvest(sh, sh.epolls[er - 1], events + n, max - n);
  };
  // SHAKE_SPIN_US: before sleeping, ask without waiting for this long (the device, the doorbell
  // and the program's kernel fds are all in the instance), as Onload's EF_POLL_USEC does: a
  // frame is handled when it lands instead of after a wake-up.
  const Instant spin_until = config_.spin_us > 0 && !zero && reads
                                 ? io::MonotonicNow() + Duration::Micros(config_.spin_us)
                                 : Instant();
  for (;;) {
    const bool spin = config_.spin_us > 0 && io::MonotonicNow() < spin_until;
    int n;
    {
      Session s(*this);
      n = harvest(s, 0);
      if (n == 0 && !zero && !spin) {
        s.sh().doorbells[s.sh().epolls[er - 1].doorbell - 1].sleepers.fetch_add(1);
        if (reads) DeviceSleep(s.sh(), slot_, channel_own_);
      }
    }
    if (n > 0 || zero) {
      // Stack events are ready: the kernel's half is asked without waiting.
      const timespec z{0, 0};
      int k = 0;
      if (n < max) {
        ReentrancyGuard guard;
        k = real::epoll_pwait2(ep, events + n, max - n, &z, nullptr);
      }
      if (k < 0) return n > 0 ? Outcome::Done(FoldHalves(events, n)) : Outcome::Done(-1);
      n += sift(n, k);
      if ((device || bell) && n < max) {
        if (device) ReadOwn();
        Session s(*this);
        n = harvest(s, n);
      }
      return Outcome::Done(FoldHalves(events, n));
    }
    const timespec left = RelativeTo(deadline);
    int k;
    {
      ReentrancyGuard guard;
      const timespec z{0, 0};
      k = real::epoll_pwait2(ep, events, max, spin ? &z : deadline.is_never() ? nullptr : &left,
                             mask);
    }
    const int err = errno;
    {
      const int kept = k > 0 ? sift(0, k) : 0;
      if (device) ReadOwn();  // outside the lock
      Session s(*this);
      if (!spin) {
        s.sh().doorbells[s.sh().epolls[er - 1].doorbell - 1].sleepers.fetch_sub(1);
        if (reads) DeviceWake(s.sh(), slot_);
      }
      n = harvest(s, kept);
    }
    n = FoldHalves(events, n);
    if (n > 0) return Outcome::Done(n);
    if (k < 0) {
      errno = err;
      return Outcome::Done(-1);
    }
    if (!deadline.is_never() && io::MonotonicNow() >= deadline) return Outcome::Done(0);
  }
}

}  // namespace shake::shim
