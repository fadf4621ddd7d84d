// The thread-local reentrancy guard: while a ReentrancyGuard is alive on a thread, every
// interposed call made on that thread goes straight to the kernel (through real::). libshake's
// own code (logging, creating placeholder fds, later the io engine's device I/O) holds one so
// that its socket and fd calls never loop back into the dispatch.
#pragma once

namespace shake::shim {

// initial-exec TLS: libshake is loaded at startup, so its TLS block is static and reading this
// never calls __tls_get_addr (which may allocate).
extern __attribute__((tls_model("initial-exec"))) thread_local int t_guard_depth;

class ReentrancyGuard {
 public:
  ReentrancyGuard() { ++t_guard_depth; }
  ~ReentrancyGuard() { --t_guard_depth; }
  ReentrancyGuard(const ReentrancyGuard&) = delete;
  ReentrancyGuard& operator=(const ReentrancyGuard&) = delete;
};

inline bool InsideShim() { return t_guard_depth != 0; }

}  // namespace shake::shim
