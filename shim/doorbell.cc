#include "shim/doorbell.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>

#include "shim/guard.h"
#include "shim/real.h"

namespace shake::shim {
namespace {

socklen_t DoorbellName(uint64_t stack_id, uint32_t index, sockaddr_un* a) {
  *a = sockaddr_un{};
  a->sun_family = AF_UNIX;
  // Abstract namespace: a leading NUL, then the name (not NUL-terminated; the length says).
  const int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "libshake-%016llx-%u",
                         static_cast<unsigned long long>(stack_id), index);
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + static_cast<size_t>(n));
}

// One unbound datagram socket per process sends every ring (sendto is thread-safe).
std::atomic<int> g_ringer{-1};

int Ringer() {
  int fd = g_ringer.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  ReentrancyGuard guard;
  const int s = real::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int expected = -1;
  if (!g_ringer.compare_exchange_strong(expected, s)) {
    real::close(s);
    return expected;
  }
  return s;
}

constexpr int kMaxQueued = 32;
__attribute__((tls_model("initial-exec"))) thread_local uint32_t t_rings[kMaxQueued];
__attribute__((tls_model("initial-exec"))) thread_local int t_nrings = 0;

void Send(const Shared& sh, uint32_t d) {
  const int fd = Ringer();
  if (fd < 0) return;
  sockaddr_un a;
  const socklen_t len = DoorbellName(sh.id, d - 1, &a);
  const char byte = 1;
  ReentrancyGuard guard;
  // EAGAIN: its queue is full, so it is rung already; ECONNREFUSED: its owner is gone.
  (void)real::sendto(fd, &byte, 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), len);
}

}  // namespace

int CreateDoorbellSocket(uint64_t stack_id, uint32_t index) {
  ReentrancyGuard guard;
  const int s = real::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  sockaddr_un a;
  const socklen_t len = DoorbellName(stack_id, index, &a);
  if (real::bind(s, reinterpret_cast<sockaddr*>(&a), len) != 0) {
    const int err = errno;
    real::close(s);
    errno = err;
    return -1;
  }
  return s;
}

void QueueRing(Shared& sh, uint32_t d) {
  if (d == 0 || d > sh.limits.doorbells) return;
  Doorbell& b = sh.doorbells[d - 1];
  if (b.sleepers.load(std::memory_order_acquire) == 0) return;
  if (b.rung.exchange(1, std::memory_order_acq_rel) != 0) return;
  if (t_nrings == kMaxQueued) {
    Send(sh, d);  // the queue is full: ring at once
    return;
  }
  t_rings[t_nrings++] = d;
}

void FlushRings(const Shared& sh) {
  while (t_nrings > 0) Send(sh, t_rings[--t_nrings]);
}

void DrainDoorbell(Shared& sh, uint32_t d, int fd) {
  if (d == 0 || d > sh.limits.doorbells || fd < 0) return;
  sh.doorbells[d - 1].rung.store(0, std::memory_order_release);
  char buf[64];
  ReentrancyGuard guard;
  for (int i = 0; i < 64; ++i) {  // bounded; each ring is one byte
    if (real::recv(fd, buf, sizeof buf, MSG_DONTWAIT) < 0) break;
  }
}

}  // namespace shake::shim
