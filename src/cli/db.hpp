// A tiny RAII wrapper over libpq: one connection, parameterised statements only.
// Every value that comes from the user travels as a statement parameter; the SQL text
// itself is always a constant of this program.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attendancectl {

// The server (or libpq) answered a statement with an error.
struct DbError : std::runtime_error {
    std::string sqlstate;  // "" when libpq failed by itself (e.g. the connection was lost)
    std::string detail;
    std::string hint;
    DbError(std::string message, std::string state, std::string det = {}, std::string hnt = {})
        : std::runtime_error(std::move(message)),
          sqlstate(std::move(state)),
          detail(std::move(det)),
          hint(std::move(hnt)) {}
};

// The connection could not be established.
struct ConnectError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using Param = std::optional<std::string>;  // std::nullopt is SQL NULL

class Result {
  public:
    explicit Result(PGresult* r) : res_(r, &PQclear) {}
    int rows() const { return PQntuples(res_.get()); }
    int cols() const { return PQnfields(res_.get()); }
    std::string name(int col) const { return PQfname(res_.get(), col); }
    bool is_null(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
    // The value as text; "" for NULL.
    std::string get(int row, int col) const {
        return std::string(PQgetvalue(res_.get(), row, col),
                           static_cast<std::size_t>(PQgetlength(res_.get(), row, col)));
    }
    std::optional<std::string> opt(int row, int col) const {
        if (is_null(row, col)) return std::nullopt;
        return get(row, col);
    }
    // Column index by name; throws std::out_of_range for an unknown column.
    int col(const char* name) const;

  private:
    std::unique_ptr<PGresult, decltype(&PQclear)> res_;
};

class Db {
  public:
    // Connects with the standard libpq environment; conninfo (a connection string, URI
    // or plain database name) overrides parts of it. Throws ConnectError.
    static Db connect(const std::string& conninfo);

    Db(Db&&) noexcept = default;
    Db& operator=(Db&&) noexcept = default;

    // Runs one statement with text parameters; throws DbError.
    Result exec(const char* sql, const std::vector<Param>& params = {});
    void prepare(const char* name, const char* sql, int nparams);
    Result exec_prepared(const char* name, const std::vector<Param>& params);

    // Finds the schema of the attendance extension and puts it on the search_path
    // (after pg_catalog). Throws DbError when the extension is not installed.
    void use_extension_schema();

    bool ok() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }
    std::string database() const { return PQdb(conn_.get()); }
    PGconn* raw() { return conn_.get(); }

  private:
    explicit Db(PGconn* c) : conn_(c, &PQfinish) {}
    Result check(PGresult* r);
    std::unique_ptr<PGconn, decltype(&PQfinish)> conn_;
};

}  // namespace attendancectl
