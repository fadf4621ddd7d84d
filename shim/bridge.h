// Bridges: a stack socket served to code that no preload library sees, through a kernel
// socketpair and a pump process (bridge.cc).
#pragma once

#include <vector>

namespace shake::shim {

// Makes `fd`, and every other fd of this process on the same stack socket, a kernel socket
// (one end of a socketpair) whose other end a pump process moves to and from the stack socket.
// False, with nothing changed, when `fd` is not a connected stack socket or the bridge cannot
// be made (errno says why).
bool BridgeInPlace(int fd);

// A swap for a child that no preload sees (system, popen, posix_spawn with file actions):
// while it is in place, the kernel fds at the numbers of the selected stack sockets are
// bridges, so the child inherits working kernel sockets; this process's own calls on those
// numbers still go to the stack (the fd table is unchanged). Restore puts the placeholders
// back. Not for threads that close those numbers meanwhile.
class SpawnSwap {
 public:
  // Which stack fds to swap: 0..2 only (the child is preloaded and takes the rest over by
  // hand-off), or every one the child may see: non-close-on-exec ones and `extra`.
  enum class Scope { kStdio, kInherited };
  SpawnSwap(Scope scope, const std::vector<int>& extra = {});
  ~SpawnSwap();
  SpawnSwap(const SpawnSwap&) = delete;
  SpawnSwap& operator=(const SpawnSwap&) = delete;
  void Restore();
  // After Restore: waits (at most `ms`) for the pump to have moved what the child wrote and
  // ended, so that this process's next write comes after it on the wire, as with a kernel
  // socket shared with a child that has exited.
  void WaitDrained(int ms);
  // The pump's end-of-life pipe (read end), handed to the caller; -1 when none.
  int TakeDone();

 private:
  friend bool SwappedNow(int fd);
  struct Item {
    int fd;
    int saved;
    int cloexec;
  };
  std::vector<Item> items_;
  int done_ = -1;
  bool restored_ = false;
};

// True when `fd` is swapped for a bridge by a SpawnSwap of this thread now: the hand-off to
// the spawned image must not list it as a stack socket.
bool SwappedNow(int fd);

// Converts, before an exec, the stack fds that the new image cannot serve: 0..2 always (its
// stdio reaches them through libc's internal calls), and every one when the new image does not
// load libshake (`preloaded` false).
void BridgeForExec(bool preloaded);

// True when `envp` preloads libshake.so.
bool EnvPreloadsShake(char* const* envp);

}  // namespace shake::shim
