#include "shim/config.h"

#include <errno.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace shake::shim {
namespace {

ConfigError Error(std::string var, std::string value, std::string problem, std::string fix,
                  int err) {
  return ConfigError{std::move(var), std::move(value), std::move(problem), std::move(fix), err};
}

bool ValidIfname(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ || n == "." || n == "..") return false;
  for (char c : n) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

bool ParseInt(const std::string& s, int lo, int hi, int& out) {
  if (s.empty() || s.size() > 3) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

// A decimal number in [lo, hi].
bool ParseNumber(const std::string& s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

}  // namespace

bool ParseSize(const std::string& s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty() || s.size() > 16) return false;
  std::string digits = s;
  uint64_t unit = 1;
  switch (digits.back()) {
    case 'k': case 'K': unit = uint64_t{1} << 10; break;
    case 'm': case 'M': unit = uint64_t{1} << 20; break;
    case 'g': case 'G': unit = uint64_t{1} << 30; break;
    default: break;
  }
  if (unit != 1) digits.pop_back();
  uint64_t v = 0;
  if (!ParseNumber(digits, 0, uint64_t{1} << 34, v)) return false;
  v *= unit;
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

namespace {

uint32_t Mask(int prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

// Effective capability bit `cap` of this process.
bool HasCapability(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

std::string ReadSysfs(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  std::getline(f, v);
  return v;
}

std::optional<ConfigError> CheckOutputFile(const char* var, const std::string& path) {
  if (path.empty()) return std::nullopt;
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  if (access(dir.c_str(), W_OK) != 0) {
    return Error(var, path, std::string("cannot write in ") + dir + " (" + strerrorname_np(errno) + ")",
                 "give a path in a directory that exists and is writable", EACCES);
  }
  return std::nullopt;
}

}  // namespace

std::string ConfigError::Line(const std::string& alias) const {
  std::string who = alias.empty() ? variable : alias + " (" + variable + ")";
  std::string s = "shake: " + who;
  if (!value.empty()) s += alias.empty() ? "=" + value : " " + value;
  s += ": " + problem + "; " + fix;
  return s;
}

bool ParseIpv4(const std::string& s, uint32_t& out) {
  uint32_t v = 0;
  size_t pos = 0;
  for (int i = 0; i < 4; ++i) {
    size_t end = s.find('.', pos);
    if (i == 3) end = s.size();
    if (end == std::string::npos) return false;
    int octet = 0;
    if (!ParseInt(s.substr(pos, end - pos), 0, 255, octet)) return false;
    v = (v << 8) | static_cast<uint32_t>(octet);
    pos = end + 1;
  }
  out = v;
  return true;
}

std::string FormatIpv4(uint32_t a) {
  char buf[16];
  snprintf(buf, sizeof buf, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  return buf;
}

std::optional<LogLevel> ParseLogLevel(const std::string& s) {
  if (s == "error") return LogLevel::kError;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "info") return LogLevel::kInfo;
  if (s == "debug") return LogLevel::kDebug;
  return std::nullopt;
}

const char* LogLevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "?";
}

std::optional<ConfigError> ParseConfig(Getenv getenv_fn, Config& out) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    const char* v = getenv_fn(name);
    if (!v) return std::nullopt;
    return std::string(v);
  };
  out = Config{};

  if (auto v = get("SHAKE_LOG"); v && !v->empty()) {
    auto level = ParseLogLevel(*v);
    if (!level) {
      return Error("SHAKE_LOG", *v, "unknown level", "use one of error, warn, info, debug",
                   EINVAL);
    }
    out.log = *level;
  }
  if (auto v = get("SHAKE_FALLBACK"); v && !v->empty()) {
    if (*v == "kernel") {
      out.fallback_kernel = true;
    } else if (*v != "none") {
      return Error("SHAKE_FALLBACK", *v, "unknown value",
                   "use SHAKE_FALLBACK=kernel (sockets the stack cannot serve stay kernel "
                   "sockets) or leave it unset",
                   EINVAL);
    }
  }
  struct Number {
    const char* var;
    uint64_t lo, hi;
    const char* what;
  };
  // Each: the variable, its range, and what it sets (for the one-line fix).
  const Number numbers[] = {
      {"SHAKE_MAX_SOCKETS", 64, 1048575, "stack sockets at once"},
      {"SHAKE_MAX_PROCS", 2, 4096, "processes sharing one stack"},
      {"SHAKE_KEEPER_IDLE", 0, 86400, "seconds an empty stack's keeper waits before it ends"},
      {"SHAKE_SPIN_US", 0, 1000000, "microseconds to read the device before sleeping"},
  };
  for (const Number& n : numbers) {
    auto v = get(n.var);
    if (!v || v->empty()) continue;
    uint64_t x = 0;
    if (!ParseNumber(*v, n.lo, n.hi, x)) {
      return Error(n.var, *v, "not a number in range",
                   "give " + std::string(n.what) + " as a whole number from " +
                       std::to_string(n.lo) + " to " + std::to_string(n.hi) + ", or unset it",
                   EINVAL);
    }
    const std::string var = n.var;
    if (var == "SHAKE_MAX_SOCKETS") out.max_sockets = static_cast<uint32_t>(x);
    if (var == "SHAKE_MAX_PROCS") out.max_procs = static_cast<uint32_t>(x);
    if (var == "SHAKE_KEEPER_IDLE") out.keeper_idle_s = static_cast<int>(x);
    if (var == "SHAKE_SPIN_US") out.spin_us = static_cast<uint32_t>(x);
  }
  if (auto v = get("SHAKE_MEM_MAX"); v && !v->empty()) {
    if (!ParseSize(*v, Config::kMemMaxLeast, Config::kMemMaxMost, out.mem_max)) {
      return Error("SHAKE_MEM_MAX", *v, "not a size in range",
                   "give the most memory the stack's connections may hold, in bytes or with K, "
                   "M or G, from 1M to 8G (e.g. SHAKE_MEM_MAX=256M), or unset it for 1G",
                   EINVAL);
    }
  }
  if (auto v = get("SHAKE_PCAP")) out.pcap = *v;
  if (auto v = get("SHAKE_TRACE")) out.trace = *v;

  auto device = get("SHAKE_DEVICE");
  auto addr = get("SHAKE_ADDR");
  auto gateway = get("SHAKE_GATEWAY");
  if ((!device || device->empty()) && (!addr || addr->empty()) &&
      (!gateway || gateway->empty())) {
    return std::nullopt;  // not configured: every socket stays a kernel socket
  }
  if (!device || device->empty()) {
    return Error("SHAKE_DEVICE", "", "not set",
                 "set SHAKE_DEVICE=tun:IFNAME or SHAKE_DEVICE=packet:IFNAME (or pass --device "
                 "to shake)",
                 ENODEV);
  }
  std::string dev = *device;
  std::string name;
  if (dev.rfind("tun:", 0) == 0) {
    out.device = DeviceKind::kTun;
    name = dev.substr(4);
  } else if (dev.rfind("packet:", 0) == 0) {
    out.device = DeviceKind::kPacket;
    name = dev.substr(7);
  } else {
    return Error("SHAKE_DEVICE", dev, "unknown device kind",
                 "write tun:IFNAME (a TUN device) or packet:IFNAME (an Ethernet interface, via "
                 "AF_PACKET)",
                 EINVAL);
  }
  if (!ValidIfname(name)) {
    return Error("SHAKE_DEVICE", dev, "bad interface name",
                 "give an interface name of 1 to 15 characters without '/', ':' or spaces, "
                 "e.g. tun:shk0",
                 EINVAL);
  }
  out.ifname = name;

  if (!addr || addr->empty()) {
    return Error("SHAKE_ADDR", "", "not set",
                 "set SHAKE_ADDR to the stack's own IPv4 address with prefix, e.g. "
                 "SHAKE_ADDR=198.18.0.2/24 (or pass --addr to shake)",
                 EADDRNOTAVAIL);
  }
  auto slash = addr->find('/');
  if (slash == std::string::npos) {
    return Error("SHAKE_ADDR", *addr, "no prefix length",
                 "write ADDRESS/PREFIX, e.g. " + *addr + "/24", EINVAL);
  }
  if (!ParseIpv4(addr->substr(0, slash), out.addr)) {
    return Error("SHAKE_ADDR", *addr, "not an IPv4 address",
                 "write a dotted-quad address with prefix, e.g. 198.18.0.2/24", EINVAL);
  }
  if (!ParseInt(addr->substr(slash + 1), 1, 32, out.prefix_len)) {
    return Error("SHAKE_ADDR", *addr, "bad prefix length",
                 "use a prefix length from 1 to 32, e.g. /24", EINVAL);
  }
  uint32_t mask = Mask(out.prefix_len);
  uint32_t a = out.addr;
  if (a == 0 || (a >> 24) == 127 || (a >> 28) >= 14 ||
      (out.prefix_len <= 30 && ((a & ~mask) == 0 || (a & ~mask) == ~mask))) {
    return Error("SHAKE_ADDR", *addr,
                 "not usable as a host address (zero, loopback, multicast, or the subnet's "
                 "network or broadcast address)",
                 "pick a unicast host address inside its subnet, e.g. 198.18.0.2/24", EINVAL);
  }
  if (gateway && !gateway->empty()) {
    uint32_t g = 0;
    if (!ParseIpv4(*gateway, g)) {
      return Error("SHAKE_GATEWAY", *gateway, "not an IPv4 address",
                   "write the next hop as a dotted-quad address, e.g. 198.18.0.1", EINVAL);
    }
    if ((g & mask) != (a & mask) || g == a) {
      return Error("SHAKE_GATEWAY", *gateway,
                   "not another host on SHAKE_ADDR's subnet " + FormatIpv4(a & mask) + "/" +
                       std::to_string(out.prefix_len),
                   "give a next hop inside that subnet, or unset SHAKE_GATEWAY", ENETUNREACH);
    }
    out.gateway = g;
  }
  return std::nullopt;
}

std::optional<ConfigError> CheckHost(const Config& c) {
  if (auto e = CheckOutputFile("SHAKE_PCAP", c.pcap)) return e;
  if (auto e = CheckOutputFile("SHAKE_TRACE", c.trace)) return e;
  if (!c.configured()) return std::nullopt;
  const std::string dev = (c.device == DeviceKind::kTun ? "tun:" : "packet:") + c.ifname;
  if (if_nametoindex(c.ifname.c_str()) == 0) {
    if (c.device == DeviceKind::kTun) {
      return Error("SHAKE_DEVICE", dev, "no such device in this network namespace",
                   "create it first: ip tuntap add dev " + c.ifname +
                       " mode tun user $(id -un) && ip link set " + c.ifname + " up",
                   ENODEV);
    }
    return Error("SHAKE_DEVICE", dev, "no such device in this network namespace",
                 "name an existing Ethernet interface (see `ip link`)", ENODEV);
  }
  const std::string sys = "/sys/class/net/" + c.ifname;
  if (c.device == DeviceKind::kTun) {
    std::string flags = ReadSysfs(sys + "/tun_flags");
    if (flags.empty()) {
      return Error("SHAKE_DEVICE", dev, "not a TUN device",
                   "use packet:" + c.ifname + " for an Ethernet interface, or create a TUN "
                   "device with `ip tuntap add dev NAME mode tun`",
                   ENODEV);
    }
    unsigned long f = strtoul(flags.c_str(), nullptr, 16);
    if (f & 0x0002) {  // IFF_TAP; IFF_TUN is 1
      return Error("SHAKE_DEVICE", dev, "a TAP device, not TUN",
                   "recreate it with `ip tuntap add dev " + c.ifname + " mode tun`", ENODEV);
    }
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
      return Error("SHAKE_DEVICE", dev,
                   std::string("cannot open /dev/net/tun (") + strerrorname_np(errno) + ")",
                   "load the tun module or give the user read/write access to /dev/net/tun",
                   EACCES);
    }
    if (!HasCapability(CAP_NET_ADMIN)) {
      std::string owner = ReadSysfs(sys + "/owner");
      std::string group = ReadSysfs(sys + "/group");
      bool mine = (owner != "-1" && owner == std::to_string(geteuid())) ||
                  (group != "-1" && group == std::to_string(getegid()));
      if (!mine) {
        return Error("SHAKE_DEVICE", dev, "no permission to attach (needs CAP_NET_ADMIN)",
                     "recreate it for this user: ip tuntap add dev " + c.ifname +
                         " mode tun user $(id -un)",
                     EPERM);
      }
    }
  } else if (!HasCapability(CAP_NET_RAW)) {
    return Error("SHAKE_DEVICE", dev, "no permission for AF_PACKET (needs CAP_NET_RAW)",
                 "run as root or with CAP_NET_RAW in the ambient set (file capabilities do "
                 "not work: libshake stays out of privileged programs), or use a TUN device",
                 EPERM);
  }
  return std::nullopt;
}

}  // namespace shake::shim
