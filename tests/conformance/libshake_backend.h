// Backend "libshake": the same scripts against shake::Stack in virtual time.
//
// Socket calls map onto Stack calls, injected packets go through Stack::Receive, and the
// stack's frames are collected by a FrameSink. Time only moves when the runner waits: the
// clock jumps to the next script event or the stack's next deadline, whichever is first, so a
// 60 s TIME-WAIT costs nothing. The StackConfig mirrors the Linux backend's sysctls
// (kLinuxSysctls) so both backends face the same tunables.
#pragma once

#include <memory>

#include "tests/conformance/backend.h"
#include "tests/conformance/linux_backend.h"

namespace conformance {

std::unique_ptr<Backend> CreateLibshakeBackend(const BackendOptions& options, SetupError* error);

}  // namespace conformance
