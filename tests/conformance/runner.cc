#include "tests/conformance/runner.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <deque>
#include <map>
#include <stdexcept>
#include <string>

#include "tests/conformance/commands.h"
#include "tests/conformance/pycode.h"

namespace conformance {
namespace {

class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Names a script may use, with Linux's values (the backends interpret them).
const std::map<std::string, int64_t>& Symbols() {
  static const std::map<std::string, int64_t> table = {
      {"AF_INET", AF_INET}, {"SOCK_STREAM", SOCK_STREAM}, {"SOCK_NONBLOCK", SOCK_NONBLOCK},
      {"IPPROTO_TCP", IPPROTO_TCP}, {"SOL_SOCKET", SOL_SOCKET}, {"SOL_TCP", IPPROTO_TCP},
      {"SO_REUSEADDR", SO_REUSEADDR}, {"SO_REUSEPORT", SO_REUSEPORT},
      {"SO_KEEPALIVE", SO_KEEPALIVE}, {"SO_LINGER", SO_LINGER}, {"SO_ERROR", SO_ERROR},
      {"SO_SNDBUF", SO_SNDBUF}, {"SO_RCVBUF", SO_RCVBUF}, {"TCP_NODELAY", TCP_NODELAY},
      {"TCP_MAXSEG", TCP_MAXSEG}, {"TCP_CORK", TCP_CORK}, {"TCP_KEEPIDLE", TCP_KEEPIDLE},
      {"TCP_KEEPINTVL", TCP_KEEPINTVL}, {"TCP_KEEPCNT", TCP_KEEPCNT},
      {"TCP_SYNCNT", TCP_SYNCNT}, {"TCP_LINGER2", TCP_LINGER2},
      {"TCP_QUICKACK", TCP_QUICKACK}, {"TCP_USER_TIMEOUT", TCP_USER_TIMEOUT},
      {"O_RDWR", O_RDWR}, {"O_NONBLOCK", O_NONBLOCK}, {"F_GETFL", F_GETFL},
      {"F_SETFL", F_SETFL}, {"SHUT_RD", SHUT_RD}, {"SHUT_WR", SHUT_WR},
      {"SHUT_RDWR", SHUT_RDWR}, {"POLLIN", POLLIN}, {"POLLOUT", POLLOUT},
      {"POLLERR", POLLERR}, {"POLLHUP", POLLHUP}, {"POLLRDHUP", POLLRDHUP},
      {"POLLPRI", POLLPRI}, {"MSG_DONTWAIT", MSG_DONTWAIT}, {"MSG_PEEK", MSG_PEEK},
      {"MSG_NOSIGNAL", MSG_NOSIGNAL}, {"MSG_MORE", MSG_MORE},
      {"MSG_WAITALL", MSG_WAITALL}, {"MSG_TRUNC", MSG_TRUNC}, {"MSG_OOB", MSG_OOB},
      {"MSG_EOR", MSG_EOR}, {"MSG_ERRQUEUE", MSG_ERRQUEUE}, {"MSG_FASTOPEN", MSG_FASTOPEN},
      {"MSG_ZEROCOPY", 0x4000000}, {"NULL", 0},
      {"SOL_IP", IPPROTO_IP}, {"IPPROTO_IP", IPPROTO_IP}, {"IP_TOS", IP_TOS},
      {"IP_MTU_DISCOVER", IP_MTU_DISCOVER}, {"IP_PMTUDISC_DONT", IP_PMTUDISC_DONT},
      {"IP_PMTUDISC_WANT", IP_PMTUDISC_WANT}, {"IP_PMTUDISC_DO", IP_PMTUDISC_DO},
      {"IP_PMTUDISC_PROBE", IP_PMTUDISC_PROBE}, {"IP_RECVERR", IP_RECVERR},
      {"SO_SNDLOWAT", SO_SNDLOWAT}, {"SO_RCVLOWAT", SO_RCVLOWAT}, {"SO_OOBINLINE", SO_OOBINLINE},
      {"SO_ZEROCOPY", 60}, {"SO_TIMESTAMPING", SO_TIMESTAMPING},
      {"TCP_CONGESTION", TCP_CONGESTION}, {"TCP_NOTSENT_LOWAT", TCP_NOTSENT_LOWAT},
      {"TCP_INFO", TCP_INFO}, {"TCP_FASTOPEN", TCP_FASTOPEN},
      {"TCP_FASTOPEN_CONNECT", TCP_FASTOPEN_CONNECT}, {"TCP_FASTOPEN_NO_COOKIE", 34},
      {"TCP_INQ", TCP_INQ}, {"TCP_CM_INQ", TCP_INQ}, {"TCP_DEFER_ACCEPT", TCP_DEFER_ACCEPT},
      {"TCP_WINDOW_CLAMP", TCP_WINDOW_CLAMP}, {"TCP_THIN_LINEAR_TIMEOUTS", TCP_THIN_LINEAR_TIMEOUTS},
      {"TCP_MD5SIG", TCP_MD5SIG}, {"TCP_REPAIR", TCP_REPAIR}, {"IP_FREEBIND", IP_FREEBIND},
      {"SO_MARK", SO_MARK},
      {"SIOCINQ", SIOCINQ}, {"FIONREAD", FIONREAD}, {"SIOCOUTQ", SIOCOUTQ},
      {"SIOCOUTQNSD", SIOCOUTQNSD},
      {"EPOLL_CTL_ADD", EPOLL_CTL_ADD}, {"EPOLL_CTL_MOD", EPOLL_CTL_MOD},
      {"EPOLL_CTL_DEL", EPOLL_CTL_DEL}, {"EPOLLIN", EPOLLIN}, {"EPOLLOUT", EPOLLOUT},
      {"EPOLLERR", EPOLLERR}, {"EPOLLHUP", EPOLLHUP}, {"EPOLLRDHUP", EPOLLRDHUP},
      {"EPOLLPRI", EPOLLPRI}, {"EPOLLET", static_cast<int64_t>(EPOLLET)},
      {"EPOLLONESHOT", EPOLLONESHOT}, {"EPOLLEXCLUSIVE", EPOLLEXCLUSIVE},
      {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY},
      {"TCP_CA_Open", 0}, {"TCP_CA_Disorder", 1}, {"TCP_CA_CWR", 2}, {"TCP_CA_Recovery", 3},
      {"TCP_CA_Loss", 4}, {"TCP_INFINITE_SSTHRESH", 0x7fffffff},
  };
  return table;
}

const std::map<std::string, int>& Errnos() {
  static const std::map<std::string, int> table = {
      {"EINPROGRESS", EINPROGRESS}, {"EAGAIN", EAGAIN}, {"EWOULDBLOCK", EWOULDBLOCK},
      {"ECONNREFUSED", ECONNREFUSED}, {"ECONNRESET", ECONNRESET}, {"EPIPE", EPIPE},
      {"ETIMEDOUT", ETIMEDOUT}, {"EISCONN", EISCONN}, {"ENOTCONN", ENOTCONN},
      {"EALREADY", EALREADY}, {"EINVAL", EINVAL}, {"EBADF", EBADF},
      {"EADDRINUSE", EADDRINUSE}, {"ENOPROTOOPT", ENOPROTOOPT}, {"EOPNOTSUPP", EOPNOTSUPP},
      {"ECONNABORTED", ECONNABORTED}, {"EHOSTUNREACH", EHOSTUNREACH},
      {"ENETUNREACH", ENETUNREACH}, {"EADDRNOTAVAIL", EADDRNOTAVAIL},
      {"EFAULT", EFAULT}, {"EMSGSIZE", EMSGSIZE}, {"ENOBUFS", ENOBUFS}, {"EPERM", EPERM},
      {"ENOENT", ENOENT}, {"EHOSTDOWN", EHOSTDOWN}, {"ENOMEM", ENOMEM}, {"EACCES", EACCES},
      {"ENOTSOCK", ENOTSOCK}, {"EDESTADDRREQ", EDESTADDRREQ}, {"EINTR", EINTR},
      {"ENOSYS", ENOSYS},
  };
  return table;
}

std::string ErrnoName(int err) {
  for (const auto& [name, value] : Errnos()) {
    if (value == err && name != "EWOULDBLOCK") return name;
  }
  return "errno " + std::to_string(err);
}

std::string Secs(int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%" PRId64 ".%06" PRId64, us < 0 ? "-" : "",
                (us < 0 ? -us : us) / 1000000, (us < 0 ? -us : us) % 1000000);
  return buf;
}

struct Flow {
  uint16_t remote_port = 0;
  uint16_t local_port = 0;  // 0 until learned from the system's first packet
  std::optional<uint32_t> sut_isn;
  std::optional<uint32_t> last_tsval;  // latest TS val the system sent
  std::optional<uint32_t> last_seq;    // the system's last segment (quoted by ICMP errors)
  // The script's sequence number on the peer's SYN: packetdrill counts the peer's sequence
  // space from it (`< S. 123:123(0)` then `> . 1:1(0) ack 1`). The SYN is sent at kRemoteIsn.
  uint32_t remote_base = 0;
  bool remote_syn_seen = false;
  uint32_t remote_isn() const { return kRemoteIsn - remote_base; }
  // packetdrill maps inbound TS ecr values onto the system's clock: the difference between
  // the system's first TS val and the one the script wrote for it.
  std::optional<uint32_t> ts_offset;
};

struct FdState {
  int handle = -1;
  bool nonblock = false;
  bool epoll = false;
};

// A blocking call that has not returned yet (`+0...0.2 accept(...)`): retried after every
// event until it completes, which must happen within its end time.
struct PendingCall {
  Call call;
  const Event* event = nullptr;
  int64_t lo_us = 0;
  int64_t hi_us = 0;  // including the tolerance
  size_t done = 0;    // bytes a blocking write has sent so far
  bool is_connect = false;
  bool new_fd = false;
};

[[noreturn]] void ThrowUnsupported(const std::string& path, int line, const std::string& what) {
  throw Failure(path + ":" + std::to_string(line) + ": unsupported: " + what);
}

class Runner {
 public:
  Runner(const Script& script, Backend& backend, const RunOptions& options)
      : script_(script), backend_(backend), opt_(options) {}

