// libshake's diagnostics: one line per message on stderr, written with the real write() under
// the reentrancy guard, formatted on the stack (no allocation), filtered by SHAKE_LOG.
#pragma once

#include "shim/config.h"

namespace shake::shim {

void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
// printf-style; prefixes "libshake[pid]: " and appends a newline.
void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
// Writes `line` and a newline to stderr regardless of level (configuration errors).
void LogLine(const char* line);

}  // namespace shake::shim
