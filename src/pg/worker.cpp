// The background worker "attendance scheduler" (DESIGN §6).
#include "pg/settings.hpp"

namespace attendance::pg {

void register_worker_if_preloaded() {}

void wake_worker_at_commit() {}

}  // namespace attendance::pg
