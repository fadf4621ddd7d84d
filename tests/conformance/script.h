// The parsed form of a conformance script (packetdrill's syntax as gtests/net/tcp uses it in
// IPv4 mode; see docs/conformance.md for the grammar). ParseScript() fails loudly: anything it
// does not understand raises ScriptError carrying "file:line: what".
//
// A statement may span lines while a bracket, a backtick command or a %{ }% block is open;
// `--name=value` lines before the first event are command-line settings; `-D NAME=VALUE`
// definitions (ParseOptions::defines) replace whole words before parsing.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "tests/conformance/packet.h"

namespace conformance {

class ScriptError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `0.1` absolute, `+0.1` relative to the previous event, `*` any time, `a~b` a range.
struct TimeSpec {
  enum class Kind : uint8_t { kAbsolute, kRelative, kAny };
  Kind kind = Kind::kAbsolute;
  int64_t lo_us = 0;
  int64_t hi_us = 0;  // == lo_us unless a range was given
  // `0.1...0.2 call()`: a blocking call that returns at the end time (relative like the start).
  std::optional<int64_t> end_us;
  bool given = true;  // false for a command or code block written without a time (+0)
};

// A syscall argument: `...`, a number, `A|B|0x4` (symbols or numbers or'ed), `[x]`, `{a=b}`,
// `{..., 100}` (unnamed struct items have the name ""), `msg_iov(1)=[...]` (a field with a
// count: the count is dropped), a quoted string, or a call such as `inet_addr("192.0.2.1")`.
struct Expr {
  enum class Kind : uint8_t { kEllipsis, kOr, kList, kStruct, kString, kCall };
  Kind kind = Kind::kEllipsis;
  std::vector<std::string> terms;                      // kOr: "O_RDWR", "0x4", "1000", "-1"
  std::vector<Expr> items;                             // kList; kCall: the arguments
  std::vector<std::pair<std::string, Expr>> fields;    // kStruct
  std::string text;                                    // kString; kCall: the function name
};

struct SyscallSpec {
  std::string name;
  std::vector<Expr> args;
  bool result_any = false;  // `= ...`
  int64_t result = 0;
  std::string errno_name;          // "" when the call is expected to succeed
  std::optional<Expr> out_detail;  // poll's `([{fd=4, revents=POLLIN}])`
};

// A TCP segment line. Sequence and acknowledgment numbers are relative (see the runner).
struct PacketSpec {
  bool inbound = true;               // `<` injected, `>` expected from the system under test
  std::optional<uint16_t> remote_port;  // extension: `[port N]` selects another remote peer port
  uint8_t flags = 0;
  uint32_t seq = 0;
  uint32_t len = 0;
  std::optional<uint32_t> ack;
  std::optional<uint32_t> win;
  bool options_given = false;  // a `<...>` list was written
  bool options_any = false;    // the list was literally `<...>`
  std::vector<TcpOption> options;
  // `[ect0]`, `[ect1]`, `[ce]`, `[noecn]` (IP ECN codepoint, 0..3), `[ect01]` (either ECT).
  std::optional<uint8_t> ecn;
  bool ecn_ect01 = false;
  // `[tos 0x10]`: the whole IP TOS byte (DSCP and ECN), as packetdrill writes it.
  std::optional<uint8_t> tos;
  std::optional<uint16_t> urg;  // `urg N`: the urgent pointer
  // `< icmp TYPE [CODE] [mtu N]` (the TCP fields above are then unused).
  bool icmp = false;
  std::string icmp_type, icmp_code;
  std::optional<uint16_t> icmp_mtu;
  std::optional<uint32_t> icmp_quoted_seq;  // `[5000:6000(1000)]`: quote this segment
};

// `` `shell text` ``: a command line (sysctl settings and the like).
struct CommandSpec {
  std::string text;
};

// `%{ python }%`: assertions on the socket's TCP_INFO (a small subset of Python).
struct CodeSpec {
  std::string text;
};

struct Event {
  int line = 0;
  TimeSpec time;
  std::variant<SyscallSpec, PacketSpec, CommandSpec, CodeSpec> what;
  std::string source;  // the line as written, for messages
};

struct Script {
  std::string path;
  std::vector<Event> events;
  // `--tolerance_usecs=10000` and the like, in the order written (name without the dashes).
  std::vector<std::pair<std::string, std::string>> settings;
};

struct ParseOptions {
  std::vector<std::pair<std::string, std::string>> defines;  // -D NAME=VALUE
};

Script ParseScript(const std::string& path, const ParseOptions& options = {});  // reads the file
Script ParseScriptText(const std::string& path, const std::string& text,
                       const ParseOptions& options = {});

}  // namespace conformance
