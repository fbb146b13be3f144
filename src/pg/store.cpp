#include "pg/store.hpp"

#include "pg/columns.hpp"

#include <optional>
#include <set>

namespace attendance::pg {

namespace {

// ---- attendance_sessions: a session's connections --------------------------------------

struct ConnectionRows : Columns {
    Column<int64_t> session_id{*this, "session_id"};
    Column<std::string> participant_sid{*this, "participant_sid"};
    Column<std::string> user_key{*this, "user_key"};
    Column<Time> join_time{*this, "join_time"};
    Column<OptText> join_source{*this, "join_source"};
    Column<Time> leave_time{*this, "leave_time"};
    Column<OptText> end_reason{*this, "end_reason"};
    Column<bool> leave_is_synthetic{*this, "leave_is_synthetic"};
    Column<OptText> disconnect_reason{*this, "disconnect_reason"};
    Column<OptText> join_event_id{*this, "join_event_id"};
    Column<OptText> leave_event_id{*this, "leave_event_id"};
    std::optional<Column<std::string>> room_name;  // 0.5.0 on

    explicit ConnectionRows(bool rooms) {
        if (rooms) room_name.emplace(*this, "room_name");
    }
    void add(int64_t session, const std::string& key, const core::DerivedConnection& c) {
        session_id.add(session);
        participant_sid.add(c.sid);
        user_key.add(key);
        join_time.add(c.join_ms);
        join_source.add(c.join_source);
        leave_time.add(c.leave_ms);
        end_reason.add(c.end_reason);
        leave_is_synthetic.add(c.synthetic_leave);
        disconnect_reason.add(c.disconnect_reason);
        join_event_id.add(c.join_event_id);
        leave_event_id.add(c.leave_event_id);
        if (room_name) room_name->add(c.room);
    }
};

// What a session's derivation replaces: all its rows (a whole session), or (derived for
// some persons) theirs. vanished: of the persons derived, only those the derivation no
// longer has (the rows a derivation for some persons removes). Two shapes, so that each
// statement reads the table by its index: a whole session by session_id = ANY, a person by
// (session_id, user_key).
struct PersonKeys : Columns {
    Column<int64_t> session_id{*this, "session_id"};
    Column<std::string> user_key{*this, "user_key"};
};
struct Scope {
    std::vector<int64_t> sessions;
    PersonKeys persons;

    Scope(const std::vector<const Derived*>& derived, bool vanished) {
        for (const Derived* s : derived) {
            const Derived& d = *s;
            if (!d.input.only) {
                sessions.push_back(d.input.session_id);
                continue;
            }
            for (const std::string& key : *d.input.only) {
                if (vanished && d.outcome.derivation.persons.count(key)) continue;
                persons.session_id.add(d.input.session_id);
                persons.user_key.add(key);
            }
        }
    }
};

// {from} and {which}: the rows of whole sessions, or of persons (docs: Scope above).
constexpr const char* kWholeSessions = "m.session_id = ANY ($1::bigint[])";
constexpr const char* kPersonsFrom = " USING {persons}";
constexpr const char* kPersons = "m.session_id = p.session_id AND m.user_key = p.user_key";

constexpr const char* kDeleteConnections = R"sql(
DELETE FROM @s.attendance_sessions m{from} WHERE {which}
)sql";

constexpr const char* kInsertConnections = R"sql(
INSERT INTO @s.attendance_sessions ({names}) SELECT * FROM {rows}
)sql";

// The statement for one shape of a scope, and its first arguments.
std::string scoped(std::string sql, bool whole, const PersonKeys& persons) {
    sql = fill_in(sql, "from", whole ? "" : kPersonsFrom);
    sql = fill_in(sql, "which", whole ? kWholeSessions : kPersons);
    return fill_in(sql, "persons", persons.unnest("p"));
}

