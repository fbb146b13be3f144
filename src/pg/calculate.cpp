// attendance_calculate / attendance_explain / attendance_reconcile: this file loads the
// event-derived state through SPI, calls the pure rules in core/calc and core/reconcile,
// and stores the results with their audit.
#include "pg/calculate.hpp"

#include "pg/args.hpp"
#include "pg/settings.hpp"

#include "core/calc.hpp"
#include "core/reconcile.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_calculate_session);
PG_FUNCTION_INFO_V1(attendance_calculate_due);
PG_FUNCTION_INFO_V1(attendance_calculate_list);
PG_FUNCTION_INFO_V1(attendance_explain);
PG_FUNCTION_INFO_V1(attendance_reconcile);
}

namespace attendance::pg {

namespace {

int64_t to_i64(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }
std::optional<int64_t> opt_i64(const std::optional<std::string>& v) {
    if (!v) return std::nullopt;
    return std::stoll(*v);
}

#define MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

struct Person {
    core::PersonInput input;
    std::optional<int64_t> user_id;
    std::optional<std::string> override_reason;
};

struct SessionData {
    int64_t session_id = 0;
    core::SessionWindow window{};
    core::Policy policy;
    std::map<std::string, Person> persons;  // by user_key
    bool over = false;                      // the scheduled end has passed
};

core::PolicyNumbers numbers_from(const Row& r, size_t at) {
    core::PolicyNumbers n;
    n.absent_below_bp = to_i64(r[at]);
    n.partial_below_bp = to_i64(r[at + 1]);
    n.late_after_ms = to_i64(r[at + 2]);
    n.late_max_bp = to_i64(r[at + 3]);
    n.merge_gap_ms = to_i64(r[at + 4]);
    return n;
}

#define NUMBERS(a)                                                                  \
    "(" a ".absent_below * 100)::bigint, (" a ".partial_below * 100)::bigint, " MS( \
        a ".late_after") ", (" a ".late_max * 100)::bigint, " MS(a ".merge_gap")

// The policies named by `names`, each with its role-specific numbers.
std::map<std::string, core::Policy> load_policies(SpiSession& spi,
                                                  const std::vector<std::string>& names, bool ro) {
    std::map<std::string, core::Policy> out;
    for (const auto& r : spi.query("SELECT p.name, " NUMBERS("p") " FROM @s.attendance_policies p "
                                                                  "WHERE p.name = ANY($1)",
                                   {Arg::text_array(names)}, ro)) {
        core::Policy& policy = out[r[0].value_or("")];
        policy.name = r[0].value_or("");
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
                      "coalesce(r.merge_gap, p.merge_gap) AS merge_gap) x WHERE r.policy_name = "
                      "ANY($1)",
             {Arg::text_array(names)}, ro)) {
        auto it = out.find(r[0].value_or(""));
        if (it != out.end()) it->second.by_role[r[1].value_or("")] = numbers_from(r, 2);
    }
    return out;
}

// Loads the scheduled sessions among `ids` with everything their calculation reads: one
// query per table for the whole batch. Sessions that are not scheduled are left out.
//
// lock: take the session rows FOR UPDATE first, in session_id order. Ingestion holds FOR
// KEY SHARE on its session's row while it records a webhook, so a calculation sees every
// webhook committed before it and any later one flags the session again (see
// ingest.cpp). Locks are always taken in the order session rows, then person rows, then
// connections; two batches lock their common sessions in the same (ascending) order.
std::vector<SessionData> load_sessions(SpiSession& spi, const std::vector<int64_t>& ids,
                                       bool lock) {
    const std::string sql = "SELECT session_id, " MS("starts_at") ", " MS("ends_at") ", " MS(
        "room_finished_at") ", policy_name, " MS("now()") " FROM @s.attendance_session_schedule "
                            "WHERE session_id = ANY($1) ORDER BY session_id";
    // After waiting for the locks, read with fresh snapshots (read_only = false): what was
    // committed while we waited must be seen.
    const bool ro = !lock;
    const Arg id_array = Arg::int8_array(ids);
    std::vector<SessionData> sessions;
    std::map<int64_t, size_t> at;  // session_id -> index in `sessions`
    std::vector<std::string> policy_names;
    for (const auto& r : spi.query(lock ? sql + " FOR UPDATE" : sql, {id_array}, ro)) {
        SessionData& d = sessions.emplace_back();
        d.session_id = to_i64(r[0]);
        d.window.start_ms = to_i64(r[1]);
        d.window.end_ms = to_i64(r[2]);
        d.window.room_finished_ms = opt_i64(r[3]);
        d.window.as_of_ms = to_i64(r[5]);
        d.over = d.window.as_of_ms >= d.window.end_ms;
        d.policy.name = r[4].value_or("default");
        at[d.session_id] = sessions.size() - 1;
        policy_names.push_back(d.policy.name);
    }
    if (sessions.empty()) return sessions;

    const auto policies = load_policies(spi, policy_names, ro);
    for (SessionData& d : sessions) {
        auto it = policies.find(d.policy.name);
        if (it == policies.end())
            throw core::Error("42704", "policy \"" + d.policy.name + "\" of session " +
                                           std::to_string(d.session_id) + " does not exist");
        d.policy = it->second;
    }
    auto session_of = [&](const std::optional<std::string>& id) -> SessionData* {
        auto it = at.find(to_i64(id));
        return it == at.end() ? nullptr : &sessions[it->second];
    };

    // Persons: live rows, then the roster (sorted after them, so its role wins).
    for (const auto& r : spi.query("SELECT session_id, user_key, user_id, role FROM ("
                                   " SELECT session_id, user_key, user_id, role, 1 AS source FROM "
                                   "@s.meeting_attendances WHERE session_id = ANY($1)"
                                   " UNION ALL"
                                   " SELECT session_id, user_id::text, user_id, role, 2 FROM "
                                   "@s.attendance_roster WHERE session_id = ANY($1)) p "
                                   "ORDER BY source",
                                   {id_array}, ro)) {
        SessionData* d = session_of(r[0]);
        if (!d) continue;
        Person& p = d->persons[r[1].value_or("")];
        p.input.user_key = r[1].value_or("");
        p.user_id = opt_i64(r[2]);
        p.input.role = r[3].value_or("student");
    }
    for (const auto& r :
         spi.query("SELECT c.session_id, c.user_key, c.participant_sid, " MS("c.join_time") ", " MS(
                       "c.leave_time") ", c.end_reason = 'aborted', c.leave_is_synthetic FROM "
                                       "@s.attendance_sessions c WHERE c.session_id = ANY($1)",
                   {id_array}, ro)) {
        SessionData* d = session_of(r[0]);
        if (!d) continue;
        auto it = d->persons.find(r[1].value_or(""));
        if (it == d->persons.end()) continue;  // no live row: a non-attending participant
        core::Connection c;
        c.sid = r[2].value_or("");
        c.join_ms = opt_i64(r[3]);
        c.leave_ms = opt_i64(r[4]);
        c.aborted = r[5] == std::optional<std::string>("t");
        c.synthetic_leave = r[6] == std::optional<std::string>("t");
        it->second.input.connections.push_back(std::move(c));
    }
    for (const auto& r : spi.query("SELECT session_id, user_key, status, reason FROM "
                                   "@s.attendance_overrides WHERE session_id = ANY($1)",
                                   {id_array}, ro)) {
        SessionData* d = session_of(r[0]);
        if (!d) continue;
        auto it = d->persons.find(r[1].value_or(""));
        if (it == d->persons.end()) continue;
        it->second.input.override_status = r[2];
        it->second.override_reason = r[3];
    }
    return sessions;
}

SessionData load_session(SpiSession& spi, int64_t session_id, bool lock) {
    auto sessions = load_sessions(spi, {session_id}, lock);
    if (sessions.empty())
        throw core::Error("42704", "session " + std::to_string(session_id) +
                                       " is not scheduled (see attendance_schedule_session)");
    return std::move(sessions.front());
}

// core::Error keeps a const char* SQLSTATE: intern the few codes used here.
const char* interned_state(const std::string& state) {
    if (state == "57014") return "57014";
    if (state == "57P01") return "57P01";
    if (state == "57P02") return "57P02";
    return "XX000";
}

// The result rows of a batch as typed arrays, one element per person: the write is one
// statement whatever the batch's size, and nothing is parsed again on the way in.
struct ResultColumns {
    std::vector<int64_t> session_id, user_id, presence_ms, minutes, session_minutes;
    std::vector<bool> user_id_null, is_final;
    std::vector<std::string> user_key, role, status, rule, pct, cause, policy;

