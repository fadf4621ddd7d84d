// shake-http: a minimal HTTP/1.1 client and server on shake::Stack and the io engine directly
// (no preload). An example of the StackHost API and the engine's workout in the interop tests.
//
//   shake-http get   --device tun:IF --addr 198.18.0.2/24 http://198.18.0.1/64M -o out
//   shake-http serve --device packet:IF --addr 198.18.1.2/24 --root DIR --port 80
//
// get: fetches the URL (--count N times over N fresh connections, one request each) and writes
// the body to -o. serve: answers GET for files under --root, keeps connections alive unless the
// client sends "Connection: close" or --max-requests is reached, and exits after --connections
// connections (0: run until SIGINT/SIGTERM). Both print the stack's connection states at the
// end and wait up to --drain seconds for every connection, TIME-WAIT included, to finish.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/stack_host.h"

namespace {

using namespace shake;
using namespace shake::io;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Args {
  std::string mode;
  HostOptions host;
  std::string url, out, root;
  uint16_t port = 80;
  int count = 1;
  int connections = 0;
  int max_requests = 100;
  double timeout_s = 60;
  double drain_s = 0;
  bool verbose = false;
};

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: shake-http get   --device tun:IF|packet:IF --addr A.B.C.D/N URL [-o FILE]\n"
               "                        [--count N] [--timeout S]\n"
               "       shake-http serve --device ... --addr ... --root DIR [--port P]\n"
               "                        [--connections N] [--max-requests N]\n"
               "common: [--gateway A.B.C.D] [--pcap FILE [--pcap-snaplen N]] [--no-uring] [--time-wait-ms MS]\n"
               "        [--drain S] [--seed N] [--loss P --dup P --reorder P --corrupt P]\n");
  std::exit(2);
}

Args Parse(int argc, char** argv) {
  Args a;
  if (argc < 2) Usage();
  a.mode = argv[1];
  FaultConfig faults;
  bool any_faults = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Usage();
      return argv[++i];
    };
    if (arg == "--device") a.host.device = next();
    else if (arg == "--addr") a.host.addr = next();
    else if (arg == "--gateway") a.host.gateway = next();
    else if (arg == "--pcap") a.host.pcap = next();
    else if (arg == "--pcap-snaplen") a.host.pcap_snaplen = static_cast<uint32_t>(std::atoi(next().c_str()));
    else if (arg == "--no-uring") a.host.engine.use_io_uring = false;
    else if (arg == "--time-wait-ms") a.host.tcp.time_wait = Duration::Millis(std::atoll(next().c_str()));
    else if (arg == "--seed") a.host.seed = faults.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (arg == "--loss") faults.loss = std::atof(next().c_str()), any_faults = true;
    else if (arg == "--dup") faults.duplicate = std::atof(next().c_str()), any_faults = true;
    else if (arg == "--reorder") faults.reorder = std::atof(next().c_str()), any_faults = true;
    else if (arg == "--corrupt") faults.corrupt = std::atof(next().c_str()), any_faults = true;
    else if (arg == "-o") a.out = next();
    else if (arg == "--root") a.root = next();
    else if (arg == "--port") a.port = static_cast<uint16_t>(std::atoi(next().c_str()));
    else if (arg == "--count") a.count = std::atoi(next().c_str());
    else if (arg == "--connections") a.connections = std::atoi(next().c_str());
    else if (arg == "--max-requests") a.max_requests = std::atoi(next().c_str());
    else if (arg == "--timeout") a.timeout_s = std::atof(next().c_str());
    else if (arg == "--drain") a.drain_s = std::atof(next().c_str());
    else if (arg == "-v") a.verbose = true;
    else if (a.mode == "get" && a.url.empty() && arg.rfind("http://", 0) == 0) a.url = arg;
    else Usage();
  }
  if (any_faults) a.host.faults = faults;
  if (a.host.device.empty()) {
    std::fprintf(stderr, "shake-http: --device missing (tun:IFNAME or packet:IFNAME)\n");
    std::exit(2);
  }
  if (a.host.addr.empty()) {
    std::fprintf(stderr, "shake-http: --addr missing (the stack's address, e.g. 198.18.0.2/24)\n");
    std::exit(2);
  }
  return a;
}

Instant Deadline(double s) {
  return MonotonicNow() + Duration::Micros(static_cast<int64_t>(s * 1e6));
}

