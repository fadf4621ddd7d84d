// IPv4 reassembly: order, duplicates, overlaps, malformed fragments, timeout and memory budget.
#include "stack/ip/reassembly.h"

#include <gtest/gtest.h>

#include <memory_resource>

#include "tests/stack/wire/test_bytes.h"

namespace shake {
namespace {

using wire::testing::ByteVec;
using wire::testing::Counting;
using wire::testing::View;

// Forwards to new/delete and keeps a count, so tests can see that every byte came from here.
class CountingResource : public std::pmr::memory_resource {
 public:
  size_t allocations = 0;
  size_t outstanding = 0;

 private:
  void* do_allocate(size_t bytes, size_t align) override {
    ++allocations;
    outstanding += bytes;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, size_t bytes, size_t align) override {
    outstanding -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const memory_resource& o) const noexcept override { return this == &o; }
};

constexpr Instant T0 = Instant::FromNanos(1'000'000'000);

class ReassemblyTest : public ::testing::Test {
 protected:
  // Any allocation from the default resource would throw: memory must come from `mem_`.
  void SetUp() override {
    saved_ = std::pmr::set_default_resource(std::pmr::null_memory_resource());
  }
  void TearDown() override { std::pmr::set_default_resource(saved_); }

  Reassembler& R() {
    if (!r_) r_.emplace(&mem_, limits_, &counters_);
    return *r_;
  }

  // A fragment of datagram `ident` carrying bytes [offset, offset+len) of a counting pattern.
  std::optional<Reassembler::Datagram> Frag(uint16_t offset, size_t len, bool more,
                                            uint16_t ident = 7, Instant now = T0,
                                            Ipv4Addr src = Ipv4Addr(198, 18, 0, 1)) {
    wire::Ipv4Header h;
    h.ident = ident;
    h.protocol = wire::kProtoTcp;
    h.src = src;
    h.dst = Ipv4Addr(198, 18, 0, 2);
    h.frag_offset = offset;
    h.more_fragments = more;
    h.ttl = offset == 0 ? 99 : 1;  // to see whose header the datagram gets
    h.total_len = static_cast<uint16_t>(20 + len);
    payloads_.push_back(Counting(len, offset));
    return R().Add(now, h, View(payloads_.back()));
  }

  uint64_t Dropped(Drop d) const { return counters_.dropped(d); }

  CountingResource mem_;
  ReassemblyLimits limits_;
  Counters counters_;
  std::optional<Reassembler> r_;
  std::pmr::memory_resource* saved_ = nullptr;
  std::vector<ByteVec> payloads_;  // outlive the calls that use them
};

void ExpectWhole(const std::optional<Reassembler::Datagram>& d, size_t len) {
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->header.total_len, 20 + len);
  EXPECT_EQ(d->header.header_len, 20);
  EXPECT_FALSE(d->header.is_fragment());
  EXPECT_EQ(d->header.ttl, 99) << "header should be the offset-0 fragment's";
  EXPECT_EQ(d->header.ident, 7);
  const ByteVec want = Counting(len);
  ASSERT_EQ(d->payload.size(), len);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), d->payload.begin()));
}

TEST_F(ReassemblyTest, InOrder) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_FALSE(Frag(16, 16, true));
  EXPECT_EQ(R().bytes_in_use(), 32u);
  ExpectWhole(Frag(32, 5, false), 37);
  EXPECT_EQ(counters_.ip_reassembled, 1u);
  EXPECT_EQ(counters_.total_drops(), 0u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
  EXPECT_TRUE(R().NextDeadline().is_never());
}

TEST_F(ReassemblyTest, OutOfOrderLastFirst) {
  EXPECT_FALSE(Frag(32, 5, false));
  EXPECT_FALSE(Frag(16, 16, true));
  ExpectWhole(Frag(0, 16, true), 37);
}

TEST_F(ReassemblyTest, OutOfOrderFirstFragmentLast) {
  EXPECT_FALSE(Frag(16, 16, true));
  EXPECT_FALSE(Frag(32, 8, false));
  ExpectWhole(Frag(0, 16, true), 40);
}

