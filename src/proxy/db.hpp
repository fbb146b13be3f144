// The two statements the proxy runs: the prepared ingest call and the health check.
#pragma once

#include "proxy/pool.hpp"

#include <optional>
#include <string>

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

}  // namespace attendance::proxy
