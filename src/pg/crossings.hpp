// Named crossings into PostgreSQL (docs/architecture.md, "The C++/PostgreSQL boundary"):
// each call into a PostgreSQL API that the rest of src/pg makes, with plain C++ values on
// this side. Each runs its PostgreSQL part through pg_call, so an ereport(ERROR) arrives
// as a PgError with every C++ object still destroyed in order. SPI is in spi.hpp, the
// transaction and subtransaction scopes in transactions.hpp, SQL arguments in args.hpp.
#pragma once

#include "pg/pg.hpp"

extern "C" {
#include "utils/inval.h"
}

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace attendance::pg {

// ---- the server log and the client ----------------------------------------------------
// Reports `message` at `level` (DEBUG1 ... WARNING; never ERROR: throw core::Error).
// hint: an errhint; hide_statement: the statement is not logged with it.
void log_message(int level, const std::string& message, const std::string& hint = {},
                 bool hide_statement = false);

// pg_stat_activity's state and query of this process: `what` running, or idle ("").
void report_activity(const std::string& what);

// ---- values returned to SQL -----------------------------------------------------------
Datum text_datum(std::string_view text);
Datum interval_datum(int64_t microseconds);
// A row of int4 values for a function returning a composite type.
Datum int4_row_datum(FunctionCallInfo fcinfo, const std::vector<int32_t>& values);

// ---- jsonb ----------------------------------------------------------------------------
// From JSON text (jsonb_in); from a document, built as jsonb directly (no text parsed).
// A number with a fraction keeps the double's reading: use jsonb_from_text for those.
Datum jsonb_from_text(const std::string& json_text);
Datum jsonb_from_json(const nlohmann::json& document);
std::string jsonb_to_text(Datum jsonb);
// The value with each path's value replaced by `replacement` (jsonb_set, so that
// everything else stays exactly as jsonb read it).
Datum jsonb_replace_paths(Datum jsonb, const std::vector<std::vector<std::string>>& paths,
                          const std::string& replacement_json);

// ---- arguments and the calling context ------------------------------------------------
// The type of argument n as called (for a function with overloads sharing one symbol).
Oid argument_type(FunctionCallInfo fcinfo, int n);
// The elements of a one-dimensional bigint[] argument (not NULL); `nulls` one flag each.
struct Int8Elements {
    std::vector<int64_t> values;
    std::vector<bool> nulls;
    int dimensions = 0;
};
Int8Elements int8_array_arg(FunctionCallInfo fcinfo, int n);
// Whether a script of the extension that owns `function` is running (CREATE or ALTER
// EXTENSION).
bool in_extension_script_of(Oid function);

// ---- callbacks and caches -------------------------------------------------------------
// Registers a transaction callback once for the life of the process.
void at_transaction_end(XactCallback callback);
// Registers a relation cache invalidation callback once for the life of the process.
void on_relation_invalidation(RelcacheCallbackFunction callback);
// Reads the invalidation messages other transactions committed.
void accept_invalidations();
// Called as a trigger (`name` says which, for the error when it is not): every backend's
// caches of the trigger's table are invalidated (this transaction's at once, the others'
// at its commit).
void invalidate_trigger_relation(FunctionCallInfo fcinfo, const char* name);

// ---- locks ----------------------------------------------------------------------------
// Waits for every transaction that holds a lock on `relation` conflicting with SHARE (this
// one excluded) to end; wait = false only asks. False when one is still open (then, or
// after lock_timeout: ERRCODE_LOCK_NOT_AVAILABLE comes as a PgError).
bool wait_for_share_conflicts(Oid relation, bool wait);
// The snapshot of the latest committed state, active for the life of the scope.
class LatestSnapshot {
  public:
    LatestSnapshot();
    // Pops it; when an error leaves the scope, the transaction's abort does.
    ~LatestSnapshot();
    LatestSnapshot(const LatestSnapshot&) = delete;
    LatestSnapshot& operator=(const LatestSnapshot&) = delete;

  private:
    bool active_ = false;
    int exceptions_ = 0;
};

}  // namespace attendance::pg
