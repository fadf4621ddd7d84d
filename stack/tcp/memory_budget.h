// MemoryBudget: the stack-wide account of the memory that connections hold, as Linux's tcp_mem
// with sk_memory_allocated.
//
// Every control block takes its dynamic memory (the send queue, the receive queue with its
// out-of-order bytes and range table, the transmit records) through this resource, which passes
// each request to the host's allocator and counts the bytes. Three levels, as tcp_mem's three
// values: above `pressure` the stack is under memory pressure (advertised windows and send
// buffers stop growing) until the account falls back to `low`; at or above `limit` a
// connection gets no new memory for data (Tcb::ProcessData drops the segment, Tcb::Write takes
// only what fits in what the connection holds already, beyond a small guarantee of progress).
// A limit of zero means no limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>

#include "stack/counters.h"

namespace shake {

class MemoryBudget final : public std::pmr::memory_resource {
 public:
  // `counters` (may be null) gets tcp_mem_pressures.
  MemoryBudget(std::pmr::memory_resource* upstream, size_t low, size_t pressure, size_t limit,
               Counters* counters)
      : up_(upstream), counters_(counters), low_(low), pressure_level_(pressure), limit_(limit) {}

  size_t allocated() const { return allocated_; }
  size_t peak() const { return peak_; }
  size_t limit() const { return limit_; }
  size_t pressure_level() const { return pressure_level_; }
  size_t low() const { return low_; }
  bool under_pressure() const { return pressure_; }
  bool over_limit() const { return limit_ != 0 && allocated_ >= limit_; }
  // A writer was held back by the limit (Tcb::SendSpace): its host wants to hear when memory
  // is freed below the limit.
  void Hold() { held_ = true; }
  // True once after memory was freed below the limit since it held something back: the host
  // then wakes the writers the limit held back.
  bool TakeRelief() {
    const bool r = relief_;
    relief_ = false;
    return r;
  }

 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    void* p = up_->allocate(bytes, alignment);  // may throw: nothing counted then
    allocated_ += bytes;
    if (allocated_ > peak_) peak_ = allocated_;
    if (!pressure_ && pressure_level_ != 0 && allocated_ > pressure_level_) {
      pressure_ = true;
      if (counters_ != nullptr) counters_->tcp_mem_pressures++;
    }
    if (over_limit()) held_ = true;
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    up_->deallocate(p, bytes, alignment);
    allocated_ -= bytes;
    if (pressure_ && allocated_ <= low_) pressure_ = false;
    if (held_ && !over_limit()) {
      held_ = false;
      relief_ = true;
    }
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* up_;
  Counters* counters_;
  size_t low_;
  size_t pressure_level_;
  size_t limit_;
  size_t allocated_ = 0;
  size_t peak_ = 0;
  bool pressure_ = false;
  bool held_ = false;    // the limit held something back, and no memory was freed below it since
  bool relief_ = false;  // it has now: not yet taken
};

}  // namespace shake
