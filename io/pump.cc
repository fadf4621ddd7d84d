#include "io/pump.h"

#include <unistd.h>

#include "io/offload.h"

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

// One batch of frames on its way to the device: its own buffer and message vectors, so that a
// sealed batch can be written while the sink fills another. Frames are packed one after the
// other, each after room for the device's header; with a device that takes GSO, a segment that
// continues the batch's last one in the same stream joins it (offload.h, Continues).
struct Pump::TxBatch {
  struct Frame {
    size_t off = 0;       // where its device header starts
    size_t len = 0;       // frame bytes after the header
    TcpSegmentView tcp;   // its first segment's layout (when tcp_ok)
    bool tcp_ok = false;
    uint32_t bytes = 0;   // payload so far
    uint16_t gso = 0;     // 0: a single segment; else the payload of each segment but the last
    uint16_t last = 0;    // payload of the last segment joined
  };
  std::vector<std::byte> mem;
  size_t used = 0;
  std::vector<Frame> frames;
  uint64_t flows = 0;  // FlowBucket of each frame, a bit each
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iov;
};

namespace {
// Which of 64 buckets a frame's flow falls in: a hash of an IPv4 packet's addresses, protocol
// and (TCP, UDP) ports; other frames, ARP above all, share bucket 0.
int FlowBucket(std::span<const std::byte> frame, size_t l2) {
  if (frame.size() < l2 + 20) return 0;
  const auto* ip = reinterpret_cast<const uint8_t*>(frame.data()) + l2;
  if ((ip[0] >> 4) != 4) return 0;
  const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  uint64_t key = 0;
  std::memcpy(&key, ip + 12, 8);  // source and destination address
  key ^= uint64_t{ip[9]} << 56;   // protocol
  if ((ip[9] == 6 || ip[9] == 17) && frame.size() >= l2 + ihl + 4) {
    uint32_t ports = 0;
    std::memcpy(&ports, ip + ihl, 4);
    key ^= uint64_t{ports} * 0x9e3779b97f4a7c15ull;
  }
  key *= 0xbf58476d1ce4e5b9ull;
  return static_cast<int>(key >> 58);
}

constexpr size_t kBatchBytes = size_t{512} << 10;  // room for several 64 KiB super-frames
constexpr size_t kMaxSuper = 65535 - 14;          // IPv4 total length, Ethernet header aside
}  // namespace

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
  b->mem.resize(std::max(kBatchBytes, tx_batch_ * tx_size_));
  b->frames.reserve(tx_batch_);
  b->msgs.resize(tx_batch_);
  b->iov.resize(tx_batch_);
  all_.push_back(std::move(b));
  return all_.back().get();
}

bool Pump::Room(size_t frame_len) const {
  return cur_->frames.size() < tx_batch_ &&
         cur_->used + dev_.header_len() + frame_len <= cur_->mem.size();
}

std::span<std::byte> Pump::Sink::Acquire(size_t max_len) {
  Pump& p = *p_;
  const size_t hl = p.dev_.header_len();
  if (max_len > p.tx_size_ - hl) max_len = p.tx_size_ - hl;
  if (!p.Room(max_len)) p.Flush();
  p.acquired_ = true;
  return std::span(p.cur_->mem).subspan(p.cur_->used + hl, max_len);
}

