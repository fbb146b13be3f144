#include "pg/load.hpp"

#include "pg/settings.hpp"

#include <algorithm>

namespace attendance::pg {

namespace {

constexpr const char* kHasRooms = R"sql(
SELECT to_regclass('@s.attendance_rooms') IS NOT NULL AS rooms
)sql";

// Rooms of the events above the fold's watermark (the fold: of the events it folds, with
// their first and last event times; a calculation: only rooms not seen before). The log is
// read alone (docs/architecture.md, "The log's readers").
constexpr const char* kNoteRoomsSelect = R"sql(
INSERT INTO @s.attendance_rooms AS r (room_name, room_session, first_event_at, last_event_at)
SELECT e.room_name, max(e.session_id), min(e.event_timestamp), max(e.event_timestamp)
FROM @s.meeting_attendance_events e
WHERE e.id > (SELECT safe_id FROM @s.attendance_fold_state) AND e.room_name <> ''
GROUP BY e.room_name ORDER BY e.room_name
)sql";
constexpr const char* kNoteRoomsFold = R"sql(
ON CONFLICT (room_name) DO UPDATE SET
  room_session = coalesce(r.room_session, excluded.room_session),
  first_event_at = least(r.first_event_at, excluded.first_event_at),
  last_event_at = greatest(r.last_event_at, excluded.last_event_at)
WHERE excluded.first_event_at < r.first_event_at OR excluded.last_event_at > r.last_event_at
   OR (r.room_session IS NULL AND excluded.room_session IS NOT NULL)
)sql";
constexpr const char* kNoteRoomsCalculation = R"sql(
ON CONFLICT (room_name) DO NOTHING
)sql";

// events_retired_at is read through to_jsonb: the 0.3.0 upgrade script folds with this
// library, before the column exists.
constexpr const char* kSchedule = R"sql(
SELECT session_id, starts_at, ends_at, policy_name,
       CASE WHEN needs_calculation THEN recalculation_cause END AS pending_cause,
       calculated_at IS NOT NULL AS calculated,
       to_jsonb(s) ->> 'events_retired_at' AS events_retired_at, needs_fold, room_finished_at
FROM @s.attendance_session_schedule s WHERE session_id = ANY($1) ORDER BY session_id
)sql";

constexpr const char* kClock = R"sql(
SELECT now() AS now, pg_current_snapshot()::text AS snapshot
)sql";

constexpr const char* kRoster = R"sql(
SELECT session_id, user_id, role FROM @s.attendance_roster WHERE session_id = ANY($1)
)sql";

constexpr const char* kOverrides = R"sql(
SELECT session_id, user_key, status, reason FROM @s.attendance_overrides
WHERE session_id = ANY($1)
)sql";

// The rooms with events above the watermark, read from the log by themselves (no statement
// both reads the log and applies a rule: docs/architecture.md, "The log's readers") ...
constexpr const char* kFreshRooms = R"sql(
SELECT DISTINCT e.room_name FROM @s.meeting_attendance_events e
WHERE e.id > (SELECT safe_id FROM @s.attendance_fold_state)
)sql";
// ... and the sessions whose stored rows are current: not marked for the fold, and none of
// their rooms among those.
constexpr const char* kStoreCurrent = R"sql(
SELECT s.session_id FROM @s.attendance_session_schedule s
WHERE s.session_id = ANY($1) AND NOT s.needs_fold
  AND s.session_id NOT IN (SELECT r.session_id FROM @s._attendance_session_rooms($1) r
                           WHERE r.room_name = ANY($2))
)sql";

constexpr const char* kStoredConnections = R"sql(
SELECT session_id, user_key, room_name, participant_sid, join_time, leave_time, join_source,
       end_reason, leave_is_synthetic, disconnect_reason, join_event_id, leave_event_id
FROM @s.attendance_sessions WHERE session_id = ANY($1)
)sql";

constexpr const char* kStoredPersons = R"sql(
SELECT session_id, user_key, user_id, participant_identity, participant_name, derived_role
FROM @s.meeting_attendances WHERE session_id = ANY($1) AND derived_role IS NOT NULL
)sql";

// A session's events through _attendance_session_events (its rooms, its window, the keys
// asked for; `unseen`: not seen by its last calculation). An earlier version's schema has
// no rooms and reads the events as that version matched them.
constexpr const char* kEvents = R"sql(
SELECT session_id, event_id, event_type, at_ms, participant_sid, participant_identity,
       user_key, user_id, participant_name, role, joined_ms, disconnect_reason, unseen,
       room_name
FROM @s._attendance_session_events($1, $2)
)sql";
constexpr const char* kEventsBeforeRooms = R"sql(
SELECT session_id, event_id, event_type, at_ms, participant_sid, participant_identity,
       user_key, user_id, participant_name, role, joined_ms, disconnect_reason, unseen,
       ''::text AS room_name
