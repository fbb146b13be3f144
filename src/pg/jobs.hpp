// The scheduler's jobs, in one table (docs/architecture.md, "The worker's loops"): each
// job's name, when it is due, and what it does. A run, attendance_run_job and the run
// history all read it.
#pragma once

#include "pg/spi.hpp"

#include <string>
#include <vector>

namespace attendance::pg {

struct JobOutcome {
    int processed = 0;
    int failed = 0;
    std::string message;
    bool incomplete = false;  // a fold that left events for a later fold
    bool capped = false;      // a fold that stopped at attendance.fold_max_events
};

struct Job {
    const char* name;
    // When a run does it: a boolean SQL expression ($1: attendance.reconcile_interval in
    // seconds); nullptr for the fold, which every run does first.
    const char* due_sql;
    // fold_cap: attendance.fold_max_events for the scheduler's own fold; 0 (everything)
    // when asked for by attendance_run_job.
    JobOutcome (*run)(SpiSession& spi, int64_t fold_cap);
};

// Every job, in the order a run does them (the fold first).
const std::vector<Job>& jobs();

// The job of that name; 22023 naming the jobs for any other.
const Job& job_named(const std::string& name);

// The run history (attendance_job_runs): a job's row while it runs ($1 the job; returns
// its id), and its outcome ($1 id, $2 status, $3 processed, $4 failed, $5 message).
extern const char* const kRunStarted;
extern const char* const kRunFinished;

// Which jobs are due now, one flag per entry of jobs() (the fold's is always true), read
// in one statement.
std::vector<bool> jobs_due(SpiSession& spi);

}  // namespace attendance::pg