void store_connections(SpiSession& spi, const std::vector<const Derived*>& sessions, bool rooms) {
    if (sessions.empty()) return;
    const Scope scope(sessions, false);
    if (!scope.sessions.empty())
        spi.exec(scoped(kDeleteConnections, true, scope.persons),
                 {Arg::int8_array(scope.sessions)});
    if (!scope.persons.empty())
        spi.exec(scoped(kDeleteConnections, false, scope.persons), scope.persons.args());
    ConnectionRows rows(rooms);
    size_t connections = 0;
    for (const Derived* s : sessions) {
        connections += s->outcome.derivation.rowless.size();
        for (const auto& [key, p] : s->outcome.derivation.persons)
            connections += p.connections.size();
    }
    rows.reserve(connections);
    for (const Derived* s : sessions) {
        const Derived& d = *s;
        const auto& derivation = d.outcome.derivation;
        for (const core::DerivedConnection& c : derivation.rowless)
            rows.add(d.input.session_id, c.user_key, c);
        for (const auto& [key, p] : derivation.persons)
            for (const core::DerivedConnection& c : p.connections)
                rows.add(d.input.session_id, key, c);
    }
    if (rows.empty()) return;
    spi.exec(fill_in(fill_in(kInsertConnections, "names", rows.names()), "rows", rows.unnest("x")),
             rows.take());
}

// ---- meeting_attendances: one row per person -------------------------------------------

// A person's row: the live columns from the derivation, and with `calculated` the result.
struct PersonRows : Columns {
    Column<int64_t> session_id{*this, "session_id"};
    Column<std::string> user_key{*this, "user_key"};
    Column<OptInt8> user_id{*this, "user_id"};
    Column<OptText> participant_identity{*this, "participant_identity"};
    Column<OptText> participant_name{*this, "participant_name"};
    Column<std::string> role{*this, "role"};
    Column<Time> first_join_time{*this, "first_join_time"};
    Column<Time> last_leave_time{*this, "last_leave_time"};
    Column<int64_t> join_count{*this, "join_count"};
    Column<int64_t> leave_count{*this, "leave_count"};
    Column<JsonText> join_leave_cycles{*this, "join_leave_cycles"};
    Column<int64_t> total_duration_minutes{*this, "total_duration_minutes"};
    // the result (NULL for a live row)
    Column<bool> calculated{*this, "calculated"};
    Column<OptText> attendance_status{*this, "attendance_status"};
    Column<OptText> status_rule{*this, "status_rule"};
    Column<Numeric> attendance_percentage{*this, "attendance_percentage"};
    Column<OptInt8> presence_ms{*this, "presence_ms"};
    Column<OptInt8> session_duration_minutes{*this, "session_duration_minutes"};
    Column<OptText> policy_name{*this, "policy_name"};
    Column<bool> is_calculated{*this, "is_calculated"};
    Column<std::string> cause{*this, "cause"};

