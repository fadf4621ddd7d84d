// Devices and the engine against the Linux kernel, without the TCP stack: an EchoHandler answers
// ARP and ping through a TUN device and through an AF_PACKET socket on a veth, with io_uring and
// with the ppoll fallback.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <thread>
#include <vector>

#include "io/clock.h"
#include "io/engine.h"
#include "io/offload.h"
#include "io/packet_device.h"
#include "io/pcap.h"
#include "io/tun_device.h"
#include "tests/io/echo_handler.h"
#include "tests/io/netns.h"

namespace shake::io {
namespace {

using testing::EchoHandler;
using testing::Topology;

constexpr Ipv4Addr kStackAddr(198, 18, 0, 2);

class TunEngine : public ::testing::TestWithParam<bool> {};

TEST_P(TunEngine, AnswersKernelPing) {
  SHAKE_REQUIRE_NETNS();
  Topology topo;
  const auto ns = topo.AddNamespace("tun");
  topo.Tun(ns, "tun0");
  topo.Exec(ns, "ip addr add 198.18.0.1/24 dev tun0");
  std::string error;
  auto dev = testing::InNamespace(ns, [&] {
    return TunDevice::Open(TunOptions{.name = "tun0", .create = false}, &error);
  });
  ASSERT_TRUE(dev) << error;
  EXPECT_FALSE(dev->created());
  ASSERT_TRUE(topo.WaitCarrier(ns, "tun0"));
  EchoHandler echo(LinkMode::kIp, kStackAddr);
  Engine engine(*dev, echo, EngineOptions{.use_io_uring = GetParam(), .quiet = true});
  EXPECT_EQ(engine.features().io_uring, GetParam()) << engine.features().Describe();
  std::printf("engine: %s\n", engine.features().Describe().c_str());
  std::jthread loop([&](std::stop_token st) { engine.Run(st); });
  EXPECT_EQ(testing::Ping(ns, "198.18.0.2", 200, 2), 200);
  loop.request_stop();
  loop.join();
  EXPECT_EQ(echo.echo_replies, 200);
  const auto s = engine.stats();
  EXPECT_EQ(s.tx_frames, 200u);
  EXPECT_EQ(s.tx_errors, 0u);
  EXPECT_LT(s.passes, 5000u) << "the loop must sleep between pings, not spin";
}

INSTANTIATE_TEST_SUITE_P(UringAndFallback, TunEngine, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "io_uring" : "ppoll"; });

TEST(TunDevice, PersistentDeviceOwnedByUserAttachesWithoutPrivilege) {
  SHAKE_REQUIRE_NETNS();
  Topology topo;
  const auto ns = topo.AddNamespace("tunuser");
  constexpr int kNobody = 65534;
  topo.Tun(ns, "tunu", kNobody);
  topo.Tun(ns, "tunr", 0);  // owned by root (an unowned device admits anyone)
  // Opening /dev/net/tun is governed by its file mode (0666 on most systems, 0600 here on some
  // CI hosts); attaching with TUNSETIFF is what the device's owner grants. When the mode keeps
  // nobody out, open it as root and hand the fd over, as a privileged launcher would.
  const bool world_open = access("/dev/net/tun", R_OK | W_OK) == 0 &&
                          (testing::Sh("[ $(stat -c %a /dev/net/tun) = 666 ]") == 0);
  if (!world_open) std::printf("note: /dev/net/tun is not world-accessible; passing an fd\n");
  const pid_t pid = fork();
  if (pid == 0) {
    if (!testing::JoinNetns(ns)) _exit(10);
    const int ctl = world_open ? -1 : open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    const int ctl2 = world_open ? -1 : open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (setresgid(kNobody, kNobody, kNobody) || setresuid(kNobody, kNobody, kNobody)) _exit(11);
    std::string err;
    auto own = TunDevice::Open(TunOptions{.name = "tunu", .create = false, .control_fd = ctl}, &err);
    if (!own) {
      std::fprintf(stderr, "%s\n", err.c_str());
      _exit(12);
    }
    auto other = TunDevice::Open(TunOptions{.name = "tunr", .create = false, .control_fd = ctl2}, &err);
    if (other) _exit(13);
    if (err.find("ip tuntap add") == std::string::npos) _exit(14);
    std::fprintf(stderr, "expected refusal: %s\n", err.c_str());
    auto missing = TunDevice::Open(TunOptions{.name = "nosuch", .create = false}, &err);
    _exit(missing ? 15 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(TunDevice, CreatesDeviceWhenPermitted) {
  SHAKE_REQUIRE_NETNS();
  Topology topo;
  const auto ns = topo.AddNamespace("tunnew");
  std::string error;
  auto dev = testing::InNamespace(ns, [&] {
    return TunDevice::Open(TunOptions{.name = "tnew", .queues = 2}, &error);
  });
  ASSERT_TRUE(dev) << error;
  EXPECT_TRUE(dev->created());
  EXPECT_EQ(dev->queue_count(), 2u);
  std::string out;
  topo.Exec(ns, "ip link show tnew", &out);
  EXPECT_NE(out.find("UP"), std::string::npos) << out;
}

// Two namespaces joined by a veth: the kernel at 198.18.1.1 on v0 in `a`, v1 in `b` for the
// device under test.
class PacketVeth : public ::testing::Test {
 protected:
  void SetUp() override {
    SHAKE_REQUIRE_NETNS();
    a = topo.AddNamespace("pa");
    b = topo.AddNamespace("pb");
    topo.Veth(a, "v0", b, "v1");
    topo.Exec(a, "ip addr add 198.18.1.1/24 dev v0");
  }
  Topology topo;
  std::string a, b;
};

TEST_F(PacketVeth, AnswersArpAndPingOnVethAndIgnoresOwnFrames) {
  std::string error;
  auto dev = testing::InNamespace(
      b, [&] { return PacketDevice::Open(PacketOptions{.name = "v1"}, &error); });
  ASSERT_TRUE(dev) << error;
  const Ipv4Addr addr(198, 18, 1, 2);
  EchoHandler echo(LinkMode::kEthernet, addr, dev->mac());
  Engine engine(*dev, echo);
  const std::string pcap_path = topo.dir() + "/echo.pcap";
  auto pcap = PcapWriter::Open(pcap_path, kLinktypeEthernet, &error);
  ASSERT_TRUE(pcap) << error;
  engine.AddFilter(pcap.get());
  std::jthread loop([&](std::stop_token st) { engine.Run(st); });
  std::string out;
  EXPECT_EQ(testing::Ping(a, "198.18.1.2", 100, 2), 100);
  topo.Exec(a, "ip neigh show 198.18.1.2", &out);
  EXPECT_NE(out.find(dev->mac().ToString()), std::string::npos) << out;
  loop.request_stop();
  loop.join();
  EXPECT_EQ(echo.echo_replies, 100);
  EXPECT_GE(echo.arp_replies, 1);
  EXPECT_EQ(echo.own_frames, 0) << "PACKET_IGNORE_OUTGOING must hide our own frames";
  pcap->Flush();
  ASSERT_EQ(testing::Run({"tcpdump", "-nn", "-e", "-r", pcap_path}, &out), 0) << out;
  EXPECT_NE(out.find("198.18.1.2 > 198.18.1.1: ICMP echo reply"), std::string::npos) << out;
  EXPECT_NE(out.find("Reply 198.18.1.2 is-at"), std::string::npos) << out;
}

// Frames queued on a packet socket, by IPv4 destination (0 for ARP): read without waiting.
std::map<uint32_t, int> QueuedByDestination(int fd) {
  std::map<uint32_t, int> seen;
  std::vector<std::byte> buf(70000);
  for (int i = 0; i < 1000; ++i) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) break;
    const auto at = [&](size_t k) { return static_cast<uint32_t>(buf[VnetHeader::kSize + k]); };
    if (static_cast<size_t>(n) < VnetHeader::kSize + 34) continue;
    const uint32_t type = at(12) << 8 | at(13);
    if (type == ETH_P_ARP) ++seen[0];
    if (type == ETH_P_IP) ++seen[at(30) << 24 | at(31) << 16 | at(32) << 8 | at(33)];
  }
  return seen;
}

TEST_F(PacketVeth, QueuesOnlyArpAndFramesToItsAddress) {
  std::string error;
  const uint32_t ours = Ipv4Addr(198, 18, 1, 2).value();
  auto only = testing::InNamespace(b, [&] {
    return PacketDevice::Open(PacketOptions{.name = "v1", .only_ipv4 = ours}, &error);
  });
  ASSERT_TRUE(only) << error;
  auto all = testing::InNamespace(
      b, [&] { return PacketDevice::Open(PacketOptions{.name = "v1"}, &error); });
  ASSERT_TRUE(all) << error;
  const std::string mac = only->mac().ToString();
  // .2 is the stack's, .9 another host's behind the same interface; nobody answers either.
  topo.Exec(a, "ip neigh replace 198.18.1.9 lladdr " + mac + " dev v0");
  testing::Ping(a, "198.18.1.2", 3, 10);  // no static entry: ARP first, then the requests
  topo.Exec(a, "ip neigh replace 198.18.1.2 lladdr " + mac + " dev v0");
  testing::Ping(a, "198.18.1.2", 3, 10);
  testing::Ping(a, "198.18.1.9", 3, 10);
  const std::map<uint32_t, int> kept = QueuedByDestination(only->fd());
  const std::map<uint32_t, int> control = QueuedByDestination(all->fd());
  const uint32_t other = Ipv4Addr(198, 18, 1, 9).value();
  EXPECT_GE(control.count(other) ? control.at(other) : 0, 3) << "the frames to .9 were sent";
  EXPECT_EQ(kept.count(other), 0u) << "a frame to another address was queued";
  EXPECT_GE(kept.count(ours) ? kept.at(ours) : 0, 3);
  EXPECT_GE(kept.count(0) ? kept.at(0) : 0, 1) << "ARP must pass";
}

// seccomp: io_uring_setup fails with EPERM, as under a container runtime's default profile.
void DenyIoUring() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

TEST(Engine, FallsBackWithOneWarningWhenIoUringIsDenied) {
  SHAKE_REQUIRE_NETNS();
  Topology topo;
  const auto ns = topo.AddNamespace("deny");
  topo.Tun(ns, "tun0");
  topo.Exec(ns, "ip addr add 198.18.0.1/24 dev tun0");
  const std::string log = topo.dir() + "/child.log";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    close(ready[0]);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    if (!testing::JoinNetns(ns)) _exit(10);
    DenyIoUring();
    std::string err;
    auto dev = TunDevice::Open(TunOptions{.name = "tun0", .create = false}, &err);
    if (!dev) _exit(11);
    EchoHandler echo(LinkMode::kIp, kStackAddr);
    Engine engine(*dev, echo);
    if (engine.features().io_uring) _exit(12);
    (void)!write(ready[1], "r", 1);
    const Instant end = MonotonicNow() + Duration::Seconds(20);
    while (echo.echo_replies < 20 && MonotonicNow() < end) engine.RunOnce(Duration::Millis(50));
    _exit(echo.echo_replies == 20 ? 0 : 13);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  EXPECT_EQ(testing::Ping(ns, "198.18.0.2", 20, 10), 20);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string warn;
  testing::Run({"cat", log}, &warn);
  EXPECT_NE(warn.find("shake: warning: io_uring unavailable (io_uring_queue_init: Operation not "
                      "permitted); using ppoll with read/write\n"),
            std::string::npos)
      << warn;
  EXPECT_EQ(std::count(warn.begin(), warn.end(), '\n'), 1) << warn;
}

}  // namespace
}  // namespace shake::io