  void Run() {
    for (const auto& [k, v] : script_.settings) {
      if (k == "tolerance_usecs") {
        opt_.tolerance_us = std::max<int64_t>(opt_.tolerance_us, std::atoll(v.c_str()));
      } else if (k == "ip_version") {
        if (v != "ipv4") ThrowUnsupported(script_.path, 1, "--ip_version=" + v + " (IPv4 only)");
      } else {
        ThrowUnsupported(script_.path, 1, "the command-line setting --" + k);
      }
    }
    // packetdrill runs a command written before the first timed event (its init command,
    // usually `../common/defaults.sh`) before the script's clock starts.
    size_t first = 0;
    for (; first < script_.events.size(); ++first) {
      const Event& ev = script_.events[first];
      const auto* cmd = std::get_if<CommandSpec>(&ev.what);
      if (cmd == nullptr || ev.time.given) break;
      ev_ = &ev;
      RunCommand(*cmd);
    }
    start_ns_ = backend_.Now();
    prev_us_ = 0;
    for (size_t idx = first; idx < script_.events.size(); ++idx) {
      const Event& ev = script_.events[idx];
      ev_ = &ev;
      if (const auto* p = std::get_if<PacketSpec>(&ev.what); p != nullptr && !p->inbound) {
        ExpectPacket(ev, *p);
        continue;
      }
      int64_t at = prev_us_;
      switch (ev.time.kind) {
        case TimeSpec::Kind::kAbsolute: at = ev.time.lo_us; break;
        case TimeSpec::Kind::kRelative: at = prev_us_ + ev.time.lo_us; break;
        case TimeSpec::Kind::kAny: at = NowUs(); break;
      }
      WaitUntil(at);
      prev_us_ = ev.time.kind == TimeSpec::Kind::kAny ? NowUs() : at;
      if (const auto* p = std::get_if<PacketSpec>(&ev.what)) {
        InjectPacket(*p);
      } else if (const auto* cmd = std::get_if<CommandSpec>(&ev.what)) {
        RunCommand(*cmd);
        prev_us_ = NowUs();  // a command takes real time; what follows counts from its end
      } else if (const auto* code = std::get_if<CodeSpec>(&ev.what)) {
        RunCodeBlock(*code);
      } else {
        DoSyscall(std::get<SyscallSpec>(ev.what));
      }
      TryPending();
    }
    ev_ = nullptr;
    // packetdrill does not look for packets after the last event; our own scripts do.
    if (!opt_.packetdrill) WaitUntil(NowUs() + opt_.tolerance_us);
    if (pending_) {
      ev_ = pending_->event;
      Fail("blocking " + std::get<SyscallSpec>(ev_->what).name + "() had not returned when the "
           "script ended");
    }
  }

 private:
  int64_t NowUs() { return (backend_.Now() - start_ns_) / 1000; }

  [[noreturn]] void Fail(const std::string& what) const {
    const int line = ev_ != nullptr ? ev_->line : static_cast<int>(script_.events.back().line);
    throw Failure(script_.path + ":" + std::to_string(line) + ": " + what);
  }

  void Log(int64_t t_us, const std::string& text) const {
    if (opt_.verbose) std::printf("  %11s  %s\n", Secs(t_us).c_str(), text.c_str());
  }

  [[noreturn]] void Unsupported(const std::string& what) const {
    ThrowUnsupported(script_.path, ev_ != nullptr ? ev_->line : 0, what);
  }

  // The next packet the system sent, or nullopt at the deadline. A pending blocking call is
  // retried when the wait passes its end time.
  // last_read_us_ is then the time it was sent (for a queued packet, when it was read).
  std::optional<std::vector<uint8_t>> Read(int64_t deadline_us) {
    if (!queued_.empty()) {
      auto p = std::move(queued_.front());
      queued_.pop_front();
      last_read_us_ = p.second;
      return std::move(p.first);
    }
    for (;;) {
      const int64_t limit = pending_ ? std::min(deadline_us, pending_->hi_us) : deadline_us;
      auto bytes = backend_.ReadPacket(start_ns_ + limit * 1000);
      last_read_us_ = NowUs();
      if (pending_) TryPending();
      if (bytes || limit >= deadline_us) return bytes;
    }
  }

  void PushBack(std::vector<uint8_t> bytes) { queued_.emplace_front(std::move(bytes), last_read_us_); }

  // Retries a pending blocking call; fails the script when its time is up.
  void TryPending() {
    if (!pending_) return;
    PendingCall& pc = *pending_;
    const SyscallSpec& s = std::get<SyscallSpec>(pc.event->what);
    CallResult r;
    if (pc.is_connect) {
      Call poll;
      poll.op = Op::kPoll;
      poll.poll.push_back({pc.call.handle, static_cast<int16_t>(POLLOUT), 0});
      CallResult pr = backend_.Execute(poll);
      if (pr.poll.empty() || pr.poll[0].revents == 0) return CheckPendingTime(s);
      Call err;
      err.op = Op::kGetsockopt;
      err.handle = pc.call.handle;
      err.arg = SOL_SOCKET;
      err.optname = SO_ERROR;
      CallResult er = backend_.Execute(err);
      r.ret = er.value == 0 ? 0 : -1;
      r.err = static_cast<int>(er.value);
    } else {
      Call c = pc.call;
      if (c.op == Op::kWrite) {
        // A blocking write sleeps until the socket is writable again as poll() defines it
        // (the kernel's sk_stream_write_space threshold), not until the first free byte.
        Call poll;
        poll.op = Op::kPoll;
        poll.poll.push_back({pc.call.handle, static_cast<int16_t>(POLLOUT), 0});
        CallResult pr = backend_.Execute(poll);
        if (pr.poll.empty() || pr.poll[0].revents == 0) return CheckPendingTime(s);
        c.len -= pc.done;
      }
      r = backend_.Execute(c);
      if (r.ret == -1 && (r.err == EAGAIN || r.err == EINPROGRESS)) return CheckPendingTime(s);
      if (c.op == Op::kWrite && r.ret >= 0) {
        pc.done += static_cast<size_t>(r.ret);
        if (pc.done < pc.call.len) return CheckPendingTime(s);
        r.ret = static_cast<int64_t>(pc.done);
      }
    }
    const Event* saved = ev_;
    ev_ = pc.event;
    const int64_t at = NowUs();
    Log(at, "(returns) " + s.name + "() = " + std::to_string(r.ret));
    if (at < pc.lo_us) {
      Fail("blocking " + s.name + "() returned at " + Secs(at) + ", before its end time " +
           Secs(pc.lo_us) + " (less the tolerance)");
    }
    const bool new_fd = pc.new_fd;
    pending_.reset();
    if (new_fd) {
      NewFd(s, r, false);
    } else {
      CheckResult(s, r);
    }
    ev_ = saved;
  }

