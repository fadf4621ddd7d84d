// shake doctor: checks what a run needs and prints one line per problem with its fix.
//
//   shake doctor [--device tun:IF|packet:IF] [--addr A/P] [-v]
//
// The configuration is the run's: options, else the SHAKE_* variables, else the defaults of
// `shake setup` (tun:shk0, 198.18.0.2/24). Checks, in order: the SHAKE_* variables parse;
// libshake.so is installed; io_uring is allowed (kernel.io_uring_disabled, and an actual
// io_uring_setup(2)); for tun: /dev/net/tun opens, the device exists, is TUN (not TAP), has
// multi_queue, this user may attach to it, it is up; for packet: the interface exists and this
// process has CAP_NET_RAW; the kernel routes the stack's address through the device and does not
// own that address itself; the pcap and trace files can be written.
// Exit status: 0 when nothing stops a run (warnings may be printed), 1 otherwise, 2 for a usage
// error.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/io_uring.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "shim/config.h"
#include "shim/launcher/commands.h"
#include "shim/launcher/netdev.h"

namespace shake::launcher {
namespace {

const char kDoctorHelp[] =
    "usage: shake doctor [--device tun:IF|packet:IF] [--addr A/P] [-v]\n"
    "Check what a run of shake needs, for the given device and address (else SHAKE_DEVICE and\n"
    "SHAKE_ADDR, else the shake setup defaults tun:shk0 and 198.18.0.2/24), and print one line\n"
    "per problem with its fix. -v also prints the checks that passed.\n"
    "Exit status 0 when nothing stops a run, 1 otherwise. See shake-doctor(1).\n";

class Report {
 public:
  explicit Report(bool verbose) : verbose_(verbose) {}
  void Ok(const std::string& what) {
    ++checks_;
    if (verbose_) printf("shake doctor: ok: %s\n", what.c_str());
  }
  void Problem(const std::string& what, const std::string& fix) {
    ++checks_;
    ++problems_;
    printf("shake doctor: %s; fix: %s\n", what.c_str(), fix.c_str());
  }
  void Warning(const std::string& what, const std::string& fix) {
    ++checks_;
    ++warnings_;
    printf("shake doctor: warning: %s; fix: %s\n", what.c_str(), fix.c_str());
  }
  int checks() const { return checks_; }
  int problems() const { return problems_; }
  int warnings() const { return warnings_; }

