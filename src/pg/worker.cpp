// The background scheduler (docs/architecture.md, "The worker's loops"), in two parts:
//  - the launcher "attendance scheduler": a static worker started after recovery, not
//    connected to any database. It sleeps on its latch until the next due moment (or
//    until woken at commit) and then starts one run;
//  - a run "attendance run": a short-lived dynamic worker connected to
//    attendance.database_name that does the due jobs, each bookkeeping write in its own
//    short transaction, reports the next due moment in shared memory, and exits; while
//    events keep coming it stays for the next fold (run_again).
// Between runs nothing stays connected: DROP DATABASE meets a run only while webhooks keep
// arriving, and no run holds a lock between its transactions (DROP EXTENSION).
#include "pg/calculate.hpp"
#include "pg/args.hpp"
#include "pg/settings.hpp"

#include "core/calc.hpp"

extern "C" {
#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void attendance_launcher_main(Datum);
PGDLLEXPORT void attendance_run_main(Datum);
PG_FUNCTION_INFO_V1(attendance_wake_worker);
PG_FUNCTION_INFO_V1(attendance_worker_status);
PG_FUNCTION_INFO_V1(attendance_run_job);
}

#include <nlohmann/json.hpp>

#include <cstdio>

namespace attendance::pg {

namespace {

struct Shared {
    slock_t mutex;
    pid_t launcher_pid;
    Latch* launcher_latch;
    Latch* run_latch;  // a run that stays (see run_again): woken by a request as well
    bool wake_pending;
    bool events_pending;  // events were logged since the last fold began
    int64 last_fold_start_ms;
    pid_t run_pid;
    int64 next_due_ms;        // next session due, or -1
    int64 next_reconcile_ms;  // next reconciliation, or -1
    int64 last_run_end_ms;
    bool last_run_ok;
    int64 runs;
    char last_message[512];
};

Shared* shared = nullptr;
shmem_request_hook_type prev_shmem_request_hook = nullptr;
shmem_startup_hook_type prev_shmem_startup_hook = nullptr;
bool wake_registered = false;
bool in_run = false;  // this process is a scheduler run
bool wake_pending_local = false;
bool event_pending_local = false;

void request_shmem() {
    if (prev_shmem_request_hook) prev_shmem_request_hook();
    RequestAddinShmemSpace(MAXALIGN(sizeof(Shared)));
}

void startup_shmem() {
    if (prev_shmem_startup_hook) prev_shmem_startup_hook();
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    shared = static_cast<Shared*>(ShmemInitStruct("attendance scheduler", sizeof(Shared), &found));
    if (!found) {
        memset(shared, 0, sizeof(Shared));
        SpinLockInit(&shared->mutex);
        shared->next_due_ms = -1;
        shared->next_reconcile_ms = -1;
    }
    LWLockRelease(AddinShmemInitLock);
}

int64 now_ms() { return timestamptz_to_ms(GetCurrentTimestamp()); }

void on_commit_wake(XactEvent event, void*) {
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT) {
        // A logged event: the launcher folds it within attendance.fold_interval. The flag
        // is read without the lock first, so a busy log costs one read per webhook.
        if (event_pending_local && shared && !shared->events_pending) {
            Latch* latch = nullptr;
            SpinLockAcquire(&shared->mutex);
            shared->events_pending = true;
            latch = shared->launcher_latch;
            SpinLockRelease(&shared->mutex);
            if (latch) SetLatch(latch);
        }
        event_pending_local = false;
        if (wake_pending_local && shared) {
            Latch* latch = nullptr;
            Latch* run_latch = nullptr;
            SpinLockAcquire(&shared->mutex);
            shared->wake_pending = true;
            latch = shared->launcher_latch;
            run_latch = shared->run_latch;
            SpinLockRelease(&shared->mutex);
            if (latch) SetLatch(latch);
            if (run_latch) SetLatch(run_latch);
        }
        wake_pending_local = false;
    } else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) {
        wake_pending_local = false;
        event_pending_local = false;
    }
}

// ---- the run -------------------------------------------------------------------

// Runs fn in its own transaction with SPI and a snapshot; a PostgreSQL error aborts
// the transaction and comes back as the message (empty on success).
template <typename F>
std::string in_transaction(F&& fn) {
    std::string error;
    pg_call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
    });
    try {
        fn();
        pg_call([] {
            PopActiveSnapshot();
            CommitTransactionCommand();
        });
        return "";
    } catch (const PgError& e) {
        error = e.what();
    } catch (const std::exception& e) {
        error = e.what();
    }
    pg_call([] { AbortCurrentTransaction(); });
    return error.empty() ? "unknown error" : error;
}

