#include "shim/shared.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <new>

#include "io/clock.h"

namespace shake::shim {

uint16_t RefSet::Get(int slot) const {
  if (spill_ != nullptr) return spill_[slot];
  for (int i = 0; i < kInline; ++i) {
    if (slot_[i] == slot + 1) return count_[i];
  }
  return 0;
}

bool RefSet::Add(int slot, int n, uint32_t procs, std::pmr::memory_resource* mem) {
  if (n <= 0) return true;
  if (spill_ == nullptr) {
    int empty = -1;
    for (int i = 0; i < kInline; ++i) {
      if (slot_[i] == slot + 1) {
        if (count_[i] + n > UINT16_MAX) return false;
        count_[i] = static_cast<uint16_t>(count_[i] + n);
        total_ += static_cast<uint32_t>(n);
        return true;
      }
      if (slot_[i] == 0 && empty < 0) empty = i;
    }
    if (empty >= 0) {
      slot_[empty] = static_cast<uint16_t>(slot + 1);
      count_[empty] = static_cast<uint16_t>(n);
      total_ += static_cast<uint32_t>(n);
      return true;
    }
    // A fifth holder: every count moves to a per-slot array.
    void* p = nullptr;
    try {
      p = mem->allocate(procs * sizeof(uint16_t), alignof(uint16_t));
    } catch (...) {
      return false;
    }
    spill_ = static_cast<uint16_t*>(p);
    std::memset(spill_, 0, procs * sizeof(uint16_t));
    for (int i = 0; i < kInline; ++i) {
      if (slot_[i] != 0) spill_[slot_[i] - 1] = count_[i];
      slot_[i] = count_[i] = 0;
    }
  }
  if (spill_[slot] + n > UINT16_MAX) return false;
  spill_[slot] = static_cast<uint16_t>(spill_[slot] + n);
  total_ += static_cast<uint32_t>(n);
  return true;
}

bool RefSet::Sub(int slot) {
  if (spill_ != nullptr) {
    if (spill_[slot] == 0) return false;
    --spill_[slot];
    --total_;
    return true;
  }
  for (int i = 0; i < kInline; ++i) {
    if (slot_[i] == slot + 1) {
      if (--count_[i] == 0) slot_[i] = 0;
      --total_;
      return true;
    }
  }
  return false;
}

uint32_t RefSet::Clear(int slot) {
  const uint32_t n = Get(slot);
  for (uint32_t i = 0; i < n; ++i) Sub(slot);
  return n;
}

void RefSet::Reset(uint32_t procs, std::pmr::memory_resource* mem) {
  if (spill_ != nullptr) mem->deallocate(spill_, procs * sizeof(uint16_t), alignof(uint16_t));
  *this = RefSet();
}

namespace {
template <typename T>
T* Table(std::pmr::memory_resource* mem, uint32_t n) {
  void* p = mem->allocate(sizeof(T) * n, alignof(T));
  T* t = static_cast<T*>(p);
  for (uint32_t i = 0; i < n; ++i) new (&t[i]) T();
  return t;
}
}  // namespace

bool AllocateTables(Shared& sh, std::pmr::memory_resource* mem) {
  const Limits& l = sh.limits;
  try {
    sh.socks = Table<SocketRec>(mem, l.sockets);
    sh.procs = Table<ProcSlot>(mem, l.procs);
    sh.epolls = Table<EpollRec>(mem, l.epolls);
    sh.watches = Table<Watch>(mem, l.watches);
    sh.doorbells = Table<Doorbell>(mem, l.doorbells);
    sh.waits = Table<WaitNode>(mem, l.waits);
  } catch (...) {
    return false;
  }
  return true;
}

void TxTurn::Take(Shared& sh, uint64_t flows) {
  ticket_ = sh.tx_next.fetch_add(1, std::memory_order_relaxed);
  n_ = 0;
  for (uint64_t rest = flows; rest != 0; rest &= rest - 1) {
    uint32_t& last = sh.tx_last[std::countr_zero(rest)];
    if (last != 0 && (n_ == 0 || after_[n_ - 1] != last)) after_[n_++] = last;
    last = ticket_ + 1;
  }
}

namespace {

// True once ticket `t` (given as t + 1) has written, or is too old to wait for.
bool Written(const Shared& sh, uint32_t t1) {
  const uint32_t v = sh.tx_done[(t1 - 1) % Shared::kTxRing].load(std::memory_order_acquire);
  return static_cast<int32_t>(v - t1) >= 0;
}

}  // namespace

void TxTurn::Await(Shared& sh) const {
  for (int i = 0; i < n_; ++i) {
    const uint32_t t1 = after_[i];
    // An earlier writer is usually inside one sendmmsg: a few microseconds.
    for (int spin = 0; spin < 100 && !Written(sh, t1); ++spin) __builtin_ia32_pause();
    auto& word = sh.tx_done[(t1 - 1) % Shared::kTxRing];
    int64_t since = 0;
    while (!Written(sh, t1)) {
      const uint32_t seen = word.load(std::memory_order_acquire);
      sh.tx_waiters.fetch_add(1, std::memory_order_seq_cst);
      if (!Written(sh, t1)) {
        timespec ts{0, 1'000'000};
        syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, seen, &ts, nullptr, 0);
      }
      sh.tx_waiters.fetch_sub(1, std::memory_order_seq_cst);
      const int64_t now = io::MonotonicNow().nanos();
      if (since == 0) {
        since = now;
      } else if (now - since > kTxStallNs) {
        break;  // its writer died holding the ticket: passed over
      }
    }
  }
}

