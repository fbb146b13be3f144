// The fold (docs/architecture.md, "The worker's loops"): the sessions touched by events
// logged since the last fold, or marked by a schedule, roster, policy or rooms change, are
// read (load_batch), worked out (core::outcome_of) and stored (store_fold) again; calculated
// ones that received a webhook their calculation did not see are flagged.
#pragma once

#include "pg/spi.hpp"

#include <string>

namespace attendance::pg {

struct FoldResult {
    int64_t events = 0;    // events folded
    int sessions = 0;      // sessions derived again
    int flagged = 0;       // calculated sessions flagged for a late webhook
    bool complete = true;  // false: an ingesting transaction was still open; it is folded later
    bool capped = false;   // attendance.fold_max_events left events for the next fold
    int failed = 0;        // sessions whose derivation failed (each retried by the next fold)
    std::string message;   // why they failed
};

// One fold. max_events > 0: at most that many ids past the watermark (the scheduler's
// attendance.fold_max_events); a call from SQL folds everything.
FoldResult fold(SpiSession& spi, int64_t max_events = 0);

// Derives again every session with a connection still open (what reconciliation is now).
int rederive_open(SpiSession& spi);

}  // namespace attendance::pg
