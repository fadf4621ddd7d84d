// Engine: the io_uring loop that moves frames between a Device and a PacketHandler (the stack).
//
// One pass of the loop: reap completions (received frames go through the filters into the
// handler, which may answer at once), run the handler's timers (Poll), then submit in one
// io_uring_enter the writes of every frame produced and, if the device is readable, a batch of
// reads. Reads use registered buffers (READ_FIXED/WRITE_FIXED) when the kernel accepts them; the
// device fd is O_NONBLOCK, so a read with nothing to return completes with -EAGAIN at once and a
// multishot POLL_ADD tells the loop when frames are waiting again. The handler's next deadline
// is the wait's timeout; other threads wake the loop through an eventfd read kept in the ring.
//
// If io_uring cannot be set up (kernel.io_uring_disabled, a seccomp filter, an old kernel), the
// engine says so in one line on stderr and runs the same loop on ppoll with
// recvmmsg/sendmmsg (or read/write on a TUN).
//
// Threads: the handler (a shake::Stack) is not thread-safe. The engine holds its lock whenever it
// calls the handler; another thread that wants to use the stack calls WithLock(fn), which runs
// fn under the same lock and then wakes the engine so output queued by fn is sent at once. The
// lock is the engine's own std::mutex, or one the host passes in (EngineLock): libshake passes a
// process-shared robust mutex so that engines in several processes can drive one shared stack.
//
// After fork: the child must not use its copy of the parent's engine (the ring is the
// parent's). It destroys it — which unmaps and closes only the child's references — and builds
// a new one on the same device.
//
//   io::Engine engine(*device, handler);
//   std::jthread loop([&](std::stop_token st) { engine.Run(st); });
//   engine.WithLock([&] { stack.Send(id, data); });
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "io/device.h"
#include "io/frame.h"
#include "stack/stack.h"

