// The backend as interpose.cc calls it, with the shared arena's exhaustion mapped to the errno
// the kernel gives when it has no memory, instead of a std::bad_alloc that nothing would catch
// (interpose.cc's functions are called from C: an exception there aborts the program).
//
// SHAKE_MEM_MAX keeps the connections' data well inside the arena, so this is the last line:
// control blocks and tables of a stack that has somehow filled its 16 GiB. The kernel's
// answers: socket creation, connect and accept fail with ENOBUFS (sock_alloc, sk_alloc), a
// send with ENOBUFS (sock_alloc_send_skb), anything else with ENOMEM. A call that does not
// return a value (a close, a reference) carries on: its work is left for the next one.
#include <errno.h>

#include <new>

#include "shim/backend.h"
#include "shim/log.h"

namespace shake::shim {

namespace {

void Note() {
  static bool said = false;
  if (said) return;
  said = true;
  Log(LogLevel::kError,
      "the stack's shared arena is exhausted; calls fail with ENOBUFS or ENOMEM (lower "
      "SHAKE_MEM_MAX or SHAKE_MAX_SOCKETS)");
}

template <class F>
Outcome Guard(int err, F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    Note();
    errno = err;
    return Outcome::Done(-1);
  }
}

template <class F>
void GuardVoid(F&& f) {
  try {
    f();
  } catch (const std::bad_alloc&) {
    Note();
  }
}

class GuardedBackend final : public StackBackend {
 public:
  explicit GuardedBackend(StackBackend* b) : b_(b) {}

  Outcome Bind(int fd, const sockaddr* a, socklen_t l) override {
    return Guard(ENOBUFS, [&] { return b_->Bind(fd, a, l); });
  }
  Outcome Connect(int fd, const sockaddr* a, socklen_t l) override {
    return Guard(ENOBUFS, [&] { return b_->Connect(fd, a, l); });
  }
  Outcome Listen(int fd, int backlog) override {
    return Guard(ENOBUFS, [&] { return b_->Listen(fd, backlog); });
  }
  void NoteEpoll(int ep) override { GuardVoid([&] { b_->NoteEpoll(ep); }); }
  void NoteOption(int fd, int level, int name, const void* v, socklen_t l) override {
    GuardVoid([&] { b_->NoteOption(fd, level, name, v, l); });
  }
  Outcome Accept(FdEntry e, int fd, sockaddr* a, socklen_t* l, int flags) override {
    return Guard(ENOBUFS, [&] { return b_->Accept(e, fd, a, l, flags); });
  }
  Outcome Recv(FdEntry e, int fd, msghdr* m, int flags) override {
    return Guard(ENOMEM, [&] { return b_->Recv(e, fd, m, flags); });
  }
  Outcome Send(FdEntry e, int fd, const msghdr* m, int flags) override {
    return Guard(ENOBUFS, [&] { return b_->Send(e, fd, m, flags); });
  }
  Outcome SendFile(FdEntry e, int fd, int in_fd, off64_t* off, size_t count) override {
    return Guard(ENOBUFS, [&] { return b_->SendFile(e, fd, in_fd, off, count); });
  }
  Outcome Shutdown(FdEntry e, int fd, int how) override {
    return Guard(ENOMEM, [&] { return b_->Shutdown(e, fd, how); });
  }
  Outcome GetSockOpt(FdEntry e, int fd, int level, int name, void* v, socklen_t* l) override {
    return Guard(ENOMEM, [&] { return b_->GetSockOpt(e, fd, level, name, v, l); });
  }
  Outcome SetSockOpt(FdEntry e, int fd, int level, int name, const void* v,
                     socklen_t l) override {
    return Guard(ENOMEM, [&] { return b_->SetSockOpt(e, fd, level, name, v, l); });
  }
  Outcome GetSockName(FdEntry e, int fd, sockaddr* a, socklen_t* l) override {
    return Guard(ENOMEM, [&] { return b_->GetSockName(e, fd, a, l); });
  }
  Outcome GetPeerName(FdEntry e, int fd, sockaddr* a, socklen_t* l) override {
    return Guard(ENOMEM, [&] { return b_->GetPeerName(e, fd, a, l); });
  }
  Outcome Ioctl(FdEntry e, int fd, unsigned long request, void* arg) override {
    return Guard(ENOMEM, [&] { return b_->Ioctl(e, fd, request, arg); });
  }
  void NoteFlags(FdEntry e, int fd) override { GuardVoid([&] { b_->NoteFlags(e, fd); }); }
  void Retain(FdEntry e, int newfd) override { GuardVoid([&] { b_->Retain(e, newfd); }); }
  void Release(FdEntry e, int fd) override { GuardVoid([&] { b_->Release(e, fd); }); }
  Outcome Poll(pollfd* fds, nfds_t n, const timespec* t, const sigset_t* mask) override {
    return Guard(ENOMEM, [&] { return b_->Poll(fds, n, t, mask); });
  }
  Outcome Select(int n, fd_set* r, fd_set* w, fd_set* x, const timespec* t,
                 const sigset_t* mask) override {
    return Guard(ENOMEM, [&] { return b_->Select(n, r, w, x, t, mask); });
  }
  Outcome EpollCtl(int ep, int op, int fd, FdEntry e, epoll_event* ev) override {
    return Guard(ENOMEM, [&] { return b_->EpollCtl(ep, op, fd, e, ev); });
  }
  Outcome EpollWait(int ep, epoll_event* ev, int max, const timespec* t,
                    const sigset_t* mask) override {
    return Guard(ENOMEM, [&] { return b_->EpollWait(ep, ev, max, t, mask); });
  }
  void PrepareFork() override { GuardVoid([&] { b_->PrepareFork(); }); }
  void AfterForkParent() override { GuardVoid([&] { b_->AfterForkParent(); }); }
  void AfterForkChild() override { GuardVoid([&] { b_->AfterForkChild(); }); }
  const char* PrepareExec() override {
    try {
      return b_->PrepareExec();
    } catch (const std::bad_alloc&) {
      Note();
      return nullptr;  // nothing handed over: the new image starts without stack sockets
    }
  }
  void ExecFailed() override { GuardVoid([&] { b_->ExecFailed(); }); }
  const char* PrepareSpawn(bool has_file_actions) override {
    try {
      return b_->PrepareSpawn(has_file_actions);
    } catch (const std::bad_alloc&) {
      Note();
      return nullptr;
    }
  }
  void SpawnDone(pid_t pid) override { GuardVoid([&] { b_->SpawnDone(pid); }); }

 private:
  StackBackend* b_;
};

}  // namespace

StackBackend* GuardBackend(StackBackend* b) { return new GuardedBackend(b); }  // never freed

}  // namespace shake::shim
