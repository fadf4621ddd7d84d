#include "tests/conformance/libshake_backend.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <sys/epoll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <deque>
#include <map>
#include <set>
#include <memory_resource>
#include <span>
#include <vector>

#include "stack/stack.h"
#include "tests/conformance/commands.h"

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
  // A device whose queue takes nothing (`tc qdisc ... pfifo limit 0`): every frame is
  // refused, as a full transmit queue refuses it, and the stack sees the send fail.
  void set_refuse_all(bool refuse) { refuse_all_ = refuse; }
  std::span<std::byte> Acquire(size_t max_len) override {
    if (refuse_all_) return {};
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
  bool refuse_all_ = false;
};

// The kernel defaults of a fresh network namespace (6.x) for the tunables the stack models,
// which is where packetdrill's scripts start from before their own commands.
void KernelDefaults(shake::StackConfig& c) {
  c.tcp.recv_buffer = 6291456;
  c.tcp.send_buffer = 4194304;
  c.tcp.syn_retries = 6;
  c.tcp.tail_loss_probe = true;  // tcp_early_retrans=3
  c.tcp.slow_start_after_idle = true;
  c.tcp.syn_cookies = true;  // tcp_syncookies=1
  c.tcp.ecn = shake::EcnMode::kPassive;  // tcp_ecn=2
  c.tcp.congestion_control = shake::CongestionControl::kCubic;
}

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
  c.tcp.slow_start_after_idle = true;  // tcp_slow_start_after_idle=1, the kernel's default
  c.tcp.syn_cookies = false;           // tcp_syncookies=0
  c.tcp.ecn = shake::EcnMode::kOff;    // tcp_ecn=0
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

class LibshakeBackend : public Backend, public shake::StackObserver {
 public:
  explicit LibshakeBackend(const BackendOptions& options)
      : config_(MakeConfig()), sink_(&out_), device_(options.packetdrill ? "tun0" : "shk0") {
    if (options.packetdrill) KernelDefaults(config_);
    Rebuild();
  }

  void OnReadiness(shake::SocketId id) override {
    for (auto& [epfd, ep] : epolls_) {
      auto it = ep.find(id);
      if (it != ep.end()) it->second.fresh = true;
    }
  }

  // Maps the sysctls of a script's command onto the StackConfig (tests/conformance/commands.h).
  std::string RunCommand(const std::string& text, const std::string& dir,
                         std::vector<std::string>* notes) override {
    bool any_sysctl = false;
    for (const CommandItem& item : ParseCommand(text, dir)) {
      if (item.kind == CommandItem::Kind::kNoOp) continue;
      if (item.kind == CommandItem::Kind::kQdisc) {
        if (item.device != device_) return "unsupported: command '" + item.text + "'";
        sink_.set_refuse_all(item.value == "drop");
        continue;
      }
      if (item.kind == CommandItem::Kind::kOffload) {
        // The stack hands this backend one segment of at most one MSS per frame, as to a
        // device without segmentation offload; the runner joins them as TSO would while tun0
        // has it, and stops once the script turns TSO off. Any other device is not ours.
        if (item.device != device_) return "unsupported: command '" + item.text + "'";
        continue;
      }
      any_sysctl = true;
      if (item.kind != CommandItem::Kind::kSysctl) return "unsupported: command '" + item.text + "'";
      const std::string err = ApplySysctl(item.key, item.value, notes);
      if (!err.empty()) return "unsupported: " + err;
    }
    if (!any_sysctl) return "";
    if (opened_) return "unsupported: sysctls changed after the first socket (the stack's "
                        "configuration is fixed when it is built)";
    Rebuild();
    return "";
  }

  std::string name() const override { return "libshake"; }