struct JobOutcome {
    int processed = 0;
    int failed = 0;
    std::string message;
    bool incomplete = false;  // a fold that left events for a later fold
    bool capped = false;      // a fold that stopped at attendance.fold_max_events
};

// fold_cap: attendance.fold_max_events for the scheduler's own fold; 0 (everything) when
// asked for by attendance_run_job.
JobOutcome do_job(SpiSession& spi, const std::string& job, int64_t fold_cap = 0) {
    JobOutcome out;
    if (job == "fold") {
        FoldResult r = fold(spi, fold_cap);
        out.processed = int(r.events);
        out.failed = r.failed;
        out.incomplete = !r.complete;
        out.capped = r.capped;
        out.message = "folded " + std::to_string(r.events) + " event(s) into " +
                      std::to_string(r.sessions) + " session(s), flagged " +
                      std::to_string(r.flagged) + " for a late webhook" +
                      (r.complete ? "" : "; an ingesting transaction was still open") +
                      (r.capped ? "; more events than attendance.fold_max_events" : "") +
                      (r.failed ? "; failed: " + r.message : "");
    } else if (job == "calculate") {
        DueResult r = calculate_due(spi, settings.calculation_batch_size);
        out.processed = r.processed;
        out.failed = r.failed;
        out.message = r.message;
    } else if (job == "reconcile") {
        ReconcileResult r = reconcile(spi);
        out.processed = r.sessions_rederived;
        out.message = "derived again " + std::to_string(r.sessions_rederived) +
                      " session(s) with open connections";
    } else if (job == "partitions") {
        // Creates the log's partitions ahead, moves stray rows out of the default partition
        // and retires partitions past attendance.event_retention (one home: the SQL).
        auto r = spi.query(
            "SELECT ((x->>'created')::int + (x->>'moved_partitions')::int + "
            "(x->>'retired')::int)::bigint, x->>'message' FROM @s.attendance_maintain_log() x",
            {});
        out.processed = int(r[0][0].int8());
        out.message = r[0][1].str("");
    } else if (job == "cleanup") {
        int64_t n = cleanup_history(spi, settings.run_history_retention_days);
        out.processed = int(n);
        out.message = "deleted " + std::to_string(n) + " old run(s)";
    } else {
        throw core::Error("22023", "unknown job \"" + job +
                                       "\" (fold, calculate, reconcile, partitions or cleanup)");
    }
    return out;
}

std::optional<std::string> extension_schema_in_db(std::string& idle_reason, bool& citus_worker) {
    SpiSession spi("pg_catalog");
    auto rows = spi.query(
        "SELECT quote_ident(n.nspname), e.extversion FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'attendance'",
        {}, true);
    if (rows.empty()) {
        spi.finish();
        idle_reason = "extension attendance is not installed in database \"" +
                      std::string(settings.database_name) + "\"";
        return std::nullopt;
    }
    // A Citus worker holds shards; the scheduler runs once for the cluster, on the
    // coordinator (docs/scaling.md, "Citus"). A node that belongs to no cluster yet is in
    // group 0, as a coordinator is.
    citus_worker =
        spi.query("SELECT to_regclass('pg_catalog.pg_dist_local_group') IS NOT NULL", {},
                  true)[0][0]
            .truth() &&
        spi.query("SELECT groupid <> 0 FROM pg_catalog.pg_dist_local_group", {}, true)[0][0]
            .truth();
    spi.finish();
    if (citus_worker) {
        idle_reason = "this node is a Citus worker: the scheduler runs on the coordinator";
        return std::nullopt;
    }
    if (rows[0][1].str("") != kLibraryVersion) {
        idle_reason = "the SQL schema of attendance is version " + rows[0][1].str("?") +
                      " but the library is " + kLibraryVersion +
                      "; run ALTER EXTENSION attendance UPDATE";
        return std::nullopt;
    }
    return rows[0][0].str();
}

void report(int64 next_due, int64 next_reconcile, bool ok, const std::string& message) {
    SpinLockAcquire(&shared->mutex);
    shared->next_due_ms = next_due;
    shared->next_reconcile_ms = next_reconcile;
    shared->last_run_end_ms = now_ms();
    shared->last_run_ok = ok;
    shared->runs++;
    std::snprintf(shared->last_message, sizeof shared->last_message, "%s", message.c_str());
    SpinLockRelease(&shared->mutex);
}