  void CheckPendingTime(const SyscallSpec& s) {
    if (NowUs() < pending_->hi_us) return;
    ev_ = pending_->event;
    Fail("blocking " + s.name + "() had not returned by " + Secs(pending_->hi_us));
  }

  // `` `command` ``: the backend applies it, or says why it cannot.
  void RunCommand(const CommandSpec& cmd) {
    Log(NowUs(), "`" + cmd.text.substr(0, cmd.text.find('\n')) + "`");
    const std::string dir = std::filesystem::path(script_.path).parent_path().string();
    std::vector<std::string> notes;
    const std::string err = backend_.RunCommand(cmd.text, dir.empty() ? "." : dir, &notes);
    for (const std::string& n : notes) Log(NowUs(), "(note: " + n + ")");
    if (err.rfind("unsupported: ", 0) == 0) Unsupported(err.substr(13));
    if (!err.empty()) Fail("command failed: " + err);
    // `ethtool -K tun0 tso off`: the device now gets segments of one MSS (the kernel cuts
    // them itself, GSO or not), so outbound segments are no longer joined as TSO would send
    // them (MergeSegments).
    for (const CommandItem& item : ParseCommand(cmd.text, dir.empty() ? "." : dir)) {
      if (item.kind == CommandItem::Kind::kOffload && item.key == "tso") tso_ = item.value == "on";
    }
  }

  // `%{ }%`: assertions over the socket under test's TCP_INFO.
  void RunCodeBlock(const CodeSpec& code) {
    if (socket_under_test_ < 0 || fds_.count(socket_under_test_) == 0) {
      Fail("a %{ }% block needs a socket under test (the last socket() or accept())");
    }
    Call c;
    c.op = Op::kTcpInfo;
    c.handle = fds_[socket_under_test_].handle;
    CallResult r = backend_.Execute(c);
    if (r.ret != 0) Fail("getsockopt(TCP_INFO) failed: " + ErrnoName(r.err));
    std::map<std::string, int64_t> vars = r.info;
    for (const char* k : {"TCP_CA_Open", "TCP_CA_Disorder", "TCP_CA_CWR", "TCP_CA_Recovery",
                          "TCP_CA_Loss", "TCP_INFINITE_SSTHRESH"}) {
      vars[k] = Symbols().at(k);
    }
    // linux/tcp.h's tcpi_options bits.
    vars["TCPI_OPT_TIMESTAMPS"] = 1;
    vars["TCPI_OPT_SACK"] = 2;
    vars["TCPI_OPT_WSCALE"] = 4;
    vars["TCPI_OPT_ECN"] = 8;
    vars["TCPI_OPT_ECN_SEEN"] = 16;
    vars["TCPI_OPT_SYN_DATA"] = 32;
    const CodeResult cr = RunCode(code.text, vars, py_globals_);
    if (cr.kind == CodeResult::Kind::kUnsupported) {
      // A tcpi_ field the backend does not report is a missing feature, not a difference.
      Unsupported(cr.message);
    }
    if (cr.kind == CodeResult::Kind::kAssertFailed) Fail("TCP_INFO " + cr.message);
    Log(NowUs(), "%{ " + code.text.substr(code.text.find_first_not_of(" \t\n"), 60) + " }% ok");
  }

  // Sleeps until script time `at_us`; any packet sent meanwhile is unexpected.
  void WaitUntil(int64_t at_us) {
    if (opt_.packetdrill) {
      // packetdrill reads the system's packets only when the script expects one: a packet
      // sent meanwhile waits (with its send time) for the next outbound line, which then
      // compares it. Our own scripts fail at once instead.
      if (!queued_.empty() && ev_ == nullptr) return;
      for (;;) {
        auto bytes = backend_.ReadPacket(start_ns_ + (pending_ ? std::min(at_us, pending_->hi_us) : at_us) * 1000);
        if (pending_) TryPending();
        if (bytes) {
          queued_.emplace_back(std::move(*bytes), NowUs());
          continue;
        }
        if (NowUs() >= at_us) return;
      }
    }
    for (;;) {
      auto bytes = Read(at_us);
      if (!bytes) return;
      std::string why;
      auto pkt = Decode(*bytes, &why);
      if (!pkt) {
        Log(NowUs(), "(ignored non-TCP packet: " + why + ")");
        continue;
      }
      const std::string desc = FormatActual(*pkt);
      std::string msg = "unexpected outbound packet at " + Secs(NowUs()) + ": " + desc;
      if (ev_ != nullptr) {
        msg += "\n  (while waiting to run line " + std::to_string(ev_->line) + " at " +
               Secs(at_us) + ": " + ev_->source + ")";
      } else {
        msg = "after the last event: " + msg;
      }
      Fail(msg);
    }
  }

  // ---------------------------------------------------------------- flows and formatting
  uint16_t DefaultRemotePort() const { return active_ ? kServerPort : kDefaultRemotePort; }

  Flow& FlowFor(const PacketSpec& p) {
    const uint16_t port = p.remote_port.value_or(DefaultRemotePort());
    auto [it, inserted] = flows_.try_emplace(port);
    if (inserted) {
      it->second.remote_port = port;
      it->second.local_port = port == kServerPort ? 0 : kServerPort;
    }
    return it->second;
  }

  Flow* FlowForActual(const TcpPacket& t) {
    auto it = flows_.find(t.dst_port);
    return it == flows_.end() ? nullptr : &it->second;
  }

  static std::string OptionsString(const std::vector<TcpOption>& opts, bool sack_relative,
                                   uint32_t sack_base) {
    std::string s = "<";
    for (size_t i = 0; i < opts.size(); ++i) {
      const TcpOption& o = opts[i];
      if (i != 0) s += ",";
      switch (o.kind) {
        case TcpOption::Kind::kEol: s += "eol"; break;
        case TcpOption::Kind::kNop: s += "nop"; break;
        case TcpOption::Kind::kMss: s += "mss " + std::to_string(o.a); break;
        case TcpOption::Kind::kWscale: s += "wscale " + std::to_string(o.a); break;
        case TcpOption::Kind::kSackOk: s += "sackOK"; break;
        case TcpOption::Kind::kSack:
          s += "sack";
          for (const SackBlock& b : o.blocks) {
            const uint32_t base = sack_relative ? sack_base : 0;
            s += ' ';  // piece by piece: see PollBits
            s += std::to_string(b.left - base);
            s += ':';
            s += std::to_string(b.right - base);
          }
          break;
        case TcpOption::Kind::kTimestamp:
          s += "TS val " + std::to_string(o.a) + " ecr " + std::to_string(o.b);
          break;
        case TcpOption::Kind::kOther:
          s += o.a == 34 ? "FO" : o.a == 254 ? "FOEXP" : "option-kind-" + std::to_string(o.a);
          if (o.a == 34 || o.a == 254) {
            s += ' ';
            for (size_t k = o.a == 254 ? 2 : 0; k < o.data.size(); ++k) {
              static const char* const kHex = "0123456789abcdef";
              s += kHex[o.data[k] >> 4];
              s += kHex[o.data[k] & 15];
            }
          }
          break;
      }
    }
    return s + ">";
  }

  static std::string EcnName(uint8_t ecn) {
    static const char* const kNames[] = {"noecn", "ect1", "ect0", "ce"};
    return kNames[ecn & 3];
  }

