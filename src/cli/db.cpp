#include "cli/db.hpp"

#include <cstdio>

namespace attendancectl {

namespace {

void print_notice(void*, const PGresult* r) {
    // NOTICE/WARNING from the server, e.g. "the scheduler is not running".
    const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY);
    const char* message = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    std::fprintf(stderr, "%s: %s\n", severity ? severity : "NOTICE", message ? message : "");
}

std::string field(const PGresult* r, int code) {
    const char* v = PQresultErrorField(r, code);
    return v ? v : "";
}

std::string trimmed(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

struct Params {
    std::vector<const char*> values;
    explicit Params(const std::vector<Param>& params) {
        values.reserve(params.size());
        for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    }
};

}  // namespace

int Result::col(const char* name) const {
    int c = PQfnumber(res_.get(), name);
    if (c < 0) throw std::out_of_range(std::string("no column ") + name);
    return c;
}

Db Db::connect(const std::string& conninfo) {
    // expand_dbname: "dbname" may be a whole connection string or URI, as with psql -d.
    const char* keys[] = {"dbname", "fallback_application_name", nullptr};
    const char* values[] = {conninfo.empty() ? nullptr : conninfo.c_str(), "attendancectl",
                            nullptr};
    PGconn* c = PQconnectdbParams(keys, values, 1);
    if (c == nullptr) throw ConnectError("out of memory");
    Db db(c);
    if (PQstatus(c) != CONNECTION_OK) throw ConnectError(trimmed(PQerrorMessage(c)));
    PQsetNoticeReceiver(c, &print_notice, nullptr);
    return db;
}

Result Db::check(PGresult* r) {
    Result result(r);
    if (r == nullptr) throw DbError(trimmed(PQerrorMessage(conn_.get())), "");
    auto status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
    std::string message = field(r, PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) message = trimmed(PQresultErrorMessage(r));
    if (message.empty()) message = trimmed(PQerrorMessage(conn_.get()));
    throw DbError(message, field(r, PG_DIAG_SQLSTATE), field(r, PG_DIAG_MESSAGE_DETAIL),
                  field(r, PG_DIAG_MESSAGE_HINT));
}

Result Db::exec(const char* sql, const std::vector<Param>& params) {
    Params p(params);
    return check(PQexecParams(conn_.get(), sql, static_cast<int>(p.values.size()), nullptr,
                              p.values.data(), nullptr, nullptr, 0));
}

void Db::prepare(const char* name, const char* sql, int nparams) {
    check(PQprepare(conn_.get(), name, sql, nparams, nullptr));
}

Result Db::exec_prepared(const char* name, const std::vector<Param>& params) {
    Params p(params);
    return check(PQexecPrepared(conn_.get(), name, static_cast<int>(p.values.size()),
                                p.values.data(), nullptr, nullptr, 0));
}

void Db::use_extension_schema() {
    Result r = exec(
        "SELECT pg_catalog.set_config('search_path', "
        "'pg_catalog, ' || pg_catalog.quote_ident(n.nspname) || ', pg_temp', false) "
        "FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'attendance'");
    if (r.rows() == 0) {
        throw DbError(
            "extension \"attendance\" is not installed in database \"" + database() + "\"", "42704",
            "",
            "Run CREATE EXTENSION attendance in that database, or pick "
            "another one with -d or PGDATABASE.");
    }
}

}  // namespace attendancectl
