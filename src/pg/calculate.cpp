// attendance_calculate / attendance_explain / attendance_reconcile: a session's events are
// derived (pg/derive, core/derive), the pure rules in core/calc give each person's status,
// and this file stores the results with their audit (docs/architecture.md).
#include "pg/calculate.hpp"

#include "pg/args.hpp"
#include "pg/crossings.hpp"
#include "pg/transactions.hpp"
#include "pg/scheduler.hpp"
#include "pg/settings.hpp"

#include "core/calc.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_calculate_session);
PG_FUNCTION_INFO_V1(attendance_calculate_due);
PG_FUNCTION_INFO_V1(attendance_calculate_list);
PG_FUNCTION_INFO_V1(attendance_explain);
PG_FUNCTION_INFO_V1(attendance_reconcile);
PG_FUNCTION_INFO_V1(attendance_prevailing_cause);
}

namespace attendance::pg {

namespace {

#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

#define NUMBERS(a)                                                                                 \
    "(" a ".absent_below * 100)::bigint, (" a                                                      \
    ".partial_below * 100)::bigint, " MS(a ".late_after") ", (" a ".late_max * 100)::bigint, " MS( \
        a ".merge_gap") ", " MS(a ".reconnect_grace")

core::PolicyNumbers numbers_from(const Row& r, size_t at) {
    core::PolicyNumbers n;
    n.absent_below_bp = r[at].int8();
    n.partial_below_bp = r[at + 1].int8();
    n.late_after_ms = r[at + 2].int8();
    n.late_max_bp = r[at + 3].int8();
    n.merge_gap_ms = r[at + 4].int8();
    n.reconnect_grace_ms = r[at + 5].int8();
    return n;
}

// The policies named by `names`, each with its role-specific numbers.
std::map<std::string, core::Policy> load_policies(SpiSession& spi,
                                                  const std::vector<std::string>& names, bool ro) {
    std::map<std::string, core::Policy> out;
    for (const auto& r : spi.query("SELECT p.name, " NUMBERS("p") " FROM @s.attendance_policies p "
                                                                  "WHERE p.name = ANY($1)",
                                   {Arg::text_array(names)}, ro)) {
        core::Policy& policy = out[r[0].str("")];
        policy.name = r[0].str("");
        policy.numbers = numbers_from(r, 1);
    }
    for (const auto& r : spi.query(
             "SELECT r.policy_name, r.role, " NUMBERS(
                 "x") " FROM @s.attendance_policy_roles r "
                      "JOIN @s.attendance_policies p ON p.name = r.policy_name, "
                      "LATERAL (SELECT coalesce(r.absent_below, p.absent_below) AS absent_below, "
                      "coalesce(r.partial_below, p.partial_below) AS partial_below, "
                      "coalesce(r.late_after, p.late_after) AS late_after, "
                      "coalesce(r.late_max, p.late_max) AS late_max, "
                      "coalesce(r.merge_gap, p.merge_gap) AS merge_gap, "
                      "coalesce(r.reconnect_grace, p.reconnect_grace) AS reconnect_grace) x "
                      "WHERE r.policy_name = "
                      "ANY($1)",
             {Arg::text_array(names)}, ro)) {
        auto it = out.find(r[0].str(""));
        if (it != out.end()) it->second.by_role[r[1].str("")] = numbers_from(r, 2);
    }
    return out;
}

// A scheduled session derived from the log, with its policy: everything its calculation
// reads. `snapshot` receives the snapshot the log was read with.
struct SessionData {
    Derived d;
    core::Policy policy;
    bool over = false;  // the scheduled end has passed
    std::optional<std::string> override_status(const std::string& key) const {
        auto it = d.overrides.find(key);
        if (it == d.overrides.end()) return std::nullopt;
        return it->second.first;
    }
};

std::vector<SessionData> load_sessions(SpiSession& spi, const std::vector<int64_t>& ids, bool lock,
                                       std::string* snapshot = nullptr, bool from_store = false) {
    std::vector<SessionData> out;
    std::vector<std::string> policy_names;
    for (Derived& d : derive_sessions(spi, ids, lock, snapshot, nullptr, from_store)) {
        if (!d.scheduled) continue;
        SessionData& s = out.emplace_back();
        s.over = d.window.as_of_ms >= d.window.end_ms;
        policy_names.push_back(d.policy_name);
        s.d = std::move(d);
    }
    if (out.empty()) return out;
    const auto policies = load_policies(spi, policy_names, !lock);
    for (SessionData& s : out) {
        auto it = policies.find(s.d.policy_name);
        if (it == policies.end())
            throw core::Error("42704", "policy \"" + s.d.policy_name + "\" of session " +
                                           std::to_string(s.d.session_id) + " does not exist");
        s.policy = it->second;
    }
    return out;
}

// The result rows of a batch as typed arrays, one element per person: the write is one
// statement whatever the batch's size, and nothing is parsed again on the way in.
struct ResultColumns {
    std::vector<int64_t> session_id, user_id, presence_ms, minutes, session_minutes;
    std::vector<bool> user_id_null, is_final;
    std::vector<std::string> user_key, role, status, rule, pct, cause, policy;
    // the live columns, from the same derivation (one write per person)
    std::vector<std::string> identity, name, cycles;
    std::vector<bool> identity_null, name_null, first_null, last_null;
    std::vector<int64_t> first_ms, last_ms, joins, leaves;

