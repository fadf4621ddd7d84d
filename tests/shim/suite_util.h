// Helpers for the socket behaviour suite (socket_suite_test.cc): the topology's addresses, the
// peer's control protocol, bounded waits, and errno assertions that print names.
//
// The suite runs inside namespace A of run_suite.sh's topology; the addresses come from
// SHAKE_SUITE_* variables the wrapper sets. Without them, Net tests skip with the wrapper's
// reason, or fail when CI=true.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace shake::suite {

inline const char* ErrName(int e) {
  const char* n = strerrorname_np(e);
  return n ? n : "0";
}

// EXPECT_ERRNO(call, EPIPE): the call returns -1 and sets errno to EPIPE.
#define EXPECT_ERRNO(expr, err)                                                          \
  do {                                                                                   \
    errno = 0;                                                                           \
    auto r_ = (expr);                                                                    \
    int e_ = errno;                                                                      \
    EXPECT_EQ(r_, -1) << #expr;                                                          \
    EXPECT_STREQ(::shake::suite::ErrName(e_), ::shake::suite::ErrName(err)) << #expr;    \
  } while (0)
#define ASSERT_OK(expr)                                                                  \
  do {                                                                                   \
    errno = 0;                                                                           \
    auto r_ = (expr);                                                                    \
    ASSERT_GE(r_, 0) << #expr << ": " << ::shake::suite::ErrName(errno);                 \
  } while (0)

// An owned fd, closed on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  operator int() const { return fd_; }  // NOLINT: used as a plain fd in calls
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Topology {
  bool ok = false;
  std::string reason;
  in_addr peer{};       // namespace B, where shim_peer listens
  in_addr self{};       // the suite's address as B sees it
  in_addr blackhole{};  // routed to B, which drops it
  std::string control;  // shim_peer's control socket
};
const Topology& GetTopology();

sockaddr_in Addr(in_addr ip, uint16_t port);
inline sockaddr* Sa(sockaddr_in& a) { return reinterpret_cast<sockaddr*>(&a); }
inline const sockaddr* Sa(const sockaddr_in& a) { return reinterpret_cast<const sockaddr*>(&a); }
std::string ToString(const sockaddr_in& a);

// One request line to the peer's control socket; returns its reply line (or "ERR ...").
std::string Control(const std::string& line);

// poll() one fd for `events` up to `ms`; returns revents (0 on timeout).
short WaitFor(int fd, short events, int ms);
// Reads exactly n bytes (or until EOF/error/timeout); returns what arrived.
std::string RecvFor(int fd, size_t n, int ms = 5000);
// Reads until EOF, error or timeout.
std::string RecvUntilEof(int fd, int ms = 5000);
bool SendAll(int fd, std::string_view data);
std::string Pattern(size_t n);

using Clock = std::chrono::steady_clock;
inline long MillisSince(Clock::time_point t) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

}  // namespace shake::suite
