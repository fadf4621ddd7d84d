#include "tests/conformance/runner.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

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
};

struct FdState {
  int handle = -1;
  bool nonblock = false;
};

class Runner {
 public:
  Runner(const Script& script, Backend& backend, const RunOptions& options)
      : script_(script), backend_(backend), opt_(options) {}

  void Run() {
    start_ns_ = backend_.Now();
    for (const Event& ev : script_.events) {
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
      } else {
        DoSyscall(std::get<SyscallSpec>(ev.what));
      }
    }
    ev_ = nullptr;
    WaitUntil(NowUs() + opt_.tolerance_us);
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

  // Sleeps until script time `at_us`; any packet sent meanwhile is unexpected.
  void WaitUntil(int64_t at_us) {
    for (;;) {
      auto bytes = backend_.ReadPacket(start_ns_ + at_us * 1000);
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
        case TcpOption::Kind::kOther: s += "option-kind-" + std::to_string(o.a); break;
      }
    }
    return s + ">";
  }

  static std::string FormatSpec(const PacketSpec& p) {
    std::string s = p.inbound ? "< " : "> ";
    if (p.remote_port) s += "[port " + std::to_string(*p.remote_port) + "] ";
    s += FlagsString(p.flags) + " " + std::to_string(p.seq) + ":" +
         std::to_string(p.seq + p.len) + "(" + std::to_string(p.len) + ")";
    if (p.ack) s += " ack " + std::to_string(*p.ack);
    if (p.win) s += " win " + std::to_string(*p.win);
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
    const bool rel = f != nullptr && f->sut_isn.has_value() && (t.flags & tcpflag::kSyn) == 0;
    const uint32_t base = rel ? *f->sut_isn : (t.flags & tcpflag::kSyn) ? t.seq : 0;
    s += FlagsString(t.flags) + " " + std::to_string(t.seq - base) + ":" +
         std::to_string(t.seq - base + t.payload_len) + "(" + std::to_string(t.payload_len) +
         ")";
    if (t.flags & tcpflag::kAck) s += " ack " + std::to_string(t.ack - kRemoteIsn);
    s += " win " + std::to_string(t.window);
    if (!t.options.empty()) s += " " + OptionsString(t.options, true, kRemoteIsn);
    if (f != nullptr && f->local_port != 0 && t.src_port != f->local_port) {
      s += " (from port " + std::to_string(t.src_port) + ")";
    }
    return s;
  }

  // ---------------------------------------------------------------- packets
  void InjectPacket(const PacketSpec& p) {
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
    t.seq = kRemoteIsn + p.seq;
    t.payload_len = p.len;
    t.window = static_cast<uint16_t>(p.win.value_or(65535));
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
      if (o.kind == TcpOption::Kind::kTimestamp && o.b != 0 && f.last_tsval) o.b = *f.last_tsval;
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
      auto bytes = backend_.ReadPacket(start_ns_ + (hi + tol) * 1000);
      if (!bytes) {
        Fail("expected packet was not sent by " + Secs(hi + tol) + "\n  expected: " + expected +
             "\n  actual:   (nothing)");
      }
      std::string why;
      got = Decode(*bytes, &why);
      if (!got) Log(NowUs(), "(ignored non-TCP packet: " + why + ")");
    }
    const TcpPacket& t = *got;
    const int64_t at = NowUs();
    Flow& f = FlowFor(p);
    if (f.local_port == 0 && t.dst_port == f.remote_port) f.local_port = t.src_port;
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
    if (p.ack && ((t.flags & tcpflag::kAck) == 0 || t.ack - kRemoteIsn != *p.ack)) {
      mismatch("ack");
    }
    if (p.win && t.window != *p.win) mismatch("window");
    if (p.options_given && !p.options_any) {
      bool same = p.options.size() == t.options.size();
      for (size_t i = 0; same && i < p.options.size(); ++i) {
        TcpOption want = p.options[i];
        const TcpOption& have = t.options[i];
        if (want.kind == TcpOption::Kind::kTimestamp) want.a = have.a;  // TS val: not checked
        if (want.kind == TcpOption::Kind::kSack) {
          for (SackBlock& b : want.blocks) {
            b.left += kRemoteIsn;
            b.right += kRemoteIsn;
          }
        }
        same = want == have;
      }
      if (!same) mismatch("TCP options");
    }
    for (const TcpOption& o : t.options) {
      if (o.kind == TcpOption::Kind::kTimestamp) f.last_tsval = o.a;
    }
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
    if (s.result_any) return;
    const bool ok = r.ret == s.result &&
                    (r.ret != -1 || Errnos().at(s.errno_name) == r.err ||
                     (r.err == EAGAIN && s.errno_name == "EWOULDBLOCK"));
    if (ok) return;
    std::string got = std::to_string(r.ret);
    if (r.ret == -1) got += " " + ErrnoName(r.err) + " (" + std::strerror(r.err) + ")";
    std::string want = std::to_string(s.result);
    if (!s.errno_name.empty()) want += " " + s.errno_name;
    Fail(s.name + "() returned " + got + ", expected " + want);
  }

  CallResult Exec(const Call& c, const SyscallSpec& s, bool blocking) {
    CallResult r = backend_.Execute(c);
    if (blocking && r.ret == -1 && (r.err == EAGAIN || r.err == EINPROGRESS)) {
      Fail("blocking " + s.name + "() would block here (" + ErrnoName(r.err) +
           "); the runner does not run blocking calls in threads: make the socket "
           "non-blocking or call it after the event that completes it");
    }
    return r;
  }

  void DoSyscall(const SyscallSpec& s) {
    Log(NowUs(), ev_->source.substr(ev_->source.find_first_of(" \t") + 1));
    if (!s.errno_name.empty() && Errnos().count(s.errno_name) == 0) {
      Fail("unknown errno name '" + s.errno_name + "'");
    }
    Call c;
    const std::string& n = s.name;
    static const char* const kKnown[] = {"socket", "fcntl", "poll", "bind", "listen", "accept",
                                         "connect", "read", "recv", "write", "send", "close",
                                         "shutdown", "setsockopt", "getsockopt"};
    bool known = false;
    for (const char* k : kKnown) known = known || n == k;
    if (!known) Fail("unsupported system call '" + n + "'");
    if (n == "socket") {
      Args(s, 3);
      const int64_t type = Eval(s.args[1], "socket type");
      const bool any_domain = s.args[0].kind == Expr::Kind::kEllipsis;
      if ((!any_domain && Eval(s.args[0], "domain") != AF_INET) || (type & ~int64_t{SOCK_NONBLOCK}) != SOCK_STREAM) {
        Fail("only socket(AF_INET, SOCK_STREAM[|SOCK_NONBLOCK], IPPROTO_TCP) is supported");
      }
      c.op = Op::kSocket;
      CallResult r = backend_.Execute(c);
      NewFd(s, r, (type & SOCK_NONBLOCK) != 0);
      return;
    }
    if (n == "fcntl") {
      if (s.args.size() < 2) Fail("fcntl() needs (fd, F_GETFL) or (fd, F_SETFL, flags)");
      FdState& fd = Fd(s);
      const int64_t cmd = Eval(s.args[1], "fcntl command");
      CallResult r;
      if (cmd == F_SETFL && s.args.size() == 3) {
        const int64_t flags = Eval(s.args[2], "fcntl flags");
        if ((flags & ~int64_t{O_NONBLOCK | O_RDWR}) != 0) Fail("fcntl(F_SETFL) supports O_RDWR|O_NONBLOCK only");
        fd.nonblock = (flags & O_NONBLOCK) != 0;
      } else if (cmd == F_GETFL && s.args.size() == 2) {
        r.ret = O_RDWR | (fd.nonblock ? O_NONBLOCK : 0);
      } else {
        Fail("fcntl() supports F_GETFL and F_SETFL only");
      }
      CheckResult(s, r);
      return;
    }
    if (n == "poll") {
      Args(s, 3);
      if (s.args[0].kind != Expr::Kind::kList) Fail("poll() needs a list [{fd=N, events=...}]");
      if (Eval(s.args[2], "poll timeout") != 0) Fail("only poll(..., 0) (no waiting) is supported");
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
      CheckResult(s, r);
      if (s.out_detail) {
        for (const Expr& e : s.out_detail->items) {
          const Expr* fd = Field(e, "fd");
          const Expr* rev = Field(e, "revents");
          if (e.kind != Expr::Kind::kStruct || fd == nullptr || rev == nullptr) {
            Fail("poll() results look like ([{fd=4, revents=POLLIN}])");
          }
          const int sfd = static_cast<int>(Eval(*fd, "fd"));
          int16_t got = 0;
          for (size_t i = 0; i < script_fds.size() && i < r.poll.size(); ++i) {
            if (script_fds[i] == sfd) got = r.poll[i].revents;
          }
          const int64_t want = Eval(*rev, "revents");
          if (got != want) {
            Fail("poll() revents for fd " + std::to_string(sfd) + " are " + PollBits(got) +
                 ", expected " + PollBits(want));
          }
        }
      }
      return;
    }
    FdState& fd = Fd(s);
    c.handle = fd.handle;
    const bool blocking = !fd.nonblock;
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
      CallResult r = Exec(c, s, blocking);
      NewFd(s, r, false);
      return;
    } else if (n == "connect") {
      Args(s, 3);
      c.op = Op::kConnect;
      c.addr = kRemoteAddr;
      c.port = kServerPort;
      active_ = true;
      if (blocking) Fail("blocking connect() is not supported; set O_NONBLOCK first");
    } else if (n == "read" || n == "recv") {
      Args(s, n == "read" ? 3 : 4);
      c.op = Op::kRead;
      c.len = static_cast<size_t>(Eval(s.args[2], "length"));
      if (n == "recv") c.flags = static_cast<int>(Eval(s.args[3], "flags"));
    } else if (n == "write" || n == "send") {
      Args(s, n == "write" ? 3 : 4);
      c.op = Op::kWrite;
      c.len = static_cast<size_t>(Eval(s.args[2], "length"));
      if (n == "send") c.flags = static_cast<int>(Eval(s.args[3], "flags"));
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
      } else if (val.kind != Expr::Kind::kEllipsis) {
        if (is_linger) Fail("SO_LINGER takes {onoff=N, linger=N}");
        want = EvalIntArg(val, "option value");
      }
      if (c.op == Op::kSetsockopt) {
        if (val.kind == Expr::Kind::kEllipsis) Fail("setsockopt() needs a value");
        c.value = want;
        c.value2 = want2;
      } else {
        CallResult r = backend_.Execute(c);
        CheckResult(s, r);
        if (r.ret == 0 && val.kind != Expr::Kind::kEllipsis &&
            (r.value != want || (is_linger && r.value2 != want2))) {
          std::string got = std::to_string(r.value);
          if (c.optname == SO_ERROR && c.arg == SOL_SOCKET) got = r.value == 0 ? "0" : ErrnoName(static_cast<int>(r.value));
          Fail("getsockopt() value is " + got + (is_linger ? "/" + std::to_string(r.value2) : "") +
               ", expected " + std::to_string(want) + (is_linger ? "/" + std::to_string(want2) : ""));
        }
        return;
      }
    } else {
      Fail("unsupported system call '" + n + "'");
    }
    CallResult r = Exec(c, s, blocking);
    CheckResult(s, r);
  }

  static std::string PollBits(int64_t v) {
    std::string s;
    for (const char* name : {"POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLRDHUP"}) {
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
    CheckResult(s, mapped);
    fds_[static_cast<int>(mapped.ret)] = FdState{static_cast<int>(r.ret), nonblock};
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
