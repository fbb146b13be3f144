// The launcher, "attendance scheduler" (docs/architecture.md, "The worker's loops"): a
// static worker started after recovery, not connected to any database. It sleeps on its
// latch until the next due moment (or until woken at commit) and then starts one run
// (run.cpp). Between runs nothing stays connected: DROP DATABASE meets a run only while
// webhooks keep arriving.
#include "pg/scheduler.hpp"
#include "pg/scheduler_state.hpp"
#include "pg/settings.hpp"

extern "C" {
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"

PGDLLEXPORT void attendance_launcher_main(Datum);
}

#include <algorithm>
#include <cstdio>

namespace attendance::pg {

namespace {

// The postmaster announces a run's start and exit with SIGUSR1 (bgw_notify_pid), which a
// worker without a database connection ignores by default: without this handler
// WaitForBackgroundWorkerStartup/Shutdown would sleep until something else set the latch.
void launcher_sigusr1(SIGNAL_ARGS) {
    (void)postgres_signal_arg;
    int save_errno = errno;
    SetLatch(MyLatch);
    errno = save_errno;
}

void clear_launcher(int, Datum) {
    SchedulerState* shared = scheduler_state();
    if (!shared) return;
    StateLock lock(shared);
    shared->launcher_pid = 0;
    shared->launcher_latch = nullptr;
}

BackgroundWorker worker_named(const char* name, const char* function) {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "attendance");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
    snprintf(w.bgw_name, BGW_MAXLEN, "%s", name);
    snprintf(w.bgw_type, BGW_MAXLEN, "%s", name);
    return w;
}

// Starts one run and waits for it to end; returns false if it could not start.
bool start_run_and_wait() {
    SchedulerState* shared = scheduler_state();
    BackgroundWorker w = worker_named("attendance run", "attendance_run_main");
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    w.bgw_notify_pid = MyProcPid;
    BackgroundWorkerHandle* handle = nullptr;
    if (!RegisterDynamicBackgroundWorker(&w, &handle)) return false;
    pid_t pid = 0;
    if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED) return false;
    {
        StateLock lock(shared);
        shared->run_pid = pid;
    }
    WaitForBackgroundWorkerShutdown(handle);
    StateLock lock(shared);
    shared->run_pid = 0;
    return true;
}

void launcher_loop() {
    SchedulerState* shared = scheduler_state();
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
        {
            StateLock lock(shared);
            woken = shared->wake_pending;
            shared->wake_pending = false;
            events = shared->events_pending;
            last_fold = shared->last_fold_start_ms;
        }

        int64 now = now_ms();
        // New events are folded at most every fold_interval, and not before the backoff
        // after runs that could not start (else a missing database would spin the loop).
        const int64 fold_at = !events ? INT64_MAX
                              : failures > 0
                                  ? std::max(next_run, last_fold + settings.fold_interval_ms)
                                  : last_fold + settings.fold_interval_ms;
        if (woken || now >= next_run || now >= fold_at) {
            uint64 runs_before = 0;
            {
                StateLock lock(shared);
                runs_before = uint64(shared->runs);
            }
            bool started = start_run_and_wait();
            bool reported = false;
            int64 due = -1, rec = -1;
            {
                StateLock lock(shared);
                reported = uint64(shared->runs) != runs_before;
                due = shared->next_due_ms;
                rec = shared->next_reconcile_ms;
            }
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
    install_shared_memory_hooks();
    if (!settings.scheduler_enabled) return;
    BackgroundWorker w = worker_named("attendance scheduler", "attendance_launcher_main");
    w.bgw_flags = BGWORKER_SHMEM_ACCESS;
    w.bgw_restart_time = 5;
    RegisterBackgroundWorker(&w);
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

extern "C" void attendance_launcher_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    pqsignal(SIGUSR1, launcher_sigusr1);
    BackgroundWorkerUnblockSignals();
    SchedulerState* shared = scheduler_state();
    if (!shared)
        elog(FATAL, "attendance scheduler: shared memory is not set up (is attendance preloaded?)");
    {
        StateLock lock(shared);
        shared->launcher_pid = MyProcPid;
        shared->launcher_latch = MyLatch;
    }
    on_shmem_exit(clear_launcher, 0);
    elog(LOG, "attendance scheduler started (database \"%s\", calculation delay %d s)",
         settings.database_name, settings.calculation_delay_s);
    try {
        launcher_loop();
    } catch (const std::exception& e) {
        // An exception here (none is expected: the loop runs no SQL) ends the
        // launcher, and the postmaster restarts it.
        static char message[512];
        std::snprintf(message, sizeof message, "%s", e.what());
        elog(FATAL, "attendance scheduler: %s", message);
    }
}