    void add(const Derived& d, const std::string& key, const core::DerivedPerson& p,
             const core::PersonOutcome* result) {
        session_id.add(d.input.session_id);
        user_key.add(key);
        user_id.add(p.user_id);
        participant_identity.add(p.identity);
        participant_name.add(p.name);
        role.add(p.role);
        first_join_time.add(p.first_join_ms);
        last_leave_time.add(p.last_leave_ms);
        join_count.add(p.join_count);
        leave_count.add(p.leave_count);
        join_leave_cycles.add(core::cycles_json(p).dump());
        total_duration_minutes.add(result ? result->total_duration_minutes : p.connected_minutes);
        calculated.add(result != nullptr);
        attendance_status.add(result ? result->status : "");
        status_rule.add(result ? result->rule : "");
        attendance_percentage.add(result ? core::format_percentage(result->percentage_hundredths)
                                         : "");
        presence_ms.add(result ? std::optional<int64_t>(result->presence_ms) : std::nullopt);
        const auto& w = d.input.window;
        session_duration_minutes.add(
            result ? std::optional<int64_t>(((w.end_ms - w.start_ms) + 30'000) / 60'000)
                   : std::nullopt);
        policy_name.add(result && d.input.policy ? d.input.policy->name : "");
        is_calculated.add(result && d.input.over());
        cause.add(result ? d.outcome.cause : "");
    }
};

// A calculation's audit of the rows it is about to store ({rows} as r): each change of a
// calculated status or percentage, and every override, with the batch's cause.
constexpr const char* kAuditResults = R"sql(
WITH r AS (SELECT * FROM {rows}),
-- (LATERAL with LIMIT: one index probe per result row, never a scan of the whole table)
old AS (SELECT r.session_id, r.user_key, m.attendance_status, m.attendance_percentage,
               m.attendance_calculated_at
        FROM r, LATERAL (SELECT * FROM @s.meeting_attendances m
                         WHERE m.session_id = r.session_id AND m.user_key = r.user_key LIMIT 1) m
        WHERE r.calculated),
audit AS (INSERT INTO @s.attendance_status_changes (session_id, user_key, old_status, new_status,
                                                     old_percentage, new_percentage, cause, actor)
          SELECT r.session_id, r.user_key, old.attendance_status, r.attendance_status,
                 old.attendance_percentage, r.attendance_percentage, r.cause, session_user
          FROM r LEFT JOIN old USING (session_id, user_key)
          WHERE r.calculated AND (old.attendance_calculated_at IS NOT NULL OR r.status_rule = 'override')
            AND (old.attendance_status IS DISTINCT FROM r.attendance_status
                 OR old.attendance_percentage IS DISTINCT FROM r.attendance_percentage)
          RETURNING 1)
)sql";

// The one merge rule of a person's row (docs/architecture.md, "Calculation"): the facts
// (user id, identity, name) keep what is known; the live columns are the derivation's; a
// result replaces the result columns and the role it used, and the audit records each
// change of a calculated status or percentage (and every override); a live row leaves a
// stored result, its role and its minutes as they are, and shows as not calculated while
// the session is flagged ($pending). A row that would not change is not written.
// {r}: the rows (a calculation's come after kAuditResults, the fold's from their arrays).
constexpr const char* kStorePersons = R"sql(
INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id,
           participant_identity, participant_name, role, first_join_time, last_leave_time,
           join_count, leave_count, join_leave_cycles, total_duration_minutes, attendance_status,
           status_rule, attendance_percentage, presence_ms, session_duration_minutes, policy_name,
           is_calculated, attendance_calculated_at{derived_role})
       SELECT r.session_id, r.user_key, r.user_id, r.participant_identity, r.participant_name,
              r.role, r.first_join_time, r.last_leave_time, r.join_count, r.leave_count,
              r.join_leave_cycles, r.total_duration_minutes, r.attendance_status, r.status_rule,
              r.attendance_percentage, r.presence_ms, r.session_duration_minutes, r.policy_name,
              r.is_calculated, CASE WHEN r.calculated THEN now() END{r_role}
       FROM {r}
       ON CONFLICT (session_id, user_key) DO UPDATE SET
         user_id = coalesce(excluded.user_id, m.user_id),
         participant_identity = coalesce(excluded.participant_identity, m.participant_identity),
         participant_name = coalesce(excluded.participant_name, m.participant_name),
         role = CASE WHEN excluded.attendance_calculated_at IS NULL AND m.is_calculated
                     THEN m.role ELSE excluded.role END,
         first_join_time = excluded.first_join_time, last_leave_time = excluded.last_leave_time,
         join_count = excluded.join_count, leave_count = excluded.leave_count,
         join_leave_cycles = excluded.join_leave_cycles,
         total_duration_minutes = CASE WHEN excluded.attendance_calculated_at IS NULL
                                            AND m.attendance_calculated_at IS NOT NULL
                                       THEN m.total_duration_minutes
                                       ELSE excluded.total_duration_minutes END,
         attendance_status = CASE WHEN excluded.attendance_calculated_at IS NULL
                                  THEN m.attendance_status ELSE excluded.attendance_status END,
         status_rule = CASE WHEN excluded.attendance_calculated_at IS NULL
                            THEN m.status_rule ELSE excluded.status_rule END,
         attendance_percentage = CASE WHEN excluded.attendance_calculated_at IS NULL
                                      THEN m.attendance_percentage
                                      ELSE excluded.attendance_percentage END,
         presence_ms = CASE WHEN excluded.attendance_calculated_at IS NULL
                            THEN m.presence_ms ELSE excluded.presence_ms END,
         session_duration_minutes = CASE WHEN excluded.attendance_calculated_at IS NULL
                                         THEN m.session_duration_minutes
                                         ELSE excluded.session_duration_minutes END,
         policy_name = CASE WHEN excluded.attendance_calculated_at IS NULL
                            THEN m.policy_name ELSE excluded.policy_name END,
         is_calculated = CASE WHEN excluded.attendance_calculated_at IS NULL
                              THEN m.is_calculated AND m.session_id <> ALL ({pending})
                              ELSE excluded.is_calculated END,
         attendance_calculated_at = coalesce(excluded.attendance_calculated_at,
                                             m.attendance_calculated_at),
         {set_derived_role}updated_at = now()
       WHERE excluded.attendance_calculated_at IS NOT NULL
          OR (m.first_join_time, m.last_leave_time, m.join_count, m.leave_count,
              m.join_leave_cycles, m.participant_name, m.participant_identity, m.user_id,
              m.is_calculated{m_derived_role}) IS DISTINCT FROM
             (excluded.first_join_time, excluded.last_leave_time, excluded.join_count,
              excluded.leave_count, excluded.join_leave_cycles,
              coalesce(excluded.participant_name, m.participant_name),
              coalesce(excluded.participant_identity, m.participant_identity),
              coalesce(excluded.user_id, m.user_id),
              m.is_calculated AND m.session_id <> ALL ({pending}){excluded_derived_role})
)sql";

