// conformance_libshake: runs one script against shake::Stack in virtual time.
#include "tests/conformance/libshake_backend.h"
#include "tests/conformance/main.h"

int main(int argc, char** argv) {
  return conformance::ConformanceMain(argc, argv, conformance::CreateLibshakeBackend);
}