FROM @s._attendance_session_events($1)
)sql";

// A policy's numbers: fractions in basis points, intervals in milliseconds.
constexpr const char* kPolicies = R"sql(
SELECT p.name, (p.absent_below * 100)::bigint AS absent_below_bp,
       (p.partial_below * 100)::bigint AS partial_below_bp,
       floor(extract(epoch FROM p.late_after) * 1000)::bigint AS late_after_ms,
       (p.late_max * 100)::bigint AS late_max_bp,
       floor(extract(epoch FROM p.merge_gap) * 1000)::bigint AS merge_gap_ms,
       floor(extract(epoch FROM p.reconnect_grace) * 1000)::bigint AS reconnect_grace_ms
FROM @s.attendance_policies p WHERE p.name = ANY($1)
)sql";
// A role's numbers: its own where it has them, the policy's otherwise.
constexpr const char* kPolicyRoles = R"sql(
SELECT r.policy_name, r.role,
       (coalesce(r.absent_below, p.absent_below) * 100)::bigint AS absent_below_bp,
       (coalesce(r.partial_below, p.partial_below) * 100)::bigint AS partial_below_bp,
       floor(extract(epoch FROM coalesce(r.late_after, p.late_after)) * 1000)::bigint
         AS late_after_ms,
       (coalesce(r.late_max, p.late_max) * 100)::bigint AS late_max_bp,
       floor(extract(epoch FROM coalesce(r.merge_gap, p.merge_gap)) * 1000)::bigint
         AS merge_gap_ms,
       floor(extract(epoch FROM coalesce(r.reconnect_grace, p.reconnect_grace)) * 1000)::bigint
         AS reconnect_grace_ms
FROM @s.attendance_policy_roles r JOIN @s.attendance_policies p ON p.name = r.policy_name
WHERE r.policy_name = ANY($1)
)sql";

core::PolicyNumbers numbers_of(const Row& r) {
    core::PolicyNumbers n;
    n.absent_below_bp = r["absent_below_bp"].int8();
    n.partial_below_bp = r["partial_below_bp"].int8();
    n.late_after_ms = r["late_after_ms"].int8();
    n.late_max_bp = r["late_max_bp"].int8();
    n.merge_gap_ms = r["merge_gap_ms"].int8();
    n.reconnect_grace_ms = r["reconnect_grace_ms"].int8();
    return n;
}

core::DerivedConnection stored_connection(const Row& r) {
    core::DerivedConnection c;
    c.user_key = r["user_key"].str();
    c.room = r["room_name"].str();
    c.sid = r["participant_sid"].str();
    c.join_ms = r["join_time"].opt_ms();
    c.leave_ms = r["leave_time"].opt_ms();
    c.join_source = r["join_source"].str();
    c.end_reason = r["end_reason"].str();
    c.synthetic_leave = r["leave_is_synthetic"].truth();
    c.disconnect_reason = r["disconnect_reason"].str();
    c.join_event_id = r["join_event_id"].str();
    c.leave_event_id = r["leave_event_id"].str();
    return c;
}

core::LoggedEvent logged_event(const Row& r) {
    core::LoggedEvent e;
    e.event_id = r["event_id"].str();
    e.kind = core::event_kind_of(r["event_type"].str());
    e.time_ms = r["at_ms"].int8();
    e.sid = r["participant_sid"].str();
    e.identity = r["participant_identity"].str();
    e.user_key = r["user_key"].str();
    e.user_id = r["user_id"].opt_int8();
    e.name = r["participant_name"].str();
    e.role = r["role"].str();
    e.joined_ms = r["joined_ms"].opt_int8();
    e.disconnect_reason = r["disconnect_reason"].str();
    e.room = r["room_name"].str();
    return e;
}

// The policies of the scheduled sessions, each with its role-specific numbers.
void load_policies(SpiSession& spi, std::vector<core::SessionInput>& sessions, bool ro) {
    std::vector<std::string> names;
    for (const auto& s : sessions)
        if (s.scheduled) names.push_back(s.policy_name);
    if (names.empty()) return;
    std::map<std::string, core::Policy> policies;
    for (const Row& r : spi.query(kPolicies, {Arg::text_array(names)}, ro)) {
        core::Policy& policy = policies[r["name"].str()];
        policy.name = r["name"].str();
        policy.numbers = numbers_of(r);
    }
    for (const Row& r : spi.query(kPolicyRoles, {Arg::text_array(names)}, ro)) {
        auto it = policies.find(r["policy_name"].str());
        if (it != policies.end()) it->second.by_role[r["role"].str()] = numbers_of(r);
    }
    for (auto& s : sessions) {
        if (!s.scheduled) continue;
        auto it = policies.find(s.policy_name);
        if (it == policies.end())
            throw core::Error("42704", "policy \"" + s.policy_name + "\" of session " +
                                           std::to_string(s.session_id) + " does not exist");
        s.policy = it->second;
    }
}

