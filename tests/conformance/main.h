// The command line shared by the conformance_<backend> programs:
//
//   conformance_linux [--name NAME] [--result-dir DIR] [--expect-failure] [--quiet] SCRIPT
//
// Exit status: 0 passed, 1 failed, 77 skipped (the backend cannot run here; never when the
// environment has CI=true). --expect-failure inverts the verdict for the runner's own tests: it
// passes only if the script fails with a message showing an expected and an actual packet.
// --result-dir writes DIR/NAME.result ("PASS", "FAIL" or "SKIP" and the message) for the
// summary test.
#pragma once

#include <functional>
#include <memory>

#include "tests/conformance/backend.h"
#include "tests/conformance/linux_backend.h"

namespace conformance {

using BackendFactory = std::function<std::unique_ptr<Backend>(const BackendOptions&, SetupError*)>;
int ConformanceMain(int argc, char** argv, const BackendFactory& factory);

}  // namespace conformance
