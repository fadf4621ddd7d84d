#include "tests/conformance/libshake_backend.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <memory_resource>
#include <span>
#include <vector>

#include "stack/stack.h"

namespace conformance {
namespace {

using shake::Duration;
using shake::Instant;

// An arbitrary non-zero epoch so that no stack arithmetic meets time zero.
constexpr Instant kEpoch = Instant::FromNanos(int64_t{1000} * 1000 * 1000 * 1000);
// A safety bound on Poll calls while waiting for one deadline: a stack that keeps asking to
// be polled at the current instant must not hang the runner.
constexpr int kMaxPollsPerWait = 100000;

class CollectingSink : public shake::FrameSink {
 public:
  explicit CollectingSink(std::deque<std::vector<uint8_t>>* out) : out_(out) {}
  std::span<std::byte> Acquire(size_t max_len) override {
    buf_.resize(max_len);
    return {buf_.data(), buf_.size()};
  }
  void Commit(size_t len) override {
    std::vector<uint8_t> frame(len);
    for (size_t i = 0; i < len && i < buf_.size(); ++i) frame[i] = static_cast<uint8_t>(buf_[i]);
    out_->push_back(std::move(frame));
  }

 private:
  std::deque<std::vector<uint8_t>>* out_;
  std::vector<std::byte> buf_;
};

shake::StackConfig MakeConfig() {
  shake::StackConfig c;
  c.link = shake::LinkMode::kIp;
  c.addr = shake::Ipv4Addr(kLocalAddr);
  c.prefix_len = kPrefixLen;
  c.mtu = 1500;
  // As the Linux backend's namespace (see kLinuxSysctls).
  c.tcp.sack = true;
  c.tcp.timestamps = true;
  c.tcp.window_scaling = true;
  c.tcp.recv_buffer = 6291456;  // tcp_rmem[2]: gives window scale 7 as on Linux
  c.tcp.send_buffer = 4194304;  // tcp_wmem[2]
  c.tcp.rto_initial = Duration::Seconds(1);
  c.tcp.rto_min = Duration::Millis(200);
  c.tcp.rto_max = Duration::Seconds(120);
  c.tcp.syn_retries = 6;
  c.tcp.synack_retries = 5;
  c.tcp.data_retries = 15;
  c.tcp.delayed_ack = Duration::Millis(40);
  c.tcp.time_wait = Duration::Seconds(60);
  c.tcp.fin_wait2_timeout = Duration::Seconds(60);
  c.tcp.keepalive_time = Duration::Seconds(7200);
  c.tcp.keepalive_interval = Duration::Seconds(75);
  c.tcp.keepalive_probes = 9;
  c.tcp.challenge_ack_interval = Duration::Millis(500);
  c.tcp.ephemeral_low = 32768;
  c.tcp.ephemeral_high = 60999;
  c.tcp.tail_loss_probe = false;  // tcp_early_retrans=0
  c.tcp.congestion_control = shake::CongestionControl::kReno;  // tcp_congestion_control=reno
  for (size_t i = 0; i < c.isn_secret.size(); ++i) c.isn_secret[i] = static_cast<uint8_t>(i * 37 + 11);
  c.seed = 0x5eed;
  return c;
}

CallResult Ok(int64_t ret = 0) {
  CallResult r;
  r.ret = ret;
  return r;
}
CallResult Err(int err) {
  CallResult r;
  r.ret = -1;
  r.err = err;
  return r;
}
CallResult From(shake::Result0 r) { return r.ok() ? Ok() : Err(r.error()); }

class LibshakeBackend : public Backend {
 public:
  LibshakeBackend() : stack_(MakeConfig(), std::pmr::new_delete_resource()), sink_(&out_) {}

  std::string name() const override { return "libshake"; }
  int64_t Now() override { return (now_ - kEpoch).nanos(); }

  void Inject(const std::vector<uint8_t>& packet) override {
    std::vector<std::byte> frame(packet.size());
    for (size_t i = 0; i < packet.size(); ++i) frame[i] = static_cast<std::byte>(packet[i]);
    stack_.Receive(now_, frame, sink_);
    Flush();
  }

  std::optional<std::vector<uint8_t>> ReadPacket(int64_t deadline_ns) override {
    const Instant deadline = kEpoch + Duration::Nanos(deadline_ns);
    for (int polls = 0; polls < kMaxPollsPerWait; ++polls) {
      if (!out_.empty()) {
        std::vector<uint8_t> p = std::move(out_.front());
        out_.pop_front();
        return p;
      }
      const Instant next = stack_.NextDeadline();
      if (next > deadline) break;
      if (next > now_) now_ = next;
      stack_.Poll(now_, sink_);
    }
    if (!out_.empty()) return ReadPacket(deadline_ns);
    if (deadline > now_) now_ = deadline;
    return std::nullopt;
  }

  CallResult Execute(const Call& c) override {
    CallResult r = Dispatch(c);
    Flush();
    return r;
  }

 private:
  void Flush() { stack_.Poll(now_, sink_); }

  static shake::SocketId Id(const Call& c) { return static_cast<shake::SocketId>(c.handle); }