  static std::string FormatSpec(const PacketSpec& p) {
    std::string s = p.inbound ? "< " : "> ";
    if (p.icmp) {
      return s + "icmp " + p.icmp_type + (p.icmp_code.empty() ? "" : " " + p.icmp_code) +
             (p.icmp_mtu ? " mtu " + std::to_string(*p.icmp_mtu) : "");
    }
    if (p.ecn) s += "[" + EcnName(*p.ecn) + "] ";
    if (p.ecn_ect01) s += "[ect01] ";
    if (p.tos) s += "[tos " + std::to_string(*p.tos) + "] ";
    if (p.remote_port) s += "[port " + std::to_string(*p.remote_port) + "] ";
    s += FlagsString(p.flags) + " " + std::to_string(p.seq) + ":" +
         std::to_string(p.seq + p.len) + "(" + std::to_string(p.len) + ")";
    if (p.ack) s += " ack " + std::to_string(*p.ack);
    if (p.win) s += " win " + std::to_string(*p.win);
    if (p.urg) s += " urg " + std::to_string(*p.urg);
    if (p.options_any) s += " <...>";
    else if (p.options_given) s += " " + OptionsString(p.options, false, 0);
    return s;
  }

  std::string FormatActual(const TcpPacket& t) {
    Flow* f = FlowForActual(t);
    std::string s = "> ";
    if (f == nullptr || f->remote_port != DefaultRemotePort()) {
      s += "[port " + std::to_string(t.dst_port) + "] ";
    }
    if (t.src_addr != kLocalAddr || t.dst_addr != kRemoteAddr) {
      s += "{" + AddrString(t.src_addr) + " -> " + AddrString(t.dst_addr) + "} ";
    }
    if ((t.tos & 0xfc) != 0) s += "[tos " + std::to_string(t.tos) + "] ";
    else if ((t.tos & 3) != 0) s += "[" + EcnName(t.tos) + "] ";
    const bool rel = f != nullptr && f->sut_isn.has_value() && (t.flags & tcpflag::kSyn) == 0;
    const uint32_t base = rel ? *f->sut_isn : (t.flags & tcpflag::kSyn) ? t.seq : 0;
    s += FlagsString(t.flags) + " " + std::to_string(t.seq - base) + ":" +
         std::to_string(t.seq - base + t.payload_len) + "(" + std::to_string(t.payload_len) +
         ")";
    const uint32_t risn = f != nullptr ? f->remote_isn() : kRemoteIsn;
    if (t.flags & tcpflag::kAck) s += " ack " + std::to_string(t.ack - risn);
    s += " win " + std::to_string(t.window);
    if (t.flags & tcpflag::kUrg) s += " urg " + std::to_string(t.urgent);
    if (!t.options.empty()) s += " " + OptionsString(t.options, true, risn);
    if (f != nullptr && f->local_port != 0 && t.src_port != f->local_port) {
      s += " (from port " + std::to_string(t.src_port) + ")";
    }
    return s;
  }

  // TSO: the kernel under packetdrill hands its device one segment of several MSS where a
  // stack without offload sends them one by one at the same instant. Segments that continue
  // each other with the same header fields are joined up to the length the script expects,
  // as the wire would carry them after segmentation either way.
  void MergeSegments(TcpPacket& t, uint32_t want) {
    auto ts_free = [](std::vector<TcpOption> o) {
      for (TcpOption& x : o) {
        if (x.kind == TcpOption::Kind::kTimestamp) x.a = 0;
      }
      return o;
    };
    while (t.payload_len > 0 && t.payload_len < want && (t.flags & tcpflag::kFin) == 0) {
      auto more = Read(NowUs());
      if (!more) return;
      std::string why;
      auto q = Decode(*more, &why);
      const bool joins = q && q->src_port == t.src_port && q->dst_port == t.dst_port &&
                         q->seq == t.seq + t.payload_len && q->ack == t.ack &&
                         (q->flags & ~(tcpflag::kPsh | tcpflag::kFin)) ==
                             (t.flags & ~tcpflag::kPsh) &&
                         q->window == t.window && q->tos == t.tos &&
                         ts_free(q->options) == ts_free(t.options) &&
                         t.payload_len + q->payload_len <= want;
      if (!joins) {
        PushBack(std::move(*more));
        return;
      }
      t.payload_len += q->payload_len;
      t.flags = static_cast<uint8_t>(t.flags | (q->flags & (tcpflag::kPsh | tcpflag::kFin)));
    }
  }

  static int IcmpCode(const std::string& type, const std::string& code, int* icmp_type) {
    *icmp_type = -1;
    if (type == "unreachable" || type == "dest_unreachable") {
      *icmp_type = 3;
      static const char* const kCodes[] = {
          "net_unreachable", "host_unreachable", "protocol_unreachable", "port_unreachable",
          "frag_needed", "source_route_failed", "net_unknown", "host_unknown",
          "source_host_isolated", "net_prohibited", "host_prohibited", "net_unreachable_for_tos",
          "host_unreachable_for_tos", "packet_filtered", "precedence_violation",
          "precedence_cutoff"};
      for (int i = 0; i < 16; ++i) {
        if (code == kCodes[i]) return i;
      }
      return code.empty() ? 0 : -1;
    }
    if (type == "time_exceeded") {
      *icmp_type = 11;
      return code.empty() || code == "ttl_exceeded" ? 0 : code == "fragment_reassembly" ? 1 : -1;
    }
    if (type == "source_quench") {
      *icmp_type = 4;
      return code.empty() ? 0 : -1;
    }
    return -1;
  }

  // `< icmp unreachable frag_needed mtu 800`: an ICMP error from the peer's side quoting the
  // IP header and first 8 bytes of the system's last segment (RFC 792).
  void InjectIcmp(const PacketSpec& p) {
    Flow& f = FlowFor(p);
    int type = -1;
    const int code = IcmpCode(p.icmp_type, p.icmp_code, &type);
    if (type < 0 || code < 0) {
      Unsupported("icmp " + p.icmp_type + " " + p.icmp_code);
    }
    if (!f.sut_isn || f.local_port == 0) Fail("an icmp error before the connection exists");
    TcpPacket q;
    q.src_addr = kLocalAddr;
    q.dst_addr = kRemoteAddr;
    q.src_port = f.local_port;
    q.dst_port = f.remote_port;
    q.seq = p.icmp_quoted_seq ? *f.sut_isn + *p.icmp_quoted_seq : f.last_seq.value_or(*f.sut_isn);
    q.flags = tcpflag::kAck;
    std::vector<uint8_t> quoted = Encode(q);
    quoted.resize(28);
    std::vector<uint8_t> b(20 + 8 + quoted.size(), 0);
    b[0] = 0x45;
    b[2] = static_cast<uint8_t>(b.size() >> 8);
    b[3] = static_cast<uint8_t>(b.size());
    b[8] = 64;
    b[9] = 1;  // ICMP
    for (int i = 0; i < 4; ++i) {
      b[12 + i] = static_cast<uint8_t>(kRemoteAddr >> (24 - 8 * i));
      b[16 + i] = static_cast<uint8_t>(kLocalAddr >> (24 - 8 * i));
    }
    b[20] = static_cast<uint8_t>(type);
    b[21] = static_cast<uint8_t>(code);
    if (p.icmp_mtu) {  // RFC 1191: next-hop MTU in the low 16 bits of the second word
      b[26] = static_cast<uint8_t>(*p.icmp_mtu >> 8);
      b[27] = static_cast<uint8_t>(*p.icmp_mtu);
    }
    std::copy(quoted.begin(), quoted.end(), b.begin() + 28);
    auto sum = [&](size_t from, size_t len) {
      uint32_t acc = 0;
      for (size_t i = 0; i + 1 < len; i += 2) acc += (uint32_t{b[from + i]} << 8) | b[from + i + 1];
      while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
      return static_cast<uint16_t>(~acc & 0xffff);
    };
    const uint16_t ip = sum(0, 20);
    b[10] = static_cast<uint8_t>(ip >> 8);
    b[11] = static_cast<uint8_t>(ip);
    const uint16_t ic = sum(20, b.size() - 20);
    b[22] = static_cast<uint8_t>(ic >> 8);
    b[23] = static_cast<uint8_t>(ic);
    Log(NowUs(), FormatSpec(p));
    backend_.Inject(b);
  }

