// shake setup: once, as root, make a TUN device that a user can run shake on without root.
//
//   shake setup [--user U] [--group G] [--device NAME] [--addr A/P] [--recreate] [--remove]
//
// Defaults: the user from SUDO_USER, device shk0, kernel address 198.18.0.1/24 (RFC 2544's
// benchmarking range, 198.18.0.0/15, never routed on the Internet); the stack then takes another
// address of that subnet, 198.18.0.2/24 by default. Each step first looks at what is there and
// only does what is missing, so running it again changes nothing; every step says what it did.
//   0. /dev/net/tun open to the user (o+rw, as Debian's udev rule has it, when it is not);
//   1. a persistent TUN device, multi-queue (libshake attaches one queue per process), owned by
//      the user (TUNSETIFF with IFF_MULTI_QUEUE, TUNSETOWNER, TUNSETPERSIST), like
//      `ip tuntap add dev NAME mode tun multi_queue user U`;
//   2. the kernel's address on it (RTM_NEWADDR), as `ip addr add A/P dev NAME`;
//   3. the device up, as `ip link set NAME up`; IPv6 off on it (the stack speaks IPv4 only);
//   4. the route to the subnet through the device (the kernel adds it with the address; checked,
//      and added when missing).
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "shim/config.h"
#include "shim/launcher/commands.h"
#include "shim/launcher/netdev.h"

