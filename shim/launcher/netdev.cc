#include "shim/launcher/netdev.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace shake::launcher {
namespace {

std::string ReadLine(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  std::getline(f, v);
  return v;
}

std::string Err(const std::string& what, int e) { return what + ": " + std::strerror(e); }

// One rtnetlink request and its answer (an ACK, an error, or a message of `want_type`).
class Netlink {
 public:
  Netlink() { fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE); }
  ~Netlink() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  // Sends `req` (an nlmsghdr and its payload) and reads until the answer. Returns 0, or a
  // negative errno from the kernel (or from the socket).
  int Talk(nlmsghdr* req, uint16_t want_type, std::vector<char>* reply) {
    req->nlmsg_seq = ++seq_;
    sockaddr_nl to{};
    to.nl_family = AF_NETLINK;
    if (sendto(fd_, req, req->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
      return -errno;
    }
    for (int round = 0; round < 64; ++round) {
      char buf[8192];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      int len = static_cast<int>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq_) continue;
        if (h->nlmsg_type == NLMSG_ERROR) {
          const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
          return e->error;
        }
        if (h->nlmsg_type == want_type && reply != nullptr) {
          reply->assign(reinterpret_cast<char*>(h), reinterpret_cast<char*>(h) + h->nlmsg_len);
          return 0;
        }
      }
    }
    return -ETIMEDOUT;
  }

 private:
  int fd_ = -1;
  uint32_t seq_ = 0;
};

void AddAttr(nlmsghdr* h, size_t cap, uint16_t type, const void* data, size_t len) {
  const size_t at = NLMSG_ALIGN(h->nlmsg_len);
  const size_t alen = RTA_LENGTH(len);
  if (at + RTA_ALIGN(alen) > cap) return;
  auto* rta = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(h) + at);
  rta->rta_type = type;
  rta->rta_len = static_cast<unsigned short>(alen);
  std::memcpy(RTA_DATA(rta), data, len);
  h->nlmsg_len = static_cast<uint32_t>(at + RTA_ALIGN(alen));
}

int OpenTunFor(const std::string& name, short flags, std::string* error) {
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *error = Err("open /dev/net/tun", errno);
    return -1;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = flags;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *error = Err("TUNSETIFF " + name, errno);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

DeviceInfo ReadDevice(const std::string& name) {
  DeviceInfo d;
  d.ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (d.ifindex == 0) return d;
  d.exists = true;
  const std::string sys = "/sys/class/net/" + name;
  const std::string tf = ReadLine(sys + "/tun_flags");
  if (!tf.empty()) {
    d.is_tun = true;
    const unsigned long f = std::strtoul(tf.c_str(), nullptr, 16);
    d.tap = (f & IFF_TAP) != 0;
    d.multi_queue = (f & IFF_MULTI_QUEUE) != 0;
    d.persistent = (f & IFF_PERSIST) != 0;
    const std::string o = ReadLine(sys + "/owner"), g = ReadLine(sys + "/group");
    d.owner = o.empty() ? -1 : std::strtoll(o.c_str(), nullptr, 10);
    d.group = g.empty() ? -1 : std::strtoll(g.c_str(), nullptr, 10);
  }
  const std::string fl = ReadLine(sys + "/flags");
  d.up = !fl.empty() && (std::strtoul(fl.c_str(), nullptr, 16) & IFF_UP) != 0;
  d.mtu = std::atoi(ReadLine(sys + "/mtu").c_str());
  return d;
}

bool HasCapability(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  return (data[cap / 32].effective >> (cap % 32)) & 1u;
}

bool MakeTun(const std::string& name, int64_t uid, int64_t gid, std::string* error) {
  const int fd = OpenTunFor(name, IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE, error);
  if (fd < 0) return false;
  bool ok = true;
  if (ioctl(fd, TUNSETOWNER, static_cast<unsigned long>(uid)) < 0) {
    *error = Err("TUNSETOWNER", errno);
    ok = false;
  } else if (gid >= 0 && ioctl(fd, TUNSETGROUP, static_cast<unsigned long>(gid)) < 0) {
    *error = Err("TUNSETGROUP", errno);
    ok = false;
  } else if (ioctl(fd, TUNSETPERSIST, 1UL) < 0) {
    *error = Err("TUNSETPERSIST", errno);
    ok = false;
  }
  close(fd);
  return ok;
}

bool RemoveTun(const std::string& name, bool multi_queue, std::string* error) {
  const short flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0));
  const int fd = OpenTunFor(name, flags, error);
  if (fd < 0) return false;
  const bool ok = ioctl(fd, TUNSETPERSIST, 0UL) == 0;
  if (!ok) *error = Err("TUNSETPERSIST 0", errno);
  close(fd);
  return ok;
}

