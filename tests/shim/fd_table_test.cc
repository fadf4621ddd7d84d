// Unit tests for shim/fd_table: entries, counting, ranges, fork copy semantics, placeholders.
#include "shim/fd_table.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <vector>

namespace shake::shim {
namespace {

TEST(FdTable, EmptyUntilSet) {
  FdTable t;
  ASSERT_TRUE(t.Init(1024));
  EXPECT_EQ(t.capacity(), 1024u);
  EXPECT_FALSE(t.any());
  EXPECT_EQ(t.Get(5), FdEntry{});
  EXPECT_EQ(t.Get(-1), FdEntry{});
  EXPECT_EQ(t.Get(1 << 20), FdEntry{});
}

TEST(FdTable, SetGetTakeAndCount) {
  FdTable t;
  ASSERT_TRUE(t.Init(64));
  EXPECT_TRUE(t.Set(3, {FdKind::kStack, 17}));
  EXPECT_TRUE(t.Set(9, {FdKind::kListener, 18}));
  EXPECT_TRUE(t.any());
  EXPECT_EQ(t.count(), 2u);
  EXPECT_EQ(t.Get(3), (FdEntry{FdKind::kStack, 17}));
  EXPECT_TRUE(t.Set(3, {FdKind::kStack, 19}));  // replacing keeps the count
  EXPECT_EQ(t.count(), 2u);
  EXPECT_EQ(t.Take(3), (FdEntry{FdKind::kStack, 19}));
  EXPECT_EQ(t.Take(3), FdEntry{});
  EXPECT_EQ(t.count(), 1u);
  EXPECT_TRUE(t.Set(9, FdEntry{}));
  EXPECT_FALSE(t.any());
}

TEST(FdTable, OutOfRangeIsRefused) {
  FdTable t;
  ASSERT_TRUE(t.Init(8));
  EXPECT_FALSE(t.Set(8, {FdKind::kStack, 1}));
  EXPECT_FALSE(t.Set(-1, {FdKind::kStack, 1}));
  EXPECT_FALSE(t.any());
}

TEST(FdTable, ForEachVisitsTheRangeOnly) {
  FdTable t;
  ASSERT_TRUE(t.Init(128));
  for (int fd : {2, 10, 11, 100}) t.Set(fd, {FdKind::kStack, static_cast<uint32_t>(fd)});
  std::vector<int> seen;
  t.ForEach(10, 99, [&](int fd, FdEntry e) {
    seen.push_back(fd);
    EXPECT_EQ(e.socket, static_cast<uint32_t>(fd));
  });
  EXPECT_EQ(seen, (std::vector<int>{10, 11}));
  seen.clear();
  t.ForEach(0, ~0u, [&](int fd, FdEntry) { seen.push_back(fd); });
  EXPECT_EQ(seen, (std::vector<int>{2, 10, 11, 100}));
}

TEST(FdTable, DefaultCapacityFollowsRlimitNofile) {
  FdTable t;
  ASSERT_TRUE(t.Init());
  EXPECT_GE(t.capacity(), 1024u);
  EXPECT_LE(t.capacity(), FdTable::kMaxCapacity);
}

TEST(FdTable, ForkGivesTheChildAPrivateCopy) {
  FdTable t;
  ASSERT_TRUE(t.Init(64));
  t.Set(4, {FdKind::kStack, 1});
  pid_t pid = fork();
  if (pid == 0) {
    bool ok = t.Get(4) == FdEntry{FdKind::kStack, 1};
    t.Take(4);
    t.Set(5, {FdKind::kStack, 2});
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(t.Get(4), (FdEntry{FdKind::kStack, 1}));
  EXPECT_EQ(t.Get(5), FdEntry{});
}

TEST(Placeholder, IsANonblockingEventfdThatStartsWritableOnly) {
  int fd = ReservePlaceholder(true);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(fcntl(fd, F_GETFD), FD_CLOEXEC);
  EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  pollfd p{fd, POLLIN | POLLOUT, 0};
  ASSERT_EQ(poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLOUT);
  // Readable only: the counter at its maximum.
  uint64_t v = 0xfffffffffffffffeull;
  ASSERT_EQ(write(fd, &v, 8), 8);
  ASSERT_EQ(poll(&p, 1, 0), 1);
  EXPECT_EQ(p.revents, POLLIN);
  close(fd);
  int keep = ReservePlaceholder(false);
  EXPECT_EQ(fcntl(keep, F_GETFD), 0);
  close(keep);
}

}  // namespace
}  // namespace shake::shim