std::string States(StackHost& h) {
  const auto states = h.Locked([](Stack& st) { return st.ConnectionsByState(); });
  std::string s;
  for (size_t i = 0; i < states.size(); ++i) {
    if (states[i]) {
      // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on
      // `const char* + std::string` temporaries.
      s += ' ';
      s += StateName(static_cast<TcpState>(i));
      s += '=';
      s += std::to_string(states[i]);
    }
  }
  return s.empty() ? " none" : s;
}

void Report(StackHost& h, const Args& a, const char* who) {
  // Let the closing handshakes finish (bounded): everything either gone or in TIME-WAIT.
  h.WaitUntil(
      [](Stack& st) {
        const auto states = st.ConnectionsByState();
        for (size_t i = 0; i < states.size(); ++i) {
          if (states[i] && static_cast<TcpState>(i) != TcpState::kTimeWait) return false;
        }
        return true;
      },
      Deadline(std::min(a.timeout_s, 10.0)));
  std::printf("%s: states after close:%s\n", who, States(h).c_str());
  if (a.drain_s > 0) {
    const bool drained = h.WaitUntil(
        [](Stack& st) {
          for (size_t v : st.ConnectionsByState()) {
            if (v) return false;
          }
          return true;
        },
        Deadline(a.drain_s));
    std::printf("%s: drained=%s states:%s\n", who, drained ? "yes" : "no", States(h).c_str());
  }
  const Counters c = h.Locked([](Stack& st) { return st.counters(); });
  const EngineStats e = h.engine().stats();
  const DeviceStats& d = h.device().stats();
  std::printf(
      "%s: segments in=%llu out=%llu retransmits=%llu | engine %s passes=%llu rx=%llu tx=%llu "
      "tx_errors=%llu tx_no_buffer=%llu | device partial_csum=%llu gso_superframes=%llu "
      "gso_segments=%llu\n",
      who, (unsigned long long)c.tcp_segments_in, (unsigned long long)c.tcp_segments_out,
      (unsigned long long)c.tcp_retransmits, h.engine().features().Describe().c_str(),
      (unsigned long long)e.passes, (unsigned long long)e.rx_frames,
      (unsigned long long)e.tx_frames, (unsigned long long)e.tx_errors,
      (unsigned long long)e.tx_no_buffer, (unsigned long long)d.partial_checksums,
      (unsigned long long)d.gso_superframes, (unsigned long long)d.gso_segments);
  if (auto* f = h.faults()) {
    const FaultStats& s = f->stats();
    std::printf("%s: faults lost=%llu dup=%llu reordered=%llu corrupted=%llu\n", who,
                (unsigned long long)s.lost, (unsigned long long)s.duplicated,
                (unsigned long long)s.reordered, (unsigned long long)s.corrupted);
  }
}

// Sends all of `data`, waiting for send space. False on error or timeout.
bool SendAll(StackHost& h, SocketId s, std::span<const std::byte> data, Instant deadline) {
  // Bounded by the deadline.
  while (!data.empty()) {
    const auto r = h.Locked([&](Stack& st) { return st.Send(s, data); });
    if (r.ok()) {
      data = data.subspan(*r);
      continue;
    }
    if (r.error() != EAGAIN) return false;
    if (MonotonicNow() >= deadline || g_stop) return false;
    h.WaitFor(s, ready::kWritable | ready::kError | ready::kHangup, Min(deadline, Deadline(0.2)));
  }
  return true;
}

// Receives into buf; returns bytes, 0 at EOF, -1 on error or timeout.
long RecvSome(StackHost& h, SocketId s, std::span<std::byte> buf, Instant deadline) {
  // Bounded by the deadline.
  for (;;) {
    const auto r = h.Locked([&](Stack& st) { return st.Recv(s, buf); });
    if (r.ok()) return static_cast<long>(*r);
    if (r.error() != EAGAIN) return -1;
    if (MonotonicNow() >= deadline || g_stop) return -1;
    h.WaitFor(s, ready::kReadable | ready::kError | ready::kHangup, Min(deadline, Deadline(0.2)));
  }
}

