// attendance_calculate / attendance_explain / attendance_reconcile: this file loads the
// event-derived state through SPI, calls the pure rules in core/calc and core/reconcile,
// and stores the results with their audit.
#include "pg/calculate.hpp"

#include "pg/args.hpp"
#include "pg/settings.hpp"

#include "core/calc.hpp"
#include "core/reconcile.hpp"

#include <nlohmann/json.hpp>

#include <map>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_calculate_session);
PG_FUNCTION_INFO_V1(attendance_calculate_due);
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

// lock: take the session row FOR UPDATE first. Ingestion holds FOR KEY SHARE on it while
// it records a webhook, so a calculation sees every webhook committed before it and any
// later one flags the session again (see ingest.cpp). Locks are always taken in the
// order session row, then person rows, then connections.
SessionData load_session(SpiSession& spi, int64_t session_id, bool lock) {
    std::string sql = "SELECT " MS("starts_at") ", " MS("ends_at") ", " MS("room_finished_at") ", policy_name, " MS(
        "now()") " FROM @s.attendance_session_schedule WHERE session_id = $1";
    // After waiting for the lock, read with fresh snapshots (read_only = false): what was
    // committed while we waited must be seen.
    const bool ro = !lock;
    auto s = spi.query(lock ? sql + " FOR UPDATE" : sql, {Arg::int8(session_id)}, ro);
    if (s.empty())
        throw core::Error("42704", "session " + std::to_string(session_id) +
                                       " is not scheduled (see attendance_schedule_session)");
    SessionData d;
    d.session_id = session_id;
    d.window.start_ms = to_i64(s[0][0]);
    d.window.end_ms = to_i64(s[0][1]);
    d.window.room_finished_ms = opt_i64(s[0][2]);
    d.window.as_of_ms = to_i64(s[0][4]);
    d.over = d.window.as_of_ms >= d.window.end_ms;
    d.policy.name = s[0][3].value_or("default");

    constexpr const char* kNumbers =
        "(%1.absent_below * 100)::bigint, (%1.partial_below * 100)::bigint, " MS("%1.late_after") ", "
        "(%1.late_max * 100)::bigint, " MS("%1.merge_gap");
    auto cols = [&](const char* alias) {
        std::string out = kNumbers;
        for (size_t pos; (pos = out.find("%1")) != std::string::npos;) out.replace(pos, 2, alias);
        return out;
    };
    auto pol = spi.query("SELECT " + cols("p") + " FROM @s.attendance_policies p WHERE p.name = $1",
                         {Arg::text(d.policy.name)}, ro);
    if (pol.empty()) throw core::Error("42704", "policy \"" + d.policy.name + "\" does not exist");
    d.policy.numbers = numbers_from(pol[0], 0);
    auto roles =
        spi.query("SELECT r.role, " + cols("x") +
                      " FROM @s.attendance_policy_roles r JOIN @s.attendance_policies p ON p.name "
                      "= r.policy_name, "
                      "LATERAL (SELECT coalesce(r.absent_below, p.absent_below) AS absent_below, "
                      "coalesce(r.partial_below, p.partial_below) AS partial_below, "
                      "coalesce(r.late_after, p.late_after) AS late_after, coalesce(r.late_max, "
                      "p.late_max) AS late_max, "
                      "coalesce(r.merge_gap, p.merge_gap) AS merge_gap) x WHERE r.policy_name = $1",
                  {Arg::text(d.policy.name)}, ro);
    for (const auto& r : roles) d.policy.by_role[r[0].value_or("")] = numbers_from(r, 1);

    // Persons: live rows, then the roster (sorted after them, so its role wins).
    for (const auto& r : spi.query("SELECT user_key, user_id, role FROM ("
                                   " SELECT user_key, user_id, role, 1 AS source FROM "
                                   "@s.meeting_attendances WHERE session_id = $1"
                                   " UNION ALL"
                                   " SELECT user_id::text, user_id, role, 2 FROM "
                                   "@s.attendance_roster WHERE session_id = $1) p "
                                   "ORDER BY source",
                                   {Arg::int8(session_id)}, ro)) {
        Person& p = d.persons[r[0].value_or("")];
        p.input.user_key = r[0].value_or("");
        p.user_id = opt_i64(r[1]);
        p.input.role = r[2].value_or("student");
    }
    for (const auto& r :
         spi.query("SELECT c.user_key, c.participant_sid, " MS("c.join_time") ", " MS(
                       "c.leave_time") ", "
                                       "c.end_reason = 'aborted', c.leave_is_synthetic FROM "
                                       "@s.attendance_sessions c WHERE c.session_id = $1",
                   {Arg::int8(session_id)}, ro)) {
        auto it = d.persons.find(r[0].value_or(""));
        if (it == d.persons.end()) continue;  // no live row: a non-attending participant
        core::Connection c;
        c.sid = r[1].value_or("");
        c.join_ms = opt_i64(r[2]);
        c.leave_ms = opt_i64(r[3]);
        c.aborted = r[4] == std::optional<std::string>("t");
        c.synthetic_leave = r[5] == std::optional<std::string>("t");
        it->second.input.connections.push_back(std::move(c));
    }
    for (const auto& r : spi.query(
             "SELECT user_key, status, reason FROM @s.attendance_overrides WHERE session_id = $1",
             {Arg::int8(session_id)}, ro)) {
        auto it = d.persons.find(r[0].value_or(""));
        if (it == d.persons.end()) continue;
        it->second.input.override_status = r[1];
        it->second.override_reason = r[2];
    }
    return d;
}

