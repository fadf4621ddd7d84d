#include "io/pump.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace shake::io {

// Passes a frame on towards the device from filter stage `stage` (stage 0 is the device).
class Pump::Out final : public FrameEmitter {
 public:
  Out(Pump* p, size_t stage) : p_(p), stage_(stage) {}
  void Emit(std::span<const std::byte> frame, FrameMeta) override { p_->Transmit(frame, stage_); }

 private:
  Pump* p_;
  size_t stage_;
};

// Passes a received frame on towards the handler from filter stage `stage`.
class Pump::In final : public FrameEmitter, public FrameReceiver {
 public:
  In(Pump* p, size_t stage) : p_(p), stage_(stage) {}
  void Emit(std::span<const std::byte> frame, FrameMeta meta) override { Deliver(frame, meta); }
  void OnFrame(std::span<const std::byte> frame, FrameMeta meta) override { Deliver(frame, meta); }

 private:
  void Deliver(std::span<const std::byte> frame, FrameMeta meta) {
    if (stage_ == p_->filters_.size()) {
      p_->handler_->Receive(p_->now_, frame, p_->sink_, meta.checksum_trusted);
      return;
    }
    In next(p_, stage_ + 1);
    p_->filters_[stage_]->Process(p_->now_, Direction::kIn, frame, meta, next);
  }
  Pump* p_;
  size_t stage_;
};

// One batch of frames on its way to the device: its own buffers and message vectors, so that
// a sealed batch can be written while the sink fills another.
struct Pump::TxBatch {
  std::vector<std::byte> mem;
  std::vector<size_t> len;
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iov;
  size_t count = 0;
};

Pump::Pump(Device& device, size_t rx_batch, size_t tx_batch)
    : dev_(device),
      rx_batch_(rx_batch == 0 ? 1 : rx_batch),
      tx_batch_(tx_batch == 0 ? 1 : tx_batch),
      rx_size_(device.rx_buffer_size()),
      tx_size_(device.header_len() + device.max_tx_frame()),
      rx_mem_(rx_batch_ * rx_size_),
      rx_len_(rx_batch_),
      rx_msgs_(rx_batch_),
      rx_iov_(rx_batch_) {
  cur_ = NewBatch();
}

Pump::~Pump() = default;

Pump::TxBatch* Pump::NewBatch() {
  std::lock_guard<std::mutex> hold(pool_mu_);
  if (!free_.empty()) {
    TxBatch* b = free_.back();
    free_.pop_back();
    return b;
  }
  auto b = std::make_unique<TxBatch>();
  b->mem.resize(tx_batch_ * tx_size_);
  b->len.resize(tx_batch_);
  b->msgs.resize(tx_batch_);
  b->iov.resize(tx_batch_);
  all_.push_back(std::move(b));
  return all_.back().get();
}

std::span<std::byte> Pump::Slot(TxBatch& b, size_t i) {
  return std::span(b.mem).subspan(i * tx_size_, tx_size_);
}

std::span<std::byte> Pump::Sink::Acquire(size_t max_len) {
  Pump& p = *p_;
  if (p.cur_->count == p.tx_batch_) p.Flush();
  const size_t hl = p.dev_.header_len();
  if (max_len > p.tx_size_ - hl) max_len = p.tx_size_ - hl;
  p.acquired_ = true;
  return p.Slot(*p.cur_, p.cur_->count).subspan(hl, max_len);
}

void Pump::Sink::Commit(size_t len) {
  Pump& p = *p_;
  if (!p.acquired_) return;
  const size_t hl = p.dev_.header_len();
  // Passes through the filters (last to first); the frame stays in its slot unless a filter
  // emits something else.
  p.Transmit(p.Slot(*p.cur_, p.cur_->count).subspan(hl, len), p.filters_.size());
  p.acquired_ = false;
}

void Pump::Transmit(std::span<const std::byte> frame, size_t stage) {
  if (stage == 0) {
    Enqueue(frame);
    return;
  }
  Out next(this, stage - 1);
  filters_[stage - 1]->Process(now_, Direction::kOut, frame, FrameMeta{}, next);
}

