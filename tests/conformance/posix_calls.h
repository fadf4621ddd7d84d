// Socket calls on real kernel sockets, for backends whose system under test is reached through
// the ordinary libc socket API: the Linux backend, and later libshake.so under LD_PRELOAD.
#pragma once

#include "tests/conformance/backend.h"

namespace conformance {

// Executes `call` with libc. Sockets are created non-blocking; reads and writes add
// MSG_DONTWAIT (and MSG_NOSIGNAL) so nothing ever blocks.
CallResult ExecutePosix(const Call& call);

}  // namespace conformance
