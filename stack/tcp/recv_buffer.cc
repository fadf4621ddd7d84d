#include "stack/tcp/recv_buffer.h"

#include <algorithm>

namespace shake {

RecvBuffer::Accepted RecvBuffer::Insert(SeqNum seq, std::span<const std::byte> data,
                                        size_t window_limit) {
  Accepted result;
  // Trim to [rcv_nxt, rcv_nxt + window_limit).
  SeqNum left = seq;
  SeqNum right = seq + static_cast<uint32_t>(data.size());
  const SeqNum win_end = rcv_nxt_ + static_cast<uint32_t>(window_limit);
  if (left < rcv_nxt_) {
    const auto skip = static_cast<size_t>(rcv_nxt_ - left);
    if (skip >= data.size()) {
      result.duplicate = true;
      return result;
    }
    data = data.subspan(skip);
    left = rcv_nxt_;
  }
  if (right > win_end) right = win_end;
  if (!(left < right)) {
    result.duplicate = true;
    return result;
  }
  data = data.first(static_cast<size_t>(right - left));

  // Bytes of the queue past readable() belong to sequence rcv_nxt onwards.
  const size_t base = queue_.size();
  if (left == rcv_nxt_) {
    queue_.WriteAt(base, data);
    SeqNum new_nxt = right;
    // Absorb out-of-order ranges now contiguous.
    size_t absorbed = 0;
    while (absorbed < range_count_ && ranges_[absorbed].left <= new_nxt) {
      new_nxt = SeqMax(new_nxt, ranges_[absorbed].right);
      ++absorbed;
    }
    if (absorbed != 0) {
      std::copy(ranges_ + absorbed, ranges_ + range_count_, ranges_);
      range_count_ -= absorbed;
      if (range_count_ == 0) FreeRanges();
    }
    // Out-of-order bytes at or below new_nxt were already written, except the ones that this
    // segment covers, which it rewrote with identical sequence positions.
    result.in_order = static_cast<size_t>(new_nxt - rcv_nxt_);
    queue_.Commit(result.in_order);
    rcv_nxt_ = new_nxt;
    return result;
  }

  // Out of order: check for news, then store.
  bool covered = false;
  for (size_t i = 0; i < range_count_; ++i) {
    if (ranges_[i].left <= left && right <= ranges_[i].right) {
      covered = true;
      ranges_[i].touched = ++clock_;
      break;
    }
  }
  if (covered) {
    result.duplicate = true;
    return result;
  }
  if (range_count_ == kMaxRanges) {
    // Would need another range: keep it only if it touches an existing one.
    bool touches = false;
    for (size_t i = 0; i < range_count_; ++i) {
      if (left <= ranges_[i].right && ranges_[i].left <= right) touches = true;
    }
    if (!touches) {
      result.duplicate = true;
      result.no_range = true;
      return result;
    }
  }
  queue_.WriteAt(base + static_cast<size_t>(left - rcv_nxt_), data);
  AddRange(left, right);
  result.out_of_order = true;
  return result;
}

bool RecvBuffer::NeedsMemory(SeqNum seq, size_t len, size_t window_limit,
                             bool* in_order) const {
  // The same trimming as Insert.
  SeqNum left = seq;
  SeqNum right = seq + static_cast<uint32_t>(len);
  const SeqNum win_end = rcv_nxt_ + static_cast<uint32_t>(window_limit);
  if (left < rcv_nxt_) left = rcv_nxt_;
  if (right > win_end) right = win_end;
  *in_order = left == rcv_nxt_;
  if (!(left < right)) return false;
  const size_t offset = queue_.size() + static_cast<size_t>(left - rcv_nxt_);
  const size_t n = static_cast<size_t>(right - left);
  if (!*in_order && ranges_ == nullptr) return true;
  return queue_.NeedsMemory(offset, n);
}

void RecvBuffer::AddRange(SeqNum left, SeqNum right) {
  if (ranges_ == nullptr) {
    ranges_ = static_cast<Range*>(mem_->allocate(kMaxRanges * sizeof(Range), alignof(Range)));
  }
  // Merge with every range it overlaps or touches, then insert in order.
  size_t i = 0;
  while (i < range_count_ && ranges_[i].right < left) ++i;
  size_t j = i;
  while (j < range_count_ && ranges_[j].left <= right) {
    left = SeqMin(left, ranges_[j].left);
    right = SeqMax(right, ranges_[j].right);
    ++j;
  }
  const Range merged{left, right, ++clock_};
  if (j == i) {
    std::copy_backward(ranges_ + i, ranges_ + range_count_, ranges_ + range_count_ + 1);
    ranges_[i] = merged;
    ++range_count_;
  } else {
    ranges_[i] = merged;
    std::copy(ranges_ + j, ranges_ + range_count_, ranges_ + i + 1);
    range_count_ -= (j - i - 1);
  }
}

size_t RecvBuffer::Read(std::span<std::byte> out, bool peek) {
  const size_t n = std::min(out.size(), queue_.size());
  queue_.CopyOut(0, out.first(n));
  if (!peek) queue_.Consume(n);
  return n;
}

size_t RecvBuffer::SackBlocks(std::span<wire::SackBlock> out) const {
  std::array<const Range*, kMaxRanges> order{};
  for (size_t i = 0; i < range_count_; ++i) order[i] = &ranges_[i];
  std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(range_count_),
            [](const Range* a, const Range* b) { return a->touched > b->touched; });
  const size_t n = std::min(out.size(), range_count_);
  for (size_t i = 0; i < n; ++i) out[i] = {order[i]->left, order[i]->right};
  return n;
}

SeqNum RecvBuffer::highest() const {
  return range_count_ == 0 ? rcv_nxt_ : ranges_[range_count_ - 1].right;
}

}  // namespace shake
