#include "io/tun_device.h"

#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/offload.h"

namespace shake::io {

std::unique_ptr<TunDevice> TunDevice::Open(const TunOptions& options, std::string* error) {
  auto fail = [&](const std::string& what, int err) -> std::unique_ptr<TunDevice> {
    *error = "tun:" + options.name + ": " + what + ": " + std::strerror(err);
    if (err == EPERM || err == EACCES) {
      *error += " (create it as root with `ip tuntap add dev " + options.name +
                " mode tun user $USER` and bring it up, or run with CAP_NET_ADMIN)";
    }
    return nullptr;
  };
  if (options.name.empty() || options.name.size() >= IFNAMSIZ) {
    *error = "tun: interface name missing or longer than 15 characters";
    return nullptr;
  }
  if (options.queues < 1) {
    *error = "tun: queues must be at least 1";
    return nullptr;
  }
  const bool existed = if_nametoindex(options.name.c_str()) != 0;
  if (!existed && !options.create) return fail("no such device", ENODEV);

  std::unique_ptr<TunDevice> dev(new TunDevice());
  dev->name_ = options.name;
  dev->created_ = !existed;
  for (int q = 0; q < options.queues; ++q) {
    const int fd = q == 0 && options.control_fd >= 0
                       ? options.control_fd
                       : open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fail("open /dev/net/tun", errno);
    dev->fds_.push_back(fd);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, options.name.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (options.queues > 1) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    if (options.offload) ifr.ifr_flags |= IFF_VNET_HDR;
    int r = ioctl(fd, TUNSETIFF, &ifr);
    if (r < 0 && errno == EINVAL && existed && !(ifr.ifr_flags & IFF_MULTI_QUEUE)) {
      // A device made with multi_queue (shake setup makes them so) takes only queue attaches.
      ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_MULTI_QUEUE);
      r = ioctl(fd, TUNSETIFF, &ifr);
    }
    if (r == 0 && (ifr.ifr_flags & IFF_MULTI_QUEUE)) dev->multi_queue_ = true;
    if (r == 0 && (ifr.ifr_flags & IFF_VNET_HDR)) dev->vnet_ = true;
    if (r < 0) {
      // A control fd already attached to this device (inherited across exec) is used as it is.
      ifreq cur{};
      const bool attached = errno == EEXIST && q == 0 && options.control_fd >= 0 &&
                            ioctl(fd, TUNGETIFF, &cur) == 0 &&
                            std::strncmp(cur.ifr_name, options.name.c_str(), IFNAMSIZ) == 0;
      if (!attached) return fail("TUNSETIFF", errno);
      dev->multi_queue_ = (cur.ifr_flags & IFF_MULTI_QUEUE) != 0;
      dev->vnet_ = (cur.ifr_flags & IFF_VNET_HDR) != 0;
    }
  }

  if (dev->vnet_ && options.offload) {
    // The kernel may hand over TCP super-frames and partial checksums, and takes them from us.
    // Refused (an old kernel): frames still carry the header, cut to the MTU by the kernel.
    (void)ioctl(dev->fds_[0], TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4);
  }
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket", errno);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, options.name.c_str(), IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 && ifr.ifr_mtu <= 65535) {
    dev->mtu_ = static_cast<uint16_t>(ifr.ifr_mtu);
  }
  if (dev->created_) {
    // A device we created is ours to bring up; an attached one is configured by its owner.
    std::memset(&ifr.ifr_ifru, 0, sizeof(ifr.ifr_ifru));
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
      ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
      if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
        const int err = errno;
        close(s);
        return fail("bring up", err);
      }
    }
  }
  close(s);
  return dev;
}

bool TunDevice::SetReceiving(bool on) {
  if (!multi_queue_) return false;
  ifreq ifr{};
  ifr.ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
  for (int fd : fds_) {
    if (ioctl(fd, TUNSETQUEUE, &ifr) < 0 && errno != EINVAL) return false;
  }
  return true;
}

TunDevice::~TunDevice() {
  for (int fd : fds_) close(fd);
}

void TunDevice::Decode(std::span<std::byte> raw, FrameReceiver& out) {
  ++stats_.raw_reads;
  if (!vnet_) {
    ++stats_.frames;
    // Without a vnet header the kernel has completed every checksum before handing the packet
    // to the TUN (the device advertises no checksum offload), so nothing is vouched for here.
    out.OnFrame(raw, FrameMeta{});
    return;
  }
  if (raw.size() < VnetHeader::kSize + 20) {
    ++stats_.dropped;
    return;
  }
  const VnetHeader h = VnetHeader::Parse(raw);
  const std::span<std::byte> packet = raw.subspan(VnetHeader::kSize);
  const uint8_t gso = static_cast<uint8_t>(h.gso_type & ~VnetHeader::kGsoEcn);
  const bool trusted = (h.flags & (VnetHeader::kNeedsCsum | VnetHeader::kDataValid)) != 0;
  const bool whole = gso != VnetHeader::kGsoNone && coalesce_ && packet.size() <= 65535;
  if (whole && !FixWholeSuperFrame(packet, 0)) {
    ++stats_.dropped;
    return;
  }
  if (gso == VnetHeader::kGsoNone || whole) {
    if (whole) ++stats_.gso_superframes;  // whole, as GRO hands it on
    if (h.flags & VnetHeader::kNeedsCsum) ++stats_.partial_checksums;
    ++stats_.frames;
    out.OnFrame(packet, FrameMeta{.checksum_trusted = trusted});
    return;
  }
  if (gso != VnetHeader::kGsoTcpv4) {
    ++stats_.dropped;
    return;
  }
  ++stats_.gso_superframes;
  if (!SegmentTcp(packet, 0, h.gso_size, scratch_, out)) ++stats_.dropped;
}

void TunDevice::EncodeHeader(std::span<std::byte> header) const {
  if (vnet_) VnetHeader{}.Emit(header);
}

void TunDevice::EncodeGsoHeader(std::span<std::byte> header, size_t csum_start, size_t hdr_len,
                                uint16_t gso_size) const {
  VnetHeader::TcpGso(csum_start, hdr_len, gso_size).Emit(header);
}

}  // namespace shake::io
