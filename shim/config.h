// libshake's configuration: the SHAKE_* variables of the design, parsed and checked.
//
// Shared by libshake.so (which reads its environment once, at load) and the `shake` launcher
// (which sets the variables from its options and checks them before exec). Every problem is
// reported as one line naming the variable and the fix:
//   shake: SHAKE_ADDR=198.18.0.2: no prefix length; write ADDRESS/PREFIX, e.g. 198.18.0.2/24
//
//   Config c;
//   if (auto err = ParseConfig(getenv, c)) { print err->Line(); ... }
//   else if (auto err2 = CheckHost(c)) { ... }   // the device exists, permissions suffice
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace shake::shim {

enum class DeviceKind : uint8_t { kNone, kTun, kPacket };
enum class LogLevel : uint8_t { kError, kWarn, kInfo, kDebug };

struct Config {
  DeviceKind device = DeviceKind::kNone;  // kNone: SHAKE_DEVICE unset, nothing configured
  std::string ifname;
  uint32_t addr = 0;  // host byte order; valid when device != kNone
  int prefix_len = 0;
  std::optional<uint32_t> gateway;
  LogLevel log = LogLevel::kWarn;
  std::string pcap;   // empty: none
  std::string trace;  // empty: none
  bool fallback_kernel = false;  // SHAKE_FALLBACK=kernel
  // Limits of a stack this process creates (SHAKE_MAX_SOCKETS, SHAKE_MAX_PROCS); 0 = default.
  // A stack that exists already keeps the limits it was created with.
  uint32_t max_sockets = 0;
  uint32_t max_procs = 0;
  // SHAKE_KEEPER_IDLE: seconds a keeper whose stack is empty (no process, no connection) waits
  // before it ends; -1 = default.
  int keeper_idle_s = -1;
  // SHAKE_SPIN_US: a thread about to sleep in epoll_wait for the stack asks without waiting for
  // this long first (the opt-in latency mode); 0 = sleep at once. poll, select and blocking
  // calls do not spin.
  uint32_t spin_us = 0;
  // SHAKE_MEM_MAX: the most memory the connections of a stack this process creates may hold
  // for data (send and receive queues), as Linux's tcp_mem[2]; pressure begins at 2/3 of it
  // and ends at 1/2, tcp_mem's default ratios (TcpConfig::memory_limit). Well below the
  // shared arena's 16 GiB, which also holds the control blocks and tables, so the arena
  // cannot run dry on data.
  uint64_t mem_max = kMemMaxDefault;
  static constexpr uint64_t kMemMaxDefault = uint64_t{1} << 30;
  static constexpr uint64_t kMemMaxLeast = uint64_t{1} << 20;
  static constexpr uint64_t kMemMaxMost = uint64_t{8} << 30;

  bool configured() const { return device != DeviceKind::kNone; }
};

struct ConfigError {
  std::string variable;  // "SHAKE_ADDR"
  std::string value;     // as given (may be empty when the variable is missing)
  std::string problem;   // "no prefix length"
  std::string fix;       // "write ADDRESS/PREFIX, e.g. 198.18.0.2/24"
  int err = 0;           // the errno a socket call reports while this error stands

  // "shake: SHAKE_ADDR=198.18.0.2: no prefix length; write ADDRESS/PREFIX, e.g. ..."
  // `alias` names how the user gave the value when that was not the variable (a launcher flag).
  std::string Line(const std::string& alias = "") const;
};

using Getenv = char* (*)(const char*);

// Parses the SHAKE_* variables into `out`. Returns the first problem, if any.
std::optional<ConfigError> ParseConfig(Getenv getenv_fn, Config& out);

// Checks what the configuration needs from the host: the interface exists (and, for tun:, is a
// TUN device), /dev/net/tun can be opened, the process holds CAP_NET_RAW or CAP_NET_ADMIN as the
// mode requires, and the pcap and trace files' directories are writable.
std::optional<ConfigError> CheckHost(const Config& c);

// Parsers, exposed for tests and the launcher.
bool ParseIpv4(const std::string& s, uint32_t& out);
// A byte count, optionally with K, M or G (binary multiples), within [lo, hi].
bool ParseSize(const std::string& s, uint64_t lo, uint64_t hi, uint64_t& out);
std::string FormatIpv4(uint32_t addr);
std::optional<LogLevel> ParseLogLevel(const std::string& s);
const char* LogLevelName(LogLevel l);

}  // namespace shake::shim
