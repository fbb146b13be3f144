// The events of a session as the derivation reads them, and the live rows it writes
// (docs/architecture.md, "The derivation" and "The worker's loops").
#include "pg/derive.hpp"

#include "pg/crossings.hpp"
#include "pg/settings.hpp"
#include "pg/transactions.hpp"

#include <algorithm>
#include <set>

namespace attendance::pg {

namespace {

// Milliseconds since the epoch, exactly (timestamptz has microseconds).
#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"
// And back, exactly.
#define TS(ms) "('epoch'::timestamptz + " ms " * interval '1 millisecond')"

}  // namespace

bool has_rooms(SpiSession& spi) {
    return spi.query("SELECT to_regclass('@s.attendance_rooms') IS NOT NULL")[0][0].truth();
}

void note_rooms(SpiSession& spi, bool fold) {
    // Rooms of the events above the fold's watermark (the fold: of the events it folds, with
    // their first and last event times; a calculation: only rooms not seen before).
    spi.exec(std::string(
                 "INSERT INTO @s.attendance_rooms AS r (room_name, room_session, first_event_at, "
                 "  last_event_at) "
                 "SELECT e.room_name, max(e.session_id), min(e.event_timestamp), "
                 "  max(e.event_timestamp) FROM @s.meeting_attendance_events e "
                 "WHERE e.id > (SELECT safe_id FROM @s.attendance_fold_state) "
                 "  AND e.room_name <> '' GROUP BY e.room_name ORDER BY e.room_name ") +
             (fold ? "ON CONFLICT (room_name) DO UPDATE SET "
                     "  room_session = coalesce(r.room_session, excluded.room_session), "
                     "  first_event_at = least(r.first_event_at, excluded.first_event_at), "
                     "  last_event_at = greatest(r.last_event_at, excluded.last_event_at) "
                     "WHERE excluded.first_event_at < r.first_event_at "
                     "  OR excluded.last_event_at > r.last_event_at "
                     "  OR (r.room_session IS NULL AND excluded.room_session IS NOT NULL)"
                   : "ON CONFLICT (room_name) DO NOTHING"));
}

std::vector<Derived> derive_sessions(SpiSession& spi, const std::vector<int64_t>& given, bool lock,
                                     std::string* snapshot,
                                     const std::map<int64_t, std::set<std::string>>* only,
                                     bool from_store) {
    std::vector<int64_t> ids = given;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    // After waiting for locks, read with fresh snapshots (read_only = false).
    const bool ro = !lock;
    const Arg id_array = Arg::int8_array(ids);
    std::vector<Derived> out;
    std::map<int64_t, size_t> at;
    for (int64_t id : ids) {
        at[id] = out.size();
        Derived& d = out.emplace_back();
        d.session_id = id;
        if (only)
            if (const auto it = only->find(id); it != only->end()) d.only = it->second;
    }
    auto find = [&](const Value& id) -> Derived* {
        auto it = at.find(id.int8());
        return it == at.end() ? nullptr : &out[it->second];
    };
    const std::string sql =
        "SELECT session_id, " MS("starts_at") ", " MS("ends_at") ", policy_name, "
        "CASE WHEN needs_calculation THEN recalculation_cause END, calculated_at IS NOT NULL, "
        // Read through to_jsonb: the 0.3.0 upgrade script folds with this library, before
        // the column exists.
        "to_jsonb(s) ->> 'events_retired_at', needs_fold, " MS("room_finished_at") " "
        "FROM @s.attendance_session_schedule s WHERE session_id = ANY($1) ORDER BY session_id";
    // Rooms logged since the last fold are not in attendance_rooms yet: note them, so that
    // the naming rule for breakout rooms sees them (docs/architecture.md, "Rooms and windows"),
    // before the schedule rows are locked: the fold notes rooms before it locks schedule
    // rows, and a calculation noting them after its lock could deadlock with it (each waiting
    // for the other's new room or schedule row). An upgrade script of an earlier version
    // folds with this library before the rooms exist: then the rooms are not noted, and the
    // session's events are read as that version matched them.
    const bool rooms = has_rooms(spi);
    if (lock && rooms) note_rooms(spi, false);
    for (const Row& r : spi.query(lock ? sql + " FOR UPDATE" : sql, {id_array}, ro)) {
        Derived* d = find(r[0]);
        d->scheduled = true;
        d->window.start_ms = r[1].int8();
        d->window.end_ms = r[2].int8();
        d->policy_name = r[3].str("default");
        d->pending_cause = r[4].opt_str();
        d->calculated = r[5].truth();
        d->events_retired_at = r[6].opt_str();
        // Read after the lock: a schedule, roster or rooms change, or a forgotten person,
        // committed while this waited makes the session's whole derivation due.
        if (lock && r[7].truth()) d->only.reset();
        d->room_finished_ms = r[8].opt_int8();
        // Some of its events are gone: deriving again would not give what was calculated.
        // The stored results stay; only reading (attendance_explain) derives it.
        if (lock && d->events_retired_at)
            throw core::Error("55000", "session " + std::to_string(d->session_id) +
                                           ": its logged events were retired at " +
                                           *d->events_retired_at +
                                           " (attendance.event_retention); its stored results "
                                           "are kept and it is not derived or calculated again");
    }
    for (Derived& d : out) d.rooms_schema = rooms;
    const Row clock = spi.query("SELECT " MS("now()") ", pg_current_snapshot()::text", {}, ro)[0];
    const int64_t now = clock[0].int8();
    if (snapshot) *snapshot = clock[1].str("");
    std::map<int64_t, core::DeriveContext> context;
    for (Derived& d : out) {
        core::DeriveContext& c = context[d.session_id];
        c.as_of_ms = now;
        c.max_connection_age_ms = int64_t(settings.max_connection_age_s) * 1000;
        if (d.scheduled) {
            c.scheduled_start_ms = d.window.start_ms;
            c.scheduled_end_ms = d.window.end_ms;
            d.window.as_of_ms = now;
        }
    }
    for (const Row& r : spi.query("SELECT session_id, user_id, role FROM @s.attendance_roster "
                                  "WHERE session_id = ANY($1)",
                                  {id_array}, ro))
        context[r[0].int8()].roster[r[1].int8()] = r[2].str("student");
    for (const Row& r : spi.query("SELECT session_id, user_key, status, reason FROM "
                                  "@s.attendance_overrides WHERE session_id = ANY($1)",
                                  {id_array}, ro)) {
        Derived* d = find(r[0]);
        if (!d) continue;
        d->overrides[r[1].str("")] = {r[2].str(""), r[3].str("")};
        context[d->session_id].overridden.push_back(r[1].str(""));
    }
    // A calculation reads what the fold stored for a session that is current: scheduled,
    // not marked for the fold, and no event of its rooms above the fold's watermark
    // (docs/architecture.md, "Calculation"). Its schedule row is locked: no fold changes
    // what is read meanwhile.
    std::set<int64_t> stored;
    if (from_store && lock && rooms) {
        // The rooms with events above the watermark, read from the log by themselves (no
        // statement both reads the log and applies a rule: docs/architecture.md, "The log's
        // readers").
        std::vector<std::string> fresh;
        for (const Row& r :
             spi.query("SELECT DISTINCT e.room_name FROM @s.meeting_attendance_events e "
                       "WHERE e.id > (SELECT safe_id FROM @s.attendance_fold_state)",
                       {}, ro))
            fresh.push_back(r[0].str(""));
        for (const Row& r :
             spi.query("SELECT s.session_id FROM @s.attendance_session_schedule s "
                       "WHERE s.session_id = ANY($1) AND NOT s.needs_fold "
                       "  AND s.session_id NOT IN (SELECT r.session_id "
                       "    FROM @s._attendance_session_rooms($1) r WHERE r.room_name = ANY($2))",
                       {id_array, Arg::text_array(fresh)}, ro))
            stored.insert(r[0].int8());
    }
    std::map<int64_t, std::map<std::string, core::DerivedPerson>> stored_persons;
    std::map<int64_t, std::map<std::string, std::string>> stored_roles;
    std::set<int64_t> restore;  // read from the store, with a connection closed again
    if (!stored.empty()) {
        const Arg stored_ids = Arg::int8_array(std::vector<int64_t>(stored.begin(), stored.end()));
        for (const Row& r : spi.query(
                 "SELECT session_id, user_key, room_name, participant_sid, " MS(
                     "join_time") ", " MS("leave_time") ", join_source, end_reason, "
                                                        "leave_is_synthetic, disconnect_reason, "
                                                        "join_event_id, leave_event_id "
                                                        "FROM @s.attendance_sessions "
                                                        "WHERE session_id = ANY($1)",
                 {stored_ids}, ro)) {
            const int64_t id = r[0].int8();
            core::DerivedConnection c;
            c.user_key = r[1].str("");
            c.room = r[2].str("");
            c.sid = r[3].str("");
            c.join_ms = r[4].opt_int8();
            c.leave_ms = r[5].opt_int8();
            c.join_source = r[6].str("");
            c.end_reason = r[7].str("");
            c.synthetic_leave = r[8].truth();
            c.disconnect_reason = r[9].str("");
            c.join_event_id = r[10].str("");
            c.leave_event_id = r[11].str("");
            const core::DerivedConnection as_stored = c;
            core::reconcile_again(c, context[id]);
            if (!(c == as_stored)) restore.insert(id);
            core::DerivedPerson& p = stored_persons[id][c.user_key];
            p.user_key = c.user_key;
            p.connections.push_back(std::move(c));
        }
        for (const Row& r : spi.query("SELECT session_id, user_key, user_id, participant_identity, "
                                      "participant_name, derived_role FROM @s.meeting_attendances "
                                      "WHERE session_id = ANY($1) AND derived_role IS NOT NULL",
                                      {stored_ids}, ro)) {
            const int64_t id = r[0].int8();
            const std::string key = r[1].str("");
            stored_roles[id][key] = r[5].str("");
            auto& persons = stored_persons[id];
            auto it = persons.find(key);
            // a row of someone the fold no longer derives (a calculated result it keeps) or
            // of the roster and manual statuses: their facts, if they are persons at all
            core::DerivedPerson& p = it != persons.end() ? it->second : persons[key];
            p.user_key = key;
            p.user_id = r[2].opt_int8();
            p.identity = r[3].str("");
            p.name = r[4].str("");
        }
        // The fold writes a row with its role for every person it derives: a person without
        // one (rows of an earlier version, a roster entry not folded) is read from the log.
        for (int64_t id : std::set<int64_t>(stored)) {
            const core::DeriveContext& c = context[id];
            std::set<std::string> needed;
            for (const auto& [key, p] : stored_persons[id])
                if (!p.connections.empty()) needed.insert(key);
            for (const auto& [user_id, role] : c.roster) needed.insert(std::to_string(user_id));
            needed.insert(c.overridden.begin(), c.overridden.end());
            for (const std::string& key : needed)
                if (!stored_roles[id].count(key)) {
                    stored.erase(id);
                    break;
                }
        }
    }
    // The others, and all of them when their derivation is verified, from the log. Sessions
    // derived for some persons read only those persons' events (the union of their keys:
    // core::derive_persons drops the rest), the others all their events: two reads, so that
    // one whole session does not make the batch read everything.
    std::set<std::string> keys;
    std::vector<int64_t> some_ids, whole_ids;
    for (const Derived& d : out) {
        if (stored.count(d.session_id) && !settings.verify_calculation) continue;
        if (d.only && rooms) {
            keys.insert(d.only->begin(), d.only->end());
            some_ids.push_back(d.session_id);
        } else {
            whole_ids.push_back(d.session_id);
        }
    }
    std::map<int64_t, std::vector<core::LoggedEvent>> events;
    std::vector<std::pair<std::vector<int64_t>, Arg>> reads;
    if (!some_ids.empty())
        reads.emplace_back(some_ids,
                           Arg::text_array(std::vector<std::string>(keys.begin(), keys.end())));
    if (!whole_ids.empty()) reads.emplace_back(whole_ids, Arg::null_of(Arg::Kind::TextArray));
    for (const auto& [ids_read, keys_read] : reads)
        for (const Row& r : spi.query(
                 "SELECT session_id, event_id, event_type, at_ms, participant_sid, "
                 "participant_identity, user_key, user_id, participant_name, role, joined_ms, "
                 "disconnect_reason, unseen, " +
                     std::string(rooms ? "room_name FROM @s._attendance_session_events($1, $2)"
                                       : "''::text FROM @s._attendance_session_events($1)"),
                 rooms ? std::vector<Arg>{Arg::int8_array(ids_read), keys_read}
                       : std::vector<Arg>{Arg::int8_array(ids_read)},
                 ro)) {
            Derived* d = find(r[0]);
            if (!d) continue;
            core::LoggedEvent e;
            e.event_id = r[1].str("");
            e.kind = core::event_kind_of(r[2].str(""));
            e.time_ms = r[3].int8();
            e.sid = r[4].str("");
            e.identity = r[5].str("");
            e.user_key = r[6].str("");
            e.user_id = r[7].opt_int8();
            e.name = r[8].str("");
            e.role = r[9].str("");
            e.joined_ms = r[10].opt_int8();
            e.disconnect_reason = r[11].str("");
            if (r[12].truth()) d->unseen_events = true;
            e.room = r[13].str("");
            events[d->session_id].push_back(std::move(e));
        }
    for (Derived& d : out) {
        const core::DeriveContext& c = context[d.session_id];
        if (stored.count(d.session_id)) {
            d.from_store = true;
            d.store_current = !restore.count(d.session_id);
            d.derivation = core::assemble(std::move(stored_persons[d.session_id]),
                                          stored_roles[d.session_id], c);
            d.derivation.room_finished_ms = d.room_finished_ms;
            if (settings.verify_calculation) {
                core::SessionDerivation logged = core::derive(events[d.session_id], c);
                if (!(logged == d.derivation))
                    throw core::Error("XX000",
                                      "session " + std::to_string(d.session_id) +
                                          ": what the fold stored gives another derivation than "
                                          "the log (attendance.verify_calculation): " +
                                          core::first_difference(logged, d.derivation));
            }
        } else {
            d.derivation = d.only ? core::derive_persons(events[d.session_id], c, *d.only)
                                  : core::derive(events[d.session_id], c);
        }
        // Connections still open are closed by the derivation where its rule says so; the
        // calculation then closes the rest at the scheduled end or now.
        d.window.room_finished_ms.reset();
    }
    return out;
}

void store_live(SpiSession& spi, const std::vector<Derived>& sessions, bool persons) {
    if (sessions.empty()) return;
    // connections
    std::vector<int64_t> c_session, c_join, c_leave;
    std::vector<bool> c_join_null, c_leave_null, c_synthetic;
    std::vector<std::string> c_room, c_sid, c_key, c_source, c_end, c_reason, c_join_ev, c_leave_ev;
    std::vector<bool> c_source_null, c_end_null, c_reason_null, c_join_ev_null, c_leave_ev_null;
    // persons
    std::vector<int64_t> p_session, p_user_id, p_first, p_last, p_joins, p_leaves, p_minutes;
    std::vector<bool> p_user_id_null, p_first_null, p_last_null;
    // Calculated sessions waiting for recalculation: their rows show as not calculated.
    std::vector<int64_t> pending_sessions;
    std::vector<std::string> p_key, p_identity, p_name, p_role, p_cycles;
    std::vector<bool> p_identity_null, p_name_null;
    // Sessions derived for some persons only: their (session, person) pairs; the others
    // are replaced whole.
    std::vector<int64_t> some_session, whole;
    std::vector<std::string> some_key;
    std::vector<int64_t> some_pending;
    for (const Derived& d : sessions) {
        if (d.only) {
            for (const std::string& key : *d.only) {
                some_session.push_back(d.session_id);
                some_key.push_back(key);
            }
        } else {
            whole.push_back(d.session_id);
        }
        if (d.calculated && (d.pending_cause || d.unseen_events)) {
            pending_sessions.push_back(d.session_id);
            if (d.only) some_pending.push_back(d.session_id);
        }
        auto connection = [&](const std::string& key, const core::DerivedConnection& c) {
            c_session.push_back(d.session_id);
            c_room.push_back(c.room);
            c_sid.push_back(c.sid);
            c_key.push_back(key);
            c_join.push_back(c.join_ms.value_or(0));
            c_join_null.push_back(!c.join_ms);
            c_leave.push_back(c.leave_ms.value_or(0));
            c_leave_null.push_back(!c.leave_ms);
            c_source.push_back(c.join_source);
            c_source_null.push_back(c.join_source.empty());
            c_end.push_back(c.end_reason);
            c_end_null.push_back(c.end_reason.empty());
            c_synthetic.push_back(c.synthetic_leave);
            c_reason.push_back(c.disconnect_reason);
            c_reason_null.push_back(c.disconnect_reason.empty());
            c_join_ev.push_back(c.join_event_id);
            c_join_ev_null.push_back(c.join_event_id.empty());
            c_leave_ev.push_back(c.leave_event_id);
            c_leave_ev_null.push_back(c.leave_event_id.empty());
        };
        for (const core::DerivedConnection& c : d.derivation.rowless) connection(c.user_key, c);
        for (const auto& [key, p] : d.derivation.persons) {
            for (const core::DerivedConnection& c : p.connections) connection(key, c);
            p_session.push_back(d.session_id);
            p_key.push_back(key);
            p_user_id.push_back(p.user_id.value_or(0));
            p_user_id_null.push_back(!p.user_id);
            p_identity.push_back(p.identity);
            p_identity_null.push_back(p.identity.empty());
            p_name.push_back(p.name);
            p_name_null.push_back(p.name.empty());
            p_role.push_back(p.role);
            p_first.push_back(p.first_join_ms.value_or(0));
            p_first_null.push_back(!p.first_join_ms);
            p_last.push_back(p.last_leave_ms.value_or(0));
            p_last_null.push_back(!p.last_leave_ms);
            p_joins.push_back(p.join_count);
            p_leaves.push_back(p.leave_count);
            p_minutes.push_back(p.connected_minutes);
            p_cycles.push_back(core::cycles_json(p).dump());
        }
    }
    const Arg whole_array = Arg::int8_array(whole);
    const Arg some_sessions = Arg::int8_array(some_session), some_keys = Arg::text_array(some_key);
    if (!whole.empty())
        spi.exec("DELETE FROM @s.attendance_sessions WHERE session_id = ANY($1)", {whole_array});
    if (!some_session.empty())
        spi.exec(
            "DELETE FROM @s.attendance_sessions c USING unnest($1::bigint[], $2::text[]) "
            "AS x(session_id, user_key) WHERE c.session_id = x.session_id "
            "AND c.user_key = x.user_key",
            {some_sessions, some_keys});
    // (an earlier version's upgrade script folds before connections have a room)
    const bool rooms = sessions.front().rooms_schema;
    if (!c_session.empty())
        spi.exec(
            "INSERT INTO @s.attendance_sessions (session_id, participant_sid, user_key, join_time, "
            "  join_source, leave_time, end_reason, leave_is_synthetic, disconnect_reason, "
            "  join_event_id, leave_event_id" +
                std::string(rooms ? ", room_name" : "") +
                ") "
                "SELECT x.session_id, x.sid, x.user_key, " TS("x.join_ms") ", x.source, " TS(
                    "x.leave_ms") ", x.end_reason, x.synthetic, x.reason, x.join_ev, x.leave_ev" +
                std::string(rooms ? ", x.room" : "") +
                " FROM unnest($1::bigint[], $2::text[], $3::text[], "
                "  $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::bool[], "
                "  $9::text[], $10::text[], $11::text[], $12::text[]) AS "
                "  x(session_id, sid, user_key, join_ms, source, leave_ms, "
                "  end_reason, synthetic, reason, join_ev, leave_ev, room)",
            {Arg::int8_array(c_session), Arg::text_array(c_sid), Arg::text_array(c_key),
             Arg::int8_array(c_join, c_join_null), Arg::text_array(c_source, c_source_null),
             Arg::int8_array(c_leave, c_leave_null), Arg::text_array(c_end, c_end_null),
             Arg::bool_array(c_synthetic), Arg::text_array(c_reason, c_reason_null),
             Arg::text_array(c_join_ev, c_join_ev_null),
             Arg::text_array(c_leave_ev, c_leave_ev_null), Arg::text_array(c_room)});
    if (!persons) return;
    // The latest room_finished of each scheduled session's rooms, as a calculation writes it
    // (a calculation that reads what the fold stored takes it from here).
    {
        std::vector<int64_t> rf_session, rf_ms;
        std::vector<bool> rf_null;
        for (const Derived& d : sessions) {
            if (!d.scheduled) continue;
            rf_session.push_back(d.session_id);
            rf_ms.push_back(d.derivation.room_finished_ms.value_or(0));
            rf_null.push_back(!d.derivation.room_finished_ms);
        }
        if (!rf_session.empty())
            spi.exec("UPDATE @s.attendance_session_schedule s SET room_finished_at = " TS(
                         "x.ms") " FROM unnest($1::bigint[], $2::bigint[]) AS x(session_id, ms) "
                                 "WHERE s.session_id = x.session_id "
                                 "AND s.room_finished_at IS DISTINCT FROM " TS("x.ms"),
                     {Arg::int8_array(rf_session), Arg::int8_array(rf_ms, rf_null)});
    }
    // Persons no longer derived (e.g. the session moved to another room) lose their live
    // row unless it holds a calculated result, which only a calculation replaces.
    // (NOT IN over the derived pairs is a hashed subplan; NOT EXISTS over an unnest was
    // planned as a nested loop, quadratic in the persons of a fold)
    if (!whole.empty())
        spi.exec(
            "DELETE FROM @s.meeting_attendances m WHERE m.session_id = ANY($1) "
            "AND m.attendance_calculated_at IS NULL AND (m.session_id, m.user_key) NOT IN "
            "(SELECT x.session_id, x.user_key FROM unnest($2::bigint[], $3::text[]) "
            "x(session_id, user_key))",
            {whole_array, Arg::int8_array(p_session), Arg::text_array(p_key)});
    // Of a session derived for some persons, those of them it no longer has.
    std::vector<int64_t> gone_session;
    std::vector<std::string> gone_key;
    for (const Derived& d : sessions)
        if (d.only)
            for (const std::string& key : *d.only)
                if (!d.derivation.persons.count(key)) {
                    gone_session.push_back(d.session_id);
                    gone_key.push_back(key);
                }
    if (!gone_session.empty())
        spi.exec(
            "DELETE FROM @s.meeting_attendances m USING unnest($1::bigint[], $2::text[]) "
            "AS s(session_id, user_key) WHERE m.session_id = s.session_id "
            "AND m.user_key = s.user_key AND m.attendance_calculated_at IS NULL",
            {Arg::int8_array(gone_session), Arg::text_array(gone_key)});
    // A flagged session's rows all show as not calculated, also those not derived now.
    if (!some_pending.empty())
        spi.exec(
            "UPDATE @s.meeting_attendances SET is_calculated = false, updated_at = now() "
            "WHERE session_id = ANY($1) AND is_calculated",
            {Arg::int8_array(some_pending)});
    if (p_session.empty()) return;
    spi.exec(
        "INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id, "
        "  participant_identity, participant_name, role, first_join_time, last_leave_time, "
        "  join_count, leave_count, join_leave_cycles, total_duration_minutes" +
            std::string(rooms ? ", derived_role" : "") +
            ") "
            "SELECT x.session_id, x.user_key, x.user_id, x.identity, x.name, x.role, " TS(
            "x.first_ms") ", " TS("x.last_ms") ", x.joins, x.leaves, x.cycles::jsonb, x.minutes" +
            std::string(rooms ? ", x.role" : "") +
            " FROM unnest($1::bigint[], $2::text[], "
                                               "$3::bigint[], $4::text[], $5::text[], $6::text[], "
                                               "$7::bigint[], $8::bigint[], $9::bigint[], "
                                               "$10::bigint[], $11::text[], $12::bigint[]) "
                                               "AS x(session_id, user_key, user_id, "
                                               "identity, name, role, first_ms, last_ms, joins, "
                                               "leaves, cycles, minutes) "
        "ON CONFLICT (session_id, user_key) DO UPDATE SET "
        "  user_id = coalesce(excluded.user_id, m.user_id), "
        "  participant_identity = coalesce(excluded.participant_identity, m.participant_identity), "
        "  participant_name = coalesce(excluded.participant_name, m.participant_name), "
        "  role = CASE WHEN m.is_calculated THEN m.role ELSE excluded.role END, "
        "  first_join_time = excluded.first_join_time, last_leave_time = excluded.last_leave_time, "
        "  join_count = excluded.join_count, leave_count = excluded.leave_count, "
        "  join_leave_cycles = excluded.join_leave_cycles, "
        "  total_duration_minutes = CASE WHEN m.attendance_calculated_at IS NULL "
        "    THEN excluded.total_duration_minutes ELSE m.total_duration_minutes END, "
        "  is_calculated = m.is_calculated AND m.session_id <> ALL ($13::bigint[]), " +
            // the role the derivation gives now, whatever the stored result's (a calculation
            // that reads what the fold stored takes it from here)
            std::string(rooms ? "  derived_role = excluded.derived_role, " : "") +
            "  updated_at = now() "
            "WHERE (m.first_join_time, m.last_leave_time, m.join_count, m.leave_count, "
            "  m.join_leave_cycles, m.participant_name, m.participant_identity, m.user_id, "
            "  m.is_calculated" +
            std::string(rooms ? ", m.derived_role" : "") +
            ") IS DISTINCT FROM "
            "  (excluded.first_join_time, excluded.last_leave_time, excluded.join_count, "
            "  excluded.leave_count, excluded.join_leave_cycles, "
            "  coalesce(excluded.participant_name, m.participant_name), "
            "  coalesce(excluded.participant_identity, m.participant_identity), "
            "  coalesce(excluded.user_id, m.user_id), "
            "  m.is_calculated AND m.session_id <> ALL ($13::bigint[])" +
            std::string(rooms ? ", excluded.derived_role" : "") + ")",
        {Arg::int8_array(p_session), Arg::text_array(p_key),
         Arg::int8_array(p_user_id, p_user_id_null), Arg::text_array(p_identity, p_identity_null),
         Arg::text_array(p_name, p_name_null), Arg::text_array(p_role),
         Arg::int8_array(p_first, p_first_null), Arg::int8_array(p_last, p_last_null),
         Arg::int8_array(p_joins), Arg::int8_array(p_leaves), Arg::text_array(p_cycles),
         Arg::int8_array(p_minutes), Arg::int8_array(pending_sessions)});
}

namespace {

// The settled high mark (docs/architecture.md, "The worker's loops"; docs/decisions.md):
// the highest log id H such that every row with an id up to H that will ever commit is
// visible to a snapshot taken after this returns; nothing when a transaction that drew
// such an id is still open after attendance.fold_wait.
//
// It takes no lock that an INSERT waits for. Every id comes from the log's sequence, and
// nextval locks the sequence (RowExclusiveLock, held to the end of the transaction) before
// it draws. So, once the sequence's last value L is read, every transaction that drew an
// id up to L has either ended or holds that lock. GetLockConflicts lists the holders
// without queueing a request (a LOCK TABLE would queue, and every new INSERT behind it),
// and the fold waits for each of those transactions to end (VirtualXactLock: a wait on the
// transaction, which nobody else queues behind). Whether a drawer had a transaction id yet
// does not matter: its lock was taken before its draw.
std::optional<int64_t> settled_high_mark(SpiSession& spi) {
    // A transaction snapshot (REPEATABLE READ, SERIALIZABLE) was taken before the wait: rows
    // committed during the wait are not visible to it, so nothing counts as settled.
    if (IsolationUsesXactSnapshot()) return std::nullopt;
    const Row seq = spi.query(
        "SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END, "
        "s.tableoid::bigint, p.seqcache FROM @s.meeting_attendance_events_id_seq s "
        "JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.tableoid")[0];
    // A session that caches ids could draw one below L later, without holding the lock now.
    if (seq[2].int8() != 1)
        throw core::Error("55000",
                          "the log's id sequence meeting_attendance_events_id_seq caches " +
                              std::to_string(seq[2].int8()) +
                              " values per session; the fold's watermark needs CACHE 1 "
                              "(ALTER SEQUENCE ... CACHE 1)");
    const int64_t last = seq[0].int8();
    const Oid sequence = Oid(seq[1].int8());
    const bool wait = settings.fold_wait_ms > 0;

    SubTransaction sub;
    bool settled = false;
    try {
        if (wait)
            spi.exec("SELECT set_config('lock_timeout', $1, true)",
                     {Arg::text(std::to_string(settings.fold_wait_ms) + "ms")});
        // The transactions that drew ids and are still open hold the sequence's lock.
        settled = wait_for_share_conflicts(sequence, wait);
    } catch (const PgError& e) {
        // Anything but lock_timeout (one is still open after fold_wait) is the fold's error;
        // the scope rolls the subtransaction back.
        if ((e.edata() ? e.edata()->sqlerrcode : 0) != ERRCODE_LOCK_NOT_AVAILABLE) throw;
        settled = false;
    }
    sub.rollback();  // either way: that ends the SET LOCAL
    if (!settled) return std::nullopt;
    return last;
}

}  // namespace

FoldResult fold(SpiSession& spi, int64_t max_events) {
    FoldResult out;
    // One fold at a time; the state row is locked before any schedule row.
    const int64_t safe_id =
        spi.query("SELECT safe_id FROM @s.attendance_fold_state FOR UPDATE")[0][0].int8();
    std::optional<int64_t> settled = settled_high_mark(spi);
    out.complete = settled.has_value();
    int64_t high = settled ? *settled
                           : spi.query(
                                    "SELECT coalesce(max(id), 0) FROM "
                                    "@s.meeting_attendance_events")[0][0]
                                 .int8();
    // At most max_events ids past the watermark (docs/architecture.md, "The worker's
    // loops"); the next fold follows at once. Not when an ingesting transaction is still
    // open: the watermark stays, and a capped fold would fold the same ids again.
    if (max_events > 0 && settled && high - safe_id > max_events) {
        high = safe_id + max_events;
        out.capped = true;
    }

    std::set<int64_t> touched, whole;
    std::map<int64_t, std::set<std::string>> some;  // sessions whose new events name only these
    int64_t lag_ms = -1;
    if (high > safe_id) {
        // The new events come from the log's reader: no statement both reads the log and
        // applies a rule (docs/architecture.md, "The log's readers"). An earlier version's
        // schema, before ALTER EXTENSION UPDATE, has no reader (the log is read in the
        // statement) and, before 0.5.0, no rooms.
        const Row schema = spi.query(
            "SELECT to_regclass('@s.attendance_rooms') IS NOT NULL, "
            "to_regprocedure('@s._attendance_new_events(bigint, bigint)') IS NOT NULL")[0];
        const bool rooms = schema[0].truth(), reader = schema[1].truth();
        if (rooms) note_rooms(spi, true);
        // The sessions each new event counts for, and those holding a connection it changes
        // (docs/architecture.md, "Rooms and windows" and "The worker's loops").
        auto rows = spi.query(
            "SELECT m.session_id, " MS("clock_timestamp() - e.received_at") ", e.result, e.id, "
            "e.event_type, e.user_key FROM " +
                std::string(reader ? "@s._attendance_new_events($1, $2) e"
                                   : "(SELECT * FROM @s.meeting_attendance_events e "
                                     "WHERE e.id > $1 AND e.id <= $2) e") +
                " LEFT JOIN LATERAL " +
                // (set-returning SQL functions in FROM are inlined into the plan; in a
                // select list they would be called once per event)
                std::string(rooms ? "(SELECT c.c FROM @s._attendance_claims(e.room_name, "
                                    "e.event_timestamp, e.joined_at, e.session_id, e.event_type, "
                                    "e.participant_sid) c(c) UNION SELECT h.h FROM "
                                    "@s._attendance_holds(e.room_name, e.event_timestamp, "
                                    "e.event_type, e.participant_sid) h(h))"
                                  : "@s._attendance_match(e.room_name, e.event_timestamp, "
                                    "e.session_id)") +
                " m(session_id) ON true",
            {Arg::int8(safe_id), Arg::int8(high)});
        std::set<int64_t> events;
        for (const Row& r : rows) {
            events.insert(r[3].int8());
            lag_ms = std::max(lag_ms, r[1].int8());
            if (r[0].is_null() || r[2].str() != "recorded") continue;
            const int64_t session = r[0].int8();
            touched.insert(session);
            // Incremental (docs/architecture.md, "The worker's loops"): a participant's event
            // changes that person only, a room_started nobody; a room_finished, or an earlier
            // version's schema, the session.
            const std::string key = r[5].str("");
            const core::EventReach reach = core::reach_of(core::event_kind_of(r[4].str("")));
            if (rooms && reach == core::EventReach::Person && !key.empty())
                some[session].insert(key);
            else if (rooms && reach == core::EventReach::Nobody)
                some[session];  // derived for no person: its room events are still read
            else
                whole.insert(session);
        }
        out.events = int64_t(events.size());
    }
    // A session flagged by a schedule, roster, policy or rooms change, or whose last fold
    // failed, is derived whole.
    for (const Row& r : spi.query(
             "SELECT session_id FROM @s.attendance_session_schedule WHERE needs_fold", {}, false)) {
        touched.insert(r[0].int8());
        whole.insert(r[0].int8());
    }
    for (int64_t id : whole) some.erase(id);
    // Sessions whose events were retired keep what they have: a new event matched to one
    // is logged and changes nothing (docs/architecture.md, "Partitions and retention").
    if (!touched.empty()) {
        const std::vector<int64_t> all(touched.begin(), touched.end());
        for (const Row& r :
             spi.query("UPDATE @s.attendance_session_schedule s SET needs_fold = false "
                       "WHERE session_id = ANY($1) AND to_jsonb(s) ->> 'events_retired_at' IS NOT "
                       "NULL RETURNING session_id",
                       {Arg::int8_array(all)}))
            touched.erase(r[0].int8());
    }

    // Derives and stores `some` sessions; returns how many were flagged.
    auto fold_some = [&](const std::vector<int64_t>& ids) -> int {
        // Locks the scheduled ones in id order, as calculations do.
        std::vector<Derived> sessions = derive_sessions(spi, ids, true, nullptr, &some);
        // Flagging is derived, not one-shot: a calculated session that claims an event its
        // calculation did not see is flagged whenever it is derived, so a fold that failed
        // for it, a crash or a restore cannot lose the flag.
        std::vector<int64_t> late_sessions;
        for (const Derived& d : sessions)
            if (d.calculated && d.unseen_events) late_sessions.push_back(d.session_id);
        int flagged = 0;
        if (!late_sessions.empty())
            flagged = int(spi.query("SELECT @s._attendance_flag($1, 'late webhook')",
                                    {Arg::int8_array(late_sessions)})[0][0]
                              .int8());
        store_live(spi, sessions);
        spi.exec(
            "UPDATE @s.attendance_session_schedule SET needs_fold = false "
            "WHERE session_id = ANY($1) AND needs_fold",
            {Arg::int8_array(ids)});
        return flagged;
    };
    // attendance.calculation_batch_size sessions at a time (the upgrade's first fold
    // derives every session); each batch at once, and when that fails each of its sessions
    // alone, so that a failing session never keeps the others' live rows behind. A failing
    // one stays marked and is tried again by the next fold.
    const std::vector<int64_t> all(touched.begin(), touched.end());
    in_batches(
        all.size(), size_t(std::max(settings.calculation_batch_size, 1)),
        [&](size_t first, size_t last) {
            return std::pair<int, int>(int(last - first), fold_some({all.begin() + long(first),
                                                                     all.begin() + long(last)}));
        },
        [&](std::pair<int, int> done) {
            out.sessions += done.first;
            out.flagged += done.second;
        },
        [&](size_t k, const std::string& error) {
            ++out.failed;
            if (!out.message.empty()) out.message += "; ";
            out.message += "session " + std::to_string(all[k]) + ": " + error;
            spi.exec(
                "UPDATE @s.attendance_session_schedule SET needs_fold = true "
                "WHERE session_id = $1",
                {Arg::int8(all[k])});
        });
    spi.exec(
        "UPDATE @s.attendance_fold_state SET safe_id = CASE WHEN $1 THEN greatest(safe_id, $2) "
        "ELSE safe_id END, "
        "last_fold_at = now(), last_events = $3, last_sessions = $4, "
        "last_lag_ms = CASE WHEN $5 >= 0 THEN $5 END, folds = folds + 1",
        {Arg::boolean(out.complete), Arg::int8(high), Arg::int4(int32_t(out.events)),
         Arg::int4(out.sessions), Arg::int8(lag_ms)});
    return out;
}

int rederive_open(SpiSession& spi) {
    // Only a person with an open connection changes as time passes: those persons are
    // derived again (a session marked for the fold meanwhile is derived whole).
    std::map<int64_t, std::set<std::string>> open;
    for (const Row& r : spi.query(
             "SELECT DISTINCT c.session_id, c.user_key FROM @s.attendance_sessions c "
             "WHERE c.leave_time IS NULL "
             "AND NOT EXISTS (SELECT 1 FROM @s.attendance_session_schedule s WHERE s.session_id = "
             "c.session_id AND to_jsonb(s) ->> 'events_retired_at' IS NOT NULL)",
             {}, false))
        open[r[0].int8()].insert(r[1].str(""));
    if (open.empty()) return 0;
    std::vector<int64_t> ids;
    for (const auto& [id, keys] : open) ids.push_back(id);
    store_live(spi, derive_sessions(spi, ids, true, nullptr, has_rooms(spi) ? &open : nullptr));
    return int(ids.size());
}

}  // namespace attendance::pg