TEST_F(ReassemblyTest, ExactDuplicateIsIgnored) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_FALSE(Frag(0, 16, true));
  ExpectWhole(Frag(16, 8, false), 24);
  EXPECT_EQ(counters_.ip_reassembled, 1u);
  EXPECT_EQ(counters_.total_drops(), 0u);
}

TEST_F(ReassemblyTest, DuplicateFinalFragmentThenCompletion) {
  EXPECT_FALSE(Frag(16, 8, false));
  EXPECT_FALSE(Frag(16, 8, false));
  ExpectWhole(Frag(0, 16, true), 24);
  EXPECT_EQ(counters_.total_drops(), 0u);
}

TEST_F(ReassemblyTest, SameRangeDifferentBytesIsOverlap) {
  EXPECT_FALSE(Frag(0, 16, true));
  wire::Ipv4Header h;
  h.ident = 7;
  h.protocol = wire::kProtoTcp;
  h.src = Ipv4Addr(198, 18, 0, 1);
  h.dst = Ipv4Addr(198, 18, 0, 2);
  h.more_fragments = true;
  const ByteVec other(16, std::byte{0xee});
  EXPECT_FALSE(R().Add(T0, h, View(other)));
  EXPECT_EQ(Dropped(Drop::kFragmentOverlap), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
}

TEST_F(ReassemblyTest, PartialOverlapDiscardsWholeDatagram) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_FALSE(Frag(8, 16, true));
  EXPECT_EQ(Dropped(Drop::kFragmentOverlap), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
  // The rest of the old datagram starts a new one, which can never complete with the first part.
  EXPECT_FALSE(Frag(24, 8, false));
  EXPECT_EQ(counters_.ip_reassembled, 0u);
}

TEST_F(ReassemblyTest, FragmentInsideAnotherIsOverlap) {
  EXPECT_FALSE(Frag(0, 32, true));
  EXPECT_FALSE(Frag(8, 8, true));
  EXPECT_EQ(Dropped(Drop::kFragmentOverlap), 1u);
}

TEST_F(ReassemblyTest, TinyNonFinalFragmentIsBad) {
  limits_.min_fragment_payload = 64;
  EXPECT_FALSE(Frag(0, 56, true));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
  // A short final fragment is normal.
  EXPECT_FALSE(Frag(64, 3, false));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
}

TEST_F(ReassemblyTest, EmptyNonFinalFragmentIsBad) {
  limits_.min_fragment_payload = 0;
  EXPECT_FALSE(Frag(8, 0, true));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
}

TEST_F(ReassemblyTest, NonFinalFragmentNotMultipleOf8IsBad) {
  EXPECT_FALSE(Frag(0, 20, true));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
}

TEST_F(ReassemblyTest, FragmentEndingPast65515DiscardsDatagram) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_FALSE(Frag(65512, 8, false));  // ends at 65520
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
}

TEST_F(ReassemblyTest, LargestDatagramCompletes) {
  limits_.max_bytes = 1 << 17;
  for (uint32_t off = 0; off < 65515; off += 1480) {
    const bool last = off + 1480 >= 65515;
    const size_t len = last ? 65515u - off : 1480u;
    auto d = Frag(static_cast<uint16_t>(off), len, !last);
    if (last) {
      ASSERT_TRUE(d.has_value());
      EXPECT_EQ(d->header.total_len, 65535);
    } else {
      ASSERT_FALSE(d.has_value());
    }
  }
  EXPECT_EQ(counters_.ip_reassembled, 1u);
}

TEST_F(ReassemblyTest, TwoFinalFragmentsDisagreeingOnLengthDiscard) {
  EXPECT_FALSE(Frag(16, 8, false));
  EXPECT_FALSE(Frag(24, 8, false));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
}

TEST_F(ReassemblyTest, DataBeyondFinalLengthDiscards) {
  EXPECT_FALSE(Frag(16, 8, false));
  EXPECT_FALSE(Frag(24, 8, true));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 1u);

  EXPECT_FALSE(Frag(32, 8, true, /*ident=*/8));
  EXPECT_FALSE(Frag(16, 8, false, /*ident=*/8));
  EXPECT_EQ(Dropped(Drop::kFragmentBad), 2u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
}

