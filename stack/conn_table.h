// ConnTable: the stack's 4-tuple -> connection slot map, an open-addressing hash table.
//
// Every arriving segment looks its connection up here, so the table is laid out for that: one
// flat array of 16-byte entries (the tuple packed into 12 bytes, the slot in 4), linear probing,
// at most 1/2 full, so a lookup is one hash and usually one cache line, with no per-connection
// node allocation. Deletion shifts later entries of the probe run back (no tombstones), so
// lookups never slow down as connections come and go. The table grows by doubling and shrinks
// when it falls below 1/8 full, so memory follows the number of connections. Memory comes from
// the stack's memory_resource.
//
// The hash is keyed with a per-stack seed, as the table it replaces, so that a remote peer
// cannot easily aim its 4-tuples at one probe run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>

#include "stack/base/addr.h"

namespace shake {

class ConnTable {
 public:
  static constexpr uint32_t kAbsent = 0xffffffffu;

  ConnTable(std::pmr::memory_resource* mem, uint64_t seed) : mem_(mem), seed_(seed) {}
  ~ConnTable() { Free(entries_, cap_); }
  ConnTable(const ConnTable&) = delete;
  ConnTable& operator=(const ConnTable&) = delete;

  size_t size() const { return size_; }
  // The slot stored for `t`, or kAbsent.
  uint32_t Find(const FourTuple& t) const {
    if (size_ == 0) return kAbsent;
    const Key k = Pack(t);
    for (size_t i = Home(k);; i = (i + 1) & (cap_ - 1)) {
      const Entry& e = entries_[i];
      if (e.value == kAbsent) return kAbsent;
      if (e.addrs == k.addrs && e.ports == k.ports) return e.value;
    }
  }
  bool Contains(const FourTuple& t) const { return Find(t) != kAbsent; }
  // Adds `t` -> `value`; `t` must not be present and `value` must not be kAbsent.
  void Insert(const FourTuple& t, uint32_t value) {
    if (2 * (size_ + 1) > cap_) Resize(cap_ == 0 ? kMinCapacity : 2 * cap_);
    Place(Pack(t), value);
    ++size_;
  }
  // Removes `t` if present.
  void Erase(const FourTuple& t) {
    if (size_ == 0) return;
    const Key k = Pack(t);
    size_t i = Home(k);
    for (;; i = (i + 1) & (cap_ - 1)) {
      const Entry& e = entries_[i];
      if (e.value == kAbsent) return;
      if (e.addrs == k.addrs && e.ports == k.ports) break;
    }
    // Backward-shift deletion: move up each later entry of the run that may live at i.
    for (size_t j = (i + 1) & (cap_ - 1);; j = (j + 1) & (cap_ - 1)) {
      Entry& e = entries_[j];
      if (e.value == kAbsent) break;
      const size_t home = Home(Key{e.addrs, e.ports});
      // e may move to i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!stays) {
        entries_[i] = e;
        i = j;
      }
    }
    entries_[i].value = kAbsent;
    --size_;
    if (cap_ > kMinCapacity && 8 * size_ < cap_) Resize(cap_ / 2);
  }

 private:
  static constexpr size_t kMinCapacity = 64;
  struct Key {
    uint64_t addrs;  // local << 32 | remote
    uint32_t ports;  // local << 16 | remote
  };
  struct Entry {
    uint64_t addrs;
    uint32_t ports;
    uint32_t value;  // kAbsent: empty
  };
  static Key Pack(const FourTuple& t) {
    return {uint64_t{t.local.addr.value()} << 32 | t.remote.addr.value(),
            uint32_t{t.local.port} << 16 | t.remote.port};
  }
  size_t Home(const Key& k) const {
    uint64_t x = k.addrs ^ seed_;
    x ^= uint64_t{k.ports} * 0x9e3779b97f4a7c15ull;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return static_cast<size_t>(x) & (cap_ - 1);
  }
  void Place(const Key& k, uint32_t value) {
    size_t i = Home(k);
    while (entries_[i].value != kAbsent) i = (i + 1) & (cap_ - 1);
    entries_[i] = Entry{k.addrs, k.ports, value};
  }
  void Resize(size_t cap) {
    Entry* old = entries_;
    const size_t old_cap = cap_;
    entries_ = static_cast<Entry*>(mem_->allocate(cap * sizeof(Entry), alignof(Entry)));
    cap_ = cap;
    for (size_t i = 0; i < cap; ++i) entries_[i].value = kAbsent;
    for (size_t i = 0; i < old_cap; ++i) {
      if (old[i].value != kAbsent) Place(Key{old[i].addrs, old[i].ports}, old[i].value);
    }
    Free(old, old_cap);
  }
  void Free(Entry* e, size_t cap) {
    if (e != nullptr) mem_->deallocate(e, cap * sizeof(Entry), alignof(Entry));
  }

  std::pmr::memory_resource* mem_;
  uint64_t seed_;
  Entry* entries_ = nullptr;
  size_t cap_ = 0;  // a power of two, or 0
  size_t size_ = 0;
};

}  // namespace shake
