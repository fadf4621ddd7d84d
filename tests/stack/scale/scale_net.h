// A minimal many-stack network for scale tests and benchmarks, in virtual time.
//
// One server Stack and several client Stacks (each Stack has one address, and an address has
// only ~28k ephemeral ports towards one server endpoint, so 100k connections need several
// clients). Frames are delivered instantly and losslessly: Commit() routes a frame by its IPv4
// destination into that stack's inbox, and Pump() delivers inboxes and polls every stack until
// nothing is left in flight. Each stack takes its memory from its own CountingResource so a test
// can see what connections cost.
//
// Header-only so that bench/ can use it without a library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <span>
#include <vector>

#include "stack/stack.h"

namespace shake::scale {

// Counts the bytes a Stack has asked for and not yet returned (the request sizes, without the
// upstream allocator's own overhead, as an allocator-neutral measure).
class CountingResource final : public std::pmr::memory_resource {
 public:
  explicit CountingResource(std::pmr::memory_resource* upstream = std::pmr::new_delete_resource())
      : upstream_(upstream) {}
  size_t in_use() const { return in_use_; }
  size_t peak() const { return peak_; }
  uint64_t allocations() const { return allocations_; }
  size_t live_blocks() const { return live_blocks_; }

 private:
  void* do_allocate(size_t bytes, size_t align) override {
    void* p = upstream_->allocate(bytes, align);
    in_use_ += bytes;
    if (in_use_ > peak_) peak_ = in_use_;
    ++allocations_;
    ++live_blocks_;
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t align) override {
    upstream_->deallocate(p, bytes, align);
    in_use_ -= bytes;
    --live_blocks_;
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

  std::pmr::memory_resource* upstream_;
  size_t in_use_ = 0;
  size_t peak_ = 0;
  uint64_t allocations_ = 0;
  size_t live_blocks_ = 0;
};

class Net;

// Frames queued for one stack, stored back to back.
struct Inbox {
  std::vector<std::byte> bytes;
  std::vector<std::pair<size_t, size_t>> frames;  // offset, length
  bool empty() const { return frames.empty(); }
  void clear() {
    bytes.clear();
    frames.clear();
  }
};

// Routes committed frames by IPv4 destination address.
class RouteSink final : public FrameSink {
 public:
  explicit RouteSink(Net& net) : net_(net) {}
  std::span<std::byte> Acquire(size_t max_len) override {
    if (buf_.size() < max_len) buf_.resize(max_len);
    return {buf_.data(), max_len};
  }
  void Commit(size_t len) override;
  uint64_t frames = 0;

 private:
  Net& net_;
  std::vector<std::byte> buf_;
};

struct Node {
  // `pool`: count on top of an unsynchronized_pool_resource (as a host's arena would be) rather
  // than on malloc.
  explicit Node(bool pool)
      : pool_(pool ? std::make_unique<std::pmr::unsynchronized_pool_resource>() : nullptr),
        mem(pool_ ? pool_.get() : std::pmr::new_delete_resource()) {}
  std::unique_ptr<std::pmr::unsynchronized_pool_resource> pool_;
  CountingResource mem;
  std::unique_ptr<Stack> stack;
  Ipv4Addr addr;
  Inbox inbox;
  Inbox work;  // the inbox being delivered
};

class Net {
 public:
  static constexpr Ipv4Addr kServerAddr{198, 18, 0, 1};
  // Client i has 198.18.1.(i+1).
  static Ipv4Addr ClientAddr(size_t i) {
    return Ipv4Addr(198, 18, 1, static_cast<uint8_t>(i + 1));
  }

  // nodes()[0] is the server; 1..clients are the clients. `tune` may adjust each config.
  explicit Net(size_t clients, bool pool = true, uint64_t seed = 1,
               void (*tune)(StackConfig&) = nullptr)
      : sink_(*this) {
    for (size_t i = 0; i <= clients; ++i) {
      auto n = std::make_unique<Node>(pool);
      StackConfig c;
      c.addr = i == 0 ? kServerAddr : ClientAddr(i - 1);
      c.prefix_len = 15;
      c.seed = seed * 1000 + i;
      for (size_t k = 0; k < c.isn_secret.size(); ++k)
        c.isn_secret[k] = static_cast<uint8_t>(seed * 31 + i * 7 + k);
      if (tune != nullptr) tune(c);
      n->addr = c.addr;
      n->stack = std::make_unique<Stack>(c, &n->mem);
      nodes_.push_back(std::move(n));
    }
  }

  Node& server() { return *nodes_[0]; }
  Node& client(size_t i) { return *nodes_[i + 1]; }
  size_t clients() const { return nodes_.size() - 1; }
  std::vector<std::unique_ptr<Node>>& nodes() { return nodes_; }
  Instant now = Instant::FromNanos(1'000'000'000);
  RouteSink& sink() { return sink_; }
  uint64_t dropped = 0;  // frames to an address no node has

  Node* Route(Ipv4Addr dst) {
    if (dst == kServerAddr) return nodes_[0].get();
    const uint32_t base = ClientAddr(0).value();
    if (dst.value() >= base && dst.value() - base < clients())
      return nodes_[dst.value() - base + 1].get();
    return nullptr;
  }

  // Polls every stack and delivers frames until nothing is in flight.
  void Pump() {
    for (;;) {
      for (auto& n : nodes_) n->stack->Poll(now, sink_);
      bool any = false;
      for (auto& n : nodes_) {
        if (n->inbox.empty()) continue;
        any = true;
        std::swap(n->work, n->inbox);
        for (const auto& [off, len] : n->work.frames)
          n->stack->Receive(now, {n->work.bytes.data() + off, len}, sink_);
        n->work.clear();
      }
      if (!any) return;
    }
  }

  // Advances virtual time in `step`s up to `until`, pumping at each step.
  void AdvanceTo(Instant until, Duration step) {
    while (now < until) {
      now = Min(now + step, until);
      Pump();
    }
  }

 private:
  RouteSink sink_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

inline void RouteSink::Commit(size_t len) {
  ++frames;
  if (len < 20) return;
  uint32_t dst = 0;
  for (size_t i = 16; i < 20; ++i) dst = dst << 8 | static_cast<uint8_t>(buf_[i]);
  Node* n = net_.Route(Ipv4Addr(dst));
  if (n == nullptr) {
    ++net_.dropped;
    return;
  }
  const size_t off = n->inbox.bytes.size();
  n->inbox.bytes.insert(n->inbox.bytes.end(), buf_.begin(),
                        buf_.begin() + static_cast<std::ptrdiff_t>(len));
  n->inbox.frames.emplace_back(off, len);
}

}  // namespace shake::scale
