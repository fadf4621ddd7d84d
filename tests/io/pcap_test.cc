// PcapWriter: files that ReadPcap and tcpdump read back with the frames and times written.
#include "io/pcap.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace shake::io {
namespace {

std::vector<std::byte> Bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int b : v) out.push_back(std::byte(b));
  return out;
}

// An IPv4/ICMP echo request from 198.18.0.1 to 198.18.0.2, valid checksums.
std::vector<std::byte> IcmpEcho() {
  return Bytes({0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00,  //
                0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,                          //
                0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00});
}

struct Collect final : FrameEmitter {
  std::vector<std::vector<std::byte>> frames;
  void Emit(std::span<const std::byte> f, FrameMeta) override { frames.emplace_back(f.begin(), f.end()); }
};

std::string TempPath(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "-" + std::to_string(getpid()) + ".pcap";
}

TEST(PcapWriter, RoundTripsFramesTimesAndLinktype) {
  const std::string path = TempPath("roundtrip");
  std::string error;
  {
    auto w = PcapWriter::Open(path, kLinktypeRaw, &error);
    ASSERT_TRUE(w) << error;
    Collect next;
    const auto f = IcmpEcho();
    w->Process(Instant::FromNanos(1'000'000'000), Direction::kIn, f, {}, next);
    w->Process(Instant::FromNanos(1'000'500'000), Direction::kOut, f, {}, next);
    EXPECT_EQ(next.frames.size(), 2u);  // frames pass through unchanged
    EXPECT_EQ(w->records(), 2u);
  }
  PcapFile file;
  ASSERT_TRUE(ReadPcap(path, &file, &error)) << error;
  EXPECT_EQ(file.linktype, kLinktypeRaw);
  ASSERT_EQ(file.records.size(), 2u);
  EXPECT_EQ(file.records[0].data, IcmpEcho());
  EXPECT_EQ(file.records[0].orig_len, 28u);
  EXPECT_EQ(file.records[1].time_us - file.records[0].time_us, 500);
  std::remove(path.c_str());
}

TEST(PcapWriter, SnaplenTruncatesButKeepsOriginalLength) {
  const std::string path = TempPath("snap");
  std::string error;
  {
    auto w = PcapWriter::Open(path, kLinktypeEthernet, &error, 16);
    ASSERT_TRUE(w) << error;
    w->Write(Instant::FromNanos(5), std::vector<std::byte>(100, std::byte{0xab}));
  }
  PcapFile file;
  ASSERT_TRUE(ReadPcap(path, &file, &error)) << error;
  EXPECT_EQ(file.linktype, kLinktypeEthernet);
  ASSERT_EQ(file.records.size(), 1u);
  EXPECT_EQ(file.records[0].data.size(), 16u);
  EXPECT_EQ(file.records[0].orig_len, 100u);
  std::remove(path.c_str());
}

TEST(PcapWriter, TcpdumpReadsTheFile) {
  if (std::system("command -v tcpdump >/dev/null 2>&1") != 0) GTEST_SKIP() << "no tcpdump";
  const std::string path = TempPath("tcpdump");
  std::string error;
  {
    auto w = PcapWriter::Open(path, kLinktypeRaw, &error);
    ASSERT_TRUE(w) << error;
    w->Write(Instant::FromNanos(1), IcmpEcho());
  }
  const std::string cmd = "tcpdump -nn -r " + path + " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_TRUE(p);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  EXPECT_EQ(pclose(p), 0);
  EXPECT_NE(out.find("198.18.0.1 > 198.18.0.2: ICMP echo request"), std::string::npos) << out;
  std::remove(path.c_str());
}

TEST(PcapReader, RejectsGarbage) {
  const std::string path = TempPath("garbage");
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fputs("not a pcap file at all....", f);
  std::fclose(f);
  PcapFile file;
  std::string error;
  EXPECT_FALSE(ReadPcap(path, &file, &error));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace shake::io
