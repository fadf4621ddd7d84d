// conformance_linux: runs one script against the Linux kernel in a private namespace.
#include "tests/conformance/linux_backend.h"
#include "tests/conformance/main.h"

int main(int argc, char** argv) {
  return conformance::ConformanceMain(argc, argv, conformance::CreateLinuxBackend);
}
