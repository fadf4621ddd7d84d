// Backend "linux": the real kernel in a private network namespace, reached through a TUN device.
//
// Create() moves the calling process into a new network namespace (unshare(CLONE_NEWNET)), so
// the namespace, the TUN device and every socket vanish when the process exits, whatever the
// reason. Call it before starting threads. Inside the namespace it creates TUN device "shk0"
// with 198.18.0.1/16 (the system under test); 198.18.1.1, the scripted peer, is reached
// through it. It fixes the TCP sysctls listed in kLinuxSysctls so scripts see known tunables.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/conformance/backend.h"

namespace conformance {

// The namespace's TCP tunables (path under /proc/sys/net/, value). Documented in
// docs/conformance.md; the libshake backend configures its StackConfig to match.
extern const std::vector<std::pair<std::string, std::string>> kLinuxSysctls;

struct SetupError {
  bool skip = false;  // the environment lacks privileges or TUN: skip, don't fail
  std::string reason;
};

// Returns the backend, or sets `error`. With options.packetdrill the namespace keeps the
// kernel's defaults (only IPv6 is turned off) and the device is "tun0" with packetdrill's
// offloads (checksum, TSO), so the kernel hands it TSO-sized segments.
std::unique_ptr<Backend> CreateLinuxBackend(const BackendOptions& options, SetupError* error);

}  // namespace conformance
