#include "pg/transactions.hpp"

extern "C" {
#include "utils/snapmgr.h"
}

#include <cstring>

namespace attendance::pg {

SubTransaction::SubTransaction() : context_(CurrentMemoryContext), owner_(CurrentResourceOwner) {
    pg_call([] { BeginInternalSubTransaction(nullptr); });
    open_ = true;
}

void SubTransaction::release() {
    if (!open_) return;
    // Still open if the release fails: the caller's rollback() then rolls it back.
    pg_call([this] {
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context_);
        CurrentResourceOwner = owner_;
    });
    open_ = false;
}

void SubTransaction::rollback() {
    if (!open_) return;
    open_ = false;  // a failed rollback is not tried again: the transaction's abort ends it
    pg_call([this] {
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(context_);
        CurrentResourceOwner = owner_;
    });
}

SubTransaction::~SubTransaction() {
    // A scope left by an exception: the rollback's own error, if any, is the transaction's
    // to report (the caller's error is already on its way).
    try {
        rollback();
    } catch (...) {
    }
}

const char* interruption_of(const std::exception& e) noexcept {
    int code = 0;
    if (const auto* pg = dynamic_cast<const PgError*>(&e)) {
        code = pg->edata() ? pg->edata()->sqlerrcode : 0;
    } else if (const auto* core_error = dynamic_cast<const core::Error*>(&e)) {
        const char* s = core_error->sqlstate();
        if (s && std::strlen(s) == 5) code = MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
    }
    // core::Error keeps its SQLSTATE as a pointer: these literals outlive every scope.
    if (code == ERRCODE_QUERY_CANCELED) return "57014";
    if (code == ERRCODE_ADMIN_SHUTDOWN) return "57P01";
    if (code == ERRCODE_CRASH_SHUTDOWN) return "57P02";
    return nullptr;
}

std::string in_transaction(const std::function<void()>& fn) {
    std::string error;
    pg_call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
    });
    try {
        fn();
        pg_call([] {
            PopActiveSnapshot();
            CommitTransactionCommand();
        });
        return "";
    } catch (const std::exception& e) {
        error = e.what();
    }
    pg_call([] { AbortCurrentTransaction(); });
    return error.empty() ? "unknown error" : error;
}

}  // namespace attendance::pg
