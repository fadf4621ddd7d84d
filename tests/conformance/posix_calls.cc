#include "tests/conformance/posix_calls.h"

#include <arpa/inet.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace conformance {
namespace {

sockaddr_in Sockaddr(uint32_t addr, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(addr);
  return sa;
}

CallResult FromRet(int64_t ret) {
  CallResult r;
  r.ret = ret;
  if (ret < 0) {
    r.ret = -1;
    r.err = errno;
  }
  return r;
}

}  // namespace

CallResult ExecutePosix(const Call& c) {
  switch (c.op) {
    case Op::kSocket:
      return FromRet(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
    case Op::kBind: {
      sockaddr_in sa = Sockaddr(c.addr, c.port);
      return FromRet(bind(c.handle, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
    }
    case Op::kListen: return FromRet(listen(c.handle, c.arg));
    case Op::kAccept:
      return FromRet(accept4(c.handle, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    case Op::kConnect: {
      sockaddr_in sa = Sockaddr(c.addr, c.port);
      return FromRet(connect(c.handle, reinterpret_cast<sockaddr*>(&sa), sizeof sa));
    }
    case Op::kRead: {
      std::vector<char> buf(c.len);
      return FromRet(recv(c.handle, buf.data(), buf.size(), c.flags | MSG_DONTWAIT));
    }
    case Op::kWrite: {
      std::vector<char> buf(c.len, 'x');
      if (c.port != 0) {
        sockaddr_in sa = Sockaddr(c.addr, c.port);
        return FromRet(sendto(c.handle, buf.data(), buf.size(), c.flags | MSG_DONTWAIT | MSG_NOSIGNAL,
                              reinterpret_cast<sockaddr*>(&sa), sizeof sa));
      }
      return FromRet(send(c.handle, buf.data(), buf.size(), c.flags | MSG_DONTWAIT | MSG_NOSIGNAL));
    }
    case Op::kClose: return FromRet(close(c.handle));
    case Op::kShutdown: return FromRet(shutdown(c.handle, c.arg));
    case Op::kSetsockopt: {
      if (!c.text.empty()) {
        return FromRet(setsockopt(c.handle, c.arg, c.optname, c.text.data(),
                                  static_cast<socklen_t>(c.text.size())));
      }
      if (c.arg == SOL_SOCKET && c.optname == SO_LINGER) {
        linger l{static_cast<int>(c.value), static_cast<int>(c.value2)};
        return FromRet(setsockopt(c.handle, c.arg, c.optname, &l, sizeof l));
      }
      int v = static_cast<int>(c.value);
      return FromRet(setsockopt(c.handle, c.arg, c.optname, &v, sizeof v));
    }
    case Op::kGetsockopt: {
      if (c.arg == SOL_SOCKET && c.optname == SO_LINGER) {
        linger l{};
        socklen_t len = sizeof l;
        CallResult r = FromRet(getsockopt(c.handle, c.arg, c.optname, &l, &len));
        r.value = l.l_onoff;
        r.value2 = l.l_linger;
        return r;
      }
      int v = 0;
      socklen_t len = sizeof v;
      CallResult r = FromRet(getsockopt(c.handle, c.arg, c.optname, &v, &len));
      r.value = v;
      return r;
    }
    case Op::kPoll: {
      std::vector<pollfd> fds;
      for (const PollEntry& e : c.poll) fds.push_back({e.handle, e.events, 0});
      CallResult r = FromRet(poll(fds.data(), fds.size(), 0));
      r.poll = c.poll;
      for (size_t i = 0; i < fds.size(); ++i) r.poll[i].revents = fds[i].revents;
      return r;
    }
    case Op::kIoctl: {
      int v = 0;
      CallResult r = FromRet(ioctl(c.handle, static_cast<unsigned long>(c.arg), &v));
      r.value = v;
      return r;
    }
    case Op::kTcpInfo: {
      tcp_info ti{};
      socklen_t len = sizeof ti;
      CallResult r = FromRet(getsockopt(c.handle, IPPROTO_TCP, TCP_INFO, &ti, &len));
      if (r.ret != 0) return r;
#define SHAKE_TI(f) r.info[#f] = static_cast<int64_t>(ti.f)
      SHAKE_TI(tcpi_state); SHAKE_TI(tcpi_ca_state); SHAKE_TI(tcpi_retransmits);
      SHAKE_TI(tcpi_probes); SHAKE_TI(tcpi_backoff); SHAKE_TI(tcpi_options);
      SHAKE_TI(tcpi_rto); SHAKE_TI(tcpi_ato); SHAKE_TI(tcpi_snd_mss); SHAKE_TI(tcpi_rcv_mss);
      SHAKE_TI(tcpi_unacked); SHAKE_TI(tcpi_sacked); SHAKE_TI(tcpi_lost);
      SHAKE_TI(tcpi_retrans); SHAKE_TI(tcpi_fackets); SHAKE_TI(tcpi_last_data_sent);
      SHAKE_TI(tcpi_last_ack_sent); SHAKE_TI(tcpi_last_data_recv); SHAKE_TI(tcpi_last_ack_recv);
      SHAKE_TI(tcpi_pmtu); SHAKE_TI(tcpi_rcv_ssthresh); SHAKE_TI(tcpi_rtt); SHAKE_TI(tcpi_rttvar);
      SHAKE_TI(tcpi_snd_ssthresh); SHAKE_TI(tcpi_snd_cwnd); SHAKE_TI(tcpi_advmss);
      SHAKE_TI(tcpi_reordering); SHAKE_TI(tcpi_rcv_rtt); SHAKE_TI(tcpi_rcv_space);
      SHAKE_TI(tcpi_total_retrans); SHAKE_TI(tcpi_pacing_rate); SHAKE_TI(tcpi_max_pacing_rate);
      SHAKE_TI(tcpi_bytes_acked); SHAKE_TI(tcpi_bytes_received); SHAKE_TI(tcpi_segs_out);
      SHAKE_TI(tcpi_segs_in); SHAKE_TI(tcpi_notsent_bytes); SHAKE_TI(tcpi_min_rtt);
      SHAKE_TI(tcpi_data_segs_in); SHAKE_TI(tcpi_data_segs_out); SHAKE_TI(tcpi_delivery_rate);
      SHAKE_TI(tcpi_busy_time); SHAKE_TI(tcpi_rwnd_limited); SHAKE_TI(tcpi_sndbuf_limited);
      SHAKE_TI(tcpi_delivered); SHAKE_TI(tcpi_delivered_ce); SHAKE_TI(tcpi_bytes_sent);
      SHAKE_TI(tcpi_bytes_retrans); SHAKE_TI(tcpi_dsack_dups); SHAKE_TI(tcpi_reord_seen);
      SHAKE_TI(tcpi_rcv_ooopack); SHAKE_TI(tcpi_snd_wnd);
#undef SHAKE_TI
      r.info["tcpi_snd_wscale"] = ti.tcpi_snd_wscale;
      r.info["tcpi_rcv_wscale"] = ti.tcpi_rcv_wscale;
      return r;
    }
    case Op::kEpollCreate: return FromRet(epoll_create1(EPOLL_CLOEXEC));
    case Op::kEpollCtl: {
      epoll_event ev{};
      ev.events = static_cast<uint32_t>(c.flags);
      ev.data.fd = static_cast<int>(c.value);
      return FromRet(epoll_ctl(c.handle, c.arg, static_cast<int>(c.value), &ev));
    }
    case Op::kEpollWait: {
      std::vector<epoll_event> evs(c.len == 0 ? 1 : c.len);
      CallResult r = FromRet(epoll_wait(c.handle, evs.data(), static_cast<int>(evs.size()), 0));
      for (int64_t i = 0; i < r.ret; ++i) {
        const epoll_event& e = evs[static_cast<size_t>(i)];
        r.poll.push_back({e.data.fd, static_cast<int16_t>(e.events & 0xffff), static_cast<int16_t>(e.events & 0xffff)});
      }
      return r;
    }
  }
  CallResult r;
  r.ret = -1;
  r.err = ENOSYS;
  return r;
}

}  // namespace conformance
