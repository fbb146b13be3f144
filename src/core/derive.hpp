// The one derivation (docs/architecture.md, "The derivation"): the set of logged events of
// a session -> connections (join, leave, how each ended) -> persons (who attends, with
// which role) -> the live summary of each person. Calculation, attendance_explain, the
// live rows and the connections table all come from this function, so each rule has one
// home. It is a function of the *set* of events: their order in the input never matters.
#pragma once

#include "core/no_postgres.hpp"

#include "core/calc.hpp"
#include "core/webhook.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace attendance::core {

// One row of the webhook log, as the derivation reads it.
struct LoggedEvent {
    std::string event_id;  // LiveKit's id (EV_...): the last tie-breaker of every choice
    EventKind kind = EventKind::Other;
    std::string room;     // the room's name: connections and room_finished are per room
    int64_t time_ms = 0;  // the webhook's createdAt
    std::string sid;      // participant sid (empty for room events)
    std::string identity;
    std::string user_key;  // user id as text, else the identity (resolved when logged)
    std::optional<int64_t> user_id;
    std::string name;
    std::string role;  // from attributes/metadata (lower case), empty if none
    std::optional<int64_t> joined_ms;
    std::string disconnect_reason;
};

struct DeriveContext {
    // The session's window, if scheduled: persons are those with a connection inside it
    // (and the roster and manual statuses); an open connection of an ended session is
    // closed at its end.
    std::optional<int64_t> scheduled_start_ms;
    std::optional<int64_t> scheduled_end_ms;
    int64_t as_of_ms = 0;                   // derivation time ("now")
    int64_t max_connection_age_ms = 0;      // 0 = never close by age
    std::map<int64_t, std::string> roster;  // user_id -> role (wins over the events' role)
    std::vector<std::string> overridden;    // user keys with a manual status
};

// How a connection began and ended.
inline constexpr const char* kJoinJoined = "joined";
inline constexpr const char* kJoinRebuilt = "rebuilt_from_leave";
inline constexpr const char* kJoinAborted = "aborted";
inline constexpr const char* kEndLeft = "left";
inline constexpr const char* kEndAborted = "aborted";
inline constexpr const char* kEndReconciled = "reconciled";

struct DerivedConnection {
    std::string room;  // the room it was in (a session may span breakout rooms)
    std::string sid;
    std::string user_key;
    std::optional<int64_t> join_ms;
    std::optional<int64_t> leave_ms;  // real or reconciled; empty while open
    std::string join_source;          // kJoin*, empty when neither a join nor a leave says
    std::string end_reason;           // kEnd*, empty while open
    bool synthetic_leave = false;     // leave_ms was set by reconciliation
    std::string disconnect_reason;    // LiveKit's, or "reconciled: <why>"
    std::string join_event_id, leave_event_id;

    bool operator==(const DerivedConnection&) const = default;
};

struct DerivedPerson {
    std::string user_key;
    std::optional<int64_t> user_id;
    std::string identity, name;
    std::string role = "student";                // roster, else the events' role, else student
    std::vector<DerivedConnection> connections;  // sorted by join (open-ended last), sid
    // The live summary: the columns meeting_attendances fills before calculation (those of
    // the application the extension replaces, docs/sql.md).
    std::optional<int64_t> first_join_ms;
    std::optional<int64_t> last_leave_ms;  // empty while any connection is open
    int join_count = 0;
    int leave_count = 0;
    int64_t connected_minutes = 0;  // sum of the closed connections, rounded half up

    bool operator==(const DerivedPerson&) const = default;

    // The connections as the calculation reads them.
    PersonInput calc_input(const std::optional<std::string>& override_status) const;
};

struct SessionDerivation {
    std::map<std::string, DerivedPerson> persons;  // attending persons by user key
    // Connections inside the window of someone who is no person of the session (an aborted
    // attempt alone): kept as evidence with the session's connections, without a row.
    std::vector<DerivedConnection> rowless;
    std::optional<int64_t> room_finished_ms;  // the latest room_finished, if any

    bool operator==(const SessionDerivation&) const = default;
};

// Derives a session from the events of its rooms (any order, duplicates allowed).
// Connections are per (room, participant sid) and depend only on their room's events; a
// scheduled session keeps the connections that meet its window. Participant events of
// observers are dropped; events whose kind has no attendance meaning are ignored.
SessionDerivation derive(const std::vector<LoggedEvent>& events, const DeriveContext& context);

// The second half of derive(): from each person's connections (any, in or out of the
// window) and what their events said of them, the session's persons and their live summary:
// the connections meeting the window are kept, the roster and manual statuses added, the
// role chosen (the roster's, else event_role's, else student), observers dropped. derive()
// ends with it; a calculation reading the connections the fold stored starts from it.
SessionDerivation assemble(std::map<std::string, DerivedPerson> persons,
                           const std::map<std::string, std::string>& event_role,
                           const DeriveContext& context);

// A stored connection at another time: one left or aborted, or closed at its room's
// room_finished, stays; one open, or closed by a rule that depends on the time (the
// scheduled end once the session is over, the maximum age), gets reconciliation's rule at
// context.as_of_ms again, as derive() would give it then.
void reconcile_again(DerivedConnection& c, const DeriveContext& context);

// What differs first between two derivations, in words (for attendance.verify_calculation);
// empty when they are equal.
std::string first_difference(const SessionDerivation& a, const SessionDerivation& b);

// The same derivation for some persons only (the fold's unit when new events name only
// them): what derive() gives for each of `user_keys`, and nothing of anyone else. It reads
// only their participant events and the room events, so a class's other persons cost
// nothing (docs/architecture.md, "The worker's loops").
SessionDerivation derive_persons(const std::vector<LoggedEvent>& events,
                                 const DeriveContext& context,
                                 const std::set<std::string>& user_keys);

// The person's connections as meeting_attendances.join_leave_cycles, a JSON array (the
// shape the application the extension replaces stored).
nlohmann::json cycles_json(const DerivedPerson& person);

// Whether an event is one of a participant's connection (join, leave, abort): the events
// that concern one person only.
bool is_participant_event(EventKind k);

// Which persons of a session a new event can change, the fold's incremental unit
// (docs/architecture.md, "The worker's loops"): a participant's event, that person;
// room_started, nobody (the derivation only orders events by it); room_finished (it closes
// every open connection of its room) and any other event, the whole session.
enum class EventReach { Person, Nobody, Session };
EventReach reach_of(EventKind k);

// The total order every choice of the derivation follows: time, then kind, then event id.
bool event_before(const LoggedEvent& a, const LoggedEvent& b);

}  // namespace attendance::core
