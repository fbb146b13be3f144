#include "proxy/handler.hpp"

#include "core/token.hpp"
#include "proxy/db.hpp"
#include "proxy/status.hpp"
#include "proxy/text.hpp"

#include <algorithm>
#include <ctime>
#include <variant>

namespace attendance::proxy {

namespace {

constexpr const char* kJson = "application/json";
// What a 503 says: the cause (host, port, role, server message) goes to the log only.
constexpr const char* kUnavailable = "database unavailable";
// What /readyz says when the database answers but refuses to write.
constexpr const char* kRefusesWrites = "database refuses writes";

bool refuses_writes(std::string_view sqlstate) {
    return sqlstate == "25006" || (sqlstate.size() == 5 && sqlstate.substr(0, 2) == "53");
}

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

HttpReply App::unavailable(std::string_view message) const {
    HttpReply r = fail(503, message.empty() ? kUnavailable : message, "");
    r.headers.emplace_back("Retry-After", std::to_string(config_.retry_after_s));
    return r;
}

HttpReply App::error(int status, std::string_view message) const {
    HttpReply r = fail(status, message, "");
    r.close = true;
    return r;
}

std::optional<HttpReply> App::route(HttpRequest& req) {
    req.received = Clock::now();
    if (req.path == config_.path) {
        if (req.method != "POST") {
            HttpReply r = fail(405, "method not allowed: webhooks are POSTed", "");
            r.headers.emplace_back("Allow", "POST");
            return r;
        }
        // A source that spent its budget of rejections is not heard until it has some
        // again: no test of its webhook, no database call (docs/proxy.md).
        if (!req.trusted && budget_.over(req.source, Clock::now())) {
            metrics_.rate_limited();
            HttpReply r =
                fail(429, "too many rejected requests from this address; retry later", "");
            r.headers.emplace_back("Retry-After",
                                   std::to_string(budget_.retry_after_s(req.source, Clock::now())));
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
        return precheck(req, true);
    }
    if ((req.path == "/healthz" || req.path == "/readyz") &&
        (req.method == "GET" || req.method == "HEAD"))
        return std::nullopt;
    if (req.path == "/metrics" && (req.method == "GET" || req.method == "HEAD")) {
        HttpReply r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_.render(pool_.stats());
        return r;
    }
    return fail(404, reason_phrase(404), "");
}

std::optional<HttpReply> App::precheck(HttpRequest& req, bool may_defer) {
    const auto known = keys_.current();
    if (!known) return std::nullopt;  // nothing read yet: the extension judges everything
    core::PrecheckOptions options;
    options.now_s = static_cast<std::int64_t>(std::time(nullptr));
    options.leeway_s = known->leeway_s;
    options.check_window = !known->replay_mode;
    options.allow_unsigned = known->development_mode;
    if (known->key_names) {
        const auto& names = *known->key_names;
        options.key_known = [&names](std::string_view iss) {
            return names.count(std::string(iss)) > 0;
        };
    }
    core::Precheck result;
    try {
        std::optional<std::string_view> authorization;
        if (req.authorization) authorization = *req.authorization;
        result = core::precheck_token(authorization, req.body, options);
    } catch (const std::exception&) {
        return std::nullopt;  // whatever it was, the extension is the judge
    }
    if (result.rejection == core::Rejection::None) return std::nullopt;
    if (result.rejection == core::Rejection::UnknownKey && may_defer &&
        keys_.must_recheck(req.received)) {
        req.recheck_key = true;
        return std::nullopt;
    }
    const char* reason = core::rejection_name(result.rejection);
    metrics_.rejected(reason);
    HttpReply r = fail(401, result.message, core::sqlstate::kInvalidAuthorization);
    r.rejection = reason;
    return r;
}

HttpReply App::handle_db(const HttpRequest& req, Clock::time_point queued) {
    InFlight in_flight(metrics_);
    if (req.path == config_.path) return webhook(req, queued);
    return req.path == "/readyz" ? probe(ready_, true, queued) : probe(health_, false, queued);
}

HttpReply App::webhook(const HttpRequest& req, Clock::time_point queued) {
    if (req.recheck_key) {
        // The token names a key the proxy's list lacks, and the list is older than the
        // request: a reading that begins after it came (within KeyWatch's demand budget).
        keys_.refresh_for(req.received);
        HttpRequest again = req;
        if (auto rejected = precheck(again, false)) return std::move(*rejected);
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - queued);
    const auto budget = std::chrono::milliseconds(config_.pool_timeout_ms);
    auto leased = pool_.acquire(std::max(budget - waited, std::chrono::milliseconds(0)));
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        log_.warn("webhook not stored: " + failure->message);
        webhook_failures_.fetch_add(1);
        return unavailable();
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = call_ingest(lease.conn(), req.body, req.authorization);
    if (r.broken) lease.discard();
    if (r.ok) {
        webhook_successes_.fetch_add(1);
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
    if (status < 500) {  // about the webhook itself
        HttpReply reply = fail(status, r.message, r.sqlstate);
        // Every error but a rejected token comes after the token was verified: from the
        // key's holder, so it costs the source nothing of its budget.
        reply.verified = r.sqlstate != core::sqlstate::kInvalidAuthorization;
        return reply;
    }
    webhook_failures_.fetch_add(1);
    log_.warn("webhook not stored: " + r.message +
              (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]"));
    HttpReply reply = status == 503 ? unavailable() : fail(500, reason_phrase(500), "");
    reply.sqlstate = r.sqlstate;  // the access log keeps it; the body does not
    return reply;
}

HttpReply App::probe(ProbeCache& cache, bool write, Clock::time_point queued) {
    const char* what = write ? "readiness check" : "health check";
    std::lock_guard lock(cache.mu);
    const auto now = Clock::now();
    if (cache.reply && now - cache.at < kProbeReuse &&
        (cache.reply->status == 200 ? webhook_failures_.load() == cache.webhook_failures
                                    : webhook_successes_.load() == cache.webhook_successes))
        return *cache.reply;
    cache.webhook_failures = webhook_failures_.load();
    cache.webhook_successes = webhook_successes_.load();
    const auto answer = [&](HttpReply reply) {
        cache.reply = reply;
        cache.at = Clock::now();
        return reply;
    };

    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - queued);
    const auto budget = std::chrono::milliseconds(std::min(config_.pool_timeout_ms, 2000));
    auto leased = pool_.acquire(std::max(budget - waited, std::chrono::milliseconds(0)));
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        log_.warn(std::string(what) + " failed: " + failure->message);
        return answer(unavailable());
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = write ? write_probe(lease.conn()) : ping(lease.conn());
    if (r.broken) lease.discard();
    if (!r.ok) {
        metrics_.db_error(r.sqlstate);
        log_.warn(std::string(what) + " failed: " + r.message +
                  (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]"));
        const int status = r.sqlstate.empty() ? 503 : http_status_for_sqlstate(r.sqlstate);
        HttpReply reply = status != 503                         ? fail(500, reason_phrase(500), "")
                          : write && refuses_writes(r.sqlstate) ? unavailable(kRefusesWrites)
                                                                : unavailable();
        reply.sqlstate = r.sqlstate;
        return answer(reply);
    }
    HttpReply reply;
    reply.body = write ? "{\"status\": \"ready\"}\n" : "{\"status\": \"ok\"}\n";
    return answer(reply);
}

void App::log_request(const HttpRequest& req, const HttpReply& reply) {
    const double seconds = std::chrono::duration<double>(Clock::now() - req.start).count();
    std::string handler = "other";
    if (req.path == config_.path) {
        handler = "webhook";
    } else if (req.path == "/healthz") {
        handler = "healthz";
    } else if (req.path == "/readyz") {
        handler = "readyz";
    } else if (req.path == "/metrics") {
        handler = "metrics";
    }
    metrics_.request_done(handler, reply.status, reply.result, seconds);

    if (reply.status >= 400 && reply.status < 500) {
        // A rejection: charged to its source's budget (but a 429, which is the budget
        // speaking, and a database error after the token was verified), and logged at a
        // bounded rate.
        if (reply.status != 429 && !reply.verified && !req.trusted && !req.source.empty())
            budget_.charge(req.source, Clock::now());
        const std::string why = !reply.rejection.empty() ? reply.rejection
                                : !reply.sqlstate.empty()
                                    ? reply.sqlstate
                                    : std::string(reason_phrase(reply.status));
        if (!rejections_.note(req.source.empty() ? req.remote : req.source,
                              std::to_string(reply.status) + " " + why)) {
            metrics_.rejection_not_logged();
            return;
        }
    }

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

void App::housekeeping(bool final) {
    const auto now = Clock::now();
    if (!final && now - last_reject_summary_ < kRejectLogInterval) return;
    const double interval = std::chrono::duration<double>(now - last_reject_summary_).count();
    last_reject_summary_ = now;
    const std::string summary = rejections_.flush(interval);
    if (!summary.empty()) log_.info(summary);
    budget_.sweep(now);
}

}  // namespace attendance::proxy
