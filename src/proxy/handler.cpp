#include "proxy/handler.hpp"

#include "proxy/db.hpp"
#include "proxy/status.hpp"
#include "proxy/text.hpp"

#include <algorithm>
#include <variant>

namespace attendance::proxy {

namespace {

constexpr const char* kJson = "application/json";
// What a 503 says: the cause (host, port, role, server message) goes to the log only.
constexpr const char* kUnavailable = "database unavailable";

}  // namespace

HttpReply App::fail(int status, std::string_view message, std::string_view sqlstate) const {
    HttpReply r;
    r.status = status;
    r.content_type = kJson;
    r.body = error_body(message, sqlstate);
    r.error = std::string(message);
    r.sqlstate = std::string(sqlstate);
    return r;
}

HttpReply App::unavailable() const {
    HttpReply r = fail(503, kUnavailable, "");
    r.headers.emplace_back("Retry-After", std::to_string(config_.retry_after_s));
    return r;
}

HttpReply App::error(int status, std::string_view message) const {
    HttpReply r = fail(status, message, "");
    r.close = true;
    return r;
}

std::optional<HttpReply> App::route(const HttpRequest& req) {
    if (req.path == config_.path) {
        if (req.method != "POST") {
            HttpReply r = fail(405, "method not allowed: webhooks are POSTed", "");
            r.headers.emplace_back("Allow", "POST");
            return r;
        }
        // Text parameters cannot carry these; the signature covers the exact bytes, so
        // nothing is repaired: such a body is rejected as it is (final, not retried).
        if (auto nul = req.body.find('\0'); nul != std::string::npos)
            return fail(400, "body contains a NUL byte at offset " + std::to_string(nul), "");
        if (auto bad = first_invalid_utf8(req.body))
            return fail(400, "body is not valid UTF-8 (byte offset " + std::to_string(*bad) + ")",
                        "");
        if (req.authorization && (first_invalid_utf8(*req.authorization) ||
                                  req.authorization->find('\0') != std::string::npos))
            return fail(401, "Authorization header is not valid UTF-8", "");
        return std::nullopt;
    }
    if (req.path == "/healthz" && (req.method == "GET" || req.method == "HEAD"))
        return std::nullopt;
    if (req.path == "/metrics" && (req.method == "GET" || req.method == "HEAD")) {
        HttpReply r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_.render(pool_.stats());
        return r;
    }
    return fail(404, reason_phrase(404), "");
}

HttpReply App::handle_db(const HttpRequest& req, Clock::time_point queued) {
    InFlight in_flight(metrics_);
    return req.path == config_.path ? webhook(req, queued) : healthz(queued);
}

HttpReply App::webhook(const HttpRequest& req, Clock::time_point queued) {
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - queued);
    const auto budget = std::chrono::milliseconds(config_.pool_timeout_ms);
    auto leased = pool_.acquire(std::max(budget - waited, std::chrono::milliseconds(0)));
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        log_.warn("webhook not stored: " + failure->message);
        return unavailable();
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = call_ingest(lease.conn(), req.body, req.authorization);
    if (r.broken) lease.discard();
    if (r.ok) {
        // Committed. The answer is the function's own JSON, passed on verbatim.
        HttpReply reply;
        reply.body = std::move(r.value);
        reply.result = std::move(r.result);
        reply.event = std::move(r.event);
        reply.event_id = std::move(r.event_id);
        return reply;
    }
    metrics_.db_error(r.sqlstate);
    // No SQLSTATE: libpq failed by itself (connection lost: retry) or the answer was
    // unusable (unexpected).
    const int status =
        r.sqlstate.empty() ? (r.broken ? 503 : 500) : http_status_for_sqlstate(r.sqlstate);
    if (status < 500) return fail(status, r.message, r.sqlstate);  // about the webhook itself
    log_.warn("webhook not stored: " + r.message +
              (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]"));
    HttpReply reply = status == 503 ? unavailable() : fail(500, reason_phrase(500), "");
    reply.sqlstate = r.sqlstate;  // the access log keeps it; the body does not
    return reply;
}

HttpReply App::healthz(Clock::time_point queued) {
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - queued);
    const auto budget = std::chrono::milliseconds(std::min(config_.pool_timeout_ms, 2000));
    auto leased = pool_.acquire(std::max(budget - waited, std::chrono::milliseconds(0)));
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        log_.warn("health check failed: " + failure->message);
        return unavailable();
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = ping(lease.conn());
    if (r.broken) lease.discard();
    if (!r.ok) {
        metrics_.db_error(r.sqlstate);
        log_.warn("health check failed: " + r.message +
                  (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]"));
        HttpReply reply = unavailable();
        reply.sqlstate = r.sqlstate;
        return reply;
    }
    HttpReply reply;
    reply.body = "{\"status\": \"ok\"}\n";
    return reply;
}

void App::log_request(const HttpRequest& req, const HttpReply& reply) {
    const double seconds = std::chrono::duration<double>(Clock::now() - req.start).count();
    std::string handler = "other";
    if (req.path == config_.path) {
        handler = "webhook";
    } else if (req.path == "/healthz") {
        handler = "healthz";
    } else if (req.path == "/metrics") {
        handler = "metrics";
    }
    metrics_.request_done(handler, reply.status, reply.result, seconds);

    AccessRecord rec;
    rec.time = req.wall;
    rec.remote = req.remote;
    rec.method = req.method.empty() ? "-" : req.method;
    rec.path = req.path.empty() ? "-" : req.path;
    rec.status = reply.status;
    rec.result = reply.result;
    rec.event = reply.event;
    rec.event_id = reply.event_id;
    rec.sqlstate = reply.sqlstate;
    rec.error = reply.error;
    rec.duration_ms = seconds * 1000.0;
    log_.access(rec);
}

}  // namespace attendance::proxy
