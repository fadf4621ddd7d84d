// StackHost: a shake::Stack driven by an Engine on its own thread, with blocking helpers for
// application threads. The shape the shim will use; the example programs use it directly.
//
//   auto host = io::StackHost::Create(options, &error);
//   host->Start();
//   SocketId s = host->Locked([&](Stack& st) { return *st.Open(); });
//   host->Locked([&](Stack& st) { return st.Connect(host->Now(), s, peer); });
//   host->WaitFor(s, ready::kWritable, io::MonotonicNow() + Duration::Seconds(5));
//
// Every Stack call happens under the engine's mutex; Locked() also wakes the engine so output
// queued by the call goes out at once. WaitFor sleeps on a condition variable that the stack's
// OnReadiness notifies, so an idle application uses no CPU.
#pragma once

#include <condition_variable>
#include <memory>
#include <memory_resource>
#include <string>
#include <thread>
#include <vector>

#include "io/clock.h"
#include "io/device.h"
#include "io/engine.h"
#include "io/fault.h"
#include "io/pcap.h"
#include "stack/stack.h"

namespace shake::io {

class StackHandler final : public PacketHandler {
 public:
  explicit StackHandler(Stack& stack) : stack_(stack) {}
  void Receive(Instant now, std::span<const std::byte> frame, FrameSink& out,
               bool checksum_trusted) override {
    stack_.Receive(now, frame, out, checksum_trusted);
  }
  Instant Poll(Instant now, FrameSink& out) override { return stack_.Poll(now, out); }

 private:
  Stack& stack_;
};

struct HostOptions {
  std::string device;  // "tun:IF" or "packet:IF"
  std::string addr;    // "198.18.0.2/24"
  std::string gateway; // optional
  std::string pcap;    // optional pcap path
  uint32_t pcap_snaplen = 262144;
  std::optional<FaultConfig> faults;
  EngineOptions engine;
  TcpConfig tcp;
  uint64_t seed = 0;   // 0: from the kernel's RNG
};

class StackHost final : public StackObserver {
 public:
  static std::unique_ptr<StackHost> Create(const HostOptions& options, std::string* error);
  ~StackHost() override;

  void Start();
  void Stop();

  template <typename F>
  decltype(auto) Locked(F&& fn) {
    return engine_->WithLock([&]() -> decltype(auto) { return fn(*stack_); });
  }
  // Waits until Readiness(s) & mask is non-zero or `deadline` passes; returns the readiness.
  uint32_t WaitFor(SocketId s, uint32_t mask, Instant deadline);
  // Waits until pred(stack) holds (checked whenever the stack reports a readiness change, and
  // at least every 10 ms) or `deadline` passes. Returns pred's last value.
  template <typename Pred>
  bool WaitUntil(Pred pred, Instant deadline) {
    std::unique_lock<std::mutex> lock(engine_->mutex());
    // Bounded by the deadline.
    while (!pred(*stack_)) {
      const Instant now = MonotonicNow();
      if (now >= deadline) return false;
      cv_.wait_for(lock, std::chrono::nanoseconds(
                             Min(deadline - now, Duration::Millis(10)).nanos()));
    }
    return true;
  }

  Stack& stack() { return *stack_; }  // only under Locked()/WaitUntil
  Engine& engine() { return *engine_; }
  Device& device() { return *device_; }
  FaultInjector* faults() { return faults_.get(); }
  PcapWriter* pcap() { return pcap_.get(); }

  void OnReadiness(SocketId id) override;

 private:
  StackHost() = default;
  std::unique_ptr<Device> device_;
  std::unique_ptr<Stack> stack_;
  std::unique_ptr<StackHandler> handler_;
  std::unique_ptr<PcapWriter> pcap_;
  std::unique_ptr<FaultInjector> faults_;
  std::unique_ptr<Engine> engine_;
  std::condition_variable cv_;
  std::jthread thread_;
};

// Parses "198.18.0.2/24". False on malformed input.
bool ParseAddrPrefix(const std::string& text, Ipv4Addr* addr, int* prefix);

}  // namespace shake::io