bool Fetch(StackHost& h, const Args& a, Endpoint remote, const std::string& path, int index) {
  const Instant deadline = Deadline(a.timeout_s);
  auto fail = [&](const char* what, SocketId s) {
    const auto info = h.Locked([&](Stack& st) { return st.Info(s); });
    std::fprintf(stderr, "shake-http: connection %d: %s (state %s, error %d)\n", index, what,
                 info.ok() ? std::string(StateName(info.value().state)).c_str() : "?",
                 info.ok() ? info.value().pending_error : 0);
    h.Locked([&](Stack& st) { st.Close(MonotonicNow(), s); });
    return false;
  };
  const auto opened = h.Locked([](Stack& st) { return st.Open(); });
  if (!opened.ok()) {
    std::fprintf(stderr, "shake-http: open: %s\n", std::strerror(opened.error()));
    return false;
  }
  const SocketId s = *opened;
  const auto c = h.Locked([&](Stack& st) { return st.Connect(MonotonicNow(), s, remote); });
  if (!c.ok() && c.error() != EINPROGRESS) return fail("connect", s);
  const uint32_t r = h.WaitFor(s, ready::kWritable | ready::kError, deadline);
  if (!(r & ready::kWritable) || (r & ready::kError)) return fail("connect timed out or failed", s);

  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + remote.addr.ToString() +
                          "\r\nUser-Agent: shake-http\r\nAccept: */*\r\n\r\n";
  if (!SendAll(h, s, std::as_bytes(std::span(req)), deadline)) return fail("send request", s);

  FILE* out = a.out.empty() ? nullptr : std::fopen(a.out.c_str(), "wb");
  if (!a.out.empty() && !out) {
    std::perror(a.out.c_str());
    return fail("open output", s);
  }
  std::vector<std::byte> buf(256 * 1024);
  std::string head;
  long long content_length = -1, body = 0;
  bool ok = false;
  // Bounded by the deadline inside RecvSome.
  for (;;) {
    const long n = RecvSome(h, s, buf, deadline);
    if (n < 0) break;
    if (n == 0) {
      ok = content_length < 0 && !head.empty();  // close-delimited body
      break;
    }
    size_t off = 0;
    if (content_length < 0 && head.find("\r\n\r\n") == std::string::npos) {
      const size_t before = head.size();
      head.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
      const size_t end = head.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (head.size() > 65536) break;
        continue;
      }
      off = end + 4 - before;
      head.resize(end + 4);
      if (head.rfind("HTTP/1.1 200", 0) != 0 && head.rfind("HTTP/1.0 200", 0) != 0) {
        std::fprintf(stderr, "shake-http: %s", head.substr(0, head.find("\r\n") + 2).c_str());
        break;
      }
      std::string lower = head;
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const size_t cl = lower.find("\r\ncontent-length:");
      if (cl != std::string::npos) content_length = std::atoll(lower.c_str() + cl + 17);
    }
    const size_t chunk = static_cast<size_t>(n) - off;
    if (out && chunk) std::fwrite(buf.data() + off, 1, chunk, out);
    body += static_cast<long long>(chunk);
    if (content_length >= 0 && body >= content_length) {
      ok = body == content_length;
      break;
    }
  }
  if (out) std::fclose(out);
  if (!ok) return fail("response incomplete", s);
  // We close first: this side passes through TIME-WAIT.
  h.Locked([&](Stack& st) { st.Close(MonotonicNow(), s); });
  if (a.verbose) std::printf("connection %d: %lld bytes\n", index, body);
  return true;
}

int Get(const Args& a) {
  // http://A.B.C.D[:port]/path
  const std::string rest = a.url.substr(7);
  const size_t slash = rest.find('/');
  const std::string hostport = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  const size_t colon = hostport.find(':');
  const auto ip = Ipv4Addr::Parse(hostport.substr(0, colon));
  if (!ip) {
    std::fprintf(stderr, "shake-http: URL host must be an IPv4 address: %s\n", a.url.c_str());
    return 2;
  }
  const Endpoint remote{*ip, static_cast<uint16_t>(
                                 colon == std::string::npos ? 80 : std::atoi(hostport.c_str() + colon + 1))};
  std::string error;
  auto h = StackHost::Create(a.host, &error);
  if (!h) {
    std::fprintf(stderr, "shake-http: %s\n", error.c_str());
    return 1;
  }
  h->Start();
  const Instant t0 = MonotonicNow();
  int ok = 0, failed = 0;
  for (int i = 0; i < a.count && !g_stop; ++i) {
    if (Fetch(*h, a, remote, path, i)) {
      ++ok;
    } else {
      ++failed;
    }
  }
  const double secs = static_cast<double>((MonotonicNow() - t0).micros()) / 1e6;
  std::printf("get: connections ok=%d failed=%d time=%.3fs\n", ok, failed, secs);
  Report(*h, a, "get");
  h->Stop();
  return failed == 0 && ok == a.count ? 0 : 1;
}