  CallResult Dispatch(const Call& c) {
    switch (c.op) {
      case Op::kSocket: {
        auto r = stack_.Open();
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kBind:
        return From(stack_.Bind(Id(c), {shake::Ipv4Addr(c.addr), c.port}));
      case Op::kListen: return From(stack_.Listen(Id(c), c.arg));
      case Op::kAccept: {
        auto r = stack_.Accept(Id(c));
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kConnect:
        return From(stack_.Connect(now_, Id(c), {shake::Ipv4Addr(c.addr), c.port}));
      case Op::kRead: {
        std::vector<std::byte> buf(c.len);
        auto r = stack_.Recv(Id(c), buf, (c.flags & MSG_PEEK) != 0);
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kWrite: {
        std::vector<std::byte> buf(c.len, std::byte{'x'});
        auto r = stack_.Send(Id(c), buf, (c.flags & MSG_MORE) != 0);
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kClose:
        stack_.Close(now_, Id(c));
        return Ok();
      case Op::kShutdown:
        return From(stack_.Shutdown(now_, Id(c), c.arg != SHUT_WR, c.arg != SHUT_RD));
      case Op::kSetsockopt: return SetOption(c);
      case Op::kGetsockopt: return GetOption(c);
      case Op::kPoll: {
        CallResult r = Ok();
        r.poll = c.poll;
        int ready = 0;
        for (PollEntry& e : r.poll) {
          const uint32_t bits = stack_.Readiness(static_cast<shake::SocketId>(e.handle));
          int v = 0;
          if (bits & shake::ready::kReadable) v |= POLLIN;
          if (bits & shake::ready::kWritable) v |= POLLOUT;
          if (bits & shake::ready::kError) v |= POLLERR;
          if (bits & shake::ready::kHangup) v |= POLLHUP;
          if (bits & shake::ready::kReadHangup) v |= POLLRDHUP;
          e.revents = static_cast<int16_t>(v & (e.events | POLLERR | POLLHUP));
          if (e.revents != 0) ++ready;
        }
        r.ret = ready;
        return r;
      }
    }
    return Err(ENOSYS);
  }

  CallResult SetOption(const Call& c) {
    auto cur = stack_.GetOptions(Id(c));
    if (!cur.ok()) return Err(cur.error());
    shake::SocketOptions o = cur.value();
    const int64_t v = c.value;
    if (c.arg == SOL_SOCKET) {
      switch (c.optname) {
        case SO_REUSEADDR: o.reuse_addr = v != 0; break;
        case SO_REUSEPORT: o.reuse_port = v != 0; break;
        case SO_KEEPALIVE: o.keepalive = v != 0; break;
        case SO_LINGER:
          o.linger = v != 0;
          o.linger_time = Duration::Seconds(c.value2);
          break;
        case SO_SNDBUF: o.send_buffer = static_cast<size_t>(v); break;
        case SO_RCVBUF: o.recv_buffer = static_cast<size_t>(v); break;
        default: return Err(ENOPROTOOPT);
      }
    } else if (c.arg == IPPROTO_TCP) {
      switch (c.optname) {
        case TCP_NODELAY: o.no_delay = v != 0; break;
        case TCP_CORK: o.cork = v != 0; break;
        case TCP_KEEPIDLE: o.keepalive_time = Duration::Seconds(v); break;
        case TCP_KEEPINTVL: o.keepalive_interval = Duration::Seconds(v); break;
        case TCP_KEEPCNT: o.keepalive_probes = static_cast<int>(v); break;
        case TCP_USER_TIMEOUT: o.user_timeout = Duration::Millis(v); break;
        case TCP_LINGER2: o.linger2 = Duration::Seconds(v); break;
        case TCP_MAXSEG: o.max_segment = static_cast<uint16_t>(v); break;
        case TCP_QUICKACK: o.quick_ack = v != 0; break;
        case TCP_SYNCNT: o.syn_count = static_cast<int>(v); break;
        default: return Err(ENOPROTOOPT);
      }
    } else {
      return Err(ENOPROTOOPT);
    }
    return From(stack_.SetOptions(Id(c), o));
  }

  CallResult GetOption(const Call& c) {
    if (c.arg == SOL_SOCKET && c.optname == SO_ERROR) {
      CallResult r = Ok();
      r.value = stack_.TakeError(Id(c));
      return r;
    }
    auto cur = stack_.GetOptions(Id(c));
    if (!cur.ok()) return Err(cur.error());
    const shake::SocketOptions& o = cur.value();
    CallResult r = Ok();
    if (c.arg == SOL_SOCKET) {
      switch (c.optname) {
        case SO_REUSEADDR: r.value = o.reuse_addr; break;
        case SO_REUSEPORT: r.value = o.reuse_port; break;
        case SO_KEEPALIVE: r.value = o.keepalive; break;
        case SO_LINGER:
          r.value = o.linger;
          r.value2 = o.linger_time.nanos() / 1000000000;
          break;
        default: return Err(ENOPROTOOPT);
      }
    } else if (c.arg == IPPROTO_TCP) {
      switch (c.optname) {
        case TCP_NODELAY: r.value = o.no_delay; break;
        case TCP_CORK: r.value = o.cork; break;
        case TCP_KEEPCNT: r.value = o.keepalive_probes; break;
        case TCP_USER_TIMEOUT: r.value = o.user_timeout.millis(); break;
        case TCP_LINGER2: r.value = o.linger2.nanos() / 1000000000; break;
        case TCP_SYNCNT: r.value = o.syn_count; break;
        default: return Err(ENOPROTOOPT);
      }
    } else {
      return Err(ENOPROTOOPT);
    }
    return r;
  }

  shake::Stack stack_;
  std::deque<std::vector<uint8_t>> out_;
  CollectingSink sink_;
  Instant now_ = kEpoch;
};

}  // namespace

std::unique_ptr<Backend> CreateLibshakeBackend(SetupError* /*error*/) {
  return std::make_unique<LibshakeBackend>();
}

}  // namespace conformance
