#include "shim/runtime.h"

#include <sched.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "shim/backend.h"
#include "shim/guard.h"
#include "shim/log.h"
#include "shim/real.h"

namespace shake::shim {

__attribute__((tls_model("initial-exec"))) thread_local int t_guard_depth = 0;

namespace {

enum : int { kNotStarted = 0, kRunning = 1, kDone = 2 };
std::atomic<int> g_init_state{kNotStarted};
__attribute__((tls_model("initial-exec"))) thread_local bool t_initialising = false;
// Constructed in place at init, never destroyed: interposed calls may arrive during exit.
alignas(Runtime) unsigned char g_runtime_storage[sizeof(Runtime)];
Runtime* g_runtime = nullptr;
alignas(FdTable) unsigned char g_fds_storage[sizeof(FdTable)];
FdTable* g_fds = nullptr;
std::atomic<StackBackend*> g_backend{nullptr};

// A stack hand-off that no backend took (this image has no SHAKE_DEVICE): its entry is removed
// so that the image's children do not see it. Its keeper connection stays open, so the sockets
// handed over live until this process ends, as kernel sockets held by it would.
void DiscardHandoff() {
  char h[160];
  (void)TakeHandoffEntry(h, sizeof h);
}

void Initialise() {
  ReentrancyGuard guard;  // our own calls below go straight to the kernel
  g_fds = new (g_fds_storage) FdTable();  // first: calls made from inside dlsym look it up
  real::Resolve();
  auto* rt = new (g_runtime_storage) Runtime();
  rt->secure = getauxval(AT_SECURE) != 0;
  if (rt->secure) {
    g_runtime = rt;
    return;
  }
  g_fds->Init();
  if (getenv("SHAKE_KEEPER") != nullptr) {  // the keeper program: it drives the stack itself
    SetLogLevel(LogLevel::kError);
    g_runtime = rt;
    return;
  }
  Config c;
  auto err = ParseConfig(&getenv, c);
  if (!err) err = CheckHost(c);
  rt->config = c;
  SetLogLevel(c.log);
  if (err) {
    rt->error = err;
    LogLine(err->Line().c_str());
    if (c.fallback_kernel) Log(LogLevel::kInfo, "SHAKE_FALLBACK=kernel: TCP stays on the kernel");
  } else if (c.configured()) {
    g_runtime = rt;  // the backend's set-up makes calls that look the runtime up
    if (!InstallStackBackend(c) && !c.fallback_kernel) {
      rt->error = ConfigError{"SHAKE_DEVICE", c.ifname, "cannot be opened",
                              "check the device and the privileges", ENODEV};
    }
  } else {
    Log(LogLevel::kDebug, "SHAKE_DEVICE is not set: every socket stays a kernel socket");
  }
  Log(LogLevel::kDebug, "resolved %d real functions", real::ResolvedCount());
  DiscardHandoff();
  g_runtime = rt;
}

__attribute__((constructor(101))) void LibraryConstructor() { EnsureInit(); }

}  // namespace

bool TakeHandoffEntry(char* out, size_t n) {
  static constexpr char kEntry[] = "SHAKE_HANDOFF=";
  constexpr size_t kLen = sizeof kEntry - 1;
  bool found = false;
  char** env = environ;
  for (size_t i = 0; env != nullptr && env[i] != nullptr;) {
    if (std::strncmp(env[i], kEntry, kLen) != 0) {
      ++i;
      continue;
    }
    if (!found && n > 0) snprintf(out, n, "%s", env[i] + kLen);
    found = true;
    for (size_t j = i; env[j] != nullptr; ++j) env[j] = env[j + 1];  // in place, as unsetenv
  }
  return found;
}

const Runtime* EnsureInit() {
  if (g_init_state.load(std::memory_order_acquire) == kDone) return g_runtime;
  if (t_initialising) return nullptr;
  int expected = kNotStarted;
  if (g_init_state.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel)) {
    t_initialising = true;
    Initialise();
    t_initialising = false;
    g_init_state.store(kDone, std::memory_order_release);
    return g_runtime;
  }
  // Another thread is initialising; it takes microseconds. Bounded wait, then pass through.
  for (int i = 0; i < 100000 && g_init_state.load(std::memory_order_acquire) != kDone; ++i) {
    sched_yield();
  }
  return g_init_state.load(std::memory_order_acquire) == kDone ? g_runtime : nullptr;
}

bool StayOut() {
  const Runtime* rt = EnsureInit();
  return rt == nullptr || rt->secure;
}

FdTable* Fds() {
  EnsureInit();
  return g_fds;
}

StackBackend* CurrentBackend() { return g_backend.load(std::memory_order_acquire); }
void InstallBackend(StackBackend* backend) {
  g_backend.store(backend, std::memory_order_release);
}

}  // namespace shake::shim
