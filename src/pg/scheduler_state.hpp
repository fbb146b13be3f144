// What the scheduler's processes share (docs/architecture.md, "The worker's loops"): one
// struct in shared memory, guarded by its spinlock, that the launcher, a run and every
// backend that logs an event or asks for a run read and write.
#pragma once

#include "pg/pg.hpp"

extern "C" {
#include "storage/latch.h"
#include "storage/spin.h"
}

#include <string>

namespace attendance::pg {

struct SchedulerState {
    slock_t mutex;
    pid_t launcher_pid;
    Latch* launcher_latch;
    Latch* run_latch;  // a run that stays (run.cpp): woken by a request as well
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

// The shared struct; nullptr when the library was not preloaded.
SchedulerState* scheduler_state();

// Holds the struct's spinlock for the life of the scope (no PostgreSQL call inside).
class StateLock {
  public:
    explicit StateLock(SchedulerState* state) : state_(state) { SpinLockAcquire(&state_->mutex); }
    ~StateLock() { SpinLockRelease(&state_->mutex); }
    StateLock(const StateLock&) = delete;
    StateLock& operator=(const StateLock&) = delete;

  private:
    SchedulerState* state_;
};

// Requests the shared memory and sets it up at startup (from _PG_init, preloaded).
void install_shared_memory_hooks();

// This process is a scheduler run: its own transactions never wake the scheduler.
void mark_as_run();

// A run's end: the next due moments, whether it went well, what it did.
void report_run(int64 next_due_ms, int64 next_reconcile_ms, bool ok, const std::string& message);

int64 now_ms();

}  // namespace attendance::pg
