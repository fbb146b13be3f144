#include "proxy/metrics.hpp"

#include <cstdio>
#include <sstream>

namespace attendance::proxy {

namespace {

// Label values: backslash, double quote and newline escaped.
std::string label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

void header(std::ostringstream& out, const char* name, const char* type, const char* help) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

}  // namespace

void Metrics::request_done(std::string_view handler, int status, std::string_view result,
                           double seconds) {
    std::lock_guard lock(mu_);
    ++requests_[{std::string(handler), status, std::string(result)}];
    if (handler != "webhook") return;
    std::size_t i = 0;
    while (i < kBuckets.size() && seconds > kBuckets[i]) ++i;
    ++buckets_[i];
    latency_sum_ += seconds;
    ++latency_count_;
}

void Metrics::db_error(std::string_view sqlstate) {
    std::lock_guard lock(mu_);
    ++db_errors_[sqlstate.empty() ? std::string("none") : std::string(sqlstate)];
}

void Metrics::rejected(std::string_view reason) {
    std::lock_guard lock(mu_);
    ++rejected_[std::string(reason)];
}

std::string Metrics::render(const PoolStats& pool) const {
    std::ostringstream out;
    std::lock_guard lock(mu_);

    header(out, "attendance_proxy_requests_total", "counter",
           "HTTP requests answered, by handler, status and ingest result.");
    for (const auto& [key, count] : requests_) {
        const auto& [handler, status, result] = key;
        out << "attendance_proxy_requests_total{handler=\"" << label(handler) << "\",status=\""
            << status << "\",result=\"" << label(result) << "\"} " << count << "\n";
    }

    header(out, "attendance_proxy_webhook_duration_seconds", "histogram",
           "Time from request start to response for webhook requests.");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
        cumulative += buckets_[i];
        out << "attendance_proxy_webhook_duration_seconds_bucket{le=\"" << number(kBuckets[i])
            << "\"} " << cumulative << "\n";
    }
    cumulative += buckets_[kBuckets.size()];
    out << "attendance_proxy_webhook_duration_seconds_bucket{le=\"+Inf\"} " << cumulative << "\n";
    out << "attendance_proxy_webhook_duration_seconds_sum " << number(latency_sum_) << "\n";
    out << "attendance_proxy_webhook_duration_seconds_count " << latency_count_ << "\n";

    header(out, "attendance_proxy_db_errors_total", "counter",
           "Failed database calls by SQLSTATE (none: the connection was lost).");
    for (const auto& [sqlstate, count] : db_errors_) {
        out << "attendance_proxy_db_errors_total{sqlstate=\"" << label(sqlstate) << "\"} " << count
            << "\n";
    }

    header(out, "attendance_proxy_rejected_total", "counter",
           "Webhooks rejected by the proxy before any database call, by reason.");
    for (const auto& [reason, count] : rejected_) {
        out << "attendance_proxy_rejected_total{reason=\"" << label(reason) << "\"} " << count
            << "\n";
    }
    header(out, "attendance_proxy_rate_limited_total", "counter",
           "Webhooks answered 429: their source had spent its budget of rejected requests.");
    out << "attendance_proxy_rate_limited_total " << rate_limited_.load() << "\n";
    header(out, "attendance_proxy_rejections_not_logged_total", "counter",
           "Rejected requests left out of the access log (summed up once per interval).");
    out << "attendance_proxy_rejections_not_logged_total " << rejections_not_logged_.load() << "\n";
    header(out, "attendance_proxy_key_names", "gauge",
           "Active API key names known to the proxy (-1: not known, every token is forwarded).");
    out << "attendance_proxy_key_names " << key_names_.load() << "\n";
    header(out, "attendance_proxy_key_name_reads_total", "counter",
           "Readings of the key names and verification settings from the database.");
    out << "attendance_proxy_key_name_reads_total " << key_name_reads_.load() << "\n";

    header(out, "attendance_proxy_db_connect_failures_total", "counter",
           "Failed attempts to open a PostgreSQL connection.");
    out << "attendance_proxy_db_connect_failures_total " << connect_failures_.load() << "\n";
    header(out, "attendance_proxy_db_connections_opened_total", "counter",
           "PostgreSQL connections opened (the first ones and every reconnect).");
    out << "attendance_proxy_db_connections_opened_total " << connections_opened_.load() << "\n";
    header(out, "attendance_proxy_pool_timeouts_total", "counter",
           "Requests that waited longer than --pool-timeout-ms for a connection.");
    out << "attendance_proxy_pool_timeouts_total " << pool_timeouts_.load() << "\n";

    header(out, "attendance_proxy_pool_size", "gauge", "Maximum number of PostgreSQL connections.");
    out << "attendance_proxy_pool_size " << pool.size << "\n";
    header(out, "attendance_proxy_pool_connections", "gauge", "PostgreSQL connections open now.");
    out << "attendance_proxy_pool_connections " << pool.open << "\n";
    header(out, "attendance_proxy_pool_in_use", "gauge",
           "PostgreSQL connections serving a request now.");
    out << "attendance_proxy_pool_in_use " << pool.in_use << "\n";
    header(out, "attendance_proxy_in_flight_requests", "gauge", "Requests being handled now.");
    out << "attendance_proxy_in_flight_requests " << in_flight_.load() << "\n";
    header(out, "attendance_proxy_open_connections", "gauge", "Client connections open now.");
    out << "attendance_proxy_open_connections " << open_connections_.load() << "\n";
    header(out, "attendance_proxy_connections_refused_total", "counter",
           "Client connections closed at once: --max-connections were open, none idle.");
    out << "attendance_proxy_connections_refused_total " << connections_refused_.load() << "\n";
    header(out, "attendance_proxy_connections_evicted_total", "counter",
           "Idle client connections closed to admit a new one (at a connection limit).");
    out << "attendance_proxy_connections_evicted_total " << connections_evicted_.load() << "\n";
    header(out, "attendance_proxy_source_connections_refused_total", "counter",
           "Client connections closed at once: their source held --max-connections-per-source "
           "connections, none idle.");
    out << "attendance_proxy_source_connections_refused_total "
        << source_connections_refused_.load() << "\n";
    header(out, "attendance_proxy_request_timeouts_total", "counter",
           "Connections closed because a request was not received within --read-timeout.");
    out << "attendance_proxy_request_timeouts_total " << request_timeouts_.load() << "\n";
    header(out, "attendance_proxy_bad_framing_total", "counter",
           "Requests refused with 400 for their HTTP framing, and their connection closed.");
    out << "attendance_proxy_bad_framing_total " << bad_framing_.load() << "\n";
    header(out, "attendance_proxy_start_time_seconds", "gauge",
           "Start time of the process (Unix seconds).");
    out << "attendance_proxy_start_time_seconds " << number(start_time_) << "\n";
    return out.str();
}

}  // namespace attendance::proxy