    void add(const SessionData& d, const std::string& key, const Person& person,
             const core::PersonResult& r, const std::string& why) {
        session_id.push_back(d.session_id);
        user_key.push_back(key);
        user_id.push_back(person.user_id.value_or(0));
        user_id_null.push_back(!person.user_id);
        role.push_back(person.input.role);
        status.push_back(r.status);
        rule.push_back(r.rule);
        pct.push_back(core::format_percentage(r.percentage_hundredths));
        presence_ms.push_back(r.presence_ms);
        minutes.push_back(r.total_duration_minutes);
        session_minutes.push_back(((d.window.end_ms - d.window.start_ms) + 30'000) / 60'000);
        cause.push_back(why);
        policy.push_back(d.policy.name);
        is_final.push_back(d.over);
    }
};

// One statement: audit the changes against the previous calculation, then store.
constexpr const char* kStoreResults =
    "WITH r AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], "
    "    $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::bigint[], "
    "    $11::text[], $12::text[], $13::bool[]) "
    "  AS x(session_id, user_key, user_id, role, status, rule, pct_text, presence_ms, minutes, "
    "       session_minutes, cause, policy_name, is_final)), "
    // LATERAL with LIMIT (the key is unique; the LIMIT keeps the planner from turning it
    // into a join): one index probe per result row, never a scan of the whole table
    "old AS (SELECT r.session_id, r.user_key, m.attendance_status, m.attendance_percentage, "
    "    m.attendance_calculated_at "
    "  FROM r, LATERAL (SELECT * FROM @s.meeting_attendances m "
    "    WHERE m.session_id = r.session_id AND m.user_key = r.user_key LIMIT 1) m), "
    "audit AS (INSERT INTO @s.attendance_status_changes (session_id, user_key, old_status, "
    "    new_status, old_percentage, new_percentage, cause, actor) "
    "  SELECT r.session_id, r.user_key, old.attendance_status, r.status, "
    "    old.attendance_percentage, r.pct_text::numeric(5,2), r.cause, session_user "
    "  FROM r LEFT JOIN old USING (session_id, user_key) "
    "  WHERE (old.attendance_calculated_at IS NOT NULL OR (r.rule = 'override' AND r.cause = "
    "'override')) "
    "    AND (old.attendance_status IS DISTINCT FROM r.status "
    "         OR old.attendance_percentage IS DISTINCT FROM r.pct_text::numeric(5,2)) "
    "  RETURNING 1), "
    "up AS (INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id, role, "
    "    attendance_status, status_rule, attendance_percentage, presence_ms, "
    "    total_duration_minutes, session_duration_minutes, policy_name, is_calculated, "
    "    attendance_calculated_at) "
    "  SELECT r.session_id, r.user_key, r.user_id, r.role, r.status, r.rule, "
    "    r.pct_text::numeric(5,2), r.presence_ms, r.minutes, r.session_minutes, r.policy_name, "
    "    r.is_final, now() FROM r "
    "  ON CONFLICT (session_id, user_key) DO UPDATE SET "
    "    user_id = coalesce(excluded.user_id, m.user_id), role = excluded.role, "
    "    attendance_status = excluded.attendance_status, status_rule = excluded.status_rule, "
    "    attendance_percentage = excluded.attendance_percentage, "
    "    presence_ms = excluded.presence_ms, "
    "    total_duration_minutes = excluded.total_duration_minutes, "
    "    session_duration_minutes = excluded.session_duration_minutes, "
    "    policy_name = excluded.policy_name, is_calculated = excluded.is_calculated, "
    "    attendance_calculated_at = excluded.attendance_calculated_at, updated_at = now() "
    "  RETURNING 1) "
    "SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM audit)";

// Calculates and stores the scheduled sessions among `ids` (cause per session, same
// order); returns the number of sessions and persons written. Throws on any error, which
// leaves the caller to roll the whole batch back.
struct BatchResult {
    int sessions = 0;
    int persons = 0;
};
BatchResult calculate_batch(SpiSession& spi, const std::vector<int64_t>& ids,
                            const std::vector<std::string>& causes) {
    std::map<int64_t, const std::string*> cause_of;
    for (size_t k = 0; k < ids.size(); ++k) cause_of[ids[k]] = &causes[k];
    std::vector<SessionData> sessions = load_sessions(spi, ids, true);
    BatchResult out;
    if (sessions.empty()) return out;
    ResultColumns rows;
    std::vector<int64_t> done;
    std::vector<bool> final_flags;
    for (SessionData& d : sessions) {
        for (auto& [key, person] : d.persons) {
            if (person.input.role == "observer") continue;
            rows.add(d, key, person, core::calculate_person(d.window, d.policy, person.input),
                     *cause_of[d.session_id]);
        }
        done.push_back(d.session_id);
        final_flags.push_back(d.over);
    }
    if (!rows.session_id.empty())
        spi.query(
            kStoreResults,
            {Arg::int8_array(rows.session_id), Arg::text_array(rows.user_key),
             Arg::int8_array(rows.user_id, rows.user_id_null), Arg::text_array(rows.role),
             Arg::text_array(rows.status), Arg::text_array(rows.rule), Arg::text_array(rows.pct),
             Arg::int8_array(rows.presence_ms), Arg::int8_array(rows.minutes),
             Arg::int8_array(rows.session_minutes), Arg::text_array(rows.cause),
             Arg::text_array(rows.policy), Arg::bool_array(rows.is_final)});
    spi.exec(
        "UPDATE @s.attendance_session_schedule s SET calculated_at = now(), "
        "needs_calculation = NOT x.is_final, recalculation_cause = NULL, failed_attempts = 0, "
        "last_error = NULL, next_attempt_at = NULL, updated_at = now() "
        "FROM unnest($1::bigint[], $2::bool[]) AS x(session_id, is_final) "
        "WHERE s.session_id = x.session_id",
        {Arg::int8_array(done), Arg::bool_array(final_flags)});
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

namespace {

// Runs f in a subtransaction. Returns "" on success; otherwise rolls back and returns the
// error. A cancel or shutdown is rethrown: it is not the sessions' fault, it stops the run.
template <typename F>
std::string in_subtransaction(F&& f) {
    MemoryContext context = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    pg_call([] { BeginInternalSubTransaction(nullptr); });
    std::string error;
    std::string interrupted;
    try {
        f();
        pg_call([&] {
            ReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(context);
            CurrentResourceOwner = owner;
        });
        return {};
    } catch (const PgError& e) {
        // Copied now: the error lives in the subtransaction's memory.
        error = e.what();
        int code = e.edata() ? e.edata()->sqlerrcode : 0;
        if (code == ERRCODE_QUERY_CANCELED || code == ERRCODE_ADMIN_SHUTDOWN ||
            code == ERRCODE_CRASH_SHUTDOWN)
            interrupted = unpack_sql_state(code);
    } catch (const std::exception& e) {
        error = e.what();
    }
    pg_call([&] {
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
    });
    if (!interrupted.empty()) throw core::Error(interned_state(interrupted), error);
    return error.empty() ? "unknown error" : error;
}

}  // namespace

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
    const size_t step = size_t(std::max(batch_size, 1));
    for (size_t first = 0; first < ids.size(); first += step) {
        const size_t last = std::min(ids.size(), first + step);
        const std::vector<int64_t> batch_ids(ids.begin() + long(first), ids.begin() + long(last));
        const std::vector<std::string> batch_causes(causes.begin() + long(first),
                                                    causes.begin() + long(last));
        // The batch as a whole; when it fails, each of its sessions alone, so that a
        // failing session never stops the others.
        BatchResult batch;
        if (batch_ids.size() > 1 && in_subtransaction([&] {
                                        batch = calculate_batch(spi, batch_ids, batch_causes);
                                    }).empty()) {
            out.processed += batch.sessions;
            continue;
        }
        for (size_t k = 0; k < batch_ids.size(); ++k) {
            const int64_t id = batch_ids[k];
            std::string error =
                in_subtransaction([&] { calculate_session(spi, id, batch_causes[k]); });
            if (error.empty()) {
                ++out.processed;
                continue;
            }
            // Record why and retry later, with backoff.
            ++out.failed;
            if (!out.message.empty()) out.message += "; ";
            out.message += "session " + std::to_string(id) + ": " + error;
            spi.exec(
                "UPDATE @s.attendance_session_schedule SET failed_attempts = failed_attempts + 1, "
                "last_error = $2, "
                "next_attempt_at = now() + least(interval '1 hour', interval '5 seconds' * "
                "power(2, least(failed_attempts, 10))) "
                "WHERE session_id = $1",
                {Arg::int8(id), Arg::text(error)});
        }
    }
    return out;
}

DueResult calculate_due(SpiSession& spi, int delay_s, int batch_size) {
    std::vector<int64_t> ids;
    std::vector<std::string> causes;
    for (const auto& r :
         spi.query("SELECT session_id, coalesce(recalculation_cause, 'scheduled') FROM "
                   "@s.attendance_session_schedule "
                   "WHERE needs_calculation AND ends_at <= now() - make_interval(secs => $1) "
                   "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
                   "ORDER BY ends_at, session_id LIMIT 10000",
                   {Arg::int4(delay_s)}, true)) {
        ids.push_back(to_i64(r[0]));
        causes.push_back(r[1].value_or("scheduled"));
    }
    return calculate_sessions(spi, ids, causes, batch_size);
}

ReconcileResult reconcile(SpiSession& spi, int64_t max_age_ms) {
    ReconcileResult out;
    auto open = spi.query(
        "SELECT c.participant_sid, c.session_id, c.user_key, " MS("c.join_time") ", " MS("s.room_finished_at") ", " MS(
            "s.ends_at") ", " MS("now()") " "
        "FROM @s.attendance_sessions c LEFT JOIN @s.attendance_session_schedule s USING (session_id) "
        "WHERE c.leave_time IS NULL AND c.join_time IS NOT NULL AND c.end_reason IS NULL "
        "ORDER BY c.session_id NULLS FIRST, c.participant_sid",
        {}, true);
    struct Close {
        std::string sid, user_key;
        core::Closing closing;
    };
    std::map<std::optional<int64_t>, std::vector<Close>> by_session;
    for (const auto& r : open) {
        core::OpenConnection c{to_i64(r[3]), opt_i64(r[4]), opt_i64(r[5])};
        if (auto closing = core::reconcile_close(c, to_i64(r[6]), max_age_ms))
            by_session[opt_i64(r[1])].push_back({r[0].value_or(""), r[2].value_or(""), *closing});
    }
    for (const auto& [session, closes] : by_session) {
        // Same lock order as ingestion and calculation: the session row first.
        bool calculated = false;
        if (session) {
            auto lock = spi.query(
                "SELECT calculated_at IS NOT NULL FROM @s.attendance_session_schedule WHERE "
                "session_id = $1 FOR UPDATE",
                {Arg::int8(*session)});
            calculated = !lock.empty() && lock[0][0] == std::optional<std::string>("t");
        }
        std::map<std::string, bool> persons;
        for (const Close& c : closes) {
            uint64_t n = spi.exec(
                "UPDATE @s.attendance_sessions SET leave_time = $2, end_reason = 'reconciled', "
                "leave_is_synthetic = true, disconnect_reason = 'reconciled: ' || $3, updated_at = "
                "now() "
                "WHERE participant_sid = $1 AND leave_time IS NULL AND end_reason IS NULL",
                {Arg::text(c.sid), Arg::ts_ms(c.closing.leave_ms), Arg::text(c.closing.because)});
            if (n == 0) continue;  // its real leave arrived meanwhile
            ++out.closed;
            persons[c.user_key] = true;
        }
        if (!session) continue;
        for (const auto& [user_key, _] : persons) refresh_live(spi, *session, user_key);
        if (calculated && !persons.empty()) {
            calculate_session(spi, *session, "reconciliation");
            ++out.sessions_recalculated;
        }
    }
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
    SessionData d = load_session(spi, session_id, false);
    auto it = d.persons.find(user_key);
    if (it == d.persons.end())
        throw core::Error("42704", "no attendance for user " + user_key + " in session " +
                                       std::to_string(session_id));
    Person& p = it->second;
    core::PersonResult r = core::calculate_person(d.window, d.policy, p.input);
    nlohmann::json trace = core::explain(d.window, d.policy, p.input, r);
    trace["session_id"] = session_id;
    trace["user_key"] = user_key;
    trace["user_id"] = p.user_id ? nlohmann::json(*p.user_id) : nlohmann::json();
    trace["provisional"] = !d.over;
    if (p.override_reason) trace["override_reason"] = *p.override_reason;
    auto stored = spi.query(
        "SELECT attendance_status, attendance_percentage::text, is_calculated, "
        "attendance_calculated_at::text "
        "FROM @s.meeting_attendances WHERE session_id = $1 AND user_key = $2",
        {Arg::int8(session_id), Arg::text(user_key)}, true);
    if (!stored.empty()) {
        auto j = [](const std::optional<std::string>& v) {
            return v ? nlohmann::json(*v) : nlohmann::json();
        };
        trace["stored"] = {{"status", j(stored[0][0])},
                           {"percentage", j(stored[0][1])},
                           {"is_calculated", stored[0][2] == std::optional<std::string>("t")},
                           {"calculated_at", j(stored[0][3])}};
    }
    return trace;
}

}  // namespace

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

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
    return pg_call([&] {
        TupleDesc desc;
        if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
            elog(ERROR, "attendance: the return type must be a row type");
        desc = BlessTupleDesc(desc);
        Datum values[2] = {Int32GetDatum(r.processed), Int32GetDatum(r.failed)};
        bool nulls[2] = {false, false};
        return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
    });
}

