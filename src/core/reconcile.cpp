#include "core/reconcile.hpp"

#include <algorithm>

namespace attendance::core {

std::optional<Closing> reconcile_close(const OpenConnection& c, int64_t now_ms,
                                       int64_t max_age_ms) {
    // A logged room_finished is a fact whatever the clock says: using it only once `now`
    // passed it would move a close already made at the scheduled end when `now` does, and
    // the stored connections would no longer be what the derivation gives.
    if (c.room_finished_ms && *c.room_finished_ms >= c.join_ms)
        return Closing{*c.room_finished_ms, "room_finished"};
    if (c.scheduled_end_ms && now_ms >= *c.scheduled_end_ms)
        return Closing{std::max(c.join_ms, *c.scheduled_end_ms), "scheduled_end"};
    if (max_age_ms > 0 && now_ms - c.join_ms >= max_age_ms)
        return Closing{c.join_ms + max_age_ms, "max_connection_age"};
    return std::nullopt;
}

}  // namespace attendance::core