// The one way a person's row is removed: the rows of a derivation's scope that it no longer
// has (the session moved, a roster role became observer, a person forgotten). A row that
// holds a result goes only with a calculation of its session ($results), audited with that
// calculation's cause.
constexpr const char* kRemovePersons = R"sql(
WITH gone AS (
  DELETE FROM @s.meeting_attendances m{from}
  WHERE {which}
    -- (a hashed subplan; NOT EXISTS over an unnest may be planned as a quadratic loop)
    AND (m.session_id, m.user_key) NOT IN (SELECT k.session_id, k.user_key FROM {keep})
    AND (m.attendance_calculated_at IS NULL OR m.session_id = ANY ({results}))
  RETURNING m.session_id, m.user_key, m.attendance_status, m.attendance_percentage,
            m.attendance_calculated_at)
INSERT INTO @s.attendance_status_changes (session_id, user_key, old_status, new_status,
                                          old_percentage, new_percentage, cause, actor)
SELECT g.session_id, g.user_key, g.attendance_status, NULL, g.attendance_percentage, NULL,
       c.cause, session_user
FROM gone g JOIN unnest({results}, {causes}) c(session_id, cause) USING (session_id)
WHERE g.attendance_calculated_at IS NOT NULL
)sql";

constexpr const char* kShowPending = R"sql(
UPDATE @s.meeting_attendances SET is_calculated = false, updated_at = now()
WHERE session_id = ANY($1) AND is_calculated
)sql";

