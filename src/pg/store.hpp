// The store (docs/architecture.md, "Calculation"): the only writer of the derived tables.
// Each table has one writer here: attendance_sessions (a session's connections),
// meeting_attendances (one upsert with one merge rule for live rows and results, and one
// audited way to remove a row), and the schedule's derived columns. The fold and the
// calculations both write through it what core::outcome_of gave for what load_batch read.
#pragma once

#include "pg/spi.hpp"

#include "core/outcome.hpp"

#include <string>
#include <vector>

namespace attendance::pg {

// One session: what was read, and what it came to.
struct Derived {
    core::SessionInput input;
    core::SessionOutcome outcome;
};

// The fold's writes: the sessions' connections, their persons' live rows (rows of persons
// no longer derived go unless they hold a result), the latest room_finished of their rooms.
void store_fold(SpiSession& spi, const std::vector<Derived>& sessions, bool rooms_schema);

// A calculation's writes, in its transaction: the connections of sessions not read from
// the store as they are, every person's live row and result with its audit (rows of
// persons no longer derived go, audited), the schedule rows, the courses' low-attendance
// alerts, and a notification per session.
void store_calculation(SpiSession& spi, const std::vector<Derived>& sessions, bool rooms_schema,
                       const std::string& snapshot);

}  // namespace attendance::pg
