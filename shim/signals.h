// Which signal ended a wait (signals.cc).
#pragma once

#include <signal.h>

namespace shake::shim {

// The signals delivered to this thread since SignalsBeforeWait: DeliveredAllRestart is true if
// each of them has SA_RESTART now; *known is false when none went through Sigaction's
// trampoline (then the caller cannot tell).
void SignalsBeforeWait();
bool DeliveredAllRestart(bool* known);

// The interposed sigaction: installs the program's handler behind the trampoline and answers
// with the program's own handler.
int Sigaction(int sig, const struct sigaction* act, struct sigaction* old);

}  // namespace shake::shim