  // ---------------------------------------------------------------- packets
  void InjectPacket(const PacketSpec& p) {
    if (p.icmp) return InjectIcmp(p);
    Flow& f = FlowFor(p);
    if (f.local_port == 0) {
      Fail("inbound packet on a connection whose local port is not known yet (the system "
           "under test has not sent its SYN)");
    }
    TcpPacket t;
    t.src_addr = kRemoteAddr;
    t.dst_addr = kLocalAddr;
    t.src_port = f.remote_port;
    t.dst_port = f.local_port;
    t.flags = p.flags;
    if (opt_.packetdrill && (p.flags & tcpflag::kSyn) != 0 && !f.remote_syn_seen) {
      f.remote_base = p.seq;
      f.remote_syn_seen = true;
    }
    t.seq = f.remote_isn() + p.seq;
    t.payload_len = p.len;
    t.window = static_cast<uint16_t>(p.win.value_or(65535));
    t.tos = p.tos ? *p.tos : p.ecn.value_or(0);
    t.urgent = p.urg.value_or(0);
    if (p.ecn_ect01) Fail("[ect01] is only for outbound packets");
    auto need_isn = [&]() -> uint32_t {
      if (!f.sut_isn) {
        Fail("an inbound acknowledgment or SACK block refers to the system's ISN, which is "
             "not known yet");
      }
      return *f.sut_isn;
    };
    if (p.flags & tcpflag::kAck) {
      if (!p.ack) Fail("an inbound packet with '.' (ACK) needs 'ack N'");
      t.ack = need_isn() + *p.ack;
    } else if (p.ack) {
      Fail("'ack N' given without the '.' flag");
    }
    if (p.options_any) Fail("'<...>' is only allowed on outbound packets");
    for (TcpOption o : p.options) {
      if (o.kind == TcpOption::Kind::kTimestamp && o.b != 0) {
        if (opt_.packetdrill && f.ts_offset) {
          o.b += *f.ts_offset;
        } else if (f.last_tsval) {
          o.b = *f.last_tsval;
        }
      }
      if (o.kind == TcpOption::Kind::kSack) {
        for (SackBlock& b : o.blocks) {
          b.left += need_isn();
          b.right += need_isn();
        }
      }
      t.options.push_back(o);
    }
    Log(NowUs(), FormatSpec(p));
    backend_.Inject(Encode(t));
  }

  void ExpectPacket(const Event& ev, const PacketSpec& p) {
    int64_t lo = 0;
    int64_t hi = 0;
    switch (ev.time.kind) {
      case TimeSpec::Kind::kAbsolute: lo = ev.time.lo_us; hi = ev.time.hi_us; break;
      case TimeSpec::Kind::kRelative:
        lo = prev_us_ + ev.time.lo_us;
        hi = prev_us_ + ev.time.hi_us;
        break;
      case TimeSpec::Kind::kAny: lo = prev_us_; hi = prev_us_ + 200 * 1000000LL; break;
    }
    const int64_t tol = opt_.tolerance_us +
                        static_cast<int64_t>(opt_.tolerance_fraction *
                                             static_cast<double>(std::max<int64_t>(0, lo - prev_us_)));
    const std::string expected = Secs(lo) + " " + FormatSpec(p);
    std::optional<TcpPacket> got;
    while (!got) {
      auto bytes = Read(hi + tol);
      if (!bytes) {
        Fail("expected packet was not sent by " + Secs(hi + tol) + "\n  expected: " + expected +
             "\n  actual:   (nothing)");
      }
      std::string why;
      got = Decode(*bytes, &why);
      if (!got) Log(NowUs(), "(ignored non-TCP packet: " + why + ")");
    }
    TcpPacket t = *got;
    const int64_t at = last_read_us_;
    if (opt_.packetdrill && tso_) MergeSegments(t, p.len);
    Flow& f = FlowFor(p);
    if (f.local_port == 0 && t.dst_port == f.remote_port) f.local_port = t.src_port;
    // A new active open on the same peer port (a second socket) comes from a new local port.
    if (opt_.packetdrill && (t.flags & (tcpflag::kSyn | tcpflag::kAck)) == tcpflag::kSyn &&
        (p.flags & tcpflag::kSyn) && t.dst_port == f.remote_port) {
      f.local_port = t.src_port;
    }
    if ((t.flags & tcpflag::kSyn) && (p.flags & tcpflag::kSyn) && t.dst_port == f.remote_port) {
      f.sut_isn = t.seq - p.seq;  // (re)learn the system's ISN from every SYN it sends
    }
    std::string why;
    auto mismatch = [&](const std::string& w) {
      if (why.empty()) why = w;
    };
    if (t.src_addr != kLocalAddr || t.dst_addr != kRemoteAddr) mismatch("addresses");
    if (t.dst_port != f.remote_port || t.src_port != f.local_port) mismatch("ports");
    // PSH is the sender's choice (RFC 9293 3.9.1.2) and Linux sets it on internal buffer
    // boundaries, so it is not compared on outbound segments.
    if ((t.flags & ~tcpflag::kPsh) != (p.flags & ~tcpflag::kPsh)) mismatch("flags");
    // Before the system has sent a SYN on this connection its sequence numbers are absolute
    // (e.g. the RST answering a segment for no connection).
    const uint32_t base = f.sut_isn.value_or(0);
    if (t.seq - base != p.seq) mismatch("sequence number");
    if (t.payload_len != p.len) mismatch("payload length");
    if (p.ack && ((t.flags & tcpflag::kAck) == 0 || t.ack - f.remote_isn() != *p.ack)) {
      mismatch("ack");
    }
    if (p.win && t.window != *p.win) mismatch("window");
    if (p.ecn && (t.tos & 3) != *p.ecn) mismatch("ECN codepoint");
    if (p.ecn_ect01 && ((t.tos & 3) == 0 || (t.tos & 3) == 3)) mismatch("ECN codepoint");
    if (p.tos && t.tos != *p.tos) mismatch("TOS byte");
    if (p.urg && t.urgent != *p.urg) mismatch("urgent pointer");
    // packetdrill checks the options of every outbound packet: none written means none sent.
    if ((p.options_given || opt_.packetdrill) && !p.options_any) {
      bool same = p.options.size() == t.options.size();
      for (size_t i = 0; same && i < p.options.size(); ++i) {
        TcpOption want = p.options[i];
        const TcpOption& have = t.options[i];
        if (want.kind == TcpOption::Kind::kTimestamp) want.a = have.a;  // TS val: not checked
        if (want.kind == TcpOption::Kind::kSack) {
          for (SackBlock& b : want.blocks) {
            b.left += f.remote_isn();
            b.right += f.remote_isn();
          }
        }
        same = want == have;
      }
      if (!same) mismatch("TCP options");
    }
    for (const TcpOption& o : t.options) {
      if (o.kind == TcpOption::Kind::kTimestamp) f.last_tsval = o.a;
    }
    if (!f.ts_offset || (t.flags & tcpflag::kSyn) != 0) {
      for (size_t i = 0; i < t.options.size() && i < p.options.size(); ++i) {
        if (t.options[i].kind == TcpOption::Kind::kTimestamp &&
            p.options[i].kind == TcpOption::Kind::kTimestamp) {
          f.ts_offset = t.options[i].a - p.options[i].a;
        }
      }
    }
    f.last_seq = t.seq;
    const std::string actual = Secs(at) + " " + FormatActual(t);
    if (!why.empty()) {
      Fail("outbound packet differs in " + why + "\n  expected: " + expected +
           "\n  actual:   " + actual);
    }
    if (at < lo - tol) {
      Fail("outbound packet sent too early (tolerance " + Secs(tol) + ")\n  expected: " +
           expected + (hi != lo ? " ~ " + Secs(hi) : "") + "\n  actual:   " + actual);
    }
    Log(at, FormatActual(t));
    prev_us_ = at;
  }

