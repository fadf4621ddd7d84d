// Namespace topologies for network tests: private network namespaces joined by veth pairs (and
// TUN devices inside them), addresses from 198.18.0.0/15 only, always removed afterwards.
//
//   SHAKE_REQUIRE_NETNS();                    // skips (or fails when CI=true) without root/netns
//   testing::Topology topo;
//   auto a = topo.AddNamespace("a"), b = topo.AddNamespace("b");
//   topo.Veth(a, "v0", b, "v1");
//   topo.Exec(a, "ip addr add 198.18.0.1/24 dev v0");
//   auto& server = topo.Spawn(a, {"nginx", "-c", conf}, "nginx");
//
// Names are "shk-<pid>-<n>-<tag>", so parallel tests never collide. Cleanup runs in the
// destructor, at exit and on SIGINT/SIGTERM/SIGABRT, and a new Topology first removes the
// namespaces of earlier test processes that no longer exist (a crashed run).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace shake::testing {

// Runs argv (no shell) and waits at most `timeout_s`; returns the exit status, or -1 if it could
// not run or was killed. Output (stdout+stderr) goes to *output when given.
int Run(const std::vector<std::string>& argv, std::string* output = nullptr,
        int timeout_s = 60);
// Runs `/bin/sh -c cmd`.
int Sh(const std::string& cmd, std::string* output = nullptr, int timeout_s = 60);

// A background process; terminated (SIGTERM, then SIGKILL) when destroyed.
class Child {
 public:
  Child(pid_t pid, std::string log) : pid_(pid), log_(std::move(log)) {}
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }
  std::string Log() const;
  // Waits for exit; true and the exit status (or 128+signal) if it exited in time.
  bool Wait(int timeout_ms, int* status);
  bool Running();
  void Terminate();

 private:
  pid_t pid_;
  std::string log_;
  bool reaped_ = false;
  int status_ = 0;
};

class Topology {
 public:
  // Empty if namespaces can be made here; otherwise the reason they cannot.
  static std::string Unavailable();

  Topology();
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  std::string AddNamespace(const std::string& tag);
  // A veth pair, one end in each namespace, both up.
  void Veth(const std::string& ns1, const std::string& if1, const std::string& ns2,
            const std::string& if2);
  // A persistent TUN device in `ns`, owned by `uid` (-1: root), up.
  void Tun(const std::string& ns, const std::string& name, int uid = -1);
  // Waits (up to 3 s) until the kernel has acted on a device's new carrier, as a TUN device gets
  // one when an fd attaches: until its link watcher has run, the device's queue is the no-op
  // one and whatever the kernel sends through it is dropped. Fails the test on timeout.
  bool WaitCarrier(const std::string& ns, const std::string& dev);
  // Runs a shell command in the namespace; fails the test (and returns false) if it fails.
  bool Exec(const std::string& ns, const std::string& cmd, std::string* output = nullptr,
            int timeout_s = 60);
  // Starts argv in the namespace in the background; output goes to <dir>/<log>.log.
  Child& Spawn(const std::string& ns, const std::vector<std::string>& argv,
               const std::string& log);
  // A private temporary directory, removed with the topology.
  const std::string& dir() const { return dir_; }
  void Cleanup();

 private:
  std::string prefix_;
  std::string dir_;
  std::vector<std::string> namespaces_;
  std::vector<std::unique_ptr<Child>> children_;
};

// Removes namespaces left behind by test processes that have exited.
void CleanStaleNamespaces();

bool JoinNetns(const std::string& ns);

// Runs fn() on a thread that has joined namespace `ns`'s network namespace, so sockets and devices
// it opens belong there; returns fn's result.
template <typename F>
auto InNamespace(const std::string& ns, F fn) -> decltype(fn()) {
  decltype(fn()) result{};
  std::thread t([&] {
    if (!JoinNetns(ns)) return;
    result = fn();
  });
  t.join();
  return result;
}
// ping without the ping binary: sends `count` ICMP echo requests from namespace `ns` to `dst`,
// `interval_ms` apart, each waiting up to 1 s for its reply; returns the replies received.
int Ping(const std::string& ns, const std::string& dst, int count, int interval_ms);

// True when the CI environment variable is "true": missing privileges fail instead of skip.
bool InCi();

}  // namespace shake::testing

#define SHAKE_REQUIRE_NETNS()                                                        \
  do {                                                                               \
    const std::string why_ = ::shake::testing::Topology::Unavailable();              \
    if (!why_.empty()) {                                                             \
      if (::shake::testing::InCi()) FAIL() << "CI=true but cannot run: " << why_;    \
      GTEST_SKIP() << "skipped: " << why_;                                           \
    }                                                                                \
  } while (0)
