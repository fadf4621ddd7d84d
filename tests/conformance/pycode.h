// The `%{ ... }%` blocks of packetdrill scripts: a small subset of Python over TCP_INFO.
//
// packetdrill hands such a block to Python with the socket's tcp_info fields as variables
// (tcpi_snd_cwnd, ...). The scripts use assertions and a few statements:
//   assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd
//   print(tcpi_snd_cwnd); cwnd += 10; assert tcpi_snd_cwnd == cwnd, 'cwnd=%d' % tcpi_snd_cwnd
// This evaluates exactly that: `assert E[, msg]`, `print(...)`, `NAME = E`, `NAME += E`,
// `NAME -= E`, with integers, names, + - * / // %, comparisons (chained), and/or/not and
// parentheses. Anything else is reported as unsupported rather than guessed at.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace conformance {

struct CodeResult {
  enum class Kind { kOk, kAssertFailed, kUnsupported };
  Kind kind = Kind::kOk;
  std::string message;
};

// `vars`: the tcp_info fields and constants; `globals`: variables the script assigned, kept
// from one block to the next as Python would.
CodeResult RunCode(const std::string& code, const std::map<std::string, int64_t>& vars,
                   std::map<std::string, int64_t>& globals);

}  // namespace conformance
