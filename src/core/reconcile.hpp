// When to close a connection whose leave never came: reconciliation's rule, a part of the
// derivation (docs/architecture.md, "The derivation").
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <optional>
#include <string>

namespace attendance::core {

struct OpenConnection {
    int64_t join_ms;
    std::optional<int64_t> room_finished_ms;  // the room's room_finished, if any
    std::optional<int64_t> scheduled_end_ms;  // the session's scheduled end, if matched
};

struct Closing {
    int64_t leave_ms;
    std::string because;  // "room_finished" | "scheduled_end" | "max_connection_age"
};

// The synthetic leave for an open connection at `now_ms`, or nothing while it may
// still be genuinely open: at room_finished when a room_finished after the join is
// logged (whatever `now_ms` is); else at the scheduled end once the session is over;
// else after max_age_ms. Once `now_ms` is past the scheduled end the answer no longer
// depends on it, so a close never moves as time passes (docs/decisions.md).
std::optional<Closing> reconcile_close(const OpenConnection& c, int64_t now_ms, int64_t max_age_ms);

}  // namespace attendance::core