namespace shake::io {

// A lock the host supplies (BasicLockable). Engine holds it around every handler call.
class EngineLock {
 public:
  virtual ~EngineLock() = default;
  virtual void lock() = 0;
  virtual void unlock() = 0;
};

// What the engine drives. StackHandler (io/stack_host.h) adapts shake::Stack.
class PacketHandler {
 public:
  virtual ~PacketHandler() = default;
  virtual void Receive(Instant now, std::span<const std::byte> frame, FrameSink& out,
                       bool checksum_trusted) = 0;
  // Runs timers and flushes queued output; returns the next deadline.
  virtual Instant Poll(Instant now, FrameSink& out) = 0;
};

struct EngineOptions {
  size_t rx_batch = 32;      // reads per submission
  size_t tx_buffers = 1024;  // frames that may be queued or in flight towards the device
  bool use_io_uring = true;  // false: run the ppoll + recvmmsg/sendmmsg loop
  bool register_buffers = true;
  bool quiet = false;        // no warning line when falling back
};

// What the engine found the kernel to support, probed at start-up.
struct EngineFeatures {
  bool io_uring = false;
  bool registered_buffers = false;
  bool multishot_poll = false;
  bool coop_taskrun = false;
  bool ext_arg = false;        // timeouts passed to io_uring_enter directly (5.11)
  std::string fallback_reason;  // why io_uring is not used, if it is not
  std::string Describe() const;
};

struct EngineStats {
  uint64_t passes = 0;
  uint64_t submits = 0;
  uint64_t rx_reads = 0;
  uint64_t rx_frames = 0;     // after decoding (GSO split) and filters
  uint64_t rx_errors = 0;
  uint64_t tx_frames = 0;
  uint64_t tx_errors = 0;     // the kernel refused a write (the frame is lost)
  uint64_t tx_no_buffer = 0;  // the handler asked for a buffer and none was free
  uint64_t wakeups = 0;
};

class Engine {
 public:
  // `lock`: null for the engine's own mutex; otherwise the host's lock, which must outlive the
  // engine (then mutex() is unused).
  Engine(Device& device, PacketHandler& handler, const EngineOptions& options = {},
         EngineLock* lock = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Filters are listed from the device towards the handler. Add them before the first pass.
  void AddFilter(FrameFilter* filter);

  // Runs passes until `stop` is requested.
  void Run(std::stop_token stop);
  // One pass, waiting at most `max_wait` for something to happen. For single-threaded hosts.
  void RunOnce(Duration max_wait);

  // Thread-safe: makes a waiting Run/RunOnce pass start now.
  void Wake();
  // Runs fn() under the engine's mutex, then wakes the engine.
  template <typename F>
  decltype(auto) WithLock(F&& fn) {
    struct Waker {
      Engine* e;
      ~Waker() { e->Wake(); }
    } waker{this};
    std::lock_guard<EngineLock> lock(*lock_);
    return std::forward<F>(fn)();
  }
  // For a thread other than the engine's that has just used the handler under the lock (a send,
  // a close): puts the frames it produced on the device at once and handles what the device
  // already holds (a bounded batch), instead of leaving both to the engine thread. This is the
  // work the kernel does in the caller's context on its way out of a syscall: output leaves
  // without a thread switch, and a peer's immediate answer that the kernel delivered in the
  // meantime (an RST to data sent to a closed socket) is handled before the call returns.
  // Skips the reading while the engine has reads of its own to reap (frames keep their order).
  // Caller holds the lock.
  void ServeCaller();
  // The engine's own mutex: the lock only when no EngineLock was passed in.
  std::mutex& mutex() { return mu_; }
  EngineLock& lock() { return *lock_; }
  // Passes completed so far (read without the lock; for hosts that wait for one pass).
  uint64_t passes() const { return passes_.load(std::memory_order_acquire); }

  const EngineFeatures& features() const { return features_; }
  EngineStats stats();  // takes the mutex
  Device& device() { return dev_; }

 private:
  class Sink;
  class Stage;
  struct Uring;
  friend class Sink;
  friend class Stage;

  void SetUpUring();
  void Pass(Duration max_wait);
  void PassUring(Duration max_wait);
  void PassPoll(Duration max_wait);
  // Runs filters, handler timers; returns the next deadline. Caller holds mu_.
  Instant ProcessTimers(Instant now);
  void OnRaw(std::span<std::byte> raw);
  void Deliver(Direction dir, size_t stage, std::span<const std::byte> frame, FrameMeta meta);
  void QueueTx(std::span<const std::byte> frame);
  std::span<std::byte> TxBuffer(uint32_t index);
  void FlushTxSync();

  Device& dev_;
  PacketHandler& handler_;
  EngineOptions options_;
  EngineFeatures features_;
  EngineStats stats_;
  class OwnMutex final : public EngineLock {
   public:
    explicit OwnMutex(std::mutex& m) : m_(m) {}
    void lock() override { m_.lock(); }
    void unlock() override { m_.unlock(); }

   private:
    std::mutex& m_;
  };
  std::mutex mu_;
  OwnMutex own_lock_{mu_};
  EngineLock* lock_ = &own_lock_;
  std::atomic<uint64_t> passes_{0};
  int wake_fd_ = -1;
  Instant now_;
  Instant deadline_ = Instant::Never();

  std::vector<FrameFilter*> filters_;
  std::vector<std::unique_ptr<Stage>> in_stages_;   // in_stages_[i] delivers to stage i
  std::vector<std::unique_ptr<Stage>> out_stages_;  // out_stages_[k]: k filters still to pass
  std::unique_ptr<Sink> sink_;
  class RawReceiver;
  std::unique_ptr<RawReceiver> raw_receiver_;

  // Buffers: rx slots then tx buffers, in one mapping so both can be registered.
  std::byte* mem_ = nullptr;
  size_t mem_size_ = 0;
  size_t rx_size_ = 0;
  size_t tx_size_ = 0;
  std::vector<uint32_t> tx_free_;
  std::vector<std::pair<uint32_t, uint32_t>> tx_pending_;  // buffer index, raw length
  int64_t acquired_ = -1;  // tx buffer handed to the handler and not yet committed
  bool acquired_queued_ = false;

  std::unique_ptr<Uring> uring_;
  std::unique_ptr<class SyncPort> port_;  // fallback receive path
  std::unique_ptr<class SyncPort> caller_port_;  // ServeCaller's reads
};

}  // namespace shake::io