    void add(const SessionData& s, const core::DerivedPerson& person, const core::PersonResult& r,
             const std::string& why) {
        session_id.push_back(s.d.session_id);
        user_key.push_back(person.user_key);
        user_id.push_back(person.user_id.value_or(0));
        user_id_null.push_back(!person.user_id);
        role.push_back(person.role);
        status.push_back(r.status);
        rule.push_back(r.rule);
        pct.push_back(core::format_percentage(r.percentage_hundredths));
        presence_ms.push_back(r.presence_ms);
        minutes.push_back(r.total_duration_minutes);
        session_minutes.push_back(((s.d.window.end_ms - s.d.window.start_ms) + 30'000) / 60'000);
        cause.push_back(why);
        policy.push_back(s.policy.name);
        is_final.push_back(s.over);
        identity.push_back(person.identity);
        identity_null.push_back(person.identity.empty());
        name.push_back(person.name);
        name_null.push_back(person.name.empty());
        first_ms.push_back(person.first_join_ms.value_or(0));
        first_null.push_back(!person.first_join_ms);
        last_ms.push_back(person.last_leave_ms.value_or(0));
        last_null.push_back(!person.last_leave_ms);
        joins.push_back(person.join_count);
        leaves.push_back(person.leave_count);
        cycles.push_back(core::cycles_json(person).dump());
    }
};

// One statement: audit the changes against the previous calculation, then store.
// derived_role: the schema has the column (0.5.0; an earlier version's objects, which the
// worker meets between a package upgrade and ALTER EXTENSION UPDATE, do not).
std::string store_results_sql(bool derived_role) {
    return std::string(
               "WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], "
               "$4::text[], "
               "    $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], "
               "    $11::text[], $12::text[], $13::bool[], $14::text[], $15::text[], "
               "$16::bigint[], "
               "    $17::bigint[], $18::bigint[], $19::bigint[], $20::text[]) "
               "  AS x(session_id, user_key, user_id, role, status, rule, pct_text, presence_ms, "
               "minutes, "
               "       session_minutes, cause, policy_name, is_final, identity, name, first_ms, "
               "last_ms, "
               "       joins, leaves, cycles)), "
               // LATERAL with LIMIT (the key is unique; the LIMIT keeps the planner from turning it
               // into a join): one index probe per result row, never a scan of the whole table
               "old AS (SELECT r.session_id, r.user_key, m.attendance_status, "
               "m.attendance_percentage, "
               "    m.attendance_calculated_at "
               "  FROM r, LATERAL (SELECT * FROM @s.meeting_attendances m "
               "    WHERE m.session_id = r.session_id AND m.user_key = r.user_key LIMIT 1) m), "
               "audit AS (INSERT INTO @s.attendance_status_changes (session_id, user_key, "
               "old_status, "
               "    new_status, old_percentage, new_percentage, cause, actor) "
               "  SELECT r.session_id, r.user_key, old.attendance_status, r.status, "
               "    old.attendance_percentage, r.pct_text::numeric(5,2), r.cause, session_user "
               "  FROM r LEFT JOIN old USING (session_id, user_key) "
               "  WHERE (old.attendance_calculated_at IS NOT NULL OR r.rule = 'override') "
               "    AND (old.attendance_status IS DISTINCT FROM r.status "
               "         OR old.attendance_percentage IS DISTINCT FROM r.pct_text::numeric(5,2)) "
               "  RETURNING 1), "
               "up AS (INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id, "
               "role, "
               "    attendance_status, status_rule, attendance_percentage, presence_ms, "
               "    total_duration_minutes, session_duration_minutes, policy_name, is_calculated, "
               "    attendance_calculated_at, participant_identity, participant_name, "
               "first_join_time, "
               "    last_leave_time, join_count, leave_count, join_leave_cycles") +
           (derived_role ? ", derived_role" : "") +
           ") "
           "  SELECT r.session_id, r.user_key, r.user_id, r.role, r.status, r.rule, "
           "    r.pct_text::numeric(5,2), r.presence_ms, r.minutes, r.session_minutes, "
           "r.policy_name, "
           "    r.is_final, now(), r.identity, r.name, "
           "    'epoch'::timestamptz + r.first_ms * interval '1 millisecond', "
           "    'epoch'::timestamptz + r.last_ms * interval '1 millisecond', r.joins, r.leaves, "
           "    r.cycles::jsonb" +
           (derived_role ? ", r.role" : "") +
           " FROM r "
           "  ON CONFLICT (session_id, user_key) DO UPDATE SET "
           "    user_id = coalesce(excluded.user_id, m.user_id), role = excluded.role, "
           "    participant_identity = coalesce(excluded.participant_identity, "
           "m.participant_identity), "
           "    participant_name = coalesce(excluded.participant_name, m.participant_name), "
           "    first_join_time = excluded.first_join_time, last_leave_time = "
           "excluded.last_leave_time, "
           "    join_count = excluded.join_count, leave_count = excluded.leave_count, "
           "    join_leave_cycles = excluded.join_leave_cycles, "
           "    attendance_status = excluded.attendance_status, status_rule = "
           "excluded.status_rule, "
           "    attendance_percentage = excluded.attendance_percentage, "
           "    presence_ms = excluded.presence_ms, "
           "    total_duration_minutes = excluded.total_duration_minutes, "
           "    session_duration_minutes = excluded.session_duration_minutes, "
           "    policy_name = excluded.policy_name, is_calculated = excluded.is_calculated, "
           "    attendance_calculated_at = excluded.attendance_calculated_at, " +
           (derived_role ? "derived_role = excluded.derived_role, " : "") +
           "updated_at = now() "
           "  RETURNING 1) "
           "SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM audit)";
}

// Rows of persons the derivation no longer has (the session moved, a roster role became
// observer): removed, and audited when they held a result.
constexpr const char* kRemoveVanished =
    "WITH gone AS (DELETE FROM @s.meeting_attendances m WHERE m.session_id = ANY($1) "
    // (a hashed subplan; NOT EXISTS over an unnest may be planned as a quadratic loop)
    "  AND (m.session_id, m.user_key) NOT IN (SELECT x.session_id, x.user_key "
    "    FROM unnest($3::bigint[], $4::text[]) x(session_id, user_key)) "
    "  RETURNING m.session_id, m.user_key, m.attendance_status, m.attendance_percentage, "
    "    m.attendance_calculated_at) "
    "INSERT INTO @s.attendance_status_changes (session_id, user_key, old_status, new_status, "
    "  old_percentage, new_percentage, cause, actor) "
    "SELECT g.session_id, g.user_key, g.attendance_status, NULL, g.attendance_percentage, NULL, "
    "  c.cause, session_user FROM gone g JOIN unnest($1::bigint[], $2::text[]) c(session_id, "
    "  cause) USING (session_id) WHERE g.attendance_calculated_at IS NOT NULL";

// The cause a calculation is audited with: a late webhook whenever the session has events
// its last calculation did not see, else the pending cause of a flagged session, else the
// caller's ("manual", "scheduled"); a change the caller makes itself (an override) is
// audited as that change.
std::string cause_of(const Derived& d, const std::string& given) {
    if (given != "manual" && given != "scheduled") return given;
    if (!d.calculated) return given;
    const auto pending = core::prevailing_cause(d.pending_cause, given);
    return *core::prevailing_cause(
        pending,
        d.unseen_events ? std::optional<std::string>(core::kLateWebhookCause) : std::nullopt);
}

// Calculates and stores the scheduled sessions among `ids` (cause per session, same
// order); returns the number of sessions and persons written. Throws on any error, which
// leaves the caller to roll the whole batch back.
struct BatchResult {
    int sessions = 0;
    int persons = 0;
};
BatchResult calculate_batch(SpiSession& spi, const std::vector<int64_t>& ids,
                            const std::vector<std::string>& causes) {
    std::map<int64_t, const std::string*> given_cause;
    for (size_t k = 0; k < ids.size(); ++k) given_cause[ids[k]] = &causes[k];
    std::string snapshot;
    std::vector<SessionData> sessions = load_sessions(spi, ids, true, &snapshot, true);
    BatchResult out;
    if (sessions.empty()) return out;
    ResultColumns rows;
    std::vector<int64_t> done, room_finished;
    std::vector<bool> final_flags, room_finished_null;
    std::vector<std::string> session_causes;
    std::vector<Derived> live;
    for (SessionData& s : sessions) {
        const std::string why = cause_of(s.d, *given_cause[s.d.session_id]);
        for (const auto& [key, person] : s.d.derivation.persons)
            rows.add(s, person,
                     core::calculate_person(s.d.window, s.policy,
                                            person.calc_input(s.override_status(key))),
                     why);
        done.push_back(s.d.session_id);
        final_flags.push_back(s.over);
        session_causes.push_back(why);
        room_finished.push_back(s.d.derivation.room_finished_ms.value_or(0));
        room_finished_null.push_back(!s.d.derivation.room_finished_ms);
        // (connections read from the store as they are need not be written again)
        if (!s.d.store_current) live.push_back(s.d);
    }
    // The live columns and connections from the same derivation, then the results.
    spi.exec(kRemoveVanished, {Arg::int8_array(done), Arg::text_array(session_causes),
                               Arg::int8_array(rows.session_id), Arg::text_array(rows.user_key)});
    // The connections; the persons' live columns go with their results below.
    store_live(spi, live, false);
    if (!rows.session_id.empty())
        spi.query(store_results_sql(sessions.front().d.rooms_schema),
                  {Arg::int8_array(rows.session_id),
                   Arg::text_array(rows.user_key),
                   Arg::int8_array(rows.user_id, rows.user_id_null),
                   Arg::text_array(rows.role),
                   Arg::text_array(rows.status),
                   Arg::text_array(rows.rule),
                   Arg::text_array(rows.pct),
                   Arg::int8_array(rows.presence_ms),
                   Arg::int8_array(rows.minutes),
                   Arg::int8_array(rows.session_minutes),
                   Arg::text_array(rows.cause),
                   Arg::text_array(rows.policy),
                   Arg::bool_array(rows.is_final),
                   Arg::text_array(rows.identity, rows.identity_null),
                   Arg::text_array(rows.name, rows.name_null),
                   Arg::int8_array(rows.first_ms, rows.first_null),
                   Arg::int8_array(rows.last_ms, rows.last_null),
                   Arg::int8_array(rows.joins),
                   Arg::int8_array(rows.leaves),
                   Arg::text_array(rows.cycles)});
    spi.exec(
        "UPDATE @s.attendance_session_schedule s SET calculated_at = now(), "
        "calculated_snapshot = $3::pg_snapshot, "
        "room_finished_at = 'epoch'::timestamptz + x.room_finished_ms * interval '1 millisecond', "
        "needs_calculation = NOT x.is_final, recalculation_cause = NULL, failed_attempts = 0, "
        "last_error = NULL, next_attempt_at = NULL, updated_at = now() "
        "FROM unnest($1::bigint[], $2::bool[], $4::bigint[]) AS x(session_id, is_final, "
        "  room_finished_ms) "
        "WHERE s.session_id = x.session_id",
        {Arg::int8_array(done), Arg::bool_array(final_flags), Arg::text(snapshot),
         Arg::int8_array(room_finished, room_finished_null)});
    // Low-attendance alerts of the courses these sessions belong to, once for the batch and
    // in its transaction: every path that stores results comes through here.
    spi.query("SELECT @s._attendance_evaluate_alerts($1::bigint[], $2::text[])",
              {Arg::int8_array(done), Arg::text_array(session_causes)});
    spi.query("SELECT pg_notify('attendance_calculated', x::text) FROM unnest($1::bigint[]) x",
              {Arg::int8_array(done)});
    out.sessions = int(done.size());
    out.persons = int(rows.session_id.size());
    return out;
}

}  // namespace

int calculate_session(SpiSession& spi, int64_t session_id, const std::string& cause) {
    BatchResult r = calculate_batch(spi, {session_id}, {cause});
    if (r.sessions == 0)
        throw core::Error("42704", "session " + std::to_string(session_id) +
                                       " is not scheduled (see attendance_schedule_session)");
    return r.persons;
}

DueResult calculate_sessions(SpiSession& spi, const std::vector<int64_t>& given_ids,
                             const std::vector<std::string>& given_causes, int batch_size) {
    DueResult out;
    // One global lock order: the whole run holds every batch's locks until it commits, so
    // batches must follow one another in ascending session_id as well, whatever order
    // the sessions came in (two runs with overlapping lists then cannot deadlock).
    std::vector<size_t> order(given_ids.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return given_ids[a] < given_ids[b]; });
    std::vector<int64_t> ids;
    std::vector<std::string> causes;
    for (size_t k : order) {
        ids.push_back(given_ids[k]);
        causes.push_back(given_causes[k]);
    }
    // Each batch at once; when it fails, each of its sessions alone, so that a failing
    // session never stops the others. A session alone is calculate_session, which refuses
    // one that is not scheduled.
    in_batches(
        ids.size(), size_t(std::max(batch_size, 1)),
        [&](size_t first, size_t last) {
            if (last - first == 1) {
                calculate_session(spi, ids[first], causes[first]);
                return 1;
            }
            return calculate_batch(spi, {ids.begin() + long(first), ids.begin() + long(last)},
                                   {causes.begin() + long(first), causes.begin() + long(last)})
                .sessions;
        },
        [&](int sessions) { out.processed += sessions; },
        [&](size_t k, const std::string& error) {
            // Recorded, and retried later with backoff.
            ++out.failed;
            if (!out.message.empty()) out.message += "; ";
            out.message += "session " + std::to_string(ids[k]) + ": " + error;
            spi.exec(
                "UPDATE @s.attendance_session_schedule SET failed_attempts = failed_attempts + 1, "
                "last_error = $2, "
                "next_attempt_at = now() + least(interval '1 hour', interval '5 seconds' * "
                "power(2, least(failed_attempts, 10))) "
                "WHERE session_id = $1",
                {Arg::int8(ids[k]), Arg::text(error)});
        });
    return out;
}

DueResult calculate_due(SpiSession& spi, int batch_size) {
    // A session whose events were retired is not calculated again: its stored results are
    // kept, and the schedule says why (docs/architecture.md, "Partitions and retention").
    spi.exec(
        "UPDATE @s.attendance_session_schedule SET needs_calculation = false, "
        "last_error = 'not calculated again: its logged events were retired at ' || "
        "events_retired_at || ' (attendance.event_retention); the stored results are kept', "
        "updated_at = now() "
        "WHERE needs_calculation AND events_retired_at IS NOT NULL");
    std::vector<int64_t> ids;
    // "Due" has one definition: the view attendance_sessions_due.
    for (const auto& r : spi.query("SELECT session_id FROM @s.attendance_sessions_due "
                                   "WHERE due_at <= now() ORDER BY due_at, session_id LIMIT 10000",
                                   {}, false))  // sees a fold's flags made in this transaction
        ids.push_back(r[0].int8());
    return calculate_sessions(spi, ids, std::vector<std::string>(ids.size(), "scheduled"),
                              batch_size);
}

ReconcileResult reconcile(SpiSession& spi) {
    ReconcileResult out;
    out.sessions_rederived = rederive_open(spi);
    return out;
}

int64_t cleanup_history(SpiSession& spi, int retention_days) {
    int64_t total = 0;
    for (;;) {  // batches keep each delete short
        uint64_t n = spi.exec(
            "DELETE FROM @s.attendance_job_runs WHERE id IN (SELECT id FROM @s.attendance_job_runs "
            "WHERE started_at < now() - make_interval(days => $1) AND status <> 'running' ORDER BY "
            "id LIMIT 1000)",
            {Arg::int4(retention_days)});
        total += int64_t(n);
        if (n < 1000) break;
    }
    return total;
}

namespace {

nlohmann::json explain_person(SpiSession& spi, int64_t session_id, const std::string& user_key) {
    auto sessions = load_sessions(spi, {session_id}, false);
    if (sessions.empty())
        throw core::Error("42704", "session " + std::to_string(session_id) +
                                       " is not scheduled (see attendance_schedule_session)");
    const SessionData& s = sessions.front();
    auto it = s.d.derivation.persons.find(user_key);
    if (it == s.d.derivation.persons.end() && s.d.events_retired_at) {
        // Every event of the person was retired: what is kept is the stored result.
        nlohmann::json trace = {{"session_id", session_id},
                                {"user_key", user_key},
                                {"events_retired_at", *s.d.events_retired_at},
                                {"events_retired",
                                 "the logged events of this session were retired "
                                 "(attendance.event_retention) at " +
                                     *s.d.events_retired_at + "; only the stored result is kept"}};
        auto stored = spi.query(
            "SELECT attendance_status, attendance_percentage::text, attendance_calculated_at::text "
            "FROM @s.meeting_attendances WHERE session_id = $1 AND user_key = $2",
            {Arg::int8(session_id), Arg::text(user_key)}, true);
        if (stored.empty())
            throw core::Error("42704", "no attendance for user " + user_key + " in session " +
                                           std::to_string(session_id));
        trace["stored"] = {{"status", stored[0][0].str("")},
                           {"percentage", stored[0][1].str("")},
                           {"calculated_at", stored[0][2].str("")}};
        return trace;
    }
    if (it == s.d.derivation.persons.end())
        throw core::Error("42704", "no attendance for user " + user_key + " in session " +
                                       std::to_string(session_id));
    const core::DerivedPerson& p = it->second;
    const core::PersonInput input = p.calc_input(s.override_status(user_key));
    core::PersonResult r = core::calculate_person(s.d.window, s.policy, input);
    nlohmann::json trace = core::explain(s.d.window, s.policy, input, r);
    trace["session_id"] = session_id;
    trace["user_key"] = user_key;
    trace["user_id"] = p.user_id ? nlohmann::json(*p.user_id) : nlohmann::json();
    trace["provisional"] = !s.over;
    trace["room_finished"] =
        s.d.derivation.room_finished_ms
            ? nlohmann::json(core::format_timestamp_ms(*s.d.derivation.room_finished_ms))
            : nlohmann::json();
    nlohmann::json derived = nlohmann::json::array();
    for (const core::DerivedConnection& c : p.connections)
        derived.push_back({{"room", c.room},
                           {"participant_sid", c.sid},
                           {"join_source", c.join_source},
                           {"end", c.end_reason},
                           {"disconnect_reason", c.disconnect_reason},
                           {"join_event_id", c.join_event_id},
                           {"leave_event_id", c.leave_event_id}});
    trace["derived_connections"] = derived;
    // The rooms the session spans and how each is linked (docs/architecture.md, "Rooms and
    // windows").
    nlohmann::json rooms = nlohmann::json::array();
    for (const Row& r :
         spi.query("SELECT room_name, link FROM @s._attendance_session_rooms(ARRAY[$1::bigint]) "
                   "ORDER BY link <> 'main', room_name",
                   {Arg::int8(session_id)}, true))
        rooms.push_back({{"room", r[0].str("")}, {"link", r[1].str("")}});
    trace["rooms"] = rooms;
    if (s.d.events_retired_at) {
        trace["events_retired_at"] = *s.d.events_retired_at;
        trace["events_retired"] =
            "events of this session were retired (attendance.event_retention) at " +
            *s.d.events_retired_at +
            "; the derivation above reads only the events still logged, the stored result is "
            "what was calculated from all of them";
    }
    if (auto o = s.d.overrides.find(user_key); o != s.d.overrides.end())
        trace["override_reason"] = o->second.second;
    auto stored = spi.query(
        "SELECT attendance_status, attendance_percentage::text, is_calculated, "
        "attendance_calculated_at::text "
        "FROM @s.meeting_attendances WHERE session_id = $1 AND user_key = $2",
        {Arg::int8(session_id), Arg::text(user_key)}, true);
    if (!stored.empty()) {
        auto j = [](const Value& v) {
            return v.is_null() ? nlohmann::json() : nlohmann::json(v.str());
        };
        trace["stored"] = {{"status", j(stored[0][0])},
                           {"percentage", j(stored[0][1])},
                           {"is_calculated", stored[0][2].truth()},
                           {"calculated_at", j(stored[0][3])}};
    }
    return trace;
}

}  // namespace

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

// _attendance_prevailing_cause(pending, incoming): core::prevailing_cause for the flag.
extern "C" Datum attendance_prevailing_cause(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        const auto cause = core::prevailing_cause(opt_text_arg(fcinfo, 0), opt_text_arg(fcinfo, 1));
        if (!cause) {
            fcinfo->isnull = true;
            return Datum(0);
        }
        return text_datum(*cause);
    });
}

