// Calculation, explanation and reconciliation (load -> outcome -> store: docs/architecture.md,
// "Calculation"); shared by the SQL functions and the background worker.
#pragma once

#include "pg/fold.hpp"
#include "pg/spi.hpp"

#include <string>
#include <vector>

namespace attendance::pg {

struct DueResult {
    int processed = 0;
    int failed = 0;
    std::string message;  // failures, for the job-run history
};

// Calculates one session; returns the number of persons written. Throws on error.
int calculate_session(SpiSession& spi, int64_t session_id, const std::string& cause);

// Calculates the sessions `ids` (causes in the same order), batch_size sessions per
// statement; a batch that fails is retried one session at a time, each in its own
// subtransaction, and a session that fails alone is recorded for a retry with backoff.
DueResult calculate_sessions(SpiSession& spi, const std::vector<int64_t>& ids,
                             const std::vector<std::string>& causes, int batch_size);

// Calculates every due session, batch_size sessions per statement; a batch that fails
// is retried one session at a time, each in its own subtransaction.
DueResult calculate_due(SpiSession& spi, int batch_size);

struct ReconcileResult {
    int sessions_rederived = 0;
};
// Reconciliation is a rule of the derivation: this derives again every session with a
// connection still open, so that the connections table shows the closes the rule makes.
ReconcileResult reconcile(SpiSession& spi);

// Deletes job-run history older than the retention, in batches; returns rows deleted.
int64_t cleanup_history(SpiSession& spi, int retention_days);

}  // namespace attendance::pg
