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

TEST(Reconcile, ALoggedRoomFinishedClosesWhateverTheClock) {
    // Stamped ahead of the database's clock (clock skew, a re-timed replay): still the close.
    auto c = reconcile_close(OpenConnection{1000, 50'000, std::nullopt}, 10'000, 6 * kHour);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->leave_ms, 50'000);
    EXPECT_EQ(c->because, "room_finished");
}

TEST(Reconcile, ACloseNeverMovesOnceTheSessionIsOver) {
    // room_finished 40 s after the scheduled end: the close made just after the end is the
    // one made any time later (the stored connections and explain agree).
    const OpenConnection open{1000, 9'040'000, 9'000'000};
    auto first = reconcile_close(open, 9'003'000, 6 * kHour);
    ASSERT_TRUE(first);
    for (int64_t now :
         std::initializer_list<int64_t>{9'039'999, 9'040'000, 9'100'000, 30 * kHour}) {
        auto later = reconcile_close(open, now, 6 * kHour);
        ASSERT_TRUE(later);
        EXPECT_EQ(later->leave_ms, first->leave_ms) << "now " << now;
        EXPECT_EQ(later->because, first->because) << "now " << now;
    }
    EXPECT_EQ(first->leave_ms, 9'040'000);
}
