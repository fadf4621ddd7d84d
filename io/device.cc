#include "io/device.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/packet_device.h"
#include "io/tun_device.h"

namespace shake::io {

std::unique_ptr<Device> OpenDevice(const std::string& spec, std::string* error,
                                   const DeviceOptions& o) {
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string name = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (kind == "tun" && !name.empty()) {
    return TunDevice::Open(
        TunOptions{.name = name, .control_fd = o.inherited_fd, .offload = o.offload}, error);
  }
  if (kind == "packet" && !name.empty()) {
    return PacketDevice::Open(PacketOptions{.name = name,
                                            .inherited_fd = o.inherited_fd,
                                            .fanout_group = o.fanout_group,
                                            .receive = !o.send_only,
                                            .only_ipv4 = o.only_ipv4},
                              error);
  }
  *error = "device \"" + spec + "\": expected tun:IFNAME or packet:IFNAME";
  return nullptr;
}

SyncPort::SyncPort(Device& device, size_t batch)
    : dev_(device),
      batch_(batch),
      rx_size_(device.rx_buffer_size()),
      tx_size_(device.header_len() + device.max_tx_frame()),
      rx_mem_(batch * rx_size_),
      tx_mem_(batch * tx_size_),
      tx_len_(batch) {}

int SyncPort::Receive(FrameReceiver& out) {
  if (dev_.is_socket()) {
    std::vector<mmsghdr> msgs(batch_);
    std::vector<iovec> iov(batch_);
    for (size_t i = 0; i < batch_; ++i) {
      iov[i] = {rx_mem_.data() + i * rx_size_, rx_size_};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(dev_.fd(), msgs.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT,
                           nullptr);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      if (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) continue;
      dev_.Decode(std::span(rx_mem_).subspan(k * rx_size_, msgs[k].msg_len), out);
    }
    return n;
  }
  int count = 0;
  for (size_t i = 0; i < batch_; ++i) {
    const ssize_t n = read(dev_.fd(), rx_mem_.data(), rx_size_);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return count ? count : -errno;
    }
    ++count;
    dev_.Decode(std::span(rx_mem_).first(static_cast<size_t>(n)), out);
  }
  return count;
}

bool SyncPort::Queue(std::span<const std::byte> frame) {
  const size_t hl = dev_.header_len();
  if (tx_count_ == batch_ || frame.size() + hl > tx_size_) return false;
  const std::span<std::byte> slot = std::span(tx_mem_).subspan(tx_count_ * tx_size_, tx_size_);
  dev_.EncodeHeader(slot.first(hl));
  std::memcpy(slot.data() + hl, frame.data(), frame.size());
  tx_len_[tx_count_++] = hl + frame.size();
  return true;
}

size_t SyncPort::Flush() {
  size_t dropped = 0;
  if (dev_.is_socket()) {
    std::vector<mmsghdr> msgs(tx_count_);
    std::vector<iovec> iov(tx_count_);
    for (size_t i = 0; i < tx_count_; ++i) {
      iov[i] = {tx_mem_.data() + i * tx_size_, tx_len_[i]};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    // Bounded: each round either sends at least one frame or drops one.
    while (done < tx_count_) {
      const int n = sendmmsg(dev_.fd(), msgs.data() + done,
                             static_cast<unsigned>(tx_count_ - done), MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else {
        ++dropped;  // EAGAIN (socket buffer full) or an error: the frame is lost, as on a wire
        ++done;
      }
    }
  } else {
    for (size_t i = 0; i < tx_count_; ++i) {
      if (write(dev_.fd(), tx_mem_.data() + i * tx_size_, tx_len_[i]) < 0) ++dropped;
    }
  }
  tx_count_ = 0;
  return dropped;
}

}  // namespace shake::io
