// Running a piece of work in its own subtransaction, so that its failure is recorded and
// the caller goes on (a failing session never stops the others).
#pragma once

#include "pg/pg.hpp"

#include <string>

namespace attendance::pg {

// core::Error keeps a const char* SQLSTATE: intern the few codes used here.
inline const char* interned_state(const std::string& state) {
    if (state == "57014") return "57014";
    if (state == "57P01") return "57P01";
    if (state == "57P02") return "57P02";
    return "XX000";
}

// Runs f in a subtransaction. Returns "" on success; otherwise rolls back and returns the
// error. A cancel or shutdown is rethrown: it is not the sessions' fault, it stops the run.
template <typename F>
std::string in_subtransaction(F&& f) {
    MemoryContext context = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    pg_call([] { BeginInternalSubTransaction(nullptr); });
    std::string error;
    std::string interrupted;
    try {
        f();
        pg_call([&] {
            ReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(context);
            CurrentResourceOwner = owner;
        });
        return {};
    } catch (const PgError& e) {
        // Copied now: the error lives in the subtransaction's memory.
        error = e.what();
        int code = e.edata() ? e.edata()->sqlerrcode : 0;
        if (code == ERRCODE_QUERY_CANCELED || code == ERRCODE_ADMIN_SHUTDOWN ||
            code == ERRCODE_CRASH_SHUTDOWN)
            interrupted = unpack_sql_state(code);
    } catch (const core::Error& e) {
        // An interruption already turned into a C++ error by a nested subtransaction.
        error = e.what();
        const std::string state = e.sqlstate();
        if (state == "57014" || state == "57P01" || state == "57P02") interrupted = state;
    } catch (const std::exception& e) {
        error = e.what();
    }
    pg_call([&] {
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context);
        CurrentResourceOwner = owner;
    });
    if (!interrupted.empty()) throw core::Error(interned_state(interrupted), error);
    return error.empty() ? "unknown error" : error;
}

}  // namespace attendance::pg
