// Which HTTP status answers a failed call of attendance_ingest_webhook, chosen so that
// LiveKit retries exactly what is worth retrying: it retries connection errors, 429
// and 5xx; every other 4xx is final. Pure: testable without a server.
#pragma once

#include <string>
#include <string_view>

namespace attendance::proxy {

// HTTP status for an error raised by the database. An empty sqlstate means libpq
// reported the failure itself (typically the connection was lost).
int http_status_for_sqlstate(std::string_view sqlstate);

// True when the error means the connection itself is unusable and must be replaced:
// class 08 (connection exception), 57P01/57P02/57P03 (admin or crash shutdown,
// cannot connect now), or no sqlstate at all.
bool is_connection_error(std::string_view sqlstate);

// True when the connection must not be reused after this error: a connection error,
// or 25006 (read-only), which means the server it reaches is not (or no longer) the
// primary. A new connection made with target_session_attrs=read-write then finds the
// primary of a multi-host conninfo, e.g. after a failover (docs/scaling.md).
bool must_reconnect(std::string_view sqlstate);

// Short reason phrase used in error bodies for statuses without a database error.
const char* reason_phrase(int status);

// The JSON body of every error answer: {"error": "...", "sqlstate": "..."}, with
// sqlstate null when the database raised nothing.
std::string error_body(std::string_view message, std::string_view sqlstate);

}  // namespace attendance::proxy
