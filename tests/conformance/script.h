// The parsed form of a conformance script (a subset of packetdrill's syntax; see
// docs/conformance.md for the grammar). ParseScript() fails loudly: anything it does not
// understand raises ScriptError carrying "file:line: what".
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
};

// A syscall argument: `...`, a number, `A|B|0x4` (symbols or numbers or'ed), `[x]`, `{a=b}`,
// or a quoted string.
struct Expr {
  enum class Kind : uint8_t { kEllipsis, kOr, kList, kStruct, kString };
  Kind kind = Kind::kEllipsis;
  std::vector<std::string> terms;                      // kOr: "O_RDWR", "0x4", "1000", "-1"
  std::vector<Expr> items;                             // kList
  std::vector<std::pair<std::string, Expr>> fields;    // kStruct
  std::string text;                                    // kString
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
};

struct Event {
  int line = 0;
  TimeSpec time;
  std::variant<SyscallSpec, PacketSpec> what;
  std::string source;  // the line as written, for messages
};

struct Script {
  std::string path;
  std::vector<Event> events;
};

Script ParseScript(const std::string& path);                         // reads the file
Script ParseScriptText(const std::string& path, const std::string& text);

}  // namespace conformance
