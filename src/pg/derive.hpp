// Loading a session's logged events for the one derivation (core/derive), and storing
// what it derives as the live rows and connections (docs/architecture.md, "The worker's loops").
#pragma once

#include "pg/spi.hpp"

#include "core/calc.hpp"
#include "core/derive.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace attendance::pg {

struct Derived {
    int64_t session_id = 0;
    bool rooms_schema = true;  // false while an earlier version's upgrade script folds
    bool scheduled = false;
    core::SessionWindow window{};  // scheduled sessions only
    std::string policy_name;
    std::optional<std::string> pending_cause;  // recalculation_cause while flagged
    bool calculated = false;                   // calculated at least once
    bool unseen_events = false;  // events the last calculation did not see: late webhooks
    // When partitions holding events of the session were retired (attendance.event_retention).
    std::optional<std::string> events_retired_at;
    std::map<std::string, std::pair<std::string, std::string>> overrides;  // key -> status, reason
    // Set when only these persons were derived (the fold's incremental unit): storing then
    // replaces their rows and connections only.
    std::optional<std::set<std::string>> only;
    // The latest room_finished of its rooms as the last fold or calculation stored it.
    std::optional<int64_t> room_finished_ms;
    bool from_store = false;     // assembled from what the fold stored, not read from the log
    bool store_current = false;  // ... and every stored connection is as it was stored
    core::SessionDerivation derivation;
};

// Derives the sessions `ids` (scheduled or named by a room) from the log as it is now.
// lock: take the schedule rows FOR UPDATE first, in id order (calculations of the same
// session then serialise; ingestion never takes these locks).
// snapshot: receives the snapshot (pg_snapshot text) taken after the locks and before the
// log is read; an event invisible in it was not seen by this derivation.
// Notes the rooms of the events not yet folded in attendance_rooms (fold: with their first
// and last event times; else only rooms not seen before).
void note_rooms(SpiSession& spi, bool fold);

// Whether the schema has the rooms of 0.5.0 (an earlier version's upgrade script folds with
// this library before they exist).
bool has_rooms(SpiSession& spi);

// only: for the sessions it names, derive just those persons (core::derive_persons); a
// session not named is derived whole.
// from_store (with lock, for a calculation): a session whose rooms have nothing unfolded is
// assembled from the connections and rows the fold stored (core::assemble) instead of being
// read from the log; attendance.verify_calculation derives it from the log too and fails
// when the two differ.
std::vector<Derived> derive_sessions(SpiSession& spi, const std::vector<int64_t>& ids, bool lock,
                                     std::string* snapshot = nullptr,
                                     const std::map<int64_t, std::set<std::string>>* only = nullptr,
                                     bool from_store = false);

// Writes the live summary of each derived person (the seed's uncalculated columns) and the
// connections of the sessions; rows of persons no longer derived are removed unless they
// hold a calculated result.
// persons = false: the connections only (a calculation writes the persons' live columns
// with their results, in one statement).
void store_live(SpiSession& spi, const std::vector<Derived>& sessions, bool persons = true);

struct FoldResult {
    int64_t events = 0;    // events folded
    int sessions = 0;      // sessions derived again
    int flagged = 0;       // calculated sessions flagged for a late webhook
    bool complete = true;  // false: an ingesting transaction was still open; it is folded later
    bool capped = false;   // attendance.fold_max_events left events for the next fold
    int failed = 0;        // sessions whose derivation failed (each retried by the next fold)
    std::string message;   // why they failed
};

// One fold: the sessions touched by events logged since the last fold, or flagged by a
// schedule, roster or policy change, are derived again; calculated ones that received a
// webhook their calculation did not see are flagged ("late webhook").
// max_events > 0: at most that many ids past the watermark (the scheduler's
// attendance.fold_max_events); a call from SQL folds everything.
FoldResult fold(SpiSession& spi, int64_t max_events = 0);

// Derives again every session with a connection still open (what reconciliation is now).
int rederive_open(SpiSession& spi);

}  // namespace attendance::pg