void run_once() {
    // Events committed from here on set the flag again and wake the launcher for the next
    // fold; cleared first, whatever this run finds, so that the launcher never starts
    // runs back to back for events this run has taken.
    SpinLockAcquire(&shared->mutex);
    shared->events_pending = false;
    shared->last_fold_start_ms = now_ms();
    SpinLockRelease(&shared->mutex);
    std::string idle_reason;
    bool citus_worker = false;
    std::optional<std::string> schema;
    bool reconcile_due = false, cleanup_due = false, calculate_due_now = false,
         partitions_due = false;
    std::string err = in_transaction([&] {
        schema = extension_schema_in_db(idle_reason, citus_worker);
        if (!schema) return;
        SpiSession spi(*schema);
        // Runs left 'running' by a crash or kill are marked failed (only one run at a time).
        spi.exec(
            "UPDATE @s.attendance_job_runs SET status = 'failed', finished_at = clock_timestamp(), "
            "message = 'interrupted: the scheduler stopped before the run finished' "
            "WHERE status = 'running' AND pid IS DISTINCT FROM pg_backend_pid()");
        // (Whether a calculation is due is asked after the fold, which may flag sessions.)
        auto r = spi.query(
            "SELECT coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = "
            "'reconcile') "
            "  <= now() - make_interval(secs => $1), true), "
            "coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = 'cleanup') "
            "  <= now() - interval '1 day', true), "
            // Partition maintenance: hourly, and each minute while the default partition
            // holds rows (moved out into partitions of their own).
            "coalesce((SELECT max(started_at) FROM @s.attendance_job_runs WHERE job = "
            "'partitions') <= now() - CASE WHEN EXISTS (SELECT 1 FROM "
            "@s.meeting_attendance_events_default) THEN interval '1 minute' "
            "ELSE interval '1 hour' END, true)",
            {Arg::int4(settings.reconcile_interval_s)}, true);
        reconcile_due = r[0][0].truth();
        cleanup_due = r[0][1].truth();
        partitions_due = r[0][2].truth();
        spi.finish();
    });
    if (!err.empty() || !schema) {
        std::string why = err.empty() ? idle_reason : err;
        // A Citus worker's scheduler stands down for good: said once (LOG), not every
        // minute; anything else is a WARNING each time.
        SpinLockAcquire(&shared->mutex);
        const bool said = shared->runs > 0 && why == shared->last_message;
        SpinLockRelease(&shared->mutex);
        const int level = !citus_worker ? WARNING : said ? DEBUG1 : LOG;
        pg_call([&] { ereport(level, (errmsg("attendance scheduler is idle: %s", why.c_str()))); });
        report(now_ms() + 60'000, -1, false, why);
        return;
    }

    // The fold first: events logged since the last one become live rows, and late
    // webhooks flag their sessions, which this run then calculates. A fold is a row of the
    // run history only when it fails (otherwise it would write one every second);
    // attendance_fold_state keeps its progress.
    std::string summary;
    JobOutcome folded;
    err = in_transaction([&] {
        SpiSession spi(*schema);
        folded = do_job(spi, "fold", settings.fold_max_events);
        spi.finish();
    });
    // A fold that waited in vain for an open transaction leaves its events for a later
    // fold. That transaction may log nothing (a redelivery draws an id and stores no row),
    // so its commit may never wake the scheduler: the next fold is due now (at most every
    // fold_interval), whether or not another event comes.
    // A fold that stopped at attendance.fold_max_events is followed by the next at once.
    if (folded.incomplete || folded.capped) {
        SpinLockAcquire(&shared->mutex);
        shared->events_pending = true;
        if (folded.capped) shared->last_fold_start_ms = 0;
        SpinLockRelease(&shared->mutex);
    }
    if (!err.empty() || folded.failed > 0) {
        const std::string why = err.empty() ? folded.message : err;
        summary += "fold failed: " + why + "; ";
        in_transaction([&] {
            SpiSession spi(*schema);
            spi.exec(
                "INSERT INTO @s.attendance_job_runs (job, status, finished_at, processed, failed, "
                "message) VALUES ('fold', 'failed', clock_timestamp(), $2, $3, $1)",
                {Arg::text(why), Arg::int4(folded.processed),
                 Arg::int4(std::max(folded.failed, 1))});
            spi.finish();
        });
        pg_call([&] { elog(WARNING, "attendance scheduler: fold failed: %s", why.c_str()); });
    } else if (folded.processed > 0) {
        summary += folded.message + "; ";
    }
    {
        // Due again after the fold: a late webhook it flagged is calculated in this run.
        err = in_transaction([&] {
            SpiSession spi(*schema);
            auto due = spi.query(
                "SELECT EXISTS (SELECT 1 FROM @s.attendance_sessions_due WHERE due_at <= now())",
                {}, true);
            calculate_due_now = due[0][0].truth();
            spi.finish();
        });
    }
    for (const char* job : {"calculate", "reconcile", "partitions", "cleanup"}) {
        std::string name = job;
        if ((name == "calculate" && !calculate_due_now) ||
            (name == "reconcile" && !reconcile_due) || (name == "cleanup" && !cleanup_due) ||
            (name == "partitions" && !partitions_due))
            continue;
        int64_t run_id = 0;
        err = in_transaction([&] {
            SpiSession spi(*schema);
            auto r = spi.query("INSERT INTO @s.attendance_job_runs (job) VALUES ($1) RETURNING id",
                               {Arg::text(name)});
            run_id = r[0][0].int8();
            spi.finish();
        });
        if (!err.empty()) {
            summary += name + ": " + err + "; ";
            continue;
        }
        pg_call([&] { pgstat_report_activity(STATE_RUNNING, name.c_str()); });
        JobOutcome outcome;
        err = in_transaction([&] {
            SpiSession spi(*schema);
            outcome = do_job(spi, name);
            spi.finish();
        });
        pg_call([] { pgstat_report_activity(STATE_IDLE, nullptr); });
        std::string status = err.empty() ? "succeeded" : "failed";
        std::string message = err.empty() ? outcome.message : err;
        in_transaction([&] {
            SpiSession spi(*schema);
            spi.exec(
                "UPDATE @s.attendance_job_runs SET status = $2, finished_at = clock_timestamp(), "
                "processed = $3, "
                "failed = $4, message = nullif($5, '') WHERE id = $1",
                {Arg::int8(run_id), Arg::text(status), Arg::int4(outcome.processed),
                 Arg::int4(outcome.failed), Arg::text(message)});
            spi.finish();
        });
        summary += name + " " + status + " (" + std::to_string(outcome.processed) + " processed, " +
                   std::to_string(outcome.failed) + " failed); ";
        if (name == "calculate" || !err.empty())
            pg_call([&] {
                elog(LOG, "attendance scheduler: %s %s: %s", name.c_str(), status.c_str(),
                     message.c_str());
            });
    }

    int64 next_due = -1, next_reconcile = -1;
    err = in_transaction([&] {
        SpiSession spi(*schema);
        auto r = spi.query(
            "SELECT floor(extract(epoch FROM (SELECT min(due_at) FROM @s.attendance_sessions_due)) "
            "   * 1000)::bigint, "
            "floor(extract(epoch FROM coalesce((SELECT max(started_at) FROM @s.attendance_job_runs "
            "   WHERE job = 'reconcile'), now()) + make_interval(secs => $1)) * 1000)::bigint",
            {Arg::int4(settings.reconcile_interval_s)}, true);
        if (!r[0][0].is_null()) next_due = r[0][0].int8();
        if (!r[0][1].is_null()) next_reconcile = r[0][1].int8();
        spi.finish();
    });
    report(next_due, next_reconcile, err.empty(), summary.empty() ? "nothing due" : summary);
}

// ---- the launcher ----------------------------------------------------------------

// The postmaster announces a run's start and exit with SIGUSR1 (bgw_notify_pid), which a
// worker without a database connection ignores by default: without this handler
// WaitForBackgroundWorkerStartup/Shutdown would sleep until something else set the latch.
void launcher_sigusr1(SIGNAL_ARGS) {
    int save_errno = errno;
    SetLatch(MyLatch);
    errno = save_errno;
}

void clear_launcher(int, Datum) {
    if (!shared) return;
    SpinLockAcquire(&shared->mutex);
    shared->launcher_pid = 0;
    shared->launcher_latch = nullptr;
    SpinLockRelease(&shared->mutex);
}

// Starts one run and waits for it to end; returns false if it could not start.
bool start_run_and_wait() {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "attendance");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "attendance_run_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "attendance run");
    snprintf(w.bgw_type, BGW_MAXLEN, "attendance run");
    w.bgw_notify_pid = MyProcPid;
    BackgroundWorkerHandle* handle = nullptr;
    if (!RegisterDynamicBackgroundWorker(&w, &handle)) return false;
    pid_t pid = 0;
    if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED) return false;
    SpinLockAcquire(&shared->mutex);
    shared->run_pid = pid;
    SpinLockRelease(&shared->mutex);
    WaitForBackgroundWorkerShutdown(handle);
    SpinLockAcquire(&shared->mutex);
    shared->run_pid = 0;
    SpinLockRelease(&shared->mutex);
    return true;
}