  // ---------------------------------------------------------------- syscalls
  int64_t Eval(const Expr& e, const char* what) const {
    if (e.kind != Expr::Kind::kOr) Fail(std::string("expected a number or symbols for ") + what);
    int64_t v = 0;
    for (const std::string& term : e.terms) {
      auto it = Symbols().find(term);
      if (it != Symbols().end()) {
        v |= it->second;
        continue;
      }
      auto er = Errnos().find(term);
      if (er != Errnos().end()) {
        v |= er->second;
        continue;
      }
      char* end = nullptr;
      const long long n = std::strtoll(term.c_str(), &end, 0);
      if (term.empty() || *end != '\0') Fail("unknown symbol '" + term + "' in " + what);
      v |= n;
    }
    return v;
  }

  // `[v]` or `v`: an int option value.
  int64_t EvalIntArg(const Expr& e, const char* what) const {
    if (e.kind == Expr::Kind::kList && e.items.size() == 1) return Eval(e.items[0], what);
    return Eval(e, what);
  }

  const Expr* Field(const Expr& e, const std::string& name) const {
    for (const auto& [n, v] : e.fields) {
      if (n == name) return &v;
    }
    return nullptr;
  }

  void Args(const SyscallSpec& s, size_t n) const {
    if (s.args.size() != n) {
      Fail(s.name + "() takes " + std::to_string(n) + " arguments here, got " +
           std::to_string(s.args.size()));
    }
  }

  FdState& Fd(const SyscallSpec& s, size_t idx = 0) {
    const int fd = static_cast<int>(Eval(s.args.at(idx), "a file descriptor"));
    auto it = fds_.find(fd);
    if (it == fds_.end()) Fail(s.name + "() on fd " + std::to_string(fd) + ", which the script never opened");
    return it->second;
  }

  int LowestFreeFd() const {
    int fd = 3;
    while (fds_.count(fd) != 0) ++fd;
    return fd;
  }

  void CheckResult(const SyscallSpec& s, const CallResult& r) const {
    if (r.ret == -1 && r.err == ENOSYS && s.errno_name != "ENOSYS") {
      Unsupported(s.name + "() as the script calls it, on the " + backend_.name() + " backend");
    }
    if (s.result_any) return;
    const bool ok = r.ret == s.result &&
                    (r.ret != -1 || s.errno_name.empty() || Errnos().at(s.errno_name) == r.err ||
                     (r.err == EAGAIN && s.errno_name == "EWOULDBLOCK"));
    if (ok) return;
    std::string got = std::to_string(r.ret);
    if (r.ret == -1) got += " " + ErrnoName(r.err) + " (" + std::strerror(r.err) + ")";
    std::string want = std::to_string(s.result);
    if (!s.errno_name.empty()) want += " " + s.errno_name;
    Fail(s.name + "() returned " + got + ", expected " + want);
  }

  // Runs a call; on a blocking socket a call that would block either fails the script or,
  // with an end time (`+0...0.1 read(...)`), becomes the pending call. Returns false then.
  bool ExecOrPend(const Call& c, const SyscallSpec& s, bool blocking, bool new_fd,
                  CallResult* out) {
    CallResult r = backend_.Execute(c);
    const bool would_block = r.ret == -1 && (r.err == EAGAIN || r.err == EINPROGRESS);
    const bool partial_write = c.op == Op::kWrite && r.ret >= 0 && static_cast<size_t>(r.ret) < c.len;
    if (blocking && (would_block || partial_write)) {
      if (!ev_->time.end_us) {
        Fail("blocking " + s.name + "() would block here (" + ErrnoName(r.err) +
             "); write its end time (+0...0.1 " + s.name + "(...)) or make the socket "
             "non-blocking");
      }
      if (pending_) Fail("a second blocking call while " + std::get<SyscallSpec>(pending_->event->what).name + "() is pending");
      PendingCall pc;
      pc.call = c;
      pc.event = ev_;
      pc.is_connect = c.op == Op::kConnect;
      pc.new_fd = new_fd;
      pc.done = partial_write ? static_cast<size_t>(r.ret) : 0;
      EndWindow(&pc.lo_us, &pc.hi_us);
      pending_ = pc;
      return false;
    }
    if (ev_->time.end_us) {
      int64_t lo = 0, hi = 0;
      EndWindow(&lo, &hi);
      if (NowUs() < lo) {
        Fail(s.name + "() returned at once, but the script says it blocks until " +
             Secs(lo + (hi - lo) / 2));
      }
    }
    *out = r;
    return true;
  }

  // The window a blocking call's return must fall in: its end time, with the tolerance.
  void EndWindow(int64_t* lo, int64_t* hi) const {
    const int64_t base = ev_->time.kind == TimeSpec::Kind::kRelative ? prev_us_ - ev_->time.lo_us : 0;
    const int64_t end = base + *ev_->time.end_us;
    const int64_t tol = opt_.tolerance_us +
                        static_cast<int64_t>(opt_.tolerance_fraction *
                                             static_cast<double>(std::max<int64_t>(0, end - prev_us_)));
    *lo = end - tol;
    *hi = end + tol;
  }

  // The total length of a msghdr's msg_iov, checking that it has no control data we cannot
  // express.
  size_t IovLen(const Expr& msg, bool allow_control) const {
    if (msg.kind != Expr::Kind::kStruct) Fail("expected a msghdr {msg_name(...)=..., msg_iov(1)=[{..., N}], msg_flags=0}");
    const Expr* iov = Field(msg, "msg_iov");
    if (iov == nullptr || iov->kind != Expr::Kind::kList) Fail("the msghdr needs msg_iov(N)=[{..., len}]");
    size_t total = 0;
    for (const Expr& v : iov->items) {
      if (v.kind != Expr::Kind::kStruct || v.fields.size() != 2) Fail("an iovec looks like {..., 1000}");
      total += static_cast<size_t>(Eval(v.fields[1].second, "iov_len"));
    }
    const Expr* control = Field(msg, "msg_control");
    if (control != nullptr && !(control->kind == Expr::Kind::kList && control->items.empty()) &&
        control->kind != Expr::Kind::kEllipsis && !allow_control) {
      Unsupported("ancillary data (msg_control) in " + std::string("recvmsg/sendmsg"));
    }
    return total;
  }

