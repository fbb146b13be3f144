// What the proxy answers, independent of the HTTP library: routes, the webhook handler,
// /healthz, /metrics, error bodies, and the access log / request metrics written once
// per answered request. The server (server.hpp) reads requests and writes replies.
#pragma once

#include "proxy/config.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace attendance::proxy {

using Clock = std::chrono::steady_clock;

// One request, read completely.
struct HttpRequest {
    std::string method;
    std::string path;  // the target without its query string
    std::optional<std::string> authorization;
    std::string body;
    std::string remote;
    Clock::time_point start;  // first byte of the request (or its accept)
    std::chrono::system_clock::time_point wall;
};

// One answer, and what the access log and the metrics say about it.
struct HttpReply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool close = false;  // close the connection after this answer
    // for the log and the metrics
    std::string result;
    std::string event;
    std::string event_id;
    std::string sqlstate;
    std::string error;
};

class App {
  public:
    App(const Config& config, Pool& pool, Metrics& metrics, Log& log)
        : config_(config), pool_(pool), metrics_(metrics), log_(log) {}

    // Answers what needs no database at once (404, 405, /metrics, bodies refused before
    // the database); nullopt means the request needs the database: call handle_db() on
    // a database thread.
    std::optional<HttpReply> route(const HttpRequest& req);
    // The webhook or /healthz. Blocks on the database; `queued` is when the request was
    // handed over, so that the pool timeout counts the wait for a database thread too.
    HttpReply handle_db(const HttpRequest& req, Clock::time_point queued);

    // An error answer of the server itself (framing, limits, timeouts).
    HttpReply error(int status, std::string_view message) const;
    // Once per answered request.
    void log_request(const HttpRequest& req, const HttpReply& reply);

  private:
    HttpReply webhook(const HttpRequest& req, Clock::time_point queued);
    HttpReply healthz(Clock::time_point queued);
    HttpReply fail(int status, std::string_view message, std::string_view sqlstate) const;
    HttpReply unavailable() const;

    const Config& config_;
    Pool& pool_;
    Metrics& metrics_;
    Log& log_;
};

}  // namespace attendance::proxy
