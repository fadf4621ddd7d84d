// The system under test, as the conformance runner sees it.
//
// A Backend executes socket calls, takes injected packets, hands back the packets the system
// sent, and owns time. The runner never reads a clock itself, so one runner drives both the
// real-time Linux backend and the virtual-time libshake backend.
//
// Adding a backend (e.g. libshake.so under LD_PRELOAD on a real device): implement the four
// virtuals below. Socket calls are always made non-blocking by the backend; the runner owns
// blocking semantics (it fails a blocking call that would block). Option levels, names,
// poll bits and errno values are Linux's own numbers, so a backend built on real syscalls
// passes them straight through.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace conformance {

// The fixed addressing of every script (all inside 198.18.0.0/15).
inline constexpr uint32_t kLocalAddr = 0xC6120001;   // 198.18.0.1: the system under test
inline constexpr uint32_t kRemoteAddr = 0xC6120101;  // 198.18.1.1: the scripted peer
inline constexpr int kPrefixLen = 16;
inline constexpr uint16_t kServerPort = 8080;        // bind(...) and connect(...) use this port
inline constexpr uint16_t kDefaultRemotePort = 45000;  // the peer's port for passive opens

enum class Op : uint8_t {
  kSocket,
  kBind,
  kListen,
  kAccept,
  kConnect,
  kRead,      // read/recv
  kWrite,     // write/send
  kClose,
  kShutdown,
  kSetsockopt,
  kGetsockopt,
  kPoll,
  kIoctl,        // arg: the request (SIOCINQ, SIOCOUTQ); the int comes back in value
  kTcpInfo,      // getsockopt(TCP_INFO): the fields come back in info
  kEpollCreate,
  kEpollCtl,     // handle: the epoll handle; arg: EPOLL_CTL_*; value: the socket; flags: events
  kEpollWait,    // handle: the epoll handle; len: maxevents; events come back in poll
};

struct PollEntry {
  int handle = -1;
  int16_t events = 0;
  int16_t revents = 0;  // filled by the backend
};

struct Call {
  Op op = Op::kSocket;
  int handle = -1;       // the backend's socket handle (from kSocket/kAccept)
  uint32_t addr = 0;     // kBind/kConnect: IPv4 address, host order
  uint16_t port = 0;     // kBind/kConnect
  int arg = 0;           // kListen backlog, kShutdown how, kSetsockopt/kGetsockopt level
  int optname = 0;       // kSetsockopt/kGetsockopt
  int64_t value = 0;     // kSetsockopt: the int, or l_onoff for SO_LINGER
  int64_t value2 = 0;    // kSetsockopt SO_LINGER: l_linger
  size_t len = 0;        // kRead/kWrite byte count
  int flags = 0;         // kRead/kWrite MSG_* flags
  std::string text;      // kSetsockopt with a string value (TCP_CONGESTION)
  std::vector<PollEntry> poll;
};

struct CallResult {
  int64_t ret = 0;     // the call's return value; -1 on failure
  int err = 0;         // errno when ret == -1
  int64_t value = 0;   // kGetsockopt: the int, or l_onoff
  int64_t value2 = 0;  // kGetsockopt SO_LINGER: l_linger
  std::vector<PollEntry> poll;  // kPoll: entries with revents; kEpollWait: (handle, revents)
  std::map<std::string, int64_t> info;  // kTcpInfo: tcpi_* fields as Linux names them
};

// How a backend is set up for a run.
struct BackendOptions {
  // packetdrill's environment for its upstream scripts: a fresh namespace's kernel defaults
  // (the script's commands set what they need), a TUN device named tun0 with checksum and TSO
  // offload as packetdrill configures it (so the kernel sends TSO-sized segments).
  bool packetdrill = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Nanoseconds since the backend started (real or virtual).
  virtual int64_t Now() = 0;
  // Runs one socket call at Now(), non-blocking.
  virtual CallResult Execute(const Call& call) = 0;
  // Delivers one IPv4 packet from the peer to the system under test at Now().
  virtual void Inject(const std::vector<uint8_t>& packet) = 0;
  // Waits until the system sends a packet or until `deadline_ns`, whichever is first, and
  // returns the packet (Now() is then its send time) or nullopt (Now() is then the deadline).
  // A virtual-time backend advances its clock instead of sleeping. This doubles as "sleep
  // until": the runner treats any packet returned while it only waits as unexpected.
  virtual std::optional<std::vector<uint8_t>> ReadPacket(int64_t deadline_ns) = 0;
  // A script's `` `command` `` (tests/conformance/commands.h), run from directory `dir`.
  // Returns "" when applied, else why not, beginning "unsupported: " when the backend cannot
  // express the command at all. `notes` collects settings accepted without effect.
  virtual std::string RunCommand(const std::string& text, const std::string& dir,
                                 std::vector<std::string>* notes) = 0;
};

}  // namespace conformance
