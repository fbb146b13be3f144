// A scheduler run, "attendance run" (docs/architecture.md, "The worker's loops"): a
// short-lived dynamic worker connected to attendance.database_name that does the due
// jobs (jobs.hpp), each bookkeeping write in its own short transaction, reports the next
// due moment in shared memory, and exits; while events keep coming it stays for the next
// fold (run_again). No run holds a lock between its transactions (DROP EXTENSION).
#include "pg/crossings.hpp"
#include "pg/jobs.hpp"
#include "pg/scheduler_state.hpp"
#include "pg/settings.hpp"
#include "pg/transactions.hpp"

extern "C" {
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"

PGDLLEXPORT void attendance_run_main(Datum);
}

#include <cstdio>
#include <optional>

namespace attendance::pg {

namespace {

// The extension in this database: its schema (quoted) and version.
constexpr const char* kInstalled = R"sql(
SELECT quote_ident(n.nspname) AS schema, e.extversion AS version
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'attendance'
)sql";

// A Citus worker: its group is not the coordinator's (0).
constexpr const char* kHasCitus = R"sql(
SELECT to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL AS citus
)sql";
constexpr const char* kCitusWorker = R"sql(
SELECT groupid <> 0 AS worker FROM pg_catalog.pg_dist_local_group
)sql";

// Runs left 'running' by a crash or kill are marked failed (only one run at a time).
constexpr const char* kInterrupted = R"sql(
UPDATE @s.attendance_job_runs
SET status = 'failed', finished_at = clock_timestamp(),
    message = 'interrupted: the scheduler stopped before the run finished'
WHERE status = 'running' AND pid IS DISTINCT FROM pg_backend_pid()
)sql";

// A fold is a row of the run history only when it fails.
constexpr const char* kFoldFailed = R"sql(
INSERT INTO @s.attendance_job_runs (job, status, finished_at, processed, failed, message)
VALUES ('fold', 'failed', clock_timestamp(), $2, $3, $1)
)sql";

// When the scheduler is next due: the first session due, and the next reconciliation.
constexpr const char* kNextDue = R"sql(
SELECT (SELECT min(due_at) FROM @s.attendance_sessions_due) AS next_due,
       coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = 'reconcile'),
                now()) + make_interval(secs => $1) AS next_reconcile
)sql";

std::optional<std::string> extension_schema_in_db(std::string& idle_reason, bool& citus_worker) {
    SpiSession spi("pg_catalog");
    auto rows = spi.query(kInstalled, {}, true);
    if (rows.empty()) {
        spi.finish();
        idle_reason = "extension attendance is not installed in database \"" +
                      std::string(settings.database_name) + "\"";
        return std::nullopt;
    }
    // A Citus worker holds shards; the scheduler runs once for the cluster, on the
    // coordinator (docs/scaling.md, "Citus"). A node that belongs to no cluster yet is in
    // group 0, as a coordinator is.
    citus_worker = spi.query(kHasCitus, {}, true)[0]["citus"].truth() &&
                   spi.query(kCitusWorker, {}, true)[0]["worker"].truth();
    spi.finish();
    if (citus_worker) {
        idle_reason = "this node is a Citus worker: the scheduler runs on the coordinator";
        return std::nullopt;
    }
    if (rows[0]["version"].str() != kLibraryVersion) {
        idle_reason = "the SQL schema of attendance is version " + rows[0]["version"].str("?") +
                      " but the library is " + kLibraryVersion +
                      "; run ALTER EXTENSION attendance UPDATE";
        return std::nullopt;
    }
    return rows[0]["schema"].str();
}

// Runs `job` in a transaction of its own, recorded in the run history (a row while it
// runs, its outcome after); adds a line to `summary`.
void run_recorded(const std::string& schema, const Job& job, std::string& summary) {
    const std::string name = job.name;
    int64_t run_id = 0;
    std::string err = in_transaction([&] {
        SpiSession spi(schema);
        run_id = spi.query(kRunStarted, {Arg::text(name)})[0]["id"].int8();
        spi.finish();
    });
    if (!err.empty()) {
        summary += name + ": " + err + "; ";
        return;
    }
    report_activity(name);
    JobOutcome outcome;
    err = in_transaction([&] {
        SpiSession spi(schema);
        outcome = job.run(spi, 0);
        spi.finish();
    });
    report_activity("");
    const std::string status = err.empty() ? "succeeded" : "failed";
    const std::string message = err.empty() ? outcome.message : err;
    in_transaction([&] {
        SpiSession spi(schema);
        spi.exec(kRunFinished, {Arg::int8(run_id), Arg::text(status), Arg::int4(outcome.processed),
                                Arg::int4(outcome.failed), Arg::text(message)});
        spi.finish();
    });
    summary += name + " " + status + " (" + std::to_string(outcome.processed) + " processed, " +
               std::to_string(outcome.failed) + " failed); ";
    if (name == "calculate" || !err.empty())
        log_message(LOG, "attendance scheduler: " + name + " " + status + ": " + message);
}

