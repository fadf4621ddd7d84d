#include "stack/tcp/byte_queue.h"

#include <algorithm>
#include <cstring>

namespace shake {

ByteQueue::ByteQueue(std::pmr::memory_resource* mem) : mem_(mem), chunks_(mem) {}

ByteQueue::~ByteQueue() { Clear(); }

void ByteQueue::Clear() {
  for (std::byte* c : chunks_) {
    if (c != nullptr) mem_->deallocate(c, kChunkSize, alignof(std::max_align_t));
  }
  chunks_.clear();
  head_ = 0;
  size_ = 0;
}

std::byte* ByteQueue::ChunkFor(size_t offset, bool allocate) {
  const size_t index = (head_ + offset) / kChunkSize;
  if (index >= chunks_.size()) {
    if (!allocate) return nullptr;
    chunks_.resize(index + 1, nullptr);
  }
  if (chunks_[index] == nullptr && allocate) {
    chunks_[index] = static_cast<std::byte*>(mem_->allocate(kChunkSize, alignof(std::max_align_t)));
  }
  return chunks_[index];
}

void ByteQueue::Append(std::span<const std::byte> data) {
  WriteAt(size_, data);
  size_ += data.size();
}

void ByteQueue::WriteAt(size_t offset, std::span<const std::byte> data) {
  while (!data.empty()) {
    std::byte* chunk = ChunkFor(offset, /*allocate=*/true);
    const size_t in_chunk = (head_ + offset) % kChunkSize;
    const size_t n = std::min(data.size(), kChunkSize - in_chunk);
    std::memcpy(chunk + in_chunk, data.data(), n);
    data = data.subspan(n);
    offset += n;
  }
}

void ByteQueue::CopyOut(size_t offset, std::span<std::byte> out) const {
  while (!out.empty()) {
    const size_t index = (head_ + offset) / kChunkSize;
    const size_t in_chunk = (head_ + offset) % kChunkSize;
    const size_t n = std::min(out.size(), kChunkSize - in_chunk);
    if (index < chunks_.size() && chunks_[index] != nullptr) {
      std::memcpy(out.data(), chunks_[index] + in_chunk, n);
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
  head_ += n;
  // Whole chunks before the new head are free; chunks past the end may hold bytes written
  // with WriteAt and stay.
  const size_t drop = std::min(head_ / kChunkSize, chunks_.size());
  for (size_t i = 0; i < drop; ++i) {
    if (chunks_[i] != nullptr) mem_->deallocate(chunks_[i], kChunkSize, alignof(std::max_align_t));
  }
  chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(drop));
  head_ -= drop * kChunkSize;
}

}  // namespace shake
