#include "tests/io/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace shake::testing {
namespace {

using Clock = std::chrono::steady_clock;

// What the emergency cleanup (atexit, fatal signals) must undo. Fixed arrays: a signal handler
// may only read them.
constexpr int kMaxTracked = 64;
struct Tracked {
  std::atomic<int> pgids[kMaxTracked];
  char namespaces[kMaxTracked][64];
  std::atomic<bool> ns_used[kMaxTracked];
};
Tracked g_tracked;
std::mutex g_mu;

void EmergencyCleanup() {
  for (auto& p : g_tracked.pgids) {
    const int g = p.exchange(0);
    if (g > 0) kill(-g, SIGKILL);
  }
  for (int i = 0; i < kMaxTracked; ++i) {
    if (!g_tracked.ns_used[i].exchange(false)) continue;
    char path[128] = "/run/netns/";
    std::strncat(path, g_tracked.namespaces[i], sizeof path - std::strlen(path) - 1);
    umount2(path, MNT_DETACH);  // what `ip netns del` does
    unlink(path);
  }
}

void OnFatalSignal(int sig) {
  EmergencyCleanup();
  signal(sig, SIG_DFL);
  raise(sig);
}

void InstallHandlersOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(EmergencyCleanup);
    for (int sig : {SIGINT, SIGTERM, SIGABRT, SIGSEGV, SIGHUP}) signal(sig, OnFatalSignal);
  });
}

void TrackPgid(int pgid, bool add) {
  for (auto& p : g_tracked.pgids) {
    int expected = add ? 0 : pgid;
    if (p.compare_exchange_strong(expected, add ? pgid : 0)) return;
  }
}

void TrackNamespace(const std::string& name, bool add) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (int i = 0; i < kMaxTracked; ++i) {
    if (add && !g_tracked.ns_used[i]) {
      std::strncpy(g_tracked.namespaces[i], name.c_str(), 63);
      g_tracked.namespaces[i][63] = '\0';
      g_tracked.ns_used[i] = true;
      return;
    }
    if (!add && g_tracked.ns_used[i] && name == g_tracked.namespaces[i]) {
      g_tracked.ns_used[i] = false;
      return;
    }
  }
}

std::atomic<int> g_counter{0};

}  // namespace

bool JoinNetns(const std::string& ns) {
  const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = setns(fd, CLONE_NEWNET) == 0;
  close(fd);
  return ok;
}

