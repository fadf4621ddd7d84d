// TimerHeap: the one timer structure for all connections (DESIGN.md decision 4).
//
// A binary min-heap of (deadline, slot) with each slot's position kept beside it, so a
// connection's deadline is moved in place (O(log n)) when an ACK restarts its retransmission
// timer, instead of pushing a new entry and leaving the old one to be skipped later. The heap
// therefore holds exactly one entry per connection with a deadline, never grows with stale
// entries, and needs no periodic O(n) compaction. Deadlines are exact (no wheel granularity),
// and equal deadlines fire in slot order, so a run is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <vector>

#include "stack/base/time.h"

namespace shake {

class TimerHeap {
 public:
  explicit TimerHeap(std::pmr::memory_resource* mem) : heap_(mem), pos_(mem) {}

  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  Instant top_when() const { return heap_.front().when; }  // only when !empty()
  uint32_t top_slot() const { return heap_.front().slot; }

  // Sets (or moves) `slot`'s deadline.
  void Set(uint32_t slot, Instant when) {
    if (slot >= pos_.size()) pos_.resize(slot + 1, kNone);
    uint32_t i = pos_[slot];
    if (i == kNone) {
      i = static_cast<uint32_t>(heap_.size());
      heap_.push_back({when, slot});
      pos_[slot] = i;
      Up(i);
      return;
    }
    const Entry old = heap_[i];
    heap_[i].when = when;
    if (Less(heap_[i], old)) {
      Up(i);
    } else {
      Down(i);
    }
  }
  // Removes `slot`'s deadline, if it has one.
  void Remove(uint32_t slot) {
    if (slot >= pos_.size() || pos_[slot] == kNone) return;
    const uint32_t i = pos_[slot];
    pos_[slot] = kNone;
    const auto last = static_cast<uint32_t>(heap_.size() - 1);
    if (i != last) {
      const Entry removed = heap_[i];
      heap_[i] = heap_[last];
      pos_[heap_[i].slot] = i;
      heap_.pop_back();
      if (Less(heap_[i], removed)) {
        Up(i);
      } else {
        Down(i);
      }
    } else {
      heap_.pop_back();
    }
  }
  void Pop() { Remove(top_slot()); }

 private:
  static constexpr uint32_t kNone = 0xffffffffu;
  struct Entry {
    Instant when;
    uint32_t slot;
  };
  static bool Less(const Entry& a, const Entry& b) {
    return a.when < b.when || (a.when == b.when && a.slot < b.slot);
  }
  void Up(uint32_t i) {
    const Entry e = heap_[i];
    while (i > 0) {
      const uint32_t parent = (i - 1) / 2;
      if (!Less(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      pos_[heap_[i].slot] = i;
      i = parent;
    }
    heap_[i] = e;
    pos_[e.slot] = i;
  }
  void Down(uint32_t i) {
    const Entry e = heap_[i];
    const auto n = static_cast<uint32_t>(heap_.size());
    for (;;) {
      uint32_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && Less(heap_[child + 1], heap_[child])) ++child;
      if (!Less(heap_[child], e)) break;
      heap_[i] = heap_[child];
      pos_[heap_[i].slot] = i;
      i = child;
    }
    heap_[i] = e;
    pos_[e.slot] = i;
  }

  std::pmr::vector<Entry> heap_;
  std::pmr::vector<uint32_t> pos_;  // slot -> index in heap_, or kNone
};

}  // namespace shake