void store_persons(SpiSession& spi, const std::vector<Derived>& sessions, bool rooms,
                   bool results) {
    if (sessions.empty()) return;
    PersonRows rows;
    PersonKeys keep;
    std::vector<int64_t> pending, result_sessions;
    std::vector<std::string> causes;
    // Removed first: a row no derivation has any more (nothing to do when every person a
    // derivation for some persons derived is still there).
    std::vector<const Derived*> all;
    for (const Derived& d : sessions) all.push_back(&d);
    const Scope scope(all, true);
    const bool removing = !scope.sessions.empty() || !scope.persons.empty();
    size_t persons = 0;
    for (const Derived& d : sessions) persons += d.outcome.derivation.persons.size();
    rows.reserve(persons);
    if (removing) keep.reserve(persons);
    for (const Derived& d : sessions) {
        // A calculated session waiting for its recalculation: its rows show as not calculated.
        if (d.input.calculated && (d.input.pending_cause || d.input.unseen_events))
            pending.push_back(d.input.session_id);
        if (results) {
            result_sessions.push_back(d.input.session_id);
            causes.push_back(d.outcome.cause);
        }
        size_t k = 0;  // results are in the order of the persons
        for (const auto& [key, p] : d.outcome.derivation.persons) {
            if (removing) {
                keep.session_id.add(d.input.session_id);
                keep.user_key.add(key);
            }
            const bool has = results && k < d.outcome.results.size();
            rows.add(d, key, p, has ? &d.outcome.results[k] : nullptr);
            ++k;
        }
    }
    auto remove = [&](bool whole) {
        std::vector<Arg> args =
            whole ? std::vector<Arg>{Arg::int8_array(scope.sessions)} : scope.persons.args();
        const int n = int(args.size());
        for (Arg& a : keep.args()) args.push_back(std::move(a));
        args.push_back(Arg::int8_array(result_sessions));
        args.push_back(Arg::text_array(causes));
        std::string sql = scoped(kRemovePersons, whole, scope.persons);
        sql = fill_in(sql, "keep", keep.unnest("k", n + 1));
        sql = fill_in(sql, "results", "$" + std::to_string(n + 3) + "::bigint[]");
        sql = fill_in(sql, "causes", "$" + std::to_string(n + 4) + "::text[]");
        spi.exec(sql, args);
    };
    if (!scope.sessions.empty()) remove(true);
    if (!scope.persons.empty()) remove(false);
    // Of a session derived for some persons, the rows not derived now show as not
    // calculated too while it is flagged.
    std::vector<int64_t> some_pending;
    for (const Derived& d : sessions)
        if (d.input.only && d.input.calculated && (d.input.pending_cause || d.input.unseen_events))
            some_pending.push_back(d.input.session_id);
    if (!some_pending.empty()) spi.exec(kShowPending, {Arg::int8_array(some_pending)});
    if (rows.empty()) return;
    const int m = int(rows.width());
    // A calculation's rows go through kAuditResults first; the fold's are read straight from
    // their arrays.
    std::string store = results ? fill_in(kAuditResults, "rows", rows.unnest("x")) +
                                      fill_in(kStorePersons, "r", "r")
                                : fill_in(kStorePersons, "r", rows.unnest("r"));
    store = fill_in(store, "pending", "$" + std::to_string(m + 1) + "::bigint[]");
    // the role the derivation gives now, whatever the stored result's (a calculation that
    // reads what the fold stored takes it from here); an earlier version's schema has none
    store = fill_in(store, "derived_role", rooms ? ", derived_role" : "");
    store = fill_in(store, "r_role", rooms ? ", r.role" : "");
    store =
        fill_in(store, "set_derived_role", rooms ? "derived_role = excluded.derived_role, " : "");
    store = fill_in(store, "m_derived_role", rooms ? ", m.derived_role" : "");
    store = fill_in(store, "excluded_derived_role", rooms ? ", excluded.derived_role" : "");
    std::vector<Arg> store_args = rows.take();
    store_args.push_back(Arg::int8_array(pending));
    spi.exec(store, store_args);
}

// ---- the schedule's derived columns ----------------------------------------------------

struct RoomFinishedRows : Columns {
    Column<int64_t> session_id{*this, "session_id"};
    Column<Time> room_finished_at{*this, "room_finished_at"};
};