  void DoSyscall(const SyscallSpec& s) {
    Log(NowUs(), ev_->source.substr(ev_->source.find_first_of(" \t") + 1));
    if (!s.errno_name.empty() && Errnos().count(s.errno_name) == 0) {
      Fail("unknown errno name '" + s.errno_name + "'");
    }
    Call c;
    const std::string& n = s.name;
    static const char* const kKnown[] = {
        "socket", "fcntl", "poll", "bind", "listen", "accept", "connect", "read", "recv",
        "write", "send", "close", "shutdown", "setsockopt", "getsockopt", "sendto", "sendmsg",
        "recvmsg", "recvfrom", "ioctl", "epoll_create", "epoll_create1", "epoll_ctl",
        "epoll_wait"};
    bool known = false;
    for (const char* k : kKnown) known = known || n == k;
    if (!known) Unsupported("system call '" + n + "'");
    if (n == "socket") {
      Args(s, 3);
      const int64_t type = Eval(s.args[1], "socket type");
      const bool any_domain = s.args[0].kind == Expr::Kind::kEllipsis;
      if ((!any_domain && Eval(s.args[0], "domain") != AF_INET) || (type & ~int64_t{SOCK_NONBLOCK}) != SOCK_STREAM) {
        Unsupported("only socket(AF_INET, SOCK_STREAM[|SOCK_NONBLOCK], IPPROTO_TCP) is supported");
      }
      c.op = Op::kSocket;
      CallResult r = backend_.Execute(c);
      NewFd(s, r, (type & SOCK_NONBLOCK) != 0);
      return;
    }
    if (n == "epoll_create" || n == "epoll_create1") {
      Args(s, 1);
      c.op = Op::kEpollCreate;
      CallResult r = backend_.Execute(c);
      const int before = LowestFreeFd();
      NewFd(s, r, true);
      if (r.ret >= 0 && fds_.count(before) != 0) fds_[before].epoll = true;
      return;
    }
    if (n == "fcntl") {
      if (s.args.size() < 2) Fail("fcntl() needs (fd, F_GETFL) or (fd, F_SETFL, flags)");
      FdState& fd = Fd(s);
      const int64_t cmd = Eval(s.args[1], "fcntl command");
      CallResult r;
      if (cmd == F_SETFL && s.args.size() == 3) {
        const int64_t flags = Eval(s.args[2], "fcntl flags");
        if ((flags & ~int64_t{O_NONBLOCK | O_RDWR}) != 0) Unsupported("fcntl(F_SETFL) flags other than O_RDWR|O_NONBLOCK");
        fd.nonblock = (flags & O_NONBLOCK) != 0;
      } else if (cmd == F_GETFL && s.args.size() == 2) {
        r.ret = O_RDWR | (fd.nonblock ? O_NONBLOCK : 0);
      } else {
        Unsupported("fcntl() commands other than F_GETFL and F_SETFL");
      }
      CheckResult(s, r);
      return;
    }
    if (n == "poll") {
      Args(s, 3);
      if (s.args[0].kind != Expr::Kind::kList) Fail("poll() needs a list [{fd=N, events=...}]");
      const int64_t timeout = Eval(s.args[2], "poll timeout");
      if (timeout != 0 && !ev_->time.end_us) Unsupported("poll() with a timeout but no end time");
      c.op = Op::kPoll;
      std::vector<int> script_fds;
      for (const Expr& e : s.args[0].items) {
        const Expr* fd = Field(e, "fd");
        const Expr* events = Field(e, "events");
        if (e.kind != Expr::Kind::kStruct || fd == nullptr || events == nullptr) {
          Fail("poll() entries look like {fd=4, events=POLLIN}");
        }
        const int sfd = static_cast<int>(Eval(*fd, "fd"));
        auto it = fds_.find(sfd);
        if (it == fds_.end()) Fail("poll() on unknown fd " + std::to_string(sfd));
        script_fds.push_back(sfd);
        c.poll.push_back({it->second.handle, static_cast<int16_t>(Eval(*events, "events")), 0});
      }
      CallResult r = backend_.Execute(c);
      if (timeout != 0 && r.ret == 0) {
        // Waits for readiness until the end time, as the blocking poll would.
        int64_t lo = 0, hi = 0;
        EndWindow(&lo, &hi);
        const int64_t limit = std::min<int64_t>(hi, prev_us_ + (timeout < 0 ? 200000000 : timeout * 1000));
        while (r.ret == 0 && NowUs() < limit) {
          auto bytes = Read(std::min<int64_t>(limit, NowUs() + 1000));
          if (bytes) PushBack(std::move(*bytes));
          r = backend_.Execute(c);
          if (bytes) break;
        }
        if (NowUs() < lo && r.ret != 0) Fail("poll() returned at " + Secs(NowUs()) + ", before its end time");
      }
      CheckResult(s, r);
      const Expr* detail = s.out_detail ? &*s.out_detail : nullptr;
      std::vector<std::pair<int, int64_t>> want;
      if (detail != nullptr) {
        for (const Expr& e : detail->items) {
          const Expr* fd = Field(e, "fd");
          const Expr* rev = Field(e, "revents");
          if (e.kind != Expr::Kind::kStruct || fd == nullptr || rev == nullptr) {
            Fail("poll() results look like ([{fd=4, revents=POLLIN}])");
          }
          want.emplace_back(static_cast<int>(Eval(*fd, "fd")), Eval(*rev, "revents"));
        }
      } else {
        for (const Expr& e : s.args[0].items) {  // packetdrill: revents=... inside the entry
          const Expr* rev = Field(e, "revents");
          if (rev != nullptr) want.emplace_back(static_cast<int>(Eval(*Field(e, "fd"), "fd")), Eval(*rev, "revents"));
        }
      }
      for (const auto& [sfd, wanted] : want) {
        int16_t got = 0;
        for (size_t i = 0; i < script_fds.size() && i < r.poll.size(); ++i) {
          if (script_fds[i] == sfd) got = r.poll[i].revents;
        }
        if (got != wanted) {
          Fail("poll() revents for fd " + std::to_string(sfd) + " are " + PollBits(got) +
               ", expected " + PollBits(wanted));
        }
      }
      return;
    }
    FdState& fd = Fd(s);
    c.handle = fd.handle;
    const bool blocking = !fd.nonblock;
    bool new_fd = false;
    if (n == "epoll_ctl") {
      Args(s, 4);
      if (!fd.epoll) Fail("epoll_ctl() on fd that epoll_create() did not return");
      c.op = Op::kEpollCtl;
      c.arg = static_cast<int>(Eval(s.args[1], "epoll op"));
      const int target = static_cast<int>(Eval(s.args[2], "fd"));
      if (fds_.count(target) == 0) Fail("epoll_ctl() on unknown fd " + std::to_string(target));
      c.value = fds_[target].handle;
      if (s.args[3].kind == Expr::Kind::kStruct) {
        const Expr* ev = Field(s.args[3], "events");
        if (ev == nullptr) Fail("epoll_ctl() takes {events=..., fd=N}");
        c.flags = static_cast<int>(Eval(*ev, "events"));
      }
      CallResult r = backend_.Execute(c);
      CheckResult(s, r);
      return;
    }
    if (n == "epoll_wait") {
      Args(s, 4);
      if (!fd.epoll) Fail("epoll_wait() on fd that epoll_create() did not return");
      c.op = Op::kEpollWait;
      c.len = static_cast<size_t>(Eval(s.args[2], "maxevents"));
      if (Eval(s.args[3], "timeout") != 0 && !ev_->time.end_us) Unsupported("epoll_wait() with a timeout but no end time");
      CallResult r = backend_.Execute(c);
      if (r.ret == 0 && ev_->time.end_us && Eval(s.args[3], "timeout") != 0) {
        int64_t lo = 0, hi = 0;
        EndWindow(&lo, &hi);
        while (r.ret == 0 && NowUs() < hi) {
          auto bytes = Read(std::min<int64_t>(hi, NowUs() + 1000));
          if (bytes) PushBack(std::move(*bytes));
          r = backend_.Execute(c);
          if (bytes) break;
        }
      }
      CheckResult(s, r);
      const Expr& e = s.args[1];
      if (e.kind == Expr::Kind::kStruct && r.ret > 0) {
        const Expr* ev = Field(e, "events");
        const Expr* efd = Field(e, "fd");
        if (ev != nullptr) {
          const int64_t want = Eval(*ev, "events");
          if (r.poll.empty() || r.poll[0].revents != static_cast<int16_t>(want & 0xffff)) {
            Fail("epoll_wait() events are " + PollBits(r.poll.empty() ? 0 : r.poll[0].revents) +
                 ", expected " + PollBits(want));
          }
        }
        if (efd != nullptr && !r.poll.empty()) {
          const int want_fd = static_cast<int>(Eval(*efd, "fd"));
          if (fds_.count(want_fd) == 0 || fds_[want_fd].handle != r.poll[0].handle) {
            Fail("epoll_wait() reported another fd than " + std::to_string(want_fd));
          }
        }
      }
      return;
    }
    if (n == "bind") {
      Args(s, 3);
      c.op = Op::kBind;
      c.addr = kLocalAddr;
      c.port = kServerPort;
    } else if (n == "listen") {
      Args(s, 2);
      c.op = Op::kListen;
      c.arg = static_cast<int>(Eval(s.args[1], "backlog"));
    } else if (n == "accept") {
      Args(s, 3);
      c.op = Op::kAccept;
      new_fd = true;
    } else if (n == "connect") {
      Args(s, 3);
      c.op = Op::kConnect;
      c.addr = kRemoteAddr;
      c.port = kServerPort;
      active_ = true;
      if (blocking && !ev_->time.end_us) Fail("blocking connect() needs an end time (+0...0.1 connect(...)) or O_NONBLOCK");
    } else if (n == "read" || n == "recv" || n == "recvfrom") {
      Args(s, n == "read" ? 3 : n == "recv" ? 4 : 6);
      c.op = Op::kRead;
      c.len = static_cast<size_t>(Eval(s.args[2], "length"));
      if (n != "read") c.flags = static_cast<int>(Eval(s.args[3], "flags"));
    } else if (n == "recvmsg") {
      Args(s, 3);
      c.op = Op::kRead;
      c.len = IovLen(s.args[1], false);
      c.flags = static_cast<int>(Eval(s.args[2], "flags"));
    } else if (n == "write" || n == "send" || n == "sendto") {
      Args(s, n == "write" ? 3 : n == "send" ? 4 : 6);
      c.op = Op::kWrite;
      c.len = static_cast<size_t>(Eval(s.args[2], "length"));
      if (n != "write") c.flags = static_cast<int>(Eval(s.args[3], "flags"));
      if (s.args[1].kind == Expr::Kind::kOr) Unsupported(n + "() with a NULL buffer");
      if (n == "sendto" && s.args[4].kind == Expr::Kind::kEllipsis) {
        c.addr = kRemoteAddr;  // sendto(fd, ..., len, flags, ..., ...): to the peer (Fast Open)
        c.port = kServerPort;
        if (c.flags & MSG_FASTOPEN) active_ = true;
      }
    } else if (n == "sendmsg") {
      Args(s, 3);
      c.op = Op::kWrite;
      c.len = IovLen(s.args[1], false);
      c.flags = static_cast<int>(Eval(s.args[2], "flags"));
    } else if (n == "ioctl") {
      Args(s, 3);
      c.op = Op::kIoctl;
      c.arg = static_cast<int>(Eval(s.args[1], "ioctl request"));
      CallResult r = backend_.Execute(c);
      CheckResult(s, r);
      if (r.ret == 0 && s.args[2].kind != Expr::Kind::kEllipsis) {
        const int64_t want = EvalIntArg(s.args[2], "ioctl value");
        if (r.value != want) {
          Fail("ioctl() value is " + std::to_string(r.value) + ", expected " + std::to_string(want));
        }
      }
      return;
    } else if (n == "close") {
      Args(s, 1);
      c.op = Op::kClose;
      CallResult r = backend_.Execute(c);
      CheckResult(s, r);
      fds_.erase(static_cast<int>(Eval(s.args[0], "fd")));
      return;
    } else if (n == "shutdown") {
      Args(s, 2);
      c.op = Op::kShutdown;
      c.arg = static_cast<int>(Eval(s.args[1], "how"));
    } else if (n == "setsockopt" || n == "getsockopt") {
      Args(s, 5);
      c.op = n == "setsockopt" ? Op::kSetsockopt : Op::kGetsockopt;
      c.arg = static_cast<int>(Eval(s.args[1], "level"));
      c.optname = static_cast<int>(Eval(s.args[2], "option name"));
      if (c.arg == IPPROTO_TCP && c.optname == TCP_INFO) Unsupported("getsockopt(TCP_INFO) with a struct (use %{ }%)");
      const Expr& val = s.args[3];
      const bool is_linger = c.arg == SOL_SOCKET && c.optname == SO_LINGER;
      int64_t want = 0;
      int64_t want2 = 0;
      if (val.kind == Expr::Kind::kStruct) {
        const Expr* on = Field(val, "onoff");
        const Expr* lg = Field(val, "linger");
        if (!is_linger || on == nullptr || lg == nullptr) Fail("a {onoff=.., linger=..} value is only for SO_LINGER");
        want = Eval(*on, "onoff");
        want2 = Eval(*lg, "linger");
      } else if (val.kind == Expr::Kind::kString) {
        if (c.op != Op::kSetsockopt) Unsupported("getsockopt() of a string option");
        c.text = val.text;
      } else if (val.kind == Expr::Kind::kList && val.items.empty()) {
        Unsupported(n + "() with an empty value []");
      } else if (val.kind != Expr::Kind::kEllipsis) {
        if (is_linger) Fail("SO_LINGER takes {onoff=N, linger=N}");
        want = EvalIntArg(val, "option value");
      }
      if (c.op == Op::kSetsockopt) {
        if (val.kind == Expr::Kind::kEllipsis) Fail("setsockopt() needs a value");
        c.value = want;
        c.value2 = want2;
        CallResult r = backend_.Execute(c);
        if (r.ret == -1 && r.err == ENOPROTOOPT && s.result == 0 && !s.result_any) {
          Unsupported("setsockopt(" + ArgText(s.args[1]) + ", " + ArgText(s.args[2]) + ") on the " +
                      backend_.name() + " backend");
        }
        CheckResult(s, r);
        return;
      }
      CallResult r = backend_.Execute(c);
      if (r.ret == -1 && r.err == ENOPROTOOPT && s.result == 0 && !s.result_any) {
        Unsupported("getsockopt(" + ArgText(s.args[1]) + ", " + ArgText(s.args[2]) + ") on the " +
                    backend_.name() + " backend");
      }
      CheckResult(s, r);
      // A value written as 0xffffffff is the int -1 the kernel stores.
      const bool same = r.value == want || static_cast<uint32_t>(r.value) == static_cast<uint32_t>(want);
      if (r.ret == 0 && val.kind != Expr::Kind::kEllipsis &&
          (!same || (is_linger && r.value2 != want2))) {
        std::string got = std::to_string(r.value);
        if (c.optname == SO_ERROR && c.arg == SOL_SOCKET) got = r.value == 0 ? "0" : ErrnoName(static_cast<int>(r.value));
        Fail("getsockopt() value is " + got + (is_linger ? "/" + std::to_string(r.value2) : "") +
             ", expected " + std::to_string(want) + (is_linger ? "/" + std::to_string(want2) : ""));
      }
      return;
    } else {
      Unsupported("system call '" + n + "'");
    }
    CallResult r;
    if (!ExecOrPend(c, s, blocking, new_fd, &r)) return;
    if (new_fd) {
      NewFd(s, r, false);
    } else {
      CheckResult(s, r);
    }
  }

