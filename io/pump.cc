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

Pump::Pump(Device& device, size_t rx_batch, size_t tx_batch)
    : dev_(device),
      rx_batch_(rx_batch == 0 ? 1 : rx_batch),
      tx_batch_(tx_batch == 0 ? 1 : tx_batch),
      rx_size_(device.rx_buffer_size()),
      tx_size_(device.header_len() + device.max_tx_frame()),
      rx_mem_(rx_batch_ * rx_size_),
      tx_mem_(tx_batch_ * tx_size_),
      tx_len_(tx_batch_),
      rx_msgs_(rx_batch_),
      rx_iov_(rx_batch_),
      tx_msgs_(tx_batch_),
      tx_iov_(tx_batch_) {}

std::span<std::byte> Pump::Sink::Acquire(size_t max_len) {
  Pump& p = *p_;
  if (p.tx_count_ == p.tx_batch_) p.Flush();
  const size_t hl = p.dev_.header_len();
  if (max_len > p.tx_size_ - hl) max_len = p.tx_size_ - hl;
  p.acquired_ = true;
  return p.Slot(p.tx_count_).subspan(hl, max_len);
}

void Pump::Sink::Commit(size_t len) {
  Pump& p = *p_;
  if (!p.acquired_) return;
  const size_t hl = p.dev_.header_len();
  // Passes through the filters (last to first); the frame stays in its slot unless a filter
  // emits something else.
  p.Transmit(p.Slot(p.tx_count_).subspan(hl, len), p.filters_.size());
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
  if (tx_count_ == tx_batch_) Flush();
  std::span<std::byte> slot = Slot(tx_count_);
  if (frame.data() != slot.data() + hl) std::memmove(slot.data() + hl, frame.data(), frame.size());
  dev_.EncodeHeader(slot.first(hl));
  tx_len_[tx_count_++] = hl + frame.size();
}

size_t Pump::Flush() {
  size_t dropped = 0;
  if (tx_count_ == 0) return 0;
  if (dev_.is_socket()) {
    for (size_t i = 0; i < tx_count_; ++i) {
      tx_iov_[i] = {Slot(i).data(), tx_len_[i]};
      tx_msgs_[i] = {};
      tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[i];
      tx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < tx_count_) {  // bounded: every round sends or drops at least one frame
      ++stats_.tx_flushes;
      const int n = sendmmsg(dev_.fd(), tx_msgs_.data() + done,
                             static_cast<unsigned>(tx_count_ - done), MSG_DONTWAIT);
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
    for (size_t i = 0; i < tx_count_; ++i) {
      ++stats_.tx_flushes;
      ssize_t n;
      do {
        n = write(dev_.fd(), Slot(i).data(), tx_len_[i]);
      } while (n < 0 && errno == EINTR);
      if (n < 0) ++dropped;
    }
  }
  stats_.tx_frames += tx_count_ - dropped;
  stats_.tx_dropped += dropped;
  tx_count_ = 0;
  return dropped;
}

int Pump::Drain(Instant now, PacketHandler& handler, int max_reads) {
  now_ = now;
  handler_ = &handler;
  In in(this, 0);
  int total = 0;
  while (total < max_reads) {
    const size_t want = std::min(rx_batch_, static_cast<size_t>(max_reads - total));
    int got = 0;
    if (dev_.is_socket()) {
      for (size_t i = 0; i < want; ++i) {
        rx_iov_[i] = {rx_mem_.data() + i * rx_size_, rx_size_};
        rx_msgs_[i] = {};
        rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
        rx_msgs_[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = recvmmsg(dev_.fd(), rx_msgs_.data(), static_cast<unsigned>(want), MSG_DONTWAIT,
                             nullptr);
      if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) ++stats_.rx_errors;
        break;
      }
      for (int i = 0; i < n; ++i) {
        const auto k = static_cast<size_t>(i);
        if (rx_msgs_[k].msg_hdr.msg_flags & MSG_TRUNC) continue;
        dev_.Decode(std::span(rx_mem_).subspan(k * rx_size_, rx_msgs_[k].msg_len), in);
      }
      got = n;
    } else {
      for (size_t i = 0; i < want; ++i) {
        const ssize_t n = read(dev_.fd(), rx_mem_.data(), rx_size_);
        if (n < 0) {
          if (errno != EAGAIN && errno != EINTR) ++stats_.rx_errors;
          break;
        }
        ++got;
        dev_.Decode(std::span(rx_mem_).first(static_cast<size_t>(n)), in);
      }
    }
    stats_.rx_reads += static_cast<uint64_t>(got);
    total += got;
    if (static_cast<size_t>(got) < want) break;  // the device is empty
  }
  if (total == 0) ++stats_.rx_empty;
  handler_ = nullptr;
  return total;
}

}  // namespace shake::io