void launcher_loop() {
    int64 next_run = 0;  // run at once: mark interrupted runs, catch up on what is due
    int failures = 0;    // runs in a row that could not start or died
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        // Runs may follow one another without a wait on the latch: notice the
        // postmaster's death here as well.
        if (!PostmasterIsAlive()) proc_exit(1);
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            next_run = 0;  // the delay or interval may have changed
        }
        bool woken = false;
        bool events = false;
        int64 last_fold = 0;
        SpinLockAcquire(&shared->mutex);
        woken = shared->wake_pending;
        shared->wake_pending = false;
        events = shared->events_pending;
        last_fold = shared->last_fold_start_ms;
        SpinLockRelease(&shared->mutex);

        int64 now = now_ms();
        // New events are folded at most every fold_interval, and not before the backoff
        // after runs that could not start (else a missing database would spin the loop).
        const int64 fold_at = !events ? INT64_MAX
                              : failures > 0
                                  ? std::max(next_run, last_fold + settings.fold_interval_ms)
                                  : last_fold + settings.fold_interval_ms;
        if (woken || now >= next_run || now >= fold_at) {
            uint64 runs_before = 0;
            SpinLockAcquire(&shared->mutex);
            runs_before = uint64(shared->runs);
            SpinLockRelease(&shared->mutex);
            bool started = start_run_and_wait();
            SpinLockAcquire(&shared->mutex);
            bool reported = uint64(shared->runs) != runs_before;
            int64 due = shared->next_due_ms, rec = shared->next_reconcile_ms;
            SpinLockRelease(&shared->mutex);
            now = now_ms();
            if (!started || !reported) {
                // The run could not start or died (e.g. the database is missing): retry
                // with backoff, 10 s doubling up to 5 min.
                failures = std::min(failures + 1, 5);
                next_run = now + std::min<int64>(10'000LL << (failures - 1), 300'000);
            } else {
                failures = 0;
                next_run = now + 10 * 60'000;  // a safety net; normally woken or due earlier
                if (due >= 0 && due < next_run) next_run = due;
                if (rec >= 0 && rec < next_run) next_run = rec;
            }
            continue;  // re-check wake requests that arrived during the run
        }
        long timeout = long(
            std::max<int64>(0, std::min<int64>(std::min(next_run, fold_at) - now, 10 * 60'000)));
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout,
                        PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

}  // namespace

void register_worker_if_preloaded() {
    if (!process_shared_preload_libraries_in_progress) return;
    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = request_shmem;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = startup_shmem;
    if (!settings.scheduler_enabled) return;

    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = 5;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "attendance");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "attendance_launcher_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "attendance scheduler");
    snprintf(w.bgw_type, BGW_MAXLEN, "attendance scheduler");
    RegisterBackgroundWorker(&w);
}

void wake_worker_at_commit() {
    // A run asks itself after its fold whether a calculation is due; a wake from its own
    // transactions (a flagged session) would only start another pass at once.
    if (!shared || in_run) return;
    if (!wake_registered) {
        pg_call([] { RegisterXactCallback(on_commit_wake, nullptr); });
        wake_registered = true;
    }
    wake_pending_local = true;
}

void note_event_at_commit() {
    if (!shared) return;
    if (!wake_registered) {
        pg_call([] { RegisterXactCallback(on_commit_wake, nullptr); });
        wake_registered = true;
    }
    event_pending_local = true;
}

void warn_if_scheduler_absent() {
    bool running = false;
    if (shared) {
        SpinLockAcquire(&shared->mutex);
        running = shared->launcher_pid != 0;
        SpinLockRelease(&shared->mutex);
    }
    if (!running)
        pg_call([] {
            ereport(NOTICE, (errmsg("the attendance scheduler is not running"),
                             errhint("Add attendance to shared_preload_libraries to calculate "
                                     "sessions automatically.")));
        });
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

extern "C" void attendance_launcher_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    pqsignal(SIGUSR1, launcher_sigusr1);
    BackgroundWorkerUnblockSignals();
    if (!shared)
        elog(FATAL, "attendance scheduler: shared memory is not set up (is attendance preloaded?)");
    SpinLockAcquire(&shared->mutex);
    shared->launcher_pid = MyProcPid;
    shared->launcher_latch = MyLatch;
    SpinLockRelease(&shared->mutex);
    on_shmem_exit(clear_launcher, 0);
    elog(LOG, "attendance scheduler started (database \"%s\", calculation delay %d s)",
         settings.database_name, settings.calculation_delay_s);
    try {
        launcher_loop();
    } catch (const std::exception& e) {
        // The loop only calls PostgreSQL through pg_call; anything here ends the
        // launcher, and the postmaster restarts it.
        static char message[512];
        std::snprintf(message, sizeof message, "%s", e.what());
        elog(FATAL, "attendance scheduler: %s", message);
    }
}

// A run stays while events keep coming (docs/architecture.md, "The worker's loops"): when
// events were logged since its last fold began, it waits until the next fold is due (that
// start + attendance.fold_interval) and runs again, keeping its catalog caches and prepared
// plans (a new process paid about 60-80 ms per fold to warm them); a request runs it again
// at once. It leaves when nothing was logged, when the next fold is due after kRunStayMs
// from its start, or at kRunStayMs.
constexpr int64 kRunStayMs = 60'000;

static bool run_again(int64 started) {
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
        const int64 now = now_ms();
        const int64 leave_at = started + kRunStayMs;
        if (now >= leave_at) return false;
        SpinLockAcquire(&shared->mutex);
        const int64 fold_at = shared->last_fold_start_ms + settings.fold_interval_ms;
        const bool events = shared->events_pending;
        // A request (a schedule change, a calculation asked for) is taken by this run at
        // once, as the launcher would: the launcher need not start another for it.
        const bool woken = shared->wake_pending;
        shared->wake_pending = false;
        SpinLockRelease(&shared->mutex);
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

static void clear_run_latch(int, Datum) {
    if (!shared) return;
    SpinLockAcquire(&shared->mutex);
    if (shared->run_latch == MyLatch) shared->run_latch = nullptr;
    SpinLockRelease(&shared->mutex);
}

extern "C" void attendance_run_main(Datum) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    SpinLockAcquire(&shared->mutex);
    shared->run_latch = MyLatch;
    SpinLockRelease(&shared->mutex);
    on_shmem_exit(clear_run_latch, 0);
    BackgroundWorkerInitializeConnection(settings.database_name, nullptr, 0);
    // The run's SQL (and the rule functions inlined into it) resolves names as the SQL
    // functions of the extension do: never through a search_path set on the database.
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    // The watermark settles only in READ COMMITTED (a transaction snapshot predates the
    // wait): a database's default_transaction_isolation must not stop every fold.
    SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
    in_run = true;
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

extern "C" Datum attendance_wake_worker(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return entry([&]() -> Datum {
        wake_worker_at_commit();
        PG_RETURN_VOID();
    });
}

extern "C" Datum attendance_worker_status(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        nlohmann::json j;
        j["preloaded"] = shared != nullptr;
        j["database"] = settings.database_name ? settings.database_name : "";
        j["calculation_delay_seconds"] = settings.calculation_delay_s;
        j["reconcile_interval_seconds"] = settings.reconcile_interval_s;
        if (shared) {
            Shared copy;
            SpinLockAcquire(&shared->mutex);
            memcpy(&copy, shared, sizeof copy);
            SpinLockRelease(&shared->mutex);
            auto ts = [](int64 ms) {
                return ms < 0 ? nlohmann::json() : nlohmann::json(core::format_timestamp_ms(ms));
            };
            j["running"] = copy.launcher_pid != 0;
            j["launcher_pid"] =
                copy.launcher_pid ? nlohmann::json(copy.launcher_pid) : nlohmann::json();
            j["run_in_progress_pid"] =
                copy.run_pid ? nlohmann::json(copy.run_pid) : nlohmann::json();
            j["runs_since_start"] = copy.runs;
            j["next_due"] = ts(copy.next_due_ms);
            j["next_reconcile"] = ts(copy.next_reconcile_ms);
            j["last_run_finished"] = copy.runs ? ts(copy.last_run_end_ms) : nlohmann::json();
            j["last_run_ok"] = copy.runs ? nlohmann::json(copy.last_run_ok) : nlohmann::json();
            j["last_run_message"] =
                copy.runs ? nlohmann::json(std::string(copy.last_message)) : nlohmann::json();
        } else {
            j["running"] = false;
        }
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        auto rows = spi.query(
            "SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id DESC), '[]')::text FROM (SELECT "
            "id, job, status, "
            "started_at, finished_at, processed, failed, message FROM @s.attendance_job_runs ORDER "
            "BY id DESC LIMIT 5) r",
            {}, true);
        j["last_runs"] = nlohmann::json::parse(rows[0][0].str("[]"));
        spi.finish();
        return jsonb_datum(j.dump());
    });
}