// Of the sessions read from the store: their stored connections and persons' facts.
// Returns the sessions that must be read from the log after all (a person without a
// stored role: rows of an earlier version, a roster entry not folded).
std::set<int64_t> load_stored(SpiSession& spi, std::map<int64_t, core::SessionInput*>& stored,
                              bool ro) {
    std::vector<int64_t> ids;
    for (const auto& [id, s] : stored) ids.push_back(id);
    const Arg stored_ids = Arg::int8_array(ids);
    for (const Row& r : spi.query(kStoredConnections, {stored_ids}, ro)) {
        core::SessionInput& s = *stored.at(r["session_id"].int8());
        core::DerivedConnection c = stored_connection(r);
        const core::DerivedConnection as_stored = c;
        core::reconcile_again(c, s.context);
        if (!(c == as_stored)) s.store_current = false;
        core::DerivedPerson& p = s.stored_persons[c.user_key];
        p.user_key = c.user_key;
        p.connections.push_back(std::move(c));
    }
    for (const Row& r : spi.query(kStoredPersons, {stored_ids}, ro)) {
        core::SessionInput& s = *stored.at(r["session_id"].int8());
        const std::string key = r["user_key"].str();
        s.stored_roles[key] = r["derived_role"].str();
        // a row of someone the fold no longer derives (a calculated result it keeps) or of
        // the roster and manual statuses: their facts, if they are persons at all
        core::DerivedPerson& p = s.stored_persons[key];
        p.user_key = key;
        p.user_id = r["user_id"].opt_int8();
        p.identity = r["participant_identity"].str();
        p.name = r["participant_name"].str();
    }
    // The fold writes a row with its role for every person it derives.
    std::set<int64_t> from_log;
    for (const auto& [id, s] : stored) {
        std::set<std::string> needed;
        for (const auto& [key, p] : s->stored_persons)
            if (!p.connections.empty()) needed.insert(key);
        for (const auto& [user_id, role] : s->context.roster)
            needed.insert(std::to_string(user_id));
        needed.insert(s->context.overridden.begin(), s->context.overridden.end());
        for (const std::string& key : needed)
            if (!s->stored_roles.count(key)) {
                from_log.insert(id);
                break;
            }
    }
    return from_log;
}

}  // namespace

bool has_rooms(SpiSession& spi) { return spi.query(kHasRooms)[0]["rooms"].truth(); }

void note_rooms(SpiSession& spi, bool fold) {
    spi.exec(std::string(kNoteRoomsSelect) + (fold ? kNoteRoomsFold : kNoteRoomsCalculation));
}

