// Pump: moves frames between one device and a PacketHandler on the calling thread.
//
// The io::Engine runs its own loop on its own thread; a Pump is the same work done in the
// caller's context instead, for hosts whose own threads drive the stack (libshake's shim: an
// application thread inside send() or epoll_wait(), or the keeper). Nothing here blocks or
// sleeps: Drain reads what the device already holds, Flush writes what the handler produced.
//
//   io::Pump pump(*device);
//   pump.AddFilter(pcap);                  // optional, before the first frame
//   stack.Send(...); stack.Poll(now, pump.sink(now));
//   pump.Flush();                          // one sendmmsg (AF_PACKET) or a write per frame (TUN)
//   pump.Drain(now, handler, 64);          // frames already waiting go to the handler
//
// Frames the handler sends while draining (ACKs, RSTs) go to the same TX batch; a full batch is
// flushed at once, so order is kept. Not thread-safe: the host serialises calls (libshake holds
// its stack lock around every use).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "io/device.h"
#include "io/engine.h"
#include "io/frame.h"
#include "stack/stack.h"

namespace shake::io {

struct PumpStats {
  uint64_t rx_reads = 0;     // raw reads that returned a frame
  uint64_t rx_empty = 0;     // drains that found nothing waiting
  uint64_t rx_errors = 0;
  uint64_t tx_frames = 0;
  uint64_t tx_dropped = 0;   // the kernel refused a write (the frame is lost, as on a wire)
  uint64_t tx_flushes = 0;   // system calls spent writing
  uint64_t tx_coalesced = 0; // segments joined to the one before into a GSO super-frame
};

class Pump {
 public:
  explicit Pump(Device& device, size_t rx_batch = 32, size_t tx_batch = 64);
  ~Pump();
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  // Filters see every frame, device side first for received frames, last for sent ones. Only
  // synchronous filters belong here (a pcap writer): a Pump has no timer to release held frames.
  void AddFilter(FrameFilter* filter) { filters_.push_back(filter); }

  // Where the handler writes its frames; they are queued for Flush. `now` stamps what the
  // filters see of them (a pcap record's time).
  FrameSink& sink(Instant now) {
    now_ = now;
    return sink_;
  }
  size_t queued() const;  // frames waiting for Flush

  // Reads, without blocking, up to `max_reads` raw frames the device already holds and hands
  // each decoded frame to `handler` (at `now`). Returns the raw reads done: 0 when nothing was
  // waiting, so a caller knows the device is empty.
  int Drain(Instant now, PacketHandler& handler, int max_reads);
  // Drain in two steps, for a host that reads the device outside the lock under which frames
  // are handled: Read takes up to one batch (at most `max_reads`) without handling it; Handle
  // hands what Read took to the handler. Read returns 0 while frames it took are not handled.
  int Read(int max_reads);
  void Handle(Instant now, PacketHandler& handler);
  size_t pending() const { return pending_; }

  // Writes every queued frame. Returns how many the kernel refused.
  size_t Flush();
  // A lock that orders writes to the device among several pumps on it (libshake's processes):
  // Flush, and a batch that fills up, take it around their write; a Send by the host does not
  // (the host holds it). Null: none.
  void SetOrderLock(EngineLock* lock) { order_ = lock; }

  // The same in two steps, for a host that writes frames outside the lock under which the
  // handler made them: Seal takes the queued frames (null if none) and gives the sink a fresh
  // batch, so other threads may go on producing; Send writes a sealed batch and returns it to
  // the pump. Both are thread-safe against each other; Seal, like the sink, is not.
  struct TxBatch;
  TxBatch* Seal();
  size_t Send(TxBatch* batch);
  // The flows a sealed batch carries, as a set of 64 hash buckets (a bit each; ARP and other
  // non-IP frames are bucket 0): writes of batches with no bucket in common need no order.
  static uint64_t Flows(const TxBatch* batch);
  // No sealed batch is waiting to be sent.
  bool idle() const { return in_flight_.load(std::memory_order_acquire) == 0; }

  Device& device() { return dev_; }
  const PumpStats& stats() const { return stats_; }

 private:
  class Sink final : public FrameSink {
   public:
    explicit Sink(Pump* p) : p_(p) {}
    std::span<std::byte> Acquire(size_t max_len) override;
    void Commit(size_t len) override;

   private:
    Pump* p_;
  };
  class Out;
  class In;

  bool Room(size_t frame_len) const;  // the current batch takes one more frame of that size
  void Transmit(std::span<const std::byte> frame, size_t filter);
  void Enqueue(std::span<const std::byte> frame);
  TxBatch* NewBatch();

  Device& dev_;
  size_t rx_batch_;
  size_t tx_batch_;
  size_t rx_size_;
  size_t tx_size_;
  std::vector<std::byte> rx_mem_;
  std::vector<size_t> rx_len_;  // the frames Read took, per slot (0: truncated)
  size_t pending_ = 0;
  std::vector<mmsghdr> rx_msgs_;
  std::vector<iovec> rx_iov_;
  std::mutex pool_mu_;  // guards all_ and free_
  std::vector<std::unique_ptr<TxBatch>> all_;
  std::vector<TxBatch*> free_;
  TxBatch* cur_ = nullptr;  // where the sink writes
  EngineLock* order_ = nullptr;
  std::atomic<int> in_flight_{0};  // sealed batches not yet sent
  bool acquired_ = false;
  std::vector<FrameFilter*> filters_;
  Sink sink_{this};
  Instant now_;
  PacketHandler* handler_ = nullptr;
  PumpStats stats_;
};

}  // namespace shake::io
