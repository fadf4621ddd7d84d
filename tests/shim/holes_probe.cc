// The program side of holes_test.sh: each mode is one place where code that libshake's
// interposition does not see meets a stack socket (stdio, exec'd and spawned children,
// system, popen), or one the shim must get right on its own (SA_RESTART around accept,
// SO_SNDBUF/SO_RCVBUF set before the socket is a stack socket). It serves one connection on
// ADDR:PORT and says what happened on stderr; the kernel-side client in the script checks the
// bytes.
//
//   holes_probe MODE ADDR PORT [ARGS]
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern char** environ;

namespace {

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "holes_probe: %s: %s\n", what, strerror(errno));
  exit(2);
}

int Listen(const char* addr, int port) {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) Die("socket");
  const int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) Die("address");
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("bind");
  if (listen(s, 8) != 0) Die("listen");
  fprintf(stderr, "holes_probe: listening\n");
  return s;
}

int AcceptOne(int l) {
  const int c = accept(l, nullptr, nullptr);
  if (c < 0) Die("accept");
  close(l);
  return c;
}

// The child of the inetd pattern and of posix_spawn: a line from stdin, a line to stdout,
// through stdio.
int StdioChild() {
  char line[256];
  if (fgets(line, sizeof line, stdin) == nullptr) {
    const int err = errno;
    char what[128] = "?";
    const ssize_t n = readlink("/proc/self/fd/0", what, sizeof what - 1);
    if (n > 0) what[n] = '\0';
    fprintf(stderr, "holes_probe: child: fgets: %s (%s), stdin is %s\n",
            feof(stdin) ? "EOF" : "error", feof(stdin) ? "-" : strerror(err), what);
    return 1;
  }
  line[strcspn(line, "\n")] = '\0';
  printf("child:%s\n", line);
  fflush(stdout);
  return 0;
}

