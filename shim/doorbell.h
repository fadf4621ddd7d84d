// Doorbells: how a thread asleep in the kernel is woken from any process of the stack.
//
// A doorbell is an AF_UNIX datagram socket bound to an abstract name made of the stack's id and
// the doorbell's index ("\0libshake-<id>-<index>"), so any process can ring it with one sendto
// and no shared descriptor. The sleeper keeps the socket in its wait set (its epoll instance,
// or the pollfd array of its poll), so a ring makes it readable and wakes it.
//
// Protocol (Doorbell in shared.h; the counters are changed under the stack lock):
//   sleeper: under the lock, finds nothing ready, sleepers++; unlocks; waits in the kernel;
//            locks; sleepers--; Drain(); looks again.
//   waker:   under the lock, changes what the sleeper waits for, then QueueRing(d): when
//            sleepers > 0 and no ring is in flight, the ring is queued; FlushRings() sends the
//            queued rings after the waker unlocks, so no system call lengthens a locked section.
// No ring is lost: the sleeper looked before it slept, the waker changed the state before it
// rang, and a datagram stays queued until the sleeper drains it.
#pragma once

#include <cstdint>

#include "shim/shared.h"

namespace shake::shim {

// A new doorbell socket for doorbell `index` (0-based) of stack `stack_id`: non-blocking,
// close-on-exec. -1 with errno on failure.
int CreateDoorbellSocket(uint64_t stack_id, uint32_t index);

// Queues a ring of doorbell `d` (index + 1) if anyone sleeps on it. Under the lock.
void QueueRing(Shared& sh, uint32_t d);
// Sends the rings this thread queued. Call with the lock released (it is also safe under it).
void FlushRings(const Shared& sh);
// After waking: clears the doorbell's ring and reads what was sent to its socket.
void DrainDoorbell(Shared& sh, uint32_t d, int fd);

}  // namespace shake::shim
