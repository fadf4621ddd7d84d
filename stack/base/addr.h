// Addresses: IPv4 addresses, Ethernet MAC addresses and TCP endpoints as small value types.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shake {

// An IPv4 address held in host byte order (198.18.0.1 is 0xC6120001).
class Ipv4Addr {
 public:
  constexpr Ipv4Addr() = default;
  constexpr explicit Ipv4Addr(uint32_t host_order) : v_(host_order) {}
  constexpr Ipv4Addr(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
      : v_((uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d) {}
  static std::optional<Ipv4Addr> Parse(std::string_view text);

  constexpr uint32_t value() const { return v_; }
  constexpr bool is_unspecified() const { return v_ == 0; }
  constexpr bool is_broadcast() const { return v_ == 0xffffffffu; }
  constexpr bool is_multicast() const { return (v_ >> 28) == 0xe; }
  constexpr bool is_loopback() const { return (v_ >> 24) == 127; }
  constexpr bool InSubnet(Ipv4Addr net, int prefix) const {
    const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
    return (v_ & mask) == (net.v_ & mask);
  }
  std::string ToString() const;
  constexpr auto operator<=>(const Ipv4Addr&) const = default;

 private:
  uint32_t v_ = 0;
};

struct MacAddr {
  std::array<uint8_t, 6> b{};
  static constexpr MacAddr Broadcast() { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  constexpr bool is_broadcast() const { return *this == Broadcast(); }
  constexpr bool is_multicast() const { return (b[0] & 1) != 0; }
  std::string ToString() const;
  constexpr auto operator<=>(const MacAddr&) const = default;
};

struct Endpoint {
  Ipv4Addr addr;
  uint16_t port = 0;
  std::string ToString() const;
  constexpr auto operator<=>(const Endpoint&) const = default;
};

// A connection's identity as seen from the stack: local and remote endpoints.
struct FourTuple {
  Endpoint local;
  Endpoint remote;
  constexpr auto operator<=>(const FourTuple&) const = default;
};

}  // namespace shake