bool SetUp(const std::string& name, std::string* error) {
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *error = Err("socket", errno);
    return false;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    ok = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  if (!ok) *error = Err("bring " + name + " up (SIOCSIFFLAGS)", errno);
  close(s);
  return ok;
}

std::vector<Ipv4Prefix> AddressesOf(const std::string& name) {
  std::vector<Ipv4Prefix> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET || name != a->ifa_name) {
      continue;
    }
    Ipv4Prefix p;
    p.addr = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
    if (a->ifa_netmask != nullptr) {
      const uint32_t m = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_netmask)->sin_addr.s_addr);
      p.prefix = __builtin_popcount(m);
    }
    out.push_back(p);
  }
  freeifaddrs(list);
  return out;
}

bool AddAddress(int ifindex, Ipv4Prefix a, std::string* error) {
  Netlink nl;
  if (!nl.ok()) {
    *error = Err("netlink socket", errno);
    return false;
  }
  alignas(nlmsghdr) char buf[256] = {};
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  h->nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  h->nlmsg_type = RTM_NEWADDR;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  auto* ifa = static_cast<ifaddrmsg*>(NLMSG_DATA(h));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<unsigned char>(a.prefix);
  ifa->ifa_index = static_cast<unsigned>(ifindex);
  const uint32_t be = htonl(a.addr);
  AddAttr(h, sizeof buf, IFA_LOCAL, &be, 4);
  AddAttr(h, sizeof buf, IFA_ADDRESS, &be, 4);
  const int r = nl.Talk(h, 0, nullptr);
  if (r != 0) {
    *error = Err("add the address (RTM_NEWADDR)", -r);
    return false;
  }
  return true;
}

std::optional<int> RouteOif(uint32_t dst, std::string* why) {
  Netlink nl;
  if (!nl.ok()) {
    *why = Err("netlink socket", errno);
    return std::nullopt;
  }
  alignas(nlmsghdr) char buf[256] = {};
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  h->nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  h->nlmsg_type = RTM_GETROUTE;
  h->nlmsg_flags = NLM_F_REQUEST;
  auto* rt = static_cast<rtmsg*>(NLMSG_DATA(h));
  rt->rtm_family = AF_INET;
  rt->rtm_dst_len = 32;
  const uint32_t be = htonl(dst);
  AddAttr(h, sizeof buf, RTA_DST, &be, 4);
  std::vector<char> reply;
  const int r = nl.Talk(h, RTM_NEWROUTE, &reply);
  if (r != 0) {
    *why = r == -ENETUNREACH ? "no route" : Err("route lookup", -r);
    return std::nullopt;
  }
  auto* rh = reinterpret_cast<nlmsghdr*>(reply.data());
  auto* rm = static_cast<rtmsg*>(NLMSG_DATA(rh));
  if (rm->rtm_type != RTN_UNICAST && rm->rtm_type != RTN_LOCAL) {
    *why = rm->rtm_type == RTN_UNREACHABLE ? "unreachable" : "not a unicast route";
    return std::nullopt;
  }
  if (rm->rtm_type == RTN_LOCAL) {
    *why = "local: the kernel has this address itself";
    return std::nullopt;
  }
  int len = static_cast<int>(RTM_PAYLOAD(rh));
  for (auto* a = RTM_RTA(rm); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_OIF) {
      int oif = 0;
      std::memcpy(&oif, RTA_DATA(a), sizeof oif);
      return oif;
    }
  }
  *why = "no output interface";
  return std::nullopt;
}

bool AddRoute(uint32_t net, int prefix, int ifindex, std::string* error) {
  Netlink nl;
  if (!nl.ok()) {
    *error = Err("netlink socket", errno);
    return false;
  }
  alignas(nlmsghdr) char buf[256] = {};
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  h->nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg));
  h->nlmsg_type = RTM_NEWROUTE;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  auto* rt = static_cast<rtmsg*>(NLMSG_DATA(h));
  rt->rtm_family = AF_INET;
  rt->rtm_dst_len = static_cast<unsigned char>(prefix);
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_BOOT;
  rt->rtm_scope = RT_SCOPE_LINK;
  rt->rtm_type = RTN_UNICAST;
  const uint32_t be = htonl(net);
  AddAttr(h, sizeof buf, RTA_DST, &be, 4);
  const uint32_t oif = static_cast<uint32_t>(ifindex);
  AddAttr(h, sizeof buf, RTA_OIF, &oif, 4);
  const int r = nl.Talk(h, 0, nullptr);
  if (r != 0) {
    *error = Err("add the route (RTM_NEWROUTE)", -r);
    return false;
  }
  return true;
}

std::string IfName(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (if_indextoname(static_cast<unsigned>(ifindex), name) == nullptr) return "";
  return name;
}

}  // namespace shake::launcher
