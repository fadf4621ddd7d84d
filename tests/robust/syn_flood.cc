// syn_flood: a bounded SYN flood for the fault suite. Sends spoofed TCP SYNs from random source
// addresses in SRC_NET/24 and random ports to DST:PORT through a raw socket (IP_HDRINCL), at up
// to RATE per second, for at most SECONDS seconds and COUNT segments, then prints what it sent.
//
//   syn_flood DST PORT SRC_NET RATE SECONDS COUNT      e.g. syn_flood 198.18.50.2 8080 198.18.51.0 60000 5 400000
//
// Every loop is bounded by both the time and the count. Needs CAP_NET_RAW; run it only in a
// namespace of the test's own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/robust/raw_util.h"

using namespace shake::robust;  // the tools' shared pieces (raw_util.h)

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: syn_flood DST PORT SRC_NET RATE SECONDS COUNT\n");
    return 2;
  }
  in_addr dst{}, net{};
  if (inet_pton(AF_INET, argv[1], &dst) != 1 || inet_pton(AF_INET, argv[3], &net) != 1) {
    std::fprintf(stderr, "syn_flood: bad address\n");
    return 2;
  }
  const auto port = static_cast<uint16_t>(std::atoi(argv[2]));
  const double rate = std::atof(argv[4]);
  const double seconds = std::atof(argv[5]);
  const uint64_t count = std::strtoull(argv[6], nullptr, 10);
  if (rate <= 0 || seconds <= 0 || seconds > 600 || count == 0) {
    std::fprintf(stderr, "syn_flood: RATE > 0, 0 < SECONDS <= 600, COUNT > 0\n");
    return 2;
  }
  const int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    std::fprintf(stderr, "syn_flood: raw socket: %s\n", std::strerror(errno));
    return 1;
  }
  g_rng ^= static_cast<uint64_t>(getpid()) << 20 ^ static_cast<uint64_t>(Now() * 1e6);
  const uint32_t netbase = ntohl(net.s_addr) & 0xffffff00u;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr = dst;
  uint8_t pkt[44] = {};  // IPv4 (20) + TCP (20) + MSS option (4)
  const double start = Now();
  uint64_t sent = 0, failed = 0;
  while (sent + failed < count) {
    const double t = Now() - start;
    if (t >= seconds) break;
    if (static_cast<double>(sent + failed) >= rate * t) continue;  // pace: spin until due
    const uint32_t src = netbase | static_cast<uint32_t>(1 + Next() % 254);
    std::memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x45;
    Put16(pkt + 2, sizeof pkt);
    Put16(pkt + 4, static_cast<uint16_t>(Next()));
    pkt[8] = 64;
    pkt[9] = IPPROTO_TCP;
    Put32(pkt + 12, src);
    Put32(pkt + 16, ntohl(dst.s_addr));
    Put16(pkt + 10, Fold(Sum(pkt, 20)));
    uint8_t* tcp = pkt + 20;
    Put16(tcp, static_cast<uint16_t>(1024 + Next() % 60000));
    Put16(tcp + 2, port);
    Put32(tcp + 4, static_cast<uint32_t>(Next()));
    tcp[12] = 6 << 4;  // 24-byte header
    tcp[13] = 0x02;    // SYN
    Put16(tcp + 14, 64240);
    tcp[20] = 2; tcp[21] = 4; Put16(tcp + 22, 1460);  // MSS
    uint8_t pseudo[12];
    std::memcpy(pseudo, pkt + 12, 8);
    pseudo[8] = 0; pseudo[9] = IPPROTO_TCP; Put16(pseudo + 10, 24);
    Put16(tcp + 16, Fold(Sum(tcp, 24, Sum(pseudo, 12))));
    if (sendto(fd, pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == sizeof pkt) {
      ++sent;
    } else {
      ++failed;
    }
  }
  const double took = Now() - start;
  std::printf("syn_flood: sent=%llu failed=%llu seconds=%.2f rate=%.0f/s\n",
              static_cast<unsigned long long>(sent), static_cast<unsigned long long>(failed), took,
              took > 0 ? static_cast<double>(sent) / took : 0.0);
  close(fd);
  return 0;
}