int Ping(const std::string& ns, const std::string& dst, int count, int interval_ms) {
  return InNamespace(ns, [&]() -> int {
    const int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd < 0) return -1;
    sockaddr_in to{};
    to.sin_family = AF_INET;
    inet_pton(AF_INET, dst.c_str(), &to.sin_addr);
    const uint16_t id = static_cast<uint16_t>(getpid() ^ g_counter.fetch_add(1) << 8);
    int replies = 0;
    for (int seq = 0; seq < count; ++seq) {
      unsigned char req[64] = {8, 0, 0, 0, static_cast<unsigned char>(id >> 8),
                               static_cast<unsigned char>(id), static_cast<unsigned char>(seq >> 8),
                               static_cast<unsigned char>(seq)};
      uint32_t sum = 0;
      for (size_t i = 0; i < sizeof req; i += 2) sum += (req[i] << 8) | req[i + 1];
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      req[2] = static_cast<unsigned char>(~sum >> 8);
      req[3] = static_cast<unsigned char>(~sum);
      sendto(fd, req, sizeof req, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
      const auto deadline = Clock::now() + std::chrono::seconds(1);
      // Bounded by the deadline.
      while (Clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        unsigned char buf[256];
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 28) continue;
        const size_t ihl = (buf[0] & 0x0fu) * 4;
        const unsigned char* icmp = buf + ihl;
        if (static_cast<size_t>(n) >= ihl + 8 && icmp[0] == 0 && icmp[4] == (id >> 8) &&
            icmp[5] == (id & 0xff) && icmp[6] == (seq >> 8) && icmp[7] == (seq & 0xff)) {
          ++replies;
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    }
    close(fd);
    return replies;
  });
}

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

int Run(const std::vector<std::string>& argv, std::string* output, int timeout_s) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  bool timed_out = false;
  // Bounded by the deadline.
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<long>(left, 1000))) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (output) *output = out;
  if (timed_out || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

int Sh(const std::string& cmd, std::string* output, int timeout_s) {
  return Run({"/bin/sh", "-c", cmd}, output, timeout_s);
}

Child::~Child() { Terminate(); }

std::string Child::Log() const {
  std::ifstream f(log_);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool Child::Wait(int timeout_ms, int* status) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  // Bounded by the deadline.
  while (!reaped_) {
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      TrackPgid(pid_, false);
      break;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (status) *status = status_;
  return true;
}

bool Child::Running() { return !Wait(0, nullptr); }

void Child::Terminate() {
  if (reaped_) return;
  kill(-pid_, SIGTERM);
  if (!Wait(3000, nullptr)) {
    kill(-pid_, SIGKILL);
    Wait(3000, nullptr);
  }
  kill(-pid_, SIGKILL);  // anything the process group left behind
}

std::string Topology::Unavailable() {
  static std::string reason = [] {
    if (geteuid() != 0) return std::string("needs root to create network namespaces");
    std::string out;
    const std::string probe = "shk-" + std::to_string(getpid()) + "-probe";
    if (Run({"ip", "netns", "add", probe}, &out) != 0) {
      return "`ip netns add` failed: " + out;
    }
    Run({"ip", "netns", "del", probe});
    return std::string();
  }();
  return reason;
}

void CleanStaleNamespaces() {
  DIR* d = opendir("/run/netns");
  if (!d) return;
  std::vector<std::string> stale;
  // Bounded by the directory's entries.
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("shk-", 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + 4, nullptr, 10);
    if (pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    stale.push_back(name);
  }
  closedir(d);
  for (const auto& name : stale) {
    std::string pids;
    Run({"ip", "netns", "pids", name}, &pids, 10);
    std::istringstream in(pids);
    long p;
    while (in >> p) kill(static_cast<pid_t>(p), SIGKILL);
    Run({"ip", "netns", "del", name}, nullptr, 10);
  }
}

Topology::Topology() {
  InstallHandlersOnce();
  CleanStaleNamespaces();
  prefix_ = "shk-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  char tmpl[] = "/tmp/shk-XXXXXX";
  if (mkdtemp(tmpl)) dir_ = tmpl;
  chmod(dir_.c_str(), 0755);
}

Topology::~Topology() { Cleanup(); }

void Topology::Cleanup() {
  for (auto& c : children_) c->Terminate();
  children_.clear();
  for (const auto& ns : namespaces_) {
    std::string pids;
    Run({"ip", "netns", "pids", ns}, &pids, 10);
    std::istringstream in(pids);
    long p;
    while (in >> p) kill(static_cast<pid_t>(p), SIGKILL);
    Run({"ip", "netns", "del", ns}, nullptr, 10);
    TrackNamespace(ns, false);
  }
  namespaces_.clear();
  if (!dir_.empty() && !std::getenv("SHAKE_KEEP_TMP")) Run({"rm", "-rf", dir_});
  dir_.clear();
}

std::string Topology::AddNamespace(const std::string& tag) {
  const std::string name = prefix_ + "-" + tag;
  std::string out;
  if (Run({"ip", "netns", "add", name}, &out) != 0) {
    ADD_FAILURE() << "ip netns add " << name << ": " << out;
    return name;
  }
  TrackNamespace(name, true);
  namespaces_.push_back(name);
  Exec(name, "ip link set lo up");
  return name;
}

void Topology::Veth(const std::string& ns1, const std::string& if1, const std::string& ns2,
                    const std::string& if2) {
  std::string out;
  if (Run({"ip", "-n", ns1, "link", "add", if1, "type", "veth", "peer", "name", if2, "netns",
           ns2},
          &out) != 0) {
    ADD_FAILURE() << "veth " << if1 << "/" << if2 << ": " << out;
  }
  Exec(ns1, "ip link set " + if1 + " up");
  Exec(ns2, "ip link set " + if2 + " up");
}

void Topology::Tun(const std::string& ns, const std::string& name, int uid) {
  std::string cmd = "ip tuntap add dev " + name + " mode tun";
  if (uid >= 0) cmd += " user " + std::to_string(uid);
  Exec(ns, cmd);
  Exec(ns, "ip link set " + name + " up");
}

bool Topology::Exec(const std::string& ns, const std::string& cmd, std::string* output,
                    int timeout_s) {
  std::string out;
  const int rc = Run({"ip", "netns", "exec", ns, "/bin/sh", "-c", cmd}, &out, timeout_s);
  if (output) *output = out;
  if (rc != 0) {
    ADD_FAILURE() << "[" << ns << "] " << cmd << " -> " << rc << "\n" << out;
    return false;
  }
  return true;
}

bool Topology::WaitCarrier(const std::string& ns, const std::string& dev) {
  // The operational state leaves DOWN in the same link-watch step that activates the queue.
  return Exec(ns, "for i in $(seq 60); do ip link show dev " + dev +
                      " | grep -q 'state DOWN' || exit 0; sleep 0.05; done; exit 1");
}

Child& Topology::Spawn(const std::string& ns, const std::vector<std::string>& argv,
                       const std::string& log) {
  const std::string path = dir_ + "/" + log + ".log";
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<std::string> full = {"ip", "netns", "exec", ns};
    full.insert(full.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (auto& a : full) args.push_back(a.data());
    args.push_back(nullptr);
    execvp("ip", args.data());
    _exit(127);
  }
  setpgid(pid, pid);
  TrackPgid(pid, true);
  children_.push_back(std::make_unique<Child>(pid, path));
  return *children_.back();
}

}  // namespace shake::testing
