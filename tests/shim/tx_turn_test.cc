// TxTurn, the order in which libshake's processes write the batches the stack made: a batch
// waits for the earlier ones that carry one of its flows, never for the others, and a writer
// that died holding its ticket is passed over.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "shim/shared.h"

namespace shake::shim {
namespace {

using Clock = std::chrono::steady_clock;

double MillisSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

TEST(TxTurn, ABatchOfOtherFlowsDoesNotWaitForAnEarlierWriter) {
  auto sh = std::make_unique<Shared>();
  TxTurn a, b;
  a.Take(*sh, uint64_t{1} << 3);
  b.Take(*sh, uint64_t{1} << 4 | uint64_t{1} << 9);
  const auto t = Clock::now();
  b.Await(*sh);  // a has not written: b would wait kTxStallNs if it depended on it
  EXPECT_LT(MillisSince(t), 20.0);
  b.End(*sh);
  a.End(*sh);
}

TEST(TxTurn, ABatchSharingAFlowLeavesAfterTheEarlierOne) {
  auto sh = std::make_unique<Shared>();
  TxTurn a, b;
  a.Take(*sh, uint64_t{1} << 3 | uint64_t{1} << 5);
  b.Take(*sh, uint64_t{1} << 5);
  std::atomic<bool> b_wrote{false};
  std::thread writer([&] {
    b.Await(*sh);
    b_wrote = true;
    b.End(*sh);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(b_wrote) << "b went before a, which made frames of the same flow first";
  const auto t = Clock::now();
  a.End(*sh);
  writer.join();
  EXPECT_TRUE(b_wrote);
  EXPECT_LT(MillisSince(t), 20.0) << "b is woken when a is done, not at its stall limit";
}

TEST(TxTurn, AllFlowsWaitsForEveryEarlierBatchInTicketOrder) {
  auto sh = std::make_unique<Shared>();
  TxTurn a, b, all;
  a.Take(*sh, uint64_t{1} << 1);
  b.Take(*sh, uint64_t{1} << 60);
  all.Take(*sh, ~uint64_t{0});
  std::atomic<int> stage{0};
  std::thread writer([&] {
    all.Await(*sh);
    stage = 3;
    all.End(*sh);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(stage, 0);
  a.End(*sh);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(stage, 0) << "b (bucket 60) is still writing";
  b.End(*sh);
  writer.join();
  EXPECT_EQ(stage, 3);
  // And a batch after it, on any flow, waits for it in turn (it has ended: no wait).
  TxTurn c;
  c.Take(*sh, uint64_t{1} << 1);
  const auto t = Clock::now();
  c.Await(*sh);
  EXPECT_LT(MillisSince(t), 20.0);
  c.End(*sh);
}

TEST(TxTurn, AWriterThatNeverEndsIsPassedOverAfterTheStallLimit) {
  auto sh = std::make_unique<Shared>();
  TxTurn dead, next;
  dead.Take(*sh, uint64_t{1} << 7);  // its process is killed before it writes
  next.Take(*sh, uint64_t{1} << 7);
  const auto t = Clock::now();
  next.Await(*sh);
  const double waited = MillisSince(t);
  EXPECT_GE(waited, static_cast<double>(kTxStallNs) / 1e6);
  EXPECT_LT(waited, 1000.0);
  next.End(*sh);
  // Its own successors do not wait for the dead one: only for the last writer of the flow.
  TxTurn after;
  after.Take(*sh, uint64_t{1} << 7);
  const auto t2 = Clock::now();
  after.Await(*sh);
  EXPECT_LT(MillisSince(t2), 20.0);
  after.End(*sh);
}

}  // namespace
}  // namespace shake::shim
