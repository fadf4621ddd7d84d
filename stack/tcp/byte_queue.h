// ByteQueue: a byte FIFO stored in fixed-size chunks taken from the host's allocator.
//
// Memory follows the data actually held, not the configured buffer size, so 100k idle
// connections cost little. Bytes may also be written past the end (WriteAt) and made visible
// later (Commit), which is how out-of-order TCP data is placed straight into the receive queue.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <span>
#include <vector>

namespace shake {

class ByteQueue {
 public:
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
  void Commit(size_t n) { size_ += n; }
  // Copies bytes [offset, offset + out.size()) into `out`; the range may include uncommitted
  // bytes written with WriteAt.
  void CopyOut(size_t offset, std::span<std::byte> out) const;
  // Drops `n` committed bytes from the front.
  void Consume(size_t n);
  // Frees everything.
  void Clear();

  // Bytes of chunk memory held (for accounting).
  size_t memory() const { return chunks_.size() * kChunkSize; }

 private:
  std::byte* ChunkFor(size_t offset, bool allocate);

  std::pmr::memory_resource* mem_;
  std::pmr::vector<std::byte*> chunks_;  // chunks_[0] holds offset -head_ .. kChunkSize-head_
  size_t head_ = 0;                      // offset of byte 0 inside chunks_[0]
  size_t size_ = 0;
};

}  // namespace shake
