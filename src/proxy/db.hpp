// The two statements the proxy runs: the prepared ingest call and the health check.
#pragma once

#include "proxy/pool.hpp"

#include <optional>
#include <string>
#include <vector>

namespace attendance::proxy {

// The SQL of the prepared statement, prepared once per connection. The fields the
// access log and the metrics need come back as typed text columns, so the proxy never
// parses JSON: the answer itself is passed on verbatim.
inline constexpr const char* kIngestSql =
    "SELECT a, a->>'result', a->>'event', a->>'event_id' "
    "FROM attendance_ingest_webhook($1, $2) AS a";

struct DbResult {
    bool ok = false;
    std::string value;     // ok: the function's answer, jsonb as text
    std::string result;    // ok, ingest: its "result" (recorded, duplicate, ignored) or ""
    std::string event;     // ok, ingest: its "event" or ""
    std::string event_id;  // ok, ingest: its "event_id" or ""
    std::string sqlstate;  // !ok: the server's SQLSTATE; "" when libpq failed by itself
    std::string message;   // !ok: the primary error message
    bool broken = false;   // the connection must not be reused (lost, or not idle)
};

// Calls attendance_ingest_webhook(body, authorization) as one autocommitted statement:
// ok means the row is committed. The body goes out as the exact bytes received.
DbResult call_ingest(Connection& c, const std::string& body,
                     const std::optional<std::string>& authorization);

// SELECT 1.
DbResult ping(Connection& c);

// The readiness probe: attendance_write_probe() writes a page to the database's disk and
// rolls it back (docs/proxy.md, "Health and metrics").
inline constexpr const char* kWriteProbeSql = "SELECT attendance_write_probe()";
DbResult write_probe(Connection& c);

// What the proxy reads to reject what it can before the database (docs/proxy.md,
// "Rejected before the database"): the verification settings as they are in its own
// sessions (NULL when not set anywhere), and whether it may read the key names.
// Nothing here can fail for want of the 0.4.1 function, so it logs no error.
inline constexpr const char* kVerificationSql =
    "SELECT current_setting('attendance.development_mode', true)::boolean, "
    "current_setting('attendance.replay_mode', true)::boolean, "
    "extract(epoch FROM current_setting('attendance.token_leeway', true)::interval)::integer, "
    "coalesce(has_function_privilege(to_regprocedure('attendance_webhook_key_names()'), "
    "'EXECUTE'), false)";
inline constexpr const char* kKeyNamesSql = "SELECT attendance_webhook_key_names()";

// Every row of a statement, as text (nullopt for NULL).
struct DbRows {
    bool ok = false;
    std::vector<std::vector<std::optional<std::string>>> rows;
    std::string sqlstate;
    std::string message;
    bool broken = false;
};
DbRows query_rows(Connection& c, const char* sql);

}  // namespace attendance::proxy
