// What a script's `` `shell command` `` asks for, as the backends need to know it.
//
// packetdrill scripts set sysctls from backtick lines, directly (`sysctl -q net.ipv4.x=1`,
// `echo 1 > /proc/sys/net/ipv4/x`, `set_sysctls.py /proc/sys/...=v`) or through a helper shell
// file they name (`../common/defaults.sh`), which is read and expanded here. The Linux backend
// runs the text itself with bash inside its namespace and uses this only to refuse what would
// reach outside it; the libshake backend maps each sysctl onto its StackConfig.
//
//   std::vector<CommandItem> items = ParseCommand(text, script_dir);
//   for (const CommandItem& i : items) if (i.kind == CommandItem::Kind::kSysctl) ...
#pragma once

#include <string>
#include <vector>

namespace conformance {

struct CommandItem {
  enum class Kind {
    kSysctl,       // key (dotted, "net.ipv4.tcp_sack") = value
    kNoOp,         // harmless here: a metrics flush, another qdisc, restoring saved sysctls
    kOffload,      // `ethtool -K tun0 tso off gso off`: key "tso" or "gso", value "on"/"off"
    kQdisc,        // `tc qdisc add|replace dev tun0 root pfifo limit 0` (value "drop": the
                   // device takes no packet) or `tc qdisc delete dev tun0 root` ("none")
    kHostGlobal,   // writes outside the namespace (/sys/module/...): never run by a test
    kUnknown,      // anything else
  };
  Kind kind = Kind::kUnknown;
  std::string key;    // kSysctl: the dotted name; kOffload: the feature
  std::string value;
  std::string device;  // kOffload: the interface
  std::string text;  // the command as written, for messages
};

// Splits `text` into commands and classifies each. Relative helper paths resolve against `dir`.
std::vector<CommandItem> ParseCommand(const std::string& text, const std::string& dir);

}  // namespace conformance