constexpr const char* kStoreRoomFinished = R"sql(
UPDATE @s.attendance_session_schedule s SET room_finished_at = x.room_finished_at
FROM {rows} WHERE s.session_id = x.session_id
  AND s.room_finished_at IS DISTINCT FROM x.room_finished_at
)sql";

struct CalculatedRows : Columns {
    Column<int64_t> session_id{*this, "session_id"};
    Column<bool> is_final{*this, "is_final"};
    Column<Time> room_finished_at{*this, "room_finished_at"};
};

// A calculated session: when, with which snapshot (what it saw of the log), the latest
// room_finished of its rooms; calculated again while its results are not final.
constexpr const char* kStoreCalculated = R"sql(
UPDATE @s.attendance_session_schedule s
SET calculated_at = now(), calculated_snapshot = {snapshot}::pg_snapshot,
    room_finished_at = x.room_finished_at, needs_calculation = NOT x.is_final,
    recalculation_cause = NULL, failed_attempts = 0, last_error = NULL, next_attempt_at = NULL,
    updated_at = now()
FROM {rows} WHERE s.session_id = x.session_id
)sql";

// Low-attendance alerts of the courses these sessions belong to, once for the batch and in
// its transaction: every path that stores results comes through here.
constexpr const char* kEvaluateAlerts = R"sql(
SELECT @s._attendance_evaluate_alerts($1::bigint[], $2::text[])
)sql";

constexpr const char* kNotify = R"sql(
SELECT pg_notify('attendance_calculated', x::text) FROM unnest($1::bigint[]) x
)sql";

}  // namespace

void store_fold(SpiSession& spi, const std::vector<Derived>& sessions, bool rooms_schema) {
    std::vector<const Derived*> all;
    for (const Derived& d : sessions) all.push_back(&d);
    store_connections(spi, all, rooms_schema);
    // The latest room_finished of each scheduled session's rooms, as a calculation writes
    // it (a calculation that reads what the fold stored takes it from here).
    RoomFinishedRows finished;
    for (const Derived& d : sessions)
        if (d.input.scheduled) {
            finished.session_id.add(d.input.session_id);
            finished.room_finished_at.add(d.outcome.derivation.room_finished_ms);
        }
    if (!finished.empty())
        spi.exec(fill_in(kStoreRoomFinished, "rows", finished.unnest("x")), finished.args());
    store_persons(spi, sessions, rooms_schema, false);
}

void store_calculation(SpiSession& spi, const std::vector<Derived>& sessions, bool rooms_schema,
                       const std::string& snapshot) {
    if (sessions.empty()) return;
    // (connections read from the store as they are need not be written again)
    std::vector<const Derived*> changed;
    for (const Derived& d : sessions)
        if (!d.input.store_current) changed.push_back(&d);
    store_connections(spi, changed, rooms_schema);
    store_persons(spi, sessions, rooms_schema, true);
    CalculatedRows calculated;
    std::vector<int64_t> ids;
    std::vector<std::string> causes;
    for (const Derived& d : sessions) {
        calculated.session_id.add(d.input.session_id);
        calculated.is_final.add(d.input.over());
        calculated.room_finished_at.add(d.outcome.derivation.room_finished_ms);
        ids.push_back(d.input.session_id);
        causes.push_back(d.outcome.cause);
    }
    const size_t width = calculated.width();
    const std::string calculated_sql =
        fill_in(fill_in(kStoreCalculated, "rows", calculated.unnest("x")), "snapshot",
                "$" + std::to_string(width + 1));
    std::vector<Arg> args = calculated.take();
    args.push_back(Arg::text(snapshot));
    spi.exec(calculated_sql, args);
    spi.query(kEvaluateAlerts, {Arg::int8_array(ids), Arg::text_array(causes)});
    spi.query(kNotify, {Arg::int8_array(ids)});
}

}  // namespace attendance::pg
