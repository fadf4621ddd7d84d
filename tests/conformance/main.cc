#include "tests/conformance/main.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/conformance/runner.h"
#include "tests/conformance/script.h"

namespace conformance {
namespace {

constexpr int kSkip = 77;
constexpr unsigned kWatchdogSeconds = 400;  // no script may run longer than this

void WriteResult(const std::string& dir, const std::string& name, const std::string& verdict,
                 const std::string& message) {
  if (dir.empty()) return;
  std::filesystem::path p = std::filesystem::path(dir) / (name + ".result");
  std::error_code ec;
  std::filesystem::create_directories(p.parent_path(), ec);
  std::ofstream f(p);
  f << verdict << "\n" << message << "\n";
}

int Usage() {
  std::fprintf(stderr,
               "usage: conformance_<backend> [--name NAME] [--result-dir DIR] "
               "[--expect-failure] [--quiet] [--parse-only] [--packetdrill] [-D NAME=VALUE]... "
               "SCRIPT\n");
  return 2;
}

}  // namespace

int ConformanceMain(int argc, char** argv, const BackendFactory& factory) {
  std::string script_path, name, result_dir;
  bool expect_failure = false;
  bool parse_only = false;
  RunOptions options;
  ParseOptions parse_options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--name" && i + 1 < argc) {
      name = argv[++i];
    } else if (a == "--result-dir" && i + 1 < argc) {
      result_dir = argv[++i];
    } else if (a == "--expect-failure") {
      expect_failure = true;
    } else if (a == "--quiet") {
      options.verbose = false;
    } else if (a == "--parse-only") {
      parse_only = true;
    } else if (a == "--packetdrill") {
      options.packetdrill = true;
    } else if ((a == "-D" || a == "--define") && i + 1 < argc) {
      const std::string d = argv[++i];
      const size_t eq = d.find('=');
      parse_options.defines.emplace_back(d.substr(0, eq),
                                         eq == std::string::npos ? "1" : d.substr(eq + 1));
    } else if (!a.empty() && a[0] != '-' && script_path.empty()) {
      script_path = a;
    } else {
      return Usage();
    }
  }
  if (script_path.empty()) return Usage();
  if (name.empty()) name = std::filesystem::path(script_path).stem().string();
  if (const char* t = std::getenv("SHAKE_CONFORMANCE_TOLERANCE_US")) {
    options.tolerance_us = std::atoll(t);
  }
  signal(SIGPIPE, SIG_IGN);
  alarm(kWatchdogSeconds);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  Script script;
  try {
    script = ParseScript(script_path, parse_options);
  } catch (const ScriptError& e) {
    std::printf("FAIL %s: parse error: %s\n", name.c_str(), e.what());
    WriteResult(result_dir, name, "FAIL", std::string("parse error: ") + e.what());
    return 1;
  }
  if (parse_only) {
    std::printf("PARSED %s: %zu events\n", name.c_str(), script.events.size());
    return 0;
  }

  SetupError setup;
  BackendOptions backend_options;
  backend_options.packetdrill = options.packetdrill;
  std::unique_ptr<Backend> backend = factory(backend_options, &setup);
  if (!backend) {
    const char* ci = std::getenv("CI");
    const bool in_ci = ci != nullptr && std::strcmp(ci, "true") == 0;
    if (setup.skip && !in_ci) {
      std::printf("SKIP %s: %s\n", name.c_str(), setup.reason.c_str());
      WriteResult(result_dir, name, "SKIP", setup.reason);
      return kSkip;
    }
    std::printf("FAIL %s: backend setup: %s%s\n", name.c_str(), setup.reason.c_str(),
                setup.skip ? " (CI=true: not skipping)" : "");
    WriteResult(result_dir, name, "FAIL", "backend setup: " + setup.reason);
    return 1;
  }

  std::printf("RUN  %s on %s (%s)\n", name.c_str(), backend->name().c_str(), script_path.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  const RunResult r = RunScript(script, *backend, options);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (expect_failure) {
    const bool shows_both = r.message.find("expected:") != std::string::npos &&
                            r.message.find("actual:") != std::string::npos;
    if (!r.passed && shows_both) {
      std::printf("%s\nPASS %s: the script failed as it should, showing both packets (%.2f s)\n",
                  r.message.c_str(), name.c_str(), secs);
      WriteResult(result_dir, name, "PASS", "");
      return 0;
    }
    const std::string why = r.passed ? "the script passed but must fail"
                                     : "the failure message lacks expected/actual packets: " +
                                           r.message;
    std::printf("FAIL %s: %s\n", name.c_str(), why.c_str());
    WriteResult(result_dir, name, "FAIL", why);
    return 1;
  }
  if (r.passed) {
    std::printf("PASS %s on %s (%.2f s)\n", name.c_str(), backend->name().c_str(), secs);
    WriteResult(result_dir, name, "PASS", "");
    return 0;
  }
  std::printf("FAIL %s on %s (%.2f s)\n%s\n", name.c_str(), backend->name().c_str(), secs,
              r.message.c_str());
  WriteResult(result_dir, name, "FAIL", r.message);
  return 1;
}

}  // namespace conformance
