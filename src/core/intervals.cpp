#include "core/intervals.hpp"

#include <algorithm>
#include <ostream>
#include <stdexcept>

namespace attendance::core {

std::ostream& operator<<(std::ostream& os, const Interval& iv) {
    return os << '[' << iv.start_ms << ", " << iv.end_ms << ')';
}

std::vector<Interval> union_of(std::vector<Interval> intervals) {
    std::erase_if(intervals, [](const Interval& iv) { return iv.end_ms <= iv.start_ms; });
    std::sort(intervals.begin(), intervals.end(), [](const Interval& a, const Interval& b) {
        return a.start_ms != b.start_ms ? a.start_ms < b.start_ms : a.end_ms < b.end_ms;
    });
    std::vector<Interval> out;
    out.reserve(intervals.size());
    for (const Interval& iv : intervals) {
        if (!out.empty() && iv.start_ms <= out.back().end_ms) {
            out.back().end_ms = std::max(out.back().end_ms, iv.end_ms);
        } else {
            out.push_back(iv);
        }
    }
    return out;
}

std::vector<Interval> clip(const std::vector<Interval>& intervals, Interval window) {
    if (window.end_ms <= window.start_ms) {
        throw std::invalid_argument("clip: window end must be after window start");
    }
    std::vector<Interval> out;
    out.reserve(intervals.size());
    for (const Interval& iv : intervals) {
        const Interval c{std::max(iv.start_ms, window.start_ms),
                         std::min(iv.end_ms, window.end_ms)};
        if (c.end_ms > c.start_ms) {
            out.push_back(c);
        }
    }
    return out;
}

std::vector<Interval> merge_gaps(std::vector<Interval> sorted_union, int64_t max_gap_ms) {
    if (max_gap_ms < 0) {
        throw std::invalid_argument("merge_gaps: max_gap_ms must not be negative");
    }
    std::vector<Interval> in = union_of(std::move(sorted_union));
    if (max_gap_ms == 0 || in.size() < 2) {
        return in;
    }
    std::vector<Interval> out;
    out.reserve(in.size());
    for (const Interval& iv : in) {
        // After union_of the gap is positive; if start - end overflows, the gap exceeds
        // INT64_MAX >= max_gap_ms, so the neighbours are not joined.
        int64_t gap = 0;
        if (!out.empty() && !__builtin_sub_overflow(iv.start_ms, out.back().end_ms, &gap) &&
            gap <= max_gap_ms) {
            out.back().end_ms = iv.end_ms;
        } else {
            out.push_back(iv);
        }
    }
    return out;
}

int64_t total_ms(const std::vector<Interval>& intervals) {
    int64_t total = 0;
    for (const Interval& iv : intervals) {
        if (iv.end_ms <= iv.start_ms) {
            continue;
        }
        int64_t len = 0;
        if (__builtin_sub_overflow(iv.end_ms, iv.start_ms, &len) ||
            __builtin_add_overflow(total, len, &total)) {
            throw std::invalid_argument("total_ms: interval length overflows int64");
        }
    }
    return total;
}

}  // namespace attendance::core
