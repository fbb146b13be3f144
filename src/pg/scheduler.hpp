// The background scheduler as the rest of the library sees it (docs/architecture.md, "The
// worker's loops"). Its parts: scheduler_state (shared memory, wakes at commit, status),
// launcher.cpp (the static worker that starts runs), run.cpp (one run), jobs (the table of
// jobs a run does).
#pragma once

namespace attendance::pg {

void register_worker_if_preloaded();  // from _PG_init
void wake_worker_at_commit();         // a request: the scheduler runs when this commits
void note_event_at_commit();          // a logged event for the fold (no write)
void warn_if_scheduler_absent();      // NOTICE when no scheduler runs

}  // namespace attendance::pg
