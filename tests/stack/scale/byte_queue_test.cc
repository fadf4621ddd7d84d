// ByteQueue's memory behaviour: nothing held while empty, a small first chunk, growth to large
// chunks without losing bytes, and out-of-order bytes kept across Consume.
#include "stack/tcp/byte_queue.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/stack/scale/scale_net.h"

namespace shake {
namespace {

std::vector<std::byte> Pattern(size_t n, size_t from) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((from + i) * 7 % 251);
  return v;
}

TEST(ByteQueue, EmptyQueueHoldsNoMemory) {
  scale::CountingResource mem;
  ByteQueue q(&mem);
  EXPECT_EQ(mem.in_use(), 0u);
  q.Append(Pattern(100, 0));
  EXPECT_EQ(mem.in_use(), ByteQueue::kSmallChunkSize);
  q.Consume(60);
  EXPECT_EQ(q.size(), 40u);
  q.Consume(40);
  EXPECT_EQ(mem.in_use(), 0u);
}

TEST(ByteQueue, GrowsFromSmallToLargeChunks) {
  scale::CountingResource mem;
  ByteQueue q(&mem);
  q.Append(Pattern(1000, 0));
  q.Consume(300);
  size_t written = 1000, read = 300;
  // Well past several large chunks, reading and writing in odd sizes.
  while (written < 100'000) {
    q.Append(Pattern(1777, written));
    written += 1777;
    std::vector<std::byte> out(1001);
    q.CopyOut(0, out);
    ASSERT_EQ(out, Pattern(1001, read));
    q.Consume(1001);
    read += 1001;
  }
  std::vector<std::byte> rest(q.size());
  q.CopyOut(0, rest);
  EXPECT_EQ(rest, Pattern(written - read, read));
  q.Consume(q.size());
  EXPECT_EQ(mem.in_use(), 0u);
}

TEST(ByteQueue, OutOfOrderBytesSurviveConsume) {
  scale::CountingResource mem;
  ByteQueue q(&mem);
  q.Append(Pattern(10, 0));
  q.WriteAt(5000, Pattern(100, 5000));  // beyond a hole
  q.Consume(10);                         // nothing committed, but bytes beyond remain
  EXPECT_GT(mem.in_use(), 0u);
  q.WriteAt(0, Pattern(4990, 10));       // the hole, relative to the new head
  q.Commit(5090);
  std::vector<std::byte> out(5090);
  q.CopyOut(0, out);
  EXPECT_EQ(out, Pattern(5090, 10));
  q.Consume(5090);
  EXPECT_EQ(mem.in_use(), 0u);
}

TEST(ByteQueue, ClearFreesEverything) {
  scale::CountingResource mem;
  {
    ByteQueue q(&mem);
    q.Append(Pattern(200'000, 0));
    EXPECT_GE(mem.in_use(), 200'000u);
    q.Clear();
    EXPECT_EQ(mem.in_use(), 0u);
    q.Append(Pattern(50'000, 0));
  }
  EXPECT_EQ(mem.in_use(), 0u);
}

}  // namespace
}  // namespace shake