bool Serve1(StackHost& h, const Args& a, SocketId s) {
  std::vector<std::byte> buf(64 * 1024);
  int requests = 0;
  std::string pending;
  // Bounded by --max-requests and the per-read timeout.
  while (requests < a.max_requests && !g_stop) {
    size_t end;
    while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
      const long n = RecvSome(h, s, std::span(buf).first(4096), Deadline(a.timeout_s));
      if (n <= 0) return n == 0;  // the client closed (or timed out)
      pending.append(reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
      if (pending.size() > 65536) return false;
    }
    std::string head = pending.substr(0, end + 4);
    pending.erase(0, end + 4);
    ++requests;
    std::string lower = head;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const bool close_requested = lower.find("\r\nconnection: close") != std::string::npos;
    const bool last = close_requested || requests >= a.max_requests;
    std::string path;
    if (head.rfind("GET ", 0) == 0) path = head.substr(4, head.find(' ', 4) - 4);
    int fd = -1;
    struct stat st{};
    if (!path.empty() && path[0] == '/' && path.find("..") == std::string::npos) {
      fd = open((a.root + path).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
      }
    }
    const std::string conn = last ? "close" : "keep-alive";
    std::string resp;
    if (fd < 0) {
      resp = "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: " + conn +
             "\r\n\r\nnot found\n";
    } else {
      resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(st.st_size) +
             "\r\nContent-Type: application/octet-stream\r\nConnection: " + conn + "\r\n\r\n";
    }
    const Instant deadline = Deadline(a.timeout_s);
    bool ok = SendAll(h, s, std::as_bytes(std::span(resp)), deadline);
    // Bounded by the file's size.
    while (ok && fd >= 0) {
      const ssize_t n = read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      ok = SendAll(h, s, std::span(buf).first(static_cast<size_t>(n)), deadline);
    }
    if (fd >= 0) close(fd);
    if (!ok) return false;
    if (last) return true;
  }
  return true;
}

int Serve(const Args& a) {
  if (a.root.empty()) {
    std::fprintf(stderr, "shake-http: --root DIR missing\n");
    return 2;
  }
  std::string error;
  auto h = StackHost::Create(a.host, &error);
  if (!h) {
    std::fprintf(stderr, "shake-http: %s\n", error.c_str());
    return 1;
  }
  Ipv4Addr addr;
  int prefix;
  ParseAddrPrefix(a.host.addr, &addr, &prefix);
  const auto l = h->Locked([&](Stack& st) -> Result<SocketId> {
    auto s = st.Open();
    if (!s.ok()) return s;
    if (auto b = st.Bind(*s, Endpoint{addr, a.port}); !b.ok()) return b;
    if (auto li = st.Listen(*s, 128); !li.ok()) return li;
    return s;
  });
  if (!l.ok()) {
    std::fprintf(stderr, "shake-http: listen on port %u: %s\n", a.port, std::strerror(l.error()));
    return 1;
  }
  h->Start();
  std::printf("serve: listening on %s:%u\n", addr.ToString().c_str(), a.port);
  std::fflush(stdout);
  int served = 0, failed = 0;
  // Bounded by --connections (or a signal).
  while (!g_stop && (a.connections == 0 || served + failed < a.connections)) {
    const auto c = h->Locked([&](Stack& st) { return st.Accept(*l); });
    if (!c.ok()) {
      h->WaitFor(*l, ready::kReadable, Deadline(0.2));
      continue;
    }
    const bool ok = Serve1(*h, a, *c);
    // The client closed first (or asked us to close): either way release the socket now.
    h->Locked([&](Stack& st) { st.Close(MonotonicNow(), *c); });
    ok ? ++served : ++failed;
  }
  std::printf("serve: connections ok=%d failed=%d\n", served, failed);
  h->Locked([&](Stack& st) { st.Close(MonotonicNow(), *l); });
  Report(*h, a, "serve");
  h->Stop();
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (a.mode == "get") return a.url.empty() ? (Usage(), 2) : Get(a);
  if (a.mode == "serve") return Serve(a);
  Usage();
}