extern "C" Datum attendance_calculate_session(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        int64_t session_id = PG_GETARG_INT64(0);
        std::string cause = text_arg(fcinfo, 1, "cause");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        warn_if_scheduler_absent();
        int n = calculate_session(spi, session_id, cause);
        spi.finish();
        return Int32GetDatum(n);
    });
}

namespace {

Datum processed_failed(FunctionCallInfo fcinfo, const DueResult& r) {
    return int4_row_datum(fcinfo, {r.processed, r.failed});
}

// The elements of a bigint[] argument, each once, in their first order; NULL elements and
// multi-dimensional arrays are refused.
std::vector<int64_t> session_ids_arg(FunctionCallInfo fcinfo, int n) {
    if (PG_ARGISNULL(n)) throw core::Error("22004", "argument \"session_ids\" must not be NULL");
    const Int8Elements e = int8_array_arg(fcinfo, n);
    if (e.dimensions > 1) throw core::Error("2202E", "session_ids must be a one-dimensional array");
    std::vector<int64_t> ids;
    std::set<int64_t> seen;
    for (size_t k = 0; k < e.values.size(); ++k) {
        if (e.nulls[k]) throw core::Error("22004", "session_ids must not contain NULL");
        if (seen.insert(e.values[k]).second) ids.push_back(e.values[k]);
    }
    return ids;
}

}  // namespace

