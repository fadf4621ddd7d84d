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
  std::vector<PollEntry> poll;
};

struct CallResult {
  int64_t ret = 0;     // the call's return value; -1 on failure
  int err = 0;         // errno when ret == -1
  int64_t value = 0;   // kGetsockopt: the int, or l_onoff
  int64_t value2 = 0;  // kGetsockopt SO_LINGER: l_linger
  std::vector<PollEntry> poll;  // kPoll: entries with revents
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
};

}  // namespace conformance
