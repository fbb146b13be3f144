// PostgreSQL's headers that every file of src/pg needs, and the two crossings of the
// C++/PostgreSQL boundary (docs/architecture.md, "The C++/PostgreSQL boundary"). A file
// that needs another header of the server includes it after this one, in an extern "C"
// block of its own (the scheduler's files, crossings.cpp, transactions.cpp); the calls
// themselves are named in crossings.hpp, spi.hpp and transactions.hpp:
//   entry(f)   - every extern "C" entry point runs its body through it: any C++ exception
//                is caught, every C++ object destroyed, then ereport(ERROR) is raised.
//   pg_call(f) - every call into PostgreSQL that may ereport(ERROR) from C++ code with
//                live C++ objects runs through it: the longjmp is caught and turned into
//                a C++ exception (PgError) so destructors run; entry() re-raises it.
#pragma once

#define ATTENDANCE_PG_LAYER 1

extern "C" {
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
}

#include <cstring>
#include <exception>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "core/errors.hpp"

namespace attendance::pg {

// A PostgreSQL error caught by pg_call, carried across C++ frames as an exception.
class PgError : public std::exception {
  public:
    explicit PgError(ErrorData* edata) : edata_(edata) {}
    ErrorData* edata() const noexcept { return edata_; }
    const char* what() const noexcept override {
        return edata_ && edata_->message ? edata_->message : "PostgreSQL error";
    }

  private:
    ErrorData* edata_;  // palloc'd copy in the caller's memory context
};

namespace detail {
// Runs fn(arg) under PG_TRY; returns the copied error, or nullptr when none was raised.
ErrorData* run_catching(void (*fn)(void*), void* arg) noexcept;
}  // namespace detail

// Runs f (which calls PostgreSQL APIs and holds only plain data) and converts an
// ereport(ERROR) into PgError.
template <typename F>
auto pg_call(F&& f) -> decltype(f()) {
    using Fn = std::remove_reference_t<F>;
    using R = decltype(f());
    if constexpr (std::is_void_v<R>) {
        ErrorData* edata = detail::run_catching([](void* a) { (*static_cast<Fn*>(a))(); }, &f);
        if (edata) throw PgError(edata);
    } else {
        struct Ctx {
            Fn* f;
            R result;
        } ctx{&f, R{}};
        ErrorData* edata = detail::run_catching(
            [](void* a) {
                auto* c = static_cast<Ctx*>(a);
                c->result = (*c->f)();
            },
            &ctx);
        if (edata) throw PgError(edata);
        return ctx.result;
    }
}

namespace detail {
// Plain storage for the error that entry() raises once every C++ object is gone.
struct PendingError {
    char sqlstate[6];
    char message[4096];
};
void store_error(PendingError& out, const char* sqlstate, const char* message) noexcept;
[[noreturn]] void raise_pending(const PendingError& err, ErrorData* pg_error);
}  // namespace detail

template <typename F>
Datum entry(F&& f) {
    ErrorData* pg_error = nullptr;
    static detail::PendingError pending;
    {
        try {
            return f();
        } catch (const PgError& e) {
            pg_error = e.edata();
        } catch (const core::Error& e) {
            detail::store_error(pending, e.sqlstate(), e.what());
        } catch (const std::bad_alloc&) {
            detail::store_error(pending, "53200", "out of memory in attendance");
        } catch (const std::exception& e) {
            detail::store_error(pending, "XX000", e.what());
        } catch (...) {
            detail::store_error(pending, "XX000", "unknown C++ exception in attendance");
        }
    }
    detail::raise_pending(pending, pg_error);
}

// ---- small conversions (no PostgreSQL error possible) -------------------------------
inline constexpr int64_t kPgEpochOffsetMs = 946684800000LL;  // 2000-01-01 in Unix ms
inline TimestampTz ms_to_timestamptz(int64_t ms) { return (ms - kPgEpochOffsetMs) * 1000; }
inline int64_t timestamptz_to_ms(TimestampTz ts) {
    // floor division so that times before 2000 round towards -infinity
    int64_t us = ts;
    int64_t ms = us / 1000;
    if (us % 1000 < 0) --ms;
    return ms + kPgEpochOffsetMs;
}

}  // namespace attendance::pg
