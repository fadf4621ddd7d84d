#include "shim/launcher/trace/capture.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>

#include "stack/wire/bytes.h"

namespace shake::ladder {
namespace {

// Link types (https://www.tcpdump.org/linktypes.html).
constexpr uint32_t kLinkNull = 0;
constexpr uint32_t kLinkEthernet = 1;
constexpr uint32_t kLinkRawBsd1 = 12;
constexpr uint32_t kLinkRawBsd2 = 14;
constexpr uint32_t kLinkRaw = 101;
constexpr uint32_t kLinkSll = 113;
constexpr uint32_t kLinkIpv4 = 228;
constexpr uint32_t kLinkSll2 = 276;

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint16_t kEtherQinQ = 0x88a8;

uint16_t Be16(const std::byte* p) {
  return static_cast<uint16_t>((static_cast<unsigned>(p[0]) << 8) | static_cast<unsigned>(p[1]));
}
uint32_t Be32(const std::byte* p) { return (uint32_t{Be16(p)} << 16) | Be16(p + 2); }

// Reads integers in a file's byte order.
struct Order {
  bool swap = false;  // the file's order differs from little-endian
  uint16_t U16(const std::byte* p) const {
    const uint16_t le =
        static_cast<uint16_t>(static_cast<unsigned>(p[0]) | (static_cast<unsigned>(p[1]) << 8));
    return swap ? static_cast<uint16_t>((le >> 8) | (le << 8)) : le;
  }
  uint32_t U32(const std::byte* p) const {
    uint32_t le = 0;
    for (int i = 0; i < 4; ++i) le |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
    return swap ? __builtin_bswap32(le) : le;
  }
};

// The IPv4 packet inside a link-layer frame, or null.
const std::byte* FindIpv4(uint32_t linktype, const std::byte* f, size_t n, size_t* left,
                          Capture* cap) {
  auto ip_at = [&](size_t off) -> const std::byte* {
    if (off >= n) {
      cap->skipped_malformed++;
      return nullptr;
    }
    *left = n - off;
    return f + off;
  };
  switch (linktype) {
    case kLinkEthernet: {
      if (n < 14) break;
      size_t off = 12;
      uint16_t type = Be16(f + off);
      while ((type == kEtherVlan || type == kEtherQinQ) && off + 6 <= n) {
        off += 4;
        type = Be16(f + off);
      }
      if (type != kEtherIpv4) {
        cap->skipped_not_ipv4++;
        return nullptr;
      }
      return ip_at(off + 2);
    }
    case kLinkRaw:
    case kLinkIpv4:
    case kLinkRawBsd1:
    case kLinkRawBsd2:
      if (n >= 1 && (static_cast<uint8_t>(f[0]) >> 4) != 4) {
        cap->skipped_not_ipv4++;
        return nullptr;
      }
      return ip_at(0);
    case kLinkSll:
      if (n < 16) break;
      if (Be16(f + 14) != kEtherIpv4) {
        cap->skipped_not_ipv4++;
        return nullptr;
      }
      return ip_at(16);
    case kLinkSll2:
      if (n < 20) break;
      if (Be16(f) != kEtherIpv4) {
        cap->skipped_not_ipv4++;
        return nullptr;
      }
      return ip_at(20);
    case kLinkNull: {
      if (n < 4) break;
      // The address family in the writer's byte order; AF_INET is 2 everywhere.
      const uint32_t le = Order{}.U32(f), be = Be32(f);
      if (le != 2 && be != 2) {
        cap->skipped_not_ipv4++;
        return nullptr;
      }
      return ip_at(4);
    }
    default:
      cap->skipped_malformed++;
      return nullptr;
  }
  cap->skipped_malformed++;
  return nullptr;
}

}  // namespace

bool DecodeFrame(uint32_t linktype, const std::byte* frame, size_t caplen, int64_t time_ns,
                 Capture* cap, WireSegment* out) {
  size_t n = 0;
  const std::byte* ip = FindIpv4(linktype, frame, caplen, &n, cap);
  if (ip == nullptr) return false;
  // RFC 791 header, read directly: a capture may be cut short by its snapshot length, which
  // wire::ParseIpv4 (made for whole packets) would refuse.
  if (n < 20 || (static_cast<uint8_t>(ip[0]) >> 4) != 4) {
    cap->skipped_malformed++;
    return false;
  }
  const size_t ihl = size_t{static_cast<uint8_t>(ip[0]) & 0x0fu} * 4;
  const size_t total = Be16(ip + 2);
  if (ihl < 20 || ihl > n || total < ihl) {
    cap->skipped_malformed++;
    return false;
  }
  if (static_cast<uint8_t>(ip[9]) != 6) {
    cap->skipped_not_tcp++;
    return false;
  }
  const uint16_t frag = Be16(ip + 6);
  if ((frag & 0x1fff) != 0) {  // a later fragment: no TCP header in it
    cap->skipped_not_tcp++;
    return false;
  }
  const std::byte* tcp = ip + ihl;
  const size_t tcp_avail = std::min(n, total) - ihl;
  if (tcp_avail < 20) {
    cap->skipped_malformed++;
    return false;
  }
  const size_t doff = static_cast<size_t>(static_cast<uint8_t>(tcp[12]) >> 4) * 4;
  if (doff < 20 || ihl + doff > total) {
    cap->skipped_malformed++;
    return false;
  }
  WireSegment s;
  s.time_ns = time_ns;
  s.ip_id = Be16(ip + 4);
  s.src = Endpoint{Ipv4Addr(Be32(ip + 12)), Be16(tcp)};
  s.dst = Endpoint{Ipv4Addr(Be32(ip + 16)), Be16(tcp + 2)};
  s.seq = SeqNum(Be32(tcp + 4));
  s.ack = SeqNum(Be32(tcp + 8));
  s.flags = static_cast<uint8_t>(tcp[13]);
  s.window = Be16(tcp + 14);
  s.len = static_cast<uint32_t>(total - ihl - doff);
  // The options, through the stack's own parser (header only, checksum not verified).
  s.options_known = false;
  if (doff <= tcp_avail) {
    wire::TcpHeader h;
    wire::Bytes payload;
    const std::span<const std::byte> seg(tcp, doff);
    if (wire::ParseTcp(seg, s.src.addr, s.dst.addr, &h, &payload, false) == Drop::kNone) {
      s.options = h.options;
      s.options_known = true;
    }
  }
  *out = s;
  return true;
}

bool ParseCapture(const std::byte* data, size_t size, Capture* out, std::string* error) {
  *out = Capture{};
  if (size < 4) {
    *error = "not a capture file (too short)";
    return false;
  }
  auto add = [&](uint32_t linktype, const std::byte* f, size_t caplen, int64_t t) {
    out->frames++;
    WireSegment s;
    if (DecodeFrame(linktype, f, caplen, t, out, &s)) out->segments.push_back(s);
  };
  const uint32_t magic_le = Order{}.U32(data);
  // ---- pcapng ----
  if (magic_le == 0x0a0d0d0a) {
    out->format = "pcapng";
    struct Iface {
      uint32_t linktype;
      int64_t units_per_s;  // timestamp resolution
    };
    std::vector<Iface> ifaces;
    Order o;
    size_t off = 0;
    while (off + 12 <= size) {
      const std::byte* b = data + off;
      const uint32_t type = Order{}.U32(b);  // the SHB's type reads the same in both orders
      if (type == 0x0a0d0d0a) {
        const uint32_t bom = Order{}.U32(b + 8);
        if (bom == 0x1a2b3c4d) o.swap = false;
        else if (bom == 0x4d3c2b1a) o.swap = true;
        else {
          out->warnings.push_back("pcapng: bad byte-order magic at offset " + std::to_string(off));
          break;
        }
        ifaces.clear();  // interfaces are numbered per section
      }
      const uint32_t len = o.U32(b + 4);
      if (len < 12 || len % 4 != 0 || off + len > size) {
        out->warnings.push_back("pcapng: block at offset " + std::to_string(off) +
                                " is cut short or damaged; the rest is ignored");
        break;
      }
      const uint32_t btype = o.U32(b);
      if (btype == 1 && len >= 20) {  // interface description
        Iface i{o.U16(b + 8), 1000000};
        // Options: if_tsresol (9).
        size_t p = 16;
        while (p + 4 <= len - 4) {
          const uint16_t code = o.U16(b + p), olen = o.U16(b + p + 2);
          if (code == 0) break;
          if (code == 9 && olen >= 1 && p + 4 < len) {
            const uint8_t r = static_cast<uint8_t>(b[p + 4]);
            int64_t u = 1;
            if (r & 0x80) {
              for (int k = 0; k < (r & 0x7f) && k < 62; ++k) u *= 2;
            } else {
              for (int k = 0; k < r && k < 18; ++k) u *= 10;
            }
            i.units_per_s = u;
          }
          p += 4 + ((olen + 3u) & ~3u);
        }
        ifaces.push_back(i);
      } else if ((btype == 6 || btype == 2) && len >= 32) {  // enhanced / obsolete packet
        const uint32_t ifid = btype == 6 ? o.U32(b + 8) : o.U16(b + 8);
        const uint64_t ts = (uint64_t{o.U32(b + 12)} << 32) | o.U32(b + 16);
        const uint32_t caplen = o.U32(b + 20);
        if (ifid >= ifaces.size() || 28 + size_t{caplen} > len) {
          out->skipped_malformed++;
        } else {
          const int64_t u = ifaces[ifid].units_per_s;
          const int64_t t = static_cast<int64_t>(ts / static_cast<uint64_t>(u)) * 1000000000 +
                            static_cast<int64_t>(ts % static_cast<uint64_t>(u)) * 1000000000 / u;
          add(ifaces[ifid].linktype, b + 28, caplen, t);
        }
      } else if (btype == 3 && len >= 16) {  // simple packet: no timestamp
        if (ifaces.empty()) {
          out->skipped_malformed++;
        } else {
          const uint32_t orig = o.U32(b + 8);
          add(ifaces[0].linktype, b + 12, std::min<size_t>(orig, len - 16), 0);
        }
      }
      off += len;
    }
    return true;
  }
  // ---- classic pcap ----
  Order o;
  bool nanos = false;
  if (magic_le == 0xa1b2c3d4 || magic_le == 0xa1b23c4d) {
    nanos = magic_le == 0xa1b23c4d;
  } else if (magic_le == 0xd4c3b2a1 || magic_le == 0x4d3cb2a1) {
    o.swap = true;
    nanos = magic_le == 0x4d3cb2a1;
  } else {
    *error = "not a pcap or pcapng file (unknown magic number)";
    return false;
  }
  if (size < 24) {
    *error = "pcap header cut short";
    return false;
  }
  out->format = nanos ? "pcap (ns)" : "pcap";
  const uint32_t linktype = o.U32(data + 20) & 0x0fffffff;  // upper bits: FCS information
  size_t off = 24;
  while (off < size) {
    if (off + 16 > size) {
      out->warnings.push_back("pcap: the last record header is cut short; ignored");
      break;
    }
    const std::byte* r = data + off;
    const uint32_t sec = o.U32(r), frac = o.U32(r + 4), caplen = o.U32(r + 8);
    if (off + 16 + size_t{caplen} > size) {
      out->warnings.push_back("pcap: the last record is cut short; ignored");
      break;
    }
    const int64_t t = int64_t{sec} * 1000000000 + int64_t{frac} * (nanos ? 1 : 1000);
    add(linktype, r + 16, caplen, t);
    off += 16 + caplen;
  }
  return true;
}

bool ReadCapture(const std::string& path, Capture* out, std::string* error) {
  // Mapped, not copied: a capture may be larger than the memory one would spend on it.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = path + ": not a regular file";
    close(fd);
    return false;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = size == 0 ? nullptr : mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    *error = path + ": mmap: " + std::strerror(errno);
    return false;
  }
  static const std::byte kEmpty[1] = {};
  const bool ok = ParseCapture(map != nullptr ? static_cast<const std::byte*>(map) : kEmpty,
                               size, out, error);
  if (map != nullptr) munmap(map, size);
  if (!ok) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

}  // namespace shake::ladder
