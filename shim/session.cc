// Session: one locked pass over the shared stack (backend_impl.h), and the closes a signal
// handler asked for while its thread held the lock.
#include <errno.h>

#include <new>

#include "io/clock.h"
#include "shim/backend_impl.h"
#include "shim/doorbell.h"
#include "shim/guard.h"

namespace shake::shim {
namespace {

// A deadline this much earlier than the keeper's planned wake rings the keeper; closer ones
// wait for it (the kernel's own timers have a jiffy of slack, 4 ms at HZ=250).
constexpr int64_t kKeeperSlackNs = 2'000'000;

// How many raw frames one drain handles before the section ends (bounded: other processes
// wait for the lock meanwhile).
constexpr int kDrainBatch = 64;
constexpr int kServeBatch = 32;

// This thread read a batch from its process's own channel (ReadOwn) that Drain has not yet
// handed to the stack; it holds the channel's reading flag meanwhile.
__attribute__((tls_model("initial-exec"))) thread_local bool t_read_pending = false;

}  // namespace

Session::Session(Backend& b) : b_(b) { b_.lock_->lock(); }

Stack& Session::st() { return *b_.stack_; }
Shared& Session::sh() { return *b_.sh_; }

Instant Session::now() {
  if (!now_) now_ = io::MonotonicNow();
  return *now_;
}

void Backend::ReadOwn() {
  if (!channel_own_ || t_read_pending || !TakeRead(*sh_, slot_)) return;
  ReentrancyGuard guard;
  if (pump_->Read(kDrainBatch) > 0) {
    t_read_pending = true;
  } else {
    ReleaseRead(*sh_, slot_);
  }
  sh_->last_drain.store(io::MonotonicNow().nanos(), std::memory_order_relaxed);
}

void Session::Drain() {
  ReentrancyGuard guard;
  Backend& b = b_;
  if (b.channel_own_) {
    // What this thread read outside the lock; more waits in the channel for the next wake-up.
    if (!t_read_pending) return;
    b.pump_->Handle(now(), *b.handler_);
    t_read_pending = false;
    ReleaseRead(*b.sh_, b.slot_);
    return;
  }
  if (b.channel_want_own_) return;  // a fork child on its parent's channel: not ours to read
  b.pump_->Drain(now(), *b.handler_, kDrainBatch);
  b.sh_->last_drain.store(now().nanos(), std::memory_order_relaxed);
}

void Session::Serve() {
  ReentrancyGuard guard;
  Backend& b = b_;
  b.stack_->Poll(now(), b.pump_->sink(now()));
  b.pump_->Flush();
  Pull();
}

void Session::Pull() {
  ReentrancyGuard guard;
  Backend& b = b_;
  if (b.channel_own_) {
    if (t_read_pending || !TakeRead(*b.sh_, b.slot_)) return;
    b.pump_->Drain(now(), *b.handler_, kServeBatch);
    ReleaseRead(*b.sh_, b.slot_);
  } else if (!b.channel_want_own_) {
    b.pump_->Drain(now(), *b.handler_, kServeBatch);
  }
}


Session::~Session() {
  // The call's errno was set inside the section (Fail); the system calls below must not change
  // what it returns.
  const int saved = errno;
  Shared& sh = *b_.sh_;
  ReentrancyGuard guard;
  Instant next = now();
  try {
    next = b_.stack_->Poll(now(), b_.pump_->sink(now()));
  } catch (const std::bad_alloc&) {
    // The arena is exhausted (guarded_backend.cc): what Poll did not finish waits for the
    // keeper's next pass, soon.
    next = now() + Duration::Millis(10);
  }
  if (g_trace != nullptr) g_trace->Flush();
  sh.deadline.store(next.nanos(), std::memory_order_relaxed);
  // No timer (Never) asks nothing of the keeper; its INT64_MAX must not wrap in the sum.
  if (!next.is_never() &&
      next.nanos() + kKeeperSlackNs < sh.keeper_wake.load(std::memory_order_relaxed)) {
    int64_t asked = sh.rung_deadline.load(std::memory_order_relaxed);
    while (next.nanos() < asked &&
           !sh.rung_deadline.compare_exchange_weak(asked, next.nanos(), std::memory_order_relaxed)) {
    }
    QueueRing(sh, sh.keeper_doorbell);
  }
  // The frames leave after the stack lock is released, in the order they were made (the
  // ticket is taken before the release).
  io::Pump::TxBatch* batch = b_.pump_->Seal();
  TxTurn turn;
  if (batch != nullptr) turn.Take(sh, io::Pump::Flows(batch));
  b_.lock_->unlock();
  if (batch != nullptr) {
    turn.Await(sh);
    b_.pump_->Send(batch);
    turn.End(sh);
  }
  FlushRings(sh);
  b_.RunDeferred();
  errno = saved;
}

}  // namespace shake::shim
