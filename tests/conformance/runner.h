// Runs a parsed script against a Backend and reports the first divergence.
//
// Timing follows packetdrill: an event's time is absolute (`1.0`), relative to the previous
// event (`+0.2`), any (`*`), or a range (`0.1~0.3`). The runner injects packets and makes
// calls at their time and checks that each expected packet leaves within
// [lo - tol, hi + tol], tol = tolerance_us + tolerance_fraction * (lo - previous event time).
// Relative times count from the previous event's script time, except after an outbound packet
// or a `*` event, where they count from when it actually happened (so timer backoff chains do
// not accumulate error). Any packet the system sends that the script did not expect fails the
// run, including during a short grace period (tolerance_us) after the last event.
#pragma once

#include <cstdint>
#include <string>

#include "tests/conformance/backend.h"
#include "tests/conformance/script.h"

namespace conformance {

struct RunOptions {
  int64_t tolerance_us = 15000;
  double tolerance_fraction = 0.15;  // covers Linux timer-wheel slack (up to 12.5%)
  bool verbose = true;  // print each event with its actual time
  // packetdrill's own rules, for its upstream scripts (tests/upstream): an outbound packet
  // written without options must carry none, as packetdrill checks.
  bool packetdrill = false;
};

struct RunResult {
  bool passed = false;
  std::string message;  // "file:line: what went wrong", with expected/actual packets
};

RunResult RunScript(const Script& script, Backend& backend, const RunOptions& options);

// The ISN the scripted peer uses; script sequence numbers of inbound segments count from it.
inline constexpr uint32_t kRemoteIsn = 1000000000u;

}  // namespace conformance
