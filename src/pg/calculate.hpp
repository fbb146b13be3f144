// Calculation, explanation and reconciliation on top of SPI; shared by the SQL
// functions and the background worker.
#pragma once

#include "pg/spi.hpp"

#include <string>

namespace attendance::pg {

struct DueResult {
    int processed = 0;
    int failed = 0;
    std::string message;  // failures, for the job-run history
};

// Calculates one session; returns the number of persons written. Throws on error.
int calculate_session(SpiSession& spi, int64_t session_id, const std::string& cause);

// Calculates every due session, each in its own subtransaction.
DueResult calculate_due(SpiSession& spi, int delay_s);

struct ReconcileResult {
    int closed = 0;
    int sessions_recalculated = 0;
};
ReconcileResult reconcile(SpiSession& spi, int64_t max_age_ms);

// Deletes job-run history older than the retention, in batches; returns rows deleted.
int64_t cleanup_history(SpiSession& spi, int retention_days);

}  // namespace attendance::pg
