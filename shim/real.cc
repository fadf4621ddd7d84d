// Resolution of the real-function table (see real.h) and the raw-syscall fallbacks that every
// entry holds until then.
#include "shim/real.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/syscall.h>

#include <cstdarg>

namespace shake::shim::real {
namespace {

// The result of a raw syscall as libc would return it (-1 with errno set).
template <typename T>
T Sys(long r) {
  return static_cast<T>(r);
}

// Fallbacks: the kernel call each libc function wraps. Only used before resolution.
int fb_socket(int d, int t, int p) { return Sys<int>(syscall(SYS_socket, d, t, p)); }
int fb_socketpair(int d, int t, int p, int* sv) {
  return Sys<int>(syscall(SYS_socketpair, d, t, p, sv));
}
int fb_bind(int fd, const sockaddr* a, socklen_t l) { return Sys<int>(syscall(SYS_bind, fd, a, l)); }
int fb_listen(int fd, int b) { return Sys<int>(syscall(SYS_listen, fd, b)); }
int fb_accept(int fd, sockaddr* a, socklen_t* l) { return Sys<int>(syscall(SYS_accept, fd, a, l)); }
int fb_accept4(int fd, sockaddr* a, socklen_t* l, int f) {
  return Sys<int>(syscall(SYS_accept4, fd, a, l, f));
}
int fb_connect(int fd, const sockaddr* a, socklen_t l) {
  return Sys<int>(syscall(SYS_connect, fd, a, l));
}
ssize_t fb_read(int fd, void* b, size_t n) { return syscall(SYS_read, fd, b, n); }
ssize_t fb_write(int fd, const void* b, size_t n) { return syscall(SYS_write, fd, b, n); }
ssize_t fb_readv(int fd, const iovec* v, int n) { return syscall(SYS_readv, fd, v, n); }
ssize_t fb_writev(int fd, const iovec* v, int n) { return syscall(SYS_writev, fd, v, n); }
ssize_t fb_recv(int fd, void* b, size_t n, int f) {
  return syscall(SYS_recvfrom, fd, b, n, f, nullptr, nullptr);
}
ssize_t fb_send(int fd, const void* b, size_t n, int f) {
  return syscall(SYS_sendto, fd, b, n, f, nullptr, 0);
}
ssize_t fb_recvfrom(int fd, void* b, size_t n, int f, sockaddr* a, socklen_t* l) {
  return syscall(SYS_recvfrom, fd, b, n, f, a, l);
}
ssize_t fb_sendto(int fd, const void* b, size_t n, int f, const sockaddr* a, socklen_t l) {
  return syscall(SYS_sendto, fd, b, n, f, a, l);
}
ssize_t fb_recvmsg(int fd, msghdr* m, int f) { return syscall(SYS_recvmsg, fd, m, f); }
ssize_t fb_sendmsg(int fd, const msghdr* m, int f) { return syscall(SYS_sendmsg, fd, m, f); }
int fb_recvmmsg(int fd, mmsghdr* m, unsigned n, int f, timespec* t) {
  return Sys<int>(syscall(SYS_recvmmsg, fd, m, n, f, t));
}
int fb_sendmmsg(int fd, mmsghdr* m, unsigned n, int f) {
  return Sys<int>(syscall(SYS_sendmmsg, fd, m, n, f));
}
ssize_t fb_sendfile(int o, int i, off_t* off, size_t n) { return syscall(SYS_sendfile, o, i, off, n); }
ssize_t fb_sendfile64(int o, int i, off64_t* off, size_t n) {
  return syscall(SYS_sendfile, o, i, off, n);
}
ssize_t fb_splice(int i, loff_t* io, int o, loff_t* oo, size_t n, unsigned f) {
  return syscall(SYS_splice, i, io, o, oo, n, f);
}
int fb_close(int fd) { return Sys<int>(syscall(SYS_close, fd)); }
int fb_shutdown(int fd, int how) { return Sys<int>(syscall(SYS_shutdown, fd, how)); }
int fb_getsockopt(int fd, int lv, int nm, void* v, socklen_t* l) {
  return Sys<int>(syscall(SYS_getsockopt, fd, lv, nm, v, l));
}
int fb_setsockopt(int fd, int lv, int nm, const void* v, socklen_t l) {
  return Sys<int>(syscall(SYS_setsockopt, fd, lv, nm, v, l));
}
int fb_getsockname(int fd, sockaddr* a, socklen_t* l) {
  return Sys<int>(syscall(SYS_getsockname, fd, a, l));
}
int fb_getpeername(int fd, sockaddr* a, socklen_t* l) {
  return Sys<int>(syscall(SYS_getpeername, fd, a, l));
}
int VarFcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return Sys<int>(syscall(SYS_fcntl, fd, cmd, arg));
}
int VarIoctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  unsigned long arg = va_arg(ap, unsigned long);
  va_end(ap);
  return Sys<int>(syscall(SYS_ioctl, fd, req, arg));
}
constexpr auto fb_fcntl = VarFcntl;
constexpr auto fb_fcntl64 = VarFcntl;
constexpr auto fb_ioctl = VarIoctl;
int fb_poll(pollfd* f, nfds_t n, int t) { return Sys<int>(syscall(SYS_poll, f, n, t)); }
int fb_ppoll(pollfd* f, nfds_t n, const timespec* t, const sigset_t* s) {
  timespec copy{};
  if (t) copy = *t;  // the kernel writes the remaining time back; libc hides that
  return Sys<int>(syscall(SYS_ppoll, f, n, t ? &copy : nullptr, s, _NSIG / 8));
}
int fb_select(int n, fd_set* r, fd_set* w, fd_set* e, timeval* t) {
  return Sys<int>(syscall(SYS_select, n, r, w, e, t));
}
int fb_pselect(int n, fd_set* r, fd_set* w, fd_set* e, const timespec* t, const sigset_t* s) {
  timespec copy{};
  if (t) copy = *t;
  struct {
    const sigset_t* set;
    size_t size;
  } mask{s, _NSIG / 8};
  return Sys<int>(syscall(SYS_pselect6, n, r, w, e, t ? &copy : nullptr, &mask));
}
int fb_epoll_create(int n) { return n <= 0 ? (errno = EINVAL, -1) : Sys<int>(syscall(SYS_epoll_create1, 0)); }
int fb_epoll_create1(int f) { return Sys<int>(syscall(SYS_epoll_create1, f)); }
int fb_epoll_ctl(int ep, int op, int fd, epoll_event* e) {
  return Sys<int>(syscall(SYS_epoll_ctl, ep, op, fd, e));
}
int fb_epoll_wait(int ep, epoll_event* e, int n, int t) {
  return Sys<int>(syscall(SYS_epoll_wait, ep, e, n, t));
}
int fb_epoll_pwait(int ep, epoll_event* e, int n, int t, const sigset_t* s) {
  return Sys<int>(syscall(SYS_epoll_pwait, ep, e, n, t, s, _NSIG / 8));
}
int fb_epoll_pwait2(int ep, epoll_event* e, int n, const timespec* t, const sigset_t* s) {
  return Sys<int>(syscall(SYS_epoll_pwait2, ep, e, n, t, s, _NSIG / 8));
}
int fb_dup(int fd) { return Sys<int>(syscall(SYS_dup, fd)); }
int fb_dup2(int a, int b) { return Sys<int>(syscall(SYS_dup2, a, b)); }
int fb_dup3(int a, int b, int f) { return Sys<int>(syscall(SYS_dup3, a, b, f)); }
int fb_close_range(unsigned a, unsigned b, int f) {
  return Sys<int>(syscall(SYS_close_range, a, b, f));
}
pid_t fb_fork() { return Sys<pid_t>(syscall(SYS_fork)); }
int fb_execve(const char* p, char* const* a, char* const* e) {
  return Sys<int>(syscall(SYS_execve, p, a, e));
}
int fb_execv(const char* p, char* const* a) { return fb_execve(p, a, environ); }
int fb_execvp(const char*, char* const*) { return errno = ENOSYS, -1; }
int fb_execvpe(const char*, char* const*, char* const*) { return errno = ENOSYS, -1; }
int fb_fexecve(int fd, char* const* a, char* const* e) {
  return Sys<int>(syscall(SYS_execveat, fd, "", a, e, AT_EMPTY_PATH));
}
int fb_posix_spawn(pid_t*, const char*, const posix_spawn_file_actions_t*,
                   const posix_spawnattr_t*, char* const*, char* const*) {
  return ENOSYS;
}
constexpr auto fb_posix_spawnp = fb_posix_spawn;
int fb_posix_spawn_file_actions_adddup2(posix_spawn_file_actions_t*, int, int) { return ENOSYS; }
int fb_posix_spawn_file_actions_destroy(posix_spawn_file_actions_t*) { return 0; }
FILE* fb_fdopen(int, const char*) { return errno = ENOSYS, nullptr; }
int fb_system(const char*) { return errno = ENOSYS, -1; }
FILE* fb_popen(const char*, const char*) { return errno = ENOSYS, nullptr; }
int fb_pclose(FILE*) { return errno = ENOSYS, -1; }