void TxTurn::End(Shared& sh) const {
  auto& word = sh.tx_done[ticket_ % Shared::kTxRing];
  word.store(ticket_ + 1, std::memory_order_seq_cst);
  if (sh.tx_waiters.load(std::memory_order_seq_cst) != 0) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr,
            nullptr, 0);
  }
}

uint32_t DeviceSleep(Shared& sh, int slot, bool own_channel) {
  const uint32_t mine = __atomic_fetch_add(&sh.procs[slot].device_sleepers, 1, __ATOMIC_ACQ_REL);
  const uint32_t all = sh.device_sleepers.fetch_add(1, std::memory_order_acq_rel);
  return own_channel ? mine : all;
}

void DeviceWake(Shared& sh, int slot) {
  __atomic_sub_fetch(&sh.procs[slot].device_sleepers, 1, __ATOMIC_ACQ_REL);
  sh.device_sleepers.fetch_sub(1, std::memory_order_acq_rel);
}

uint32_t NewWatch(Shared& sh) {
  uint32_t w = sh.watch_free;
  if (w != 0) {
    sh.watch_free = sh.watches[w - 1].next_in_sock;
  } else if (sh.watch_high < sh.limits.watches) {
    w = ++sh.watch_high;
  } else {
    return 0;
  }
  sh.watches[w - 1] = Watch{};
  return w;
}

void FreeWatch(Shared& sh, uint32_t w) {
  Watch& x = sh.watches[w - 1];
  x = Watch{};
  x.next_in_sock = sh.watch_free;
  sh.watch_free = w;
}

uint32_t NewWaitNode(Shared& sh) {
  uint32_t n = sh.wait_free;
  if (n != 0) {
    sh.wait_free = sh.waits[n - 1].next;
  } else if (sh.wait_high < sh.limits.waits) {
    n = ++sh.wait_high;
  } else {
    return 0;
  }
  sh.waits[n - 1] = WaitNode{};
  return n;
}

void FreeWaitNode(Shared& sh, uint32_t n) {
  WaitNode& x = sh.waits[n - 1];
  x = WaitNode{};
  x.next = sh.wait_free;
  sh.wait_free = n;
}

uint32_t NewEpoll(Shared& sh) {
  for (uint32_t i = 0; i < sh.epoll_high; ++i) {
    if (!sh.epolls[i].used) {
      sh.epolls[i] = EpollRec{};
      sh.epolls[i].used = true;
      return i + 1;
    }
  }
  if (sh.epoll_high == sh.limits.epolls) return 0;
  EpollRec& e = sh.epolls[sh.epoll_high++];
  e = EpollRec{};
  e.used = true;
  return sh.epoll_high;
}

uint32_t NewDoorbell(Shared& sh, int owner) {
  for (uint32_t i = 0; i < sh.limits.doorbells; ++i) {
    if (i == sh.doorbell_high) ++sh.doorbell_high;
    Doorbell& d = sh.doorbells[i];
    if (d.owner == -1) {
      d.owner = owner;
      d.sleepers.store(0);
      d.rung.store(0);
      return i + 1;
    }
  }
  return 0;
}

}  // namespace shake::shim
