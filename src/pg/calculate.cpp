// attendance_calculate / attendance_explain / attendance_reconcile: a batch of sessions is
// read (pg/load), worked out (core/outcome: the derivation and the rules of core/calc) and
// stored with its audit (pg/store); docs/architecture.md, "Calculation".
#include "pg/calculate.hpp"

#include "pg/args.hpp"
#include "pg/crossings.hpp"
#include "pg/load.hpp"
#include "pg/store.hpp"
#include "pg/transactions.hpp"
#include "pg/scheduler.hpp"
#include "pg/settings.hpp"

#include "core/calc.hpp"
#include "core/timefmt.hpp"

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

// A session that failed alone: why, and when to try again (backoff doubling from 5 s to 1 h).
constexpr const char* kFailed = R"sql(
UPDATE @s.attendance_session_schedule
SET failed_attempts = failed_attempts + 1, last_error = $2,
    next_attempt_at = now() + least(interval '1 hour',
                                    interval '5 seconds' * power(2, least(failed_attempts, 10)))
WHERE session_id = $1
)sql";

// A session whose events were retired is not calculated again: its stored results are kept,
// and the schedule says why (docs/architecture.md, "Partitions and retention").
constexpr const char* kRetiredNotAgain = R"sql(
UPDATE @s.attendance_session_schedule
SET needs_calculation = false,
    last_error = 'not calculated again: its logged events were retired at ' || events_retired_at
                 || ' (attendance.event_retention); the stored results are kept',
    updated_at = now()
WHERE needs_calculation AND events_retired_at IS NOT NULL
)sql";

// "Due" has one definition: the view attendance_sessions_due.
constexpr const char* kDue = R"sql(
SELECT session_id FROM @s.attendance_sessions_due WHERE due_at <= now()
ORDER BY due_at, session_id LIMIT 10000
)sql";

// Run history older than the retention, 1,000 rows at a time (each delete short).
constexpr const char* kOldRuns = R"sql(
DELETE FROM @s.attendance_job_runs WHERE id IN (
  SELECT id FROM @s.attendance_job_runs
  WHERE started_at < now() - make_interval(days => $1) AND status <> 'running'
  ORDER BY id LIMIT 1000)
)sql";

// The ids of a list that are not scheduled, in the list's order.
constexpr const char* kUnscheduled = R"sql(
SELECT string_agg(x::text, ', ' ORDER BY o) AS ids, count(*) AS count
FROM unnest($1::bigint[]) WITH ORDINALITY AS u(x, o)
WHERE NOT EXISTS (SELECT 1 FROM @s.attendance_session_schedule s WHERE s.session_id = u.x)
)sql";

// Calculates and stores the scheduled sessions among `ids` (cause per session, same
// order): load -> outcome -> store (docs/architecture.md, "Calculation"). Throws on any
// error, which leaves the caller to roll the whole batch back.
struct BatchResult {
    int sessions = 0;
    int persons = 0;
};
BatchResult calculate_batch(SpiSession& spi, const std::vector<int64_t>& ids,
                            const std::vector<std::string>& causes) {
    std::map<int64_t, std::string> given;
    for (size_t k = 0; k < ids.size(); ++k) given.emplace(ids[k], causes[k]);
    LoadOptions options;
    options.lock = true;
    options.from_store = true;
    options.policies = true;
    Batch batch = load_batch(spi, ids, options);
    std::vector<Derived> sessions;
    BatchResult out;
    sessions.reserve(batch.sessions.size());
    for (core::SessionInput& in : batch.sessions) {
        if (!in.scheduled) continue;
        Derived& d = sessions.emplace_back();
        d.input = std::move(in);
        d.outcome =
            core::outcome_of(d.input, given.at(d.input.session_id), settings.verify_calculation);
        out.persons += int(d.outcome.derivation.persons.size());
    }
    store_calculation(spi, sessions, batch.rooms_schema, batch.snapshot);
    out.sessions = int(sessions.size());
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
            spi.exec(kFailed, {Arg::int8(ids[k]), Arg::text(error)});
        });
    return out;
}

DueResult calculate_due(SpiSession& spi, int batch_size) {
    // A session whose events were retired is not calculated again: its stored results are
    // kept, and the schedule says why (docs/architecture.md, "Partitions and retention").
    spi.exec(kRetiredNotAgain);
    std::vector<int64_t> ids;
    // (sees a fold's flags made in this transaction)
    for (const Row& r : spi.query(kDue, {}, false)) ids.push_back(r["session_id"].int8());
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
        uint64_t n = spi.exec(kOldRuns, {Arg::int4(retention_days)});
        total += int64_t(n);
        if (n < 1000) break;
    }
    return total;
}

