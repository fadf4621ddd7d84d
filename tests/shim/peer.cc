// shim_peer: the far end of the socket behaviour suite.
//
// Runs in namespace "B" of the suite's topology (see run_suite.sh) and serves fixed behaviours
// on fixed ports of its address, so the suite's own sockets talk TCP over a routed veth path
// (under the shim those sockets are stack sockets; loopback would stay kernel).
//
//   shim_peer --addr 198.18.5.2 --control /tmp/dir/control.sock [--ready FILE]
//
// Ports (see kPort* in peer_protocol.h):
//   echo     echoes until EOF, then shuts its write side and closes
//   discard  reads until EOF, then closes
//   closed   nothing listens: connects are refused with RST
//   close    accepts and closes at once (FIN)
//   reset    accepts and aborts (RST, SO_LINGER 0)
//   hold     accepts, neither reads nor writes; closes when the client closes (or after 30 s)
//   script   the first line the client sends is a script, run on the connection (below)
//
// Control socket (AF_UNIX path: shared across network namespaces; one request per connection,
// one line each way):
//   PING                          -> PONG
//   CONNECT IP PORT SCRIPT...     -> OK | ERR errno   (B connects to IP:PORT, runs SCRIPT)
//   LOG TAG                       -> the result line of the script tagged TAG, waiting for it
//                                    up to 10 s: "read=N end=eof|rst|timeout|open" or "ERR none"
//
// Script words, run left to right (a script always ends with a close):
//   tag:NAME  name the connection for LOG     s:TEXT   send TEXT ('_' becomes ' ')
//   w:N       send N pattern bytes (i % 251)  r:N      read exactly N bytes
//   sleep:MS  sleep                           shut     shutdown(SHUT_WR)
//   drain     read until EOF or error         echo     echo until EOF
//   hold      wait (not reading) for the client's FIN or RST, at most 30 s
//   rst       close with SO_LINGER 0 (RST) and stop  close   close and stop
// Every wait is bounded: sockets have a 30 s SO_RCVTIMEO/SO_SNDTIMEO, and the process exits
// when its parent dies.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/shim/peer_protocol.h"

namespace {

using namespace std::chrono_literals;
using shake::peer::PatternByte;

constexpr int kIoTimeoutSeconds = 30;

std::mutex g_log_mu;
std::condition_variable g_log_cv;
std::map<std::string, std::string> g_logs;  // tag -> result line

void SetTimeouts(int fd) {
  timeval tv{kIoTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool SendAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Reads one '\n'-terminated line byte by byte (so nothing after it is consumed).
bool ReadLine(int fd, std::string& line, size_t max = 4096) {
  line.clear();
  while (line.size() < max) {
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (c == '\n') return true;
    line.push_back(c);
  }
  return false;
}

void AbortiveClose(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

// Waits for the client's FIN or RST without reading.
void Hold(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  poll(&p, 1, kIoTimeoutSeconds * 1000);
}

class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) { SetTimeouts(fd_); }

  void RunScript(const std::string& script) {
    std::istringstream words(script);
    std::string w;
    int guard = 0;
    while (fd_ >= 0 && words >> w && ++guard < 1000) {
      Step(w);
    }
    Finish();
  }

  void Echo() {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (!Account(n)) break;
      if (!SendAll(fd_, buf, static_cast<size_t>(n))) break;
    }
    shutdown(fd_, SHUT_WR);
  }

  void Drain() {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (!Account(n)) break;
    }
  }

  void Finish() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    if (!tag_.empty()) {
      std::lock_guard lk(g_log_mu);
      g_logs[tag_] = "read=" + std::to_string(read_) + " end=" + end_;
      g_log_cv.notify_all();
    }
  }

  int fd() const { return fd_; }

 private:
  // Counts a recv() result; false when the stream ended (and records how).
  bool Account(ssize_t n) {
    if (n > 0) {
      read_ += static_cast<size_t>(n);
      return true;
    }
    if (n == 0) {
      end_ = "eof";
    } else if (errno == ECONNRESET) {
      end_ = "rst";
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      end_ = "timeout";
    } else {
      end_ = std::string("err:") + strerrorname_np(errno);
    }
    return false;
  }

  void Step(const std::string& w) {
    auto arg = [&]() { return w.substr(w.find(':') + 1); };
    if (w.starts_with("tag:")) {
      tag_ = arg();
    } else if (w.starts_with("s:")) {
      std::string text = arg();
      for (char& c : text) {
        if (c == '_') c = ' ';
      }
      SendAll(fd_, text.data(), text.size());
    } else if (w.starts_with("w:")) {
      size_t n = std::stoul(arg());
      std::vector<char> buf(n);
      for (size_t i = 0; i < n; ++i) buf[i] = static_cast<char>(PatternByte(i));
      SendAll(fd_, buf.data(), n);
    } else if (w.starts_with("r:")) {
      size_t want = std::stoul(arg());
      char buf[4096];
      while (want > 0) {
        ssize_t n = recv(fd_, buf, std::min(want, sizeof buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (!Account(n)) break;
        want -= static_cast<size_t>(n);
      }
    } else if (w.starts_with("sleep:")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(arg())));
    } else if (w == "shut") {
      shutdown(fd_, SHUT_WR);
    } else if (w == "drain") {
      Drain();
    } else if (w == "echo") {
      Echo();
    } else if (w == "hold") {
      Hold(fd_);
    } else if (w == "rst") {
      AbortiveClose(fd_);
      fd_ = -1;
      end_ = end_ == "open" ? "reset-sent" : end_;
    } else if (w == "close") {
      close(fd_);
      fd_ = -1;
    } else {
      fprintf(stderr, "shim_peer: unknown script word '%s'\n", w.c_str());
    }
  }

  int fd_;
  std::string tag_;
  size_t read_ = 0;
  std::string end_ = "open";
};