void Pump::Sink::Commit(size_t len) {
  Pump& p = *p_;
  if (!p.acquired_) return;
  const size_t hl = p.dev_.header_len();
  // Passes through the filters (last to first); the frame stays where it was written unless a
  // filter emits something else.
  p.Transmit(std::span(p.cur_->mem).subspan(p.cur_->used + hl, len), p.filters_.size());
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
  if (!Room(frame.size())) Flush();
  TxBatch& b = *cur_;
  std::byte* at = b.mem.data() + b.used + hl;
  if (frame.data() != at) std::memmove(at, frame.data(), frame.size());
  const std::span<std::byte> mine(at, frame.size());
  const size_t l2 = dev_.link() == LinkMode::kEthernet ? 14 : 0;
  b.flows |= uint64_t{1} << FlowBucket(mine, l2);
  TxBatch::Frame f;
  f.off = b.used;
  f.len = frame.size();
  if (dev_.supports_gso()) f.tcp_ok = ParseTcpSegment(mine, l2, &f.tcp);
  if (f.tcp_ok && !b.frames.empty()) {
    TxBatch::Frame& last = b.frames.back();
    const uint16_t seg = static_cast<uint16_t>(last.gso != 0 ? last.gso : last.tcp.payload);
    std::span<const std::byte> first(b.mem.data() + last.off + hl, last.len);
    if (last.tcp_ok && f.tcp.payload <= seg && (last.gso == 0 || last.last == last.gso) &&
        last.len + f.tcp.payload <= kMaxSuper &&
        Continues(first, last.tcp, last.bytes, mine, f.tcp, l2)) {
      // Joins the last frame: its payload moves to the end of that one's.
      const size_t hdrs = f.tcp.headers(l2);
      std::memmove(b.mem.data() + last.off + hl + last.len, at + hdrs, f.tcp.payload);
      std::byte* flags = b.mem.data() + last.off + hl + l2 + last.tcp.ihl + 13;
      *flags |= static_cast<std::byte>(f.tcp.flags & 0x09);  // PSH and FIN of the last segment
      last.len += f.tcp.payload;
      last.bytes += static_cast<uint32_t>(f.tcp.payload);
      last.gso = seg;
      last.last = static_cast<uint16_t>(f.tcp.payload);
      b.used = last.off + hl + last.len;
      ++stats_.tx_coalesced;
      return;
    }
  }
  if (f.tcp_ok) {
    f.bytes = static_cast<uint32_t>(f.tcp.payload);
    f.last = static_cast<uint16_t>(f.tcp.payload);
  }
  dev_.EncodeHeader(std::span(b.mem).subspan(b.used, hl));
  b.frames.push_back(f);
  b.used += hl + frame.size();
}

size_t Pump::queued() const { return cur_->frames.size(); }

size_t Pump::Flush() {
  TxBatch* b = Seal();
  if (b == nullptr) return 0;
  if (order_ != nullptr) order_->lock();
  const size_t dropped = Send(b);
  if (order_ != nullptr) order_->unlock();
  return dropped;
}

Pump::TxBatch* Pump::Seal() {
  if (cur_->frames.empty()) return nullptr;
  TxBatch* b = cur_;
  cur_ = NewBatch();
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  return b;
}

uint64_t Pump::Flows(const TxBatch* b) { return b != nullptr ? b->flows : 0; }

size_t Pump::Send(TxBatch* b) {
  if (b == nullptr) return 0;
  const size_t hl = dev_.header_len();
  const size_t l2 = dev_.link() == LinkMode::kEthernet ? 14 : 0;
  const size_t count = b->frames.size();
  for (TxBatch::Frame& f : b->frames) {
    if (f.gso == 0) continue;
    // A super-frame: its lengths and checksums, and the header that asks the kernel to cut it.
    const std::span<std::byte> frame(b->mem.data() + f.off + hl, f.len);
    FinishSuperFrame(frame, l2, f.tcp);
    dev_.EncodeGsoHeader(std::span(b->mem).subspan(f.off, hl), l2 + f.tcp.ihl,
                         f.tcp.headers(l2), f.gso);
  }
  size_t dropped = 0;
  size_t flushes = 0;
  if (dev_.is_socket()) {
    for (size_t i = 0; i < count; ++i) {
      b->iov[i] = {b->mem.data() + b->frames[i].off, hl + b->frames[i].len};
      b->msgs[i] = {};
      b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
      b->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < count) {  // bounded: every round sends or drops at least one frame
      ++flushes;
      const int n = sendmmsg(dev_.fd(), b->msgs.data() + done, static_cast<unsigned>(count - done),
                             MSG_DONTWAIT);
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
    for (size_t i = 0; i < count; ++i) {
      ++flushes;
      ssize_t n;
      do {
        n = write(dev_.fd(), b->mem.data() + b->frames[i].off, hl + b->frames[i].len);
      } while (n < 0 && errno == EINTR);
      if (n < 0) ++dropped;
    }
  }
  const size_t sent = count - dropped;
  b->frames.clear();
  b->used = 0;
  b->flows = 0;
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