  static std::string ArgText(const Expr& e) {
    std::string t;
    for (const std::string& x : e.terms) t += (t.empty() ? "" : "|") + x;
    return t;
  }

  static std::string PollBits(int64_t v) {
    std::string s;
    for (const char* name : {"POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP",
                             "EPOLLET", "EPOLLONESHOT"}) {
      if (!(v & Symbols().at(name))) continue;
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
      // `const char* + std::string` temporaries.
      if (!s.empty()) s += '|';
      s += name;
    }
    return s.empty() ? "0" : s;
  }

  void NewFd(const SyscallSpec& s, const CallResult& r, bool nonblock) {
    if (r.ret < 0) {
      CheckResult(s, r);
      return;
    }
    CallResult mapped = r;
    mapped.ret = LowestFreeFd();
    // packetdrill maps whatever fd number a script names onto the real one.
    if (opt_.packetdrill && !s.result_any && s.result >= 0 && fds_.count(static_cast<int>(s.result)) == 0) {
      mapped.ret = s.result;
    }
    CheckResult(s, mapped);
    fds_[static_cast<int>(mapped.ret)] = FdState{static_cast<int>(r.ret), nonblock, false};
    if (s.name == "socket" || s.name == "accept") socket_under_test_ = static_cast<int>(mapped.ret);
  }

  const Script& script_;
  Backend& backend_;
  RunOptions opt_;
  int64_t start_ns_ = 0;
  int64_t prev_us_ = 0;
  const Event* ev_ = nullptr;
  bool active_ = false;
  std::map<uint16_t, Flow> flows_;
  std::map<int, FdState> fds_;
  // Packets read ahead (by MergeSegments, or while packetdrill scripts wait), with send times.
  std::deque<std::pair<std::vector<uint8_t>, int64_t>> queued_;
  int64_t last_read_us_ = 0;
  bool tso_ = true;  // the device has TCP segmentation offload (packetdrill's tun0 does)
  std::optional<PendingCall> pending_;
  int socket_under_test_ = -1;
  std::map<std::string, int64_t> py_globals_;
};

}  // namespace

RunResult RunScript(const Script& script, Backend& backend, const RunOptions& options) {
  RunResult result;
  try {
    Runner runner(script, backend, options);
    runner.Run();
    result.passed = true;
  } catch (const Failure& f) {
    result.message = f.what();
  } catch (const ScriptError& e) {
    result.message = e.what();
  }
  return result;
}

}  // namespace conformance
