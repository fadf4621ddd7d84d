#include "tests/conformance/linux_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/wait.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tests/conformance/commands.h"
#include "tests/conformance/posix_calls.h"

namespace conformance {

const std::vector<std::pair<std::string, std::string>> kLinuxSysctls = {
    {"ipv6/conf/all/disable_ipv6", "1"},   // no IPv6 chatter on the TUN device
    {"ipv6/conf/default/disable_ipv6", "1"},
    {"ipv4/tcp_timestamps", "1"},
    {"ipv4/tcp_sack", "1"},
    {"ipv4/tcp_dsack", "1"},
    {"ipv4/tcp_window_scaling", "1"},
    {"ipv4/tcp_ecn", "0"},
    {"ipv4/tcp_syn_retries", "6"},
    {"ipv4/tcp_syn_linear_timeouts", "0"},  // RFC 6298 exponential SYN backoff from the start
    {"ipv4/tcp_rto_min_us", "200000"},
    {"ipv4/tcp_rto_max_ms", "120000"},
    {"ipv4/tcp_synack_retries", "5"},
    {"ipv4/tcp_retries2", "15"},
    {"ipv4/tcp_fin_timeout", "60"},
    {"ipv4/tcp_keepalive_time", "7200"},
    {"ipv4/tcp_keepalive_intvl", "75"},
    {"ipv4/tcp_keepalive_probes", "9"},
    {"ipv4/tcp_syncookies", "0"},           // a full queue drops SYNs, as libshake does
    {"ipv4/tcp_early_retrans", "0"},        // no tail loss probes: RTO timing is exact
    // Pinned rather than the host's choice (bbr here). A namespace may only pick from
    // tcp_allowed_congestion_control, which offers reno but not cubic.
    {"ipv4/tcp_congestion_control", "reno"},
    {"ipv4/tcp_comp_sack_nr", "0"},         // every out-of-order segment is SACKed at once
    {"ipv4/tcp_no_metrics_save", "1"},      // no RTT cache between connections
    {"ipv4/tcp_autocorking", "0"},
    {"ipv4/tcp_rfc1337", "0"},
    {"ipv4/tcp_invalid_ratelimit", "500"},
    {"ipv4/tcp_challenge_ack_limit", "1000"},
    {"ipv4/tcp_rmem", "4096 131072 6291456"},
    {"ipv4/tcp_wmem", "4096 16384 4194304"},
    {"ipv4/ip_local_port_range", "32768 60999"},
};

namespace {

constexpr const char* kTunName = "shk0";
constexpr const char* kPacketdrillTunName = "tun0";  // packetdrill scripts name it (tc qdisc)
// struct virtio_net_hdr (linux/virtio_net.h): flags, gso_type, hdr_len, gso_size, csum_start,
// csum_offset. Its header does not build as C++ here, hence the literal size.
constexpr size_t kVnetHdr = 10;

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

class LinuxBackend : public Backend {
 public:
  LinuxBackend(int tun, bool vnet) : tun_(tun), vnet_(vnet), epoch_(MonotonicNs()) {}
  ~LinuxBackend() override { close(tun_); }

  std::string name() const override { return "linux"; }
  int64_t Now() override { return MonotonicNs() - epoch_; }
  CallResult Execute(const Call& call) override {
    CallResult r = ExecutePosix(call);
    if (call.op == Op::kSocket && r.ret >= 0 && !congestion_.empty()) {
      // The namespace refused the script's default congestion control (a namespace may only
      // pick from the host's tcp_allowed_congestion_control); root may still set it per
      // socket, and listeners pass it on to the connections they accept.
      setsockopt(static_cast<int>(r.ret), IPPROTO_TCP, TCP_CONGESTION, congestion_.data(),
                 static_cast<socklen_t>(congestion_.size()));
    }
    return r;
  }

  std::string RunCommand(const std::string& text, const std::string& dir,
                         std::vector<std::string>* notes) override {
    std::string wanted_cc;
    for (const CommandItem& item : ParseCommand(text, dir)) {
      if (item.kind == CommandItem::Kind::kHostGlobal) {
        return "unsupported: '" + item.text + "' changes the host outside the test's namespace";
      }
      if (item.kind == CommandItem::Kind::kSysctl && item.key == "net.ipv4.tcp_congestion_control") {
        wanted_cc = item.value;
      }
    }
    // The command runs as packetdrill runs it: through the shell, from the script's folder,
    // with PACKETDRILL_PID set (set_sysctls.py names its restore file after it).
    const std::string pid = std::to_string(getpid());
    setenv("PACKETDRILL_PID", pid.c_str(), 1);
    const std::string full = "cd '" + dir + "' && { " + text + "\n} 2>&1";
    FILE* p = popen(full.c_str(), "r");
    if (p == nullptr) return std::string("popen: ") + std::strerror(errno);
    std::string output;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
    const int status = pclose(p);
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) notes->push_back("shell: " + line);
    if (!wanted_cc.empty()) {
      std::ifstream f("/proc/sys/net/ipv4/tcp_congestion_control");
      std::string actual;
      f >> actual;
      if (actual != wanted_cc) {
        congestion_ = wanted_cc;
        notes->push_back("tcp_congestion_control=" + wanted_cc + " is set on each socket (the "
                         "namespace default stays " + actual + ")");
      }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return "the shell command exited with status " +
             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    return "";
  }

