// Half-open millisecond interval arithmetic for the attendance calculation.
// Pure C++ (no PostgreSQL), int64 milliseconds since the Unix epoch, no floats.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <iosfwd>
#include <vector>

namespace attendance::core {

// Half-open [start_ms, end_ms). An interval with end_ms <= start_ms is empty.
struct Interval {
    int64_t start_ms;
    int64_t end_ms;

    bool operator==(const Interval&) const = default;
};

// Prints "[start_ms, end_ms)"; used by test failure messages.
std::ostream& operator<<(std::ostream& os, const Interval& iv);

// Sorts and merges overlapping AND touching intervals ([a,b) + [b,c) -> [a,c)); drops empty
// and negative-length intervals. The result is sorted, disjoint and non-touching.
std::vector<Interval> union_of(std::vector<Interval> intervals);

// Intersects every interval with `window`, drops the ones that become empty, keeps the
// input order. Throws std::invalid_argument when window.end_ms <= window.start_ms.
std::vector<Interval> clip(const std::vector<Interval>& intervals, Interval window);

// Joins neighbours separated by a gap <= max_gap_ms (the gap counts as presence).
// The input is normalised with union_of first, so any input is accepted; the result never
// extends beyond the outermost input bounds. max_gap_ms == 0 changes nothing (beyond the
// normalisation). Throws std::invalid_argument when max_gap_ms < 0.
std::vector<Interval> merge_gaps(std::vector<Interval> sorted_union, int64_t max_gap_ms);

// Sum of the lengths of the non-empty intervals (no de-duplication: pass a union).
// Throws std::invalid_argument on int64 overflow.
int64_t total_ms(const std::vector<Interval>& intervals);

}  // namespace attendance::core