extern "C" Datum attendance_run_job(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        std::string job = text_arg(fcinfo, 0, "job");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        if (job != "fold" && job != "calculate" && job != "reconcile" && job != "partitions" &&
            job != "cleanup")
            throw core::Error(
                "22023",
                "unknown job \"" + job + "\" (fold, calculate, reconcile, partitions or cleanup)");
        auto r = spi.query("INSERT INTO @s.attendance_job_runs (job) VALUES ($1) RETURNING id",
                           {Arg::text(job)});
        int64_t id = r[0][0].int8();
        JobOutcome outcome = do_job(spi, job);
        spi.exec(
            "UPDATE @s.attendance_job_runs SET status = 'succeeded', finished_at = "
            "clock_timestamp(), processed = $2, "
            "failed = $3, message = nullif($4, '') WHERE id = $1",
            {Arg::int8(id), Arg::int4(outcome.processed), Arg::int4(outcome.failed),
             Arg::text(outcome.message)});
        spi.finish();
        return Int64GetDatum(id);
    });
}

extern "C" {
PG_FUNCTION_INFO_V1(attendance_fold);
PG_FUNCTION_INFO_V1(attendance_calculation_delay);
PG_FUNCTION_INFO_V1(attendance_partition_interval);
PG_FUNCTION_INFO_V1(attendance_event_retention);
}