void Pump::Enqueue(std::span<const std::byte> frame) {
  const size_t hl = dev_.header_len();
  if (frame.size() + hl > tx_size_) {
    ++stats_.tx_dropped;
    return;
  }
  if (cur_->count == tx_batch_) Flush();
  std::span<std::byte> slot = Slot(*cur_, cur_->count);
  if (frame.data() != slot.data() + hl) std::memmove(slot.data() + hl, frame.data(), frame.size());
  dev_.EncodeHeader(slot.first(hl));
  cur_->len[cur_->count++] = hl + frame.size();
}

size_t Pump::queued() const { return cur_->count; }

size_t Pump::Flush() {
  TxBatch* b = Seal();
  if (b == nullptr) return 0;
  if (order_ != nullptr) order_->lock();
  const size_t dropped = Send(b);
  if (order_ != nullptr) order_->unlock();
  return dropped;
}

Pump::TxBatch* Pump::Seal() {
  if (cur_->count == 0) return nullptr;
  TxBatch* b = cur_;
  cur_ = NewBatch();
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  return b;
}

size_t Pump::Send(TxBatch* b) {
  if (b == nullptr) return 0;
  size_t dropped = 0;
  size_t flushes = 0;
  if (dev_.is_socket()) {
    for (size_t i = 0; i < b->count; ++i) {
      b->iov[i] = {Slot(*b, i).data(), b->len[i]};
      b->msgs[i] = {};
      b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
      b->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < b->count) {  // bounded: every round sends or drops at least one frame
      ++flushes;
      const int n = sendmmsg(dev_.fd(), b->msgs.data() + done,
                             static_cast<unsigned>(b->count - done), MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        ++dropped;  // EAGAIN (socket buffer full) or an error: lost, as on a wire
        ++done;
      }
    }
  } else {
    for (size_t i = 0; i < b->count; ++i) {
      ++flushes;
      ssize_t n;
      do {
        n = write(dev_.fd(), Slot(*b, i).data(), b->len[i]);
      } while (n < 0 && errno == EINTR);
      if (n < 0) ++dropped;
    }
  }
  const size_t sent = b->count - dropped;
  b->count = 0;
  std::lock_guard<std::mutex> hold(pool_mu_);
  stats_.tx_frames += sent;
  stats_.tx_dropped += dropped;
  stats_.tx_flushes += flushes;
  free_.push_back(b);
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  return dropped;
}

int Pump::Read(int max_reads) {
  if (pending_ != 0) return 0;  // Handle first
  const size_t want = std::min(rx_batch_, static_cast<size_t>(std::max(max_reads, 1)));
  size_t got = 0;
  if (dev_.is_socket()) {
    for (size_t i = 0; i < want; ++i) {
      rx_iov_[i] = {rx_mem_.data() + i * rx_size_, rx_size_};
      rx_msgs_[i] = {};
      rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
      rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    const int n =
        recvmmsg(dev_.fd(), rx_msgs_.data(), static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) ++stats_.rx_errors;
    } else {
      got = static_cast<size_t>(n);
      for (size_t k = 0; k < got; ++k) {
        rx_len_[k] = (rx_msgs_[k].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : rx_msgs_[k].msg_len;
      }
    }
  } else {
    // One packet per read on a TUN; each goes into its own slot.
    for (; got < want; ++got) {
      const ssize_t n = read(dev_.fd(), rx_mem_.data() + got * rx_size_, rx_size_);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) ++stats_.rx_errors;
        break;
      }
      rx_len_[got] = static_cast<size_t>(n);
    }
  }
  pending_ = got;
  stats_.rx_reads += got;
  if (got == 0) ++stats_.rx_empty;
  return static_cast<int>(got);
}

void Pump::Handle(Instant now, PacketHandler& handler) {
  now_ = now;
  handler_ = &handler;
  In in(this, 0);
  const size_t n = pending_;
  pending_ = 0;
  for (size_t k = 0; k < n; ++k) {
    if (rx_len_[k] == 0) continue;  // truncated: the kernel counted it, we drop it
    dev_.Decode(std::span(rx_mem_).subspan(k * rx_size_, rx_len_[k]), in);
  }
  handler_ = nullptr;
}

int Pump::Drain(Instant now, PacketHandler& handler, int max_reads) {
  int total = 0;
  while (total < max_reads) {
    const int got = Read(max_reads - total);
    Handle(now, handler);
    total += got;
    if (static_cast<size_t>(got) < rx_batch_) break;  // the device is empty
  }
  return total;
}

}  // namespace shake::io