  std::string ApplySysctl(const std::string& key, const std::string& value,
                          std::vector<std::string>* notes) {
    shake::TcpConfig& t = config_.tcp;
    const long long v = std::atoll(value.c_str());
    auto last = [&]() {  // the max of a "min default max" triple
      const size_t sp = value.find_last_of(" \t");
      return std::atoll(value.substr(sp == std::string::npos ? 0 : sp + 1).c_str());
    };
    const std::string k = key.rfind("net.ipv4.", 0) == 0 ? key.substr(9) : key;
    if (k == "tcp_timestamps") t.timestamps = v != 0;
    else if (k == "tcp_sack") t.sack = v != 0;
    else if (k == "tcp_window_scaling") t.window_scaling = v != 0;
    else if (k == "tcp_syn_retries") t.syn_retries = static_cast<int>(v);
    else if (k == "tcp_synack_retries") t.synack_retries = static_cast<int>(v);
    else if (k == "tcp_retries2") t.data_retries = static_cast<int>(v);
    else if (k == "tcp_fin_timeout") t.fin_wait2_timeout = Duration::Seconds(v);
    else if (k == "tcp_keepalive_time") t.keepalive_time = Duration::Seconds(v);
    else if (k == "tcp_keepalive_intvl") t.keepalive_interval = Duration::Seconds(v);
    else if (k == "tcp_keepalive_probes") t.keepalive_probes = static_cast<int>(v);
    else if (k == "tcp_rto_min_us") t.rto_min = Duration::Micros(v);
    else if (k == "tcp_invalid_ratelimit") t.challenge_ack_interval = Duration::Millis(v);
    else if (k == "tcp_rmem") t.recv_buffer = static_cast<size_t>(last());
    else if (k == "tcp_wmem") t.send_buffer = static_cast<size_t>(last());
    else if (k == "tcp_early_retrans") t.tail_loss_probe = v >= 3;
    else if (k == "tcp_slow_start_after_idle") t.slow_start_after_idle = v != 0;
    else if (k == "tcp_syncookies" && v != 2) t.syn_cookies = v != 0;
    else if (k == "tcp_ecn" && v >= 0 && v <= 2) {
      t.ecn = v == 0 ? shake::EcnMode::kOff : v == 1 ? shake::EcnMode::kOn : shake::EcnMode::kPassive;
    }
    else if (k == "tcp_congestion_control") {
      if (value == "cubic") t.congestion_control = shake::CongestionControl::kCubic;
      else if (value == "reno") t.congestion_control = shake::CongestionControl::kReno;
      else return "tcp_congestion_control=" + value + " (libshake has reno and cubic)";
    }
    // Values that are what the stack does anyway.
    else if ((k == "tcp_dsack" && v == 1) || (k == "tcp_fack" && v == 0) ||
             (k == "tcp_reordering" && v == 3) || (k == "tcp_recovery" && v == 1) ||
             (k == "tcp_notsent_lowat" && value == "4294967295") ||
             (k == "tcp_syn_linear_timeouts" && v == 0)) {
    }
    // Tunables of mechanisms the stack does not have, which change nothing on the wire unless
    // a script exercises them (and such a script then fails on the calls or options it uses).
    else if (k == "tcp_tso_win_divisor" || k == "tcp_min_tso_segs" || k == "tcp_pacing_ss_ratio" ||
             k == "tcp_pacing_ca_ratio" || k == "tcp_fastopen" || k == "tcp_fastopen_key" ||
             k == "tcp_ecn_option" || k == "tcp_frto" ||
             k == "tcp_autocorking" || k == "tcp_comp_sack_nr" || k == "tcp_no_metrics_save") {
      notes->push_back(key + "=" + value + " accepted without effect (libshake has no such "
                       "mechanism: TSO, pacing, Fast Open, AccECN, F-RTO, autocorking, "
                       "SACK compression or a metrics cache)");
    } else {
      return "sysctl " + key + "=" + value;
    }
    return "";
  }
  int64_t Now() override { return (now_ - kEpoch).nanos(); }

