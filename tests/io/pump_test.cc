// io::Pump on a datagram socketpair standing in for a device: frames cross intact both ways,
// also when the handler's answers fill the transmit batch in the middle of a drain.
#include "io/pump.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace shake::io {
namespace {

// A "device" whose frames are whole datagrams of a socketpair end: no header, no decoding.
class PairDevice final : public Device {
 public:
  explicit PairDevice(int fd) : fd_(fd) {}
  int fd() const override { return fd_; }
  LinkMode link() const override { return LinkMode::kIp; }
  const std::string& name() const override { return name_; }
  uint16_t mtu() const override { return 1500; }
  bool is_socket() const override { return true; }
  size_t rx_buffer_size() const override { return 2048; }
  void Decode(std::span<std::byte> raw, FrameReceiver& out) override { out.OnFrame(raw, {}); }

 private:
  int fd_;
  std::string name_ = "pair";
};

std::vector<std::byte> Frame(int i) {
  std::vector<std::byte> f(100 + static_cast<size_t>(i) * 7);
  for (size_t k = 0; k < f.size(); ++k) f[k] = static_cast<std::byte>(i * 31 + static_cast<int>(k));
  return f;
}

// Records every frame and answers each with three frames of its own.
class Answering final : public PacketHandler {
 public:
  std::vector<std::vector<std::byte>> got;
  void Receive(Instant, std::span<const std::byte> frame, FrameSink& out, bool) override {
    got.emplace_back(frame.begin(), frame.end());
    for (int k = 0; k < 3; ++k) {
      std::span<std::byte> b = out.Acquire(64);
      ASSERT_GE(b.size(), 64u);
      for (size_t j = 0; j < 64; ++j) b[j] = static_cast<std::byte>(k);
      out.Commit(64);
    }
  }
  Instant Poll(Instant now, FrameSink&) override { return now; }
};

TEST(Pump, AnswersThatFillTheBatchMidDrainLeaveTheReceivedFramesIntact) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int size = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  PairDevice dev(sv[0]);
  Pump pump(dev, /*rx_batch=*/32, /*tx_batch=*/4);  // 3 answers per frame: flushes mid-drain
  constexpr int kFrames = 40;
  for (int i = 0; i < kFrames; ++i) {
    const auto f = Frame(i);
    ASSERT_EQ(send(sv[1], f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  }
  Answering h;
  EXPECT_EQ(pump.Drain(Instant::FromNanos(1), h, 64), kFrames);
  pump.Flush();
  ASSERT_EQ(h.got.size(), static_cast<size_t>(kFrames));
  for (int i = 0; i < kFrames; ++i) EXPECT_EQ(h.got[static_cast<size_t>(i)], Frame(i)) << i;
  int answers = 0;
  std::byte buf[2048];
  for (ssize_t n; (n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
    EXPECT_EQ(n, 64);
    ++answers;
  }
  EXPECT_EQ(answers, 3 * kFrames);
  EXPECT_EQ(pump.Drain(Instant::FromNanos(2), h, 64), 0);  // empty: says so
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace shake::io
