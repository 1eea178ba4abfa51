#include "common/connection_table.h"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace hylab {
namespace {

using Phase = ConnectionTable::Phase;

struct Conn {
  bool aborted = false;
  std::unique_ptr<ConnectionTable::Registration> reg;
};

std::vector<std::unique_ptr<Conn>> open(ConnectionTable& t, int n) {
  std::vector<std::unique_ptr<Conn>> out;
  for (int i = 0; i < n; ++i) {
    auto c = std::make_unique<Conn>();
    c->reg =
        std::make_unique<ConnectionTable::Registration>(t, [p = c.get()] { p->aborted = true; });
    out.push_back(std::move(c));
  }
  return out;
}

TEST(ConnectionTable, BelowTheCapNothingIsAborted) {
  ConnectionTable t(3);
  auto c = open(t, 2);
  EXPECT_TRUE(t.make_room());
  EXPECT_FALSE(c[0]->aborted);
  EXPECT_FALSE(c[1]->aborted);
  EXPECT_EQ(t.evicted(), 0u);
}

TEST(ConnectionTable, AtTheCapTheLongestWaitingIdleOrReadingConnectionGoes) {
  ConnectionTable t(3);
  auto c = open(t, 3);
  c[0]->reg->set(Phase::kReading);  // started a request after 1 and 2 went idle
  EXPECT_TRUE(t.make_room());
  EXPECT_FALSE(c[0]->aborted);
  EXPECT_TRUE(c[1]->aborted);
  EXPECT_FALSE(c[2]->aborted);
  EXPECT_EQ(t.live(), 2u);
  // An aborted connection is not aborted twice while its session winds down.
  EXPECT_TRUE(t.make_room());
  EXPECT_EQ(t.evicted(), 1u);
  c[1].reset();  // its session ends
  EXPECT_EQ(t.size(), 2u);
  EXPECT_EQ(t.live(), 2u);
}

TEST(ConnectionTable, BusyConnectionsAreNeverAbortedAndTheNewOneWaits) {
  ConnectionTable t(2);
  auto c = open(t, 2);
  int released = 0;
  t.on_release([&] { ++released; });
  c[0]->reg->set(Phase::kBusy);
  c[1]->reg->set(Phase::kBusy);
  EXPECT_FALSE(t.make_room());
  EXPECT_FALSE(c[0]->aborted);
  EXPECT_FALSE(c[1]->aborted);
  c[0].reset();
  EXPECT_EQ(released, 1);
  EXPECT_TRUE(t.make_room());
  EXPECT_FALSE(c[1]->aborted);
}

TEST(ConnectionTable, ManyIdleConnectionsMakeRoomOneAtATime) {
  ConnectionTable t(100);
  auto c = open(t, 100);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(t.make_room());
    auto more = open(t, 1);
    c.push_back(std::move(more[0]));
  }
  int aborted = 0;
  for (int i = 0; i < 150; ++i) aborted += c[static_cast<std::size_t>(i)]->aborted ? 1 : 0;
  EXPECT_EQ(aborted, 50);
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(c[static_cast<std::size_t>(i)]->aborted) << i;
}

}  // namespace
}  // namespace hylab
