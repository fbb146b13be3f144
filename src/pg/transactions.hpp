// Transaction and subtransaction scopes: the only places where this library begins, commits
// or rolls back one (docs/architecture.md, "The C++/PostgreSQL boundary").
#pragma once

#include "pg/pg.hpp"

#include <algorithm>
#include <functional>
#include <string>

namespace attendance::pg {

// A subtransaction for the life of the scope: release() keeps its work; otherwise it is
// rolled back when the scope ends (on an error too). The caller's memory context and
// resource owner are restored either way.
class SubTransaction {
  public:
    SubTransaction();
    ~SubTransaction();
    SubTransaction(const SubTransaction&) = delete;
    SubTransaction& operator=(const SubTransaction&) = delete;

    void release();   // commits the subtransaction into its parent
    void rollback();  // rolls it back now (a PostgreSQL error is thrown as PgError)

  private:
    MemoryContext context_;
    ResourceOwner owner_;
    bool open_ = false;
};

// The SQLSTATE of an interruption (a cancel or shutdown), or nullptr for any other error.
// A PgError carries the code; a core::Error may carry one turned into C++ by a nested scope.
const char* interruption_of(const std::exception& e) noexcept;

// Runs f in a subtransaction. Returns "" on success; otherwise rolls back and returns the
// error. A cancel or shutdown is rethrown: it is not the sessions' fault, it stops the run.
template <typename F>
std::string in_subtransaction(F&& f) {
    std::string error;
    const char* interrupted = nullptr;
    {
        SubTransaction sub;
        try {
            f();
            sub.release();
            return {};
        } catch (const std::exception& e) {
            // Copied now: a PostgreSQL error lives in the subtransaction's memory.
            error = e.what();
            interrupted = interruption_of(e);
        }
        sub.rollback();
    }
    if (interrupted) throw core::Error(interrupted, error);
    return error.empty() ? "unknown error" : error;
}

// Runs work over n items in batches of `step`, each batch in a subtransaction; a batch
// that fails is run again one item at a time, each in its own, so that a failing item
// never stops the others (the calculation and the fold: docs/architecture.md, "The
// worker's loops"). work(first, last) does items [first, last) and returns what done()
// is told after its subtransaction is kept; failed(k, error) is told of an item that
// failed alone. retry_lone: a batch of one item that fails is tried once more alone (the
// fold: a lock timeout or deadlock may pass); otherwise a batch of one is run alone only.
template <typename Work, typename Done, typename Failed>
void in_batches(size_t n, size_t step, Work&& work, Done&& done, Failed&& failed,
                bool retry_lone = false) {
    if (step == 0) step = 1;
    for (size_t first = 0; first < n; first += step) {
        const size_t last = std::min(n, first + step);
        if (last - first > 1 || retry_lone) {
            decltype(work(first, last)) result{};
            if (in_subtransaction([&] { result = work(first, last); }).empty()) {
                done(result);
                continue;
            }
        }
        for (size_t k = first; k < last; ++k) {
            decltype(work(k, k + 1)) result{};
            std::string error = in_subtransaction([&] { result = work(k, k + 1); });
            if (error.empty())
                done(result);
            else
                failed(k, error);
        }
    }
}

// Runs fn in a transaction of its own with a snapshot (a background worker's unit of
// work). A PostgreSQL error aborts the transaction and comes back as the message; ""
// on success.
std::string in_transaction(const std::function<void()>& fn);

}  // namespace attendance::pg
