// Which signal ended a wait: the information RestartAfterSignal needs to restart a blocking
// socket call as the kernel does, after a handler installed with SA_RESTART and only then.
//
// The kernel decides by the handler of the signal it delivered. A stack socket's blocking call
// sleeps in ppoll, which always fails with EINTR; to know which handler ran, libshake installs
// the program's handlers behind a trampoline: sigaction (and signal, which glibc implements on
// its internal sigaction) records the program's handler and installs one that notes the signal
// in a per-thread set, then calls the program's. sigaction's answers about the old handler are
// the program's own. Waiter::Sleep clears the set before it sleeps (SignalsBeforeWait); after
// EINTR the call restarts only if every signal delivered meanwhile has SA_RESTART now, as the
// kernel's flags for it say (siginterrupt may have changed them). Handlers installed around
// this (the raw rt_sigaction syscall, sigset, sysv_signal) leave the set empty, and the old rule
// applies: restart only if every handler has SA_RESTART.
#include <errno.h>
#include <signal.h>

#include <atomic>

#include "shim/signals.h"

extern "C" int __sigaction(int, const struct sigaction*, struct sigaction*);

namespace shake::shim {

namespace {

constexpr int kSignals = 65;

struct UserHandler {
  std::atomic<void*> fn{nullptr};  // the program's handler (sa_handler or sa_sigaction)
  std::atomic<int> flags{0};       // the program's sa_flags
};
UserHandler g_user[kSignals];

__attribute__((tls_model("initial-exec"))) thread_local uint64_t t_seen = 0;  // bit sig-1

void Trampoline(int sig, siginfo_t* info, void* uc) {
  if (sig > 0 && sig < kSignals) {
    t_seen |= uint64_t{1} << (sig - 1);
    void* fn = g_user[sig].fn.load(std::memory_order_acquire);
    if (fn == nullptr) return;
    if (g_user[sig].flags.load(std::memory_order_relaxed) & SA_SIGINFO) {
      reinterpret_cast<void (*)(int, siginfo_t*, void*)>(fn)(sig, info, uc);
    } else {
      reinterpret_cast<void (*)(int)>(fn)(sig);
    }
  }
}

void* HandlerOf(const struct sigaction& a) {
  return (a.sa_flags & SA_SIGINFO) ? reinterpret_cast<void*>(a.sa_sigaction)
                                   : reinterpret_cast<void*>(a.sa_handler);
}

bool IsTrampoline(const struct sigaction& a) {
  return (a.sa_flags & SA_SIGINFO) && a.sa_sigaction == Trampoline;
}

}  // namespace

void SignalsBeforeWait() { t_seen = 0; }

bool DeliveredAllRestart(bool* known) {
  const uint64_t seen = t_seen;
  *known = seen != 0;
  for (int sig = 1; sig < kSignals; ++sig) {
    if (!(seen & (uint64_t{1} << (sig - 1)))) continue;
    struct sigaction now {};
    if (__sigaction(sig, nullptr, &now) != 0) continue;
    if (!(now.sa_flags & SA_RESTART)) return false;
  }
  return true;
}

// interpose.cc's sigaction: the program's handler goes in behind the trampoline.
int Sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  if (sig <= 0 || sig >= kSignals) return __sigaction(sig, act, old);
  void* const prev_fn = g_user[sig].fn.load(std::memory_order_acquire);
  const int prev_flags = g_user[sig].flags.load(std::memory_order_relaxed);
  struct sigaction mine;
  const struct sigaction* give = act;
  const bool wrap = act != nullptr && HandlerOf(*act) != reinterpret_cast<void*>(SIG_DFL) &&
                    HandlerOf(*act) != reinterpret_cast<void*>(SIG_IGN) &&
                    !IsTrampoline(*act);
  if (wrap) {
    // Published before the kernel can deliver through the trampoline.
    g_user[sig].flags.store(act->sa_flags, std::memory_order_relaxed);
    g_user[sig].fn.store(HandlerOf(*act), std::memory_order_release);
    mine = *act;
    mine.sa_sigaction = Trampoline;
    mine.sa_flags |= SA_SIGINFO;
    give = &mine;
  }
  struct sigaction k {};
  const int r = __sigaction(sig, give, old != nullptr ? &k : nullptr);
  if (r != 0) {
    if (wrap) {  // put the table back as it was
      g_user[sig].fn.store(prev_fn, std::memory_order_release);
      g_user[sig].flags.store(prev_flags, std::memory_order_relaxed);
    }
    return r;
  }
  if (act != nullptr && !wrap) g_user[sig].fn.store(nullptr, std::memory_order_release);
  if (old != nullptr) {
    *old = k;
    if (IsTrampoline(k) && prev_fn != nullptr) {
      // The program's own handler and SA_SIGINFO, as it installed them.
      old->sa_flags = (k.sa_flags & ~SA_SIGINFO) | (prev_flags & SA_SIGINFO);
      if (prev_flags & SA_SIGINFO) {
        old->sa_sigaction = reinterpret_cast<void (*)(int, siginfo_t*, void*)>(prev_fn);
      } else {
        old->sa_handler = reinterpret_cast<void (*)(int)>(prev_fn);
      }
    }
  }
  return 0;
}

}  // namespace shake::shim

