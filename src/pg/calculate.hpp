// Calculation, explanation and reconciliation on top of SPI; shared by the SQL
// functions and the background worker.
#pragma once

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
DueResult calculate_due(SpiSession& spi, int delay_s, int batch_size);

struct ReconcileResult {
    int closed = 0;
    int sessions_recalculated = 0;
};
ReconcileResult reconcile(SpiSession& spi, int64_t max_age_ms);

// Rebuilds a person's live row (first join, last leave, cycles, minutes) from their
// connections (ingest.cpp); used by ingestion, reconciliation and the SQL function
// _attendance_refresh_live.
void refresh_live(SpiSession& spi, int64_t session_id, const std::string& user_key);

// Deletes job-run history older than the retention, in batches; returns rows deleted.
int64_t cleanup_history(SpiSession& spi, int retention_days);

}  // namespace attendance::pg