namespace shake::launcher {
namespace {

const char kSetupHelp[] =
    "usage: shake setup [--user U] [--group G] [--device NAME] [--addr A/P] [--recreate]\n"
    "       shake setup --remove [--device NAME]\n"
    "Run once as root: create a persistent multi-queue TUN device owned by user U, give the\n"
    "kernel its address A/P on it, bring it up and route the subnet through it, so that\n"
    "afterwards U runs `shake --device tun:NAME --addr STACK/P -- COMMAND` without root.\n"
    "\n"
    "  --user U       the user who will run shake (default: $SUDO_USER)\n"
    "  --group G      also let group G attach\n"
    "  --device NAME  the TUN device (default shk0)\n"
    "  --addr A/P     the kernel's address and prefix on it (default 198.18.0.1/24); the\n"
    "                 stack takes another address of the subnet (default: the next one)\n"
    "  --recreate     delete and make again a device that exists with the wrong kind\n"
    "                 (TAP, or without multi_queue)\n"
    "  --remove       delete the device\n"
    "Running it again changes nothing and says so. See shake-setup(1).\n";

constexpr const char* kDefaultDevice = "shk0";
constexpr const char* kDefaultAddr = "198.18.0.1/24";

int Fail(const std::string& line, int status = 1) {
  fprintf(stderr, "shake setup: %s\n", line.c_str());
  return status;
}

bool ParsePrefix(const std::string& s, Ipv4Prefix* out) {
  const auto slash = s.find('/');
  if (slash == std::string::npos) return false;
  uint32_t a = 0;
  if (!shim::ParseIpv4(s.substr(0, slash), a)) return false;
  const std::string p = s.substr(slash + 1);
  if (p.empty() || p.find_first_not_of("0123456789") != std::string::npos) return false;
  const int n = std::atoi(p.c_str());
  if (n < 1 || n > 30) return false;
  out->addr = a;
  out->prefix = n;
  return true;
}

uint32_t Mask(int prefix) { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }

void Say(const std::string& s) { printf("shake setup: %s\n", s.c_str()); }

}  // namespace

int SetupMain(int argc, char** argv) {
  std::string user, group, device = kDefaultDevice, addr_text = kDefaultAddr;
  bool recreate = false, remove = false;
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
        Fail(name + " needs a value; see shake setup --help", kUsageError);
        exit(kUsageError);
      }
      return argv[++i];
    };
    if (name == "-h" || name == "--help") {
      fputs(kSetupHelp, stdout);
      return 0;
    } else if (name == "--user") {
      user = need();
    } else if (name == "--group") {
      group = need();
    } else if (name == "--device") {
      device = need();
      if (device.rfind("tun:", 0) == 0) device = device.substr(4);
    } else if (name == "--addr") {
      addr_text = need();
    } else if (name == "--recreate") {
      recreate = true;
    } else if (name == "--remove") {
      remove = true;
    } else {
      return Fail("unknown option " + name + "; see shake setup --help", kUsageError);
    }
  }
  if (device.empty() || device.size() > 15 || device.find_first_of("/: \t") != std::string::npos) {
    return Fail("--device " + device + ": give an interface name of 1 to 15 characters without "
                "'/', ':' or spaces, e.g. shk0", kUsageError);
  }
  Ipv4Prefix kaddr;
  if (!ParsePrefix(addr_text, &kaddr)) {
    return Fail("--addr " + addr_text + ": write the kernel's IPv4 address with a prefix of 1 to "
                "30, e.g. " + kDefaultAddr, kUsageError);
  }
  const uint32_t mask = Mask(kaddr.prefix);
  if ((kaddr.addr & ~mask) == 0 || (kaddr.addr & ~mask) == ~mask) {
    return Fail("--addr " + addr_text + ": that is the subnet's network or broadcast address; "
                "use a host address, e.g. " + kDefaultAddr, kUsageError);
  }
  if (!HasCapability(CAP_NET_ADMIN)) {
    return Fail("needs root (CAP_NET_ADMIN) to make the device; run: sudo shake setup ...");
  }
  std::string error;
  DeviceInfo dev = ReadDevice(device);

  if (remove) {
    if (!dev.exists) {
      Say("there is no device " + device + "; nothing to remove");
      return 0;
    }
    if (!dev.is_tun) return Fail(device + " is not a TUN device; not removing it");
    if (!RemoveTun(device, dev.multi_queue, &error)) {
      if (error.find(std::strerror(EBUSY)) != std::string::npos) {
        return Fail(device + " is in use by a process (a program on libshake, or the keeper "
                    "of its stack, which ends SHAKE_KEEPER_IDLE seconds after the last program); "
                    "stop it and rerun");
      }
      return Fail(error);
    }
    Say("removed " + device + (ReadDevice(device).exists ? " (it goes once no process holds it)" : ""));
    return 0;
  }

  if (user.empty()) {
    const char* su = getenv("SUDO_USER");
    if (su != nullptr && *su != '\0') user = su;
  }
  if (user.empty()) {
    return Fail("pass --user USER, the user who will run shake (SUDO_USER is not set)",
                kUsageError);
  }
  const passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    return Fail("--user " + user + ": no such user", kUsageError);
  }
  const int64_t uid = pw->pw_uid;
  int64_t gid = -1;
  if (!group.empty()) {
    const struct group* gr = getgrnam(group.c_str());
    if (gr == nullptr) return Fail("--group " + group + ": no such group", kUsageError);
    gid = gr->gr_gid;
  }

  // 0. /dev/net/tun itself: the user opens it to attach. Debian's udev rule makes it 0666 (safe:
  // making a device needs CAP_NET_ADMIN, attaching needs the device's owner); where it is not,
  // the user gets read and write through the "other" bits, which hold until the next boot.
  {
    struct stat st {};
    if (stat("/dev/net/tun", &st) != 0 || !S_ISCHR(st.st_mode)) {
      return Fail("there is no /dev/net/tun; load the tun module: modprobe tun");
    }
    gid_t groups[256];
    int ng = 256;
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ng) < 0) ng = 0;
    bool in_group = false;
    for (int i = 0; i < ng; ++i) in_group |= groups[i] == st.st_gid;
    const mode_t need = st.st_uid == pw->pw_uid ? S_IRUSR | S_IWUSR
                        : in_group             ? S_IRGRP | S_IWGRP
                                               : S_IROTH | S_IWOTH;
    if ((st.st_mode & need) == need) {
      Say("/dev/net/tun is open to " + user + " (kept)");
    } else if (chmod("/dev/net/tun", (st.st_mode & 07777) | S_IROTH | S_IWOTH) != 0) {
      return Fail(std::string("chmod o+rw /dev/net/tun: ") + std::strerror(errno));
    } else {
      Say("made /dev/net/tun readable and writable by all users (o+rw, as Debian's udev rule "
          "does; until the next boot)");
    }
  }

  // 1. The device.
  if (dev.exists && (!dev.is_tun || dev.tap || !dev.multi_queue)) {
    const std::string kind = !dev.is_tun ? "is not a TUN device" : dev.tap ? "is a TAP device"
                                                                           : "has no multi_queue";
    if (!recreate || !dev.is_tun) {
      return Fail(device + " exists and " + kind + "; " +
                  (dev.is_tun ? "rerun with --recreate to replace it" : "choose another --device"));
    }
    if (!RemoveTun(device, dev.multi_queue, &error)) return Fail(error);
    dev = ReadDevice(device);
    if (dev.exists) return Fail(device + " is still held by a process; stop it and rerun");
    Say("deleted " + device + ", which " + kind);
  }
  if (!dev.exists) {
    if (!MakeTun(device, uid, gid, &error)) return Fail(error);
    dev = ReadDevice(device);
    if (!dev.exists) return Fail("made " + device + " but it is gone again");
    Say("created " + device + ": persistent TUN, multi_queue, owner " + user +
        (gid >= 0 ? ", group " + group : ""));
  } else if (dev.owner != uid || (gid >= 0 && dev.group != gid)) {
    if (!MakeTun(device, uid, gid, &error)) return Fail(error);
    dev = ReadDevice(device);
    Say(device + " exists; owner set to " + user + (gid >= 0 ? ", group " + group : ""));
  } else {
    Say(device + " exists: persistent TUN, multi_queue, owner " + user + " (kept)");
  }

  // 2. The kernel's address.
  bool have = false;
  for (const Ipv4Prefix& a : AddressesOf(device)) {
    if (a.addr == kaddr.addr && a.prefix == kaddr.prefix) have = true;
  }
  if (have) {
    Say(device + " has " + addr_text + " (kept)");
  } else {
    if (!AddAddress(dev.ifindex, kaddr, &error)) return Fail(error);
    Say("added " + addr_text + " to " + device);
  }

  // 3. Up, IPv4 only.
  if (dev.up) {
    Say(device + " is up (kept)");
  } else {
    if (!SetUp(device, &error)) return Fail(error);
    Say("brought " + device + " up");
  }
  const std::string v6 = "/proc/sys/net/ipv6/conf/" + device + "/disable_ipv6";
  {
    std::ifstream in(v6);
    std::string cur;
    if (in && std::getline(in, cur) && cur != "1") {
      std::ofstream out(v6);
      out << "1\n";
      out.close();
      if (out) Say("turned IPv6 off on " + device + " (libshake speaks IPv4)");
    }
  }

  // 4. The route to the stack's subnet.
  // The stack's suggested address: the kernel's next one in the subnet (wrapping past the
  // broadcast address to the first host).
  uint32_t host = (kaddr.addr & ~mask) + 1;
  if (host >= (~mask & 0xffffffffu)) host = 1;
  const uint32_t stack_addr = (kaddr.addr & mask) | host;
  std::string why;
  auto oif = RouteOif(stack_addr, &why);
  if (oif && *oif == dev.ifindex) {
    Say("the kernel routes " + shim::FormatIpv4(kaddr.addr & mask) + "/" +
        std::to_string(kaddr.prefix) + " through " + device + " (kept)");
  } else {
    if (!AddRoute(kaddr.addr & mask, kaddr.prefix, dev.ifindex, &error)) {
      return Fail(error + "; the kernel routes " + shim::FormatIpv4(stack_addr) + " " +
                  (oif ? "through " + IfName(*oif) : "nowhere (" + why + ")"));
    }
    Say("added the route " + shim::FormatIpv4(kaddr.addr & mask) + "/" +
        std::to_string(kaddr.prefix) + " dev " + device);
  }
  const std::string stack_text = shim::FormatIpv4(stack_addr) + "/" + std::to_string(kaddr.prefix);
  Say("ready: as " + user + ", run  shake --device tun:" + device + " --addr " + stack_text +
      " -- curl http://" + shim::FormatIpv4(kaddr.addr) + "/");
  return 0;
}

}  // namespace shake::launcher
