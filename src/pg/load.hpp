// The loader (docs/architecture.md, "Calculation"): everything a batch of sessions needs,
// read in a few statements: the schedule, rooms, roster, overrides, policies, and the
// sessions' logged events or the connections and rows the fold stored. The fold, the
// calculations and attendance_explain all read through it; core::outcome_of turns what it
// read into each session's outcome and src/pg/store.cpp writes that.
#pragma once

#include "pg/spi.hpp"

#include "core/outcome.hpp"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace attendance::pg {

struct LoadOptions {
    // Take the schedule rows FOR UPDATE first, in id order (calculations of the same session
    // then serialise; ingestion never takes these locks), and read with fresh snapshots.
    bool lock = false;
    // A session whose rooms have nothing unfolded is read from the connections and rows the
    // fold stored instead of the log (with lock, for a calculation); with
    // attendance.verify_calculation its events are read too.
    bool from_store = false;
    // Read each scheduled session's policy (a calculation, attendance_explain).
    bool policies = false;
    // For the sessions it names, just these persons (the fold's incremental unit).
    const std::map<int64_t, std::set<std::string>>* only = nullptr;
};

struct Batch {
    std::vector<core::SessionInput> sessions;  // in session id order, each id once
    // The snapshot (pg_snapshot text) taken after the locks and before the log is read: an
    // event invisible in it was not seen by this batch.
    std::string snapshot;
    // The schema has the rooms of 0.5.0 (an earlier version's upgrade script folds with this
    // library before they exist).
    bool rooms_schema = true;
};

// Reads the sessions `ids` (scheduled or named by a room) as the log and the inputs are now.
Batch load_batch(SpiSession& spi, const std::vector<int64_t>& ids, const LoadOptions& options);

// Whether the schema has the rooms of 0.5.0.
bool has_rooms(SpiSession& spi);

// Notes the rooms of the events not yet folded in attendance_rooms (fold: with their first
// and last event times; else only rooms not seen before).
void note_rooms(SpiSession& spi, bool fold);

}  // namespace attendance::pg
