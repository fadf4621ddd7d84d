// The real libc functions behind libshake's interposed ones, resolved once into one table.
//
// Usage: shake::shim::real::connect(fd, addr, len) calls the next definition of connect after
// libshake (normally glibc's), as dlsym(RTLD_NEXT) finds it.
//
// Loading safety:
//  - Every entry starts out pointing at a raw-syscall fallback, so a call that arrives before
//    the table is resolved (before our constructor, or re-entrantly while dlsym runs — dlsym may
//    call calloc, and an application's malloc may call read or fcntl) goes straight to the
//    kernel instead of recursing or allocating.
//  - Resolve() runs once, on first use or from the constructor, whichever comes first. A
//    thread-local flag stops re-entry on the resolving thread; other threads meanwhile use the
//    fallbacks (correct, just without libc's wrappers) rather than waiting.
//  - Entries without a syscall equivalent (posix_spawn, execvp...) fail with ENOSYS in that
//    window, which can only be reached from inside dlsym itself.
#pragma once

#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>

// X(return type, name, parameter types of the libc function, typed parameters, arguments).
// fcntl and ioctl are variadic in libc; they are called here with their one optional argument
// passed as a pointer-sized value, as the kernel reads it.
#define SHAKE_REAL_FUNCTIONS(X)                                                                 \
  X(int, socket, (int, int, int), (int d, int t, int p), (d, t, p))                             \
  X(int, socketpair, (int, int, int, int*), (int d, int t, int p, int* sv), (d, t, p, sv))      \
  X(int, bind, (int, const sockaddr*, socklen_t), (int fd, const sockaddr* a, socklen_t l),     \
    (fd, a, l))                                                                                 \
  X(int, listen, (int, int), (int fd, int b), (fd, b))                                          \
  X(int, accept, (int, sockaddr*, socklen_t*), (int fd, sockaddr* a, socklen_t* l), (fd, a, l)) \
  X(int, accept4, (int, sockaddr*, socklen_t*, int),                                            \
    (int fd, sockaddr* a, socklen_t* l, int f), (fd, a, l, f))                                  \
  X(int, connect, (int, const sockaddr*, socklen_t),                                            \
    (int fd, const sockaddr* a, socklen_t l), (fd, a, l))                                       \
  X(ssize_t, read, (int, void*, size_t), (int fd, void* b, size_t n), (fd, b, n))               \
  X(ssize_t, write, (int, const void*, size_t), (int fd, const void* b, size_t n), (fd, b, n))  \
  X(ssize_t, readv, (int, const iovec*, int), (int fd, const iovec* v, int n), (fd, v, n))      \
  X(ssize_t, writev, (int, const iovec*, int), (int fd, const iovec* v, int n), (fd, v, n))     \
  X(ssize_t, recv, (int, void*, size_t, int), (int fd, void* b, size_t n, int f),               \
    (fd, b, n, f))                                                                              \
  X(ssize_t, send, (int, const void*, size_t, int), (int fd, const void* b, size_t n, int f),   \
    (fd, b, n, f))                                                                              \
  X(ssize_t, recvfrom, (int, void*, size_t, int, sockaddr*, socklen_t*),                        \
    (int fd, void* b, size_t n, int f, sockaddr* a, socklen_t* l), (fd, b, n, f, a, l))         \
  X(ssize_t, sendto, (int, const void*, size_t, int, const sockaddr*, socklen_t),               \
    (int fd, const void* b, size_t n, int f, const sockaddr* a, socklen_t l),                   \
    (fd, b, n, f, a, l))                                                                        \
  X(ssize_t, recvmsg, (int, msghdr*, int), (int fd, msghdr* m, int f), (fd, m, f))              \
  X(ssize_t, sendmsg, (int, const msghdr*, int), (int fd, const msghdr* m, int f), (fd, m, f))  \
  X(int, recvmmsg, (int, mmsghdr*, unsigned, int, timespec*),                                   \
    (int fd, mmsghdr* m, unsigned n, int f, timespec* t), (fd, m, n, f, t))                     \
  X(int, sendmmsg, (int, mmsghdr*, unsigned, int), (int fd, mmsghdr* m, unsigned n, int f),     \
    (fd, m, n, f))                                                                              \
  X(ssize_t, sendfile, (int, int, off_t*, size_t), (int o, int i, off_t* off, size_t n),        \
    (o, i, off, n))                                                                             \
  X(ssize_t, sendfile64, (int, int, off64_t*, size_t), (int o, int i, off64_t* off, size_t n),  \
    (o, i, off, n))                                                                             \
  X(ssize_t, splice, (int, loff_t*, int, loff_t*, size_t, unsigned),                            \
    (int i, loff_t* io, int o, loff_t* oo, size_t n, unsigned f), (i, io, o, oo, n, f))         \
  X(int, close, (int), (int fd), (fd))                                                          \
  X(int, shutdown, (int, int), (int fd, int how), (fd, how))                                    \
  X(int, getsockopt, (int, int, int, void*, socklen_t*),                                        \
    (int fd, int lv, int nm, void* v, socklen_t* l), (fd, lv, nm, v, l))                        \
  X(int, setsockopt, (int, int, int, const void*, socklen_t),                                   \
    (int fd, int lv, int nm, const void* v, socklen_t l), (fd, lv, nm, v, l))                   \
  X(int, getsockname, (int, sockaddr*, socklen_t*), (int fd, sockaddr* a, socklen_t* l),        \
    (fd, a, l))                                                                                 \
  X(int, getpeername, (int, sockaddr*, socklen_t*), (int fd, sockaddr* a, socklen_t* l),        \
    (fd, a, l))                                                                                 \
  X(int, fcntl, (int, int, ...), (int fd, int cmd, unsigned long arg), (fd, cmd, arg))          \
  X(int, fcntl64, (int, int, ...), (int fd, int cmd, unsigned long arg), (fd, cmd, arg))        \
  X(int, ioctl, (int, unsigned long, ...), (int fd, unsigned long req, unsigned long arg),      \
    (fd, req, arg))                                                                             \
  X(int, poll, (pollfd*, nfds_t, int), (pollfd* f, nfds_t n, int t), (f, n, t))                 \
  X(int, ppoll, (pollfd*, nfds_t, const timespec*, const sigset_t*),                            \
    (pollfd* f, nfds_t n, const timespec* t, const sigset_t* s), (f, n, t, s))                  \
  X(int, select, (int, fd_set*, fd_set*, fd_set*, timeval*),                                    \
    (int n, fd_set* r, fd_set* w, fd_set* e, timeval* t), (n, r, w, e, t))                      \
  X(int, pselect, (int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*),           \
    (int n, fd_set* r, fd_set* w, fd_set* e, const timespec* t, const sigset_t* s),             \
    (n, r, w, e, t, s))                                                                         \
  X(int, epoll_create, (int), (int n), (n))                                                     \
  X(int, epoll_create1, (int), (int f), (f))                                                    \
  X(int, epoll_ctl, (int, int, int, epoll_event*), (int ep, int op, int fd, epoll_event* e),    \
    (ep, op, fd, e))                                                                            \
  X(int, epoll_wait, (int, epoll_event*, int, int), (int ep, epoll_event* e, int n, int t),     \
    (ep, e, n, t))                                                                              \
  X(int, epoll_pwait, (int, epoll_event*, int, int, const sigset_t*),                           \
    (int ep, epoll_event* e, int n, int t, const sigset_t* s), (ep, e, n, t, s))                \
  X(int, epoll_pwait2, (int, epoll_event*, int, const timespec*, const sigset_t*),              \
    (int ep, epoll_event* e, int n, const timespec* t, const sigset_t* s), (ep, e, n, t, s))    \
  X(int, dup, (int), (int fd), (fd))                                                            \
  X(int, dup2, (int, int), (int a, int b), (a, b))                                              \
  X(int, dup3, (int, int, int), (int a, int b, int f), (a, b, f))                               \
  X(int, close_range, (unsigned, unsigned, int), (unsigned a, unsigned b, int f), (a, b, f))    \
  X(pid_t, fork, (void), (), ())                                                                \
  X(int, execve, (const char*, char* const*, char* const*),                                     \
    (const char* p, char* const* a, char* const* e), (p, a, e))                                 \
  X(int, execv, (const char*, char* const*), (const char* p, char* const* a), (p, a))           \
  X(int, execvp, (const char*, char* const*), (const char* p, char* const* a), (p, a))          \
  X(int, execvpe, (const char*, char* const*, char* const*),                                    \
    (const char* p, char* const* a, char* const* e), (p, a, e))                                 \
  X(int, fexecve, (int, char* const*, char* const*), (int fd, char* const* a, char* const* e),  \
    (fd, a, e))                                                                                 \
  X(int, posix_spawn,                                                                           \
    (pid_t*, const char*, const posix_spawn_file_actions_t*, const posix_spawnattr_t*,          \
     char* const*, char* const*),                                                               \
    (pid_t * pid, const char* p, const posix_spawn_file_actions_t* fa,                          \
     const posix_spawnattr_t* at, char* const* a, char* const* e),                              \
    (pid, p, fa, at, a, e))                                                                     \
  X(int, posix_spawnp,                                                                          \
    (pid_t*, const char*, const posix_spawn_file_actions_t*, const posix_spawnattr_t*,          \
     char* const*, char* const*),                                                               \
    (pid_t * pid, const char* p, const posix_spawn_file_actions_t* fa,                          \
     const posix_spawnattr_t* at, char* const* a, char* const* e),                              \
    (pid, p, fa, at, a, e))                                                                     \
  X(int, posix_spawn_file_actions_adddup2, (posix_spawn_file_actions_t*, int, int),             \
    (posix_spawn_file_actions_t * fa, int fd, int to), (fa, fd, to))                            \
  X(int, posix_spawn_file_actions_destroy, (posix_spawn_file_actions_t*),                       \
    (posix_spawn_file_actions_t * fa), (fa))                                                    \
  X(FILE*, fdopen, (int, const char*), (int fd, const char* m), (fd, m))                        \
  X(int, system, (const char*), (const char* c), (c))                                           \
  X(FILE*, popen, (const char*, const char*), (const char* c, const char* m), (c, m))           \
  X(int, pclose, (FILE*), (FILE * f), (f))

namespace shake::shim::real {

// Resolves the table if no one has yet; a no-op on the thread that is resolving it.
void Resolve();
bool Resolved();
// How many entries dlsym found (the rest stay on their fallbacks); for tests and SHAKE_LOG=debug.
int ResolvedCount();

namespace detail {
enum : int { kUnresolved = 0, kResolving = 1, kDone = 2 };
extern std::atomic<int> state;
#define SHAKE_REAL_DECLARE(ret, name, types, params, args) \
  using name##_fn = ret(*) types;                          \
  extern std::atomic<name##_fn> name##_ptr;
SHAKE_REAL_FUNCTIONS(SHAKE_REAL_DECLARE)
#undef SHAKE_REAL_DECLARE
}  // namespace detail

#define SHAKE_REAL_CALLER(ret, name, types, params, args)                                   \
  inline ret name params {                                                                  \
    if (detail::state.load(std::memory_order_acquire) != detail::kDone) [[unlikely]]        \
      Resolve();                                                                            \
    return detail::name##_ptr.load(std::memory_order_relaxed) args;                         \
  }
SHAKE_REAL_FUNCTIONS(SHAKE_REAL_CALLER)
#undef SHAKE_REAL_CALLER

}  // namespace shake::shim::real
