#include "shim/arena.h"

#include <errno.h>
#include <sys/mman.h>

#include <bit>
#include <cstdlib>
#include <new>

namespace shake::shim {

namespace {
__attribute__((tls_model("initial-exec"))) thread_local int t_lock_depth = 0;
constexpr size_t kHeader = 4096;
}  // namespace

int ArenaResource::ClassOf(size_t bytes) {
  if (bytes <= (size_t{1} << kMinShift)) return 0;
  const int shift = static_cast<int>(std::bit_width(bytes - 1));
  return shift - kMinShift;
}

void* ArenaResource::do_allocate(size_t bytes, size_t alignment) {
  if (bytes < alignment) bytes = alignment;
  const int c = ClassOf(bytes);
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
  if (block + size > end_ || block + size < block) throw std::bad_alloc();
  next_ = block + size;
  return block;
}

void ArenaResource::do_deallocate(void* p, size_t bytes, size_t alignment) {
  if (p == nullptr) return;
  if (bytes < alignment) bytes = alignment;
  const int c = ClassOf(bytes);
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

Arena* Arena::Create(size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* base = static_cast<std::byte*>(p);
  static_assert(sizeof(Arena) <= kHeader);
  auto* a = new (base) Arena(base + kHeader, base + size);
  ArenaLock::InitMutex(&a->mutex_);
  return a;
}

}  // namespace shake::shim