// Set on the thread running Resolve(), so that calls dlsym makes come back to the fallbacks.
// initial-exec: libshake is loaded at startup (LD_PRELOAD), so its TLS is static and touching
// it never allocates.
__attribute__((tls_model("initial-exec"))) thread_local bool t_resolving = false;
std::atomic<int> g_resolved_count{0};

}  // namespace

namespace detail {
std::atomic<int> state{kUnresolved};
#define SHAKE_REAL_DEFINE(ret, name, types, params, args) \
  std::atomic<name##_fn> name##_ptr{fb_##name};
SHAKE_REAL_FUNCTIONS(SHAKE_REAL_DEFINE)
#undef SHAKE_REAL_DEFINE
}  // namespace detail

void Resolve() {
  if (t_resolving) return;
  int expected = detail::kUnresolved;
  if (!detail::state.compare_exchange_strong(expected, detail::kResolving,
                                             std::memory_order_acq_rel)) {
    return;  // done, or another thread is at it: the fallbacks serve meanwhile
  }
  t_resolving = true;
  int found = 0;
#define SHAKE_REAL_LOOKUP(ret, name, types, params, args)                          \
  if (void* p = dlsym(RTLD_NEXT, #name)) {                                         \
    detail::name##_ptr.store(reinterpret_cast<detail::name##_fn>(p),               \
                             std::memory_order_relaxed);                           \
    ++found;                                                                       \
  }
  SHAKE_REAL_FUNCTIONS(SHAKE_REAL_LOOKUP)
#undef SHAKE_REAL_LOOKUP
  g_resolved_count.store(found, std::memory_order_relaxed);
  t_resolving = false;
  detail::state.store(detail::kDone, std::memory_order_release);
}

bool Resolved() { return detail::state.load(std::memory_order_acquire) == detail::kDone; }
int ResolvedCount() { return g_resolved_count.load(std::memory_order_relaxed); }

}  // namespace shake::shim::real
