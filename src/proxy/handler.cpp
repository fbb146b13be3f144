#include "proxy/handler.hpp"

#include "proxy/db.hpp"
#include "proxy/status.hpp"
#include "proxy/text.hpp"

#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <regex>
#include <variant>

namespace attendance::proxy {

namespace {

using Clock = std::chrono::steady_clock;
using HandlerResponse = httplib::Server::HandlerResponse;

// What the access log and the metrics need to know about the request being handled
// on this thread. httplib serves a connection on one worker thread from the request
// line to the logger call, so a thread-local carries it from the handler to the logger.
struct RequestContext {
    bool started = false;
    Clock::time_point start;
    std::chrono::system_clock::time_point wall;
    std::string result;
    std::string event;
    std::string event_id;
    std::string sqlstate;
    std::string error;
};

thread_local RequestContext t_request;

void begin_request() {
    t_request = RequestContext{};
    t_request.started = true;
    t_request.start = Clock::now();
    t_request.wall = std::chrono::system_clock::now();
}

// The webhook path as a regular expression matching exactly that path.
std::string literal_pattern(const std::string& path) {
    static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
    return std::regex_replace(path, special, R"(\$&)");
}

constexpr const char* kJson = "application/json";

}  // namespace

void App::install(httplib::Server& server) {
    const int threads = config_.threads;
    server.new_task_queue = [threads] {
        return new httplib::ThreadPool(static_cast<std::size_t>(threads));
    };
    server.set_read_timeout(config_.read_timeout_s, 0);
    server.set_write_timeout(config_.write_timeout_s, 0);
    server.set_keep_alive_timeout(config_.keepalive_timeout_s);
    server.set_keep_alive_max_count(1000);
    server.set_tcp_nodelay(true);
    // Bodies announced larger than this are drained, never buffered, and answer 413.
    server.set_payload_max_length(config_.max_body_bytes);
    // httplib's default sets SO_REUSEPORT, which would let a second proxy share the
    // port silently; SO_REUSEADDR alone still allows a quick restart.
    server.set_socket_options([](int sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });

    server.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
        begin_request();
        return HandlerResponse::Unhandled;
    });
    // curl and others ask before sending a large body: refuse it before it is sent.
    server.set_expect_100_continue_handler(
        [this](const httplib::Request& req, httplib::Response& res) {
            if (req.has_header("Content-Length") &&
                req.get_header_value<uint64_t>("Content-Length") > config_.max_body_bytes) {
                begin_request();
                fail(res, 413,
                     "body larger than the proxy's limit of " +
                         std::to_string(config_.max_body_bytes) + " bytes",
                     "");
                return 413;
            }
            return 100;
        });

    const std::string pattern = literal_pattern(config_.path);
    server.Post(pattern,
                [this](const httplib::Request& req, httplib::Response& res,
                       const httplib::ContentReader& reader) { webhook(req, res, reader); });
    auto not_allowed = [this](const httplib::Request&, httplib::Response& res) {
        res.set_header("Allow", "POST");
        fail(res, 405, "method not allowed: webhooks are POSTed", "");
    };
    server.Get(pattern, not_allowed);
    server.Put(pattern, not_allowed);
    server.Patch(pattern, not_allowed);
    server.Delete(pattern, not_allowed);
    server.Options(pattern, not_allowed);

    server.Get("/healthz",
               [this](const httplib::Request&, httplib::Response& res) { healthz(res); });
    server.Get("/metrics",
               [this](const httplib::Request&, httplib::Response& res) { metrics(res); });

    // Statuses set by httplib itself (404, 413 from Content-Length, 400 for a bad
    // request line ...) get the same JSON error body as ours.
    server.set_error_handler(
        httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
            if (!res.body.empty()) return HandlerResponse::Unhandled;
            if (res.status == 413) res.set_header("Connection", "close");
            t_request.error = reason_phrase(res.status);
            res.set_content(error_body(reason_phrase(res.status), ""), kJson);
            return HandlerResponse::Handled;
        }));
    server.set_exception_handler(
        [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "unknown exception";
            try {
                if (ep) std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            log_.error("request failed: " + what);
            fail(res, 500, "internal error", "");
        });
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        log_request(req, res);
    });
}

void App::fail(httplib::Response& res, int status, std::string_view message,
               std::string_view sqlstate) {
    res.status = status;
    if (status == 503) res.set_header("Retry-After", std::to_string(config_.retry_after_s));
    res.set_content(error_body(message, sqlstate), kJson);
    t_request.error = std::string(message);
    t_request.sqlstate = std::string(sqlstate);
}

