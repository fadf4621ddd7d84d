// SipHash-2-4 against the reference vectors of the SipHash paper (key 00..0f, message 00..n-1).
#include "stack/base/siphash.h"

#include <gtest/gtest.h>

#include "tests/stack/wire/test_bytes.h"

namespace shake {
namespace {

using wire::testing::Counting;

SipKey ReferenceKey() {
  SipKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i);
  return k;
}

// vectors_sip64 from the reference implementation's test.c, n = 0..16.
constexpr uint64_t kVectors[] = {
    0x726fdb47dd0e0e31, 0x74f839c593dc67fd, 0x0d6c8009d9a94f5a, 0x85676696d7fb7e2d,
    0xcf2794e0277187b7, 0x18765564cd99a68d, 0xcbc9466e58fee3ce, 0xab0200f58b01d137,
    0x93f5f5799a932462, 0x9e0082df0ba9e4b0, 0x7a5dbbc594ddb9f3, 0xf4b32f46226bada7,
    0x751e8fbc860ee5fb, 0x14ea5627c0843d90, 0xf723ca908e7af2ee, 0xa129ca6149be45e5,
    0x3f2acc7f57c29bdb,
};

TEST(SipHash24, MatchesReferenceVectorsForEveryLengthUpTo16) {
  const SipKey key = ReferenceKey();
  for (size_t n = 0; n < std::size(kVectors); ++n) {
    const auto msg = Counting(n);
    EXPECT_EQ(SipHash24(key, msg), kVectors[n]) << "message length " << n;
  }
}

TEST(SipHash24, PaperAppendixExampleFifteenBytes) {
  const auto msg = Counting(15);
  EXPECT_EQ(SipHash24(ReferenceKey(), msg), 0xa129ca6149be45e5u);
}

TEST(SipHash24, AllZeroKeyEmptyMessage) { EXPECT_EQ(SipHash24(SipKey{}, {}), 0x1e924b9d737700d7u); }

TEST(SipHash24, DifferentKeysGiveDifferentHashes) {
  SipKey other = ReferenceKey();
  other[0] ^= 0xa5;
  const auto msg = Counting(17);
  EXPECT_NE(SipHash24(ReferenceKey(), msg), SipHash24(other, msg));
}

}  // namespace
}  // namespace shake