extern "C" Datum attendance_fold(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        // Released upgrade scripts call the fold (0.2.0 -> 0.3.0, 0.3.0 -> 0.4.0); the library
        // would then run against an earlier version's objects. While a script of this
        // extension runs, it derives nothing: the scheduler's first run after ALTER EXTENSION
        // UPDATE folds every event above the watermark and every marked session under the
        // new schema (docs/decisions.md, "Versions and upgrades").
        const Oid fn = fcinfo->flinfo->fn_oid;
        if (pg_call([fn] {
                return creating_extension &&
                       CurrentExtensionObject == getExtensionOfObject(ProcedureRelationId, fn);
            }))
            return jsonb_datum(
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
        return jsonb_datum(j.dump());
    });
}

// The setting as an interval, for the view attendance_sessions_due (the one "due" rule).
extern "C" Datum attendance_calculation_delay(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return entry([&]() -> Datum {
        return pg_call([] {
            ::Interval* i = static_cast<::Interval*>(palloc0(sizeof(::Interval)));
            i->time = int64(settings.calculation_delay_s) * USECS_PER_SEC;
            return IntervalPGetDatum(i);
        });
    });
}

// The log's settings as intervals, for the partition maintenance (attendance_maintain_log);
// a retention of 0 keeps everything (NULL).
extern "C" Datum attendance_partition_interval(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return entry([&]() -> Datum {
        return pg_call([] {
            ::Interval* i = static_cast<::Interval*>(palloc0(sizeof(::Interval)));
            i->time = int64(settings.partition_interval_min) * 60 * USECS_PER_SEC;
            return IntervalPGetDatum(i);
        });
    });
}

extern "C" Datum attendance_event_retention(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        if (settings.event_retention_min <= 0) {
            fcinfo->isnull = true;
            return Datum(0);
        }
        return pg_call([] {
            ::Interval* i = static_cast<::Interval*>(palloc0(sizeof(::Interval)));
            i->time = int64(settings.event_retention_min) * 60 * USECS_PER_SEC;
            return IntervalPGetDatum(i);
        });
    });
}