Batch load_batch(SpiSession& spi, const std::vector<int64_t>& given, const LoadOptions& options) {
    std::vector<int64_t> ids = given;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    const bool lock = options.lock;
    const bool ro = !lock;  // after waiting for locks, read with fresh snapshots
    const Arg id_array = Arg::int8_array(ids);
    Batch batch;
    std::map<int64_t, core::SessionInput*> by_id;
    batch.sessions.resize(ids.size());
    for (size_t k = 0; k < ids.size(); ++k) {
        core::SessionInput& s = batch.sessions[k];
        s.session_id = ids[k];
        by_id[ids[k]] = &s;
        if (options.only)
            if (const auto it = options.only->find(ids[k]); it != options.only->end())
                s.only = it->second;
    }
    auto find = [&](const Value& id) -> core::SessionInput* {
        auto it = by_id.find(id.int8());
        return it == by_id.end() ? nullptr : it->second;
    };
    // Rooms logged since the last fold are not in attendance_rooms yet: note them, so that
    // the naming rule for breakout rooms sees them (docs/architecture.md, "Rooms and
    // windows"), before the schedule rows are locked: the fold notes rooms before it locks
    // schedule rows, and a calculation noting them after its lock could deadlock with it
    // (each waiting for the other's new room or schedule row). An upgrade script of an
    // earlier version folds with this library before the rooms exist: then the rooms are
    // not noted, and the session's events are read as that version matched them.
    batch.rooms_schema = has_rooms(spi);
    const bool rooms = batch.rooms_schema;
    if (lock && rooms) note_rooms(spi, false);
    for (const Row& r :
         spi.query(lock ? std::string(kSchedule) + " FOR UPDATE" : kSchedule, {id_array}, ro)) {
        core::SessionInput& s = *find(r["session_id"]);
        s.scheduled = true;
        s.window.start_ms = r["starts_at"].ms();
        s.window.end_ms = r["ends_at"].ms();
        s.policy_name = r["policy_name"].str("default");
        s.pending_cause = r["pending_cause"].opt_str();
        s.calculated = r["calculated"].truth();
        s.events_retired_at = r["events_retired_at"].opt_str();
        // Read after the lock: a schedule, roster or rooms change, or a forgotten person,
        // committed while this waited makes the session's whole derivation due.
        if (lock && r["needs_fold"].truth()) s.only.reset();
        s.room_finished_ms = r["room_finished_at"].opt_ms();
        // Some of its events are gone: deriving again would not give what was calculated.
        // The stored results stay; only reading (attendance_explain) derives it.
        if (lock && s.events_retired_at)
            throw core::Error("55000", "session " + std::to_string(s.session_id) +
                                           ": its logged events were retired at " +
                                           *s.events_retired_at +
                                           " (attendance.event_retention); its stored results "
                                           "are kept and it is not derived or calculated again");
    }
    const Row clock = spi.query(kClock, {}, ro)[0];
    const int64_t now = clock["now"].ms();
    batch.snapshot = clock["snapshot"].str();
    for (core::SessionInput& s : batch.sessions) {
        s.context.as_of_ms = now;
        s.context.max_connection_age_ms = int64_t(settings.max_connection_age_s) * 1000;
        if (s.scheduled) {
            s.context.scheduled_start_ms = s.window.start_ms;
            s.context.scheduled_end_ms = s.window.end_ms;
            s.window.as_of_ms = now;
        }
    }
    for (const Row& r : spi.query(kRoster, {id_array}, ro))
        find(r["session_id"])->context.roster[r["user_id"].int8()] = r["role"].str("student");
    for (const Row& r : spi.query(kOverrides, {id_array}, ro)) {
        core::SessionInput* s = find(r["session_id"]);
        if (!s) continue;
        s->overrides[r["user_key"].str()] = {r["status"].str(), r["reason"].str()};
        s->context.overridden.push_back(r["user_key"].str());
    }
    if (options.policies) load_policies(spi, batch.sessions, ro);
    // A calculation reads what the fold stored for a session that is current: scheduled,
    // not marked for the fold, and no event of its rooms above the fold's watermark
    // (docs/architecture.md, "Calculation"). Its schedule row is locked: no fold changes
    // what is read meanwhile.
    std::map<int64_t, core::SessionInput*> stored;
    if (options.from_store && lock && rooms) {
        std::vector<std::string> fresh;
        for (const Row& r : spi.query(kFreshRooms, {}, ro)) fresh.push_back(r["room_name"].str());
        for (const Row& r : spi.query(kStoreCurrent, {id_array, Arg::text_array(fresh)}, ro)) {
            core::SessionInput* s = find(r["session_id"]);
            s->from_store = true;
            s->store_current = true;
            stored[s->session_id] = s;
        }
    }
    if (!stored.empty())
        for (int64_t id : load_stored(spi, stored, ro)) {
            core::SessionInput& s = *stored.at(id);
            s.from_store = s.store_current = false;
            s.stored_persons.clear();
            s.stored_roles.clear();
        }
    // The others, and all of them when their derivation is verified, from the log. Sessions
    // derived for some persons read only those persons' events (the union of their keys:
    // core::derive_persons drops the rest), the others all their events: two reads, so that
    // one whole session does not make the batch read everything.
    std::set<std::string> keys;
    std::vector<int64_t> some_ids, whole_ids;
    for (core::SessionInput& s : batch.sessions) {
        if (s.from_store && !settings.verify_calculation) continue;
        s.events_read = true;
        if (s.only && rooms) {
            keys.insert(s.only->begin(), s.only->end());
            some_ids.push_back(s.session_id);
        } else {
            whole_ids.push_back(s.session_id);
        }
    }
    std::vector<std::pair<std::vector<int64_t>, Arg>> reads;
    if (!some_ids.empty())
        reads.emplace_back(some_ids,
                           Arg::text_array(std::vector<std::string>(keys.begin(), keys.end())));
    if (!whole_ids.empty()) reads.emplace_back(whole_ids, Arg::null_of(Arg::Kind::TextArray));
    for (const auto& [ids_read, keys_read] : reads)
        for (const Row& r : rooms
                                ? spi.query(kEvents, {Arg::int8_array(ids_read), keys_read}, ro)
                                : spi.query(kEventsBeforeRooms, {Arg::int8_array(ids_read)}, ro)) {
            core::SessionInput* s = find(r["session_id"]);
            if (!s) continue;
            if (r["unseen"].truth()) s->unseen_events = true;
            s->events.push_back(logged_event(r));
        }
    return batch;
}

}  // namespace attendance::pg
