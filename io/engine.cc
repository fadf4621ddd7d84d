#include "io/engine.h"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>

#include "io/clock.h"

namespace shake::io {
namespace {

// user_data of every SQE: the operation in the top byte, a buffer index in the low 32 bits.
enum class Op : uint8_t { kRead = 1, kWrite = 2, kPoll = 3, kWake = 4 };
constexpr uint64_t EncodeUserData(Op op, uint32_t index) {
  return (uint64_t{static_cast<uint8_t>(op)} << 56) | index;
}
constexpr Op UserDataOp(uint64_t v) { return static_cast<Op>(v >> 56); }
constexpr uint32_t UserDataIndex(uint64_t v) { return static_cast<uint32_t>(v); }

constexpr size_t kAlign = 64;
size_t RoundUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

__kernel_timespec ToTimespec(Duration d) {
  if (d < Duration::Zero()) d = Duration::Zero();
  return {.tv_sec = d.nanos() / 1000000000, .tv_nsec = d.nanos() % 1000000000};
}

}  // namespace

std::string EngineFeatures::Describe() const {
  if (!io_uring) return "ppoll fallback (" + fallback_reason + ")";
  std::string s = "io_uring";
  if (registered_buffers) s += " registered-buffers";
  if (multishot_poll) s += " multishot-poll";
  if (coop_taskrun) s += " coop-taskrun";
  if (ext_arg) s += " ext-arg";
  return s;
}

struct Engine::Uring {
  io_uring ring{};
  bool rx_readable = true;  // read until a read says -EAGAIN
  size_t rx_inflight = 0;
  bool poll_armed = false;
  bool wake_armed = false;
  uint64_t wake_value = 0;
  ~Uring() { io_uring_queue_exit(&ring); }
};

class Engine::Sink final : public FrameSink {
 public:
  explicit Sink(Engine* e) : e_(e) {}
  std::span<std::byte> Acquire(size_t max_len) override {
    const size_t hl = e_->dev_.header_len();
    if (max_len > e_->tx_size_ - hl) max_len = e_->tx_size_ - hl;
    if (e_->acquired_ < 0) {
      if (e_->tx_free_.empty() && !e_->tx_pending_.empty()) e_->FlushTxSync();
      if (e_->tx_free_.empty()) {
        ++e_->stats_.tx_no_buffer;
        return {};
      }
      e_->acquired_ = e_->tx_free_.back();
      e_->tx_free_.pop_back();
    }
    return e_->TxBuffer(static_cast<uint32_t>(e_->acquired_)).subspan(hl, max_len);
  }
  void Commit(size_t len) override {
    if (e_->acquired_ < 0) return;
    const auto index = static_cast<uint32_t>(e_->acquired_);
    const size_t hl = e_->dev_.header_len();
    e_->acquired_queued_ = false;
    e_->Deliver(Direction::kOut, e_->filters_.size(), e_->TxBuffer(index).subspan(hl, len), {});
    if (!e_->acquired_queued_) e_->tx_free_.push_back(index);
    e_->acquired_ = -1;
  }

 private:
  Engine* e_;
};

class Engine::Stage final : public FrameEmitter {
 public:
  Stage(Engine* e, Direction dir, size_t stage) : e_(e), dir_(dir), stage_(stage) {}
  void Emit(std::span<const std::byte> frame, FrameMeta meta) override {
    e_->Deliver(dir_, stage_, frame, meta);
  }

 private:
  Engine* e_;
  Direction dir_;
  size_t stage_;
};

class Engine::RawReceiver final : public FrameReceiver {
 public:
  explicit RawReceiver(Engine* e) : e_(e) {}
  void OnFrame(std::span<const std::byte> frame, FrameMeta meta) override {
    e_->Deliver(Direction::kIn, 0, frame, meta);
  }

