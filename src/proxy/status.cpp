#include "proxy/status.hpp"

#include "proxy/text.hpp"

namespace attendance::proxy {

namespace {

bool has_class(std::string_view sqlstate, std::string_view cls) {
    return sqlstate.size() == 5 && sqlstate.substr(0, 2) == cls;
}

}  // namespace

bool is_connection_error(std::string_view sqlstate) {
    return sqlstate.empty() || has_class(sqlstate, "08") || sqlstate == "57P01" ||
           sqlstate == "57P02" || sqlstate == "57P03";
}

bool must_reconnect(std::string_view sqlstate) {
    return is_connection_error(sqlstate) || sqlstate == "25006";
}

int http_status_for_sqlstate(std::string_view s) {
    if (s == "28000") return 401;        // rejected signature or token: final
    if (s == "54000") return 413;        // body over the extension's size or depth limit
    if (has_class(s, "22")) return 400;  // 22P02, 22023, 22P05, 22004, 22021 ...: data errors
    // The database could not store the event now; worth retrying.
    if (is_connection_error(s)) return 503;
    if (has_class(s, "53")) return 503;  // insufficient resources (too many connections, disk full)
    if (s == "25006") return 503;        // read-only transaction (standby, or failover in progress)
    if (s == "40001" || s == "40P01") return 503;  // serialization failure, deadlock
    if (s == "57014") return 503;                  // statement timeout / cancelled
    if (s == "55P03") return 503;                  // lock not available
    return 500;
}

const char* reason_phrase(int status) {
    switch (status) {
        case 200:
            return "ok";
        case 400:
            return "bad request";
        case 401:
            return "unauthorized";
        case 404:
            return "not found";
        case 405:
            return "method not allowed";
        case 408:
            return "request timeout";
        case 413:
            return "payload too large";
        case 414:
            return "uri too long";
        case 500:
            return "internal error";
        case 503:
            return "service unavailable";
        default:
            return status >= 500 ? "server error" : "client error";
    }
}

std::string error_body(std::string_view message, std::string_view sqlstate) {
    std::string out = "{\"error\": \"" + json_escape(message) + "\", \"sqlstate\": ";
    out += sqlstate.empty() ? std::string("null") : "\"" + json_escape(sqlstate) + "\"";
    out += "}\n";
    return out;
}

}  // namespace attendance::proxy
