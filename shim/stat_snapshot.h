// What `shake stat` shows of one stack, as ss -tanpi and nstat show the kernel's: every socket
// with its state, queues, RTT, window, retransmissions and owning processes; the processes;
// the counters with the drops by reason; the stack's memory. The keeper builds it under the
// stack lock and sends it to the launcher (keeper_link.h: LinkStat), as JSON or as text.
#pragma once

#include <string>

#include "shim/shared.h"

namespace shake::shim {

// Under the lock. `arena_live`: the arena's bytes in use (ArenaResource::live()).
std::string StatSnapshot(Shared& sh, size_t arena_live, bool json);

}  // namespace shake::shim