  void Inject(const std::vector<uint8_t>& packet) override {
    std::vector<std::byte> frame(packet.size());
    for (size_t i = 0; i < packet.size(); ++i) frame[i] = static_cast<std::byte>(packet[i]);
    stack_ptr_->Receive(now_, frame, sink_);
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
      const Instant next = stack_ptr_->NextDeadline();
      if (next > deadline) break;
      if (next > now_) now_ = next;
      stack_ptr_->Poll(now_, sink_);
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
  void Flush() { stack_ptr_->Poll(now_, sink_); }

  static shake::SocketId Id(const Call& c) { return static_cast<shake::SocketId>(c.handle); }

  CallResult Dispatch(const Call& c) {
    switch (c.op) {
      case Op::kSocket: {
        opened_ = true;
        auto r = stack_ptr_->Open();
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kBind:
        return From(stack_ptr_->Bind(Id(c), {shake::Ipv4Addr(c.addr), c.port}));
      case Op::kListen: return From(stack_ptr_->Listen(Id(c), c.arg));
      case Op::kAccept: {
        auto r = stack_ptr_->Accept(Id(c));
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kConnect:
        return From(stack_ptr_->Connect(now_, Id(c), {shake::Ipv4Addr(c.addr), c.port}));
      case Op::kRead: {
        if ((c.flags & ~(MSG_PEEK | MSG_DONTWAIT)) != 0) return Err(ENOSYS);
        std::vector<std::byte> buf(c.len);
        auto r = stack_ptr_->Recv(Id(c), buf, (c.flags & MSG_PEEK) != 0);
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kWrite: {
        if ((c.flags & ~(MSG_MORE | MSG_EOR | MSG_DONTWAIT | MSG_NOSIGNAL | MSG_ZEROCOPY)) != 0) {
          return Err(ENOSYS);
        }
        std::vector<std::byte> buf(c.len, std::byte{'x'});
        auto r = stack_ptr_->Send(Id(c), buf,
                                  shake::Stack::SendFlags{(c.flags & MSG_MORE) != 0,
                                                          (c.flags & MSG_EOR) != 0,
                                                          (c.flags & MSG_ZEROCOPY) != 0});
        return r.ok() ? Ok(static_cast<int64_t>(*r)) : Err(r.error());
      }
      case Op::kClose:
        if (epolls_.erase(c.handle) != 0) return Ok();
        for (auto& [epfd, ep] : epolls_) ep.erase(Id(c));
        stack_ptr_->Close(now_, Id(c));
        return Ok();
      case Op::kIoctl: {
        auto info = stack_ptr_->Info(Id(c));
        if (!info.ok()) return Err(info.error());
        CallResult r = Ok();
        if (c.arg == SIOCINQ) r.value = static_cast<int64_t>(info.value().readable_bytes);
        else if (c.arg == SIOCOUTQ) r.value = static_cast<int64_t>(info.value().unsent_bytes);
        else return Err(ENOSYS);
        return r;
      }
      case Op::kTcpInfo: return TcpInfo(c);
      case Op::kEpollCreate: {
        const int h = next_epoll_++;
        epolls_[h];
        return Ok(h);
      }
      case Op::kEpollCtl: {
        auto it = epolls_.find(c.handle);
        if (it == epolls_.end()) return Err(EBADF);
        const auto id = static_cast<shake::SocketId>(c.value);
        if (c.arg == EPOLL_CTL_DEL) return it->second.erase(id) != 0 ? Ok() : Err(ENOENT);
        const bool exists = it->second.count(id) != 0;
        if (c.arg == EPOLL_CTL_ADD && exists) return Err(EEXIST);
        if (c.arg == EPOLL_CTL_MOD && !exists) return Err(ENOENT);
        it->second[id] = EpollEntry{static_cast<uint32_t>(c.flags), true, false};
        return Ok();
      }
      case Op::kEpollWait: return EpollWait(c);
      case Op::kShutdown:
        return From(stack_ptr_->Shutdown(now_, Id(c), c.arg != SHUT_WR, c.arg != SHUT_RD));
      case Op::kSetsockopt: return SetOption(c);
      case Op::kGetsockopt: return GetOption(c);
      case Op::kPoll: {
        CallResult r = Ok();
        r.poll = c.poll;
        int ready = 0;
        for (PollEntry& e : r.poll) {
          const uint32_t bits = stack_ptr_->Readiness(static_cast<shake::SocketId>(e.handle));
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

  // epoll over the stack's readiness: level-triggered entries report the current readiness;
  // edge-triggered ones only after a readiness change (OnReadiness) since their last report,
  // as the kernel wakes an EPOLLET waiter on each change; EPOLLONESHOT disarms after a report.
  static uint32_t EpollBits(uint32_t bits) {
    uint32_t v = 0;
    if (bits & shake::ready::kReadable) v |= EPOLLIN;
    if (bits & shake::ready::kWritable) v |= EPOLLOUT;
    if (bits & shake::ready::kError) v |= EPOLLERR;
    if (bits & shake::ready::kHangup) v |= EPOLLHUP;
    if (bits & shake::ready::kReadHangup) v |= EPOLLRDHUP;
    return v;
  }

  CallResult EpollWait(const Call& c) {
    auto it = epolls_.find(c.handle);
    if (it == epolls_.end()) return Err(EBADF);
    CallResult r = Ok();
    for (auto& [id, e] : it->second) {
      if (r.poll.size() >= std::max<size_t>(1, c.len)) break;
      if (e.disarmed) continue;
      const bool et = (e.events & EPOLLET) != 0;
      if (et && !e.fresh) continue;
      const uint32_t ready = EpollBits(stack_ptr_->Readiness(id)) & (e.events | EPOLLERR | EPOLLHUP);
      if (ready == 0) continue;
      e.fresh = false;
      if (e.events & EPOLLONESHOT) e.disarmed = true;
      r.poll.push_back({static_cast<int>(id), static_cast<int16_t>(ready & 0xffff),
                        static_cast<int16_t>(ready & 0xffff)});
    }
    r.ret = static_cast<int64_t>(r.poll.size());
    return r;
  }

  // getsockopt(TCP_INFO) from Stack::Info, with Linux's field names and units (cwnd and
  // ssthresh in segments, times in microseconds). Fields the stack does not report are left
  // out, so an assertion on one is reported as unsupported instead of compared with a guess.
  CallResult TcpInfo(const Call& c) {
    auto info = stack_ptr_->Info(Id(c));
    if (!info.ok()) return Err(info.error());
    const shake::SocketInfo& i = info.value();
    CallResult r = Ok();
    const int64_t mss = i.mss == 0 ? 1 : i.mss;
    r.info["tcpi_state"] = shake::LinuxStateNumber(i.state);
    r.info["tcpi_snd_mss"] = i.mss;
    r.info["tcpi_rtt"] = i.srtt.nanos() / 1000;
    r.info["tcpi_rttvar"] = i.rttvar.nanos() / 1000;
    r.info["tcpi_rto"] = i.rto.nanos() / 1000;
    r.info["tcpi_snd_cwnd"] = i.cwnd / mss;
    r.info["tcpi_snd_ssthresh"] = i.ssthresh >= 0x7fffffffu / 2 ? 0x7fffffff : i.ssthresh / mss;
    r.info["tcpi_snd_wscale"] = i.snd_wscale;
    r.info["tcpi_rcv_wscale"] = i.rcv_wscale;
    r.info["tcpi_total_retrans"] = static_cast<int64_t>(i.retransmits);
    r.info["tcpi_options"] = (i.timestamps_enabled ? 1 : 0) | (i.sack_enabled ? 2 : 0) |
                             (i.snd_wscale != 0 || i.rcv_wscale != 0 ? 4 : 0) |
                             (i.ecn_enabled ? 8 : 0);
    r.info["tcpi_ca_state"] = i.ca_state;
    r.info["tcpi_unacked"] = i.unacked_segments;
    r.info["tcpi_sacked"] = i.sacked_segments;
    r.info["tcpi_lost"] = i.lost_segments;
    r.info["tcpi_retrans"] = i.retrans_segments;
    r.info["tcpi_reordering"] = i.reordering;
    r.info["tcpi_reord_seen"] = i.reord_seen;
    r.info["tcpi_probes"] = i.probes;
    r.info["tcpi_backoff"] = i.backoff;
    r.info["tcpi_advmss"] = i.advmss;
    r.info["tcpi_rcv_mss"] = i.rcv_mss;
    // The chronographs, in microseconds (Linux counts jiffies and reports microseconds).
    const int64_t busy = i.Chrono(1, now_).nanos() / 1000;
    const int64_t rwnd = i.Chrono(2, now_).nanos() / 1000;
    const int64_t sndbuf = i.Chrono(3, now_).nanos() / 1000;
    r.info["tcpi_busy_time"] = busy + rwnd + sndbuf;
    r.info["tcpi_rwnd_limited"] = rwnd;
    r.info["tcpi_sndbuf_limited"] = sndbuf;
    r.info["tcpi_last_data_recv"] = i.last_data_received.nanos() <= 0 ? 0 : (now_ - i.last_data_received).nanos() / 1000000;
    return r;
  }

  CallResult SetOption(const Call& c) {
    if (!c.text.empty()) {
      // TCP_CONGESTION: the stack has one controller for all sockets.
      const bool same = (c.text == "cubic" && config_.tcp.congestion_control == shake::CongestionControl::kCubic) ||
                        (c.text == "reno" && config_.tcp.congestion_control == shake::CongestionControl::kReno);
      return same ? Ok() : Err(ENOPROTOOPT);
    }
    auto cur = stack_ptr_->GetOptions(Id(c));
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
        case SO_ZEROCOPY: o.zerocopy = v != 0; break;
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
    } else if (c.arg == IPPROTO_IP) {
      switch (c.optname) {
        case IP_TOS: o.tos = static_cast<uint8_t>(v & 0xfc); break;  // the ECN bits stay the stack's
        case IP_MTU_DISCOVER:
          if (v < IP_PMTUDISC_DONT || v > IP_PMTUDISC_OMIT) return Err(EINVAL);
          o.pmtu_discovery = static_cast<shake::PmtuDiscovery>(v);
          break;
        default: return Err(ENOPROTOOPT);
      }
    } else {
      return Err(ENOPROTOOPT);
    }
    return From(stack_ptr_->SetOptions(Id(c), o));
  }

  CallResult GetOption(const Call& c) {
    if (c.arg == SOL_SOCKET && c.optname == SO_ERROR) {
      CallResult r = Ok();
      r.value = stack_ptr_->TakeError(Id(c));
      return r;
    }
    auto cur = stack_ptr_->GetOptions(Id(c));
    if (!cur.ok()) return Err(cur.error());
    const shake::SocketOptions& o = cur.value();
    CallResult r = Ok();
    if (c.arg == SOL_SOCKET) {
      switch (c.optname) {
        case SO_REUSEADDR: r.value = o.reuse_addr; break;
        case SO_REUSEPORT: r.value = o.reuse_port; break;
        case SO_KEEPALIVE: r.value = o.keepalive; break;
        case SO_ZEROCOPY: r.value = o.zerocopy; break;
        // As the shim (shim/sockopt.cc): Linux reports twice what was set, the bookkeeping
        // overhead it reserves.
        case SO_SNDBUF: r.value = static_cast<int64_t>(stack_ptr_->EffectiveOptions(Id(c)).value().send_buffer * 2); break;
        case SO_RCVBUF: r.value = static_cast<int64_t>(stack_ptr_->EffectiveOptions(Id(c)).value().recv_buffer * 2); break;
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
        case TCP_MAXSEG: {
          // Linux: the connection's send MSS once established, else the value set (or the
          // default 536 before a connection).
          auto info = stack_ptr_->Info(Id(c));
          if (info.ok() && info.value().mss != 0 && (info.value().connected || info.value().connecting)) {
            r.value = info.value().mss;
          } else {
            r.value = o.max_segment != 0 ? o.max_segment : 536;
          }
          break;
        }
        default: return Err(ENOPROTOOPT);
      }
    } else if (c.arg == IPPROTO_IP) {
      switch (c.optname) {
        case IP_TOS: r.value = o.tos; break;
        case IP_MTU_DISCOVER: r.value = static_cast<int64_t>(o.pmtu_discovery); break;
        default: return Err(ENOPROTOOPT);
      }
    } else {
      return Err(ENOPROTOOPT);
    }
    return r;
  }

  void Rebuild() {
    stack_ptr_ = std::make_unique<shake::Stack>(config_, std::pmr::new_delete_resource());
    stack_ptr_->SetObserver(this);
  }

  struct EpollEntry {
    uint32_t events = 0;
    bool fresh = true;  // readiness changed since the last report (edge-triggered)
    bool disarmed = false;
  };

  shake::StackConfig config_;
  std::unique_ptr<shake::Stack> stack_ptr_;
  std::deque<std::vector<uint8_t>> out_;
  CollectingSink sink_;
  Instant now_ = kEpoch;
  // The device's name as the Linux backend's namespace has it (its commands name it).
  std::string device_;
  bool opened_ = false;
  std::map<int, std::map<shake::SocketId, EpollEntry>> epolls_;
  int next_epoll_ = 1 << 24;
};

}  // namespace

std::unique_ptr<Backend> CreateLibshakeBackend(const BackendOptions& options,
                                               SetupError* /*error*/) {
  return std::make_unique<LibshakeBackend>(options);
}

}  // namespace conformance