TEST_F(ReassemblyTest, DatagramsAreKeyedBySourceAndIdent) {
  EXPECT_FALSE(Frag(0, 16, true, 7));
  EXPECT_FALSE(Frag(0, 16, true, 8));
  EXPECT_FALSE(Frag(16, 4, false, 7, T0, Ipv4Addr(198, 18, 0, 9)));
  EXPECT_EQ(counters_.ip_reassembled, 0u);
  ExpectWhole(Frag(16, 4, false, 7), 20);
  EXPECT_EQ(counters_.total_drops(), 0u);
}

TEST_F(ReassemblyTest, TimeoutDiscardsAndCounts) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_EQ(R().NextDeadline(), T0 + limits_.timeout);
  R().Expire(T0 + limits_.timeout - Duration::Nanos(1));
  EXPECT_EQ(Dropped(Drop::kFragmentTimeout), 0u);
  R().Expire(T0 + limits_.timeout);
  EXPECT_EQ(Dropped(Drop::kFragmentTimeout), 1u);
  EXPECT_EQ(R().bytes_in_use(), 0u);
  EXPECT_TRUE(R().NextDeadline().is_never());
}

TEST_F(ReassemblyTest, NextDeadlineIsTheEarliest) {
  EXPECT_FALSE(Frag(0, 16, true, 1, T0 + Duration::Seconds(5)));
  EXPECT_FALSE(Frag(0, 16, true, 2, T0));
  EXPECT_EQ(R().NextDeadline(), T0 + limits_.timeout);
}

TEST_F(ReassemblyTest, LateFragmentAfterTimeoutStartsOver) {
  EXPECT_FALSE(Frag(0, 16, true));
  EXPECT_FALSE(Frag(16, 8, false, 7, T0 + Duration::Seconds(31)));
  EXPECT_EQ(Dropped(Drop::kFragmentTimeout), 1u);
  EXPECT_EQ(counters_.ip_reassembled, 0u);
}

TEST_F(ReassemblyTest, ByteBudgetDropsTheDatagramThatWouldExceedIt) {
  limits_.max_bytes = 32;
  EXPECT_FALSE(Frag(0, 16, true, 1));
  EXPECT_FALSE(Frag(0, 16, true, 2));
  EXPECT_FALSE(Frag(0, 8, true, 3));
  EXPECT_EQ(Dropped(Drop::kFragmentTooMany), 1u);
  EXPECT_EQ(R().bytes_in_use(), 32u);
  // A fragment of datagram 2 over budget discards datagram 2, freeing its bytes.
  EXPECT_FALSE(Frag(16, 8, true, 2));
  EXPECT_EQ(Dropped(Drop::kFragmentTooMany), 2u);
  EXPECT_EQ(R().bytes_in_use(), 16u);
}

TEST_F(ReassemblyTest, DatagramCountLimitRefusesNewDatagrams) {
  limits_.max_datagrams = 2;
  EXPECT_FALSE(Frag(0, 16, true, 1));
  EXPECT_FALSE(Frag(0, 16, true, 2));
  EXPECT_FALSE(Frag(0, 16, true, 3));
  EXPECT_EQ(Dropped(Drop::kFragmentTooMany), 1u);
  // Datagrams already in progress still complete.
  EXPECT_TRUE(Frag(16, 1, false, 1));
  EXPECT_TRUE(Frag(16, 1, false, 2));
}

TEST_F(ReassemblyTest, AllMemoryComesFromTheGivenResourceAndIsReturned) {
  EXPECT_FALSE(Frag(16, 16, true));
  EXPECT_FALSE(Frag(0, 16, true, /*ident=*/9));
  EXPECT_FALSE(Frag(32, 4, false));
  ExpectWhole(Frag(0, 16, true), 36);
  EXPECT_GT(mem_.allocations, 0u);
  r_.reset();
  EXPECT_EQ(mem_.outstanding, 0u);
}

}  // namespace
}  // namespace shake