// The elements of a bigint[] argument, each once, in their first order; NULL elements and
// multi-dimensional arrays are refused.
std::vector<int64_t> session_ids_arg(FunctionCallInfo fcinfo, int n) {
    if (PG_ARGISNULL(n)) throw core::Error("22004", "argument \"session_ids\" must not be NULL");
    struct Elements {
        Datum* values = nullptr;
        bool* nulls = nullptr;
        int count = 0;
        int ndim = 0;
    };
    Elements e = pg_call([&] {
        ArrayType* array = PG_GETARG_ARRAYTYPE_P(n);
        Elements out;
        out.ndim = ARR_NDIM(array);
        deconstruct_array(array, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &out.values,
                          &out.nulls, &out.count);
        return out;
    });
    if (e.ndim > 1) throw core::Error("2202E", "session_ids must be a one-dimensional array");
    std::vector<int64_t> ids;
    std::map<int64_t, bool> seen;
    for (int k = 0; k < e.count; ++k) {
        if (e.nulls[k]) throw core::Error("22004", "session_ids must not contain NULL");
        int64_t id = DatumGetInt64(e.values[k]);
        if (seen.emplace(id, true).second) ids.push_back(id);
    }
    return ids;
}

}  // namespace

extern "C" Datum attendance_calculate_due(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        warn_if_scheduler_absent();
        DueResult r =
            calculate_due(spi, settings.calculation_delay_s, settings.calculation_batch_size);
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
        if (!unknown.empty() && unknown[0][1].value_or("0") != "0")
            throw core::Error("42704", "session(s) " + unknown[0][0].value_or("") +
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
        Oid second = pg_call([&] { return get_fn_expr_argtype(fcinfo->flinfo, 1); });
        if (second == INT8OID)
            user_key = std::to_string(PG_GETARG_INT64(1));
        else
            user_key = text_arg(fcinfo, 1, "user_key");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        std::string out = explain_person(spi, session_id, user_key).dump();
        spi.finish();
        return jsonb_datum(out);
    });
}

extern "C" Datum attendance_reconcile(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        ReconcileResult r = reconcile(spi, int64_t(settings.max_connection_age_s) * 1000);
        spi.finish();
        nlohmann::json j = {{"closed", r.closed},
                            {"sessions_recalculated", r.sessions_recalculated}};
        return jsonb_datum(j.dump());
    });
}
