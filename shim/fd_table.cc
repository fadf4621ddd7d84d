#include "shim/fd_table.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "shim/guard.h"

namespace shake::shim {

FdTable::~FdTable() {
  if (slots_) munmap(slots_, capacity_ * sizeof(*slots_));
}

bool FdTable::Init(size_t capacity) {
  if (slots_) return true;
  if (capacity == 0) {
    rlimit rl{};
    capacity = kMaxCapacity;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) {
      capacity = std::min<size_t>(rl.rlim_max, kMaxCapacity);
    }
  }
  capacity = std::min(capacity, kMaxCapacity);
  void* p = mmap(nullptr, capacity * sizeof(*slots_), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return false;
  // Zero-filled pages are valid atomics holding 0 (kKernel).
  slots_ = static_cast<std::atomic<uint64_t>*>(p);
  capacity_ = capacity;
  return true;
}

FdEntry FdTable::Get(int fd) const {
  if (fd < 0 || static_cast<size_t>(fd) >= capacity_) return FdEntry{};
  return Decode(slots_[fd].load(std::memory_order_acquire));
}

bool FdTable::Set(int fd, FdEntry e) {
  if (fd < 0 || static_cast<size_t>(fd) >= capacity_) return e.kind == FdKind::kKernel;
  uint64_t old = slots_[fd].exchange(Encode(e), std::memory_order_acq_rel);
  bool was = Decode(old).kind != FdKind::kKernel;
  bool is = e.kind != FdKind::kKernel;
  if (is && !was) count_.fetch_add(1, std::memory_order_relaxed);
  if (was && !is) count_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

FdEntry FdTable::Take(int fd) {
  if (fd < 0 || static_cast<size_t>(fd) >= capacity_) return FdEntry{};
  FdEntry old = Decode(slots_[fd].exchange(0, std::memory_order_acq_rel));
  if (old.kind != FdKind::kKernel) count_.fetch_sub(1, std::memory_order_relaxed);
  return old;
}

int ReservePlaceholder(bool cloexec) {
  ReentrancyGuard guard;
  // The raw syscall: eventfd is not interposed, and this must not allocate.
  return static_cast<int>(
      syscall(SYS_eventfd2, 0, EFD_NONBLOCK | (cloexec ? EFD_CLOEXEC : 0)));
}

}  // namespace shake::shim
