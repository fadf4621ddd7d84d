// The seam between the POSIX surface (interpose.cc) and the stack-backed implementation
// (backend_impl.h and the files it names).
//
// interpose.cc is a thin dispatch: each interposed call asks the FdTable whether its fd is a
// stack socket; if so, and a backend is installed, it calls the backend here; otherwise — and
// whenever a method returns Pass() — it calls the real libc function. Without SHAKE_DEVICE no
// backend is installed and libshake passes everything through.
//
// The backend:
//  - at the decision points (Bind, Connect, Listen on an AF_INET stream socket that is still a
//    kernel socket) takes the socket over when the destination is routed through the stack's
//    device: a stack socket, a placeholder dup'd over the fd, the fd recorded in the FdTable;
//    loopback destinations and everything else stay kernel sockets. Listen on INADDR_ANY keeps
//    the kernel listener and adds a stack one (FdKind::kListener); Accept takes from both.
//  - serves calls on stack fds: data calls arrive as msghdr (read, recv, recvfrom, readv, recvmsg
//    are all one Recv; likewise Send); blocking calls sleep in the kernel, never spin.
//  - keeps socket lifetime across dup/fork/exec: Retain/Release count fd references in the
//    shared arena; a child's Release of an inherited socket never sends FIN or RST unless it was
//    the last reference anywhere.
// TCP itself stays in stack/: nothing here parses or builds a segment.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "shim/config.h"
#include "shim/fd_table.h"

namespace shake::shim {

// A backend's answer: handled (then `value` is what libc would return, errno already set when
// it is -1) or Pass() (the real libc function runs instead).
struct Outcome {
  bool handled = false;
  long value = 0;
  static Outcome Pass() { return {}; }
  static Outcome Done(long v) { return {true, v}; }
};

class StackBackend {
 public:
  virtual ~StackBackend() = default;

  // ---- Decision points: `fd` is a kernel AF_INET stream socket so far ----------------------
  virtual Outcome Bind(int fd, const sockaddr* addr, socklen_t len) = 0;
  virtual Outcome Connect(int fd, const sockaddr* addr, socklen_t len) = 0;
  virtual Outcome Listen(int fd, int backlog) = 0;
  // `ep` is a new epoll instance (epoll_create, epoll_create1): a socket taken over later must
  // stay registered in it.
  virtual void NoteEpoll(int /*ep*/) {}
  // Options set before a decision, recorded for replay onto a stack socket.
  virtual void NoteOption(int fd, int level, int name, const void* value, socklen_t len) = 0;

  // ---- Calls on stack fds (`e` is the fd's table entry) ------------------------------------
  virtual Outcome Accept(FdEntry e, int fd, sockaddr* addr, socklen_t* len, int flags) = 0;
  virtual Outcome Recv(FdEntry e, int fd, msghdr* msg, int flags) = 0;
  virtual Outcome Send(FdEntry e, int fd, const msghdr* msg, int flags) = 0;
  // sendfile/splice with the stack socket as destination: `in_fd` is read with the real libc.
  virtual Outcome SendFile(FdEntry e, int fd, int in_fd, off64_t* offset, size_t count) = 0;
  virtual Outcome Shutdown(FdEntry e, int fd, int how) = 0;
  virtual Outcome GetSockOpt(FdEntry e, int fd, int level, int name, void* v, socklen_t* l) = 0;
  virtual Outcome SetSockOpt(FdEntry e, int fd, int level, int name, const void* v,
                             socklen_t l) = 0;
  virtual Outcome GetSockName(FdEntry e, int fd, sockaddr* addr, socklen_t* len) = 0;
  virtual Outcome GetPeerName(FdEntry e, int fd, sockaddr* addr, socklen_t* len) = 0;
  // FIONREAD, SIOCOUTQ, SIOCINQ; FIONBIO and fcntl flags are the placeholder's own (the kernel
  // keeps O_NONBLOCK per open file description, shared across dup, exactly as for sockets).
  virtual Outcome Ioctl(FdEntry e, int fd, unsigned long request, void* arg) = 0;
  // The file status flags of stack fd `fd` were just set on its placeholder (F_SETFL, FIONBIO):
  // the backend caches O_NONBLOCK, which every data call consults.
  virtual void NoteFlags(FdEntry /*e*/, int /*fd*/) {}

  // ---- References ---------------------------------------------------------------------------
  // `newfd` now refers to the socket too (dup, dup2, dup3, F_DUPFD, F_DUPFD_CLOEXEC).
  virtual void Retain(FdEntry e, int newfd) = 0;
  // One fd reference to the socket went away (close, dup2 over it, close_range, exec of a
  // CLOEXEC fd). The last reference in any process closes the socket as the kernel would.
  virtual void Release(FdEntry e, int fd) = 0;

  // ---- Readiness over mixes of kernel and stack fds ----------------------------------------
  virtual Outcome Poll(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask) = 0;
  virtual Outcome Select(int n, fd_set* r, fd_set* w, fd_set* x, const timespec* timeout,
                         const sigset_t* mask) = 0;
  virtual Outcome EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) = 0;
  // Called for every epoll_wait family call while any stack fd is registered anywhere; Pass()
  // when `ep` watches no stack fd.
  virtual Outcome EpollWait(int ep, epoll_event* events, int max, const timespec* timeout,
                            const sigset_t* mask) = 0;

  // ---- Processes ----------------------------------------------------------------------------
  virtual void PrepareFork() = 0;
  virtual void AfterForkParent() = 0;
  virtual void AfterForkChild() = 0;
  // Before an exec of this process: records the hand-off of its stack sockets (those on fds
  // without FD_CLOEXEC survive into the new image) and returns the environment entry
  // ("SHAKE_HANDOFF=...") the new image must find, or null when there is nothing to hand over.
  // If the exec returns (it failed), the caller calls ExecFailed(), which cancels the hand-off.
  virtual const char* PrepareExec() = 0;
  virtual void ExecFailed() = 0;
  // posix_spawn: the child's references are taken before it runs, as for fork, and its hand-off
  // recorded; returns the entry for the child's environment, or null. `has_file_actions`: the
  // child will rearrange its fds first (not followed: then nothing is handed over). SpawnDone
  // gets the child's pid, or -1 when the spawn failed (its references are released).
  virtual const char* PrepareSpawn(bool has_file_actions) = 0;
  virtual void SpawnDone(pid_t pid) = 0;
};

// The installed backend, or null (pass everything through).
StackBackend* CurrentBackend();
void InstallBackend(StackBackend* backend);

// `b` with the shared arena's exhaustion (std::bad_alloc) mapped to ENOBUFS or ENOMEM at each
// call, as the kernel answers when it has no memory (guarded_backend.cc).
StackBackend* GuardBackend(StackBackend* b);

// Installs the stack-backed backend (attach.cc) for `config`. The stack is joined at the first
// socket routed through the device, or at once when this image was handed sockets across exec.
bool InstallStackBackend(const Config& config);

}  // namespace shake::shim