// core::Error keeps a const char* SQLSTATE: intern the few codes used here.
const char* interned_state(const std::string& state) {
    if (state == "57014") return "57014";
    if (state == "57P01") return "57P01";
    if (state == "57P02") return "57P02";
    return "XX000";
}

std::string numeric_pct(int64_t hundredths) { return core::format_percentage(hundredths); }

}  // namespace

int calculate_session(SpiSession& spi, int64_t session_id, const std::string& cause) {
    SessionData d = load_session(spi, session_id, true);
    nlohmann::json rows = nlohmann::json::array();
    const int64_t window_minutes = ((d.window.end_ms - d.window.start_ms) + 30'000) / 60'000;
    for (auto& [key, person] : d.persons) {
        if (person.input.role == "observer") continue;
        core::PersonResult r = core::calculate_person(d.window, d.policy, person.input);
        rows.push_back(
            {{"user_key", key},
             {"user_id", person.user_id ? nlohmann::json(*person.user_id) : nlohmann::json()},
             {"role", person.input.role},
             {"status", r.status},
             {"rule", r.rule},
             {"pct", numeric_pct(r.percentage_hundredths)},
             {"presence_ms", r.presence_ms},
             {"minutes", r.total_duration_minutes},
             {"session_minutes", window_minutes}});
    }
    // One statement: audit the changes against the previous calculation, then store.
    spi.query(
        "WITH r AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(user_key text, user_id "
        "bigint, role text, "
        "    status text, rule text, pct numeric(5,2), presence_ms bigint, minutes integer, "
        "session_minutes integer)), "
        "old AS (SELECT m.user_key, m.attendance_status, m.attendance_percentage, "
        "m.attendance_calculated_at "
        "    FROM @s.meeting_attendances m JOIN r USING (user_key) WHERE m.session_id = $1), "
        "audit AS (INSERT INTO @s.attendance_status_changes (session_id, user_key, old_status, "
        "new_status, "
        "    old_percentage, new_percentage, cause, actor) "
        "  SELECT $1, r.user_key, old.attendance_status, r.status, old.attendance_percentage, "
        "r.pct, $3, session_user "
        "  FROM r LEFT JOIN old USING (user_key) "
        "  WHERE (old.attendance_calculated_at IS NOT NULL OR (r.rule = 'override' AND $3 = "
        "'override')) "
        "    AND (old.attendance_status IS DISTINCT FROM r.status OR old.attendance_percentage IS "
        "DISTINCT FROM r.pct) "
        "  RETURNING 1), "
        "up AS (INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id, role, "
        "attendance_status, "
        "    status_rule, attendance_percentage, presence_ms, total_duration_minutes, "
        "session_duration_minutes, "
        "    policy_name, is_calculated, attendance_calculated_at) "
        "  SELECT $1, r.user_key, r.user_id, r.role, r.status, r.rule, r.pct, r.presence_ms, "
        "r.minutes, "
        "    r.session_minutes, $4, $5, now() FROM r "
        "  ON CONFLICT (session_id, user_key) DO UPDATE SET user_id = coalesce(excluded.user_id, "
        "m.user_id), "
        "    role = excluded.role, attendance_status = excluded.attendance_status, status_rule = "
        "excluded.status_rule, "
        "    attendance_percentage = excluded.attendance_percentage, presence_ms = "
        "excluded.presence_ms, "
        "    total_duration_minutes = excluded.total_duration_minutes, "
        "    session_duration_minutes = excluded.session_duration_minutes, policy_name = "
        "excluded.policy_name, "
        "    is_calculated = excluded.is_calculated, attendance_calculated_at = "
        "excluded.attendance_calculated_at, "
        "    updated_at = now() "
        "  RETURNING 1) "
        "SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM audit)",
        {Arg::int8(session_id), Arg::text(rows.dump()), Arg::text(cause), Arg::text(d.policy.name),
         Arg::boolean(d.over)});
    spi.exec(
        "UPDATE @s.attendance_session_schedule SET calculated_at = now(), needs_calculation = NOT "
        "$2, "
        "recalculation_cause = NULL, failed_attempts = 0, last_error = NULL, next_attempt_at = "
        "NULL, "
        "updated_at = now() WHERE session_id = $1",
        {Arg::int8(session_id), Arg::boolean(d.over)});
    spi.query("SELECT pg_notify('attendance_calculated', $1)",
              {Arg::text(std::to_string(session_id))});
    return int(rows.size());
}

DueResult calculate_due(SpiSession& spi, int delay_s) {
    DueResult out;
    auto due = spi.query(
        "SELECT session_id, coalesce(recalculation_cause, 'scheduled') FROM "
        "@s.attendance_session_schedule "
        "WHERE needs_calculation AND ends_at <= now() - make_interval(secs => $1) "
        "AND (next_attempt_at IS NULL OR next_attempt_at <= now()) ORDER BY ends_at, session_id "
        "LIMIT 10000",
        {Arg::int4(delay_s)}, true);
    for (const auto& row : due) {
        int64_t id = to_i64(row[0]);
        std::string cause = row[1].value_or("scheduled");
        MemoryContext context = CurrentMemoryContext;
        ResourceOwner owner = CurrentResourceOwner;
        pg_call([] { BeginInternalSubTransaction(nullptr); });
        std::string error;
        std::string interrupted;
        try {
            calculate_session(spi, id, cause);
            pg_call([&] {
                ReleaseCurrentSubTransaction();
                MemoryContextSwitchTo(context);
                CurrentResourceOwner = owner;
            });
            ++out.processed;
            continue;
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
        // A failing session never stops the others: roll it back, record why, retry later.
        pg_call([&] {
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(context);
            CurrentResourceOwner = owner;
        });
        // A cancel or shutdown is not the session's fault: it stops the whole run.
        if (!interrupted.empty()) throw core::Error(interned_state(interrupted), error);
        ++out.failed;
        if (!out.message.empty()) out.message += "; ";
        out.message += "session " + std::to_string(id) + ": " + error;
        spi.exec(
            "UPDATE @s.attendance_session_schedule SET failed_attempts = failed_attempts + 1, "
            "last_error = $2, "
            "next_attempt_at = now() + least(interval '1 hour', interval '5 seconds' * power(2, "
            "least(failed_attempts, 10))) "
            "WHERE session_id = $1",
            {Arg::int8(id), Arg::text(error)});
    }
    return out;
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
        for (const auto& [user_key, _] : persons)
            spi.query("SELECT @s._attendance_refresh_live($1, $2)",
                      {Arg::int8(*session), Arg::text(user_key)});
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

extern "C" Datum attendance_calculate_due(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        warn_if_scheduler_absent();
        DueResult r = calculate_due(spi, settings.calculation_delay_s);
        spi.finish();
        return pg_call([&] {
            TupleDesc desc;
            if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
                elog(ERROR, "attendance_calculate(): return type must be a row type");
            desc = BlessTupleDesc(desc);
            Datum values[2] = {Int32GetDatum(r.processed), Int32GetDatum(r.failed)};
            bool nulls[2] = {false, false};
            return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
        });
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