 private:
  Engine* e_;
};

Engine::Engine(Device& device, PacketHandler& handler, const EngineOptions& options,
               EngineLock* lock)
    : dev_(device), handler_(handler), options_(options) {
  if (lock != nullptr) lock_ = lock;
  if (options_.rx_batch == 0) options_.rx_batch = 1;
  if (options_.tx_buffers == 0) options_.tx_buffers = 1;
  sink_ = std::make_unique<Sink>(this);
  raw_receiver_ = std::make_unique<RawReceiver>(this);
  in_stages_.push_back(std::make_unique<Stage>(this, Direction::kIn, 0));
  out_stages_.push_back(std::make_unique<Stage>(this, Direction::kOut, 0));

  rx_size_ = RoundUp(dev_.rx_buffer_size());
  tx_size_ = RoundUp(dev_.header_len() + dev_.max_tx_frame());
  mem_size_ = rx_size_ * options_.rx_batch + tx_size_ * options_.tx_buffers;
  void* p = mmap(nullptr, mem_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("shake: engine buffers");
    std::abort();
  }
  mem_ = static_cast<std::byte*>(p);
  for (size_t i = options_.tx_buffers; i-- > 0;) tx_free_.push_back(static_cast<uint32_t>(i));
  tx_pending_.reserve(options_.tx_buffers);

  wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    std::perror("shake: eventfd");
    std::abort();
  }
  if (options_.use_io_uring) {
    SetUpUring();
  } else {
    features_.fallback_reason = "io_uring disabled by option";
  }
  if (!features_.io_uring) {
    const int fl = fcntl(wake_fd_, F_GETFL);
    fcntl(wake_fd_, F_SETFL, fl | O_NONBLOCK);
    port_ = std::make_unique<SyncPort>(dev_, options_.rx_batch);
    if (!options_.quiet && options_.use_io_uring) {
      std::fprintf(stderr, "shake: warning: io_uring unavailable (%s); using ppoll with %s\n",
                   features_.fallback_reason.c_str(),
                   dev_.is_socket() ? "recvmmsg/sendmmsg" : "read/write");
    }
  }
}

void Engine::SetUpUring() {
  auto u = std::make_unique<Uring>();
  const unsigned entries = static_cast<unsigned>(options_.rx_batch + options_.tx_buffers + 8);
  io_uring_params p{};
  p.flags = IORING_SETUP_COOP_TASKRUN;  // 5.19: no IPI to interrupt us; we reap every pass
  int r = io_uring_queue_init_params(entries, &u->ring, &p);
  if (r == -EINVAL) {  // older kernel: try again without optional flags
    p = {};
    r = io_uring_queue_init_params(entries, &u->ring, &p);
  } else if (r == 0) {
    features_.coop_taskrun = true;
  }
  if (r < 0) {
    features_.fallback_reason = std::string("io_uring_queue_init: ") + std::strerror(-r);
    u.release();  // the ring was never set up; do not exit it
    return;
  }
  features_.io_uring = true;
  features_.ext_arg = (p.features & IORING_FEAT_EXT_ARG) != 0;
  features_.multishot_poll = true;  // 5.13; switched off if the first poll says EINVAL
  if (io_uring_probe* probe = io_uring_get_probe_ring(&u->ring)) {
    const bool fixed = io_uring_opcode_supported(probe, IORING_OP_READ_FIXED) &&
                       io_uring_opcode_supported(probe, IORING_OP_WRITE_FIXED);
    io_uring_free_probe(probe);
    if (fixed && options_.register_buffers) {
      iovec iov[2] = {{mem_, rx_size_ * options_.rx_batch},
                      {mem_ + rx_size_ * options_.rx_batch, tx_size_ * options_.tx_buffers}};
      features_.registered_buffers = io_uring_register_buffers(&u->ring, iov, 2) == 0;
    }
  }
  uring_ = std::move(u);
}