extern "C" Datum attendance_calculate_due(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        warn_if_scheduler_absent();
        // What the worker runs: the fold first, so that a late webhook logged since the
        // last one has flagged its session and is calculated now. A fold that fails does
        // not stop the calculation (the scheduler's next fold retries it).
        const std::string fold_error = in_subtransaction([&] { fold(spi); });
        if (!fold_error.empty())
            log_message(WARNING, "attendance: the fold before calculating failed: " + fold_error);
        DueResult r = calculate_due(spi, settings.calculation_batch_size);
        spi.finish();
        return processed_failed(fcinfo, r);
    });
}

extern "C" Datum attendance_calculate_list(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        std::vector<int64_t> ids = session_ids_arg(fcinfo, 0);
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        // Every id must be scheduled: refused as a whole before anything is calculated.
        auto unknown = spi.query(
            "SELECT string_agg(x::text, ', ' ORDER BY o), count(*) FROM unnest($1::bigint[]) "
            "WITH ORDINALITY AS u(x, o) WHERE NOT EXISTS (SELECT 1 FROM "
            "@s.attendance_session_schedule s WHERE s.session_id = u.x)",
            {Arg::int8_array(ids)}, true);
        if (!unknown.empty() && unknown[0][1].int8() != 0)
            throw core::Error("42704", "session(s) " + unknown[0][0].str("") +
                                           " are not scheduled (see attendance_schedule_session)");
        DueResult r = calculate_sessions(spi, ids, std::vector<std::string>(ids.size(), "manual"),
                                         settings.calculation_batch_size);
        spi.finish();
        return processed_failed(fcinfo, r);
    });
}

extern "C" Datum attendance_explain(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        int64_t session_id = PG_GETARG_INT64(0);
        std::string user_key;
        if (argument_type(fcinfo, 1) == INT8OID)
            user_key = std::to_string(PG_GETARG_INT64(1));
        else
            user_key = text_arg(fcinfo, 1, "user_key");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        std::string out = explain_person(spi, session_id, user_key).dump();
        spi.finish();
        return jsonb_from_text(out);
    });
}

extern "C" Datum attendance_reconcile(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        ReconcileResult r = reconcile(spi);
        spi.finish();
        nlohmann::json j = {{"sessions_rederived", r.sessions_rederived}};
        return jsonb_from_text(j.dump());
    });
}
