// The conversation between a process that uses a stack and the stack's keeper (keeper.cc).
//
// The keeper listens on an AF_UNIX SOCK_SEQPACKET socket in the abstract namespace, named after
// the device ("\0libshake/packet:pa"). Abstract names belong to the network namespace, so every
// program on a device in one namespace finds the same keeper, and no file is left behind.
//
//   process                                    keeper
//   connect ------------------------------->   accept; SO_PEERCRED: same user or root
//   Hello {lib_id, device, addr, resume}  -->
//                                         <--  Welcome {status, arena base/size}
//                                              + SCM_RIGHTS [arena memfd, device fd]
//   (maps the arena, claims a process slot under the stack lock)
//   Claim {slot}                          -->  this connection now stands for the slot
//   Channel                               -->  (before the process first waits for the stack)
//                                         <--  ChannelReply + SCM_RIGHTS [its own channel]
//   ...                                        ...
//   exit, crash or kill: the kernel closes -> HUP: the keeper closes the slot's sockets as
//   the connection                             the kernel closes a dead process's files
//
// `shake stat` connects too, sends LinkStat, and gets the snapshot; it never maps the arena.
//
// The connection is the process's liveness: it is never written to after Claim. A fork child
// gets a connection of its own, made by the parent before the fork (fork.cc); an exec'd image
// keeps its process's connection, which survives the exec (handoff.cc). The keeper never takes
// the stack lock to answer, so a process may talk to it while holding the lock.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace shake::shim {

inline constexpr uint32_t kLinkVersion = 1;

enum class LinkType : uint32_t {
  kHello = 1,
  kWelcome = 2,
  kClaim = 3,
  kStat = 4,
  kStatReply = 5,
  kChannel = 6,
  kChannelReply = 7,
};

struct LinkHello {
  LinkType type = LinkType::kHello;
  uint32_t version = kLinkVersion;
  uint64_t lib_id[4] = {};
  char device[80] = {};
  uint32_t addr = 0;
  int32_t prefix_len = 0;
  uint32_t gateway = 0;
  uint8_t has_gateway = 0;
};

struct LinkWelcome {
  LinkType type = LinkType::kWelcome;
  int32_t status = 0;      // 0, or the errno a socket call reports while the refusal stands
  char message[240] = {};  // the refusal, one line naming the fix
  uint64_t base = 0;       // where the arena must be mapped
  uint64_t size = 0;
};

struct LinkClaim {
  LinkType type = LinkType::kClaim;
  int32_t slot = -1;
  uint32_t generation = 0;  // ProcSlot::generation: a slot reused since is not this one's
};

// The process asks for a channel of the device of its own (a socket of the stack's fanout
// group): the keeper opens it (a process need not hold CAP_NET_RAW: nginx's workers do not),
// keeps a copy, to read it when the process does not and after it is gone, and sends it.
struct LinkChannel {
  LinkType type = LinkType::kChannel;
};

struct LinkChannelReply {
  LinkType type = LinkType::kChannelReply;
  int32_t status = 0;  // 0, with the channel attached; an errno otherwise
};

// `shake stat`: a snapshot of the stack (stat_snapshot.h), as JSON or as text. The keeper
// answers with kStatReply and a memfd holding `size` bytes.
struct LinkStat {
  LinkType type = LinkType::kStat;
  uint32_t version = kLinkVersion;
  uint8_t json = 0;
};

struct LinkStatReply {
  LinkType type = LinkType::kStatReply;
  int32_t status = 0;
  uint64_t size = 0;
};

// "\0libshake/<device>": the keeper's name in the abstract namespace (sun_path, its length
// giving the end).
inline std::string KeeperName(const std::string& device) {
  std::string n(1, '\0');
  n += "libshake/";
  n += device;
  return n;
}

// A connection to the keeper named `name`: close-on-exec, blocking. -1 with errno
// (ECONNREFUSED or ENOENT: no keeper is listening).
int ConnectKeeper(const std::string& name);
// The keeper's listening socket; -1 with errno (EADDRINUSE: another keeper has the name).
int ListenKeeper(const std::string& name);

// One message, with up to 4 descriptors attached. False on failure (errno).
bool SendLink(int fd, const void* msg, size_t len, const int* fds = nullptr, int nfds = 0);
// One message of exactly `len` bytes and the descriptors attached to it (*nfds in: room,
// out: received), waiting at most `timeout_ms`. False on timeout, EOF, a short message or an
// error. Descriptors arrive close-on-exec.
bool RecvLink(int fd, void* msg, size_t len, int* fds, int* nfds, int timeout_ms);

}  // namespace shake::shim
