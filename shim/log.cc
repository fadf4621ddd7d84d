#include "shim/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "shim/guard.h"
#include "shim/real.h"

namespace shake::shim {
namespace {
std::atomic<LogLevel> g_level{LogLevel::kWarn};

void WriteAll(const char* p, size_t n) {
  ReentrancyGuard guard;
  for (int i = 0; n > 0 && i < 64; ++i) {
    ssize_t w = real::write(STDERR_FILENO, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

void SetLogLevel(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

bool LogEnabled(LogLevel level) { return level <= g_level.load(std::memory_order_relaxed); }

void Log(LogLevel level, const char* fmt, ...) {
  if (!LogEnabled(level)) return;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "libshake[%d]: %s: ", static_cast<int>(getpid()),
                   LogLevelName(level));
  if (n < 0) return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  size_t len = strnlen(buf, sizeof buf - 1);
  (void)m;
  buf[len++] = '\n';
  WriteAll(buf, len);
}

void LogLine(const char* line) {
  char nl = '\n';
  WriteAll(line, strlen(line));
  WriteAll(&nl, 1);
}

}  // namespace shake::shim