void Serve(uint16_t port, int fd) {
  switch (port) {
    case shake::peer::kPortEcho: {
      Conn c(fd);
      c.Echo();
      c.Finish();
      break;
    }
    case shake::peer::kPortDiscard: {
      Conn c(fd);
      c.Drain();
      c.Finish();
      break;
    }
    case shake::peer::kPortClose:
      close(fd);
      break;
    case shake::peer::kPortReset:
      AbortiveClose(fd);
      break;
    case shake::peer::kPortHold:
      SetTimeouts(fd);
      Hold(fd);
      close(fd);
      break;
    case shake::peer::kPortScript: {
      Conn c(fd);
      std::string script;
      if (ReadLine(fd, script)) c.RunScript(script);
      c.Finish();
      break;
    }
    default:
      close(fd);
  }
}

int Listen(in_addr addr, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = addr;
  sa.sin_port = htons(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 128) != 0) {
    fprintf(stderr, "shim_peer: cannot listen on port %u: %s\n", port, strerror(errno));
    exit(1);
  }
  return fd;
}

std::string HandleControl(const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  if (cmd == "PING") return "PONG";
  if (cmd == "CONNECT") {
    std::string ip;
    int port = 0;
    in >> ip >> port;
    std::string script;
    std::getline(in, script);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) return "ERR EINVAL";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SetTimeouts(fd);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      std::string err = std::string("ERR ") + strerrorname_np(errno);
      close(fd);
      return err;
    }
    std::thread([fd, script] {
      Conn c(fd);
      c.RunScript(script);
    }).detach();
    return "OK";
  }
  if (cmd == "LOG") {
    std::string tag;
    in >> tag;
    std::unique_lock lk(g_log_mu);
    if (!g_log_cv.wait_for(lk, 10s, [&] { return g_logs.count(tag) != 0; })) return "ERR none";
    return g_logs[tag];
  }
  return "ERR unknown";
}

}  // namespace

int main(int argc, char** argv) {
  std::string addr_text, control_path, ready_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--addr") addr_text = argv[i + 1];
    else if (k == "--control") control_path = argv[i + 1];
    else if (k == "--ready") ready_path = argv[i + 1];
  }
  in_addr addr{};
  if (inet_pton(AF_INET, addr_text.c_str(), &addr) != 1 || control_path.empty()) {
    fprintf(stderr, "usage: shim_peer --addr IPV4 --control SOCKET_PATH [--ready FILE]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::pair<uint16_t, int>> listeners;
  for (uint16_t port : {shake::peer::kPortEcho, shake::peer::kPortDiscard, shake::peer::kPortClose,
                        shake::peer::kPortReset, shake::peer::kPortHold,
                        shake::peer::kPortScript}) {
    listeners.emplace_back(port, Listen(addr, port));
  }
  int ctl = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un su{};
  su.sun_family = AF_UNIX;
  snprintf(su.sun_path, sizeof su.sun_path, "%s", control_path.c_str());
  unlink(control_path.c_str());
  if (bind(ctl, reinterpret_cast<sockaddr*>(&su), sizeof su) != 0 || listen(ctl, 16) != 0) {
    fprintf(stderr, "shim_peer: cannot listen on %s: %s\n", control_path.c_str(),
            strerror(errno));
    return 1;
  }
  for (auto& [port, fd] : listeners) {
    std::thread([port = port, fd = fd] {
      for (;;) {
        int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;
        }
        std::thread(Serve, port, c).detach();
      }
    }).detach();
  }
  if (!ready_path.empty()) {
    FILE* f = fopen(ready_path.c_str(), "w");
    if (f) fclose(f);
  }
  for (;;) {
    int c = accept4(ctl, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    std::thread([c] {
      SetTimeouts(c);
      std::string line;
      if (ReadLine(c, line)) {
        std::string reply = HandleControl(line) + "\n";
        SendAll(c, reply.data(), reply.size());
      }
      close(c);
    }).detach();
  }
}
