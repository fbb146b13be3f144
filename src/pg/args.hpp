// Reading SQL arguments into plain C++ values.
#pragma once

#include "pg/pg.hpp"

#include <optional>
#include <string>

namespace attendance::pg {

inline std::optional<std::string> opt_text_arg(FunctionCallInfo fcinfo, int n) {
    if (PG_ARGISNULL(n)) return std::nullopt;
    struct Bytes {
        const char* data;
        size_t len;
    };
    Bytes b = pg_call([&] {
        text* t = PG_GETARG_TEXT_PP(n);
        return Bytes{VARDATA_ANY(t), size_t(VARSIZE_ANY_EXHDR(t))};
    });
    return std::string(b.data, b.len);
}

inline std::string text_arg(FunctionCallInfo fcinfo, int n, const char* name) {
    auto v = opt_text_arg(fcinfo, n);
    if (!v) throw core::Error("22004", std::string("argument \"") + name + "\" must not be NULL");
    return *v;
}

inline std::optional<int64_t> opt_int8_arg(FunctionCallInfo fcinfo, int n) {
    if (PG_ARGISNULL(n)) return std::nullopt;
    return int64_t(PG_GETARG_INT64(n));
}

}  // namespace attendance::pg
