// RecvBuffer: TCP receive reassembly within the receive buffer's budget (RFC 9293 3.10.7.4).
//
// In-order bytes are readable; out-of-order bytes are placed at their offset in the same
// ByteQueue and tracked as ranges, from which the SACK blocks of RFC 2018 are produced (the
// block holding the most recently received segment first). The range table is allocated only
// while out-of-order data is held, so an in-order connection carries none of it.
#pragma once

#include <array>
#include <cstddef>
#include <memory_resource>
#include <span>

#include "stack/base/seqnum.h"
#include "stack/tcp/byte_queue.h"
#include "stack/wire/tcp.h"

namespace shake {

class RecvBuffer {
 public:
  static constexpr size_t kMaxRanges = 32;

  explicit RecvBuffer(std::pmr::memory_resource* mem) : mem_(mem), queue_(mem) {}
  ~RecvBuffer() { FreeRanges(); }
  RecvBuffer(const RecvBuffer&) = delete;
  RecvBuffer& operator=(const RecvBuffer&) = delete;

  // rcv_nxt corresponds to offset readable() in the queue.
  void Reset(SeqNum rcv_nxt) {
    rcv_nxt_ = rcv_nxt;
    range_count_ = 0;
    FreeRanges();
  }
  SeqNum rcv_nxt() const { return rcv_nxt_; }
  size_t readable() const { return queue_.size(); }
  bool has_out_of_order() const { return range_count_ != 0; }

  struct Accepted {
    size_t in_order = 0;       // bytes that advanced rcv_nxt
    bool out_of_order = false; // some bytes were stored past a hole
    bool duplicate = false;    // nothing new
    bool no_range = false;     // new out-of-order bytes refused: all kMaxRanges ranges in use
  };
  // Stores the part of [seq, seq+len) that lies within [rcv_nxt, rcv_nxt + window_limit),
  // where window_limit counts from rcv_nxt. Returns what changed.
  Accepted Insert(SeqNum seq, std::span<const std::byte> data, size_t window_limit);

  // Whether Insert of the same arguments would take memory the buffer does not hold yet (a
  // chunk, or the range table); `in_order` tells whether the new bytes start at rcv_nxt.
  bool NeedsMemory(SeqNum seq, size_t len, size_t window_limit, bool* in_order) const;

  size_t Read(std::span<std::byte> out, bool peek);
  // Up to `max` SACK blocks, most recent first.
  size_t SackBlocks(std::span<wire::SackBlock> out) const;
  // Highest sequence number held out of order (rcv_nxt when none).
  SeqNum highest() const;
  void Clear() {
    queue_.Clear();
    range_count_ = 0;
    FreeRanges();
  }

 private:
  struct Range {
    SeqNum left, right;
    uint64_t touched;  // insertion order, for SACK block ordering
  };
  void AddRange(SeqNum left, SeqNum right);
  void FreeRanges() {
    if (ranges_ == nullptr) return;
    mem_->deallocate(ranges_, kMaxRanges * sizeof(Range), alignof(Range));
    ranges_ = nullptr;
  }

  std::pmr::memory_resource* mem_;
  ByteQueue queue_;
  SeqNum rcv_nxt_;
  // kMaxRanges entries while out-of-order data is held (else null): sorted, disjoint,
  // non-adjacent, all > rcv_nxt; the first range_count_ are in use.
  Range* ranges_ = nullptr;
  size_t range_count_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace shake
