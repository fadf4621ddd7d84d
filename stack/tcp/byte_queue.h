// ByteQueue: a byte FIFO stored in chunks taken from the host's allocator.
//
// Memory follows the data actually held, not the configured buffer size, so 100k idle
// connections cost little: a queue holds no chunk while it is empty (everything written has been
// consumed), and a queue that starts filling takes a small chunk first (most request/response
// traffic fits in it), moving to large chunks once it outgrows it. Bytes may also be written past
// the end (WriteAt) and made visible later (Commit), which is how out-of-order TCP data is placed
// straight into the receive queue.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <span>
#include <vector>

namespace shake {

class ByteQueue {
 public:
  static constexpr size_t kSmallChunkSize = 2 * 1024;
  static constexpr size_t kChunkSize = 16 * 1024;

  explicit ByteQueue(std::pmr::memory_resource* mem);
  ~ByteQueue();
  ByteQueue(const ByteQueue&) = delete;
  ByteQueue& operator=(const ByteQueue&) = delete;

  // Committed bytes, readable from offset 0.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Appends and commits `data`.
  void Append(std::span<const std::byte> data);
  // Writes `data` at `offset` (which may lie beyond size()) without committing it.
  void WriteAt(size_t offset, std::span<const std::byte> data);
  // Makes `n` more bytes, already written with WriteAt, part of the committed data.
  void Commit(size_t n) {
    size_ += n;
    if (extent_ < size_) extent_ = size_;
  }
  // Copies bytes [offset, offset + out.size()) into `out`; the range may include uncommitted
  // bytes written with WriteAt.
  void CopyOut(size_t offset, std::span<std::byte> out) const;
  // Drops `n` committed bytes from the front; frees all chunks once nothing written remains.
  void Consume(size_t n);
  // Frees everything.
  void Clear();

  // Bytes of chunk memory held (for accounting).
  size_t memory() const { return count_ * chunk_size_; }
  // Whether writing [offset, offset + n) would take a chunk the queue does not hold yet.
  bool NeedsMemory(size_t offset, size_t n) const;
  // Bytes Append can take into chunks already held (none while the queue holds no chunk).
  size_t Room() const {
    const size_t end = head_ + extent_;
    return memory() > end ? memory() - end : 0;
  }

 private:
  std::byte* ChunkFor(size_t offset, bool allocate);
  // The small chunk is outgrown: move its bytes into a large chunk at the same positions.
  void Grow();
  void FreeChunk(std::byte* c) const;

  std::pmr::memory_resource* mem_;
  // Chunk pointers as a ring of capacity cap_ (a power of two): chunk i of the queue (covering
  // positions [i * chunk_size_, (i + 1) * chunk_size_) relative to head_'s chunk) sits at
  // ring_[(first_ + i) & (cap_ - 1)]. Holding a single chunk needs no ring: it sits in one_.
  std::byte* one_ = nullptr;
  std::byte** ring_ = nullptr;
  size_t cap_ = 0;     // ring capacity; 0 while one_ is used
  size_t first_ = 0;   // ring index of chunk 0
  size_t count_ = 0;   // chunks spanned (some may be null: never written)
  size_t chunk_size_ = kSmallChunkSize;
  size_t head_ = 0;    // position of byte 0 inside chunk 0
  size_t size_ = 0;
  size_t extent_ = 0;  // bytes from offset 0 written (committed or not); >= size_

  std::byte*& Slot(size_t i) { return cap_ == 0 ? one_ : ring_[(first_ + i) & (cap_ - 1)]; }
  std::byte* Slot(size_t i) const { return cap_ == 0 ? one_ : ring_[(first_ + i) & (cap_ - 1)]; }
  void Reserve(size_t chunks);
};

}  // namespace shake
