// The secrets of the webhook keys (attendance_webhook_keys), cached per backend.
#pragma once

#include "pg/spi.hpp"

#include <optional>
#include <string>

namespace attendance::pg {

// The secret of `api_key` if the key exists and is not retired at the transaction's
// start (now()). Served from a per-backend copy of the table, which the trigger
// attendance_webhook_keys_changed invalidates on every change (relcache invalidation:
// at once in the changing transaction, at their next transaction in other backends).
// Without that trigger (a schema older than the library) every call reads the table.
std::optional<std::string> active_secret(SpiSession& spi, const std::string& api_key);

}  // namespace attendance::pg
