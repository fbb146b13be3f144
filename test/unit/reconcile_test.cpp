#include "core/reconcile.hpp"

#include <gtest/gtest.h>

using attendance::core::OpenConnection;
using attendance::core::reconcile_close;

namespace {
constexpr int64_t kMin = 60'000;
constexpr int64_t kHour = 60 * kMin;
}  // namespace

TEST(Reconcile, ClosesAtRoomFinished) {
    auto c = reconcile_close(OpenConnection{1000, 5000, 4000}, 10'000, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 5000);
    EXPECT_EQ(c->because, "room_finished");
}

TEST(Reconcile, IgnoresRoomFinishedBeforeTheJoin) {
    // A stale room_finished (the room was reused) does not close a later connection.
    auto c = reconcile_close(OpenConnection{6000, 5000, 9000}, 10'000, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 9000);
    EXPECT_EQ(c->because, "scheduled_end");
}

TEST(Reconcile, ClosesAtScheduledEndOnceOver) {
    auto c = reconcile_close(OpenConnection{1000, std::nullopt, 4000}, 4000, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 4000);
}

TEST(Reconcile, JoinAfterScheduledEndClosesAtTheJoin) {
    auto c = reconcile_close(OpenConnection{5000, std::nullopt, 4000}, 6000, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 5000);
}

TEST(Reconcile, LeavesARunningSessionAlone) {
    EXPECT_FALSE(
        reconcile_close(OpenConnection{1000, std::nullopt, 9 * kHour}, 2 * kHour, 6 * kHour));
}

TEST(Reconcile, ClosesAfterMaximumAgeWhenNothingElseApplies) {
    auto c = reconcile_close(OpenConnection{0, std::nullopt, std::nullopt}, 6 * kHour, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 6 * kHour);
    EXPECT_EQ(c->because, "max_connection_age");
    EXPECT_FALSE(
        reconcile_close(OpenConnection{0, std::nullopt, std::nullopt}, 6 * kHour - 1, 6 * kHour));
}

TEST(Reconcile, RoomFinishedInTheFutureIsNotUsed) {
    EXPECT_FALSE(reconcile_close(OpenConnection{1000, 50'000, std::nullopt}, 10'000, 6 * kHour));
}
