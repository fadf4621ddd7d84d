// Network device helpers for `shake setup` and `shake doctor`: TUN devices (create, owner,
// persist, and what sysfs says about them), IPv4 addresses, link up, and the kernel's route to an
// address, through ioctls and rtnetlink (no iproute2 needed).
//
// Every function that changes something returns false with a reason (strerror and the call) in
// *error; nothing here prints.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shake::launcher {

// What /sys/class/net/NAME says about a device.
struct DeviceInfo {
  bool exists = false;
  int ifindex = 0;
  bool is_tun = false;       // a TUN or TAP device (tun_flags present)
  bool tap = false;          // IFF_TAP
  bool multi_queue = false;  // IFF_MULTI_QUEUE
  bool persistent = false;   // IFF_PERSIST
  int64_t owner = -1;        // -1: none
  int64_t group = -1;
  bool up = false;           // IFF_UP
  int mtu = 0;
};
DeviceInfo ReadDevice(const std::string& name);

bool HasCapability(int cap);  // in the effective set

// A persistent multi-queue TUN device NAME owned by uid (and gid when >= 0). When it exists with
// the same flags only the owner is set. Needs CAP_NET_ADMIN.
bool MakeTun(const std::string& name, int64_t uid, int64_t gid, std::string* error);
// Clears IFF_PERSIST, so the device goes away (once no process holds it).
bool RemoveTun(const std::string& name, bool multi_queue, std::string* error);

bool SetUp(const std::string& name, std::string* error);

struct Ipv4Prefix {
  uint32_t addr = 0;  // host order
  int prefix = 0;
};
std::vector<Ipv4Prefix> AddressesOf(const std::string& name);
bool AddAddress(int ifindex, Ipv4Prefix a, std::string* error);

// The kernel's route for `dst` (host order): the output interface index, or nullopt with the
// reason (no route, unreachable) in *why.
std::optional<int> RouteOif(uint32_t dst, std::string* why);
bool AddRoute(uint32_t net, int prefix, int ifindex, std::string* error);

std::string IfName(int ifindex);  // "" when there is none

}  // namespace shake::launcher