int Wait(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int g_signals = 0;
void OnSignal(int) { ++g_signals; }

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "stdio-child") == 0) return StdioChild();
  if (argc < 4) {
    fprintf(stderr, "usage: holes_probe MODE ADDR PORT [ARGS]\n");
    return 2;
  }
  const std::string mode = argv[1];
  const char* addr = argv[2];
  const int port = atoi(argv[3]);

  if (mode == "sockbuf") {
    // Set before the connect decides kernel or stack; read back after it.
    const int s = socket(AF_INET, SOCK_STREAM, 0);
    const int snd = 65536, rcv = 8192;
    if (setsockopt(s, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd) != 0) Die("SO_SNDBUF");
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) != 0) Die("SO_RCVBUF");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr, &a.sin_addr);
    if (connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("connect");
    int gs = 0, gr = 0;
    socklen_t l = sizeof gs;
    getsockopt(s, SOL_SOCKET, SO_SNDBUF, &gs, &l);
    l = sizeof gr;
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &gr, &l);
    printf("sndbuf=%d rcvbuf=%d\n", gs, gr);
    char buf[64];
    snprintf(buf, sizeof buf, "sndbuf=%d rcvbuf=%d\n", gs, gr);
    if (write(s, buf, strlen(buf)) < 0) Die("write");
    close(s);
    return 0;
  }

  if (mode == "accept-signal") {
    // A blocking accept while SIGUSR1 arrives (the script sends them), its handler installed
    // with SA_RESTART ("restart"), without ("interrupt"), or by signal() (BSD semantics:
    // SA_RESTART) beside a SIGTERM handler without SA_RESTART ("mixed").
    const std::string how = argc > 4 ? argv[4] : "";
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = how == "restart" ? SA_RESTART : 0;
    if (how == "mixed") {
      sigaction(SIGTERM, &sa, nullptr);
      if (signal(SIGUSR1, OnSignal) == SIG_ERR) Die("signal");
      struct sigaction back {};
      sigaction(SIGUSR1, nullptr, &back);  // the program sees its own handler
      if (back.sa_handler != OnSignal || !(back.sa_flags & SA_RESTART)) {
        fprintf(stderr, "holes_probe: sigaction does not report the handler installed\n");
        return 3;
      }
    } else {
      sigaction(SIGUSR1, &sa, nullptr);
    }
    const int l = Listen(addr, port);
    const int c = accept(l, nullptr, nullptr);
    if (c < 0) {
      printf("accept: %s after %d signals\n", errno == EINTR ? "EINTR" : strerror(errno),
             g_signals);
      return 0;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "accepted after %d signals\n", g_signals);
    printf("%s", buf);
    if (write(c, buf, strlen(buf)) < 0) Die("write");
    close(c);
    return 0;
  }

  const int l = Listen(addr, port);
  if (mode == "accept-on-stdout") {
    // stdout closed, so the accepted connection takes fd 1; then printf.
    close(1);
    const int c1 = AcceptOne(l);
    printf("accepted-on:%d\n", c1);
    fflush(stdout);
    return 0;
  }
  const int c = AcceptOne(l);

  if (mode == "fdopen") {
    // stdio on the socket itself, in this process.
    FILE* f = fdopen(c, "r+");
    if (f == nullptr) Die("fdopen");
    char line[256];
    if (fgets(line, sizeof line, f) == nullptr) Die("fgets");
    line[strcspn(line, "\n")] = '\0';
    fprintf(f, "fdopen:%s\n", line);
    if (fflush(f) != 0) Die("fflush");
    // A read() and write() on the same fd after stdio: the same byte stream.
    if (fgets(line, sizeof line, f) == nullptr) Die("fgets 2");
    line[strcspn(line, "\n")] = '\0';
    char out[300];
    snprintf(out, sizeof out, "write:%s\n", line);
    if (write(fileno(f), out, strlen(out)) < 0) Die("write");
    fclose(f);
    return 0;
  }

  if (mode == "fdopen-refused") {
    // The bridge cannot be made, so fdopen must fail with the kernel's errno for the shortage
    // and the socket stay usable (the reply goes out with write()). ARGS: "emfile": no fd
    // number left (RLIMIT_NOFILE at the lowest free one); "noslot": run with SHAKE_MAX_PROCS=2,
    // no process slots for the pump (EAGAIN, as fork at a process limit).
    if (argc > 4 && strcmp(argv[4], "emfile") == 0) {
      const int probe_fd = dup(c);
      close(probe_fd);
      struct rlimit rl {};
      getrlimit(RLIMIT_NOFILE, &rl);
      rl.rlim_cur = static_cast<rlim_t>(probe_fd);
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) Die("setrlimit");
    }
    errno = 0;
    FILE* f = fdopen(c, "r+");
    const int err = errno;
    char out[128];
    snprintf(out, sizeof out, "fdopen:%s:%s\n", f == nullptr ? "null" : "file",
             err == EMFILE ? "EMFILE" : err == EAGAIN ? "EAGAIN" : strerror(err));
    if (write(c, out, strlen(out)) < 0) Die("write");
    close(c);
    return 0;
  }

  if (mode == "dup2-stdout") {
    // The socket made stdin and stdout in this process, then fgets and printf. All three fds
    // must be one kernel socket (one bridge), as dup2 of one socket gives.
    if (dup2(c, 0) < 0 || dup2(c, 1) < 0) Die("dup2");
    struct stat s0 {}, s1 {}, sc {};
    fstat(0, &s0);
    fstat(1, &s1);
    fstat(c, &sc);
    if (s0.st_ino != s1.st_ino || s0.st_ino != sc.st_ino || !S_ISSOCK(s0.st_mode)) {
      fprintf(stderr, "holes_probe: fds 0, 1 and %d are not one socket\n", c);
      return 3;
    }
    close(c);
    char line[256];
    if (fgets(line, sizeof line, stdin) == nullptr) Die("fgets");
    line[strcspn(line, "\n")] = '\0';
    // Its address is the TCP peer's, not an AF_UNIX socketpair's.
    sockaddr_in peer{};
    socklen_t pl = sizeof peer;
    char ip[INET_ADDRSTRLEN] = "?";
    if (getpeername(1, reinterpret_cast<sockaddr*>(&peer), &pl) == 0 && peer.sin_family == AF_INET) {
      inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
    }
    printf("stdout:%s:%s\n", line, ip);
    fflush(stdout);
    return 0;
  }

  if (mode == "inetd") {
    // accept, fork, dup2 onto 0 and 1, exec ARGS (env -i drops the preload when asked).
    const pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      dup2(c, 0);
      dup2(c, 1);
      close(c);
      execvp(argv[4], argv + 4);
      Die("exec");
    }
    close(c);
    const int st = Wait(pid);
    fprintf(stderr, "holes_probe: inetd child exit %d\n", st);
    return st;
  }

  if (mode == "system") {
    // The shell and its child write to the inherited socket; then this process, after them.
    char cmd[256];
    snprintf(cmd, sizeof cmd, "read line <&%d; echo \"system:$line\" >&%d", c, c);
    const int st = system(cmd);
    fprintf(stderr, "holes_probe: system: %d\n", st);
    const char after[] = "after-system\n";
    if (write(c, after, sizeof after - 1) < 0) Die("write");
    close(c);
    return st == 0 ? 0 : 1;
  }

  if (mode == "popen") {
    // The child reads the socket and answers on it; this process reads the child's stdout.
    char cmd[256];
    snprintf(cmd, sizeof cmd, "read line <&%d; echo \"popen:$line\" >&%d; echo \"$line\"", c, c);
    FILE* p = popen(cmd, "r");
    if (p == nullptr) Die("popen");
    char line[256] = {};
    if (fgets(line, sizeof line, p) == nullptr) Die("fgets from popen");
    const int st = pclose(p);
    char out[300];
    snprintf(out, sizeof out, "parent-read:%s", line);
    if (write(c, out, strlen(out)) < 0) Die("write");
    close(c);
    return st == 0 ? 0 : 1;
  }

  if (mode == "spawn") {
    // posix_spawn with file actions: the socket becomes the child's stdin and stdout. ARGS:
    // the child's command; "noenv" first runs it without the preload.
    int first = 4;
    char* empty[] = {nullptr};
    char** env = environ;
    if (argc > 4 && strcmp(argv[4], "noenv") == 0) {
      env = empty;
      first = 5;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, c, 0);
    posix_spawn_file_actions_adddup2(&fa, c, 1);
    posix_spawn_file_actions_addclose(&fa, c);
    pid_t pid = -1;
    const int r = posix_spawn(&pid, argv[first], &fa, nullptr, argv + first, env);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
      errno = r;
      Die("posix_spawn");
    }
    close(c);
    const int st = Wait(pid);
    fprintf(stderr, "holes_probe: spawned child exit %d\n", st);
    return st;
  }

  fprintf(stderr, "holes_probe: unknown mode %s\n", mode.c_str());
  return 2;
}
