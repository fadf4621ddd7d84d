// The fd table: which fd numbers are stack sockets.
//
// Founders' decision 1 ("real fd numbers"): every stack socket owns a real kernel fd — a
// placeholder, created by ReservePlaceholder() as an eventfd — so the kernel allocates the
// numbers (lowest free, RLIMIT_NOFILE and FD_SETSIZE hold, dup/dup2/fork/close work on them) and
// no number can collide with a kernel socket, pipe or file. The table maps that number to the
// stack's SocketId. Everything not in the table is a kernel fd and is passed through untouched.
//
// Layout: one 64-bit atomic word per fd number, in an anonymous MAP_PRIVATE|MAP_NORESERVE
// mapping sized for RLIMIT_NOFILE's hard limit (at most kMaxCapacity). No malloc. MAP_PRIVATE
// is deliberate: after fork the child's copy of the table matches the child's copy of the
// kernel's fd table exactly, while the sockets themselves (reference counts across processes,
// buffers) live in the stack's MAP_SHARED arena. Pages are touched only for numbers used.
//
// The placeholder only reserves the number: readiness of stack sockets is kept by the shim
// (readiness.cc), whose poll, select and epoll answer for them and let the kernel wait on the
// kernel fds, the device and a doorbell.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shake::shim {

enum class FdKind : uint8_t {
  kKernel = 0,    // not ours (the default for every number)
  kStack = 1,     // a stack socket; the fd is its placeholder
  kListener = 2,  // a listener on INADDR_ANY: the fd is the kernel's own listener (loopback and
                  // the kernel's addresses reach it), joined by a stack listener on the same
                  // port; accept takes from both
  kHidden = 3,    // libshake's own fd (the device, a doorbell, the keeper connection): the
                  // program's close() of it is a no-op; its other calls see a kernel fd
  kEpoll = 4,     // an epoll instance that watches stack sockets; `socket` is its EpollRec + 1
  kBridge = 5,    // a kernel socketpair end that a pump moves to and from stack socket `socket`
                  // (bridge.h): data calls go to the kernel; getsockname, getpeername and the
                  // socket options answer for the stack socket. Holds no reference to it
};

struct FdEntry {
  FdKind kind = FdKind::kKernel;
  uint32_t socket = 0;  // shake::SocketId
  bool operator==(const FdEntry&) const = default;
};

class FdTable {
 public:
  static constexpr size_t kMaxCapacity = size_t{1} << 20;  // fs.nr_open's default

  FdTable() = default;
  ~FdTable();
  FdTable(const FdTable&) = delete;
  FdTable& operator=(const FdTable&) = delete;

  // Maps room for `capacity` fd numbers (0: RLIMIT_NOFILE's hard limit). Idempotent; false if
  // the mapping fails (then every fd is treated as a kernel fd).
  bool Init(size_t capacity = 0);
  size_t capacity() const { return capacity_; }

  FdEntry Get(int fd) const;
  // Records `fd` as `e`; false when fd is outside the table.
  bool Set(int fd, FdEntry e);
  // Clears `fd` and returns what it was.
  FdEntry Take(int fd);
  // True when any entry is not kKernel: lets every call skip the lookup in a program that has
  // no stack sockets.
  bool any() const { return count_.load(std::memory_order_relaxed) != 0; }
  size_t count() const { return count_.load(std::memory_order_relaxed); }

  // Calls fn(fd, entry) for each non-kernel entry with lo <= fd <= hi.
  template <typename Fn>
  void ForEach(unsigned lo, unsigned hi, Fn&& fn) const {
    if (!any()) return;
    for (size_t fd = lo; fd < capacity_ && fd <= hi; ++fd) {
      FdEntry e = Decode(slots_[fd].load(std::memory_order_acquire));
      if (e.kind != FdKind::kKernel) fn(static_cast<int>(fd), e);
    }
  }

 private:
  static uint64_t Encode(FdEntry e) {
    return (uint64_t{static_cast<uint8_t>(e.kind)} << 32) | e.socket;
  }
  static FdEntry Decode(uint64_t w) {
    return FdEntry{static_cast<FdKind>(w >> 32), static_cast<uint32_t>(w)};
  }

  std::atomic<uint64_t>* slots_ = nullptr;
  size_t capacity_ = 0;
  std::atomic<size_t> count_{0};
};

// A new placeholder fd for a stack socket: eventfd(0, EFD_NONBLOCK | cloexec), created with the
// real libc under the reentrancy guard. -1 with errno (EMFILE...) as socket() would report.
int ReservePlaceholder(bool cloexec);

}  // namespace shake::shim
