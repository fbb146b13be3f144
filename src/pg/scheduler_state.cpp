// The scheduler's shared state, the wakes at commit, and what SQL asks of the scheduler
// (attendance_wake_worker, attendance_worker_status).
#include "pg/scheduler_state.hpp"

#include "pg/crossings.hpp"
#include "pg/scheduler.hpp"
#include "pg/settings.hpp"
#include "pg/spi.hpp"

#include "core/calc.hpp"
#include "core/timefmt.hpp"

extern "C" {
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

PG_FUNCTION_INFO_V1(attendance_wake_worker);
PG_FUNCTION_INFO_V1(attendance_worker_status);
}

#include <nlohmann/json.hpp>

#include <cstdio>

namespace attendance::pg {

namespace {

// The run history's last five rows, newest first.
constexpr const char* kLastRuns = R"sql(
SELECT coalesce(jsonb_agg(to_jsonb(r) ORDER BY r.id DESC), '[]') AS runs
FROM (SELECT id, job, status, started_at, finished_at, processed, failed, message
      FROM @s.attendance_job_runs ORDER BY id DESC LIMIT 5) r
)sql";

SchedulerState* shared = nullptr;
shmem_request_hook_type prev_shmem_request_hook = nullptr;
shmem_startup_hook_type prev_shmem_startup_hook = nullptr;
bool in_run = false;  // this process is a scheduler run
bool wake_pending_local = false;
bool event_pending_local = false;

void request_shmem() {
    if (prev_shmem_request_hook) prev_shmem_request_hook();
    RequestAddinShmemSpace(MAXALIGN(sizeof(SchedulerState)));
}

void startup_shmem() {
    if (prev_shmem_startup_hook) prev_shmem_startup_hook();
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    shared = static_cast<SchedulerState*>(
        ShmemInitStruct("attendance scheduler", sizeof(SchedulerState), &found));
    if (!found) {
        memset(shared, 0, sizeof(SchedulerState));
        SpinLockInit(&shared->mutex);
        shared->next_due_ms = -1;
        shared->next_reconcile_ms = -1;
    }
    LWLockRelease(AddinShmemInitLock);
}

void on_commit_wake(XactEvent event, void*) {
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT) {
        // A logged event: the launcher folds it within attendance.fold_interval. The flag
        // is read without the lock first, so a busy log costs one read per webhook.
        if (event_pending_local && shared && !shared->events_pending) {
            Latch* latch = nullptr;
            {
                StateLock lock(shared);
                shared->events_pending = true;
                latch = shared->launcher_latch;
            }
            if (latch) SetLatch(latch);
        }
        event_pending_local = false;
        if (wake_pending_local && shared) {
            Latch* latch = nullptr;
            Latch* run_latch = nullptr;
            {
                StateLock lock(shared);
                shared->wake_pending = true;
                latch = shared->launcher_latch;
                run_latch = shared->run_latch;
            }
            if (latch) SetLatch(latch);
            if (run_latch) SetLatch(run_latch);
        }
        wake_pending_local = false;
    } else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT) {
        wake_pending_local = false;
        event_pending_local = false;
    }
}

}  // namespace

SchedulerState* scheduler_state() { return shared; }

void install_shared_memory_hooks() {
    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = request_shmem;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = startup_shmem;
}

void mark_as_run() { in_run = true; }

int64 now_ms() { return timestamptz_to_ms(GetCurrentTimestamp()); }

void report_run(int64 next_due_ms, int64 next_reconcile_ms, bool ok, const std::string& message) {
    StateLock lock(shared);
    shared->next_due_ms = next_due_ms;
    shared->next_reconcile_ms = next_reconcile_ms;
    shared->last_run_end_ms = now_ms();
    shared->last_run_ok = ok;
    shared->runs++;
    std::snprintf(shared->last_message, sizeof shared->last_message, "%s", message.c_str());
}

void wake_worker_at_commit() {
    // A run asks itself after its fold whether a calculation is due; a wake from its own
    // transactions (a flagged session) would only start another pass at once.
    if (!shared || in_run) return;
    at_transaction_end(on_commit_wake);
    wake_pending_local = true;
}

void note_event_at_commit() {
    if (!shared) return;
    at_transaction_end(on_commit_wake);
    event_pending_local = true;
}

void warn_if_scheduler_absent() {
    bool running = false;
    if (shared) {
        StateLock lock(shared);
        running = shared->launcher_pid != 0;
    }
    if (!running)
        log_message(NOTICE, "the attendance scheduler is not running",
                    "Add attendance to shared_preload_libraries to calculate sessions "
                    "automatically.");
}

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

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
        SchedulerState* state = scheduler_state();
        j["preloaded"] = state != nullptr;
        j["database"] = settings.database_name ? settings.database_name : "";
        j["calculation_delay_seconds"] = settings.calculation_delay_s;
        j["reconcile_interval_seconds"] = settings.reconcile_interval_s;
        if (state) {
            SchedulerState copy;
            {
                StateLock lock(state);
                memcpy(&copy, state, sizeof copy);
            }
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
        auto rows = spi.query(kLastRuns, {}, true);
        j["last_runs"] = nlohmann::json::parse(rows[0]["runs"].str("[]"));
        spi.finish();
        return jsonb_from_text(j.dump());
    });
}