Engine::~Engine() {
  uring_.reset();
  if (mem_) munmap(mem_, mem_size_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Engine::AddFilter(FrameFilter* filter) {
  filters_.push_back(filter);
  const size_t n = filters_.size();
  in_stages_.push_back(std::make_unique<Stage>(this, Direction::kIn, n));
  out_stages_.push_back(std::make_unique<Stage>(this, Direction::kOut, n));
}

std::span<std::byte> Engine::TxBuffer(uint32_t index) {
  return {mem_ + rx_size_ * options_.rx_batch + size_t{index} * tx_size_, tx_size_};
}

void Engine::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

EngineStats Engine::stats() {
  std::lock_guard<EngineLock> lock(*lock_);
  return stats_;
}

void Engine::Deliver(Direction dir, size_t stage, std::span<const std::byte> frame,
                     FrameMeta meta) {
  if (dir == Direction::kIn) {
    if (stage == filters_.size()) {
      ++stats_.rx_frames;
      handler_.Receive(now_, frame, *sink_, meta.checksum_trusted);
    } else {
      filters_[stage]->Process(now_, dir, frame, meta, *in_stages_[stage + 1]);
    }
  } else {
    if (stage == 0) {
      QueueTx(frame);
    } else {
      filters_[stage - 1]->Process(now_, dir, frame, meta, *out_stages_[stage - 1]);
    }
  }
}

void Engine::QueueTx(std::span<const std::byte> frame) {
  const size_t hl = dev_.header_len();
  if (frame.size() + hl > tx_size_) {
    ++stats_.tx_errors;
    return;
  }
  uint32_t index;
  if (acquired_ >= 0 && !acquired_queued_ &&
      frame.data() == TxBuffer(static_cast<uint32_t>(acquired_)).data() + hl) {
    index = static_cast<uint32_t>(acquired_);
    acquired_queued_ = true;
  } else {
    if (tx_free_.empty() && !tx_pending_.empty()) FlushTxSync();
    if (tx_free_.empty()) {
      ++stats_.tx_no_buffer;
      return;
    }
    index = tx_free_.back();
    tx_free_.pop_back();
    std::memmove(TxBuffer(index).data() + hl, frame.data(), frame.size());
  }
  dev_.EncodeHeader(TxBuffer(index).first(hl));
  tx_pending_.emplace_back(index, static_cast<uint32_t>(hl + frame.size()));
}

void Engine::FlushTxSync() {
  const size_t n = tx_pending_.size();
  if (n == 0) return;
  if (dev_.is_socket()) {
    std::vector<mmsghdr> msgs(n);
    std::vector<iovec> iov(n);
    for (size_t i = 0; i < n; ++i) {
      iov[i] = {TxBuffer(tx_pending_[i].first).data(), tx_pending_[i].second};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    while (done < n) {  // bounded: every round sends or drops at least one frame
      const int r = sendmmsg(dev_.fd(), msgs.data() + done, static_cast<unsigned>(n - done),
                             MSG_DONTWAIT);
      if (r > 0) {
        done += static_cast<size_t>(r);
        stats_.tx_frames += static_cast<uint64_t>(r);
      } else {
        ++stats_.tx_errors;
        ++done;
      }
    }
  } else {
    for (const auto& [index, len] : tx_pending_) {
      if (write(dev_.fd(), TxBuffer(index).data(), len) < 0) {
        ++stats_.tx_errors;
      } else {
        ++stats_.tx_frames;
      }
    }
  }
  for (const auto& pending : tx_pending_) tx_free_.push_back(pending.first);
  tx_pending_.clear();
}

void Engine::ServeCaller() {
  now_ = MonotonicNow();
  ProcessTimers(now_);
  FlushTxSync();
  if (uring_ && uring_->rx_inflight != 0) return;  // the engine reaps its reads first
  if (!caller_port_) caller_port_ = std::make_unique<SyncPort>(dev_, 8);
  for (int round = 0; round < 4; ++round) {  // bounded: at most 32 reads
    const int n = caller_port_->Receive(*raw_receiver_);
    if (n <= 0) break;
    stats_.rx_reads += static_cast<uint64_t>(n);
    now_ = MonotonicNow();
    ProcessTimers(now_);
    FlushTxSync();
  }
}

void Engine::OnRaw(std::span<std::byte> raw) {
  ++stats_.rx_reads;
  dev_.Decode(raw, *raw_receiver_);
}

Instant Engine::ProcessTimers(Instant now) {
  Instant next = Instant::Never();
  for (size_t i = 0; i < filters_.size(); ++i) {
    next = Min(next, filters_[i]->Poll(now, *in_stages_[i + 1], *out_stages_[i]));
  }
  return Min(next, handler_.Poll(now, *sink_));
}

void Engine::Run(std::stop_token stop) {
  std::stop_callback wake_on_stop(stop, [this] { Wake(); });
  while (!stop.stop_requested()) Pass(Duration::Seconds(1));
}

void Engine::RunOnce(Duration max_wait) { Pass(max_wait); }

void Engine::Pass(Duration max_wait) {
  if (features_.io_uring) {
    PassUring(max_wait);
  } else {
    PassPoll(max_wait);
  }
}

void Engine::PassUring(Duration max_wait) {
  Uring& u = *uring_;
  io_uring* ring = &u.ring;
  std::unique_lock<EngineLock> lock(*lock_);
  ++stats_.passes;
  // Reaps completions: received frames go to the handler, written buffers come back.
  auto reap = [&] {
    now_ = MonotonicNow();
    io_uring_cqe* cqes[256];
    // Bounded: each round consumes the completions present; at most a few rounds per pass.
    for (int round = 0; round < 8; ++round) {
      const unsigned n = io_uring_peek_batch_cqe(ring, cqes, 256);
      if (n == 0) break;
      for (unsigned i = 0; i < n; ++i) {
        const io_uring_cqe* c = cqes[i];
        const uint32_t index = UserDataIndex(c->user_data);
        switch (UserDataOp(c->user_data)) {
          case Op::kRead:
            --u.rx_inflight;
            if (c->res > 0) {
              OnRaw({mem_ + size_t{index} * rx_size_, static_cast<size_t>(c->res)});
            } else if (c->res == -EAGAIN || c->res == 0) {
              u.rx_readable = false;
            } else {
              ++stats_.rx_errors;
              u.rx_readable = false;
            }
            break;
          case Op::kWrite:
            if (c->res < 0) {
              ++stats_.tx_errors;
            } else {
              ++stats_.tx_frames;
            }
            tx_free_.push_back(index);
            break;
          case Op::kPoll:
            if (c->res == -EINVAL && features_.multishot_poll) {
              features_.multishot_poll = false;  // before 5.13: re-arm one-shot polls
            } else if (c->res > 0) {
              u.rx_readable = true;
            }
            if (!(c->flags & IORING_CQE_F_MORE)) u.poll_armed = false;
            break;
          case Op::kWake:
            ++stats_.wakeups;
            u.wake_armed = false;
            break;
        }
      }
      io_uring_cq_advance(ring, n);
    }
    deadline_ = ProcessTimers(now_);
  };

  auto get_sqe = [&]() {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (!sqe) {  // the submission queue is full: hand what is there to the kernel first
      io_uring_submit(ring);
      ++stats_.submits;
      sqe = io_uring_get_sqe(ring);
    }
    return sqe;
  };
  // Everything that touches the device happens under the lock, so that processes sharing one
  // stack (the shim's fork model) keep each connection's frames in order both ways: writes are
  // submitted (and complete inline) before another process can build later frames, and reads
  // are reaped and handled before another process can read frames that came after them.
  bool reading = false;
  for (int round = 0; round < 4; ++round) {
  reap();
  if (!u.poll_armed) {
    if (io_uring_sqe* sqe = get_sqe()) {
      if (features_.multishot_poll) {
        io_uring_prep_poll_multishot(sqe, dev_.fd(), POLLIN);
      } else {
        io_uring_prep_poll_add(sqe, dev_.fd(), POLLIN);
      }
      io_uring_sqe_set_data64(sqe, EncodeUserData(Op::kPoll, 0));
      u.poll_armed = true;
    }
  }
  if (!u.wake_armed) {
    if (io_uring_sqe* sqe = get_sqe()) {
      io_uring_prep_read(sqe, wake_fd_, &u.wake_value, sizeof u.wake_value, 0);
      io_uring_sqe_set_data64(sqe, EncodeUserData(Op::kWake, 0));
      u.wake_armed = true;
    }
  }
  // Writes first, in order: each completes inline on a TUN or packet socket.
  for (const auto& [index, len] : tx_pending_) {
    io_uring_sqe* sqe = get_sqe();
    if (!sqe) {
      ++stats_.tx_errors;
      tx_free_.push_back(index);
      continue;
    }
    std::byte* data = TxBuffer(index).data();
    if (features_.registered_buffers) {
      io_uring_prep_write_fixed(sqe, dev_.fd(), data, len, 0, 1);
    } else {
      io_uring_prep_write(sqe, dev_.fd(), data, len, 0);
    }
    io_uring_sqe_set_data64(sqe, EncodeUserData(Op::kWrite, index));
  }
  tx_pending_.clear();
  reading = false;
  if (u.rx_readable && u.rx_inflight == 0) {
    for (size_t i = 0; i < options_.rx_batch; ++i) {
      io_uring_sqe* sqe = get_sqe();
      if (!sqe) break;
      std::byte* data = mem_ + i * rx_size_;
      const auto size = static_cast<unsigned>(rx_size_);
      if (features_.registered_buffers) {
        io_uring_prep_read_fixed(sqe, dev_.fd(), data, size, 0, 0);
      } else {
        io_uring_prep_read(sqe, dev_.fd(), data, size, 0);
      }
      // Completes at submission, with a frame or -EAGAIN: without it the kernel parks the read
      // until a frame comes (O_NONBLOCK alone does not stop that), and the frame then waits for
      // this thread to run instead of being readable by ServeCaller.
      sqe->rw_flags = RWF_NOWAIT;
      io_uring_sqe_set_data64(sqe, EncodeUserData(Op::kRead, static_cast<uint32_t>(i)));
      ++u.rx_inflight;
      reading = true;
    }
  }
  ++stats_.submits;
  io_uring_submit(ring);  // reads and writes complete inline on a TUN or packet socket
  if (!reading) break;
  }
  Duration wait = Min(max_wait, deadline_ - MonotonicNow());
  if (reading) wait = Duration::Zero();  // frames may still be waiting: come straight back
  __kernel_timespec ts = ToTimespec(wait);
  io_uring_cqe* cqe = nullptr;
  lock.unlock();
  passes_.fetch_add(1, std::memory_order_release);
  io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
}

void Engine::PassPoll(Duration max_wait) {
  bool more = false;
  {
    std::lock_guard<EngineLock> lock(*lock_);
    ++stats_.passes;
    now_ = MonotonicNow();
    const int n = port_->Receive(*raw_receiver_);
    if (n > 0) stats_.rx_reads += static_cast<uint64_t>(n);
    if (n < 0) ++stats_.rx_errors;
    more = n == static_cast<int>(options_.rx_batch);
    deadline_ = ProcessTimers(now_);
    FlushTxSync();
  }
  passes_.fetch_add(1, std::memory_order_release);
  pollfd fds[2] = {{dev_.fd(), POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  const Duration wait = more ? Duration::Zero() : Min(max_wait, deadline_ - MonotonicNow());
  const __kernel_timespec kts = ToTimespec(wait);
  const timespec ts{kts.tv_sec, kts.tv_nsec};
  if (ppoll(fds, 2, &ts, nullptr) > 0 && (fds[1].revents & POLLIN)) {
    uint64_t v;
    (void)!read(wake_fd_, &v, sizeof v);
    std::lock_guard<EngineLock> lock(*lock_);
    ++stats_.wakeups;
  }
}

}  // namespace shake::io