void App::webhook(const httplib::Request& req, httplib::Response& res,
                  const httplib::ContentReader& reader) {
    InFlight in_flight(metrics_);

    std::string body;
    if (req.has_header("Content-Length")) {
        body.reserve(std::min<uint64_t>(req.get_header_value<uint64_t>("Content-Length"),
                                        config_.max_body_bytes));
    }
    // Past the limit the rest of a chunked body (no Content-Length to check up front)
    // is drained, up to a bound, so that the connection stays usable.
    std::size_t received = 0;
    const std::size_t drain_limit = 4 * config_.max_body_bytes;
    const bool complete = reader([&](const char* data, std::size_t len) {
        received += len;
        if (received <= config_.max_body_bytes) {
            body.append(data, len);
            return true;
        }
        return received <= drain_limit;
    });
    const bool too_large = received > config_.max_body_bytes;
    if (!complete || too_large) {
        res.set_header("Connection", "close");
        if (too_large || res.status == 413) {
            fail(res, 413,
                 "body larger than the proxy's limit of " + std::to_string(config_.max_body_bytes) +
                     " bytes",
                 "");
        } else {
            fail(res, 400, "could not read the request body", "");
        }
        return;
    }
    // Text parameters cannot carry these; the signature covers the exact bytes, so
    // nothing is repaired: such a body is rejected as it is (final, not retried).
    if (auto nul = body.find('\0'); nul != std::string::npos) {
        fail(res, 400, "body contains a NUL byte at offset " + std::to_string(nul), "");
        return;
    }
    if (auto bad = first_invalid_utf8(body)) {
        fail(res, 400, "body is not valid UTF-8 (byte offset " + std::to_string(*bad) + ")", "");
        return;
    }
    std::optional<std::string> authorization;
    if (req.has_header("Authorization")) authorization = req.get_header_value("Authorization");
    if (authorization &&
        (first_invalid_utf8(*authorization) || authorization->find('\0') != std::string::npos)) {
        fail(res, 401, "Authorization header is not valid UTF-8", "");
        return;
    }

    auto leased = pool_.acquire(std::chrono::milliseconds(config_.pool_timeout_ms));
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        fail(res, 503, failure->message, "");
        return;
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = call_ingest(lease.conn(), body, authorization);
    if (r.broken) lease.discard();
    if (r.ok) {
        // Committed. The answer is the function's own JSON, passed on verbatim.
        t_request.result = json_top_level_string(r.value, "result").value_or("");
        t_request.event = json_top_level_string(r.value, "event").value_or("");
        t_request.event_id = json_top_level_string(r.value, "event_id").value_or("");
        res.status = 200;
        res.set_content(r.value, kJson);
        return;
    }
    metrics_.db_error(r.sqlstate);
    // No SQLSTATE: libpq failed by itself (connection lost: retry) or the answer was
    // unusable (unexpected).
    const int status =
        r.sqlstate.empty() ? (r.broken ? 503 : 500) : http_status_for_sqlstate(r.sqlstate);
    if (status >= 500)
        log_.warn("webhook not stored: " + r.message +
                  (r.sqlstate.empty() ? "" : " [" + r.sqlstate + "]"));
    fail(res, status, r.message, r.sqlstate);
}

void App::healthz(httplib::Response& res) {
    const auto wait = std::chrono::milliseconds(std::min(config_.pool_timeout_ms, 2000));
    auto leased = pool_.acquire(wait);
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) {
        fail(res, 503, failure->message, "");
        return;
    }
    auto& lease = std::get<Pool::Lease>(leased);
    DbResult r = ping(lease.conn());
    if (r.broken) lease.discard();
    if (!r.ok) {
        metrics_.db_error(r.sqlstate);
        fail(res, 503, r.message, r.sqlstate);
        return;
    }
    res.set_content("{\"status\": \"ok\"}\n", kJson);
}

void App::metrics(httplib::Response& res) {
    res.set_content(metrics_.render(pool_.stats()), "text/plain; version=0.0.4; charset=utf-8");
}

void App::log_request(const httplib::Request& req, const httplib::Response& res) {
    RequestContext& ctx = t_request;
    const double seconds =
        ctx.started ? std::chrono::duration<double>(Clock::now() - ctx.start).count() : 0.0;

    std::string handler = "other";
    if (req.path == config_.path) {
        handler = "webhook";
    } else if (req.path == "/healthz") {
        handler = "healthz";
    } else if (req.path == "/metrics") {
        handler = "metrics";
    }
    metrics_.request_done(handler, res.status, ctx.result, seconds);

    AccessRecord rec;
    rec.time = ctx.started ? ctx.wall : std::chrono::system_clock::now();
    rec.remote = req.remote_addr;
    rec.method = req.method;
    rec.path = req.path;
    rec.status = res.status;
    rec.result = ctx.result;
    rec.event = ctx.event;
    rec.event_id = ctx.event_id;
    rec.sqlstate = ctx.sqlstate;
    rec.error = ctx.error;
    rec.duration_ms = seconds * 1000.0;
    log_.access(rec);
    t_request = RequestContext{};
}

}  // namespace attendance::proxy
