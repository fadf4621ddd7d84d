#include "stack/tcp/tx_records.h"

#include <algorithm>

namespace shake {

void TxRecords::Clear() {
  head_ = tail_ = lost_cursor_ = 0;
  list_head_ = list_tail_ = kNil;
  sacked_ = lost_ = retrans_ = sacked_segs_ = lost_segs_ = retrans_segs_ = 0;
  Release();
}

void TxRecords::Release() {
  if (ring_.empty()) return;
  std::pmr::vector<Record>(ring_.get_allocator()).swap(ring_);
  mask_ = 0;
}

void TxRecords::Grow() {
  const size_t cap = ring_.empty() ? 8 : ring_.size() * 2;
  std::pmr::vector<Record> bigger(cap, ring_.get_allocator());
  const auto new_mask = static_cast<uint32_t>(cap - 1);
  for (uint32_t id = head_; id != tail_; ++id) bigger[id & new_mask] = ring_[id & mask_];
  ring_.swap(bigger);
  mask_ = new_mask;
}

void TxRecords::Append(SeqNum start, SeqNum end, Instant now) {
  if (tail_ - head_ == ring_.size()) Grow();
  Record& r = at(tail_);
  r = Record{};
  r.start = start;
  r.end = end;
  r.xmit = now;
  ++tail_;
  Link(tail_ - 1);
}

uint32_t TxRecords::Find(SeqNum seq) const {
  // Records are contiguous and in sequence order: binary search on their ends.
  uint32_t lo = 0, hi = tail_ - head_;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (at(head_ + mid).end > seq) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return head_ + lo;
}

void TxRecords::Count(const Record& r, int64_t bytes, int segs) {
  auto add = [](uint32_t& c, int64_t d) { c = static_cast<uint32_t>(static_cast<int64_t>(c) + d); };
  if ((r.flags & kSacked) != 0) {
    add(sacked_, bytes);
    add(sacked_segs_, segs);
  }
  if ((r.flags & kLost) != 0) {
    add(lost_, bytes);
    add(lost_segs_, segs);
  }
  if ((r.flags & kRetrans) != 0) {
    add(retrans_, bytes);
    add(retrans_segs_, segs);
  }
}

void TxRecords::Link(uint32_t id) {
  Record& r = at(id);
  r.prev = list_tail_;
  r.next = kNil;
  if (list_tail_ != kNil) {
    at(list_tail_).next = id;
  } else {
    list_head_ = id;
  }
  list_tail_ = id;
  r.on_list = true;
}

void TxRecords::Unlink(uint32_t id) {
  Record& r = at(id);
  if (!r.on_list) return;
  if (r.prev != kNil) {
    at(r.prev).next = r.next;
  } else {
    list_head_ = r.next;
  }
  if (r.next != kNil) {
    at(r.next).prev = r.prev;
  } else {
    list_tail_ = r.prev;
  }
  r.prev = r.next = kNil;
  r.on_list = false;
}

void TxRecords::MarkSacked(uint32_t id) {
  Record& r = at(id);
  if ((r.flags & kSacked) != 0) return;
  Count(r, -static_cast<int64_t>(r.len()), -1);
  r.flags = static_cast<uint8_t>((r.flags & kEverRetrans) | kSacked);
  Count(r, r.len(), 1);
  Unlink(id);
}

void TxRecords::Unsack(uint32_t id) {
  Record& r = at(id);
  if ((r.flags & kSacked) == 0) return;
  Count(r, -static_cast<int64_t>(r.len()), -1);
  r.flags = static_cast<uint8_t>(r.flags & ~kSacked);
  Count(r, r.len(), 1);
}

void TxRecords::MarkLost(uint32_t id) {
  Record& r = at(id);
  if ((r.flags & kSacked) != 0) return;
  if ((r.flags & kLost) == 0) ++lost_marked_;
  Count(r, -static_cast<int64_t>(r.len()), -1);
  // A lost retransmission is no longer in flight either (RFC 8985 6.2 step 5).
  r.flags = static_cast<uint8_t>((r.flags & ~kRetrans) | kLost);
  Count(r, r.len(), 1);
  Unlink(id);
  if (id - head_ < lost_cursor_ - head_) lost_cursor_ = id;
}

void TxRecords::MarkRetransmitted(uint32_t id, Instant now) {
  Record& r = at(id);
  if ((r.flags & kSacked) != 0) return;  // the receiver has it: nothing is in flight for it
  Count(r, -static_cast<int64_t>(r.len()), -1);
  r.flags = static_cast<uint8_t>(r.flags | kRetrans | kEverRetrans);
  Count(r, r.len(), 1);
  r.xmit = now;
  Unlink(id);
  Link(id);
}

uint32_t TxRecords::NextLost() {
  if (lost_ == 0) return kNil;
  if (lost_cursor_ - head_ > tail_ - head_) lost_cursor_ = head_;
  for (; lost_cursor_ != tail_; ++lost_cursor_) {
    const Record& r = at(lost_cursor_);
    if ((r.flags & (kLost | kRetrans | kSacked)) == kLost) return lost_cursor_;
  }
  return kNil;
}

void TxRecords::UnmarkLost() {
  std::pmr::vector<uint32_t> ids(ring_.get_allocator());
  for (uint32_t id = head_; id != tail_; ++id) {
    Record& r = at(id);
    Unlink(id);
    if ((r.flags & kLost) != 0) {
      Count(r, -static_cast<int64_t>(r.len()), -1);
      r.flags = static_cast<uint8_t>(r.flags & ~kLost);
      Count(r, r.len(), 1);
    }
    if ((r.flags & kSacked) == 0) ids.push_back(id);
  }
  std::stable_sort(ids.begin(), ids.end(),
                   [this](uint32_t a, uint32_t b) { return at(a).xmit < at(b).xmit; });
  for (uint32_t id : ids) Link(id);
  lost_cursor_ = head_;
}

}  // namespace shake