 private:
  bool verbose_;
  int checks_ = 0, problems_ = 0, warnings_ = 0;
};

std::string ReadLine(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  std::getline(f, v);
  return v;
}

bool InGroup(int64_t gid) {
  if (gid < 0) return false;
  if (static_cast<int64_t>(getegid()) == gid) return true;
  gid_t groups[256];
  const int n = getgroups(256, groups);
  for (int i = 0; i < n; ++i) {
    if (static_cast<int64_t>(groups[i]) == gid) return true;
  }
  return false;
}

std::string Me() {
  const char* u = getenv("USER");
  return u != nullptr && *u != '\0' ? u : "$(id -un)";
}

void CheckIoUring(Report& r) {
  const std::string disabled = ReadLine("/proc/sys/kernel/io_uring_disabled");
  io_uring_params p{};
  const long fd = syscall(__NR_io_uring_setup, 4, &p);
  const int err = errno;
  if (fd >= 0) {
    close(static_cast<int>(fd));
    r.Ok("io_uring_setup works" +
         (disabled.empty() ? std::string() : " (kernel.io_uring_disabled=" + disabled + ")"));
    return;
  }
  std::string why = std::string("io_uring_setup fails (") + strerrorname_np(err) + ")";
  std::string fix = "none needed to run: libshake falls back to ppoll, which is slower";
  if (disabled == "2") {
    why += ": kernel.io_uring_disabled=2";
    fix = "sudo sysctl kernel.io_uring_disabled=0 (libshake uses ppoll meanwhile, slower)";
  } else if (disabled == "1") {
    const std::string g = ReadLine("/proc/sys/kernel/io_uring_group");
    why += ": kernel.io_uring_disabled=1 allows only group " + (g.empty() ? "io_uring_group" : g);
    fix = "add this user to that group (kernel.io_uring_group), or sudo sysctl "
          "kernel.io_uring_disabled=0 (libshake uses ppoll meanwhile, slower)";
  } else if (err == ENOSYS) {
    why += ": the kernel has no io_uring";
  } else if (err == EPERM) {
    why += ": refused, e.g. by a seccomp filter of a container";
    fix = "allow io_uring_setup in the container's seccomp profile (libshake uses ppoll "
          "meanwhile, slower)";
  }
  r.Warning(why, fix);
}

}  // namespace

int DoctorMain(int argc, char** argv) {
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], name = a, value;
    bool inline_value = false;
    if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    auto need = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) {
        fprintf(stderr, "shake doctor: %s needs a value; see shake doctor --help\n",
                name.c_str());
        exit(kUsageError);
      }
      return argv[++i];
    };
    if (name == "-h" || name == "--help") {
      fputs(kDoctorHelp, stdout);
      return 0;
    } else if (name == "-v" || name == "--verbose") {
      verbose = true;
    } else if (name == "--device") {
      setenv("SHAKE_DEVICE", need().c_str(), 1);
    } else if (name == "--addr") {
      setenv("SHAKE_ADDR", need().c_str(), 1);
    } else {
      fprintf(stderr, "shake doctor: unknown option %s; see shake doctor --help\n", name.c_str());
      return kUsageError;
    }
  }
  Report r(verbose);

  // The configuration.
  shim::Config c;
  if (auto err = shim::ParseConfig(&getenv, c)) {
    // ConfigError's line already names the fix.
    printf("shake doctor: %s\n", err->Line().substr(std::strlen("shake: ")).c_str());
    printf("shake doctor: 1 problem; the configuration must parse before the rest is checked\n");
    return 1;
  }
  if (!c.configured()) {
    printf("shake doctor: SHAKE_DEVICE and SHAKE_ADDR are not set: checking the shake setup "
           "defaults, tun:shk0 and 198.18.0.2/24\n");
    c.device = shim::DeviceKind::kTun;
    c.ifname = "shk0";
    shim::ParseIpv4("198.18.0.2", c.addr);
    c.prefix_len = 24;
  } else {
    r.Ok("the SHAKE_* variables parse");
  }
  const std::string dev = (c.device == shim::DeviceKind::kTun ? "tun:" : "packet:") + c.ifname;
  const std::string addr = shim::FormatIpv4(c.addr) + "/" + std::to_string(c.prefix_len);
  const uint32_t mask = c.prefix_len == 0 ? 0 : ~uint32_t{0} << (32 - c.prefix_len);
  const std::string subnet = shim::FormatIpv4(c.addr & mask) + "/" + std::to_string(c.prefix_len);

  if (FindLibrary().empty()) {
    r.Problem("libshake.so is not next to shake nor in its library directory",
              "reinstall the libshake package");
  } else {
    r.Ok("libshake.so: " + FindLibrary());
  }
  CheckIoUring(r);

  const std::string setup = "sudo shake setup --user " + Me() + " --device " + c.ifname;
  const DeviceInfo d = ReadDevice(c.ifname);
  bool device_ok = d.exists;
  if (c.device == shim::DeviceKind::kTun) {
    const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      const int e = errno;
      r.Problem(std::string("cannot open /dev/net/tun (") + strerrorname_np(e) + ")",
                e == ENOENT || e == ENODEV ? "sudo modprobe tun"
                                           : "give this user read and write access to "
                                             "/dev/net/tun (Debian: mode 0666, the default)");
    } else {
      close(fd);
      r.Ok("/dev/net/tun opens read-write");
    }
    if (!d.exists) {
      r.Problem("no device " + c.ifname + " in this network namespace", setup);
    } else if (!d.is_tun) {
      device_ok = false;
      r.Problem(c.ifname + " is not a TUN device",
                "use --device packet:" + c.ifname + " for an Ethernet interface, or " + setup +
                    " with another name");
    } else if (d.tap) {
      device_ok = false;
      r.Problem(c.ifname + " is a TAP device, not TUN", setup + " --recreate");
    } else {
      r.Ok(c.ifname + " is a TUN device");
      if (!d.multi_queue) {
        r.Problem(c.ifname + " has no multi_queue (libshake attaches one queue per process)",
                  setup + " --recreate");
      } else {
        r.Ok(c.ifname + " has multi_queue");
      }
      const bool mine = (d.owner >= 0 && d.owner == static_cast<int64_t>(geteuid())) ||
                        InGroup(d.group);
      if (mine) {
        r.Ok("this user owns " + c.ifname);
      } else if (HasCapability(CAP_NET_ADMIN)) {
        r.Ok("this process has CAP_NET_ADMIN: it may attach to " + c.ifname);
      } else {
        r.Problem(c.ifname + " belongs to " +
                      (d.owner >= 0 ? "uid " + std::to_string(d.owner) : std::string("no user")) +
                      (d.group >= 0 ? " and gid " + std::to_string(d.group) : "") +
                      ", not to this user, who has no CAP_NET_ADMIN",
                  setup);
      }
      if (!d.persistent) {
        r.Warning(c.ifname + " is not persistent: it vanishes with the process holding it",
                  setup);
      }
    }
  } else {
    if (!d.exists) {
      r.Problem("no interface " + c.ifname + " in this network namespace",
                "name an existing Ethernet interface (see ip link)");
    } else if (d.is_tun && !d.tap) {
      device_ok = false;
      r.Problem(c.ifname + " is a TUN device: it has no Ethernet frames",
                "use --device tun:" + c.ifname);
    } else {
      r.Ok(c.ifname + " exists");
    }
    if (!HasCapability(CAP_NET_RAW)) {
      r.Problem("no CAP_NET_RAW for AF_PACKET on " + c.ifname,
                "run as root or with CAP_NET_RAW in the ambient set (setpriv --inh-caps "
                "+net_raw --ambient-caps +net_raw), or use a TUN device (" + setup + ")");
    } else {
      r.Ok("this process has CAP_NET_RAW");
    }
  }
  if (device_ok) {
    if (!d.up) {
      r.Problem(c.ifname + " is down", "sudo ip link set " + c.ifname + " up");
    } else {
      r.Ok(c.ifname + " is up");
    }
    std::string why;
    const auto oif = RouteOif(c.addr, &why);
    if (!oif && why.rfind("local", 0) == 0) {
      r.Problem("the kernel has the stack's address " + shim::FormatIpv4(c.addr) +
                    " itself: it would answer for the stack's connections",
                "give the stack another address of " + subnet + " (--addr), or remove it from "
                "the kernel: sudo ip addr del " + addr + " dev " + c.ifname);
    } else if (!oif) {
      r.Problem("the kernel has no route to the stack's address " + shim::FormatIpv4(c.addr) +
                    " (" + why + ")",
                c.device == shim::DeviceKind::kTun ? setup + " --addr KERNEL_ADDRESS/" +
                                                         std::to_string(c.prefix_len)
                                                   : "sudo ip route add " + subnet + " dev " +
                                                         c.ifname);
    } else if (*oif != d.ifindex) {
      r.Problem("the kernel routes the stack's address " + shim::FormatIpv4(c.addr) +
                    " through " + IfName(*oif) + ", not " + c.ifname,
                "sudo ip route add " + subnet + " dev " + c.ifname +
                    " (and remove the other route), or pick an address in " + c.ifname +
                    "'s subnet");
    } else {
      r.Ok("the kernel routes " + shim::FormatIpv4(c.addr) + " through " + c.ifname);
    }
    if (c.device == shim::DeviceKind::kTun) {
      bool kernel_side = false;
      for (const Ipv4Prefix& a : AddressesOf(c.ifname)) {
        const uint32_t m = a.prefix == 0 ? 0 : ~uint32_t{0} << (32 - a.prefix);
        if ((a.addr & m) == (c.addr & m) && a.addr != c.addr) kernel_side = true;
      }
      if (!kernel_side) {
        r.Warning(c.ifname + " has no kernel address in " + subnet +
                      ": programs on this machine cannot reach the stack by a local address",
                  setup + " --addr KERNEL_ADDRESS/" + std::to_string(c.prefix_len));
      } else {
        r.Ok(c.ifname + " has a kernel address in " + subnet);
      }
    }
  }
  // The output files (SHAKE_PCAP, SHAKE_TRACE): CheckHost checks them first.
  if (auto err = shim::CheckHost(c);
      err && (err->variable == "SHAKE_PCAP" || err->variable == "SHAKE_TRACE")) {
    r.Problem(err->variable + "=" + err->value + ": " + err->problem, err->fix);
  } else if (!c.pcap.empty() || !c.trace.empty()) {
    r.Ok("the pcap and trace files can be written");
  }

  if (r.problems() == 0) {
    printf("shake doctor: %s, %s: all %d checks passed%s\n", dev.c_str(), addr.c_str(),
           r.checks(),
           r.warnings() > 0 ? (", " + std::to_string(r.warnings()) + " with a warning").c_str()
                            : "");
    return 0;
  }
  printf("shake doctor: %s, %s: %d problem(s) in %d checks\n", dev.c_str(), addr.c_str(),
         r.problems(), r.checks());
  return 1;
}

}  // namespace shake::launcher
