#include "proxy/db.hpp"

#include "proxy/status.hpp"
#include "proxy/text.hpp"

namespace attendance::proxy {

namespace {

constexpr const char* kIngestStatement = "attendance_ingest";
constexpr Oid kTextOid = 25;

// Frees the PGresult however the function returns.
struct Result {
    PGresult* r;
    explicit Result(PGresult* res) : r(res) {}
    ~Result() { PQclear(r); }
    Result(const Result&) = delete;
    Result& operator=(const Result&) = delete;
};

DbResult failure(const Result& res, Connection& c) {
    DbResult out;
    const char* state = res.r != nullptr ? PQresultErrorField(res.r, PG_DIAG_SQLSTATE) : nullptr;
    const char* primary =
        res.r != nullptr ? PQresultErrorField(res.r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    out.sqlstate = state != nullptr ? state : "";
    if (primary != nullptr) {
        out.message = primary;
    } else {
        // libpq's own text (connection lost: the server's fields are gone): its first
        // line says what happened; the rest would be the internal query's context.
        std::string text = PQerrorMessage(c.pg);
        text = text.substr(0, text.find('\n'));
        for (const char* prefix : {"FATAL:", "ERROR:"}) {
            if (text.rfind(prefix, 0) == 0) text.erase(0, std::string(prefix).size());
        }
        out.message = one_line(text);
        if (out.message.empty()) out.message = "database call failed";
    }
    out.broken = PQstatus(c.pg) != CONNECTION_OK || must_reconnect(out.sqlstate) ||
                 PQtransactionStatus(c.pg) != PQTRANS_IDLE;
    return out;
}

std::string text_column(const Result& res, int column) {
    if (PQnfields(res.r) <= column || PQgetisnull(res.r, 0, column)) return "";
    return std::string(PQgetvalue(res.r, 0, column),
                       static_cast<std::size_t>(PQgetlength(res.r, 0, column)));
}

// One row whose first column is the value; further text columns are optional.
DbResult single_value(const Result& res, Connection& c) {
    if (PQresultStatus(res.r) != PGRES_TUPLES_OK) return failure(res, c);
    DbResult out;
    out.broken = PQtransactionStatus(c.pg) != PQTRANS_IDLE;
    if (PQntuples(res.r) != 1 || PQnfields(res.r) < 1 || PQgetisnull(res.r, 0, 0)) {
        out.message = "the database answered no value";
        return out;
    }
    out.ok = true;
    out.value.assign(PQgetvalue(res.r, 0, 0), static_cast<std::size_t>(PQgetlength(res.r, 0, 0)));
    return out;
}

}  // namespace

DbResult call_ingest(Connection& c, const std::string& body,
                     const std::optional<std::string>& authorization) {
    if (!c.prepared) {
        const Oid types[2] = {kTextOid, kTextOid};
        Result prep(PQprepare(c.pg, kIngestStatement, kIngestSql, 2, types));
        if (PQresultStatus(prep.r) != PGRES_COMMAND_OK) return failure(prep, c);
        c.prepared = true;
    }
    // Binary format for text is the raw bytes with an explicit length: nothing is cut
    // at a NUL and nothing is re-encoded. The server still checks the encoding.
    const char* values[2] = {body.data(), authorization ? authorization->data() : nullptr};
    const int lengths[2] = {static_cast<int>(body.size()),
                            authorization ? static_cast<int>(authorization->size()) : 0};
    const int formats[2] = {1, 1};
    Result res(PQexecPrepared(c.pg, kIngestStatement, 2, values, lengths, formats, 0));
    DbResult out = single_value(res, c);
    if (out.ok) {
        out.result = text_column(res, 1);
        out.event = text_column(res, 2);
        out.event_id = text_column(res, 3);
    }
    return out;
}

DbResult ping(Connection& c) {
    Result res(PQexec(c.pg, "SELECT 1"));
    return single_value(res, c);
}

DbResult write_probe(Connection& c) {
    Result res(PQexec(c.pg, kWriteProbeSql));
    return single_value(res, c);
}

DbRows query_rows(Connection& c, const char* sql) {
    Result res(PQexec(c.pg, sql));
    DbRows out;
    if (PQresultStatus(res.r) != PGRES_TUPLES_OK) {
        DbResult f = failure(res, c);
        out.sqlstate = std::move(f.sqlstate);
        out.message = std::move(f.message);
        out.broken = f.broken;
        return out;
    }
    out.ok = true;
    out.broken = PQtransactionStatus(c.pg) != PQTRANS_IDLE;
    for (int r = 0; r < PQntuples(res.r); ++r) {
        auto& row = out.rows.emplace_back();
        for (int f = 0; f < PQnfields(res.r); ++f) {
            if (PQgetisnull(res.r, r, f)) {
                row.emplace_back();
            } else {
                row.emplace_back(std::string(PQgetvalue(res.r, r, f),
                                             static_cast<std::size_t>(PQgetlength(res.r, r, f))));
            }
        }
    }
    return out;
}

}  // namespace attendance::proxy
