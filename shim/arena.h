// The shared arena: one MAP_SHARED mapping of a memfd, created before the program's first fork,
// that holds everything libshake shares between a process and its forked children — the stack
// itself (through ArenaResource), the socket records, the process slots and the lock.
//
// A mapping created before fork stays at the same address in the child, so plain pointers
// inside the arena (the stack's vectors and maps, its vtables into libshake's text) are valid in
// every process of the family. Memory is reserved with MAP_NORESERVE and committed page by page
// as it is first touched.
//
// Exec: the arena is placed at a random 4 GiB-aligned address between 16 and 48 TiB (in ASan and
// TSan builds, a range inside what the sanitizer leaves to the program: arena.cc), a range a
// fresh image leaves empty (executables, libraries, heap and stacks sit elsewhere), so that a new
// image given the memfd (Attach) can map it at the same address and its pointers stay valid.
// If no such place is free, Create maps it anywhere and fixed() is false (no exec hand-off).
//
//   int memfd;
//   Arena* a = Arena::Create(size_t{1} << 31, &memfd);
//   ArenaLock lock(a->mutex());           // process-shared, robust
//   std::pmr::memory_resource* mem = a->resource();  // only under the lock
#pragma once

#include <pthread.h>

#include <cstddef>
#include <cstdint>
#include <memory_resource>

#include "io/engine.h"

namespace shake::shim {

// std::pmr::memory_resource over a bump region of the arena with power-of-two size classes
// (16 B .. 64 MiB), each with its own free list. Freed blocks are reused for their class and
// never returned to the kernel. Not thread-safe: callers hold the arena lock.
class ArenaResource final : public std::pmr::memory_resource {
 public:
  ArenaResource(std::byte* begin, std::byte* end) : begin_(begin), next_(begin), end_(end) {}
  size_t used() const { return static_cast<size_t>(next_ - begin_); }  // high-water mark
  size_t live() const { return live_; }  // bytes allocated and not freed (by size class)

 private:
  static constexpr int kMinShift = 4;
  static constexpr int kClasses = 23;  // 2^4 .. 2^26
  struct FreeBlock {
    FreeBlock* next;
  };
  static int ClassOf(size_t bytes);
  void* do_allocate(size_t bytes, size_t alignment) override;
  void do_deallocate(void* p, size_t bytes, size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::byte* begin_;
  std::byte* next_;
  std::byte* end_;
  FreeBlock* free_[kClasses] = {};
  size_t live_ = 0;
};

// The process-shared robust mutex, as the engine's lock. A process that dies holding it leaves
// it to the next locker, which marks it consistent and carries on (the stack's state is then
// whatever the dead process left: a crash in the middle of a stack call is not recoverable in
// general, but a process killed while its engine thread waited is the common case and harmless).
class ArenaLock final : public io::EngineLock {
 public:
  explicit ArenaLock(pthread_mutex_t* m) : m_(m) {}
  static void InitMutex(pthread_mutex_t* m);
  void lock() override;
  void unlock() override;
  // True while this thread holds the lock (a signal handler that interrupts a locked section
  // must not take it again).
  static bool HeldByThisThread();
  // In a fork child: the forking thread held the lock, which stays the parent's to release.
  static void ForgetHeldInChild();

 private:
  pthread_mutex_t* m_;
};

class Arena {
 public:
  // Maps `size` bytes of a new memfd (MAP_SHARED | MAP_NORESERVE); *memfd is the memfd
  // (close-on-exec). Null on failure.
  static Arena* Create(size_t size, int* memfd);
  // Maps the arena of `memfd` at `base`, where the image that created it has it. Null if the
  // address is taken or the memfd is not an arena of that size.
  static Arena* Attach(uintptr_t base, size_t size, int memfd);
  uintptr_t base() const { return reinterpret_cast<uintptr_t>(this); }
  size_t size() const { return size_; }
  bool fixed() const { return fixed_; }

  // The header lives at the start of the mapping; the rest is the resource's.
  pthread_mutex_t* mutex() { return &mutex_; }
  ArenaResource* resource() { return &resource_; }
  void* root() const { return root_; }
  void set_root(void* r) { root_ = r; }

 private:
  Arena(std::byte* begin, std::byte* end) : resource_(begin, end) {}
  static constexpr uint64_t kMagic = 0x616e657261656b73;  // "skearena"
  uint64_t magic_ = kMagic;
  size_t size_ = 0;
  bool fixed_ = false;
  pthread_mutex_t mutex_;
  ArenaResource resource_;
  void* root_ = nullptr;  // the backend's shared state
};

}  // namespace shake::shim
