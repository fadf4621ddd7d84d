// The Net fixture of the socket behaviour suite: TCP to and from shim_peer in namespace B, over
// the routed veth path (under the shim these are stack sockets). Skips, printing the reason,
// when the topology is missing; fails instead when CI=true.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "tests/shim/peer_protocol.h"
#include "tests/shim/suite_util.h"

namespace shake::suite {

class Net : public ::testing::Test {
 protected:
  void SetUp() override {
    const Topology& t = GetTopology();
    if (!t.ok) {
      const char* ci = getenv("CI");
      if (ci && std::string(ci) == "true") FAIL() << t.reason << " (CI=true: not skipping)";
      GTEST_SKIP() << t.reason;
    }
  }

  static Fd Tcp(int flags = 0) { return Fd(socket(AF_INET, SOCK_STREAM | flags, 0)); }
  static sockaddr_in PeerAddr(uint16_t port) { return Addr(GetTopology().peer, port); }
  static sockaddr_in SelfAddr(uint16_t port) { return Addr(GetTopology().self, port); }

  // A blocking connect to one of the peer's ports; -1 (and a test failure) if it fails.
  static Fd ConnectTo(uint16_t port, int flags = 0) {
    Fd s = Tcp(flags & ~SOCK_NONBLOCK);
    sockaddr_in a = PeerAddr(port);
    if (connect(s, Sa(a), sizeof a) != 0) {
      ADD_FAILURE() << "connect to " << ToString(a) << ": " << ErrName(errno);
      return Fd();
    }
    if (flags & SOCK_NONBLOCK) fcntl(s, F_SETFL, O_NONBLOCK);
    return s;
  }

  // Connects to the script port and hands it `script` (see peer.cc).
  static Fd Script(const std::string& script) {
    Fd s = ConnectTo(peer::kPortScript);
    if (s.get() >= 0 && !SendAll(s, script + "\n")) ADD_FAILURE() << "sending the script";
    return s;
  }

  // A name for a peer connection that LOG can ask about.
  static std::string NewTag() {
    static std::atomic<int> n{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(info->name()) + "-" + std::to_string(n++);
  }
  // The result line of the peer's connection tagged `tag`: "read=N end=eof|rst|...".
  static std::string Log(const std::string& tag) { return Control("LOG " + tag); }

  // A listener on INADDR_ANY with an ephemeral port; returns the port through `port`.
  static Fd ListenAny(uint16_t& port, int flags = 0, int backlog = 16) {
    Fd l = Tcp(flags);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    if (bind(l, Sa(a), sizeof a) != 0 || listen(l, backlog) != 0) {
      ADD_FAILURE() << "listen: " << ErrName(errno);
      return Fd();
    }
    socklen_t len = sizeof a;
    getsockname(l, Sa(a), &len);
    port = ntohs(a.sin_port);
    return l;
  }

  // Asks the peer to connect from B to the suite's address at `port` and run `script`.
  static std::string PeerConnect(uint16_t port, const std::string& script) {
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &GetTopology().self, ip, sizeof ip);
    return Control("CONNECT " + std::string(ip) + " " + std::to_string(port) + " " + script);
  }
};

}  // namespace shake::suite
