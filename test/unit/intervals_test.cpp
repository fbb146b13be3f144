#include "core/intervals.hpp"

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

using V = std::vector<Interval>;

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(IntervalsUnion, EmptyInputGivesEmptyResult) {
    EXPECT_EQ(union_of({}), V{});
    EXPECT_EQ(total_ms(union_of({})), 0);
}

TEST(IntervalsUnion, SortsUnsortedDisjointIntervals) {
    EXPECT_EQ(union_of({{50, 60}, {10, 20}, {30, 40}}), (V{{10, 20}, {30, 40}, {50, 60}}));
}

TEST(IntervalsUnion, MergesOverlapping) {
    const V u = union_of({{0, 100}, {50, 150}, {140, 200}});
    EXPECT_EQ(u, (V{{0, 200}}));
    EXPECT_EQ(total_ms(u), 200);
}

TEST(IntervalsUnion, MergesTouching) {
    // [0,10) and [10,20) share no instant but touch: one interval.
    EXPECT_EQ(union_of({{10, 20}, {0, 10}}), (V{{0, 20}}));
}

TEST(IntervalsUnion, KeepsOneMillisecondGap) {
    EXPECT_EQ(union_of({{0, 10}, {11, 20}}), (V{{0, 10}, {11, 20}}));
}

TEST(IntervalsUnion, DropsEmptyAndNegativeIntervals) {
    EXPECT_EQ(union_of({{5, 5}, {10, 3}, {20, 30}, {-7, -7}}), (V{{20, 30}}));
    // A negative interval "inside" a real one must not shorten or split it.
    EXPECT_EQ(union_of({{0, 100}, {80, 20}}), (V{{0, 100}}));
}

TEST(IntervalsUnion, ContainedAndDuplicateIntervalsCountOnce) {
    const V u = union_of({{0, 1000}, {100, 200}, {0, 1000}, {999, 1000}});
    EXPECT_EQ(u, (V{{0, 1000}}));
    EXPECT_EQ(total_ms(u), 1000);
}

TEST(IntervalsUnion, TenThirtySecondFlapsTotalFiveMinutes) {
    V flaps;
    for (int64_t i = 0; i < 10; ++i) {
        flaps.push_back({i * 40000, i * 40000 + 30000});  // 30 s on, 10 s off
    }
    const V u = union_of(flaps);
    EXPECT_EQ(u.size(), 10u);
    EXPECT_EQ(total_ms(u), 300000);
}

TEST(IntervalsClip, InsideWindowUnchanged) {
    EXPECT_EQ(clip({{10, 20}, {30, 40}}, {0, 100}), (V{{10, 20}, {30, 40}}));
}

TEST(IntervalsClip, ClipsBothEdges) {
    const V c = clip({{-50, 30}, {70, 150}}, {0, 100});
    EXPECT_EQ(c, (V{{0, 30}, {70, 100}}));
    EXPECT_EQ(total_ms(c), 60);
    EXPECT_EQ(clip({{-50, 150}}, {0, 100}), (V{{0, 100}}));
}

TEST(IntervalsClip, HalfOpenEdgesDropOutsideIntervals) {
    // [-10,0) ends where the window starts; [100,110) starts where it ends: both outside.
    EXPECT_EQ(clip({{-10, 0}, {100, 110}, {0, 1}, {99, 100}}, {0, 100}), (V{{0, 1}, {99, 100}}));
}

TEST(IntervalsClip, KeepsInputOrderAndDropsEmpty) {
    EXPECT_EQ(clip({{60, 70}, {20, 30}, {40, 40}}, {0, 100}), (V{{60, 70}, {20, 30}}));
}

TEST(IntervalsClip, ThrowsForEmptyOrInvertedWindow) {
    EXPECT_THROW(clip({{0, 10}}, {5, 5}), std::invalid_argument);
    EXPECT_THROW(clip({{0, 10}}, {6, 5}), std::invalid_argument);
}

TEST(IntervalsMergeGaps, ZeroGapChangesNothing) {
    const V in{{0, 30000}, {40000, 70000}, {80000, 110000}};
    EXPECT_EQ(merge_gaps(in, 0), in);
    EXPECT_EQ(total_ms(merge_gaps(in, 0)), 90000);
}

TEST(IntervalsMergeGaps, JoinsGapsUpToAndIncludingTheLimit) {
    const V in{{0, 100}, {110, 200}, {211, 300}};  // gaps 10 and 11
    EXPECT_EQ(merge_gaps(in, 10), (V{{0, 200}, {211, 300}}));
    EXPECT_EQ(total_ms(merge_gaps(in, 10)), 289);
    EXPECT_EQ(merge_gaps(in, 11), (V{{0, 300}}));
    EXPECT_EQ(merge_gaps(in, 9), in);
}

TEST(IntervalsMergeGaps, TenFlapsWithTenSecondGapsBecomeContinuous) {
    V flaps;
    for (int64_t i = 0; i < 10; ++i) {
        flaps.push_back({i * 40000, i * 40000 + 30000});
    }
    const V m = merge_gaps(union_of(flaps), 15000);
    EXPECT_EQ(m, (V{{0, 390000}}));
    EXPECT_EQ(total_ms(m), 390000);  // 10 x 30 s presence + 9 x 10 s filled gaps
}

TEST(IntervalsMergeGaps, NormalisesUnsortedOverlappingInput) {
    EXPECT_EQ(merge_gaps({{50, 60}, {0, 20}, {10, 30}}, 20), (V{{0, 60}}));
    EXPECT_EQ(merge_gaps({{50, 60}, {0, 20}, {10, 30}}, 19), (V{{0, 30}, {50, 60}}));
}

TEST(IntervalsMergeGaps, NegativeGapThrows) {
    EXPECT_THROW(merge_gaps({{0, 1}}, -1), std::invalid_argument);
}

TEST(IntervalsTotal, SumsLengthsAndIgnoresEmpty) {
    EXPECT_EQ(total_ms({{0, 735700}, {735701, 2564701}, {5, 5}, {9, 3}}), 2564700);
}

TEST(IntervalsTotal, OverflowThrows) {
    EXPECT_THROW(total_ms({{kMin, kMax}}), std::invalid_argument);
    EXPECT_THROW(total_ms({{0, kMax}, {0, kMax}}), std::invalid_argument);
    EXPECT_EQ(total_ms({{0, kMax}}), kMax);
}

TEST(IntervalsExtremes, NoOverflowAtInt64Limits) {
    EXPECT_EQ(union_of({{kMin, 0}, {0, kMax}}), (V{{kMin, kMax}}));
    // The gap kMax - kMin overflows int64; it must simply not be merged.
    EXPECT_EQ(merge_gaps({{kMin, kMin + 1}, {kMax - 1, kMax}}, kMax),
              (V{{kMin, kMin + 1}, {kMax - 1, kMax}}));
    EXPECT_EQ(clip({{kMin, kMax}}, {-5, 5}), (V{{-5, 5}}));
}

}  // namespace
}  // namespace attendance::core
