#include "shim/arena.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cstdlib>
#include <new>

namespace shake::shim {

namespace {
__attribute__((tls_model("initial-exec"))) thread_local int t_lock_depth = 0;
constexpr size_t kHeader = 4096;

// Where Create tries to place the arena: 4 GiB-aligned bases in [kArenaLo, kArenaHi), a range a
// fresh image leaves empty. A sanitizer owns parts of the address space, so its builds use a
// range inside what it leaves to the program (ranges read from GCC 12's runtimes on x86_64).
#if defined(__SANITIZE_THREAD__)
#define SHAKE_ARENA_TSAN 1
#elif defined(__SANITIZE_ADDRESS__)
#define SHAKE_ARENA_ASAN 1
#elif defined(__has_feature)  // clang
#if __has_feature(thread_sanitizer)
#define SHAKE_ARENA_TSAN 1
#elif __has_feature(address_sanitizer)
#define SHAKE_ARENA_ASAN 1
#endif
#endif
#if defined(SHAKE_ARENA_TSAN)
// TSan lets the program map only [4 KiB, 512 GiB), [0x5500'0000'0000, 0x5680'0000'0000) (PIE
// images) and [0x7e80'0000'0000, 2^47); it drops an mmap hint elsewhere, and a mapping placed
// outside these ranges kills the process. The low range is empty in a PIE image: bases below
// 432 GiB keep a 16 GiB arena under 448 GiB, where a TSan libshake's text goes (SHAKE_LIB_BASE
// in shim/CMakeLists.txt).
constexpr uintptr_t kArenaLo = uintptr_t{64} << 30;
constexpr uintptr_t kArenaHi = uintptr_t{432} << 30;
#elif defined(SHAKE_ARENA_ASAN)
// ASan's shadow of high memory ends at 0x1000'7fff'7fff, inside the first 4 GiB above 16 TiB.
constexpr uintptr_t kArenaLo = uintptr_t{17} << 40;
constexpr uintptr_t kArenaHi = uintptr_t{49} << 40;
#else
constexpr uintptr_t kArenaLo = uintptr_t{16} << 40;
constexpr uintptr_t kArenaHi = uintptr_t{48} << 40;
#endif
constexpr uintptr_t kArenaSlots = (kArenaHi - kArenaLo) >> 32;
}  // namespace

int ArenaResource::ClassOf(size_t bytes) {
  if (bytes <= (size_t{1} << kMinShift)) return 0;
  const int shift = static_cast<int>(std::bit_width(bytes - 1));
  return shift - kMinShift;
}

void* ArenaResource::do_allocate(size_t bytes, size_t alignment) {
  if (bytes < alignment) bytes = alignment;
  const int c = ClassOf(bytes);
  live_ += c < kClasses ? size_t{1} << (c + kMinShift) : bytes;
  if (c < kClasses && free_[c] != nullptr) {
    FreeBlock* b = free_[c];
    free_[c] = b->next;
    return b;
  }
  // Blocks of a class are their own size aligned (up to a page), so any alignment the
  // standard containers ask for holds.
  const size_t size = c < kClasses ? (size_t{1} << (c + kMinShift)) : bytes;
  size_t align = size < 4096 ? size : 4096;
  if (align < alignment) align = alignment;
  auto p = reinterpret_cast<uintptr_t>(next_);
  p = (p + align - 1) & ~(uintptr_t{align} - 1);
  std::byte* block = reinterpret_cast<std::byte*>(p);
  if (block + size > end_ || block + size < block) {
    live_ -= c < kClasses ? size_t{1} << (c + kMinShift) : bytes;
    throw std::bad_alloc();
  }
  next_ = block + size;
  return block;
}

void ArenaResource::do_deallocate(void* p, size_t bytes, size_t alignment) {
  if (p == nullptr) return;
  if (bytes < alignment) bytes = alignment;
  const int c = ClassOf(bytes);
  live_ -= c < kClasses ? size_t{1} << (c + kMinShift) : bytes;
  if (c >= kClasses) return;  // huge blocks are not reused
  auto* b = static_cast<FreeBlock*>(p);
  b->next = free_[c];
  free_[c] = b;
}

void ArenaLock::InitMutex(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

void ArenaLock::lock() {
  // Sections are a few microseconds long: a waiter spins briefly before it sleeps in the
  // kernel, which costs two context switches.
  for (int i = 0; i < 200; ++i) {
    const int r = pthread_mutex_trylock(m_);
    if (r == 0 || r == EOWNERDEAD) {
      if (r == EOWNERDEAD) pthread_mutex_consistent(m_);
      ++t_lock_depth;
      return;
    }
    if (r != EBUSY) break;
    __builtin_ia32_pause();
  }
  const int r = pthread_mutex_lock(m_);
  if (r == EOWNERDEAD) pthread_mutex_consistent(m_);
  ++t_lock_depth;
}

void ArenaLock::unlock() {
  --t_lock_depth;
  pthread_mutex_unlock(m_);
}

bool ArenaLock::HeldByThisThread() { return t_lock_depth != 0; }
void ArenaLock::ForgetHeldInChild() { t_lock_depth = 0; }

Arena* Arena::Create(size_t size, int* memfd) {
  const int fd = static_cast<int>(syscall(SYS_memfd_create, "libshake-arena", MFD_CLOEXEC));
  if (fd < 0) return nullptr;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    close(fd);
    return nullptr;
  }
  constexpr int kFlags = MAP_SHARED | MAP_NORESERVE;
  void* p = MAP_FAILED;
  bool fixed = false;
  // A handful of random places in [kArenaLo, kArenaHi) ([16 TiB, 48 TiB) outside sanitizer
  // builds); bounded.
  for (int attempt = 0; attempt < 8 && p == MAP_FAILED; ++attempt) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != static_cast<ssize_t>(sizeof r)) break;
    const uintptr_t want = kArenaLo + (r % kArenaSlots) * (uintptr_t{1} << 32);
    p = mmap(reinterpret_cast<void*>(want), size, PROT_READ | PROT_WRITE,
             kFlags | MAP_FIXED_NOREPLACE, fd, 0);
    if (p != MAP_FAILED && reinterpret_cast<uintptr_t>(p) != want) {  // a kernel before 4.17
      munmap(p, size);
      p = MAP_FAILED;
    }
    fixed = p != MAP_FAILED;
  }
  if (p == MAP_FAILED) p = mmap(nullptr, size, PROT_READ | PROT_WRITE, kFlags, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return nullptr;
  }
  auto* base = static_cast<std::byte*>(p);
  static_assert(sizeof(Arena) <= kHeader);
  auto* a = new (base) Arena(base + kHeader, base + size);
  a->size_ = size;
  a->fixed_ = fixed;
  ArenaLock::InitMutex(&a->mutex_);
  *memfd = fd;
  return a;
}

Arena* Arena::Attach(uintptr_t base, size_t size, int memfd) {
  struct stat st {};
  if (fstat(memfd, &st) != 0 || static_cast<size_t>(st.st_size) != size) return nullptr;
  void* p = mmap(reinterpret_cast<void*>(base), size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_NORESERVE | MAP_FIXED_NOREPLACE, memfd, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* a = static_cast<Arena*>(p);
  if (reinterpret_cast<uintptr_t>(p) != base || a->magic_ != kMagic || a->size_ != size ||
      !a->fixed_) {
    munmap(p, size);
    return nullptr;
  }
  return a;
}

}  // namespace shake::shim
