// The Internet checksum against a naive RFC 1071 reference, including spans split at odd points.
#include "stack/wire/checksum.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::View;

// RFC 1071 section 4.1, one 16-bit big-endian word at a time, odd byte padded with zero.
uint16_t NaiveChecksum(const ByteVec& d) {
  uint32_t sum = 0;
  for (size_t i = 0; i < d.size(); i += 2) {
    uint32_t word = static_cast<uint32_t>(d[i]) << 8;
    if (i + 1 < d.size()) word |= static_cast<uint32_t>(d[i + 1]);
    sum += word;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum & 0xffff);
}

ByteVec RandomBytes(std::mt19937& rng, size_t n) {
  ByteVec v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
  return v;
}

TEST(Checksum, Rfc1071WorkedExample) {
  // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
  EXPECT_EQ(InternetChecksum(View(B({0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}))),
            static_cast<uint16_t>(~0xddf2));
}

TEST(Checksum, KnownIpv4HeaderVerifiesToZero) {
  const ByteVec hdr = B({0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                         0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7});
  EXPECT_EQ(InternetChecksum(View(hdr)), 0);
  ByteVec zeroed = hdr;
  zeroed[10] = zeroed[11] = std::byte{0};
  EXPECT_EQ(InternetChecksum(View(zeroed)), 0xb861);
}

TEST(Checksum, EmptyAndAllZeroInputsGiveFfff) {
  EXPECT_EQ(InternetChecksum({}), 0xffff);
  EXPECT_EQ(InternetChecksum(View(ByteVec(37))), 0xffff);
}

TEST(Checksum, AllOnesInputGivesZero) {
  EXPECT_EQ(InternetChecksum(View(ByteVec(64, std::byte{0xff}))), 0);
}

TEST(Checksum, OddLengthPadsLastByteAsHighByte) {
  EXPECT_EQ(InternetChecksum(View(B({0x12}))), static_cast<uint16_t>(~0x1200));
  EXPECT_EQ(InternetChecksum(View(B({0x12, 0x34, 0x56}))),
            static_cast<uint16_t>(~(0x1234 + 0x5600)));
}

TEST(Checksum, MatchesNaiveReferenceOnRandomData) {
  std::mt19937 rng(1071);
  for (int iter = 0; iter < 2000; ++iter) {
    const ByteVec data = RandomBytes(rng, rng() % 1600);
    ASSERT_EQ(InternetChecksum(View(data)), NaiveChecksum(data)) << "length " << data.size();
  }
}

TEST(Checksum, LargeBuffersNearCarryLimits) {
  // 64 KiB of 0xff exercises the end-around carry in every accumulator.
  ByteVec ones(65536, std::byte{0xff});
  ones[3] = std::byte{0xfe};
  EXPECT_EQ(InternetChecksum(View(ones)), NaiveChecksum(ones));
}

TEST(Checksum, RandomSplitPointsIncludingOddSpans) {
  std::mt19937 rng(5722);
  for (int iter = 0; iter < 2000; ++iter) {
    const ByteVec data = RandomBytes(rng, rng() % 300);
    Checksum c;
    size_t pos = 0;
    while (pos < data.size()) {
      const size_t len = std::min<size_t>(data.size() - pos, rng() % 40);
      c.Add(View(data).subspan(pos, len));
      pos += len;
    }
    ASSERT_EQ(c.Finish(), NaiveChecksum(data)) << "length " << data.size();
  }
}

TEST(Checksum, Add16AndAdd32ActLikeBigEndianBytesEvenAfterOddSpan) {
  std::mt19937 rng(9293);
  for (int iter = 0; iter < 500; ++iter) {
    ByteVec all = RandomBytes(rng, rng() % 9);  // possibly odd
    Checksum c;
    c.Add(View(all));
    const uint16_t v16 = static_cast<uint16_t>(rng());
    const uint32_t v32 = static_cast<uint32_t>(rng());
    c.Add16(v16);
    c.Add32(v32);
    const ByteVec tail =
        B({v16 >> 8, v16 & 0xff, static_cast<int>(v32 >> 24), static_cast<int>((v32 >> 16) & 0xff),
           static_cast<int>((v32 >> 8) & 0xff), static_cast<int>(v32 & 0xff)});
    all.insert(all.end(), tail.begin(), tail.end());
    ASSERT_EQ(c.Finish(), NaiveChecksum(all));
  }
}

TEST(Checksum, PseudoHeaderIsSrcDstZeroProtocolLength) {
  Checksum c;
  AddPseudoHeader(c, Ipv4Addr(198, 18, 0, 1), Ipv4Addr(198, 18, 0, 2), 6, 40);
  EXPECT_EQ(c.Finish(), NaiveChecksum(B({198, 18, 0, 1, 198, 18, 0, 2, 0, 6, 0, 40})));
}

}  // namespace
}  // namespace shake::wire