namespace {

// A person's stored row as attendance_explain shows it (times as the server prints them).
constexpr const char* kStoredResult = R"sql(
SELECT attendance_status, attendance_percentage, is_calculated,
       attendance_calculated_at::text AS calculated_at
FROM @s.meeting_attendances WHERE session_id = $1 AND user_key = $2
)sql";

constexpr const char* kSessionRooms = R"sql(
SELECT room_name, link FROM @s._attendance_session_rooms(ARRAY[$1::bigint])
ORDER BY link <> 'main', room_name
)sql";

nlohmann::json explain_person(SpiSession& spi, int64_t session_id, const std::string& user_key) {
    LoadOptions options;
    options.policies = true;
    Batch batch = load_batch(spi, {session_id}, options);
    if (batch.sessions.empty() || !batch.sessions.front().scheduled)
        throw core::Error("42704", "session " + std::to_string(session_id) +
                                       " is not scheduled (see attendance_schedule_session)");
    core::SessionInput& s = batch.sessions.front();
    const core::SessionOutcome outcome = core::outcome_of(s);
    auto it = outcome.derivation.persons.find(user_key);
    if (it == outcome.derivation.persons.end() && s.events_retired_at) {
        // Every event of the person was retired: what is kept is the stored result.
        nlohmann::json trace = {{"session_id", session_id},
                                {"user_key", user_key},
                                {"events_retired_at", *s.events_retired_at},
                                {"events_retired",
                                 "the logged events of this session were retired "
                                 "(attendance.event_retention) at " +
                                     *s.events_retired_at + "; only the stored result is kept"}};
        auto stored = spi.query(kStoredResult, {Arg::int8(session_id), Arg::text(user_key)}, true);
        if (stored.empty())
            throw core::Error("42704", "no attendance for user " + user_key + " in session " +
                                           std::to_string(session_id));
        trace["stored"] = {{"status", stored[0]["attendance_status"].str("")},
                           {"percentage", stored[0]["attendance_percentage"].str("")},
                           {"calculated_at", stored[0]["calculated_at"].str("")}};
        return trace;
    }
    if (it == outcome.derivation.persons.end())
        throw core::Error("42704", "no attendance for user " + user_key + " in session " +
                                       std::to_string(session_id));
    const core::DerivedPerson& p = it->second;
    const core::PersonInput input = p.calc_input(s.override_status(user_key));
    core::PersonResult r = core::calculate_person(s.window, *s.policy, input);
    nlohmann::json trace = core::explain(s.window, *s.policy, input, r);
    trace["session_id"] = session_id;
    trace["user_key"] = user_key;
    trace["user_id"] = p.user_id ? nlohmann::json(*p.user_id) : nlohmann::json();
    trace["provisional"] = !s.over();
    trace["room_finished"] =
        outcome.derivation.room_finished_ms
            ? nlohmann::json(core::format_timestamp_ms(*outcome.derivation.room_finished_ms))
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
    for (const Row& r : spi.query(kSessionRooms, {Arg::int8(session_id)}, true))
        rooms.push_back({{"room", r["room_name"].str()}, {"link", r["link"].str()}});
    trace["rooms"] = rooms;
    if (s.events_retired_at) {
        trace["events_retired_at"] = *s.events_retired_at;
        trace["events_retired"] =
            "events of this session were retired (attendance.event_retention) at " +
            *s.events_retired_at +
            "; the derivation above reads only the events still logged, the stored result is "
            "what was calculated from all of them";
    }
    if (auto o = s.overrides.find(user_key); o != s.overrides.end())
        trace["override_reason"] = o->second.second;
    auto stored = spi.query(kStoredResult, {Arg::int8(session_id), Arg::text(user_key)}, true);
    if (!stored.empty()) {
        auto j = [](const Value& v) {
            return v.is_null() ? nlohmann::json() : nlohmann::json(v.str());
        };
        trace["stored"] = {{"status", j(stored[0]["attendance_status"])},
                           {"percentage", j(stored[0]["attendance_percentage"])},
                           {"is_calculated", stored[0]["is_calculated"].truth()},
                           {"calculated_at", j(stored[0]["calculated_at"])}};
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
        const Row unknown = spi.query(kUnscheduled, {Arg::int8_array(ids)}, true)[0];
        if (unknown["count"].int8() != 0)
            throw core::Error("42704", "session(s) " + unknown["ids"].str() +
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