  void Inject(const std::vector<uint8_t>& packet) override {
    // A TUN write hands the packet to the kernel's receive path; a short write is a bug here.
    std::vector<uint8_t> frame;
    if (vnet_) {
      frame.assign(kVnetHdr, 0);  // no offload on what we inject: VIRTIO_NET_HDR_GSO_NONE
      frame.insert(frame.end(), packet.begin(), packet.end());
    }
    const std::vector<uint8_t>& out = vnet_ ? frame : packet;
    const ssize_t n = write(tun_, out.data(), out.size());
    if (n != static_cast<ssize_t>(out.size())) {
      std::fprintf(stderr, "linux backend: TUN write failed: %s\n", std::strerror(errno));
    }
  }

  std::optional<std::vector<uint8_t>> ReadPacket(int64_t deadline_ns) override {
    std::vector<uint8_t> buf(65536);
    for (;;) {
      const ssize_t n = read(tun_, buf.data(), buf.size());
      if (n > 0 && vnet_) {
        // The virtio header says how the kernel would have the device segment the packet
        // (TSO) and where the partial checksum is; the runner compares the super-packet.
        if (static_cast<size_t>(n) <= kVnetHdr) continue;
        buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(kVnetHdr));
        buf.resize(static_cast<size_t>(n) - kVnetHdr);
        return buf;
      }
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
      const int64_t left = deadline_ns - Now();
      if (left <= 0) return std::nullopt;
      timespec ts{static_cast<time_t>(left / 1000000000), static_cast<long>(left % 1000000000)};
      pollfd p{tun_, POLLIN, 0};
      ppoll(&p, 1, &ts, nullptr);
    }
  }

 private:
  int tun_;
  bool vnet_;
  int64_t epoch_;
  std::string congestion_;  // set on every new socket (see Execute)
};

bool WriteFile(const std::string& path, const std::string& value, std::string* err) {
  std::ofstream f(path);
  f << value;
  f.flush();
  if (!f) {
    *err = "cannot set " + path + " to '" + value + "'";
    return false;
  }
  return true;
}

bool IfIoctl(int sock, unsigned long req, ifreq* ifr, const char* what, std::string* err) {
  if (ioctl(sock, req, ifr) != 0) {
    *err = std::string(what) + " on " + kTunName + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

void SetAddr(sockaddr* sa, uint32_t host_order) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(host_order);
  std::memcpy(sa, &sin, sizeof sin);
}

}  // namespace

std::unique_ptr<Backend> CreateLinuxBackend(const BackendOptions& options, SetupError* error) {
  if (unshare(CLONE_NEWNET) != 0) {
    error->skip = errno == EPERM;
    error->reason = std::string("unshare(CLONE_NEWNET) failed: ") + std::strerror(errno) +
                    " (the linux backend needs root or CAP_SYS_ADMIN+CAP_NET_ADMIN)";
    return nullptr;
  }
  // Linux's timers are real: a runner woken late injects late, which skews the RTT the kernel
  // measures and every timer derived from it. On a loaded machine (ctest -j on two cores) a
  // 60 ms wake-up delay was enough to fail a persist-timer script, so the runner takes the
  // lowest real-time priority when it may. It mostly sleeps, and the watchdog bounds it.
  const sched_param rt{.sched_priority = 1};
  if (sched_setscheduler(0, SCHED_FIFO, &rt) != 0) {
    std::fprintf(stderr, "note: SCHED_FIFO refused (%s); timings may suffer under load\n",
                 std::strerror(errno));
  }
  std::string err;
  for (const auto& [path, value] : kLinuxSysctls) {
    if (options.packetdrill && path.rfind("ipv6/", 0) != 0) continue;
    if (!WriteFile("/proc/sys/net/" + path, value, &err)) {
      error->reason = err;
      return nullptr;
    }
  }
  const int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tun < 0) {
    error->skip = errno == ENOENT || errno == EACCES || errno == EPERM || errno == ENODEV;
    error->reason = std::string("cannot open /dev/net/tun: ") + std::strerror(errno);
    return nullptr;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, options.packetdrill ? kPacketdrillTunName : kTunName, IFNAMSIZ - 1);
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (options.packetdrill ? IFF_VNET_HDR : 0));
  if (ioctl(tun, TUNSETIFF, &ifr) != 0) {
    error->reason = std::string("TUNSETIFF: ") + std::strerror(errno);
    close(tun);
    return nullptr;
  }
  if (options.packetdrill &&
      ioctl(tun, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) != 0) {
    error->reason = std::string("TUNSETOFFLOAD: ") + std::strerror(errno);
    close(tun);
    return nullptr;
  }
  const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  bool ok = sock >= 0;
  if (ok) {
    SetAddr(&ifr.ifr_addr, kLocalAddr);
    ok = IfIoctl(sock, SIOCSIFADDR, &ifr, "SIOCSIFADDR", &err);
  }
  if (ok) {
    SetAddr(&ifr.ifr_netmask, ~uint32_t{0} << (32 - kPrefixLen));
    ok = IfIoctl(sock, SIOCSIFNETMASK, &ifr, "SIOCSIFNETMASK", &err);
  }
  if (ok) ok = IfIoctl(sock, SIOCGIFFLAGS, &ifr, "SIOCGIFFLAGS", &err);
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = IfIoctl(sock, SIOCSIFFLAGS, &ifr, "SIOCSIFFLAGS", &err);
  }
  if (sock >= 0) close(sock);
  if (!ok) {
    error->reason = err.empty() ? std::string("socket: ") + std::strerror(errno) : err;
    close(tun);
    return nullptr;
  }
  return std::make_unique<LinuxBackend>(tun, options.packetdrill);
}

}  // namespace conformance
