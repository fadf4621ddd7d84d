#include "stack/tcp/byte_queue.h"

#include <algorithm>
#include <cstring>

namespace shake {

ByteQueue::ByteQueue(std::pmr::memory_resource* mem) : mem_(mem) {}

ByteQueue::~ByteQueue() { Clear(); }

void ByteQueue::FreeChunk(std::byte* c) const {
  if (c != nullptr) mem_->deallocate(c, chunk_size_, alignof(std::max_align_t));
}

void ByteQueue::Clear() {
  for (size_t i = 0; i < count_; ++i) FreeChunk(Slot(i));
  if (ring_ != nullptr) mem_->deallocate(ring_, cap_ * sizeof(std::byte*), alignof(std::byte*));
  one_ = nullptr;
  ring_ = nullptr;
  cap_ = 0;
  first_ = 0;
  count_ = 0;
  chunk_size_ = kSmallChunkSize;
  head_ = 0;
  size_ = 0;
  extent_ = 0;
}

void ByteQueue::Reserve(size_t chunks) {
  if (chunks <= (cap_ == 0 ? 1 : cap_)) return;
  size_t cap = cap_ == 0 ? 4 : cap_;
  while (cap < chunks) cap *= 2;
  auto** r = static_cast<std::byte**>(mem_->allocate(cap * sizeof(std::byte*), alignof(std::byte*)));
  for (size_t i = 0; i < cap; ++i) r[i] = i < count_ ? Slot(i) : nullptr;
  if (ring_ != nullptr) mem_->deallocate(ring_, cap_ * sizeof(std::byte*), alignof(std::byte*));
  ring_ = r;
  cap_ = cap;
  first_ = 0;
  one_ = nullptr;
}

void ByteQueue::Grow() {
  // While chunks are small no position has reached kSmallChunkSize, so there is at most one
  // chunk (in one_), and its bytes keep their positions in the large chunk.
  std::byte* big = nullptr;
  if (one_ != nullptr) {
    big = static_cast<std::byte*>(mem_->allocate(kChunkSize, alignof(std::max_align_t)));
    std::memcpy(big, one_, kSmallChunkSize);
    FreeChunk(one_);
  }
  one_ = big;
  chunk_size_ = kChunkSize;
}

std::byte* ByteQueue::ChunkFor(size_t offset, bool allocate) {
  const size_t pos = head_ + offset;
  if (allocate && chunk_size_ == kSmallChunkSize && pos >= kSmallChunkSize) Grow();
  const size_t index = pos / chunk_size_;
  if (index >= count_) {
    if (!allocate) return nullptr;
    Reserve(index + 1);
    for (size_t i = count_; i <= index; ++i) Slot(i) = nullptr;
    count_ = index + 1;
  }
  std::byte*& c = Slot(index);
  if (c == nullptr && allocate) {
    c = static_cast<std::byte*>(mem_->allocate(chunk_size_, alignof(std::max_align_t)));
  }
  return c;
}

bool ByteQueue::NeedsMemory(size_t offset, size_t n) const {
  if (n == 0) return false;
  const size_t pos = head_ + offset;
  const size_t end = pos + n;
  if (chunk_size_ == kSmallChunkSize) {
    // Past the small chunk, ChunkFor moves to a large one (Grow).
    return end > kSmallChunkSize || count_ == 0 || one_ == nullptr;
  }
  for (size_t i = pos / chunk_size_; i <= (end - 1) / chunk_size_; ++i) {
    if (i >= count_ || Slot(i) == nullptr) return true;
  }
  return false;
}

void ByteQueue::Append(std::span<const std::byte> data) {
  WriteAt(size_, data);
  size_ += data.size();
}

void ByteQueue::WriteAt(size_t offset, std::span<const std::byte> data) {
  if (data.empty()) return;
  extent_ = std::max(extent_, offset + data.size());
  while (!data.empty()) {
    std::byte* chunk = ChunkFor(offset, /*allocate=*/true);
    const size_t in_chunk = (head_ + offset) % chunk_size_;
    const size_t n = std::min(data.size(), chunk_size_ - in_chunk);
    std::memcpy(chunk + in_chunk, data.data(), n);
    data = data.subspan(n);
    offset += n;
  }
}

void ByteQueue::CopyOut(size_t offset, std::span<std::byte> out) const {
  while (!out.empty()) {
    const size_t index = (head_ + offset) / chunk_size_;
    const size_t in_chunk = (head_ + offset) % chunk_size_;
    const size_t n = std::min(out.size(), chunk_size_ - in_chunk);
    const std::byte* chunk = index < count_ ? Slot(index) : nullptr;
    if (chunk != nullptr) {
      std::memcpy(out.data(), chunk + in_chunk, n);
    } else {
      std::memset(out.data(), 0, n);
    }
    out = out.subspan(n);
    offset += n;
  }
}

void ByteQueue::Consume(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  extent_ -= n;
  head_ += n;
  if (size_ == 0 && extent_ == 0) {
    // Nothing written remains: an idle connection holds no chunk.
    Clear();
    return;
  }
  // Whole chunks before the new head are free; chunks past the end may hold bytes written
  // with WriteAt and stay.
  const size_t drop = std::min(head_ / chunk_size_, count_);
  for (size_t i = 0; i < drop; ++i) {
    std::byte*& c = Slot(i);
    FreeChunk(c);
    c = nullptr;
  }
  if (cap_ != 0) first_ = (first_ + drop) & (cap_ - 1);
  count_ -= drop;
  head_ -= drop * chunk_size_;
}

}  // namespace shake
