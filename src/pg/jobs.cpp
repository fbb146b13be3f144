// The table of the scheduler's jobs, and the SQL functions that run one
// (attendance_run_job, attendance_fold).
#include "pg/jobs.hpp"

#include "pg/args.hpp"
#include "pg/calculate.hpp"
#include "pg/crossings.hpp"
#include "pg/fold.hpp"
#include "pg/settings.hpp"

#include <nlohmann/json.hpp>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_run_job);
PG_FUNCTION_INFO_V1(attendance_fold);
}

namespace attendance::pg {

const char* const kRunStarted = R"sql(
INSERT INTO @s.attendance_job_runs (job) VALUES ($1) RETURNING id
)sql";

const char* const kRunFinished = R"sql(
UPDATE @s.attendance_job_runs
SET status = $2, finished_at = clock_timestamp(), processed = $3, failed = $4,
    message = nullif($5, '')
WHERE id = $1
)sql";

namespace {

// The log's maintenance: partitions created ahead, rows moved out of the default partition,
// partitions retired.
constexpr const char* kMaintainLog = R"sql(
SELECT ((x->>'created')::int + (x->>'moved_partitions')::int + (x->>'retired')::int)::bigint
         AS processed,
       x->>'message' AS message
FROM @s.attendance_maintain_log() x
)sql";

}  // namespace

namespace {

JobOutcome run_fold(SpiSession& spi, int64_t fold_cap) {
    JobOutcome out;
    FoldResult r = fold(spi, fold_cap);
    out.processed = int(r.events);
    out.failed = r.failed;
    out.incomplete = !r.complete;
    out.capped = r.capped;
    out.message = "folded " + std::to_string(r.events) + " event(s) into " +
                  std::to_string(r.sessions) + " session(s), flagged " + std::to_string(r.flagged) +
                  " for a late webhook" +
                  (r.complete ? "" : "; an ingesting transaction was still open") +
                  (r.capped ? "; more events than attendance.fold_max_events" : "") +
                  (r.failed ? "; failed: " + r.message : "");
    return out;
}

JobOutcome run_calculate(SpiSession& spi, int64_t) {
    DueResult r = calculate_due(spi, settings.calculation_batch_size);
    return {r.processed, r.failed, r.message};
}

JobOutcome run_reconcile(SpiSession& spi, int64_t) {
    ReconcileResult r = reconcile(spi);
    return {r.sessions_rederived, 0,
            "derived again " + std::to_string(r.sessions_rederived) +
                " session(s) with open connections"};
}

JobOutcome run_partitions(SpiSession& spi, int64_t) {
    // Creates the log's partitions ahead, moves stray rows out of the default partition
    // and retires partitions past attendance.event_retention (one home: the SQL).
    auto r = spi.query(kMaintainLog);
    return {int(r[0]["processed"].int8()), 0, r[0]["message"].str()};
}

JobOutcome run_cleanup(SpiSession& spi, int64_t) {
    int64_t n = cleanup_history(spi, settings.run_history_retention_days);
    return {int(n), 0, "deleted " + std::to_string(n) + " old run(s)"};
}

}  // namespace

const std::vector<Job>& jobs() {
    static const std::vector<Job> table = {
        {"fold", nullptr, run_fold},
        // Asked after the fold, which may flag sessions (a late webhook is calculated in
        // the same run). "Due" has one definition: the view attendance_sessions_due.
        {"calculate", "EXISTS (SELECT 1 FROM @s.attendance_sessions_due WHERE due_at <= now())",
         run_calculate},
        {"reconcile",
         "coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = 'reconcile') "
         "<= now() - make_interval(secs => $1), true)",
         run_reconcile},
        // Hourly, and each minute while the default partition holds rows (moved out into
        // partitions of their own).
        {"partitions",
         "coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = 'partitions') "
         "<= now() - CASE WHEN EXISTS (SELECT 1 FROM @s.meeting_attendance_events_default) "
         "THEN interval '1 minute' ELSE interval '1 hour' END, true)",
         run_partitions},
        {"cleanup",
         "coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = 'cleanup') "
         "<= now() - interval '1 day', true)",
         run_cleanup},
    };
    return table;
}

const Job& job_named(const std::string& name) {
    std::string names;
    const auto& table = jobs();
    for (size_t k = 0; k < table.size(); ++k) {
        if (name == table[k].name) return table[k];
        names += std::string(k == 0 ? "" : k + 1 == table.size() ? " or " : ", ") + table[k].name;
    }
    throw core::Error("22023", "unknown job \"" + name + "\" (" + names + ")");
}

std::vector<bool> jobs_due(SpiSession& spi) {
    std::string sql;
    for (const Job& job : jobs())
        sql += std::string(sql.empty() ? "SELECT " : ", ") + (job.due_sql ? job.due_sql : "true") +
               " AS " + job.name;
    const Row row = spi.query(sql, {Arg::int4(settings.reconcile_interval_s)}, true)[0];
    std::vector<bool> due;
    for (const Job& job : jobs()) due.push_back(row[job.name].truth());
    return due;
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

extern "C" Datum attendance_run_job(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        const Job& job = job_named(text_arg(fcinfo, 0, "job"));
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        const int64_t id = spi.query(kRunStarted, {Arg::text(job.name)})[0]["id"].int8();
        JobOutcome outcome = job.run(spi, 0);
        spi.exec(kRunFinished, {Arg::int8(id), Arg::text("succeeded"), Arg::int4(outcome.processed),
                                Arg::int4(outcome.failed), Arg::text(outcome.message)});
        spi.finish();
        return Int64GetDatum(id);
    });
}

extern "C" Datum attendance_fold(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        // Released upgrade scripts call the fold (0.2.0 -> 0.3.0, 0.3.0 -> 0.4.0); the library
        // would then run against an earlier version's objects. While a script of this
        // extension runs, it derives nothing: the scheduler's first run after ALTER EXTENSION
        // UPDATE folds every event above the watermark and every marked session under the
        // new schema (docs/decisions.md, "Versions and upgrades").
        if (in_extension_script_of(fcinfo->flinfo->fn_oid))
            return jsonb_from_text(
                R"({"events": 0, "sessions": 0, "flagged": 0, "failed": 0, "complete": false, )"
                R"("message": "not folded while an extension script runs: the scheduler's next )"
                R"(fold does it"})");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        FoldResult r = fold(spi);
        spi.finish();
        nlohmann::json j = {{"events", r.events},
                            {"sessions", r.sessions},
                            {"flagged", r.flagged},
                            {"failed", r.failed},
                            {"complete", r.complete}};
        if (r.failed > 0) j["message"] = r.message;
        return jsonb_from_text(j.dump());
    });
}