// The fold, which every run does first: a row of the run history only when it fails
// (otherwise it would write one every second); attendance_fold_state keeps its progress.
void run_fold(const std::string& schema, std::string& summary) {
    SchedulerState* shared = scheduler_state();
    JobOutcome folded;
    const std::string err = in_transaction([&] {
        SpiSession spi(schema);
        folded = jobs().front().run(spi, settings.fold_max_events);
        spi.finish();
    });
    // A fold that waited in vain for an open transaction leaves its events for a later
    // fold. That transaction may log nothing (a redelivery draws an id and stores no row),
    // so its commit may never wake the scheduler: the next fold is due now (at most every
    // fold_interval), whether or not another event comes.
    // A fold that stopped at attendance.fold_max_events is followed by the next at once.
    if (folded.incomplete || folded.capped) {
        StateLock lock(shared);
        shared->events_pending = true;
        if (folded.capped) shared->last_fold_start_ms = 0;
    }
    if (!err.empty() || folded.failed > 0) {
        const std::string why = err.empty() ? folded.message : err;
        summary += "fold failed: " + why + "; ";
        in_transaction([&] {
            SpiSession spi(schema);
            spi.exec(kFoldFailed, {Arg::text(why), Arg::int4(folded.processed),
                                   Arg::int4(std::max(folded.failed, 1))});
            spi.finish();
        });
        log_message(WARNING, "attendance scheduler: fold failed: " + why);
    } else if (folded.processed > 0) {
        summary += folded.message + "; ";
    }
}

void run_once() {
    SchedulerState* shared = scheduler_state();
    // Events committed from here on set the flag again and wake the launcher for the next
    // fold; cleared first, whatever this run finds, so that the launcher never starts
    // runs back to back for events this run has taken.
    {
        StateLock lock(shared);
        shared->events_pending = false;
        shared->last_fold_start_ms = now_ms();
    }
    std::string idle_reason;
    bool citus_worker = false;
    std::optional<std::string> schema;
    std::string err = in_transaction([&] {
        schema = extension_schema_in_db(idle_reason, citus_worker);
        if (!schema) return;
        SpiSession spi(*schema);
        spi.exec(kInterrupted);
        spi.finish();
    });
    if (!err.empty() || !schema) {
        std::string why = err.empty() ? idle_reason : err;
        // A Citus worker's scheduler stands down for good: said once (LOG), not every
        // minute; anything else is a WARNING each time.
        bool said = false;
        {
            StateLock lock(shared);
            said = shared->runs > 0 && why == shared->last_message;
        }
        const int level = !citus_worker ? WARNING : said ? DEBUG1 : LOG;
        log_message(level, "attendance scheduler is idle: " + why);
        report_run(now_ms() + 60'000, -1, false, why);
        return;
    }

    // The fold first: events logged since the last one become live rows, and late
    // webhooks flag their sessions, which this run then calculates.
    std::string summary;
    run_fold(*schema, summary);
    std::vector<bool> due;
    err = in_transaction([&] {
        SpiSession spi(*schema);
        due = jobs_due(spi);
        spi.finish();
    });
    if (!err.empty()) summary += "which jobs are due: " + err + "; ";
    for (size_t k = 1; k < due.size(); ++k)
        if (due[k]) run_recorded(*schema, jobs()[k], summary);

    int64 next_due = -1, next_reconcile = -1;
    err = in_transaction([&] {
        SpiSession spi(*schema);
        auto r = spi.query(kNextDue, {Arg::int4(settings.reconcile_interval_s)}, true);
        if (const auto at = r[0]["next_due"].opt_ms()) next_due = *at;
        if (const auto at = r[0]["next_reconcile"].opt_ms()) next_reconcile = *at;
        spi.finish();
    });
    report_run(next_due, next_reconcile, err.empty(), summary.empty() ? "nothing due" : summary);
}

// A run stays while events keep coming: when events were logged since its last fold began,
// it waits until the next fold is due (that start + attendance.fold_interval) and runs
// again, keeping its catalog caches and prepared plans (a new process paid about 60-80 ms
// per fold to warm them); a request runs it again at once. It leaves when nothing was
// logged, when the next fold is due after kRunStayMs from its start, or at kRunStayMs.
constexpr int64 kRunStayMs = 60'000;

bool run_again(int64 started) {
    SchedulerState* shared = scheduler_state();
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
        const int64 now = now_ms();
        const int64 leave_at = started + kRunStayMs;
        if (now >= leave_at) return false;
        int64 fold_at = 0;
        bool events = false, woken = false;
        {
            StateLock lock(shared);
            fold_at = shared->last_fold_start_ms + settings.fold_interval_ms;
            events = shared->events_pending;
            // A request (a schedule change, a calculation asked for) is taken by this run
            // at once, as the launcher would: the launcher need not start another for it.
            woken = shared->wake_pending;
            shared->wake_pending = false;
        }
        if (woken) return true;
        // Nothing logged since the last fold began, or the next fold is due after the stay:
        // the launcher takes over (a run never waits connected for nothing).
        if (!events || fold_at >= leave_at) return false;
        if (now >= fold_at) return true;
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
                        long(fold_at - now), PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

void clear_run_latch(int, Datum) {
    SchedulerState* shared = scheduler_state();
    if (!shared) return;
    StateLock lock(shared);
    if (shared->run_latch == MyLatch) shared->run_latch = nullptr;
}

}  // namespace

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

extern "C" void attendance_run_main(Datum) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    {
        StateLock lock(scheduler_state());
        scheduler_state()->run_latch = MyLatch;
    }
    on_shmem_exit(clear_run_latch, 0);
    BackgroundWorkerInitializeConnection(settings.database_name, nullptr, 0);
    // The run's SQL (and the rule functions inlined into it) resolves names as the SQL
    // functions of the extension do: never through a search_path set on the database.
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    // The watermark settles only in READ COMMITTED (a transaction snapshot predates the
    // wait): a database's default_transaction_isolation must not stop every fold.
    SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
    mark_as_run();
    static char message[512] = "";
    try {
        const int64 started = now_ms();
        do run_once();
        while (run_again(started));
    } catch (const std::exception& e) {
        std::snprintf(message, sizeof message, "%s", e.what());
    }
    if (message[0]) elog(FATAL, "attendance run: %s", message);
    proc_exit(0);
}
